//! Log compaction (`cleanup.policy=compact`): Kafka's `LogCleaner` for one log.
//!
//! A compacted log keeps, for each key, at least its latest record. The cleaner works
//! in three steps, so that the owner's lock is held only to plan and to swap, and
//! never while segment data is read or written:
//!
//! 1. [`crate::Log::cleaning_plan`] (under the owner's lock): the cleanable part of the
//!    log is the sealed segments below the *first uncleanable offset*: the active
//!    segment's base, the last stable offset (an open transaction's records cannot be
//!    judged yet), the bound the owner gives (its high watermark) and the first dirty
//!    segment whose newest record is younger than `min.compaction.lag.ms`. Of that
//!    part, the segments from the *first dirty offset* on were never cleaned. The log
//!    is worth cleaning when the dirty bytes are more than `min.cleanable.dirty.ratio`
//!    of the cleanable bytes, or when the first batch of a dirty segment (other than
//!    the active one) is older than `max.compaction.lag.ms` (Kafka's
//!    `LogCleanerManager`). The plan holds the segments' open files, so nothing it
//!    reads can vanish under it. Its only I/O is a `stat` of each planned `.log` and an
//!    `open` of those closed, and, when `max.compaction.lag.ms` is set, a read of a
//!    dirty segment's first batch header the first time it is needed (a segment loaded
//!    from its indexes; the segment keeps it, as Kafka's `LogSegment` keeps its first
//!    batch timestamp).
//! 2. [`clean`] (no lock): build the offset map, the latest offset of every key in the
//!    dirty segments (bounded by `log.cleaner.dedupe.buffer.size`: the pass stops at
//!    the last segment that fit), then copy every cleanable segment, grouped up to
//!    `segment.bytes`, into `<base>.*.cleaned` files, keeping a record unless a later
//!    record has its key, it is a tombstone past the delete horizon, or it belongs to
//!    an aborted transaction. Offsets never change (a rebuilt batch keeps its base and
//!    last offset). A transaction marker goes once nothing of its transaction is left
//!    (Kafka's `CleanedTransactionMetadata`: an ABORT marker when this pass read no
//!    batch of the aborted transaction, a COMMIT marker when it read no batch of the
//!    committed one, so a marker always outlives its data by at least one pass) and,
//!    like a tombstone, only past the delete horizon. Each new segment is built as the
//!    active segment is: its offset and time indexes grow with its batches, its
//!    `.txnindex` takes the aborted transactions whose markers it keeps, and it is
//!    sealed as a rolled segment is, fsynced, and given its sources' latest
//!    modification time. It comes back open and indexed in the [`CleanedLog`]: the
//!    swap has nothing left to read, rebuild or write.
//! 3. [`crate::Log::swap_cleaned`] (under the lock; no segment data read or written:
//!    renames, directory fsyncs and in-memory bookkeeping only): if the segments are
//!    still the ones planned (no truncation, retention or other cleaning meanwhile; a
//!    check in memory), each group's files are renamed `.cleaned` → `.swap` (the
//!    `.log` last: its `.swap` is the commit point) and the directory is fsynced; then
//!    group by group the replaced segments are renamed `.deleted` (each `.log` first)
//!    and the `.swap` files renamed to their final names (the `.log` last again), the
//!    new segment taking the old ones' place in memory with its files still open (a
//!    rename keeps them); a last directory fsync makes it all durable. The renames and
//!    the fsyncs stay under the lock, as in Kafka's `LocalLog.replaceSegments`, so that
//!    the segments readers find in memory and the names in the directory change
//!    together. The `.deleted` files go after `file.delete.delay.ms`, as Kafka's
//!    `replaceSegments` and `asyncDeleteSegment` do, so a fetch still reading a
//!    replaced segment reads it to the end (with a delay of 0 the swap unlinks them;
//!    an abandoned swap unlinks its `.cleaned` files). How long the swap took is
//!    [`CleanerStats::swap_micros`], logged and kept in [`crate::Log::last_cleaning`].
//!    [`crate::Log::open`] finishes a swap a crash interrupted (a `.log.swap` replaces
//!    the segments whose base offsets lie in its range) and deletes `.cleaned` files
//!    and `.swap` files without their `.log.swap`. So that the range covers every
//!    segment a group replaces, a group of which nothing of the last source survives
//!    ends with an empty batch in that source's offsets (as Kafka's cleaner keeps the
//!    last batch of a round, empty).
//!
//! Tombstones follow Kafka's legacy rule: the delete horizon is the modification time of
//! the last already-cleaned segment minus `delete.retention.ms`, and a tombstone goes only
//! from a segment last modified before it (a cleaned segment keeps its sources' latest
//! modification time), so it survives at least `delete.retention.ms` after its first
//! cleaning. Markers follow the same horizon. The first dirty offset survives restarts
//! through the owner's `cleaner-offset-checkpoint` ([`crate::Log::cleaner_checkpoint`],
//! [`crate::Log::resume_cleaning_from`]). Not yet as in Kafka: a producer's last batch
//! is not kept when all its records go (its producer state lives in memory and in
//! snapshots).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ottla_protocol::batch::{
    batch_size_at, build_batch, RecordBatch, RecordBatchMut, LOG_OVERHEAD,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use ottla_protocol::compression::Compression;
