//! The consumer group (KIP-848) records of `__consumer_offsets`, byte-compatible with
//! Apache Kafka 4.1 (`group-coordinator/src/main/resources/common/message/ConsumerGroup*`).
//!
//! The framing is the one of every coordinator record (see [`crate::records`]):
//!
//! ```text
//! record key   = int16 record type | key message   (key version 0, never flexible)
//! record value = int16 value version | value message (null value = tombstone)
//! ```
//!
//! | type | key fields (int16-length strings) | value |
//! |---|---|---|
//! | 3 | GroupId | `ConsumerGroupMetadataValue` |
//! | 4 | GroupId | `ConsumerGroupPartitionMetadataValue` |
//! | 5 | GroupId, MemberId | `ConsumerGroupMemberMetadataValue` |
//! | 6 | GroupId | `ConsumerGroupTargetAssignmentMetadataValue` |
//! | 7 | GroupId, MemberId | `ConsumerGroupTargetAssignmentMemberValue` |
//! | 8 | GroupId, MemberId | `ConsumerGroupCurrentMemberAssignmentValue` |
//! | 16 | GroupId, RegularExpression | `ConsumerGroupRegularExpressionValue` |
//!
//! Every value schema has `validVersions` 0 and `flexibleVersions` 0+, and Kafka 4.1's
//! `GroupCoordinatorRecordHelpers` writes them all as version 0. So version 0 is the
//! only version written and read; any other version is
//! [`RecordCodecError::UnsupportedVersion`] (Kafka's serde refuses it too). Being
//! flexible, version 0 uses compact strings and arrays (unsigned varint of length + 1,
//! 0 for null) and ends every struct, nested ones included, with a tagged-field section.
//!
//! Value layouts (`?` nullable, `[]` compact array, `{tag n}` tagged field):
//!
//! ```text
//! 3  MetadataValue            Epoch int32, {tag 0} MetadataHash int64 (default 0, KIP-1101)
//! 4  PartitionMetadataValue   Topics [] { TopicId uuid, TopicName string,
//!                                 NumPartitions int32,
//!                                 PartitionMetadata [] { Partition int32, Racks []string } }
//! 5  MemberMetadataValue      InstanceId?, RackId?, ClientId, ClientHost,
//!                             SubscribedTopicNames []string, SubscribedTopicRegex?,
//!                             RebalanceTimeoutMs int32, ServerAssignor?,
//!                             {tag 0} ClassicMemberMetadata? { SessionTimeoutMs int32,
//!                                 SupportedProtocols [] { Name string, Metadata bytes } }
//! 6  TargetAssignmentMetadata AssignmentEpoch int32
//! 7  TargetAssignmentMember   TopicPartitions [] { TopicId uuid, Partitions []int32 }
//! 8  CurrentMemberAssignment  MemberEpoch int32, PreviousMemberEpoch int32, State int8,
//!                             AssignedPartitions [] { TopicId uuid, Partitions []int32 },
//!                             PartitionsPendingRevocation (same)
//! 16 RegularExpressionValue   Topics []string, Version int64, Timestamp int64
//! ```
//!
//! Notes:
//! - `MetadataHash` is written, as Kafka's generated code does, only when it is not its
//!   default 0. Later Kafka versions add more tagged fields (`CreationTimeMs` tag 1 in
//!   the metadata value, `AssignmentTimestamp` tag 0 in the target assignment metadata,
//!   `AssignmentEpochs` tag 0 in the current assignment's topic entries); like every
//!   unknown tag they are skipped when read.
//! - `RebalanceTimeoutMs` comes before `ServerAssignor` on the wire (not in the order of
//!   [`ConsumerGroupMemberMetadataValue`]'s fields).
//! - `ClassicMemberMetadata` is set for members that joined with the classic protocol
//!   while the group is a consumer group (online migration); being a nullable struct
//!   (KIP-893) its bytes start with an int8, 1 when present. It is written only when
//!   set (null is its default, so Kafka writes nothing for other members either).
//! - `State` is Kafka's `MemberState`: 0 `STABLE`, 1 `UNREVOKED_PARTITIONS`,
//!   2 `UNRELEASED_PARTITIONS`, 127 `UNKNOWN` (any unknown value reads as `UNKNOWN` in
//!   Kafka); it is carried as the raw byte here.
//! - `ConsumerGroupPartitionMetadataValue` is replaced by the metadata hash in 4.1, which
//!   only writes tombstones for it; it is read (its per-partition rack list, unused since
//!   4.0, is checked and dropped) and written with empty rack lists, as Kafka 4.0 did.
//! - Kafka sorts `SubscribedTopicNames` and the regex `Topics` before writing; the
//!   encoder writes them in the order given. Topic assignments are written in map order
//!   with partitions ascending; duplicate topics are merged when read.
//!
//! Decoding follows the rules of [`crate::records`]: a null (negative) length on a
//! non-nullable field is [`RecordCodecError::NullField`], strings longer than 32767 bytes
//! are refused as Kafka's generated readers do, every length is checked against the
//! bytes that remain before anything is allocated (hostile input yields an error, never
//! a panic or a large allocation), invalid UTF-8 is replaced like Java's
//! `new String(bytes, UTF_8)`, and trailing bytes after a message are ignored.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::records::{RecordCodecError, MAX_STRING_LEN};

/// Partitions per topic id, as every assignment in these records is stored.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

pub const RECORD_TYPE_CONSUMER_GROUP_METADATA: i16 = 3;
pub const RECORD_TYPE_CONSUMER_GROUP_PARTITION_METADATA: i16 = 4;
pub const RECORD_TYPE_CONSUMER_GROUP_MEMBER_METADATA: i16 = 5;
pub const RECORD_TYPE_CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA: i16 = 6;
pub const RECORD_TYPE_CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER: i16 = 7;
pub const RECORD_TYPE_CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT: i16 = 8;
pub const RECORD_TYPE_CONSUMER_GROUP_REGULAR_EXPRESSION: i16 = 16;

/// The key of a consumer group record (the record type selects the variant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsumerGroupKey {
    /// 3: `ConsumerGroupMetadataKey`
    Metadata { group: String },
    /// 4: `ConsumerGroupPartitionMetadataKey` (read; Kafka 4.1 still writes a tombstone)
    PartitionMetadata { group: String },
    /// 5: `ConsumerGroupMemberMetadataKey`
    MemberMetadata { group: String, member: String },
    /// 6: `ConsumerGroupTargetAssignmentMetadataKey`
    TargetAssignmentMetadata { group: String },
    /// 7: `ConsumerGroupTargetAssignmentMemberKey`
    TargetAssignmentMember { group: String, member: String },
    /// 8: `ConsumerGroupCurrentMemberAssignmentKey`
    CurrentMemberAssignment { group: String, member: String },
    /// 16: `ConsumerGroupRegularExpressionKey`
    RegularExpression { group: String, regex: String },
}

impl ConsumerGroupKey {
    pub fn group(&self) -> &str {
        match self {
            ConsumerGroupKey::Metadata { group }
            | ConsumerGroupKey::PartitionMetadata { group }
            | ConsumerGroupKey::MemberMetadata { group, .. }
            | ConsumerGroupKey::TargetAssignmentMetadata { group }
            | ConsumerGroupKey::TargetAssignmentMember { group, .. }
            | ConsumerGroupKey::CurrentMemberAssignment { group, .. }
            | ConsumerGroupKey::RegularExpression { group, .. } => group,
        }
    }
}

/// `ConsumerGroupMetadataValue`: the group epoch and the hash of the subscribed topics'
/// metadata (KIP-1101, `MetadataHash`; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadataValue {
    pub epoch: i32,
    pub metadata_hash: i64,
}

