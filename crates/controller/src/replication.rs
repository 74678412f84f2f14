//! Partition leadership and ISR changes, as records (Kafka's
//! `ReplicationControlManager` and `PartitionChangeBuilder`): pure functions from the
//! current image to the records of a change, so every rule has a unit test.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::election::unclean_leader;
use crate::image::{MetadataImage, PartitionInfo, TopicInfo};
use crate::reassignment::complete_if_caught_up;
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
    // The ISR that makes every target replica in sync also completes a reassignment.
    Ok(complete_if_caught_up(
        image,
        changed(spec.topic_id, partition, partition.leader, isr, false),
    ))
}

/// Kafka's `NO_LEADER`: the partition has no eligible leader and is offline.
pub const NO_LEADER: i32 = -1;

/// The first replica, in assignment order, that is in `isr` and eligible in `image`
/// (Kafka's default leader election; unclean election is not enabled).
pub(crate) fn elect_from_isr(image: &MetadataImage, partition: &PartitionInfo, isr: &[i32]) -> i32 {
    partition
        .replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && image.is_eligible_replica(*r))
        .unwrap_or(NO_LEADER)
}

/// The partition changes that take broker `broker` out of every ISR and move its
/// leaderships to the next eligible in-sync replica (Kafka's
/// `generateLeaderAndIsrUpdates` for a fenced or shutting-down broker). `image` is the
/// image in which `broker` is already fenced. An ISR never becomes empty: its last
/// member stays, and the partition goes offline (leader -1) until that broker returns.
pub fn remove_broker(
    image: &MetadataImage,
    broker: i32,
    unclean_allowed: &dyn Fn(&TopicInfo) -> bool,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for p in &topic.partitions {
            if p.leader != broker && !p.isr.contains(&broker) {
                continue;
            }
            let mut isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != broker).collect();
            if isr.is_empty() {
                isr = p.isr.clone();
            }
            let leader = if p.leader == broker || p.leader == NO_LEADER {
                elect_from_isr(image, p, &isr)
            } else {
                p.leader
            };
            if leader == NO_LEADER && unclean_allowed(topic) {
                if let Some(record) = unclean_leader(image, topic, p) {
                    records.push(record);
                    continue;
                }
            }
            if leader != p.leader || isr != p.isr {
                records.push(changed(topic.topic_id, p, leader, isr, false));
            }
        }
    }
    records
}

/// Leaders for the partitions that have none (or whose leader is not eligible) but an
/// eligible in-sync replica, e.g. once the last ISR member returns (Kafka's
/// `electLeaders` for offline partitions, clean election only).
pub fn elect_offline_leaders(
    image: &MetadataImage,
    unclean_allowed: &dyn Fn(&TopicInfo) -> bool,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for p in &topic.partitions {
            if p.leader != NO_LEADER && image.is_eligible_replica(p.leader) {
                continue;
            }
            let leader = elect_from_isr(image, p, &p.isr);
            if leader != NO_LEADER {
                records.push(changed(topic.topic_id, p, leader, p.isr.clone(), false));
            } else if unclean_allowed(topic) {
                records.extend(unclean_leader(image, topic, p));
            }
        }
    }
    records
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
        adding_replicas: partition.adding_replicas.clone(),
        removing_replicas: partition.removing_replicas.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Brokers `replicas` registered and topic "t" with one partition on them: the
    /// given ISR and leader, leader epoch 3, partition epoch 7.
    pub(crate) fn image_with(replicas: &[i32], isr: &[i32], leader: i32) -> (MetadataImage, Uuid) {
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
            adding_replicas: vec![],
            removing_replicas: vec![],
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

    pub(crate) fn fence(image: &mut MetadataImage, broker: i32) {
        image
            .replay(&MetadataRecord::FenceBroker { node_id: broker })
            .unwrap();
    }

    /// Fence `broker` and apply the changes that take it out of every partition.
    fn fence_out(
        image: &mut MetadataImage,
        broker: i32,
        unclean_allowed: &dyn Fn(&TopicInfo) -> bool,
    ) {
        fence(image, broker);
        let records = remove_broker(image, broker, unclean_allowed);
        apply(image, &records);
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.replay(r).unwrap();
        }
    }

    fn clean_only(_: &TopicInfo) -> bool {
        false
    }

    fn unclean_too(_: &TopicInfo) -> bool {
        true
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr_when_allowed() {
        let (mut image, id) = image_with(&[1, 2, 3], &[1], 1);
        fence_out(&mut image, 1, &unclean_too);
        assert_eq!(
            state(&image, id),
            (2, vec![2], 4, 8),
            "replica 2 leads alone"
        );
        // Offline partitions get an unclean leader too once a replica returns.
        let (mut image, id) = image_with(&[1, 2], &[1], 1);
        fence(&mut image, 2);
        fence_out(&mut image, 1, &unclean_too);
        assert_eq!(state(&image, id).0, NO_LEADER);
        image
            .replay(&MetadataRecord::UnfenceBroker { node_id: 2 })
            .unwrap();
        assert!(elect_offline_leaders(&image, &clean_only).is_empty());
        let records = elect_offline_leaders(&image, &unclean_too);
        apply(&mut image, &records);
        assert_eq!(state(&image, id).0, 2);
        assert_eq!(state(&image, id).1, vec![2]);
    }

    fn state(image: &MetadataImage, id: Uuid) -> (i32, Vec<i32>, i32, i32) {
        let p = &image.topic_by_id(&id).unwrap().partitions[0];
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch)
    }

    #[test]
    fn a_fenced_leader_hands_over_to_the_next_in_sync_replica() {
        let (mut image, id) = image_with(&[1, 2, 3], &[1, 2, 3], 1);
        fence_out(&mut image, 1, &clean_only);
        assert_eq!(
            state(&image, id),
            (2, vec![2, 3], 4, 8),
            "new leader, new epochs"
        );
    }

    #[test]
    fn a_fenced_follower_leaves_the_isr_and_the_leader_stays() {
        let (mut image, id) = image_with(&[1, 2, 3], &[1, 2, 3], 1);
        fence_out(&mut image, 3, &clean_only);
        assert_eq!(
            state(&image, id),
            (1, vec![1, 2], 3, 8),
            "same leader epoch"
        );
        assert!(
            remove_broker(&image, 3, &clean_only).is_empty(),
            "nothing left to do"
        );
    }

    #[test]
    fn only_in_sync_replicas_are_elected_and_the_last_one_keeps_the_partition() {
        // Broker 3 is a replica but out of the ISR: it may not lead (no unclean election).
        let (mut image, id) = image_with(&[1, 2, 3], &[1], 1);
        fence_out(&mut image, 1, &clean_only);
        assert_eq!(
            state(&image, id),
            (NO_LEADER, vec![1], 4, 8),
            "offline, ISR kept"
        );
        assert!(
            elect_offline_leaders(&image, &clean_only).is_empty(),
            "broker 1 is still fenced"
        );
        // Broker 1 returns: it is the one replica with everything, and leads again.
        image
            .replay(&MetadataRecord::UnfenceBroker { node_id: 1 })
            .unwrap();
        let records = elect_offline_leaders(&image, &clean_only);
        apply(&mut image, &records);
        assert_eq!(state(&image, id), (1, vec![1], 5, 9));
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
                adding_replicas: vec![],
                removing_replicas: vec![],
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
