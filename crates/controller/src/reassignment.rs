//! Partition reassignment (KIP-455: AlterPartitionReassignments and
//! ListPartitionReassignments, what `kafka-reassign-partitions` and
//! `Admin.alterPartitionReassignments` send), as Kafka's `ReplicationControlManager`
//! with `PartitionReassignmentReplicas` and `PartitionReassignmentRevert` does it.
//!
//! A reassignment never copies data itself. It widens the partition's replica set to
//! the target plus the current replicas (`adding_replicas` are new, `removing_replicas`
//! leave at the end); the new replicas fetch from the leader like any follower, and the
//! leader asks the controller to add each to the ISR once it has caught up. The
//! AlterPartition that makes every target replica in sync completes the reassignment in
//! the same record: the replica set becomes the target, the ISR loses the removed
//! replicas, and if the leader was one of them the first in-sync target replica takes
//! over. A replica that leaves the replica set deletes its copy of the log.
//!
//! All of it is pure functions from the image to records, so every rule has a unit test.

use serde::{Deserialize, Serialize};

use crate::image::{MetadataImage, PartitionInfo, TopicInfo};
use crate::records::MetadataRecord;
use crate::replication::NO_LEADER;
use crate::{check_replicas, Controller, ControllerError, ControllerOp, PartitionOutcome};

/// One partition of an AlterPartitionReassignments request: a new replica list, or
/// `None` to cancel the partition's ongoing reassignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentRequest {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
    /// AlterPartitionReassignments v1 (KIP-860): false refuses a target whose size
    /// differs from the partition's replication factor.
    pub allow_replication_factor_change: bool,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    /// Every replica the partition has now: the target first, then the leaving ones.
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

/// The record that starts, changes or cancels a reassignment of `partition`, `None`
/// when the request changes nothing, or Kafka's error: INVALID_REPLICA_ASSIGNMENT for
/// an empty list, a repeated broker or an unregistered one, NO_REASSIGNMENT_IN_PROGRESS
/// for cancelling what is not reassigning.
pub fn change_reassignment(
    image: &MetadataImage,
    topic: &TopicInfo,
    partition: &PartitionInfo,
    target: Option<&[i32]>,
) -> Result<Option<MetadataRecord>, ControllerError> {
    let record = match target {
        None => revert(image, topic, partition)?,
        Some(target) => {
            check_replicas(image, target)?;
            // Kafka's PartitionReassignmentReplicas: against the current replica set
            // (which includes an earlier reassignment's additions).
            let removing: Vec<i32> = partition
                .replicas
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect();
            let adding: Vec<i32> = target
                .iter()
                .copied()
                .filter(|r| !partition.replicas.contains(r))
                .collect();
            let mut replicas = target.to_vec();
            replicas.extend(&removing);
            if replicas == partition.replicas
                && adding == partition.adding_replicas
                && removing == partition.removing_replicas
            {
                return Ok(None);
            }
            complete_if_caught_up(
                image,
                MetadataRecord::Partition {
                    topic_id: topic.topic_id,
                    partition: partition.partition,
                    replicas,
                    isr: partition.isr.clone(),
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    partition_epoch: partition.partition_epoch + 1,
                    adding_replicas: adding,
                    removing_replicas: removing,
                },
            )
        }
    };
    Ok(Some(record))
}

/// Cancel: back to the replicas the partition had before (Kafka's
/// `PartitionReassignmentRevert`). The added replicas leave the replica set and the ISR;
/// should that empty the ISR, the first remaining live replica leads alone (Kafka
/// reverts uncleanly then too).
fn revert(
    image: &MetadataImage,
    topic: &TopicInfo,
    partition: &PartitionInfo,
) -> Result<MetadataRecord, ControllerError> {
    if !partition.is_reassigning() {
        return Err(ControllerError::NoReassignmentInProgress(
            topic.name.clone(),
            partition.partition,
        ));
    }
    let adding = &partition.adding_replicas;
    let replicas: Vec<i32> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| !adding.contains(r))
        .collect();
    let mut isr: Vec<i32> = partition
        .isr
        .iter()
        .copied()
        .filter(|r| !adding.contains(r))
        .collect();
    let eligible_in = |set: &[i32]| {
        replicas
            .iter()
            .copied()
            .find(|r| set.contains(r) && image.is_eligible_replica(*r))
    };
    if isr.is_empty() {
        match eligible_in(&replicas) {
            Some(live) => isr = vec![live],
            None => isr = partition.isr.clone(),
        }
    }
    let leader = if isr.contains(&partition.leader) && image.is_eligible_replica(partition.leader) {
        partition.leader
    } else {
        eligible_in(&isr).unwrap_or(NO_LEADER)
    };
    Ok(MetadataRecord::Partition {
        topic_id: topic.topic_id,
        partition: partition.partition,
        // Replicas left: fence their fetches with a new leader epoch.
        leader_epoch: if leader != partition.leader || !adding.is_empty() {
            partition.leader_epoch + 1
        } else {
            partition.leader_epoch
        },
        replicas,
        isr,
        leader,
        partition_epoch: partition.partition_epoch + 1,
        adding_replicas: vec![],
        removing_replicas: vec![],
    })
}

