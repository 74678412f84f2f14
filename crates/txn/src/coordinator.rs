//! The transaction coordinator's state machine for one `__transaction_state` partition
//! (Kafka's `TransactionCoordinator` and `TransactionStateManager`, KIP-98).
//!
//! Deterministic: every operation reads the committed state of a transactional id and
//! returns the record that moves it on, the response to send once that record is
//! committed, and possibly a [`MarkerJob`]: after PrepareCommit/PrepareAbort is
//! committed, the host writes COMMIT/ABORT markers to every partition of the
//! transaction (WriteTxnMarkers), then calls [`TransactionCoordinator::complete`],
//! which writes CompleteCommit/CompleteAbort. The state changes only when a record is
//! replayed ([`TransactionCoordinator::replay`]); between an operation and the commit
//! of its record the id is *pending*, and other operations on it get
//! CONCURRENT_TRANSACTIONS (Kafka's `pendingState`), as they do while markers are being
//! written.
//!
//! The state diagram is Kafka's:
//!
//! ```text
//! Empty ──AddPartitions──▶ Ongoing ──EndTxn──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲                        │  └──EndTxn / timeout / InitProducerId──▶ PrepareAbort ──markers──▶ CompleteAbort
//!   └──────InitProducerId (epoch bump)──── Complete* / Empty ◀─────────────────────────────┘
//! ```

use std::collections::{BTreeSet, HashMap};

use crate::records::{TransactionLogValue, TransactionState};

/// Kafka's `transaction.max.timeout.ms` default (15 minutes).
pub const DEFAULT_MAX_TIMEOUT_MS: i32 = 900_000;
/// Kafka's `transactional.id.expiration.ms` default (7 days).
pub const DEFAULT_ID_EXPIRATION_MS: i64 = 604_800_000;
/// Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms` default.
pub const DEFAULT_ABORT_TIMED_OUT_INTERVAL_MS: i64 = 10_000;
/// Kafka's `transaction.remove.expired.transaction.cleanup.interval.ms` default.
pub const DEFAULT_REMOVE_EXPIRED_INTERVAL_MS: i64 = 3_600_000;
/// The internal topic's name.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Epochs at or above this are exhausted: the next bump takes a new producer id
/// (Kafka's `isEpochExhausted`: `producerEpoch >= Short.MaxValue - 1`).
const LAST_USABLE_EPOCH: i16 = i16::MAX - 1;
/// The `transaction.version` feature level of KIP-890's transactions v2: clients at
/// this level (EndTxn v5+, Produce v12+, TxnOffsetCommit v5+) never send
/// AddPartitionsToTxn or AddOffsetsToTxn (the partition leaders and the group
/// coordinator add partitions for them), and every commit or abort bumps the epoch.
pub const TRANSACTION_VERSION_2: i16 = 2;

/// The transaction coordinator's settings (Kafka's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` accepted.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an id idle this long (no open transaction)
    /// is forgotten.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            max_timeout_ms: DEFAULT_MAX_TIMEOUT_MS,
            id_expiration_ms: DEFAULT_ID_EXPIRATION_MS,
            abort_timed_out_interval_ms: DEFAULT_ABORT_TIMED_OUT_INTERVAL_MS,
            remove_expired_interval_ms: DEFAULT_REMOVE_EXPIRED_INTERVAL_MS,
        }
    }
}

/// The errors transactional APIs answer with, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("CONCURRENT_TRANSACTIONS")]
    ConcurrentTransactions,
    #[error("INVALID_PRODUCER_EPOCH")]
    InvalidProducerEpoch,
    #[error("PRODUCER_FENCED")]
    ProducerFenced,
    #[error("INVALID_TXN_STATE")]
    InvalidTxnState,
    #[error("INVALID_PRODUCER_ID_MAPPING")]
    InvalidProducerIdMapping,
    #[error("INVALID_TRANSACTION_TIMEOUT")]
    InvalidTransactionTimeout,
    #[error("TRANSACTIONAL_ID_NOT_FOUND")]
    TransactionalIdNotFound,
    /// A verify-only AddPartitionsToTxn's answer for a partition outside the
    /// producer's transaction (KIP-890): the producer must abort its transaction.
    #[error("TRANSACTION_ABORTABLE")]
    TransactionAbortable,
}

impl TxnError {
    /// Kafka's error code.
    pub fn code(self) -> i16 {
        match self {
            TxnError::ConcurrentTransactions => 51,
            TxnError::InvalidProducerEpoch => 47,
            TxnError::ProducerFenced => 90,
            TxnError::InvalidTxnState => 48,
            TxnError::InvalidProducerIdMapping => 49,
            TxnError::InvalidTransactionTimeout => 50,
            TxnError::TransactionalIdNotFound => 105,
            TxnError::TransactionAbortable => 120,
        }
    }
}

/// A `__transaction_state` record: the id's new state, or `None` (a tombstone) when
/// the id expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<TransactionLogValue>,
}

/// What the coordinator knows of one transactional id (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The id before the last rotation (epoch exhaustion), -1 if none.
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId can be recognised
    /// (KIP-360); not stored, -1 after a load.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TransactionState,
    /// Sorted (topic, partition) pairs of the open transaction.
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The producer id the transaction moves to when it completes, -1 if none: a
    /// transactions-v2 commit or abort that exhausts the epoch rotates the id.
    pub next_producer_id: i64,
    /// The `transaction.version` of the client's last transaction (0, or
    /// [`TRANSACTION_VERSION_2`]).
    pub client_transaction_version: i16,
    /// A transition of this id was written and is not committed yet.
    pub pending: bool,
}

