//! Kafka's two sparse segment indexes, kept in memory and appended to their files.
//!
//! Kafka memory-maps preallocated index files; Ottla keeps the entries in a `Vec` (a
//! lookup is a binary search either way) and appends each new entry to a plain file, so
//! the file is always exactly its entries. Loading validates the whole file; anything
//! inconsistent makes the caller rebuild the index from the `.log`, never panics.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::flush::SyncTarget;
use crate::io_context;

/// `.index` entry: int32 relative offset, int32 file position.
pub(crate) const OFFSET_INDEX_ENTRY_LEN: usize = 8;
/// `.timeindex` entry: int64 timestamp, int32 relative offset.
pub(crate) const TIME_INDEX_ENTRY_LEN: usize = 12;
/// Kafka's `RecordBatch.NO_TIMESTAMP`: the "previous entry" of an empty time index.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// One index file: its entries in memory, and a lazily opened append handle so that
/// inactive segments hold no index file descriptors (once their last writes are flushed).
#[derive(Debug)]
struct IndexFile<E> {
    path: PathBuf,
    entries: Vec<E>,
    writer: Option<Arc<File>>,
    /// The handle that wrote the file since the last [`IndexFile::take_unsynced`], kept
    /// for that flush even after [`IndexFile::close`] (a sealed segment's index is
    /// synced by the flush that follows its roll, without opening the file again).
    unsynced: Option<Arc<File>>,
}

pub(crate) trait Entry: Copy {
    const LEN: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

impl<E: Entry> IndexFile<E> {
    fn new(path: PathBuf, entries: Vec<E>) -> Self {
        IndexFile {
            path,
            entries,
            writer: None,
            unsynced: None,
        }
    }

    /// Read the file's entries, or `None` if it is missing or its length is not a whole
    /// number of entries or exceeds `max_entries` (checked before reading, so a corrupt
    /// huge file is never loaded).
    fn read_entries(path: &Path, max_entries: usize) -> io::Result<Option<Vec<E>>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_context("open", path)(e)),
        };
        let len = file.metadata().map_err(io_context("stat", path))?.len();
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        if len % E::LEN != 0 || len / E::LEN > max_entries {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(len);
        file.read_to_end(&mut bytes)
            .map_err(io_context("read", path))?;
        if bytes.len() != len {
            return Ok(None);
        }
        Ok(Some(bytes.chunks_exact(E::LEN).map(E::decode).collect()))
    }

    fn writer(&mut self) -> io::Result<&Arc<File>> {
        if self.writer.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io_context("open", &self.path))?;
            self.writer = Some(Arc::new(file));
        }
        Ok(self.writer.as_ref().expect("opened above"))
    }

    fn push(&mut self, entry: E) -> io::Result<()> {
        let mut buf = Vec::with_capacity(E::LEN);
        entry.encode(&mut buf);
        let kept = (self.entries.len() * E::LEN) as u64;
        let path = self.path.clone();
        let writer = Arc::clone(self.writer()?);
        if let Err(e) = (&*writer).write_all(&buf) {
            // Best effort: cut a torn entry now, so the next append does not land behind
            // it (the caller undoes the batch; recovery would rebuild the index anyway).
            let _ = writer.set_len(kept);
            return Err(io_context("append to", &path)(e));
        }
        self.entries.push(entry);
        self.unsynced = Some(writer);
        Ok(())
    }

    /// Replace the file's content with the in-memory entries (after a rebuild).
    fn rewrite(&mut self) -> io::Result<()> {
        self.writer = None;
        let mut buf = Vec::with_capacity(self.entries.len() * E::LEN);
        for e in &self.entries {
            e.encode(&mut buf);
        }
        let mut file = File::create(&self.path).map_err(io_context("create", &self.path))?;
        file.write_all(&buf)
            .map_err(io_context("write", &self.path))?;
        self.unsynced = Some(Arc::new(file));
        Ok(())
    }

    /// Keep only the first `keep` entries, in memory and on disk.
    fn truncate(&mut self, keep: usize) -> io::Result<()> {
        if keep >= self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        let path = self.path.clone();
        let len = (self.entries.len() * E::LEN) as u64;
        let writer = Arc::clone(self.writer()?);
        writer.set_len(len).map_err(io_context("truncate", &path))?;
        self.unsynced = Some(writer);
        Ok(())
    }

    /// The file to fsync if it was written since the last call (see [`crate::FlushPlan`]).
    fn take_unsynced(&mut self) -> Option<SyncTarget> {
        let file = self.unsynced.take()?;
        Some(SyncTarget::new(file, self.path.clone()))
    }

    fn close(&mut self) {
        self.writer = None;
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
            file: IndexFile::new(path, entries),
        }
    }

    /// An index of `entries` whose file is (re)written now.
    fn written(path: PathBuf, base_offset: i64, entries: Vec<E>) -> io::Result<Self> {
        let mut index = Self::with_entries(path, base_offset, entries);
        index.file.rewrite()?;
        Ok(index)
    }

    /// A new, empty index whose file is created (or emptied) now.
    pub fn create(path: PathBuf, base_offset: i64) -> io::Result<Self> {
        Self::written(path, base_offset, Vec::new())
    }

    /// An empty in-memory index for `path` that has not touched the file (a placeholder
    /// until the segment's indexes are loaded or rebuilt).
    pub fn detached(path: PathBuf, base_offset: i64) -> Self {
        Self::with_entries(path, base_offset, Vec::new())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.file.entries.len()
    }
    pub fn path(&self) -> &Path {
        &self.file.path
    }
    pub fn take_unsynced(&mut self) -> Option<SyncTarget> {
        self.file.take_unsynced()
    }
    pub fn close(&mut self) {
        self.file.close()
    }
}