use ottla_protocol::control::{control_record_type, ControlRecordType};
use ottla_protocol::records::{filter_records, Filtered};
use tracing::info;

use crate::header::BatchHeader;
use crate::index::NO_TIMESTAMP;
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;
use crate::{io_context, now_ms, LogError, MAX_DECOMPRESSED_BATCH_BYTES};

/// Kafka's `log.cleaner.dedupe.buffer.size` default (128 MiB, for all cleaner threads).
pub const DEFAULT_DEDUPE_BUFFER_BYTES: usize = 128 << 20;
/// What one key costs in the offset map beyond its bytes: the map entry, the vector's
/// header and the offset (an estimate; it bounds memory, it does not account for it
/// exactly).
const MAP_ENTRY_OVERHEAD: usize = 48;
/// How much of a segment the cleaner reads per system call.
const READ_CHUNK: usize = 1 << 20;
/// The suffix of a cleaner's output before it is swapped in (Kafka's).
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// The suffix of a cleaner's output being swapped in (Kafka's).
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// A segment to clean, as planned: its file stays open for the cleaner whatever
/// happens to the log meanwhile.
#[derive(Debug)]
pub(crate) struct SourceSegment {
    pub(crate) base: i64,
    /// The next segment's base offset: every offset of this one is below.
    pub(crate) end: i64,
    pub(crate) size: u64,
    pub(crate) last_modified_ms: i64,
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    /// The aborted transactions whose ABORT marker is in this segment.
    pub(crate) aborted: Vec<AbortedTxn>,
}

/// One cleaning of one log, planned under the owner's lock ([`crate::Log::cleaning_plan`]).
#[derive(Debug)]
pub struct CleaningPlan {
    pub(crate) dir: PathBuf,
    pub(crate) name: String,
    /// The log's truncation count at planning; a truncation since voids the plan.
    pub(crate) generation: u64,
    /// Every cleanable segment, oldest first.
    pub(crate) sources: Vec<SourceSegment>,
    pub(crate) first_dirty: i64,
    /// Every aborted transaction overlapping the cleanable segments (their data goes).
    pub(crate) aborted: Vec<AbortedTxn>,
    pub(crate) segment_bytes: u64,
    pub(crate) index_interval_bytes: u64,
    /// Tombstones in segments last modified before this go.
    pub(crate) delete_horizon_ms: i64,
    /// Dirty bytes over cleanable bytes.
    pub dirty_ratio: f64,
}

