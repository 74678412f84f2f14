//! Record batch (magic v2) header: a zero-copy view over the 61 bytes that precede the
//! records, plus the few in-place rewrites the broker performs.
//!
//! Ottla stores batches exactly as the producer sent them (see DESIGN.md). Everything the
//! broker needs — offsets, timestamps, producer id/epoch/sequence, the codec — lives in
//! this fixed header, so the produce path never has to touch the records themselves.
//!
//! Layout (all big-endian), from Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! 0  baseOffset: int64          27 baseTimestamp: int64
//! 8  batchLength: int32         35 maxTimestamp: int64
//! 12 partitionLeaderEpoch: int32 43 producerId: int64
//! 16 magic: int8 (= 2)          51 producerEpoch: int16
//! 17 crc: uint32 (CRC-32C of    53 baseSequence: int32
//!    bytes 21..end)             57 recordsCount: int32
//! 21 attributes: int16          61 records...
//! 23 lastOffsetDelta: int32
//! ```
//!
//! The CRC covers attributes onwards, so rewriting the base offset or the partition
//! leader epoch leaves it valid; rewriting the timestamp type or max timestamp
//! (log-append time) requires [`RecordBatchMut::set_log_append_time`], which recomputes it.

use crate::compression::Compression;

/// Size of the v2 batch header; the smallest possible batch (zero records).
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only record format Produce v3+ may carry.
pub const MAGIC_V2: i8 = 2;
/// `producerId` of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producerEpoch` of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `baseSequence` of a batch written by a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// `partitionLeaderEpoch` a producer sends; the leader overwrites it.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_MASK: i16 = 0x10;
const CONTROL_MASK: i16 = 0x20;

/// Why a byte range is not an acceptable v2 record batch. Each maps to one Kafka error
/// code (see `kafka_error_code`), so handlers never have to guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch compression codec {0} is unknown")]
    UnknownCodec(i16),
    #[error("record batch has {count} records but lastOffsetDelta {last_offset_delta}")]
    InconsistentCount { count: i32, last_offset_delta: i32 },
}

impl BatchError {
    /// Kafka's error code for this failure, as its `LogValidator` reports it.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            // CORRUPT_MESSAGE
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. } => 2,
            // UNSUPPORTED_COMPRESSION_TYPE
            BatchError::UnknownCodec(_) => 76,
            // INVALID_RECORD
            BatchError::UnsupportedMagic(_) | BatchError::InconsistentCount { .. } => 87,
        }
    }
}

fn read_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}
fn read_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

/// Total size in bytes (header included) of the batch starting at `buf[0]`, read from its
/// `batchLength` field, or `None` when fewer than [`LOG_OVERHEAD`] bytes are present.
/// The value is not validated beyond being non-negative; callers check it against
/// what they have.
pub fn batch_size_at(buf: &[u8]) -> Option<Result<usize, BatchError>> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = read_i32(buf, BATCH_LENGTH);
    let minimum = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
    if len < minimum {
        return Some(Err(BatchError::InvalidLength(len)));
    }
    Some(Ok(LOG_OVERHEAD + len as usize))
}

/// The size a batch header at the start of `prefix` declares, once `prefix` holds a whole
/// header and the size is valid.
fn header_batch_size(prefix: &[u8]) -> Result<usize, BatchError> {
    if prefix.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: BATCH_HEADER_LEN,
            available: prefix.len(),
        });
    }
    match batch_size_at(prefix) {
        Some(r) => r,
        None => unreachable!("length checked above"),
    }
}

