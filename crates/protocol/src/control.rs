//! Transaction markers: the control batches that end a transaction in a partition.
//!
//! Kafka's `EndTransactionMarker`: a batch with the transactional and control
//! attributes set, the producer's id and epoch, no sequence, and one record whose key
//! is `int16 version (0) | int16 type` (0 ABORT, 1 COMMIT) and whose value is
//! `int16 version (0) | int32 coordinator epoch`. Consumers never see these records;
//! they tell a read_committed reader where a transaction ended and how.

use crate::batch::{RecordBatch, RecordBatchMut, NO_SEQUENCE};
use crate::compression::Compression;
use crate::records::{build_record_batch, decode_records, Record};

/// Version of the control record key and of the marker value Kafka writes.
pub const CONTROL_RECORD_VERSION: i16 = 0;
/// A control batch is tiny; decoding its records never needs more than this.
const MAX_CONTROL_BATCH_DECODED: usize = 4096;

/// What a control record says (`ControlRecordType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    Abort,
    Commit,
}

impl ControlRecordType {
    pub fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
        }
    }
}

/// A COMMIT or ABORT marker for `producer_id` at `producer_epoch`, written by the
/// coordinator whose epoch (its partition's leader epoch) is `coordinator_epoch`.
pub fn build_end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    marker: ControlRecordType,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.id().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        offset: 0,
        timestamp,
        key: Some(key),
        value: Some(value),
        headers: Vec::new(),
    };
    let mut batch = build_record_batch(
        &[record],
        Compression::None,
        producer_id,
        producer_epoch,
        NO_SEQUENCE,
    );
    if let Ok(mut m) = RecordBatchMut::new(&mut batch) {
        m.set_transactional(true);
    }
    batch
}

/// A decoded `EndTransactionMarker`: how the transaction ended, and the epoch of the
/// transaction coordinator that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub kind: ControlRecordType,
    pub coordinator_epoch: i32,
}

/// The marker of a control batch, key and value (Kafka's `EndTransactionMarker
/// .deserialize`); `None` when the batch is not a control batch, its first record is not
/// a marker this broker knows, or the marker's value is shorter than its version and
/// coordinator epoch.
pub fn end_txn_marker(batch: &RecordBatch<'_>) -> Option<EndTxnMarker> {
    let record = first_control_record(batch)?;
    let kind = marker_kind(record.key.as_deref()?)?;
    let value = record.value.as_deref()?;
    let epoch: [u8; 4] = value.get(2..6)?.try_into().ok()?;
    Some(EndTxnMarker {
        kind,
        coordinator_epoch: i32::from_be_bytes(epoch),
    })
}

/// The marker type a control record key names (`int16 version | int16 type`).
fn marker_kind(key: &[u8]) -> Option<ControlRecordType> {
    match i16::from_be_bytes(key.get(2..4)?.try_into().ok()?) {
        0 => Some(ControlRecordType::Abort),
        1 => Some(ControlRecordType::Commit),
        _ => None,
    }
}

/// The type of a control batch's marker; `None` when the batch is not a control batch
/// or its first record is not a marker this broker knows (Kafka skips unknown control
/// types too).
pub fn control_record_type(batch: &RecordBatch<'_>) -> Option<ControlRecordType> {
    marker_kind(first_control_record(batch)?.key.as_deref()?)
}

/// The first record of a control batch (`None` for any other batch, or one that does
/// not decode).
fn first_control_record(batch: &RecordBatch<'_>) -> Option<Record> {
    if !batch.is_control() {
        return None;
    }
    decode_records(batch, MAX_CONTROL_BATCH_DECODED)
        .ok()?
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_control_batches_kafka_can_read() {
        let b = build_end_txn_marker(42, 3, 7, ControlRecordType::Commit, 1000);
        let batch = RecordBatch::new(&b).unwrap();
        batch.validate().unwrap();
        assert!(batch.is_control() && batch.is_transactional());
        assert_eq!((batch.producer_id(), batch.producer_epoch()), (42, 3));
        assert_eq!(batch.base_sequence(), NO_SEQUENCE);
        assert_eq!(control_record_type(&batch), Some(ControlRecordType::Commit));
        assert_eq!(
            end_txn_marker(&batch),
            Some(EndTxnMarker {
                kind: ControlRecordType::Commit,
                coordinator_epoch: 7
            })
        );
        let records = decode_records(&batch, 1024).unwrap();
        // Kafka's EndTransactionMarker layout, written out by hand.
        assert_eq!(records[0].key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(records[0].value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
        let abort = build_end_txn_marker(42, 3, 7, ControlRecordType::Abort, 1000);
        assert_eq!(
            control_record_type(&RecordBatch::new(&abort).unwrap()),
            Some(ControlRecordType::Abort)
        );
    }
}
