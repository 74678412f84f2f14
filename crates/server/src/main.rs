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
        /// A Kafka-style server.properties file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Set a config key, overriding the file: --override log.dirs=/var/lib/ottla
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
        Command::Serve { config, overrides } => ottla::config_values(config, overrides)
            .and_then(|values| {
                // The format first, so that validation's own warnings use it.
                let format = values.get(LOG_FORMAT).map_or("", String::as_str);
                init_logging(LogFormat::parse(format).unwrap_or_default());
                ottla::config_from_values(values)
            })
            .and_then(ottla::serve),
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
