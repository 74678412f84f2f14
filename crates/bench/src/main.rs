//! `ottla-bench`: the load generator and reference null broker behind
//! `scripts/bench.sh`. Every subcommand prints one JSON line of figures on stdout and
//! its progress on stderr.

mod acl;
mod common;
mod consume;
mod e2e;
mod null_broker;
mod produce;
mod rebalance;
mod report;
mod startup;
mod topic;
mod txn;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ottla-bench",
    version,
    about = "Benchmark load generator (librdkafka) and null broker for Ottla"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce records: throughput, or delivery latency at a fixed --rate.
    Produce(produce::ProduceArgs),
    /// Consume one partition from offset 0 (no group).
    Consume(consume::ConsumeArgs),
    /// End-to-end (produce to consume) latency at a fixed rate.
    E2e(e2e::E2eArgs),
    /// Transactional produce: committed throughput and commit_transaction latency.
    Txn(txn::TxnArgs),
    /// A Kafka-protocol server that acknowledges produce requests and stores nothing.
    NullBroker(null_broker::NullBrokerArgs),
    /// Time from spawning a broker to its first answered Metadata request.
    Startup(startup::StartupArgs),
    /// Wait until a broker answers Metadata (naming at least --brokers brokers).
    Wait(startup::WaitArgs),
    /// Create a topic, retrying until the cluster accepts it, and wait for its leaders and ISRs.
    CreateTopic(topic::CreateTopicArgs),
    /// Create many topics in one request and time it (the scale scenario).
    CreateTopics(topic::CreateTopicsArgs),
    /// Grant a principal ACLs (raw CreateAcls, optionally over SASL PLAIN) and wait
    /// until the authorizer applies them.
    CreateAcls(acl::CreateAclsArgs),
    /// Time until a consumer group is stable again after one member leaves (classic
    /// protocol or KIP-848), over fresh groups.
    Rebalance(rebalance::RebalanceArgs),
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Print the markdown table for a results file written by scripts/bench.sh.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(a) => produce::run(a),
        Command::Consume(a) => consume::run(a),
        Command::E2e(a) => e2e::run(a),
        Command::Txn(a) => txn::run(a),
        Command::NullBroker(a) => null_broker::run(a),
        Command::Startup(a) => startup::run(a),
        Command::Wait(a) => startup::wait(a),
        Command::CreateTopic(a) => topic::run(a),
        Command::CreateTopics(a) => topic::run_many(a),
        Command::CreateAcls(a) => acl::run(a),
        Command::Rebalance(a) => rebalance::run(a),
        Command::FreePort => startup::free_port().map(|p| serde_json::json!(p)),
        Command::Report(a) => report::run(a).map(|()| serde_json::Value::Null),
    };
    match result {
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ottla-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
