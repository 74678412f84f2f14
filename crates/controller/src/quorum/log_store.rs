//! openraft's log storage on an ottla-log partition log, as KRaft stores
//! `__cluster_metadata-0`.
//!
//! # Entries as record batches
//!
//! Each Raft entry is one Kafka v2 record batch (uncompressed, no producer id) whose
//! **base offset is the entry's log index** and whose **partition leader epoch is the
//! entry's term**, so the log's `leader-epoch-checkpoint` (maintained by ottla-log from
//! the batches' epochs) lists where each term starts, as KRaft's does, and
//! `kafka-dump-log.sh` shows terms and indexes as offsets and epochs. The batch holds
//! one record:
//!
//! - key: null;
//! - value: the entry as JSON, openraft's serde form of [`openraft::Entry`]:
//!   `{"log_id":{"leader_id":<term>,"index":<index>},"payload":...}` where the payload
//!   is `"Blank"`, `{"Normal":[<MetadataRecord>...]}` (a [`super::MetadataBatch`]) or
//!   `{"Membership":{...}}`;
//! - timestamp: the wall clock when this node appended it (CreateTime).
//!
//! The log id appears twice (header and value); a read checks that both agree, which
//! catches a batch that landed at the wrong offset. The partition leader epoch is outside
//! the batch CRC (as is the base offset), so stamping it keeps the batch valid.
//!
//! # Indexes, purge and truncation
//!
//! Index `i` is offset `i` (openraft's first index is 0, as Kafka's first offset is).
//! `purge(id)` records `id` in `purged-log-id` first, then deletes the whole segments
//! below `id.index + 1` ([`ottla_log::Log::delete_segments_below`]); the entries of the
//! segment that straddles it stay on disk but are never returned again (reads start
//! after the purged id). A purge past the last entry (a follower that installed a
//! snapshot from the leader) restarts the log, empty, at `id.index + 1`. `truncate(id)`
//! is [`ottla_log::Log::truncate_to`], made durable before it returns.
//!
//! # Durability
//!
//! `append` writes the batches, fsyncs the segment (off the async executor), and only
//! then reports the entries flushed to openraft, and returns. Returning only after the
//! fsync keeps every write of this store (entries, vote, purge) durable in the order
//! openraft issued it, which openraft requires; metadata writes are rare, so one fsync
//! per append costs little. The vote and the committed log id live in `quorum-state`,
//! replaced atomically. On open the whole log is recovered from its first segment
//! (CRCs checked, a torn tail cut by ottla-log): the metadata log is small, since
//! snapshots let it be purged.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    CommittedLeaderId, Entry, ErrorSubject, ErrorVerb, LeaderId, LogId, OptionalSend,
    RaftLogReader, Vote,
};
use ottla_log::{FlushPlan, Log, LogConfig};
use ottla_protocol::batch::{
    BatchIter, RecordBatch, RecordBatchMut, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use ottla_protocol::compression::Compression;
use ottla_protocol::records::{build_record_batch, decode_records, Record};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::durable::{read_if_exists, write_atomically, TMP_SUFFIX};
use super::{
    run_blocking, QuorumError, QuorumStorageError, TypeConfig, PURGED_LOG_ID_FILE,
    QUORUM_STATE_FILE,
};

/// At most this many bytes of batches per `limited_get_log_entries` (a replication
/// request), but always at least one entry.
const REPLICATION_READ_BYTES: usize = 1 << 20;
/// The version of `quorum-state` and `purged-log-id` written here.
const DATA_VERSION: i32 = 0;

/// The metadata log's segment settings, with KRaft's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumLogConfig {
    /// `metadata.log.segment.bytes` (default 1 GiB).
    pub segment_bytes: u64,
    /// `metadata.log.segment.ms` (default 7 days).
    pub segment_ms: i64,
}

impl Default for QuorumLogConfig {
    fn default() -> Self {
        QuorumLogConfig {
            segment_bytes: ottla_log::DEFAULT_SEGMENT_BYTES,
            segment_ms: ottla_log::DEFAULT_SEGMENT_MS,
        }
    }
}

impl QuorumLogConfig {
    /// The partition log's config. Retention is off: only purges (after snapshots)
    /// delete metadata segments, as in KRaft. Flushing is explicit (every append).
    fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_bytes: -1,
            retention_ms: -1,
            // Segments a snapshot made obsolete go at once: nothing reads them any more.
            file_delete_delay_ms: 0,
            ..LogConfig::default()
        }
    }
}

