//! Kafka's two sparse segment indexes, appended to their files and searched by binary
//! search.
//!
//! Kafka memory-maps preallocated index files. Ottla appends each new entry to a plain
//! file, so the file is always exactly its entries, and keeps entries on the heap only
//! where they change: the active segment's index is resident (a `Vec`), a sealed
//! segment's index stays on disk. A lookup in a sealed index searches a summary (the
//! first entry of each 4 KiB page of the file, 1/512 of it, built on first use) and
//! then reads the one page that holds the answer. A summary is about 16 bytes per MiB
//! of sealed log instead of 2 KiB, and only indexes in use keep one: it is dropped by
//! the idle sweep that closes the segment's files (`ottla.segment.file.idle.ms`) and
//! rebuilt by the next lookup (one read of the index file), so a broker's memory is
//! bounded by the segments being read, not by the data it stores.
//!
//! Opening a sealed index checks its length and its last entry only (as Kafka's
//! `sanityCheck` does), so start-up reads no index pages; building the summary checks
//! every entry. Anything inconsistent never panics: at open the caller rebuilds the
//! index from the `.log`; later, lookups fall back to scanning the segment from its
//! start (always correct, only slower) and a warning names the file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::warn;

use crate::flush::SyncTarget;
use crate::handle::{create_empty, remove_if_present, LazyFile, OpenMode};
use crate::io_context;

/// `.index` entry: int32 relative offset, int32 file position.
pub(crate) const OFFSET_INDEX_ENTRY_LEN: usize = 8;
/// `.timeindex` entry: int64 timestamp, int32 relative offset.
pub(crate) const TIME_INDEX_ENTRY_LEN: usize = 12;
/// Kafka's `RecordBatch.NO_TIMESTAMP`: the "previous entry" of an empty time index.
pub(crate) const NO_TIMESTAMP: i64 = -1;
/// A sealed index is searched a page at a time: its summary holds the first entry of
/// each page, and a lookup reads one page.
const INDEX_PAGE_BYTES: usize = 4096;
/// Entries read at a time while building a summary (bounds the buffer).
const SUMMARY_READ_ENTRIES: usize = 8192;

/// One index file: its entries (resident or on disk), and an append handle opened when
/// written and closed when idle.
#[derive(Debug)]
struct IndexFile<E> {
    entries: Entries<E>,
    writer: LazyFile,
    /// Written since the last [`IndexFile::take_unsynced`]. No handle is kept for the
    /// flush: it reopens the file if the writer was closed (see `crate::handle`), so
    /// thousands of freshly recovered or sealed indexes pin no descriptors.
    unsynced: bool,
}

#[derive(Debug)]
enum Entries<E> {
    /// Every entry on the heap: the active segment's index (appended to).
    Resident(Vec<E>),
    /// A sealed segment's index, read from its file when searched.
    OnDisk(OnDisk<E>),
}

#[derive(Debug)]
struct OnDisk<E> {
    len: usize,
    last: Option<E>,
    /// What every entry is checked against ([`Entry::follows`]).
    bound: i64,
    /// The first entry of each page: built by the first lookup (one read of the file)
    /// and dropped by the idle sweep ([`IndexFile::drop_summary_if_idle`]), so only
    /// the indexes in use hold one. Lookups clone the `Arc` and search it unlocked.
    summary: Mutex<Option<Arc<Vec<E>>>>,
    /// Set by every lookup, cleared by the sweep: a summary found clear is idle.
    used: AtomicBool,
    /// The file failed its checks: lookups scan the segment, and no summary is built
    /// again (the next open rebuilds the index from the `.log`).
    corrupt: AtomicBool,
}

impl<E> OnDisk<E> {
    fn new(len: usize, last: Option<E>, bound: i64, summary: Option<Vec<E>>) -> Self {
        OnDisk {
            len,
            last,
            bound,
            used: AtomicBool::new(summary.is_some()),
            summary: Mutex::new(summary.map(Arc::new)),
            corrupt: AtomicBool::new(false),
        }
    }

