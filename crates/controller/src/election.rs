//! Leader elections asked for by an operator (ElectLeaders, `kafka-leader-election`) and
//! the active controller's own preferred-leader rebalancing (`auto.leader.rebalance.enable`),
//! as Kafka's `ReplicationControlManager.electLeaders` and `maybeBalancePartitionLeaders`.
//!
//! A preferred election moves leadership to the first assigned replica when it is in
//! sync and alive; an unclean one gives an offline partition (no live in-sync replica)
//! the first live replica, accepting that records only the lost replicas had are gone.

use serde::{Deserialize, Serialize};

use crate::image::{MetadataImage, PartitionInfo, TopicInfo};
use crate::records::MetadataRecord;
use crate::replication::{changed, elect_from_isr, NO_LEADER};
use crate::{Controller, ControllerError, ControllerOp, PartitionOutcome};

/// ElectLeaders' `election_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl ElectionType {
    /// From the wire value (0 preferred, 1 unclean).
    pub fn from_wire(value: i8) -> Option<ElectionType> {
        match value {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// The record electing a leader of `partition` under `election`, or why there is none
/// (Kafka's errors: ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
/// ELIGIBLE_LEADERS_NOT_AVAILABLE).
pub fn elect_leader(
    image: &MetadataImage,
    topic: &TopicInfo,
    partition: &PartitionInfo,
    election: ElectionType,
) -> Result<MetadataRecord, ControllerError> {
    let name = format!("{}-{}", topic.name, partition.partition);
    match election {
        ElectionType::Preferred => {
            let preferred = partition.replicas.first().copied().unwrap_or(NO_LEADER);
            if partition.leader == preferred {
                return Err(ControllerError::ElectionNotNeeded);
            }
            if !partition.isr.contains(&preferred) || !image.is_eligible_replica(preferred) {
                return Err(ControllerError::PreferredLeaderNotAvailable(format!(
                    "Failed to elect leader for partition {name} under strategy PreferredReplicaPartitionLeaderElectionStrategy"
                )));
            }
            Ok(changed(
                topic.topic_id,
                partition,
                preferred,
                partition.isr.clone(),
                false,
            ))
        }
        ElectionType::Unclean => {
            if partition.leader != NO_LEADER && image.is_eligible_replica(partition.leader) {
                return Err(ControllerError::ElectionNotNeeded);
            }
            unclean_leader(image, topic, partition).ok_or_else(|| {
                ControllerError::EligibleLeadersNotAvailable(format!(
                    "Failed to elect leader for partition {name} under strategy UncleanPartitionLeaderElectionStrategy"
                ))
            })
        }
    }
}

/// A leader for an offline partition: from its ISR if one member is alive, else the
/// first live assigned replica, which becomes the whole ISR (an unclean election).
pub(crate) fn unclean_leader(
    image: &MetadataImage,
    topic: &TopicInfo,
    partition: &PartitionInfo,
) -> Option<MetadataRecord> {
    let clean = elect_from_isr(image, partition, &partition.isr);
    if clean != NO_LEADER {
        return Some(changed(
            topic.topic_id,
            partition,
            clean,
            partition.isr.clone(),
            false,
        ));
    }
    let live = partition
        .replicas
        .iter()
        .copied()
        .find(|r| image.is_eligible_replica(*r))?;
    tracing::warn!(
        "Unclean leader election for partition {}-{}: replica {live}, not in the ISR {:?}, becomes leader; records only the ISR had are lost",
        topic.name,
        partition.partition,
        partition.isr
    );
    Some(changed(topic.topic_id, partition, live, vec![live], false))
}

/// The preferred-leader elections that rebalance `image`: every partition whose first
/// replica is alive and in sync but does not lead.
pub fn preferred_elections(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .topics()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter_map(move |p| elect_leader(image, topic, p, ElectionType::Preferred).ok())
        })
        .collect()
}

impl Controller {
    /// ElectLeaders: elect leaders of `partitions` (`None`: every partition, answering
    /// only for those that changed or failed for another reason than not needing it).
    pub fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<PartitionOutcome>, ControllerError> {
        self.run_change(
            &|| ControllerOp::ElectLeaders {
                election,
                partitions: partitions.clone(),
            },
            &|| self.elect_leaders_here(election, partitions.as_deref()),
            &|output| match output {
                crate::ChangeOutput::Elections(results) => Ok(results),
                _ => Err(ControllerError::QuorumUnavailable(
                    "no election results in the answer".into(),
                )),
            },
        )
    }