/// The fixed 61-byte header of a batch, readable from that prefix alone: index walks
/// and producer-state rebuilds read only this much of each stored batch. A
/// [`RecordBatch`] (the whole batch) dereferences to it, so the fields have one reader.
#[derive(Clone, Copy)]
pub struct BatchHeaderView<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchHeaderView<'a> {
    /// View the header at the start of `prefix` (at least [`BATCH_HEADER_LEN`] bytes;
    /// more may follow). Checks the length field and the magic; the CRC needs the whole
    /// batch ([`RecordBatch::validate`]).
    pub fn parse(prefix: &'a [u8]) -> Result<Self, BatchError> {
        header_batch_size(prefix)?;
        Self::parse_sized(prefix)
    }

    /// [`BatchHeaderView::parse`] after [`header_batch_size`] has accepted `prefix`.
    fn parse_sized(prefix: &'a [u8]) -> Result<Self, BatchError> {
        let magic = prefix[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(BatchHeaderView {
            bytes: &prefix[..BATCH_HEADER_LEN],
        })
    }

    /// Whole batch size in bytes, as its length field says.
    pub fn batch_size(&self) -> usize {
        LOG_OVERHEAD + read_i32(self.bytes, BATCH_LENGTH) as usize
    }
    pub fn base_offset(&self) -> i64 {
        read_i64(self.bytes, BASE_OFFSET)
    }
    pub fn last_offset_delta(&self) -> i32 {
        read_i32(self.bytes, LAST_OFFSET_DELTA)
    }
    /// Offset of the last record in the batch (base offset + lastOffsetDelta).
    /// Wrapping, because both fields come from the wire; validation rejects the
    /// nonsense cases, and arithmetic on them must not panic first.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(i64::from(self.last_offset_delta()))
    }
    /// Offset the next batch in the log starts at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(self.bytes, PARTITION_LEADER_EPOCH)
    }
    pub fn crc(&self) -> u32 {
        read_i32(self.bytes, CRC) as u32
    }
    pub fn attributes(&self) -> i16 {
        read_i16(self.bytes, ATTRIBUTES)
    }
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let id = self.attributes() & COMPRESSION_MASK;
        Compression::from_id(id).ok_or(BatchError::UnknownCodec(id))
    }
    /// True when the timestamps are log-append time rather than create time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_MASK != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_MASK != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_MASK != 0
    }
    pub fn base_timestamp(&self) -> i64 {
        read_i64(self.bytes, BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        read_i64(self.bytes, MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        read_i64(self.bytes, PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        read_i16(self.bytes, PRODUCER_EPOCH)
    }
    pub fn base_sequence(&self) -> i32 {
        read_i32(self.bytes, BASE_SEQUENCE)
    }
    /// Sequence number of the last record; sequences wrap at `i32::MAX` as in Kafka.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence(), self.last_offset_delta())
    }
    pub fn records_count(&self) -> i32 {
        read_i32(self.bytes, RECORDS_COUNT)
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id() != NO_PRODUCER_ID
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: `base + delta` in a sequence space
/// that wraps from `i32::MAX` to 0. Computed in i64 so hostile values (negative
/// sequences or deltas) cannot overflow.
pub fn increment_sequence(base: i32, delta: i32) -> i32 {
    if base == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    let (base, delta) = (i64::from(base), i64::from(delta));
    let max = i64::from(i32::MAX);
    let last = if base > max - delta {
        delta - (max - base) - 1
    } else {
        base + delta
    };
    last as i32
}

/// A read-only view of one complete v2 batch. Construction checks that the slice holds
/// exactly one whole batch with magic 2; [`RecordBatch::validate`] adds CRC and codec
/// checks (kept separate because recovery and the produce path both need it, while
/// reads of already-validated data do not).
#[derive(Clone, Copy)]
pub struct RecordBatch<'a> {
    bytes: &'a [u8],
    header: BatchHeaderView<'a>,
}

impl<'a> std::ops::Deref for RecordBatch<'a> {
    type Target = BatchHeaderView<'a>;
    fn deref(&self) -> &BatchHeaderView<'a> {
        &self.header
    }
}

impl<'a> RecordBatch<'a> {
    /// View `bytes` as exactly one batch. `bytes.len()` must equal the batch's size.
    pub fn new(bytes: &'a [u8]) -> Result<Self, BatchError> {
        // Size before magic, as before: the two map to different Kafka error codes.
        let size = header_batch_size(bytes)?;
        if size > bytes.len() {
            return Err(BatchError::Truncated {
                needed: size,
                available: bytes.len(),
            });
        }
        if size < bytes.len() {
            return Err(BatchError::InvalidLength(read_i32(bytes, BATCH_LENGTH)));
        }
        let header = BatchHeaderView::parse_sized(bytes)?;
        Ok(RecordBatch { bytes, header })
    }

    /// Integrity: the CRC and the codec. This is what recovery checks for stored data
    /// (the cleaner may leave `lastOffsetDelta` beyond the surviving records, so the
    /// count rule below does not hold for every stored batch).
    pub fn validate(&self) -> Result<(), BatchError> {
        let stored = self.crc();
        let computed = crc32c::crc32c(&self.bytes[ATTRIBUTES..]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        self.compression()?;
        Ok(())
    }

    /// What Kafka's `LogValidator` requires of a batch a producer sends: integrity, at
    /// least one record, and a count that matches the offset range.
    pub fn validate_for_append(&self) -> Result<(), BatchError> {
        self.validate()?;
        let count = self.records_count();
        let last_offset_delta = self.last_offset_delta();
        if count <= 0 || i64::from(last_offset_delta) + 1 != i64::from(count) {
            return Err(BatchError::InconsistentCount {
                count,
                last_offset_delta,
            });
        }
        Ok(())
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// The bytes after the header: the (possibly compressed) records.
    pub fn records_payload(&self) -> &'a [u8] {
        &self.bytes[BATCH_HEADER_LEN..]
    }
}

impl std::fmt::Debug for RecordBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("size", &self.size())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("records_count", &self.records_count())
            .field("producer_id", &self.producer_id())
            .field("base_sequence", &self.base_sequence())
            .finish()
    }
}

