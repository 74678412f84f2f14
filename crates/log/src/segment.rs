//! One segment: a `.log` file of concatenated batches plus its `.index` and `.timeindex`.
//!
//! All reads are positional (`pread`), so readers share the segment through `&self`
//! while the single writer appends with `&mut self`. Writes are positional too: a failed
//! or torn write is simply overwritten by the next append at the same position, or cut
//! off by recovery.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ottla_protocol::batch::{batch_size_at, RecordBatch, BATCH_HEADER_LEN, LOG_OVERHEAD};
use ottla_protocol::records::{scan_records, RecordMeta};

use crate::flush::SyncTarget;
use crate::handle::{create_empty, LazyFile, OpenMode};
use crate::header::BatchHeader;
use crate::index::{relative_offset, OffsetIndex, TimeIndex, NO_TIMESTAMP};
use crate::slice::FileSlice;
use crate::txn_index::{TxnIndexFile, TXN_INDEX_SUFFIX};
use crate::{io_context, LogError, MAX_DECOMPRESSED_BATCH_BYTES, MAX_SEGMENT_BYTES};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// How much of a segment recovery reads per system call. Large enough to amortise the
/// calls, small enough to keep recovery of many partitions cheap in memory; a batch
/// larger than this is read whole (bounded by the file's size, never by a length field).
const RECOVERY_READ_CHUNK: usize = 1 << 20;

/// `<dir>/<base offset, 20 digits>.<suffix>`, Kafka's file naming.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// [`segment_file`] with `.<extra>` after the suffix (the cleaner's `.cleaned` and
/// `.swap` files); nothing extra when `extra` is empty.
fn segment_file_with(dir: &Path, base_offset: i64, suffix: &str, extra: &str) -> PathBuf {
    if extra.is_empty() {
        segment_file(dir, base_offset, suffix)
    } else {
        segment_file(dir, base_offset, &format!("{suffix}.{extra}"))
    }
}

/// Kafka's per-segment index bookkeeping (`LogSegment.append`): the largest timestamp so
/// far with the last offset of the first batch that reached it, and the bytes appended
/// since the last offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexCursor {
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_last_index_entry: u64,
}

/// Index entries one batch calls for.
struct IndexStep {
    /// (batch last offset, batch position) for the offset index.
    offset_entry: Option<(i64, u64)>,
    /// (max timestamp so far, its offset) for the time index, appended if it grew.
    time_entry: Option<(i64, i64)>,
}

impl IndexCursor {
    fn new() -> Self {
        IndexCursor {
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            bytes_since_last_index_entry: 0,
        }
    }

    /// Account for batch `h` at `position`. As in Kafka, an index entry is due when more
    /// than `index_interval_bytes` were appended since the last one, and the time index is
    /// only touched at those points (and when the segment is sealed), which keeps both
    /// indexes at one entry per interval instead of one per batch.
    fn on_batch(&mut self, h: &BatchHeader, position: u64, index_interval_bytes: u64) -> IndexStep {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        let mut step = IndexStep {
            offset_entry: None,
            time_entry: None,
        };
        if self.bytes_since_last_index_entry > index_interval_bytes {
            step.offset_entry = Some((h.last_offset(), position));
            step.time_entry = Some((self.max_timestamp, self.offset_of_max_timestamp));
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.size as u64;
        step
    }
}

/// Why and where recovery cut a segment.
#[derive(Debug, Clone)]
pub(crate) struct Truncation {
    /// The offset the log continues at (the first offset dropped).
    pub offset: i64,
    pub bytes_dropped: u64,
    pub reason: String,
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    /// The `.log`, opened when used and closed when idle; its handle is shared with the
    /// [`FileSlice`]s of reads still being sent.
    log: LazyFile,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    cursor: IndexCursor,
    /// Max timestamp of the first batch: what `segment.ms` is measured against.
    first_batch_timestamp: Option<i64>,
    /// The same, read from the file once asked for while `first_batch_timestamp` is
    /// unknown (a segment loaded from its indexes, not scanned).
    first_batch_timestamp_read: OnceLock<Option<i64>>,
    created_ms: i64,
    /// Offset after the last batch; known for scanned segments (always the active one),
    /// `None` for trusted segments loaded from their indexes.
    next_offset: Option<i64>,
    /// The `.log` was written since its last [`Segment::take_unsynced`].
    dirty: bool,
    /// The aborted transactions whose ABORT marker is in this segment.
    pub(crate) txn_index: TxnIndexFile,
}

/// Buffered positional reader for recovery scans.
struct ChunkReader<'a> {
    file: &'a File,
    path: &'a Path,
    file_len: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl ChunkReader<'_> {
    /// `len` bytes at `pos`; the caller guarantees `pos + len <= file_len`.
    fn get(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let end = pos + len as u64;
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || end > buf_end {
            let want = (len.max(RECOVERY_READ_CHUNK) as u64).min(self.file_len - pos) as usize;
            self.buf.clear();
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .map_err(io_context("read", self.path))?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }
}

impl Segment {
    /// Create a new, empty segment (replacing any files of that name).
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        Segment::create_with_suffix(dir, base_offset, now_ms, "")
    }

