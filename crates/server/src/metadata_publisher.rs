//! The broker's [`MetadataPublisher`]: applies committed metadata to this broker
//! (Kafka's `BrokerMetadataPublisher` and `ReplicaManager.applyDelta`). It opens the
//! logs of the partitions this broker now leads, deletes the logs of deleted topics,
//! and loads or unloads the coordinator shards of internal partitions. Handlers only
//! ask the controller for changes; what happens to replicas happens here, in commit
//! order, the same way at start-up (the whole image as one delta) and afterwards.

use std::sync::{Arc, Weak};

use ottla_controller::{
    LocalPartition, MetadataDelta, MetadataImage, MetadataPublisher, OFFSETS_TOPIC,
};
use ottla_replica::LeaderAndIsr;
use parking_lot::Mutex;

use crate::broker::Broker;
use crate::coordinator_partition::CoordinatorPartitionLog;

pub struct BrokerMetadataPublisher {
    /// The broker owns the controller that owns this publisher: a weak link back.
    broker: Weak<Broker>,
    /// Partitions that could not be opened, for start-up to refuse to go on with.
    failures: Mutex<Vec<String>>,
}

impl BrokerMetadataPublisher {
    pub fn new(broker: Weak<Broker>) -> BrokerMetadataPublisher {
        BrokerMetadataPublisher {
            broker,
            failures: Mutex::new(Vec::new()),
        }
    }

    /// The partitions that failed to open since the last call.
    pub fn take_failures(&self) -> Vec<String> {
        std::mem::take(&mut *self.failures.lock())
    }

    fn become_leader(&self, broker: &Broker, local: &LocalPartition) {
        let topic = &local.topic;
        let p = &local.partition;
        let config = broker.config.partition_config(&topic.configs);
        // Opening an existing partition again is a no-op; a new leader epoch for an
        // open partition is applied once partitions change roles (the replication step).
        let opened = broker.replicas.ensure_partition(
            &topic.name,
            topic.topic_id,
            p.partition,
            config,
            LeaderAndIsr {
                local_id: broker.config.node_id,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            },
        );
        let partition = match opened {
            Ok(partition) => partition,
            Err(e) => {
                tracing::error!(
                    "[Broker id={}] Failed to create log for {}-{}: {e}",
                    broker.config.node_id,
                    topic.name,
                    p.partition
                );
                self.failures
                    .lock()
                    .push(format!("{}-{}: {e}", topic.name, p.partition));
                return;
            }
        };
        if topic.name == OFFSETS_TOPIC {
            // The shard loads in the background (at once if the partition is empty).
            drop(broker.groups.on_elected(
                p.partition,
                topic.partitions.len() as i32,
                p.leader_epoch,
                Arc::new(CoordinatorPartitionLog(partition)),
            ));
        }
    }
}

impl MetadataPublisher for BrokerMetadataPublisher {
    fn name(&self) -> &'static str {
        "BrokerMetadataPublisher"
    }

    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let node_id = broker.config.node_id;
        let changes = delta.local_changes(node_id, image);
        for topic in &changes.deleted_topics {
            if topic.name == OFFSETS_TOPIC {
                for p in &topic.partitions {
                    broker.groups.on_resigned(p.partition, i32::MAX);
                }
            }
            broker.replicas.remove_topic(&topic.topic_id);
        }
        for local in &changes.leaders {
            self.become_leader(&broker, local);
        }
        for local in &changes.followers {
            tracing::warn!(
                "[Broker id={node_id}] Partition {}-{} has leader {} and a replica here, but follower replicas are not supported yet; it is offline on this broker",
                local.topic.name,
                local.partition.partition,
                local.partition.leader
            );
        }
    }
}
