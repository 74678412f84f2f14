//! The Ottla broker as a library: configuration, the broker's state, the network
//! layer and one handler per Kafka API. `main.rs` is the command line around it; the
//! integration tests start brokers in-process through [`start`].

pub mod alter_partition;
pub mod broker;
pub mod config;
pub mod coordinator_partition;
pub mod dynamic_configs;
pub mod handlers;
pub mod leader_hints;
pub mod metadata_publisher;
pub mod metrics;
pub mod network;
pub mod security;
pub mod storage;
pub mod txn_markers;
pub mod txn_verification;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// Recovery points are checkpointed on this period (Kafka's
/// `log.flush.offset.checkpoint.interval.ms` default).
const RECOVERY_POINT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// High watermarks are checkpointed on this period (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const HIGH_WATERMARK_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// How often a long coordinator load at start-up reports its progress.
const LOAD_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a clean shutdown waits for the controller to move this broker's partitions
/// away before it stops anyway (with no quorum left, nothing can move them).
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Merge a properties file (if any) with `KEY=VALUE` overrides and validate.
pub fn load_config(file: Option<PathBuf>, overrides: Vec<String>) -> anyhow::Result<BrokerConfig> {
    let sources = ConfigSources {
        file,
        overrides,
        ..ConfigSources::default()
    };
    config_from_values(config_values(&sources)?.values)
}

