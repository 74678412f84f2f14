//! Zero-copy reads: a fetch is answered with byte ranges of segment files, which the
//! network layer sends with `sendfile`, instead of with bytes read into memory.
//!
//! A slice holds its segment's file open (`Arc<File>`), so a segment deleted by
//! retention after the read can still be sent; the bytes of a slice never change,
//! because segments are append-only. The one exception is truncation of a log (a
//! follower catching up with a new leader, or recovery): a slice past the new end reads
//! short, which the sender must treat as an error for that connection, as Kafka does
//! when `FileRecords.writeTo` finds its file shrunk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use ottla_protocol::spliced::RecordsPayload;

/// `len` bytes of a segment file starting at `position`: whole batches.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<File>,
    position: u64,
    len: usize,
}

impl FileSlice {
    pub(crate) fn new(file: Arc<File>, position: u64, len: usize) -> Self {
        debug_assert!(len > 0, "empty slices are never created");
        FileSlice {
            file,
            position,
            len,
        }
    }
    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn position(&self) -> u64 {
        self.position
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Append the slice's bytes to `out` (for readers that need them in memory).
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.len, 0);
        self.file.read_exact_at(&mut out[start..], self.position)
    }
}

/// The result of one log read: consecutive batches, possibly from several segments.
#[derive(Debug, Clone, Default)]
pub struct LogSlices {
    slices: Vec<FileSlice>,
    len: usize,
}

impl LogSlices {
    pub(crate) fn push(&mut self, slice: FileSlice) {
        self.len += slice.len();
        self.slices.push(slice);
    }
    /// Bytes in all slices.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn slices(&self) -> &[FileSlice] {
        &self.slices
    }
    /// Read everything into memory.
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(self.len);
        for slice in &self.slices {
            slice.read_into(&mut out)?;
        }
        Ok(Bytes::from(out))
    }
}

impl RecordsPayload for LogSlices {
    fn payload_len(&self) -> usize {
        self.len
    }
}
