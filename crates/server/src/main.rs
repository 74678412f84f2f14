//! `ottla`: a Kafka-compatible message broker.

mod broker;
mod config;
mod handlers;
mod network;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// Retention runs on this period unless `log.retention.check.interval.ms` says otherwise;
/// recovery points are checkpointed on this one (Kafka's
/// `log.flush.offset.checkpoint.interval.ms` default).
const RECOVERY_POINT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(name = "ottla", version, about = "A Kafka-compatible message broker", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (node id 1, broker and controller in one process by default).
    Serve {
        /// A Kafka-style server.properties file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Set a config key, overriding the file: --override log.dirs=/var/lib/ottla
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match cli.command {
        Command::Serve { config, overrides } => match serve(config, overrides) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("Fatal error: {e:#}");
                eprintln!("ottla: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

fn load_config(file: Option<PathBuf>, overrides: Vec<String>) -> anyhow::Result<BrokerConfig> {
    let mut values: BTreeMap<String, String> = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            config::properties::parse(&text)
        }
        None => BTreeMap::new(),
    };
    for o in overrides {
        let (key, value) =
            o.split_once('=').with_context(|| format!("--override {o}: expected KEY=VALUE"))?;
        values.insert(key.trim().to_string(), value.to_string());
    }
    BrokerConfig::from_values(values).map_err(|e| anyhow::anyhow!(e))
}

fn serve(config_file: Option<PathBuf>, overrides: Vec<String>) -> anyhow::Result<()> {
    let config = load_config(config_file, overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ottla").build()?;
    runtime.block_on(run(config))
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let broker = tokio::task::spawn_blocking(move || Broker::start(config)).await??;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listener in &broker.config.listeners {
        let addr = format!("{}:{}", if listener.host.is_empty() { "0.0.0.0" } else { &listener.host }, listener.port);
        let socket = TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!("Awaiting socket connections on {}", socket.local_addr()?);
        servers.push(tokio::spawn(network::serve(broker.clone(), socket, shutdown_rx.clone())));
    }
    tracing::info!(
        "Ottla broker {} started (cluster id {}) in {} ms",
        broker.config.node_id,
        broker.controller.image().cluster_id.as_deref().unwrap_or("?"),
        broker.started_at.elapsed().as_millis()
    );
    spawn_background_tasks(broker.clone(), shutdown_rx.clone());
    wait_for_signal().await;
    tracing::info!("Shutting down");
    let _ = shutdown_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown()).await??;
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

fn spawn_background_tasks(broker: std::sync::Arc<Broker>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let retention_every = Duration::from_millis(broker.config.log_retention_check_interval_ms);
    let b = broker.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(retention_every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let b = b.clone();
            let _ = tokio::task::spawn_blocking(move || b.replicas.apply_retention(ottla_replica::partition::now_ms())).await;
        }
    });
    let mut stop = shutdown;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECOVERY_POINT_CHECKPOINT_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let b = broker.clone();
            match tokio::task::spawn_blocking(move || b.replicas.checkpoint(false)).await {
                Ok(Err(e)) => tracing::warn!("Recovery point checkpoint failed: {e}"),
                Err(e) => tracing::warn!("Recovery point checkpoint task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
    });
}
