//! What a committed batch of metadata records changed, and who is told.
//!
//! After every commit the controller hands each registered [`MetadataPublisher`] the
//! new image together with a [`MetadataDelta`] (Kafka's `MetadataPublisher`,
//! `MetadataDelta` and `TopicsDelta`). The broker's publisher turns the delta into
//! local actions, with [`MetadataDelta::local_changes`]: open the logs of partitions it
//! now leads, drop the logs of deleted topics, hand internal partitions to their
//! coordinators. Handlers only ask the controller for changes; they never open or delete
//! partitions themselves. A publisher registered late first receives the whole image as
//! one delta, so start-up and a live change take the same path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::image::{MetadataImage, PartitionInfo, TopicInfo};
use crate::records::MetadataRecord;

/// Acts on committed metadata. Called in commit order, one delta at a time, with the
/// controller's writer lock held: a publisher must not call back into the controller
/// to write.
pub trait MetadataPublisher: Send + Sync {
    /// For logs.
    fn name(&self) -> &'static str;
    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>);
}

/// The changes of one commit (or, for a new publisher, of the whole image).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetadataDelta {
    /// Partitions created or whose record was rewritten (new leader, leader epoch or
    /// ISR), by topic id. Partitions of topics deleted in the same delta are not here.
    pub changed_partitions: BTreeMap<Uuid, BTreeSet<i32>>,
    /// Topics that existed before the delta and are gone after it, as they were.
    pub deleted_topics: Vec<Arc<TopicInfo>>,
    /// Topics whose configs changed (and still exist).
    pub changed_configs: BTreeSet<Uuid>,
    /// A broker registered or changed its endpoint.
    pub brokers_changed: bool,
    /// Dynamic broker configs changed.
    pub broker_configs_changed: bool,
}

/// One partition, with the topic it belongs to.
#[derive(Debug, Clone)]
pub struct LocalPartition {
    pub topic: Arc<TopicInfo>,
    pub partition: PartitionInfo,
}

/// What a delta asks of one broker's replicas (Kafka's `LocalReplicaChanges`).
#[derive(Debug, Default)]
pub struct LocalReplicaChanges {
    /// Partitions this broker leads after the delta (created here, or at a new epoch).
    pub leaders: Vec<LocalPartition>,
    /// Partitions this broker follows after the delta.
    pub followers: Vec<LocalPartition>,
    /// Topics with replicas here that were deleted.
    pub deleted_topics: Vec<Arc<TopicInfo>>,
    /// Changed partitions of which this broker is not a replica: a reassignment may
    /// just have moved them away, so a copy here is deleted (Kafka's `deletes`).
    pub not_hosted: Vec<LocalPartition>,
}

impl MetadataDelta {
    /// The delta made by `records`, applied to `before`.
    pub fn from_records(before: &MetadataImage, records: &[MetadataRecord]) -> MetadataDelta {
        let mut delta = MetadataDelta::default();
        for record in records {
            match record {
                MetadataRecord::Partition {
                    topic_id,
                    partition,
                    ..
                } => {
                    delta
                        .changed_partitions
                        .entry(*topic_id)
                        .or_default()
                        .insert(*partition);
                }
                MetadataRecord::TopicConfig { topic_id, .. } => {
                    delta.changed_configs.insert(*topic_id);
                }
                MetadataRecord::RemoveTopic { topic_id } => {
                    delta.changed_partitions.remove(topic_id);
                    delta.changed_configs.remove(topic_id);
                    if let Some(topic) = before.topic_by_id(topic_id) {
                        delta.deleted_topics.push(topic.clone());
                    }
                }
                MetadataRecord::RegisterBroker { .. }
                | MetadataRecord::BrokerListeners { .. }
                | MetadataRecord::FenceBroker { .. }
                | MetadataRecord::UnfenceBroker { .. } => delta.brokers_changed = true,
                MetadataRecord::BrokerConfig { .. } => delta.broker_configs_changed = true,
                MetadataRecord::ClusterId { .. }
                | MetadataRecord::Topic { .. }
                | MetadataRecord::ProducerIds { .. }
                | MetadataRecord::UserScramCredential { .. }
                | MetadataRecord::RemoveUserScramCredential { .. }
                | MetadataRecord::AccessControlEntry { .. }
                | MetadataRecord::RemoveAccessControlEntry { .. } => {}
            }
        }
        delta
    }

    /// Everything in `image`, as a delta from an empty image.
    pub fn full(image: &MetadataImage) -> MetadataDelta {
        MetadataDelta {
            changed_partitions: image
                .topics()
                .map(|t| {
                    let partitions = t.partitions.iter().map(|p| p.partition).collect();
                    (t.topic_id, partitions)
                })
                .collect(),
            deleted_topics: Vec::new(),
            changed_configs: image.topics().map(|t| t.topic_id).collect(),
            brokers_changed: !image.brokers.is_empty(),
            broker_configs_changed: !image.broker_configs.is_empty(),
        }
    }

    /// The delta from `before` to `after` when one replaces the other wholesale (a
    /// follower installing a snapshot from the leader, as KRaft's loader publishes a
    /// snapshot): topics of `before` that `after` lacks (by id) are deleted; everything
    /// in `after` is reported as [`MetadataDelta::full`] would report it, since the
    /// records that led there are unknown.
    pub fn replaced(before: &MetadataImage, after: &MetadataImage) -> MetadataDelta {
        let mut delta = MetadataDelta::full(after);
        delta.deleted_topics = before
            .topics()
            .filter(|t| after.topic_by_id(&t.topic_id).is_none())
            .cloned()
            .collect();
        delta.brokers_changed |=
            before.brokers != after.brokers || before.fenced_brokers != after.fenced_brokers;
        delta.broker_configs_changed |= before.broker_configs != after.broker_configs;
        delta
    }