/// Where `ottla serve` takes its config values, lowest precedence first (see
/// [`config::env::layer`]).
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--config`: a Kafka-style properties file.
    pub file: Option<PathBuf>,
    /// `--default KEY=VALUE`: an image's own settings, over the file's.
    pub defaults: Vec<String>,
    /// `--config-env-prefix`: variables with this prefix set config keys (see
    /// [`config::env`]); without it the environment is not read.
    pub env_prefix: Option<String>,
    /// `--override KEY=VALUE`: over everything else.
    pub overrides: Vec<String>,
}

/// Merged config values, and the keys the environment set.
#[derive(Debug)]
pub struct ConfigValues {
    pub values: BTreeMap<String, String>,
    /// The keys set by environment variables, in the order applied (`None` without
    /// `--config-env-prefix`). Their values are in `values` only: they may be secrets.
    pub env_keys: Option<Vec<String>>,
}

/// The config values of `sources` merged, not yet validated: `main` reads
/// `ottla.log.format` from them before validation logs anything.
pub fn config_values(sources: &ConfigSources) -> anyhow::Result<ConfigValues> {
    let file_values = match &sources.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            config::properties::parse(&text)
        }
        None => BTreeMap::new(),
    };
    let env = match &sources.env_prefix {
        Some(prefix) => Some(config::env::settings(prefix)?),
        None => None,
    };
    let values = config::env::layer(
        file_values,
        &sources.defaults,
        env.as_deref().unwrap_or_default(),
        &sources.overrides,
    )?;
    let env_keys = env.map(|settings| settings.into_iter().map(|s| s.key).collect());
    Ok(ConfigValues { values, env_keys })
}

/// Validate merged config values.
pub fn config_from_values(values: BTreeMap<String, String>) -> anyhow::Result<BrokerConfig> {
    BrokerConfig::from_values(values).map_err(|e| anyhow::anyhow!(e))
}

/// Run a broker until SIGTERM/SIGINT (the `ottla serve` command).
pub fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ottla")
        .build()?;
    let result = runtime.block_on(run(config));
    // Everything durable is done: do not wait for blocking calls still retrying a
    // controller that has no quorum (a heartbeat, a controlled shutdown that gave up).
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// A started broker: its state, bound addresses, and the switch that stops it.
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub addresses: Vec<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Listeners (which close their connections on shutdown) and background tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningBroker {
    /// Stop accepting, close connections, then flush and checkpoint (clean shutdown).
    pub async fn stop(self) -> anyhow::Result<()> {
        tracing::info!("Shutting down");
        let broker = self.broker.clone();
        let controlled = tokio::task::spawn_blocking(move || broker.controlled_shutdown());
        if tokio::time::timeout(CONTROLLED_SHUTDOWN_TIMEOUT, controlled)
            .await
            .is_err()
        {
            tracing::warn!(
                "Controlled shutdown did not finish within {CONTROLLED_SHUTDOWN_TIMEOUT:?}; shutting down anyway"
            );
        }
        let broker = self.halt().await;
        tokio::task::spawn_blocking(move || broker.shutdown()).await??;
        tracing::info!("Shut down completed");
        Ok(())
    }

    /// Stop every task without the final flush and checkpoint: the in-process stand-in
    /// for a crash (tests), which still releases the log directory locks.
    pub async fn crash(self) {
        drop(self.halt().await);
    }

    async fn halt(self) -> Arc<Broker> {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // A request still in flight (a topic created on the blocking pool) or a change
        // from the quorum must not open logs or load shards from here on.
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.stop_metadata_publishing()).await;
        // No follower or coordinator may append once the logs are being closed.
        self.broker.fetchers.shutdown();
        self.broker.groups.runtime().shutdown().await;
        self.broker.txns.runtime().shutdown().await;
        self.broker
    }
}

/// SCRAM credentials as the controller's latest metadata image holds them (so a
/// credential altered through the Admin API works at the next login).
fn scram_lookup(broker: &Arc<Broker>) -> security::sasl::ScramLookup {
    let broker = Arc::downgrade(broker);
    Arc::new(move |user, mechanism| {
        let image = broker.upgrade()?.controller.image();
        let c = image
            .scram_credentials
            .get(&(user.to_string(), mechanism.type_id()))?;
        Some(security::scram::StoredCredential {
            salt: c.salt.clone(),
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
            iterations: c.iterations,
        })
    })
}

/// Open the broker's state and start its listeners and background tasks.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    let broker = tokio::task::spawn_blocking(move || Broker::start(config)).await??;
    // Coordinator shards load before the listeners open, so a client's first group
    // request finds its group (Kafka answers COORDINATOR_LOAD_IN_PROGRESS meanwhile).
    let loading = std::time::Instant::now();
    let groups = broker.groups.runtime();
    let txns = broker.txns.runtime();
    let (shards, txn_shards) = (groups.shard_count(), txns.shard_count());
    loop {
        let both = async {
            groups.wait_for_loads().await;
            txns.wait_for_loads().await;
        };
        if tokio::time::timeout(LOAD_PROGRESS_INTERVAL, both)
            .await
            .is_ok()
        {
            break;
        }
        tracing::info!(
            "Loading coordinators: {} of {shards} offsets partitions and {} of {txn_shards} transaction state partitions loaded in {} ms",
            shards.saturating_sub(groups.loading_count()),
            txn_shards.saturating_sub(txns.loading_count()),
            loading.elapsed().as_millis()
        );
    }
    if shards + txn_shards > 0 {
        tracing::info!(
            "Loaded {shards} of {shards} offsets partitions and {txn_shards} of {txn_shards} transaction state partitions in {} ms",
            loading.elapsed().as_millis()
        );
    }
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut addresses = Vec::new();
    let mut tls = Vec::new();
    for listener in &broker.config.listeners {
        let addr = listener.bind_address();
        let socket = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = socket.local_addr()?;
        // Key stores set through dynamic configs before this start apply from the first
        // connection on (the static ones may be gone since).
        let image = broker.controller.image();
        let security = security::ListenerSecurity::resolve(
            &broker.config,
            image.broker_configs.get(&Some(broker.config.node_id)),
            listener,
            local.port(),
            scram_lookup(&broker),
            broker.authorizer.clone(),
        )
        .with_context(|| format!("cannot secure listener {}", listener.name))?;
        tracing::info!(
            "Awaiting socket connections on {local} (listener {}, {})",
            listener.name,
            listener.security_protocol.name()
        );
        addresses.push(local);
        tls.extend(security.tls.clone());
        tasks.push(tokio::spawn(network::serve(
            broker.clone(),
            socket,
            Arc::new(security),
            shutdown_rx.clone(),
        )));
    }
    let _ = broker.tls_listeners.set(tls);
    if let Some(metrics) = &broker.config.metrics_listener {
        let socket = TcpListener::bind(&metrics.address)
            .await
            .with_context(|| format!("cannot listen for metrics on {}", metrics.address))?;
        tracing::info!(
            "Serving metrics on http://{}{} and health on /health",
            socket.local_addr()?,
            metrics.path
        );
        tasks.push(tokio::spawn(metrics::serve(
            socket,
            Arc::downgrade(&broker),
            metrics.path.clone(),
            shutdown_rx.clone(),
        )));
    }
    // An advertised port of 0 (tests bind ephemeral ports) becomes the bound port, as
    // Kafka registers with its bound ports: other brokers, and this broker's own
    // transaction marker channel, connect to what the registration says.
    if broker
        .config
        .advertised_listeners
        .iter()
        .any(|l| l.port == 0)
    {
        let bound_port = |name: &str| {
            broker
                .config
                .listeners
                .iter()
                .position(|l| l.name == name)
                .and_then(|i| addresses.get(i))
                .map(|a| a.port())
        };
        let info = broker.config.registration(&bound_port);
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.controller.register_broker(info))
            .await?
            .context("cannot register the broker's bound ports")?;
    }
    tracing::info!(
        "Ottla broker {} started (cluster id {}) in {} ms",
        broker.config.node_id,
        broker
            .controller
            .image()
            .cluster_id
            .as_deref()
            .unwrap_or("?"),
        broker.started_at.elapsed().as_millis()
    );
    tasks.extend(spawn_background_tasks(broker.clone(), shutdown_rx));
    Ok(RunningBroker {
        broker,
        addresses,
        shutdown,
        tasks,
    })
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    if !config.roles.broker {
        return run_controller_only(config).await;
    }
    let running = start(config).await?;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the SSL key and trust stores");
                let broker = running.broker.clone();
                // File reads: off the async workers.
                let _ = tokio::task::spawn_blocking(move || broker.reload_tls(None, "SIGHUP")).await;
            }
        }
    }
    running.stop().await
}

/// `process.roles=controller`: a voter of the metadata quorum and nothing else (no
/// client listener, no partitions), as a KRaft controller-only node. Brokers reach it
/// on its CONTROLLER listener.
async fn run_controller_only(config: BrokerConfig) -> anyhow::Result<()> {
    let started_at = std::time::Instant::now();
    let node_id = config.node_id;
    let controller = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let first_dir = config.log_dirs[0].clone();
        std::fs::create_dir_all(&first_dir)
            .with_context(|| format!("cannot create log dir {}", first_dir.display()))?;
        // The directory lock: a second node pointed at the same directory stops here.
        let dirs = ottla_replica::ReplicaManager::open(config.log_dirs.clone())
            .context("cannot open log dirs")?;
        let controller = broker::open_controller(&config, &first_dir)?;
        Ok((controller, dirs))
    })
    .await??;
    tracing::info!(
        "Ottla controller {node_id} started in {} ms",
        started_at.elapsed().as_millis()
    );
    wait_for_signal().await;
    tracing::info!("Shutting down");
    let (controller, dirs) = controller;
    tokio::task::spawn_blocking(move || {
        controller.shutdown();
        drop(dirs);
    })
    .await?;
    tracing::info!("Shut down completed");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Fault injection for the compaction crash test (compat-tests/test_compaction.py):
/// with this set to 1 the broker aborts right after committing a cleaner swap.
pub const FAULT_CRASH_AFTER_CLEANER_SWAP: &str = "OTTLA_FAULT_CRASH_AFTER_CLEANER_SWAP";

fn spawn_background_tasks(
    broker: std::sync::Arc<Broker>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let retention_every = Duration::from_millis(broker.config.log_retention_check_interval_ms);
    let b = broker.clone();
    let retention = spawn_periodic(
        retention_every,
        shutdown.clone(),
        "Log retention",
        move || {
            let expiration = b.config.producer_id_expiration_ms;
            b.replicas
                .apply_retention(ottla_replica::partition::now_ms(), expiration);
            Ok(())
        },
    );
    // Kafka's cleaner threads: each wakes every log.cleaner.backoff.ms and cleans the
    // dirtiest compacted logs until none needs it.
    let mut cleaners = Vec::new();
    if broker.config.log_cleaner_enable {
        let cleaner = std::sync::Arc::new(ottla_replica::cleaner::LogCleaner::new(
            ottla_replica::cleaner::CleanerConfig {
                threads: broker.config.log_cleaner_threads,
                dedupe_buffer_bytes: broker.config.log_cleaner_dedupe_buffer_size,
                crash_after_swap_commit: std::env::var_os(FAULT_CRASH_AFTER_CLEANER_SWAP)
                    .is_some_and(|v| v == "1"),
            },
        ));
        for _ in 0..broker.config.log_cleaner_threads {
            let (b, cleaner, stop) = (broker.clone(), cleaner.clone(), shutdown.clone());
            cleaners.push(spawn_periodic(
                Duration::from_millis(broker.config.log_cleaner_backoff_ms),
                shutdown.clone(),
                "Log cleaner",
                move || {
                    cleaner.clean_dirty_logs(&b.replicas, || *stop.borrow());
                    Ok(())
                },
            ));
        }
    }
    let b = broker.clone();
    let checkpoints = spawn_periodic(
        RECOVERY_POINT_CHECKPOINT_INTERVAL,
        shutdown.clone(),
        "Recovery point checkpoint",
        move || b.replicas.checkpoint(false).map_err(|e| e.to_string()),
    );
    // Kafka's `isr-expiration` task: every half `replica.lag.time.max.ms`, leaders
    // propose dropping followers that fell behind.
    let b = broker.clone();
    let isr_expiration = spawn_periodic(
        Duration::from_millis((broker.config.replica_lag_time_max_ms / 2).max(1) as u64),
        shutdown.clone(),
        "ISR expiration",
        move || {
            let now = ottla_replica::partition::now_ms();
            for partition in b.replicas.all() {
                if let Some(proposal) = partition.maybe_shrink_isr(now) {
                    b.alter_partition.submit(&partition, proposal);
                }
            }
            Ok(())
        },
    );
    let alter_partition = broker
        .alter_partition
        .spawn(broker.clone(), shutdown.clone());
    // Quorum nodes heartbeat to the active controller, which fences a silent broker.
    let heartbeat = broker.controller.has_quorum().then(|| {
        let b = broker.clone();
        spawn_periodic(
            Duration::from_millis(broker.config.broker_heartbeat_interval_ms),
            shutdown.clone(),
            "Broker heartbeat",
            move || b.heartbeat(),
        )
    });
    // Segment files idle for a sweep interval are closed: two sweeps per idle period
    // (a file is closed after one to two halves of it without use).
    let b = broker.clone();
    let idle_files = spawn_periodic(
        Duration::from_millis((broker.config.segment_file_idle_ms / 2).max(1)),
        shutdown.clone(),
        "Idle segment file sweep",
        move || {
            let closed = b.replicas.close_idle_files();
            if closed > 0 {
                tracing::debug!(
                    "Closed {closed} idle segment files ({} open)",
                    ottla_log::open_segment_handles()
                );
            }
            Ok(())
        },
    );
    let high_watermarks = spawn_periodic(
        HIGH_WATERMARK_CHECKPOINT_INTERVAL,
        shutdown,
        "High watermark checkpoint",
        move || {
            broker
                .replicas
                .checkpoint_high_watermarks()
                .map_err(|e| e.to_string())
        },
    );
    let mut tasks = vec![
        retention,
        checkpoints,
        isr_expiration,
        high_watermarks,
        idle_files,
    ];
    tasks.extend(cleaners);
    tasks.extend(alter_partition);
    tasks.extend(heartbeat);
    tasks
}

/// Run `job` every `every` on the blocking pool (it does file I/O) until `stop` flips,
/// logging a failure or a panic as "`what` failed".
fn spawn_periodic(
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    job: impl Fn() -> Result<(), String> + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let job = std::sync::Arc::new(job);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let job = job.clone();
            // A job stuck waiting (a heartbeat to a quorum that is gone) must not hold
            // up shutdown: stop waiting for it; it ends on its own.
            let done = tokio::select! {
                done = tokio::task::spawn_blocking(move || job()) => done,
                _ = stop.changed() => return,
            };
            match done {
                Ok(Err(e)) => tracing::warn!("{what} failed: {e}"),
                Err(e) => tracing::warn!("{what} task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
    })
}
