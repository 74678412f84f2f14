//! Fetch (key 1): read whole stored batches, long-polling up to `max.wait.ms` until
//! `min.bytes` are available. Record data is not read: the response carries slices of
//! the segment files, which the connection sends with `sendfile` (zero-copy).
//!
//! Fetch sessions (KIP-227) are answered sessionless: session id 0 tells the client to
//! keep sending full fetch requests, which every client supports (Kafka does the same
//! when its session cache is full). Size limits follow KIP-74: the response stops at
//! `max_bytes` (capped by the broker's `fetch.max.bytes`) and each partition at its
//! `partition_max_bytes`, except that the first partition with data always returns at
//! least one whole batch so that a batch larger than the limits can still be consumed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName,
};
use kafka_protocol::ResponseError;
use ottla_log::{LogError, LogSlices};
use ottla_protocol::frame::Request;
use ottla_protocol::spliced::encode_fetch_response;
use ottla_replica::{FetchIsolation, Partition};
use uuid::Uuid;

use super::{check_leader_epoch, decode, respond, AdvertisedEndpoint, Frame, HandlerError, Reply};
use crate::broker::Broker;
use crate::leader_hints::{self, LeaderHints};
use crate::security::authorizer::{op, Caller};

/// Longest wait honoured, whatever the client asks: bounds how long a delayed fetch
/// holds its request in memory (Kafka relies on the client's request timeout).
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// `isolation_level` READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

/// One requested partition, resolved against the metadata once per request.
struct Target {
    name: TopicName,
    topic_id: Uuid,
    index: i32,
    fetch_offset: i64,
    /// A follower's `last_fetched_epoch` (v12+; -1 when absent): the leader checks its
    /// log agrees up to `fetch_offset` before handing out more.
    last_fetched_epoch: i32,
    partition_max_bytes: usize,
    partition: Result<Arc<Partition>, i16>,
}

struct Plan {
    broker: Arc<Broker>,
    version: i16,
    correlation_id: i32,
    targets: Vec<Target>,
    max_bytes: usize,
    min_bytes: usize,
    /// The fetching follower's node id; negative for consumers.
    replica_id: i32,
    isolation: FetchIsolation,
    read_committed: bool,
    /// The consumer's `client.rack` (v11+), for KIP-392's preferred read replica.
    client_rack: Option<String>,
    /// The listener the request came in on (KIP-951 hints name leaders there).
    here: AdvertisedEndpoint,
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
    here: &AdvertisedEndpoint,
) -> Result<Reply, HandlerError> {
    let req: FetchRequest = decode(request)?;
    let version = request.version();
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if version >= 7 && req.session_id != 0 {
        // We never hand out sessions, so a client cannot legitimately continue one.
        let response =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return respond(request, &response);
    }
    let image = broker.controller.image();
    let mut targets = Vec::new();
    for topic in &req.topics {
        let info = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(topic.topic.as_str())
        };
        // KafkaApis: a follower needs CLUSTER_ACTION, a consumer READ on the topic.
        let authorized = if replica_id >= 0 {
            caller.allowed_on_cluster(op::CLUSTER_ACTION)
        } else {
            let name = info.map_or(topic.topic.as_str(), |t| t.name.as_str());
            info.is_none() && version >= 13 || caller.allowed_on_topic(op::READ, name)
        };
        for p in &topic.partitions {
            let partition = match info {
                _ if !authorized => Err(ResponseError::TopicAuthorizationFailed.code()),
                None if version >= 13 => Err(ResponseError::UnknownTopicId.code()),
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(t) => {
                    match serving_replica(broker, &t.topic_id, p.partition, replica_id, version) {
                        None => Err(super::not_hosted_error(Some(t), p.partition)),
                        Some(partition) => check_leader_epoch(&partition, p.current_leader_epoch)
                            .and_then(|()| {
                                check_follower(&partition, replica_id, p.current_leader_epoch)
                            })
                            .map(|()| partition),
                    }
                }
            };
            targets.push(Target {
                name: topic.topic.clone(),
                topic_id: topic.topic_id,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: if version >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                partition,
            });
        }
    }
    let max_bytes = if version >= 3 {
        req.max_bytes.max(0) as usize
    } else {
        usize::MAX
    };
    let plan = Plan {
        here: here.clone(),
        broker: broker.clone(),
        version,
        correlation_id: request.correlation_id(),
        targets,
        max_bytes: max_bytes.min(broker.config.fetch_max_bytes),
        min_bytes: req.min_bytes.max(0) as usize,
        // A follower (checked above to be one of the partition's replicas) reads to the
        // log end; everyone else stops at the high watermark.
        replica_id,
        isolation: if replica_id >= 0 {
            FetchIsolation::LogEnd
        } else if req.isolation_level == READ_COMMITTED {
            FetchIsolation::TxnCommitted
        } else {
            FetchIsolation::HighWatermark
        },
        read_committed: req.isolation_level == READ_COMMITTED,
        client_rack: (version >= 11)
            .then(|| req.rack_id.to_string())
            .filter(|r| !r.is_empty()),
    };
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    // A fetch that may wait subscribes before it reads, so that an append between the
    // read and the wait still wakes it.
    let mut receivers = if wait.is_zero() {
        Vec::new()
    } else {
        subscribe(&plan)
    };
    let read = read_all(&plan);
    if read.bytes >= plan.min_bytes || read.has_error || read.redirects || receivers.is_empty() {
        return Ok(Reply::Now(encode_read(&plan, read)?));
    }
    Ok(Reply::Later(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = select_all(receivers.iter_mut().map(|rx| Box::pin(rx.changed())));
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return encode_read(&plan, read_all(&plan));
            }
            // Mark what woke us as seen before reading, as a fresh subscription would.
            for rx in &mut receivers {
                rx.borrow_and_update();
            }
            let read = read_all(&plan);
            if read.bytes >= plan.min_bytes || read.has_error || read.redirects {
                return encode_read(&plan, read);
            }
        }
    })))
}

