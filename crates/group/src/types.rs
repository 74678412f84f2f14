//! The coordinator's requests, responses and effects, in domain terms.
//!
//! Handlers translate Kafka's versioned wire messages to and from these; the state
//! machine never sees a protocol version, which keeps it small and testable.

use bytes::Bytes;

use crate::records::{CoordinatorKey, GroupMetadataValue, OffsetCommitValue};

/// Identifies a request whose response the state machine will produce later (a
/// JoinGroup waiting for the rebalance, a SyncGroup waiting for the leader).
pub type Ticket = u64;

/// Kafka error codes the coordinator returns.
pub mod error {
    pub const NONE: i16 = 0;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
}

/// A record for `__consumer_offsets`: key, and value (`None` = tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    OffsetCommit(OffsetCommitValue),
    GroupMetadata(GroupMetadataValue),
    ConsumerGroup(crate::consumer::records::ConsumerGroupValue),
    Tombstone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorRecord {
    pub key: CoordinatorKey,
    pub value: RecordValue,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
    pub reason: Option<String>,
    /// The topics the sender may describe: what a subscription regex of the consumer
    /// group it joins resolves to, if its join triggers the resolution.
    pub topic_access: crate::consumer::TopicAccess,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResponse {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members (with their metadata for the chosen protocol).
    pub members: Vec<JoinMember>,
    /// JoinGroup v9+: the leader must not compute a new assignment (a static leader
    /// rejoining a stable group).
    pub skip_assignment: bool,
}

impl JoinResponse {
    pub fn error(error: i16, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: i16) -> SyncResponse {
        SyncResponse {
            error,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub offsets: Vec<PartitionOffsetCommit>,
    /// The OffsetCommit request version; `None` for a TxnOffsetCommit. A consumer group
    /// member must commit with OffsetCommit v9+ (which carries its member epoch).
    pub offset_commit_version: Option<i16>,
}

impl OffsetCommitRequest {
    /// One result per offset, all with `error`, in the request's order.
    pub fn results(&self, error: i16) -> Vec<PartitionResult> {
        self.offsets
            .iter()
            .map(|o| PartitionResult {
                topic: o.topic.clone(),
                partition: o.partition,
                error,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct PartitionOffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub error: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: i16,
}

/// What DescribeGroups reports for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub error: i16,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    pub group_type: GroupType,
}

/// Kafka's `Group.GroupType`: which protocol a group speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    Classic,
    Consumer,
}

impl GroupType {
    /// The names ListGroups v5 reports and filters on (case-insensitive).
    pub fn name(self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
        }
    }
}

/// One committed offset of one group (see `GroupCoordinator::committed_offsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Everything a call produces besides its immediate answer: records to append to
/// `__consumer_offsets` (before any reply is sent) and replies to earlier requests.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<CoordinatorRecord>,
    pub joins: Vec<(Ticket, JoinResponse)>,
    pub syncs: Vec<(Ticket, SyncResponse)>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.joins.is_empty() && self.syncs.is_empty()
    }
}
