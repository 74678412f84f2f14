//! `consume`: read `--records` records of one partition from offset 0, without a group
//! (librdkafka wants a `group.id` for `assign`, but nothing is joined or committed), and
//! report the rate from the `assign` call to the last record.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::common::{client_config, round, BenchContext, Progress, MB};

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 0)]
    pub partition: i32,
    /// Stop after this many records.
    #[arg(long)]
    pub records: u64,
    /// Give up when no record arrived for this many seconds.
    #[arg(long, default_value_t = 15.0)]
    pub idle_timeout_s: f64,
    /// Extra librdkafka consumer settings (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// A consumer that never joins or commits: `assign` only.
pub fn assign_only_consumer(
    bootstrap: &str,
    sets: &[String],
    name: &'static str,
) -> Result<BaseConsumer<BenchContext>> {
    let config = client_config(
        bootstrap,
        &[
            ("group.id", "ottla-bench-unused"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
        ],
        sets,
    )?;
    config
        .create_with_context(BenchContext::new(name, Instant::now(), false))
        .context("creating the consumer")
}

pub fn run(args: ConsumeArgs) -> Result<Value> {
    let consumer = assign_only_consumer(&args.bootstrap, &args.set, "consume")?;
    // Learn the leader first: a partition assigned before librdkafka knows its leader
    // waits for the offset-query retry timer (500 ms), which is not the broker's time.
    consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(15))
        .context("metadata")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&args.topic, args.partition, Offset::Beginning)?;
    let idle_timeout = Duration::from_secs_f64(args.idle_timeout_s);
    let mut progress = Progress::new(Duration::from_secs(2));
    let start = Instant::now();
    consumer.assign(&tpl).context("assign")?;
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut first_record: Option<Duration> = None;
    let mut last_record = start;
    while records < args.records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
                last_record = Instant::now();
                first_record.get_or_insert_with(|| start.elapsed());
            }
            Some(Err(e)) => {
                errors += 1;
                eprintln!("[consume] {e}");
                first_error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
        if last_record.elapsed() > idle_timeout && start.elapsed() > idle_timeout {
            eprintln!(
                "[consume] nothing for {:.0}s: stopping at {records} records",
                idle_timeout.as_secs_f64()
            );
            first_error.get_or_insert_with(|| format!("stopped after {records} records: idle"));
            break;
        }
        if progress.due() {
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "[consume] {secs:.0}s: {records}/{} records ({:.0} msg/s)",
                args.records,
                records as f64 / secs
            );
        }
    }
    let seconds = (last_record - start).as_secs_f64().max(1e-9);
    eprintln!(
        "[consume] {records} records in {seconds:.2}s: {:.0} msg/s, {:.1} MB/s",
        records as f64 / seconds,
        bytes as f64 / MB / seconds
    );
    Ok(json!({
        "mode": "consume",
        "topic": args.topic,
        "partition": args.partition,
        "records": records,
        "wanted": args.records,
        "errors": errors,
        "first_error": first_error,
        "bytes": bytes,
        "seconds": round(seconds, 3),
        "first_record_ms": first_record.map(|d| round(d.as_secs_f64() * 1000.0, 2)),
        "msgs_per_s": round(records as f64 / seconds, 1),
        "mb_per_s": round(bytes as f64 / MB / seconds, 2),
    }))
}
