//! Records of the internal compacted topic `__consumer_offsets`, byte-compatible with
//! Apache Kafka 4.1.
//!
//! Kafka's group coordinator (`CoordinatorRecordSerde`) frames every record as
//!
//! ```text
//! record key   = int16 record type | key message (key schema version 0, never flexible)
//! record value = int16 value version | value message   (null value = tombstone)
//! ```
//!
//! The record type is the schema's `apiKey` (`CoordinatorRecordType`): 0 is
//! `LegacyOffsetCommitKey` (the same fields as `OffsetCommitKey`, written by very old
//! brokers), 1 `OffsetCommitKey`, 2 `GroupMetadataKey`. Types 3-8 and 16 are the KIP-848
//! consumer group records, decoded by [`crate::consumer::records`] into
//! [`CoordinatorKey::ConsumerGroup`]; the other types (share and streams groups) are
//! reported as [`CoordinatorKey::Other`], which Kafka's loader and ours skip.
//!
//! Value versions (from `OffsetCommitValue.json` / `GroupMetadataValue.json`,
//! both `validVersions` 0-4, `flexibleVersions` 4+):
//!
//! | OffsetCommitValue | fields |
//! |---|---|
//! | 0, 2 | offset, metadata, commitTimestamp |
//! | 1 | offset, metadata, commitTimestamp, expireTimestamp |
//! | 3 | offset, leaderEpoch, metadata, commitTimestamp |
//! | 4 (flexible) | as 3, compact string, tagged fields |
//!
//! | GroupMetadataValue | fields |
//! |---|---|
//! | 0 | protocolType, generation, protocol?, leader?, members |
//! | 1 | + member rebalanceTimeout |
//! | 2 | + currentStateTimestamp (before members) |
//! | 3 | + member groupInstanceId? (after memberId) |
//! | 4 (flexible) | as 3, compact strings/bytes/arrays, tagged fields |
//!
//! Encoding follows `GroupCoordinatorRecordHelpers` in Kafka 4.1: offset commits are
//! written as `OffsetCommitValue` v3 ("the highest supported non-flexible version"), or
//! v1 when an expire timestamp is set; group metadata as `GroupMetadataValue` v3
//! (`GROUP_METADATA_VALUE_VERSION = 3`). Keys are written as record type 1 / 2.
//!
//! Decoding follows Kafka's generated readers: a negative length for a nullable field
//! means null, for a non-nullable one it is an error; trailing bytes after a message
//! are ignored (Kafka's `ByteBufferAccessor` does not check them either); invalid UTF-8
//! is replaced like Java's `new String(bytes, UTF_8)` does. Every length is checked
//! against the bytes that remain before anything is allocated, so hostile input yields
//! an error, never a panic or a large allocation.

/// Record type (key version) of `LegacyOffsetCommitKey`; read, never written.
pub const RECORD_TYPE_LEGACY_OFFSET_COMMIT: i16 = 0;
/// Record type (key version) of `OffsetCommitKey`.
pub const RECORD_TYPE_OFFSET_COMMIT: i16 = 1;
/// Record type (key version) of `GroupMetadataKey`.
pub const RECORD_TYPE_GROUP_METADATA: i16 = 2;

/// Version `encode_offset_commit_value` writes when no expire timestamp is set.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Version `encode_offset_commit_value` writes when an expire timestamp is set.
pub const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRE: i16 = 1;
/// Version `encode_group_metadata_value` writes.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// Highest value version of either value schema this module reads.
const MAX_VALUE_VERSION: i16 = 4;
/// First flexible value version of both value schemas.
const FIRST_FLEXIBLE_VERSION: i16 = 4;

/// The longest string Kafka's `string` type can carry (int16 length, and Kafka rejects
/// longer compact strings too). The encoders panic on longer strings; callers holding
/// client-provided strings must check against this first.
pub const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Preallocation cap for decoded arrays; longer arrays still decode, growing as they go.
const MAX_PREALLOC: usize = 1024;

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CoordinatorKey {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    GroupMetadata {
        group: String,
    },
    /// A consumer group (KIP-848) record: types 3-8 and 16.
    ConsumerGroup(crate::consumer::records::ConsumerGroupKey),
    /// A record type this coordinator does not handle (share groups, streams groups, ...): skipped on replay.
    Other {
        version: i16,
    },
}

/// The value of an offset commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when none (always -1 when read from versions 0-2, and not stored by version 1).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only version 1 carries it; a stored -1 reads back as `None`, as in Kafka.
    pub expire_timestamp: Option<i64>,
}

/// The value of a classic group's metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (always -1 when read from versions 0-1).
    pub current_state_timestamp: i64,
    pub members: Vec<MemberMetadata>,
}

