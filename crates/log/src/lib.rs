//! ottla-log: one partition's log on disk.
//!
//! A partition directory (`<topic>-<partition>`, named by the caller) holds Kafka's files,
//! so that Kafka's own tools (`kafka-dump-log.sh`, …) can read them:
//!
//! - `<base offset, 20 digits>.log`: record batches concatenated exactly as stored;
//! - `<base offset>.index`: 8-byte entries (int32 relative offset, int32 position);
//! - `<base offset>.timeindex`: 12-byte entries (int64 timestamp, int32 relative offset);
//! - `<offset>.snapshot`: the idempotent-producer state as of `offset`, in Kafka's
//!   version-1 snapshot format;
//! - `<offset>.snapshot.batches` (Ottla's own, ignored by Kafka): each producer's cached
//!   batches older than the last one, which Kafka's snapshot has no room for, so that a
//!   retry of any of the last 5 batches is still recognised after a clean restart (see
//!   [`producer_state::BATCHES_SUFFIX`]);
//! - `<base offset>.txnindex`: the segment's aborted transactions (34-byte entries,
//!   Kafka's `TransactionIndex`), for read_committed fetches;
//! - `leader-epoch-checkpoint`: the first offset of each leader epoch, Kafka's format.
//!
//! Indexes are appended to their files; there is no mmap and no preallocation, so an
//! index file is always exactly its entries; a crash can at worst leave it short or with
//! a torn last entry, which the checks on load detect (the index is then rebuilt from the
//! `.log`). Only the active segment's index entries live on the heap; sealed segments'
//! are searched in their files (`index`), and segment files are opened when used and
//! closed when idle (`handle`), so neither memory nor descriptors grow with the data.
//!
//! The module layout follows the layers: `header` reads batch headers without owning
//! them, `index` the two index kinds, `segment` one `.log` file with its indexes,
//! [`producer_state`] the idempotence bookkeeping, `leader_epoch` the first offset of
//! each leader epoch ([`LeaderEpochCache`]), and `log` ties them into a partition.
//! `flush` is how the owner of a log fsyncs it without holding it ([`FlushPlan`]);
//! [`cleaner`] compacts it the same way (planned under the owner's lock, carried out
//! without it, swapped in under it).

pub mod cleaner;
mod flush;
mod handle;
mod header;
mod index;
mod leader_epoch;
mod log;
pub mod producer_state;
mod segment;
mod slice;
mod txn_index;

#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod tests;

pub use crate::flush::FlushPlan;
pub use crate::handle::open_segment_handles;
pub use crate::leader_epoch::{EpochEntry, LeaderEpochCache, LEADER_EPOCH_CHECKPOINT};
pub use crate::log::{FlushReason, Log};
pub use crate::producer_state::{BatchMetadata, ProducerStateEntry, ProducerStateManager};
pub use crate::slice::{FileSlice, LogSlices};
pub use crate::txn_index::AbortedTxn;

use ottla_protocol::batch::BatchError;
use ottla_protocol::records::RecordsError;

