//! `null-broker`: the ceiling for produce figures on this machine and client. It speaks
//! just enough of the protocol for librdkafka to produce: ApiVersions, Metadata (itself
//! as the only broker, leader of every partition), CreateTopics (remembers the
//! partition count asked for; unknown topics appear with `--default-partitions`),
//! InitProducerId, and Produce, answered with success and increasing base offsets
//! without storing, copying or checking anything beyond the batch lengths. Each
//! connection is served in request order, replies coalesced like the broker's.
//! SIGTERM or Ctrl-C stops it and prints its counters as JSON.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use ottla_protocol::api_versions::{supported, SUPPORTED_APIS};
use ottla_protocol::batch::BatchIter;
use ottla_protocol::frame::{
    check_frame_size, decode_request, encode_response, Request, DEFAULT_SOCKET_REQUEST_MAX_BYTES,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const NODE_ID: i32 = 1;
/// The APIs answered. ApiVersions advertises the real broker's whole table
/// (`SUPPORTED_APIS`), so librdkafka enables the same features and sends the same
/// requests to both (it only uses v2 record batches when Fetch v4+ is advertised too);
/// a request for anything not listed here closes the connection.
const APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::InitProducerId,
];

#[derive(clap::Args, Debug)]
pub struct NullBrokerArgs {
    /// Address to listen on, e.g. 127.0.0.1:19092
    #[arg(long)]
    pub listen: String,
    /// host:port to name in Metadata (default: the listening address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Partitions of a topic nobody created.
    #[arg(long, default_value_t = 1)]
    pub default_partitions: i32,
    /// Runtime worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

struct Topic {
    id: Uuid,
    next_offsets: Vec<i64>,
}

struct State {
    host: String,
    port: i32,
    default_partitions: i32,
    topics: Mutex<HashMap<String, Topic>>,
    next_producer_id: AtomicU64,
    produce_requests: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
}

impl State {
    fn with_topic<R>(&self, name: &str, min_partitions: i32, f: impl FnOnce(&mut Topic) -> R) -> R {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let topic = topics.entry(name.to_string()).or_insert_with(|| Topic {
            id: Uuid::new_v4(),
            next_offsets: vec![0; self.default_partitions.max(min_partitions).max(1) as usize],
        });
        if (topic.next_offsets.len() as i32) < min_partitions {
            topic.next_offsets.resize(min_partitions as usize, 0);
        }
        f(topic)
    }
}

pub fn run(args: NullBrokerArgs) -> Result<Value> {
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if args.threads > 1 {
            builder.worker_threads(args.threads);
        }
        builder.enable_all().build()?
    };
    runtime.block_on(serve(args))
}

async fn serve(args: NullBrokerArgs) -> Result<Value> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let (host, port) = match &args.advertise {
        Some(a) => {
            let (h, p) = a
                .rsplit_once(':')
                .context("--advertise expects host:port")?;
            (h.to_string(), p.parse::<i32>().context("--advertise port")?)
        }
        None => {
            let ip = if local.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                local.ip().to_string()
            };
            (ip, local.port() as i32)
        }
    };
    let state = Arc::new(State {
        host,
        port,
        default_partitions: args.default_partitions,
        topics: Mutex::new(HashMap::new()),
        next_producer_id: AtomicU64::new(1000),
        produce_requests: AtomicU64::new(0),
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        connections: AtomicU64::new(0),
    });
    eprintln!("[null-broker] listening on {local}");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("[null-broker] accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                state.connections.fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(state, stream).await {
                        eprintln!("[null-broker] closing connection from {peer}: {e:#}");
                    }
                });
            }
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let topics = state.topics.lock().unwrap_or_else(|e| e.into_inner());
    Ok(json!({
        "mode": "null-broker",
        "listen": local.to_string(),
        "connections": state.connections.load(Ordering::Relaxed),
        "topics": topics.len(),
        "produce_requests": state.produce_requests.load(Ordering::Relaxed),
        "records": state.records.load(Ordering::Relaxed),
        "bytes": state.bytes.load(Ordering::Relaxed),
    }))
}