impl CleaningPlan {
    /// The log's directory name (`<topic>-<partition>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One group of segments cleaned into one new segment, waiting to be swapped in.
#[derive(Debug)]
pub(crate) struct CleanedGroup {
    pub(crate) base: i64,
    /// (base offset, size) of each segment it replaces.
    pub(crate) sources: Vec<(i64, u64)>,
    /// The new segment, ready to serve reads: written, sealed (its offset and time
    /// indexes on disk, as a rolled segment's), fsynced, its `.txnindex` written, all
    /// under `.cleaned` names. The swap only renames its files
    /// ([`Segment::rename_files`]) and puts it in the log: nothing of it is opened,
    /// read or rebuilt under the owner's lock.
    pub(crate) segment: Segment,
}

/// What [`clean`] produced: new segments on disk as `.cleaned` files, already open and
/// indexed, so that [`crate::Log::swap_cleaned`] only renames them.
#[derive(Debug)]
#[must_use = "cleaned segments are only swapped in by Log::swap_cleaned"]
pub struct CleanedLog {
    pub(crate) name: String,
    pub(crate) generation: u64,
    pub(crate) groups: Vec<CleanedGroup>,
    /// The first offset this pass left dirty: the next first dirty offset.
    pub(crate) end: i64,
    /// The ABORT markers this pass removed, by offset: their aborted transactions leave
    /// the log's list too (a read_committed consumer told of an aborted transaction
    /// skips its producer's records until it sees the marker).
    pub(crate) removed_aborts: Vec<i64>,
    pub stats: CleanerStats,
}

/// What a cleaning did, for Kafka's log lines (and tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanerStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    /// Transaction markers removed (their transactions have no data left).
    pub markers_removed: u64,
    pub keys_in_map: usize,
    pub segments_before: usize,
    pub segments_after: usize,
    /// How long the cleaning took without the owner's lock ([`clean`]).
    pub elapsed_ms: u64,
    /// How long its swap took, under the owner's lock ([`crate::Log::swap_cleaned`]):
    /// renames, directory fsyncs and bookkeeping, no segment data read or written.
    /// 0 until swapped.
    pub swap_micros: u64,
}

/// Build the offset map of `plan`'s dirty segments and copy its segments without what
/// is obsolete, into `.cleaned` files (see the module documentation). Holds no lock:
/// the plan's open files are read, and only new files are written. Everything the swap
/// needs from the new segments is done here too: they come back sealed, fsynced and
/// indexed, as segments the swap puts in the log as they are.
pub fn clean(plan: &CleaningPlan, dedupe_buffer_bytes: usize) -> Result<CleanedLog, LogError> {
    clean_with(plan, dedupe_buffer_bytes, || {})
}

/// [`clean`], calling `after_group` each time a new segment is written (sealed and
/// fsynced, not swapped in): the points where a test works on the log while its
/// cleaning is half done.
pub(crate) fn clean_with(
    plan: &CleaningPlan,
    dedupe_buffer_bytes: usize,
    mut after_group: impl FnMut(),
) -> Result<CleanedLog, LogError> {
    let started = Instant::now();
    let mut stats = CleanerStats::default();
    let (map, end) = build_offset_map(plan, dedupe_buffer_bytes)?;
    stats.keys_in_map = map.len();
    let sources: Vec<&SourceSegment> = plan.sources.iter().filter(|s| s.end <= end).collect();
    let mut transactions = TransactionsRead::default();
    let mut removed_aborts = Vec::new();
    let mut groups = Vec::new();
    let mut i = 0;
    while i < sources.len() {
        let mut j = i + 1;
        let mut size = sources[i].size;
        while j < sources.len()
            && size + sources[j].size <= plan.segment_bytes
            && sources[j].end - sources[i].base <= i64::from(i32::MAX)
        {
            size += sources[j].size;
            j += 1;
        }
        groups.push(clean_group(
            plan,
            &sources[i..j],
            &map,
            &mut transactions,
            &mut removed_aborts,
            &mut stats,
        )?);
        after_group();
        i = j;
    }
    stats.segments_before = sources.len();
    stats.segments_after = groups.len();
    stats.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(CleanedLog {
        name: plan.name.clone(),
        generation: plan.generation,
        groups,
        end,
        removed_aborts,
        stats,
    })
}

