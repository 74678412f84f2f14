//! ottla-replica: the partitions this broker hosts.
//!
//! The replica manager owns every [`Partition`] (its log plus replication state), places
//! new partitions on the `log.dirs`, and does what Kafka's `LogManager` does around
//! them: recovery points, the clean-shutdown marker, retention, and deleting the logs
//! of deleted topics. A partition is led here or followed here; followers copy their
//! leader's log through the [`fetcher`] (Kafka's `ReplicaFetcherManager`).

pub mod checkpoint;
pub mod cleaner;
pub mod fetcher;
pub mod isr;
pub mod partition;
pub mod quota;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ottla_log::{Log, LogError};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use checkpoint::{
    OffsetCheckpoint, CLEANER_OFFSET_CHECKPOINT, CLEAN_SHUTDOWN_MARKER,
    LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
};

/// Kafka's lock file in each log directory.
pub const LOCK_FILE: &str = ".lock";
pub use partition::{
    AppendOrigin, Appended, DeleteRecordsError, FetchIsolation, FollowerWriteError, IsrProposal,
    LeaderAndIsr, Partition, PartitionConfig, PolicyFlush, ProduceError, ProduceResult, ReadResult,
    RoleChange,
};

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("log directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("partition {partition}: {source}")]
    Log { partition: String, source: LogError },
    #[error("Failed to acquire lock on file .lock in {0}. A Kafka instance in another process or thread is using this directory.")]
    Locked(PathBuf),
}

/// A partition directory found on disk at start-up. Its `partition.metadata` is read
/// when the partition is claimed, by the thread that opens its log.
#[derive(Debug, Clone)]
struct OnDiskPartition {
    dir: PathBuf,
    log_dir: usize,
}

/// Stripes of [`ReplicaManager`]'s open locks: enough that the recovery threads
/// opening different partitions rarely wait on each other.
const OPEN_LOCK_STRIPES: usize = 64;

/// A new partition counted in its log dir before its log exists (see
/// [`ReplicaManager::reserve_log_dir`]).
struct DirReservation<'a> {
    counts: &'a Mutex<Vec<usize>>,
    index: usize,
    kept: bool,
}

impl DirReservation<'_> {
    /// The partition was opened: it stays counted.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for DirReservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let mut counts = self.counts.lock();
            counts[self.index] = counts[self.index].saturating_sub(1);
        }
    }
}

pub struct ReplicaManager {
    log_dirs: Vec<PathBuf>,
    partitions: RwLock<HashMap<(Uuid, i32), Arc<Partition>>>,
    /// Partitions hosted per log dir (index into `log_dirs`), kept in step with
    /// `partitions`, so choosing a dir for a new partition is O(1) in their number.
    partitions_per_dir: Mutex<Vec<usize>>,
    /// Directories found at start-up and not yet claimed by a partition.
    on_disk: Mutex<HashMap<(String, i32), OnDiskPartition>>,
    /// Held for the broker's lifetime: one process per log directory (Kafka's `.lock`).
    _dir_locks: Vec<std::fs::File>,
    /// Serialise opening and creating the same partition: two concurrent callers must
    /// not both open (and truncate) the same directory. Striped by partition, so that
    /// different partitions open in parallel (start-up's recovery threads).
    open_locks: Box<[Mutex<()>]>,
    /// Recovery points read at start-up, per log dir.
    recovery_points: Vec<OffsetCheckpoint>,
    /// High watermarks read at start-up, per log dir.
    high_watermarks: Vec<OffsetCheckpoint>,
    /// Each log dir's `log-start-offset-checkpoint` as read at start-up.
    log_start_offsets: Vec<OffsetCheckpoint>,
    /// Cleaner offsets (first dirty offsets of compacted logs) read at start-up.
    cleaner_offsets: Vec<OffsetCheckpoint>,
}

/// Split `<topic>-<partition>` (the topic itself may contain '-').
pub fn parse_partition_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    if topic.is_empty() || partition < 0 || partition.to_string() != name.rsplit_once('-')?.1 {
        return None;
    }
    Some((topic.to_string(), partition))
}

