//! The aborted-transaction index: Kafka's `<base offset>.txnindex`, one per segment.
//!
//! Every ABORT marker appended to a log adds an entry naming the producer, the first
//! offset of its aborted transaction, the marker's offset, and the log's last stable
//! offset once the transaction ended. A read_committed fetch sends the entries that
//! overlap what it returns (`aborted_transactions`), and the consumer drops those
//! producers' records between the first offset and the marker.
//!
//! File format (Kafka's `TransactionIndex`): 34-byte entries of `int16 version (0) |
//! int64 producerId | int64 firstOffset | int64 lastOffset | int64 lastStableOffset`,
//! appended in marker order. The entries live in memory too (aborts are rare: 34 bytes
//! each); the file is what survives a restart. Like the other index files, it is
//! fsynced by the log's flushes, and entries at or after the recovery segment are
//! rebuilt from the markers themselves when the log is recovered.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::flush::SyncTarget;
use crate::io_context;

pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";
/// The entry version Kafka writes and reads.
const ENTRY_VERSION: i16 = 0;
const ENTRY_LEN: usize = 34;

/// One aborted transaction of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn to_bytes(self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn parse(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if b.len() != ENTRY_LEN || i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        let entry = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        (entry.producer_id >= 0 && entry.first_offset <= entry.last_offset).then_some(entry)
    }
}

/// A segment's `.txnindex`, created on its first entry.
#[derive(Debug)]
pub(crate) struct TxnIndexFile {
    path: PathBuf,
    file: Option<Arc<File>>,
    /// Written since the last [`TxnIndexFile::take_unsynced`].
    dirty: bool,
}

impl TxnIndexFile {
    pub fn new(path: PathBuf) -> TxnIndexFile {
        TxnIndexFile {
            path,
            file: None,
            dirty: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Follow the file to its new name after a rename (an open handle stays valid).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub fn append(&mut self, entry: AbortedTxn) -> io::Result<()> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io_context("create", &self.path))?;
            self.file = Some(Arc::new(file));
        }
        if let Some(file) = &self.file {
            (&**file)
                .write_all(&entry.to_bytes())
                .map_err(io_context("write", &self.path))?;
            self.dirty = true;
        }
        Ok(())
    }

    /// The entries on disk; a torn or unreadable tail entry ends the list (it is
    /// rebuilt from its marker if the marker survived).
    pub fn read(&self) -> io::Result<Vec<AbortedTxn>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_context("read", &self.path)(e)),
        };
        Ok(bytes
            .chunks_exact(ENTRY_LEN)
            .map_while(AbortedTxn::parse)
            .collect())
    }

    /// Replace the file's contents with `entries` (after a truncation or on recovery).
    pub fn rewrite(&mut self, entries: &[AbortedTxn]) -> io::Result<()> {
        self.file = None;
        if entries.is_empty() {
            return self.delete();
        }
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for e in entries {
            bytes.extend_from_slice(&e.to_bytes());
        }
        fs::write(&self.path, bytes).map_err(io_context("write", &self.path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_context("open", &self.path))?;
        self.file = Some(Arc::new(file));
        self.dirty = true;
        Ok(())
    }

    pub fn take_unsynced(&mut self) -> Option<SyncTarget> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        // The flush takes the handle: aborts are rare, and a sealed segment's index
        // should not hold a descriptor (the next append reopens the file).
        self.file
            .take()
            .map(|f| SyncTarget::new(f, self.path.clone()))
    }

    pub fn delete(&mut self) -> io::Result<()> {
        self.file = None;
        self.dirty = false;
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_context("delete", &self.path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_kafkas_layout_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndexFile::new(path.clone());
        let a = AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 20,
            last_stable_offset: 10,
        };
        index.append(a).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &20i64.to_be_bytes());
        let mut torn = bytes.clone();
        torn.extend_from_slice(&bytes[..20]);
        fs::write(&path, torn).unwrap();
        assert_eq!(index.read().unwrap(), vec![a]);
        index.rewrite(&[]).unwrap();
        assert!(!path.exists());
        assert!(index.read().unwrap().is_empty());
    }
}
