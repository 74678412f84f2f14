//! `produce`: throughput, or per-delivery-report latency at a fixed rate.
//!
//! Records of `--record-size` bytes (no key) go to `--topic` through librdkafka with
//! its default producer settings apart from `acks` and any `--set`. Without `--rate`
//! the loop sends as fast as librdkafka's queue accepts (sleeping 1 ms when it is
//! full, as librdkafka's own performance tool polls 10 ms) and the figure is delivered
//! records over the time from the first `send` to the last delivery report. With
//! `--rate` records are paced to that rate and each delivery report's latency (from
//! the `send` call to the delivery callback) is recorded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{json, Value};

use crate::common::{
    client_config, ensure_topic, latency_summary, round, BenchContext, Progress, MB,
};

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
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
    /// Number of records to send.
    #[arg(long)]
    pub records: u64,
    /// 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = ["0", "1", "all", "-1"])]
    pub acks: String,
    /// Send at this many records per second and report delivery latencies.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Extra librdkafka producer settings, e.g. --set linger.ms=0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Do not try to create the topic.
    #[arg(long)]
    pub no_create: bool,
}

/// Send `count` records through `producer`, paced to `rate` when given. `fill` writes
/// the payload of record `i` (sent at `sent_ns`) into the buffer.
pub struct SendLoop<'a> {
    pub producer: &'a ThreadedProducer<BenchContext>,
    pub ctx: &'a BenchContext,
    pub topic: &'a str,
    pub count: u64,
    pub rate: Option<f64>,
    pub label: &'static str,
}

impl SendLoop<'_> {
    /// Returns (records handed to librdkafka, nanoseconds since origin of the first send).
    pub fn run(&self, payload: &mut [u8], fill: impl Fn(&mut [u8], u64)) -> Result<(u64, u64)> {
        let start = Instant::now();
        let start_ns = self.ctx.now_ns();
        let mut progress = Progress::new(Duration::from_secs(2));
        let mut sent = 0u64;
        while sent < self.count {
            // How many records should be out by now.
            let target = match self.rate {
                None => self.count,
                Some(rate) => ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(self.count),
            };
            while sent < target {
                loop {
                    let sent_ns = self.ctx.now_ns();
                    fill(payload, sent_ns);
                    let record =
                        BaseRecord::<(), [u8], usize>::with_opaque_to(self.topic, sent_ns as usize)
                            .payload(&payload[..]);
                    match self.producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err((e, _)) => bail!("send failed after {sent} records: {e}"),
                    }
                }
                sent += 1;
                if progress.due() {
                    self.report_progress(sent, start);
                }
            }
            if let Some(rate) = self.rate {
                if sent < self.count {
                    let next_due = start + Duration::from_secs_f64(sent as f64 / rate);
                    let wait = next_due.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                    if progress.due() {
                        self.report_progress(sent, start);
                    }
                }
            }
        }
        Ok((sent, start_ns))
    }

    fn report_progress(&self, sent: u64, start: Instant) {
        let delivered = self.ctx.delivered.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "[{}] {:.0}s: sent {sent}/{}, delivered {delivered} ({:.0} msg/s)",
            self.label,
            secs,
            self.count,
            delivered as f64 / secs.max(1e-9)
        );
    }
}

/// Build the producer and make sure it is connected and knows the topic.
pub fn connect_producer(
    bootstrap: &str,
    sets: &[String],
    acks: &str,
    ctx: BenchContext,
    topic: &str,
) -> Result<(ThreadedProducer<BenchContext>, usize)> {
    let config = client_config(bootstrap, &[("acks", acks)], sets)?;
    let producer: ThreadedProducer<BenchContext> = config
        .create_with_context(ctx)
        .context("creating the producer")?;
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .with_context(|| format!("metadata for {topic} from {bootstrap}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    Ok((producer, partitions))
}

pub fn run(args: ProduceArgs) -> Result<Value> {
    if !args.no_create {
        let created = ensure_topic(
            &args.bootstrap,
            &[],
            &args.topic,
            args.partitions,
            args.replication_factor,
        )?;
        eprintln!(
            "[produce] topic {} {}",
            args.topic,
            if created { "created" } else { "exists" }
        );
    }
    let ctx = BenchContext::new("produce", Instant::now(), args.rate.is_some());
    let (producer, partitions) =
        connect_producer(&args.bootstrap, &args.set, &args.acks, ctx, &args.topic)?;
    let ctx: Arc<BenchContext> = producer.context().clone();
    if partitions as i32 != args.partitions {
        eprintln!(
            "[produce] note: topic {} has {partitions} partitions, not {}",
            args.topic, args.partitions
        );
    }
    let mut payload = vec![0u8; args.record_size];
    for (i, b) in payload.iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    let send_loop = SendLoop {
        producer: &producer,
        ctx: &ctx,
        topic: &args.topic,
        count: args.records,
        rate: args.rate,
        label: "produce",
    };
    let (sent, start_ns) = send_loop.run(&mut payload, |_, _| {})?;
    let send_done_ns = ctx.now_ns();
    if let Err(e) = producer.flush(Duration::from_secs(300)) {
        eprintln!("[produce] flush: {e}");
    }
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let end_ns = ctx
        .last_delivery_ns
        .load(Ordering::Relaxed)
        .max(start_ns + 1);
    let seconds = (end_ns - start_ns) as f64 / 1e9;
    let bytes = delivered * args.record_size as u64;
    let mut result = json!({
        "mode": "produce",
        "topic": args.topic,
        "partitions": partitions,
        "record_size": args.record_size,
        "acks": args.acks,
        "records": args.records,
        "sent": sent,
        "delivered": delivered,
        "errors": failed,
        "first_error": ctx.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        "seconds": round(seconds, 3),
        "send_seconds": round((send_done_ns - start_ns) as f64 / 1e9, 3),
        "bytes": bytes,
        "msgs_per_s": round(delivered as f64 / seconds, 1),
        "mb_per_s": round(bytes as f64 / MB / seconds, 2),
    });
    if let Some(rate) = args.rate {
        let lat = ctx
            .latencies_us
            .as_ref()
            .map(|l| std::mem::take(&mut *l.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        result["rate"] = json!(rate);
        result["latency"] = latency_summary(lat);
    }
    eprintln!(
        "[produce] {delivered} delivered, {failed} failed in {seconds:.2}s: {:.0} msg/s, {:.1} MB/s",
        delivered as f64 / seconds,
        bytes as f64 / MB / seconds
    );
    Ok(result)
}