impl ReplicaManager {
    /// Scan the log dirs; nothing is opened until [`ReplicaManager::ensure_partition`].
    pub fn open(log_dirs: Vec<PathBuf>) -> Result<ReplicaManager, ReplicaError> {
        assert!(!log_dirs.is_empty(), "at least one log dir is required");
        let mut on_disk = HashMap::new();
        let mut recovery_points = Vec::new();
        let mut high_watermarks = Vec::new();
        let mut log_start_offsets = Vec::new();
        let mut cleaner_offsets = Vec::new();
        let mut dir_locks = Vec::new();
        for (i, dir) in log_dirs.iter().enumerate() {
            let io = |source| ReplicaError::Io {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(LOCK_FILE))
                .map_err(io)?;
            match lock.try_lock() {
                Ok(()) => dir_locks.push(lock),
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(ReplicaError::Locked(dir.clone()))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
            // Without the marker the checkpoint is older than the log end; recovery
            // scans from it either way, because everything before it was flushed.
            let has_logs = dir.join(RECOVERY_POINT_CHECKPOINT).exists();
            if marker.exists() {
                std::fs::remove_file(&marker).map_err(io)?;
            } else if has_logs {
                tracing::info!(
                    "Log directory {} was not shut down cleanly; recovering unflushed segments",
                    dir.display()
                );
            }
            recovery_points.push(checkpoint::read_offset_checkpoint(
                &dir.join(RECOVERY_POINT_CHECKPOINT),
            ));
            high_watermarks.push(checkpoint::read_offset_checkpoint(
                &dir.join(REPLICATION_OFFSET_CHECKPOINT),
            ));
            cleaner_offsets.push(checkpoint::read_offset_checkpoint(
                &dir.join(CLEANER_OFFSET_CHECKPOINT),
            ));
            log_start_offsets.push(checkpoint::read_offset_checkpoint(
                &dir.join(LOG_START_OFFSET_CHECKPOINT),
            ));
            for entry in std::fs::read_dir(dir).map_err(io)? {
                let entry = entry.map_err(io)?;
                if !entry.file_type().map_err(io)?.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with("-delete") {
                    // A deletion interrupted by a crash: finish it.
                    tracing::info!("Deleting leftover directory {}", entry.path().display());
                    let _ = std::fs::remove_dir_all(entry.path());
                    continue;
                }
                if let Some(key) = parse_partition_dir_name(&name) {
                    on_disk.insert(
                        key,
                        OnDiskPartition {
                            dir: entry.path(),
                            log_dir: i,
                        },
                    );
                }
            }
        }
        let dir_count = log_dirs.len();
        Ok(ReplicaManager {
            log_dirs,
            partitions: RwLock::new(HashMap::new()),
            partitions_per_dir: Mutex::new(vec![0; dir_count]),
            on_disk: Mutex::new(on_disk),
            open_locks: (0..OPEN_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            _dir_locks: dir_locks,
            recovery_points,
            high_watermarks,
            log_start_offsets,
            cleaner_offsets,
        })
    }

    pub fn get(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        self.partitions.read().get(&(*topic_id, index)).cloned()
    }

    /// The partition if this broker hosts it and leads it: what every client request
    /// (produce, consumer fetch, ListOffsets …) needs.
    pub fn leader(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        self.get(topic_id, index).filter(|p| p.is_leader())
    }

    /// The `log.dirs`, in configuration order.
    pub fn log_dirs(&self) -> &[PathBuf] {
        &self.log_dirs
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Open the partition's existing log or create a new one, in the role `registration`
    /// gives this broker. Idempotent: an open partition is returned as it is (apply a
    /// later registration with [`Partition::apply_leader_and_isr`]).
    pub fn ensure_partition(
        &self,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        config: PartitionConfig,
        leader: LeaderAndIsr,
    ) -> Result<Arc<Partition>, ReplicaError> {
        if let Some(p) = self.get(&topic_id, index) {
            return Ok(p);
        }
        let _opening = self.open_lock(&topic_id, index).lock();
        if let Some(p) = self.get(&topic_id, index) {
            return Ok(p); // opened by a concurrent caller while we waited
        }
        // A new partition's log dir is counted when chosen, so that partitions created
        // in parallel spread over the dirs; given back if the partition fails to open.
        let mut reserved_dir = None;
        let found = self
            .on_disk
            .lock()
            .remove(&(topic.to_string(), index))
            .map(|d| {
                let topic_id = checkpoint::read_partition_metadata(&d.dir);
                (d, topic_id)
            });
        let (dir, recovery_point, high_watermark, log_start_offset, cleaner_offset) = match found {
            Some((d, on_disk_id)) if on_disk_id == Some(topic_id) || on_disk_id.is_none() => {
                let key = (topic.to_string(), index);
                let recovery_point = self.recovery_points[d.log_dir]
                    .get(&key)
                    .copied()
                    .unwrap_or(0);
                // Kafka starts a replica without a checkpointed high watermark at 0
                // (clamped to the log start); a leader alone in its ISR moves it to
                // its log end at once.
                let high_watermark = self.high_watermarks[d.log_dir]
                    .get(&key)
                    .copied()
                    .unwrap_or(0);
                if on_disk_id.is_none() {
                    checkpoint::write_partition_metadata(&d.dir, topic_id).map_err(|source| {
                        ReplicaError::Io {
                            path: d.dir.clone(),
                            source,
                        }
                    })?;
                }
                let log_start_offset = self.log_start_offsets[d.log_dir].get(&key).copied();
                let cleaner_offset = self.cleaner_offsets[d.log_dir].get(&key).copied();
                (
                    d.dir,
                    recovery_point,
                    high_watermark,
                    log_start_offset,
                    cleaner_offset,
                )
            }
            stale => {
                if let Some((d, _)) = stale {
                    tracing::info!(
                        "Deleting {} left by an earlier topic with the same name",
                        d.dir.display()
                    );
                    delete_partition_dir(&d.dir);
                }
                let chosen = self.reserve_log_dir();
                let dir = self.log_dirs[chosen.index].join(format!("{topic}-{index}"));
                reserved_dir = Some(chosen);
                std::fs::create_dir_all(&dir).map_err(|source| ReplicaError::Io {
                    path: dir.clone(),
                    source,
                })?;
                checkpoint::write_new_partition_metadata(&dir, topic_id).map_err(|source| {
                    ReplicaError::Io {
                        path: dir.clone(),
                        source,
                    }
                })?;
                (dir, 0, 0, None, None)
            }
        };
        let log_error = |source| ReplicaError::Log {
            partition: format!("{topic}-{index}"),
            source,
        };
        let opened = Log::open(&dir, config.log.clone(), recovery_point).and_then(|mut log| {
            if let Some(offset) = log_start_offset {
                log.increment_log_start_offset(offset, "its log start offset checkpoint")?;
            }
            Ok(log)
        });
        let mut log = opened.map_err(log_error)?;
        if let Some(offset) = cleaner_offset {
            log.resume_cleaning_from(offset);
        }
        let partition = Arc::new(Partition::new(
            topic.to_string(),
            topic_id,
            index,
            log,
            config,
            leader,
            high_watermark,
        ));
        self.partitions
            .write()
            .insert((topic_id, index), partition.clone());
        match reserved_dir {
            Some(reservation) => reservation.keep(),
            None => self.count_in_dir(&partition, true),
        }
        Ok(partition)
    }

    /// The lock that serialises opening partition `index` of `topic_id`.
    fn open_lock(&self, topic_id: &Uuid, index: i32) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (topic_id, index).hash(&mut hasher);
        &self.open_locks[(hasher.finish() % self.open_locks.len() as u64) as usize]
    }

    /// The index in `log_dirs` of the dir holding `partition_dir`.
    fn dir_index(&self, partition_dir: &Path) -> Option<usize> {
        self.log_dirs
            .iter()
            .position(|d| partition_dir.starts_with(d))
    }

    /// Count `partition` in (`added`) or out of its log dir.
    fn count_in_dir(&self, partition: &Partition, added: bool) {
        if let Some(i) = self.dir_index(&partition.dir()) {
            let mut counts = self.partitions_per_dir.lock();
            counts[i] = if added {
                counts[i] + 1
            } else {
                counts[i].saturating_sub(1)
            };
        }
    }

    /// The log dir holding the fewest partitions (Kafka's default placement), counted
    /// for the new partition at once: the reservation is given back when dropped
    /// before [`DirReservation::keep`].
    fn reserve_log_dir(&self) -> DirReservation<'_> {
        let mut counts = self.partitions_per_dir.lock();
        let best = counts
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| **c)
            .map(|(i, _)| i)
            .unwrap_or(0);
        counts[best] += 1;
        DirReservation {
            counts: &self.partitions_per_dir,
            index: best,
            kept: false,
        }
    }