/// True when `buf` starts with a whole frame.
fn holds_whole_frame(buf: &[u8]) -> bool {
    buf.len() >= 4 && {
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        size >= 0 && buf.len() - 4 >= size as usize
    }
}

async fn connection(state: Arc<State>, stream: TcpStream) -> Result<()> {
    let peer: SocketAddr = stream.peer_addr()?;
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    loop {
        let mut prefix = [0u8; 4];
        if reader.read_exact(&mut prefix).await.is_err() {
            return Ok(()); // closed
        }
        let size = check_frame_size(i32::from_be_bytes(prefix), DEFAULT_SOCKET_REQUEST_MAX_BYTES)?;
        let mut frame = vec![0u8; size];
        reader
            .read_exact(&mut frame)
            .await
            .with_context(|| format!("{peer} closed mid-request"))?;
        let request = decode_request(Bytes::from(frame))?;
        if let Some(reply) = handle(&state, &request)? {
            writer.write_all(&reply).await?;
        }
        // Coalesce replies while whole requests are already waiting to be handled.
        if !holds_whole_frame(reader.buffer()) {
            writer.flush().await?;
        }
    }
}

fn decode<T: Decodable>(request: &Request) -> Result<T> {
    let mut body = request.body.clone();
    T::decode(&mut body, request.version()).map_err(|e| {
        anyhow::anyhow!(
            "malformed {:?} v{}: {e}",
            request.api_key,
            request.version()
        )
    })
}

fn respond<T: Encodable>(request: &Request, body: &T) -> Result<Option<Bytes>> {
    Ok(Some(
        encode_response(
            request.api_key,
            request.version(),
            request.correlation_id(),
            body,
        )
        .map_err(|e| anyhow::anyhow!("encoding {:?}: {e}", request.api_key))?,
    ))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn handle(state: &State, request: &Request) -> Result<Option<Bytes>> {
    let version = request.version();
    let in_range = supported(request.api_key)
        .is_some_and(|r| r.min_version <= version && version <= r.max_version);
    match request.api_key {
        ApiKey::ApiVersions => {
            let table: Vec<ApiVersion> = SUPPORTED_APIS
                .iter()
                .map(|a| {
                    ApiVersion::default()
                        .with_api_key(a.key as i16)
                        .with_min_version(a.min_version)
                        .with_max_version(a.max_version)
                })
                .collect();
            if !in_range {
                let body = ApiVersionsResponse::default()
                    .with_error_code(ResponseError::UnsupportedVersion.code())
                    .with_api_keys(table);
                return Ok(Some(
                    encode_response(ApiKey::ApiVersions, 0, request.correlation_id(), &body)
                        .map_err(|e| anyhow::anyhow!("encoding ApiVersions: {e}"))?,
                ));
            }
            respond(
                request,
                &ApiVersionsResponse::default().with_api_keys(table),
            )
        }
        _ if !in_range || !APIS.contains(&request.api_key) => {
            bail!("unsupported {:?} v{version}", request.api_key)
        }
        ApiKey::Metadata => metadata(state, request),
        ApiKey::Produce => produce(state, request),
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode(request)?;
            let results = req
                .topics
                .iter()
                .map(|t| {
                    let partitions = if t.num_partitions > 0 {
                        t.num_partitions
                    } else {
                        state.default_partitions
                    };
                    let name = t.name.as_str();
                    let exists = state
                        .topics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_key(name);
                    let mut r = CreatableTopicResult::default().with_name(t.name.clone());
                    if exists {
                        r = r.with_error_code(ResponseError::TopicAlreadyExists.code());
                    } else if !req.validate_only {
                        let id = state.with_topic(name, partitions, |topic| topic.id);
                        if version >= 7 {
                            r = r.with_topic_id(id);
                        }
                    }
                    if version >= 5 && !exists {
                        r = r.with_num_partitions(partitions).with_replication_factor(1);
                    }
                    r
                })
                .collect();
            respond(
                request,
                &CreateTopicsResponse::default().with_topics(results),
            )
        }
        ApiKey::InitProducerId => {
            let _req: InitProducerIdRequest = decode(request)?;
            let id = state.next_producer_id.fetch_add(1, Ordering::Relaxed) as i64;
            respond(
                request,
                &InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0),
            )
        }
        other => bail!("unsupported API {other:?}"),
    }
}