/// The latest offset of each key in the dirty segments, and where the dirty part this
/// pass covers ends: a segment boundary, as far as the map's memory allows (at least one
/// segment, as Kafka's cleaner always makes progress).
fn build_offset_map(
    plan: &CleaningPlan,
    budget: usize,
) -> Result<(HashMap<Vec<u8>, i64>, i64), LogError> {
    let mut map: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut used = 0usize;
    let mut end = plan.first_dirty;
    for source in plan.sources.iter().filter(|s| s.base >= plan.first_dirty) {
        if used > budget && end > plan.first_dirty {
            break;
        }
        let mut reader = SegmentReader::new(source);
        while let Some((bytes, h)) = reader.next_batch()? {
            if h.is_control || is_aborted(&plan.aborted, &h) {
                continue;
            }
            let batch = RecordBatch::new(&bytes).map_err(|e| reader.corrupt(&h, e))?;
            filter_records(&batch, MAX_DECOMPRESSED_BATCH_BYTES, |r| {
                if let Some(key) = r.key {
                    match map.get_mut(key) {
                        Some(offset) => *offset = r.offset,
                        None => {
                            used += key.len() + MAP_ENTRY_OVERHEAD;
                            map.insert(key.to_vec(), r.offset);
                        }
                    }
                }
                true
            })
            .map_err(|e| reader.corrupt(&h, e))?;
        }
        end = source.end;
    }
    Ok((map, end))
}

/// Whether `h` holds records of a transaction that was aborted.
fn is_aborted(aborted: &[AbortedTxn], h: &BatchHeader) -> bool {
    h.is_transactional
        && aborted.iter().any(|a| {
            a.producer_id == h.producer_id
                && a.first_offset <= h.base_offset
                && h.base_offset <= a.last_offset
        })
}

/// The transactions whose data batches this pass has read since their producer's last
/// marker, in offset order across the whole pass (Kafka's `CleanedTransactionMetadata`).
#[derive(Default)]
struct TransactionsRead {
    committed: HashSet<i64>,
    aborted: HashSet<i64>,
}

impl TransactionsRead {
    /// A transactional data batch was read (kept or not).
    fn on_data(&mut self, producer_id: i64, aborted: bool) {
        if aborted {
            self.aborted.insert(producer_id);
        } else {
            self.committed.insert(producer_id);
        }
    }

    /// A marker was read: whether its transaction has no batch left that this pass read
    /// (so a later pass will not find any either), which makes the marker removable.
    fn on_marker(&mut self, producer_id: i64, marker: Option<ControlRecordType>) -> bool {
        match marker {
            Some(ControlRecordType::Abort) => !self.aborted.remove(&producer_id),
            Some(ControlRecordType::Commit) => !self.committed.remove(&producer_id),
            // Not a marker Ottla writes: kept, as Kafka keeps unknown control batches.
            None => false,
        }
    }
}