/// The log store handed to openraft; [`MetadataLogReader`]s share its state.
pub struct MetadataLogStore {
    shared: Arc<Shared>,
}

/// Reads entries for openraft's replication tasks, concurrently with the store's
/// writes.
#[derive(Clone)]
pub struct MetadataLogReader {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// The log and what is known about its ends. Held across segment reads and writes
    /// to the page cache, on blocking threads only; never across the fsync of appended
    /// entries (truncation and purge, which are rare, may fsync the directory under it).
    log: Mutex<LogEnds>,
    /// What `quorum-state` holds. Written by openraft's core task only, so its lock is
    /// separate: saving a vote never waits for a log read.
    quorum: Mutex<QuorumState>,
}

struct LogEnds {
    log: Log,
    /// The last entry a snapshot replaced; entries up to it are never returned.
    last_purged: Option<LogId<u64>>,
    /// The entry in the log's last batch, purged or not.
    last_entry: Option<LogId<u64>>,
}

impl LogEnds {
    /// openraft's last log id: the last entry, or the last purged id when every entry
    /// is purged.
    fn last_log_id(&self) -> Option<LogId<u64>> {
        match (self.last_entry, self.last_purged) {
            (Some(entry), Some(purged)) if entry.index <= purged.index => Some(purged),
            (Some(entry), _) => Some(entry),
            (None, purged) => purged,
        }
    }

