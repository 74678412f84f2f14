//! Records of the internal compacted topic `__transaction_state`, byte-compatible with
//! Apache Kafka 4.1 (`TransactionLogKey.json`, `TransactionLogValue.json` and
//! `TransactionLog` in the `transaction-coordinator` module).
//!
//! ```text
//! record key   = int16 key version (0) | TransactionLogKey   (never flexible)
//! record value = int16 value version   | TransactionLogValue (null value = tombstone)
//! ```
//!
//! `TransactionLogKey` (version 0 only) is a single `string` field, `TransactionalId`.
//! Kafka reads a key of any other version as unknown; [`decode_key`] reports it as an
//! error. A tombstone (null value) means the transactional id expired and was removed.
//!
//! `TransactionLogValue` (`validVersions` 0-1, `flexibleVersions` 1+):
//!
//! | version | fields |
//! |---|---|
//! | 0 | ProducerId int64, ProducerEpoch int16, TransactionTimeoutMs int32, TransactionStatus int8, TransactionPartitions `[]{Topic string, PartitionIds []int32}` (nullable), TransactionLastUpdateTimestampMs int64, TransactionStartTimestampMs int64 |
//! | 1 (flexible) | as 0 with compact strings and arrays, tagged fields after each partitions entry and at the end: tag 0 PreviousProducerId int64 (default -1), tag 1 NextProducerId int64 (default -1), tag 2 ClientTransactionVersion int16 (default 0) |
//!
//! Tagged fields are written only when they differ from their defaults, in tag order.
//! Kafka versions later than 4.1 add more tagged fields (e.g. `NextProducerEpoch`);
//! like every tag this module does not know, they are skipped on reading.
//!
//! Which version Kafka 4.1 writes depends on the cluster's finalized
//! `transaction.version` feature, not on the client (`TransactionVersion
//! .transactionLogValueVersion()`): level 0 writes v0, levels 1 and 2 write v1 (see
//! [`value_version_for`]). A new Kafka 4.x cluster finalizes level 2 by default, so it
//! writes v1. Ottla finalizes level 2 too (transactions v2, KIP-890), so the
//! transaction coordinator writes v1 ([`encode_value_version`] with
//! [`value_version_for`]`(2)`), with the client transaction version and, unlike Kafka
//! 4.1, the next producer id of an epoch rotation, so a coordinator that loads a
//! transaction between its phases still knows which id comes next. [`encode_value`]
//! writes [`VALUE_VERSION`] = 0, what Kafka 4.1 writes at level 0: v0 has no tagged
//! fields; it drops the previous/next producer ids and the client transaction version,
//! which read back as -1, -1 and 0. (Kafka 4.1 itself never sets the previous/next
//! producer ids, even in v1; only later versions write them.
//! [`encode_value_version`] writes whatever the value holds.)
//!
//! The partitions are null in the Empty state and an array (possibly empty) in every
//! other state. Kafka refuses to write an Empty value with partitions; the encoder here
//! writes null and logs a warning. When reading, Kafka ignores the partitions of an
//! Empty value, and a null array in any other state makes its loader fail. The decoder
//! returns no partitions for an Empty value and an error for the null case.
//!
//! Decoding follows Kafka's generated readers: a negative length for a nullable field
//! means null, for a non-nullable one it is an error; trailing bytes after a message
//! are ignored (Kafka's `ByteBufferAccessor` does not check them either); invalid UTF-8
//! is replaced like Java's `new String(bytes, UTF_8)` does. Every length is checked
//! against the bytes that remain before anything is allocated, so hostile input yields
//! an error, never a panic or a large allocation. Kafka reads a known tagged field
//! without checking its declared size; here a size other than the field's width is an
//! error.

use std::fmt;

/// The only key version: the record type of `TransactionLogKey`.
pub const KEY_VERSION: i16 = 0;
/// The value version [`encode_value`] writes: what Kafka 4.1 writes when the finalized
/// `transaction.version` is 0, as Ottla's is.
pub const VALUE_VERSION: i16 = 0;
/// The flexible value version, written by Kafka 4.1 at `transaction.version` 1 and up.
pub const FLEXIBLE_VALUE_VERSION: i16 = 1;
/// Highest value version Kafka 4.1 (and this module) reads.
pub const MAX_VALUE_VERSION: i16 = 1;

/// The longest string Kafka's `string` type can carry (int16 length, and Kafka rejects
/// longer compact strings too). The encoders panic on longer strings; callers holding
/// client-provided transactional ids must check against this first.
pub const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Preallocation cap for decoded arrays; longer arrays still decode, growing as they go.
const MAX_PREALLOC: usize = 1024;

