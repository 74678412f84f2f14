//! Prometheus metrics (`metrics.listener`): the figures Kafka exposes through JMX, named
//! as the JMX exporter's common rules name them (`kafka_server_brokertopicmetrics_…`),
//! served over HTTP with a `/health` endpoint for orchestrators.
//!
//! Recording costs no lock: request counts and latency histograms are arrays of atomics
//! indexed by API key, and per-topic traffic lives in each partition's atomic counters
//! ([`ottla_replica::partition::PartitionTraffic`]). Everything else (partition counts,
//! log sizes and offsets, consumer lag, the controller, the process) is read when
//! Prometheus scrapes, by a `prometheus-client` [`Collector`] that walks the broker's
//! state then, and `prometheus-client` writes the exposition text.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use kafka_protocol::messages::ApiKey;
use ottla_group::types::CommittedOffset;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::broker::Broker;

/// API keys are below this (Kafka's highest is in the 80s).
const API_KEY_SLOTS: usize = 128;

/// Upper bounds, in microseconds, of the request latency buckets (the last bucket,
/// `+Inf`, takes the rest): from a cached fetch to a long poll.
const LATENCY_BUCKET_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const LATENCY_BUCKETS: usize = LATENCY_BUCKET_BOUNDS_US.len() + 1;

/// How long a scrape waits for the group coordinator's shards to list their committed
/// offsets before it serves without consumer lag.
const GROUP_OFFSETS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One API's request latency (Kafka's `TotalTimeMs`: from the request read off the
/// socket to its response written), as Prometheus histogram buckets.
#[derive(Debug)]
struct LatencyHistogram {
    /// Requests per bucket (not cumulative; the encoder sums them).
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    fn record(&self, us: u64) {
        let bucket = LATENCY_BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// What the broker records as it serves (the rest is read at scrape time).
#[derive(Debug)]
pub struct BrokerMetrics {
    requests: [AtomicU64; API_KEY_SLOTS],
    /// Boxed: 128 histograms of 17 buckets are 18 KiB.
    latency: Box<[LatencyHistogram; API_KEY_SLOTS]>,
    /// Client connections open now, every listener together.
    pub connections: std::sync::atomic::AtomicI64,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Box::new(std::array::from_fn(|_| LatencyHistogram::default())),
            connections: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl BrokerMetrics {
    /// Count one request (Kafka's `RequestsPerSec`).
    pub fn count_request(&self, api_key: ApiKey) {
        if let Some(slot) = self.requests.get(api_key as i16 as usize) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Record how long one request took, from read to response written (Kafka's
    /// `TotalTimeMs`).
    pub fn record_latency(&self, api_key: ApiKey, took: std::time::Duration) {
        if let Some(histogram) = self.latency.get(api_key as i16 as usize) {
            histogram.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }
}

/// Reads the broker's state on each scrape.
#[derive(Debug)]
struct BrokerCollector {
    broker: Weak<Broker>,
    /// The groups' committed offsets, read from the coordinator's shards just before
    /// this scrape (their state lives on the shards' own tasks).
    group_offsets: Vec<CommittedOffset>,
}

type Labels = Vec<(&'static str, String)>;

fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, value) in values {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    ConstGauge::new(value).encode(metric)
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(broker) = self.broker.upgrade() else {
            return Ok(());
        };
        let partitions = broker.replicas.all();
        // Per topic (Kafka's BrokerTopicMetrics carry a topic tag).
        let mut topics: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
        for p in &partitions {
            let t = topics.entry(p.topic.as_str()).or_default();
            t[0] += p.traffic.messages_in.load(Ordering::Relaxed);
            t[1] += p.traffic.bytes_in.load(Ordering::Relaxed);
            t[2] += p.traffic.bytes_out.load(Ordering::Relaxed);
        }
        for (i, (name, help)) in [
            (
                "kafka_server_brokertopicmetrics_messagesin",
                "Records appended by producers",
            ),
            (
                "kafka_server_brokertopicmetrics_bytesin",
                "Bytes appended by producers",
            ),
            (
                "kafka_server_brokertopicmetrics_bytesout",
                "Bytes sent to consumers",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            counter_family(
                &mut encoder,
                name,
                help,
                topics
                    .iter()
                    .map(|(topic, v)| (vec![("topic", topic.to_string())], v[i])),
            )?;
        }
        let requests = broker
            .metrics
            .requests
            .iter()
            .enumerate()
            .filter_map(|(key, n)| {
                let n = n.load(Ordering::Relaxed);
                let api = ApiKey::try_from(key as i16).ok()?;
                (n > 0).then(|| (vec![("request", format!("{api:?}"))], n))
            });
        counter_family(
            &mut encoder,
            "kafka_network_requestmetrics_requests",
            "Requests received, per API",
            requests,
        )?;
        encode_latency(&mut encoder, &broker.metrics)?;
        let node_id = broker.config.node_id;
        let image = broker.controller.image();
        let led: Vec<&ottla_controller::PartitionInfo> = image
            .topics()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader == node_id)
            .collect();
        // Kafka's UnderReplicatedPartitions: led here with an ISR smaller than the
        // replica set.
        let under_replicated = led
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count();
        gauge(
            &mut encoder,
            "kafka_server_replicamanager_partitioncount",
            "Partitions hosted by this broker",
            partitions.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "kafka_server_replicamanager_leadercount",
            "Partitions this broker leads",
            led.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Led partitions whose ISR is smaller than their replica set",
            under_replicated as i64,
        )?;
        let per_partition = |f: &dyn Fn(&ottla_replica::Partition) -> i64| {
            partitions
                .iter()
                .map(|p| {
                    (
                        vec![
                            ("topic", p.topic.clone()),
                            ("partition", p.index.to_string()),
                        ],
                        f(p),
                    )
                })
                .collect::<Vec<_>>()
        };
        gauge_family(
            &mut encoder,
            "kafka_log_log_size",
            "Bytes of the partition's segments",
            per_partition(&|p| p.size_bytes() as i64),
        )?;
        gauge_family(
            &mut encoder,
            "kafka_log_log_logendoffset",
            "The partition's log end offset",
            per_partition(&|p| p.log_end_offset()),
        )?;
        gauge_family(
            &mut encoder,
            "kafka_log_log_logstartoffset",
            "The partition's log start offset",
            per_partition(&|p| p.log_start_offset()),
        )?;
        encode_group_lag(&mut encoder, &partitions, &self.group_offsets)?;
        gauge(
            &mut encoder,
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller",
            i64::from(broker.controller.active_controller() == Some(node_id)),
        )?;
        gauge(
            &mut encoder,
            "kafka_server_socketservermetrics_connection_count",
            "Client connections open now",
            broker.metrics.connections.load(Ordering::Relaxed),
        )?;
        let process = ProcessFigures::read();
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory of the broker process",
            process.rss_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors of the broker process",
            process.open_fds,
        )?;
        let cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time of the broker process",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        ConstCounter::new(process.cpu_seconds).encode(cpu)?;
        Ok(())
    }
}

/// `kafka_network_requestmetrics_totaltimems`: one histogram per API that was called.
fn encode_latency(
    encoder: &mut DescriptorEncoder,
    metrics: &BrokerMetrics,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "kafka_network_requestmetrics_totaltimems",
        "Time from a request read to its response written, in milliseconds, per API",
        None,
        prometheus_client::metrics::MetricType::Histogram,
    )?;
    for (key, histogram) in metrics.latency.iter().enumerate() {
        let counts: Vec<u64> = histogram
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let Ok(api) = ApiKey::try_from(key as i16) else {
            continue;
        };
        if count == 0 {
            continue;
        }
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKET_BOUNDS_US
            .iter()
            .map(|&us| us as f64 / 1000.0)
            .chain(std::iter::once(f64::MAX))
            .zip(counts)
            .collect();
        let sum_ms = histogram.sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let labels: Labels = vec![("request", format!("{api:?}"))];
        family
            .encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum_ms, count, &buckets, None,
            )?;
    }
    Ok(())
}

/// Consumer lag as kafka-exporter names it (`kafka_consumergroup_current_offset` and
/// `kafka_consumergroup_lag`, labelled consumergroup, topic, partition): the high
/// watermark minus the committed offset, for the groups this broker coordinates and the
/// partitions it hosts (elsewhere it has no high watermark to subtract from).
fn encode_group_lag(
    encoder: &mut DescriptorEncoder,
    partitions: &[Arc<ottla_replica::Partition>],
    offsets: &[CommittedOffset],
) -> Result<(), std::fmt::Error> {
    let high_watermarks: HashMap<(&str, i32), i64> = partitions
        .iter()
        .map(|p| ((p.topic.as_str(), p.index), p.high_watermark()))
        .collect();
    let labels = |o: &CommittedOffset| -> Labels {
        vec![
            ("consumergroup", o.group_id.clone()),
            ("topic", o.topic.clone()),
            ("partition", o.partition.to_string()),
        ]
    };
    gauge_family(
        encoder,
        "kafka_consumergroup_current_offset",
        "The group's committed offset",
        offsets.iter().map(|o| (labels(o), o.offset)),
    )?;
    gauge_family(
        encoder,
        "kafka_consumergroup_lag",
        "High watermark minus the group's committed offset",
        offsets.iter().filter_map(|o| {
            let hw = high_watermarks.get(&(o.topic.as_str(), o.partition))?;
            Some((labels(o), (hw - o.offset).max(0)))
        }),
    )
}

/// The process's own figures, from `/proc/self`.
struct ProcessFigures {
    rss_bytes: i64,
    cpu_seconds: f64,
    open_fds: i64,
}

impl ProcessFigures {
    fn read() -> ProcessFigures {
        let rss_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        // utime and stime: fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz
        // on Linux: `sysconf(_SC_CLK_TCK)`, fixed by the kernel ABI for /proc).
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let after = &s[s.rfind(')')? + 2..];
                let fields: Vec<&str> = after.split_whitespace().collect();
                let ticks: u64 =
                    fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
                Some(ticks as f64 / 100.0)
            })
            .unwrap_or(0.0);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
        ProcessFigures {
            rss_bytes,
            cpu_seconds,
            open_fds,
        }
    }
}

