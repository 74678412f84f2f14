//! `ottla`: a Kafka-compatible message broker.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ottla::serve;

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
    /// Format the log directories of a quorum node (Kafka's `kafka-storage format`).
    Format {
        /// The cluster id (`ottla random-uuid` makes one).
        #[arg(
            short = 't',
            long = "cluster-id",
            value_name = "ID",
            allow_hyphen_values = true
        )]
        cluster_id: String,
        /// The node's server.properties.
        #[arg(short = 'c', long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Set a config key, overriding the file.
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Skip directories that are already formatted instead of failing.
        #[arg(short = 'g', long)]
        ignore_formatted: bool,
        /// Accepted for Kafka's scripts; the quorum comes from controller.quorum.voters.
        #[arg(short = 's', long)]
        standalone: bool,
        /// Accepted for Kafka's scripts; the quorum comes from controller.quorum.voters.
        #[arg(short = 'I', long, value_name = "VOTERS")]
        initial_controllers: Option<String>,
        /// Accepted for Kafka's scripts; the quorum comes from controller.quorum.voters.
        #[arg(short = 'N', long)]
        no_initial_controllers: bool,
        /// Accepted for Kafka's scripts.
        #[arg(short = 'r', long, value_name = "VERSION")]
        release_version: Option<String>,
        /// Accepted for Kafka's scripts.
        #[arg(short = 'f', long = "feature", value_name = "FEATURE=LEVEL")]
        features: Vec<String>,
    },
    /// Print a new random cluster id (Kafka's `kafka-storage random-uuid`).
    RandomUuid,
}

/// `info`, without openraft's own lines (one per retry to an unreachable voter); the
/// controller logs the quorum's transitions itself. `RUST_LOG` overrides it.
const DEFAULT_LOG_FILTER: &str = "info,openraft=off";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let outcome = match cli.command {
        Command::Serve { config, overrides } => serve(config, overrides),
        Command::Format {
            cluster_id,
            config,
            overrides,
            ignore_formatted,
            standalone,
            initial_controllers,
            no_initial_controllers,
            release_version,
            features,
        } => ottla::storage::format(ottla::storage::FormatOptions {
            cluster_id,
            config,
            overrides,
            ignore_formatted,
            standalone,
            initial_controllers,
            no_initial_controllers,
            release_version,
            features,
        }),
        Command::RandomUuid => {
            println!("{}", ottla::storage::random_uuid());
            Ok(())
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("Fatal error: {e:#}");
            eprintln!("ottla: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
