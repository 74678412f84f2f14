//! Records inside a v2 batch (Kafka's `DefaultRecord`): only decoded where a rule needs
//! them (ListOffsets by timestamp inside a batch, keys on compacted topics, the cleaner).
//!
//! Wire layout of one record (varints are zigzag-encoded, as in protobuf):
//!
//! ```text
//! length: varint                 -- bytes that follow, up to the end of the headers
//! attributes: int8               -- unused in v2
//! timestampDelta: varlong        -- from the batch's baseTimestamp
//! offsetDelta: varint            -- from the batch's baseOffset
//! keyLength: varint, key         -- -1 = null
//! valueLength: varint, value     -- -1 = null
//! headersCount: varint
//! headers: [keyLength: varint, key: UTF-8, valueLength: varint, value]  -- -1 = null value
//! ```
//!
//! Every length and count here comes from the producer, so decoding checks each one
//! against the bytes actually remaining before using it, and never sizes an allocation
//! from a count it has not bounded that way.

use std::borrow::Cow;

use bytes::BufMut;

use crate::batch::{build_batch, RecordBatch};
use crate::compression::{compress, decompress, Compression, CompressionError};

/// One decoded record. Offsets and timestamps are absolute (base + delta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In wire order; duplicate keys are kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("records are malformed: {0}")]
    Malformed(&'static str),
    #[error("decompression failed: {0}")]
    Decompression(String),
    #[error("decompressed size exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

impl From<CompressionError> for RecordsError {
    fn from(e: CompressionError) -> Self {
        match e {
            CompressionError::TooLarge(limit) => RecordsError::TooLarge(limit),
            e @ CompressionError::Corrupt { .. } => RecordsError::Decompression(e.to_string()),
        }
    }
}

/// `RecordBatch.NO_TIMESTAMP`: the timestamps of a batch that holds no record.
const NO_TIMESTAMP: i64 = -1;

/// The smallest possible encoded record, one byte per field: length, attributes,
/// timestampDelta, offsetDelta, keyLength (-1), valueLength (-1), headersCount (0).
/// A payload of `n` bytes therefore holds at most `n / 7` records, which is what bounds
/// a hostile `recordsCount` before we allocate for it.
const MIN_RECORD_LEN: usize = 7;
/// The smallest possible header: keyLength (0) and valueLength (-1).
const MIN_HEADER_LEN: usize = 2;

/// Decode every record of `batch`, decompressing if needed. `max_decompressed` bounds
/// the bytes the codec may produce (a zip bomb gets `TooLarge`, not an OOM).
///
/// Follows Kafka's `DefaultRecord.readFrom`: absolute offset = `baseOffset +
/// offsetDelta`; timestamp = `baseTimestamp + timestampDelta`, except in a log-append-time
/// batch, where every record gets the batch's `maxTimestamp` (the broker rewrote only
/// the header, never the records). As in Kafka, a negative key or value length other
/// than -1 also means null, and a header key that is not valid UTF-8 is decoded lossily
/// (Java's `new String(bytes, UTF_8)` does the same), so a batch Kafka would accept is
/// never refused here.
///
/// Fails with `Malformed` when `recordsCount` is negative or larger than the payload
/// could hold, when a record's fields do not exactly fill its length, when any length
/// runs past the bytes available, when an offset or timestamp overflows, or when bytes
/// remain after the last record. The batch CRC is not checked: that is
/// [`RecordBatch::validate`]'s job.
pub fn decode_records(
    batch: &RecordBatch<'_>,
    max_decompressed: usize,
) -> Result<Vec<Record>, RecordsError> {
    let payload = payload(batch, max_decompressed)?;
    let count = records_count(batch)?;
    if count > payload.len() / MIN_RECORD_LEN {
        return Err(RecordsError::Malformed(
            "records count exceeds what the payload can hold",
        ));
    }
    let mut walk = RecordWalk::new(batch, &payload);
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(walk.next_record()?.to_owned());
    }
    walk.finish("bytes left after the last record")?;
    Ok(records)
}

/// Check that an uncompressed batch's records exactly fill it and number
/// `recordsCount`, without copying anything: a walk over lengths and varints, no
/// allocation. Kafka's `LogValidator` rejects such batches ("Incorrect declared batch
/// size") because consumers would otherwise read offsets that were never assigned.
/// Compressed batches are not walked (that would mean decompressing on the produce
/// path); their framing is the producer's client library's responsibility.
pub fn check_uncompressed_framing(batch: &RecordBatch<'_>) -> Result<(), RecordsError> {
    if batch.compression().ok() != Some(Compression::None) {
        return Ok(());
    }
    // Framing only: the producer's base offset and timestamp are not used (the base
    // offset is rewritten at append), so their arithmetic is not checked here.
    let mut walk = RecordWalk {
        reader: Reader {
            buf: batch.records_payload(),
        },
        base_offset: 0,
        base_timestamp: 0,
        log_append_time: None,
    };
    for _ in 0..records_count(batch)? {
        if walk.reader.buf.is_empty() {
            return Err(RecordsError::Malformed(
                "Incorrect declared batch size, premature EOF reached",
            ));
        }
        walk.next_record()?;
    }
    walk.finish("Incorrect declared batch size, records still remaining")
}