    fn summary_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Vec<E>>>> {
        self.summary.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) trait Entry: Copy + std::fmt::Debug {
    const LEN: usize;
    /// Entries per [`INDEX_PAGE_BYTES`] page.
    const PAGE_ENTRIES: usize = INDEX_PAGE_BYTES / Self::LEN;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
    /// Whether this entry may follow `previous` (None: it is the first) in an index of
    /// a segment bounded by `bound` (a log size or a relative end offset).
    fn follows(&self, previous: Option<&Self>, bound: i64) -> bool;
}

impl<E: Entry> IndexFile<E> {
    fn resident(path: PathBuf, entries: Vec<E>) -> Self {
        IndexFile {
            entries: Entries::Resident(entries),
            writer: LazyFile::closed(path, OpenMode::AppendCreate),
            unsynced: false,
        }
    }

    fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Open a sealed index: `None` if it is missing, its length is not a whole number of
    /// entries or exceeds `max_entries`, or its last entry fails the checks.
    fn open_on_disk(path: PathBuf, bound: i64, max_entries: usize) -> io::Result<Option<Self>> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_context("open", &path)(e)),
        };
        let size = file.metadata().map_err(io_context("stat", &path))?.len();
        let Ok(size) = usize::try_from(size) else {
            return Ok(None);
        };
        if size % E::LEN != 0 || size / E::LEN > max_entries {
            return Ok(None);
        }
        let len = size / E::LEN;
        let last = if len == 0 {
            None
        } else {
            let mut buf = vec![0u8; E::LEN];
            file.read_exact_at(&mut buf, (size - E::LEN) as u64)
                .map_err(io_context("read", &path))?;
            let last = E::decode(&buf);
            if !last.follows(None, bound) {
                return Ok(None);
            }
            Some(last)
        };
        Ok(Some(IndexFile {
            entries: Entries::OnDisk(OnDisk::new(len, last, bound, None)),
            writer: LazyFile::closed(path, OpenMode::AppendCreate),
            unsynced: false,
        }))
    }

    fn last(&self) -> Option<E> {
        match &self.entries {
            Entries::Resident(entries) => entries.last().copied(),
            Entries::OnDisk(on_disk) => on_disk.last,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match &self.entries {
            Entries::Resident(entries) => entries.len(),
            Entries::OnDisk(on_disk) => on_disk.len,
        }
    }

    /// The last entry for which `below` holds, given that `below` holds for a prefix of
    /// the entries (a binary search); `None` if it holds for none, or if a sealed index
    /// cannot be read (the caller then starts from the segment's beginning).
    fn floor(&self, below: impl Fn(&E) -> bool) -> Option<E> {
        let on_disk = match &self.entries {
            Entries::Resident(entries) => {
                let i = entries.partition_point(&below);
                return i.checked_sub(1).map(|i| entries[i]);
            }
            Entries::OnDisk(on_disk) => on_disk,
        };
        let summary = self.summary(on_disk)?;
        let page = summary.partition_point(&below).checked_sub(1)?;
        let first = page * E::PAGE_ENTRIES;
        let count = E::PAGE_ENTRIES.min(on_disk.len - first);
        let entries = self.read_range_or_warn(first, count)?;
        let i = entries.partition_point(&below);
        i.checked_sub(1).map(|i| entries[i])
    }

    /// The sealed index's summary, built now (one read of the file) if the sweep
    /// dropped it or no lookup needed it yet; `None` when the file is corrupt or
    /// cannot be read.
    fn summary(&self, on_disk: &OnDisk<E>) -> Option<Arc<Vec<E>>> {
        on_disk.used.store(true, Ordering::Relaxed);
        if on_disk.corrupt.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = on_disk.summary_slot();
        if let Some(summary) = slot.as_ref() {
            return Some(Arc::clone(summary));
        }
        let summary = Arc::new(self.build_summary(on_disk)?);
        *slot = Some(Arc::clone(&summary));
        Some(summary)
    }

    /// Drop a sealed index's summary if no lookup used it since the last call (the
    /// idle sweep, with the segment's file handles); returns whether one was dropped.
    fn drop_summary_if_idle(&self) -> bool {
        let Entries::OnDisk(on_disk) = &self.entries else {
            return false;
        };
        if on_disk.used.swap(false, Ordering::Relaxed) {
            return false;
        }
        on_disk.summary_slot().take().is_some()
    }

    /// Heap bytes held by a sealed index's summary (0 when dropped or resident).
    fn summary_bytes(&self) -> usize {
        match &self.entries {
            Entries::Resident(_) => 0,
            Entries::OnDisk(on_disk) => on_disk
                .summary_slot()
                .as_ref()
                .map_or(0, |s| s.capacity() * std::mem::size_of::<E>()),
        }
    }

    /// `count` entries from entry `first` of the file.
    fn read_range(&self, first: usize, count: usize) -> io::Result<Vec<E>> {
        let path = self.path();
        let file = File::open(path).map_err(io_context("open", path))?;
        let mut buf = vec![0u8; count * E::LEN];
        file.read_exact_at(&mut buf, (first * E::LEN) as u64)
            .map_err(io_context("read", path))?;
        Ok(buf.chunks_exact(E::LEN).map(E::decode).collect())
    }

    /// [`IndexFile::read_range`] for a lookup: a failure is logged and the caller scans
    /// the segment instead (always correct, only slower).
    fn read_range_or_warn(&self, first: usize, count: usize) -> Option<Vec<E>> {
        self.read_range(first, count)
            .map_err(|e| {
                warn!(
                    "Reading index {} failed ({e}); scanning the segment instead",
                    self.path().display()
                )
            })
            .ok()
    }

    /// Read the whole file once, checking every entry, and keep the first entry of each
    /// page. `None` (with a warning) when the file does not hold what was opened.
    fn build_summary(&self, on_disk: &OnDisk<E>) -> Option<Vec<E>> {
        let mut summary = Vec::with_capacity(on_disk.len.div_ceil(E::PAGE_ENTRIES));
        let mut previous: Option<E> = None;
        let mut at = 0;
        while at < on_disk.len {
            let count = SUMMARY_READ_ENTRIES.min(on_disk.len - at);
            let entries = self.read_range_or_warn(at, count)?;
            for (i, entry) in entries.into_iter().enumerate() {
                if !entry.follows(previous.as_ref(), on_disk.bound) {
                    on_disk.corrupt.store(true, Ordering::Relaxed);
                    warn!(
                        "Index {} is corrupt at entry {}; lookups in its segment scan the log instead",
                        self.path().display(),
                        at + i
                    );
                    return None;
                }
                if (at + i) % E::PAGE_ENTRIES == 0 {
                    summary.push(entry);
                }
                previous = Some(entry);
            }
            at += count;
        }
        Some(summary)
    }

    /// The entries as a `Vec` that may change (read from the file if the index was on
    /// disk; an index that fails its checks is emptied, which is always correct).
    fn resident_entries(&mut self) -> io::Result<&mut Vec<E>> {
        if let Entries::OnDisk(on_disk) = &self.entries {
            let entries = match self.read_range(0, on_disk.len) {
                Ok(entries) => entries,
                Err(e) => {
                    warn!(
                        "Reading index {} failed ({e}); it is emptied",
                        self.path().display()
                    );
                    Vec::new()
                }
            };
            let mut previous: Option<&E> = None;
            let valid = entries.iter().all(|e| {
                let ok = e.follows(previous, on_disk.bound);
                previous = Some(e);
                ok
            });
            let rewrite = !valid;
            self.entries = Entries::Resident(if valid { entries } else { Vec::new() });
            if rewrite {
                self.rewrite()?;
            }
        }
        match &mut self.entries {
            Entries::Resident(entries) => Ok(entries),
            Entries::OnDisk(_) => unreachable!("made resident above"),
        }
    }

    /// Leave the entries on disk (the segment is sealed), keeping the summary of the
    /// entries at hand so no read is needed for it; closes the writer.
    fn offload(&mut self, bound: i64) -> io::Result<()> {
        // A sealed segment has both index files, even empty ones: a missing file at the
        // next open means a lost index, which is rebuilt.
        if let Entries::Resident(entries) = &self.entries {
            if entries.is_empty() && !self.path().exists() {
                create_empty(self.path())?;
            }
        }
        if let Entries::Resident(entries) = &self.entries {
            let summary = entries.iter().step_by(E::PAGE_ENTRIES).copied().collect();
            self.entries = Entries::OnDisk(OnDisk::new(
                entries.len(),
                entries.last().copied(),
                bound,
                Some(summary),
            ));
        }
        self.writer.close();
        Ok(())
    }

    fn push(&mut self, entry: E) -> io::Result<()> {
        let kept = (self.resident_entries()?.len() * E::LEN) as u64;
        let mut buf = Vec::with_capacity(E::LEN);
        entry.encode(&mut buf);
        let writer = self.writer.get()?;
        if let Err(e) = (&*writer).write_all(&buf) {
            // Best effort: cut a torn entry now, so the next append does not land behind
            // it (the caller undoes the batch; recovery would rebuild the index anyway).
            let _ = writer.set_len(kept);
            return Err(io_context("append to", self.path())(e));
        }
        self.resident_entries()?.push(entry);
        self.unsynced = true;
        Ok(())
    }

    /// Replace the file's content with the resident entries (after a rebuild).
    fn rewrite(&mut self) -> io::Result<()> {
        self.writer.close();
        let Entries::Resident(entries) = &self.entries else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(entries.len() * E::LEN);
        for e in entries {
            e.encode(&mut buf);
        }
        let path = self.path();
        // Recovery rebuilds the active segment's indexes at every start; when the file
        // already holds exactly these entries (a clean shutdown), leave it alone: no
        // write, no handle kept for a flush. An empty index needs no file until its
        // first entry (see `create`).
        match std::fs::read(path) {
            Ok(existing) if existing == buf => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && buf.is_empty() => return Ok(()),
            _ => {}
        }
        let mut file = File::create(path).map_err(io_context("create", path))?;
        file.write_all(&buf).map_err(io_context("write", path))?;
        self.unsynced = true;
        Ok(())
    }

    /// Keep only the first `keep` entries, in memory and on disk.
    fn truncate(&mut self, keep: usize) -> io::Result<()> {
        let entries = self.resident_entries()?;
        if keep >= entries.len() {
            return Ok(());
        }
        entries.truncate(keep);
        let len = (keep * E::LEN) as u64;
        let writer = self.writer.get()?;
        writer
            .set_len(len)
            .map_err(io_context("truncate", self.path()))?;
        self.unsynced = true;
        Ok(())
    }

    /// The file to fsync if it was written since the last call (see [`crate::FlushPlan`]).
    fn take_unsynced(&mut self) -> Option<SyncTarget> {
        if !std::mem::take(&mut self.unsynced) {
            return None;
        }
        let path = self.path().to_path_buf();
        Some(SyncTarget::handle_or_path(self.writer.current(), path))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    relative_offset: u32,
    position: u32,
}

impl Entry for OffsetEntry {
    const LEN: usize = OFFSET_INDEX_ENTRY_LEN;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    /// Relative offsets and positions strictly increase, positions lie inside the log
    /// (`bound` is its size): Kafka's `sanityCheck`, applied to every entry.
    fn follows(&self, previous: Option<&Self>, bound: i64) -> bool {
        self.relative_offset <= i32::MAX as u32
            && i64::from(self.position) < bound
            && previous.is_none_or(|p| {
                self.relative_offset > p.relative_offset && self.position > p.position
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    timestamp: i64,
    relative_offset: u32,
}

impl Entry for TimeEntry {
    const LEN: usize = TIME_INDEX_ENTRY_LEN;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
    /// Timestamps strictly increase (entries are only appended when the maximum grows),
    /// relative offsets never decrease and stay below `bound` (the segment's end,
    /// relative to its base).
    fn follows(&self, previous: Option<&Self>, bound: i64) -> bool {
        self.relative_offset <= i32::MAX as u32
            && i64::from(self.relative_offset) < bound
            && self.timestamp > NO_TIMESTAMP
            && previous.is_none_or(|p| {
                self.timestamp > p.timestamp && self.relative_offset >= p.relative_offset
            })
    }
}

/// Converts an absolute offset to the int32 relative offset stored on disk; `None` when it
/// does not fit (the segment must roll before that can happen).
pub(crate) fn relative_offset(base_offset: i64, offset: i64) -> Option<u32> {
    let rel = offset.checked_sub(base_offset)?;
    if (0..=i64::from(i32::MAX)).contains(&rel) {
        Some(rel as u32)
    } else {
        None
    }
}

/// One of a segment's two indexes: entries of kind `E`, relative to the segment's base
/// offset. [`OffsetIndex`] and [`TimeIndex`] add their lookups and checks.
#[derive(Debug)]
pub(crate) struct SegmentIndex<E> {
    base_offset: i64,
    file: IndexFile<E>,
}

impl<E: Entry> SegmentIndex<E> {
    fn with_entries(path: PathBuf, base_offset: i64, entries: Vec<E>) -> Self {
        SegmentIndex {
            base_offset,
            file: IndexFile::resident(path, entries),
        }
    }

    /// An index of `entries` whose file is (re)written now.
    fn written(path: PathBuf, base_offset: i64, entries: Vec<E>) -> io::Result<Self> {
        let mut index = Self::with_entries(path, base_offset, entries);
        index.file.rewrite()?;
        Ok(index)
    }

    /// A new, empty index. Its file is created by the first entry (or when the
    /// segment is sealed): a new partition costs no index inodes. A file of that name
    /// left by an earlier segment is removed now.
    pub fn create(path: PathBuf, base_offset: i64) -> io::Result<Self> {
        remove_if_present(&path)?;
        Ok(Self::with_entries(path, base_offset, Vec::new()))
    }

    /// An empty in-memory index for `path` that has not touched the file (a placeholder
    /// until the segment's indexes are loaded or rebuilt).
    pub fn detached(path: PathBuf, base_offset: i64) -> Self {
        Self::with_entries(path, base_offset, Vec::new())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.file.len()
    }
    #[cfg(test)]
    pub fn is_resident(&self) -> bool {
        matches!(self.file.entries, Entries::Resident(_))
    }
    pub fn path(&self) -> &Path {
        self.file.path()
    }
    /// Follow the index file to its new name after a rename.
    pub fn set_path(&mut self, path: PathBuf) {
        self.file.writer.set_path(path);
    }
    pub fn take_unsynced(&mut self) -> Option<SyncTarget> {
        self.file.take_unsynced()
    }
    /// Close the writer (it reopens when written).
    pub fn close_now(&self) {
        self.file.writer.close();
    }
    /// Close the writer if it was not used since the last sweep.
    pub fn close_if_idle(&self) -> bool {
        self.file.writer.close_if_idle()
    }
    /// Drop a sealed index's summary if no lookup used it since the last sweep (the
    /// next lookup rebuilds it from the file).
    pub fn drop_summary_if_idle(&self) -> bool {
        self.file.drop_summary_if_idle()
    }
    /// Heap bytes of a sealed index's summary (0 when dropped, or for a resident index).
    pub fn summary_bytes(&self) -> usize {
        self.file.summary_bytes()
    }
}

/// `.index`: maps a batch's last offset to the file position where that batch starts,
/// one entry per `index.interval.bytes` of log (Kafka's sparse offset index).
pub(crate) type OffsetIndex = SegmentIndex<OffsetEntry>;

impl OffsetIndex {
    /// Open the index of a sealed segment whose `.log` is `log_size` bytes, on disk.
    /// `None` when missing or inconsistent (see [`IndexFile::open_on_disk`]).
    pub fn load(
        path: PathBuf,
        base_offset: i64,
        log_size: u64,
        min_batch_len: u64,
    ) -> io::Result<Option<Self>> {
        let max_entries = usize::try_from(log_size / min_batch_len + 1).unwrap_or(usize::MAX);
        let bound = i64::try_from(log_size).unwrap_or(i64::MAX);
        Ok(IndexFile::open_on_disk(path, bound, max_entries)?
            .map(|file| SegmentIndex { base_offset, file }))
    }

    /// Rebuild from `(last offset, position)` pairs computed by a scan of the log.
    pub fn rebuilt(path: PathBuf, base_offset: i64, entries: Vec<(i64, u64)>) -> io::Result<Self> {
        let entries = entries
            .into_iter()
            .filter_map(|(offset, position)| {
                Some(OffsetEntry {
                    relative_offset: relative_offset(base_offset, offset)?,
                    position: u32::try_from(position).ok()?,
                })
            })
            .collect();
        Self::written(path, base_offset, entries)
    }

    /// The segment was sealed at `log_size` bytes: leave the entries on disk.
    pub fn offload(&mut self, log_size: u64) -> io::Result<()> {
        self.file
            .offload(i64::try_from(log_size).unwrap_or(i64::MAX))
    }

    /// Position to start scanning from for `offset`: that of the largest entry whose
    /// offset is <= `offset`, or 0.
    pub fn lookup(&self, offset: i64) -> u64 {
        let base = self.base_offset;
        self.file
            .floor(|e| base + i64::from(e.relative_offset) <= offset)
            .map_or(0, |e| u64::from(e.position))
    }

    /// The position of the last indexed batch that starts at or before `position` (0
    /// when none does): a batch boundary to walk forward from.
    pub fn floor_position(&self, position: u64) -> u64 {
        self.file
            .floor(|e| u64::from(e.position) <= position)
            .map_or(0, |e| u64::from(e.position))
    }

    /// Append an entry; the caller guarantees `offset` and `position` grow and fit.
    pub fn append(&mut self, offset: i64, position: u64) -> io::Result<()> {
        let (Some(relative_offset), Ok(position)) = (
            relative_offset(self.base_offset, offset),
            u32::try_from(position),
        ) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset index entry out of range",
            ));
        };
        if let Some(last) = self.file.last() {
            if relative_offset <= last.relative_offset || position <= last.position {
                return Ok(());
            }
        }
        self.file.push(OffsetEntry {
            relative_offset,
            position,
        })
    }

    /// Drop the entries that point at or past `position` (after the log was truncated).
    pub fn truncate_to_position(&mut self, position: u64) -> io::Result<()> {
        let keep = self
            .file
            .resident_entries()?
            .partition_point(|e| u64::from(e.position) < position);
        self.file.truncate(keep)
    }

    /// The last entry as (absolute offset, position).
    pub fn last_entry(&self) -> Option<(i64, u64)> {
        self.file.last().map(|e| {
            (
                self.base_offset + i64::from(e.relative_offset),
                u64::from(e.position),
            )
        })
    }
}

/// `.timeindex`: maps the largest timestamp seen so far in the segment to the offset of
/// the batch that holds it (Kafka's shallow offset), appended only when it grows.
pub(crate) type TimeIndex = SegmentIndex<TimeEntry>;

impl TimeIndex {
    /// Open the index of a sealed segment, on disk: `None` when missing or inconsistent
    /// (its last entry's offset must lie below `end_offset`, an upper bound of the
    /// segment's offsets).
    pub fn load(
        path: PathBuf,
        base_offset: i64,
        end_offset: i64,
        log_size: u64,
        min_batch_len: u64,
    ) -> io::Result<Option<Self>> {
        let max_entries = usize::try_from(log_size / min_batch_len + 1).unwrap_or(usize::MAX);
        let bound = end_offset.saturating_sub(base_offset);
        Ok(IndexFile::open_on_disk(path, bound, max_entries)?
            .map(|file| SegmentIndex { base_offset, file }))
    }

    pub fn rebuilt(path: PathBuf, base_offset: i64, entries: Vec<(i64, i64)>) -> io::Result<Self> {
        let entries = entries
            .into_iter()
            .filter_map(|(timestamp, offset)| {
                Some(TimeEntry {
                    timestamp,
                    relative_offset: relative_offset(base_offset, offset)?,
                })
            })
            .collect();
        Self::written(path, base_offset, entries)
    }

    /// The segment was sealed with offsets below `end_offset`: leave the entries on disk.
    pub fn offload(&mut self, end_offset: i64) -> io::Result<()> {
        self.file
            .offload(end_offset.saturating_sub(self.base_offset))
    }

    /// Offset to start searching from for the first record with timestamp >= `timestamp`:
    /// that of the largest entry whose timestamp is <= `timestamp`, or the segment's base
    /// offset. Correct because an entry names the *first* batch whose records reached its
    /// timestamp: every batch before it is strictly older, so the search may skip them.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        self.file
            .floor(|e| e.timestamp <= timestamp)
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            })
    }

    /// Append `(timestamp, offset)` if `timestamp` exceeds the last entry's (Kafka's
    /// `maybeAppend`).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> io::Result<()> {
        let last = self.file.last();
        if timestamp <= last.map_or(NO_TIMESTAMP, |e| e.timestamp) {
            return Ok(());
        }
        let Some(relative_offset) = relative_offset(self.base_offset, offset) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "time index entry out of range",
            ));
        };
        if last.is_some_and(|last| relative_offset < last.relative_offset) {
            return Ok(());
        }
        self.file.push(TimeEntry {
            timestamp,
            relative_offset,
        })
    }

    /// Drop entries whose offset is >= `next_offset` (after the log was truncated).
    pub fn truncate_to_offset(&mut self, next_offset: i64) -> io::Result<()> {
        let base = self.base_offset;
        let keep = self
            .file
            .resident_entries()?
            .partition_point(|e| base + i64::from(e.relative_offset) < next_offset);
        self.file.truncate(keep)
    }

    /// Last entry as (timestamp, absolute offset).
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.file
            .last()
            .map(|e| (e.timestamp, self.base_offset + i64::from(e.relative_offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_appends_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(path.clone(), 100).unwrap();
        idx.append(110, 4096).unwrap();
        idx.append(130, 9000).unwrap();
        // not increasing: ignored
        idx.append(120, 9500).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(100), 0);
        assert_eq!(idx.lookup(109), 0);
        assert_eq!(idx.lookup(110), 4096);
        assert_eq!(idx.lookup(129), 4096);
        assert_eq!(idx.lookup(500), 9000);
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            2 * OFFSET_INDEX_ENTRY_LEN
        );
        assert_eq!(
            std::fs::read(&path).unwrap()[..8],
            [0, 0, 0, 10, 0, 0, 16, 0]
        );

        let loaded = OffsetIndex::load(path.clone(), 100, 10_000, 61)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.last_entry(), Some((130, 9000)));
        // position beyond the log: inconsistent
        assert!(OffsetIndex::load(path.clone(), 100, 9000, 61)
            .unwrap()
            .is_none());
        // torn entry: inconsistent
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(1);
        std::fs::write(&path, &bytes).unwrap();
        assert!(OffsetIndex::load(path, 100, 10_000, 61).unwrap().is_none());
    }

    #[test]
    fn time_index_only_grows_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::create(path.clone(), 0).unwrap();
        idx.maybe_append(1000, 4).unwrap();
        idx.maybe_append(900, 6).unwrap();
        idx.maybe_append(2000, 9).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(500), 0);
        assert_eq!(idx.lookup(1500), 4);
        assert_eq!(idx.lookup(2500), 9);
        idx.truncate_to_offset(9).unwrap();
        assert_eq!(idx.last_entry(), Some((1000, 4)));
        assert_eq!(std::fs::read(&path).unwrap().len(), TIME_INDEX_ENTRY_LEN);
        let loaded = TimeIndex::load(path.clone(), 0, 10, 100, 61)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.last_entry(), Some((1000, 4)));
        // offset beyond the segment's end: inconsistent
        assert!(TimeIndex::load(path, 0, 4, 100, 61).unwrap().is_none());
    }

    /// A sealed index answers from its file exactly as the resident one did, across
    /// many pages, and goes back to the heap only when written again.
    #[test]
    fn a_sealed_index_searches_its_file_like_the_resident_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000001000.index");
        let mut idx = OffsetIndex::create(path.clone(), 1000).unwrap();
        // 2,000 entries: 4 pages of 512 entries.
        for i in 0..2000u64 {
            idx.append(1000 + 10 * i as i64 + 9, 100 + 4096 * i)
                .unwrap();
        }
        let log_size = 100 + 4096 * 2000;
        let probes: Vec<i64> = (990..21_100).step_by(7).collect();
        let expected: Vec<u64> = probes.iter().map(|&o| idx.lookup(o)).collect();
        let floors: Vec<u64> = (0..log_size)
            .step_by(3001)
            .map(|p| idx.floor_position(p))
            .collect();
        idx.offload(log_size).unwrap();
        assert!(!idx.is_resident());
        assert_eq!(
            probes.iter().map(|&o| idx.lookup(o)).collect::<Vec<_>>(),
            expected
        );
        // Opened from disk (summary built on first use) it answers the same.
        let loaded = OffsetIndex::load(path.clone(), 1000, log_size, 61)
            .unwrap()
            .unwrap();
        assert!(!loaded.is_resident());
        assert_eq!(
            loaded.last_entry(),
            Some((1000 + 10 * 1999 + 9, 100 + 4096 * 1999))
        );
        assert_eq!(
            probes.iter().map(|&o| loaded.lookup(o)).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(
            (0..log_size)
                .step_by(3001)
                .map(|p| loaded.floor_position(p))
                .collect::<Vec<_>>(),
            floors
        );
        // Written again (a truncation), it is resident and its file follows.
        let mut loaded = loaded;
        loaded.truncate_to_position(100 + 4096 * 700).unwrap();
        assert!(loaded.is_resident());
        assert_eq!(loaded.len(), 700);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 700 * 8);
        assert_eq!(loaded.lookup(21_000), 100 + 4096 * 699);
    }

    /// Opening checks the last entry only; a corrupt entry in the middle is found when
    /// the summary is built, and lookups then scan the segment from its start (0)
    /// instead of trusting it. Writing to such an index starts it afresh.
    #[test]
    fn a_corrupt_sealed_index_falls_back_to_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        let mut idx = OffsetIndex::create(path.clone(), 0).unwrap();
        for i in 0..1500u64 {
            idx.append(i as i64 * 2 + 1, 64 * (i + 1)).unwrap();
        }
        drop(idx);
        let mut bytes = std::fs::read(&path).unwrap();
        // Entry 900 goes backwards.
        bytes[900 * 8..900 * 8 + 8].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        std::fs::write(&path, &bytes).unwrap();
        let log_size = 64 * 1600;
        let mut loaded = OffsetIndex::load(path.clone(), 0, log_size, 61)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.lookup(2000), 0);
        assert_eq!(loaded.floor_position(50_000), 0);
        loaded.append(3001, 64 * 1501).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        assert_eq!(loaded.lookup(4000), 64 * 1501);
    }

    #[test]
    fn a_sealed_time_index_searches_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::create(path.clone(), 0).unwrap();
        for i in 0..1000i64 {
            idx.maybe_append(10_000 + 5 * i, 3 * i).unwrap();
        }
        let probes: Vec<i64> = (9_000..16_000).step_by(13).collect();
        let expected: Vec<i64> = probes.iter().map(|&t| idx.lookup(t)).collect();
        idx.offload(3000).unwrap();
        assert_eq!(
            probes.iter().map(|&t| idx.lookup(t)).collect::<Vec<_>>(),
            expected
        );
        let loaded = TimeIndex::load(path, 0, 3000, 1 << 20, 61)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.last_entry(), Some((10_000 + 5 * 999, 3 * 999)));
        assert_eq!(
            probes.iter().map(|&t| loaded.lookup(t)).collect::<Vec<_>>(),
            expected
        );
    }
}
