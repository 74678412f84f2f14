//! Record batches as a producer may send them, through every check the produce path
//! and the log can apply: batch iteration, header validation, the uncompressed
//! framing walk, and decompression with the record walk (both bounded). The CRC is
//! recomputed over the fuzzed bytes first, so inputs get past the CRC check and reach
//! the codecs and varint parsing instead of all failing there.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use ottla_protocol::batch::{BatchIter, RecordBatch};
use ottla_protocol::records::{check_uncompressed_framing, decode_records, scan_records};

/// Offsets within a v2 batch header (Kafka's `DefaultRecordBatch`).
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LENGTH_OFFSET: usize = 8;
const LOG_OVERHEAD: usize = 12;
/// What the broker allows one batch to inflate to when it must look inside.
const MAX_DECOMPRESSED: usize = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    fix_first_crc(&mut bytes);
    for batch in BatchIter::new(&bytes) {
        let Ok(batch) = batch else { break };
        check(&batch);
    }
    if let Ok(batch) = RecordBatch::new(&bytes) {
        check(&batch);
    }
});

fn check(batch: &RecordBatch<'_>) {
    let _ = batch.validate();
    let _ = batch.validate_for_append();
    let _ = check_uncompressed_framing(batch);
    let _ = scan_records(batch, MAX_DECOMPRESSED, |_| ControlFlow::<()>::Continue(()));
    let _ = decode_records(batch, MAX_DECOMPRESSED);
}

/// Write the CRC-32C of the first batch's covered bytes where its header keeps it.
fn fix_first_crc(bytes: &mut [u8]) {
    if bytes.len() < ATTRIBUTES_OFFSET {
        return;
    }
    let length = i32::from_be_bytes(bytes[LENGTH_OFFSET..LENGTH_OFFSET + 4].try_into().unwrap());
    let Ok(length) = usize::try_from(length) else {
        return;
    };
    let end = (LOG_OVERHEAD + length).min(bytes.len());
    if end <= ATTRIBUTES_OFFSET {
        return;
    }
    let crc = crc32c::crc32c(&bytes[ATTRIBUTES_OFFSET..end]);
    bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}