    /// [`Segment::create`] with `.<extra>` after each file's name (the cleaner's
    /// `.cleaned` output); nothing extra when `extra` is empty.
    pub fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        extra: &str,
    ) -> io::Result<Segment> {
        let name = |suffix: &str| segment_file_with(dir, base_offset, suffix, extra);
        let log_path = name(LOG_SUFFIX);
        // Empty files: nothing to fsync, no handle kept (a new partition holds no
        // descriptor until it is written); the caller syncs the directory.
        create_empty(&log_path)?;
        let log = LazyFile::closed(log_path, OpenMode::ReadWrite);
        let mut txn_index = TxnIndexFile::new(name(TXN_INDEX_SUFFIX));
        txn_index.delete()?;
        Ok(Segment {
            txn_index,
            base_offset,
            offset_index: OffsetIndex::create(name(INDEX_SUFFIX), base_offset)?,
            time_index: TimeIndex::create(name(TIME_INDEX_SUFFIX), base_offset)?,
            log,
            size: 0,
            cursor: IndexCursor::new(),
            first_batch_timestamp: None,
            first_batch_timestamp_read: OnceLock::new(),
            created_ms: now_ms,
            next_offset: Some(base_offset),
            dirty: false,
        })
    }

    /// Open an existing segment's `.log`. Its indexes are not loaded yet: follow with
    /// [`Segment::load_indexes`] (trusted segments) or [`Segment::recover`].
    pub fn open(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        // Only the size now: the file opens when first read.
        let size = fs::metadata(&log_path)
            .map_err(io_context("open", &log_path))?
            .len();
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let time_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        Ok(Segment {
            txn_index: TxnIndexFile::new(segment_file(dir, base_offset, TXN_INDEX_SUFFIX)),
            base_offset,
            // placeholders until load_indexes/recover: nothing is written through them
            offset_index: OffsetIndex::detached(index_path, base_offset),
            time_index: TimeIndex::detached(time_path, base_offset),
            log: LazyFile::closed(log_path, OpenMode::ReadWrite),
            size,
            cursor: IndexCursor::new(),
            first_batch_timestamp: None,
            first_batch_timestamp_read: OnceLock::new(),
            created_ms: now_ms,
            next_offset: None,
            dirty: false,
        })
    }

    /// Load the index files of a segment below the recovery point and check them against
    /// the log: `false` means they are missing or inconsistent and the caller must
    /// rebuild (recover) the segment. `end_offset` bounds the segment's offsets (the next
    /// segment's base offset).
    pub fn load_indexes(&mut self, end_offset: i64) -> Result<bool, LogError> {
        let min_batch = BATCH_HEADER_LEN as u64;
        let index_path = self.offset_index.path().to_path_buf();
        let time_path = self.time_index.path().to_path_buf();
        let Some(offset_index) =
            OffsetIndex::load(index_path, self.base_offset, self.size, min_batch)?
        else {
            return Ok(false);
        };
        let Some(time_index) = TimeIndex::load(
            time_path,
            self.base_offset,
            end_offset,
            self.size,
            min_batch,
        )?
        else {
            return Ok(false);
        };
        // Sealed segments always end with a time index entry for their largest timestamp;
        // an empty one next to a non-empty log means the index cannot be trusted.
        let Some((max_timestamp, offset_of_max_timestamp)) = time_index.last_entry() else {
            return Ok(self.size == 0);
        };
        // The last offset entry must point at the batch it names.
        if let Some((offset, position)) = offset_index.last_entry() {
            match self.header_at(position) {
                Ok(Some(h)) if h.last_offset() == offset => {}
                _ => return Ok(false),
            }
        }
        self.offset_index = offset_index;
        self.time_index = time_index;
        self.cursor = IndexCursor {
            max_timestamp,
            offset_of_max_timestamp,
            bytes_since_last_index_entry: 0,
        };
        Ok(true)
    }

    /// Scan the whole segment batch by batch (whole-batch structure, CRC, codec, record
    /// count, offsets ascending from `expected_next`, representable relative to the base
    /// and below `end_offset`, the next segment's base if there is one), cut it at the
    /// first batch that fails, and rebuild both indexes from what remains. The offset
    /// checks matter because the base offset is outside the CRC. Never allocates more
    /// than the file's size, whatever a length field says.
    pub fn recover(
        &mut self,
        expected_next: i64,
        end_offset: Option<i64>,
        index_interval_bytes: u64,
    ) -> Result<Option<Truncation>, LogError> {
        let file = self.log.get()?;
        let file_len = file
            .metadata()
            .map_err(io_context("stat", self.log.path()))?
            .len();
        let mut reader = ChunkReader {
            file: &file,
            path: self.log.path(),
            file_len,
            buf: Vec::new(),
            buf_start: 0,
        };
        let mut expected = expected_next.max(self.base_offset);
        let mut cursor = IndexCursor::new();
        let mut offset_entries: Vec<(i64, u64)> = Vec::new();
        let mut time_entries: Vec<(i64, i64)> = Vec::new();
        let mut first_batch_timestamp = None;
        let mut position = 0u64;
        let mut truncation = None;
        while position < file_len {
            let bounds = (self.base_offset, expected, end_offset.unwrap_or(i64::MAX));
            match check_batch_at(&mut reader, position, bounds)? {
                Ok(h) => {
                    let step = cursor.on_batch(&h, position, index_interval_bytes);
                    if let Some(e) = step.offset_entry {
                        offset_entries.push(e);
                    }
                    if let Some((ts, off)) = step.time_entry {
                        if time_entries.last().is_none_or(|&(last, _)| ts > last)
                            && ts > NO_TIMESTAMP
                        {
                            time_entries.push((ts, off));
                        }
                    }
                    first_batch_timestamp.get_or_insert(h.max_timestamp);
                    position += h.size as u64;
                    expected = h.next_offset();
                }
                Err(reason) => {
                    truncation = Some(Truncation {
                        offset: expected,
                        bytes_dropped: file_len - position,
                        reason,
                    });
                    break;
                }
            }
        }
        // As a sealed segment's does (and as Kafka's recovery does), the time index ends
        // with the largest timestamp, so a later open can trust its last entry.
        if time_entries
            .last()
            .is_none_or(|&(last, _)| cursor.max_timestamp > last)
            && cursor.max_timestamp > NO_TIMESTAMP
        {
            time_entries.push((cursor.max_timestamp, cursor.offset_of_max_timestamp));
        }
        if truncation.is_some() {
            file.set_len(position)
                .map_err(io_context("truncate", self.log.path()))?;
            self.dirty = true;
        }
        self.size = position;
        let index_path = self.offset_index.path().to_path_buf();
        let time_path = self.time_index.path().to_path_buf();
        self.offset_index = OffsetIndex::rebuilt(index_path, self.base_offset, offset_entries)?;
        self.time_index = TimeIndex::rebuilt(time_path, self.base_offset, time_entries)?;
        self.cursor = cursor;
        self.first_batch_timestamp = first_batch_timestamp;
        self.first_batch_timestamp_read = OnceLock::new();
        self.next_offset = Some(if position == 0 {
            self.base_offset
        } else {
            expected
        });
        Ok(truncation)
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// The max timestamp of the segment's first batch: known when it was appended or
    /// scanned here, else read from the first batch's header (once; a segment loaded
    /// from its indexes), as Kafka's `LogSegment.getFirstBatchTimestamp` loads it.
    /// `None` for an empty segment.
    pub fn first_batch_timestamp(&self) -> Result<Option<i64>, LogError> {
        if let Some(ts) = self.first_batch_timestamp {
            return Ok(Some(ts));
        }
        if let Some(read) = self.first_batch_timestamp_read.get() {
            return Ok(*read);
        }
        let read = self.header_at(0)?.map(|h| h.max_timestamp);
        Ok(*self.first_batch_timestamp_read.get_or_init(|| read))
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }
    pub fn max_timestamp(&self) -> i64 {
        self.cursor.max_timestamp
    }
    /// Last offset of the first batch holding [`Segment::max_timestamp`], -1 if none.
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.cursor.offset_of_max_timestamp
    }
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// How long the segment has been open for `segment.ms`: by record time when the
    /// first batch has a timestamp, else by wall clock since creation (Kafka's
    /// `timeWaitedForRoll`).
    pub fn time_waited_for_roll(&self, now_ms: i64, batch_max_timestamp: i64) -> i64 {
        match self.first_batch_timestamp {
            Some(t) if t >= 0 => batch_max_timestamp.saturating_sub(t),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Offset to start a search for `timestamp` at (see `TimeIndex::lookup`).
    pub fn time_index_lookup(&self, timestamp: i64) -> i64 {
        self.time_index.lookup(timestamp)
    }

    /// Whether a batch ending at `last_offset` can still go into this segment's indexes.
    pub fn can_hold_offset(&self, last_offset: i64) -> bool {
        relative_offset(self.base_offset, last_offset).is_some()
    }

    /// Append one batch whose header (`h`) already carries its final offsets.
    pub fn append(
        &mut self,
        bytes: &[u8],
        h: &BatchHeader,
        index_interval_bytes: u64,
    ) -> Result<(), LogError> {
        let position = self.size;
        if position + bytes.len() as u64 > MAX_SEGMENT_BYTES {
            return Err(LogError::Corrupt(format!(
                "append would grow {} beyond {MAX_SEGMENT_BYTES} bytes",
                self.log.path().display()
            )));
        }
        let file = self.log.get()?;
        if let Err(e) = file.write_all_at(bytes, position) {
            // Best effort: drop any partial write now; the next append overwrites it
            // anyway and recovery would cut it.
            let _ = file.set_len(position);
            return Err(io_context("write", self.log.path())(e).into());
        }
        self.dirty = true;
        let cursor = self.cursor;
        let step = self.cursor.on_batch(h, position, index_interval_bytes);
        if let Err(e) = self.index_batch(&step) {
            // Undo the whole batch: the caller does not advance the log end, so the next
            // append reuses these offsets, and it must land at this position, not after
            // bytes that carry the same offsets.
            self.cursor = cursor;
            let _ = self.offset_index.truncate_to_position(position);
            let _ = self.time_index.truncate_to_offset(h.base_offset);
            let _ = file.set_len(position);
            return Err(e.into());
        }
        self.size += bytes.len() as u64;
        self.first_batch_timestamp.get_or_insert(h.max_timestamp);
        self.next_offset = Some(h.next_offset());
        Ok(())
    }

    fn index_batch(&mut self, step: &IndexStep) -> io::Result<()> {
        if let Some((offset, pos)) = step.offset_entry {
            self.offset_index.append(offset, pos)?;
        }
        if let Some((ts, off)) = step.time_entry {
            self.time_index.maybe_append(ts, off)?;
        }
        Ok(())
    }

    /// Hand over the files written since the last call (the `.log` and its indexes) for
    /// a [`crate::FlushPlan`] to fsync.
    pub fn take_unsynced(&mut self, out: &mut Vec<SyncTarget>) {
        if self.dirty {
            let path = self.log.path().to_path_buf();
            out.push(SyncTarget::handle_or_path(self.log.current(), path));
            self.dirty = false;
        }
        out.extend(self.offset_index.take_unsynced());
        out.extend(self.time_index.take_unsynced());
        out.extend(self.txn_index.take_unsynced());
    }

    /// The segment stops being active: record its final max timestamp in the time index
    /// (Kafka's `onBecomeInactiveSegment`, which is what lets a later open trust the time
    /// index's last entry) and release the index file handles. Nothing is fsynced here:
    /// the next flush of the log syncs the segment, without the log's lock held.
    pub fn seal(&mut self) -> Result<(), LogError> {
        self.append_max_timestamp_entry()?;
        self.offload_indexes()?;
        Ok(())
    }

    /// End the time index with the largest timestamp so far (if it is not there yet).
    pub fn append_max_timestamp_entry(&mut self) -> Result<(), LogError> {
        self.time_index.maybe_append(
            self.cursor.max_timestamp,
            self.cursor.offset_of_max_timestamp,
        )?;
        Ok(())
    }

    /// Leave the indexes of a segment that is not appended to on disk (see
    /// `crate::index`): sealed segments hold no index entries on the heap.
    pub fn offload_indexes(&mut self) -> io::Result<()> {
        self.offset_index.offload(self.size)?;
        self.time_index
            .offload(self.next_offset.unwrap_or(i64::MAX))
    }

    /// Close the segment's files now; they reopen when used.
    pub fn close_files(&self) {
        self.log.close();
        self.offset_index.close_now();
        self.time_index.close_now();
    }

    /// Close the files not used since the previous call (see `crate::handle`); returns
    /// how many were closed. A `.log` with writes not yet flushed is closed too (an idle
    /// partition must not pin a descriptor until the next checkpoint): its flush
    /// reopens it (see `crate::handle` for why that is safe). Sealed indexes' summaries
    /// not searched since the previous call are dropped with them (see `crate::index`).
    pub fn close_idle_files(&self) -> usize {
        self.offset_index.drop_summary_if_idle();
        self.time_index.drop_summary_if_idle();
        let mut closed = usize::from(self.log.close_if_idle());
        closed += usize::from(self.offset_index.close_if_idle());
        closed += usize::from(self.time_index.close_if_idle());
        closed
    }

    /// Heap bytes of the sealed indexes' summaries this segment holds now.
    pub fn index_summary_bytes(&self) -> usize {
        self.offset_index.summary_bytes() + self.time_index.summary_bytes()
    }

    /// Largest timestamp for `retention.ms`: the records' when known, else the file's
    /// modification time (as Kafka does for segments without timestamps).
    pub fn largest_timestamp_for_retention(&self) -> Result<i64, LogError> {
        if self.cursor.max_timestamp > 0 {
            return Ok(self.cursor.max_timestamp);
        }
        let modified = fs::metadata(self.log.path())
            .and_then(|m| m.modified())
            .map_err(io_context("stat", self.log.path()))?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0))
    }

    /// Header of the batch at `position`, `None` at the end of the segment. A header that
    /// is cut short or malformed is reported as corruption with the file and position.
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>, LogError> {
        if position >= self.size {
            return Ok(None);
        }
        let available = self.size - position;
        if available < BATCH_HEADER_LEN as u64 {
            return Err(self.corrupt(
                position,
                format!("{available} bytes left, less than a batch header"),
            ));
        }
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.log
            .get()?
            .read_exact_at(&mut buf, position)
            .map_err(io_context("read", self.log.path()))?;
        let h = BatchHeader::parse(&buf).map_err(|e| self.corrupt(position, e.to_string()))?;
        if h.size as u64 > available {
            return Err(self.corrupt(
                position,
                format!("batch of {} bytes but only {available} left", h.size),
            ));
        }
        Ok(Some(h))
    }

    fn corrupt(&self, position: u64, what: String) -> LogError {
        LogError::Corrupt(format!(
            "{} at position {position}: {what}",
            self.log.path().display()
        ))
    }

    /// Position and header of the first batch whose last offset is >= `offset` (the batch
    /// containing it, or the next one after a gap); `None` if the segment has none.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut position = self.offset_index.lookup(offset);
        while let Some(h) = self.header_at(position)? {
            if h.last_offset() >= offset {
                return Ok(Some((position, h)));
            }
            position += h.size as u64;
        }
        Ok(None)
    }

    /// Call `f` with every batch header from `position` to the end.
    pub fn for_each_header(
        &self,
        mut position: u64,
        mut f: impl FnMut(u64, &BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        while let Some(h) = self.header_at(position)? {
            f(position, &h)?;
            position += h.size as u64;
        }
        Ok(())
    }

    pub fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; len];
        self.log
            .get()?
            .read_exact_at(&mut buf, position)
            .map_err(io_context("read", self.log.path()))?;
        Ok(buf)
    }

    /// Position just past the batches a reader bounded by `max_offset` may see: the
    /// start of the first batch whose base offset reaches it (the segment's size if none
    /// does). The caller skips this when the whole segment is below `max_offset`.
    pub fn position_limit(&self, max_offset: i64) -> Result<u64, LogError> {
        Ok(match self.find_batch(max_offset)? {
            Some((position, h)) if h.base_offset >= max_offset => position,
            Some((position, h)) => position + h.size as u64,
            None => self.size,
        })
    }

    /// Whole batches starting with `first` (at `position`), as a slice of the file: as
    /// many as fit in `budget` bytes (at least `first` when `allow_oversized_first`),
    /// none at or past `limit` (from [`Segment::position_limit`], or the size). Nothing is
    /// read but the batch headers needed to find where to cut. Returns the slice and
    /// whether the segment's end was reached (so the caller may go on to the next one).
    pub fn slice_batches(
        &self,
        position: u64,
        first: &BatchHeader,
        budget: usize,
        limit: u64,
        allow_oversized_first: bool,
    ) -> Result<(Option<FileSlice>, bool), LogError> {
        let first_end = position + first.size as u64;
        if first_end > limit || (first.size > budget && !allow_oversized_first) {
            return Ok((None, false));
        }
        let want_end = position.saturating_add(budget as u64);
        let end = if limit <= want_end {
            limit
        } else if first_end >= want_end {
            first_end
        } else {
            // Cut at the last batch boundary within the budget: jump to the nearest
            // indexed boundary below it, then walk headers (at most about one index
            // interval of them).
            let mut end = self.offset_index.floor_position(want_end).max(first_end);
            while let Some(h) = self.header_at(end)? {
                let next = end + h.size as u64;
                if next > want_end {
                    break;
                }
                end = next;
            }
            end
        };
        debug_assert!(end > position && end <= self.size);
        let slice = FileSlice::new(self.log.get()?, position, (end - position) as usize);
        Ok((Some(slice), end == self.size))
    }

    /// Walk the records of the batch at `position` (for timestamp lookups) without
    /// materialising them; `visit` may stop early.
    pub fn scan_batch<B>(
        &self,
        position: u64,
        h: &BatchHeader,
        visit: impl FnMut(RecordMeta) -> std::ops::ControlFlow<B>,
    ) -> Result<Option<B>, LogError> {
        let bytes = self.read_bytes(position, h.size)?;
        let batch = RecordBatch::new(&bytes).map_err(|e| self.corrupt(position, e.to_string()))?;
        Ok(scan_records(&batch, MAX_DECOMPRESSED_BATCH_BYTES, visit)?)
    }

    /// Remove the batch containing `offset` and everything after it; returns the bytes
    /// removed. Indexes are cut to match and the segment's bookkeeping is recomputed from
    /// the remaining headers.
    pub fn truncate_to(&mut self, offset: i64, index_interval_bytes: u64) -> Result<u64, LogError> {
        let position = match self.find_batch(offset)? {
            Some((position, _)) => position,
            None => self.size,
        };
        let removed = self.size - position;
        if removed > 0 {
            self.log
                .get()?
                .set_len(position)
                .map_err(io_context("truncate", self.log.path()))?;
            self.size = position;
            self.dirty = true;
            self.offset_index.truncate_to_position(position)?;
        }
        let mut cursor = IndexCursor::new();
        let mut first_batch_timestamp = None;
        let mut next_offset = self.base_offset;
        self.for_each_header(0, |pos, h| {
            cursor.on_batch(h, pos, index_interval_bytes);
            first_batch_timestamp.get_or_insert(h.max_timestamp);
            next_offset = h.next_offset();
            Ok(())
        })?;
        self.time_index.truncate_to_offset(next_offset)?;
        self.cursor = cursor;
        self.first_batch_timestamp = first_batch_timestamp;
        self.first_batch_timestamp_read = OnceLock::new();
        self.next_offset = Some(next_offset);
        Ok(removed)
    }

    /// fsync every file of the segment now (the cleaner's output, before its swap).
    pub fn sync_all(&mut self) -> Result<(), LogError> {
        let mut targets = Vec::new();
        self.take_unsynced(&mut targets);
        for target in targets {
            target.sync()?;
        }
        Ok(())
    }

    /// Set the `.log` file's modification time.
    pub fn set_modified(&self, time: std::time::SystemTime) -> Result<(), LogError> {
        self.log
            .get()?
            .set_modified(time)
            .map_err(io_context("set the modification time of", self.log.path()))?;
        Ok(())
    }

    /// The `.log` file, shared (the cleaner reads it without the log's lock).
    pub(crate) fn file(&self) -> io::Result<Arc<File>> {
        self.log.get()
    }

    /// Rename the segment's files in `dir` to their names with `.<extra>` after them
    /// (their final names when `extra` is empty), the indexes first and the `.log` last
    /// (the cleaner's commit order, see `crate::cleaner`), and go on using them under
    /// the new names: open handles stay valid, a rename keeps the file. Nothing is read
    /// or written. A missing file is skipped (a segment without aborted transactions
    /// has no `.txnindex`). Kafka's `LogSegment.changeFileSuffixes`.
    pub fn rename_files(&mut self, dir: &Path, extra: &str) -> Result<(), LogError> {
        let base = self.base_offset;
        let to = |suffix: &str| segment_file_with(dir, base, suffix, extra);
        let target = to(INDEX_SUFFIX);
        rename_if_present(self.offset_index.path(), &target)?;
        self.offset_index.set_path(target);
        let target = to(TIME_INDEX_SUFFIX);
        rename_if_present(self.time_index.path(), &target)?;
        self.time_index.set_path(target);
        let target = to(TXN_INDEX_SUFFIX);
        rename_if_present(self.txn_index.path(), &target)?;
        self.txn_index.set_path(target);
        let target = to(LOG_SUFFIX);
        rename_if_present(self.log.path(), &target)?;
        self.log.set_path(target);
        Ok(())
    }

    /// Close the segment, returning the paths of its files.
    fn into_paths(self) -> [PathBuf; 4] {
        [
            self.log.path().to_path_buf(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
        ]
    }

    /// Rename the segment's files to `<name>.deleted` (Kafka's asynchronous segment
    /// deletion: readers still holding the files keep them; the names leave the log)
    /// and return the new paths, for deletion later. Missing files are skipped.
    pub fn rename_for_deletion(self, suffix: &str) -> Result<Vec<PathBuf>, LogError> {
        let paths = self.into_paths();
        let mut renamed = Vec::new();
        for path in paths {
            let mut target = path.clone().into_os_string();
            target.push(suffix);
            let target = PathBuf::from(target);
            match fs::rename(&path, &target) {
                Ok(()) => renamed.push(target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_context("rename", &path)(e).into()),
            }
        }
        Ok(renamed)
    }

    /// Delete the segment's files (a missing file is not an error: a crash may have
    /// removed some already).
    pub fn delete_files(self) -> Result<(), LogError> {
        let paths = self.into_paths();
        for path in paths {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_context("delete", &path)(e).into()),
            }
        }
        Ok(())
    }
}

