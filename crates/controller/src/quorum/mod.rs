//! Storage of the controller's Raft quorum: the metadata log, the vote and the
//! snapshots, laid out as KRaft lays out `__cluster_metadata-0`.
//!
//! Consensus itself is openraft's; this module implements its storage traits
//! ([`openraft::storage::RaftLogStorage`] and [`openraft::storage::RaftStateMachine`])
//! so that what a controller node keeps on disk looks like what a KRaft controller
//! keeps, and Kafka's tools can read the log:
//!
//! ```text
//! <metadata dir>/__cluster_metadata-0/
//!   00000000000000000000.log, .index, .timeindex   segments written by ottla-log; one
//!                                                  record batch per Raft entry, base
//!                                                  offset = log index, partition leader
//!                                                  epoch = term (see `log_store`)
//!   leader-epoch-checkpoint                        first index of each term, kept by
//!                                                  ottla-log from the batches' epochs
//!   quorum-state                                   the vote and the committed log id
//!   purged-log-id                                  the last entry a snapshot replaced
//!   <end offset, 20 digits>-<epoch, 10 digits>.checkpoint
//!                                                  snapshots of the image (see `snapshot`)
//! ```
//!
//! Types: with openraft's `single-term-leader` feature a term has exactly one leader,
//! as a KRaft epoch does, and a log id is (term, index): the two numbers a Kafka batch
//! carries as its partition leader epoch and base offset. Index `i` is offset `i`.
//!
//! The state machine is the [`MetadataImage`]: applying an entry replays its records
//! into a copy of the image, publishes the copy through the [`SharedImage`] handle and
//! tells the [`MetadataObserver`] what changed, so every node (leader or not) sees each
//! committed change once, in log order.
//!
//! # Creating the Raft instance
//!
//! ```ignore
//! let image: SharedImage = Arc::new(RwLock::new(Arc::new(MetadataImage::default())));
//! let observer: MetadataObserver = Arc::new(move |delta, image| { /* publish */ });
//! let (log_store, state_machine) =
//!     quorum::open_storage(&metadata_dir, QuorumLogConfig::default(), image.clone(), observer)?;
//! let config = Arc::new(openraft::Config { cluster_name: "ottla".into(), ..Default::default() }.validate()?);
//! let raft = MetadataRaft::new(node_id, config, network, log_store, state_machine).await?;
//! // first start of a new quorum, on one node:
//! raft.initialize(BTreeMap::from([(node_id, ControllerNode { host, port })])).await?;
//! // a write: the response arrives once the entry is applied here
//! let applied = raft.client_write(MetadataBatch(records)).await?.data;
//! ```

mod durable;
mod log_store;
mod snapshot;
mod state_machine;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use ottla_log::LogError;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::delta::MetadataDelta;
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

pub use log_store::{MetadataLogReader, MetadataLogStore, QuorumLogConfig};
pub use snapshot::{snapshot_file_name, MetadataSnapshotData, SNAPSHOT_SUFFIX};
pub use state_machine::{MetadataSnapshotBuilder, MetadataStateMachine};

/// The metadata partition's directory inside the metadata dir (KRaft's name).
pub const METADATA_PARTITION_DIR: &str = "__cluster_metadata-0";
/// The vote and the committed log id (KRaft keeps its election state under this name).
pub const QUORUM_STATE_FILE: &str = "quorum-state";
/// The last log id purged from the log (replaced by a snapshot).
pub const PURGED_LOG_ID_FILE: &str = "purged-log-id";

