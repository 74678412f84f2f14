//! openraft's state machine: the [`MetadataImage`], rebuilt from the latest snapshot
//! on start and kept up to date by applying committed entries.
//!
//! The image itself is not written on apply: the log holds every committed entry, and
//! snapshots (see `snapshot`) persist the image so that the log can be purged
//! (openraft's "persistent snapshot" model). On start openraft re-applies the entries
//! after the snapshot up to the committed id saved in `quorum-state`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StoredMembership,
};
use parking_lot::Mutex;

use super::durable::{read_if_exists, remove_if_exists, sync_dir, write_synced};
use super::snapshot::{self, MetadataSnapshotData, PARTIAL_SUFFIX};
use super::{
    run_blocking, AppliedChange, ControllerNode, MetadataApplied, MetadataObserver, QuorumError,
    QuorumStorageError, SharedImage, TypeConfig,
};
use crate::delta::MetadataDelta;
use crate::image::MetadataImage;

/// Snapshot files kept: the latest, and the one before it.
const SNAPSHOTS_KEPT: usize = 2;

type Meta = SnapshotMeta<u64, ControllerNode>;

/// The state machine handed to openraft.
pub struct MetadataStateMachine {
    dir: PathBuf,
    /// The image as of `last_applied`.
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, ControllerNode>,
    /// Where readers (the controller, the broker) find the image.
    shared: SharedImage,
    observer: MetadataObserver,
    /// Shared with snapshot builders, which run concurrently with apply.
    snapshots: Arc<Mutex<SnapshotFiles>>,
}

/// Builds a snapshot of the image as it was when openraft asked for the builder.
pub struct MetadataSnapshotBuilder {
    dir: PathBuf,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, ControllerNode>,
    snapshots: Arc<Mutex<SnapshotFiles>>,
}

/// The snapshot files of the directory.
struct SnapshotFiles {
    /// The latest snapshot: what `get_current_snapshot` returns.
    current: Option<(Meta, PathBuf)>,
}

impl MetadataStateMachine {
    /// Open the state machine of `dir` (`.../__cluster_metadata-0`): load the latest
    /// snapshot, if any, publish its image through `shared` and to `observer` (as one
    /// full delta), and delete half-written snapshots.
    ///
    /// Blocking file I/O. A latest snapshot that does not decode is an error, not a
    /// reason to fall back silently: the log entries it replaced may be purged.
    // openraft's own error type, as every storage method returns it: large, but rare.
    #[allow(clippy::result_large_err)]
    pub fn open(
        dir: &Path,
        shared: SharedImage,
        observer: MetadataObserver,
    ) -> Result<MetadataStateMachine, QuorumStorageError> {
        let read_err =
            |e: QuorumError| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read);
        std::fs::create_dir_all(dir)
            .map_err(QuorumError::io("create directory", dir))
            .map_err(read_err)?;
        for partial in snapshot::partial_files(dir).map_err(read_err)? {
            tracing::info!("Deleting incomplete snapshot {}", partial.display());
            remove_if_exists(&partial).map_err(read_err)?;
        }
        let mut sm = MetadataStateMachine {
            dir: dir.to_path_buf(),
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            shared,
            observer,
            snapshots: Arc::new(Mutex::new(SnapshotFiles { current: None })),
        };
        let latest = snapshot::list(dir).map_err(read_err)?.pop();
        if let Some((end_offset, epoch, path)) = latest {
            let (meta, image) = load_snapshot(&path, end_offset, epoch).map_err(read_err)?;
            tracing::info!(
                "Loaded metadata snapshot {} ({} topics, last log id {:?})",
                path.display(),
                image.topic_count(),
                meta.last_log_id
            );
            sm.last_applied = meta.last_log_id;
            sm.membership = meta.last_membership.clone();
            let index = meta.last_log_id.map_or(0, |id| id.index);
            sm.snapshots.lock().current = Some((meta, path));
            let image = Arc::new(image);
            sm.publish(
                &MetadataDelta::full(&image),
                image,
                AppliedChange::Snapshot { index },
            );
        } else {
            *sm.shared.write() = sm.image.clone();
        }
        Ok(sm)
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    /// Tell the observer, then make `image` visible: the broker acts on a change (opens
    /// partitions, say) before readers can see it, as [`crate::Controller`] does today.
    fn publish(&mut self, delta: &MetadataDelta, image: Arc<MetadataImage>, change: AppliedChange) {
        (self.observer)(delta, &image, change);
        *self.shared.write() = image.clone();
        self.image = image;
    }
}

/// Read and check a snapshot file named `<end_offset>-<epoch>.checkpoint`.
fn load_snapshot(
    path: &Path,
    end_offset: u64,
    epoch: u64,
) -> Result<(Meta, MetadataImage), QuorumError> {
    let corrupt = |reason: String| QuorumError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_if_exists(path)?.ok_or_else(|| corrupt("vanished".into()))?;
    let decoded = snapshot::decode(&bytes).map_err(corrupt)?;
    let meta = decoded.header.meta;
    let named = snapshot::snapshot_file_name(meta.last_log_id.as_ref());
    if snapshot::parse_file_name(&named) != Some((end_offset, epoch)) {
        return Err(corrupt(format!(
            "holds the snapshot of {:?}, which would be named {named}",
            meta.last_log_id
        )));
    }
    Ok((meta, decoded.image))
}