/// One topic of `ConsumerGroupPartitionMetadataValue` (read only: Kafka 4.1 replaced it
/// by the metadata hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadataTopic {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub num_partitions: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupPartitionMetadataValue {
    pub topics: Vec<PartitionMetadataTopic>,
}

/// `ConsumerGroupMemberMetadataValue`: what a member told the coordinator about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupMemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// Set for a member that speaks the classic protocol inside a consumer group
    /// (during an online migration): tagged field 0.
    pub classic_member_metadata: Option<ClassicMemberMetadata>,
}

/// `ClassicMemberMetadata`: how a classic-protocol member of a consumer group joined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberMetadata {
    pub session_timeout_ms: i32,
    /// (protocol name, metadata) as in its JoinGroup, in the member's order.
    pub supported_protocols: Vec<(String, Vec<u8>)>,
}

/// `ConsumerGroupTargetAssignmentMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAssignmentMetadataValue {
    pub assignment_epoch: i32,
}

/// `ConsumerGroupTargetAssignmentMemberValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetAssignmentMemberValue {
    pub topic_partitions: TopicPartitions,
}

/// `ConsumerGroupCurrentMemberAssignmentValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentMemberAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState` value: 0 `STABLE`, 1 `UNREVOKED_PARTITIONS`,
    /// 2 `UNRELEASED_PARTITIONS`, 127 `UNKNOWN` (Kafka reads any other value as `UNKNOWN`).
    pub state: i8,
    pub assigned_partitions: TopicPartitions,
    pub partitions_pending_revocation: TopicPartitions,
}

/// `ConsumerGroupRegularExpressionValue`: the topics a regex resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegularExpressionValue {
    pub topics: Vec<String>,
    pub version: i64,
    pub timestamp: i64,
}

/// A consumer group record's value (`None` in the record is a tombstone, handled by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerGroupValue {
    Metadata(ConsumerGroupMetadataValue),
    PartitionMetadata(ConsumerGroupPartitionMetadataValue),
    MemberMetadata(ConsumerGroupMemberMetadataValue),
    TargetAssignmentMetadata(TargetAssignmentMetadataValue),
    TargetAssignmentMember(TargetAssignmentMemberValue),
    CurrentMemberAssignment(CurrentMemberAssignmentValue),
    RegularExpression(RegularExpressionValue),
}

/// The only value version of every consumer group value schema, and the one Kafka 4.1 writes.
const VALUE_VERSION: i16 = 0;

/// Preallocation cap for decoded arrays; longer arrays still decode, growing as they go.
const MAX_PREALLOC: usize = 1024;

/// The fewest bytes of one `{TopicId, Partitions}` entry: uuid, empty array, no tags.
const MIN_TOPIC_PARTITIONS_BYTES: u64 = 16 + 1 + 1;
/// The fewest bytes of one `ConsumerGroupPartitionMetadataValue` topic: uuid, empty name,
/// int32, empty `PartitionMetadata` array, no tags.
const MIN_PARTITION_METADATA_TOPIC_BYTES: u64 = 16 + 1 + 4 + 1 + 1;
/// The fewest bytes of one `PartitionMetadata` entry: int32, empty racks, no tags.
const MIN_PARTITION_RACKS_BYTES: u64 = 4 + 1 + 1;

