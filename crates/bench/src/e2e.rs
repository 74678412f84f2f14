//! `e2e`: end-to-end latency. A producer sends at a fixed rate, each value starting
//! with a run id and the send time (nanoseconds since a shared monotonic origin); a
//! consumer in the same process, assigned to every partition at its high watermark
//! before the first send, measures receive time minus send time for every record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::common::{ensure_topic, latency_summary, round, BenchContext, Progress};
use crate::consume::assign_only_consumer;
use crate::produce::{connect_producer, SendLoop};

#[derive(clap::Args, Debug)]
pub struct E2eArgs {
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
    /// Records per second.
    #[arg(long)]
    pub rate: f64,
    /// Value size in bytes (at least 16: run id and send time).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// How long to send.
    #[arg(long)]
    pub seconds: f64,
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    pub acks: String,
    /// Extra librdkafka producer settings (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Extra librdkafka consumer settings (repeatable).
    #[arg(long = "consumer-set", value_name = "KEY=VALUE")]
    pub consumer_set: Vec<String>,
}

pub fn run(args: E2eArgs) -> Result<Value> {
    if args.record_size < 16 {
        bail!("--record-size must be at least 16 bytes");
    }
    ensure_topic(
        &args.bootstrap,
        &[],
        &args.topic,
        args.partitions,
        args.replication_factor,
    )?;
    let origin = Instant::now();
    let run_id: u64 = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        t ^ ((std::process::id() as u64) << 32) | 1
    };

    // Consumer first, positioned at the current end of every partition.
    let consumer = assign_only_consumer(&args.bootstrap, &args.consumer_set, "e2e-consume")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(15))
        .context("metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {} has no partitions in metadata", args.topic);
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(&args.topic, p, Duration::from_secs(15))
            .with_context(|| format!("watermarks of {}-{p}", args.topic))?;
        tpl.add_partition_offset(&args.topic, p, Offset::Offset(high))?;
    }
    consumer.assign(&tpl).context("assign")?;
    // Let the fetchers start (the first fetch request goes out and waits for data).
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            eprintln!(
                "[e2e] unexpected record at offset {} before sending",
                m.offset()
            );
        }
    }

    let ctx = BenchContext::new("e2e-produce", origin, true);
    let (producer, _) = connect_producer(&args.bootstrap, &args.set, &args.acks, ctx, &args.topic)?;
    let pctx: Arc<BenchContext> = producer.context().clone();
    let count = (args.rate * args.seconds).round().max(1.0) as u64;
    let done = AtomicBool::new(false);

    let mut latencies_us: Vec<u64> = Vec::with_capacity(count as usize);
    let mut foreign = 0u64;
    let mut consume_errors = 0u64;
    let mut first_error: Option<String> = None;

    let send_result = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let mut payload = vec![b'e'; args.record_size];
            payload[..8].copy_from_slice(&run_id.to_be_bytes());
            let send_loop = SendLoop {
                producer: &producer,
                ctx: &pctx,
                topic: &args.topic,
                count,
                rate: Some(args.rate),
                label: "e2e",
            };
            let r = send_loop.run(&mut payload, |buf, sent_ns| {
                buf[8..16].copy_from_slice(&sent_ns.to_be_bytes());
            });
            if let Err(e) = producer.flush(Duration::from_secs(120)) {
                eprintln!("[e2e] flush: {e}");
            }
            done.store(true, Ordering::Release);
            r
        });

        let mut progress = Progress::new(Duration::from_secs(2));
        let mut idle_since: Option<Instant> = None;
        let hard_deadline = Instant::now() + Duration::from_secs_f64(args.seconds + 60.0);
        while (latencies_us.len() as u64) < count && Instant::now() < hard_deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let now_ns = origin.elapsed().as_nanos() as u64;
                    idle_since = None;
                    match m.payload() {
                        Some(p) if p.len() >= 16 && p[..8] == run_id.to_be_bytes() => {
                            let sent_ns =
                                u64::from_be_bytes(p[8..16].try_into().unwrap_or_default());
                            latencies_us.push(now_ns.saturating_sub(sent_ns) / 1000);
                        }
                        _ => foreign += 1,
                    }
                }
                Some(Err(e)) => {
                    consume_errors += 1;
                    eprintln!("[e2e] consume: {e}");
                    first_error.get_or_insert_with(|| e.to_string());
                }
                None => {
                    if done.load(Ordering::Acquire) {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(10) {
                            eprintln!("[e2e] no records for 10s after the producer finished");
                            break;
                        }
                    }
                }
            }
            if progress.due() {
                eprintln!("[e2e] received {}/{count}", latencies_us.len());
            }
        }
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))?
    });
    let (sent, start_ns) = send_result?;
    let received = latencies_us.len() as u64;
    let delivered = pctx.delivered.load(Ordering::Relaxed);
    let failed = pctx.failed.load(Ordering::Relaxed);
    let send_seconds = (pctx
        .last_delivery_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns)) as f64
        / 1e9;
    let produce_latency = pctx
        .latencies_us
        .as_ref()
        .map(|l| std::mem::take(&mut *l.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    if first_error.is_none() {
        first_error = pctx
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
    }
    let summary = latency_summary(latencies_us);
    eprintln!(
        "[e2e] {received}/{sent} received; end-to-end p50 {} ms, p99 {} ms, p99.9 {} ms",
        summary["p50_ms"], summary["p99_ms"], summary["p999_ms"]
    );
    Ok(json!({
        "mode": "e2e",
        "topic": args.topic,
        "partitions": partitions.len(),
        "record_size": args.record_size,
        "acks": args.acks,
        "rate": args.rate,
        "sent": sent,
        "delivered": delivered,
        "received": received,
        "errors": failed + consume_errors + (sent - received.min(sent)),
        "foreign_records": foreign,
        "first_error": first_error,
        "msgs_per_s": round(delivered as f64 / send_seconds.max(1e-9), 1),
        "latency": summary,
        "produce_latency": latency_summary(produce_latency),
    }))
}