    pub fn is_empty(&self) -> bool {
        self.changed_partitions.is_empty()
            && self.deleted_topics.is_empty()
            && self.changed_configs.is_empty()
            && !self.brokers_changed
            && !self.broker_configs_changed
    }

    /// What the delta means for broker `node_id`'s replicas, given the image after it.
    pub fn local_changes(&self, node_id: i32, image: &MetadataImage) -> LocalReplicaChanges {
        let mut changes = LocalReplicaChanges {
            deleted_topics: self
                .deleted_topics
                .iter()
                .filter(|t| t.partitions.iter().any(|p| p.replicas.contains(&node_id)))
                .cloned()
                .collect(),
            ..Default::default()
        };
        for (topic_id, partitions) in &self.changed_partitions {
            let Some(topic) = image.topic_by_id(topic_id) else {
                continue;
            };
            for index in partitions {
                let Some(partition) = topic.partitions.get(*index as usize) else {
                    continue;
                };
                let local = LocalPartition {
                    topic: topic.clone(),
                    partition: partition.clone(),
                };
                if partition.leader == node_id {
                    changes.leaders.push(local);
                } else if partition.replicas.contains(&node_id) {
                    changes.followers.push(local);
                } else {
                    changes.not_hosted.push(local);
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: id,
        }
    }

    fn partition(id: Uuid, partition: i32, replicas: &[i32], leader: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: id,
            partition,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        }
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) -> MetadataDelta {
        let delta = MetadataDelta::from_records(image, records);
        for r in records {
            image.replay(r).unwrap();
        }
        delta
    }

    #[test]
    fn a_created_topic_gives_each_broker_its_leaders_and_followers() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let delta = apply(
            &mut image,
            &[
                topic("t", id),
                partition(id, 0, &[1, 2], 1),
                partition(id, 1, &[2, 1], 2),
                partition(id, 2, &[3, 2], 3),
            ],
        );
        let on_1 = delta.local_changes(1, &image);
        let led: Vec<i32> = on_1.leaders.iter().map(|l| l.partition.partition).collect();
        let followed: Vec<i32> = on_1
            .followers
            .iter()
            .map(|l| l.partition.partition)
            .collect();
        assert_eq!((led, followed), (vec![0], vec![1]));
        let on_4 = delta.local_changes(4, &image);
        assert!(on_4.leaders.is_empty() && on_4.followers.is_empty());
        assert_eq!(on_4.not_hosted.len(), 3);
    }

    #[test]
    fn a_deleted_topic_is_reported_to_brokers_with_replicas_only() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        apply(&mut image, &[topic("t", id), partition(id, 0, &[1], 1)]);
        let delta = apply(&mut image, &[MetadataRecord::RemoveTopic { topic_id: id }]);
        assert_eq!(delta.deleted_topics.len(), 1);
        assert_eq!(delta.local_changes(1, &image).deleted_topics.len(), 1);
        assert!(delta.local_changes(2, &image).deleted_topics.is_empty());
        assert!(delta.changed_partitions.is_empty());
    }

    #[test]
    fn a_topic_created_and_deleted_in_one_delta_leaves_nothing_to_do() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let delta = apply(
            &mut image,
            &[
                topic("t", id),
                partition(id, 0, &[1], 1),
                MetadataRecord::RemoveTopic { topic_id: id },
            ],
        );
        let local = delta.local_changes(1, &image);
        assert!(local.leaders.is_empty() && local.deleted_topics.is_empty());
    }

    #[test]
    fn a_replaced_image_deletes_the_topics_it_lacks_and_names_the_rest() {
        let (kept, dropped, added) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut before = MetadataImage::default();
        apply(
            &mut before,
            &[
                topic("kept", kept),
                partition(kept, 0, &[1], 1),
                topic("dropped", dropped),
                partition(dropped, 0, &[1], 1),
                MetadataRecord::RegisterBroker {
                    node_id: 1,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                },
            ],
        );
        let mut after = MetadataImage::default();
        apply(
            &mut after,
            &[
                topic("kept", kept),
                partition(kept, 0, &[1], 1),
                topic("added", added),
                partition(added, 0, &[1], 1),
            ],
        );
        let delta = MetadataDelta::replaced(&before, &after);
        let deleted: Vec<Uuid> = delta.deleted_topics.iter().map(|t| t.topic_id).collect();
        assert_eq!(deleted, vec![dropped]);
        assert_eq!(
            delta.changed_partitions,
            BTreeMap::from([(kept, BTreeSet::from([0])), (added, BTreeSet::from([0]))])
        );
        assert!(delta.brokers_changed, "the broker went away");
        assert_eq!(delta.local_changes(1, &after).deleted_topics.len(), 1);
    }

    #[test]
    fn the_full_delta_of_an_image_names_every_partition() {
        let mut image = MetadataImage::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        apply(
            &mut image,
            &[
                topic("a", a),
                partition(a, 0, &[1], 1),
                partition(a, 1, &[1], 1),
                topic("b", b),
                partition(b, 0, &[1], 1),
            ],
        );
        let full = MetadataDelta::full(&image);
        assert_eq!(full.local_changes(1, &image).leaders.len(), 3);
        assert_eq!(
            full.changed_partitions,
            BTreeMap::from([(a, BTreeSet::from([0, 1])), (b, BTreeSet::from([0]))])
        );
    }
}