/// Rename `from` to `to`; a missing `from` is not an error.
fn rename_if_present(from: &Path, to: &Path) -> Result<(), LogError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_context("rename", from)(e).into()),
    }
}

/// Check the batch at `position` during recovery. The outer `Result` is an I/O failure;
/// the inner `Err` names why the batch is not acceptable (the segment is cut there).
fn check_batch_at(
    reader: &mut ChunkReader<'_>,
    position: u64,
    (base_offset, expected, end_offset): (i64, i64, i64),
) -> Result<Result<BatchHeader, String>, LogError> {
    let remaining = reader.file_len - position;
    if remaining < LOG_OVERHEAD as u64 {
        return Ok(Err(format!("partial batch header ({remaining} bytes)")));
    }
    let size = match batch_size_at(reader.get(position, LOG_OVERHEAD)?) {
        Some(Ok(size)) => size,
        Some(Err(e)) => return Ok(Err(e.to_string())),
        None => return Ok(Err("partial batch header".into())),
    };
    if size as u64 > remaining {
        return Ok(Err(format!(
            "partial batch: {size} bytes declared, {remaining} present"
        )));
    }
    if position + size as u64 > MAX_SEGMENT_BYTES {
        return Ok(Err(format!(
            "batch ends beyond the {MAX_SEGMENT_BYTES}-byte segment limit"
        )));
    }
    let bytes = reader.get(position, size)?;
    let batch = match RecordBatch::new(bytes) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Err(e) = batch.validate() {
        return Ok(Err(e.to_string()));
    }
    let h = BatchHeader::from_view(&batch);
    if h.base_offset < expected {
        return Ok(Err(format!(
            "batch base offset {} is below the expected {expected}",
            h.base_offset
        )));
    }
    if relative_offset(base_offset, h.last_offset()).is_none() || h.last_offset() == i64::MAX {
        return Ok(Err(format!(
            "batch last offset {} does not fit segment {base_offset}",
            h.last_offset()
        )));
    }
    if h.last_offset() >= end_offset {
        return Ok(Err(format!(
            "batch last offset {} reaches the next segment's base offset {end_offset}",
            h.last_offset()
        )));
    }
    Ok(Ok(h))
}