/// Tags of the value's known tagged fields (flexible versions).
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// The value version Kafka 4.1 writes for a cluster whose finalized
/// `transaction.version` feature level is `transaction_version_level`: 0 at level 0
/// (or below), 1 at level 1 and above (`TransactionVersion.transactionLogValueVersion`).
pub fn value_version_for(transaction_version_level: i16) -> i16 {
    if transaction_version_level >= 1 {
        FLEXIBLE_VALUE_VERSION
    } else {
        VALUE_VERSION
    }
}

// ---------------------------------------------------------------------------------------
// Types

/// A transaction's state, with Kafka's ids (`TransactionState.id()`, the stored
/// `TransactionStatus` byte) and names (as DescribeTransactions and ListTransactions
/// report them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// 0: no transaction open (also a freshly initialized producer).
    Empty,
    /// 1: partitions have been added; the transaction is open.
    Ongoing,
    /// 2: EndTxn(commit) accepted; commit markers are being written.
    PrepareCommit,
    /// 3: EndTxn(abort) or a timeout accepted; abort markers are being written.
    PrepareAbort,
    /// 4: commit markers written.
    CompleteCommit,
    /// 5: abort markers written.
    CompleteAbort,
    /// 6: the transactional id expired and is being removed (never written as a value:
    /// removal writes a tombstone).
    Dead,
    /// 7: fencing an older producer by bumping the epoch before aborting.
    PrepareEpochFence,
}

impl TransactionState {
    /// Every state, in id order.
    pub const ALL: [TransactionState; 8] = [
        TransactionState::Empty,
        TransactionState::Ongoing,
        TransactionState::PrepareCommit,
        TransactionState::PrepareAbort,
        TransactionState::CompleteCommit,
        TransactionState::CompleteAbort,
        TransactionState::Dead,
        TransactionState::PrepareEpochFence,
    ];

    /// Kafka's id of the state, as stored in `TransactionStatus`.
    pub fn id(self) -> i8 {
        match self {
            TransactionState::Empty => 0,
            TransactionState::Ongoing => 1,
            TransactionState::PrepareCommit => 2,
            TransactionState::PrepareAbort => 3,
            TransactionState::CompleteCommit => 4,
            TransactionState::CompleteAbort => 5,
            TransactionState::Dead => 6,
            TransactionState::PrepareEpochFence => 7,
        }
    }

    /// The state with Kafka's id `id`, `None` for an unknown id.
    pub fn from_id(id: i8) -> Option<TransactionState> {
        usize::try_from(id)
            .ok()
            .and_then(|i| TransactionState::ALL.get(i).copied())
    }