    /// The first offset a read may return: after the purged id, within the log.
    fn first_readable(&self) -> i64 {
        let after_purged = self
            .last_purged
            .map_or(0, |p| offset_of(p.index).saturating_add(1));
        after_purged.max(self.log.log_start_offset())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct QuorumState {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

impl MetadataLogStore {
    /// Open (or create) the log store in `dir` (`.../__cluster_metadata-0`).
    ///
    /// Blocking file I/O. A purge interrupted by a crash (its id recorded, its segments
    /// not yet deleted) is completed here.
    // openraft's own error type, as every storage method returns it: large, but rare.
    #[allow(clippy::result_large_err)]
    pub fn open(
        dir: &Path,
        config: QuorumLogConfig,
    ) -> Result<MetadataLogStore, QuorumStorageError> {
        Self::open_inner(dir, config)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    fn open_inner(dir: &Path, config: QuorumLogConfig) -> Result<MetadataLogStore, QuorumError> {
        std::fs::create_dir_all(dir).map_err(QuorumError::io("create directory", dir))?;
        let quorum = read_quorum_state(dir)?;
        let last_purged = read_purged(dir)?;
        // Recover from the first segment (recovery point 0): see the module docs.
        let mut log = Log::open(dir, config.log_config(), 0)
            .map_err(QuorumError::log("open metadata log", dir))?;
        if let Some(purged) = last_purged {
            let next = offset_of(purged.index).saturating_add(1);
            if log.log_end_offset() < next {
                log.truncate_fully_and_start_at(next)
                    .map_err(QuorumError::log("restart metadata log", dir))?;
            } else {
                log.delete_segments_below(next)
                    .map_err(QuorumError::log("delete purged segments", dir))?;
            }
        }
        let last_entry = read_last_entry(&log)?;
        tracing::info!(
            "Opened metadata log {}: offsets [{}, {}), last purged {:?}, last entry {:?}, vote {:?}",
            dir.display(),
            log.log_start_offset(),
            log.log_end_offset(),
            last_purged,
            last_entry,
            quorum.vote
        );
        Ok(MetadataLogStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                log: Mutex::new(LogEnds {
                    log,
                    last_purged,
                    last_entry,
                }),
                quorum: Mutex::new(quorum),
            }),
        })
    }

    /// The directory of the log (`.../__cluster_metadata-0`).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Apply `update` to the quorum state, write the result to `quorum-state`, and only
    /// then make it the state in memory (what `read_vote` answers).
    async fn save_quorum_state(
        &mut self,
        update: impl FnOnce(&mut QuorumState) + Send + 'static,
    ) -> Result<(), QuorumStorageError> {
        let shared = self.shared.clone();
        run_blocking(ErrorSubject::Vote, ErrorVerb::Write, move || {
            let mut quorum = shared.quorum.lock();
            let mut next = *quorum;
            update(&mut next);
            write_quorum_state(&shared.dir, &next)?;
            *quorum = next;
            Ok(())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for MetadataLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, QuorumStorageError> {
        read_range(self.shared.clone(), range, usize::MAX).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, QuorumStorageError> {
        read_range(self.shared.clone(), start..end, REPLICATION_READ_BYTES).await
    }
}

impl RaftLogReader<TypeConfig> for MetadataLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, QuorumStorageError> {
        read_range(self.shared.clone(), range, usize::MAX).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, QuorumStorageError> {
        read_range(self.shared.clone(), start..end, REPLICATION_READ_BYTES).await
    }
}

impl RaftLogStorage<TypeConfig> for MetadataLogStore {
    type LogReader = MetadataLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, QuorumStorageError> {
        let ends = self.shared.log.lock();
        Ok(LogState {
            last_purged_log_id: ends.last_purged,
            last_log_id: ends.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        MetadataLogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), QuorumStorageError> {
        let vote = *vote;
        self.save_quorum_state(move |q| q.vote = Some(vote)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, QuorumStorageError> {
        Ok(self.shared.quorum.lock().vote)
    }

    /// Saved so that a restarted node re-applies what was committed at once (openraft
    /// replays up to it on start-up) instead of waiting for a leader to tell it.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), QuorumStorageError> {
        if self.shared.quorum.lock().committed == committed {
            return Ok(());
        }
        self.save_quorum_state(move |q| q.committed = committed)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, QuorumStorageError> {
        Ok(self.shared.quorum.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), QuorumStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let shared = self.shared.clone();
        let result = run_blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            append_and_sync(&shared, &entries)
        })
        .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), QuorumStorageError> {
        let shared = self.shared.clone();
        run_blocking(ErrorSubject::Log(log_id), ErrorVerb::Delete, move || {
            truncate_and_sync(&shared, log_id)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), QuorumStorageError> {
        let shared = self.shared.clone();
        run_blocking(ErrorSubject::Log(log_id), ErrorVerb::Delete, move || {
            purge(&shared, log_id)
        })
        .await
    }
}

/// A log index as a Kafka offset. openraft indexes never come near `i64::MAX` (that
/// would take centuries of writes); saturating keeps comparisons right regardless.
fn offset_of(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

/// The Kafka leader epoch of a term: refused above int32, which Kafka's format cannot
/// carry.
fn epoch_of(term: u64) -> Result<i32, QuorumError> {
    i32::try_from(term).map_err(|_| {
        QuorumError::Invalid(format!(
            "term {term} does not fit a Kafka leader epoch (int32)"
        ))
    })
}

/// Append `entries` (consecutive, continuing the log) and fsync them.
fn append_and_sync(shared: &Shared, entries: &[Entry<TypeConfig>]) -> Result<(), QuorumError> {
    // Entries a snapshot already replaced would never be read: they are dropped. The
    // engine never appends them, but openraft's conformance suite does (an entry below
    // the purge point that `get_initial_state` made when the state machine was ahead).
    let purged = shared.log.lock().last_purged;
    let skip = purged.map_or(0, |p| {
        entries
            .iter()
            .take_while(|e| e.log_id.index <= p.index)
            .count()
    });
    if skip > 0 {
        tracing::warn!(
            "Not appending {skip} metadata log entries at or below the purged {:?}",
            purged
        );
    }
    let entries = &entries[skip..];
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    let mut bytes = Vec::new();
    let mut expected = first.log_id.index;
    for entry in entries {
        if entry.log_id.index != expected {
            return Err(QuorumError::Invalid(format!(
                "entries to append are not consecutive: {} after index {}",
                entry.log_id,
                expected.saturating_sub(1)
            )));
        }
        expected = expected.saturating_add(1);
        bytes.extend_from_slice(&encode_entry(entry)?);
    }
    let plan = {
        let mut ends = shared.log.lock();
        let first_offset = i64::try_from(first.log_id.index).map_err(|_| {
            QuorumError::Invalid(format!("log index {} exceeds Kafka offsets", first.log_id))
        })?;
        match ends.last_log_id() {
            Some(last_id) if last_id.index.checked_add(1) != Some(first.log_id.index) => {
                return Err(QuorumError::Invalid(format!(
                    "append of {} would leave a hole or overwrite: the log ends at {last_id}",
                    first.log_id
                )));
            }
            Some(_) => {}
            // A first entry beyond offset 0 (nothing appended or purged yet): the log
            // starts there, as Kafka's does after `truncateFullyAndStartAt`.
            None if first_offset != ends.log.log_end_offset() => ends
                .log
                .truncate_fully_and_start_at(first_offset)
                .map_err(QuorumError::log("restart metadata log", &shared.dir))?,
            None => {}
        }
        // `append_as_follower`: the batches carry their offsets and epochs; it checks
        // CRCs and that offsets do not go backwards before writing anything.
        ends.log
            .append_as_follower(&bytes)
            .map_err(QuorumError::log("append to", &shared.dir))?;
        ends.last_entry = Some(last.log_id);
        ends.log.prepare_flush()
    };
    sync(shared, plan)
}

/// fsync what `plan` covers without holding the log, then record it.
fn sync(shared: &Shared, plan: FlushPlan) -> Result<(), QuorumError> {
    let synced = plan.sync();
    shared
        .log
        .lock()
        .log
        .finish_flush(plan, synced)
        .map(|_| ())
        .map_err(QuorumError::log("fsync", &shared.dir))
}

/// Remove the entries at and after `log_id.index`, durably.
fn truncate_and_sync(shared: &Shared, log_id: LogId<u64>) -> Result<(), QuorumError> {
    let plan = {
        let mut ends = shared.log.lock();
        ends.log
            .truncate_to(offset_of(log_id.index))
            .map_err(QuorumError::log("truncate", &shared.dir))?;
        ends.last_entry = read_last_entry(&ends.log)?;
        // The shortened segment is fsynced before openraft goes on: entries it removed
        // must not come back after a crash.
        ends.log.prepare_flush()
    };
    sync(shared, plan)
}

/// Forget the entries up to `log_id` (a snapshot holds them): durably record the
/// purged id, then delete what lies wholly below it.
fn purge(shared: &Shared, log_id: LogId<u64>) -> Result<(), QuorumError> {
    if shared
        .log
        .lock()
        .last_purged
        .is_some_and(|p| p.index >= log_id.index)
    {
        return Ok(());
    }
    // First the id, then the deletion: after a crash in between, open finishes the
    // job; the other order could leave a log starting after its purged id. The file is
    // written without the log's lock (readers go on meanwhile); openraft issues writes
    // one at a time, so nothing else changes the log in between.
    write_purged(&shared.dir, log_id)?;
    let mut ends = shared.log.lock();
    ends.last_purged = Some(log_id);
    let next = offset_of(log_id.index).saturating_add(1);
    if next > ends.log.log_end_offset() {
        // Everything goes, and the next entry follows the purged one (a follower that
        // installed the leader's snapshot).
        ends.log
            .truncate_fully_and_start_at(next)
            .map_err(QuorumError::log("restart metadata log", &shared.dir))?;
        ends.last_entry = None;
    } else {
        ends.log
            .delete_segments_below(next)
            .map_err(QuorumError::log("delete purged segments", &shared.dir))?;
    }
    Ok(())
}

/// Read the entries of `range` that are in the log and not purged, up to `max_bytes`
/// of batches (at least one entry).
async fn read_range<RB: RangeBounds<u64>>(
    shared: Arc<Shared>,
    range: RB,
    max_bytes: usize,
) -> Result<Vec<Entry<TypeConfig>>, QuorumStorageError> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    run_blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
        let ends = shared.log.lock();
        let start = offset_of(start).max(ends.first_readable());
        let end = offset_of(end).min(ends.log.log_end_offset());
        read_entries(&ends.log, start, end, max_bytes)
    })
    .await
}

/// The entries of the batches in `[start, end)`.
fn read_entries(
    log: &Log,
    start: i64,
    end: i64,
    max_bytes: usize,
) -> Result<Vec<Entry<TypeConfig>>, QuorumError> {
    if start >= end {
        return Ok(Vec::new());
    }
    let dir = log.dir();
    let bytes = log
        .slice(start, max_bytes, end, true)
        .map_err(QuorumError::log("read", dir))?
        .to_bytes()
        .map_err(QuorumError::io("read", dir))?;
    let mut entries = Vec::new();
    for batch in BatchIter::new(&bytes) {
        let batch = batch.map_err(|e| corrupt(dir, format!("unreadable batch: {e}")))?;
        if batch.base_offset() < start {
            continue;
        }
        if batch.base_offset() >= end {
            break;
        }
        entries.push(decode_entry(&batch).map_err(|reason| corrupt(dir, reason))?);
    }
    Ok(entries)
}

/// The id of the entry in the log's last batch, if the log holds any.
fn read_last_entry(log: &Log) -> Result<Option<LogId<u64>>, QuorumError> {
    let end = log.log_end_offset();
    if end <= log.log_start_offset() {
        return Ok(None);
    }
    Ok(read_entries(log, end - 1, end, 1)?
        .last()
        .map(|entry| entry.log_id))
}

fn corrupt(dir: &Path, reason: String) -> QuorumError {
    QuorumError::Corrupt {
        path: dir.to_path_buf(),
        reason,
    }
}

/// One entry as one batch: see the module docs for the layout.
pub(crate) fn encode_entry(entry: &Entry<TypeConfig>) -> Result<Vec<u8>, QuorumError> {
    let offset = i64::try_from(entry.log_id.index).map_err(|_| {
        QuorumError::Invalid(format!("log index {} exceeds Kafka offsets", entry.log_id))
    })?;
    let epoch = epoch_of(entry.log_id.leader_id.term)?;
    let value = serde_json::to_vec(entry).map_err(|e| {
        QuorumError::Invalid(format!("entry {} cannot be encoded: {e}", entry.log_id))
    })?;
    let record = Record {
        offset: 0,
        timestamp: ottla_log::now_ms(),
        key: None,
        value: Some(value),
        headers: Vec::new(),
    };
    let mut batch = build_record_batch(
        &[record],
        Compression::None,
        NO_PRODUCER_ID,
        NO_PRODUCER_EPOCH,
        NO_SEQUENCE,
    );
    let mut header = RecordBatchMut::new(&mut batch).map_err(|e| {
        QuorumError::Invalid(format!(
            "entry {} makes an invalid batch: {e}",
            entry.log_id
        ))
    })?;
    // Neither field is covered by the CRC: the batch stays valid.
    header.set_base_offset(offset);
    header.set_partition_leader_epoch(epoch);
    Ok(batch)
}

/// The entry a batch holds, checked against the batch header.
pub(crate) fn decode_entry(batch: &RecordBatch<'_>) -> Result<Entry<TypeConfig>, String> {
    let at = batch.base_offset();
    batch
        .validate()
        .map_err(|e| format!("batch at offset {at}: {e}"))?;
    let records = decode_records(batch, ottla_log::MAX_DECOMPRESSED_BATCH_BYTES)
        .map_err(|e| format!("batch at offset {at}: {e}"))?;
    let [record] = records.as_slice() else {
        return Err(format!(
            "batch at offset {at} holds {} records, not one entry",
            records.len()
        ));
    };
    let value = record
        .value
        .as_deref()
        .ok_or_else(|| format!("batch at offset {at} has a null value"))?;
    let entry: Entry<TypeConfig> = serde_json::from_slice(value)
        .map_err(|e| format!("batch at offset {at} does not hold an entry: {e}"))?;
    let epoch = batch.partition_leader_epoch();
    if i64::try_from(entry.log_id.index).ok() != Some(at)
        || i64::try_from(entry.log_id.leader_id.term).ok() != Some(i64::from(epoch))
    {
        return Err(format!(
            "batch at offset {at} with epoch {epoch} holds entry {}",
            entry.log_id
        ));
    }
    Ok(entry)
}

/// `quorum-state`, in the spirit of KRaft's (`FileQuorumStateStore`, `data_version`
/// 0): `{"leaderId":2,"leaderEpoch":7,"votedId":2,"committedOffset":41,
/// "committedEpoch":7,"data_version":0}`.
///
/// openraft's vote is (term, voted for, committed): `leaderEpoch` is the term,
/// `votedId` the node voted for (-1: none), and `leaderId` is that same node once the
/// vote is committed (a quorum granted it, so it is the known leader of the epoch, as
/// KRaft records its leader), else -1. `committedOffset`/`committedEpoch` are the
/// committed log id's index and term (-1: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuorumStateFile {
    leader_id: i64,
    leader_epoch: u64,
    voted_id: i64,
    committed_offset: i64,
    committed_epoch: i64,
    #[serde(rename = "data_version")]
    data_version: i32,
}

/// A node id as written in the files (Kafka's ids are int32; -1 is none).
fn node_field(id: Option<u64>) -> Result<i64, QuorumError> {
    match id {
        None => Ok(-1),
        Some(id) => i64::try_from(id)
            .map_err(|_| QuorumError::Invalid(format!("node id {id} is not a Kafka node id"))),
    }
}

fn write_quorum_state(dir: &Path, state: &QuorumState) -> Result<(), QuorumError> {
    let vote = state.vote.unwrap_or_default();
    let voted_id = node_field(vote.leader_id.voted_for)?;
    if vote.committed && voted_id < 0 {
        return Err(QuorumError::Invalid(format!(
            "a committed vote without a leader cannot be saved: {vote}"
        )));
    }
    let (committed_offset, committed_epoch) = match state.committed {
        Some(c) => (
            offset_of(c.index),
            i64::try_from(c.leader_id.term).unwrap_or(i64::MAX),
        ),
        None => (-1, -1),
    };
    let file = QuorumStateFile {
        leader_id: if vote.committed { voted_id } else { -1 },
        leader_epoch: vote.leader_id.term,
        voted_id,
        committed_offset,
        committed_epoch,
        data_version: DATA_VERSION,
    };
    let bytes = serde_json::to_vec(&file)
        .map_err(|e| QuorumError::Invalid(format!("quorum-state cannot be encoded: {e}")))?;
    write_atomically(dir, QUORUM_STATE_FILE, TMP_SUFFIX, &bytes)
}

fn read_quorum_state(dir: &Path) -> Result<QuorumState, QuorumError> {
    let path = dir.join(QUORUM_STATE_FILE);
    let Some(bytes) = read_if_exists(&path)? else {
        return Ok(QuorumState::default());
    };
    let bad = |reason: String| QuorumError::Corrupt {
        path: path.clone(),
        reason,
    };
    let file: QuorumStateFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not quorum state: {e}")))?;
    if file.data_version != DATA_VERSION {
        return Err(bad(format!("unknown data_version {}", file.data_version)));
    }
    let voted_for = match file.voted_id {
        -1 => None,
        id => Some(u64::try_from(id).map_err(|_| bad(format!("votedId {id}")))?),
    };
    let committed_vote = match file.leader_id {
        -1 => false,
        id if id == file.voted_id => true,
        id => {
            return Err(bad(format!(
                "leaderId {id} is not the node voted for ({})",
                file.voted_id
            )))
        }
    };
    let committed = match (file.committed_offset, file.committed_epoch) {
        (-1, -1) => None,
        (offset, epoch) => match (u64::try_from(offset), u64::try_from(epoch)) {
            (Ok(index), Ok(term)) => Some(LogId::new(CommittedLeaderId::new(term, 0), index)),
            _ => return Err(bad(format!("committed log id {epoch}-{offset}"))),
        },
    };
    Ok(QuorumState {
        vote: Some(Vote {
            leader_id: LeaderId {
                term: file.leader_epoch,
                voted_for,
            },
            committed: committed_vote,
        }),
        committed,
    })
}

/// `purged-log-id`: `{"epoch":7,"offset":41,"data_version":0}`, the term and index
/// of the last purged entry (KRaft's log start offset is the offset after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PurgedFile {
    epoch: u64,
    offset: u64,
    data_version: i32,
}

fn write_purged(dir: &Path, log_id: LogId<u64>) -> Result<(), QuorumError> {
    let file = PurgedFile {
        epoch: log_id.leader_id.term,
        offset: log_id.index,
        data_version: DATA_VERSION,
    };
    let bytes = serde_json::to_vec(&file)
        .map_err(|e| QuorumError::Invalid(format!("purged log id cannot be encoded: {e}")))?;
    write_atomically(dir, PURGED_LOG_ID_FILE, TMP_SUFFIX, &bytes)
}

fn read_purged(dir: &Path) -> Result<Option<LogId<u64>>, QuorumError> {
    let path = dir.join(PURGED_LOG_ID_FILE);
    let Some(bytes) = read_if_exists(&path)? else {
        return Ok(None);
    };
    let file: PurgedFile = serde_json::from_slice(&bytes).map_err(|e| QuorumError::Corrupt {
        path: path.clone(),
        reason: format!("not a purged log id: {e}"),
    })?;
    if file.data_version != DATA_VERSION {
        return Err(QuorumError::Corrupt {
            path,
            reason: format!("unknown data_version {}", file.data_version),
        });
    }
    Ok(Some(LogId::new(
        CommittedLeaderId::new(file.epoch, 0),
        file.offset,
    )))
}
