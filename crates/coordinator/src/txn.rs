//! The transaction coordinator on the runtime: one [`TxnShard`] per partition of
//! `__transaction_state`, each holding the state machine
//! ([`TransactionCoordinator`]) for the transactional ids that hash to it, and
//! [`TxnCoordinatorService`], which routes each request to its id's shard.
//!
//! The second phase of a commit or abort is the host's: once a PrepareCommit or
//! PrepareAbort record is committed, the shard hands a [`MarkerJob`] to the
//! [`TxnMarkerWriter`] the broker provides, which writes the markers to every partition
//! of the transaction (WriteTxnMarkers to each partition's leader) and then calls
//! [`TxnCoordinatorService::complete`]. A shard that loads a transaction stuck between
//! the two phases (its previous coordinator died) starts its markers again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use ottla_group::records::partition_for;
use ottla_txn::records::{
    decode_key, decode_value, encode_key, encode_value_version, value_version_for,
};
use ottla_txn::{
    EndTxn, EndTxnAnswer, InitProducerId, MarkerJob, TransactionCoordinator, TransactionMetadata,
    Transition, TxnConfig, TxnError, TxnRecord, TRANSACTION_VERSION_2,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::error::CoordinatorError;
use crate::partition::CoordinatorPartition;
use crate::runtime::{Completion, CoordinatorRuntime, CoordinatorShard, WriteResult};

/// Writes a transaction's markers (the broker's side: WriteTxnMarkers to the leaders).
pub trait TxnMarkerWriter: Send + Sync + 'static {
    /// Write `job`'s markers, then call [`TxnCoordinatorService::complete`] for
    /// `txn_partition`. Must not block: the shard's loop calls it.
    fn write_markers(&self, txn_partition: i32, coordinator_epoch: i32, job: MarkerJob);
}

/// Why a transactional request failed: the state machine's answer, or the runtime's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRequestError {
    Txn(TxnError),
    Coordinator(CoordinatorError),
}

impl TxnRequestError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            TxnRequestError::Txn(e) => e.code(),
            TxnRequestError::Coordinator(e) => e.kafka_error_code(),
        }
    }
}

/// The transactions of one `__transaction_state` partition.
pub struct TxnShard {
    coordinator: TransactionCoordinator,
    partition: i32,
    coordinator_epoch: i32,
    markers: Arc<dyn TxnMarkerWriter>,
    /// Ids with records above the high watermark at load.
    decided_by_tail: HashSet<String>,
}

impl TxnShard {
    pub fn coordinator(&self) -> &TransactionCoordinator {
        &self.coordinator
    }

    /// The runtime's form of a transition. Its markers are not started from here but
    /// when its Prepare record is applied ([`CoordinatorShard::apply_committed`]): a
    /// record committed after its waiter gave up (`offsets.commit.timeout.ms`) still
    /// needs them, or the transaction would hang between the phases.
    fn effects<T>(&self, t: Transition<T>) -> WriteResult<TxnRecord, T> {
        WriteResult {
            records: t.records,
            response: t.response,
            deferred: Vec::new(),
        }
    }
}

impl CoordinatorShard for TxnShard {
    type Record = TxnRecord;

    fn encode(record: &TxnRecord) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            encode_key(&record.transactional_id),
            // The finalized `transaction.version` is 2: Kafka writes v1 values then.
            record
                .value
                .as_ref()
                .map(|v| encode_value_version(v, value_version_for(TRANSACTION_VERSION_2))),
        )
    }

    fn decode(key: &[u8], value: Option<&[u8]>) -> Option<TxnRecord> {
        let transactional_id = decode_key(key).ok()?;
        let value = match value {
            None => None,
            Some(v) => Some(decode_value(v).ok()?),
        };
        Some(TxnRecord {
            transactional_id,
            value,
        })
    }

    fn replay(&mut self, _now: i64, record: &TxnRecord) {
        self.coordinator.replay(record);
    }

    fn apply_committed(&mut self, _now: i64, records: &[TxnRecord]) {
        for r in records {
            self.coordinator.replay(r);
            if let Some(job) = self.coordinator.marker_job(&r.transactional_id) {
                self.markers
                    .write_markers(self.partition, self.coordinator_epoch, job);
            }
        }
    }

    fn on_write_failed(&mut self, records: &[TxnRecord]) {
        self.coordinator.on_write_failed(records);
    }

    fn uncommitted_at_load(&mut self, records: &[TxnRecord]) {
        self.decided_by_tail
            .extend(records.iter().map(|r| r.transactional_id.clone()));
    }

    fn on_loaded(&mut self, _now: i64, records: usize) {
        // An id with a record above the high watermark is decided by that record once
        // it commits (a Complete record needs no markers; a Prepare record starts
        // them when applied): markers started from the older state could end the
        // producer's next transaction.
        let tail = std::mem::take(&mut self.decided_by_tail);
        let unfinished: Vec<MarkerJob> = self
            .coordinator
            .unfinished_marker_jobs()
            .into_iter()
            .filter(|j| !tail.contains(&j.transactional_id))
            .collect();
        if records == 0 {
            return;
        }
        tracing::info!(
            "Loaded transaction metadata from __transaction_state-{} with coordinator epoch {}: {} transactional ids from {records} records, {} transactions to complete",
            self.partition,
            self.coordinator_epoch,
            self.coordinator.len(),
            unfinished.len()
        );
        for job in unfinished {
            self.markers
                .write_markers(self.partition, self.coordinator_epoch, job);
        }
    }

    fn on_timer(&mut self, now: i64) -> WriteResult<TxnRecord, ()> {
        let t = self.coordinator.on_timer(now);
        self.effects(t)
    }

    fn next_deadline(&self) -> Option<i64> {
        self.coordinator.next_deadline()
    }
}

