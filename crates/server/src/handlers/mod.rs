//! The request router: one module per Kafka API, named after it, so this directory is
//! the table of contents of the protocol Ottla speaks.
//!
//! Each handler decodes its request body, calls into the broker, and builds the
//! response message with Kafka's error codes. Side effects (appends, topic creation)
//! start synchronously inside `dispatch`, in the order requests arrived on the
//! connection, exactly as Kafka processes one request per connection at a time; only
//! *waiting* (a long-polling fetch, a coordinator write waiting for its commit) is
//! deferred into a [`Reply::Later`], so it does not hold up the requests pipelined
//! behind it. Coordinator operations are queued on their shard inside `dispatch` (that
//! is the side effect starting) and answered through a `Reply::Later`. Controller writes
//! (creating and deleting topics, handing out producer ids) block on the disk: they run
//! on the blocking pool and the connection awaits them ([`Reply::Await`]).

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_topic_partitions;
mod describe_transactions;
mod describe_user_scram_credentials;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use ottla_controller::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use ottla_log::LogSlices;
use ottla_protocol::api_versions::is_supported;
use ottla_protocol::frame::{encode_response, Request};
use ottla_protocol::spliced::{FramePart, SplicedFrame};

use crate::broker::Broker;
use crate::security::Session;

/// What the connection sends back for one request.
pub enum Reply {
    /// A response frame, ready to write.
    Now(Frame),
    /// A response that completes later (a fetch waiting for data).
    Later(Pin<Box<dyn Future<Output = Result<Frame, HandlerError>> + Send>>),
    /// Work the connection awaits before it reads its next request: a handler whose side
    /// effects block on the disk (a controller commit fsyncs the metadata log and opens
    /// or deletes partition directories), run on the blocking pool so no runtime worker
    /// waits for it, while the requests behind it on the connection still start only
    /// after it is done, as Kafka processes a connection's requests one at a time.
    Await(Pin<Box<dyn Future<Output = Result<Reply, HandlerError>> + Send>>),
    /// No response at all: Produce with acks=0, as Kafka does.
    Nothing,
}

/// An encoded response frame, size prefix included.
#[derive(Debug)]
pub enum Frame {
    /// Every byte in memory.
    Bytes(Bytes),
    /// A Fetch response whose record data is still in the segment files: the
    /// connection's writer sends those parts from the files (see `ottla_protocol::spliced`).
    Spliced(SplicedFrame<LogSlices>),
}

impl Frame {
    /// Bytes held in memory until the frame is written (what the per-connection reply
    /// budget counts; file slices hold no memory).
    pub fn buffered_len(&self) -> usize {
        match self {
            Frame::Bytes(b) => b.len(),
            Frame::Spliced(f) => f
                .parts
                .iter()
                .map(|p| match p {
                    FramePart::Bytes(b) => b.len(),
                    FramePart::Records(_) => 0,
                })
                .sum(),
        }
    }
}

/// A request the broker cannot answer with an error code: Kafka closes the connection
/// for these, and so do we, after logging one line.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("produce with acks=0 failed; closing the connection so the producer notices")]
    AcksZeroError,
    #[error("cannot encode {api_key:?} v{version} response: {reason}")]
    Encode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decode a request body at the header's version.
fn decode<T: Decodable>(request: &Request) -> Result<T, HandlerError> {
    let mut body = request.body.clone();
    T::decode(&mut body, request.version()).map_err(|e| HandlerError::Malformed {
        api_key: request.api_key,
        version: request.version(),
        reason: e.to_string(),
    })
}

/// Encode a response frame for `request`.
fn encode<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Frame, HandlerError> {
    encode_response(api_key, version, correlation_id, body)
        .map(Frame::Bytes)
        .map_err(|e| HandlerError::Encode {
            api_key,
            version,
            reason: e.to_string(),
        })
}