/// Write a snapshot's bytes under its KRaft name: to `.part`, fsynced, then (under the
/// files' lock, so a concurrent write cannot prune it before it counts) renamed into
/// place and made current unless a later snapshot already is; then prune to the
/// latest two.
fn store_snapshot(
    dir: &Path,
    files: &Mutex<SnapshotFiles>,
    meta: &Meta,
    bytes: &[u8],
) -> Result<PathBuf, QuorumError> {
    let name = snapshot::snapshot_file_name(meta.last_log_id.as_ref());
    let path = dir.join(&name);
    let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
    write_synced(&partial, bytes)?;
    let mut files = files.lock();
    std::fs::rename(&partial, &path).map_err(QuorumError::io("rename to", &path))?;
    sync_dir(dir)?;
    let newer_exists = files
        .current
        .as_ref()
        .is_some_and(|(current, _)| current.last_log_id > meta.last_log_id);
    if !newer_exists {
        files.current = Some((meta.clone(), path.clone()));
    }
    let keep_path = files.current.as_ref().map(|(_, p)| p.clone());
    let all = snapshot::list(dir)?;
    let mut removed = false;
    for (_, _, old) in all.iter().rev().skip(SNAPSHOTS_KEPT) {
        if Some(old) != keep_path.as_ref() {
            tracing::info!("Deleting old metadata snapshot {}", old.display());
            remove_if_exists(old)?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(path)
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, QuorumStorageError> {
        let name = snapshot::snapshot_file_name(self.last_applied.as_ref());
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            // Unique per build: two builds at one log id may differ in bytes (timestamps).
            snapshot_id: format!(
                "{}-{}",
                name.trim_end_matches(snapshot::SNAPSHOT_SUFFIX),
                ottla_log::now_ms()
            ),
        };
        let (dir, image, files) = (self.dir.clone(), self.image.clone(), self.snapshots.clone());
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let built_meta = meta.clone();
        let bytes = run_blocking(subject, ErrorVerb::Write, move || {
            let bytes = snapshot::encode(&built_meta, &image)?;
            let path = store_snapshot(&dir, &files, &built_meta, &bytes)?;
            tracing::info!(
                "Wrote metadata snapshot {} ({} bytes, {} topics)",
                path.display(),
                bytes.len(),
                image.topic_count()
            );
            Ok(bytes)
        })
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(MetadataSnapshotData::from_bytes(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = MetadataSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, ControllerNode>), QuorumStorageError>
    {
        Ok((self.last_applied, self.membership.clone()))
    }

    /// Each entry is applied whole: its records are replayed into a copy of the image,
    /// and only if all of them apply does the copy become the image. A record that does
    /// not replay means the committed log contradicts itself (the leader validates
    /// before proposing): a storage error, which stops the node rather than leaving
    /// the image half-changed.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataApplied>, QuorumStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let mut next = (*self.image).clone();
                    for (i, record) in batch.0.iter().enumerate() {
                        next.replay(record).map_err(|e| {
                            QuorumError::Invalid(format!(
                                "record {i} of entry {log_id} does not apply ({e}); the metadata \
                                 log is corrupt"
                            ))
                            .into_storage(ErrorSubject::Apply(log_id), ErrorVerb::Write)
                        })?;
                    }
                    let delta = MetadataDelta::from_records(&self.image, &batch.0);
                    self.publish(
                        &delta,
                        Arc::new(next),
                        AppliedChange::Entry {
                            index: log_id.index,
                            records: &batch.0,
                        },
                    );
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(log_id), membership);
                }
            }
            self.last_applied = Some(log_id);
            responses.push(MetadataApplied {
                log_index: log_id.index,
                image: Some(self.image.clone()),
            });
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MetadataSnapshotBuilder {
            dir: self.dir.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<MetadataSnapshotData>, QuorumStorageError> {
        Ok(Box::default())
    }

    /// Check the leader's snapshot (CRCs, header matching `meta`, records replaying),
    /// store it, and replace the image: the observer gets the topics that are gone as
    /// deleted and everything else as a full delta ([`MetadataDelta::replaced`]).
    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<MetadataSnapshotData>,
    ) -> Result<(), QuorumStorageError> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let (dir, files, expected) = (self.dir.clone(), self.snapshots.clone(), meta.clone());
        let image = run_blocking(subject, ErrorVerb::Write, move || {
            let bytes = snapshot.into_bytes();
            let invalid = |reason: String| {
                QuorumError::Invalid(format!(
                    "snapshot {} from the leader is invalid: {reason}",
                    expected.snapshot_id
                ))
            };
            let decoded = snapshot::decode(&bytes).map_err(invalid)?;
            if decoded.header.meta != expected {
                return Err(invalid(format!(
                    "it holds {}, not {expected}",
                    decoded.header.meta
                )));
            }
            store_snapshot(&dir, &files, &expected, &bytes)?;
            Ok(decoded.image)
        })
        .await?;
        tracing::info!(
            "Installed metadata snapshot {} ({} topics)",
            meta,
            image.topic_count()
        );
        let delta = MetadataDelta::replaced(&self.image, &image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let index = meta.last_log_id.map_or(0, |id| id.index);
        self.publish(&delta, Arc::new(image), AppliedChange::Snapshot { index });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, QuorumStorageError> {
        let Some((meta, path)) = self.snapshots.lock().current.clone() else {
            return Ok(None);
        };
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let bytes = run_blocking(subject, ErrorVerb::Read, move || {
            read_if_exists(&path)?.ok_or_else(|| QuorumError::Corrupt {
                path: path.clone(),
                reason: "the current snapshot vanished".into(),
            })
        })
        .await?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(MetadataSnapshotData::from_bytes(bytes)),
        }))
    }
}
