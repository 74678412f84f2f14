//! The broker's [`MetadataPublisher`]: applies committed metadata to this broker
//! (Kafka's `BrokerMetadataPublisher` and `ReplicaManager.applyDelta`). It opens the
//! logs of the partitions this broker hosts and gives each its role (leader, or
//! follower fetching from its leader), deletes the logs of deleted topics, and loads or
//! unloads the coordinator shards of internal partitions. Handlers only
//! ask the controller for changes; what happens to replicas happens here, in commit
//! order, the same way at start-up (the whole image as one delta) and afterwards.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use ottla_controller::{
    LocalPartition, MetadataDelta, MetadataImage, MetadataPublisher, TopicInfo, OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
};
use ottla_replica::quota::is_throttled_replica;
use ottla_replica::{LeaderAndIsr, Partition, ReplicaError};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::broker::Broker;
use crate::coordinator_partition::CoordinatorPartitionLog;

pub struct BrokerMetadataPublisher {
    /// The broker owns the controller that owns this publisher: a weak link back.
    broker: Weak<Broker>,
    /// Partitions that could not be opened, for start-up to refuse to go on with.
    failures: Mutex<Vec<String>>,
    /// Held for the whole of each `publish`; `true` once [`Self::close`] ran. A clean
    /// shutdown closes the publisher before it unloads the coordinators and flushes the
    /// logs, so that no partition is opened or shard loaded behind its back (a topic
    /// created by a request still in flight, or a change fetched from the quorum).
    closed: Mutex<bool>,
}

impl BrokerMetadataPublisher {
    pub fn new(broker: Weak<Broker>) -> BrokerMetadataPublisher {
        BrokerMetadataPublisher {
            broker,
            failures: Mutex::new(Vec::new()),
            closed: Mutex::new(false),
        }
    }

    /// Apply no more changes: waits for a `publish` in progress to finish. What is
    /// committed but not applied here is applied at the next start, from the image.
    pub fn close(&self) {
        *self.closed.lock() = true;
    }

    /// The partitions that failed to open since the last call.
    pub fn take_failures(&self) -> Vec<String> {
        std::mem::take(&mut *self.failures.lock())
    }

    /// A partition whose log could not be opened: logged, and kept for start-up to
    /// refuse to go on with.
    fn record_failure(&self, node_id: i32, local: &LocalPartition, e: &ReplicaError) {
        let (topic, partition) = (&local.topic.name, local.partition.partition);
        tracing::error!("[Broker id={node_id}] Failed to create log for {topic}-{partition}: {e}");
        self.failures
            .lock()
            .push(format!("{topic}-{partition}: {e}"));
    }

    /// Open the logs of partitions new to this broker on
    /// `num.recovery.threads.per.data.dir` threads per log dir, as Kafka's
    /// `LogManager.loadLogs`: at start-up (every hosted log) and when a CreateTopics
    /// brings many at once, where opening one by one is bound by a thread's file-system
    /// calls. Each thread takes the next unopened partition; progress is logged as
    /// Kafka's "Loading logs" lines. Returns the partitions that failed (recorded): they
    /// are not tried again in this delta, as a second attempt would no longer find the
    /// directory the first one claimed and would create an empty log instead.
    fn open_in_parallel(
        &self,
        broker: &Broker,
        image: &MetadataImage,
        partitions: &[&LocalPartition],
    ) -> HashSet<(Uuid, i32)> {
        let node_id = broker.config.node_id;
        let threads = (broker.config.num_recovery_threads_per_data_dir
            * broker.replicas.log_dirs().len().max(1))
        .clamp(1, partitions.len().max(1));
        let next = AtomicUsize::new(0);
        let progress = Mutex::new(LoadProgress::new(partitions.len()));
        let failed = Mutex::new(HashSet::new());
        let work = || {
            while let Some(local) = partitions.get(next.fetch_add(1, Ordering::Relaxed)) {
                if let Err(e) = open_partition(broker, image, local) {
                    self.record_failure(node_id, local, &e);
                    failed
                        .lock()
                        .insert((local.topic.topic_id, local.partition.partition));
                }
                progress.lock().one_more(node_id);
            }
        };
        std::thread::scope(|scope| {
            for i in 1..threads {
                if let Err(e) = std::thread::Builder::new()
                    .name(format!("log-recovery-{i}"))
                    .spawn_scoped(scope, work)
                {
                    // The partitions left are opened by the others.
                    tracing::warn!("Could not start a log recovery thread: {e}");
                }
            }
            // This thread is one of them.
            work();
        });
        failed.into_inner()
    }