fn metadata(state: &State, request: &Request) -> Result<Option<Bytes>> {
    let req: MetadataRequest = decode(request)?;
    let version = request.version();
    let topic_entry = |name: &str, topic: &Topic| {
        let partitions = (0..topic.next_offsets.len() as i32)
            .map(|p| {
                let mut m = MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(NODE_ID))
                    .with_replica_nodes(vec![BrokerId(NODE_ID)])
                    .with_isr_nodes(vec![BrokerId(NODE_ID)]);
                if version >= 7 {
                    m = m.with_leader_epoch(0);
                }
                m
            })
            .collect();
        let mut t = MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(name))))
            .with_partitions(partitions);
        if version >= 10 {
            t = t.with_topic_id(topic.id);
        }
        t
    };
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let mut topics = Vec::new();
    if all {
        let map = state.topics.lock().unwrap_or_else(|e| e.into_inner());
        for (name, topic) in map.iter() {
            topics.push(topic_entry(name, topic));
        }
    } else {
        for wanted in req.topics.as_deref().unwrap_or_default() {
            match wanted.name.as_ref() {
                Some(name) if !name.is_empty() => {
                    let name = name.as_str();
                    topics.push(state.with_topic(name, 0, |t| topic_entry(name, t)));
                }
                _ => {
                    let map = state.topics.lock().unwrap_or_else(|e| e.into_inner());
                    match map.iter().find(|(_, t)| t.id == wanted.topic_id) {
                        Some((name, topic)) => topics.push(topic_entry(name, topic)),
                        None => {
                            let mut t = MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code());
                            if version >= 10 {
                                t = t.with_topic_id(wanted.topic_id);
                            }
                            topics.push(t);
                        }
                    }
                }
            }
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(str_bytes(&state.host))
        .with_port(state.port);
    let mut response = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_topics(topics);
    if version >= 1 {
        response = response.with_controller_id(BrokerId(NODE_ID));
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes("ottla-null-broker")));
    }
    respond(request, &response)
}

fn produce(state: &State, request: &Request) -> Result<Option<Bytes>> {
    let req: ProduceRequest = decode(request)?;
    let version = request.version();
    state.produce_requests.fetch_add(1, Ordering::Relaxed);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic_data in &req.topic_data {
        let name = topic_data.name.as_str();
        let max_index = topic_data
            .partition_data
            .iter()
            .map(|p| p.index + 1)
            .max()
            .unwrap_or(0);
        let partitions = state.with_topic(name, max_index, |topic| {
            topic_data
                .partition_data
                .iter()
                .map(|data| {
                    let records = data.records.as_deref().unwrap_or_default();
                    let mut count = 0i64;
                    for batch in BatchIter::new(records) {
                        match batch {
                            Ok(batch) => count += batch.last_offset_delta() as i64 + 1,
                            Err(e) => eprintln!("[null-broker] batch: {e}"),
                        }
                    }
                    state.records.fetch_add(count as u64, Ordering::Relaxed);
                    state
                        .bytes
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    let next = &mut topic.next_offsets[data.index.max(0) as usize];
                    let base = *next;
                    *next += count;
                    let mut r = PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_base_offset(base);
                    if version >= 5 {
                        r = r.with_log_start_offset(0);
                    }
                    r
                })
                .collect::<Vec<_>>()
        });
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name.clone())
                .with_partition_responses(partitions),
        );
    }
    if req.acks == 0 {
        return Ok(None);
    }
    respond(
        request,
        &ProduceResponse::default().with_responses(responses),
    )
}