/// `record` (a partition's next state), or, when it is reassigning and every target
/// replica is in its ISR, the record that completes the reassignment instead (Kafka's
/// `PartitionChangeBuilder.completeReassignmentIfNeeded`): the target becomes the
/// replica set, the removed replicas leave the ISR, a removed leader hands over to the
/// first eligible in-sync target replica, and the leader epoch moves so that the
/// removed replicas' fetches are fenced.
pub fn complete_if_caught_up(image: &MetadataImage, record: MetadataRecord) -> MetadataRecord {
    let MetadataRecord::Partition {
        topic_id,
        partition,
        replicas,
        isr,
        leader,
        leader_epoch,
        partition_epoch,
        adding_replicas,
        removing_replicas,
    } = &record
    else {
        return record;
    };
    let leader = *leader;
    let target: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| !removing_replicas.contains(r))
        .collect();
    let reassigning = !adding_replicas.is_empty() || !removing_replicas.is_empty();
    let new_isr: Vec<i32> = isr.iter().copied().filter(|r| target.contains(r)).collect();
    let next_leader = if target.contains(&leader) && image.is_eligible_replica(leader) {
        leader
    } else {
        target
            .iter()
            .copied()
            .find(|r| new_isr.contains(r) && image.is_eligible_replica(*r))
            .unwrap_or(NO_LEADER)
    };
    if !reassigning || !target.iter().all(|r| isr.contains(r)) || next_leader == NO_LEADER {
        return record;
    }
    debug_assert!(!new_isr.is_empty(), "a completed reassignment keeps an ISR");
    MetadataRecord::Partition {
        topic_id: *topic_id,
        partition: *partition,
        leader_epoch: if next_leader != leader || !removing_replicas.is_empty() {
            leader_epoch + 1
        } else {
            *leader_epoch
        },
        replicas: target,
        isr: new_isr,
        leader: next_leader,
        partition_epoch: *partition_epoch,
        adding_replicas: vec![],
        removing_replicas: vec![],
    }
}

/// The reassignments in progress, of every topic or of the partitions asked for
/// (unknown topics and partitions, and partitions not reassigning, are left out, as
/// Kafka's ListPartitionReassignments does).
pub fn ongoing(
    image: &MetadataImage,
    only: Option<&[(String, Vec<i32>)]>,
) -> Vec<OngoingReassignment> {
    let describe = |topic: &TopicInfo, p: &PartitionInfo| OngoingReassignment {
        topic: topic.name.clone(),
        partition: p.partition,
        replicas: p.replicas.clone(),
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
    };
    let mut out = Vec::new();
    match only {
        None => {
            for topic in image.topics() {
                for p in topic.partitions.iter().filter(|p| p.is_reassigning()) {
                    out.push(describe(topic, p));
                }
            }
        }
        Some(asked) => {
            for (name, partitions) in asked {
                let Some(topic) = image.topic(name) else {
                    continue;
                };
                for index in partitions {
                    let p = usize::try_from(*index)
                        .ok()
                        .and_then(|i| topic.partitions.get(i));
                    if let Some(p) = p.filter(|p| p.is_reassigning()) {
                        out.push(describe(topic, p));
                    }
                }
            }
        }
    }
    out
}

