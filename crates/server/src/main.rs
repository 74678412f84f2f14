//! `ottla`: a Kafka-compatible message broker.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ottla::config::{LogFormat, LOG_FORMAT};

/// `ottla --version`: the release, and the Kafka whose protocol (API keys and versions,
/// record format, configs) it speaks.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (Kafka protocol and configs of Apache Kafka 4.1)"
);

#[derive(Parser)]
#[command(name = "ottla", version = VERSION, about = "A Kafka-compatible message broker", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (node id 1, broker and controller in one process by default).
    Serve {
        /// A Kafka-style server.properties file. Given more than once, the last one is
        /// read (`docker run IMAGE --config FILE` replaces the image's).
        #[arg(long, value_name = "FILE", overrides_with = "config")]
        config: Option<PathBuf>,
        /// Set a config key over the file's value but under the environment's and
        /// --override's (an image's own settings): --default log.dirs=/var/lib/ottla
        #[arg(long = "default", value_name = "KEY=VALUE")]
        defaults: Vec<String>,
        /// Read config keys from environment variables with this prefix, as Apache
        /// Kafka's image reads KAFKA_* ones: OTTLA_LOG_RETENTION_HOURS=24 sets
        /// log.retention.hours (lower case, "_" is ".", "__" is "_", "___" is "-";
        /// OTTLA_BIN, OTTLA_CONFIG_FILE and OTTLA_FAULT_* are not config). Over the file
        /// and --default, under --override. Without it the environment is not read.
        #[arg(long, value_name = "PREFIX")]
        config_env_prefix: Option<String>,
        /// Set a config key, overriding the file, --default and the environment:
        /// --override log.dirs=/var/lib/ottla
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Format the log directories of a quorum node (Kafka's `kafka-storage format`).
    Format(ottla::storage::FormatOptions),
    /// Print a new random cluster id (Kafka's `kafka-storage random-uuid`).
    RandomUuid,
}

/// `info`, without openraft's own lines (one per retry to an unreachable voter); the
/// controller logs the quorum's transitions itself. `RUST_LOG` overrides it.
const DEFAULT_LOG_FILTER: &str = "info,openraft=off";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve {
            config,
            defaults,
            config_env_prefix,
            overrides,
        } => {
            let sources = ottla::ConfigSources {
                file: config,
                defaults,
                env_prefix: config_env_prefix,
                overrides,
            };
            ottla::config_values(&sources)
                .and_then(|values| {
                    // The format first, so that validation's own warnings use it.
                    let format = values.values.get(LOG_FORMAT).map_or("", String::as_str);
                    init_logging(LogFormat::parse(format).unwrap_or_default());
                    if let (Some(prefix), Some(keys)) = (&sources.env_prefix, &values.env_keys) {
                        log_env_keys(prefix, keys);
                    }
                    ottla::config_from_values(values.values)
                })
                .and_then(ottla::serve)
        }
        Command::Format(options) => {
            init_logging(LogFormat::Text);
            ottla::storage::format(options)
        }
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

/// One line naming the config keys the environment set: names only, as values may be
/// passwords.
fn log_env_keys(prefix: &str, keys: &[String]) {
    if keys.is_empty() {
        tracing::info!("No config keys from {prefix}* environment variables");
    } else {
        tracing::info!(
            "Config keys from {prefix}* environment variables: {}",
            keys.join(", ")
        );
    }
}

/// Log to stderr as text (colours on a terminal) or as one JSON object per line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // `flatten_event`: the message and fields at the top level, as log shippers
        // (Vector, Fluent Bit, Loki) expect, next to `timestamp` and `level`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
