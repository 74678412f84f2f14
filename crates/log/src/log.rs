//! A partition's log: an ordered list of segments, the last one active.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ottla_protocol::batch::{BatchError, BatchIter, RecordBatch, RecordBatchMut};
use ottla_protocol::control::{end_txn_marker, ControlRecordType, EndTxnMarker};
use tracing::{info, warn};

use crate::cleaner::{
    self, CleanedLog, CleanerStats, CleaningPlan, SourceSegment, CLEANED_SUFFIX, SWAP_SUFFIX,
};
use crate::flush::{FlushPlan, InFlight, SyncTarget};
use crate::header::BatchHeader;
use crate::index::NO_TIMESTAMP;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{
    self, ProducerCheck, ProducerStateManager, BATCHES_SUFFIX, SNAPSHOT_SUFFIX,
};
use crate::segment::{
    segment_file, Segment, Truncation, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::slice::LogSlices;
use crate::txn_index::{AbortedTxn, TXN_INDEX_SUFFIX};
use crate::{io_context, now_ms, AppendInfo, LogConfig, LogError, MAX_SEGMENT_BYTES};

/// Kafka's suffix for files scheduled for deletion; leftovers are removed on open.
const DELETED_SUFFIX: &str = ".deleted";
/// Our own temporary files (snapshots being written).
const TMP_SUFFIX: &str = ".tmp";
/// Base offsets in file names are 20 decimal digits.
const OFFSET_DIGITS: usize = 20;

/// Why segments are being deleted, for the log line Kafka operators know.
#[derive(Debug, Clone, Copy)]
enum RetentionReason {
    Time,
    Size,
    /// The owner moved the log start offset to this offset ([`Log::delete_segments_below`]).
    LogStartOffset(i64),
}

/// Why a log wants a flush ([`Log::flush_wanted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// `flush.messages` is reached, or a duplicate was answered whose original is not
    /// on disk yet: the owner flushes before it acknowledges the append (Kafka flushes
    /// inside the append).
    Policy,
    /// A segment was rolled, or `flush.ms` has passed since the last flush: the owner
    /// flushes soon, with no one waiting, as Kafka's scheduled roll flush and its
    /// `flush.ms` flusher do. After a roll this keeps the recovery point (and with it
    /// the scan after a crash) within about a segment of the log end.
    Background,
}

/// One partition's log. Not internally synchronised: the replica layer owns it behind
/// its own lock (reads take `&self`, so a read-write lock lets fetches run in parallel).
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// The directory's name (`<topic>-<partition>`), for log lines.
    name: String,
    config: LogConfig,
    /// Sorted by base offset; never empty; the last one is active.
    segments: Vec<Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    recovery_point: i64,
    producer_state: ProducerStateManager,
    /// Every aborted transaction of the log, by ABORT marker offset (the segments'
    /// `.txnindex` files hold the same entries).
    aborted: Vec<AbortedTxn>,
    /// The first offset of each leader epoch, kept in step with the segments: appends
    /// add epochs, truncation and retention cut them.
    leader_epochs: LeaderEpochCache,
    /// Offsets of the producer snapshot files present in `dir`.
    snapshots: BTreeSet<i64>,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// Producer snapshots written since the last [`Log::prepare_flush`].
    unsynced_snapshots: Vec<SyncTarget>,
    /// Files were created or renamed in `dir` since the last [`Log::prepare_flush`].
    dir_unsynced: bool,
    /// A segment was sealed since the last [`Log::prepare_flush`].
    rolled: bool,
    /// A duplicate was answered whose original is not known to be on disk yet.
    duplicate_awaits_flush: bool,
    /// Counts truncations, which may rewrite offsets an in-flight [`FlushPlan`] covers.
    generation: u64,
    /// Files taken by plans not finished yet (see [`crate::flush`]), oldest first.
    in_flight: Vec<InFlight>,
    next_plan_id: u64,
    /// An fsync failed: what it covered may never reach the disk, and a later fsync
    /// succeeding proves nothing about it (the kernel drops the failed pages' dirty
    /// state). The recovery point stays where it was until the next open, whose
    /// recovery scans from there.
    sync_failed: bool,
    /// Offsets below this were compacted by the cleaner (Kafka's cleaner checkpoint,
    /// kept in memory: the log start after an open).
    first_dirty_offset: i64,
    /// Files renamed `.deleted` and when to remove them (`file.delete.delay.ms`);
    /// leftovers of a crash are removed by the next open.
    pending_deletions: Vec<(i64, Vec<PathBuf>)>,
    /// What the last cleaning swapped in did ([`Log::last_cleaning`]).
    last_cleaning: Option<CleanerStats>,
}

impl Log {
    /// Run with new settings from now on (a topic's configs changed).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Open (or create) the partition directory `dir`.
    ///
    /// Segments from the one containing `recovery_point` onward are recovered: scanned
    /// batch by batch with CRCs checked, cut at the first invalid or partial batch (all
    /// later segments are deleted) and their indexes rebuilt. Earlier segments were
    /// flushed before the recovery point was recorded, so they are trusted: their index
    /// files are loaded, and rebuilt only if missing or inconsistent. Then the producer
    /// state is loaded from the latest usable snapshot and brought up to date by walking
    /// the batch headers after it, and the leader-epoch cache is loaded from its
    /// checkpoint and brought up to date the same way (from the log start if the
    /// checkpoint was missing or malformed).
    pub fn open(dir: &Path, config: LogConfig, recovery_point: i64) -> Result<Log, LogError> {
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let files = scan_directory(dir)?;
        let now = now_ms();
        let (leader_epochs, checkpoint_read) = LeaderEpochCache::load(dir, &name)?;

        let mut log = Log {
            dir: dir.to_path_buf(),
            name,
            config,
            segments: Vec::new(),
            log_start_offset: 0,
            log_end_offset: 0,
            recovery_point: 0,
            producer_state: ProducerStateManager::new(),
            aborted: Vec::new(),
            leader_epochs,
            snapshots: files.snapshots,
            unflushed_messages: 0,
            last_flush_ms: now,
            unsynced_snapshots: Vec::new(),
            dir_unsynced: false,
            rolled: false,
            duplicate_awaits_flush: false,
            generation: 0,
            in_flight: Vec::new(),
            next_plan_id: 0,
            sync_failed: false,
            first_dirty_offset: 0,
            pending_deletions: Vec::new(),
            last_cleaning: None,
        };

        let bases: Vec<i64> = files.logs.into_iter().collect();
        // Base offset of the first segment recovery scanned.
        let first_recovered = if bases.is_empty() {
            log.segments.push(Segment::create(dir, 0, now)?);
            // A new, empty log: its first flush syncs the directory (nothing is lost
            // if a crash comes first), so creating many partitions costs no fsyncs.
            log.dir_unsynced = true;
            0
        } else {
            log.load_segments(&bases, recovery_point, now)?
        };

        let (Some(first), Some(active)) = (log.segments.first(), log.segments.last()) else {
            return Err(LogError::Corrupt(format!(
                "{}: no segment could be loaded",
                dir.display()
            )));
        };
        // The active segment is always scanned, so its end is exact.
        let Some(log_end_offset) = active.next_offset() else {
            return Err(LogError::Corrupt(format!(
                "{}: active segment was not recovered",
                dir.display()
            )));
        };
        log.log_start_offset = first.base_offset();
        log.first_dirty_offset = log.log_start_offset;
        log.log_end_offset = log_end_offset;
        log.recovery_point = recovery_point.clamp(log.log_start_offset, log.log_end_offset);
        log.load_aborted_transactions(first_recovered)?;
        log.load_producer_state(first_recovered)?;
        let walk_from = if checkpoint_read {
            first_recovered
        } else {
            log.log_start_offset
        };
        log.recover_leader_epochs(walk_from)?;
        // Only the active segment is written to: the others keep their index entries on
        // disk. No file stays open: a log holds descriptors only while it is used.
        if let Some((_, sealed)) = log.segments.split_last_mut() {
            for segment in sealed {
                segment.offload_indexes()?;
            }
        }
        for segment in &log.segments {
            segment.close_files();
        }
        Ok(log)
    }

