//! The in-memory picture of cluster metadata, built only by replaying records.
//!
//! Readers (every Metadata, Produce and Fetch request) take an `Arc<MetadataImage>`
//! snapshot and never block writers; the controller replaces the snapshot after each
//! committed batch of records (copy-on-write, as KRaft's `MetadataImage` does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::records::MetadataRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: Uuid,
    /// Indexed by partition number; partitions are dense from 0.
    pub partitions: Vec<PartitionInfo>,
    /// Topic-level overrides only (what `DYNAMIC_TOPIC_CONFIG` reports).
    pub configs: BTreeMap<String, String>,
}

/// Topics only the broker creates and writes (Kafka's `Topic.INTERNAL_TOPICS`; the
/// transaction log is a later issue, but its name is reserved already so no client can
/// take it). Other names starting with `__` are ordinary topics, as in Kafka.
pub const INTERNAL_TOPICS: &[&str] = &[OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC];
/// The group coordinator's topic (Kafka's `Topic.GROUP_METADATA_TOPIC_NAME`).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's topic (Kafka's `Topic.TRANSACTION_STATE_TOPIC_NAME`).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's `Topic.isInternal`: whether `name` is one of [`INTERNAL_TOPICS`].
pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

impl TopicInfo {
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    topics_by_id: HashMap<Uuid, Arc<TopicInfo>>,
    topic_ids_by_name: BTreeMap<String, Uuid>,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
    /// Count of records replayed; a cheap version number for the image.
    pub offset: u64,
}

/// A record that contradicts the image (e.g. a partition for an unknown topic). Replay
/// refuses it rather than guessing, because a metadata log that does not replay
/// cleanly is corrupt and must not be half-applied silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata record does not apply: {0}")]
pub struct ReplayError(pub String);

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics_by_id.get(id))
    }
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicInfo>> {
        self.topics_by_id.get(id)
    }
    /// Topics sorted by name.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicInfo>> {
        self.topic_ids_by_name
            .values()
            .filter_map(|id| self.topics_by_id.get(id))
    }
    pub fn topic_count(&self) -> usize {
        self.topics_by_id.len()
    }

    /// Apply one record. Deterministic: the same sequence always yields the same image.
    pub fn replay(&mut self, record: &MetadataRecord) -> Result<(), ReplayError> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerInfo {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                    },
                );
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids_by_name.contains_key(name)
                    || self.topics_by_id.contains_key(topic_id)
                {
                    return Err(ReplayError(format!(
                        "topic {name} ({topic_id}) already exists"
                    )));
                }
                self.topic_ids_by_name.insert(name.clone(), *topic_id);
                self.topics_by_id.insert(
                    *topic_id,
                    Arc::new(TopicInfo {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: Vec::new(),
                        configs: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let topic = self.topics_by_id.get_mut(topic_id).ok_or_else(|| {
                    ReplayError(format!("partition record for unknown topic id {topic_id}"))
                })?;
                let topic = Arc::make_mut(topic);
                let info = PartitionInfo {
                    partition: *partition,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                };
                let index = usize::try_from(*partition)
                    .map_err(|_| ReplayError(format!("negative partition {partition}")))?;
                match index.cmp(&topic.partitions.len()) {
                    std::cmp::Ordering::Less => topic.partitions[index] = info,
                    std::cmp::Ordering::Equal => topic.partitions.push(info),
                    std::cmp::Ordering::Greater => {
                        return Err(ReplayError(format!(
                            "partition {partition} of {} is not dense (have {})",
                            topic.name,
                            topic.partitions.len()
                        )))
                    }
                }
            }
            MetadataRecord::TopicConfig {
                topic_id,
                key,
                value,
            } => {
                let topic = self.topics_by_id.get_mut(topic_id).ok_or_else(|| {
                    ReplayError(format!("config record for unknown topic id {topic_id}"))
                })?;
                let topic = Arc::make_mut(topic);
                match value {
                    Some(v) => topic.configs.insert(key.clone(), v.clone()),
                    None => topic.configs.remove(key),
                };
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                if *next_producer_id < self.next_producer_id {
                    return Err(ReplayError(format!(
                        "producer id block goes backwards: {next_producer_id} < {}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = *next_producer_id;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self.topics_by_id.remove(topic_id).ok_or_else(|| {
                    ReplayError(format!("removal of unknown topic id {topic_id}"))
                })?;
                self.topic_ids_by_name.remove(&topic.name);
            }
        }
        self.offset += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic_id: Uuid, p: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition: p,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    #[test]
    fn replay_builds_topics_and_removal_frees_the_name() {
        let id = Uuid::new_v4();
        let mut image = MetadataImage::default();
        for r in [
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            partition(id, 0),
            partition(id, 1),
            MetadataRecord::TopicConfig {
                topic_id: id,
                key: "retention.ms".into(),
                value: Some("5".into()),
            },
        ] {
            image.replay(&r).unwrap();
        }
        let t = image.topic("t").unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("5"));
        image
            .replay(&MetadataRecord::RemoveTopic { topic_id: id })
            .unwrap();
        assert!(image.topic("t").is_none());
        let id2 = Uuid::new_v4();
        image
            .replay(&MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id2,
            })
            .unwrap();
        assert_eq!(image.topic("t").unwrap().topic_id, id2);
    }

    #[test]
    fn contradictory_records_are_refused() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        assert!(image.replay(&partition(id, 0)).is_err());
        image
            .replay(&MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            })
            .unwrap();
        assert!(
            image.replay(&partition(id, 1)).is_err(),
            "gap in partitions"
        );
        assert!(image
            .replay(&MetadataRecord::Topic {
                name: "t".into(),
                topic_id: Uuid::new_v4()
            })
            .is_err());
        assert_eq!(image.offset, 1, "refused records do not count");
    }
}