impl Controller {
    /// AlterPartitionReassignments: start, change or cancel reassignments, forwarded to
    /// the active controller. One outcome per partition asked for.
    pub fn alter_partition_reassignments(
        &self,
        requests: Vec<ReassignmentRequest>,
    ) -> Result<Vec<PartitionOutcome>, ControllerError> {
        self.run_change(
            &|| ControllerOp::AlterPartitionReassignments {
                requests: requests.clone(),
            },
            &|| self.alter_partition_reassignments_here(&requests),
            &|output| match output {
                crate::ChangeOutput::Reassignments(results) => Ok(results),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no reassignment results in the answer".into(),
                )),
            },
        )
    }

    pub(crate) fn alter_partition_reassignments_here(
        &self,
        requests: &[ReassignmentRequest],
    ) -> Result<Vec<PartitionOutcome>, ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let mut records = Vec::new();
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                let outcome = image
                    .topic(&request.topic)
                    .and_then(|topic| {
                        let p = usize::try_from(request.partition).ok()?;
                        Some((topic, topic.partitions.get(p)?))
                    })
                    .ok_or(ControllerError::UnknownTopicOrPartition)
                    .and_then(|(topic, partition)| {
                        if let Some(target) = &request.target {
                            let current = partition.target_replicas().len();
                            if !request.allow_replication_factor_change && target.len() != current {
                                return Err(ControllerError::InvalidReplicationFactor(format!(
                                    "The replication factor is changed from {current} to {}",
                                    target.len()
                                )));
                            }
                        }
                        change_reassignment(image, topic, partition, request.target.as_deref())
                    });
                let outcome = outcome.map(|record| {
                    if let Some(record) = record {
                        log_change(node_id, request, &record);
                        records.push(record);
                    }
                });
                results.push(PartitionOutcome::new(
                    &request.topic,
                    request.partition,
                    outcome,
                ));
            }
            Ok((records, results))
        })
    }

    /// ListPartitionReassignments, from this node's image.
    pub fn list_partition_reassignments(
        &self,
        only: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<OngoingReassignment> {
        ongoing(&self.image(), only)
    }
}