    /// Bring the leader-epoch cache loaded from its checkpoint up to date with the
    /// segments: walk the batch headers of the segments from the one based at
    /// `walk_from` (the segments recovery scanned, as Kafka's recovery does; every
    /// segment when the checkpoint could not be read), record each epoch above the
    /// latest known one (batches without an epoch are skipped), then cut the entries to
    /// the log's offsets, and write the checkpoint if anything changed.
    fn recover_leader_epochs(&mut self, walk_from: i64) -> Result<(), LogError> {
        let first = self
            .segments
            .partition_point(|s| s.base_offset() < walk_from);
        let cache = &mut self.leader_epochs;
        for segment in &self.segments[first..] {
            segment.for_each_header(0, |_, h| {
                cache.assign_recovered(h.partition_leader_epoch, h.base_offset);
                Ok(())
            })?;
        }
        cache.finish_recovery(self.log_start_offset, self.log_end_offset)
    }

    /// Load existing segments: trusted ones below the recovery segment, recovered ones
    /// from it on. Returns the recovery segment's base offset.
    fn load_segments(
        &mut self,
        bases: &[i64],
        recovery_point: i64,
        now: i64,
    ) -> Result<i64, LogError> {
        let interval = self.config.index_interval_bytes;
        // The recovery segment: the last one whose base offset is <= the recovery point.
        let first_recovered = bases
            .partition_point(|&b| b <= recovery_point)
            .saturating_sub(1);
        for (i, &base) in bases.iter().enumerate().take(first_recovered) {
            let mut segment = Segment::open(&self.dir, base, now)?;
            if !segment.load_indexes(bases[i + 1])? {
                info!("Rebuilding indexes of segment {base} of {}", self.name);
                if let Some(t) = segment.recover(base, Some(bases[i + 1]), interval)? {
                    // A trusted segment is repaired on its own: later segments were
                    // flushed independently and stay.
                    warn!(
                        "Truncated corrupt segment {base} of {} at offset {} ({} bytes dropped): {}",
                        self.name, t.offset, t.bytes_dropped, t.reason
                    );
                }
            }
            self.segments.push(segment);
        }
        let mut expected = bases[first_recovered];
        for (i, &base) in bases.iter().enumerate().skip(first_recovered) {
            // `recover` keeps each segment's batches below the next segment's base, so
            // segments never overlap here.
            debug_assert!(
                base >= expected,
                "segment {base} overlaps offsets below {expected}"
            );
            let mut segment = Segment::open(&self.dir, base, now)?;
            let Some(truncation) =
                segment.recover(expected, bases.get(i + 1).copied(), interval)?
            else {
                expected = segment.next_offset().unwrap_or(base);
                self.segments.push(segment);
                continue;
            };
            // Cut here: everything after this point is a torn tail.
            let mut later_bytes = 0;
            let later_count = bases.len() - i - 1;
            for &later in &bases[i + 1..] {
                let s = Segment::open(&self.dir, later, now)?;
                later_bytes += s.size();
                s.delete_files()?;
            }
            self.segments.push(segment);
            self.warn_truncation(&truncation, later_bytes, later_count);
            sync_dir(&self.dir)?;
            break;
        }
        Ok(bases[first_recovered])
    }

    /// The one line per truncation operators look for.
    fn warn_truncation(&self, t: &Truncation, later_bytes: u64, later_segments: usize) {
        let dropped = t.bytes_dropped + later_bytes;
        if later_segments > 0 {
            warn!(
                "Truncated torn tail of {} at offset {} ({} bytes dropped, including {} later segment(s)): {}",
                self.name, t.offset, dropped, later_segments, t.reason
            );
        } else {
            warn!(
                "Truncated torn tail of {} at offset {} ({} bytes dropped): {}",
                self.name, t.offset, dropped, t.reason
            );
        }
    }

    /// Read the segments' `.txnindex` files, keeping the entries whose marker lies
    /// below `rebuild_from` (the segments recovery trusted); the rest are dropped, from
    /// memory and files, and rebuilt from the markers by [`Log::load_producer_state`].
    fn load_aborted_transactions(&mut self, rebuild_from: i64) -> Result<(), LogError> {
        self.aborted.clear();
        for segment in &mut self.segments {
            let entries = segment.txn_index.read()?;
            let kept: Vec<AbortedTxn> = entries
                .iter()
                .copied()
                .filter(|e| e.last_offset < rebuild_from && e.last_offset >= segment.base_offset())
                .collect();
            if kept.len() != entries.len() {
                segment.txn_index.rewrite(&kept)?;
            }
            self.aborted.extend(kept);
        }
        self.aborted.sort_by_key(|e| e.last_offset);
        Ok(())
    }