    pub(crate) fn elect_leaders_here(
        &self,
        election: ElectionType,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<PartitionOutcome>, ControllerError> {
        let node_id = self.config.node_id;
        self.commit(|image| {
            let mut records = Vec::new();
            let mut results = Vec::new();
            let mut elect = |topic: &TopicInfo, partition: &PartitionInfo| {
                elect_leader(image, topic, partition, election).map(|r| records.push(r))
            };
            match partitions {
                None => {
                    for topic in image.topics() {
                        for p in &topic.partitions {
                            match elect(topic, p) {
                                Err(ControllerError::ElectionNotNeeded) => {}
                                outcome => {
                                    results.push(PartitionOutcome::new(&topic.name, p.partition, outcome))
                                }
                            }
                        }
                    }
                }
                Some(wanted) => {
                    for (name, indexes) in wanted {
                        for index in indexes {
                            let found = image.topic(name).and_then(|t| {
                                Some((t, t.partitions.get(usize::try_from(*index).ok()?)?))
                            });
                            let outcome = match found {
                                Some((t, p)) => elect(t, p),
                                None => Err(ControllerError::UnknownTopicOrPartition),
                            };
                            results.push(PartitionOutcome::new(name, *index, outcome));
                        }
                    }
                }
            }
            if !records.is_empty() {
                tracing::info!(
                    "[QuorumController id={node_id}] ElectLeaders ({election:?}): new leaders for {} partitions",
                    records.len()
                );
            }
            Ok((records, results))
        })
    }

    /// On the active controller, with `auto.leader.rebalance.enable`: give every
    /// partition whose preferred replica is back in sync its preferred leader.
    pub(crate) fn balance_partition_leaders(&self) {
        let moved = self.commit(|image| {
            let records = preferred_elections(image);
            let n = records.len();
            Ok((records, n))
        });
        match moved {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "[QuorumController id={}] Rebalanced the leaders of {n} partitions to their preferred replicas",
                self.config.node_id
            ),
            Err(e) => tracing::warn!(
                "[QuorumController id={}] Preferred leader rebalancing failed: {e}",
                self.config.node_id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brokers 1-3 registered (those in `fenced` fenced) and topic "t" with one
    /// partition: replicas [1, 2, 3], the given ISR and leader, epochs 3 and 7.
    fn image_with(isr: &[i32], leader: i32, fenced: &[i32]) -> MetadataImage {
        let (mut image, _) = crate::replication::tests::image_with(&[1, 2, 3], isr, leader);
        for broker in fenced {
            crate::replication::tests::fence(&mut image, *broker);
        }
        image
    }

    fn elect(image: &MetadataImage, election: ElectionType) -> Result<(i32, Vec<i32>, i32), i16> {
        let topic = image.topic("t").unwrap();
        match elect_leader(image, topic, &topic.partitions[0], election) {
            Ok(MetadataRecord::Partition {
                leader,
                isr,
                leader_epoch,
                ..
            }) => Ok((leader, isr, leader_epoch)),
            Ok(other) => panic!("unexpected record {other:?}"),
            Err(e) => Err(e.kafka_error_code()),
        }
    }

    #[test]
    fn preferred_election_moves_leadership_to_the_first_replica_only_when_it_is_in_sync() {
        let image = image_with(&[1, 2, 3], 2, &[]);
        assert_eq!(
            elect(&image, ElectionType::Preferred),
            Ok((1, vec![1, 2, 3], 4))
        );
        assert_eq!(preferred_elections(&image).len(), 1);
        // Already the leader: ELECTION_NOT_NEEDED.
        let image = image_with(&[1, 2, 3], 1, &[]);
        assert_eq!(elect(&image, ElectionType::Preferred), Err(84));
        assert!(preferred_elections(&image).is_empty());
        // Out of the ISR, or fenced: PREFERRED_LEADER_NOT_AVAILABLE.
        assert_eq!(
            elect(&image_with(&[2, 3], 2, &[]), ElectionType::Preferred),
            Err(80)
        );
        assert_eq!(
            elect(&image_with(&[1, 2, 3], 2, &[1]), ElectionType::Preferred),
            Err(80)
        );
    }

    #[test]
    fn unclean_election_only_for_partitions_without_a_live_leader() {
        assert_eq!(
            elect(&image_with(&[1, 2, 3], 2, &[]), ElectionType::Unclean),
            Err(84)
        );
        // The ISR's only member is fenced: the first live replica leads alone.
        let image = image_with(&[1], -1, &[1]);
        assert_eq!(elect(&image, ElectionType::Unclean), Ok((2, vec![2], 4)));
        // A live ISR member is still preferred over an unclean choice.
        let image = image_with(&[3], -1, &[1]);
        assert_eq!(elect(&image, ElectionType::Unclean), Ok((3, vec![3], 4)));
        // Nobody alive: ELIGIBLE_LEADERS_NOT_AVAILABLE.
        let image = image_with(&[1], -1, &[1, 2, 3]);
        assert_eq!(elect(&image, ElectionType::Unclean), Err(83));
    }
}