/// What [`scan_records`] shows of each record: enough for timestamp lookups and the
/// compacted-topic key rule, without copying keys, values or headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset: i64,
    pub timestamp: i64,
    pub has_key: bool,
}

/// Visit every record of `batch` in order, decompressing at most `max_decompressed`
/// bytes once and allocating nothing per record, so a small batch of many tiny records
/// cannot be inflated into millions of structs. `visit` returns
/// `ControlFlow::Break(value)` to stop early, and the scan returns that value. Each
/// record visited is checked as in [`decode_records`].
pub fn scan_records<B>(
    batch: &RecordBatch<'_>,
    max_decompressed: usize,
    mut visit: impl FnMut(RecordMeta) -> std::ops::ControlFlow<B>,
) -> Result<Option<B>, RecordsError> {
    let payload = payload(batch, max_decompressed)?;
    let mut walk = RecordWalk::new(batch, &payload);
    for _ in 0..records_count(batch)? {
        let r = walk.next_record()?;
        let meta = RecordMeta {
            offset: r.offset,
            timestamp: r.timestamp,
            has_key: r.key.is_some(),
        };
        if let std::ops::ControlFlow::Break(value) = visit(meta) {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// What the log cleaner sees of a record: its offset, timestamp and key, and whether
/// it has a value (a record with a null value is a tombstone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub has_value: bool,
}

/// What [`filter_records`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays: the batch can be copied as it is.
    KeptAll,
    /// No record stays.
    RemovedAll,
    /// Some stay: the batch rebuilt with them (see [`filter_records`]).
    Rebuilt(Vec<u8>),
}

/// Keep the records of `batch` for which `keep` says so (Kafka's `MemoryRecords
/// .filterTo`, what the log cleaner does to each batch). A rebuilt batch keeps the
/// original's header (base offset, last offset delta, producer id, epoch and base
/// sequence, attributes, partition leader epoch, base timestamp), so every surviving
/// record keeps its offset and the batch still ends where it ended (the producer's
/// last sequence stays known, as Kafka's `overrideLastOffset` ensures); only the record
/// count, the max timestamp (recomputed unless the batch carries log-append time), the
/// length and the CRC change. Surviving records are copied byte for byte and
/// recompressed with the batch's codec.
pub fn filter_records(
    batch: &RecordBatch<'_>,
    max_decompressed: usize,
    mut keep: impl FnMut(&KeyedRecord<'_>) -> bool,
) -> Result<Filtered, RecordsError> {
    let payload = payload(batch, max_decompressed)?;
    let count = records_count(batch)?;
    let mut walk = RecordWalk::new(batch, &payload);
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut max_timestamp = NO_TIMESTAMP;
    for _ in 0..count {
        let start = payload.len() - walk.reader.buf.len();
        let r = walk.next_record()?;
        let end = payload.len() - walk.reader.buf.len();
        let view = KeyedRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            has_value: r.value.is_some(),
        };
        if keep(&view) {
            max_timestamp = max_timestamp.max(r.timestamp);
            kept.push((start, end));
        }
    }
    walk.finish("bytes left after the last record")?;
    if kept.len() == count {
        return Ok(Filtered::KeptAll);
    }
    if kept.is_empty() {
        return Ok(Filtered::RemovedAll);
    }
    let mut raw = Vec::with_capacity(kept.iter().map(|(s, e)| e - s).sum());
    for (start, end) in &kept {
        raw.extend_from_slice(&payload[*start..*end]);
    }
    let codec = batch
        .compression()
        .map_err(|e| RecordsError::Decompression(e.to_string()))?;
    let records = match codec {
        Compression::None => raw,
        codec => compress(codec, &raw),
    };
    let max_timestamp = if batch.is_log_append_time() {
        batch.max_timestamp()
    } else {
        max_timestamp
    };
    Ok(Filtered::Rebuilt(crate::batch::rebuild_batch(
        batch,
        kept.len() as i32,
        max_timestamp,
        &records,
    )))
}

/// The batch's records, decompressed (bounded by `max_decompressed`) if needed.
fn payload<'a>(
    batch: &RecordBatch<'a>,
    max_decompressed: usize,
) -> Result<Cow<'a, [u8]>, RecordsError> {
    let codec = batch
        .compression()
        .map_err(|e| RecordsError::Decompression(e.to_string()))?;
    Ok(match codec {
        Compression::None => Cow::Borrowed(batch.records_payload()),
        codec => Cow::Owned(decompress(
            codec,
            batch.records_payload(),
            max_decompressed,
        )?),
    })
}