/// Copy `sources` into one new segment named after the first, keeping what survives.
fn clean_group(
    plan: &CleaningPlan,
    sources: &[&SourceSegment],
    map: &HashMap<Vec<u8>, i64>,
    transactions: &mut TransactionsRead,
    removed_aborts: &mut Vec<i64>,
    stats: &mut CleanerStats,
) -> Result<CleanedGroup, LogError> {
    let base = sources[0].base;
    let mut out = Segment::create_with_suffix(&plan.dir, base, now_ms(), CLEANED_SUFFIX)?;
    let mut last_modified = 0;
    // The last batch read from the last source, and the last offset written.
    let mut last_read: Option<BatchHeader> = None;
    let mut last_written: Option<i64> = None;
    for source in sources {
        last_modified = last_modified.max(source.last_modified_ms);
        let retain_tombstones = source.last_modified_ms > plan.delete_horizon_ms;
        let mut reader = SegmentReader::new(source);
        last_read = None;
        while let Some((bytes, h)) = reader.next_batch()? {
            last_read = Some(h);
            stats.bytes_read += bytes.len() as u64;
            if h.is_control {
                let batch = RecordBatch::new(&bytes).map_err(|e| reader.corrupt(&h, e))?;
                let marker = control_record_type(&batch);
                let done = transactions.on_marker(h.producer_id, marker);
                // The aborted transaction this marker ends, if it is one: its index entry
                // stays exactly as long as the marker does (Kafka's cleaner too).
                let aborted = source
                    .aborted
                    .iter()
                    .find(|a| a.producer_id == h.producer_id && a.last_offset == h.base_offset);
                if done && !retain_tombstones {
                    stats.markers_removed += 1;
                    if marker == Some(ControlRecordType::Abort) {
                        removed_aborts.push(h.base_offset);
                    }
                    continue;
                }
                out.append(&bytes, &h, plan.index_interval_bytes)?;
                last_written = Some(h.last_offset());
                if let Some(entry) = aborted {
                    out.txn_index
                        .append(*entry)
                        .map_err(io_context("write", out.txn_index.path()))?;
                }
                stats.bytes_written += bytes.len() as u64;
                continue;
            }
            stats.records_read += u64::try_from(h.records_count).unwrap_or(0);
            let aborted = is_aborted(&plan.aborted, &h);
            if h.is_transactional {
                transactions.on_data(h.producer_id, aborted);
            }
            // An empty batch (what an earlier cleaning kept, see below) goes: this
            // group adds its own if it needs one.
            if aborted || h.records_count == 0 {
                continue;
            }
            let batch = RecordBatch::new(&bytes).map_err(|e| reader.corrupt(&h, e))?;
            let mut kept = 0u64;
            let filtered = filter_records(&batch, MAX_DECOMPRESSED_BATCH_BYTES, |r| {
                let latest = r.key.and_then(|k| map.get(k)).copied();
                let superseded = latest.is_some_and(|latest| r.offset < latest);
                let obsolete_tombstone = !r.has_value && !retain_tombstones;
                let keep = !superseded && !obsolete_tombstone;
                kept += u64::from(keep);
                keep
            })
            .map_err(|e| reader.corrupt(&h, e))?;
            stats.records_kept += kept;
            let written = match filtered {
                Filtered::KeptAll => bytes,
                Filtered::RemovedAll => continue,
                Filtered::Rebuilt(rebuilt) => rebuilt,
            };
            let header = BatchHeader::parse(&written).map_err(|e| reader.corrupt(&h, e))?;
            out.append(&written, &header, plan.index_interval_bytes)?;
            last_written = Some(header.last_offset());
            stats.bytes_written += written.len() as u64;
        }
    }
    // Recovery tells the segments a committed `.swap` replaces by its offsets: those
    // based from its base offset through its last batch's last offset (Kafka's
    // `LogLoader`, from the swap segment's base offset to its `readNextOffset`). When
    // nothing of the last source survives, the new segment ends below that source,
    // and a crash between the commit and the deletion of the sources would keep it,
    // bringing its removed records back. So the group then ends with an empty batch in
    // that source's offsets: Kafka's cleaner keeps the last batch of a cleaning round
    // empty (`BatchRetention.RETAIN_EMPTY`) "so that last offset information is not
    // lost", which covers the last group of a round only; every group needs it here.
    let last = sources[sources.len() - 1];
    if last_written.is_none_or(|offset| offset < last.base) {
        let empty = empty_batch(last_read.as_ref(), last);
        let header = BatchHeader::parse(&empty)
            .map_err(|e| LogError::Corrupt(format!("{}: empty batch: {e}", last.path.display())))?;
        out.append(&empty, &header, plan.index_interval_bytes)?;
        stats.bytes_written += empty.len() as u64;
    }
    out.seal()?;
    out.sync_all()?;
    // As Kafka does, the new segment carries its sources' latest modification time,
    // which is what the delete horizon of later cleanings is measured against.
    let modified = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(last_modified).unwrap_or(0));
    out.set_modified(modified)?;
    Ok(CleanedGroup {
        base,
        sources: sources.iter().map(|s| (s.base, s.size)).collect(),
        segment: out,
    })
}

/// A batch without records that holds the offsets of `last`, the last batch of
/// `source` (or the source's last offset when it held none), with its leader epoch: no
/// producer, not transactional, no timestamp (the segment's largest timestamp stays that
/// of the records it keeps), uncompressed. Readers skip it, as they skip the empty
/// batches Kafka's cleaner keeps.
fn empty_batch(last: Option<&BatchHeader>, source: &SourceSegment) -> Vec<u8> {
    let (base_offset, last_offset_delta, epoch) = match last {
        Some(h) => (h.base_offset, h.last_offset_delta, h.partition_leader_epoch),
        None => (source.end - 1, 0, NO_PARTITION_LEADER_EPOCH),
    };
    let mut batch = build_batch(
        base_offset,
        Compression::None,
        last_offset_delta,
        NO_TIMESTAMP,
        NO_TIMESTAMP,
        NO_PRODUCER_ID,
        NO_PRODUCER_EPOCH,
        NO_SEQUENCE,
        0,
        &[],
    );
    if let Ok(mut view) = RecordBatchMut::new(&mut batch) {
        view.set_partition_leader_epoch(epoch);
    }
    batch
}