impl TransactionMetadata {
    fn from_value(transactional_id: &str, v: &TransactionLogValue) -> TransactionMetadata {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: v.transaction_timeout_ms,
            state: v.state,
            partitions: v
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect(),
            start_ms: v.start_timestamp_ms,
            last_update_ms: v.last_update_timestamp_ms,
            next_producer_id: v.next_producer_id,
            client_transaction_version: v.client_transaction_version,
            pending: false,
        }
    }

    /// The record for this metadata moved to `state` with `partitions` (Kafka's
    /// `TxnTransitMetadata`), stamped `now`. The next producer id and the client's
    /// transaction version are this metadata's.
    fn transition(
        &self,
        state: TransactionState,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        start_ms: i64,
        now: i64,
    ) -> TxnRecord {
        let mut grouped: Vec<(String, Vec<i32>)> = Vec::new();
        for (topic, p) in partitions {
            match grouped.last_mut() {
                Some((t, ps)) if t == topic => ps.push(*p),
                _ => grouped.push((topic.clone(), vec![*p])),
            }
        }
        TxnRecord {
            transactional_id: self.transactional_id.clone(),
            value: Some(TransactionLogValue {
                producer_id,
                previous_producer_id: if producer_id != self.producer_id {
                    self.producer_id
                } else {
                    self.previous_producer_id
                },
                next_producer_id: self.next_producer_id,
                producer_epoch,
                transaction_timeout_ms: self.timeout_ms,
                state,
                partitions: grouped,
                last_update_timestamp_ms: now,
                start_timestamp_ms: start_ms,
                client_transaction_version: self.client_transaction_version,
            }),
        }
    }

    /// Whether the id is in a state that ends a transaction (no partitions open).
    fn is_idle(&self) -> bool {
        matches!(
            self.state,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        )
    }
}

/// Markers to write once a PrepareCommit/PrepareAbort record is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// An operation's outcome: the record to write (if any), the response once it is
/// committed, and markers to start after that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition<T> {
    pub records: Vec<TxnRecord>,
    pub response: T,
    pub markers: Vec<MarkerJob>,
}

impl<T> Transition<T> {
    fn answer(response: T) -> Transition<T> {
        Transition {
            records: Vec::new(),
            response,
            markers: Vec::new(),
        }
    }
}

/// InitProducerId with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerId {
    pub transactional_id: String,
    pub timeout_ms: i32,
    /// The producer's current id and epoch (KIP-360, v3+), -1 when it has none.
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// A producer's (id, epoch), or why it got none.
pub type ProducerIdAndEpoch = Result<(i64, i16), TxnError>;

/// EndTxn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The client's transaction version: [`TRANSACTION_VERSION_2`] for EndTxn v5+,
    /// 0 before.
    pub transaction_version: i16,
    /// An unused producer id for a transactions-v2 bump that exhausts the epoch.
    /// Without one such a request is answered [`EndTxnAnswer::NeedsProducerId`]
    /// (taking a producer id can be a controller write, so the host takes one only
    /// when it is needed: once every 32,767 transactions of an id).
    pub fresh_producer_id: Option<i64>,
}

/// What EndTxn answers when it is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndTxnAnswer {
    /// The transaction ends (or ended: a retry). The producer id and epoch its
    /// producer uses next: under transactions v2 the bumped epoch (or a new producer id
    /// with epoch 0 when the epoch ran out), EndTxn v5's response fields.
    Ended {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Ask again with [`EndTxn::fresh_producer_id`] set; nothing was written.
    NeedsProducerId,
}

/// One `__transaction_state` partition's transactions.
#[derive(Debug)]
pub struct TransactionCoordinator {
    config: TxnConfig,
    txns: HashMap<String, TransactionMetadata>,
}