    /// Delete the logs of a deleted topic.
    pub fn remove_topic(&self, topic_id: &Uuid) {
        let removed: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write();
            let keys: Vec<_> = partitions
                .keys()
                .filter(|(id, _)| id == topic_id)
                .copied()
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for p in removed {
            self.count_in_dir(&p, false);
            delete_partition(p);
        }
    }

    /// Stop hosting one partition and delete its log: this broker is no longer one of
    /// its replicas (a reassignment moved it away; Kafka's `StopReplica` with delete).
    /// Returns whether it was here.
    pub fn remove_partition(&self, topic_id: Uuid, index: i32) -> bool {
        let removed = self.partitions.write().remove(&(topic_id, index));
        let here = removed.is_some();
        if let Some(p) = removed {
            self.count_in_dir(&p, false);
            delete_partition(p);
        }
        here
    }

    /// Delete directories found at start-up that no topic claimed (their topic was
    /// deleted while this broker was down or mid-deletion).
    pub fn delete_unclaimed_dirs(&self) {
        let leftovers: Vec<OnDiskPartition> = self.on_disk.lock().drain().map(|(_, v)| v).collect();
        for d in leftovers {
            tracing::info!(
                "Deleting log directory {} of a topic that no longer exists",
                d.dir.display()
            );
            delete_partition_dir(&d.dir);
        }
    }