    /// Open the partition if needed and give it the role the controller assigned:
    /// start or stop fetching it, and load or unload its coordinator shard (Kafka's
    /// `ReplicaManager.applyDelta`: `applyLocalLeadersDelta` / `applyLocalFollowersDelta`).
    fn apply_partition(&self, broker: &Broker, image: &MetadataImage, local: &LocalPartition) {
        let topic = &local.topic;
        let p = &local.partition;
        let node_id = broker.config.node_id;
        let registration = registration(node_id, local);
        let partition = match open_partition(broker, image, local) {
            Ok(partition) => partition,
            Err(e) => {
                self.record_failure(node_id, local, &e);
                return;
            }
        };
        set_throttles(&partition, topic, node_id);
        partition.apply_leader_and_isr(&registration);
        if registration.is_local_leader() {
            broker
                .fetchers
                .remove_partition(topic.topic_id, p.partition);
            if topic.name == OFFSETS_TOPIC {
                // The shard loads in the background (at once if the partition is
                // empty); a load at an epoch already loaded is ignored.
                drop(broker.groups.on_elected(
                    p.partition,
                    topic.partitions.len() as i32,
                    p.leader_epoch,
                    Arc::new(CoordinatorPartitionLog(partition)),
                ));
            } else if topic.name == TRANSACTION_STATE_TOPIC {
                drop(broker.txns.on_elected(
                    p.partition,
                    topic.partitions.len() as i32,
                    p.leader_epoch,
                    Arc::new(CoordinatorPartitionLog(partition)),
                ));
            }
            return;
        }
        resign_coordinator(broker, &topic.name, p.partition, p.leader_epoch);
        match image.brokers.get(&p.leader) {
            Some(leader) => broker.fetchers.add_partition(
                p.leader,
                format!("{}:{}", leader.host, leader.port),
                partition,
                p.leader_epoch,
            ),
            // No leader (or one not registered): nothing to fetch from until the
            // controller elects one.
            None => broker
                .fetchers
                .remove_partition(topic.topic_id, p.partition),
        }
    }
}

impl MetadataPublisher for BrokerMetadataPublisher {
    fn name(&self) -> &'static str {
        "BrokerMetadataPublisher"
    }

    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        let closed = self.closed.lock();
        if *closed {
            return;
        }
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let node_id = broker.config.node_id;
        if let Some(authorizer) = &broker.authorizer {
            authorizer.update(&image.acls);
        }
        let changes = delta.local_changes(node_id, image);
        for topic in &changes.deleted_topics {
            for p in &topic.partitions {
                broker
                    .fetchers
                    .remove_partition(topic.topic_id, p.partition);
                resign_coordinator(&broker, &topic.name, p.partition, i32::MAX);
            }
            broker.replicas.remove_topic(&topic.topic_id);
        }
        // At start-up (the whole image as one delta) this opens every hosted log:
        // long with many partitions, so it says how far it got, once a second.
        let hosted: Vec<(&LocalPartition, bool)> = changes
            .leaders
            .iter()
            .chain(&changes.followers)
            .map(|l| {
                let new = broker
                    .replicas
                    .get(&l.topic.topic_id, l.partition.partition)
                    .is_none();
                (l, new)
            })
            .collect();
        let new: Vec<&LocalPartition> = hosted
            .iter()
            .filter(|(_, new)| *new)
            .map(|(l, _)| *l)
            .collect();
        let failed = self.open_in_parallel(&broker, image, &new);
        // Roles in commit order; the logs are open by now.
        for (local, _) in hosted {
            if !failed.contains(&(local.topic.topic_id, local.partition.partition)) {
                self.apply_partition(&broker, image, local);
            }
        }
        for local in &changes.not_hosted {
            let (topic, p) = (&local.topic, &local.partition);
            if broker.replicas.get(&topic.topic_id, p.partition).is_none() {
                continue;
            }
            // Moved away by a reassignment: stop fetching, hand off the coordinator
            // shard, delete the log.
            broker
                .fetchers
                .remove_partition(topic.topic_id, p.partition);
            resign_coordinator(&broker, &topic.name, p.partition, i32::MAX);
            broker
                .replicas
                .remove_partition(topic.topic_id, p.partition);
            tracing::info!(
                "[Broker id={node_id}] Stopped hosting {}-{}: no longer one of its replicas {:?}",
                topic.name,
                p.partition,
                p.replicas
            );
        }
        for topic_id in &delta.changed_configs {
            let Some(topic) = image.topic_by_id(topic_id) else {
                continue;
            };
            for p in &topic.partitions {
                if let Some(partition) = broker.replicas.get(topic_id, p.partition) {
                    set_throttles(&partition, topic, node_id);
                    partition.update_config(broker.config.partition_config(&topic.configs, image));
                }
            }
        }
        if delta.broker_configs_changed {
            broker.apply_dynamic_configs(image);
            // A dynamic topic default (`log.retention.ms`, `message.max.bytes`, ...)
            // may have changed: every hosted partition takes its config again.
            for partition in broker.replicas.all() {
                if let Some(topic) = image.topic_by_id(&partition.topic_id) {
                    partition.update_config(broker.config.partition_config(&topic.configs, image));
                }
            }
        }
        if delta.brokers_changed {
            // A leader may have moved to a new endpoint: point its followers there.
            let everything = MetadataDelta::full(image).local_changes(node_id, image);
            for local in &everything.followers {
                self.apply_partition(&broker, image, local);
            }
        }
    }
}