/// The transaction coordinator: routes each transactional id to its shard.
pub struct TxnCoordinatorService {
    runtime: CoordinatorRuntime<TxnShard>,
    /// Partitions of `__transaction_state`, 0 until the topic exists.
    partitions: AtomicI32,
    /// The leader epoch each shard was loaded at (its coordinator epoch).
    epochs: Arc<Mutex<HashMap<i32, i32>>>,
}

impl TxnCoordinatorService {
    /// `write_timeout_ms` bounds how long a response waits for its record's commit.
    pub fn new(
        config: TxnConfig,
        clock: Arc<dyn Clock>,
        write_timeout_ms: i64,
        markers: Arc<dyn TxnMarkerWriter>,
    ) -> TxnCoordinatorService {
        let epochs: Arc<Mutex<HashMap<i32, i32>>> = Arc::default();
        let shard_epochs = epochs.clone();
        TxnCoordinatorService {
            runtime: CoordinatorRuntime::new(
                "transaction coordinator",
                clock,
                write_timeout_ms,
                move |partition| TxnShard {
                    coordinator: TransactionCoordinator::new(config.clone()),
                    partition,
                    coordinator_epoch: shard_epochs.lock().get(&partition).copied().unwrap_or(0),
                    markers: markers.clone(),
                    decided_by_tail: HashSet::new(),
                },
            ),
            partitions: AtomicI32::new(0),
            epochs,
        }
    }

    pub fn runtime(&self) -> &CoordinatorRuntime<TxnShard> {
        &self.runtime
    }

    /// This broker became leader of `__transaction_state-<partition>` at
    /// `leader_epoch`: load its transactions.
    pub fn on_elected(
        &self,
        partition: i32,
        partition_count: i32,
        leader_epoch: i32,
        log: Arc<dyn CoordinatorPartition>,
    ) -> oneshot::Receiver<Result<(), CoordinatorError>> {
        self.partitions.store(partition_count, Ordering::Release);
        self.epochs.lock().insert(partition, leader_epoch);
        self.runtime.schedule_load(partition, leader_epoch, log)
    }

    /// This broker stopped leading `__transaction_state-<partition>`.
    pub fn on_resigned(&self, partition: i32, leader_epoch: i32) {
        self.runtime.schedule_unload(partition, leader_epoch);
    }

    /// The `__transaction_state` partition that holds `transactional_id` (Kafka's
    /// `partitionFor`: the id's Java hash code modulo the partition count).
    pub fn partition_for(&self, transactional_id: &str) -> Result<i32, CoordinatorError> {
        match self.partitions.load(Ordering::Acquire) {
            0 => Err(CoordinatorError::NotCoordinator(-1)),
            n => Ok(partition_for(transactional_id, n)),
        }
    }

