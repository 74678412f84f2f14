//! ottla-controller: cluster metadata — brokers, topics, partitions, topic configs.
//!
//! The controller is a state machine over [`MetadataRecord`]s: each operation validates
//! against the current [`MetadataImage`], produces records, appends them durably to the
//! metadata log and then replays them into a new image snapshot. Today there is one
//! voter (this node) and the log is a local fsynced file; the multi-node issue replaces
//! the file with a Raft-replicated log without changing this shape.

pub mod delta;
pub mod image;
pub mod metadata_log;
pub mod records;
pub mod topic_name;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

pub use delta::{LocalPartition, LocalReplicaChanges, MetadataDelta, MetadataPublisher};
pub use image::{
    is_internal_topic, BrokerInfo, MetadataImage, PartitionInfo, TopicInfo, OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
};
use metadata_log::{MetadataLog, MetadataLogError};
pub use records::MetadataRecord;

/// Kafka caps partitions per CreateTopics/CreatePartitions request far above this; we
/// keep a named limit so one request cannot create millions of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: i32,
    /// Where the metadata log lives (`<first log dir>/__ottla_metadata`).
    pub metadata_dir: PathBuf,
    /// `num.partitions`
    pub default_num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
}

/// What a client asked for in CreateTopics, already stripped of wire details.
#[derive(Debug, Clone, Default)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1: use `num.partitions`.
    pub num_partitions: i32,
    /// -1: use `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual replica assignment by partition, if given (then counts must be -1).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Validated topic configs.
    pub configs: BTreeMap<String, String>,
}

/// Errors carry Kafka's error code and the message Kafka would send with it.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopicOrPartition,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("metadata log write failed: {0}")]
    Storage(#[from] MetadataLogError),
    #[error("metadata record does not apply: {0}")]
    Replay(#[from] image::ReplayError),
}

impl ControllerError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidReplicationFactor(_) => 38,
            ControllerError::InvalidReplicaAssignment(_) => 39,
            ControllerError::InvalidRequest(_) => 42,
            ControllerError::UnknownTopicOrPartition => 3,
            ControllerError::UnknownTopicId => 100,
            // KAFKA_STORAGE_ERROR would be per partition; for metadata Kafka reports
            // UNKNOWN_SERVER_ERROR.
            ControllerError::Storage(_) | ControllerError::Replay(_) => -1,
        }
    }
}

pub struct Controller {
    config: ControllerConfig,
    image: RwLock<Arc<MetadataImage>>,
    /// Serialises writers: validate, append, replay and publish happen under this lock
    /// so two concurrent CreateTopics for one name cannot both pass validation, and
    /// publishers see deltas in commit order.
    log: Mutex<MetadataLog>,
    publishers: RwLock<Vec<Arc<dyn MetadataPublisher>>>,
}