openraft::declare_raft_types!(
    /// The controller quorum's openraft types.
    pub TypeConfig:
        D = MetadataBatch,
        R = MetadataApplied,
        NodeId = u64,
        Node = ControllerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = MetadataSnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The controller quorum.
pub type MetadataRaft = openraft::Raft<TypeConfig>;
/// (term, index) of a metadata log entry: (partition leader epoch, offset) of its batch.
pub type MetadataLogId = openraft::LogId<u64>;
/// What openraft's storage calls return on failure; openraft stops the node on one.
pub type QuorumStorageError = StorageError<u64>;
/// The image the state machine last published: readers clone the inner `Arc`.
pub type SharedImage = Arc<RwLock<Arc<MetadataImage>>>;
/// Told of every change to the image, in log order, before the change becomes visible
/// through the [`SharedImage`]. Called on openraft's state-machine task: it must not wait
/// for the quorum (no `client_write` from inside), or the state machine stalls.
pub type MetadataObserver =
    Arc<dyn Fn(&MetadataDelta, &Arc<MetadataImage>, AppliedChange<'_>) + Send + Sync>;

/// How the image changed, for the [`crate::feed::MetadataFeed`] that observers read.
#[derive(Debug, Clone, Copy)]
pub enum AppliedChange<'a> {
    /// The records of the committed entry at `index`.
    Entry {
        index: u64,
        records: &'a [crate::MetadataRecord],
    },
    /// The image was replaced by a snapshot ending at `index` (0: empty).
    Snapshot { index: u64 },
}

/// A voter's CONTROLLER listener endpoint, stored in the membership entries of the log
/// so that every node knows where to reach every other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerNode {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The records one controller operation commits atomically: one Raft entry, applied
/// whole or (if a record does not replay) not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetadataBatch(pub Vec<MetadataRecord>);

/// What applying one entry gives back to its writer (through
/// `client_write(..).data`): where the entry sits in the log and the image right after
/// it, so the writer does not have to guess which later image includes its change.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct MetadataApplied {
    /// The entry's log index (its batch's offset in `__cluster_metadata-0`).
    pub log_index: u64,
    /// The image right after this entry. Only meaningful in the process that applied
    /// it, so never serialized (a deserialized value has `None`).
    #[serde(skip)]
    pub image: Option<Arc<MetadataImage>>,
}

impl fmt::Debug for MetadataApplied {
    /// The image is left out: openraft logs responses, and an image can be large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataApplied")
            .field("log_index", &self.log_index)
            .field("image_offset", &self.image.as_ref().map(|i| i.offset))
            .finish()
    }
}

/// `<metadata dir>/__cluster_metadata-0`.
pub fn metadata_partition_dir(metadata_dir: &Path) -> PathBuf {
    metadata_dir.join(METADATA_PARTITION_DIR)
}

/// Open (creating if needed) the log store and the state machine of
/// `<metadata_dir>/__cluster_metadata-0`: what [`MetadataRaft::new`] takes.
///
/// The state machine starts from the latest snapshot (if any), published through
/// `image` and to `observer`; openraft then re-applies the committed entries after it.
/// Blocking file I/O: call it at start-up, or from `spawn_blocking`.
// openraft's own error type, as every storage method returns it: large, but rare.
#[allow(clippy::result_large_err)]
pub fn open_storage(
    metadata_dir: &Path,
    config: QuorumLogConfig,
    image: SharedImage,
    observer: MetadataObserver,
) -> Result<(MetadataLogStore, MetadataStateMachine), QuorumStorageError> {
    let dir = metadata_partition_dir(metadata_dir);
    let log_store = MetadataLogStore::open(&dir, config)?;
    let state_machine = MetadataStateMachine::open(&dir, image, observer)?;
    Ok((log_store, state_machine))
}

/// What went wrong, with the file and the operation; turned into openraft's
/// [`StorageError`] (with the subject and verb openraft wants) at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QuorumError {
    #[error("{op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{op} {}: {error}", path.display())]
    Log {
        op: &'static str,
        path: PathBuf,
        error: LogError,
    },
    /// Bytes on disk (or received from the leader) that do not decode: never repaired
    /// silently, since they are acknowledged metadata.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A request outside what the storage can represent (a term above Kafka's int32
    /// epochs, entries with a hole, ...).
    #[error("{0}")]
    Invalid(String),
    /// The blocking task running the operation panicked or was cancelled.
    #[error("the storage task failed: {0}")]
    Task(String),
}

impl QuorumError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QuorumError {
        let path = path.to_path_buf();
        move |error| QuorumError::Io { op, path, error }
    }

    pub(crate) fn log(op: &'static str, path: &Path) -> impl FnOnce(LogError) -> QuorumError {
        let path = path.to_path_buf();
        move |error| QuorumError::Log { op, path, error }
    }

    pub(crate) fn into_storage(
        self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
    ) -> QuorumStorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Run blocking file I/O (writes, fsyncs, segment reads) on tokio's blocking pool, so
/// that openraft's tasks, which share the runtime with the broker, never stall a worker
/// thread on the disk. A failure becomes openraft's error with `subject` and `verb`.
pub(crate) async fn run_blocking<T, F>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    f: F,
) -> Result<T, QuorumStorageError>
where
    F: FnOnce() -> Result<T, QuorumError> + Send + 'static,
    T: Send + 'static,
{
    let failed = match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) => e,
        Err(e) => QuorumError::Task(e.to_string()),
    };
    Err(failed.into_storage(subject, verb))
}