/// In-place rewrites of a batch header, done by the leader before appending.
pub struct RecordBatchMut<'a> {
    bytes: &'a mut [u8],
}

impl<'a> RecordBatchMut<'a> {
    /// Same checks as [`RecordBatch::new`].
    pub fn new(bytes: &'a mut [u8]) -> Result<Self, BatchError> {
        RecordBatch::new(bytes)?;
        Ok(RecordBatchMut { bytes })
    }
    pub fn view(&self) -> RecordBatch<'_> {
        RecordBatch {
            bytes: self.bytes,
            header: BatchHeaderView {
                bytes: &self.bytes[..BATCH_HEADER_LEN],
            },
        }
    }
    /// Not covered by the CRC: no recomputation needed.
    pub fn set_base_offset(&mut self, offset: i64) {
        self.bytes[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&offset.to_be_bytes());
    }
    /// Not covered by the CRC: no recomputation needed.
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.bytes[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
            .copy_from_slice(&epoch.to_be_bytes());
    }
    /// Mark the batch as log-append time with `timestamp` as its max timestamp (what
    /// Kafka does for topics with `message.timestamp.type=LogAppendTime`); recomputes
    /// the CRC because both fields are covered by it.
    pub fn set_log_append_time(&mut self, timestamp: i64) {
        let attributes = read_i16(self.bytes, ATTRIBUTES) | TIMESTAMP_TYPE_MASK;
        self.bytes[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        self.bytes[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
        self.update_crc();
    }
    /// Set the transactional bit (and the control bit for a transaction marker), as
    /// Kafka's `MemoryRecords.withTransactionalRecords` / `withEndTransactionMarker`
    /// build them; recomputes the CRC.
    pub fn set_transactional(&mut self, control: bool) {
        let mut attributes = read_i16(self.bytes, ATTRIBUTES) | TRANSACTIONAL_MASK;
        if control {
            attributes |= CONTROL_MASK;
        }
        self.bytes[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        self.update_crc();
    }
    /// Recompute the CRC-32C over what it covers (attributes to the end), after a
    /// rewrite of covered fields.
    pub fn update_crc(&mut self) {
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES..]);
        self.bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Iterates over the whole batches in a buffer (a produce request's records field, a
/// segment read). Stops with an error at the first malformed batch; a trailing partial
/// batch yields `Err(Truncated)` so callers can tell a torn tail from garbage.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, position: 0 }
    }
    /// Byte position of the next batch to be returned.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<RecordBatch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.position..];
        if rest.is_empty() {
            return None;
        }
        let size = match batch_size_at(rest) {
            None => {
                self.position = self.buf.len();
                return Some(Err(BatchError::Truncated {
                    needed: LOG_OVERHEAD,
                    available: rest.len(),
                }));
            }
            Some(Err(e)) => {
                self.position = self.buf.len();
                return Some(Err(e));
            }
            Some(Ok(size)) => size,
        };
        if size > rest.len() {
            self.position = self.buf.len();
            return Some(Err(BatchError::Truncated {
                needed: size,
                available: rest.len(),
            }));
        }
        let item = RecordBatch::new(&rest[..size]);
        self.position = if item.is_ok() {
            self.position + size
        } else {
            self.buf.len()
        };
        Some(item)
    }
}

/// `original` with other records: its header with `records_count`, `max_timestamp`
/// and `records_payload` (already compressed with the original's codec), a new length
/// and CRC. What the log cleaner writes for a batch it kept part of.
pub fn rebuild_batch(
    original: &RecordBatch<'_>,
    records_count: i32,
    max_timestamp: i64,
    records_payload: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + records_payload.len());
    b.extend_from_slice(&original.as_bytes()[..BATCH_HEADER_LEN]);
    b.extend_from_slice(records_payload);
    let length = (b.len() - LOG_OVERHEAD) as i32;
    b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&records_count.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Build a v2 batch from parts. Used by tests and by the broker for batches it writes