/// `.index`: maps a batch's last offset to the file position where that batch starts,
/// one entry per `index.interval.bytes` of log (Kafka's sparse offset index).
pub(crate) type OffsetIndex = SegmentIndex<OffsetEntry>;

impl OffsetIndex {
    /// Load and sanity-check the index of a segment whose `.log` is `log_size` bytes.
    /// `None` when missing or inconsistent: relative offsets and positions must strictly
    /// increase and positions must lie inside the log (Kafka's `sanityCheck`, stricter).
    pub fn load(
        path: PathBuf,
        base_offset: i64,
        log_size: u64,
        min_batch_len: u64,
    ) -> io::Result<Option<Self>> {
        let max_entries = usize::try_from(log_size / min_batch_len + 1).unwrap_or(usize::MAX);
        let Some(entries) = IndexFile::<OffsetEntry>::read_entries(&path, max_entries)? else {
            return Ok(None);
        };
        let mut previous: Option<OffsetEntry> = None;
        for e in &entries {
            if e.relative_offset > i32::MAX as u32 || u64::from(e.position) >= log_size {
                return Ok(None);
            }
            if let Some(p) = previous {
                if e.relative_offset <= p.relative_offset || e.position <= p.position {
                    return Ok(None);
                }
            }
            previous = Some(*e);
        }
        Ok(Some(Self::with_entries(path, base_offset, entries)))
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

    /// Position to start scanning from for `offset`: that of the largest entry whose
    /// offset is <= `offset`, or 0.
    pub fn lookup(&self, offset: i64) -> u64 {
        let entries = &self.file.entries;
        let i =
            entries.partition_point(|e| self.base_offset + i64::from(e.relative_offset) <= offset);
        if i == 0 {
            0
        } else {
            u64::from(entries[i - 1].position)
        }
    }

    /// The position of the last indexed batch that starts at or before `position` (0
    /// when none does): a batch boundary to walk forward from.
    pub fn floor_position(&self, position: u64) -> u64 {
        let entries = &self.file.entries;
        let i = entries.partition_point(|e| u64::from(e.position) <= position);
        if i == 0 {
            0
        } else {
            u64::from(entries[i - 1].position)
        }
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
        if let Some(last) = self.file.entries.last() {
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
            .entries
            .partition_point(|e| u64::from(e.position) < position);
        self.file.truncate(keep)
    }

    /// The last entry as (absolute offset, position).
    pub fn last_entry(&self) -> Option<(i64, u64)> {
        self.file.entries.last().map(|e| {
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
    /// Load and sanity-check: timestamps strictly increase (entries are only appended
    /// when the maximum grows), offsets never decrease and stay below `end_offset` (an
    /// upper bound of the segment's offsets).
    pub fn load(
        path: PathBuf,
        base_offset: i64,
        end_offset: i64,
        log_size: u64,
        min_batch_len: u64,
    ) -> io::Result<Option<Self>> {
        let max_entries = usize::try_from(log_size / min_batch_len + 1).unwrap_or(usize::MAX);
        let Some(entries) = IndexFile::<TimeEntry>::read_entries(&path, max_entries)? else {
            return Ok(None);
        };
        let mut previous: Option<TimeEntry> = None;
        for e in &entries {
            if e.relative_offset > i32::MAX as u32
                || base_offset + i64::from(e.relative_offset) >= end_offset
                || e.timestamp <= NO_TIMESTAMP
            {
                return Ok(None);
            }
            if let Some(p) = previous {
                if e.timestamp <= p.timestamp || e.relative_offset < p.relative_offset {
                    return Ok(None);
                }
            }
            previous = Some(*e);
        }
        Ok(Some(Self::with_entries(path, base_offset, entries)))
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

    /// Offset to start searching from for the first record with timestamp >= `timestamp`:
    /// that of the largest entry whose timestamp is <= `timestamp`, or the segment's base
    /// offset. Correct because an entry names the *first* batch whose records reached its
    /// timestamp: every batch before it is strictly older, so the search may skip them.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let entries = &self.file.entries;
        let i = entries.partition_point(|e| e.timestamp <= timestamp);
        if i == 0 {
            self.base_offset
        } else {
            self.base_offset + i64::from(entries[i - 1].relative_offset)
        }
    }

    /// Append `(timestamp, offset)` if `timestamp` exceeds the last entry's (Kafka's
    /// `maybeAppend`).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> io::Result<()> {
        let last_ts = self
            .file
            .entries
            .last()
            .map_or(NO_TIMESTAMP, |e| e.timestamp);
        if timestamp <= last_ts {
            return Ok(());
        }
        let Some(relative_offset) = relative_offset(self.base_offset, offset) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "time index entry out of range",
            ));
        };
        if let Some(last) = self.file.entries.last() {
            if relative_offset < last.relative_offset {
                return Ok(());
            }
        }
        self.file.push(TimeEntry {
            timestamp,
            relative_offset,
        })
    }

    /// Drop entries whose offset is >= `next_offset` (after the log was truncated).
    pub fn truncate_to_offset(&mut self, next_offset: i64) -> io::Result<()> {
        let keep = self
            .file
            .entries
            .partition_point(|e| self.base_offset + i64::from(e.relative_offset) < next_offset);
        self.file.truncate(keep)
    }

    /// Last entry as (timestamp, absolute offset).
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.file
            .entries
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
}