/// The watches that may complete a delayed fetch of the partitions that resolved: a
/// consumer waits for the high watermark to move, a follower for the log end (it is
/// the followers' fetches that move the high watermark).
fn subscribe(plan: &Plan) -> Vec<tokio::sync::watch::Receiver<i64>> {
    plan.targets
        .iter()
        .filter_map(|t| t.partition.as_ref().ok())
        .map(|p| {
            if plan.replica_id >= 0 {
                p.subscribe_log_end()
            } else {
                p.subscribe()
            }
        })
        .collect()
}

/// The replica that serves this fetch here: the leader's, or for a consumer on Fetch
/// v11+ (KIP-392, which may have sent it to a follower in its rack) a follower's too;
/// a follower serves up to its own high watermark.
fn serving_replica(
    broker: &Broker,
    topic_id: &Uuid,
    index: i32,
    replica_id: i32,
    version: i16,
) -> Option<Arc<Partition>> {
    if replica_id < 0 && version >= 11 {
        broker.replicas.get(topic_id, index)
    } else {
        broker.replicas.leader(topic_id, index)
    }
}

/// Kafka's `RackAwareReplicaSelector` as the leader applies it: a consumer naming a
/// rack other than the leader's is sent to the most caught-up in-sync replica in that
/// rack that already holds the fetch offset; `None` keeps it on the leader.
fn preferred_read_replica(plan: &Plan, partition: &Partition, target: &Target) -> Option<i32> {
    let broker = &plan.broker;
    if !broker.config.rack_aware_replica_selector || plan.replica_id >= 0 {
        return None;
    }
    let rack = plan.client_rack.as_deref()?;
    if broker.config.broker_rack.as_deref() == Some(rack) || !partition.is_leader() {
        return None;
    }
    let image = broker.controller.image();
    partition
        .isr()
        .into_iter()
        .filter(|id| *id != broker.config.node_id && image.is_eligible_replica(*id))
        .filter(|id| image.brokers.get(id).and_then(|b| b.rack.as_deref()) == Some(rack))
        .filter_map(|id| Some((partition.follower_log_end(id)?, id)))
        .filter(|(log_end, _)| *log_end >= target.fetch_offset)
        .max_by_key(|(log_end, id)| (*log_end, -id))
        .map(|(_, id)| id)
}

/// A fetch claiming replica id `replica_id` must come from one of the partition's
/// follower replicas, or it could read past the high watermark. Kafka answers
/// UNKNOWN_LEADER_EPOCH when the request names the leader epoch (the follower retries
/// once the metadata agrees) and NOT_LEADER_OR_FOLLOWER otherwise
/// (`Partition.followerReplicaOrThrow`).
fn check_follower(partition: &Partition, replica_id: i32, leader_epoch: i32) -> Result<(), i16> {
    if replica_id < 0 || partition.has_follower(replica_id) {
        return Ok(());
    }
    tracing::debug!(
        "Refusing a fetch of {} from replica {replica_id}, which is not one of its replicas",
        partition.name()
    );
    Err(if leader_epoch >= 0 {
        ResponseError::UnknownLeaderEpoch.code()
    } else {
        ResponseError::NotLeaderOrFollower.code()
    })
}