    /// Rebuild the producer table: latest readable snapshot at or below the log end and
    /// `rebuild_aborted_from` (and not below the log start), with the older cached
    /// batches from its companion file (see [`producer_state::BATCHES_SUFFIX`]), then
    /// every batch header from its offset on. ABORT markers at or after
    /// `rebuild_aborted_from` are entered into the aborted-transaction index again on
    /// the way.
    fn load_producer_state(&mut self, rebuild_aborted_from: i64) -> Result<(), LogError> {
        self.producer_state.clear();
        let stale: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|&o| o > self.log_end_offset || o < self.log_start_offset)
            .collect();
        for offset in stale {
            self.delete_snapshot(offset)?;
        }
        let mut from = self.log_start_offset;
        let usable = rebuild_aborted_from.min(self.log_end_offset);
        while let Some(&offset) = self.snapshots.range(..=usable).next_back() {
            match producer_state::read_snapshot(&self.dir, offset) {
                Ok(loaded) => {
                    if let Some(e) = loaded.batches_ignored {
                        // Each producer keeps its last batch only (as Kafka loads it);
                        // the batches replayed below come after it as usual.
                        warn!(
                            "Ignoring producer batches {} of {}: {e}",
                            producer_state::batches_path(&self.dir, offset).display(),
                            self.name
                        );
                        producer_state::delete_batches(&self.dir, offset)?;
                    }
                    self.producer_state = loaded.state;
                    from = offset;
                    break;
                }
                Err(e) => {
                    warn!(
                        "Ignoring producer snapshot {} of {}: {e}",
                        producer_state::snapshot_path(&self.dir, offset).display(),
                        self.name
                    );
                    self.delete_snapshot(offset)?;
                }
            }
        }
        let first = self.segment_index_for(from);
        for segment in &mut self.segments[first..] {
            let start = segment
                .find_batch(from)?
                .map_or(segment.size(), |(pos, _)| pos);
            let state = &mut self.producer_state;
            let mut markers = Vec::new();
            segment.for_each_header(start, |pos, h| {
                if h.base_offset >= from {
                    if let Some(first_offset) = state.update(h) {
                        markers.push((pos, *h, first_offset, state.first_unstable_offset()));
                    }
                }
                Ok(())
            })?;
            // Markers are read whole: their coordinator epoch (the zombie fence of
            // later markers) and, past the trusted part, whether they abort.
            for (pos, h, first_offset, first_unstable) in markers {
                let bytes = segment.read_bytes(pos, h.size)?;
                let Some(marker) = RecordBatch::new(&bytes)
                    .ok()
                    .and_then(|b| end_txn_marker(&b))
                else {
                    continue;
                };
                state.set_coordinator_epoch(h.producer_id, marker.coordinator_epoch);
                if marker.kind == ControlRecordType::Abort && h.base_offset >= rebuild_aborted_from
                {
                    let entry = AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset,
                        last_offset: h.base_offset,
                        last_stable_offset: first_unstable.unwrap_or(h.next_offset()),
                    };
                    segment.txn_index.append(entry)?;
                    self.aborted.push(entry);
                }
            }
        }
        Ok(())
    }

    /// Delete the snapshot at `offset` and its companion file.
    fn delete_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        self.snapshots.remove(&offset);
        producer_state::delete_batches(&self.dir, offset)?;
        let path = producer_state::snapshot_path(&self.dir, offset);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_context("delete", &path)(e).into()),
        }
    }

    /// Snapshot the producers at `offset`: Kafka's `.snapshot` and, when some producer
    /// has more than one cached batch, Ottla's companion with the older ones.
    fn take_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        let written = producer_state::write_snapshot(&self.dir, offset, &self.producer_state)?;
        self.snapshots.insert(offset);
        for (path, file) in written {
            self.unsynced_snapshots
                .push(SyncTarget::new(Arc::new(file), path));
        }
        self.dir_unsynced = true;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// The next offset to be assigned (LEO).
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
    /// Everything below this offset is on disk (fsynced); pass it back to [`Log::open`]
    /// after a crash. Advanced when a flush finishes ([`Log::finish_flush`]).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }
    /// Where the cleaner's next pass starts, for `cleaner-offset-checkpoint`: the first
    /// offset never cleaned; `None` for a log that is not compacted.
    pub fn cleaner_checkpoint(&self) -> Option<i64> {
        self.config
            .compact
            .then_some(self.first_dirty_offset.max(self.log_start_offset))
    }

    /// Resume cleaning from a checkpointed first dirty offset (clamped to the log: a
    /// truncation or a torn tail since leaves less to trust), so that a restart does not
    /// treat the whole log as dirty.
    pub fn resume_cleaning_from(&mut self, first_dirty_offset: i64) {
        self.first_dirty_offset =
            first_dirty_offset.clamp(self.log_start_offset, self.log_end_offset);
    }

    /// Close the segment files not used since the previous call (a second-chance sweep,
    /// see `crate::handle`); returns how many were closed. Needs only shared access, so
    /// the owner may sweep under a read lock while fetches go on.
    pub fn close_idle_files(&self) -> usize {
        self.segments.iter().map(Segment::close_idle_files).sum()
    }
    /// Heap bytes held by the sealed segments' index summaries (see `crate::index`):
    /// only those searched since the previous idle sweep keep one, so this is bounded
    /// by the segments in use, not by the segments in the log.
    pub fn resident_index_summary_bytes(&self) -> usize {
        self.segments.iter().map(Segment::index_summary_bytes).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(Segment::base_offset).collect()
    }
    /// The first offset of the oldest open transaction: read_committed readers stop
    /// there (the last stable offset is the lower of it and the high watermark).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producer_state.first_unstable_offset()
    }

    /// The aborted transactions a read_committed fetch from `from` up to `upper` (the
    /// end of what it returns) must report: those ending at or after `from` and
    /// starting before `upper` (Kafka's `collectAbortedTransactions`).
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|e| e.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|e| e.first_offset < upper)
            .copied()
            .collect()
    }

    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producer_state
    }
    /// The first offset of each leader epoch in the log.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.leader_epochs
    }
    /// OffsetsForLeaderEpoch: (the largest epoch <= `epoch`, the offset where it ended),
    /// or (-1, -1) when unknown; the latest epoch ends at the log end offset. See
    /// [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.leader_epochs
            .end_offset_for(epoch, self.log_end_offset)
    }
    /// The leader epoch `offset` was written in; `None` before the first known epoch.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.leader_epochs.epoch_for_offset(offset)
    }
    /// The epoch of the latest leader that appended to the log, if any is known.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epochs.latest_epoch()
    }

    /// Index of the segment that would hold `offset`: the last one whose base is <= it.
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// Offset after segment `i`'s last possible offset: the next segment's base, or LEO.
    fn segment_end(&self, i: usize) -> i64 {
        self.segments
            .get(i + 1)
            .map_or(self.log_end_offset, Segment::base_offset)
    }

    /// The segment appends go to. Always present, except after an I/O failure in the
    /// middle of replacing segments, which is then reported instead of panicking.
    fn active(&self) -> Result<&Segment, LogError> {
        self.segments.last().ok_or_else(no_active_segment)
    }
    fn active_mut(&mut self) -> Result<&mut Segment, LogError> {
        self.segments.last_mut().ok_or_else(no_active_segment)
    }

    fn segment_limit(&self) -> u64 {
        self.config.segment_bytes.clamp(1, MAX_SEGMENT_BYTES)
    }

    /// Append one validated v2 batch as the leader.
    ///
    /// The producer-state check runs first, so a fenced, out-of-order or duplicate batch
    /// never gets offsets; a duplicate answers with the offsets of the original append.
    /// Then the base offset becomes the log end offset and the partition leader epoch is
    /// set (neither is covered by the CRC), the active segment is rolled if needed, and
    /// the bytes are appended exactly as they are.
    pub fn append_as_leader(
        &mut self,
        batch: &mut [u8],
        leader_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        self.append_checked(batch, leader_epoch, true)
    }

    /// Append one batch written by one of the broker's coordinators (Kafka's
    /// `AppendOrigin.COORDINATOR`): transactional offset commits and transaction
    /// markers carry a producer id but no sequence, so only the epoch is checked.
    pub fn append_as_coordinator(
        &mut self,
        batch: &mut [u8],
        leader_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        self.append_checked(batch, leader_epoch, false)
    }

    fn append_checked(
        &mut self,
        batch: &mut [u8],
        leader_epoch: i32,
        from_client: bool,
    ) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let (h, marker) = {
            let view = RecordBatch::new(batch)?;
            let h = BatchHeader::from_view(&view);
            (h, h.is_control().then(|| end_txn_marker(&view)).flatten())
        };
        if h.records_count <= 0 {
            return Err(BatchError::InconsistentCount {
                count: h.records_count,
                last_offset_delta: h.last_offset_delta,
            }
            .into());
        }
        if h.size as u64 > self.segment_limit() {
            return Err(LogError::BatchTooLarge {
                size: h.size,
                segment_bytes: self.config.segment_bytes,
            });
        }
        let check = if from_client {
            self.producer_state.check_leader_append(&h)?
        } else {
            let check = self.producer_state.check_coordinator_append(&h)?;
            if let Some(marker) = marker {
                self.producer_state
                    .check_marker_coordinator_epoch(h.producer_id, marker.coordinator_epoch)?;
            }
            check
        };
        if let ProducerCheck::Duplicate(original) = check {
            // A retry of a batch whose policy flush failed or is still running is
            // acknowledged only once the original is on disk.
            self.duplicate_awaits_flush |=
                self.flushes_before_acknowledging() && self.recovery_point <= original.last_offset;
            return Ok(AppendInfo {
                first_offset: original.first_offset,
                last_offset: original.last_offset,
                max_timestamp: original.timestamp,
                log_append_time: NO_TIMESTAMP,
                log_start_offset: self.log_start_offset,
                duplicate: true,
            });
        }
        let now = now_ms();
        let base_offset = self.log_end_offset;
        let h = BatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            ..h
        };
        self.maybe_roll(&h, base_offset, now)?;
        {
            let mut m = RecordBatchMut::new(batch)?;
            m.set_base_offset(base_offset);
            m.set_partition_leader_epoch(leader_epoch);
        }
        self.append_batch(batch, &h, marker)?;
        if leader_epoch >= 0 {
            self.leader_epochs.assign(leader_epoch, base_offset)?;
        }
        Ok(AppendInfo {
            first_offset: base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
            log_append_time: if h.is_log_append_time() {
                h.max_timestamp
            } else {
                NO_TIMESTAMP
            },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Append batches that already carry their offsets (a follower copying its leader).
    /// Every batch is checked (structure, CRC) and offsets must not go backwards from the
    /// log end before anything is written; the producer state is updated, not checked,
    /// and the leader-epoch cache takes the epochs the leader stamped on the batches.
    pub fn append_as_follower(&mut self, batches: &[u8]) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let mut parsed: Vec<(usize, BatchHeader)> = Vec::new();
        let mut expected = self.log_end_offset;
        let mut iter = BatchIter::new(batches);
        loop {
            let start = iter.position();
            let Some(batch) = iter.next() else { break };
            let batch = batch?;
            batch.validate()?;
            let h = BatchHeader::from_view(&batch);
            if h.base_offset < expected {
                return Err(LogError::UnexpectedAppendOffset {
                    expected_at_least: expected,
                    got: h.base_offset,
                });
            }
            if h.size as u64 > self.segment_limit() {
                return Err(LogError::BatchTooLarge {
                    size: h.size,
                    segment_bytes: self.config.segment_bytes,
                });
            }
            if h.last_offset() == i64::MAX {
                return Err(LogError::Corrupt(format!(
                    "batch offset {} overflows",
                    h.base_offset
                )));
            }
            expected = h.next_offset();
            parsed.push((start, h));
        }
        let (Some(&(_, first)), Some(&(_, last))) = (parsed.first(), parsed.last()) else {
            return Ok(AppendInfo {
                first_offset: self.log_end_offset,
                last_offset: self.log_end_offset - 1,
                max_timestamp: NO_TIMESTAMP,
                log_append_time: NO_TIMESTAMP,
                log_start_offset: self.log_start_offset,
                duplicate: false,
            });
        };
        let now = now_ms();
        let mut max_timestamp = NO_TIMESTAMP;
        for (start, h) in &parsed {
            self.maybe_roll(h, h.base_offset, now)?;
            let bytes = &batches[*start..*start + h.size];
            let marker = h
                .is_control()
                .then(|| {
                    RecordBatch::new(bytes)
                        .ok()
                        .and_then(|b| end_txn_marker(&b))
                })
                .flatten();
            self.append_batch(bytes, h, marker)?;
            if h.partition_leader_epoch >= 0 {
                self.leader_epochs
                    .assign(h.partition_leader_epoch, h.base_offset)?;
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        Ok(AppendInfo {
            first_offset: first.base_offset,
            last_offset: last.last_offset(),
            max_timestamp,
            log_append_time: NO_TIMESTAMP,
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Write one batch (offsets final) to the active segment and account for it;
    /// `marker` is the batch's transaction marker, decoded once by the caller.
    fn append_batch(
        &mut self,
        bytes: &[u8],
        h: &BatchHeader,
        marker: Option<EndTxnMarker>,
    ) -> Result<(), LogError> {
        let interval = self.config.index_interval_bytes;
        self.active_mut()?.append(bytes, h, interval)?;
        self.log_end_offset = h.next_offset();
        if let Some(first_offset) = self.producer_state.update(h) {
            if let Some(marker) = marker {
                self.producer_state
                    .set_coordinator_epoch(h.producer_id, marker.coordinator_epoch);
            }
            if marker.map(|m| m.kind) == Some(ControlRecordType::Abort) {
                // Kafka's `lastStableOffset(completedTxn)`: the oldest transaction still
                // open, or just past this marker.
                let entry = AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset,
                    last_offset: h.base_offset,
                    last_stable_offset: self
                        .producer_state
                        .first_unstable_offset()
                        .unwrap_or(h.next_offset()),
                };
                self.active_mut()?.txn_index.append(entry)?;
                self.aborted.push(entry);
            }
        }
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(i64::from(h.records_count.max(1)));
        Ok(())
    }

    /// Kafka's `shouldRoll`: the batch would overflow `segment.bytes`, the segment is older
    /// than `segment.ms`, or its offsets would not fit the int32 relative offsets of the
    /// index. A new segment starts at `roll_offset` (the batch's base offset).
    fn maybe_roll(&mut self, h: &BatchHeader, roll_offset: i64, now: i64) -> Result<(), LogError> {
        let limit = self.segment_limit();
        let active = self.active()?;
        let full = active.size() > 0 && active.size() + h.size as u64 > limit;
        let old = active.size() > 0
            && active.time_waited_for_roll(now, h.max_timestamp) > self.config.segment_ms;
        let overflow =
            !active.can_hold_offset(h.base_offset) || !active.can_hold_offset(h.last_offset());
        if full || old || overflow {
            self.roll(roll_offset, now)?;
        }
        Ok(())
    }

    /// Seal the active segment (final time index entry) and start a new one at
    /// `new_base`, with a producer snapshot at that offset as Kafka takes on roll.
    /// Nothing waits for the disk here: the sealed segment, the new files and the
    /// snapshot are fsynced by the next flush (Kafka schedules its roll flush too).
    fn roll(&mut self, new_base: i64, now: i64) -> Result<(), LogError> {
        let active = self.active_mut()?;
        if active.size() == 0 {
            if active.base_offset() == new_base {
                return Ok(());
            }
            // An empty active segment is replaced rather than left as an empty gap.
            if let Some(empty) = self.segments.pop() {
                empty.delete_files()?;
            }
        } else {
            active.seal()?;
            self.rolled = true;
        }
        self.segments
            .push(Segment::create(&self.dir, new_base, now)?);
        self.dir_unsynced = true;
        self.take_snapshot(new_base)?;
        Ok(())
    }

    /// Whether the log wants a flush now (see [`Log::prepare_flush`]), and why.
    pub fn flush_wanted(&self, now: i64) -> Option<FlushReason> {
        if self.unflushed_messages >= self.config.flush_interval_messages
            || self.duplicate_awaits_flush
        {
            Some(FlushReason::Policy)
        } else if self.rolled
            || now.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms
        {
            Some(FlushReason::Background)
        } else {
            None
        }
    }

    /// Whole batches starting with the one containing `start_offset`, up to `max_bytes`
    /// (but at least the first batch when `min_one_batch`, KIP-74), never a batch whose
    /// base offset is >= `max_offset`: as slices of the segment files (see
    /// [`LogSlices`]), which may span segments. Only batch headers are read.
    pub fn slice(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<LogSlices, LogError> {
        self.check_range(start_offset)?;
        let max_offset = max_offset.min(self.log_end_offset);
        let mut out = LogSlices::default();
        let mut i = self.segment_index_for(start_offset);
        while i < self.segments.len() && (out.is_empty() || out.len() < max_bytes) {
            let segment = &self.segments[i];
            let whole_segment_visible = self.segment_end(i) <= max_offset;
            i += 1;
            if segment.base_offset() >= max_offset {
                break;
            }
            let Some((position, first)) = segment.find_batch(start_offset)? else {
                // Nothing at or after the offset here (a gap): try the next segment.
                continue;
            };
            let limit = if whole_segment_visible {
                segment.size()
            } else {
                segment.position_limit(max_offset)?
            };
            let (slice, exhausted) = segment.slice_batches(
                position,
                &first,
                max_bytes.saturating_sub(out.len()),
                limit,
                min_one_batch && out.is_empty(),
            )?;
            if let Some(slice) = slice {
                out.push(slice);
            }
            if !exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// [`Log::slice`], read into memory (the tests' view of the log).
    #[cfg(test)]
    pub(crate) fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<bytes::Bytes, LogError> {
        let slices = self.slice(start_offset, max_bytes, max_offset, min_one_batch)?;
        slices
            .to_bytes()
            .map_err(|e| io_context("read", &self.dir)(e).into())
    }

    fn check_range(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        Ok(())
    }

    /// ListOffsets by timestamp: the first record whose timestamp is >= `timestamp`, as
    /// (offset, record timestamp), among offsets < `max_offset`.
    ///
    /// The first segment whose largest timestamp reaches `timestamp` holds it (all earlier
    /// records are older); inside it the time index and offset index give a start
    /// position, batch headers are walked to the first batch whose max timestamp reaches
    /// it, and only that batch is decoded.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        max_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let max_offset = max_offset.min(self.log_end_offset);
        for segment in &self.segments {
            if segment.base_offset() >= max_offset {
                break;
            }
            if segment.max_timestamp() < timestamp {
                continue;
            }
            let start = segment.find_batch(segment.time_index_lookup(timestamp))?;
            let Some((mut position, _)) = start else {
                continue;
            };
            while let Some(h) = segment.header_at(position)? {
                if h.base_offset >= max_offset {
                    return Ok(None);
                }
                if h.max_timestamp >= timestamp {
                    if h.is_log_append_time() {
                        // Every record carries the batch's timestamp.
                        return Ok(Some((h.base_offset, h.max_timestamp)));
                    }
                    // Stops at the first record past the bound (None) or at the answer.
                    let outcome = segment.scan_batch(position, &h, |r| {
                        if r.offset >= max_offset {
                            ControlFlow::Break(None)
                        } else if r.timestamp >= timestamp {
                            ControlFlow::Break(Some((r.offset, r.timestamp)))
                        } else {
                            ControlFlow::Continue(())
                        }
                    })?;
                    if let Some(found) = outcome {
                        return Ok(found);
                    }
                }
                position += h.size as u64;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (offset, timestamp) of the record with the largest
    /// timestamp (the first one if tied) among offsets < `max_offset`; `None` when no
    /// record there has a timestamp (empty log, or only NO_TIMESTAMP records).
    pub fn offset_of_max_timestamp(&self, max_offset: i64) -> Result<Option<(i64, i64)>, LogError> {
        let max_offset = max_offset.min(self.log_end_offset);
        // (timestamp, segment index, an offset inside the batch holding it)
        let mut best: Option<(i64, usize, i64)> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.base_offset() >= max_offset {
                break;
            }
            if segment.max_timestamp() <= NO_TIMESTAMP {
                continue;
            }
            let candidate = if segment.offset_of_max_timestamp() < max_offset {
                // The segment's maximum lies wholly below the bound: the common case.
                Some((segment.max_timestamp(), segment.offset_of_max_timestamp()))
            } else {
                self.max_timestamp_below(segment, max_offset)?
            };
            if let Some((ts, offset)) = candidate {
                if ts > NO_TIMESTAMP && best.is_none_or(|(b, _, _)| ts > b) {
                    best = Some((ts, i, offset));
                }
            }
        }
        let Some((ts, i, offset)) = best else {
            return Ok(None);
        };
        let segment = &self.segments[i];
        let Some((position, h)) = segment.find_batch(offset)? else {
            return Err(LogError::Corrupt(format!(
                "{}: no batch holds offset {offset}",
                segment.log_path().display()
            )));
        };
        if h.is_log_append_time() {
            return Ok(Some((h.base_offset, h.max_timestamp)));
        }
        let found = segment.scan_batch(position, &h, |r| {
            if r.timestamp == ts && r.offset < max_offset {
                ControlFlow::Break((r.offset, r.timestamp))
            } else {
                ControlFlow::Continue(())
            }
        })?;
        // A header whose max timestamp no record carries: answer with the batch.
        Ok(Some(found.unwrap_or((h.base_offset, ts))))
    }

    /// Largest timestamp among the records of `segment` below `max_offset`, walking its
    /// headers and decoding only a batch that straddles the bound.
    fn max_timestamp_below(
        &self,
        segment: &Segment,
        max_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let mut best: Option<(i64, i64)> = None;
        let mut consider = |ts: i64, offset: i64| {
            if best.is_none_or(|(b, _)| ts > b) {
                best = Some((ts, offset));
            }
        };
        let mut position = 0;
        while let Some(h) = segment.header_at(position)? {
            if h.base_offset >= max_offset {
                break;
            }
            // A batch wholly below the bound, or one in log-append time (all its records
            // carry the header's timestamp), is judged by its header alone.
            if h.last_offset() < max_offset || h.is_log_append_time() {
                consider(h.max_timestamp, h.base_offset);
            } else {
                let mut ts: Option<i64> = None;
                segment.scan_batch(position, &h, |r| {
                    if r.offset < max_offset {
                        ts = Some(ts.map_or(r.timestamp, |t| t.max(r.timestamp)));
                    }
                    ControlFlow::<()>::Continue(())
                })?;
                if let Some(ts) = ts {
                    consider(ts, h.base_offset);
                }
            }
            position += h.size as u64;
        }
        Ok(best)
    }

    /// Step 1 of a flush (see [`crate::flush`]): gather everything written since the
    /// last plan. No disk wait; the caller syncs the plan without the log's lock.
    pub fn prepare_flush(&mut self) -> FlushPlan {
        let mut taken = std::mem::take(&mut self.unsynced_snapshots);
        for segment in &mut self.segments {
            segment.take_unsynced(&mut taken);
        }
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms();
        self.rolled = false;
        self.duplicate_awaits_flush = false;
        let id = self.next_plan_id;
        self.next_plan_id += 1;
        self.in_flight.push(InFlight {
            id,
            end_offset: self.log_end_offset,
            generation: self.generation,
            files: taken,
            dir: std::mem::take(&mut self.dir_unsynced),
            finished: false,
        });
        // This plan's files and those of every plan still in flight (see crate::flush),
        // each once: the active `.log` is in most of them.
        let mut files: Vec<SyncTarget> = Vec::new();
        for file in self.in_flight.iter().flat_map(|f| &f.files) {
            if !files.iter().any(|taken| taken.is_same_handle(file)) {
                files.push(file.clone());
            }
        }
        FlushPlan {
            id,
            end_offset: self.log_end_offset,
            files,
            dir: self
                .in_flight
                .iter()
                .any(|f| f.dir)
                .then(|| self.dir.clone()),
        }
    }

    /// Step 3 of a flush: `synced` is what [`FlushPlan::sync`] returned; returns the
    /// recovery point, or an error if this or any earlier fsync of the log failed.
    ///
    /// Plans move the recovery point in the order they were made: one that finishes
    /// while an older one is still syncing waits for it. Linux reports a write-back
    /// error to one fsync of a file only, so a younger plan's success says nothing if
    /// the older one then fails. A plan overtaken by a truncation moves nothing.
    pub fn finish_flush(
        &mut self,
        plan: FlushPlan,
        synced: Result<(), LogError>,
    ) -> Result<i64, LogError> {
        if let Err(e) = synced {
            self.in_flight.retain(|f| f.id != plan.id);
            self.fail_sync(&e);
            return Err(e);
        }
        if let Some(entry) = self.in_flight.iter_mut().find(|f| f.id == plan.id) {
            entry.finished = true;
        }
        while self.in_flight.first().is_some_and(|f| f.finished) {
            let done = self.in_flight.remove(0);
            if done.generation == self.generation && !self.sync_failed {
                let end = done.end_offset.min(self.log_end_offset);
                self.recovery_point = self.recovery_point.max(end);
            }
        }
        if self.sync_failed {
            return Err(self.sync_failed_error());
        }
        Ok(self.recovery_point)
    }

    /// Refuse writes once an fsync failed: Kafka takes the whole log directory offline
    /// then, and a record appended now could be acknowledged on top of data the failed
    /// fsync may have dropped.
    fn check_writable(&self) -> Result<(), LogError> {
        if self.sync_failed {
            return Err(self.sync_failed_error());
        }
        Ok(())
    }

    fn sync_failed_error(&self) -> LogError {
        LogError::Io(io::Error::other(format!(
            "an earlier fsync of {} failed; its data may not be on disk, and it takes no \
             writes until restart",
            self.name
        )))
    }

    /// After an fsync failed, or a file could not be handed to a flush, the recovery
    /// point stays where it is until restart (whose recovery scans from there), and
    /// every later flush reports the failure (as Kafka takes the log directory offline).
    fn fail_sync(&mut self, e: &LogError) {
        if !self.sync_failed {
            tracing::error!(
                "Flushing {} failed; its recovery point stays at {} until restart: {e}",
                self.name,
                self.recovery_point
            );
        }
        self.sync_failed = true;
    }

    /// Whether an append may wait for a flush before it is acknowledged
    /// (`flush.messages` is set).
    fn flushes_before_acknowledging(&self) -> bool {
        self.config.flush_interval_messages != i64::MAX
    }

    /// Prepare, sync and finish a flush in one go, holding `&mut self` throughout (for
    /// callers without a lock to release, such as tests and [`Log::close`]).
    pub fn flush(&mut self) -> Result<i64, LogError> {
        let plan = self.prepare_flush();
        let synced = plan.sync();
        self.finish_flush(plan, synced)
    }

    /// Delete old segments per `retention.ms` and `retention.bytes`; see
    /// [`Log::apply_retention_below`]. Bounded by the log end offset.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.apply_retention_below(now_ms, self.log_end_offset)
    }

    /// Kafka's `deleteOldSegments`: whole segments only, oldest first, and only segments
    /// that end at or below `upper_bound_offset` (the high watermark, so nothing a
    /// follower or consumer still needs goes). First those whose largest timestamp is
    /// more than `retention.ms` old, then the oldest while the log would still be at least
    /// `retention.bytes` without them. If every segment qualifies, the active one is rolled
    /// first so the log keeps an (empty) active segment at its end offset.
    pub fn apply_retention_below(
        &mut self,
        now_ms: i64,
        upper_bound_offset: i64,
    ) -> Result<usize, LogError> {
        self.remove_deleted_files(now_ms);
        let mut deleted = 0;
        if self.config.retention_ms >= 0 {
            let retention_ms = self.config.retention_ms;
            let mut count = 0;
            for i in 0..self.segments.len() {
                if !self.deletable(i, upper_bound_offset) {
                    break;
                }
                let largest = self.segments[i].largest_timestamp_for_retention()?;
                if now_ms.saturating_sub(largest) <= retention_ms {
                    break;
                }
                count += 1;
            }
            deleted += self.delete_oldest_segments(count, RetentionReason::Time, now_ms)?;
        }
        if self.config.retention_bytes >= 0 {
            let mut excess =
                i64::try_from(self.size_bytes()).unwrap_or(i64::MAX) - self.config.retention_bytes;
            let mut count = 0;
            for i in 0..self.segments.len() {
                let size = i64::try_from(self.segments[i].size()).unwrap_or(i64::MAX);
                if excess < size || !self.deletable(i, upper_bound_offset) {
                    break;
                }
                excess -= size;
                count += 1;
            }
            deleted += self.delete_oldest_segments(count, RetentionReason::Size, now_ms)?;
        }
        Ok(deleted)
    }

    /// Move the log start offset up to `offset` (at most the log end), as Kafka's
    /// `maybeIncrementLogStartOffset` does for DeleteRecords (`reason`
    /// ClientRecordDeletion), for a follower whose leader's start moved
    /// (LeaderOffsetIncremented) and for a start restored from its checkpoint: offsets
    /// below it become unreadable at once, and the whole segments below it are deleted.
    /// Returns whether the start moved.
    pub fn increment_log_start_offset(
        &mut self,
        offset: i64,
        reason: &str,
    ) -> Result<bool, LogError> {
        let offset = offset.min(self.log_end_offset);
        if offset <= self.log_start_offset {
            return Ok(false);
        }
        info!(
            "Incremented log start offset of {} to {offset} due to {reason}",
            self.name
        );
        self.log_start_offset = offset;
        self.recovery_point = self.recovery_point.max(offset);
        self.first_dirty_offset = self.first_dirty_offset.max(offset);
        self.leader_epochs.truncate_from_start(offset)?;
        self.aborted.retain(|e| e.last_offset >= offset);
        self.delete_segments_below(offset)?;
        Ok(true)
    }

    /// Delete the whole segments that lie entirely below `offset`: those whose next
    /// segment starts at or below it. The segment holding `offset` and the active segment
    /// always stay, so the log start offset becomes the base of the first segment kept
    /// (at most `offset`). Returns how many segments went.
    ///
    /// Kafka's `deleteLogStartOffsetBreachedSegments`, which KRaft runs on
    /// `__cluster_metadata` once a snapshot covers the offsets below `offset`
    /// (`KafkaMetadataLog.deleteBeforeSnapshot`); the Raft log store calls it when
    /// openraft purges entries a snapshot holds. Unlike retention it looks at neither
    /// time nor size, and the owner, not a config, chooses the offset. As with
    /// retention, the directory is fsynced by the next flush: a deletion lost in a crash
    /// only brings back a segment the owner already treats as purged.
    pub fn delete_segments_below(&mut self, offset: i64) -> Result<usize, LogError> {
        let count = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset() <= offset)
            .count();
        self.delete_oldest_segments(count, RetentionReason::LogStartOffset(offset), now_ms())
    }

    /// Remove the `.deleted` files whose `file.delete.delay.ms` has passed (Kafka's
    /// scheduled `deleteSegmentFiles`); returns how many segments' files went.
    pub fn remove_deleted_files(&mut self, now_ms: i64) -> usize {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_deletions)
            .into_iter()
            .partition(|(at, _)| *at <= now_ms);
        self.pending_deletions = later;
        for (_, paths) in &due {
            for path in paths {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => warn!("Failed to delete {}: {e}", path.display()),
                }
            }
            if let Some(log) = paths.first() {
                info!("Deleted log segment file {}", log.display());
            }
        }
        due.len()
    }

    /// Remove the files of segments renamed `.deleted` (one `Vec` per segment, its
    /// `.log` first) after `file.delete.delay.ms` from `now` (Kafka's
    /// `asyncDeleteSegment`), or at once when the delay is 0.
    fn schedule_deletion(&mut self, segments: Vec<Vec<PathBuf>>, now: i64) {
        let due = now.saturating_add(self.config.file_delete_delay_ms.max(0));
        self.pending_deletions
            .extend(segments.into_iter().map(|paths| (due, paths)));
        if self.config.file_delete_delay_ms <= 0 {
            self.remove_deleted_files(now);
        }
    }

    /// Segment `i` may go: it is not an empty active segment and it ends at or below the bound.
    fn deletable(&self, i: usize, upper_bound_offset: i64) -> bool {
        let segment = &self.segments[i];
        let is_last = i + 1 == self.segments.len();
        !(is_last && segment.size() == 0) && self.segment_end(i) <= upper_bound_offset
    }

    fn delete_oldest_segments(
        &mut self,
        count: usize,
        reason: RetentionReason,
        now: i64,
    ) -> Result<usize, LogError> {
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            self.roll(self.log_end_offset, now)?;
        }
        // Never the active segment itself (the roll above made a new one if needed).
        let count = count.min(self.segments.len().saturating_sub(1));
        let mut remaining = self.size_bytes();
        for segment in self.segments.drain(..count).collect::<Vec<_>>() {
            remaining -= segment.size();
            match reason {
                RetentionReason::Time => info!(
                    "Deleting segment {} of {} due to log retention time {}ms breach based on the largest record \
                     timestamp in the segment",
                    segment.base_offset(),
                    self.name,
                    self.config.retention_ms
                ),
                RetentionReason::Size => info!(
                    "Deleting segment {} of {} due to log retention size {} breach. Log size after deletion will \
                     be {remaining}.",
                    segment.base_offset(),
                    self.name,
                    self.config.retention_bytes
                ),
                RetentionReason::LogStartOffset(offset) => info!(
                    "Deleting segment {} of {} due to log start offset {offset} breach",
                    segment.base_offset(),
                    self.name
                ),
            }
            if self.config.file_delete_delay_ms > 0 {
                let renamed = segment.rename_for_deletion(DELETED_SUFFIX)?;
                self.schedule_deletion(vec![renamed], now);
            } else {
                segment.delete_files()?;
            }
        }
        let first_base = self
            .segments
            .first()
            .ok_or_else(no_active_segment)?
            .base_offset();
        self.log_start_offset = self.log_start_offset.max(first_base);
        self.recovery_point = self.recovery_point.max(self.log_start_offset);
        // Kafka's `maybeIncrementLogStartOffset`: the log's first offset keeps its epoch.
        self.leader_epochs
            .truncate_from_start(self.log_start_offset)?;
        let start = self.log_start_offset;
        self.aborted.retain(|e| e.last_offset >= start);
        let obsolete: Vec<i64> = self
            .snapshots
            .range(..self.log_start_offset)
            .copied()
            .collect();
        for offset in obsolete {
            self.delete_snapshot(offset)?;
        }
        // A deletion lost in a crash only brings the segment back for the next
        // retention pass, so the directory is synced by the next flush, not here.
        self.dir_unsynced = true;
        Ok(count)
    }

    /// The cleaning this log would get now, if it is compacted and worth cleaning
    /// (see [`crate::cleaner`]): `upper_bound` is the owner's bound (its high
    /// watermark), `force` skips the dirty-ratio test (tests and tools).
    pub fn cleaning_plan(&self, now: i64, upper_bound: i64, force: bool) -> Option<CleaningPlan> {
        if !self.config.compact {
            return None;
        }
        let mut uncleanable = upper_bound.min(self.log_end_offset);
        if let Some(first_unstable) = self.first_unstable_offset() {
            uncleanable = uncleanable.min(first_unstable);
        }
        let first_dirty = self.first_dirty_offset.max(self.log_start_offset);
        let lag_bound = now.saturating_sub(self.config.min_compaction_lag_ms.max(0));
        let max_lag = self.config.max_compaction_lag_ms.max(0);
        let mut sources = Vec::new();
        let (mut dirty_bytes, mut total_bytes) = (0u64, 0u64);
        let mut oldest_dirty = i64::MAX;
        let mut cleanable = true;
        // Every segment but the active one, while it ends below the uncleanable offset
        // and (for dirty ones) is older than the minimum compaction lag. The oldest
        // dirty batch is looked for in every dirty segment but the active one, cleanable
        // or not (Kafka's `maxCompactionDelay`), from each one's first batch (read from
        // the file for a segment loaded from its indexes), ignoring timestamps <= 0.
        for i in 0..self.segments.len().saturating_sub(1) {
            let segment = &self.segments[i];
            let end = self.segment_end(i);
            let dirty = segment.base_offset() >= first_dirty;
            if dirty && max_lag < i64::MAX {
                match segment.first_batch_timestamp() {
                    Ok(Some(first)) if first > 0 => oldest_dirty = oldest_dirty.min(first),
                    Ok(_) => {}
                    Err(e) => {
                        warn!("Not cleaning {}: {e}", self.name);
                        return None;
                    }
                }
            }
            let young = dirty
                && self.config.min_compaction_lag_ms > 0
                && segment.max_timestamp() > lag_bound;
            cleanable = cleanable && end <= uncleanable && !young;
            if !cleanable {
                if max_lag == i64::MAX {
                    break;
                }
                continue;
            }
            total_bytes += segment.size();
            if dirty {
                dirty_bytes += segment.size();
            }
            sources.push(SourceSegment {
                base: segment.base_offset(),
                end,
                size: segment.size(),
                last_modified_ms: cleaner::last_modified_ms(segment.log_path()),
                file: match segment.file() {
                    Ok(file) => file,
                    Err(e) => {
                        warn!("Not cleaning {}: {e}", self.name);
                        return None;
                    }
                },
                path: segment.log_path().to_path_buf(),
                aborted: self
                    .aborted
                    .iter()
                    .filter(|a| a.last_offset >= segment.base_offset() && a.last_offset < end)
                    .copied()
                    .collect(),
            });
        }
        if dirty_bytes == 0 || total_bytes == 0 {
            return None;
        }
        let dirty_ratio = dirty_bytes as f64 / total_bytes as f64;
        // Kafka's `grabFilthiestCompactedLog`: a dirty batch older than the maximum lag
        // (`maxCompactionDelay > 0`), or a dirty ratio strictly above the minimum.
        let overdue = oldest_dirty < now.saturating_sub(max_lag);
        if !force && !overdue && dirty_ratio <= self.config.min_cleanable_dirty_ratio {
            return None;
        }
        let cleanable_end = sources.last().map_or(self.log_start_offset, |s| s.end);
        // Kafka's legacy delete horizon: the last already-cleaned segment's
        // modification time minus delete.retention.ms (none cleaned yet: keep them all).
        let delete_horizon_ms = sources
            .iter()
            .take_while(|s| s.base < first_dirty)
            .last()
            .map_or(0, |s| {
                s.last_modified_ms
                    .saturating_sub(self.config.delete_retention_ms)
            });
        let first_offset = sources.first().map_or(self.log_start_offset, |s| s.base);
        Some(CleaningPlan {
            dir: self.dir.clone(),
            name: self.name.clone(),
            generation: self.generation,
            first_dirty,
            aborted: self
                .aborted
                .iter()
                .filter(|a| a.last_offset >= first_offset && a.first_offset < cleanable_end)
                .copied()
                .collect(),
            sources,
            segment_bytes: self.segment_limit(),
            index_interval_bytes: self.config.index_interval_bytes,
            delete_horizon_ms,
            dirty_ratio,
        })
    }

    /// Swap the segments [`cleaner::clean`] wrote in for the ones they replace (see
    /// [`crate::cleaner`]). Returns whether they were: if the log changed meanwhile in a
    /// way that touched them (truncation, retention, another swap), the cleaned files
    /// are deleted and the log stays as it is.
    ///
    /// This is the part of a cleaning the owner's lock is held for, and it reads and
    /// writes no segment data: the new segments come from [`cleaner::clean`] written,
    /// fsynced, opened and indexed. It checks the plan still holds (in memory), renames
    /// files (`.cleaned` → `.swap` → final names, the replaced segments → `.deleted`),
    /// fsyncs the directory after the commit and at the end (what makes the renames
    /// durable; Kafka's `LocalLog.replaceSegments` does the same under its lock), and
    /// swaps the segments in memory. Files are unlinked only when the swap is abandoned
    /// (the `.cleaned` files) or `file.delete.delay.ms` is 0 (the replaced segments).
    /// How long it took is in [`Log::last_cleaning`].
    pub fn swap_cleaned(&mut self, cleaned: CleanedLog) -> Result<bool, LogError> {
        self.swap_cleaned_with(cleaned, || {})
    }

    /// [`Log::swap_cleaned`], calling `after_commit` once the swap is committed (every
    /// `.swap` file renamed and the directory synced) and before any replaced segment
    /// is deleted: the point a fault-injection test kills the process at.
    pub fn swap_cleaned_with(
        &mut self,
        cleaned: CleanedLog,
        after_commit: impl FnOnce(),
    ) -> Result<bool, LogError> {
        let started = std::time::Instant::now();
        let CleanedLog {
            name,
            generation,
            mut groups,
            end,
            removed_aborts,
            mut stats,
        } = cleaned;
        let still_there = generation == self.generation
            && groups.iter().all(|g| {
                g.sources.iter().all(|&(base, size)| {
                    self.segments
                        .iter()
                        .any(|s| s.base_offset() == base && s.size() == size)
                })
            });
        if !still_there {
            info!(
                "Abandoned cleaning of {}: its segments changed while it was being cleaned",
                self.name
            );
            for g in groups {
                drop(g.segment);
                for suffix in [
                    INDEX_SUFFIX,
                    TIME_INDEX_SUFFIX,
                    TXN_INDEX_SUFFIX,
                    LOG_SUFFIX,
                ] {
                    let path =
                        segment_file(&self.dir, g.base, &join_suffix(suffix, CLEANED_SUFFIX));
                    let _ = fs::remove_file(path);
                }
            }
            return Ok(false);
        }
        // Commit: every group's files become `.swap`, each `.log` last.
        for g in &mut groups {
            g.segment.rename_files(&self.dir, SWAP_SUFFIX)?;
        }
        sync_dir(&self.dir)?;
        after_commit();
        let mut replaced_files = Vec::new();
        for g in groups {
            let first = self
                .segments
                .iter()
                .position(|s| s.base_offset() == g.base)
                .ok_or_else(|| {
                    LogError::Corrupt(format!(
                        "{}: segment {} vanished during a swap",
                        self.name, g.base
                    ))
                })?;
            let replaced: Vec<Segment> = self
                .segments
                .drain(first..first + g.sources.len())
                .collect();
            // Kafka's `replaceSegments`: the replaced segments are renamed `.deleted`
            // (each `.log` first) before the `.swap` files take their names, and
            // removed only after `file.delete.delay.ms`, so a reader still holding
            // one (a fetch's slice) reads it to the end.
            for segment in replaced {
                replaced_files.push(segment.rename_for_deletion(DELETED_SUFFIX)?);
            }
            let mut segment = g.segment;
            segment.rename_files(&self.dir, "")?;
            self.segments.insert(first, segment);
        }
        sync_dir(&self.dir)?;
        self.schedule_deletion(replaced_files, now_ms());
        self.aborted
            .retain(|a| !removed_aborts.contains(&a.last_offset));
        let first_dirty = self.first_dirty_offset;
        self.first_dirty_offset = self.first_dirty_offset.max(end);
        stats.swap_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        cleaner::log_cleaned(&name, &stats, first_dirty, end);
        self.last_cleaning = Some(stats);
        Ok(true)
    }

    /// What the last cleaning swapped into this log did (since it was opened), for
    /// Kafka's cleaner figures: among them how long its swap, the only part of a
    /// cleaning that needs the owner's lock, took ([`CleanerStats::swap_micros`]).
    pub fn last_cleaning(&self) -> Option<&CleanerStats> {
        self.last_cleaning.as_ref()
    }

    /// Remove everything at and after `offset` (follower truncation). The batch holding
    /// `offset` goes whole, so the log end offset afterwards is that batch's base offset
    /// when `offset` falls inside a batch. Leader epochs starting at or after the new end
    /// are forgotten. Below the first segment, the log is emptied and restarts at
    /// `offset` (Kafka's `truncateFullyAndStartAt`).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset {
            return Ok(());
        }
        let first_base = self.segments.first().map_or(offset, Segment::base_offset);
        if offset < first_base {
            return self.truncate_fully_and_start_at(offset);
        }
        self.generation += 1;
        let keep = self.segment_index_for(offset);
        for segment in self.segments.drain(keep + 1..).collect::<Vec<_>>() {
            segment.delete_files()?;
        }
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut()?;
        active.truncate_to(offset, interval)?;
        self.log_end_offset = active.next_offset().unwrap_or(offset);
        sync_dir(&self.dir)?;
        self.recovery_point = self.recovery_point.min(self.log_end_offset);
        self.first_dirty_offset = self.first_dirty_offset.min(self.log_end_offset);
        let end = self.log_end_offset;
        if self.aborted.last().is_some_and(|e| e.last_offset >= end) {
            self.aborted.retain(|e| e.last_offset < end);
            let active = self.active_mut()?;
            let base = active.base_offset();
            let kept: Vec<AbortedTxn> = active
                .txn_index
                .read()?
                .into_iter()
                .filter(|e| e.last_offset < end && e.last_offset >= base)
                .collect();
            active.txn_index.rewrite(&kept)?;
        }
        // Nothing to rebuild: the aborted entries below the new end are all still there.
        self.load_producer_state(i64::MAX)?;
        // The end, not `offset`: a batch straddling `offset` went whole, and an epoch
        // starting at its base has no data left either.
        self.leader_epochs.truncate_from_end(self.log_end_offset)?;
        Ok(())
    }

    /// Delete every segment and restart the log, empty, at `offset` (a follower whose
    /// fetch offset fell out of the leader's range, or that must start at the leader's
    /// log start offset). Producer state, snapshots and leader epochs go with the data.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        self.generation += 1;
        for segment in std::mem::take(&mut self.segments) {
            segment.delete_files()?;
        }
        self.segments
            .push(Segment::create(&self.dir, offset, now_ms())?);
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.recovery_point = offset;
        self.first_dirty_offset = offset;
        self.unflushed_messages = 0;
        sync_dir(&self.dir)?;
        let snapshots: Vec<i64> = self.snapshots.iter().copied().collect();
        for snapshot in snapshots {
            self.delete_snapshot(snapshot)?;
        }
        self.producer_state.clear();
        self.aborted.clear();
        self.leader_epochs.clear()?;
        Ok(())
    }

    /// Write a producer snapshot at the log end, as Kafka does when it closes a log, so
    /// the next open reads the producer state instead of walking the active segment's
    /// batch headers. Like a roll's snapshot, it is fsynced by the next flush.
    pub fn snapshot_producers_at_log_end(&mut self) -> Result<(), LogError> {
        if self.snapshots.contains(&self.log_end_offset) {
            return Ok(());
        }
        self.take_snapshot(self.log_end_offset)
    }

    /// Snapshot the producers, flush, and close the files.
    pub fn close(mut self) -> Result<(), LogError> {
        self.prepare_close()?;
        self.flush()?;
        Ok(())
    }

    /// What a clean shutdown writes before its last flush: a producer snapshot at the
    /// log end ([`Log::snapshot_producers_at_log_end`]) and, as Kafka's
    /// `LogSegment.close` does, the largest timestamp at the end of the active
    /// segment's time index, so the next open finds its indexes up to date and does
    /// not rewrite them.
    pub fn prepare_close(&mut self) -> Result<(), LogError> {
        self.active_mut()?.append_max_timestamp_entry()?;
        self.snapshot_producers_at_log_end()
    }

    /// Delete the partition directory and everything in it (topic deletion).
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).map_err(io_context("delete", &dir))?;
        Ok(())
    }

    /// Forget producers idle for `expiration_ms` (`producer.id.expiration.ms`).
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producer_state.remove_expired(now_ms, expiration_ms)
    }
}