/// itself (none yet in the produce path); records must already be encoded (and
/// compressed, if `compression` says so).
#[allow(clippy::too_many_arguments)]
pub fn build_batch(
    base_offset: i64,
    compression: Compression,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records_count: i32,
    records_payload: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + records_payload.len());
    b.extend_from_slice(&base_offset.to_be_bytes());
    let length = (BATCH_HEADER_LEN - LOG_OVERHEAD + records_payload.len()) as i32;
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&(compression.id()).to_be_bytes());
    b.extend_from_slice(&last_offset_delta.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&records_count.to_be_bytes());
    b.extend_from_slice(records_payload);
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // One uncompressed record: zigzag varint length 7, then attributes, timestamp
        // delta 0, offset delta 0, key length -1 (null), value length 1, 'x', 0 headers.
        let r = [0x0e, 0x00, 0x00, 0x00, 0x01, 0x02, b'x', 0x00];
        build_batch(0, Compression::None, 0, 1000, 1000, -1, -1, -1, 1, &r)
    }

    #[test]
    fn header_fields_round_trip() {
        let b = sample();
        let batch = RecordBatch::new(&b).unwrap();
        batch.validate_for_append().unwrap();
        let records = crate::records::decode_records(&batch, 1024).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(batch.records_count(), 1);
        assert_eq!(batch.max_timestamp(), 1000);
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.compression().unwrap(), Compression::None);
        assert_eq!(batch.next_offset(), 1);
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_crc_valid() {
        let mut b = sample();
        let mut m = RecordBatchMut::new(&mut b).unwrap();
        m.set_base_offset(42);
        m.set_partition_leader_epoch(7);
        let v = m.view();
        assert_eq!(v.base_offset(), 42);
        assert_eq!(v.partition_leader_epoch(), 7);
        v.validate().unwrap();
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = sample();
        RecordBatchMut::new(&mut b)
            .unwrap()
            .set_log_append_time(5555);
        let v = RecordBatch::new(&b).unwrap();
        assert!(v.is_log_append_time());
        assert_eq!(v.max_timestamp(), 5555);
        v.validate().unwrap();
    }

    #[test]
    fn flipped_payload_bit_is_a_crc_mismatch() {
        let mut b = sample();
        let last = b.len() - 2;
        b[last] ^= 0x01;
        let err = RecordBatch::new(&b).unwrap().validate().unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }));
        assert_eq!(err.kafka_error_code(), 2);
    }

    #[test]
    fn iterator_reports_torn_tail() {
        let one = sample();
        let mut buf = one.clone();
        buf.extend_from_slice(&one[..one.len() - 3]);
        let mut it = BatchIter::new(&buf);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.position(), one.len());
        assert!(matches!(
            it.next().unwrap(),
            Err(BatchError::Truncated { .. })
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn wrong_magic_and_short_length_are_rejected() {
        let mut b = sample();
        b[MAGIC] = 1;
        assert_eq!(
            RecordBatch::new(&b).unwrap_err(),
            BatchError::UnsupportedMagic(1)
        );
        let mut b = sample();
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(
            RecordBatch::new(&b).unwrap_err(),
            BatchError::InvalidLength(3)
        ));
    }

    #[test]
    fn count_must_match_offset_range_on_append() {
        let b = build_batch(0, Compression::None, 3, 0, 0, -1, -1, -1, 2, &[]);
        let v = RecordBatch::new(&b).unwrap();
        v.validate().unwrap();
        assert!(matches!(
            v.validate_for_append(),
            Err(BatchError::InconsistentCount {
                count: 2,
                last_offset_delta: 3
            })
        ));
        let empty = build_batch(0, Compression::None, 0, 0, 0, -1, -1, -1, 0, &[]);
        assert!(RecordBatch::new(&empty)
            .unwrap()
            .validate_for_append()
            .is_err());
    }

    #[test]
    fn hostile_header_arithmetic_does_not_panic() {
        let b = build_batch(
            i64::MAX,
            Compression::None,
            i32::MAX,
            0,
            0,
            1,
            0,
            -7,
            1,
            &[],
        );
        let v = RecordBatch::new(&b).unwrap();
        let _ = (v.last_offset(), v.next_offset());
        assert_eq!(v.last_sequence(), -7 + i32::MAX);
        let b = build_batch(0, Compression::None, -5, 0, 0, 1, 0, i32::MAX, 1, &[]);
        let _ = RecordBatch::new(&b).unwrap().last_sequence();
    }

    #[test]
    fn last_sequence_wraps() {
        let b = build_batch(0, Compression::None, 4, 0, 0, 1, 0, i32::MAX - 1, 5, &[]);
        // records_count/payload mismatch is irrelevant for this header arithmetic
        let v = RecordBatch::new(&b).unwrap();
        assert_eq!(v.last_sequence(), 2);
    }
}