/// Serve `/metrics` and `/health` on `listener` until `stop` flips (a scrape in
/// progress finishes on its own task).
pub async fn serve(
    listener: TcpListener,
    broker: Weak<Broker>,
    path: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (broker, path) = (broker.clone(), path.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (broker, path) = (broker.clone(), path.clone());
                async move { Ok::<_, Infallible>(answer(broker, &path, &request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// A registry for one scrape: the collector with what must be gathered from other tasks
/// first (the groups' committed offsets).
async fn scrape_registry(broker: Weak<Broker>) -> Registry {
    let group_offsets = match broker.upgrade() {
        Some(b) => {
            let offsets = b.groups.committed_offsets();
            drop(b);
            tokio::time::timeout(GROUP_OFFSETS_WAIT, offsets)
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BrokerCollector {
        broker,
        group_offsets,
    }));
    registry
}

async fn answer(
    broker: Weak<Broker>,
    path: &str,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match request.uri().path() {
        // Ready: the listener opens once the logs are recovered and the broker serves.
        "/health" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        p if p == path => {
            let registry = scrape_registry(broker).await;
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                Ok(()) => reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latency lands in the first bucket whose bound is at least it (Prometheus's
    /// `le`), and the sum keeps every microsecond.
    #[test]
    fn latencies_land_in_their_le_bucket() {
        let h = LatencyHistogram::default();
        for us in [0, 100, 101, 999, 1_000, 10_000_001] {
            h.record(us);
        }
        let counts: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 2, "0 and 100 us: le=0.1 ms");
        assert_eq!(counts[1], 1, "101 us: le=0.25 ms");
        assert_eq!(counts[3], 2, "999 and 1000 us: le=1 ms");
        assert_eq!(counts[LATENCY_BUCKETS - 1], 1, "past 10 s: +Inf");
        assert_eq!(counts.iter().sum::<u64>(), 6);
        assert_eq!(h.sum_us.load(Ordering::Relaxed), 10_002_201);
    }

    #[test]
    fn request_latency_is_recorded_per_api() {
        let m = BrokerMetrics::default();
        m.record_latency(ApiKey::Produce, std::time::Duration::from_millis(3));
        let produce = &m.latency[ApiKey::Produce as i16 as usize];
        assert_eq!(produce.buckets[5].load(Ordering::Relaxed), 1, "le=5 ms");
        let fetch = &m.latency[ApiKey::Fetch as i16 as usize];
        assert_eq!(fetch.sum_us.load(Ordering::Relaxed), 0);
    }
}