/// This broker's registration of the partition, as the controller assigned it.
fn registration(node_id: i32, local: &LocalPartition) -> LeaderAndIsr {
    let p = &local.partition;
    LeaderAndIsr {
        local_id: node_id,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
    }
}

/// Open (or create) the partition's log with its topic's configs; the partition as
/// it is if already open.
fn open_partition(
    broker: &Broker,
    image: &MetadataImage,
    local: &LocalPartition,
) -> Result<Arc<Partition>, ottla_replica::ReplicaError> {
    let topic = &local.topic;
    if let Some(open) = broker
        .replicas
        .get(&topic.topic_id, local.partition.partition)
    {
        return Ok(open);
    }
    broker.replicas.ensure_partition(
        &topic.name,
        topic.topic_id,
        local.partition.partition,
        broker.config.partition_config(&topic.configs, image),
        registration(broker.config.node_id, local),
    )
}

/// How often opening many logs reports its progress.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// From this many logs opened by one delta (a start-up with many partitions), progress
/// is also reported at every tenth of the way.
const PROGRESS_STEPS_FROM_LOGS: usize = 1_000;

/// Counts logs opened by one delta and logs how far it got every [`PROGRESS_INTERVAL`],
/// and every tenth of the way when there are many.
struct LoadProgress {
    total: usize,
    done: usize,
    started: std::time::Instant,
    last_report: std::time::Instant,
}

impl LoadProgress {
    fn new(total: usize) -> LoadProgress {
        let now = std::time::Instant::now();
        LoadProgress {
            total,
            done: 0,
            started: now,
            last_report: now,
        }
    }

    fn one_more(&mut self, node_id: i32) {
        self.done += 1;
        let tenth = self.total / 10;
        let step_reached =
            self.total >= PROGRESS_STEPS_FROM_LOGS && self.done.is_multiple_of(tenth);
        if step_reached || self.last_report.elapsed() >= PROGRESS_INTERVAL {
            self.last_report = std::time::Instant::now();
            tracing::info!(
                "[LogManager id={node_id}] Loading logs: {} of {} done in {} ms",
                self.done,
                self.total,
                self.started.elapsed().as_millis()
            );
        }
    }
}

/// Apply the topic's throttled-replica lists to this broker's replica of `partition`
/// (Kafka's `TopicConfigHandler` marking throttled partitions for the quota managers).
fn set_throttles(partition: &Partition, topic: &TopicInfo, node_id: i32) {
    let listed = |key: &str| {
        is_throttled_replica(
            topic.configs.get(key).map(String::as_str),
            partition.index,
            node_id,
        )
    };
    partition.throttles.set(
        listed("leader.replication.throttled.replicas"),
        listed("follower.replication.throttled.replicas"),
    );
}

/// This broker no longer leads `topic`-`partition` (from `leader_epoch` on): if it is
/// a coordinator's internal partition, unload that shard.
fn resign_coordinator(broker: &Broker, topic: &str, partition: i32, leader_epoch: i32) {
    if topic == OFFSETS_TOPIC {
        broker.groups.on_resigned(partition, leader_epoch);
    } else if topic == TRANSACTION_STATE_TOPIC {
        broker.txns.on_resigned(partition, leader_epoch);
    }
}
