//! Small files replaced atomically: `quorum-state`, `purged-log-id`, snapshots.
//!
//! Kafka writes such files the same way (`FileQuorumStateStore`, `Snapshots`): to a
//! temporary name first, fsynced, renamed over the real one, then the directory
//! fsynced, so a crash leaves either the old content or the new, never a mix, and the
//! new content survives once the call returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::QuorumError;

/// The suffix of `quorum-state` and `purged-log-id` while they are written. ottla-log
/// removes `*.tmp` leftovers when it opens the directory, so a crash mid-write leaves
/// nothing behind.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Replace `dir/name` with `bytes`, through `dir/<name><tmp_suffix>`.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    tmp_suffix: &str,
    bytes: &[u8],
) -> Result<(), QuorumError> {
    let tmp = dir.join(format!("{name}{tmp_suffix}"));
    write_synced(&tmp, bytes)?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(QuorumError::io("rename to", &path))?;
    sync_dir(dir)
}

/// Create (or truncate) `path`, write `bytes` and fsync them.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), QuorumError> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(QuorumError::io("create", path))?;
    file.write_all(bytes)
        .map_err(QuorumError::io("write", path))?;
    file.sync_all().map_err(QuorumError::io("fsync", path))
}

/// fsync a directory, so that creations, renames and deletions in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), QuorumError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(QuorumError::io("fsync directory", dir))
}

/// The file's bytes, or `None` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, QuorumError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(QuorumError::io("read", path)(e)),
    }
}

/// Delete a file; one already gone is fine (a crash may have removed it).
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), QuorumError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(QuorumError::io("delete", path)(e)),
    }
}
