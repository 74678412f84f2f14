//! Segment files opened when used and closed when idle.
//!
//! A broker holds many more segments than it touches: 10,000 partitions with a few
//! segments each, or one partition with 100,000 small segments. Keeping every `.log`
//! and index writer open would need a descriptor per file (Kafka keeps one per segment
//! plus memory maps) and runs into `ulimit -n`. A [`LazyFile`] opens its file on first
//! use and keeps the handle while it is being used; the owner's periodic sweep
//! ([`crate::Log::close_idle_files`]) closes handles that were not used since the
//! previous sweep (a second-chance clock: one `used` flag per file, no global list,
//! nothing but an atomic store on the hot path).
//!
//! Closing never cuts a read short: readers hold the handle's `Arc` (a fetch's
//! [`crate::FileSlice`] keeps its file open until it is sent). A file written and not
//! yet flushed may be closed too: the flush syncs it through a handle opened then
//! ([`crate::flush`]). That loses no error: since Linux 4.16 a writeback error is
//! reported to the next fsync of any handle that has not seen it, whether it was
//! opened before or after the error (`errseq`), and fsync covers the whole file's
//! dirty data, whichever handle wrote it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::io_context;

/// Open segment handles across all logs of the process (for diagnostics and tests).
static OPEN_HANDLES: AtomicUsize = AtomicUsize::new(0);

/// How many segment files (`.log` and index writers) are open right now.
pub fn open_segment_handles() -> usize {
    OPEN_HANDLES.load(Ordering::Relaxed)
}

/// Create `path` as a new empty file, replacing any file of that name, and close it.
/// Replacing by unlink and create (rather than truncating) makes both directory
/// operations, which the caller's directory fsync covers: an empty new file needs no
/// fsync of its own, and no handle is kept for it.
pub(crate) fn create_empty(path: &Path) -> io::Result<()> {
    remove_if_present(path)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_context("create", path))?;
    Ok(())
}

/// Remove `path` if it exists.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_context("remove", path)(e)),
    }
}

/// How a [`LazyFile`] opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Read and positional write of an existing file (a segment's `.log`).
    ReadWrite,
    /// Append, creating the file if missing (an index file's writer).
    AppendCreate,
}

/// A file opened on demand; see the module docs.
#[derive(Debug)]
pub(crate) struct LazyFile {
    path: PathBuf,
    mode: OpenMode,
    handle: Mutex<Option<Arc<File>>>,
    /// Set at every use, cleared by the sweep: a handle found clear is idle.
    used: AtomicBool,
}

impl LazyFile {
    /// A file not opened yet.
    pub fn closed(path: PathBuf, mode: OpenMode) -> LazyFile {
        LazyFile {
            path,
            mode,
            handle: Mutex::new(None),
            used: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Follow the file to its new name after a rename (an open handle stays valid: a
    /// rename keeps the file).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// The open handle, opening the file if it is closed.
    pub fn get(&self) -> io::Result<Arc<File>> {
        self.used.store(true, Ordering::Relaxed);
        let mut handle = self.handle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = handle.as_ref() {
            return Ok(Arc::clone(file));
        }
        let mut options = OpenOptions::new();
        match self.mode {
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::AppendCreate => options.create(true).append(true),
        };
        let file = Arc::new(
            options
                .open(&self.path)
                .map_err(io_context("open", &self.path))?,
        );
        OPEN_HANDLES.fetch_add(1, Ordering::Relaxed);
        *handle = Some(Arc::clone(&file));
        Ok(file)
    }

    /// The handle if one is open now (without opening the file).
    pub fn current(&self) -> Option<Arc<File>> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Close the handle if it was not used since the last call; returns whether a
    /// handle was closed.
    pub fn close_if_idle(&self) -> bool {
        if self.used.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.close()
    }

    /// Close the handle now (it reopens on the next use); returns whether one was open.
    pub fn close(&self) -> bool {
        let closed = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        if closed {
            OPEN_HANDLES.fetch_sub(1, Ordering::Relaxed);
        }
        closed
    }

    /// Whether a handle is open now.
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

impl Drop for LazyFile {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_opens_on_use_and_closes_after_a_sweep_without_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let file = LazyFile::closed(path, OpenMode::ReadWrite);
        assert!(!file.is_open());
        let held = file.get().unwrap();
        assert!(file.is_open());
        // Used since the last sweep: kept.
        assert!(!file.close_if_idle());
        assert!(file.is_open());
        // Not used since: closed, while the reader's handle still reads.
        assert!(file.close_if_idle());
        assert!(!file.is_open());
        let mut buf = [0u8; 3];
        std::os::unix::fs::FileExt::read_exact_at(&*held, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"abc");
        // And it reopens on the next use.
        file.get().unwrap();
        assert!(file.is_open());
    }

    #[test]
    fn a_missing_read_write_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = LazyFile::closed(dir.path().join("gone.log"), OpenMode::ReadWrite);
        let err = file.get().unwrap_err().to_string();
        assert!(err.contains("gone.log"), "{err}");
    }
}
