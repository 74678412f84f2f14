//! Record batches as a producer may send them, through every check the produce path
//! and the log can apply: batch iteration, header validation, the uncompressed
//! framing walk, and decompression with the record walk (both bounded). The first
//! batch's CRC is recomputed over the fuzzed bytes, so inputs get past the CRC check
//! and reach the codecs and varint parsing instead of all failing there.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use ottla_protocol::batch::{batch_size_at, BatchIter, RecordBatch, RecordBatchMut};
use ottla_protocol::records::{check_uncompressed_framing, decode_records, scan_records};

/// Decompression bound for the record walks: smaller than the broker's (64 MiB, or
/// `max.message.bytes` times the ratio limit on the produce path) to keep each input
/// fast; the bound's own check is the same code at any size.
const MAX_DECOMPRESSED: usize = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if let Some(Ok(size)) = batch_size_at(&bytes) {
        if let Some(Ok(mut first)) = bytes.get_mut(..size).map(RecordBatchMut::new) {
            first.update_crc();
        }
    }
    for batch in BatchIter::new(&bytes) {
        let Ok(batch) = batch else { break };
        check(&batch);
    }
});

fn check(batch: &RecordBatch<'_>) {
    // `validate_for_append` includes `validate` (the CRC among it).
    let _ = batch.validate_for_append();
    let _ = check_uncompressed_framing(batch);
    let _ = scan_records(batch, MAX_DECOMPRESSED, |_| ControlFlow::<()>::Continue(()));
    let _ = decode_records(batch, MAX_DECOMPRESSED);
}