fn no_active_segment() -> LogError {
    LogError::Io(io::Error::other(
        "the log has no active segment after an earlier I/O failure",
    ))
}

/// What a partition directory holds, by kind.
struct DirectoryFiles {
    logs: BTreeSet<i64>,
    snapshots: BTreeSet<i64>,
}

/// List the directory: segment logs and snapshots by offset. Leftovers of interrupted
/// deletions, cleanings and snapshot writes are removed, as are index files without a
/// log (Kafka does the same) and snapshot companions without their snapshot; unknown
/// files are left alone.
///
/// The directory is created if missing (a new log), and listed once unless a crash
/// left a swap to complete: opening many logs is bound by these file-system calls.
fn scan_directory(dir: &Path) -> Result<DirectoryFiles, LogError> {
    let mut names = match list_file_names(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_context("create directory", dir))?;
            Vec::new()
        }
        Err(e) => return Err(io_context("list", dir)(e).into()),
    };
    if complete_interrupted_swaps(dir, &names)? {
        names = list_file_names(dir).map_err(io_context("list", dir))?;
    }
    let mut logs = BTreeSet::new();
    let mut snapshots = BTreeSet::new();
    let mut indexes: Vec<(i64, PathBuf)> = Vec::new();
    let mut companions: Vec<(i64, PathBuf)> = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(DELETED_SUFFIX)
            || name.ends_with(&format!(".{CLEANED_SUFFIX}"))
            || name.ends_with(&format!(".{SWAP_SUFFIX}"))
            || name.ends_with(TMP_SUFFIX)
        {
            fs::remove_file(&path).map_err(io_context("delete", &path))?;
            continue;
        }
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        if stem.is_empty()
            || stem.len() > OFFSET_DIGITS
            || !stem.bytes().all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(offset) = stem.parse::<i64>() else {
            continue;
        };
        match suffix {
            LOG_SUFFIX => {
                logs.insert(offset);
            }
            INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX => indexes.push((offset, path)),
            SNAPSHOT_SUFFIX => {
                snapshots.insert(offset);
            }
            BATCHES_SUFFIX => companions.push((offset, path)),
            _ => {}
        }
    }
    for (offset, path) in indexes {
        if !logs.contains(&offset) {
            fs::remove_file(&path).map_err(io_context("delete", &path))?;
        }
    }
    // A crash between writing a companion and its snapshot (or deleting them).
    for (offset, path) in companions {
        if !snapshots.contains(&offset) {
            fs::remove_file(&path).map_err(io_context("delete", &path))?;
        }
    }
    Ok(DirectoryFiles { logs, snapshots })
}

