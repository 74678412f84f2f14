//! Pieces every client-side subcommand shares: the librdkafka client context (which
//! sends librdkafka's warnings to stderr), client configuration, latency summaries,
//! topic creation and a small progress printer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{json, Value};

/// Bytes per MB in every figure we print (MB/s as librdkafka's tool and Kafka quote it).
pub const MB: f64 = 1_000_000.0;

/// A client configuration: `bootstrap.servers`, then `base` settings, then the user's
/// `--set` overrides. librdkafka logs warnings (and debug lines when `debug` is set).
pub fn client_config(
    bootstrap: &str,
    base: &[(&str, &str)],
    sets: &[String],
) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config.set("client.id", "ottla-bench");
    for (k, v) in base {
        config.set(*k, *v);
    }
    let mut debug = false;
    for kv in sets {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--set expects KEY=VALUE, got {kv:?}");
        };
        debug |= k.trim() == "debug";
        config.set(k.trim(), v.trim());
    }
    config.set_log_level(if debug {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    Ok(config)
}

/// Client context: librdkafka's warnings and errors go to stderr (a benchmark that
/// silently reconnects would report nonsense), delivery reports are counted and, when
/// asked, timed.
pub struct BenchContext {
    /// Origin of every timestamp handed to librdkafka as a delivery opaque.
    pub origin: Instant,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Nanoseconds since `origin` of the latest delivery report.
    pub last_delivery_ns: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    /// Per-delivery latency in microseconds, when latencies are recorded.
    pub latencies_us: Option<Mutex<Vec<u64>>>,
    /// Prefix for log lines ("produce", "consume", ...).
    pub name: &'static str,
    logged: AtomicU64,
}

impl BenchContext {
    pub fn new(name: &'static str, origin: Instant, record_latencies: bool) -> Self {
        BenchContext {
            origin,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latencies_us: record_latencies.then(|| Mutex::new(Vec::new())),
            name,
            logged: AtomicU64::new(0),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn note_error(&self, message: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(message);
        }
    }

    /// Print a client log line, at most 50 per run so a reconnect loop cannot flood.
    fn say(&self, line: String) {
        let n = self.logged.fetch_add(1, Ordering::Relaxed);
        if n < 50 {
            eprintln!("[{}] {line}", self.name);
        } else if n == 50 {
            eprintln!("[{}] (further librdkafka messages suppressed)", self.name);
        }
    }
}

impl ClientContext for BenchContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.say(format!("librdkafka {level:?} {fac}: {log_message}"));
        } else {
            // Only reaches us when asked for with `--set debug=...`.
            eprintln!("[{}] librdkafka {fac}: {log_message}", self.name);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note_error(format!("{error}: {reason}"));
        self.say(format!("librdkafka error: {error}: {reason}"));
    }
}

impl ConsumerContext for BenchContext {}

impl ProducerContext for BenchContext {
    /// Nanoseconds since `origin` when the record was handed to `send`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now = self.now_ns();
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(lat) = &self.latencies_us {
                    let us = now.saturating_sub(sent_ns as u64) / 1000;
                    lat.lock().unwrap_or_else(|e| e.into_inner()).push(us);
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.note_error(format!("delivery failed: {e}"));
            }
        }
        self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }
}

/// p50/p99/p99.9/max of latencies in microseconds, in milliseconds (nearest rank).
pub fn latency_summary(mut us: Vec<u64>) -> Value {
    us.sort_unstable();
    let n = us.len();
    if n == 0 {
        return json!({"count": 0, "p50_ms": null, "p99_ms": null, "p999_ms": null, "max_ms": null, "mean_ms": null});
    }
    let pct = |p: f64| -> f64 {
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        us[rank.min(n) - 1] as f64 / 1000.0
    };
    let mean = us.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
    json!({
        "count": n,
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "p999_ms": pct(99.9),
        "max_ms": us[n - 1] as f64 / 1000.0,
        "mean_ms": mean,
    })
}

/// Round to `digits` decimals for printing.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Create `topic` with `partitions` partitions and `replication_factor` replicas unless
/// it exists. Returns whether it was created.
pub fn ensure_topic(
    bootstrap: &str,
    sets: &[String],
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<bool> {
    let admin = admin_client(bootstrap, sets, "admin")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    create_topic_once(&admin, &runtime, topic, partitions, replication_factor)
}

/// An admin client whose librdkafka messages are prefixed with `name`.
pub fn admin_client(
    bootstrap: &str,
    sets: &[String],
    name: &'static str,
) -> Result<AdminClient<BenchContext>> {
    client_config(bootstrap, &[], sets)?
        .create_with_context(BenchContext::new(name, Instant::now(), false))
        .context("creating the admin client")
}

/// One CreateTopics request: Ok(true) when created, Ok(false) when it already exists.
pub fn create_topic_once(
    admin: &AdminClient<BenchContext>,
    runtime: &tokio::runtime::Runtime,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<bool> {
    let new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("CreateTopics for {topic}"))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((name, code))) => bail!("cannot create topic {name}: {code:?} ({code})"),
        None => bail!("CreateTopics for {topic} returned no result"),
    }
}

/// Prints a progress line on stderr at most every `every`.
pub struct Progress {
    every: Duration,
    next: Instant,
}

impl Progress {
    pub fn new(every: Duration) -> Self {
        Progress {
            every,
            next: Instant::now() + every,
        }
    }

    /// True (and re-armed) when a line is due.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next {
            self.next = now + self.every;
            true
        } else {
            false
        }
    }
}
