//! The leader-epoch cache: the first offset written in each leader epoch of a partition,
//! Kafka's `LeaderEpochFileCache`, persisted as Kafka's `leader-epoch-checkpoint` file.
//!
//! A follower that becomes unsure of its log (after a restart or a leader change) asks
//! the leader where its last epoch ended (OffsetsForLeaderEpoch) and truncates there, so
//! that it never keeps records the new leader does not have; consumers ask the same
//! question to detect a truncated log. Both questions are answered from this cache.
//!
//! The cache changes only when the leader epoch changes (and on truncation and
//! retention), so every change is written to the checkpoint, fsynced, before the method
//! that made it returns; nothing is deferred to a flush. The semantics of every method
//! are Kafka's, including the odd corners (see each method).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::log::sync_dir;
use crate::{io_context, LogError};

/// The checkpoint's file name in the partition directory (Kafka's).
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Where a checkpoint is written before it is renamed over the real one. The `.tmp`
/// suffix is one the log removes when it opens the directory, so a leftover of a crash
/// during a write goes away.
const CHECKPOINT_TMP: &str = "leader-epoch-checkpoint.tmp";
/// The only version of Kafka's checkpoint text format.
const CHECKPOINT_VERSION: i32 = 0;
/// Kafka's `UNDEFINED_EPOCH` (also `RecordBatch.NO_PARTITION_LEADER_EPOCH`).
const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`: the end offset answered for an unknown epoch.
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

impl fmt::Display for EpochEntry {
    /// Kafka's `EpochEntry.toString`, so that the log lines read as Kafka's do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EpochEntry(epoch={}, startOffset={})",
            self.epoch, self.start_offset
        )
    }
}

/// The leader epochs of one partition's log, oldest first, and their checkpoint file.
///
/// Invariant: epochs and start offsets are both strictly increasing. A handful of
/// entries at most (one per leader change still in the log), hence a `Vec`.
#[derive(Debug)]
pub struct LeaderEpochCache {
    /// The partition directory, fsynced after the checkpoint is renamed into it.
    dir: PathBuf,
    /// The directory's name (`<topic>-<partition>`), for log lines.
    name: String,
    entries: Vec<EpochEntry>,
    /// The entries differ from the checkpoint on disk. Only true inside a method (every
    /// public change writes before it returns), while [`crate::Log::open`] rebuilds the
    /// cache (it writes once at the end), and after a failed write.
    dirty: bool,
}

impl LeaderEpochCache {
    /// Load the checkpoint of the partition directory `dir`. Returns the cache and
    /// whether the checkpoint was read; if not (missing, empty or malformed), the cache
    /// is empty and the caller rebuilds it from the whole log.
    ///
    /// A missing file is only written once the cache has an entry (or replaces a
    /// malformed file): it already means an empty cache, and creating a partition then
    /// costs no extra fsyncs.
    ///
    /// Kafka fails to open a log whose checkpoint is malformed; we log it and rebuild,
    /// since every batch carries the epoch of the leader that wrote it. The entries are
    /// loaded through [`LeaderEpochCache::assign`]'s rule, as Kafka's constructor does,
    /// so a file with non-monotonic entries is repaired rather than trusted.
    pub(crate) fn load(dir: &Path, name: &str) -> Result<(LeaderEpochCache, bool), LogError> {
        let mut cache = LeaderEpochCache {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            entries: Vec::new(),
            dirty: false,
        };
        let path = cache.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((cache, false)),
            Err(e) => return Err(io_context("read", &path)(e).into()),
        };
        // Kafka creates the file empty before its first write: it says no more than a
        // missing one.
        if bytes.is_empty() {
            return Ok((cache, false));
        }
        match parse_checkpoint(&bytes) {
            Ok(entries) => {
                for &entry in &entries {
                    cache.assign_in_memory(entry);
                }
                // Rewritten (once the open is complete) only if the file needed repair.
                cache.dirty = cache.entries != entries;
                Ok((cache, true))
            }
            Err(reason) => {
                warn!(
                    "Ignoring malformed {} of {} ({reason}); rebuilding it from the log",
                    path.display(),
                    cache.name
                );
                cache.dirty = true;
                Ok((cache, false))
            }
        }
    }

    /// The checkpoint file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(LEADER_EPOCH_CHECKPOINT)
    }

    /// All entries, oldest epoch first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Record that `epoch` starts at `start_offset`; true if the cache changed.
    ///
    /// Kafka's `assign`: nothing to do when the latest entry already has this epoch and
    /// starts at or before `start_offset` (later batches of the same epoch). Otherwise
    /// every entry from the end that conflicts with the new one (an epoch at or above
    /// it, or a start offset at or after it) is removed first, so the entries stay
    /// monotonic. A negative epoch or offset (a batch written without a leader epoch) is
    /// ignored; Kafka rejects it.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, LogError> {
        let changed = self.assign_in_memory(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()?;
        Ok(changed)
    }

    /// Kafka's private `assign(EpochEntry)`: the change without the write.
    fn assign_in_memory(&mut self, entry: EpochEntry) -> bool {
        if entry.epoch < 0 || entry.start_offset < 0 {
            return false;
        }
        // Kafka's `isUpdateNeeded`.
        let update_needed = self.entries.last().is_none_or(|latest| {
            entry.epoch != latest.epoch || entry.start_offset < latest.start_offset
        });
        if !update_needed {
            return false;
        }
        // Kafka's `maybeTruncateNonMonotonicEntries`; removed entries are listed from the
        // end, as Kafka's `removeFromEnd` lists them.
        let mut removed = Vec::new();
        while let Some(&last) = self.entries.last() {
            if last.epoch < entry.epoch && last.start_offset < entry.start_offset {
                break;
            }
            removed.push(last);
            self.entries.pop();
        }
        // Replacing an entry that starts at the same offset only means no data was
        // written in the replaced epoch: expected, so not worth a warning.
        if removed.len() > 1
            || removed
                .first()
                .is_some_and(|r| r.start_offset != entry.start_offset)
        {
            let list: Vec<String> = removed.iter().map(ToString::to_string).collect();
            warn!(
                "New epoch entry {entry} caused truncation of conflicting entries [{}] in the leader \
                 epoch cache of {}. Cache now contains {} entries.",
                list.join(", "),
                self.name,
                self.entries.len()
            );
        }
        self.entries.push(entry);
        self.changed();
        true
    }

    /// A batch met while [`crate::Log::open`] walks the log: its epoch is recorded only
    /// if it is above the latest one, as in Kafka's `LogSegment.recover`. A lower epoch
    /// is already in the cache (the log holds epochs in increasing order), and
    /// assigning it would wrongly truncate the later entries.
    pub(crate) fn assign_recovered(&mut self, epoch: i32, base_offset: i64) {
        if epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest) {
            self.assign_in_memory(EpochEntry {
                epoch,
                start_offset: base_offset,
            });
        }
    }

    /// The end of [`crate::Log::open`]'s rebuild: drop what lies outside
    /// `[log_start_offset, log_end_offset)` (Kafka's `LogLoader` does both truncations
    /// after recovery), then write the checkpoint if anything differs from the file.
    pub(crate) fn finish_recovery(
        &mut self,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> Result<(), LogError> {
        self.truncate_from_end_in_memory(log_end_offset);
        self.truncate_from_start_in_memory(log_start_offset);
        self.persist()
    }

    /// Kafka's `endOffsetFor`, the answer to OffsetsForLeaderEpoch: (the largest epoch
    /// <= `requested_epoch`, the offset where it ended: the start offset of the next
    /// epoch, or `log_end_offset` for the latest epoch), or (-1, -1) when unknown.
    ///
    /// A requested epoch older than every entry answers with the requested epoch itself
    /// and the first entry's start offset: the older data is gone, and the follower must
    /// truncate to where the log now starts its epochs.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        if requested_epoch == UNDEFINED_EPOCH {
            // A bootstrapping follower, or one on a message format without epochs.
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested_epoch) {
            // The epoch still being written to ends at the log end.
            return (requested_epoch, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested_epoch) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match self
            .entries
            .iter()
            .rev()
            .find(|e| e.epoch <= requested_epoch)
        {
            None => (requested_epoch, higher.start_offset),
            Some(floor) => (floor.epoch, higher.start_offset),
        }
    }

    /// Kafka's `epochForOffset`: the epoch `offset` was written in (the last entry
    /// starting at or before it); `None` before the first entry.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .take_while(|e| e.start_offset <= offset)
            .last()
            .map(|e| e.epoch)
    }

    /// Kafka's `truncateFromEnd`, after the log was truncated to `end_offset`: remove
    /// every entry starting at or after it.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), LogError> {
        self.truncate_from_end_in_memory(end_offset);
        self.persist()
    }

    fn truncate_from_end_in_memory(&mut self, end_offset: i64) {
        if end_offset < 0
            || self
                .entries
                .last()
                .is_none_or(|latest| latest.start_offset < end_offset)
        {
            return;
        }
        let removed = self
            .entries
            .iter()
            .rev()
            .take_while(|e| e.start_offset >= end_offset)
            .count();
        self.entries.truncate(self.entries.len() - removed);
        self.changed();
    }

    /// Kafka's `truncateFromStart`, after the log start moved to `start_offset`: the
    /// entries starting at or before it are replaced by one entry, of the latest of
    /// them, starting at `start_offset`; the log's first offset keeps its epoch.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), LogError> {
        self.truncate_from_start_in_memory(start_offset);
        self.persist()
    }

    fn truncate_from_start_in_memory(&mut self, start_offset: i64) {
        let removed = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        let Some(&last_removed) = removed.checked_sub(1).and_then(|i| self.entries.get(i)) else {
            return;
        };
        let first = EpochEntry {
            epoch: last_removed.epoch,
            start_offset,
        };
        if removed == 1 && last_removed == first {
            // Already starts exactly there: Kafka rewrites the same entry.
            return;
        }
        self.entries.drain(..removed);
        self.entries.insert(0, first);
        self.changed();
    }

    /// Remove every entry (Kafka's `clearAndFlush`: the log was emptied). Written even
    /// when already empty, as Kafka does, so no stale file can outlive the data.
    pub fn clear(&mut self) -> Result<(), LogError> {
        self.entries.clear();
        self.changed();
        self.persist()
    }

    /// Note a change of the entries, and check the invariant in debug builds.
    fn changed(&mut self) {
        self.dirty = true;
        debug_assert!(
            self.entries
                .windows(2)
                .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset),
            "leader epoch entries not strictly increasing: {:?}",
            self.entries
        );
    }

    /// Write the checkpoint if the entries changed since it was last written. A failed
    /// write leaves the cache dirty, so the next call of any public method retries it;
    /// the temporary file is rewritten whole each time, so an earlier failed fsync of it
    /// taints nothing, and the checkpoint itself stays the old one until a rename.
    fn persist(&mut self) -> Result<(), LogError> {
        if self.dirty {
            self.write_checkpoint()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Kafka's `CheckpointFile.write`: the whole file to a temporary one, fsynced,
    /// renamed over the checkpoint, and the directory fsynced, so that a crash leaves
    /// either the old checkpoint or the new one.
    fn write_checkpoint(&self) -> Result<(), LogError> {
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let path = self.path();
        let mut file = fs::File::create(&tmp).map_err(io_context("create", &tmp))?;
        file.write_all(checkpoint_text(&self.entries).as_bytes())
            .map_err(io_context("write", &tmp))?;
        file.sync_all().map_err(io_context("fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_context("rename", &tmp))?;
        sync_dir(&self.dir)
    }
}

/// Kafka's checkpoint text: the version, the entry count, then `<epoch> <startOffset>`
/// per entry, each line ending in a newline.
fn checkpoint_text(entries: &[EpochEntry]) -> String {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for e in entries {
        text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    text
}

/// Parse Kafka's checkpoint text as Kafka's `CheckpointReadBuffer` does: version 0, the
/// count, exactly that many lines of two whitespace-separated numbers and nothing after
/// them. Negative values are refused too (Kafka's cache rejects them on load).
fn parse_checkpoint(bytes: &[u8]) -> Result<Vec<EpochEntry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut lines = text.lines();
    let version = lines.next().ok_or("no version line")?;
    if version.parse::<i32>() != Ok(CHECKPOINT_VERSION) {
        return Err(format!(
            "unrecognised version {version:?}, expected {CHECKPOINT_VERSION}"
        ));
    }
    let count_line = lines.next().ok_or("no entry count")?;
    let count: usize = count_line
        .parse()
        .map_err(|_| format!("bad entry count {count_line:?}"))?;
    let mut entries = Vec::new();
    for line in lines {
        if entries.len() == count {
            return Err(format!("more than the {count} entries announced"));
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let &[epoch, start_offset] = fields.as_slice() else {
            return Err(format!("malformed line {line:?}"));
        };
        let (Ok(epoch), Ok(start_offset)) = (epoch.parse::<i32>(), start_offset.parse::<i64>())
        else {
            return Err(format!("malformed line {line:?}"));
        };
        if epoch < 0 || start_offset < 0 {
            return Err(format!("negative epoch or offset in line {line:?}"));
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if entries.len() != count {
        return Err(format!("{} entries, but {count} announced", entries.len()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: i32, start_offset: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    /// A cache in a fresh directory, with `entries` assigned in order.
    fn cache_with(entries: &[(i32, i64)]) -> (tempfile::TempDir, LeaderEpochCache) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        assert!(!read, "no checkpoint yet");
        for &(epoch, offset) in entries {
            cache.assign(epoch, offset).unwrap();
        }
        (tmp, cache)
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    fn file_text(dir: &Path) -> String {
        fs::read_to_string(dir.join(LEADER_EPOCH_CHECKPOINT)).unwrap()
    }

    #[test]
    fn checkpoint_bytes_are_kafkas_format() {
        let (tmp, cache) = cache_with(&[(0, 0), (3, 150)]);
        assert_eq!(pairs(&cache), vec![(0, 0), (3, 150)]);
        assert_eq!(
            fs::read(tmp.path().join("leader-epoch-checkpoint")).unwrap(),
            b"0\n2\n0 0\n3 150\n"
        );
        assert!(!tmp.path().join("leader-epoch-checkpoint.tmp").exists());
    }

    #[test]
    fn reload_keeps_the_entries() {
        let (tmp, cache) = cache_with(&[(1, 5), (4, 20), (7, 90)]);
        drop(cache);
        let (cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        assert!(read);
        assert_eq!(pairs(&cache), vec![(1, 5), (4, 20), (7, 90)]);
        assert_eq!(cache.latest_epoch(), Some(7));
        assert_eq!(cache.latest_entry(), Some(entry(7, 90)));
    }

    #[test]
    fn same_epoch_at_a_later_offset_is_ignored() {
        let (tmp, mut cache) = cache_with(&[(2, 10)]);
        assert!(!cache.assign(2, 10).unwrap());
        assert!(!cache.assign(2, 11).unwrap());
        assert!(!cache.assign(2, 500).unwrap());
        assert_eq!(pairs(&cache), vec![(2, 10)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n2 10\n");
    }

    #[test]
    fn same_epoch_at_an_earlier_offset_replaces_the_entry() {
        let (tmp, mut cache) = cache_with(&[(2, 10)]);
        assert!(cache.assign(2, 8).unwrap());
        assert_eq!(pairs(&cache), vec![(2, 8)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n2 8\n");
    }

    #[test]
    fn a_new_epoch_is_appended() {
        let (tmp, mut cache) = cache_with(&[(0, 0)]);
        assert!(cache.assign(1, 40).unwrap());
        assert!(cache.assign(5, 41).unwrap());
        assert_eq!(pairs(&cache), vec![(0, 0), (1, 40), (5, 41)]);
        assert_eq!(file_text(tmp.path()), "0\n3\n0 0\n1 40\n5 41\n");
    }

    #[test]
    fn conflicting_entries_are_removed_from_the_end() {
        // a lower epoch than the latest removes every entry with an epoch at or above it
        let (_tmp, mut cache) = cache_with(&[(0, 0), (2, 10), (4, 20)]);
        assert!(cache.assign(3, 30).unwrap());
        assert_eq!(pairs(&cache), vec![(0, 0), (2, 10), (3, 30)]);
        // a higher epoch at an offset at or below earlier starts removes those entries
        let (_tmp, mut cache) = cache_with(&[(0, 0), (2, 10), (4, 20)]);
        assert!(cache.assign(6, 10).unwrap());
        assert_eq!(pairs(&cache), vec![(0, 0), (6, 10)]);
        // both at once, down to nothing
        let (tmp, mut cache) = cache_with(&[(1, 5), (2, 10)]);
        assert!(cache.assign(0, 3).unwrap());
        assert_eq!(pairs(&cache), vec![(0, 3)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n0 3\n");
        // an epoch already in the cache but not the latest: Kafka removes back to it
        let (_tmp, mut cache) = cache_with(&[(1, 0), (3, 10)]);
        assert!(cache.assign(1, 0).unwrap());
        assert_eq!(pairs(&cache), vec![(1, 0)]);
    }

    #[test]
    fn negative_epochs_and_offsets_are_ignored() {
        let (tmp, mut cache) = cache_with(&[(1, 5)]);
        assert!(!cache.assign(-1, 10).unwrap());
        assert!(!cache.assign(2, -1).unwrap());
        assert_eq!(pairs(&cache), vec![(1, 5)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n1 5\n");
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let (_tmp, cache) = cache_with(&[(1, 10), (3, 20), (5, 40)]);
        let leo = 57;
        // undefined epoch
        assert_eq!(cache.end_offset_for(-1, leo), (-1, -1));
        // the latest epoch ends at the log end
        assert_eq!(cache.end_offset_for(5, leo), (5, 57));
        // a known epoch ends where the next one starts
        assert_eq!(cache.end_offset_for(1, leo), (1, 20));
        assert_eq!(cache.end_offset_for(3, leo), (3, 40));
        // an epoch between two known ones: the one below it, ending at the next start
        assert_eq!(cache.end_offset_for(2, leo), (1, 20));
        assert_eq!(cache.end_offset_for(4, leo), (3, 40));
        // older than every entry: the requested epoch and the first entry's start
        assert_eq!(cache.end_offset_for(0, leo), (0, 10));
        // newer than every entry
        assert_eq!(cache.end_offset_for(6, leo), (-1, -1));
        // an empty cache knows nothing
        let (_tmp, empty) = cache_with(&[]);
        assert_eq!(empty.end_offset_for(0, leo), (-1, -1));
        assert_eq!(empty.end_offset_for(-1, leo), (-1, -1));
    }

    #[test]
    fn epoch_for_offset_follows_kafka() {
        let (_tmp, cache) = cache_with(&[(1, 10), (3, 20), (5, 40)]);
        assert_eq!(cache.epoch_for_offset(9), None);
        assert_eq!(cache.epoch_for_offset(10), Some(1));
        assert_eq!(cache.epoch_for_offset(19), Some(1));
        assert_eq!(cache.epoch_for_offset(20), Some(3));
        assert_eq!(cache.epoch_for_offset(39), Some(3));
        assert_eq!(cache.epoch_for_offset(40), Some(5));
        assert_eq!(cache.epoch_for_offset(1000), Some(5));
    }

    #[test]
    fn truncate_from_end_removes_entries_at_and_after_the_end() {
        let (tmp, mut cache) = cache_with(&[(1, 10), (3, 20), (5, 40)]);
        // the latest entry starts below the end: nothing to do
        cache.truncate_from_end(41).unwrap();
        assert_eq!(pairs(&cache), vec![(1, 10), (3, 20), (5, 40)]);
        cache.truncate_from_end(20).unwrap();
        assert_eq!(pairs(&cache), vec![(1, 10)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n1 10\n");
        // a negative end offset is ignored, as in Kafka
        cache.truncate_from_end(-1).unwrap();
        assert_eq!(pairs(&cache), vec![(1, 10)]);
        cache.truncate_from_end(10).unwrap();
        assert_eq!(pairs(&cache), vec![]);
        assert_eq!(file_text(tmp.path()), "0\n0\n");
    }

    #[test]
    fn truncate_from_start_moves_the_first_entry() {
        let (tmp, mut cache) = cache_with(&[(1, 10), (3, 20), (5, 40)]);
        // before the first entry: nothing removed, nothing inserted
        cache.truncate_from_start(9).unwrap();
        assert_eq!(pairs(&cache), vec![(1, 10), (3, 20), (5, 40)]);
        // inside epoch 3: epochs 1 and 3 go, epoch 3 now starts at 25
        cache.truncate_from_start(25).unwrap();
        assert_eq!(pairs(&cache), vec![(3, 25), (5, 40)]);
        assert_eq!(file_text(tmp.path()), "0\n2\n3 25\n5 40\n");
        // exactly at an entry's start: that entry stays as it is
        cache.truncate_from_start(40).unwrap();
        assert_eq!(pairs(&cache), vec![(5, 40)]);
        // past the last start
        cache.truncate_from_start(70).unwrap();
        assert_eq!(pairs(&cache), vec![(5, 70)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n5 70\n");
    }

    #[test]
    fn clear_empties_the_file_too() {
        let (tmp, mut cache) = cache_with(&[(1, 10), (3, 20)]);
        cache.clear().unwrap();
        assert_eq!(pairs(&cache), vec![]);
        assert_eq!(cache.latest_epoch(), None);
        assert_eq!(file_text(tmp.path()), "0\n0\n");
    }

    #[test]
    fn malformed_checkpoints_are_not_read() {
        for bad in [
            &b"1\n0\n"[..],
            b"0\n",
            b"0\nx\n",
            b"0\n-1\n",
            b"0\n2\n0 0\n",
            b"0\n1\n0 0\n3 150\n",
            b"0\n1\n0\n",
            b"0\n1\n0 0 0\n",
            b"0\n1\n0 x\n",
            b"0\n1\n-1 0\n",
            b"0\n1\n0 -5\n",
            b"0\n1\n0 0\n\n",
            b"0\n1\n\xff 0\n",
        ] {
            let tmp = tempfile::tempdir().unwrap();
            fs::write(tmp.path().join(LEADER_EPOCH_CHECKPOINT), bad).unwrap();
            let (cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
            assert!(!read, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(pairs(&cache), vec![]);
        }
    }

    #[test]
    fn parsing_accepts_what_kafka_writes() {
        assert_eq!(parse_checkpoint(b"0\n0\n"), Ok(vec![]));
        assert_eq!(
            parse_checkpoint(b"0\n2\n0 0\n3 150\n"),
            Ok(vec![entry(0, 0), entry(3, 150)])
        );
        // without the last newline, or with CRLF line ends
        assert_eq!(parse_checkpoint(b"0\r\n1\r\n4 7"), Ok(vec![entry(4, 7)]));
    }

    #[test]
    fn an_empty_file_is_like_a_missing_one() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(LEADER_EPOCH_CHECKPOINT), b"").unwrap();
        let (cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        assert!(!read);
        assert!(cache.entries().is_empty());
    }

    #[test]
    fn non_monotonic_entries_on_disk_are_repaired_on_load() {
        let tmp = tempfile::tempdir().unwrap();
        // epoch 2 at 30 conflicts with epoch 4 at 20: assigning it removes epoch 4
        fs::write(
            tmp.path().join(LEADER_EPOCH_CHECKPOINT),
            b"0\n3\n1 10\n4 20\n2 30\n",
        )
        .unwrap();
        let (mut cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        assert!(read);
        assert_eq!(pairs(&cache), vec![(1, 10), (2, 30)]);
        cache.finish_recovery(0, 100).unwrap();
        assert_eq!(file_text(tmp.path()), "0\n2\n1 10\n2 30\n");
    }

    #[test]
    fn a_sound_checkpoint_is_not_rewritten_on_load() {
        let tmp = tempfile::tempdir().unwrap();
        // two spaces: parsed like one, but a rewrite would show
        let text = "0\n1\n3  7\n";
        fs::write(tmp.path().join(LEADER_EPOCH_CHECKPOINT), text).unwrap();
        let (mut cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        assert!(read);
        cache.finish_recovery(0, 100).unwrap();
        assert_eq!(pairs(&cache), vec![(3, 7)]);
        assert_eq!(file_text(tmp.path()), text);
    }

    #[test]
    fn recovery_writes_the_file_only_when_it_has_something_to_say() {
        // missing and nothing found: still missing
        let tmp = tempfile::tempdir().unwrap();
        let (mut cache, _) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        cache.finish_recovery(0, 0).unwrap();
        assert!(!tmp.path().join(LEADER_EPOCH_CHECKPOINT).exists());
        // malformed and nothing found: replaced by an empty checkpoint
        fs::write(tmp.path().join(LEADER_EPOCH_CHECKPOINT), b"junk").unwrap();
        let (mut cache, read) = LeaderEpochCache::load(tmp.path(), "t-0").unwrap();
        assert!(!read);
        cache.finish_recovery(0, 0).unwrap();
        assert_eq!(file_text(tmp.path()), "0\n0\n");
    }

    #[test]
    fn a_failed_write_is_retried_by_the_next_call() {
        let (tmp, mut cache) = cache_with(&[(1, 0)]);
        // a directory where the temporary file goes makes the write fail
        let blocker = tmp.path().join("leader-epoch-checkpoint.tmp");
        fs::create_dir(&blocker).unwrap();
        assert!(matches!(cache.assign(2, 10), Err(LogError::Io(_))));
        assert_eq!(pairs(&cache), vec![(1, 0), (2, 10)]);
        assert_eq!(file_text(tmp.path()), "0\n1\n1 0\n");
        fs::remove_dir(&blocker).unwrap();
        // nothing new to assign, but the pending write goes out
        assert!(!cache.assign(2, 12).unwrap());
        assert_eq!(file_text(tmp.path()), "0\n2\n1 0\n2 10\n");
    }

    #[test]
    fn recovery_assigns_only_epochs_above_the_latest() {
        let (tmp, mut cache) = cache_with(&[(3, 100), (5, 200)]);
        // batches of epoch 3 and 5 again (already known), then 6
        for (epoch, offset) in [(3, 150), (5, 210), (-1, 220), (6, 230), (6, 240)] {
            cache.assign_recovered(epoch, offset);
        }
        assert_eq!(pairs(&cache), vec![(3, 100), (5, 200), (6, 230)]);
        cache.finish_recovery(120, 235).unwrap();
        assert_eq!(pairs(&cache), vec![(3, 120), (5, 200), (6, 230)]);
        assert_eq!(file_text(tmp.path()), "0\n3\n3 120\n5 200\n6 230\n");
    }
}