    /// Flush every log and record recovery points; with `clean`, also snapshot the
    /// producer state of every log and leave the clean-shutdown marker, so the next
    /// start skips recovery and the walk of producer state.
    ///
    /// A log that fails to flush keeps the recovery point it had (so the next start
    /// recovers it from there) and costs the others nothing: their recovery points are
    /// written all the same. The first such failure is returned once the checkpoint is
    /// written, and no clean-shutdown marker is left then.
    pub fn checkpoint(&self, clean: bool) -> Result<(), ReplicaError> {
        let partitions = self.all();
        let mut per_dir: Vec<OffsetCheckpoint> = vec![OffsetCheckpoint::new(); self.log_dirs.len()];
        let mut failed: Option<ReplicaError> = None;
        for p in &partitions {
            let recovery_point = match p.flush(clean) {
                Ok(point) => point,
                Err(source) => {
                    tracing::error!(
                        "Error while flushing log for {}; its recovery point stays at {}: {source}",
                        p.name(),
                        p.recovery_point()
                    );
                    let point = p.recovery_point();
                    failed.get_or_insert(ReplicaError::Log {
                        partition: p.name(),
                        source,
                    });
                    point
                }
            };
            let dir = p.dir();
            if let Some(i) = self.dir_index(&dir) {
                per_dir[i].insert((p.topic.clone(), p.index), recovery_point);
            }
        }
        for (dir, offsets) in self.log_dirs.iter().zip(per_dir) {
            let io = |source| ReplicaError::Io {
                path: dir.clone(),
                source,
            };
            checkpoint::write_offset_checkpoint(&dir.join(RECOVERY_POINT_CHECKPOINT), &offsets)
                .map_err(io)?;
            if clean && failed.is_none() {
                std::fs::write(dir.join(CLEAN_SHUTDOWN_MARKER), b"").map_err(io)?;
            }
        }
        self.checkpoint_log_start_offsets()?;
        self.checkpoint_cleaner_offsets()?;
        if clean {
            self.checkpoint_high_watermarks()?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Write each log dir's `log-start-offset-checkpoint` (Kafka's), so that records
    /// DeleteRecords removed stay removed after a restart even where no whole segment
    /// could be deleted. Partitions found on disk but not opened yet keep the entry
    /// read at start-up.
    pub fn checkpoint_log_start_offsets(&self) -> Result<(), ReplicaError> {
        let per_dir = self.unclaimed_entries(&self.log_start_offsets);
        self.write_per_dir(LOG_START_OFFSET_CHECKPOINT, per_dir, |p| {
            Some(p.log_start_offset())
        })
    }

    /// Write each log dir's `cleaner-offset-checkpoint` (Kafka's): the first dirty
    /// offset of every compacted log, so the cleaner resumes there after a restart
    /// instead of reading each compacted log whole. Written after every cleaning and
    /// with the other checkpoints; entries of logs not opened yet are kept.
    pub fn checkpoint_cleaner_offsets(&self) -> Result<(), ReplicaError> {
        let per_dir = self.unclaimed_entries(&self.cleaner_offsets);
        self.write_per_dir(CLEANER_OFFSET_CHECKPOINT, per_dir, |p| {
            p.cleaner_checkpoint()
        })
    }

    /// The entries of a checkpoint read at start-up (per log dir) whose partitions are
    /// on disk but not opened yet: a rewrite of the file must not lose them.
    fn unclaimed_entries(&self, read: &[OffsetCheckpoint]) -> Vec<OffsetCheckpoint> {
        let unclaimed = self.on_disk.lock();
        read.iter()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(key, _)| unclaimed.contains_key(*key))
                    .map(|(key, offset)| (key.clone(), *offset))
                    .collect()
            })
            .collect()
    }

    /// Add `offset_of` each hosted partition (those it has one for) to its log dir's
    /// entries in `per_dir`, and write each dir's `file`.
    fn write_per_dir(
        &self,
        file: &str,
        mut per_dir: Vec<OffsetCheckpoint>,
        offset_of: impl Fn(&Partition) -> Option<i64>,
    ) -> Result<(), ReplicaError> {
        for p in self.all() {
            let dir = p.dir();
            if let (Some(i), Some(offset)) = (self.dir_index(&dir), offset_of(&p)) {
                per_dir[i].insert((p.topic.clone(), p.index), offset);
            }
        }
        for (dir, offsets) in self.log_dirs.iter().zip(per_dir) {
            let path = dir.join(file);
            checkpoint::write_offset_checkpoint(&path, &offsets)
                .map_err(|source| ReplicaError::Io { path, source })?;
        }
        Ok(())
    }

    /// Write each log dir's `replication-offset-checkpoint`: the high watermark of every
    /// partition in it (Kafka does this every `replica.high.watermark.checkpoint.interval.ms`
    /// and at shutdown).
    pub fn checkpoint_high_watermarks(&self) -> Result<(), ReplicaError> {
        let per_dir = vec![OffsetCheckpoint::new(); self.log_dirs.len()];
        self.write_per_dir(REPLICATION_OFFSET_CHECKPOINT, per_dir, |p| {
            Some(p.high_watermark())
        })
    }

    /// Apply retention to every partition and expire producer ids idle for longer than
    /// `producer_id_expiration_ms`; returns the number of segments deleted.
    pub fn apply_retention(&self, now_ms: i64, producer_id_expiration_ms: i64) -> usize {
        let mut deleted = 0;
        for p in self.all() {
            match p.apply_retention(now_ms, producer_id_expiration_ms) {
                Ok(n) => deleted += n,
                Err(e) => tracing::warn!("Retention failed for {}: {e}", p.name()),
            }
        }
        deleted
    }

    /// Close the segment files of every partition that were not used since the previous
    /// sweep, so open descriptors follow what is being read and written, not how many
    /// segments exist; returns how many were closed.
    pub fn close_idle_files(&self) -> usize {
        self.all().iter().map(|p| p.close_idle_files()).sum()
    }
}