/// `suffix` with `.extra` after it (nothing when `extra` is empty).
fn join_suffix(suffix: &str, extra: &str) -> String {
    if extra.is_empty() {
        suffix.to_string()
    } else {
        format!("{suffix}.{extra}")
    }
}

/// Finish the cleaner swaps a crash interrupted (see [`crate::cleaner`]): a
/// `<base>.log.swap` is committed, so the segments it replaces go and its files take
/// their final names (the `.log` last). `.swap` files without their `.log.swap` were
/// never committed; the caller deletes them with the `.cleaned` ones.
///
/// The segments a swap replaces are those based from its base offset through the last
/// offset of its last batch, as Kafka's `LogLoader.load` deletes the segment files from
/// a swap segment's base offset up to its `readNextOffset`. The start is exact: a
/// cleaned segment is named after the first segment of its group (Kafka's
/// `createNewCleanedSegment(segments.head.baseOffset)` too). The end reaches into the
/// group's last segment, never beyond it, only because the cleaner ends a group with an
/// empty batch in that segment's offsets when none of its records survived: without it
/// the range would stop at the last record kept, the emptied segments after it would
/// stay, and the records the cleaning removed from them (superseded updates, aborted
/// data, tombstones) would come back. Each swap is judged alone, not over the union of
/// all of them as Kafka does, so that swaps left by an earlier failed swap could never
/// stretch the range over segments no swap replaces. Every file of a replaced segment
/// goes, not only those whose `.log` is still there: a crash in
/// `Segment::rename_for_deletion` (the `.log` first) can leave its `.txnindex`, which
/// the new segment, taking the same name, would otherwise inherit when it has none of
/// its own, with aborted transactions whose markers the cleaning removed.
///
/// `names` lists the directory; true if a swap was completed (the listing is stale).
fn complete_interrupted_swaps(dir: &Path, names: &[String]) -> Result<bool, LogError> {
    let log_swap = join_suffix(LOG_SUFFIX, SWAP_SUFFIX);
    let mut swaps = Vec::new();
    let mut segment_files: Vec<(i64, PathBuf)> = Vec::new();
    for name in names {
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if suffix == log_swap {
            swaps.push(base);
        } else if [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ]
        .contains(&suffix)
        {
            segment_files.push((base, dir.join(name)));
        }
    }
    let completed = !swaps.is_empty();
    for base in swaps {
        let swap_path = segment_file(dir, base, &log_swap);
        let last = last_offset_in(&swap_path)?.unwrap_or(base).max(base);
        for (_, path) in segment_files
            .iter()
            .filter(|(offset, _)| (base..=last).contains(offset))
        {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_context("delete", path)(e).into()),
            }
        }
        for suffix in [
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
            LOG_SUFFIX,
        ] {
            let src = segment_file(dir, base, &join_suffix(suffix, SWAP_SUFFIX));
            let dst = segment_file(dir, base, suffix);
            match fs::rename(&src, &dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_context("rename", &src)(e).into()),
            }
        }
        warn!(
            "Completed the swap of cleaned segment {base} in {} interrupted by a crash (replaced segments {base} to {last})",
            dir.display()
        );
        sync_dir(dir)?;
    }
    Ok(completed)
}

/// The names of the files in `dir` (names that are not UTF-8 are left out: no file
/// of a log has one).
fn list_file_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The last offset of the last whole batch in the segment file at `path` (`None` if it
/// holds none): walks the batch lengths, trusting nothing beyond the file's size.
fn last_offset_in(path: &Path) -> Result<Option<i64>, LogError> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).map_err(io_context("open", path))?;
    let len = file.metadata().map_err(io_context("stat", path))?.len();
    let mut position = 0u64;
    let mut last = None;
    let mut header = [0u8; ottla_protocol::batch::BATCH_HEADER_LEN];
    while position + header.len() as u64 <= len {
        file.read_exact_at(&mut header, position)
            .map_err(io_context("read", path))?;
        let Ok(h) = BatchHeader::parse(&header) else {
            break;
        };
        if position + h.size as u64 > len {
            break;
        }
        last = Some(h.last_offset());
        position += h.size as u64;
    }
    Ok(last)
}

/// fsync the directory so that file creations, renames and deletions survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let d = fs::File::open(dir).map_err(io_context("open", dir))?;
    d.sync_all().map_err(io_context("fsync", dir))?;
    Ok(())
}
