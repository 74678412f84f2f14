//! `txn`: transactional produce throughput and commit latency.
//!
//! One librdkafka producer with a `transactional.id` (so idempotent, acks=all) calls
//! `init_transactions`, then repeatedly `begin_transaction`, sends `--per-txn` records
//! of `--record-size` bytes (no key) to `--topic`, and `commit_transaction`, until
//! `--records` records were sent or `--seconds` have passed (the transaction under way
//! is finished either way). Throughput counts only the records of committed
//! transactions, over the time from the first `begin_transaction` to the last commit's
//! return.
//!
//! The commit is timed as librdkafka's `rd_kafka_commit_transaction` works: first wait
//! until the transaction's records still in flight are acknowledged, then EndTxn,
//! whose answer comes once the coordinator has written the commit markers. The wait is
//! done here, checking librdkafka's queue every 100 µs, and `commit_transaction` is
//! called once nothing is in flight: the rdkafka crate's `commit_transaction` flushes
//! first by polling in 100 ms steps, so called with records in flight it takes at
//! least 100 ms whatever the broker does. `commit_latency` is the whole commit (wait
//! plus call), `drain_latency` and `end_txn_latency` its two parts.
//!
//! A transaction whose commit fails with an abortable error is aborted and counted,
//! and its records are not; a fatal error ends the run.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{json, Value};

use crate::common::{ensure_topic, latency_summary, round, BenchContext, Progress, MB};
use crate::produce::connect_producer;

/// How long init/commit/abort (and the wait for in-flight records) may block before
/// the run gives up.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// Wait until librdkafka has nothing queued, in flight or waiting for its delivery
/// report (the background thread serves those).
fn drain(producer: &ThreadedProducer<BenchContext>) {
    let t = Instant::now();
    while producer.in_flight_count() > 0 && t.elapsed() < TXN_TIMEOUT {
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("amount").required(true).multiple(true).args(["records", "seconds"])))]
pub struct TxnArgs {
    /// host:port of the broker, or a comma-separated list (librdkafka bootstrap.servers)
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    /// Partitions to create the topic with when it does not exist yet.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor to create the topic with when it does not exist yet.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Value size in bytes (records have no key).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per transaction.
    #[arg(long, default_value_t = 1000)]
    pub per_txn: u64,
    /// Stop after this many records (the last transaction may be smaller).
    #[arg(long)]
    pub records: Option<u64>,
    /// Stop beginning transactions after this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// The producer's transactional.id.
    #[arg(long, default_value = "ottla-bench-txn")]
    pub transactional_id: String,
    /// Extra librdkafka producer settings, e.g. --set linger.ms=0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Do not try to create the topic.
    #[arg(long)]
    pub no_create: bool,
}

/// What happened to one transaction's commit.
enum Outcome {
    Committed,
    Aborted(String),
}

/// Commit the open transaction, retrying retriable errors and aborting on abortable ones.
fn commit(producer: &ThreadedProducer<BenchContext>) -> Result<Outcome> {
    loop {
        match producer.commit_transaction(TXN_TIMEOUT) {
            Ok(()) => return Ok(Outcome::Committed),
            Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                eprintln!("[txn] commit_transaction: {e} (retriable; retrying)");
            }
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                let why = format!("commit_transaction: {e}");
                eprintln!("[txn] {why}; aborting the transaction");
                producer
                    .abort_transaction(TXN_TIMEOUT)
                    .context("abort_transaction")?;
                return Ok(Outcome::Aborted(why));
            }
            Err(e) => bail!("commit_transaction: {e}"),
        }
    }
}

