//! Partition leadership and ISR changes, as records (Kafka's
//! `ReplicationControlManager` and `PartitionChangeBuilder`): pure functions from the
//! current image to the records of a change, so every rule has a unit test.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::{MetadataImage, PartitionInfo};
use crate::records::MetadataRecord;
use crate::ControllerError;

/// A leader's request to commit a new ISR for one partition (one partition of Kafka's
/// AlterPartition request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionSpec {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The broker asking: it must be the partition's leader.
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// The partition epoch the leader's proposal builds on.
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The record committing `spec`'s ISR, or Kafka's error for it
/// (`ReplicationControlManager.alterPartition`): FENCED_LEADER_EPOCH for an old leader
/// epoch, INVALID_REQUEST from a broker that does not lead, INVALID_UPDATE_VERSION when
/// the partition changed since the leader built its proposal, INELIGIBLE_REPLICA for an
/// ISR naming a broker that is not an eligible replica.
pub fn alter_partition(
    image: &MetadataImage,
    spec: &AlterPartitionSpec,
) -> Result<MetadataRecord, ControllerError> {
    let topic = image
        .topic_by_id(&spec.topic_id)
        .ok_or(ControllerError::UnknownTopicId)?;
    let partition = topic
        .partitions
        .get(
            usize::try_from(spec.partition)
                .map_err(|_| ControllerError::UnknownTopicOrPartition)?,
        )
        .ok_or(ControllerError::UnknownTopicOrPartition)?;
    if spec.leader_epoch < partition.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch);
    }
    if spec.leader_id != partition.leader || spec.leader_epoch != partition.leader_epoch {
        return Err(ControllerError::InvalidRequest(format!(
            "Broker {} is not the leader of {}-{} at leader epoch {} (the leader is {} at epoch {})",
            spec.leader_id,
            topic.name,
            spec.partition,
            spec.leader_epoch,
            partition.leader,
            partition.leader_epoch
        )));
    }
    if spec.partition_epoch != partition.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion);
    }
    if !spec.new_isr.contains(&partition.leader) {
        return Err(ControllerError::InvalidRequest(format!(
            "The new ISR {:?} of {}-{} does not contain its leader {}",
            spec.new_isr, topic.name, spec.partition, partition.leader
        )));
    }
    if let Some(bad) = spec
        .new_isr
        .iter()
        .find(|r| !partition.replicas.contains(r) || !image.is_eligible_replica(**r))
    {
        return Err(ControllerError::IneligibleReplica(format!(
            "Rejecting AlterPartition request from node {} for {}-{} because it specified ineligible replica {bad} in the new ISR {:?}.",
            spec.leader_id, topic.name, spec.partition, spec.new_isr
        )));
    }
    let mut isr = spec.new_isr.clone();
    isr.sort_unstable();
    isr.dedup();
    Ok(changed(
        spec.topic_id,
        partition,
        partition.leader,
        isr,
        false,
    ))
}

/// The record of `partition` with a new leader and ISR; the leader epoch moves when the
/// leader does (or `bump_leader_epoch`), the partition epoch always.
pub fn changed(
    topic_id: Uuid,
    partition: &PartitionInfo,
    leader: i32,
    isr: Vec<i32>,
    bump_leader_epoch: bool,
) -> MetadataRecord {
    let leader_epoch = if leader != partition.leader || bump_leader_epoch {
        partition.leader_epoch + 1
    } else {
        partition.leader_epoch
    };
    MetadataRecord::Partition {
        topic_id,
        partition: partition.partition,
        replicas: partition.replicas.clone(),
        isr,
        leader,
        leader_epoch,
        partition_epoch: partition.partition_epoch + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(replicas: &[i32], isr: &[i32], leader: i32) -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        }];
        for b in replicas {
            records.push(MetadataRecord::RegisterBroker {
                node_id: *b,
                host: "localhost".into(),
                port: 9000 + b,
                rack: None,
            });
        }
        records.push(MetadataRecord::Partition {
            topic_id: id,
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
        });
        for r in &records {
            image.replay(r).unwrap();
        }
        (image, id)
    }

    fn spec(
        id: Uuid,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> AlterPartitionSpec {
        AlterPartitionSpec {
            topic_id: id,
            partition: 0,
            leader_id: leader,
            leader_epoch,
            partition_epoch,
            new_isr: isr.to_vec(),
        }
    }

    #[test]
    fn a_shrink_from_the_leader_bumps_only_the_partition_epoch() {
        let (image, id) = image_with(&[1, 2, 3], &[1, 2, 3], 1);
        let record = alter_partition(&image, &spec(id, 1, 3, 7, &[1, 2])).unwrap();
        assert_eq!(
            record,
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 3,
                partition_epoch: 8,
            }
        );
    }

    #[test]
    fn stale_or_foreign_proposals_get_kafkas_errors() {
        let (image, id) = image_with(&[1, 2, 3], &[1, 2], 1);
        let code =
            |s: AlterPartitionSpec| alter_partition(&image, &s).unwrap_err().kafka_error_code();
        assert_eq!(
            code(spec(id, 1, 2, 7, &[1, 2, 3])),
            74,
            "FENCED_LEADER_EPOCH"
        );
        assert_eq!(
            code(spec(id, 2, 3, 7, &[1, 2, 3])),
            42,
            "INVALID_REQUEST: not the leader"
        );
        assert_eq!(
            code(spec(id, 1, 3, 6, &[1, 2, 3])),
            108,
            "INVALID_UPDATE_VERSION"
        );
        assert_eq!(code(spec(id, 1, 3, 7, &[2, 3])), 42, "the leader left out");
        assert_eq!(
            code(spec(id, 1, 3, 7, &[1, 4])),
            107,
            "INELIGIBLE_REPLICA: not a replica"
        );
        assert_eq!(
            code(spec(Uuid::new_v4(), 1, 3, 7, &[1])),
            100,
            "UNKNOWN_TOPIC_ID"
        );
        let mut other = spec(id, 1, 3, 7, &[1]);
        other.partition = 5;
        assert_eq!(code(other), 3, "UNKNOWN_TOPIC_OR_PARTITION");
    }
}