fn records_count(batch: &RecordBatch<'_>) -> Result<usize, RecordsError> {
    usize::try_from(batch.records_count())
        .map_err(|_| RecordsError::Malformed("negative records count"))
}

/// One record, borrowed from the payload; its headers are already checked.
struct RecordView<'a> {
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    header_count: usize,
    /// The header section, exactly `header_count` well-formed headers.
    headers: &'a [u8],
}

impl RecordView<'_> {
    fn to_owned(&self) -> Record {
        let mut reader = Reader { buf: self.headers };
        let headers = (0..self.header_count)
            .map(|_| {
                let (key, value) = read_header(&mut reader).expect("checked by next_record");
                (
                    String::from_utf8_lossy(key).into_owned(),
                    value.map(<[u8]>::to_vec),
                )
            })
            .collect();
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers,
        }
    }
}

fn read_header<'a>(reader: &mut Reader<'a>) -> Result<(&'a [u8], Option<&'a [u8]>), RecordsError> {
    let key_len = usize::try_from(reader.varint()?)
        .map_err(|_| RecordsError::Malformed("negative header key length"))?;
    let key = reader.bytes(key_len, "header key exceeds the record")?;
    let value = reader.nullable_bytes("header value exceeds the record")?;
    Ok((key, value))
}

/// The one parser of Kafka's `DefaultRecord` layout, shared by every reader above.
struct RecordWalk<'a> {
    reader: Reader<'a>,
    base_offset: i64,
    base_timestamp: i64,
    /// Log-append-time batches give every record the batch's max timestamp.
    log_append_time: Option<i64>,
}

impl<'a> RecordWalk<'a> {
    fn new(batch: &RecordBatch<'_>, payload: &'a [u8]) -> Self {
        RecordWalk {
            reader: Reader { buf: payload },
            base_offset: batch.base_offset(),
            base_timestamp: batch.base_timestamp(),
            log_append_time: batch.is_log_append_time().then(|| batch.max_timestamp()),
        }
    }

