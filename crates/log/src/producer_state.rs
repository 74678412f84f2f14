//! Idempotent-producer state of one partition (Kafka's `ProducerStateManager`).
//!
//! For every producer id the partition remembers its epoch and the sequence ranges and
//! offsets of its last [`MAX_CACHED_BATCHES`] batches. That is enough to fence zombies
//! (an older epoch), to reject gaps (a sequence that does not follow the last one), and
//! to answer a retried batch with the offsets it got the first time instead of writing
//! it twice. Everything needed is in the 61-byte batch header, so the state is rebuilt on
//! open by walking headers; a snapshot file in Kafka's format bounds that walk, and a
//! companion file of Ottla's ([`BATCHES_SUFFIX`]) carries the older cached batches that
//! Kafka's format has no room for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ottla_protocol::batch::{increment_sequence, NO_PRODUCER_EPOCH};

use crate::header::{wrapping_sequence_sub, BatchHeader};
use crate::{io_context, LogError};

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`: the producer keeps at most 5
/// requests in flight per connection, so a retry can only repeat one of the last 5.
pub const MAX_CACHED_BATCHES: usize = 5;
/// Kafka's producer snapshot version 1, the format this module writes and reads.
pub const SNAPSHOT_VERSION: i16 = 1;
/// File name suffix of producer snapshots, as Kafka names them.
pub const SNAPSHOT_SUFFIX: &str = "snapshot";
/// version int16 + crc uint32 + entry count int32.
const SNAPSHOT_HEADER_LEN: usize = 10;
/// producer_id 8, epoch 2, last_sequence 4, last_offset 8, offset_delta 4, timestamp 8,
/// coordinator_epoch 4, current_txn_first_offset 8.
const SNAPSHOT_ENTRY_LEN: usize = 46;
/// Largest snapshot file read (about 5.8 million producers); anything bigger is treated
/// as corrupt rather than loaded into memory.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;
/// Where the CRC-32C coverage starts (the entries array).
const SNAPSHOT_CRC_START: usize = 6;

/// File name suffix of Ottla's companion to a producer snapshot:
/// `<offset>.snapshot.batches` holds, for every producer, the cached batches older than
/// its last one, which the `<offset>.snapshot` beside it has no room for.
///
/// Why: Kafka's snapshot (version 1) stores one entry per producer, describing its last
/// batch only, and Kafka loads no more than that (`ProducerStateManager.readSnapshot`
/// builds each `ProducerStateEntry` with a single `BatchMetadata`). A clean shutdown
/// snapshots at the log end, which leaves no batch to replay on the next open, so after
/// a clean restart Kafka recognises only each producer's last batch as a duplicate and
/// answers a retry of one of the four before it with OUT_OF_ORDER_SEQUENCE_NUMBER,
/// although the producer may legitimately retry any of its 5 in-flight requests. Ottla's
/// open starts from the snapshot at the base of the first segment it recovers (the
/// active one after a clean shutdown) and replays that segment's headers, so without
/// the companion a producer whose last five batches span a roll keeps only those after
/// the roll plus one. Ottla keeps all [`MAX_CACHED_BATCHES`] across restarts, clean or
/// not, as the issue asks (where Kafka, after a clean shutdown, keeps one). The
/// alternatives were worse: a snapshot version 2 would make the `.snapshot` unreadable
/// for Kafka and its tools (Kafka rejects every version but 1); re-reading the log for
/// the older batches has no bound (a slow producer's fifth-latest batch may be any
/// number of segments back). The companion costs one small write per snapshot and one
/// read per load and never touches the log; Kafka ignores it (it takes only names
/// ending in `.snapshot` for snapshots, and leaves unknown files alone).
///
/// It is tied to the exact `.snapshot` it was written with (that file's offset and CRC
/// are in it), and every entry must fit the producer loaded from that snapshot: same
/// epoch, offsets ascending and below the producer's last batch, at most 4 per producer.
/// Anything else, a torn write or damage, and the whole file is ignored (and deleted):
/// the producer then has its last batch only, as in Kafka, never a wrong duplicate.
pub const BATCHES_SUFFIX: &str = "snapshot.batches";
/// Version of the companion format (Ottla's own).
pub const BATCHES_VERSION: i16 = 1;
/// version int16 + crc uint32 + snapshot offset int64 + snapshot crc uint32 + entry
/// count int32.
const BATCHES_HEADER_LEN: usize = 22;
/// producer_id 8, epoch 2, first_sequence 4, last_sequence 4, first_offset 8,
/// last_offset 8, max_timestamp 8: one [`BatchMetadata`], stored whole rather than as
/// Kafka's last-offset-and-delta so that nothing has to be derived on load.
const BATCHES_ENTRY_LEN: usize = 42;
/// Largest companion file read: the older batches of as many producers as the largest
/// snapshot read ([`MAX_SNAPSHOT_BYTES`]) can list.
pub const MAX_BATCHES_BYTES: u64 = (MAX_SNAPSHOT_BYTES / SNAPSHOT_ENTRY_LEN as u64)
    * (MAX_CACHED_BATCHES as u64 - 1)
    * BATCHES_ENTRY_LEN as u64
    + BATCHES_HEADER_LEN as u64;
/// Where the companion's CRC-32C coverage starts (everything after the CRC).
const BATCHES_CRC_START: usize = 6;

/// Sequence range and offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp.
    pub timestamp: i64,
}

/// What the partition knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    producer_id: i64,
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
    coordinator_epoch: i32,
    current_txn_first_offset: Option<i64>,
    last_timestamp: i64,
}

impl ProducerStateEntry {
    fn empty(producer_id: i64) -> Self {
        ProducerStateEntry {
            producer_id,
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }
    pub fn epoch(&self) -> i16 {
        self.epoch
    }
    /// The cached batches, oldest first (at most [`MAX_CACHED_BATCHES`]).
    pub fn batches(&self) -> impl Iterator<Item = &BatchMetadata> {
        self.batches.iter()
    }
    pub fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
    pub fn last_offset(&self) -> Option<i64> {
        self.batches.back().map(|b| b.last_offset)
    }
    pub fn last_timestamp(&self) -> i64 {
        self.last_timestamp
    }
    /// The epoch of the transaction coordinator that wrote the producer's last marker.
    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }
    /// First offset of the producer's open transaction, if one is open.
    pub fn current_txn_first_offset(&self) -> Option<i64> {
        self.current_txn_first_offset
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }

    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
    }
}

/// Outcome of checking a leader append against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProducerCheck {
    /// Append it.
    Accept,
    /// Already in the log: answer with these offsets and do not append.
    Duplicate(BatchMetadata),
}

/// Per-partition producer table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerStateEntry>,
    /// Open transactions by first offset (Kafka's `ongoingTxns`): the first key is the
    /// first unstable offset, which read_committed readers may not pass.
    ongoing: BTreeMap<i64, i64>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &ProducerStateEntry> {
        self.producers.values()
    }
    /// The first offset of the oldest open transaction (Kafka's `firstUnstableOffset`).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Kafka's leader-side validation (`ProducerAppendInfo.checkProducerEpoch` and
    /// `checkSequence`, plus the duplicate lookup of `UnifiedLog`), for a batch that
    /// carries a producer id. Done before offsets are assigned so nothing is written for
    /// a rejected or duplicate batch.
    pub(crate) fn check_leader_append(&self, h: &BatchHeader) -> Result<ProducerCheck, LogError> {
        if !h.has_producer_id() {
            return Ok(ProducerCheck::Accept);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // A producer we know nothing about (new, or its state was lost to retention):
            // any sequence is accepted, as in Kafka.
            return Ok(ProducerCheck::Accept);
        };
        if entry.epoch != NO_PRODUCER_EPOCH && h.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                current: entry.epoch,
                received: h.producer_epoch,
            });
        }
        if h.is_control() {
            // Transaction markers carry no sequence; only the epoch fence applies.
            return Ok(ProducerCheck::Accept);
        }
        if let Some(dup) =
            entry.find_duplicate(h.producer_epoch, h.base_sequence, h.last_sequence())
        {
            return Ok(ProducerCheck::Duplicate(dup));
        }
        if h.producer_epoch != entry.epoch {
            // A new epoch starts its sequences at 0, unless we never knew an epoch.
            if h.base_sequence != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(LogError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    expected: 0,
                    received: h.base_sequence,
                });
            }
            return Ok(ProducerCheck::Accept);
        }
        match entry.last_sequence() {
            // Same epoch but no batch cached (e.g. only markers so far): accept.
            None => Ok(ProducerCheck::Accept),
            Some(last) => {
                let expected = increment_sequence(last, 1);
                if h.base_sequence == expected {
                    Ok(ProducerCheck::Accept)
                } else {
                    Err(LogError::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        producer_epoch: h.producer_epoch,
                        expected,
                        received: h.base_sequence,
                    })
                }
            }
        }
    }

    /// The check for a coordinator's own batch (no sequence): only the epoch fence.
    pub(crate) fn check_coordinator_append(
        &self,
        h: &BatchHeader,
    ) -> Result<ProducerCheck, LogError> {
        match self.producers.get(&h.producer_id) {
            Some(entry)
                if h.has_producer_id()
                    && entry.epoch != NO_PRODUCER_EPOCH
                    && h.producer_epoch < entry.epoch =>
            {
                Err(LogError::InvalidProducerEpoch {
                    producer_id: h.producer_id,
                    current: entry.epoch,
                    received: h.producer_epoch,
                })
            }
            _ => Ok(ProducerCheck::Accept),
        }
    }

    /// Kafka's `ProducerAppendInfo.checkCoordinatorEpoch`: a marker from a coordinator
    /// epoch older than that of the producer's last marker comes from a zombie
    /// coordinator (TRANSACTION_COORDINATOR_FENCED); an equal epoch is accepted.
    pub(crate) fn check_marker_coordinator_epoch(
        &self,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> Result<(), LogError> {
        match self.producers.get(&producer_id) {
            Some(entry) if entry.coordinator_epoch > coordinator_epoch => {
                Err(LogError::TransactionCoordinatorFenced {
                    producer_id,
                    current: entry.coordinator_epoch,
                    received: coordinator_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// The producer's last marker (already recorded by [`Self::update`]) was written by
    /// the coordinator at `coordinator_epoch`.
    pub(crate) fn set_coordinator_epoch(&mut self, producer_id: i64, coordinator_epoch: i32) {
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            entry.coordinator_epoch = coordinator_epoch;
        }
    }

    /// Record an appended batch whose header carries its final offsets. No validation:
    /// used after the leader check, for follower appends and when rebuilding from disk.
    /// For a transaction marker, returns the first offset of the transaction it ends
    /// (the marker's own offset when the producer had none open).
    pub(crate) fn update(&mut self, h: &BatchHeader) -> Option<i64> {
        if !h.has_producer_id() {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerStateEntry::empty(h.producer_id));
        entry.set_epoch(h.producer_epoch);
        entry.last_timestamp = h.max_timestamp;
        if h.is_control() {
            // A COMMIT/ABORT marker closes the producer's transaction.
            let first = entry.current_txn_first_offset.take();
            if let Some(first) = first {
                self.ongoing.remove(&first);
            }
            return Some(first.unwrap_or(h.base_offset));
        }
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        None
    }

    /// Forget producers idle for at least `expiration_ms` with no open transaction
    /// (Kafka's `producer.id.expiration.ms`, default one day). Returns how many went.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
    }

    /// Serialize in Kafka's snapshot format v1: version, CRC-32C of the rest, then per
    /// producer only its *last* batch (the format has room for no more; the older ones
    /// go to the companion file, [`ProducerStateManager::to_batches_bytes`]).
    pub(crate) fn to_snapshot_bytes(&self) -> Vec<u8> {
        let mut producers: Vec<&ProducerStateEntry> = self.producers.values().collect();
        producers.sort_by_key(|e| e.producer_id);
        let mut b = Vec::with_capacity(SNAPSHOT_HEADER_LEN + producers.len() * SNAPSHOT_ENTRY_LEN);
        b.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&(producers.len() as i32).to_be_bytes());
        for e in producers {
            let last = e.batches.back();
            b.extend_from_slice(&e.producer_id.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&last.map_or(-1, |l| l.last_seq).to_be_bytes());
            b.extend_from_slice(&last.map_or(-1i64, |l| l.last_offset).to_be_bytes());
            let delta = last.map_or(0, |l| (l.last_offset - l.first_offset) as i32);
            b.extend_from_slice(&delta.to_be_bytes());
            b.extend_from_slice(&e.last_timestamp.to_be_bytes());
            b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            b.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        }
        let crc = crc32c::crc32c(&b[SNAPSHOT_CRC_START..]);
        b[2..6].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parse a snapshot; any inconsistency is an error (the caller then ignores the file).
    pub(crate) fn from_snapshot_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < SNAPSHOT_HEADER_LEN {
            return Err(format!(
                "snapshot has {} bytes, less than its header",
                b.len()
            ));
        }
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let stored = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
        let computed = crc32c::crc32c(&b[SNAPSHOT_CRC_START..]);
        if stored != computed {
            return Err(format!(
                "snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let count = i32::from_be_bytes([b[6], b[7], b[8], b[9]]);
        let body = &b[SNAPSHOT_HEADER_LEN..];
        if count < 0 || body.len() != count as usize * SNAPSHOT_ENTRY_LEN {
            return Err(format!(
                "snapshot claims {count} entries in {} bytes",
                body.len()
            ));
        }
        let mut producers = HashMap::with_capacity(count as usize);
        for chunk in body.chunks_exact(SNAPSHOT_ENTRY_LEN) {
            let mut r = Reader(chunk);
            let producer_id = r.i64();
            let epoch = r.i16();
            let last_seq = r.i32();
            let last_offset = r.i64();
            let offset_delta = r.i32();
            let timestamp = r.i64();
            let coordinator_epoch = r.i32();
            let txn_first = r.i64();
            if producer_id < 0
                || offset_delta < 0
                || (last_offset >= 0 && last_offset < i64::from(offset_delta))
            {
                return Err(format!(
                    "snapshot entry for producer {producer_id} is inconsistent"
                ));
            }
            let mut entry = ProducerStateEntry::empty(producer_id);
            entry.epoch = epoch;
            entry.coordinator_epoch = coordinator_epoch;
            entry.current_txn_first_offset = (txn_first >= 0).then_some(txn_first);
            entry.last_timestamp = timestamp;
            if last_offset >= 0 {
                entry.batches.push_back(BatchMetadata {
                    first_seq: wrapping_sequence_sub(last_seq, offset_delta),
                    last_seq,
                    first_offset: last_offset - i64::from(offset_delta),
                    last_offset,
                    timestamp,
                });
            }
            producers.insert(producer_id, entry);
        }
        let ongoing = producers
            .values()
            .filter_map(|e| e.current_txn_first_offset.map(|o| (o, e.producer_id)))
            .collect();
        Ok(ProducerStateManager { producers, ongoing })
    }

    /// Serialize the companion of the snapshot at `offset` whose stored CRC is
    /// `snapshot_crc` (see [`BATCHES_SUFFIX`]): every producer's cached batches but the
    /// last, by producer id and then oldest first. `None` when no producer has more
    /// than one batch, so no companion is needed.
    pub(crate) fn to_batches_bytes(&self, offset: i64, snapshot_crc: u32) -> Option<Vec<u8>> {
        let mut producers: Vec<&ProducerStateEntry> = self
            .producers
            .values()
            .filter(|e| e.batches.len() > 1)
            .collect();
        if producers.is_empty() {
            return None;
        }
        producers.sort_by_key(|e| e.producer_id);
        let count: usize = producers.iter().map(|e| e.batches.len() - 1).sum();
        let mut b = Vec::with_capacity(BATCHES_HEADER_LEN + count * BATCHES_ENTRY_LEN);
        b.extend_from_slice(&BATCHES_VERSION.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&snapshot_crc.to_be_bytes());
        b.extend_from_slice(&(count as i32).to_be_bytes());
        for e in producers {
            for m in e.batches.iter().take(e.batches.len() - 1) {
                b.extend_from_slice(&e.producer_id.to_be_bytes());
                b.extend_from_slice(&e.epoch.to_be_bytes());
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.first_offset.to_be_bytes());
                b.extend_from_slice(&m.last_offset.to_be_bytes());
                b.extend_from_slice(&m.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[BATCHES_CRC_START..]);
        b[2..6].copy_from_slice(&crc.to_be_bytes());
        Some(b)
    }

    /// Put back the older batches a companion file holds, in front of the last batch
    /// each producer was loaded with from the snapshot at `offset` (stored CRC
    /// `snapshot_crc`). All or nothing: every entry is checked before any is applied,
    /// and on any inconsistency nothing changes and the reason is returned. Returns how
    /// many batches were restored.
    pub(crate) fn restore_older_batches(
        &mut self,
        b: &[u8],
        offset: i64,
        snapshot_crc: u32,
    ) -> Result<usize, String> {
        if b.len() < BATCHES_HEADER_LEN {
            return Err(format!("{} bytes, less than its header", b.len()));
        }
        let mut r = Reader(b);
        let version = r.i16();
        if version != BATCHES_VERSION {
            return Err(format!("unknown version {version}"));
        }
        let stored = u32::from_be_bytes(r.take());
        let computed = crc32c::crc32c(&b[BATCHES_CRC_START..]);
        if stored != computed {
            return Err(format!(
                "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let for_offset = r.i64();
        let for_crc = u32::from_be_bytes(r.take());
        if for_offset != offset || for_crc != snapshot_crc {
            return Err(format!(
                "written for the snapshot at {for_offset} with CRC {for_crc:#010x}, not the one \
                 at {offset} with CRC {snapshot_crc:#010x}"
            ));
        }
        let count = r.i32();
        let body = &b[BATCHES_HEADER_LEN..];
        if count < 0 || body.len() != count as usize * BATCHES_ENTRY_LEN {
            return Err(format!("claims {count} entries in {} bytes", body.len()));
        }
        let mut restored: Vec<(i64, Vec<BatchMetadata>)> = Vec::new();
        for chunk in body.chunks_exact(BATCHES_ENTRY_LEN) {
            let mut r = Reader(chunk);
            let producer_id = r.i64();
            let epoch = r.i16();
            let m = BatchMetadata {
                first_seq: r.i32(),
                last_seq: r.i32(),
                first_offset: r.i64(),
                last_offset: r.i64(),
                timestamp: r.i64(),
            };
            let last = self
                .producers
                .get(&producer_id)
                .filter(|e| e.epoch == epoch)
                .and_then(|e| e.batches.back());
            let Some(last) = last else {
                return Err(format!(
                    "producer {producer_id} epoch {epoch} has no batch in the snapshot"
                ));
            };
            if m.first_offset < 0
                || m.last_offset < m.first_offset
                || m.last_offset >= last.first_offset
            {
                return Err(format!(
                    "batch {}..={} of producer {producer_id} does not precede its last one",
                    m.first_offset, m.last_offset
                ));
            }
            match restored.last_mut() {
                Some((p, batches)) if *p == producer_id => {
                    let ordered = batches
                        .last()
                        .is_some_and(|prev| prev.last_offset < m.first_offset);
                    if !ordered || batches.len() + 1 >= MAX_CACHED_BATCHES {
                        return Err(format!(
                            "batches of producer {producer_id} out of order or too many"
                        ));
                    }
                    batches.push(m);
                }
                Some((p, _)) if *p > producer_id => {
                    return Err(format!("producer {producer_id} out of order"));
                }
                _ => restored.push((producer_id, vec![m])),
            }
        }
        for (producer_id, batches) in restored {
            if let Some(entry) = self.producers.get_mut(&producer_id) {
                for m in batches.into_iter().rev() {
                    entry.batches.push_front(m);
                }
            }
        }
        Ok(count as usize)
    }
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        a
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

/// `<dir>/<offset, 20 digits>.snapshot`
pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

/// `<dir>/<offset, 20 digits>.snapshot.batches`, the snapshot's companion
/// ([`BATCHES_SUFFIX`]).
pub(crate) fn batches_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{BATCHES_SUFFIX}"))
}

/// A snapshot as loaded: the state, and whether its companion file was used.
#[derive(Debug)]
pub(crate) struct LoadedSnapshot {
    pub(crate) state: ProducerStateManager,
    /// Why a companion file that exists was not used (the caller warns and deletes it);
    /// the state then has each producer's last batch only, as Kafka loads it.
    pub(crate) batches_ignored: Option<String>,
}

/// Read the whole file at `path` if it is at most `limit` bytes; `None` if it does not
/// exist.
fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if len > limit {
        return Err(format!("{len} bytes exceed {limit}"));
    }
    fs::read(path).map(Some).map_err(|e| e.to_string())
}

/// Read and parse the snapshot at `offset`, then its companion if there is one. Any
/// problem with the snapshot (including I/O) is an error, a reason to ignore the file,
/// since the log itself can always rebuild the state; a problem with the companion
/// only leaves the older batches out. Reads two files whose size is bounded by the
/// number of producers, never the log.
pub(crate) fn read_snapshot(dir: &Path, offset: i64) -> Result<LoadedSnapshot, String> {
    let path = snapshot_path(dir, offset);
    let bytes = read_bounded(&path, MAX_SNAPSHOT_BYTES)?
        .ok_or_else(|| format!("{} does not exist", path.display()))?;
    let mut state = ProducerStateManager::from_snapshot_bytes(&bytes)?;
    // from_snapshot_bytes checked the header is there.
    let snapshot_crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let batches_ignored = match read_bounded(&batches_path(dir, offset), MAX_BATCHES_BYTES) {
        Ok(None) => None,
        Ok(Some(b)) => state.restore_older_batches(&b, offset, snapshot_crc).err(),
        Err(e) => Some(e),
    };
    Ok(LoadedSnapshot {
        state,
        batches_ignored,
    })
}

/// Write `bytes` to `path` through a temporary name renamed over it, so that a crash
/// leaves the old file, no file, or the whole new one (whose CRC still decides on load).
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<(PathBuf, fs::File)> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp).map_err(io_context("create", &tmp))?;
    f.write_all(bytes).map_err(io_context("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_context("rename", &tmp))?;
    Ok((path.to_path_buf(), f))
}

/// Delete the companion of the snapshot at `offset`, if there is one.
pub(crate) fn delete_batches(dir: &Path, offset: i64) -> io::Result<()> {
    let path = batches_path(dir, offset);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_context("delete", &path)(e)),
    }
}

/// Write the snapshot at `offset` in Kafka's format and, when some producer has older
/// batches, its companion (else any stale companion at that offset is deleted). Each
/// goes to a temporary name renamed over the final one, the companion first: a crash
/// in between leaves a companion whose snapshot is missing (deleted on open) or still
/// the old one (its CRC no longer matches, so the companion is ignored). Neither is
/// fsynced here: the returned handles go into the log's next flush, and a snapshot
/// lost in a crash only makes the next open walk more of the log.
pub(crate) fn write_snapshot(
    dir: &Path,
    offset: i64,
    state: &ProducerStateManager,
) -> io::Result<Vec<(PathBuf, fs::File)>> {
    let bytes = state.to_snapshot_bytes();
    let snapshot_crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let mut written = Vec::with_capacity(2);
    match state.to_batches_bytes(offset, snapshot_crc) {
        Some(batches) => written.push(write_replacing(&batches_path(dir, offset), &batches)?),
        None => delete_batches(dir, offset)?,
    }
    written.push(write_replacing(&snapshot_path(dir, offset), &bytes)?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ottla_protocol::batch::build_batch;
    use ottla_protocol::compression::Compression;

    fn header(offset: i64, count: i32, pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        let b = build_batch(
            offset,
            Compression::None,
            count - 1,
            0,
            1000 + offset,
            pid,
            epoch,
            seq,
            count,
            &[],
        );
        BatchHeader::parse(&b).unwrap()
    }

    #[test]
    fn leader_checks_follow_kafka() {
        let mut s = ProducerStateManager::new();
        // unknown producer: any sequence
        assert_eq!(
            s.check_leader_append(&header(0, 3, 7, 2, 40)).unwrap(),
            ProducerCheck::Accept
        );
        s.update(&header(0, 3, 7, 2, 40));
        // next in sequence
        assert_eq!(
            s.check_leader_append(&header(3, 2, 7, 2, 43)).unwrap(),
            ProducerCheck::Accept
        );
        // duplicate of the cached batch
        match s.check_leader_append(&header(99, 3, 7, 2, 40)).unwrap() {
            ProducerCheck::Duplicate(m) => assert_eq!((m.first_offset, m.last_offset), (0, 2)),
            other => panic!("expected duplicate, got {other:?}"),
        }
        // gap
        let err = s.check_leader_append(&header(3, 1, 7, 2, 45)).unwrap_err();
        assert!(matches!(
            err,
            LogError::OutOfOrderSequence {
                expected: 43,
                received: 45,
                ..
            }
        ));
        assert_eq!(err.kafka_error_code(), 45);
        // older epoch
        let err = s.check_leader_append(&header(3, 1, 7, 1, 43)).unwrap_err();
        assert_eq!(err.kafka_error_code(), 47);
        // newer epoch must restart at 0
        assert!(s.check_leader_append(&header(3, 1, 7, 3, 43)).is_err());
        assert_eq!(
            s.check_leader_append(&header(3, 1, 7, 3, 0)).unwrap(),
            ProducerCheck::Accept
        );
    }

    #[test]
    fn keeps_only_the_last_five_batches() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            s.update(&header(i, 1, 1, 0, i as i32));
        }
        let e = s.get(1).unwrap();
        assert_eq!(e.batches().count(), MAX_CACHED_BATCHES);
        assert_eq!(e.batches().next().unwrap().first_seq, 2);
        // the evicted batch is no longer a duplicate but out of order
        assert!(s.check_leader_append(&header(0, 1, 1, 0, 0)).is_err());
        assert!(matches!(
            s.check_leader_append(&header(0, 1, 1, 0, 2)).unwrap(),
            ProducerCheck::Duplicate(_)
        ));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut s = ProducerStateManager::new();
        s.update(&header(0, 2, 1, 0, i32::MAX - 1));
        assert_eq!(
            s.check_leader_append(&header(2, 1, 1, 0, 0)).unwrap(),
            ProducerCheck::Accept
        );
    }

    #[test]
    fn snapshot_round_trips_last_batch_and_rejects_corruption() {
        let mut s = ProducerStateManager::new();
        s.update(&header(0, 3, 7, 2, 40));
        s.update(&header(3, 2, 7, 2, 43));
        s.update(&header(5, 1, 9, 0, i32::MAX));
        let bytes = s.to_snapshot_bytes();
        assert_eq!(bytes.len(), SNAPSHOT_HEADER_LEN + 2 * SNAPSHOT_ENTRY_LEN);
        let back = ProducerStateManager::from_snapshot_bytes(&bytes).unwrap();
        let e = back.get(7).unwrap();
        assert_eq!(e.epoch(), 2);
        let last: Vec<_> = e.batches().copied().collect();
        assert_eq!(
            last,
            vec![BatchMetadata {
                first_seq: 43,
                last_seq: 44,
                first_offset: 3,
                last_offset: 4,
                timestamp: 1003
            }]
        );
        assert_eq!(back.get(9).unwrap().last_sequence(), Some(i32::MAX));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(ProducerStateManager::from_snapshot_bytes(&bad).is_err());
        assert!(ProducerStateManager::from_snapshot_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(ProducerStateManager::from_snapshot_bytes(&[]).is_err());
    }

    /// Producer 7 with six batches (the last five cached), producer 9 with one, and
    /// producer 11 with a batch of an old epoch then two of a new one.
    fn six_batches() -> ProducerStateManager {
        let mut s = ProducerStateManager::new();
        for i in 0..6 {
            s.update(&header(i * 2, 2, 7, 3, i as i32 * 2));
        }
        s.update(&header(12, 1, 9, 0, 0));
        s.update(&header(13, 1, 11, 0, 0));
        s.update(&header(14, 1, 11, 1, 0));
        s.update(&header(15, 1, 11, 1, 1));
        s
    }

    fn crc_of(snapshot: &[u8]) -> u32 {
        u32::from_be_bytes([snapshot[2], snapshot[3], snapshot[4], snapshot[5]])
    }

    #[test]
    fn companion_restores_the_older_batches_kafka_format_drops() {
        let s = six_batches();
        let snapshot = s.to_snapshot_bytes();
        // The `.snapshot` stays Kafka's v1: one 46-byte entry per producer.
        assert_eq!(snapshot.len(), SNAPSHOT_HEADER_LEN + 3 * SNAPSHOT_ENTRY_LEN);
        let batches = s.to_batches_bytes(16, crc_of(&snapshot)).unwrap();
        // 4 older batches of producer 7, 1 of producer 11 (its old epoch's is gone).
        assert_eq!(batches.len(), BATCHES_HEADER_LEN + 5 * BATCHES_ENTRY_LEN);
        let mut back = ProducerStateManager::from_snapshot_bytes(&snapshot).unwrap();
        assert_eq!(
            back.get(7).unwrap().batches().count(),
            1,
            "Kafka's format alone"
        );
        assert_eq!(
            back.restore_older_batches(&batches, 16, crc_of(&snapshot)),
            Ok(5)
        );
        assert_eq!(back, s, "everything the producers had, in order");
        // Nothing to add: no companion.
        let mut one = ProducerStateManager::new();
        one.update(&header(0, 1, 1, 0, 0));
        assert!(one.to_batches_bytes(1, 0).is_none());
    }

    #[test]
    fn companion_is_all_or_nothing() {
        let s = six_batches();
        let snapshot = s.to_snapshot_bytes();
        let crc = crc_of(&snapshot);
        let good = s.to_batches_bytes(16, crc).unwrap();
        let loaded = ProducerStateManager::from_snapshot_bytes(&snapshot).unwrap();
        let try_restore = |bytes: &[u8], offset: i64, crc: u32| {
            let mut state = loaded.clone();
            let result = state.restore_older_batches(bytes, offset, crc);
            if result.is_err() {
                assert_eq!(state, loaded, "a rejected companion changes nothing");
            }
            result
        };
        // Written for another snapshot (offset or contents).
        assert!(try_restore(&good, 17, crc).is_err());
        assert!(try_restore(&good, 16, crc ^ 1).is_err());
        // Torn or damaged.
        assert!(try_restore(&good[..good.len() - 1], 16, crc).is_err());
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        assert!(try_restore(&flipped, 16, crc).is_err());
        assert!(try_restore(&[], 16, crc).is_err());
        // Internally consistent but not matching the producers loaded: re-sign it.
        let resign = |mut b: Vec<u8>| {
            let c = crc32c::crc32c(&b[BATCHES_CRC_START..]);
            b[2..6].copy_from_slice(&c.to_be_bytes());
            b
        };
        let entry = |i: usize| BATCHES_HEADER_LEN + i * BATCHES_ENTRY_LEN;
        // another epoch for producer 7's first entry
        let mut wrong_epoch = good.clone();
        wrong_epoch[entry(0) + 9] ^= 1;
        assert!(try_restore(&resign(wrong_epoch), 16, crc).is_err());
        // a batch reaching the producer's last batch (last_offset of entry 3 := 10)
        let mut overlapping = good.clone();
        overlapping[entry(3) + 26..entry(3) + 34].copy_from_slice(&10i64.to_be_bytes());
        assert!(try_restore(&resign(overlapping), 16, crc).is_err());
        // two entries swapped: out of order
        let mut swapped = good.clone();
        let first: Vec<u8> = swapped[entry(0)..entry(1)].to_vec();
        swapped.copy_within(entry(1)..entry(2), entry(0));
        swapped[entry(1)..entry(2)].copy_from_slice(&first);
        assert!(try_restore(&resign(swapped), 16, crc).is_err());
        // an unknown producer
        let mut unknown = good.clone();
        unknown[entry(4)..entry(4) + 8].copy_from_slice(&99i64.to_be_bytes());
        assert!(try_restore(&resign(unknown), 16, crc).is_err());
        // more than four older batches for one producer
        let mut oldest = good[entry(0)..entry(1)].to_vec();
        oldest[18..26].copy_from_slice(&0i64.to_be_bytes());
        oldest[26..34].copy_from_slice(&1i64.to_be_bytes());
        let mut too_many = good[..entry(0)].to_vec();
        too_many.extend_from_slice(&oldest);
        too_many.extend_from_slice(&good[entry(0)..]);
        too_many[18..22].copy_from_slice(&6i32.to_be_bytes());
        assert!(try_restore(&resign(too_many), 16, crc).is_err());
        assert_eq!(try_restore(&good, 16, crc), Ok(5));
    }
}