impl TransactionCoordinator {
    pub fn new(config: TxnConfig) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            txns: HashMap::new(),
        }
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.txns.get(transactional_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TransactionMetadata> {
        self.txns.values()
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Apply a committed (or loaded) record.
    pub fn replay(&mut self, record: &TxnRecord) {
        match &record.value {
            None => {
                self.txns.remove(&record.transactional_id);
            }
            Some(value) => {
                let mut next = TransactionMetadata::from_value(&record.transactional_id, value);
                if let Some(old) = self.txns.get(&record.transactional_id) {
                    if old.producer_id == next.producer_id
                        && old.producer_epoch < next.producer_epoch
                    {
                        next.last_producer_epoch = old.producer_epoch;
                    } else if old.producer_id == next.producer_id {
                        next.last_producer_epoch = old.last_producer_epoch;
                    }
                }
                self.txns.insert(record.transactional_id.clone(), next);
            }
        }
    }

    /// A write of `records` failed: those ids are no longer pending.
    pub fn on_write_failed(&mut self, records: &[TxnRecord]) {
        for r in records {
            // An id created by the failed write never existed.
            if self
                .txns
                .get(&r.transactional_id)
                .is_some_and(|m| m.pending && m.producer_epoch < 0)
            {
                self.txns.remove(&r.transactional_id);
            } else if let Some(m) = self.txns.get_mut(&r.transactional_id) {
                m.pending = false;
            }
        }
    }

    fn mark_pending(&mut self, transactional_id: &str) {
        if let Some(m) = self.txns.get_mut(transactional_id) {
            m.pending = true;
        }
    }

    /// The markers `transactional_id` needs now: some if it is between the two phases
    /// (PrepareCommit/PrepareAbort committed). The host starts them when such a record
    /// is applied, whether or not anyone still waits for it.
    pub fn marker_job(&self, transactional_id: &str) -> Option<MarkerJob> {
        let m = self.txns.get(transactional_id)?;
        match m.state {
            TransactionState::PrepareCommit => Some(marker_job(m, true)),
            TransactionState::PrepareAbort => Some(marker_job(m, false)),
            _ => None,
        }
    }

    /// Whether `job` still describes the id's transaction: its markers may be written
    /// only while that is so (a stale job must never end the producer's next
    /// transaction in a partition).
    pub fn is_current(&self, job: &MarkerJob) -> bool {
        let expected = if job.commit {
            TransactionState::PrepareCommit
        } else {
            TransactionState::PrepareAbort
        };
        self.txns.get(&job.transactional_id).is_some_and(|m| {
            m.state == expected
                && m.producer_id == job.producer_id
                && m.producer_epoch == job.producer_epoch
        })
    }

    /// The markers every transaction found mid-completion needs (after a load, the
    /// previous coordinator may have died between PrepareCommit and the markers).
    pub fn unfinished_marker_jobs(&self) -> Vec<MarkerJob> {
        let mut jobs: Vec<MarkerJob> = self
            .txns
            .values()
            .filter_map(|m| {
                let commit = match m.state {
                    TransactionState::PrepareCommit => true,
                    TransactionState::PrepareAbort => false,
                    _ => return None,
                };
                Some(marker_job(m, commit))
            })
            .collect();
        jobs.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        jobs
    }

    /// InitProducerId (`handleInitProducerId`). `fresh_producer_id` is an unused
    /// producer id, taken if the id is new or its epochs are exhausted.
    pub fn init_producer_id(
        &mut self,
        now: i64,
        req: &InitProducerId,
        fresh_producer_id: i64,
    ) -> Transition<ProducerIdAndEpoch> {
        if req.timeout_ms <= 0 || req.timeout_ms > self.config.max_timeout_ms {
            return Transition::answer(Err(TxnError::InvalidTransactionTimeout));
        }
        let Some(m) = self.txns.get(&req.transactional_id) else {
            let fresh = TransactionMetadata {
                transactional_id: req.transactional_id.clone(),
                producer_id: fresh_producer_id,
                previous_producer_id: -1,
                producer_epoch: -1,
                last_producer_epoch: -1,
                timeout_ms: req.timeout_ms,
                state: TransactionState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now,
                next_producer_id: -1,
                client_transaction_version: 0,
                pending: true,
            };
            let record = fresh.transition(
                TransactionState::Empty,
                fresh_producer_id,
                0,
                &BTreeSet::new(),
                -1,
                now,
            );
            self.txns.insert(req.transactional_id.clone(), fresh);
            return Transition {
                records: vec![record],
                response: Ok((fresh_producer_id, 0)),
                markers: Vec::new(),
            };
        };
        if m.pending {
            return Transition::answer(Err(TxnError::ConcurrentTransactions));
        }
        if req.producer_id >= 0 {
            // KIP-360: the producer says which id and epoch it has. A retry of the
            // bump that already happened gets the current ones again.
            let retried = (req.producer_id == m.producer_id
                && req.producer_epoch == m.last_producer_epoch)
                || (req.producer_id == m.previous_producer_id && m.producer_epoch == 0);
            if retried && m.is_idle() {
                return Transition::answer(Ok((m.producer_id, m.producer_epoch)));
            }
            if req.producer_id != m.producer_id || req.producer_epoch != m.producer_epoch {
                return Transition::answer(Err(TxnError::ProducerFenced));
            }
        }
        match m.state {
            TransactionState::PrepareCommit
            | TransactionState::PrepareAbort
            | TransactionState::PrepareEpochFence
            | TransactionState::Dead => Transition::answer(Err(TxnError::ConcurrentTransactions)),
            TransactionState::Ongoing => {
                // Fence the producer that left the transaction open and abort it; the
                // new producer retries (CONCURRENT_TRANSACTIONS) until it is complete.
                let (record, job) = fence_and_abort(m, now);
                self.mark_pending(&req.transactional_id);
                Transition {
                    records: vec![record],
                    response: Err(TxnError::ConcurrentTransactions),
                    markers: vec![job],
                }
            }
            TransactionState::Empty
            | TransactionState::CompleteCommit
            | TransactionState::CompleteAbort => {
                let (producer_id, epoch) = if m.producer_epoch >= LAST_USABLE_EPOCH {
                    (fresh_producer_id, 0)
                } else {
                    (m.producer_id, m.producer_epoch + 1)
                };
                let mut m = m.clone();
                m.timeout_ms = req.timeout_ms;
                let record = m.transition(
                    TransactionState::Empty,
                    producer_id,
                    epoch,
                    &BTreeSet::new(),
                    -1,
                    now,
                );
                m.pending = true;
                self.txns.insert(req.transactional_id.clone(), m);
                Transition {
                    records: vec![record],
                    response: Ok((producer_id, epoch)),
                    markers: Vec::new(),
                }
            }
        }
    }

    /// The checks every request of an open producer passes first.
    fn producer_checks(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&TransactionMetadata, TxnError> {
        let m = self
            .txns
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if m.pending {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(m)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: add `partitions` to the producer's
    /// transaction, opening it if none is open. `transaction_version` is the client's:
    /// [`TRANSACTION_VERSION_2`] when a partition leader or the group coordinator adds
    /// the partition for a transactions-v2 producer, 0 for the producer's own request.
    pub fn add_partitions(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        transaction_version: i16,
    ) -> Transition<Result<(), TxnError>> {
        let m = match self.producer_checks(transactional_id, producer_id, producer_epoch) {
            Ok(m) => m,
            Err(e) => return Transition::answer(Err(e)),
        };
        match m.state {
            TransactionState::PrepareCommit
            | TransactionState::PrepareAbort
            | TransactionState::PrepareEpochFence => {
                return Transition::answer(Err(TxnError::ConcurrentTransactions))
            }
            TransactionState::Dead => return Transition::answer(Err(TxnError::InvalidTxnState)),
            _ => {}
        }
        let ongoing = m.state == TransactionState::Ongoing;
        if ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Transition::answer(Ok(()));
        }
        let mut all = if ongoing {
            m.partitions.clone()
        } else {
            BTreeSet::new()
        };
        all.extend(partitions.iter().cloned());
        let start = if ongoing { m.start_ms } else { now };
        let mut m = m.clone();
        m.client_transaction_version = transaction_version;
        let record = m.transition(
            TransactionState::Ongoing,
            m.producer_id,
            m.producer_epoch,
            &all,
            start,
            now,
        );
        self.mark_pending(transactional_id);
        Transition {
            records: vec![record],
            response: Ok(()),
            markers: Vec::new(),
        }
    }

    /// AddPartitionsToTxn's verify-only form (v4+, KIP-890 part 1): whether each
    /// partition is part of the producer's transaction, as Kafka's
    /// `TransactionCoordinator.handleVerifyPartitionsInTransaction` answers it:
    ///
    /// ```scala
    /// if (txnMetadata.producerId != producerId) {
    ///   Left(Errors.INVALID_PRODUCER_ID_MAPPING)
    /// } else if (txnMetadata.producerEpoch != producerEpoch) {
    ///   Left(Errors.PRODUCER_FENCED)
    /// } else if (txnMetadata.state == PrepareCommit || txnMetadata.state == PrepareAbort) {
    ///   Left(Errors.CONCURRENT_TRANSACTIONS)
    /// } else {
    ///   Right(partitions.map { part =>
    ///     if (txnMetadata.topicPartitions.contains(part))
    ///       (part, Errors.NONE)
    ///     else
    ///       (part, Errors.TRANSACTION_ABORTABLE)
    ///   }.toMap)
    /// }
    /// ```
    ///
    /// The id's pending write is not looked at ("Pending state is not checked since
    /// there is a final validation on the append to the log"); only an open
    /// transaction has partitions (Empty and Complete* have none), so a partition is
    /// in it only while Ongoing. The broker that asked turns TRANSACTION_ABORTABLE
    /// into INVALID_TXN_STATE for clients too old to know it (Produce v0-10,
    /// TxnOffsetCommit v0-3).
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), TxnError>>, TxnError> {
        let m = self
            .txns
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if matches!(
            m.state,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        ) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|p| {
                if m.partitions.contains(p) {
                    Ok(())
                } else {
                    Err(TxnError::TransactionAbortable)
                }
            })
            .collect())
    }

    /// EndTxn: commit or abort the producer's transaction (the first phase; the
    /// markers and the Complete record follow).
    pub fn end_transaction(
        &mut self,
        now: i64,
        req: &EndTxn,
    ) -> Transition<Result<EndTxnAnswer, TxnError>> {
        if req.transaction_version >= TRANSACTION_VERSION_2 {
            return self.end_transaction_v2(now, req);
        }
        let m = match self.producer_checks(
            &req.transactional_id,
            req.producer_id,
            req.producer_epoch,
        ) {
            Ok(m) => m,
            Err(e) => return Transition::answer(Err(e)),
        };
        let ended = Ok(EndTxnAnswer::Ended {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
        });
        match (m.state, req.commit) {
            (TransactionState::Ongoing, commit) => {
                let (producer_id, producer_epoch) = (m.producer_id, m.producer_epoch);
                let partitions = m.partitions.clone();
                let (start_ms, m) = (m.start_ms, m.clone());
                self.prepare(
                    now,
                    m,
                    commit,
                    producer_id,
                    producer_epoch,
                    &partitions,
                    start_ms,
                    ended,
                )
            }
            // A retry of an EndTxn that went through.
            (TransactionState::CompleteCommit, true) | (TransactionState::CompleteAbort, false) => {
                Transition::answer(ended)
            }
            (TransactionState::PrepareCommit, true)
            | (TransactionState::PrepareAbort, false)
            | (TransactionState::PrepareEpochFence, _) => {
                Transition::answer(Err(TxnError::ConcurrentTransactions))
            }
            _ => Transition::answer(Err(TxnError::InvalidTxnState)),
        }
    }

    /// EndTxn v5+ (KIP-890 transactions v2, Kafka's `endTransaction` at
    /// `TransactionVersion.TV_2`): every commit and abort bumps the producer's epoch,
    /// so the markers (written with the new epoch) fence whatever the old epoch might
    /// still send; a retry carrying the epoch before the bump is recognised and answered
    /// as the first attempt was; an abort with no transaction open is allowed (it only
    /// bumps the epoch).
    fn end_transaction_v2(
        &mut self,
        now: i64,
        req: &EndTxn,
    ) -> Transition<Result<EndTxnAnswer, TxnError>> {
        use TransactionState::*;
        let Some(m) = self.txns.get(&req.transactional_id) else {
            return Transition::answer(Err(TxnError::InvalidProducerIdMapping));
        };
        // The previous attempt completed and rotated the exhausted id.
        let retry_on_overflow = m.previous_producer_id == req.producer_id
            && req.producer_epoch == LAST_USABLE_EPOCH
            && m.producer_epoch == 0;
        // The previous attempt bumped the epoch.
        let retry_on_epoch_bump = i32::from(m.producer_epoch) == i32::from(req.producer_epoch) + 1;
        if m.producer_id != req.producer_id && !retry_on_overflow {
            return Transition::answer(Err(TxnError::InvalidProducerIdMapping));
        }
        let valid_epoch = match m.state {
            Ongoing | Empty | Dead | PrepareEpochFence => req.producer_epoch == m.producer_epoch,
            PrepareCommit | PrepareAbort => retry_on_epoch_bump,
            CompleteCommit | CompleteAbort => {
                retry_on_epoch_bump || retry_on_overflow || req.producer_epoch == m.producer_epoch
            }
        };
        if !valid_epoch {
            return Transition::answer(Err(TxnError::ProducerFenced));
        }
        if m.pending {
            return Transition::answer(Err(TxnError::ConcurrentTransactions));
        }
        let is_retry = retry_on_epoch_bump || retry_on_overflow;
        let current = Ok(EndTxnAnswer::Ended {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
        });
        let open = match (m.state, req.commit) {
            (Ongoing, _) => true,
            (PrepareCommit, true) | (PrepareAbort, false) | (PrepareEpochFence, _) => {
                return Transition::answer(Err(TxnError::ConcurrentTransactions))
            }
            (CompleteCommit, true) | (CompleteAbort, false) if is_retry => {
                return Transition::answer(current)
            }
            // An abort with nothing open: only the epoch bump (and no markers).
            (Empty | CompleteCommit | CompleteAbort, false) if !is_retry => false,
            _ => return Transition::answer(Err(TxnError::InvalidTxnState)),
        };
        let next_producer_id = if m.producer_epoch >= LAST_USABLE_EPOCH {
            match req.fresh_producer_id {
                Some(id) => id,
                None => return Transition::answer(Ok(EndTxnAnswer::NeedsProducerId)),
            }
        } else {
            -1
        };
        let epoch = m.producer_epoch.saturating_add(1);
        let answer = if next_producer_id >= 0 {
            Ok(EndTxnAnswer::Ended {
                producer_id: next_producer_id,
                producer_epoch: 0,
            })
        } else {
            Ok(EndTxnAnswer::Ended {
                producer_id: m.producer_id,
                producer_epoch: epoch,
            })
        };
        let (partitions, start_ms) = if open {
            (m.partitions.clone(), m.start_ms)
        } else {
            (BTreeSet::new(), now)
        };
        let mut next = m.clone();
        next.next_producer_id = next_producer_id;
        next.client_transaction_version = TRANSACTION_VERSION_2;
        let producer_id = m.producer_id;
        self.prepare(
            now,
            next,
            req.commit,
            producer_id,
            epoch,
            &partitions,
            start_ms,
            answer,
        )
    }

    /// Write PrepareCommit/PrepareAbort for `m` with this producer id, epoch and
    /// partitions; its markers carry them.
    #[allow(clippy::too_many_arguments)]
    fn prepare<T>(
        &mut self,
        now: i64,
        m: TransactionMetadata,
        commit: bool,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        start_ms: i64,
        response: T,
    ) -> Transition<T> {
        let state = if commit {
            TransactionState::PrepareCommit
        } else {
            TransactionState::PrepareAbort
        };
        let record = m.transition(
            state,
            producer_id,
            producer_epoch,
            partitions,
            start_ms,
            now,
        );
        let job = MarkerJob {
            transactional_id: m.transactional_id.clone(),
            producer_id,
            producer_epoch,
            commit,
            partitions: partitions.iter().cloned().collect(),
        };
        let id = m.transactional_id.clone();
        self.txns.insert(id.clone(), m);
        self.mark_pending(&id);
        Transition {
            records: vec![record],
            response,
            markers: vec![job],
        }
    }

    /// The markers of `job` are written: record the transaction as complete. Stale
    /// jobs (the id moved on meanwhile) write nothing.
    pub fn complete(&mut self, now: i64, job: &MarkerJob) -> Transition<()> {
        let Some(m) = self.txns.get(&job.transactional_id) else {
            return Transition::answer(());
        };
        let expected = if job.commit {
            TransactionState::PrepareCommit
        } else {
            TransactionState::PrepareAbort
        };
        if m.pending
            || m.state != expected
            || m.producer_id != job.producer_id
            || m.producer_epoch != job.producer_epoch
        {
            return Transition::answer(());
        }
        let state = if job.commit {
            TransactionState::CompleteCommit
        } else {
            TransactionState::CompleteAbort
        };
        // A transactions-v2 bump that exhausted the epoch moves to the next id now
        // (Kafka's `prepareComplete`).
        let mut m = m.clone();
        let (producer_id, producer_epoch) = if m.next_producer_id >= 0 {
            (std::mem::replace(&mut m.next_producer_id, -1), 0)
        } else {
            (m.producer_id, m.producer_epoch)
        };
        let record = m.transition(
            state,
            producer_id,
            producer_epoch,
            &BTreeSet::new(),
            m.start_ms,
            now,
        );
        self.mark_pending(&job.transactional_id);
        Transition {
            records: vec![record],
            response: (),
            markers: Vec::new(),
        }
    }

    /// Timers: abort transactions open longer than their timeout (fencing their
    /// producer with an epoch bump, as Kafka does), and forget ids idle longer than
    /// `transactional.id.expiration.ms`.
    pub fn on_timer(&mut self, now: i64) -> Transition<()> {
        let mut records = Vec::new();
        let mut markers = Vec::new();
        let mut touched = Vec::new();
        for m in self.txns.values().filter(|m| !m.pending) {
            if m.state == TransactionState::Ongoing
                && now >= m.start_ms.saturating_add(i64::from(m.timeout_ms))
            {
                tracing::info!(
                    "Aborting transaction of transactional id {} (producer id {}, epoch {}): it timed out after {} ms",
                    m.transactional_id,
                    m.producer_id,
                    m.producer_epoch,
                    m.timeout_ms
                );
                let (record, job) = fence_and_abort(m, now);
                records.push(record);
                markers.push(job);
                touched.push(m.transactional_id.clone());
            } else if m.is_idle()
                && now
                    >= m.last_update_ms
                        .saturating_add(self.config.id_expiration_ms)
            {
                tracing::info!(
                    "Removing expired transactional id {} (producer id {})",
                    m.transactional_id,
                    m.producer_id
                );
                records.push(TxnRecord {
                    transactional_id: m.transactional_id.clone(),
                    value: None,
                });
                touched.push(m.transactional_id.clone());
            }
        }
        for id in touched {
            self.mark_pending(&id);
        }
        Transition {
            records,
            response: (),
            markers,
        }
    }

    /// When [`TransactionCoordinator::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.txns
            .values()
            .filter(|m| !m.pending)
            .filter_map(|m| match m.state {
                TransactionState::Ongoing => {
                    Some(m.start_ms.saturating_add(i64::from(m.timeout_ms)))
                }
                _ if m.is_idle() => Some(
                    m.last_update_ms
                        .saturating_add(self.config.id_expiration_ms),
                ),
                _ => None,
            })
            .min()
    }
}

