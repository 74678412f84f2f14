//! Flushing a log without holding it.
//!
//! An fsync can take seconds when much data is dirty (on ext4 in ordered mode even the
//! fsync of a small file waits for other files' data). The log is owned behind a lock,
//! and holding that lock across an fsync would stall every produce and fetch of the
//! partition for that long. So a flush has three steps, as Kafka's `UnifiedLog.flush`
//! does outside its lock:
//!
//! 1. [`crate::Log::prepare_flush`] (under the lock, no disk wait) gathers the files
//!    written since the last flush into a [`FlushPlan`];
//! 2. [`FlushPlan::sync`] fsyncs them, without the lock, while appends go on;
//! 3. [`crate::Log::finish_flush`] (under the lock again) advances the recovery point
//!    to what the plan covered.
//!
//! Plans may overlap (a roll's background flush and a produce's policy flush, say) and
//! finish in any order. So a plan also carries every file of the plans still in flight
//! when it was made: a file handed to an earlier plan is written no more (a sealed
//! segment, a snapshot) but may not be on disk yet, and each plan must prove on its own
//! that everything below its end offset is.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::log::sync_dir;
use crate::{io_context, LogError};

/// A file to fsync: by the handle that wrote it when that is still open (kept open by
/// the plan, so a segment deleted meanwhile is harmless), else by path, opened when the
/// plan syncs, outside the log's lock (segment files close when idle, see
/// `crate::handle`).
#[derive(Debug, Clone)]
pub struct SyncTarget {
    file: Option<Arc<File>>,
    pub(crate) path: PathBuf,
}

impl SyncTarget {
    pub(crate) fn new(file: Arc<File>, path: PathBuf) -> SyncTarget {
        SyncTarget {
            file: Some(file),
            path,
        }
    }

    /// Sync `path` through `file` if a handle is open, else by opening it at sync time.
    pub(crate) fn handle_or_path(file: Option<Arc<File>>, path: PathBuf) -> SyncTarget {
        SyncTarget { file, path }
    }

    /// fsync the file's data.
    pub(crate) fn sync(&self) -> Result<(), LogError> {
        let reopened;
        let file = match &self.file {
            Some(file) => file,
            None => {
                reopened = File::open(&self.path).map_err(io_context("open", &self.path))?;
                &reopened
            }
        };
        file.sync_data().map_err(io_context("fsync", &self.path))?;
        Ok(())
    }

    /// One fsync covers both: the same open file, or the same path when neither has
    /// a handle.
    pub(crate) fn is_same_handle(&self, other: &SyncTarget) -> bool {
        match (&self.file, &other.file) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => self.path == other.path,
            _ => false,
        }
    }
}

/// What makes a log durable up to [`FlushPlan::end_offset`]: the data, index and
/// producer-snapshot files written since the previous plan, and the directory when
/// files were created or renamed in it.
///
/// Finish every plan ([`crate::Log::finish_flush`]), failed or not: until then its
/// files are carried into every later plan.
#[derive(Debug)]
#[must_use = "a prepared flush does nothing until it is synced and finished"]
pub struct FlushPlan {
    /// Tells [`crate::Log::finish_flush`] which in-flight entry this plan was.
    pub(crate) id: u64,
    pub(crate) end_offset: i64,
    pub(crate) files: Vec<SyncTarget>,
    pub(crate) dir: Option<PathBuf>,
}

/// What a plan took from the log, kept by the log until that plan finishes, so that
/// plans made meanwhile sync it too.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) id: u64,
    pub(crate) end_offset: i64,
    /// The log's truncation count when the plan was made: offsets below `end_offset`
    /// may have been rewritten by a truncation since, and then the plan proves nothing.
    pub(crate) generation: u64,
    pub(crate) files: Vec<SyncTarget>,
    pub(crate) dir: bool,
    /// Synced; applied to the recovery point once every older plan has finished too.
    pub(crate) finished: bool,
}

impl FlushPlan {
    /// Everything below this offset is durable once [`FlushPlan::sync`] succeeds.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// fsync the files, then the directory. Blocking disk I/O: call it without the
    /// log's lock, on a thread that may block.
    pub fn sync(&self) -> Result<(), LogError> {
        for target in &self.files {
            target.sync()?;
        }
        match &self.dir {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}