/// Reads a source segment's batches in order, a chunk at a time.
struct SegmentReader<'a> {
    source: &'a SourceSegment,
    position: u64,
    chunk: Vec<u8>,
    chunk_start: u64,
}

impl<'a> SegmentReader<'a> {
    fn new(source: &'a SourceSegment) -> Self {
        SegmentReader {
            source,
            position: 0,
            chunk: Vec::new(),
            chunk_start: 0,
        }
    }

    /// `len` bytes at `pos` (the caller checked they are within the planned size).
    fn get(&mut self, pos: u64, len: usize) -> Result<&[u8], LogError> {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if pos < self.chunk_start || pos + len as u64 > chunk_end {
            let want = (len.max(READ_CHUNK) as u64).min(self.source.size - pos) as usize;
            self.chunk.resize(want, 0);
            self.source
                .file
                .read_exact_at(&mut self.chunk, pos)
                .map_err(io_context("read", &self.source.path))?;
            self.chunk_start = pos;
        }
        let from = (pos - self.chunk_start) as usize;
        Ok(&self.chunk[from..from + len])
    }

    /// The next whole batch and its header; `None` at the planned size (a sealed
    /// segment never grows).
    fn next_batch(&mut self) -> Result<Option<(Vec<u8>, BatchHeader)>, LogError> {
        let remaining = self.source.size - self.position;
        if remaining == 0 {
            return Ok(None);
        }
        let path = self.source.path.clone();
        let at = self.position;
        let torn = move |what: String| {
            LogError::Corrupt(format!("{} at position {at}: {what}", path.display()))
        };
        if remaining < LOG_OVERHEAD as u64 {
            return Err(torn(format!(
                "{remaining} bytes left, less than a batch header"
            )));
        }
        let position = self.position;
        let size = match batch_size_at(self.get(position, LOG_OVERHEAD)?) {
            Some(Ok(size)) if size as u64 <= remaining => size,
            Some(Ok(size)) => return Err(torn(format!("batch of {size} bytes runs past the end"))),
            Some(Err(e)) => return Err(torn(e.to_string())),
            None => return Err(torn("truncated batch header".into())),
        };
        let bytes = self.get(position, size)?.to_vec();
        let header = BatchHeader::parse(&bytes).map_err(|e| torn(e.to_string()))?;
        self.position += size as u64;
        Ok(Some((bytes, header)))
    }

    fn corrupt(&self, h: &BatchHeader, e: impl std::fmt::Display) -> LogError {
        LogError::Corrupt(format!(
            "{}: batch at offset {} cannot be cleaned: {e}",
            self.source.path.display(),
            h.base_offset
        ))
    }
}

/// Kafka's summary once a log is cleaned (`LogCleaner.recordStats`), on one line.
pub(crate) fn log_cleaned(name: &str, stats: &CleanerStats, first_dirty: i64, end: i64) {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let percent = |after: u64, before: u64| {
        if before == 0 {
            0.0
        } else {
            100.0 * (1.0 - after as f64 / before as f64)
        }
    };
    info!(
        "Log cleaner cleaned log {name} (dirty section = [{first_dirty}, {end}]): {:.1} MB of log \
         processed in {:.1} seconds; {} keys in the offset map; Start size: {:.1} MB ({} messages), \
         End size: {:.1} MB ({} messages), {:.1}% size reduction ({:.1}% fewer messages), \
         {} segments into {}, {} transaction markers removed; swapped in under the log's lock \
         in {:.1} ms",
        mb(stats.bytes_read),
        stats.elapsed_ms as f64 / 1000.0,
        stats.keys_in_map,
        mb(stats.bytes_read),
        stats.records_read,
        mb(stats.bytes_written),
        stats.records_kept,
        percent(stats.bytes_written, stats.bytes_read),
        percent(stats.records_kept, stats.records_read),
        stats.segments_before,
        stats.segments_after,
        stats.markers_removed,
        stats.swap_micros as f64 / 1000.0
    );
}

/// The file modification time in milliseconds, 0 when it cannot be read.
pub(crate) fn last_modified_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}