    /// Kafka's name of the state (`TransactionState.getName()`), as DescribeTransactions
    /// and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (case-sensitive, as Kafka's `fromName`), e.g. for a
    /// ListTransactions state filter.
    pub fn from_name(name: &str) -> Option<TransactionState> {
        TransactionState::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for TransactionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of a `__transaction_state` record (`TransactionLogValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogValue {
    pub producer_id: i64,
    /// Tagged (tag 0) in version 1, -1 when absent; not stored by version 0.
    pub previous_producer_id: i64,
    /// Tagged (tag 1) in version 1, -1 when absent; not stored by version 0.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TransactionState,
    /// `TransactionPartitions`: (topic, partition ids). Stored as null in the Empty
    /// state, which therefore always reads back with no partitions.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_timestamp_ms: i64,
    /// -1 when no transaction has started.
    pub start_timestamp_ms: i64,
    /// The client's transaction version (feature level); tagged (tag 2) in version 1,
    /// 0 when absent; not stored by version 0.
    pub client_transaction_version: i16,
}

/// Why a record key or value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
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
    #[error("unknown transaction state id {0}")]
    UnknownState(i8),
}

type Result<T> = std::result::Result<T, RecordError>;

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
            return Err(RecordError::Truncated {
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

    /// Kafka's unsigned varint: at most 5 bytes, value fits in 32 bits.
    fn uvarint(&mut self, field: &'static str) -> Result<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.array::<1>(field)?;
            if i == 4 && b > 0x0f {
                return Err(RecordError::InvalidVarint { field });
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::InvalidVarint { field })
    }

    /// Length of a string (int16 when not flexible) or array (int32 when not flexible);
    /// `None` means null (any negative length, or compact 0).
    fn length(&mut self, field: &'static str, flexible: bool, wide: bool) -> Result<Option<u64>> {
        if flexible {
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

    fn string(&mut self, field: &'static str, flexible: bool) -> Result<String> {
        let len = self
            .length(field, flexible, false)?
            .ok_or(RecordError::NullField { field })?;
        if len > MAX_STRING_LEN as u64 {
            return Err(RecordError::InvalidLength {
                field,
                length: len as i64,
            });
        }
        let bytes = self.take(len, field)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Element count of an array whose elements take at least `min_element_bytes` each,
    /// `None` for null; a count the remaining bytes cannot hold is rejected.
    fn nullable_array_len(
        &mut self,
        field: &'static str,
        flexible: bool,
        min_element_bytes: u64,
    ) -> Result<Option<usize>> {
        let Some(count) = self.length(field, flexible, true)? else {
            return Ok(None);
        };
        let needed = count.saturating_mul(min_element_bytes.max(1));
        if needed > self.remaining() as u64 {
            return Err(RecordError::Truncated {
                field,
                needed,
                remaining: self.remaining(),
            });
        }
        // `needed <= remaining` bounds count by the input length, so it fits in usize.
        Ok(Some(count as usize))
    }

    fn array_len(
        &mut self,
        field: &'static str,
        flexible: bool,
        min_element_bytes: u64,
    ) -> Result<usize> {
        self.nullable_array_len(field, flexible, min_element_bytes)?
            .ok_or(RecordError::NullField { field })
    }

    /// Reads a tagged-field section, handing each field's tag and data to `known`,
    /// which returns `false` for tags it does not know (those are skipped, as Kafka
    /// keeps unknown tags aside).
    fn tagged_fields(
        &mut self,
        mut known: impl FnMut(u32, &'a [u8]) -> Result<bool>,
    ) -> Result<()> {
        let count = self.uvarint("tagged fields count")?;
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")?;
            let data = self.take(u64::from(size), "tagged field")?;
            known(tag, data)?;
        }
        Ok(())
    }

    fn skip_tagged_fields(&mut self) -> Result<()> {
        self.tagged_fields(|_, _| Ok(false))
    }
}

/// The data of a known tagged field, which must be exactly `N` bytes.
fn tagged<const N: usize>(field: &'static str, data: &[u8]) -> Result<[u8; N]> {
    data.try_into().map_err(|_| RecordError::InvalidLength {
        field,
        length: data.len() as i64,
    })
}

// ---------------------------------------------------------------------------------------
// Writing

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn too_many(field: &str, len: usize) -> ! {
    panic!("field {field} has too many elements to be serialized ({len})")
}

/// Length of an array (int32, or compact: unsigned varint of length + 1).
fn put_array_len(out: &mut Vec<u8>, field: &str, len: usize, flexible: bool) {
    if flexible {
        let n = u32::try_from(len)
            .ok()
            .and_then(|n| n.checked_add(1))
            .unwrap_or_else(|| too_many(field, len));
        put_uvarint(out, n);
    } else {
        put_i32(
            out,
            i32::try_from(len).unwrap_or_else(|_| too_many(field, len)),
        );
    }
}

fn put_string(out: &mut Vec<u8>, field: &str, s: &str, flexible: bool) {
    assert!(
        s.len() <= MAX_STRING_LEN,
        "field {field} is too long to be serialized ({} bytes, at most {MAX_STRING_LEN})",
        s.len()
    );
    if flexible {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        put_i16(out, s.len() as i16);
    }
    out.extend_from_slice(s.as_bytes());
}

fn put_tagged_field(out: &mut Vec<u8>, tag: u32, data: &[u8]) {
    put_uvarint(out, tag);
    put_uvarint(out, data.len() as u32);
    out.extend_from_slice(data);
}

// ---------------------------------------------------------------------------------------
// Keys

/// Encodes a record key: key version 0, then the transactional id as a `string`.
///
/// # Panics
/// When `transactional_id` is longer than [`MAX_STRING_LEN`] bytes.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 + transactional_id.len());
    put_i16(&mut out, KEY_VERSION);
    put_string(&mut out, "transactionalId", transactional_id, false);
    out
}

/// Decodes a record key into its transactional id. Any key version other than 0 is
/// an error (Kafka skips such records as unknown).
pub fn decode_key(bytes: &[u8]) -> Result<String> {
    let mut r = Reader::new(bytes);
    let version = r.i16("key version")?;
    if version != KEY_VERSION {
        return Err(RecordError::UnsupportedVersion {
            record: "TransactionLogKey",
            version,
        });
    }
    r.string("transactionalId", false)
}

// ---------------------------------------------------------------------------------------
// Values

/// Encodes a value as [`VALUE_VERSION`] (0), as Kafka 4.1 writes it when the finalized
/// `transaction.version` is 0. The tagged fields (previous/next producer id, client
/// transaction version) are not stored; use [`encode_value_version`] with
/// [`FLEXIBLE_VALUE_VERSION`] to keep them.
///
/// # Panics
/// On topic names longer than [`MAX_STRING_LEN`] bytes or arrays longer than `i32::MAX`.
pub fn encode_value(value: &TransactionLogValue) -> Vec<u8> {
    encode_value_version(value, VALUE_VERSION)
}

/// Encodes a value as version `version` (0 or 1; see [`value_version_for`]). In the
/// Empty state the partitions are written as null; if any are given, they are dropped
/// with a warning (Kafka refuses to write such a value).
///
/// # Panics
/// On a version other than 0 or 1, topic names longer than [`MAX_STRING_LEN`] bytes, or
/// arrays longer than `i32::MAX`.
pub fn encode_value_version(value: &TransactionLogValue, version: i16) -> Vec<u8> {
    assert!(
        (0..=MAX_VALUE_VERSION).contains(&version),
        "TransactionLogValue version {version} cannot be written"
    );
    let flexible = version >= FLEXIBLE_VALUE_VERSION;
    let partitions_len: usize = value
        .partitions
        .iter()
        .map(|(topic, ids)| 2 + topic.len() + 4 + 4 * ids.len() + 1)
        .sum();
    let mut out = Vec::with_capacity(2 + 8 + 2 + 4 + 1 + 4 + partitions_len + 8 + 8 + 32);
    put_i16(&mut out, version);
    put_i64(&mut out, value.producer_id);
    put_i16(&mut out, value.producer_epoch);
    put_i32(&mut out, value.transaction_timeout_ms);
    out.push(value.state.id() as u8);

    if value.state == TransactionState::Empty {
        if !value.partitions.is_empty() {
            tracing::warn!(
                "transaction log value in state Empty has {} partition entries; \
                 writing none, as Kafka stores no partitions in that state",
                value.partitions.len()
            );
        }
        // Null array: int32 -1, or compact length 0.
        if flexible {
            put_uvarint(&mut out, 0);
        } else {
            put_i32(&mut out, -1);
        }
    } else {
        put_array_len(
            &mut out,
            "transactionPartitions",
            value.partitions.len(),
            flexible,
        );
        for (topic, ids) in &value.partitions {
            put_string(&mut out, "topic", topic, flexible);
            put_array_len(&mut out, "partitionIds", ids.len(), flexible);
            for &id in ids {
                put_i32(&mut out, id);
            }
            if flexible {
                put_uvarint(&mut out, 0); // no tagged fields in the entry
            }
        }
    }

    put_i64(&mut out, value.last_update_timestamp_ms);
    put_i64(&mut out, value.start_timestamp_ms);

    if flexible {
        let prev = value.previous_producer_id != -1;
        let next = value.next_producer_id != -1;
        let client = value.client_transaction_version != 0;
        put_uvarint(
            &mut out,
            u32::from(prev) + u32::from(next) + u32::from(client),
        );
        if prev {
            put_tagged_field(
                &mut out,
                TAG_PREVIOUS_PRODUCER_ID,
                &value.previous_producer_id.to_be_bytes(),
            );
        }
        if next {
            put_tagged_field(
                &mut out,
                TAG_NEXT_PRODUCER_ID,
                &value.next_producer_id.to_be_bytes(),
            );
        }
        if client {
            put_tagged_field(
                &mut out,
                TAG_CLIENT_TRANSACTION_VERSION,
                &value.client_transaction_version.to_be_bytes(),
            );
        }
    }
    out
}

/// Decodes a value of version 0 or 1 (all that Kafka 4.1 reads). Unknown tagged
/// fields are skipped. An Empty value reads with no partitions (Kafka ignores them);
/// null partitions in any other state are an error ([`RecordError::NullField`]).
pub fn decode_value(bytes: &[u8]) -> Result<TransactionLogValue> {
    let mut r = Reader::new(bytes);
    let version = r.i16("value version")?;
    if !(0..=MAX_VALUE_VERSION).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            record: "TransactionLogValue",
            version,
        });
    }
    let flexible = version >= FLEXIBLE_VALUE_VERSION;

    let producer_id = r.i64("producerId")?;
    let producer_epoch = r.i16("producerEpoch")?;
    let transaction_timeout_ms = r.i32("transactionTimeoutMs")?;
    let status = r.i8("transactionStatus")?;

    // Smallest entry: empty topic and empty array (2 + 4 bytes, or 1 + 1 + 1 with the
    // entry's tagged-field count when flexible).
    let min_entry = if flexible { 3 } else { 6 };
    let partitions = match r.nullable_array_len("transactionPartitions", flexible, min_entry)? {
        None => None,
        Some(count) => {
            let mut partitions = Vec::with_capacity(count.min(MAX_PREALLOC));
            for _ in 0..count {
                let topic = r.string("topic", flexible)?;
                let n = r.array_len("partitionIds", flexible, 4)?;
                let mut ids = Vec::with_capacity(n.min(MAX_PREALLOC));
                for _ in 0..n {
                    ids.push(r.i32("partitionIds")?);
                }
                if flexible {
                    r.skip_tagged_fields()?;
                }
                partitions.push((topic, ids));
            }
            Some(partitions)
        }
    };

    let last_update_timestamp_ms = r.i64("transactionLastUpdateTimestampMs")?;
    let start_timestamp_ms = r.i64("transactionStartTimestampMs")?;

    let mut previous_producer_id = -1;
    let mut next_producer_id = -1;
    let mut client_transaction_version = 0;
    if flexible {
        r.tagged_fields(|tag, data| {
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    previous_producer_id = i64::from_be_bytes(tagged("previousProducerId", data)?);
                }
                TAG_NEXT_PRODUCER_ID => {
                    next_producer_id = i64::from_be_bytes(tagged("nextProducerId", data)?);
                }
                TAG_CLIENT_TRANSACTION_VERSION => {
                    client_transaction_version =
                        i16::from_be_bytes(tagged("clientTransactionVersion", data)?);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
    }

    // Kafka parses the whole message first, then maps the state, then the partitions.
    let state = TransactionState::from_id(status).ok_or(RecordError::UnknownState(status))?;
    let partitions = if state == TransactionState::Empty {
        Vec::new()
    } else {
        partitions.ok_or(RecordError::NullField {
            field: "transactionPartitions",
        })?
    };

    Ok(TransactionLogValue {
        producer_id,
        previous_producer_id,
        next_producer_id,
        producer_epoch,
        transaction_timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version,
    })
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const LAST_UPDATE: i64 = 1_700_000_000_123;
    const START: i64 = 1_699_999_999_000;

    /// A non-flexible `string`.
    fn s16(s: &str) -> Vec<u8> {
        let mut v = (s.len() as i16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// A compact string whose length + 1 fits in one varint byte.
    fn cs(s: &str) -> Vec<u8> {
        assert!(s.len() < 127);
        let mut v = vec![s.len() as u8 + 1];
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn sample(state: TransactionState) -> TransactionLogValue {
        TransactionLogValue {
            producer_id: 1000,
            previous_producer_id: 999,
            next_producer_id: 1001,
            producer_epoch: 5,
            transaction_timeout_ms: 60_000,
            state,
            partitions: if state == TransactionState::Empty {
                Vec::new()
            } else {
                vec![("foo".into(), vec![0, 2]), ("bar".into(), vec![7])]
            },
            last_update_timestamp_ms: LAST_UPDATE,
            start_timestamp_ms: START,
            client_transaction_version: 2,
        }
    }

    /// `sample(state)` as version 0 stores it: no tagged fields.
    fn as_v0(mut v: TransactionLogValue) -> TransactionLogValue {
        v.previous_producer_id = -1;
        v.next_producer_id = -1;
        v.client_transaction_version = 0;
        v
    }

    /// Hand-assembled v0 PrepareCommit value, from the schema.
    fn v0_prepare_commit_bytes() -> Vec<u8> {
        cat(&[
            &[0x00, 0x00], // version 0
            &1000i64.to_be_bytes(),
            &5i16.to_be_bytes(),
            &60_000i32.to_be_bytes(),
            &[0x02], // PrepareCommit
            &2i32.to_be_bytes(),
            &s16("foo"),
            &2i32.to_be_bytes(),
            &0i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            &s16("bar"),
            &1i32.to_be_bytes(),
            &7i32.to_be_bytes(),
            &LAST_UPDATE.to_be_bytes(),
            &START.to_be_bytes(),
        ])
    }

    /// Hand-assembled v1 Ongoing value, from the schema; with `unknown`, it also carries
    /// a tag 42 (top level) and a tag 9 (in the second partitions entry) that this module
    /// does not know.
    fn v1_ongoing_bytes(unknown: bool) -> Vec<u8> {
        let entry2_tags: &[u8] = if unknown {
            &[0x01, 0x09, 0x01, 0xaa]
        } else {
            &[0x00]
        };
        let tag_count: &[u8] = if unknown { &[0x04] } else { &[0x03] };
        let unknown_tag: &[u8] = if unknown {
            &[0x2a, 0x03, 0x01, 0x02, 0x03]
        } else {
            &[]
        };
        cat(&[
            &[0x00, 0x01], // version 1
            &1000i64.to_be_bytes(),
            &5i16.to_be_bytes(),
            &60_000i32.to_be_bytes(),
            &[0x01], // Ongoing
            &[0x03], // compact array: 2 entries
            &cs("foo"),
            &[0x03],
            &0i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            &[0x00], // entry tagged fields
            &cs("bar"),
            &[0x02],
            &7i32.to_be_bytes(),
            entry2_tags,
            &LAST_UPDATE.to_be_bytes(),
            &START.to_be_bytes(),
            tag_count,
            &[0x00, 0x08], // tag 0 PreviousProducerId
            &999i64.to_be_bytes(),
            &[0x01, 0x08], // tag 1 NextProducerId
            &1001i64.to_be_bytes(),
            &[0x02, 0x02], // tag 2 ClientTransactionVersion
            &2i16.to_be_bytes(),
            unknown_tag,
        ])
    }

    #[test]
    fn state_ids_and_names() {
        let expected = [
            (0, "Empty"),
            (1, "Ongoing"),
            (2, "PrepareCommit"),
            (3, "PrepareAbort"),
            (4, "CompleteCommit"),
            (5, "CompleteAbort"),
            (6, "Dead"),
            (7, "PrepareEpochFence"),
        ];
        for (state, (id, name)) in TransactionState::ALL.into_iter().zip(expected) {
            assert_eq!(state.id(), id);
            assert_eq!(state.name(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(TransactionState::from_id(id), Some(state));
            assert_eq!(TransactionState::from_name(name), Some(state));
        }
        for id in [-128, -1, 8, 127] {
            assert_eq!(TransactionState::from_id(id), None);
        }
        assert_eq!(TransactionState::from_name("ongoing"), None);
        assert_eq!(TransactionState::from_name(""), None);
    }

    #[test]
    fn value_version_follows_the_cluster_transaction_version() {
        assert_eq!(value_version_for(-1), 0);
        assert_eq!(value_version_for(0), 0);
        assert_eq!(value_version_for(1), 1);
        assert_eq!(value_version_for(2), 1);
        assert_eq!(
            encode_value(&sample(TransactionState::Ongoing))[..2],
            [0, 0]
        );
    }

    #[test]
    fn key_exact_bytes_and_round_trip() {
        assert_eq!(encode_key("txn"), [0, 0, 0, 3, b't', b'x', b'n']);
        assert_eq!(encode_key(""), [0, 0, 0, 0]);
        for id in ["", "txn", "my-app-0-producer", "\u{1F600} ünïcode"] {
            assert_eq!(decode_key(&encode_key(id)).unwrap(), id);
        }
        // Trailing bytes are ignored, as Kafka's reader does.
        assert_eq!(decode_key(&[0, 0, 0, 1, b'a', 0xff]).unwrap(), "a");
        assert_eq!(
            decode_key(&[0, 1, 0, 1, b'a']),
            Err(RecordError::UnsupportedVersion {
                record: "TransactionLogKey",
                version: 1
            })
        );
        assert_eq!(
            decode_key(&[0, 0, 0xff, 0xff]),
            Err(RecordError::NullField {
                field: "transactionalId"
            })
        );
        let k = encode_key("txn");
        for n in 0..k.len() {
            assert!(decode_key(&k[..n]).is_err(), "key prefix {n}");
        }
    }

    #[test]
    fn every_state_round_trips_in_both_versions() {
        for state in TransactionState::ALL {
            let v = sample(state);
            let v1 = encode_value_version(&v, 1);
            assert_eq!(v1[..2], [0, 1]);
            assert_eq!(decode_value(&v1).unwrap(), v, "{state} v1");
            let v0 = encode_value(&v);
            assert_eq!(v0[..2], [0, 0]);
            assert_eq!(decode_value(&v0).unwrap(), as_v0(v.clone()), "{state} v0");
            assert_eq!(encode_value_version(&v, 0), v0);
            // All tagged fields at their defaults: v1 writes an empty tag section.
            let plain = as_v0(v);
            let v1 = encode_value_version(&plain, 1);
            assert_eq!(*v1.last().unwrap(), 0);
            assert_eq!(decode_value(&v1).unwrap(), plain);
        }
    }

    #[test]
    fn decodes_hand_assembled_v0() {
        let v = decode_value(&v0_prepare_commit_bytes()).unwrap();
        assert_eq!(v, as_v0(sample(TransactionState::PrepareCommit)));
        // The encoder writes the very same bytes.
        assert_eq!(
            encode_value(&sample(TransactionState::PrepareCommit)),
            v0_prepare_commit_bytes()
        );
    }

    #[test]
    fn decodes_hand_assembled_v1_with_unknown_tags() {
        let expected = sample(TransactionState::Ongoing);
        assert_eq!(decode_value(&v1_ongoing_bytes(true)).unwrap(), expected);
        assert_eq!(decode_value(&v1_ongoing_bytes(false)).unwrap(), expected);
        assert_eq!(encode_value_version(&expected, 1), v1_ongoing_bytes(false));
    }

    #[test]
    fn empty_state_has_null_partitions() {
        let mut v = sample(TransactionState::Empty);
        v.start_timestamp_ms = -1;
        let expected_v0 = cat(&[
            &[0, 0],
            &1000i64.to_be_bytes(),
            &5i16.to_be_bytes(),
            &60_000i32.to_be_bytes(),
            &[0x00],
            &(-1i32).to_be_bytes(),
            &LAST_UPDATE.to_be_bytes(),
            &(-1i64).to_be_bytes(),
        ]);
        assert_eq!(encode_value(&v), expected_v0);
        let expected_v1 = cat(&[
            &[0, 1],
            &1000i64.to_be_bytes(),
            &5i16.to_be_bytes(),
            &60_000i32.to_be_bytes(),
            &[0x00, 0x00], // Empty, null compact array
            &LAST_UPDATE.to_be_bytes(),
            &(-1i64).to_be_bytes(),
            &[0x03, 0x00, 0x08],
            &999i64.to_be_bytes(),
            &[0x01, 0x08],
            &1001i64.to_be_bytes(),
            &[0x02, 0x02, 0x00, 0x02],
        ]);
        assert_eq!(encode_value_version(&v, 1), expected_v1);

        // Partitions given for Empty are not written.
        let mut with = v.clone();
        with.partitions = vec![("t".into(), vec![1])];
        assert_eq!(encode_value(&with), expected_v0);

        // Partitions stored with Empty are ignored on reading, as Kafka does; an empty
        // (non-null) array in Empty reads the same.
        let mut b = v0_prepare_commit_bytes();
        b[16] = 0x00; // state byte -> Empty
        let mut expected = as_v0(sample(TransactionState::Empty));
        expected.start_timestamp_ms = START;
        assert_eq!(decode_value(&b).unwrap(), expected);

        // Non-Empty states write an array even when it is empty.
        let mut c = sample(TransactionState::CompleteCommit);
        c.partitions.clear();
        let b = encode_value(&c);
        assert_eq!(b[17..21], 0i32.to_be_bytes());
        assert_eq!(decode_value(&b).unwrap(), as_v0(c));
    }

    #[test]
    fn null_partitions_outside_empty_are_an_error() {
        let mut b = encode_value(&sample(TransactionState::Empty));
        b[16] = 0x01; // Ongoing with null partitions
        assert_eq!(
            decode_value(&b),
            Err(RecordError::NullField {
                field: "transactionPartitions"
            })
        );
        // Any negative int32 length is null, as in Kafka's generated reader.
        b[17..21].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            decode_value(&b),
            Err(RecordError::NullField {
                field: "transactionPartitions"
            })
        );
        b[16] = 0x00;
        assert!(decode_value(&b).unwrap().partitions.is_empty());
    }

    #[test]
    fn unknown_versions_and_states() {
        for version in [-1i16, 2, i16::MAX] {
            let mut b = v0_prepare_commit_bytes();
            b[..2].copy_from_slice(&version.to_be_bytes());
            assert_eq!(
                decode_value(&b),
                Err(RecordError::UnsupportedVersion {
                    record: "TransactionLogValue",
                    version
                })
            );
        }
        for status in [8u8, 0x80, 0xff] {
            let mut b = v0_prepare_commit_bytes();
            b[16] = status;
            assert_eq!(
                decode_value(&b),
                Err(RecordError::UnknownState(status as i8))
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let values = [
            v0_prepare_commit_bytes(),
            v1_ongoing_bytes(true),
            v1_ongoing_bytes(false),
            encode_value(&sample(TransactionState::Empty)),
            encode_value_version(&sample(TransactionState::Empty), 1),
        ];
        for v in &values {
            assert!(decode_value(v).is_ok());
            for n in 0..v.len() {
                assert!(decode_value(&v[..n]).is_err(), "prefix {n} of {v:?}");
            }
        }
    }

    #[test]
    fn hostile_lengths_are_rejected_without_allocating() {
        let header = |version: u8, state: u8| {
            cat(&[
                &[0, version],
                &1i64.to_be_bytes(),
                &0i16.to_be_bytes(),
                &1000i32.to_be_bytes(),
                &[state],
            ])
        };
        // Partitions count i32::MAX with little behind it.
        let b = cat(&[&header(0, 1), &i32::MAX.to_be_bytes(), &[0u8; 64]]);
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::Truncated {
                field: "transactionPartitions",
                ..
            })
        ));
        // Flexible: compact count 2^32 - 2.
        let b = cat(&[&header(1, 1), &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0u8; 64]]);
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::Truncated {
                field: "transactionPartitions",
                ..
            })
        ));
        // Partition ids count i32::MAX.
        let b = cat(&[
            &header(0, 1),
            &1i32.to_be_bytes(),
            &s16("t"),
            &i32::MAX.to_be_bytes(),
            &[0u8; 64],
        ]);
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::Truncated {
                field: "partitionIds",
                ..
            })
        ));
        // Null partition ids, null topic (negative lengths of non-nullable fields).
        let b = cat(&[
            &header(0, 1),
            &1i32.to_be_bytes(),
            &s16("t"),
            &(-1i32).to_be_bytes(),
            &[0u8; 16],
        ]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::NullField {
                field: "partitionIds"
            })
        );
        let b = cat(&[
            &header(0, 1),
            &1i32.to_be_bytes(),
            &(-5i16).to_be_bytes(),
            &[0u8; 16],
        ]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::NullField { field: "topic" })
        );
        let b = cat(&[&header(1, 1), &[0x02, 0x00], &[0u8; 16]]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::NullField { field: "topic" })
        );
        // Topic length i16::MAX with a few bytes behind it.
        let b = cat(&[
            &header(0, 1),
            &1i32.to_be_bytes(),
            &i16::MAX.to_be_bytes(),
            &[0u8; 16],
        ]);
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::Truncated { field: "topic", .. })
        ));
        // Compact topic longer than Kafka allows (32769 - 1 = 32768).
        let mut b = cat(&[&header(1, 1), &[0x02, 0x81, 0x80, 0x02]]);
        b.extend(vec![b'x'; 40_000]);
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::InvalidLength { field: "topic", .. })
        ));
        // Malformed varint: six continuation bytes; a fifth byte over 0x0f.
        let b = cat(&[&header(1, 1), &[0xff; 6]]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::InvalidVarint {
                field: "transactionPartitions"
            })
        );
        let b = cat(&[&header(1, 1), &[0x80, 0x80, 0x80, 0x80, 0x10], &[0u8; 8]]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::InvalidVarint {
                field: "transactionPartitions"
            })
        );
        // Tagged field claiming more bytes than remain.
        let mut b = encode_value_version(&as_v0(sample(TransactionState::Ongoing)), 1);
        b.pop();
        b.extend([0x01, 0x2a, 0xff, 0xff, 0x03, 0x00]);
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::Truncated {
                field: "tagged field",
                ..
            })
        ));
        // Tagged fields count huge, nothing behind it.
        let mut b = encode_value_version(&as_v0(sample(TransactionState::Ongoing)), 1);
        b.pop();
        b.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_value(&b).is_err());
        // A known tag with the wrong size.
        let mut b = encode_value_version(&as_v0(sample(TransactionState::Ongoing)), 1);
        b.pop();
        b.extend([0x01, 0x00, 0x04, 0, 0, 0, 1]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::InvalidLength {
                field: "previousProducerId",
                length: 4
            })
        );
        let mut b = encode_value_version(&as_v0(sample(TransactionState::Ongoing)), 1);
        b.pop();
        b.extend([0x01, 0x02, 0x00]);
        assert_eq!(
            decode_value(&b),
            Err(RecordError::InvalidLength {
                field: "clientTransactionVersion",
                length: 0
            })
        );
        // Empty input, and a lone version.
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[0, 0]).is_err());
        assert!(decode_key(&[]).is_err());
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
            v0_prepare_commit_bytes(),
            v1_ongoing_bytes(true),
            encode_value_version(&sample(TransactionState::Empty), 1),
            encode_key("transactional-id"),
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
                    buf[1] = (next() % 2) as u8;
                }
            }
            let _ = decode_key(&buf);
            if let Ok(v) = decode_value(&buf) {
                // Whatever decodes re-encodes and decodes to the same value.
                let version = i16::from_be_bytes([buf[0], buf[1]]);
                assert_eq!(decode_value(&encode_value_version(&v, version)), Ok(v));
            }
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_like_java() {
        assert_eq!(
            decode_key(&[0x00, 0x00, 0x00, 0x02, 0xc3, 0x28]).unwrap(),
            "\u{fffd}("
        );
        let b = cat(&[
            &[0, 1],
            &1i64.to_be_bytes(),
            &0i16.to_be_bytes(),
            &1000i32.to_be_bytes(),
            &[0x01, 0x02, 0x03, 0xff, 0xfe, 0x01, 0x00],
            &0i64.to_be_bytes(),
            &0i64.to_be_bytes(),
            &[0x00],
        ]);
        assert_eq!(
            decode_value(&b).unwrap().partitions,
            vec![("\u{fffd}\u{fffd}".to_string(), vec![])]
        );
    }

    #[test]
    #[should_panic(expected = "too long")]
    fn overlong_key_panics_on_encode() {
        encode_key(&"x".repeat(MAX_STRING_LEN + 1));
    }

    #[test]
    #[should_panic(expected = "cannot be written")]
    fn unknown_version_panics_on_encode() {
        encode_value_version(&sample(TransactionState::Ongoing), 2);
    }
}
