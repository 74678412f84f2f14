//! The fixed 61-byte v2 batch header, parsed from a prefix of a batch.
//!
//! `ottla_protocol::batch::RecordBatch` needs the whole batch in memory. Index lookups,
//! producer-state rebuilds and reads only need the header, and reading 61 bytes per batch
//! instead of the whole batch is what makes those walks cheap; hence this small,
//! header-only parser. Field positions are Kafka's `DefaultRecordBatch` layout (the same
//! table as in `ottla_protocol::batch`).

use ottla_protocol::batch::{increment_sequence, BatchError, BatchHeaderView, NO_SEQUENCE};

/// The header fields the log acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: i64,
    /// The epoch of the leader that appended the batch (bytes 12..16, outside the CRC);
    /// -1 (`NO_PARTITION_LEADER_EPOCH`) when none was stamped. The leader-epoch cache is
    /// rebuilt from it.
    pub partition_leader_epoch: i32,
    /// Whole batch size in bytes, `LOG_OVERHEAD` included.
    pub size: usize,
    pub is_control: bool,
    pub is_transactional: bool,
    pub is_log_append_time: bool,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `buf` (the batch's first bytes; more may
    /// follow). Checks what can be checked without the records: the length field, the
    /// magic, and that `lastOffsetDelta` is sane. The CRC is not checked (it covers the
    /// records).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::from_view(&BatchHeaderView::parse(buf)?);
        if header.last_offset_delta < 0 {
            return Err(BatchError::InconsistentCount {
                count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// The fields the log keeps, copied out of a header view (also of a whole
    /// `RecordBatch`, which dereferences to its header).
    pub fn from_view(view: &BatchHeaderView<'_>) -> BatchHeader {
        BatchHeader {
            base_offset: view.base_offset(),
            partition_leader_epoch: view.partition_leader_epoch(),
            size: view.batch_size(),
            is_control: view.is_control(),
            is_transactional: view.is_transactional(),
            is_log_append_time: view.is_log_append_time(),
            last_offset_delta: view.last_offset_delta(),
            max_timestamp: view.max_timestamp(),
            producer_id: view.producer_id(),
            producer_epoch: view.producer_epoch(),
            base_sequence: view.base_sequence(),
            records_count: view.records_count(),
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
        self.is_control
    }
    pub fn is_transactional(&self) -> bool {
        self.is_transactional
    }
    pub fn is_log_append_time(&self) -> bool {
        self.is_log_append_time
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence of the last record; wraps at `i32::MAX` to 0 as in Kafka.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
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
    use ottla_protocol::batch::{build_batch, RecordBatch};

    /// Byte position of the magic in Kafka's batch layout.
    const MAGIC: usize = 16;
    use ottla_protocol::compression::Compression;

    #[test]
    fn header_matches_the_protocol_view() {
        let b = build_batch(7, Compression::None, 2, 100, 300, 42, 3, 10, 3, &[]);
        let view = RecordBatch::new(&b).unwrap();
        let parsed = BatchHeader::parse(&b).unwrap();
        assert_eq!(parsed, BatchHeader::from_view(&view));
        // against the values the batch was built with, not only the shared parser
        assert_eq!(
            (parsed.base_offset, parsed.size, parsed.last_offset_delta),
            (7, b.len(), 2)
        );
        assert_eq!(
            (
                parsed.producer_id,
                parsed.producer_epoch,
                parsed.base_sequence
            ),
            (42, 3, 10)
        );
        assert_eq!((parsed.records_count, parsed.is_control()), (3, false));
        assert_eq!(parsed.last_offset(), 9);
        assert_eq!(parsed.last_sequence(), 12);
        assert_eq!(parsed.max_timestamp, 300);
        // build_batch stamps no leader epoch (Kafka's NO_PARTITION_LEADER_EPOCH)
        assert_eq!(parsed.partition_leader_epoch, -1);
    }

    #[test]
    fn partition_leader_epoch_is_read_from_bytes_12_to_16() {
        let mut b = build_batch(0, Compression::None, 0, 0, 0, -1, -1, -1, 1, &[]);
        // big-endian int32 at Kafka's PARTITION_LEADER_EPOCH_OFFSET (12), written by hand
        b[12..16].copy_from_slice(&[0, 0, 1, 2]);
        assert_eq!(BatchHeader::parse(&b).unwrap().partition_leader_epoch, 258);
        let view = RecordBatch::new(&b).unwrap();
        assert_eq!(BatchHeader::from_view(&view).partition_leader_epoch, 258);
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
        assert_eq!(increment_sequence(i32::MAX - 1, 4), 2);
        assert_eq!(wrapping_sequence_sub(2, 4), i32::MAX - 1);
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(wrapping_sequence_sub(8, 3), 5);
        assert_eq!(increment_sequence(NO_SEQUENCE, 3), NO_SEQUENCE);
    }
}
