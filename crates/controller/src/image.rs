//! The in-memory picture of cluster metadata, built only by replaying records.
//!
//! Readers (every Metadata, Produce and Fetch request) take an `Arc<MetadataImage>`
//! snapshot and never block writers; the controller replaces the snapshot after each
//! committed batch of records (copy-on-write, as KRaft's `MetadataImage` does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::records::MetadataRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    /// The inter-broker listener's advertised address: where other brokers reach it.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Every advertised listener, by name (KRaft's `RegisterBrokerRecord.endPoints`):
    /// a client is told each broker's address on the listener it came in on. Empty in
    /// registrations older than this field (then `host:port` serves every listener).
    pub listeners: Vec<BrokerEndpoint>,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl BrokerInfo {
    /// Where a client on `listener` reaches this broker: that listener's advertised
    /// address; `None` when the broker has no such listener (Kafka's
    /// `getAliveBrokerNode(id, listener)` leaves it out then). A registration older than
    /// the listener list serves every listener at its inter-broker address.
    pub fn endpoint(&self, listener: &str) -> Option<(String, i32)> {
        if self.listeners.is_empty() {
            return Some((self.host.clone(), self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| (l.host.clone(), l.port))
    }
}

/// A SCRAM credential as the controller stores it (RFC 5802's salted keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// An ongoing reassignment's new replicas (already in `replicas`).
    pub adding_replicas: Vec<i32>,
    /// An ongoing reassignment's leaving replicas (still in `replicas`).
    pub removing_replicas: Vec<i32>,
}

impl PartitionInfo {
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition ends with: all of them, or a reassignment's target
    /// (`replicas` without the removing ones).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }
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

/// Equality compares everything, `offset` included: two images are equal when they
/// describe the same metadata at the same version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Registered brokers that may not lead or be in an ISR (session expired, or shut
    /// down), until they heartbeat or register again.
    pub fenced_brokers: BTreeSet<i32>,
    topics_by_id: HashMap<Uuid, Arc<TopicInfo>>,
    topic_ids_by_name: BTreeMap<String, Uuid>,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
    /// Dynamic broker configs: by broker id, and the cluster-wide defaults under `None`
    /// (what `kafka-configs --entity-type brokers --alter` sets).
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// SCRAM credentials by (user, mechanism type).
    pub scram_credentials: BTreeMap<(String, i8), ScramCredential>,
    /// ACLs by id. Shared, so that a new image is cheap to make and the authorizer can
    /// tell by identity whether they changed.
    pub acls: Arc<BTreeMap<Uuid, crate::acls::AclBinding>>,
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

    /// Whether broker `id` may be in an ISR or lead: registered and not fenced.
    pub fn is_eligible_replica(&self, id: i32) -> bool {
        self.brokers.contains_key(&id) && !self.fenced_brokers.contains(&id)
    }

    /// A dynamic broker config as it applies to broker `broker`: its own value, else the
    /// cluster-wide default.
    pub fn dynamic_broker_config(&self, broker: i32, key: &str) -> Option<&String> {
        self.broker_configs
            .get(&Some(broker))
            .and_then(|c| c.get(key))
            .or_else(|| self.broker_configs.get(&None).and_then(|c| c.get(key)))
    }

    /// The brokers that may take new replicas and leaderships (registered, unfenced).
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .keys()
            .copied()
            .filter(|b| !self.fenced_brokers.contains(b))
            .collect()
    }

    /// The image re-expressed as records: replaying them, in order, into an empty image
    /// gives this image back (except [`MetadataImage::offset`], which counts the records
    /// replayed; a snapshot stores it beside the records). This is what a metadata
    /// snapshot holds, as KRaft's snapshots hold the image written out as records
    /// (`MetadataImage.write`): the cluster id, the brokers, each topic (by name) with
    /// its configs and partitions, and the producer-id block.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let partitions: usize = self.topics().map(|t| t.partitions.len()).sum();
        let configs: usize = self.topics().map(|t| t.configs.len()).sum();
        let mut records =
            Vec::with_capacity(3 + self.brokers.len() + self.topic_count() + partitions + configs);
        if let Some(cluster_id) = &self.cluster_id {
            records.push(MetadataRecord::ClusterId {
                cluster_id: cluster_id.clone(),
            });
        }
        for broker in self.brokers.values() {
            records.push(MetadataRecord::RegisterBroker {
                node_id: broker.node_id,
                host: broker.host.clone(),
                port: broker.port,
                rack: broker.rack.clone(),
            });
            if !broker.listeners.is_empty() {
                records.push(MetadataRecord::BrokerListeners {
                    node_id: broker.node_id,
                    listeners: broker.listeners.clone(),
                });
            }
        }
        for node_id in &self.fenced_brokers {
            records.push(MetadataRecord::FenceBroker { node_id: *node_id });
        }
        for topic in self.topics() {
            records.push(MetadataRecord::Topic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
            });
            for (key, value) in &topic.configs {
                records.push(MetadataRecord::TopicConfig {
                    topic_id: topic.topic_id,
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
            for p in &topic.partitions {
                records.push(MetadataRecord::Partition {
                    topic_id: topic.topic_id,
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    adding_replicas: p.adding_replicas.clone(),
                    removing_replicas: p.removing_replicas.clone(),
                });
            }
        }
        for (broker, configs) in &self.broker_configs {
            for (key, value) in configs {
                records.push(MetadataRecord::BrokerConfig {
                    broker: *broker,
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        for ((name, mechanism), c) in &self.scram_credentials {
            records.push(MetadataRecord::UserScramCredential {
                name: name.clone(),
                mechanism: *mechanism,
                salt: c.salt.clone(),
                stored_key: c.stored_key.clone(),
                server_key: c.server_key.clone(),
                iterations: c.iterations,
            });
        }
        for (id, acl) in self.acls.iter() {
            records.push(MetadataRecord::AccessControlEntry {
                id: *id,
                acl: acl.clone(),
            });
        }
        // Zero is where an empty image starts: no record needed.
        if self.next_producer_id != 0 {
            records.push(MetadataRecord::ProducerIds {
                next_producer_id: self.next_producer_id,
            });
        }
        records
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
                        listeners: Vec::new(),
                    },
                );
            }
            MetadataRecord::BrokerListeners { node_id, listeners } => {
                if let Some(broker) = self.brokers.get_mut(node_id) {
                    broker.listeners = listeners.clone();
                }
            }
            MetadataRecord::FenceBroker { node_id } => {
                if !self.brokers.contains_key(node_id) {
                    return Err(ReplayError(format!("fencing unknown broker {node_id}")));
                }
                self.fenced_brokers.insert(*node_id);
            }
            MetadataRecord::UnfenceBroker { node_id } => {
                self.fenced_brokers.remove(node_id);
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
                adding_replicas,
                removing_replicas,
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
                    adding_replicas: adding_replicas.clone(),
                    removing_replicas: removing_replicas.clone(),
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
            MetadataRecord::BrokerConfig { broker, key, value } => {
                let configs = self.broker_configs.entry(*broker).or_default();
                match value {
                    Some(v) => configs.insert(key.clone(), v.clone()),
                    None => configs.remove(key),
                };
                if configs.is_empty() {
                    self.broker_configs.remove(broker);
                }
            }
            MetadataRecord::UserScramCredential {
                name,
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations,
            } => {
                self.scram_credentials.insert(
                    (name.clone(), *mechanism),
                    ScramCredential {
                        salt: salt.clone(),
                        stored_key: stored_key.clone(),
                        server_key: server_key.clone(),
                        iterations: *iterations,
                    },
                );
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                self.scram_credentials.remove(&(name.clone(), *mechanism));
            }
            MetadataRecord::AccessControlEntry { id, acl } => {
                Arc::make_mut(&mut self.acls).insert(*id, acl.clone());
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                if Arc::make_mut(&mut self.acls).remove(id).is_none() {
                    return Err(ReplayError(format!("removal of unknown ACL {id}")));
                }
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
            adding_replicas: vec![],
            removing_replicas: vec![],
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
    fn to_records_replays_into_an_equal_image() {
        let mut image = MetadataImage::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let records = [
            MetadataRecord::ClusterId {
                cluster_id: "q1Xn0bU5SMmvj2BGGZ1cMA".into(),
            },
            MetadataRecord::RegisterBroker {
                node_id: 2,
                host: "b2".into(),
                port: 9093,
                rack: Some("r2".into()),
            },
            MetadataRecord::RegisterBroker {
                node_id: 1,
                host: "b1".into(),
                port: 9092,
                rack: None,
            },
            // Every advertised listener of broker 1: kept in snapshots right after its
            // registration.
            MetadataRecord::BrokerListeners {
                node_id: 1,
                listeners: vec![
                    BrokerEndpoint {
                        name: "INTERNAL".into(),
                        host: "b1".into(),
                        port: 9092,
                    },
                    BrokerEndpoint {
                        name: "EXTERNAL".into(),
                        host: "b1.example.com".into(),
                        port: 9094,
                    },
                ],
            },
            MetadataRecord::Topic {
                name: "zeta".into(),
                topic_id: a,
            },
            MetadataRecord::Topic {
                name: "alpha".into(),
                topic_id: b,
            },
            MetadataRecord::Partition {
                topic_id: a,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
            MetadataRecord::Partition {
                topic_id: a,
                partition: 1,
                replicas: vec![2, 1],
                isr: vec![2],
                leader: 2,
                leader_epoch: 4,
                partition_epoch: 7,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
            // rewritten: the image keeps the last version only
            MetadataRecord::Partition {
                topic_id: a,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1],
                leader: 1,
                leader_epoch: 1,
                partition_epoch: 2,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
            partition(b, 0),
            MetadataRecord::TopicConfig {
                topic_id: a,
                key: "retention.ms".into(),
                value: Some("1000".into()),
            },
            MetadataRecord::TopicConfig {
                topic_id: a,
                key: "cleanup.policy".into(),
                value: Some("compact".into()),
            },
            MetadataRecord::TopicConfig {
                topic_id: a,
                key: "cleanup.policy".into(),
                value: None,
            },
            MetadataRecord::TopicConfig {
                topic_id: b,
                key: "segment.bytes".into(),
                value: Some("1048576".into()),
            },
            MetadataRecord::ProducerIds {
                next_producer_id: 5000,
            },
        ];
        for r in &records {
            image.replay(r).unwrap();
        }
        // a deleted topic leaves no trace
        let gone = Uuid::new_v4();
        image
            .replay(&MetadataRecord::Topic {
                name: "gone".into(),
                topic_id: gone,
            })
            .unwrap();
        image
            .replay(&MetadataRecord::RemoveTopic { topic_id: gone })
            .unwrap();

        let written = image.to_records();
        let mut replayed = MetadataImage::default();
        for r in &written {
            replayed.replay(r).unwrap();
        }
        assert_eq!(replayed.offset, written.len() as u64);
        replayed.offset = image.offset;
        assert_eq!(replayed, image);
        assert_eq!(replayed.topic("zeta").unwrap().partitions[0].isr, vec![1]);
        assert!(replayed.topic("gone").is_none());
        assert_eq!(
            replayed.brokers[&1].endpoint("EXTERNAL"),
            Some(("b1.example.com".to_string(), 9094))
        );
        assert_eq!(replayed.brokers[&1].endpoint("CONTROLLER"), None);
        assert_eq!(
            replayed.brokers[&2].endpoint("EXTERNAL"),
            Some(("b2".to_string(), 9093)),
            "a registration without listeners serves every listener"
        );
        // written in a stable order: brokers by id, topics by name
        assert_eq!(replayed.to_records(), written);
        assert!(matches!(
            &written[1],
            MetadataRecord::RegisterBroker { node_id: 1, .. }
        ));
        assert!(matches!(
            &written[2],
            MetadataRecord::BrokerListeners { node_id: 1, .. }
        ));
        assert!(matches!(&written[4], MetadataRecord::Topic { name, .. } if name == "alpha"));
        assert!(MetadataImage::default().to_records().is_empty());
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
