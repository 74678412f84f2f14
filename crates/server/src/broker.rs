//! The broker's shared state and its lifecycle: start-up (metadata, logs, recovery),
//! background duties (retention, recovery-point checkpoints) and clean shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ottla_controller::{
    Controller, ControllerConfig, ControllerError, CreateTopicSpec, QuorumSettings, TopicInfo,
    OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};
use ottla_coordinator::group::GroupCoordinatorService;
use ottla_coordinator::txn::TxnCoordinatorService;
use ottla_coordinator::SystemClock;
use ottla_replica::fetcher::ReplicaFetcherManager;
use ottla_replica::quota::ReplicationQuota;
use ottla_replica::ReplicaManager;

use crate::alter_partition::AlterPartitionManager;
use crate::config::BrokerConfig;
use crate::metadata_publisher::BrokerMetadataPublisher;

/// How long a metadata change waits for the controller quorum (Kafka's brokers wait
/// for the controller up to their `request.timeout.ms`, 30 s).
const CONTROLLER_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Name of the metadata directory inside the first log dir.
pub const METADATA_DIR_NAME: &str = "__ottla_metadata";
/// Kafka's `meta.properties`, identifying the node and cluster a log dir belongs to.
pub const META_PROPERTIES: &str = "meta.properties";

pub struct Broker {
    pub config: BrokerConfig,
    pub controller: Arc<Controller>,
    pub replicas: ReplicaManager,
    /// Copies the partitions this broker follows from their leaders.
    pub fetchers: ReplicaFetcherManager,
    /// Sends the ISR changes of the partitions this broker leads to the controller.
    pub alter_partition: AlterPartitionManager,
    /// `leader.replication.throttled.rate`: what this broker sends to out-of-sync
    /// followers of throttled partitions.
    pub leader_quota: Arc<ReplicationQuota>,
    /// `follower.replication.throttled.rate`: what its fetchers copy of throttled
    /// partitions (the fetchers hold it too).
    pub follower_quota: Arc<ReplicationQuota>,
    pub groups: GroupCoordinatorService,
    /// The transaction coordinator, for the `__transaction_state` partitions led here.
    pub txns: TxnCoordinatorService,
    /// Asks other brokers' transaction coordinators before the first transactional
    /// batch of a transaction is appended here.
    pub txn_verifier: crate::txn_verification::TxnVerifier,
    producer_ids: ottla_txn::ProducerIdManager,
    pub started_at: Instant,
    /// Request counts for the metrics endpoint (see [`crate::metrics`]).
    pub metrics: crate::metrics::BrokerMetrics,
    /// Set once a clean shutdown begins: heartbeats stop, so that the controlled
    /// shutdown's fencing is not undone by one more heartbeat.
    shutting_down: std::sync::atomic::AtomicBool,
    /// `authorizer.class.name`'s authorizer, fed the ACLs by the metadata publisher.
    pub authorizer: Option<Arc<crate::security::authorizer::Authorizer>>,
    /// Applies committed metadata here; closed first when the broker stops.
    publisher: std::sync::OnceLock<Arc<BrokerMetadataPublisher>>,
    /// The SSL and SASL_SSL listeners' TLS settings (set once the listeners are up),
    /// reloaded on SIGHUP and when this broker's dynamic key store configs change.
    pub tls_listeners: std::sync::OnceLock<Vec<Arc<crate::security::tls::ListenerTls>>>,
    /// This broker's dynamic configs as the metadata publisher last applied them (None
    /// before the first publication), held through a TLS reload: reloads are
    /// serialised, and a SIGHUP uses what the publisher applied, never an older image.
    tls_dynamic: parking_lot::Mutex<Option<std::collections::BTreeMap<String, String>>>,
}