fn log_change(node_id: i32, request: &ReassignmentRequest, record: &MetadataRecord) {
    let MetadataRecord::Partition {
        replicas,
        adding_replicas,
        removing_replicas,
        ..
    } = record
    else {
        return;
    };
    let name = format!("{}-{}", request.topic, request.partition);
    match &request.target {
        None => tracing::info!(
            "[QuorumController id={node_id}] Cancelled the reassignment of {name}: replicas back to {replicas:?}"
        ),
        Some(_) if adding_replicas.is_empty() && removing_replicas.is_empty() => tracing::info!(
            "[QuorumController id={node_id}] Reassigned {name} to replicas {replicas:?}"
        ),
        Some(target) => tracing::info!(
            "[QuorumController id={node_id}] Started the reassignment of {name} to {target:?}: adding {adding_replicas:?}, removing {removing_replicas:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::tests::{fence, image_with};
    use crate::replication::{alter_partition, AlterPartitionSpec};

    fn register(image: &mut MetadataImage, broker: i32) {
        image
            .replay(&MetadataRecord::RegisterBroker {
                node_id: broker,
                host: "localhost".into(),
                port: 9000 + broker,
                rack: None,
            })
            .unwrap();
    }

    fn reassign(image: &mut MetadataImage, target: Option<&[i32]>) -> Result<bool, i16> {
        let topic = image.topic("t").unwrap().clone();
        match change_reassignment(image, &topic, &topic.partitions[0], target) {
            Ok(Some(record)) => {
                image.replay(&record).unwrap();
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e.kafka_error_code()),
        }
    }

    fn state(image: &MetadataImage) -> PartitionInfo {
        image.topic("t").unwrap().partitions[0].clone()
    }

    /// The leader's AlterPartition adding `follower` to the ISR, applied.
    fn caught_up(image: &mut MetadataImage, follower: i32) {
        let p = state(image);
        let mut isr = p.isr.clone();
        isr.push(follower);
        let record = alter_partition(
            image,
            &AlterPartitionSpec {
                topic_id: image.topic("t").unwrap().topic_id,
                partition: 0,
                leader_id: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: isr,
            },
        )
        .unwrap();
        image.replay(&record).unwrap();
    }

    #[test]
    fn a_move_widens_the_replicas_then_completes_when_the_new_replicas_are_in_sync() {
        let (mut image, _) = image_with(&[1, 2, 3], &[1, 2, 3], 1);
        register(&mut image, 4);
        register(&mut image, 5);
        assert_eq!(reassign(&mut image, Some(&[4, 5, 2])), Ok(true));
        let p = state(&image);
        assert_eq!(
            p.replicas,
            vec![4, 5, 2, 1, 3],
            "target first, then leaving"
        );
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![4, 5], vec![1, 3])
        );
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (1, 3, 8),
            "leader stays"
        );
        assert_eq!(
            ongoing(&image, None),
            vec![OngoingReassignment {
                topic: "t".into(),
                partition: 0,
                replicas: vec![4, 5, 2, 1, 3],
                adding_replicas: vec![4, 5],
                removing_replicas: vec![1, 3],
            }]
        );
        caught_up(&mut image, 4);
        assert!(state(&image).is_reassigning(), "5 is not in sync yet");
        assert_eq!(state(&image).isr, vec![1, 2, 3, 4]);
        caught_up(&mut image, 5);
        let p = state(&image);
        assert!(!p.is_reassigning());
        assert_eq!(p.replicas, vec![4, 5, 2]);
        assert_eq!(p.isr, vec![2, 4, 5], "the leaving replicas left the ISR");
        assert_eq!(
            p.leader, 4,
            "the removed leader handed over to the first target replica"
        );
        assert_eq!((p.leader_epoch, p.partition_epoch), (4, 10));
        assert!(ongoing(&image, None).is_empty());
    }

    #[test]
    fn removing_only_completes_at_once_and_keeps_a_target_leader() {
        let (mut image, _) = image_with(&[1, 2, 3], &[1, 2, 3], 2);
        assert_eq!(reassign(&mut image, Some(&[1, 2])), Ok(true));
        let p = state(&image);
        assert_eq!((p.replicas, p.isr, p.leader), (vec![1, 2], vec![1, 2], 2));
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(
            p.leader_epoch, 4,
            "a removed replica is fenced by a new epoch"
        );
        // The same target again changes nothing; a reorder only reorders.
        assert_eq!(reassign(&mut image, Some(&[1, 2])), Ok(false));
        assert_eq!(reassign(&mut image, Some(&[2, 1])), Ok(true));
        assert_eq!(state(&image).replicas, vec![2, 1]);
    }

    #[test]
    fn cancelling_restores_the_original_replicas() {
        let (mut image, _) = image_with(&[1, 2, 3], &[1, 2, 3], 1);
        register(&mut image, 4);
        assert_eq!(
            reassign(&mut image, None),
            Err(85),
            "NO_REASSIGNMENT_IN_PROGRESS"
        );
        assert_eq!(reassign(&mut image, Some(&[4, 2, 3])), Ok(true));
        caught_up(&mut image, 4);
        assert!(
            !state(&image).is_reassigning(),
            "[4, 2, 3] is in sync: done"
        );
        assert_eq!(reassign(&mut image, Some(&[1, 2, 3])), Ok(true));
        assert_eq!(state(&image).adding_replicas, vec![1]);
        let before_epoch = state(&image).leader_epoch;
        assert_eq!(reassign(&mut image, None), Ok(true));
        let p = state(&image);
        // Kafka's revert: the merged list (target, then leaving) without the added.
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![2, 3, 4], vec![2, 3, 4])
        );
        assert!(!p.is_reassigning());
        assert_eq!(p.leader, 4);
        assert_eq!(
            p.leader_epoch,
            before_epoch + 1,
            "the dropped replica is fenced"
        );
    }

    #[test]
    fn bad_targets_get_invalid_replica_assignment() {
        let (mut image, _) = image_with(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(reassign(&mut image, Some(&[])), Err(39), "empty");
        assert_eq!(reassign(&mut image, Some(&[1, 1])), Err(39), "repeated");
        assert_eq!(
            reassign(&mut image, Some(&[1, 9])),
            Err(39),
            "unregistered broker"
        );
        assert!(!state(&image).is_reassigning(), "nothing changed");
    }

    #[test]
    fn a_reassignment_does_not_complete_while_no_target_replica_can_lead() {
        let (mut image, _) = image_with(&[1, 2], &[1, 2], 1);
        register(&mut image, 3);
        assert_eq!(reassign(&mut image, Some(&[3])), Ok(true));
        fence(&mut image, 3);
        // Even were 3 in the ISR, a fenced replica cannot take over.
        let p = state(&image);
        let record = complete_if_caught_up(
            &image,
            MetadataRecord::Partition {
                topic_id: image.topic("t").unwrap().topic_id,
                partition: 0,
                replicas: p.replicas.clone(),
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch + 1,
                adding_replicas: p.adding_replicas.clone(),
                removing_replicas: p.removing_replicas.clone(),
            },
        );
        let MetadataRecord::Partition {
            removing_replicas, ..
        } = record
        else {
            panic!("a partition record")
        };
        assert_eq!(removing_replicas, vec![1, 2], "still reassigning");
    }

    #[test]
    fn listing_only_names_reassigning_partitions_asked_for() {
        let (mut image, _) = image_with(&[1, 2], &[1, 2], 1);
        register(&mut image, 3);
        assert_eq!(reassign(&mut image, Some(&[1, 3])), Ok(true));
        let asked = |name: &str, p: i32| vec![(name.to_string(), vec![p])];
        assert_eq!(ongoing(&image, Some(&asked("t", 0))).len(), 1);
        assert!(ongoing(&image, Some(&asked("t", 1))).is_empty());
        assert!(ongoing(&image, Some(&asked("nope", 0))).is_empty());
    }
}