/// Where a follower's log diverged from this leader's, if it has (Fetch v12+).
fn diverged(partition: &Partition, target: &Target) -> Option<(i32, i64)> {
    partition.diverging_epoch(target.fetch_offset, target.last_fetched_epoch)
}

/// One pass over every target.
struct Read {
    /// The response without its records, which are in `records`, one per partition in
    /// response order.
    response: FetchResponse,
    records: Vec<LogSlices>,
    /// Record bytes in all partitions.
    bytes: usize,
    /// Whether any partition carries an error (which completes a delayed fetch at once,
    /// as in Kafka).
    has_error: bool,
    /// Record bytes of partitions under the leader replication throttle.
    throttled_bytes: usize,
    /// A partition names a preferred read replica: answer at once (Kafka does).
    redirects: bool,
}

/// The response frame; record data stays in the segment files until the connection
/// writes it (zero-copy, see `ottla_protocol::spliced`).
fn encode_read(plan: &Plan, mut read: Read) -> Result<Frame, HandlerError> {
    plan.broker.leader_quota.record(
        read.throttled_bytes as u64,
        ottla_replica::partition::now_ms(),
    );
    if read.has_error {
        add_leader_hints(plan, &mut read.response);
    }
    encode_fetch_response(
        plan.version,
        plan.correlation_id,
        &read.response,
        read.records,
    )
    .map(Frame::Spliced)
    .map_err(|e| HandlerError::Encode {
        api_key: ApiKey::Fetch,
        version: plan.version,
        reason: e.to_string(),
    })
}

/// KIP-951: a partition refused because this broker does not lead it (or no longer
/// does) names its current leader, and the response says where that leader is.
fn add_leader_hints(plan: &Plan, response: &mut FetchResponse) {
    if plan.version < leader_hints::FIRST_FETCH_VERSION {
        return;
    }
    let mut hints = LeaderHints::new(plan.broker.controller.image(), plan.here.clone());
    for topic in &mut response.responses {
        let info = if plan.version >= 13 {
            hints.image().topic_by_id(&topic.topic_id).cloned()
        } else {
            hints.image().topic(topic.topic.as_str()).cloned()
        };
        for p in &mut topic.partitions {
            if let Some((leader, epoch)) =
                hints.current_leader(info.as_deref(), p.partition_index, p.error_code)
            {
                p.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
            }
        }
    }
    response.node_endpoints = leader_hints::node_endpoints!(hints, NodeEndpoint);
}