impl Controller {
    /// Open the metadata log, replay it, and make sure the cluster has an id.
    pub fn open(config: ControllerConfig) -> Result<Controller, ControllerError> {
        let (log, records) = MetadataLog::open(&config.metadata_dir)?;
        let mut image = MetadataImage::default();
        for record in &records {
            image.replay(record)?;
        }
        let controller = Controller {
            config,
            image: RwLock::new(Arc::new(image)),
            log: Mutex::new(log),
            publishers: RwLock::new(Vec::new()),
        };
        if controller.image().cluster_id.is_none() {
            let cluster_id = new_cluster_id();
            controller.commit(|_| Ok((vec![MetadataRecord::ClusterId { cluster_id }], ())))?;
        }
        tracing::info!(
            "Loaded metadata: {} records, {} topics, cluster id {}",
            records.len(),
            controller.image().topic_count(),
            controller.image().cluster_id.as_deref().unwrap_or("?")
        );
        Ok(controller)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The current metadata snapshot. Cheap (an `Arc` clone); never blocks on writers
    /// for longer than a pointer swap.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Add a publisher: it receives the current image at once, as one delta, then every
    /// committed change.
    pub fn register_publisher(&self, publisher: Arc<dyn MetadataPublisher>) {
        let _writers = self.log.lock();
        let image = self.image();
        publisher.publish(&MetadataDelta::full(&image), &image);
        self.publishers.write().push(publisher);
    }

    /// Validate-and-emit under the writer lock, append durably, replay, publish.
    fn commit<T>(
        &self,
        produce: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, ControllerError>
    where
        T: Sized,
    {
        let mut log = self.log.lock();
        let current = self.image();
        let (records, out) = produce(&current)?;
        if records.is_empty() {
            return Ok(out);
        }
        let mut next = (*current).clone();
        // Replay first on a copy: a record that does not apply must never reach the log.
        for record in &records {
            next.replay(record)?;
        }
        log.append(&records)?;
        let delta = MetadataDelta::from_records(&current, &records);
        let next = Arc::new(next);
        // Publish before readers see the new image: a topic becomes visible once this
        // broker has opened its partitions, never before.
        for publisher in self.publishers.read().iter() {
            publisher.publish(&delta, &next);
        }
        *self.image.write() = next;
        Ok(out)
    }

    /// Register (or update) this broker's endpoint.
    pub fn register_broker(&self, info: BrokerInfo) -> Result<(), ControllerError> {
        self.commit(|image| {
            if image.brokers.get(&info.node_id) == Some(&info) {
                return Ok((vec![], ()));
            }
            Ok((
                vec![MetadataRecord::RegisterBroker {
                    node_id: info.node_id,
                    host: info.host.clone(),
                    port: info.port,
                    rack: info.rack.clone(),
                }],
                (),
            ))
        })
    }

    /// Create one topic (or, with `validate_only`, check that it could be created).
    pub fn create_topic(
        &self,
        spec: &CreateTopicSpec,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, ControllerError> {
        let default_partitions = self.config.default_num_partitions;
        let default_rf = self.config.default_replication_factor;
        let result = self.commit(|image| {
            topic_name::validate(&spec.name).map_err(ControllerError::InvalidTopic)?;
            if image.topic(&spec.name).is_some() {
                return Err(ControllerError::TopicAlreadyExists(spec.name.clone()));
            }
            if let Some(existing) = image
                .topics()
                .find(|t| topic_name::collides(&t.name, &spec.name))
            {
                return Err(ControllerError::InvalidTopic(format!(
                    "Topic '{}' collides with existing topic: {}",
                    spec.name, existing.name
                )));
            }
            let assignment = plan_assignment(image, spec, default_partitions, default_rf)?;
            let topic_id = Uuid::new_v4();
            let mut records = vec![MetadataRecord::Topic {
                name: spec.name.clone(),
                topic_id,
            }];
            for (key, value) in &spec.configs {
                records.push(MetadataRecord::TopicConfig {
                    topic_id,
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
            for (partition, replicas) in assignment.into_iter().enumerate() {
                records.push(partition_record(topic_id, partition as i32, replicas));
            }
            let mut preview = image.clone();
            for r in &records {
                preview.replay(r)?;
            }
            let topic = preview
                .topic(&spec.name)
                .cloned()
                .expect("topic was just replayed");
            if validate_only {
                return Ok((vec![], topic));
            }
            Ok((records, topic))
        })?;
        if !validate_only {
            tracing::info!(
                "Created topic {} with topic ID {} and {} partitions",
                result.name,
                ottla_protocol::kafka_uuid::encode_topic_id(result.topic_id),
                result.partitions.len()
            );
        }
        Ok(result)
    }

    /// Delete a topic by id; returns what was deleted so the caller can drop its logs.
    pub fn delete_topic(&self, topic_id: Uuid) -> Result<Arc<TopicInfo>, ControllerError> {
        let topic = self.commit(|image| {
            let topic = image
                .topic_by_id(&topic_id)
                .cloned()
                .ok_or(ControllerError::UnknownTopicId)?;
            Ok((vec![MetadataRecord::RemoveTopic { topic_id }], topic))
        })?;
        tracing::info!(
            "Deleted topic {} with topic ID {}",
            topic.name,
            ottla_protocol::kafka_uuid::encode_topic_id(topic.topic_id)
        );
        Ok(topic)
    }

    /// Grow a topic to `new_total` partitions (CreatePartitions).
    pub fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, ControllerError> {
        let node_id = self.config.node_id;
        let result = self.commit(|image| {
            let topic = image.topic(name).cloned().ok_or(ControllerError::UnknownTopicOrPartition)?;
            let current = topic.partitions.len() as i32;
            if new_total < current {
                return Err(ControllerError::InvalidPartitions(format!(
                    "Topic currently has {current} partitions, which is higher than the requested {new_total}."
                )));
            }
            if new_total == current {
                return Err(ControllerError::InvalidPartitions(format!("Topic already has {current} partitions.")));
            }
            if new_total > MAX_PARTITIONS_PER_TOPIC {
                return Err(ControllerError::InvalidPartitions(format!(
                    "The requested {new_total} partitions exceed the limit of {MAX_PARTITIONS_PER_TOPIC}."
                )));
            }
            let rf = topic.partitions.first().map(|p| p.replicas.len()).unwrap_or(1);
            let added = (new_total - current) as usize;
            let replica_sets: Vec<Vec<i32>> = match assignments {
                Some(a) => {
                    if a.len() != added {
                        return Err(ControllerError::InvalidReplicaAssignment(format!(
                            "Increasing the number of partitions by {added} but {} assignments provided.",
                            a.len()
                        )));
                    }
                    for replicas in &a {
                        check_replicas(image, replicas)?;
                    }
                    a
                }
                None => {
                    let brokers = live_brokers(image, node_id);
                    if rf > brokers.len() {
                        return Err(not_enough_brokers(rf as i16, brokers.len()));
                    }
                    (0..added).map(|i| round_robin(&brokers, current as usize + i, rf)).collect()
                }
            };
            let records: Vec<_> = replica_sets
                .into_iter()
                .enumerate()
                .map(|(i, replicas)| partition_record(topic.topic_id, current + i as i32, replicas))
                .collect();
            let mut preview = image.clone();
            for r in &records {
                preview.replay(r)?;
            }
            let updated = preview.topic(name).cloned().expect("topic exists");
            Ok((if validate_only { vec![] } else { records }, updated))
        })?;
        if !validate_only {
            tracing::info!(
                "Increased partition count of {} to {}",
                name,
                result.partitions.len()
            );
        }
        Ok(result)
    }

    /// Reserve `count` producer ids; returns the first. Durable before it returns, so
    /// ids are unique across restarts (Kafka's AllocateProducerIds, in blocks).
    pub fn allocate_producer_ids(&self, count: i64) -> Result<i64, ControllerError> {
        assert!(count > 0, "allocate at least one producer id");
        self.commit(|image| {
            let start = image.next_producer_id;
            Ok((
                vec![MetadataRecord::ProducerIds {
                    next_producer_id: start + count,
                }],
                start,
            ))
        })
    }
}

fn partition_record(topic_id: Uuid, partition: i32, replicas: Vec<i32>) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        isr: replicas.clone(),
        leader: replicas[0],
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

fn live_brokers(image: &MetadataImage, self_id: i32) -> Vec<i32> {
    let mut brokers: Vec<i32> = image.brokers.keys().copied().collect();
    if brokers.is_empty() {
        brokers.push(self_id);
    }
    brokers
}

fn round_robin(brokers: &[i32], partition: usize, rf: usize) -> Vec<i32> {
    (0..rf)
        .map(|r| brokers[(partition + r) % brokers.len()])
        .collect()
}

fn not_enough_brokers(rf: i16, available: usize) -> ControllerError {
    ControllerError::InvalidReplicationFactor(format!(
        "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {available} broker(s) are registered."
    ))
}

fn check_replicas(image: &MetadataImage, replicas: &[i32]) -> Result<(), ControllerError> {
    if replicas.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut seen = replicas.to_vec();
    seen.sort();
    seen.dedup();
    if seen.len() != replicas.len() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes the broker more than once.".into(),
        ));
    }
    for r in replicas {
        if !image.brokers.contains_key(r) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {r}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

fn plan_assignment(
    image: &MetadataImage,
    spec: &CreateTopicSpec,
    default_partitions: i32,
    default_rf: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    if !spec.assignments.is_empty() {
        if spec.num_partitions != -1 || spec.replication_factor != -1 {
            return Err(ControllerError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let mut out = Vec::with_capacity(spec.assignments.len());
        for (expected, (partition, replicas)) in spec.assignments.iter().enumerate() {
            if *partition != expected as i32 {
                return Err(ControllerError::InvalidReplicaAssignment(
                    "Partitions should be 0-based and consecutive.".into(),
                ));
            }
            check_replicas(image, replicas)?;
            out.push(replicas.clone());
        }
        return Ok(out);
    }
    let partitions = if spec.num_partitions == -1 {
        default_partitions
    } else {
        spec.num_partitions
    };
    if partitions <= 0 {
        return Err(ControllerError::InvalidPartitions(
            "Number of partitions was set to an invalid non-positive value.".into(),
        ));
    }
    if partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions {partitions} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."
        )));
    }
    let rf = if spec.replication_factor == -1 {
        default_rf
    } else {
        spec.replication_factor
    };
    if rf <= 0 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    let brokers: Vec<i32> = image.brokers.keys().copied().collect();
    if rf as usize > brokers.len() {
        return Err(not_enough_brokers(rf, brokers.len()));
    }
    Ok((0..partitions as usize)
        .map(|p| round_robin(&brokers, p, rf as usize))
        .collect())
}

/// A Kafka-style cluster id: a random UUID in Kafka's base64 form (22 characters).
fn new_cluster_id() -> String {
    ottla_protocol::kafka_uuid::encode_topic_id(Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(dir: &std::path::Path) -> Controller {
        let c = Controller::open(ControllerConfig {
            node_id: 1,
            metadata_dir: dir.to_path_buf(),
            default_num_partitions: 1,
            default_replication_factor: 1,
        })
        .unwrap();
        c.register_broker(BrokerInfo {
            node_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        })
        .unwrap();
        c
    }

    fn spec(name: &str, partitions: i32) -> CreateTopicSpec {
        CreateTopicSpec {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            ..Default::default()
        }
    }

    #[test]
    fn topics_survive_reopen_with_configs_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (id, cluster) = {
            let c = controller(dir.path());
            let mut s = spec("orders", 3);
            s.configs.insert("retention.ms".into(), "1000".into());
            let t = c.create_topic(&s, false).unwrap();
            c.create_partitions("orders", 5, None, false).unwrap();
            (t.topic_id, c.image().cluster_id.clone().unwrap())
        };
        let c = controller(dir.path());
        let image = c.image();
        assert_eq!(image.cluster_id.as_deref(), Some(cluster.as_str()));
        assert_eq!(cluster.len(), 22);
        let t = image.topic("orders").unwrap();
        assert_eq!(t.topic_id, id);
        assert_eq!(t.partitions.len(), 5);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
    }

    #[test]
    fn create_errors_have_kafka_codes() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        c.create_topic(&spec("a.b", 1), false).unwrap();
        let code = |s: CreateTopicSpec| c.create_topic(&s, false).unwrap_err().kafka_error_code();
        assert_eq!(code(spec("a.b", 1)), 36);
        assert_eq!(code(spec("a_b", 1)), 17, "collision");
        assert_eq!(code(spec("bad name!", 1)), 17);
        assert_eq!(code(spec("p", 0)), 37);
        let mut rf = spec("r", 1);
        rf.replication_factor = 3;
        assert_eq!(code(rf), 38);
        assert_eq!(
            c.create_partitions("a.b", 1, None, false)
                .unwrap_err()
                .kafka_error_code(),
            37
        );
        assert_eq!(
            c.create_partitions("nope", 2, None, false)
                .unwrap_err()
                .kafka_error_code(),
            3
        );
    }

    #[test]
    fn producer_id_blocks_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = controller(dir.path()).allocate_producer_ids(1000).unwrap();
        let second = controller(dir.path()).allocate_producer_ids(1000).unwrap();
        assert_eq!(first, 0);
        assert_eq!(second, 1000);
    }

    #[test]
    fn validate_only_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let before = c.image().offset;
        let t = c.create_topic(&spec("v", 4), true).unwrap();
        assert_eq!(t.partitions.len(), 4);
        assert!(c.image().topic("v").is_none());
        assert_eq!(c.image().offset, before);
    }

    #[test]
    fn delete_then_recreate_gets_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let t1 = c.create_topic(&spec("x", 1), false).unwrap();
        c.delete_topic(t1.topic_id).unwrap();
        assert_eq!(
            c.delete_topic(t1.topic_id).unwrap_err().kafka_error_code(),
            100
        );
        let t2 = c.create_topic(&spec("x", 2), false).unwrap();
        assert_ne!(t1.topic_id, t2.topic_id);
        assert_eq!(c.image().topic("x").unwrap().partitions.len(), 2);
    }
}