pub fn run(args: TxnArgs) -> Result<Value> {
    if args.per_txn == 0 {
        bail!("--per-txn must be at least 1");
    }
    if !args.no_create {
        let created = ensure_topic(
            &args.bootstrap,
            &[],
            &args.topic,
            args.partitions,
            args.replication_factor,
        )?;
        eprintln!(
            "[txn] topic {} {}",
            args.topic,
            if created { "created" } else { "exists" }
        );
    }
    // transactional.id first so that a --set can still override it.
    let mut sets = vec![format!("transactional.id={}", args.transactional_id)];
    sets.extend(args.set.iter().cloned());
    let ctx = BenchContext::new("txn", Instant::now(), false);
    let (producer, partitions) = connect_producer(&args.bootstrap, &sets, "all", ctx, &args.topic)?;
    let ctx: Arc<BenchContext> = producer.context().clone();
    if partitions as i32 != args.partitions {
        eprintln!(
            "[txn] note: topic {} has {partitions} partitions, not {}",
            args.topic, args.partitions
        );
    }
    let init_start = Instant::now();
    producer
        .init_transactions(TXN_TIMEOUT)
        .context("init_transactions")?;
    let init_ms = init_start.elapsed().as_secs_f64() * 1000.0;
    eprintln!("[txn] init_transactions took {init_ms:.1} ms");

    let mut payload = vec![0u8; args.record_size];
    for (i, b) in payload.iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    let limit = args.records.unwrap_or(u64::MAX);
    let deadline = args.seconds.map(Duration::from_secs_f64);

    let mut commit_us: Vec<u64> = Vec::new();
    let mut drain_us: Vec<u64> = Vec::new();
    let mut end_txn_us: Vec<u64> = Vec::new();
    let mut txn_us: Vec<u64> = Vec::new();
    let mut sent = 0u64;
    let mut committed_records = 0u64;
    let mut committed_txns = 0u64;
    let mut aborted_txns = 0u64;
    let mut first_abort: Option<String> = None;
    let mut progress = Progress::new(Duration::from_secs(2));
    let start = Instant::now();
    let mut end = start;

    while sent < limit && deadline.is_none_or(|d| start.elapsed() < d) {
        let txn_start = Instant::now();
        producer.begin_transaction().context("begin_transaction")?;
        let n = args.per_txn.min(limit - sent);
        let mut in_txn = 0u64;
        'send: while in_txn < n {
            loop {
                let record = BaseRecord::<(), [u8], usize>::with_opaque_to(
                    &args.topic,
                    ctx.now_ns() as usize,
                )
                .payload(&payload[..]);
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    // Likely an abortable transaction state: commit_transaction reports it.
                    Err((e, _)) => {
                        eprintln!("[txn] send failed in transaction {committed_txns}: {e}");
                        break 'send;
                    }
                }
            }
            in_txn += 1;
        }
        sent += in_txn;
        let t = Instant::now();
        drain(&producer);
        let drained = Instant::now();
        let outcome = commit(&producer)?;
        end = Instant::now();
        match outcome {
            Outcome::Committed => {
                commit_us.push((end - t).as_micros() as u64);
                drain_us.push((drained - t).as_micros() as u64);
                end_txn_us.push((end - drained).as_micros() as u64);
                txn_us.push((end - txn_start).as_micros() as u64);
                committed_txns += 1;
                committed_records += in_txn;
            }
            Outcome::Aborted(why) => {
                aborted_txns += 1;
                first_abort.get_or_insert(why);
            }
        }
        if progress.due() {
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "[txn] {secs:.0}s: {committed_txns} transactions committed ({aborted_txns} aborted), \
                 {committed_records} records ({:.0} msg/s), last commit {:.1} ms",
                committed_records as f64 / secs.max(1e-9),
                (end - t).as_secs_f64() * 1000.0
            );
        }
    }

    let seconds = (end - start).as_secs_f64().max(1e-9);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let bytes = committed_records * args.record_size as u64;
    let first_error = ctx
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .or(first_abort);
    let mut result = json!({
        "mode": "txn",
        "topic": args.topic,
        "partitions": partitions,
        "record_size": args.record_size,
        "per_txn": args.per_txn,
        "transactional_id": args.transactional_id,
        "sent": sent,
        "records": committed_records,
        "delivered": ctx.delivered.load(Ordering::Relaxed),
        "transactions": committed_txns,
        "aborted_transactions": aborted_txns,
        "errors": failed + aborted_txns,
        "first_error": first_error,
        "init_ms": round(init_ms, 3),
        "seconds": round(seconds, 3),
        "bytes": bytes,
        "msgs_per_s": round(committed_records as f64 / seconds, 1),
        "mb_per_s": round(bytes as f64 / MB / seconds, 2),
        "txns_per_s": round(committed_txns as f64 / seconds, 2),
        "commit_latency": latency_summary(commit_us),
        "drain_latency": latency_summary(drain_us),
        "end_txn_latency": latency_summary(end_txn_us),
        "txn_latency": latency_summary(txn_us),
    });
    if let Some(wanted) = args.records {
        result["wanted"] = json!(wanted);
    }
    if let Some(s) = args.seconds {
        result["wanted_seconds"] = json!(s);
    }
    eprintln!(
        "[txn] {committed_txns} transactions committed ({aborted_txns} aborted), {committed_records} records \
         in {seconds:.2}s: {:.0} msg/s, {:.1} MB/s; commit p50 {} ms, p99 {} ms, max {} ms \
         (of which EndTxn p50 {} ms, p99 {} ms)",
        committed_records as f64 / seconds,
        bytes as f64 / MB / seconds,
        result["commit_latency"]["p50_ms"],
        result["commit_latency"]["p99_ms"],
        result["commit_latency"]["max_ms"],
        result["end_txn_latency"]["p50_ms"],
        result["end_txn_latency"]["p99_ms"],
    );
    Ok(result)
}