/// A response whose body comes later (a coordinator answers once its records are
/// committed). The coordinator's operation is already scheduled when this is called.
fn respond_later<T: Encodable + Send + 'static>(
    request: &Request,
    body: impl Future<Output = T> + Send + 'static,
) -> Result<Reply, HandlerError> {
    let (api_key, version, correlation_id) =
        (request.api_key, request.version(), request.correlation_id());
    Ok(Reply::Later(Box::pin(async move {
        encode(api_key, version, correlation_id, &body.await)
    })))
}

fn respond<T: Encodable>(request: &Request, body: &T) -> Result<Reply, HandlerError> {
    Ok(Reply::Now(encode(
        request.api_key,
        request.version(),
        request.correlation_id(),
        body,
    )?))
}

/// KIP-320 fencing: a request naming the leader epoch it believes current (`-1`: none)
/// is refused with FENCED_LEADER_EPOCH when that epoch is older than the partition's
/// and UNKNOWN_LEADER_EPOCH when it is newer (this broker has not caught up yet).
pub(crate) fn check_leader_epoch(
    partition: &ottla_replica::Partition,
    requested: i32,
) -> Result<(), i16> {
    if requested < 0 {
        return Ok(());
    }
    let current = partition.leader_epoch();
    match requested.cmp(&current) {
        std::cmp::Ordering::Less => Err(kafka_protocol::ResponseError::FencedLeaderEpoch.code()),
        std::cmp::Ordering::Greater => {
            Err(kafka_protocol::ResponseError::UnknownLeaderEpoch.code())
        }
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// The error for a partition this broker does not host: NOT_LEADER_OR_FOLLOWER when
/// it exists (another broker leads it: the client refreshes its metadata and goes
/// there), UNKNOWN_TOPIC_OR_PARTITION when it does not.
pub(crate) fn not_hosted_error(topic: Option<&ottla_controller::TopicInfo>, index: i32) -> i16 {
    match topic {
        Some(t) if index >= 0 && (index as usize) < t.partitions.len() => {
            kafka_protocol::ResponseError::NotLeaderOrFollower.code()
        }
        _ => kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
    }
}

/// The error code a transactional request answers with. PRODUCER_FENCED becomes
/// INVALID_PRODUCER_EPOCH for request versions from before KIP-588, as Kafka answers.
pub(crate) fn txn_error_code(
    e: &ottla_coordinator::txn::TxnRequestError,
    knows_producer_fenced: bool,
) -> i16 {
    let code = e.kafka_error_code();
    if code == kafka_protocol::ResponseError::ProducerFenced.code() && !knows_producer_fenced {
        kafka_protocol::ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// Why CreateAcls, DescribeAcls or DeleteAcls (needing `operation` on the cluster) are
/// refused as a whole: SECURITY_DISABLED without an authorizer, as Kafka answers.
pub(crate) fn acl_api_refusal(
    caller: &crate::security::authorizer::Caller,
    operation: i8,
) -> Option<(kafka_protocol::ResponseError, &'static str)> {
    if !caller.has_authorizer() {
        Some((
            kafka_protocol::ResponseError::SecurityDisabled,
            "No Authorizer is configured on the broker",
        ))
    } else if !caller.allowed_on_cluster(operation) {
        Some((
            kafka_protocol::ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ))
    } else {
        None
    }
}

/// Shorthand for the many optional strings in responses.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Run `handler` on the blocking pool; the connection awaits it ([`Reply::Await`]).
/// This broker's address on the listener a request came in on: Metadata,
/// FindCoordinator and DescribeCluster answer it for this broker, and the other brokers'
/// addresses on the same listener as they registered them, so that a client stays on
/// the listener (and security protocol) it chose.
#[derive(Debug, Clone)]
pub struct AdvertisedEndpoint {
    pub node_id: i32,
    /// The listener the request came in on.
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl AdvertisedEndpoint {
    fn of(session: &Session) -> AdvertisedEndpoint {
        AdvertisedEndpoint {
            node_id: session.listener.node_id,
            listener: session.listener.name.clone(),
            host: session.listener.advertised_host.clone(),
            port: i32::from(session.listener.advertised_port),
        }
    }

    /// `info`'s host and port, as a client on this listener should reach it; `None`
    /// when that broker has no such listener (it is then left out, as Kafka does).
    pub fn host_port(&self, info: &ottla_controller::BrokerInfo) -> Option<(String, i32)> {
        if info.node_id == self.node_id {
            Some((self.host.clone(), self.port))
        } else {
            info.endpoint(&self.listener)
        }
    }
}

fn on_blocking_pool(
    broker: &Arc<Broker>,
    request: Request,
    handler: impl FnOnce(&Arc<Broker>, &Request) -> Result<Reply, HandlerError> + Send + 'static,
) -> Result<Reply, HandlerError> {
    let broker = broker.clone();
    let (api_key, version) = (request.api_key, request.version());
    Ok(Reply::Await(Box::pin(async move {
        tokio::task::spawn_blocking(move || handler(&broker, &request))
            .await
            .unwrap_or_else(|e| {
                tracing::error!("Handler for {api_key:?} v{version} failed: {e}");
                Err(HandlerError::Malformed {
                    api_key,
                    version,
                    reason: "internal error".into(),
                })
            })
    })))
}

/// Route one request. ApiVersions answers every version (with the documented v0
/// fallback); any other unsupported version closes the connection, as in Kafka.
pub fn dispatch(
    broker: &Arc<Broker>,
    request: Request,
    session: &Session,
) -> Result<Reply, HandlerError> {
    let peer = session.peer;
    let here = AdvertisedEndpoint::of(session);
    let caller = session.caller.clone();
    broker.metrics.count_request(request.api_key);
    if request.api_key == ApiKey::ApiVersions {
        return api_versions::handle(&request);
    }
    if !is_supported(request.api_key as i16, request.version()) {
        return Err(HandlerError::UnsupportedVersion {
            api_key: request.api_key,
            version: request.version(),
        });
    }
    match request.api_key {
        ApiKey::Produce => produce::handle(broker, &request, &caller, &here),
        ApiKey::Fetch => fetch::handle(broker, &request, &caller, &here),
        ApiKey::ListOffsets => list_offsets::handle(broker, &request, &caller),
        ApiKey::Metadata if metadata::may_create_topics(broker, &request) => {
            on_blocking_pool(broker, request, move |b, r| {
                metadata::handle(b, r, &here, &caller)
            })
        }
        ApiKey::Metadata => metadata::handle(broker, &request, &here, &caller),
        ApiKey::CreateTopics => on_blocking_pool(broker, request, move |b, r| {
            create_topics::handle(b, r, &caller)
        }),
        ApiKey::DeleteTopics => on_blocking_pool(broker, request, move |b, r| {
            delete_topics::handle(b, r, &caller)
        }),
        ApiKey::InitProducerId => on_blocking_pool(broker, request, move |b, r| {
            init_producer_id::handle(b, r, &caller)
        }),
        ApiKey::CreateAcls => on_blocking_pool(broker, request, move |b, r| {
            create_acls::handle(b, r, &caller)
        }),
        ApiKey::DeleteAcls => on_blocking_pool(broker, request, move |b, r| {
            delete_acls::handle(b, r, &caller)
        }),
        ApiKey::DescribeAcls => describe_acls::handle(broker, &request, &caller),
        ApiKey::DescribeConfigs => describe_configs::handle(broker, &request, &caller),
        ApiKey::CreatePartitions => on_blocking_pool(broker, request, move |b, r| {
            create_partitions::handle(b, r, &caller)
        }),
        ApiKey::DescribeCluster => describe_cluster::handle(broker, &request, &here, &caller),
        ApiKey::DescribeUserScramCredentials => {
            describe_user_scram_credentials::handle(broker, &request, &caller)
        }
        // A controller write.
        ApiKey::AlterUserScramCredentials => on_blocking_pool(broker, request, move |b, r| {
            alter_user_scram_credentials::handle(b, r, &caller)
        }),
        // May ask the active controller over the network.
        ApiKey::DescribeQuorum => on_blocking_pool(broker, request, move |b, r| {
            describe_quorum::handle(b, r, &caller)
        }),
        ApiKey::ElectLeaders => on_blocking_pool(broker, request, move |b, r| {
            elect_leaders::handle(b, r, &caller)
        }),
        ApiKey::AlterConfigs => on_blocking_pool(broker, request, move |b, r| {
            alter_configs::handle(b, r, &caller)
        }),
        ApiKey::IncrementalAlterConfigs => on_blocking_pool(broker, request, move |b, r| {
            incremental_alter_configs::handle(b, r, &caller)
        }),
        ApiKey::AlterPartitionReassignments => on_blocking_pool(broker, request, move |b, r| {
            alter_partition_reassignments::handle(b, r, &caller)
        }),
        ApiKey::ListPartitionReassignments => {
            list_partition_reassignments::handle(broker, &request, &caller)
        }
        ApiKey::OffsetCommit => offset_commit::handle(broker, &request, &caller),
        ApiKey::OffsetFetch => offset_fetch::handle(broker, &request, &caller),
        // The first lookup creates __consumer_offsets or __transaction_state (and its
        // partitions): a controller write.
        ApiKey::FindCoordinator
            if broker.controller.image().topic(OFFSETS_TOPIC).is_none()
                || broker
                    .controller
                    .image()
                    .topic(TRANSACTION_STATE_TOPIC)
                    .is_none() =>
        {
            on_blocking_pool(broker, request, move |b, r| {
                find_coordinator::handle(b, r, &here, &caller)
            })
        }
        ApiKey::FindCoordinator => find_coordinator::handle(broker, &request, &here, &caller),
        // Kafka reports the client's address as "/ip".
        ApiKey::JoinGroup => {
            join_group::handle(broker, &request, format!("/{}", peer.ip()), &caller)
        }
        ApiKey::Heartbeat => heartbeat::handle(broker, &request, &caller),
        ApiKey::LeaveGroup => leave_group::handle(broker, &request, &caller),
        ApiKey::SyncGroup => sync_group::handle(broker, &request, &caller),
        ApiKey::DescribeGroups => describe_groups::handle(broker, &request, &caller),
        ApiKey::ListGroups => list_groups::handle(broker, &request, &caller),
        ApiKey::DeleteGroups => delete_groups::handle(broker, &request, &caller),
        ApiKey::ConsumerGroupHeartbeat => {
            consumer_group_heartbeat::handle(broker, &request, format!("/{}", peer.ip()), &caller)
        }
        ApiKey::ConsumerGroupDescribe => consumer_group_describe::handle(broker, &request, &caller),
        ApiKey::OffsetDelete => offset_delete::handle(broker, &request, &caller),
        ApiKey::DescribeTopicPartitions => {
            describe_topic_partitions::handle(broker, &request, &caller)
        }
        ApiKey::DescribeLogDirs => on_blocking_pool(broker, request, move |b, r| {
            describe_log_dirs::handle(b, r, &caller)
        }),
        ApiKey::DeleteRecords => on_blocking_pool(broker, request, move |b, r| {
            delete_records::handle(b, r, &caller)
        }),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(broker, &request, &caller),
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(broker, &request, &caller),
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(broker, &request, &caller),
        ApiKey::EndTxn => end_txn::handle(broker, &request, &caller),
        ApiKey::WriteTxnMarkers => write_txn_markers::handle(broker, &request, &caller),
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(broker, &request, &caller),
        ApiKey::DescribeProducers => describe_producers::handle(broker, &request, &caller),
        ApiKey::DescribeTransactions => describe_transactions::handle(broker, &request, &caller),
        ApiKey::ListTransactions => list_transactions::handle(broker, &request, &caller),
        other => Err(HandlerError::UnsupportedVersion {
            api_key: other,
            version: request.version(),
        }),
    }
}