type Result<T, E = RecordCodecError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Reading

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: u64, field: &'static str) -> Result<&'a [u8]> {
        if n > self.buf.len() as u64 {
            return Err(RecordCodecError::Truncated {
                field,
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n as usize);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn i8(&mut self, field: &'static str) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    fn i16(&mut self, field: &'static str) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn uuid(&mut self, field: &'static str) -> Result<Uuid> {
        Ok(Uuid::from_bytes(self.array(field)?))
    }

    /// Kafka's unsigned varint: at most 5 bytes, value fits in 32 bits.
    fn uvarint(&mut self, field: &'static str) -> Result<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.array::<1>(field)?;
            if i == 4 && b > 0x0f {
                return Err(RecordCodecError::InvalidVarint { field });
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordCodecError::InvalidVarint { field })
    }

    fn utf8(&mut self, len: u64, field: &'static str) -> Result<String> {
        if len > MAX_STRING_LEN as u64 {
            return Err(RecordCodecError::InvalidLength {
                field,
                length: len as i64,
            });
        }
        let bytes = self.take(len, field)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// A non-flexible (int16 length) non-nullable string, as in every key.
    fn key_string(&mut self, field: &'static str) -> Result<String> {
        let len = self.i16(field)?;
        let len = u64::try_from(len).map_err(|_| RecordCodecError::NullField { field })?;
        self.utf8(len, field)
    }

    /// A compact nullable string: unsigned varint of length + 1, 0 is null.
    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>> {
        match self.uvarint(field)?.checked_sub(1) {
            None => Ok(None),
            Some(len) => self.utf8(u64::from(len), field).map(Some),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String> {
        self.nullable_string(field)?
            .ok_or(RecordCodecError::NullField { field })
    }

    /// Element count of a non-nullable compact array whose elements take at least
    /// `min_element_bytes` each; a count the remaining bytes cannot hold is rejected.
    fn array_len(&mut self, field: &'static str, min_element_bytes: u64) -> Result<usize> {
        let count = self
            .uvarint(field)?
            .checked_sub(1)
            .ok_or(RecordCodecError::NullField { field })?;
        let needed = u64::from(count).saturating_mul(min_element_bytes.max(1));
        if needed > self.remaining() as u64 {
            return Err(RecordCodecError::Truncated {
                field,
                needed,
                remaining: self.remaining(),
            });
        }
        // `needed <= remaining` bounds count by the input length, so it fits in usize.
        Ok(count as usize)
    }

    fn strings(&mut self, field: &'static str) -> Result<Vec<String>> {
        let count = self.array_len(field, 1)?;
        let mut out = Vec::with_capacity(count.min(MAX_PREALLOC));
        for _ in 0..count {
            out.push(self.string(field)?);
        }
        Ok(out)
    }

    /// Reads a tagged-field section, handing each field's tag and bytes to `field_fn`.
    /// Tags it does not know it must ignore: unknown tags are skipped, as Kafka does
    /// (it keeps them aside, unread).
    fn tagged_fields(
        &mut self,
        mut field_fn: impl FnMut(u32, &'a [u8]) -> Result<()>,
    ) -> Result<()> {
        // Every field takes at least two bytes (tag, size), so a huge count fails on the
        // bytes that are not there instead of looping long.
        let count = self.uvarint("tagged fields count")?;
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")?;
            let data = self.take(u64::from(size), "tagged field")?;
            field_fn(tag, data)?;
        }
        Ok(())
    }

    fn skip_tagged_fields(&mut self) -> Result<()> {
        self.tagged_fields(|_, _| Ok(()))
    }

    /// `[]{TopicId uuid, Partitions []int32}` into a map; duplicate topics are merged.
    fn topic_partitions(&mut self, field: &'static str) -> Result<TopicPartitions> {
        let count = self.array_len(field, MIN_TOPIC_PARTITIONS_BYTES)?;
        let mut out = TopicPartitions::new();
        for _ in 0..count {
            let topic_id = self.uuid("topicId")?;
            let n = self.array_len("partitions", 4)?;
            let partitions = out.entry(topic_id).or_default();
            for _ in 0..n {
                partitions.insert(self.i32("partitions")?);
            }
            // Later Kafka versions add `AssignmentEpochs` (tag 0) here: skipped.
            self.skip_tagged_fields()?;
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Writing

fn put_i8(out: &mut Vec<u8>, v: i8) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_uuid(out: &mut Vec<u8>, id: &Uuid) {
    out.extend_from_slice(id.as_bytes());
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn check_string_len(field: &str, s: &str) {
    assert!(
        s.len() <= MAX_STRING_LEN,
        "field {field} is too long to be serialized ({} bytes, at most {MAX_STRING_LEN})",
        s.len()
    );
}

/// A non-flexible (int16 length) string, as in every key.
fn put_key_string(out: &mut Vec<u8>, field: &str, s: &str) {
    check_string_len(field, s);
    put_i16(out, s.len() as i16);
    out.extend_from_slice(s.as_bytes());
}

fn put_string(out: &mut Vec<u8>, field: &str, s: &str) {
    check_string_len(field, s);
    // At most 32768: fits.
    put_uvarint(out, s.len() as u32 + 1);
    out.extend_from_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut Vec<u8>, field: &str, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, field, s),
        None => out.push(0),
    }
}

fn put_array_len(out: &mut Vec<u8>, field: &str, len: usize) {
    let n = u32::try_from(len)
        .ok()
        .and_then(|n| n.checked_add(1))
        .unwrap_or_else(|| panic!("field {field} is too long to be serialized"));
    put_uvarint(out, n);
}

fn put_strings(out: &mut Vec<u8>, field: &str, strings: &[String]) {
    put_array_len(out, field, strings.len());
    for s in strings {
        put_string(out, field, s);
    }
}

fn put_compact_bytes(out: &mut Vec<u8>, field: &str, b: &[u8]) {
    put_array_len(out, field, b.len());
    out.extend_from_slice(b);
}

/// Tagged field 0 of the member metadata value: a nullable struct (an int8, -1 for
/// null or 1, then the struct).
fn read_classic_member_metadata(data: &[u8]) -> Result<Option<ClassicMemberMetadata>> {
    let mut r = Reader::new(data);
    if r.i8("classicMemberMetadata")? < 0 {
        return Ok(None);
    }
    let session_timeout_ms = r.i32("sessionTimeoutMs")?;
    let count = r.array_len("supportedProtocols", 2)?;
    let mut supported_protocols = Vec::with_capacity(count.min(MAX_PREALLOC));
    for _ in 0..count {
        let name = r.string("name")?;
        let len = r.array_len("metadata", 1)?;
        let metadata = r.take(len as u64, "metadata")?.to_vec();
        r.skip_tagged_fields()?;
        supported_protocols.push((name, metadata));
    }
    r.skip_tagged_fields()?;
    Ok(Some(ClassicMemberMetadata {
        session_timeout_ms,
        supported_protocols,
    }))
}

/// An empty tagged-field section.
fn put_no_tagged_fields(out: &mut Vec<u8>) {
    out.push(0);
}

/// Topics in map order, partitions ascending.
fn put_topic_partitions(out: &mut Vec<u8>, field: &str, tps: &TopicPartitions) {
    put_array_len(out, field, tps.len());
    for (topic_id, partitions) in tps {
        put_uuid(out, topic_id);
        put_array_len(out, "partitions", partitions.len());
        for &p in partitions {
            put_i32(out, p);
        }
        put_no_tagged_fields(out);
    }
}

fn topic_partitions_size(tps: &TopicPartitions) -> usize {
    5 + tps
        .values()
        .map(|p| 16 + 5 + 4 * p.len() + 1)
        .sum::<usize>()
}

// ---------------------------------------------------------------------------------------
// Keys

/// The full record key bytes (int16 record type, then the key message).
///
/// # Panics
/// On strings longer than [`MAX_STRING_LEN`] bytes.
pub fn encode_key(key: &ConsumerGroupKey) -> Vec<u8> {
    let (record_type, second): (i16, Option<(&str, &str)>) = match key {
        ConsumerGroupKey::Metadata { .. } => (RECORD_TYPE_CONSUMER_GROUP_METADATA, None),
        ConsumerGroupKey::PartitionMetadata { .. } => {
            (RECORD_TYPE_CONSUMER_GROUP_PARTITION_METADATA, None)
        }
        ConsumerGroupKey::MemberMetadata { member, .. } => (
            RECORD_TYPE_CONSUMER_GROUP_MEMBER_METADATA,
            Some(("memberId", member)),
        ),
        ConsumerGroupKey::TargetAssignmentMetadata { .. } => {
            (RECORD_TYPE_CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA, None)
        }
        ConsumerGroupKey::TargetAssignmentMember { member, .. } => (
            RECORD_TYPE_CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER,
            Some(("memberId", member)),
        ),
        ConsumerGroupKey::CurrentMemberAssignment { member, .. } => (
            RECORD_TYPE_CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
            Some(("memberId", member)),
        ),
        ConsumerGroupKey::RegularExpression { regex, .. } => (
            RECORD_TYPE_CONSUMER_GROUP_REGULAR_EXPRESSION,
            Some(("regularExpression", regex)),
        ),
    };
    let group = key.group();
    let mut out = Vec::with_capacity(2 + 2 + group.len() + second.map_or(0, |(_, s)| 2 + s.len()));
    put_i16(&mut out, record_type);
    put_key_string(&mut out, "groupId", group);
    if let Some((field, s)) = second {
        put_key_string(&mut out, field, s);
    }
    out
}

/// Decodes the key message of a record whose type is `record_type` (3..=8 or 16; the
/// caller has read the int16). `Ok(None)` for any other record type.
pub fn decode_key(
    record_type: i16,
    key: &[u8],
) -> Result<Option<ConsumerGroupKey>, RecordCodecError> {
    let mut r = Reader::new(key);
    let key = match record_type {
        RECORD_TYPE_CONSUMER_GROUP_METADATA => ConsumerGroupKey::Metadata {
            group: r.key_string("groupId")?,
        },
        RECORD_TYPE_CONSUMER_GROUP_PARTITION_METADATA => ConsumerGroupKey::PartitionMetadata {
            group: r.key_string("groupId")?,
        },
        RECORD_TYPE_CONSUMER_GROUP_MEMBER_METADATA => {
            let group = r.key_string("groupId")?;
            let member = r.key_string("memberId")?;
            ConsumerGroupKey::MemberMetadata { group, member }
        }
        RECORD_TYPE_CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA => {
            ConsumerGroupKey::TargetAssignmentMetadata {
                group: r.key_string("groupId")?,
            }
        }
        RECORD_TYPE_CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER => {
            let group = r.key_string("groupId")?;
            let member = r.key_string("memberId")?;
            ConsumerGroupKey::TargetAssignmentMember { group, member }
        }
        RECORD_TYPE_CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT => {
            let group = r.key_string("groupId")?;
            let member = r.key_string("memberId")?;
            ConsumerGroupKey::CurrentMemberAssignment { group, member }
        }
        RECORD_TYPE_CONSUMER_GROUP_REGULAR_EXPRESSION => {
            let group = r.key_string("groupId")?;
            let regex = r.key_string("regularExpression")?;
            ConsumerGroupKey::RegularExpression { group, regex }
        }
        _ => return Ok(None),
    };
    Ok(Some(key))
}

// ---------------------------------------------------------------------------------------
// Values

/// The full value bytes (int16 version, then the value message) Kafka 4.1 writes:
/// version 0 of every schema.
///
/// # Panics
/// On strings longer than [`MAX_STRING_LEN`] bytes, or arrays of more than
/// `u32::MAX - 1` elements.
pub fn encode_value(value: &ConsumerGroupValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(value_size_hint(value));
    put_i16(&mut out, VALUE_VERSION);
    match value {
        ConsumerGroupValue::Metadata(v) => {
            put_i32(&mut out, v.epoch);
            // Tagged fields are written only when they differ from their default.
            if v.metadata_hash == 0 {
                put_no_tagged_fields(&mut out);
            } else {
                put_uvarint(&mut out, 1); // one tagged field
                put_uvarint(&mut out, 0); // tag 0: MetadataHash
                put_uvarint(&mut out, 8); // size
                put_i64(&mut out, v.metadata_hash);
            }
        }
        ConsumerGroupValue::PartitionMetadata(v) => {
            put_array_len(&mut out, "topics", v.topics.len());
            for t in &v.topics {
                put_uuid(&mut out, &t.topic_id);
                put_string(&mut out, "topicName", &t.topic_name);
                put_i32(&mut out, t.num_partitions);
                put_array_len(&mut out, "partitionMetadata", 0);
                put_no_tagged_fields(&mut out);
            }
            put_no_tagged_fields(&mut out);
        }
        ConsumerGroupValue::MemberMetadata(v) => {
            put_nullable_string(&mut out, "instanceId", v.instance_id.as_deref());
            put_nullable_string(&mut out, "rackId", v.rack_id.as_deref());
            put_string(&mut out, "clientId", &v.client_id);
            put_string(&mut out, "clientHost", &v.client_host);
            put_strings(&mut out, "subscribedTopicNames", &v.subscribed_topic_names);
            put_nullable_string(
                &mut out,
                "subscribedTopicRegex",
                v.subscribed_topic_regex.as_deref(),
            );
            put_i32(&mut out, v.rebalance_timeout_ms);
            put_nullable_string(&mut out, "serverAssignor", v.server_assignor.as_deref());
            match &v.classic_member_metadata {
                // ClassicMemberMetadata (tag 0) is null, its default: not written.
                None => put_no_tagged_fields(&mut out),
                Some(classic) => {
                    let mut field = Vec::new();
                    put_i8(&mut field, 1); // a nullable struct, present
                    put_i32(&mut field, classic.session_timeout_ms);
                    put_array_len(
                        &mut field,
                        "supportedProtocols",
                        classic.supported_protocols.len(),
                    );
                    for (name, metadata) in &classic.supported_protocols {
                        put_string(&mut field, "name", name);
                        put_compact_bytes(&mut field, "metadata", metadata);
                        put_no_tagged_fields(&mut field);
                    }
                    put_no_tagged_fields(&mut field);
                    put_uvarint(&mut out, 1); // one tagged field
                    put_uvarint(&mut out, 0); // tag 0
                    put_uvarint(
                        &mut out,
                        u32::try_from(field.len()).expect("classic member metadata fits"),
                    );
                    out.extend_from_slice(&field);
                }
            }
        }
        ConsumerGroupValue::TargetAssignmentMetadata(v) => {
            put_i32(&mut out, v.assignment_epoch);
            put_no_tagged_fields(&mut out);
        }
        ConsumerGroupValue::TargetAssignmentMember(v) => {
            put_topic_partitions(&mut out, "topicPartitions", &v.topic_partitions);
            put_no_tagged_fields(&mut out);
        }
        ConsumerGroupValue::CurrentMemberAssignment(v) => {
            put_i32(&mut out, v.member_epoch);
            put_i32(&mut out, v.previous_member_epoch);
            put_i8(&mut out, v.state);
            put_topic_partitions(&mut out, "assignedPartitions", &v.assigned_partitions);
            put_topic_partitions(
                &mut out,
                "partitionsPendingRevocation",
                &v.partitions_pending_revocation,
            );
            put_no_tagged_fields(&mut out);
        }
        ConsumerGroupValue::RegularExpression(v) => {
            put_strings(&mut out, "topics", &v.topics);
            put_i64(&mut out, v.version);
            put_i64(&mut out, v.timestamp);
            put_no_tagged_fields(&mut out);
        }
    }
    out
}

/// About the encoded size of `value`, for the output's capacity.
fn value_size_hint(value: &ConsumerGroupValue) -> usize {
    let strings = |v: &[String]| 5 + v.iter().map(|s| 3 + s.len()).sum::<usize>();
    let opt = |s: &Option<String>| 3 + s.as_ref().map_or(0, String::len);
    2 + match value {
        ConsumerGroupValue::Metadata(_) => 4 + 11,
        ConsumerGroupValue::PartitionMetadata(v) => {
            6 + v
                .topics
                .iter()
                .map(|t| 16 + 3 + t.topic_name.len() + 4 + 2)
                .sum::<usize>()
        }
        ConsumerGroupValue::MemberMetadata(v) => {
            opt(&v.instance_id)
                + opt(&v.rack_id)
                + 3
                + v.client_id.len()
                + 3
                + v.client_host.len()
                + strings(&v.subscribed_topic_names)
                + opt(&v.subscribed_topic_regex)
                + 4
                + opt(&v.server_assignor)
                + 1
        }
        ConsumerGroupValue::TargetAssignmentMetadata(_) => 4 + 1,
        ConsumerGroupValue::TargetAssignmentMember(v) => {
            topic_partitions_size(&v.topic_partitions) + 1
        }
        ConsumerGroupValue::CurrentMemberAssignment(v) => {
            9 + topic_partitions_size(&v.assigned_partitions)
                + topic_partitions_size(&v.partitions_pending_revocation)
                + 1
        }
        ConsumerGroupValue::RegularExpression(v) => strings(&v.topics) + 16 + 1,
    }
}

/// Decodes the value of a record with this key (version 0 only; see the module doc).
pub fn decode_value(
    key: &ConsumerGroupKey,
    value: &[u8],
) -> Result<ConsumerGroupValue, RecordCodecError> {
    let mut r = Reader::new(value);
    let record = match key {
        ConsumerGroupKey::Metadata { .. } => "ConsumerGroupMetadataValue",
        ConsumerGroupKey::PartitionMetadata { .. } => "ConsumerGroupPartitionMetadataValue",
        ConsumerGroupKey::MemberMetadata { .. } => "ConsumerGroupMemberMetadataValue",
        ConsumerGroupKey::TargetAssignmentMetadata { .. } => {
            "ConsumerGroupTargetAssignmentMetadataValue"
        }
        ConsumerGroupKey::TargetAssignmentMember { .. } => {
            "ConsumerGroupTargetAssignmentMemberValue"
        }
        ConsumerGroupKey::CurrentMemberAssignment { .. } => {
            "ConsumerGroupCurrentMemberAssignmentValue"
        }
        ConsumerGroupKey::RegularExpression { .. } => "ConsumerGroupRegularExpressionValue",
    };
    let version = r.i16("value version")?;
    if version != VALUE_VERSION {
        return Err(RecordCodecError::UnsupportedVersion { record, version });
    }
    let value = match key {
        ConsumerGroupKey::Metadata { .. } => {
            let epoch = r.i32("epoch")?;
            let mut metadata_hash = 0;
            r.tagged_fields(|tag, data| {
                if tag == 0 {
                    metadata_hash = Reader::new(data).i64("metadataHash")?;
                }
                Ok(())
            })?;
            ConsumerGroupValue::Metadata(ConsumerGroupMetadataValue {
                epoch,
                metadata_hash,
            })
        }
        ConsumerGroupKey::PartitionMetadata { .. } => {
            let count = r.array_len("topics", MIN_PARTITION_METADATA_TOPIC_BYTES)?;
            let mut topics = Vec::with_capacity(count.min(MAX_PREALLOC));
            for _ in 0..count {
                let topic_id = r.uuid("topicId")?;
                let topic_name = r.string("topicName")?;
                let num_partitions = r.i32("numPartitions")?;
                // PartitionMetadata: unused since Kafka 4.0, checked and dropped.
                let partitions = r.array_len("partitionMetadata", MIN_PARTITION_RACKS_BYTES)?;
                for _ in 0..partitions {
                    r.i32("partition")?;
                    let racks = r.array_len("racks", 1)?;
                    for _ in 0..racks {
                        r.string("racks")?;
                    }
                    r.skip_tagged_fields()?;
                }
                r.skip_tagged_fields()?;
                topics.push(PartitionMetadataTopic {
                    topic_id,
                    topic_name,
                    num_partitions,
                });
            }
            r.skip_tagged_fields()?;
            ConsumerGroupValue::PartitionMetadata(ConsumerGroupPartitionMetadataValue { topics })
        }
        ConsumerGroupKey::MemberMetadata { .. } => {
            let instance_id = r.nullable_string("instanceId")?;
            let rack_id = r.nullable_string("rackId")?;
            let client_id = r.string("clientId")?;
            let client_host = r.string("clientHost")?;
            let subscribed_topic_names = r.strings("subscribedTopicNames")?;
            let subscribed_topic_regex = r.nullable_string("subscribedTopicRegex")?;
            let rebalance_timeout_ms = r.i32("rebalanceTimeoutMs")?;
            let server_assignor = r.nullable_string("serverAssignor")?;
            let mut classic_member_metadata = None;
            r.tagged_fields(|tag, data| {
                if tag == 0 {
                    classic_member_metadata = read_classic_member_metadata(data)?;
                }
                Ok(())
            })?;
            ConsumerGroupValue::MemberMetadata(ConsumerGroupMemberMetadataValue {
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names,
                subscribed_topic_regex,
                server_assignor,
                rebalance_timeout_ms,
                classic_member_metadata,
            })
        }
        ConsumerGroupKey::TargetAssignmentMetadata { .. } => {
            let assignment_epoch = r.i32("assignmentEpoch")?;
            r.skip_tagged_fields()?;
            ConsumerGroupValue::TargetAssignmentMetadata(TargetAssignmentMetadataValue {
                assignment_epoch,
            })
        }
        ConsumerGroupKey::TargetAssignmentMember { .. } => {
            let topic_partitions = r.topic_partitions("topicPartitions")?;
            r.skip_tagged_fields()?;
            ConsumerGroupValue::TargetAssignmentMember(TargetAssignmentMemberValue {
                topic_partitions,
            })
        }
        ConsumerGroupKey::CurrentMemberAssignment { .. } => {
            let member_epoch = r.i32("memberEpoch")?;
            let previous_member_epoch = r.i32("previousMemberEpoch")?;
            let state = r.i8("state")?;
            let assigned_partitions = r.topic_partitions("assignedPartitions")?;
            let partitions_pending_revocation =
                r.topic_partitions("partitionsPendingRevocation")?;
            r.skip_tagged_fields()?;
            ConsumerGroupValue::CurrentMemberAssignment(CurrentMemberAssignmentValue {
                member_epoch,
                previous_member_epoch,
                state,
                assigned_partitions,
                partitions_pending_revocation,
            })
        }
        ConsumerGroupKey::RegularExpression { .. } => {
            let topics = r.strings("topics")?;
            let version = r.i64("version")?;
            let timestamp = r.i64("timestamp")?;
            r.skip_tagged_fields()?;
            ConsumerGroupValue::RegularExpression(RegularExpressionValue {
                topics,
                version,
                timestamp,
            })
        }
    };
    Ok(value)
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-writing helpers, independent of the encoders above.

    /// int16-length string (keys).
    fn ks(s: &str) -> Vec<u8> {
        let mut v = (s.len() as i16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }
    /// Compact string shorter than 127 bytes: one-byte varint of length + 1.
    fn cs(s: &str) -> Vec<u8> {
        assert!(s.len() < 127);
        let mut v = vec![s.len() as u8 + 1];
        v.extend_from_slice(s.as_bytes());
        v
    }
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const TA: [u8; 16] = [0x0a; 16];
    const TB: [u8; 16] = [0xb0; 16];

    fn ta() -> Uuid {
        Uuid::from_bytes(TA)
    }
    fn tb() -> Uuid {
        Uuid::from_bytes(TB)
    }

    fn tps(entries: &[(Uuid, &[i32])]) -> TopicPartitions {
        entries
            .iter()
            .map(|(id, ps)| (*id, ps.iter().copied().collect()))
            .collect()
    }

    fn all_keys() -> Vec<ConsumerGroupKey> {
        vec![
            ConsumerGroupKey::Metadata { group: "g".into() },
            ConsumerGroupKey::PartitionMetadata {
                group: "group-1".into(),
            },
            ConsumerGroupKey::MemberMetadata {
                group: "g".into(),
                member: "m1".into(),
            },
            ConsumerGroupKey::TargetAssignmentMetadata { group: "".into() },
            ConsumerGroupKey::TargetAssignmentMember {
                group: "g".into(),
                member: "member-\u{e9}".into(),
            },
            ConsumerGroupKey::CurrentMemberAssignment {
                group: "g".into(),
                member: "m".into(),
            },
            ConsumerGroupKey::RegularExpression {
                group: "g".into(),
                regex: "topic-.*".into(),
            },
        ]
    }

    fn sample_member() -> ConsumerGroupMemberMetadataValue {
        ConsumerGroupMemberMetadataValue {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: None,
            server_assignor: Some("uniform".into()),
            rebalance_timeout_ms: 300_000,
            classic_member_metadata: None,
        }
    }

    /// A value of every type, each with the key it belongs under.
    fn all_values() -> Vec<(ConsumerGroupKey, ConsumerGroupValue)> {
        let g = || "g".to_string();
        let m = || "m".to_string();
        vec![
            (
                ConsumerGroupKey::Metadata { group: g() },
                ConsumerGroupValue::Metadata(ConsumerGroupMetadataValue {
                    epoch: 7,
                    metadata_hash: 0,
                }),
            ),
            (
                ConsumerGroupKey::Metadata { group: g() },
                ConsumerGroupValue::Metadata(ConsumerGroupMetadataValue {
                    epoch: -1,
                    metadata_hash: i64::MIN,
                }),
            ),
            (
                ConsumerGroupKey::PartitionMetadata { group: g() },
                ConsumerGroupValue::PartitionMetadata(ConsumerGroupPartitionMetadataValue {
                    topics: vec![
                        PartitionMetadataTopic {
                            topic_id: tb(),
                            topic_name: "foo".into(),
                            num_partitions: 3,
                        },
                        PartitionMetadataTopic {
                            topic_id: ta(),
                            topic_name: "".into(),
                            num_partitions: 0,
                        },
                    ],
                }),
            ),
            (
                ConsumerGroupKey::PartitionMetadata { group: g() },
                ConsumerGroupValue::PartitionMetadata(ConsumerGroupPartitionMetadataValue {
                    topics: vec![],
                }),
            ),
            (
                ConsumerGroupKey::MemberMetadata {
                    group: g(),
                    member: m(),
                },
                ConsumerGroupValue::MemberMetadata(sample_member()),
            ),
            (
                ConsumerGroupKey::MemberMetadata {
                    group: g(),
                    member: m(),
                },
                ConsumerGroupValue::MemberMetadata(ConsumerGroupMemberMetadataValue {
                    instance_id: None,
                    rack_id: Some("rack-a".into()),
                    client_id: "".into(),
                    client_host: "x".repeat(200),
                    subscribed_topic_names: vec![],
                    subscribed_topic_regex: Some("t.*".into()),
                    server_assignor: None,
                    rebalance_timeout_ms: -1,
                    classic_member_metadata: Some(ClassicMemberMetadata {
                        session_timeout_ms: 10_000,
                        supported_protocols: vec![
                            ("range".into(), vec![]),
                            ("cooperative-sticky".into(), vec![0; 300]),
                        ],
                    }),
                }),
            ),
            (
                ConsumerGroupKey::TargetAssignmentMetadata { group: g() },
                ConsumerGroupValue::TargetAssignmentMetadata(TargetAssignmentMetadataValue {
                    assignment_epoch: 9,
                }),
            ),
            (
                ConsumerGroupKey::TargetAssignmentMember {
                    group: g(),
                    member: m(),
                },
                ConsumerGroupValue::TargetAssignmentMember(TargetAssignmentMemberValue {
                    topic_partitions: tps(&[(ta(), &[2, 0, 1]), (tb(), &[5]), (Uuid::nil(), &[])]),
                }),
            ),
            (
                ConsumerGroupKey::TargetAssignmentMember {
                    group: g(),
                    member: m(),
                },
                ConsumerGroupValue::TargetAssignmentMember(TargetAssignmentMemberValue::default()),
            ),
            (
                ConsumerGroupKey::CurrentMemberAssignment {
                    group: g(),
                    member: m(),
                },
                ConsumerGroupValue::CurrentMemberAssignment(CurrentMemberAssignmentValue {
                    member_epoch: 10,
                    previous_member_epoch: 9,
                    state: 1,
                    assigned_partitions: tps(&[(ta(), &[3])]),
                    partitions_pending_revocation: tps(&[(tb(), &[0, 1000, i32::MAX])]),
                }),
            ),
            (
                ConsumerGroupKey::CurrentMemberAssignment {
                    group: g(),
                    member: m(),
                },
                ConsumerGroupValue::CurrentMemberAssignment(CurrentMemberAssignmentValue {
                    state: 127,
                    ..Default::default()
                }),
            ),
            (
                ConsumerGroupKey::RegularExpression {
                    group: g(),
                    regex: "t.*".into(),
                },
                ConsumerGroupValue::RegularExpression(RegularExpressionValue {
                    topics: vec!["t1".into(), "t2".into()],
                    version: 5,
                    timestamp: 1000,
                }),
            ),
        ]
    }

    #[test]
    fn key_round_trips() {
        for key in all_keys() {
            let bytes = encode_key(&key);
            let record_type = i16::from_be_bytes([bytes[0], bytes[1]]);
            assert_eq!(
                decode_key(record_type, &bytes[2..]).unwrap(),
                Some(key.clone()),
                "{key:?}"
            );
        }
    }

    #[test]
    fn key_bytes_match_the_schemas() {
        // Every key: version 0, not flexible, int16-length strings; type = the schema's apiKey.
        let cases: Vec<(ConsumerGroupKey, Vec<u8>)> = vec![
            (
                ConsumerGroupKey::Metadata { group: "g".into() },
                cat(&[&[0, 3], &ks("g")]),
            ),
            (
                ConsumerGroupKey::PartitionMetadata { group: "g".into() },
                cat(&[&[0, 4], &ks("g")]),
            ),
            (
                ConsumerGroupKey::MemberMetadata {
                    group: "g".into(),
                    member: "m1".into(),
                },
                vec![0, 5, 0, 1, b'g', 0, 2, b'm', b'1'],
            ),
            (
                ConsumerGroupKey::TargetAssignmentMetadata { group: "g".into() },
                cat(&[&[0, 6], &ks("g")]),
            ),
            (
                ConsumerGroupKey::TargetAssignmentMember {
                    group: "g".into(),
                    member: "m".into(),
                },
                cat(&[&[0, 7], &ks("g"), &ks("m")]),
            ),
            (
                ConsumerGroupKey::CurrentMemberAssignment {
                    group: "g".into(),
                    member: "m".into(),
                },
                cat(&[&[0, 8], &ks("g"), &ks("m")]),
            ),
            (
                ConsumerGroupKey::RegularExpression {
                    group: "g".into(),
                    regex: "a.*".into(),
                },
                vec![0, 16, 0, 1, b'g', 0, 3, b'a', b'.', b'*'],
            ),
        ];
        for (key, bytes) in cases {
            assert_eq!(encode_key(&key), bytes, "{key:?}");
        }
    }

    #[test]
    fn decode_key_ignores_other_record_types() {
        let group_key = ks("g");
        for record_type in [
            0,
            1,
            2,
            9,
            10,
            11,
            12,
            13,
            14,
            15,
            17,
            18,
            100,
            -1,
            i16::MIN,
            i16::MAX,
        ] {
            assert_eq!(
                decode_key(record_type, &group_key),
                Ok(None),
                "{record_type}"
            );
            assert_eq!(decode_key(record_type, &[]), Ok(None), "{record_type}");
        }
    }

    #[test]
    fn value_round_trips() {
        for (key, value) in all_values() {
            let bytes = encode_value(&value);
            assert_eq!(&bytes[..2], &[0, 0], "{value:?}");
            assert_eq!(decode_value(&key, &bytes).unwrap(), value);
        }
    }

    #[test]
    fn metadata_value_bytes() {
        let key = ConsumerGroupKey::Metadata { group: "g".into() };
        let v = |epoch, metadata_hash| {
            ConsumerGroupValue::Metadata(ConsumerGroupMetadataValue {
                epoch,
                metadata_hash,
            })
        };
        // Epoch int32, then the tagged fields; MetadataHash (tag 0) only when not 0.
        let plain = [0, 0, 0, 0, 0, 7, 0x00];
        assert_eq!(encode_value(&v(7, 0)), plain);
        assert_eq!(decode_value(&key, &plain).unwrap(), v(7, 0));
        #[rustfmt::skip]
        let hashed = [
            0, 0, // version
            0, 0, 0, 7, // Epoch
            0x01, // one tagged field
            0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, // tag 0, 8 bytes: MetadataHash
        ];
        assert_eq!(encode_value(&v(7, 0x0102_0304_0506_0708)), hashed);
        assert_eq!(
            decode_value(&key, &hashed).unwrap(),
            v(7, 0x0102_0304_0506_0708)
        );
        // CreationTimeMs (tag 1, a later Kafka) is skipped; trailing bytes are ignored.
        #[rustfmt::skip]
        let later = [
            0, 0, 0, 0, 0, 7,
            0x02,
            0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 42, // MetadataHash
            0x01, 0x08, 0, 0, 1, 0x8f, 0, 0, 0, 0, // CreationTimeMs
            0xde, 0xad, // trailing
        ];
        assert_eq!(decode_value(&key, &later).unwrap(), v(7, 42));
        // A MetadataHash shorter than 8 bytes.
        let short = [0, 0, 0, 0, 0, 7, 0x01, 0x00, 0x04, 0, 0, 0, 1];
        assert!(matches!(
            decode_value(&key, &short),
            Err(RecordCodecError::Truncated {
                field: "metadataHash",
                ..
            })
        ));
    }

    #[test]
    fn partition_metadata_value_bytes() {
        let key = ConsumerGroupKey::PartitionMetadata { group: "g".into() };
        let expected = ConsumerGroupValue::PartitionMetadata(ConsumerGroupPartitionMetadataValue {
            topics: vec![PartitionMetadataTopic {
                topic_id: ta(),
                topic_name: "foo".into(),
                num_partitions: 3,
            }],
        });
        // As Kafka <= 4.0 wrote it, with racks for partition 0.
        let with_racks = cat(&[
            &[0, 0],       // version
            &[0x02],       // Topics: 1
            &TA,           // TopicId
            &cs("foo"),    // TopicName
            &[0, 0, 0, 3], // NumPartitions
            &[0x02],       // PartitionMetadata: 1
            &[0, 0, 0, 0], // Partition
            &[0x03],       // Racks: 2
            &cs("r1"),
            &cs("r2"),
            &[0x00], // PartitionMetadata tagged fields
            &[0x00], // topic tagged fields
            &[0x00], // tagged fields
        ]);
        assert_eq!(decode_value(&key, &with_racks).unwrap(), expected);
        let written = cat(&[
            &[0, 0, 0x02],
            &TA,
            &cs("foo"),
            &[0, 0, 0, 3],
            &[0x01, 0x00, 0x00],
        ]);
        assert_eq!(encode_value(&expected), written);
        assert_eq!(decode_value(&key, &written).unwrap(), expected);
    }

    #[test]
    fn member_metadata_value_bytes() {
        let key = ConsumerGroupKey::MemberMetadata {
            group: "g".into(),
            member: "m".into(),
        };
        let bytes = cat(&[
            &[0, 0],   // version
            &cs("i"),  // InstanceId
            &[0x00],   // RackId: null
            &cs("c"),  // ClientId
            &cs("/h"), // ClientHost
            &[0x03],   // SubscribedTopicNames: 2
            &cs("a"),
            &cs("b"),
            &[0x00],                   // SubscribedTopicRegex: null
            &[0x00, 0x04, 0x93, 0xe0], // RebalanceTimeoutMs 300000
            &cs("uniform"),            // ServerAssignor
            &[0x00],                   // tagged fields
        ]);
        let expected = ConsumerGroupValue::MemberMetadata(sample_member());
        assert_eq!(encode_value(&expected), bytes);
        assert_eq!(decode_value(&key, &bytes).unwrap(), expected);

        // The same member with ClassicMemberMetadata (tag 0: a nullable struct, so a
        // KIP-893 int8 1 first), read; an unknown tag 5 is skipped.
        let classic = cat(&[
            &[0x01],                   // present
            &[0x00, 0x00, 0xaf, 0xc8], // SessionTimeoutMs 45000
            &[0x02],                   // SupportedProtocols: 1
            &cs("range"),              // Name
            &[0x03, 0x01, 0x02],       // Metadata (compact bytes)
            &[0x00],                   // ClassicProtocol tagged fields
            &[0x00],                   // ClassicMemberMetadata tagged fields
        ]);
        let tagged = cat(&[
            &bytes[..bytes.len() - 1],
            &[0x02, 0x00, classic.len() as u8],
            &classic,
            &[0x05, 0x01, 0xff],
        ]);
        let mut classic_member = sample_member();
        classic_member.classic_member_metadata = Some(ClassicMemberMetadata {
            session_timeout_ms: 45000,
            supported_protocols: vec![("range".into(), vec![0x01, 0x02])],
        });
        let with_classic = ConsumerGroupValue::MemberMetadata(classic_member);
        assert_eq!(decode_value(&key, &tagged).unwrap(), with_classic);
        // Written the same way, without the unknown tag.
        let written = cat(&[
            &bytes[..bytes.len() - 1],
            &[0x01, 0x00, classic.len() as u8],
            &classic,
        ]);
        assert_eq!(encode_value(&with_classic), written);
    }

    #[test]
    fn target_assignment_metadata_value_bytes() {
        let key = ConsumerGroupKey::TargetAssignmentMetadata { group: "g".into() };
        let expected =
            ConsumerGroupValue::TargetAssignmentMetadata(TargetAssignmentMetadataValue {
                assignment_epoch: 9,
            });
        let bytes = [0, 0, 0, 0, 0, 9, 0x00];
        assert_eq!(encode_value(&expected), bytes);
        assert_eq!(decode_value(&key, &bytes).unwrap(), expected);
        // AssignmentTimestamp (tag 0, a later Kafka) is skipped.
        let later = [
            0, 0, 0, 0, 0, 9, 0x01, 0x00, 0x08, 0, 0, 1, 0x8f, 0, 0, 0, 1,
        ];
        assert_eq!(decode_value(&key, &later).unwrap(), expected);
    }

    #[test]
    fn target_assignment_member_value_bytes() {
        let key = ConsumerGroupKey::TargetAssignmentMember {
            group: "g".into(),
            member: "m".into(),
        };
        let expected = ConsumerGroupValue::TargetAssignmentMember(TargetAssignmentMemberValue {
            topic_partitions: tps(&[(tb(), &[5]), (ta(), &[2, 0, 1])]),
        });
        let bytes = cat(&[
            &[0, 0],                                     // version
            &[0x03],                                     // TopicPartitions: 2
            &TA,                                         // TopicId (map order: 0x0a.. < 0xb0..)
            &[0x04, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2], // Partitions: 0, 1, 2
            &[0x00],                                     // tagged fields
            &TB,
            &[0x02, 0, 0, 0, 5],
            &[0x00],
            &[0x00], // tagged fields
        ]);
        assert_eq!(encode_value(&expected), bytes);
        assert_eq!(decode_value(&key, &bytes).unwrap(), expected);
    }

    #[test]
    fn current_member_assignment_value_bytes() {
        let key = ConsumerGroupKey::CurrentMemberAssignment {
            group: "g".into(),
            member: "m".into(),
        };
        let expected = ConsumerGroupValue::CurrentMemberAssignment(CurrentMemberAssignmentValue {
            member_epoch: 10,
            previous_member_epoch: 9,
            state: 2,
            assigned_partitions: tps(&[(ta(), &[3])]),
            partitions_pending_revocation: TopicPartitions::new(),
        });
        let bytes = cat(&[
            &[0, 0],        // version
            &[0, 0, 0, 10], // MemberEpoch
            &[0, 0, 0, 9],  // PreviousMemberEpoch
            &[2],           // State (not tagged): UNRELEASED_PARTITIONS
            &[0x02],        // AssignedPartitions: 1
            &TA,
            &[0x02, 0, 0, 0, 3],
            &[0x00],
            &[0x01], // PartitionsPendingRevocation: 0
            &[0x00], // tagged fields
        ]);
        assert_eq!(encode_value(&expected), bytes);
        assert_eq!(decode_value(&key, &bytes).unwrap(), expected);

        // A later Kafka's AssignmentEpochs (tag 0 of a topic entry) is skipped.
        let later = cat(&[
            &bytes[..11],
            &[0x02],
            &TA,
            &[0x02, 0, 0, 0, 3],
            &[0x01, 0x00, 0x05, 0x02, 0, 0, 0, 7], // tag 0, 5 bytes: [7]
            &[0x01, 0x00],
        ]);
        assert_eq!(decode_value(&key, &later).unwrap(), expected);
    }

    #[test]
    fn regular_expression_value_bytes() {
        let key = ConsumerGroupKey::RegularExpression {
            group: "g".into(),
            regex: "t.*".into(),
        };
        let expected = ConsumerGroupValue::RegularExpression(RegularExpressionValue {
            topics: vec!["t1".into(), "t2".into()],
            version: 5,
            timestamp: 1000,
        });
        let bytes = cat(&[
            &[0, 0], // version
            &[0x03], // Topics: 2
            &cs("t1"),
            &cs("t2"),
            &[0, 0, 0, 0, 0, 0, 0, 5],       // Version
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8], // Timestamp
            &[0x00],                         // tagged fields
        ]);
        assert_eq!(encode_value(&expected), bytes);
        assert_eq!(decode_value(&key, &bytes).unwrap(), expected);
    }

    #[test]
    fn duplicate_topics_are_merged() {
        let key = ConsumerGroupKey::TargetAssignmentMember {
            group: "g".into(),
            member: "m".into(),
        };
        let bytes = cat(&[
            &[0, 0, 0x04],
            &TB,
            &[0x02, 0, 0, 0, 1, 0x00],
            &TA,
            &[0x02, 0, 0, 0, 4, 0x00],
            &TB,
            &[0x03, 0, 0, 0, 0, 0, 0, 0, 1, 0x00],
            &[0x00],
        ]);
        assert_eq!(
            decode_value(&key, &bytes).unwrap(),
            ConsumerGroupValue::TargetAssignmentMember(TargetAssignmentMemberValue {
                topic_partitions: tps(&[(ta(), &[4]), (tb(), &[0, 1])]),
            })
        );
    }

    #[test]
    fn unsupported_value_version() {
        for (key, value) in all_values() {
            for version in [1i16, -1, 4] {
                let mut bytes = encode_value(&value);
                bytes[..2].copy_from_slice(&version.to_be_bytes());
                assert!(
                    matches!(
                        decode_value(&key, &bytes),
                        Err(RecordCodecError::UnsupportedVersion { version: v, .. }) if v == version
                    ),
                    "{key:?} v{version}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for key in all_keys() {
            let bytes = encode_key(&key);
            let record_type = i16::from_be_bytes([bytes[0], bytes[1]]);
            for n in 2..bytes.len() {
                assert!(
                    decode_key(record_type, &bytes[2..n]).is_err(),
                    "{key:?} prefix {n}"
                );
            }
        }
        // Every value ends with a tagged-field section, so no strict prefix decodes.
        for (key, value) in all_values() {
            let bytes = encode_value(&value);
            for n in 0..bytes.len() {
                assert!(
                    decode_value(&key, &bytes[..n]).is_err(),
                    "{value:?} prefix {n}"
                );
            }
        }
    }

    #[test]
    fn hostile_lengths_are_rejected_without_allocating() {
        let member = ConsumerGroupKey::MemberMetadata {
            group: "g".into(),
            member: "m".into(),
        };
        // SubscribedTopicNames claiming 2^32 - 2 elements.
        let mut b = cat(&[&[0, 0, 0x00, 0x00], &cs("c"), &cs("h")]);
        b.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        b.extend([0u8; 32]);
        assert!(matches!(
            decode_value(&member, &b),
            Err(RecordCodecError::Truncated {
                field: "subscribedTopicNames",
                ..
            })
        ));
        // ClientId of 32768 bytes: longer than Kafka allows.
        let mut b = vec![0, 0, 0x00, 0x00, 0x81, 0x80, 0x02];
        b.extend(vec![b'x'; 40_000]);
        assert_eq!(
            decode_value(&member, &b),
            Err(RecordCodecError::InvalidLength {
                field: "clientId",
                length: 32768
            })
        );
        // ClientId of 30000 bytes with 3 behind it.
        let b = [0, 0, 0x00, 0x00, 0xb1, 0xea, 0x01, b'a', b'b', b'c'];
        assert!(matches!(
            decode_value(&member, &b),
            Err(RecordCodecError::Truncated {
                field: "clientId",
                ..
            })
        ));
        // Null ClientId; null SubscribedTopicNames.
        assert_eq!(
            decode_value(&member, &[0, 0, 0x00, 0x00, 0x00]),
            Err(RecordCodecError::NullField { field: "clientId" })
        );
        let b = cat(&[&[0, 0, 0x00, 0x00], &cs("c"), &cs("h"), &[0x00]]);
        assert_eq!(
            decode_value(&member, &b),
            Err(RecordCodecError::NullField {
                field: "subscribedTopicNames"
            })
        );
        // Topic partitions claiming 2^32 - 2 topics, then partitions claiming too many.
        let target = ConsumerGroupKey::TargetAssignmentMember {
            group: "g".into(),
            member: "m".into(),
        };
        let mut b = vec![0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f];
        b.extend([0u8; 64]);
        assert!(matches!(
            decode_value(&target, &b),
            Err(RecordCodecError::Truncated {
                field: "topicPartitions",
                ..
            })
        ));
        let b = cat(&[&[0, 0, 0x02], &TA, &[0x80, 0x80, 0x04], &[0u8; 40]]);
        assert!(matches!(
            decode_value(&target, &b),
            Err(RecordCodecError::Truncated {
                field: "partitions",
                ..
            })
        ));
        // Tagged field claiming more bytes than remain; huge tagged-field count.
        let meta = ConsumerGroupKey::TargetAssignmentMetadata { group: "g".into() };
        let b = [
            0, 0, 0, 0, 0, 1, 0x01, 0x07, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0,
        ];
        assert!(matches!(
            decode_value(&meta, &b),
            Err(RecordCodecError::Truncated {
                field: "tagged field",
                ..
            })
        ));
        let b = [0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x00];
        assert!(decode_value(&meta, &b).is_err());
        // Malformed varints: six continuation bytes; a fifth byte over 4 bits.
        let b = [0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_value(&meta, &b),
            Err(RecordCodecError::InvalidVarint {
                field: "tagged fields count"
            })
        );
        let b = [0, 0, 0x80, 0x80, 0x80, 0x80, 0x10];
        assert_eq!(
            decode_value(&member, &b),
            Err(RecordCodecError::InvalidVarint {
                field: "instanceId"
            })
        );
        // Keys: negative lengths are nulls of non-nullable fields; lengths past the end.
        assert_eq!(
            decode_key(3, &[0xff, 0xff]),
            Err(RecordCodecError::NullField { field: "groupId" })
        );
        assert_eq!(
            decode_key(5, &[0x80, 0x00]),
            Err(RecordCodecError::NullField { field: "groupId" })
        );
        assert_eq!(
            decode_key(16, &[0, 1, b'g', 0xff, 0xfe]),
            Err(RecordCodecError::NullField {
                field: "regularExpression"
            })
        );
        assert!(matches!(
            decode_key(8, &[0x7f, 0xff, b'g']),
            Err(RecordCodecError::Truncated {
                field: "groupId",
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        for (key, value) in all_values() {
            let mut bytes = encode_value(&value);
            bytes.extend([1, 2, 3]);
            assert_eq!(decode_value(&key, &bytes).unwrap(), value);
        }
        let mut key = encode_key(&ConsumerGroupKey::Metadata { group: "g".into() });
        key.push(9);
        assert_eq!(
            decode_key(3, &key[2..]).unwrap(),
            Some(ConsumerGroupKey::Metadata { group: "g".into() })
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_like_java() {
        assert_eq!(
            decode_key(3, &[0x00, 0x02, 0xc3, 0x28]).unwrap(),
            Some(ConsumerGroupKey::Metadata {
                group: "\u{fffd}(".into()
            })
        );
        let key = ConsumerGroupKey::RegularExpression {
            group: "g".into(),
            regex: "r".into(),
        };
        let b = cat(&[&[0, 0, 0x02, 0x03, 0xff, b'a'], &[0u8; 16], &[0x00]]);
        assert_eq!(
            decode_value(&key, &b).unwrap(),
            ConsumerGroupValue::RegularExpression(RegularExpressionValue {
                topics: vec!["\u{fffd}a".into()],
                version: 0,
                timestamp: 0,
            })
        );
    }

    #[test]
    #[should_panic(expected = "too long")]
    fn overlong_string_panics_on_encode() {
        encode_value(&ConsumerGroupValue::MemberMetadata(
            ConsumerGroupMemberMetadataValue {
                client_id: "x".repeat(MAX_STRING_LEN + 1),
                ..Default::default()
            },
        ));
    }

    #[test]
    fn long_strings_use_multi_byte_varints() {
        let key = ConsumerGroupKey::MemberMetadata {
            group: "g".into(),
            member: "m".into(),
        };
        let value = ConsumerGroupValue::MemberMetadata(ConsumerGroupMemberMetadataValue {
            client_id: "x".repeat(MAX_STRING_LEN),
            ..Default::default()
        });
        let bytes = encode_value(&value);
        // Null, null, then 32768 as a varint: 0x80 0x80 0x02.
        assert_eq!(&bytes[..7], &[0, 0, 0x00, 0x00, 0x80, 0x80, 0x02]);
        assert_eq!(decode_value(&key, &bytes).unwrap(), value);
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic xorshift garbage, plus mutations of valid records.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let values = all_values();
        let keys = all_keys();
        for i in 0..30_000usize {
            let (key, value) = &values[i % values.len()];
            let mut buf: Vec<u8> = if i % 3 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                encode_value(value)
            };
            if !buf.is_empty() {
                for _ in 0..(next() % 4) {
                    let at = (next() as usize) % buf.len();
                    buf[at] = next() as u8;
                }
                // Keep the version valid often, so the bodies get exercised.
                if i % 2 == 0 && buf.len() > 1 {
                    buf[0] = 0;
                    buf[1] = 0;
                }
            }
            for k in &keys {
                let _ = decode_value(k, &buf);
            }
            let _ = decode_value(key, &buf);
            let record_type = [3, 4, 5, 6, 7, 8, 16][i % 7];
            let _ = decode_key(record_type, &buf);
        }
    }
}