/// Open this node's part of the metadata: the embedded single-node controller, a voter
/// of the quorum (`process.roles` with `controller`), or an observer following it
/// (`process.roles=broker`). A quorum node starts only on directories `ottla format`
/// prepared; their cluster id is the one the quorum's first change records.
pub fn open_controller(config: &BrokerConfig, first_dir: &Path) -> anyhow::Result<Arc<Controller>> {
    let transport = if config.quorum_voters.is_empty() {
        ottla_controller::QuorumTransport::default()
    } else {
        crate::security::controller_transport(config)
            .context("cannot set up the controller listener's security")?
    };
    let quorum = (!config.quorum_voters.is_empty()).then(|| QuorumSettings {
        voters: config
            .quorum_voters
            .iter()
            .map(|v| (v.node_id, v.host.clone(), v.port))
            .collect(),
        listen: config
            .controller_listener
            .as_ref()
            .map(|l| l.bind_address())
            .unwrap_or_default(),
        write_timeout: CONTROLLER_WRITE_TIMEOUT,
        broker_session_timeout: std::time::Duration::from_millis(config.broker_session_timeout_ms),
        unclean_leader_election: config.unclean_leader_election,
        leader_rebalance_interval: config
            .leader_rebalance_interval_s
            .map(std::time::Duration::from_secs),
        observer: !config.roles.controller,
        transport,
    });
    let formatted_cluster_id = match quorum {
        Some(_) => Some(crate::storage::formatted_cluster_id(
            &config.log_dirs,
            config.node_id,
        )?),
        None => None,
    };
    Controller::open(ControllerConfig {
        node_id: config.node_id,
        cluster_id: formatted_cluster_id,
        metadata_dir: first_dir.join(METADATA_DIR_NAME),
        default_num_partitions: config.num_partitions,
        default_replication_factor: config.default_replication_factor,
        quorum,
    })
    .context("cannot open the metadata log")
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
        let controller = open_controller(&config, &first_dir)?;
        // Brokers reach each other as the inter-broker listener asks (TLS, SASL), with
        // the key stores this broker's dynamic configs name, if any (as recorded in the
        // local metadata log: a misconfiguration stops the start before registering).
        let mut fetcher_config = config.replica_fetcher.clone();
        let dynamic = controller
            .image()
            .broker_configs
            .get(&Some(config.node_id))
            .cloned();
        fetcher_config.client.security =
            crate::security::inter_broker_client(&config, dynamic.as_ref())
                .context("cannot set up the inter-broker client")?;
        let registration = config.registration(&|_| None);
        // With a quorum, registering waits for it to form (the other voters may not be
        // up yet): a broker keeps trying, as Kafka's does, and says so.
        let mut attempts = 0u32;
        loop {
            match controller.register_broker(registration.clone()) {
                Ok(()) => break,
                Err(e @ (ControllerError::QuorumUnavailable(_) | ControllerError::NotActive)) => {
                    attempts += 1;
                    tracing::info!(
                        "[BrokerLifecycleManager id={}] Unable to register the broker (attempt {attempts}): {e}; retrying",
                        config.node_id
                    );
                }
                Err(e) => return Err(e).context("cannot register the broker"),
            }
        }
        let cluster_id = controller.image().cluster_id.clone().unwrap_or_default();
        for dir in &config.log_dirs {
            crate::storage::check_meta_properties(dir, config.node_id, &cluster_id)?;
        }
        let groups = GroupCoordinatorService::new(
            config.group.clone(),
            Arc::new(SystemClock),
            config.offsets_commit_timeout_ms,
        )
        .with_topics(consumer_group_topics(controller.clone()));
        let runtime = tokio::runtime::Handle::try_current()
            .context("the broker starts inside a tokio runtime")?;
        let quota = |rate: u64| {
            let q = ReplicationQuota::new(
                config.replication_quota.window_num,
                config.replication_quota.window_size_ms,
            );
            q.set_limit(rate);
            Arc::new(q)
        };
        let leader_quota = quota(config.replication_quota.leader_rate);
        let follower_quota = quota(config.replication_quota.follower_rate);
        let fetchers =
            ReplicaFetcherManager::new(fetcher_config.clone(), runtime, follower_quota.clone());
        let txn_config = config.txn.clone();
        let txn_write_timeout_ms = config.offsets_commit_timeout_ms;
        let marker_client = fetcher_config.client.clone();
        let txn_verifier = crate::txn_verification::TxnVerifier::new(marker_client.clone());
        let config_authorizer = config
            .authorizer
            .clone()
            .map(|c| Arc::new(crate::security::authorizer::Authorizer::new(c)));
        // InitProducerId's ids come in blocks the controller reserves.
        let producer_ids = {
            let controller = controller.clone();
            ottla_txn::ProducerIdManager::new(Box::new(move |count| {
                controller
                    .allocate_producer_ids(count)
                    .map_err(|e| e.to_string())
            }))
        };
        let broker = Arc::new_cyclic(|weak| Broker {
            txn_verifier,
            txns: TxnCoordinatorService::new(
                txn_config,
                Arc::new(SystemClock),
                txn_write_timeout_ms,
                Arc::new(crate::txn_markers::TxnMarkerChannel::new(
                    weak.clone(),
                    marker_client,
                )),
            ),
            config,
            controller,
            replicas,
            fetchers,
            alter_partition: AlterPartitionManager::default(),
            leader_quota,
            follower_quota,
            groups,
            producer_ids,
            started_at,
            metrics: crate::metrics::BrokerMetrics::default(),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            publisher: std::sync::OnceLock::new(),
            tls_listeners: std::sync::OnceLock::new(),
            tls_dynamic: parking_lot::Mutex::new(None),
            authorizer: config_authorizer,
        });
        // The whole image, as one delta: opens every partition led here and loads the
        // coordinator shards of the internal ones, as any later change would.
        let publisher = Arc::new(BrokerMetadataPublisher::new(Arc::downgrade(&broker)));
        let _ = broker.publisher.set(publisher.clone());
        broker.controller.register_publisher(publisher.clone());
        let failures = publisher.take_failures();
        if !failures.is_empty() {
            anyhow::bail!("cannot open partitions: {}", failures.join("; "));
        }
        broker.replicas.delete_unclaimed_dirs();
        let image = broker.controller.image();
        tracing::info!(
            "Loaded {} partitions of {} topics in {} ms",
            broker.replicas.all().len(),
            image.topic_count(),
            broker.started_at.elapsed().as_millis()
        );
        Ok(broker)
    }

    /// Rebuild each TLS listener whose settings or key and trust store files changed
    /// (`why` says what asked: SIGHUP, a dynamic config). `published`: the image the
    /// metadata publisher is applying (it is not the controller's current image yet);
    /// None (SIGHUP) reuses the dynamic configs it last applied. A listener whose new
    /// files do not load keeps its current certificate, and the error is logged.
    pub fn reload_tls(&self, published: Option<&ottla_controller::MetadataImage>, why: &str) {
        let Some(listeners) = self.tls_listeners.get() else {
            return;
        };
        let mut dynamic = self.tls_dynamic.lock();
        let own = |image: &ottla_controller::MetadataImage| {
            image
                .broker_configs
                .get(&Some(self.config.node_id))
                .cloned()
                .unwrap_or_default()
        };
        match published {
            Some(image) => *dynamic = Some(own(image)),
            None if dynamic.is_none() => *dynamic = Some(own(&self.controller.image())),
            None => {}
        }
        let settings = crate::security::tls::SslSettings {
            config: &self.config,
            dynamic: dynamic.as_ref(),
        };
        for tls in listeners {
            match tls.reload(&settings) {
                Ok(true) => tracing::info!(
                    "Reloaded the SSL key and trust stores of listener {} ({why})",
                    tls.listener()
                ),
                Ok(false) => tracing::debug!(
                    "The SSL key and trust stores of listener {} are unchanged ({why})",
                    tls.listener()
                ),
                Err(e) => tracing::error!(
                    "Cannot reload the SSL key store of listener {} ({why}), keeping the current one: {e:#}",
                    tls.listener()
                ),
            }
        }
    }

    /// Apply the dynamic broker configs in `image` that concern this broker (its own,
    /// else the cluster-wide default, else the static value): the TLS listeners' key
    /// stores (per broker only) and the replication throttle rates.
    pub fn apply_dynamic_configs(&self, image: &ottla_controller::MetadataImage) {
        self.reload_tls(Some(image), "dynamic broker config");
        let id = self.config.node_id;
        let rate = |key: &str, fallback: u64| {
            image
                .dynamic_broker_config(id, key)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(fallback)
        };
        for (key, quota, fallback) in [
            (
                "leader.replication.throttled.rate",
                &self.leader_quota,
                self.config.replication_quota.leader_rate,
            ),
            (
                "follower.replication.throttled.rate",
                &self.follower_quota,
                self.config.replication_quota.follower_rate,
            ),
        ] {
            let limit = rate(key, fallback);
            if quota.limit() != limit {
                quota.set_limit(limit);
                tracing::info!("[Broker id={id}] Updated {key} to {limit}");
            }
        }
    }

    /// Whether every partition of `topic` that this broker leads is open here (the
    /// metadata publisher opens them; a log directory failure leaves one closed).
    pub fn hosts_led_partitions(&self, topic: &TopicInfo) -> bool {
        topic
            .partitions
            .iter()
            .filter(|p| p.leader == self.config.node_id)
            .all(|p| self.replicas.get(&topic.topic_id, p.partition).is_some())
    }

    /// Create `__consumer_offsets` if it does not exist yet (Kafka does this on the
    /// first FindCoordinator for a group, or a Metadata request that names it). The
    /// metadata publisher opens its partitions and loads their (empty) group shards
    /// before the topic becomes visible.
    pub fn ensure_offsets_topic(&self) -> anyhow::Result<Arc<TopicInfo>> {
        if let Some(t) = self.controller.image().topic(OFFSETS_TOPIC) {
            return Ok(t.clone());
        }
        let config = &self.config;
        let spec = CreateTopicSpec {
            name: OFFSETS_TOPIC.into(),
            num_partitions: config.offsets_topic_num_partitions,
            replication_factor: config.offsets_topic_replication_factor,
            assignments: BTreeMap::new(),
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("compression.type".to_string(), "producer".to_string()),
                (
                    "segment.bytes".to_string(),
                    config.offsets_topic_segment_bytes.to_string(),
                ),
            ]
            .into(),
        };
        self.create_internal_topic(&spec)
    }

    /// Create `__transaction_state` if it does not exist yet (Kafka does this on the
    /// first FindCoordinator for a transactional id), with the
    /// `transaction.state.log.*` settings.
    pub fn ensure_transaction_state_topic(&self) -> anyhow::Result<Arc<TopicInfo>> {
        if let Some(t) = self.controller.image().topic(TRANSACTION_STATE_TOPIC) {
            return Ok(t.clone());
        }
        let config = &self.config;
        let spec = CreateTopicSpec {
            name: TRANSACTION_STATE_TOPIC.into(),
            num_partitions: config.transaction_state_log_num_partitions,
            replication_factor: config.transaction_state_log_replication_factor,
            assignments: BTreeMap::new(),
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("compression.type".to_string(), "uncompressed".to_string()),
                (
                    "min.insync.replicas".to_string(),
                    config.transaction_state_log_min_isr.to_string(),
                ),
                (
                    "segment.bytes".to_string(),
                    config.transaction_state_log_segment_bytes.to_string(),
                ),
            ]
            .into(),
        };
        self.create_internal_topic(&spec)
    }

    /// Create a coordinator's internal topic (a concurrent creator may win) and check
    /// that this broker opened the partitions it leads.
    fn create_internal_topic(&self, spec: &CreateTopicSpec) -> anyhow::Result<Arc<TopicInfo>> {
        let name = &spec.name;
        let topic = match self.controller.create_topic(spec, false) {
            Ok(t) => t,
            Err(e) if e.is_topic_already_exists() => self
                .controller
                .image()
                .topic(name)
                .cloned()
                .with_context(|| format!("{name} vanished"))?,
            Err(e) => return Err(e).with_context(|| format!("cannot create {name}")),
        };
        anyhow::ensure!(
            self.hosts_led_partitions(&topic),
            "cannot open the partitions of {name}"
        );
        Ok(topic)
    }

    /// A fresh producer id for InitProducerId.
    pub fn next_producer_id(&self) -> anyhow::Result<i64> {
        self.producer_ids.next().map_err(anyhow::Error::msg)
    }

    /// Tell the controller this broker is alive (blocking; quorum nodes only). Stops
    /// once a clean shutdown has begun.
    pub fn heartbeat(&self) -> Result<(), String> {
        if self
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(());
        }
        self.controller
            .broker_heartbeat(self.config.node_id)
            .map_err(|e| e.to_string())
    }

    /// Controlled shutdown (blocking; quorum nodes only): stop heartbeating and ask the
    /// controller to move this broker's leaderships away and take it out of the ISRs,
    /// so clients and followers move on at once instead of after a session timeout.
    pub fn controlled_shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        if !self.controller.has_quorum() {
            return;
        }
        let node_id = self.config.node_id;
        if self.controller.active_controller().is_none() {
            tracing::warn!(
                "[BrokerLifecycleManager id={node_id}] No active controller: shutting down without a controlled shutdown."
            );
            return;
        }
        tracing::info!("[BrokerLifecycleManager id={node_id}] Beginning controlled shutdown.");
        match self.controller.controlled_shutdown(node_id) {
            Ok(()) => tracing::info!(
                "[BrokerLifecycleManager id={node_id}] The controller has moved this broker's partitions away."
            ),
            Err(e) => tracing::warn!(
                "[BrokerLifecycleManager id={node_id}] Controlled shutdown failed, shutting down anyway: {e}"
            ),
        }
    }

    /// Stop applying metadata changes to this broker (the first step of stopping it):
    /// returns once no change is being applied.
    pub fn stop_metadata_publishing(&self) {
        if let Some(publisher) = self.publisher.get() {
            publisher.close();
        }
    }

    /// Flush everything and leave the clean-shutdown marker.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.fetchers.shutdown();
        let flushing = std::time::Instant::now();
        let logs = self.replicas.all();
        let bytes: u64 = logs.iter().map(|p| p.size_bytes()).sum();
        let count = logs.len();
        drop(logs);
        self.replicas
            .checkpoint(true)
            .context("final checkpoint failed")?;
        tracing::info!(
            "Flushed {count} logs ({bytes} bytes) and wrote their recovery points, high watermarks and the clean shutdown marker in {} ms",
            flushing.elapsed().as_millis()
        );
        self.controller.shutdown();
        Ok(())
    }
}

/// The topics consumer groups may subscribe to, from the metadata image: every topic but
/// the internal ones (Kafka's regex resolution skips them too; naming one gets nothing
/// assigned). Rebuilt only when the image changed (its offset moved), so a heartbeat
/// costs a lock and a pointer copy.
fn consumer_group_topics(controller: Arc<Controller>) -> ottla_coordinator::group::TopicsSource {
    use ottla_group::consumer::topics::TopicsImage;
    let cache: std::sync::Mutex<Option<(u64, Arc<TopicsImage>)>> = std::sync::Mutex::new(None);
    Arc::new(move || {
        let image = controller.image();
        let mut cached = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((offset, topics)) = cached.as_ref() {
            if *offset == image.offset {
                return topics.clone();
            }
        }
        let topics = Arc::new(
            TopicsImage::new(
                image
                    .topics()
                    .filter(|t| !t.is_internal())
                    .map(|t| (t.name.clone(), t.topic_id, t.partitions.len() as u32)),
            )
            .at_version(image.offset as i64),
        );
        *cached = Some((image.offset, topics.clone()));
        topics
    })
}
