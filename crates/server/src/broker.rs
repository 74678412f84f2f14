//! The broker's shared state and its lifecycle: start-up (metadata, logs, recovery),
//! background duties (retention, recovery-point checkpoints) and clean shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ottla_controller::{BrokerInfo, Controller, ControllerConfig, TopicInfo};
use ottla_replica::ReplicaManager;
use parking_lot::Mutex;

use crate::config::BrokerConfig;
use crate::group_runtime::GroupRuntime;

/// Producer ids are reserved from the controller in blocks, as Kafka does, so a
/// InitProducerId costs a metadata write only once per block.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// Name of the metadata directory inside the first log dir.
pub const METADATA_DIR_NAME: &str = "__ottla_metadata";
/// Kafka's `meta.properties`, identifying the node and cluster a log dir belongs to.
pub const META_PROPERTIES: &str = "meta.properties";

/// The next producer ids this broker may hand out: `[next, end)`.
#[derive(Debug, Default)]
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub controller: Controller,
    pub replicas: ReplicaManager,
    pub groups: Arc<GroupRuntime>,
    producer_ids: Mutex<ProducerIdBlock>,
    pub started_at: Instant,
}

impl Broker {
    /// Open metadata and logs (recovering them if the last shutdown was not clean).
    pub fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let started_at = Instant::now();
        let first_dir = config.log_dirs[0].clone();
        for dir in &config.log_dirs {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create log dir {}", dir.display()))?;
        }
        // First: this takes each log dir's lock, so a second broker pointed at the same
        // directories stops here, before it can touch the metadata log.
        let replicas =
            ReplicaManager::open(config.log_dirs.clone()).context("cannot open log dirs")?;
        let controller = Controller::open(ControllerConfig {
            node_id: config.node_id,
            metadata_dir: first_dir.join(METADATA_DIR_NAME),
            default_num_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
        })
        .context("cannot open the metadata log")?;
        let cluster_id = controller.image().cluster_id.clone().unwrap_or_default();
        for dir in &config.log_dirs {
            check_meta_properties(dir, config.node_id, &cluster_id)?;
        }
        let advertised = &config.advertised_listeners[0];
        controller
            .register_broker(BrokerInfo {
                node_id: config.node_id,
                host: advertised.host.clone(),
                port: i32::from(advertised.port),
                rack: config.explicit.get("broker.rack").cloned(),
            })
            .context("cannot register the broker")?;
        let groups = Arc::new(GroupRuntime::new(
            config.group.clone(),
            config.offsets_topic_num_partitions,
        ));
        let broker = Arc::new(Broker {
            config,
            controller,
            replicas,
            groups,
            producer_ids: Mutex::new(ProducerIdBlock::default()),
            started_at,
        });
        let image = broker.controller.image();
        let mut partitions = 0;
        for topic in image.topics() {
            broker.ensure_topic_partitions(topic)?;
            partitions += topic.partitions.len();
        }
        broker.replicas.delete_unclaimed_dirs();
        broker
            .groups
            .load(&broker)
            .context("cannot load consumer groups")?;
        tracing::info!(
            "Loaded {} partitions of {} topics in {} ms",
            partitions,
            image.topic_count(),
            broker.started_at.elapsed().as_millis()
        );
        Ok(broker)
    }

    /// Open (or create) the logs of every partition of `topic` led by this broker.
    pub fn ensure_topic_partitions(&self, topic: &TopicInfo) -> anyhow::Result<()> {
        let config = self.config.partition_config(&topic.configs);
        for p in &topic.partitions {
            if p.leader != self.config.node_id {
                continue;
            }
            self.replicas
                .ensure_partition(
                    &topic.name,
                    topic.topic_id,
                    p.partition,
                    config.clone(),
                    p.leader_epoch,
                    p.isr.clone(),
                )
                .with_context(|| format!("cannot open partition {}-{}", topic.name, p.partition))?;
        }
        Ok(())
    }

    /// A fresh producer id for InitProducerId.
    pub fn next_producer_id(&self) -> anyhow::Result<i64> {
        let mut block = self.producer_ids.lock();
        if block.next >= block.end {
            let start = self
                .controller
                .allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)?;
            *block = ProducerIdBlock {
                next: start,
                end: start + PRODUCER_ID_BLOCK_SIZE,
            };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// Flush everything and leave the clean-shutdown marker.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.replicas
            .checkpoint(true)
            .context("final checkpoint failed")?;
        Ok(())
    }
}

/// Create `meta.properties` in a new log dir, or check an existing one belongs to this
/// node and cluster (Kafka refuses to start on a log dir of another node).
fn check_meta_properties(dir: &Path, node_id: i32, cluster_id: &str) -> anyhow::Result<()> {
    let path = dir.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props: BTreeMap<String, String> = crate::config::properties::parse(&text);
            if let Some(stored) = props.get("node.id") {
                if stored.trim() != node_id.to_string() {
                    anyhow::bail!(
                        "Stored node id {} in {} doesn't match the configured node.id {node_id}",
                        stored.trim(),
                        path.display()
                    );
                }
            }
            if let Some(stored) = props.get("cluster.id") {
                if stored.trim() != cluster_id {
                    anyhow::bail!(
                        "Invalid cluster.id in {}: expected {cluster_id}, found {}; the log dir belongs to another cluster",
                        path.display(),
                        stored.trim()
                    );
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = format!(
                "#\n#Written by Ottla\nversion=1\nnode.id={node_id}\ncluster.id={cluster_id}\n"
            );
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