    fn next_record(&mut self) -> Result<RecordView<'a>, RecordsError> {
        let length = usize::try_from(self.reader.varint()?)
            .map_err(|_| RecordsError::Malformed("negative record length"))?;
        let mut body = Reader {
            buf: self
                .reader
                .bytes(length, "record length exceeds the payload")?,
        };
        body.bytes(1, "record truncated in attributes")?;
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        let offset = self
            .base_offset
            .checked_add(i64::from(offset_delta))
            .ok_or(RecordsError::Malformed("record offset overflows"))?;
        let timestamp = match self.log_append_time {
            Some(timestamp) => timestamp,
            None => self
                .base_timestamp
                .checked_add(timestamp_delta)
                .ok_or(RecordsError::Malformed("record timestamp overflows"))?,
        };
        let key = body.nullable_bytes("record key exceeds the record")?;
        let value = body.nullable_bytes("record value exceeds the record")?;
        let header_count = usize::try_from(body.varint()?)
            .map_err(|_| RecordsError::Malformed("negative header count"))?;
        if header_count > body.buf.len() / MIN_HEADER_LEN {
            return Err(RecordsError::Malformed(
                "header count exceeds what the record can hold",
            ));
        }
        let headers = body.buf;
        for _ in 0..header_count {
            read_header(&mut body)?;
        }
        if !body.buf.is_empty() {
            return Err(RecordsError::Malformed("record length exceeds its fields"));
        }
        Ok(RecordView {
            offset,
            timestamp,
            key,
            value,
            header_count,
            headers,
        })
    }

    /// Every record was read: nothing may follow.
    fn finish(self, what: &'static str) -> Result<(), RecordsError> {
        if self.reader.buf.is_empty() {
            Ok(())
        } else {
            Err(RecordsError::Malformed(what))
        }
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked and fails with
/// `Malformed` instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordsError> {
        if n > self.buf.len() {
            return Err(RecordsError::Malformed(what));
        }
        let (bytes, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, RecordsError> {
        Ok(self.bytes(1, "truncated varint")?[0])
    }

    /// Kafka's `ByteUtils.readVarint`: at most 5 bytes, zigzag-decoded. As in Java, bits
    /// of a fifth byte beyond the 32nd are dropped rather than rejected.
    fn varint(&mut self) -> Result<i32, RecordsError> {
        let mut raw = 0u32;
        for i in 0..5 {
            let b = self.byte()?;
            raw |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
            }
        }
        Err(RecordsError::Malformed("varint longer than 5 bytes"))
    }

    /// Kafka's `ByteUtils.readVarlong`: at most 10 bytes, zigzag-decoded.
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let mut raw = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(RecordsError::Malformed("varlong longer than 10 bytes"))
    }

    /// A varint length then that many bytes; any negative length is null (Kafka reads
    /// keys, values and header values with `if (size >= 0)`).
    fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, RecordsError> {
        match usize::try_from(self.varint()?) {
            Ok(len) => self.bytes(len, what).map(Some),
            Err(_) => Ok(None),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned_varint(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Kafka's unsigned varint (also the length prefix of the flexible versions' compact
/// fields).
pub(crate) fn put_unsigned_varint(out: &mut impl BufMut, mut raw: u64) {
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    put_varint(
        out,
        i32::try_from(len).expect("field longer than i32::MAX bytes"),
    );
}

fn put_nullable_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            put_len(out, bytes.len());
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// Encode `records` as the uncompressed records section of a v2 batch whose header
/// will carry `base_offset` and `base_timestamp` (each record stores its deltas from
/// them) — what a producer writes before compressing.
///
/// # Panics
///
/// If a record's offset is not within `i32` of `base_offset`, its timestamp delta
/// overflows `i64`, or a key, value or header is longer than `i32::MAX` bytes: none of
/// these can be represented in the format, and the input is the caller's own.
pub fn encode_records(records: &[Record], base_offset: i64, base_timestamp: i64) -> Vec<u8> {
    let mut out = Vec::new();
    // One body buffer, reused: the length prefix must be known before the body is
    // appended.
    let mut body = Vec::new();
    for record in records {
        body.clear();
        body.push(0); // attributes: unused by v2 records
        let timestamp_delta = record
            .timestamp
            .checked_sub(base_timestamp)
            .expect("timestamp delta overflows i64");
        put_varlong(&mut body, timestamp_delta);
        let offset_delta = record
            .offset
            .checked_sub(base_offset)
            .and_then(|delta| i32::try_from(delta).ok())
            .expect("offset delta does not fit in i32");
        put_varint(&mut body, offset_delta);
        put_nullable_bytes(&mut body, record.key.as_deref());
        put_nullable_bytes(&mut body, record.value.as_deref());
        put_len(&mut body, record.headers.len());
        for (key, value) in &record.headers {
            put_len(&mut body, key.len());
            body.extend_from_slice(key.as_bytes());
            put_nullable_bytes(&mut body, value.as_deref());
        }
        put_len(&mut out, body.len());
        out.extend_from_slice(&body);
    }
    out
}

/// Build a complete, valid v2 batch holding `records`, compressed with `codec`, the
/// way a producer would: base offset = the first record's offset, base timestamp = the
/// smallest timestamp (so deltas are never negative), max timestamp = the largest,
/// `lastOffsetDelta` = last offset - first offset. The partition leader epoch is unset
/// (-1), as a producer sends it. Used by tests and benchmarks, and available to the
/// broker for batches it writes itself.
///
/// An empty `records` gives a zero-record batch at offset 0 with timestamps -1 (Kafka's
/// `NO_TIMESTAMP`).
///
/// # Panics
///
/// As [`encode_records`], and if there are more than `i32::MAX` records.
pub fn build_record_batch(
    records: &[Record],
    codec: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let (base_offset, last_offset_delta, base_timestamp, max_timestamp) =
        match (records.first(), records.last()) {
            (Some(first), Some(last)) => (
                first.offset,
                last.offset
                    .checked_sub(first.offset)
                    .and_then(|delta| i32::try_from(delta).ok())
                    .expect("last offset delta does not fit in i32"),
                records
                    .iter()
                    .map(|r| r.timestamp)
                    .min()
                    .unwrap_or(NO_TIMESTAMP),
                records
                    .iter()
                    .map(|r| r.timestamp)
                    .max()
                    .unwrap_or(NO_TIMESTAMP),
            ),
            _ => (0, 0, NO_TIMESTAMP, NO_TIMESTAMP),
        };
    let encoded = encode_records(records, base_offset, base_timestamp);
    let payload = match codec {
        Compression::None => encoded, // compress() would copy it
        _ => compress(codec, &encoded),
    };
    build_batch(
        base_offset,
        codec,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        i32::try_from(records.len()).expect("more than i32::MAX records"),
        &payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{RecordBatchMut, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// One record, key "k", value "v", headers ("h", "1") and ("h", null), with
    /// offsetDelta 0 and timestampDelta 5, written out byte by byte from the spec.
    const HAND_RECORD: [u8; 16] = [
        0x1e, // length: 15, zigzag 30
        0x00, // attributes
        0x0a, // timestampDelta: 5, zigzag 10
        0x00, // offsetDelta: 0
        0x02, b'k', // key: length 1
        0x02, b'v', // value: length 1
        0x04, // headers count: 2
        0x02, b'h', 0x02, b'1', // header "h" = "1"
        0x02, b'h', 0x01, // header "h" = null (length -1, zigzag 1)
    ];

    fn hand_record() -> Record {
        Record {
            offset: 100,
            timestamp: 1005,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![("h".into(), Some(b"1".to_vec())), ("h".into(), None)],
        }
    }

    /// An uncompressed batch at offset 100, base timestamp 1000, around `payload`.
    fn raw_batch(count: i32, payload: &[u8]) -> Vec<u8> {
        build_batch(
            100,
            Compression::None,
            count.max(1) - 1,
            1000,
            1005,
            -1,
            -1,
            -1,
            count,
            payload,
        )
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Record>, RecordsError> {
        decode_records(&RecordBatch::new(bytes).unwrap(), 1 << 20)
    }

    /// Records exercising every field shape: null/empty/large keys and values (large
    /// ones need multi-byte varint lengths), timestamps out of order (negative deltas
    /// are impossible since the base is the minimum, but a non-first record has the
    /// minimum), duplicate and non-ASCII header keys, null header values.
    fn varied_records() -> Vec<Record> {
        (0..20)
            .map(|i| Record {
                offset: 5_000 + i,
                timestamp: 1_700_000_000_000 + ((i + 3) * 37 % 11) * 1000,
                key: match i % 3 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(format!("key-{i}").into_bytes()),
                },
                value: if i % 5 == 4 {
                    None
                } else {
                    Some(vec![i as u8; 300 + i as usize * 50])
                },
                headers: (0..i % 4)
                    .map(|h| {
                        let key = if h == 2 {
                            "ключ".to_string()
                        } else {
                            "dup".to_string()
                        };
                        (
                            key,
                            if h == 1 {
                                None
                            } else {
                                Some(vec![h as u8; h as usize])
                            },
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn hand_written_record_decodes() {
        let batch = raw_batch(1, &HAND_RECORD);
        assert_eq!(decode(&batch).unwrap(), vec![hand_record()]);
    }

    #[test]
    fn encoder_writes_the_hand_written_bytes() {
        assert_eq!(encode_records(&[hand_record()], 100, 1000), HAND_RECORD);
    }

    #[test]
    fn varint_encoding_matches_kafka() {
        let cases: [(i32, &[u8]); 9] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encode {value}");
            let mut reader = Reader { buf: bytes };
            assert_eq!(reader.varint().unwrap(), value, "decode {value}");
            assert!(reader.buf.is_empty());
        }
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MIN);
        assert_eq!(
            out,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(Reader { buf: &out }.varlong().unwrap(), i64::MIN);

        let overlong = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert!(matches!(
            Reader { buf: &overlong }.varint(),
            Err(RecordsError::Malformed(_))
        ));
        assert!(matches!(
            Reader { buf: &[0x80] }.varint(),
            Err(RecordsError::Malformed(_))
        ));
        assert!(matches!(
            Reader { buf: &[0xff; 11] }.varlong(),
            Err(RecordsError::Malformed(_))
        ));
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        let records = varied_records();
        for codec in CODECS {
            let bytes = build_record_batch(&records, codec, 42, 3, 7);
            let batch = RecordBatch::new(&bytes).unwrap();
            batch.validate().unwrap();
            assert_eq!(batch.compression().unwrap(), codec);
            assert_eq!(batch.base_offset(), 5_000);
            assert_eq!(batch.last_offset_delta(), 19);
            assert_eq!(batch.records_count(), 20);
            assert_eq!(batch.base_timestamp(), 1_700_000_000_000);
            assert_eq!(batch.max_timestamp(), 1_700_000_010_000);
            assert_eq!(
                (
                    batch.producer_id(),
                    batch.producer_epoch(),
                    batch.base_sequence()
                ),
                (42, 3, 7)
            );
            if codec != Compression::None {
                let raw = encode_records(&records, 5_000, 1_700_000_000_000);
                assert!(
                    batch.records_payload().len() < raw.len(),
                    "{codec:?} did not compress"
                );
            }
            assert_eq!(
                decode_records(&batch, 1 << 20).unwrap(),
                records,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn empty_batch_builds_and_decodes() {
        let bytes = build_record_batch(
            &[],
            Compression::Zstd,
            NO_PRODUCER_ID,
            NO_PRODUCER_EPOCH,
            NO_SEQUENCE,
        );
        let batch = RecordBatch::new(&bytes).unwrap();
        batch.validate().unwrap();
        assert_eq!(batch.records_count(), 0);
        assert_eq!(batch.max_timestamp(), NO_TIMESTAMP);
        assert_eq!(decode_records(&batch, 1024).unwrap(), Vec::new());
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        for codec in [Compression::None, Compression::Lz4] {
            let records = varied_records();
            let mut bytes = build_record_batch(&records, codec, -1, -1, -1);
            let before = decode(&bytes).unwrap();
            assert_eq!(before, records);
            RecordBatchMut::new(&mut bytes)
                .unwrap()
                .set_log_append_time(9_999);
            let after = decode(&bytes).unwrap();
            assert_eq!(after.len(), records.len());
            for (got, original) in after.iter().zip(&records) {
                assert_eq!(got.timestamp, 9_999);
                assert_eq!(
                    Record {
                        timestamp: original.timestamp,
                        ..got.clone()
                    },
                    *original,
                    "only the timestamp changes"
                );
            }
        }
    }

    /// A count the payload cannot hold must fail before `Vec::with_capacity(count)`:
    /// at ~100 bytes per `Record`, `i32::MAX` of them is ~200 GiB, which would abort
    /// the test process rather than return an error.
    #[test]
    fn hostile_records_count_is_refused_before_allocating() {
        for count in [i32::MAX, 1_000_000, 3] {
            let result = decode(&raw_batch(count, &HAND_RECORD));
            assert_eq!(
                result,
                Err(RecordsError::Malformed(
                    "records count exceeds what the payload can hold"
                )),
                "count {count}"
            );
        }
        // Compressed: the count is checked against the decompressed size.
        let payload = compress(Compression::Gzip, &HAND_RECORD);
        let bytes = build_batch(
            0,
            Compression::Gzip,
            0,
            0,
            0,
            -1,
            -1,
            -1,
            i32::MAX,
            &payload,
        );
        assert!(matches!(decode(&bytes), Err(RecordsError::Malformed(_))));
        // Negative.
        assert_eq!(
            decode(&raw_batch(-1, &HAND_RECORD)),
            Err(RecordsError::Malformed("negative records count"))
        );
    }

    #[test]
    fn record_count_must_match_the_payload() {
        // Two records announced, one present (the payload is big enough to pass the
        // up-front bound, so the second record's read must fail).
        let mut padded = HAND_RECORD.to_vec();
        padded.extend_from_slice(&[0x1e]); // a second record's length, then nothing
        assert!(matches!(
            decode(&raw_batch(2, &padded)),
            Err(RecordsError::Malformed(_))
        ));
        // Zero announced, one present.
        assert_eq!(
            decode(&raw_batch(0, &HAND_RECORD)),
            Err(RecordsError::Malformed("bytes left after the last record"))
        );
    }

    #[test]
    fn hostile_header_count_is_refused() {
        // Same record, headers count i32::MAX (zigzag 0xfffffffe) and no headers.
        let mut record = vec![
            0x00, 0x0a, 0x00, 0x02, b'k', 0x02, b'v', 0xfe, 0xff, 0xff, 0xff, 0x0f,
        ];
        record.insert(0, (record.len() * 2) as u8);
        let mut payload = record.clone();
        payload.resize(200, 0); // room for the record count check, not for the headers
        let result = decode(&raw_batch(1, &payload));
        assert_eq!(
            result,
            Err(RecordsError::Malformed(
                "header count exceeds what the record can hold"
            ))
        );
    }

    #[test]
    fn lengths_past_their_bounds_are_malformed() {
        let cases: [(&str, Vec<u8>); 5] = [
            // Record length 16 with 15 bytes left.
            ("record length", [&[0x20][..], &HAND_RECORD[1..]].concat()),
            // Record length 14: the last header value is cut off.
            ("short record", [&[0x1c][..], &HAND_RECORD[1..]].concat()),
            // Key length 100 inside a 15-byte record.
            ("key length", {
                let mut r = HAND_RECORD.to_vec();
                r[4] = 0xc8; // zigzag 100 would need two bytes: 0xc8 0x01
                r.insert(5, 0x01);
                r[0] = 0x20;
                r
            }),
            // Negative record length.
            ("negative length", [&[0x01][..], &HAND_RECORD[1..]].concat()),
            // Negative header key length.
            ("header key", {
                let mut r = HAND_RECORD.to_vec();
                r[9] = 0x01;
                r
            }),
        ];
        for (name, payload) in cases {
            let result = decode(&raw_batch(1, &payload));
            assert!(
                matches!(result, Err(RecordsError::Malformed(_))),
                "{name}: {result:?}"
            );
        }
        // Record length 16 with an extra trailing byte inside it: fields do not fill it.
        let mut long = HAND_RECORD.to_vec();
        long[0] = 0x20;
        long.push(0x00);
        assert_eq!(
            decode(&raw_batch(1, &long)),
            Err(RecordsError::Malformed("record length exceeds its fields"))
        );
    }

    #[test]
    fn other_negative_lengths_are_null_and_bad_utf8_is_lossy_like_kafka() {
        let mut r = HAND_RECORD.to_vec();
        r[4] = 0x03; // key length -2
        r.remove(5); // no key bytes
        r[9] = 0xff; // header key: not UTF-8
        r[0] = 0x1c; // one byte shorter
        let decoded = decode(&raw_batch(1, &r)).unwrap();
        assert_eq!(decoded[0].key, None);
        assert_eq!(decoded[0].value, Some(b"v".to_vec()));
        assert_eq!(decoded[0].headers[0].0, "\u{fffd}");
    }

    #[test]
    fn offset_and_timestamp_overflow_are_malformed() {
        let bytes = build_batch(i64::MAX, Compression::None, 0, 0, 0, -1, -1, -1, 1, &{
            let mut r = HAND_RECORD.to_vec();
            r[3] = 0x02; // offsetDelta 1
            r
        });
        assert_eq!(
            decode(&bytes),
            Err(RecordsError::Malformed("record offset overflows"))
        );
        let bytes = build_batch(
            0,
            Compression::None,
            0,
            i64::MAX,
            0,
            -1,
            -1,
            -1,
            1,
            &HAND_RECORD,
        );
        assert_eq!(
            decode(&bytes),
            Err(RecordsError::Malformed("record timestamp overflows"))
        );
    }

    #[test]
    fn decompression_limit_and_corruption_are_reported() {
        let records = varied_records();
        let raw_len = encode_records(&records, 5_000, 1_700_000_000_000).len();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = build_record_batch(&records, codec, -1, -1, -1);
            let batch = RecordBatch::new(&bytes).unwrap();
            assert_eq!(
                decode_records(&batch, raw_len).unwrap(),
                records,
                "{codec:?}"
            );
            assert_eq!(
                decode_records(&batch, raw_len - 1),
                Err(RecordsError::TooLarge(raw_len - 1)),
                "{codec:?}"
            );
            let garbage = build_batch(
                0,
                codec,
                0,
                0,
                0,
                -1,
                -1,
                -1,
                1,
                b"definitely not compressed",
            );
            let result = decode(&garbage);
            assert!(
                matches!(result, Err(RecordsError::Decompression(_))),
                "{codec:?}: {result:?}"
            );
        }
    }

    #[test]
    fn unknown_codec_is_an_error() {
        let mut bytes = raw_batch(1, &HAND_RECORD);
        bytes[22] |= 0x05; // attributes low byte: codec 5
        let result = decode(&bytes);
        assert!(
            matches!(result, Err(RecordsError::Decompression(_))),
            "{result:?}"
        );
    }

    /// Truncations and bit flips of a valid payload: decoding may succeed or fail, but
    /// never panics, and whatever it returns is consistent with the bytes.
    #[test]
    fn mutated_payloads_never_panic() {
        let records = varied_records();
        let payload = encode_records(&records[..6], 5_000, 1_700_000_000_000);
        for cut in 0..payload.len() {
            let bytes = build_batch(
                5_000,
                Compression::None,
                5,
                0,
                0,
                -1,
                -1,
                -1,
                6,
                &payload[..cut],
            );
            assert!(decode(&bytes).is_err(), "truncated at {cut} accepted");
        }
        for i in 0..payload.len() {
            for bit in [0, 3, 7] {
                let mut mutated = payload.clone();
                mutated[i] ^= 1 << bit;
                let bytes = build_batch(5_000, Compression::None, 5, 0, 0, -1, -1, -1, 6, &mutated);
                if let Ok(decoded) = decode(&bytes) {
                    assert_eq!(decoded.len(), 6);
                }
            }
        }
    }

    #[test]
    fn uncompressed_framing_must_match_the_declared_count() {
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                offset: i,
                timestamp: 5,
                key: None,
                value: Some(vec![1, 2]),
                headers: vec![("h".into(), None)],
            })
            .collect();
        let good = build_record_batch(&records, Compression::None, -1, -1, -1);
        check_uncompressed_framing(&RecordBatch::new(&good).unwrap()).unwrap();
        // Same records, but the header claims 5 (and a matching lastOffsetDelta).
        let payload = encode_records(&records, 0, 5);
        let lying =
            crate::batch::build_batch(0, Compression::None, 4, 5, 5, -1, -1, -1, 5, &payload);
        assert!(check_uncompressed_framing(&RecordBatch::new(&lying).unwrap()).is_err());
        let short =
            crate::batch::build_batch(0, Compression::None, 1, 5, 5, -1, -1, -1, 2, &payload);
        assert!(
            check_uncompressed_framing(&RecordBatch::new(&short).unwrap()).is_err(),
            "bytes left over"
        );
    }

    #[test]
    fn scan_sees_every_record_and_can_stop_early() {
        let records: Vec<Record> = (0..4)
            .map(|i| Record {
                offset: i,
                timestamp: 100 + i,
                key: (i != 2).then(|| vec![1]),
                value: None,
                headers: vec![],
            })
            .collect();
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let bytes = build_record_batch(&records, codec, -1, -1, -1);
            let batch = RecordBatch::new(&bytes).unwrap();
            let mut seen = Vec::new();
            scan_records(&batch, 1 << 20, |m| {
                seen.push(m);
                std::ops::ControlFlow::<()>::Continue(())
            })
            .unwrap();
            let expected: Vec<RecordMeta> = records
                .iter()
                .map(|r| RecordMeta {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    has_key: r.key.is_some(),
                })
                .collect();
            assert_eq!(seen, expected, "{codec:?}");
            let first_keyless = scan_records(&batch, 1 << 20, |m| {
                if m.has_key {
                    std::ops::ControlFlow::Continue(())
                } else {
                    std::ops::ControlFlow::Break(m.offset)
                }
            })
            .unwrap();
            assert_eq!(first_keyless, Some(2));
        }
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    fn rec(offset: i64, key: &str, value: Option<&str>) -> Record {
        Record {
            offset,
            timestamp: 1_000 + offset,
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![("h".into(), Some(b"x".to_vec()))],
        }
    }

    #[test]
    fn a_filtered_batch_keeps_offsets_header_and_codec() {
        let records = vec![
            rec(10, "a", Some("a1")),
            rec(11, "b", Some("b1")),
            rec(12, "a", Some("a2")),
            rec(13, "c", None),
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = build_record_batch(&records, codec, 7, 3, 40);
            let batch = RecordBatch::new(&bytes).unwrap();
            // Drop the superseded "a" and the tombstone.
            let filtered = filter_records(&batch, 1 << 20, |r| {
                r.offset != 10 && r.has_value && r.key.is_some()
            })
            .unwrap();
            let Filtered::Rebuilt(out) = filtered else {
                panic!("{codec:?}: expected a rebuilt batch, got {filtered:?}");
            };
            let rebuilt = RecordBatch::new(&out).unwrap();
            rebuilt.validate().unwrap();
            assert_eq!(rebuilt.compression().unwrap(), codec);
            assert_eq!(
                (rebuilt.base_offset(), rebuilt.last_offset()),
                (10, 13),
                "{codec:?}: the batch still spans its offsets"
            );
            assert_eq!(
                (
                    rebuilt.producer_id(),
                    rebuilt.producer_epoch(),
                    rebuilt.base_sequence()
                ),
                (7, 3, 40)
            );
            assert_eq!(rebuilt.records_count(), 2);
            assert_eq!(rebuilt.max_timestamp(), 1_012);
            let got = decode_records(&rebuilt, 1 << 20).unwrap();
            assert_eq!(
                got,
                vec![records[1].clone(), records[2].clone()],
                "{codec:?}"
            );
            // Nothing or everything.
            assert_eq!(
                filter_records(&batch, 1 << 20, |_| true).unwrap(),
                Filtered::KeptAll
            );
            assert_eq!(
                filter_records(&batch, 1 << 20, |_| false).unwrap(),
                Filtered::RemovedAll
            );
        }
    }

    #[test]
    fn filtering_a_malformed_batch_is_an_error_not_a_panic() {
        let records = vec![rec(0, "a", Some("1")), rec(1, "b", Some("2"))];
        let mut bytes = build_record_batch(&records, Compression::None, -1, -1, -1);
        // Claim a third record the payload does not hold.
        bytes[57..61].copy_from_slice(&3i32.to_be_bytes());
        let batch = RecordBatch::new(&bytes).unwrap();
        assert!(filter_records(&batch, 1 << 20, |_| true).is_err());
    }
}