/// Abort `m`'s open transaction with its producer's epoch bumped (Kafka's
/// `prepareFenceProducerEpoch` then PrepareAbort), so the producer that left it open is
/// fenced: the PrepareAbort record and its markers.
fn fence_and_abort(m: &TransactionMetadata, now: i64) -> (TxnRecord, MarkerJob) {
    let epoch = if m.producer_epoch < LAST_USABLE_EPOCH {
        m.producer_epoch + 1
    } else {
        m.producer_epoch
    };
    let record = m.transition(
        TransactionState::PrepareAbort,
        m.producer_id,
        epoch,
        &m.partitions,
        m.start_ms,
        now,
    );
    let mut job = marker_job(m, false);
    job.producer_epoch = epoch;
    (record, job)
}

fn marker_job(m: &TransactionMetadata, commit: bool) -> MarkerJob {
    MarkerJob {
        transactional_id: m.transactional_id.clone(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit,
        partitions: m.partitions.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "payments-1";

    /// EndTxn of a transactions-v1 client (EndTxn v4 and older).
    fn end_v1(id: &str, producer_id: i64, producer_epoch: i16, commit: bool) -> EndTxn {
        EndTxn {
            transactional_id: id.into(),
            producer_id,
            producer_epoch,
            commit,
            transaction_version: 0,
            fresh_producer_id: None,
        }
    }

    /// EndTxn v5+ (transactions v2).
    fn end_v2(producer_id: i64, producer_epoch: i16, commit: bool) -> EndTxn {
        EndTxn {
            transaction_version: TRANSACTION_VERSION_2,
            ..end_v1(ID, producer_id, producer_epoch, commit)
        }
    }

    fn ended(producer_id: i64, producer_epoch: i16) -> EndTxnAnswer {
        EndTxnAnswer::Ended {
            producer_id,
            producer_epoch,
        }
    }

    fn init(timeout_ms: i32) -> InitProducerId {
        InitProducerId {
            transactional_id: ID.into(),
            timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
        }
    }

    /// Run an operation and commit its records.
    macro_rules! step {
        ($c:ident, $op:expr) => {{
            let t = $op;
            commit(&mut $c, t)
        }};
    }

    /// Commit a transition's records, as the runtime does once the log has them.
    fn commit<T>(c: &mut TransactionCoordinator, t: Transition<T>) -> (T, Vec<MarkerJob>) {
        for r in &t.records {
            c.replay(r);
        }
        (t.response, t.markers)
    }

    fn state(c: &TransactionCoordinator) -> TransactionState {
        c.get(ID).unwrap().state
    }

    fn tp(topic: &str, p: i32) -> (String, i32) {
        (topic.to_string(), p)
    }

    #[test]
    fn a_commit_goes_through_prepare_markers_and_complete() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        let (ids, _) = step!(c, c_init(&mut c, 1000, 60_000, 7));
        assert_eq!(ids, Ok((7, 0)));
        assert_eq!(state(&c), TransactionState::Empty);
        let t = c.add_partitions(1001, ID, 7, 0, &[tp("a", 0), tp("a", 1)], 0);
        assert_eq!(t.records.len(), 1);
        // Until the record is committed the id is pending: a second request waits.
        assert_eq!(
            c.add_partitions(1001, ID, 7, 0, &[tp("b", 0)], 0).response,
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(step!(c, t).0, Ok(()));
        assert_eq!(state(&c), TransactionState::Ongoing);
        assert_eq!(c.get(ID).unwrap().start_ms, 1001);
        // Adding what is already there writes nothing.
        assert!(c
            .add_partitions(1002, ID, 7, 0, &[tp("a", 1)], 0)
            .records
            .is_empty());
        assert!(step!(c, c.add_partitions(1003, ID, 7, 0, &[tp("b", 0)], 0))
            .0
            .is_ok());
        let (r, markers) = step!(c, c.end_transaction(1004, &end_v1(ID, 7, 0, true)));
        assert_eq!(r, Ok(ended(7, 0)));
        assert_eq!(state(&c), TransactionState::PrepareCommit);
        assert_eq!(
            markers,
            vec![MarkerJob {
                transactional_id: ID.into(),
                producer_id: 7,
                producer_epoch: 0,
                commit: true,
                partitions: vec![tp("a", 0), tp("a", 1), tp("b", 0)],
            }]
        );
        // While the markers are being written: a retried commit waits, an abort is wrong.
        assert_eq!(
            c.end_transaction(1005, &end_v1(ID, 7, 0, true)).response,
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            c.end_transaction(1005, &end_v1(ID, 7, 0, false)).response,
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.add_partitions(1005, ID, 7, 0, &[tp("c", 0)], 0).response,
            Err(TxnError::ConcurrentTransactions)
        );
        step!(c, c.complete(1006, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteCommit);
        assert!(c.get(ID).unwrap().partitions.is_empty());
        // A completed job is not completed twice; a retried EndTxn succeeds.
        assert!(c.complete(1007, &markers[0]).records.is_empty());
        assert_eq!(
            c.end_transaction(1007, &end_v1(ID, 7, 0, true)).response,
            Ok(ended(7, 0))
        );
        // The next transaction starts from CompleteCommit.
        assert!(step!(c, c.add_partitions(1008, ID, 7, 0, &[tp("c", 0)], 0))
            .0
            .is_ok());
        assert_eq!(c.get(ID).unwrap().partitions.len(), 1);
    }

    fn c_init(
        c: &mut TransactionCoordinator,
        now: i64,
        timeout: i32,
        fresh: i64,
    ) -> Transition<ProducerIdAndEpoch> {
        c.init_producer_id(now, &init(timeout), fresh)
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_open_transaction() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        assert!(step!(c, c.add_partitions(1, ID, 7, 0, &[tp("a", 0)], 0))
            .0
            .is_ok());
        // A second producer with the same id: the open transaction is aborted with a
        // bumped epoch, and the new producer is told to retry.
        let (r, markers) = step!(c, c_init(&mut c, 2, 60_000, 8));
        assert_eq!(r, Err(TxnError::ConcurrentTransactions));
        assert_eq!(state(&c), TransactionState::PrepareAbort);
        assert_eq!(markers.len(), 1);
        assert!(!markers[0].commit);
        assert_eq!(markers[0].producer_epoch, 1);
        // The zombie can do nothing any more.
        assert_eq!(
            c.end_transaction(3, &end_v1(ID, 7, 0, true)).response,
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            c_init(&mut c, 3, 60_000, 8).response,
            Err(TxnError::ConcurrentTransactions)
        );
        step!(c, c.complete(4, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteAbort);
        let (r, _) = step!(c, c_init(&mut c, 5, 60_000, 8));
        assert_eq!(
            r,
            Ok((7, 2)),
            "same producer id, epoch bumped past the fence"
        );
        assert_eq!(
            c.add_partitions(6, ID, 7, 1, &[tp("a", 0)], 0).response,
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            c.add_partitions(6, ID, 99, 2, &[tp("a", 0)], 0).response,
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            c.add_partitions(6, "unknown", 7, 2, &[tp("a", 0)], 0)
                .response,
            Err(TxnError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn timed_out_transactions_are_aborted_and_idle_ids_expire() {
        let config = TxnConfig {
            id_expiration_ms: 10_000,
            ..TxnConfig::default()
        };
        let mut c = TransactionCoordinator::new(config);
        assert!(step!(c, c_init(&mut c, 0, 1_000, 7)).0.is_ok());
        assert!(step!(c, c.add_partitions(100, ID, 7, 0, &[tp("a", 0)], 0))
            .0
            .is_ok());
        assert_eq!(c.next_deadline(), Some(1_100));
        assert!(c.on_timer(1_099).records.is_empty());
        let (_, markers) = step!(c, c.on_timer(1_100));
        assert_eq!(state(&c), TransactionState::PrepareAbort);
        assert_eq!((markers[0].producer_epoch, markers[0].commit), (1, false));
        // The producer that let it time out is fenced.
        assert_eq!(
            c.end_transaction(1_200, &end_v1(ID, 7, 0, true)).response,
            Err(TxnError::ProducerFenced)
        );
        step!(c, c.complete(1_300, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteAbort);
        assert_eq!(c.next_deadline(), Some(11_300));
        let (_, _) = step!(c, c.on_timer(11_300));
        assert!(c.get(ID).is_none(), "expired id is tombstoned");
    }

    #[test]
    fn bad_requests_get_kafkas_errors_and_change_nothing() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        assert_eq!(
            c_init(&mut c, 0, 0, 7).response,
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            c_init(&mut c, 0, DEFAULT_MAX_TIMEOUT_MS + 1, 7).response,
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert!(c.is_empty());
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        // Ending a transaction that was never begun.
        let t = c.end_transaction(1, &end_v1(ID, 7, 0, true));
        assert_eq!(t.response, Err(TxnError::InvalidTxnState));
        assert!(t.records.is_empty());
        // Verify-only: partitions outside the transaction are not in it.
        assert!(step!(c, c.add_partitions(2, ID, 7, 0, &[tp("a", 0)], 0))
            .0
            .is_ok());
        assert_eq!(
            c.verify_partitions(ID, 7, 0, &[tp("a", 0), tp("b", 0)]),
            Ok(vec![Ok(()), Err(TxnError::TransactionAbortable)])
        );
        assert_eq!(
            c.verify_partitions(ID, 7, 1, &[tp("a", 0)]),
            Err(TxnError::ProducerFenced)
        );
        // A failed write leaves the id as it was, not pending.
        let t = c.end_transaction(3, &end_v1(ID, 7, 0, false));
        c.on_write_failed(&t.records);
        assert_eq!(state(&c), TransactionState::Ongoing);
        assert!(!c.get(ID).unwrap().pending);
        // A KIP-360 producer naming a stale epoch is fenced.
        let stale = InitProducerId {
            producer_id: 7,
            producer_epoch: 5,
            ..init(60_000)
        };
        assert_eq!(
            c.init_producer_id(4, &stale, 8).response,
            Err(TxnError::ProducerFenced)
        );
    }

    /// Kafka's `handleVerifyPartitionsInTransaction` in every state: the producer
    /// checks first, CONCURRENT_TRANSACTIONS while PrepareCommit/PrepareAbort, then
    /// per partition NONE if it is in the transaction, TRANSACTION_ABORTABLE if not.
    #[test]
    fn verify_only_answers_as_kafkas_coordinator_in_every_state() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        let parts = [tp("a", 0), tp("b", 0)];
        assert_eq!(
            c.verify_partitions(ID, 7, 0, &parts),
            Err(TxnError::InvalidProducerIdMapping),
            "an unknown transactional id"
        );
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        assert_eq!(
            c.verify_partitions(ID, 8, 0, &parts),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            c.verify_partitions(ID, 7, 1, &parts),
            Err(TxnError::ProducerFenced)
        );
        // Empty: no transaction open, so no partition is in it.
        assert_eq!(state(&c), TransactionState::Empty);
        let neither = Ok(vec![
            Err(TxnError::TransactionAbortable),
            Err(TxnError::TransactionAbortable),
        ]);
        assert_eq!(c.verify_partitions(ID, 7, 0, &parts), neither);
        // An add written but not committed yet: the partition is not in it yet (the
        // pending write is not looked at).
        let t = c.add_partitions(1, ID, 7, 0, &[tp("a", 0)], 0);
        assert_eq!(c.verify_partitions(ID, 7, 0, &parts), neither);
        assert!(step!(c, t).0.is_ok());
        // Ongoing: per partition.
        assert_eq!(
            c.verify_partitions(ID, 7, 0, &parts),
            Ok(vec![Ok(()), Err(TxnError::TransactionAbortable)])
        );
        // PrepareCommit: the whole request is to be retried.
        let (r, markers) = step!(c, c.end_transaction(2, &end_v1(ID, 7, 0, true)));
        assert!(r.is_ok());
        assert_eq!(state(&c), TransactionState::PrepareCommit);
        assert_eq!(
            c.verify_partitions(ID, 7, 0, &parts),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            c.verify_partitions(ID, 7, 1, &parts),
            Err(TxnError::ProducerFenced),
            "the epoch is checked before the state"
        );
        // CompleteCommit: the transaction's partitions are gone.
        step!(c, c.complete(3, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteCommit);
        assert_eq!(c.verify_partitions(ID, 7, 0, &parts), neither);
        // PrepareAbort, then CompleteAbort.
        assert!(step!(c, c.add_partitions(4, ID, 7, 0, &[tp("b", 0)], 0))
            .0
            .is_ok());
        assert_eq!(
            c.verify_partitions(ID, 7, 0, &parts),
            Ok(vec![Err(TxnError::TransactionAbortable), Ok(())])
        );
        let (r, markers) = step!(c, c.end_transaction(5, &end_v1(ID, 7, 0, false)));
        assert!(r.is_ok());
        assert_eq!(state(&c), TransactionState::PrepareAbort);
        assert_eq!(
            c.verify_partitions(ID, 7, 0, &parts),
            Err(TxnError::ConcurrentTransactions)
        );
        step!(c, c.complete(6, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteAbort);
        assert_eq!(c.verify_partitions(ID, 7, 0, &parts), neither);
        assert_eq!(TxnError::TransactionAbortable.code(), 120);
    }

    #[test]
    fn an_exhausted_epoch_moves_to_a_new_producer_id() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        let mut m = c.get(ID).unwrap().clone();
        let record = m.transition(
            TransactionState::CompleteCommit,
            7,
            LAST_USABLE_EPOCH,
            &BTreeSet::new(),
            -1,
            1,
        );
        m.pending = false;
        c.replay(&record);
        let (r, _) = step!(c, c_init(&mut c, 2, 60_000, 42));
        assert_eq!(r, Ok((42, 0)));
        assert_eq!(c.get(ID).unwrap().previous_producer_id, 7);
    }

    #[test]
    fn a_load_finds_transactions_between_the_two_phases() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        assert!(step!(c, c.add_partitions(1, ID, 7, 0, &[tp("a", 0)], 0))
            .0
            .is_ok());
        let end = c.end_transaction(2, &end_v1(ID, 7, 0, true));
        let records = end.records.clone();
        assert!(step!(c, end).0.is_ok());
        // A new coordinator replays the same records.
        let mut loaded = TransactionCoordinator::new(TxnConfig::default());
        let mut all = Vec::new();
        all.extend(
            c_init(
                &mut TransactionCoordinator::new(TxnConfig::default()),
                0,
                60_000,
                7,
            )
            .records,
        );
        for r in all.iter().chain(&records) {
            loaded.replay(r);
        }
        let jobs = loaded.unfinished_marker_jobs();
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].commit);
        assert_eq!(jobs[0].partitions, vec![tp("a", 0)]);
    }

    #[test]
    fn transactions_v2_bump_the_epoch_at_every_end_and_recognise_retries() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        let v2 = TRANSACTION_VERSION_2;
        // A partition leader adds the partition for the v2 producer.
        assert!(step!(c, c.add_partitions(1, ID, 7, 0, &[tp("a", 0)], v2))
            .0
            .is_ok());
        assert_eq!(c.get(ID).unwrap().client_transaction_version, v2);
        let (r, markers) = step!(c, c.end_transaction(2, &end_v2(7, 0, true)));
        assert_eq!(r, Ok(ended(7, 1)), "the response carries the bumped epoch");
        // The Prepare record and its markers carry the new epoch: they fence epoch 0.
        let m = c.get(ID).unwrap();
        assert_eq!(
            (m.state, m.producer_epoch),
            (TransactionState::PrepareCommit, 1)
        );
        assert_eq!(
            (markers[0].producer_epoch, markers[0].partitions.clone()),
            (1, vec![tp("a", 0)])
        );
        assert_eq!(c.marker_job(ID), Some(markers[0].clone()));
        // A retry with the old epoch while the markers are written waits; the other
        // result is wrong; a next transaction at the new epoch waits too.
        assert_eq!(
            c.end_transaction(3, &end_v2(7, 0, true)).response,
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            c.end_transaction(3, &end_v2(7, 0, false)).response,
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.add_partitions(3, ID, 7, 1, &[tp("a", 0)], v2).response,
            Err(TxnError::ConcurrentTransactions)
        );
        step!(c, c.complete(4, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteCommit);
        // The retry after completion gets the first attempt's answer.
        assert_eq!(
            c.end_transaction(5, &end_v2(7, 0, true)).response,
            Ok(ended(7, 1))
        );
        assert_eq!(
            c.end_transaction(5, &end_v2(7, 0, false)).response,
            Err(TxnError::InvalidTxnState)
        );
        // Epoch 0 is fenced for anything else; a commit with nothing open is wrong.
        assert_eq!(
            c.add_partitions(5, ID, 7, 0, &[tp("a", 0)], v2).response,
            Err(TxnError::ProducerFenced)
        );
        let t = c.end_transaction(5, &end_v2(7, 1, true));
        assert_eq!(t.response, Err(TxnError::InvalidTxnState));
        assert!(t.records.is_empty());
        // An abort with nothing open only bumps the epoch: no partition gets a marker.
        let (r, markers) = step!(c, c.end_transaction(6, &end_v2(7, 1, false)));
        assert_eq!(r, Ok(ended(7, 2)));
        assert_eq!(state(&c), TransactionState::PrepareAbort);
        assert!(markers[0].partitions.is_empty());
        step!(c, c.complete(7, &markers[0]));
        assert_eq!(state(&c), TransactionState::CompleteAbort);
        assert_eq!(c.get(ID).unwrap().producer_epoch, 2);
        // A v1 EndTxn from the same id still ends without a bump.
        assert!(step!(c, c.add_partitions(8, ID, 7, 2, &[tp("b", 0)], 0))
            .0
            .is_ok());
        assert_eq!(
            step!(c, c.end_transaction(9, &end_v1(ID, 7, 2, true))).0,
            Ok(ended(7, 2))
        );
    }

    #[test]
    fn transactions_v2_rotate_an_exhausted_producer_id_at_completion() {
        let mut c = TransactionCoordinator::new(TxnConfig::default());
        assert!(step!(c, c_init(&mut c, 0, 60_000, 7)).0.is_ok());
        // Bring the id to the last usable epoch through its records.
        let mut m = c.get(ID).unwrap().clone();
        m.producer_epoch = LAST_USABLE_EPOCH;
        c.replay(&m.transition(
            TransactionState::Empty,
            7,
            LAST_USABLE_EPOCH,
            &BTreeSet::new(),
            -1,
            0,
        ));
        let v2 = TRANSACTION_VERSION_2;
        assert!(step!(
            c,
            c.add_partitions(1, ID, 7, LAST_USABLE_EPOCH, &[tp("a", 0)], v2)
        )
        .0
        .is_ok());
        // Without a fresh id nothing is written and the host is asked for one.
        let t = c.end_transaction(2, &end_v2(7, LAST_USABLE_EPOCH, true));
        assert_eq!(t.response, Ok(EndTxnAnswer::NeedsProducerId));
        assert!(t.records.is_empty());
        let req = EndTxn {
            fresh_producer_id: Some(99),
            ..end_v2(7, LAST_USABLE_EPOCH, true)
        };
        let (r, markers) = step!(c, c.end_transaction(2, &req));
        assert_eq!(r, Ok(ended(99, 0)));
        // The markers still fence the old id's last epoch.
        assert_eq!(
            (markers[0].producer_id, markers[0].producer_epoch),
            (7, i16::MAX)
        );
        assert_eq!(c.get(ID).unwrap().next_producer_id, 99);
        step!(c, c.complete(3, &markers[0]));
        let m = c.get(ID).unwrap();
        assert_eq!(
            (
                m.producer_id,
                m.producer_epoch,
                m.previous_producer_id,
                m.next_producer_id
            ),
            (99, 0, 7, -1)
        );
        // A retry of the EndTxn with the old id is recognised.
        assert_eq!(
            c.end_transaction(4, &end_v2(7, LAST_USABLE_EPOCH, true))
                .response,
            Ok(ended(99, 0))
        );
        // The rotation survives a reload: the Prepare record stored the next id.
        let prepare = c.get(ID).unwrap();
        assert_eq!(prepare.client_transaction_version, v2);
    }
}