/// Delete a partition's log; a request still holding it keeps its file handles until
/// it ends, the files go now.
fn delete_partition(partition: Arc<Partition>) {
    let name = partition.name();
    let dir = partition.dir();
    match Arc::try_unwrap(partition) {
        Ok(p) => {
            if let Err(e) = p.into_log().delete() {
                tracing::warn!("Failed to delete log of {name}: {e}");
            }
        }
        Err(_) => delete_partition_dir(&dir),
    }
    tracing::info!("Deleted log for partition {name}");
}

/// Rename to `<name>.<uuid>-delete` first (atomic, so a crash mid-way is finished at the
/// next start), then remove.
fn delete_partition_dir(dir: &Path) {
    let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let target = dir.with_file_name(format!("{name}.{}-delete", Uuid::new_v4().simple()));
    let victim = if std::fs::rename(dir, &target).is_ok() {
        target
    } else {
        dir.to_path_buf()
    };
    if let Err(e) = std::fs::remove_dir_all(&victim) {
        tracing::warn!("Failed to delete {}: {e}", victim.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ottla_protocol::compression::Compression;
    use ottla_protocol::records::{build_record_batch, Record};

    /// A fresh replica manager hosting one partition with `config`.
    fn hosted(config: PartitionConfig) -> (tempfile::TempDir, ReplicaManager, Arc<Partition>) {
        let dir = tempfile::tempdir().unwrap();
        let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        let p = replicas
            .ensure_partition("t", Uuid::new_v4(), 0, config, leader_here())
            .unwrap();
        (dir, replicas, p)
    }

    /// A one-record batch; `producer` is (id, epoch, sequence) for an idempotent one.
    fn one_record(value_len: usize, timestamp: i64, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
        let r = Record {
            offset: 0,
            timestamp,
            key: None,
            value: Some(vec![b'v'; value_len]),
            headers: vec![],
        };
        let (id, epoch, sequence) = producer.unwrap_or((-1, -1, -1));
        build_record_batch(&[r], Compression::None, id, epoch, sequence)
    }

    /// A replica whose ISR has followers starts from the checkpointed high watermark,
    /// not from its log end: records past it were never known to be committed.
    #[test]
    fn a_reopened_replica_starts_at_its_checkpointed_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = Uuid::new_v4();
        let open = |replicas: &ReplicaManager, isr: Vec<i32>| {
            replicas
                .ensure_partition(
                    "t",
                    topic_id,
                    0,
                    PartitionConfig::default(),
                    LeaderAndIsr {
                        local_id: 1,
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        replicas: vec![1, 2],
                        isr,
                    },
                )
                .unwrap()
        };
        {
            let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
            let p = open(&replicas, vec![1]);
            for _ in 0..3 {
                p.append_as_leader(one_record(1, ottla_log::now_ms(), None), -1)
                    .unwrap();
            }
            assert_eq!(p.high_watermark(), 3, "alone in the ISR");
            replicas.checkpoint_high_watermarks().unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.path().join(REPLICATION_OFFSET_CHECKPOINT)).unwrap(),
                "0\n1\nt 0 3\n"
            );
            for _ in 0..2 {
                p.append_as_leader(one_record(1, ottla_log::now_ms(), None), -1)
                    .unwrap();
            }
            replicas.checkpoint(false).unwrap();
        }
        // Back with follower 2 in the ISR, whose progress is unknown.
        let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        let p = open(&replicas, vec![1, 2]);
        assert_eq!(p.log_end_offset(), 5);
        assert_eq!(p.high_watermark(), 3);
        // Once the follower proves it has everything, the high watermark catches up.
        assert!(p.has_follower(2));
        p.update_follower_fetch_state(2, 5, ottla_log::now_ms());
        assert_eq!(p.high_watermark(), 5);
    }

    /// After a cleaning, `cleaner-offset-checkpoint` holds the compacted log's first
    /// dirty offset (and no entry for a log that is not compacted); a restart resumes
    /// cleaning there instead of treating the whole log as dirty.
    #[test]
    fn the_cleaner_offset_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = Uuid::new_v4();
        let config = PartitionConfig {
            log: ottla_log::LogConfig {
                segment_bytes: 600,
                compact: true,
                retention_ms: -1,
                ..ottla_log::LogConfig::default()
            },
            compacted: true,
            ..PartitionConfig::default()
        };
        let leader = leader_here();
        let open = |replicas: &ReplicaManager| {
            replicas
                .ensure_partition("compacted", topic_id, 0, config.clone(), leader.clone())
                .unwrap()
        };
        let end = {
            let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
            let p = open(&replicas);
            replicas
                .ensure_partition(
                    "plain",
                    Uuid::new_v4(),
                    0,
                    PartitionConfig::default(),
                    leader.clone(),
                )
                .unwrap();
            for i in 0..60 {
                let r = Record {
                    offset: 0,
                    timestamp: ottla_log::now_ms(),
                    key: Some(format!("k{}", i % 3).into_bytes()),
                    value: Some(vec![b'v'; 40]),
                    headers: vec![],
                };
                p.append_as_leader(build_record_batch(&[r], Compression::None, -1, -1, -1), -1)
                    .unwrap();
            }
            let cleaner = cleaner::LogCleaner::new(cleaner::CleanerConfig {
                threads: 1,
                dedupe_buffer_bytes: 1 << 20,
                crash_after_swap_commit: false,
            });
            // A forced plan is not needed: 60 updates of 3 keys are far past the ratio.
            assert!(cleaner.clean_dirty_logs(&replicas, || false) >= 1);
            let end = p.cleaner_checkpoint().unwrap();
            assert!(end > 0);
            let written =
                std::fs::read_to_string(dir.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
            assert!(
                written.contains(&format!("compacted 0 {end}\n")),
                "{written}"
            );
            assert!(!written.contains("plain"), "{written}");
            replicas.checkpoint(true).unwrap();
            end
        };
        let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        assert_eq!(open(&replicas).cleaner_checkpoint(), Some(end));
    }

    /// One log failing to flush does not keep the others' recovery points from the
    /// checkpoint; it is reported, and the shutdown is not marked clean.
    #[test]
    fn a_failing_log_does_not_stop_the_recovery_point_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        let leader = leader_here();
        let open = |topic: &str| {
            replicas
                .ensure_partition(
                    topic,
                    Uuid::new_v4(),
                    0,
                    PartitionConfig::default(),
                    leader.clone(),
                )
                .unwrap()
        };
        let (good, bad) = (open("good"), open("bad"));
        for p in [&good, &bad] {
            for _ in 0..3 {
                p.append_as_leader(one_record(1, ottla_log::now_ms(), None), -1)
                    .unwrap();
            }
        }
        // The bad log's directory vanishes (a failed disk, an operator's rm).
        std::fs::remove_dir_all(bad.dir()).unwrap();
        assert!(matches!(
            replicas.checkpoint(true),
            Err(ReplicaError::Log { partition, .. }) if partition == "bad-0"
        ));
        let written = std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap();
        assert!(written.contains("good 0 3\n"), "{written}");
        assert!(
            written.contains("bad 0 0\n"),
            "the failed log keeps its recovery point: {written}"
        );
        assert!(!dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
    }

    /// Node 1 leading a single-replica partition.
    pub(crate) fn leader_here() -> LeaderAndIsr {
        LeaderAndIsr {
            local_id: 1,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        }
    }

    /// What start-up's recovery threads do: many partitions opened from several
    /// threads at once, each partition asked for by two of them.
    #[test]
    fn partitions_opened_in_parallel_are_opened_once_and_spread_over_the_log_dirs() {
        const PARTITIONS: i32 = 200;
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let log_dirs: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let topic_id = Uuid::new_v4();
        let open_all = |replicas: &ReplicaManager| -> Vec<Vec<Arc<Partition>>> {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..4)
                    .map(|w| {
                        scope.spawn(move || {
                            // Two workers walk up, two walk down: every partition is
                            // asked for by a pair racing each other.
                            let order: Vec<i32> = if w % 2 == 0 {
                                (0..PARTITIONS).collect()
                            } else {
                                (0..PARTITIONS).rev().collect()
                            };
                            let mut opened: Vec<Option<Arc<Partition>>> =
                                vec![None; PARTITIONS as usize];
                            for i in order {
                                let p = replicas
                                    .ensure_partition(
                                        "t",
                                        topic_id,
                                        i,
                                        PartitionConfig::default(),
                                        leader_here(),
                                    )
                                    .unwrap();
                                opened[i as usize] = Some(p);
                            }
                            opened.into_iter().map(Option::unwrap).collect()
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            })
        };
        let replicas = ReplicaManager::open(log_dirs.clone()).unwrap();
        let results = open_all(&replicas);
        for i in 0..PARTITIONS as usize {
            for other in &results[1..] {
                assert!(
                    Arc::ptr_eq(&results[0][i], &other[i]),
                    "partition {i} was opened twice"
                );
            }
        }
        assert_eq!(replicas.all().len(), PARTITIONS as usize);
        let per_dir = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
                .count()
        };
        let counts: Vec<usize> = log_dirs.iter().map(|d| per_dir(d)).collect();
        assert_eq!(counts.iter().sum::<usize>(), PARTITIONS as usize);
        assert!(
            counts[0].abs_diff(counts[1]) <= 4,
            "new partitions not spread over the log dirs: {counts:?}"
        );
        assert_eq!(*replicas.partitions_per_dir.lock(), counts);
        replicas.checkpoint(true).unwrap();
        drop(results);
        drop(replicas);

        // A restart claims each directory where it is, with its topic id.
        let replicas = ReplicaManager::open(log_dirs.clone()).unwrap();
        let results = open_all(&replicas);
        for (i, p) in results[0].iter().enumerate() {
            assert_eq!(p.topic_id, topic_id);
            assert_eq!(p.index, i as i32);
        }
        let again: Vec<usize> = log_dirs.iter().map(|d| per_dir(d)).collect();
        assert_eq!(again, counts, "a restart moved or duplicated partitions");
        assert_eq!(*replicas.partitions_per_dir.lock(), counts);
    }

    #[test]
    fn a_log_dir_serves_one_broker_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = ReplicaManager::open(vec![dir.path().to_path_buf()]).unwrap();
        assert!(matches!(
            ReplicaManager::open(vec![dir.path().to_path_buf()]),
            Err(ReplicaError::Locked(_))
        ));
        drop(first);
        assert!(
            ReplicaManager::open(vec![dir.path().to_path_buf()]).is_ok(),
            "released on drop"
        );
    }

    #[test]
    fn flushes_run_outside_the_partition_lock_and_shutdown_snapshots_producers() {
        let mut config = PartitionConfig::default();
        config.log.flush_interval_messages = 2;
        let (_dir, replicas, p) = hosted(config);
        let one = || one_record(1, ottla_log::now_ms(), None);
        assert!(p.append_as_leader(one(), 1).unwrap().flush.is_none());
        assert_eq!(
            p.high_watermark(),
            1,
            "unflushed below the policy is visible"
        );
        let due = p.append_as_leader(one(), 1).unwrap();
        let flush = due.flush.expect("2 messages reach flush.messages");
        // while the plan waits for the disk, the partition takes appends and reads
        assert!(p.append_as_leader(one(), 1).unwrap().flush.is_none());
        assert_eq!(p.log_end_offset(), 3);
        let read = p
            .read(0, 1 << 20, FetchIsolation::HighWatermark, true)
            .unwrap();
        assert_eq!(
            read.high_watermark, 1,
            "the batch that called for the flush stays invisible until it is on disk"
        );
        assert_eq!(read.records.len(), one().len(), "and reads stop below it");
        assert_eq!(
            p.complete_policy_flush(flush).unwrap(),
            2,
            "the recovery point covers the plan only"
        );
        assert_eq!(p.high_watermark(), 3);
        assert_eq!(p.flush(false).unwrap(), 3);
        let snapshot = p.dir().join("00000000000000000003.snapshot");
        assert!(!snapshot.exists(), "no roll, no snapshot yet");
        replicas.checkpoint(true).unwrap();
        assert!(
            snapshot.exists(),
            "a clean shutdown snapshots the producers"
        );
    }

    #[test]
    fn a_retry_waits_for_the_original_to_be_on_disk() {
        let mut config = PartitionConfig::default();
        config.log.flush_interval_messages = 1;
        let (_dir, _replicas, p) = hosted(config);
        let idempotent = || one_record(1, ottla_log::now_ms(), Some((9, 0, 0)));
        // the original's flush is still running (or failed) when the producer retries
        let original = p.append_as_leader(idempotent(), -1).unwrap();
        let slow = original.flush.expect("flush.messages=1");
        let retry = p.append_as_leader(idempotent(), -1).unwrap();
        assert_eq!(retry.result.base_offset, original.result.base_offset);
        let flush = retry.flush.expect("the retry waits for a flush too");
        assert_eq!(
            p.complete_policy_flush(flush).unwrap(),
            0,
            "the older flush is unfinished"
        );
        assert_eq!(p.high_watermark(), 0, "the original is not on disk yet");
        assert_eq!(p.complete_policy_flush(slow).unwrap(), 1);
        assert_eq!(p.high_watermark(), 1);
        // once the original is on disk, a retry needs no flush of its own
        let late = p.append_as_leader(idempotent(), -1).unwrap();
        assert!(late.flush.is_none());
    }

    #[test]
    fn a_roll_hands_back_a_flush_that_no_one_waits_for() {
        let mut config = PartitionConfig::default();
        config.log.segment_bytes = 200;
        let (_dir, _replicas, p) = hosted(config);
        let one = || one_record(100, ottla_log::now_ms(), None);
        let first = p.append_as_leader(one(), 1).unwrap();
        assert!(first.flush.is_none() && first.background_flush.is_none());
        let rolled = p.append_as_leader(one(), 1).unwrap();
        assert!(
            rolled.flush.is_none(),
            "nothing to wait for before the answer"
        );
        let plan = rolled.background_flush.expect("the roll's flush");
        assert_eq!(p.complete_flush(plan).unwrap(), 2);
    }

    #[test]
    fn a_duplicate_is_answered_with_the_original_log_append_time() {
        let config = PartitionConfig {
            log_append_time: true,
            ..PartitionConfig::default()
        };
        let (_dir, _replicas, p) = hosted(config);
        let idempotent = || one_record(1, 5, Some((7, 0, 0)));
        let first = p.append_as_leader(idempotent(), -1).unwrap().result;
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = p.append_as_leader(idempotent(), -1).unwrap();
        assert!(again.flush.is_none(), "no flush policy, no flush");
        let again = again.result;
        assert_eq!(again.base_offset, first.base_offset);
        assert!(first.log_append_time > 5, "{first:?}");
        assert_eq!(again.log_append_time, first.log_append_time);
    }

    #[test]
    fn partition_dir_names() {
        assert_eq!(parse_partition_dir_name("a-b-12"), Some(("a-b".into(), 12)));
        assert_eq!(parse_partition_dir_name("t-0"), Some(("t".into(), 0)));
        assert_eq!(parse_partition_dir_name("t-01"), None);
        assert_eq!(parse_partition_dir_name("__ottla_metadata"), None);
        assert_eq!(parse_partition_dir_name("-3"), None);
    }
}