/// Read every target once (batch headers only: the records are file slices).
fn read_all(plan: &Plan) -> Read {
    let version = plan.version;
    let mut records_out = Vec::with_capacity(plan.targets.len());
    let mut remaining = plan.max_bytes;
    let mut min_one_batch = true;
    let mut total = 0usize;
    let mut has_error = false;
    let mut throttled_bytes = 0usize;
    let mut redirects = false;
    // Kafka's `shouldLeaderThrottle`: over the leader throttle, an out-of-sync
    // follower gets nothing of a throttled partition this round.
    let leader_throttled = plan.replica_id >= 0
        && plan
            .broker
            .leader_quota
            .is_exceeded(ottla_replica::partition::now_ms());
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for target in &plan.targets {
        let mut data = PartitionData::default().with_partition_index(target.index);
        if !plan.read_committed {
            data = data.with_aborted_transactions(None);
        }
        let preferred = target
            .partition
            .as_ref()
            .ok()
            .and_then(|p| preferred_read_replica(plan, p, target));
        match &target.partition {
            Err(code) => {
                has_error = true;
                data = data.with_error_code(*code).with_high_watermark(-1);
                records_out.push(LogSlices::default());
            }
            Ok(partition) if plan.replica_id >= 0 && diverged(partition, target).is_some() => {
                // The follower's log differs from here on: no records, and its fetch
                // offset proves nothing; it truncates and fetches again.
                let (epoch, end_offset) = diverged(partition, target).expect("checked");
                data = data
                    .with_diverging_epoch(
                        EpochEndOffset::default()
                            .with_epoch(epoch)
                            .with_end_offset(end_offset),
                    )
                    .with_high_watermark(partition.high_watermark())
                    .with_last_stable_offset(partition.last_stable_offset())
                    .with_log_start_offset(partition.log_start_offset());
                records_out.push(LogSlices::default());
            }
            Ok(partition) if preferred.is_some() => {
                // KIP-392: the consumer should read from a replica in its rack; no
                // records, and it goes there next.
                let preferred = preferred.expect("checked");
                redirects = true;
                data = data
                    .with_preferred_read_replica(BrokerId(preferred))
                    .with_high_watermark(partition.high_watermark())
                    .with_last_stable_offset(partition.last_stable_offset())
                    .with_log_start_offset(partition.log_start_offset());
                records_out.push(LogSlices::default());
            }
            Ok(partition) => {
                let limit = target.partition_max_bytes.min(remaining);
                match partition.read(target.fetch_offset, limit, plan.isolation, min_one_batch) {
                    Ok(read) => {
                        if plan.replica_id >= 0 {
                            // The follower holds everything below its fetch offset: the
                            // high watermark may move, and the ISR may grow (through
                            // the controller).
                            let proposal = partition.update_follower_fetch_state(
                                plan.replica_id,
                                target.fetch_offset,
                                ottla_replica::partition::now_ms(),
                            );
                            if let Some(proposal) = proposal {
                                // KIP-841: a fenced or shutting-down broker is never
                                // proposed for the ISR (the controller would refuse it).
                                let image = plan.broker.controller.image();
                                if proposal
                                    .new_isr
                                    .iter()
                                    .all(|r| image.is_eligible_replica(*r))
                                {
                                    plan.broker.alter_partition.submit(partition, proposal);
                                } else {
                                    partition.abandon_isr_proposal(&proposal);
                                }
                            }
                        }
                        let throttled = plan.replica_id >= 0
                            && partition.throttles.leader()
                            && !partition.isr().contains(&plan.replica_id);
                        let records = if throttled && leader_throttled {
                            LogSlices::default()
                        } else {
                            read.records
                        };
                        let n = records.len();
                        if throttled {
                            throttled_bytes += n;
                        }
                        if plan.replica_id < 0 {
                            // BytesOutPerSec counts consumers only, as Kafka's does.
                            partition
                                .traffic
                                .bytes_out
                                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        if n > 0 {
                            min_one_batch = false;
                            remaining = remaining.saturating_sub(n);
                            total += n;
                        }
                        data = data
                            .with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(read.last_stable_offset)
                            .with_log_start_offset(read.log_start_offset);
                        if plan.read_committed && !records.is_empty() {
                            data = data.with_aborted_transactions(Some(
                                read.aborted
                                    .iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first_offset)
                                    })
                                    .collect(),
                            ));
                        }
                        records_out.push(records);
                    }
                    Err(e) => {
                        has_error = true;
                        let code = match e {
                            LogError::OffsetOutOfRange { .. } => {
                                ResponseError::OffsetOutOfRange.code()
                            }
                            other => {
                                tracing::warn!("Fetch from {} failed: {other}", partition.name());
                                other.kafka_error_code()
                            }
                        };
                        data = data
                            .with_error_code(code)
                            .with_high_watermark(partition.high_watermark())
                            .with_last_stable_offset(partition.last_stable_offset())
                            .with_log_start_offset(partition.log_start_offset());
                        records_out.push(LogSlices::default());
                    }
                }
            }
        }
        if version < 5 {
            data = data.with_log_start_offset(-1);
        }
        // Responses group consecutive partitions of the same topic, in request order.
        let same_topic = topics.last().is_some_and(|t| {
            if version >= 13 {
                t.topic_id == target.topic_id
            } else {
                t.topic == target.name
            }
        });
        if !same_topic {
            let mut t = FetchableTopicResponse::default();
            if version >= 13 {
                t = t.with_topic_id(target.topic_id);
            } else {
                t = t.with_topic(target.name.clone());
            }
            topics.push(t);
        }
        topics
            .last_mut()
            .expect("pushed above")
            .partitions
            .push(data);
    }
    debug_assert_eq!(records_out.len(), plan.targets.len());
    Read {
        response: FetchResponse::default().with_responses(topics),
        records: records_out,
        bytes: total,
        has_error,
        throttled_bytes,
        redirects,
    }
}