    fn write<T: Send + 'static>(
        &self,
        transactional_id: &str,
        op: impl FnOnce(&mut TxnShard, i64) -> Transition<T> + Send + 'static,
    ) -> Completion<T> {
        match self.partition_for(transactional_id) {
            Ok(p) => self.runtime.write(p, move |shard, now| {
                let t = op(shard, now);
                shard.effects(t)
            }),
            Err(e) => Completion::failed(e),
        }
    }

    /// InitProducerId with a transactional id; `fresh_producer_id` is used if the id
    /// needs a new producer id.
    pub fn init_producer_id(
        &self,
        req: InitProducerId,
        fresh_producer_id: i64,
    ) -> impl Future<Output = Result<(i64, i16), TxnRequestError>> + Send + 'static {
        let c = self.write(&req.transactional_id.clone(), move |shard, now| {
            shard
                .coordinator
                .init_producer_id(now, &req, fresh_producer_id)
        });
        async move { flatten(c.wait().await) }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's offsets partition);
    /// `transaction_version` is the client's (2 when a leader or the group coordinator
    /// adds partitions for a transactions-v2 producer).
    pub fn add_partitions(
        &self,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        transaction_version: i16,
    ) -> impl Future<Output = Result<(), TxnRequestError>> + Send + 'static {
        let c = self.write(&transactional_id.clone(), move |shard, now| {
            shard.coordinator.add_partitions(
                now,
                &transactional_id,
                producer_id,
                producer_epoch,
                &partitions,
                transaction_version,
            )
        });
        async move { flatten(c.wait().await) }
    }

    /// AddPartitionsToTxn's verify-only form: each partition's answer.
    pub fn verify_partitions(
        &self,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> impl Future<Output = Result<Vec<Result<(), TxnError>>, TxnRequestError>> + Send + 'static
    {
        let c = match self.partition_for(&transactional_id) {
            Ok(p) => self.runtime.read(p, move |shard, _| {
                shard.coordinator.verify_partitions(
                    &transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                )
            }),
            Err(e) => Completion::failed(e),
        };
        async move {
            match c.wait().await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(TxnRequestError::Txn(e)),
                Err(e) => Err(TxnRequestError::Coordinator(e)),
            }
        }
    }

    /// EndTxn: answered once PrepareCommit/PrepareAbort is committed; the markers
    /// follow in the background. [`EndTxnAnswer::NeedsProducerId`] asks the caller to
    /// send it again with a fresh producer id.
    pub fn end_transaction(
        &self,
        req: EndTxn,
    ) -> impl Future<Output = Result<EndTxnAnswer, TxnRequestError>> + Send + 'static {
        let c = self.write(&req.transactional_id.clone(), move |shard, now| {
            shard.coordinator.end_transaction(now, &req)
        });
        async move { flatten(c.wait().await) }
    }

    /// `job`'s markers are all written: record the transaction as complete.
    pub fn complete(
        &self,
        txn_partition: i32,
        job: MarkerJob,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send + 'static {
        let c = self.runtime.write(txn_partition, move |shard, now| {
            let t = shard.coordinator.complete(now, &job);
            shard.effects(t)
        });
        c.wait()
    }

    /// Whether `job` still describes its transaction (checked before each round of
    /// markers). An error says the shard could not be asked: it is gone from here
    /// (NOT_COORDINATOR), or still loading (a job started by the load itself) or busy,
    /// and then the caller asks again.
    pub fn is_current(
        &self,
        txn_partition: i32,
        job: MarkerJob,
    ) -> impl Future<Output = Result<bool, CoordinatorError>> + Send + 'static {
        self.runtime
            .read(txn_partition, move |shard, _| {
                shard.coordinator.is_current(&job)
            })
            .wait()
    }

    /// Whether this broker still hosts `txn_partition`'s shard (a marker writer stops
    /// retrying once it does not).
    pub fn hosts(&self, txn_partition: i32) -> bool {
        self.runtime.partitions().contains(&txn_partition)
    }

    /// DescribeTransactions, for one id.
    pub fn describe(
        &self,
        transactional_id: String,
    ) -> impl Future<Output = Result<TransactionMetadata, TxnRequestError>> + Send + 'static {
        let c = match self.partition_for(&transactional_id) {
            Ok(p) => self.runtime.read(p, move |shard, _| {
                shard.coordinator.get(&transactional_id).cloned()
            }),
            Err(e) => Completion::failed(e),
        };
        async move {
            match c.wait().await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(TxnRequestError::Txn(TxnError::TransactionalIdNotFound)),
                Err(e) => Err(TxnRequestError::Coordinator(e)),
            }
        }
    }

    /// ListTransactions: every id of every shard loaded here.
    pub fn list(&self) -> impl Future<Output = Vec<TransactionMetadata>> + Send + 'static {
        let reads: Vec<_> = self
            .runtime
            .partitions()
            .into_iter()
            .map(|p| {
                self.runtime.read(p, |shard, _| {
                    shard.coordinator.iter().cloned().collect::<Vec<_>>()
                })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for r in reads {
                if let Ok(txns) = r.wait().await {
                    out.extend(txns);
                }
            }
            out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
            out
        }
    }
}

fn flatten<T>(r: Result<Result<T, TxnError>, CoordinatorError>) -> Result<T, TxnRequestError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TxnRequestError::Txn(e)),
        Err(e) => Err(TxnRequestError::Coordinator(e)),
    }
}
