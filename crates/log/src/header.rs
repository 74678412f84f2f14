//! The fixed 61-byte v2 batch header, parsed from a prefix of a batch.
//!
//! `ottla_protocol::batch::RecordBatch` needs the whole batch in memory. Index lookups,
//! producer-state rebuilds and reads only need the header, and reading 61 bytes per batch
//! instead of the whole batch is what makes those walks cheap; hence this small,
//! header-only parser. Field positions are Kafka's `DefaultRecordBatch` layout (the same
//! table as in `ottla_protocol::batch`).

use ottla_protocol::batch::{
    batch_size_at, BatchError, RecordBatch, BATCH_HEADER_LEN, MAGIC_V2, NO_SEQUENCE,
};

const BASE_OFFSET: usize = 0;
const MAGIC: usize = 16;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_MASK: i16 = 0x10;
const CONTROL_MASK: i16 = 0x20;

/// The header fields the log acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, `LOG_OVERHEAD` included.
    pub size: usize,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parse the header at the start of `buf`. Checks what can be checked without the
    /// records: the length field, the magic, and that `lastOffsetDelta` is sane. The CRC
    /// is not checked (it covers the records).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        }
        let size = match batch_size_at(buf) {
            Some(r) => r?,
            None => {
                return Err(BatchError::Truncated {
                    needed: BATCH_HEADER_LEN,
                    available: buf.len(),
                })
            }
        };
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET),
            size,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            records_count: be_i32(buf, RECORDS_COUNT),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::InconsistentCount {
                count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// The same fields from a batch already viewed whole.
    pub fn from_batch(batch: &RecordBatch<'_>) -> BatchHeader {
        BatchHeader {
            base_offset: batch.base_offset(),
            size: batch.size(),
            attributes: batch.attributes(),
            last_offset_delta: batch.last_offset_delta(),
            max_timestamp: batch.max_timestamp(),
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            base_sequence: batch.base_sequence(),
            records_count: batch.records_count(),
        }
    }

    /// Offset of the last record. Saturates rather than overflowing on a hostile header;
    /// callers reject offsets that do not fit their segment anyway.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_MASK != 0
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence of the last record; wraps at `i32::MAX` to 0 as in Kafka.
    pub fn last_sequence(&self) -> i32 {
        wrapping_sequence_add(self.base_sequence, self.last_offset_delta)
    }
}

/// `base + delta` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
pub(crate) fn wrapping_sequence_add(base: i32, delta: i32) -> i32 {
    if base == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    if delta > i32::MAX - base {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

/// `last - delta` in the same wrapping space (the first sequence of a batch from its last).
pub(crate) fn wrapping_sequence_sub(last: i32, delta: i32) -> i32 {
    if last == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    if last >= delta {
        last - delta
    } else {
        i32::MAX - (delta - last) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ottla_protocol::batch::build_batch;
    use ottla_protocol::compression::Compression;

    #[test]
    fn header_matches_the_protocol_view() {
        let b = build_batch(7, Compression::None, 2, 100, 300, 42, 3, 10, 3, &[]);
        let view = RecordBatch::new(&b).unwrap();
        let parsed = BatchHeader::parse(&b).unwrap();
        assert_eq!(parsed, BatchHeader::from_batch(&view));
        assert_eq!(parsed.last_offset(), 9);
        assert_eq!(parsed.last_sequence(), view.last_sequence());
        assert_eq!(parsed.max_timestamp, 300);
    }

    #[test]
    fn bad_magic_and_negative_delta_are_errors() {
        let mut b = build_batch(0, Compression::None, 0, 0, 0, -1, -1, -1, 1, &[]);
        b[MAGIC] = 1;
        assert!(matches!(
            BatchHeader::parse(&b),
            Err(BatchError::UnsupportedMagic(1))
        ));
        let b = build_batch(0, Compression::None, -5, 0, 0, -1, -1, -1, 1, &[]);
        assert!(matches!(
            BatchHeader::parse(&b),
            Err(BatchError::InconsistentCount { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&b[..20]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn sequences_wrap_both_ways() {
        assert_eq!(wrapping_sequence_add(i32::MAX - 1, 4), 2);
        assert_eq!(wrapping_sequence_sub(2, 4), i32::MAX - 1);
        assert_eq!(wrapping_sequence_add(5, 3), 8);
        assert_eq!(wrapping_sequence_sub(8, 3), 5);
        assert_eq!(wrapping_sequence_add(NO_SEQUENCE, 3), NO_SEQUENCE);
    }
}