/// A member of a classic group as stored in [`GroupMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    /// Always `None` when read from versions 0-2.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Version 0 has no rebalance timeout; it reads as the session timeout, as Kafka's
    /// classic coordinator did.
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// Why a record key or value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordCodecError {
    #[error("truncated record: {field} needs {needed} bytes, {remaining} remain")]
    Truncated {
        field: &'static str,
        needed: u64,
        remaining: usize,
    },
    #[error("unsupported {record} version {version}")]
    UnsupportedVersion { record: &'static str, version: i16 },
    #[error("non-nullable field {field} was serialized as null")]
    NullField { field: &'static str },
    #[error("field {field} has invalid length {length}")]
    InvalidLength { field: &'static str, length: i64 },
    #[error("field {field} has a malformed varint")]
    InvalidVarint { field: &'static str },
}

type Result<T> = std::result::Result<T, RecordCodecError>;

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

    fn i16(&mut self, field: &'static str) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array(field)?))
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

    /// Length of a string, bytes or array field; `None` means null.
    fn length(&mut self, field: &'static str, flexible: bool, wide: bool) -> Result<Option<u64>> {
        if flexible {
            // Compact: unsigned varint of length + 1, 0 is null.
            let n = self.uvarint(field)?;
            Ok(n.checked_sub(1).map(u64::from))
        } else {
            let n = if wide {
                i64::from(self.i32(field)?)
            } else {
                i64::from(self.i16(field)?)
            };
            Ok(u64::try_from(n).ok())
        }
    }

    fn nullable_string(&mut self, field: &'static str, flexible: bool) -> Result<Option<String>> {
        let Some(len) = self.length(field, flexible, false)? else {
            return Ok(None);
        };
        if len > MAX_STRING_LEN as u64 {
            return Err(RecordCodecError::InvalidLength {
                field,
                length: len as i64,
            });
        }
        let bytes = self.take(len, field)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn string(&mut self, field: &'static str, flexible: bool) -> Result<String> {
        self.nullable_string(field, flexible)?
            .ok_or(RecordCodecError::NullField { field })
    }

    fn bytes(&mut self, field: &'static str, flexible: bool) -> Result<Vec<u8>> {
        let len = self
            .length(field, flexible, true)?
            .ok_or(RecordCodecError::NullField { field })?;
        Ok(self.take(len, field)?.to_vec())
    }

    /// Element count of a non-nullable array whose elements take at least
    /// `min_element_bytes` each; a count the remaining bytes cannot hold is rejected.
    fn array_len(
        &mut self,
        field: &'static str,
        flexible: bool,
        min_element_bytes: u64,
    ) -> Result<usize> {
        let count = self
            .length(field, flexible, true)?
            .ok_or(RecordCodecError::NullField { field })?;
        let needed = count.saturating_mul(min_element_bytes.max(1));
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

    /// Skips a tagged-field section. None of the fields in these schemas are tagged, so
    /// every tag is unknown and is skipped, as Kafka keeps unknown tags aside.
    fn skip_tagged_fields(&mut self) -> Result<()> {
        let count = self.uvarint("tagged fields count")?;
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")?;
            self.take(u64::from(size), "tagged field")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Writing (non-flexible versions only: Kafka 4.1 never writes flexible ones)

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, field: &str, s: &str) {
    assert!(
        s.len() <= MAX_STRING_LEN,
        "field {field} is too long to be serialized ({} bytes, at most {MAX_STRING_LEN})",
        s.len()
    );
    put_i16(out, s.len() as i16);
    out.extend_from_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut Vec<u8>, field: &str, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, field, s),
        None => put_i16(out, -1),
    }
}

fn put_bytes(out: &mut Vec<u8>, field: &str, b: &[u8]) {
    let len = i32::try_from(b.len())
        .unwrap_or_else(|_| panic!("field {field} is too long to be serialized"));
    put_i32(out, len);
    out.extend_from_slice(b);
}

// ---------------------------------------------------------------------------------------
// Keys

/// Encodes a record key as Kafka 4.1 writes it (record type 1 or 2, key version 0).
///
/// # Panics
/// On [`CoordinatorKey::Other`], which is never written, and on strings longer than
/// [`MAX_STRING_LEN`] bytes.
pub fn encode_key(key: &CoordinatorKey) -> Vec<u8> {
    match key {
        CoordinatorKey::OffsetCommit {
            group,
            topic,
            partition,
        } => {
            let mut out = Vec::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
            put_i16(&mut out, RECORD_TYPE_OFFSET_COMMIT);
            put_string(&mut out, "group", group);
            put_string(&mut out, "topic", topic);
            put_i32(&mut out, *partition);
            out
        }
        CoordinatorKey::GroupMetadata { group } => {
            let mut out = Vec::with_capacity(2 + 2 + group.len());
            put_i16(&mut out, RECORD_TYPE_GROUP_METADATA);
            put_string(&mut out, "group", group);
            out
        }
        CoordinatorKey::ConsumerGroup(key) => crate::consumer::records::encode_key(key),
        CoordinatorKey::Other { version } => {
            panic!("record type {version} is never encoded by this coordinator")
        }
    }
}

/// Decodes a record key. Record types other than 0, 1 and 2 decode to
/// [`CoordinatorKey::Other`] without reading further.
pub fn decode_key(bytes: &[u8]) -> Result<CoordinatorKey> {
    let mut r = Reader::new(bytes);
    let version = r.i16("key version")?;
    match version {
        RECORD_TYPE_LEGACY_OFFSET_COMMIT | RECORD_TYPE_OFFSET_COMMIT => {
            let group = r.string("group", false)?;
            let topic = r.string("topic", false)?;
            let partition = r.i32("partition")?;
            Ok(CoordinatorKey::OffsetCommit {
                group,
                topic,
                partition,
            })
        }
        RECORD_TYPE_GROUP_METADATA => Ok(CoordinatorKey::GroupMetadata {
            group: r.string("group", false)?,
        }),
        version => Ok(
            match crate::consumer::records::decode_key(version, r.buf)? {
                Some(key) => CoordinatorKey::ConsumerGroup(key),
                None => CoordinatorKey::Other { version },
            },
        ),
    }
}

// ---------------------------------------------------------------------------------------
// OffsetCommitValue

/// Encodes an offset commit value as Kafka 4.1 writes it: version 3, or version 1 (which
/// has an expire timestamp but no leader epoch) when `expire_timestamp` is set.
///
/// # Panics
/// When `metadata` is longer than [`MAX_STRING_LEN`] bytes.
pub fn encode_offset_commit_value(v: &OffsetCommitValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 8 + 4 + 2 + v.metadata.len() + 8 + 8);
    match v.expire_timestamp {
        Some(expire) => {
            put_i16(&mut out, OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRE);
            put_i64(&mut out, v.offset);
            put_string(&mut out, "metadata", &v.metadata);
            put_i64(&mut out, v.commit_timestamp);
            put_i64(&mut out, expire);
        }
        None => {
            put_i16(&mut out, OFFSET_COMMIT_VALUE_VERSION);
            put_i64(&mut out, v.offset);
            put_i32(&mut out, v.leader_epoch);
            put_string(&mut out, "metadata", &v.metadata);
            put_i64(&mut out, v.commit_timestamp);
        }
    }
    out
}

/// A value's leading version, checked against what we can read, and whether that
/// version is flexible (compact strings, tagged fields).
fn value_version(r: &mut Reader<'_>, record: &'static str) -> Result<(i16, bool)> {
    let version = r.i16("value version")?;
    if !(0..=MAX_VALUE_VERSION).contains(&version) {
        return Err(RecordCodecError::UnsupportedVersion { record, version });
    }
    Ok((version, version >= FIRST_FLEXIBLE_VERSION))
}

/// Decodes an offset commit value of any version 0-4 (also the value of a legacy type-0
/// record, whose version 0 has the same layout).
pub fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue> {
    let mut r = Reader::new(bytes);
    let (version, flexible) = value_version(&mut r, "OffsetCommitValue")?;
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("leaderEpoch")?
    } else {
        -1
    };
    let metadata = r.string("metadata", flexible)?;
    let commit_timestamp = r.i64("commitTimestamp")?;
    let expire_timestamp = if version == 1 {
        Some(r.i64("expireTimestamp")?).filter(|&t| t != -1)
    } else {
        None
    };
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

// ---------------------------------------------------------------------------------------
// GroupMetadataValue

/// Encodes a group metadata value as Kafka 4.1 writes it (version 3).
///
/// # Panics
/// On strings longer than [`MAX_STRING_LEN`] bytes, or more than `i32::MAX` members or
/// subscription/assignment bytes.
pub fn encode_group_metadata_value(v: &GroupMetadataValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + v
            .members
            .iter()
            .map(|m| 64 + m.member_id.len() + m.subscription.len() + m.assignment.len())
            .sum::<usize>(),
    );
    put_i16(&mut out, GROUP_METADATA_VALUE_VERSION);
    put_string(&mut out, "protocolType", &v.protocol_type);
    put_i32(&mut out, v.generation);
    put_nullable_string(&mut out, "protocol", v.protocol.as_deref());
    put_nullable_string(&mut out, "leader", v.leader.as_deref());
    put_i64(&mut out, v.current_state_timestamp);
    let count = i32::try_from(v.members.len())
        .unwrap_or_else(|_| panic!("field members is too long to be serialized"));
    put_i32(&mut out, count);
    for m in &v.members {
        put_string(&mut out, "memberId", &m.member_id);
        put_nullable_string(&mut out, "groupInstanceId", m.group_instance_id.as_deref());
        put_string(&mut out, "clientId", &m.client_id);
        put_string(&mut out, "clientHost", &m.client_host);
        put_i32(&mut out, m.rebalance_timeout);
        put_i32(&mut out, m.session_timeout);
        put_bytes(&mut out, "subscription", &m.subscription);
        put_bytes(&mut out, "assignment", &m.assignment);
    }
    out
}

/// The fewest bytes one `MemberMetadata` takes at `version`.
fn min_member_bytes(version: i16) -> u64 {
    if version >= FIRST_FLEXIBLE_VERSION {
        // 4 compact strings + 2 int32 + 2 compact bytes + tagged-field count.
        4 + 8 + 2 + 1
    } else {
        // memberId, clientId, clientHost (+ groupInstanceId v3+), rebalanceTimeout (v1+),
        // sessionTimeout, subscription, assignment.
        let mut n = 2 + 2 + 2 + 4 + 4 + 4;
        if version >= 1 {
            n += 4;
        }
        if version >= 3 {
            n += 2;
        }
        n
    }
}

/// Decodes a group metadata value of any version 0-4.
pub fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue> {
    let mut r = Reader::new(bytes);
    let (version, flexible) = value_version(&mut r, "GroupMetadataValue")?;
    let protocol_type = r.string("protocolType", flexible)?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_string("protocol", flexible)?;
    let leader = r.nullable_string("leader", flexible)?;
    let current_state_timestamp = if version >= 2 {
        r.i64("currentStateTimestamp")?
    } else {
        -1
    };
    let count = r.array_len("members", flexible, min_member_bytes(version))?;
    let mut members = Vec::with_capacity(count.min(MAX_PREALLOC));
    for _ in 0..count {
        let member_id = r.string("memberId", flexible)?;
        let group_instance_id = if version >= 3 {
            r.nullable_string("groupInstanceId", flexible)?
        } else {
            None
        };
        let client_id = r.string("clientId", flexible)?;
        let client_host = r.string("clientHost", flexible)?;
        let rebalance_timeout = if version >= 1 {
            Some(r.i32("rebalanceTimeout")?)
        } else {
            None
        };
        let session_timeout = r.i32("sessionTimeout")?;
        let subscription = r.bytes("subscription", flexible)?;
        let assignment = r.bytes("assignment", flexible)?;
        if flexible {
            r.skip_tagged_fields()?;
        }
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout: rebalance_timeout.unwrap_or(session_timeout),
            session_timeout,
            subscription,
            assignment,
        });
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

// ---------------------------------------------------------------------------------------
// Partitioning

/// Kafka's partitioning of groups onto __consumer_offsets: Utils.abs(groupId.hashCode()) % partitions,
/// with Java's String.hashCode over UTF-16 code units and Utils.abs(Integer.MIN_VALUE) == 0.
///
/// # Panics
/// When `partitions` is not positive.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "partition count must be positive, got {partitions}"
    );
    let hash = group.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-writing helpers, independent of the encoders above.
    fn s16(s: &str) -> Vec<u8> {
        let mut v = (s.len() as i16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }
    fn b32(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn sample_offset(expire: Option<i64>) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: 100,
            leader_epoch: if expire.is_some() { -1 } else { 5 },
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: expire,
        }
    }

    fn sample_member() -> MemberMetadata {
        MemberMetadata {
            member_id: "m1".into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            rebalance_timeout: 300_000,
            session_timeout: 45_000,
            subscription: vec![1, 2],
            assignment: vec![],
        }
    }

    fn sample_group() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 1234,
            members: vec![sample_member()],
        }
    }

    #[test]
    fn offset_commit_key_exact_bytes() {
        let key = CoordinatorKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let bytes = encode_key(&key);
        assert_eq!(
            bytes,
            [0x00, 0x01, 0x00, 0x01, 0x67, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x03]
        );
        assert_eq!(decode_key(&bytes).unwrap(), key);
    }

    #[test]
    fn legacy_offset_commit_key_decodes() {
        let bytes = [
            0x00, 0x00, 0x00, 0x01, 0x67, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x03,
        ];
        assert_eq!(
            decode_key(&bytes).unwrap(),
            CoordinatorKey::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3
            }
        );
    }

    #[test]
    fn group_metadata_key_exact_bytes() {
        let key = CoordinatorKey::GroupMetadata {
            group: "grp".into(),
        };
        let bytes = encode_key(&key);
        assert_eq!(bytes, [0x00, 0x02, 0x00, 0x03, 0x67, 0x72, 0x70]);
        assert_eq!(decode_key(&bytes).unwrap(), key);
    }

    #[test]
    fn key_round_trips() {
        for key in [
            CoordinatorKey::OffsetCommit {
                group: "my-group".into(),
                topic: "topic-ü".into(),
                partition: i32::MAX,
            },
            CoordinatorKey::OffsetCommit {
                group: String::new(),
                topic: String::new(),
                partition: 0,
            },
            CoordinatorKey::GroupMetadata {
                group: "group 😀".into(),
            },
        ] {
            assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }
    }

    #[test]
    fn other_record_types_are_skipped() {
        // ConsumerGroupMetadataKey (type 3) and others: the body is never read.
        let mut bytes = vec![0x00, 0x03];
        bytes.extend(s16("grp"));
        assert_eq!(
            decode_key(&bytes).unwrap(),
            CoordinatorKey::ConsumerGroup(crate::consumer::records::ConsumerGroupKey::Metadata {
                group: "grp".into()
            })
        );
        let mut bytes = vec![0x00, 0x09];
        bytes.extend(s16("grp"));
        assert_eq!(
            decode_key(&bytes).unwrap(),
            CoordinatorKey::Other { version: 9 }
        );
        assert_eq!(
            decode_key(&[0x00, 0x0b]).unwrap(),
            CoordinatorKey::Other { version: 11 }
        );
        assert_eq!(
            decode_key(&[0xff, 0xff, 0x01]).unwrap(),
            CoordinatorKey::Other { version: -1 }
        );
    }

    #[test]
    #[should_panic(expected = "never encoded")]
    fn encoding_other_panics() {
        encode_key(&CoordinatorKey::Other { version: 5 });
    }

    #[test]
    fn offset_commit_value_v3_exact_bytes() {
        let v = sample_offset(None);
        let expected = [
            0x00, 0x03, // version
            0, 0, 0, 0, 0, 0, 0, 100, // offset
            0, 0, 0, 5, // leaderEpoch
            0x00, 0x01, b'm', // metadata
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // commitTimestamp
        ];
        assert_eq!(encode_offset_commit_value(&v), expected);
        assert_eq!(decode_offset_commit_value(&expected).unwrap(), v);
    }

    #[test]
    fn offset_commit_value_v1_with_expire_exact_bytes() {
        let v = sample_offset(Some(2000));
        let expected = [
            0x00, 0x01, // version
            0, 0, 0, 0, 0, 0, 0, 100, // offset
            0x00, 0x01, b'm', // metadata
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // commitTimestamp
            0, 0, 0, 0, 0, 0, 0x07, 0xd0, // expireTimestamp
        ];
        assert_eq!(encode_offset_commit_value(&v), expected);
        assert_eq!(decode_offset_commit_value(&expected).unwrap(), v);
    }

    #[test]
    fn offset_commit_value_round_trips() {
        for v in [
            sample_offset(None),
            sample_offset(Some(i64::MAX)),
            OffsetCommitValue {
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 0,
                expire_timestamp: None,
            },
            OffsetCommitValue {
                offset: i64::MAX,
                leader_epoch: i32::MAX,
                metadata: "x".repeat(MAX_STRING_LEN),
                commit_timestamp: i64::MIN,
                expire_timestamp: None,
            },
        ] {
            assert_eq!(
                decode_offset_commit_value(&encode_offset_commit_value(&v)).unwrap(),
                v
            );
        }
    }

    #[test]
    fn offset_commit_value_old_versions() {
        // v0 (also the legacy type-0 value) and v2: offset, metadata, commitTimestamp.
        for version in [0u8, 2] {
            let bytes = cat(&[
                &[0, version],
                &42i64.to_be_bytes(),
                &s16("meta"),
                &7i64.to_be_bytes(),
            ]);
            assert_eq!(
                decode_offset_commit_value(&bytes).unwrap(),
                OffsetCommitValue {
                    offset: 42,
                    leader_epoch: -1,
                    metadata: "meta".into(),
                    commit_timestamp: 7,
                    expire_timestamp: None,
                }
            );
        }
        // v1 with the default expire timestamp -1 reads as no expire timestamp.
        let bytes = cat(&[
            &[0, 1],
            &42i64.to_be_bytes(),
            &s16(""),
            &7i64.to_be_bytes(),
            &(-1i64).to_be_bytes(),
        ]);
        assert_eq!(
            decode_offset_commit_value(&bytes).unwrap().expire_timestamp,
            None
        );
    }

    #[test]
    fn offset_commit_value_v4_flexible() {
        let plain = cat(&[
            &[0, 4],
            &100i64.to_be_bytes(),
            &5i32.to_be_bytes(),
            &[0x02, b'm'], // compact string: len + 1
            &1000i64.to_be_bytes(),
            &[0x00], // no tagged fields
        ]);
        assert_eq!(
            decode_offset_commit_value(&plain).unwrap(),
            sample_offset(None)
        );
        // With an unknown tagged field (tag 5, 2 bytes), which is skipped.
        let tagged = cat(&[&plain[..plain.len() - 1], &[0x01, 0x05, 0x02, 0xaa, 0xbb]]);
        assert_eq!(
            decode_offset_commit_value(&tagged).unwrap(),
            sample_offset(None)
        );
        // A compact null metadata is an error.
        let null_meta = cat(&[
            &[0, 4],
            &100i64.to_be_bytes(),
            &5i32.to_be_bytes(),
            &[0x00],
            &1000i64.to_be_bytes(),
            &[0x00],
        ]);
        assert_eq!(
            decode_offset_commit_value(&null_meta),
            Err(RecordCodecError::NullField { field: "metadata" })
        );
    }

    #[test]
    fn group_metadata_value_v3_exact_bytes() {
        let v = sample_group();
        #[rustfmt::skip]
        let expected = [
            0x00, 0x03, // version
            0x00, 0x08, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r', // protocolType
            0x00, 0x00, 0x00, 0x01, // generation
            0x00, 0x05, b'r', b'a', b'n', b'g', b'e', // protocol
            0x00, 0x02, b'm', b'1', // leader
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xd2, // currentStateTimestamp
            0x00, 0x00, 0x00, 0x01, // members: 1
            0x00, 0x02, b'm', b'1', // memberId
            0xff, 0xff, // groupInstanceId: null
            0x00, 0x01, b'c', // clientId
            0x00, 0x02, b'/', b'h', // clientHost
            0x00, 0x04, 0x93, 0xe0, // rebalanceTimeout 300000
            0x00, 0x00, 0xaf, 0xc8, // sessionTimeout 45000
            0x00, 0x00, 0x00, 0x02, 0x01, 0x02, // subscription
            0x00, 0x00, 0x00, 0x00, // assignment: empty
        ];
        assert_eq!(encode_group_metadata_value(&v), expected);
        assert_eq!(decode_group_metadata_value(&expected).unwrap(), v);
    }

    #[test]
    fn empty_group_metadata_value_exact_bytes() {
        // As Kafka's newEmptyGroupMetadataRecord: "" protocol type, generation 0, nulls.
        let v = GroupMetadataValue {
            protocol_type: String::new(),
            generation: 0,
            protocol: None,
            leader: None,
            current_state_timestamp: -1,
            members: vec![],
        };
        #[rustfmt::skip]
        let expected = [
            0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(encode_group_metadata_value(&v), expected);
        assert_eq!(decode_group_metadata_value(&expected).unwrap(), v);
    }

    #[test]
    fn group_metadata_value_round_trips() {
        let mut many = sample_group();
        many.members = (0..50)
            .map(|i| MemberMetadata {
                member_id: format!("consumer-{i}-uuid"),
                group_instance_id: (i % 2 == 0).then(|| format!("instance-{i}")),
                client_id: format!("client-{i}"),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: i,
                session_timeout: -i,
                subscription: vec![i as u8; i as usize],
                assignment: vec![0xff; 3],
            })
            .collect();
        for v in [sample_group(), many] {
            assert_eq!(
                decode_group_metadata_value(&encode_group_metadata_value(&v)).unwrap(),
                v
            );
        }
    }

    /// Builds an old-version GroupMetadataValue by hand with one member.
    fn old_group_bytes(version: u8) -> Vec<u8> {
        let mut b = vec![0, version];
        b.extend(s16("consumer"));
        b.extend(7i32.to_be_bytes());
        b.extend(s16("range"));
        b.extend(s16("m1"));
        if version >= 2 {
            b.extend(99i64.to_be_bytes());
        }
        b.extend(1i32.to_be_bytes());
        b.extend(s16("m1"));
        if version >= 3 {
            b.extend(s16("inst"));
        }
        b.extend(s16("c"));
        b.extend(s16("/h"));
        if version >= 1 {
            b.extend(60_000i32.to_be_bytes());
        }
        b.extend(10_000i32.to_be_bytes());
        b.extend(b32(&[9]));
        b.extend(b32(&[8, 7]));
        b
    }

    #[test]
    fn group_metadata_value_old_versions() {
        for version in 0..=3u8 {
            let v = decode_group_metadata_value(&old_group_bytes(version)).unwrap();
            assert_eq!(v.protocol_type, "consumer");
            assert_eq!(v.generation, 7);
            assert_eq!(v.protocol.as_deref(), Some("range"));
            assert_eq!(v.leader.as_deref(), Some("m1"));
            assert_eq!(
                v.current_state_timestamp,
                if version >= 2 { 99 } else { -1 },
                "v{version}"
            );
            let m = &v.members[..];
            assert_eq!(m.len(), 1);
            assert_eq!(
                m[0],
                MemberMetadata {
                    member_id: "m1".into(),
                    group_instance_id: (version >= 3).then(|| "inst".into()),
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    // v0 has no rebalance timeout: the session timeout stands in.
                    rebalance_timeout: if version >= 1 { 60_000 } else { 10_000 },
                    session_timeout: 10_000,
                    subscription: vec![9],
                    assignment: vec![8, 7],
                },
                "v{version}"
            );
        }
    }

    #[test]
    fn group_metadata_value_v4_flexible() {
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x04, // version
            0x09, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r', // protocolType
            0x00, 0x00, 0x00, 0x01, // generation
            0x06, b'r', b'a', b'n', b'g', b'e', // protocol
            0x03, b'm', b'1', // leader
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xd2, // currentStateTimestamp
            0x02, // members: 1
            0x03, b'm', b'1', // memberId
            0x03, b'i', b'1', // groupInstanceId
            0x02, b'c', // clientId
            0x03, b'/', b'h', // clientHost
            0x00, 0x04, 0x93, 0xe0, // rebalanceTimeout
            0x00, 0x00, 0xaf, 0xc8, // sessionTimeout
            0x03, 0x01, 0x02, // subscription
            0x01, // assignment: empty
            0x01, 0x00, 0x01, 0x2a, // member tagged fields: tag 0, 1 byte (unknown, skipped)
            0x00, // top-level tagged fields
        ];
        let mut expected = sample_group();
        expected.members[0].group_instance_id = Some("i1".into());
        assert_eq!(decode_group_metadata_value(&bytes).unwrap(), expected);

        // Nulls: protocol and leader null, no members.
        #[rustfmt::skip]
        let empty = [
            0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00,
        ];
        assert_eq!(
            decode_group_metadata_value(&empty).unwrap(),
            GroupMetadataValue {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp: -1,
                members: vec![],
            }
        );
    }

    #[test]
    fn unsupported_value_versions() {
        let mut bytes = encode_offset_commit_value(&sample_offset(None));
        bytes[1] = 5;
        assert_eq!(
            decode_offset_commit_value(&bytes),
            Err(RecordCodecError::UnsupportedVersion {
                record: "OffsetCommitValue",
                version: 5
            })
        );
        let mut bytes = encode_group_metadata_value(&sample_group());
        bytes[0] = 0xff;
        assert!(matches!(
            decode_group_metadata_value(&bytes),
            Err(RecordCodecError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let keys = [
            encode_key(&CoordinatorKey::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
            }),
            encode_key(&CoordinatorKey::GroupMetadata {
                group: "grp".into(),
            }),
        ];
        for k in &keys {
            for n in 0..k.len() {
                assert!(decode_key(&k[..n]).is_err(), "key prefix {n}");
            }
        }
        for v in [
            encode_offset_commit_value(&sample_offset(None)),
            encode_offset_commit_value(&sample_offset(Some(1))),
        ] {
            for n in 0..v.len() {
                assert!(decode_offset_commit_value(&v[..n]).is_err(), "prefix {n}");
            }
        }
        let mut groups = vec![encode_group_metadata_value(&sample_group())];
        groups.extend((0..=3).map(old_group_bytes));
        for v in &groups {
            for n in 0..v.len() {
                assert!(decode_group_metadata_value(&v[..n]).is_err(), "prefix {n}");
            }
        }
    }

    #[test]
    fn hostile_lengths_are_rejected_without_allocating() {
        // Member count i32::MAX with nothing behind it.
        let mut b = vec![0, 3];
        b.extend(s16("consumer"));
        b.extend(1i32.to_be_bytes());
        b.extend([0xff, 0xff, 0xff, 0xff]);
        b.extend((-1i64).to_be_bytes());
        b.extend(i32::MAX.to_be_bytes());
        b.extend([0u8; 64]);
        assert!(matches!(
            decode_group_metadata_value(&b),
            Err(RecordCodecError::Truncated {
                field: "members",
                ..
            })
        ));
        // Flexible: compact array count 2^32 - 2.
        let mut b = vec![0, 4, 0x01, 0, 0, 0, 0, 0x00, 0x00];
        b.extend((-1i64).to_be_bytes());
        b.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            decode_group_metadata_value(&b),
            Err(RecordCodecError::Truncated { .. })
        ));
        // Subscription bytes of length i32::MAX.
        let mut v = encode_group_metadata_value(&sample_group());
        let at = v.len() - 4 - 4 - 2;
        v[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_group_metadata_value(&v),
            Err(RecordCodecError::Truncated {
                field: "subscription",
                ..
            })
        ));
        // Null (-1) member count, null subscription, null group id.
        let mut b = vec![0, 0];
        b.extend(s16(""));
        b.extend(0i32.to_be_bytes());
        b.extend([0xff, 0xff, 0xff, 0xff]);
        b.extend((-1i32).to_be_bytes());
        assert_eq!(
            decode_group_metadata_value(&b),
            Err(RecordCodecError::NullField { field: "members" })
        );
        let mut v = encode_group_metadata_value(&sample_group());
        let at = v.len() - 4 - 4 - 2;
        v[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            decode_group_metadata_value(&v),
            Err(RecordCodecError::NullField {
                field: "subscription"
            })
        );
        assert_eq!(
            decode_key(&[0, 2, 0xff, 0xff]),
            Err(RecordCodecError::NullField { field: "group" })
        );
        // Malformed varint: six continuation bytes.
        let mut b = vec![0, 4];
        b.extend([0xff; 6]);
        assert_eq!(
            decode_group_metadata_value(&b),
            Err(RecordCodecError::InvalidVarint {
                field: "protocolType"
            })
        );
        // Compact string longer than Kafka allows.
        let mut b = vec![0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        b.extend([0x81, 0x80, 0x02]); // 32769 → length 32768
        b.extend(vec![b'x'; 40_000]);
        assert!(matches!(
            decode_offset_commit_value(&b),
            Err(RecordCodecError::InvalidLength {
                field: "metadata",
                ..
            })
        ));
        // Tagged field claiming more bytes than remain.
        let mut b = encode_offset_commit_value(&sample_offset(None));
        b[1] = 4;
        let mut b = cat(&[&b[..14], &[0x02, b'm'], &b[17..]]);
        b.extend([0x01, 0x00, 0xff, 0xff, 0x03]);
        assert!(matches!(
            decode_offset_commit_value(&b),
            Err(RecordCodecError::Truncated {
                field: "tagged field",
                ..
            })
        ));
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
        let seeds = [
            encode_group_metadata_value(&sample_group()),
            encode_offset_commit_value(&sample_offset(None)),
            encode_key(&CoordinatorKey::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
            }),
        ];
        for i in 0..20_000 {
            let mut buf: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                seeds[i % seeds.len()].clone()
            };
            if !buf.is_empty() {
                for _ in 0..(next() % 4) {
                    let at = (next() as usize) % buf.len();
                    buf[at] = next() as u8;
                }
                // Keep the version in range often, so the bodies get exercised.
                if i % 3 == 0 && buf.len() > 1 {
                    buf[0] = 0;
                    buf[1] = (next() % 5) as u8;
                }
            }
            let _ = decode_key(&buf);
            let _ = decode_offset_commit_value(&buf);
            let _ = decode_group_metadata_value(&buf);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_like_java() {
        let bytes = [0x00, 0x02, 0x00, 0x02, 0xc3, 0x28];
        assert_eq!(
            decode_key(&bytes).unwrap(),
            CoordinatorKey::GroupMetadata {
                group: "\u{fffd}(".into()
            }
        );
    }

    #[test]
    #[should_panic(expected = "too long")]
    fn overlong_string_panics_on_encode() {
        encode_key(&CoordinatorKey::GroupMetadata {
            group: "x".repeat(MAX_STRING_LEN + 1),
        });
    }

    #[test]
    fn partition_for_matches_java() {
        // Java: "hello".hashCode() == 99162322.
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("hello", 50), 22);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Utils.abs maps it to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Negative hash codes: "my-group" -> -1906497762.
        assert_eq!(partition_for("my-group", 50), 1_906_497_762 % 50);
        assert_eq!(partition_for("my-group", 50), 12);
        // "zzzzzzzzzz" -> -1580979136, "console-consumer-12345" -> 158455506.
        assert_eq!(partition_for("zzzzzzzzzz", 50), 36);
        assert_eq!(partition_for("console-consumer-12345", 50), 6);
        // Java hashes UTF-16 code units: U+1F600 is the pair D83D DE00 -> 1772899.
        assert_eq!(partition_for("\u{1F600}", 50), 49);
        // "Aa" and "BB" collide in Java (2112).
        assert_eq!(partition_for("Aa", 50), partition_for("BB", 50));
        assert_eq!(partition_for("anything", 1), 0);
    }
}
