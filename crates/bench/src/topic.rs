//! `create-topic`: create a topic, retrying until the cluster accepts it (a replication
//! factor of 3 is refused with INVALID_REPLICATION_FACTOR until three brokers are
//! registered), then wait until Metadata shows every partition with a leader and a
//! full ISR, so a benchmark that follows measures the steady state, not the start.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::common::{admin_client, create_topic_once, round};

#[derive(clap::Args, Debug)]
pub struct CreateTopicArgs {
    /// host:port of a broker, or a comma-separated list
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Give up (and fail) after this many seconds of retrying.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
}

/// Why the topic's metadata is not ready yet, or None when it is.
fn not_ready(
    admin: &rdkafka::admin::AdminClient<crate::common::BenchContext>,
    args: &CreateTopicArgs,
) -> Option<String> {
    let metadata = match admin
        .inner()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(5))
    {
        Ok(m) => m,
        Err(e) => return Some(format!("Metadata: {e}")),
    };
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == args.topic) else {
        return Some("topic not in Metadata".into());
    };
    if let Some(e) = topic.error() {
        return Some(format!("topic error {e:?}"));
    }
    if topic.partitions().len() != args.partitions as usize {
        return Some(format!(
            "{} of {} partitions in Metadata",
            topic.partitions().len(),
            args.partitions
        ));
    }
    for p in topic.partitions() {
        if let Some(e) = p.error() {
            return Some(format!("partition {}: error {e:?}", p.id()));
        }
        if p.leader() < 0 {
            return Some(format!("partition {} has no leader", p.id()));
        }
        if p.isr().len() < args.replication_factor as usize {
            return Some(format!(
                "partition {}: ISR {:?} of replicas {:?}",
                p.id(),
                p.isr(),
                p.replicas()
            ));
        }
    }
    None
}

pub fn run(args: CreateTopicArgs) -> Result<Value> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.timeout_s);
    let admin = admin_client(&args.bootstrap, &[], "create-topic")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut attempts = 0u32;
    let mut last_said = String::new();
    let created = loop {
        attempts += 1;
        match create_topic_once(
            &admin,
            &runtime,
            &args.topic,
            args.partitions,
            args.replication_factor,
        ) {
            Ok(created) => break created,
            Err(e) => {
                let message = format!("{e:#}");
                if Instant::now() > deadline {
                    bail!(
                        "topic {} not created after {attempts} attempts in {:.0}s: {message}",
                        args.topic,
                        args.timeout_s
                    );
                }
                if message != last_said {
                    eprintln!("[create-topic] {message} (retrying)");
                    last_said = message;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    };
    let created_ms = start.elapsed().as_secs_f64() * 1000.0;
    while let Some(why) = not_ready(&admin, &args) {
        if Instant::now() > deadline {
            bail!(
                "topic {} created but not ready after {:.0}s: {why}",
                args.topic,
                args.timeout_s
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready_ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "[create-topic] {} {} ({} partitions, replication factor {}) after {attempts} attempt(s); ready in {ready_ms:.0} ms",
        args.topic,
        if created { "created" } else { "exists" },
        args.partitions,
        args.replication_factor
    );
    Ok(json!({
        "mode": "create-topic",
        "topic": args.topic,
        "partitions": args.partitions,
        "replication_factor": args.replication_factor,
        "created": created,
        "attempts": attempts,
        "created_ms": round(created_ms, 1),
        "ready_ms": round(ready_ms, 1),
    }))
}

#[derive(clap::Args, Debug)]
pub struct CreateTopicsArgs {
    /// host:port of a broker
    #[arg(long)]
    pub bootstrap: String,
    /// Topics are named `<prefix>-0` ... `<prefix>-<count - 1>`.
    #[arg(long)]
    pub prefix: String,
    #[arg(long)]
    pub count: usize,
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
}

/// `create-topics` (the scale scenario): many topics in one CreateTopics request; the
/// time until the broker has answered for all of them (a topic is answered once its
/// partitions are open on a single node).
pub fn run_many(args: CreateTopicsArgs) -> Result<Value> {
    let admin = admin_client(&args.bootstrap, &[], "create-topics")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let names: Vec<String> = (0..args.count)
        .map(|i| format!("{}-{i}", args.prefix))
        .collect();
    let topics: Vec<rdkafka::admin::NewTopic> = names
        .iter()
        .map(|n| {
            rdkafka::admin::NewTopic::new(
                n,
                args.partitions,
                rdkafka::admin::TopicReplication::Fixed(1),
            )
        })
        .collect();
    let options = rdkafka::admin::AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(300)))
        .request_timeout(Some(Duration::from_secs(300)));
    let start = Instant::now();
    let results = runtime.block_on(admin.create_topics(&topics, &options))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    for result in results {
        if let Err((name, code)) = result {
            bail!("cannot create topic {name}: {code:?} ({code})");
        }
    }
    let partitions = args.count as i64 * i64::from(args.partitions);
    eprintln!("[create-topics] {partitions} partitions in {ms:.0} ms");
    Ok(
        json!({"mode": "create-topics", "topics": args.count, "partitions": partitions, "created_ms": round(ms, 1)}),
    )
}