/// Kafka's `segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's `segment.ms` and `retention.ms` default: 7 days.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
/// Kafka's `min.cleanable.dirty.ratio` default.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;
/// Kafka's `delete.retention.ms` default: 1 day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Kafka's `file.delete.delay.ms` default: 1 minute.
pub const DEFAULT_FILE_DELETE_DELAY_MS: i64 = 60_000;
/// Kafka's `retention.ms` default: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Largest segment a `.index` entry can address: positions are int32 on disk, which is
/// also why Kafka caps `segment.bytes` at `Integer.MAX_VALUE`.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Bound on the bytes a codec may produce when a timestamp lookup has to open a batch.
/// Kafka has no such bound; we keep one so that a hostile batch cannot exhaust memory
/// during ListOffsets.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// A partition's log settings, with Kafka's topic-level names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment before the active one would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between two offset-index entries.
    pub index_interval_bytes: u64,
    /// `retention.bytes`: -1 = unlimited.
    pub retention_bytes: i64,
    /// `retention.ms`: -1 = unlimited.
    pub retention_ms: i64,
    /// `flush.messages`: fsync after this many records (default: leave it to the page cache).
    pub flush_interval_messages: i64,
    /// `flush.ms`: fsync in the background when the last flush is older than this
    /// (checked on append; nothing waits for it).
    pub flush_interval_ms: i64,
    /// `cleanup.policy` contains `compact`: the log cleaner keeps the latest record of
    /// each key (see [`cleaner`]).
    pub compact: bool,
    /// `min.cleanable.dirty.ratio`: clean once this share of the cleanable bytes is
    /// dirty (not cleaned yet).
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone (a record with a null value) stays.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log with a dirty record older than this is cleaned
    /// whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `file.delete.delay.ms`: a segment deleted by retention or a log start offset
    /// move, or replaced by the cleaner, is renamed `.deleted` first and removed this
    /// much later (0: at once; the cleaner's are still renamed first).
    pub file_delete_delay_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            retention_bytes: -1,
            retention_ms: DEFAULT_RETENTION_MS,
            flush_interval_messages: i64::MAX,
            flush_interval_ms: i64::MAX,
            compact: false,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            file_delete_delay_ms: DEFAULT_FILE_DELETE_DELAY_MS,
        }
    }
}

/// What an append did. For a duplicate (an idempotent producer retrying a batch that is
/// already in the log) the offsets are the ones the original append assigned, so the
/// broker can answer the retry exactly as it answered the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// The batch's timestamp when it carries log-append time, else -1 (Kafka's NO_TIMESTAMP).
    pub log_append_time: i64,
    pub log_start_offset: i64,
    pub duplicate: bool,
}

/// Why a log operation failed. Every variant maps to one Kafka error code
/// ([`LogError::kafka_error_code`]) so the handlers never have to guess.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("invalid records: {0}")]
    InvalidRecords(#[from] RecordsError),
    #[error("record batch of {size} bytes is larger than segment.bytes ({segment_bytes})")]
    BatchTooLarge { size: usize, segment_bytes: u64 },
    #[error(
        "out of order sequence number for producer {producer_id} (epoch {producer_epoch}): \
         expected {expected}, received {received}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id} has epoch {received}, older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    #[error("transaction marker for producer {producer_id} from coordinator epoch {received}, older than the epoch {current} of the coordinator that wrote its last marker (a zombie coordinator)")]
    TransactionCoordinatorFenced {
        producer_id: i64,
        current: i32,
        received: i32,
    },
    #[error("follower append at offset {got} but the log end offset is {expected_at_least}")]
    UnexpectedAppendOffset { expected_at_least: i64, got: i64 },
}

impl LogError {
    /// Kafka's error code for this failure, as Kafka's broker reports it to clients.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            // KAFKA_STORAGE_ERROR: the log directory is failing, not the request.
            LogError::Io(_) => 56,
            LogError::OffsetOutOfRange { .. } => 1,
            // CORRUPT_MESSAGE
            LogError::Corrupt(_) | LogError::InvalidRecords(_) => 2,
            LogError::InvalidBatch(e) => e.kafka_error_code(),
            // RECORD_LIST_TOO_LARGE, as Kafka's append reports a batch above segment.bytes
            LogError::BatchTooLarge { .. } => 18,
            LogError::OutOfOrderSequence { .. } => 45,
            LogError::InvalidProducerEpoch { .. } => 47,
            LogError::TransactionCoordinatorFenced { .. } => 52,
            // Kafka's UnexpectedAppendOffsetException never reaches a client:
            // UNKNOWN_SERVER_ERROR.
            LogError::UnexpectedAppendOffset { .. } => -1,
        }
    }
}

/// Wall-clock milliseconds since the epoch, Kafka's time base for segments and retention.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Attach the file path and the operation to an I/O error, keeping its kind, so that a
/// failing disk is reported with the file that failed.
pub(crate) fn io_context<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> std::io::Error + 'a {
    move |e| std::io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}
