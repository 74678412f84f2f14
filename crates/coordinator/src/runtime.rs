//! The runtime: shards, their event loops, and the write path.
//!
//! Each loaded shard is one tokio task that owns its state machine and takes events
//! from a bounded queue, one at a time. A write event runs the operation against the
//! state, appends the records it returns to the shard's partition as one batch, and
//! parks until the partition's high watermark passes them; only then are the records
//! applied to the state ([`CoordinatorShard::apply_committed`]) and the responses sent.
//! The loop does not wait for that commit before taking the next event: writes are
//! pipelined, and completed in offset order as the high watermark moves. An operation
//! that writes nothing still answers only once every earlier write is committed, so no
//! response reflects state that a leader change could take back (Kafka's deferred
//! event queue).
//!
//! A slow shard (a large load, a partition whose followers lag) holds up only its own
//! queue. The queue is bounded ([`MAX_QUEUED_EVENTS_PER_SHARD`]); when it is full the
//! submitter is told COORDINATOR_NOT_AVAILABLE and retries, rather than the broker
//! buffering without limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ottla_protocol::batch::{BatchIter, RecordBatchMut};
use ottla_protocol::compression::Compression;
use ottla_protocol::control::{build_end_txn_marker, control_record_type, ControlRecordType};
use ottla_protocol::records::{build_record_batch, decode_records, Record};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::error::CoordinatorError;
use crate::partition::CoordinatorPartition;

/// Events one shard may have queued; beyond this, submitters get
/// COORDINATOR_NOT_AVAILABLE (retriable) instead of an unbounded queue. Kafka's own
/// queue is unbounded; this is far above what real groups send at once (the compat
/// tests have 10,000 members join one group in the same instant, one queued JoinGroup
/// each) while still capping what a flood of connections can pile up.
pub const MAX_QUEUED_EVENTS_PER_SHARD: usize = 65_536;
/// Events a shard's loop takes in one turn before it looks at its timers and the high
/// watermark again.
const MAX_EVENTS_PER_TURN: usize = 1024;
/// Bytes read per step while loading (Kafka's `offsets.load.buffer.size` default).
pub const LOAD_READ_BYTES: usize = 5 * 1024 * 1024;
/// Upper bound for one decompressed batch while loading.
pub const LOAD_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// A shard's loop wakes at least this often, so a wall clock that jumps cannot leave a
/// timer unserved for long.
pub const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);
/// How long a shard waits to run its timers again after their records could not be
/// written (a failed log stays failed until restart: retrying at once would spin).
pub const TIMER_RETRY_BACKOFF_MS: i64 = 5_000;

/// A coordinator's state machine for one partition of its internal topic.
///
/// Deterministic: no I/O, no clock of its own. Operations are closures the runtime runs
/// against it ([`CoordinatorRuntime::write`]); records reach it only through
/// [`CoordinatorShard::replay`] (loading) and [`CoordinatorShard::apply_committed`]
/// (once a write's records are committed).
pub trait CoordinatorShard: Send + 'static {
    /// A record of the internal topic, in the state machine's terms.
    type Record: Send + 'static;

    /// The record's stored key and value (`None`: a tombstone).
    fn encode(record: &Self::Record) -> (Vec<u8>, Option<Vec<u8>>);
    /// A stored record; `None` for one this state machine does not own or cannot read.
    fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Self::Record>;
    /// Apply a record read back while loading.
    fn replay(&mut self, now: i64, record: &Self::Record);
    /// Apply a write's records once they are committed. The default replays them.
    fn apply_committed(&mut self, now: i64, records: &[Self::Record]) {
        for r in records {
            self.replay(now, r);
        }
    }
    /// A record of a transactional batch (a TxnOffsetCommit) is committed or read back:
    /// it takes effect only if the producer's COMMIT marker follows. The default
    /// applies it at once (for state machines that never write transactionally).
    fn replay_transactional(
        &mut self,
        now: i64,
        _producer_id: i64,
        _producer_epoch: i16,
        record: &Self::Record,
    ) {
        self.replay(now, record);
    }
    /// A transaction marker of `producer_id` is committed or read back.
    fn replay_end_transaction(&mut self, _now: i64, _producer_id: i64, _commit: bool) {}
    /// Records an operation returned could not be appended (the log failed): whatever
    /// the state machine marked as in flight for them is not.
    fn on_write_failed(&mut self, _records: &[Self::Record]) {}
    /// Loading found these records above the high watermark: they apply once committed
    /// (through [`CoordinatorShard::apply_committed`]); called before `on_loaded`.
    fn uncommitted_at_load(&mut self, _records: &[Self::Record]) {}
    /// Loading is done: `records` were replayed.
    fn on_loaded(&mut self, _now: i64, _records: usize) {}
    /// The timers due at `now` (session expiry, transaction timeouts, ...).
    fn on_timer(&mut self, now: i64) -> WriteResult<Self::Record, ()>;
    /// When [`CoordinatorShard::on_timer`] next has something to do.
    fn next_deadline(&self) -> Option<i64>;
    /// The shard is being unloaded: answer whatever it holds parked.
    fn on_unloaded(&mut self) {}
}

/// Work to do once a write's records are committed (`Ok`) or known not to be (`Err`):
/// a response, or replies to requests parked earlier.
pub type Deferred = Box<dyn FnOnce(Result<(), CoordinatorError>) + Send>;

/// What an operation returns: records to append, its own response, and replies to
/// other, parked requests. All of it takes effect only once the records are committed.
pub struct WriteResult<R, T> {
    pub records: Vec<R>,
    pub response: T,
    pub deferred: Vec<Deferred>,
}

impl<R, T> WriteResult<R, T> {
    /// A response with nothing to write.
    pub fn response(response: T) -> WriteResult<R, T> {
        WriteResult {
            records: Vec::new(),
            response,
            deferred: Vec::new(),
        }
    }
}

/// The eventual outcome of a scheduled operation. The operation is queued when the
/// `Completion` is made (so operations start in the order they were scheduled); awaiting
/// it only waits for the answer.
pub struct Completion<T>(Result<oneshot::Receiver<Result<T, CoordinatorError>>, CoordinatorError>);

impl<T> Completion<T> {
    /// An operation that could not be scheduled.
    pub fn failed(error: CoordinatorError) -> Completion<T> {
        Completion(Err(error))
    }

    pub async fn wait(self) -> Result<T, CoordinatorError> {
        match self.0 {
            Err(e) => Err(e),
            // The shard dropped the operation unanswered: it was unloaded (or the
            // operation panicked): the client looks the coordinator up again.
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| Err(CoordinatorError::NotCoordinator(-1))),
        }
    }
}

const LOADING: u8 = 0;
const ACTIVE: u8 = 1;
const CLOSED: u8 = 2;

type Operation<S> = Box<dyn FnOnce(&mut S, i64) -> Outcome<<S as CoordinatorShard>::Record> + Send>;

/// How a write's batch is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Plain,
    /// Records of `producer_id`'s transaction (TxnOffsetCommit).
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// The COMMIT or ABORT marker ending `producer_id`'s transaction here.
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    },
}

enum Event<S: CoordinatorShard> {
    Operation(Operation<S>),
    /// Re-evaluate timers now (a test moved its manual clock; a deadline moved closer).
    WakeTimers,
}

/// An operation's records and everything waiting on them.
struct Outcome<R> {
    records: Vec<R>,
    deferred: Vec<Deferred>,
    kind: WriteKind,
}

/// A loaded (or loading) shard, as submitters see it.
struct Slot<S: CoordinatorShard> {
    epoch: i32,
    status: Arc<AtomicU8>,
    events: mpsc::Sender<Event<S>>,
}

type ShardFactory<S> = Arc<dyn Fn(i32) -> S + Send + Sync>;

/// Hosts the shards of one coordinator (one internal topic).
pub struct CoordinatorRuntime<S: CoordinatorShard> {
    /// For logs: "group coordinator".
    name: &'static str,
    slots: RwLock<HashMap<i32, Slot<S>>>,
    new_shard: ShardFactory<S>,
    clock: Arc<dyn Clock>,
    /// How long a response waits for its records to be committed before it fails with
    /// COORDINATOR_NOT_AVAILABLE (`offsets.commit.timeout.ms`).
    write_timeout_ms: i64,
    /// The shards' tasks (loading, then the event loop), for [`CoordinatorRuntime::shutdown`].
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How many shards are loading, for [`CoordinatorRuntime::wait_for_loads`].
    loading: Arc<watch::Sender<usize>>,
}

/// Counts a shard as loading until dropped, however its load ends.
struct Loading(Arc<watch::Sender<usize>>);

impl Loading {
    fn start(counter: &Arc<watch::Sender<usize>>) -> Loading {
        counter.send_modify(|n| *n += 1);
        Loading(counter.clone())
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<S: CoordinatorShard> CoordinatorRuntime<S> {
    pub fn new(
        name: &'static str,
        clock: Arc<dyn Clock>,
        write_timeout_ms: i64,
        new_shard: impl Fn(i32) -> S + Send + Sync + 'static,
    ) -> CoordinatorRuntime<S> {
        CoordinatorRuntime {
            name,
            slots: RwLock::new(HashMap::new()),
            new_shard: Arc::new(new_shard),
            clock,
            write_timeout_ms,
            tasks: parking_lot::Mutex::new(Vec::new()),
            loading: Arc::new(watch::channel(0).0),
        }
    }

    /// Wait until no shard is loading (start-up waits for this before serving).
    pub async fn wait_for_loads(&self) {
        let mut loading = self.loading.subscribe();
        let _ = loading.wait_for(|n| *n == 0).await;
    }

    fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Unload every shard and wait until their loops have stopped: after this, no shard
    /// touches a partition again (a clean shutdown closes the logs next).
    pub async fn shutdown(&self) {
        let slots: Vec<Slot<S>> = self.slots.write().drain().map(|(_, s)| s).collect();
        for slot in &slots {
            slot.status.store(CLOSED, Ordering::Release);
            let _ = slot.events.try_send(Event::WakeTimers);
        }
        drop(slots);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// This broker became the leader of `partition` at `epoch`: load its shard by
    /// replaying the partition, then serve it. The returned receiver reports when the
    /// shard is loaded. An empty partition is loaded before this returns. A load for an
    /// epoch not newer than the current one is ignored (reported as done).
    ///
    /// Must be called within a tokio runtime.
    pub fn schedule_load(
        &self,
        partition: i32,
        epoch: i32,
        log: Arc<dyn CoordinatorPartition>,
    ) -> oneshot::Receiver<Result<(), CoordinatorError>> {
        let (done, loaded) = oneshot::channel();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let _ = done.send(Err(CoordinatorError::NotAvailable(
                "no async runtime to load in".into(),
            )));
            return loaded;
        };
        let empty = log.log_end_offset() <= log.log_start_offset();
        let (events_tx, events) = mpsc::channel(MAX_QUEUED_EVENTS_PER_SHARD);
        let status = Arc::new(AtomicU8::new(if empty { ACTIVE } else { LOADING }));
        {
            let mut slots = self.slots.write();
            if let Some(current) = slots.get(&partition) {
                if current.epoch >= epoch {
                    let _ = done.send(Ok(()));
                    return loaded;
                }
                current.status.store(CLOSED, Ordering::Release);
            }
            slots.insert(
                partition,
                Slot {
                    epoch,
                    status: status.clone(),
                    events: events_tx,
                },
            );
        }
        let name = self.name;
        let log_name = log.name();
        let write_timeout_ms = self.write_timeout_ms;
        let clock = self.clock.clone();
        let new_shard = self.new_shard.clone();
        let log_for_load = log.clone();
        let status_for_load = status.clone();
        let clock_for_load = clock.clone();
        let shard_loop = move |shard: S, uncommitted: Vec<PendingWrite<S::Record>>| ShardLoop {
            name,
            partition,
            hw: log.high_watermark(),
            last_written: log.log_end_offset(),
            log,
            shard,
            clock,
            status,
            pending: uncommitted.into_iter().collect(),
            timers_retry_at: None,
            write_timeout_ms,
        };
        if empty {
            let mut shard = new_shard(partition);
            shard.on_loaded(clock_for_load.now_ms(), 0);
            let _ = done.send(Ok(()));
            self.track(runtime.spawn(shard_loop(shard, Vec::new()).run(events)));
            return loaded;
        }
        let clock = clock_for_load;
        let counted = Loading::start(&self.loading);
        let task = runtime.spawn(async move {
            let counted = counted;
            let started = clock.now_ms();
            let load = {
                let clock = clock.clone();
                tokio::task::spawn_blocking(move || {
                    let mut shard = new_shard(partition);
                    load_shard(&mut shard, &*log_for_load, clock.now_ms()).map(|(n, rest)| {
                        for pending in &rest {
                            shard.uncommitted_at_load(&pending.records);
                        }
                        shard.on_loaded(clock.now_ms(), n);
                        (shard, n, rest)
                    })
                })
                .await
            };
            let load = load.unwrap_or_else(|e| {
                Err(CoordinatorError::NotAvailable(format!(
                    "loading panicked: {e}"
                )))
            });
            match load {
                Ok((shard, records, uncommitted)) => {
                    let activated = status_for_load
                        .compare_exchange(LOADING, ACTIVE, Ordering::AcqRel, Ordering::Acquire);
                    drop(counted);
                    if activated.is_err() {
                        // Unloaded (or superseded) while loading.
                        let _ = done.send(Err(CoordinatorError::NotCoordinator(partition)));
                        return;
                    }
                    tracing::info!(
                        "Finished loading of metadata from {log_name} with epoch {epoch} in {} ms: {records} records replayed ({name})",
                        (clock.now_ms() - started).max(0)
                    );
                    let _ = done.send(Ok(()));
                    shard_loop(shard, uncommitted).run(events).await;
                }
                Err(e) => {
                    tracing::error!("Failed to load {log_name} ({name}): {e}");
                    status_for_load.store(CLOSED, Ordering::Release);
                    drop(counted);
                    let _ = done.send(Err(e));
                }
            }
        });
        self.track(task);
        loaded
    }

    /// This broker stopped leading `partition` (at `epoch` or later): unload its shard.
    /// Operations still queued or waiting for a commit get NOT_COORDINATOR.
    pub fn schedule_unload(&self, partition: i32, epoch: i32) {
        let mut slots = self.slots.write();
        if slots.get(&partition).is_some_and(|s| s.epoch <= epoch) {
            if let Some(slot) = slots.remove(&partition) {
                slot.status.store(CLOSED, Ordering::Release);
                let _ = slot.events.try_send(Event::WakeTimers);
                tracing::info!(
                    "Unloading the {} shard of partition {partition} for epoch {epoch}",
                    self.name
                );
            }
        }
    }

    /// How many shards are loading now.
    pub fn loading_count(&self) -> usize {
        *self.loading.borrow()
    }

    /// How many shards are here, loaded or loading.
    pub fn shard_count(&self) -> usize {
        self.slots.read().len()
    }

    /// Partitions with a shard here, loaded or loading.
    pub fn partitions(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self.slots.read().keys().copied().collect();
        out.sort_unstable();
        out
    }

    /// Run `op` against `partition`'s shard; the response is delivered once the records
    /// it returns are committed.
    pub fn write<T: Send + 'static>(
        &self,
        partition: i32,
        op: impl FnOnce(&mut S, i64) -> WriteResult<S::Record, T> + Send + 'static,
    ) -> Completion<T> {
        self.write_as(partition, WriteKind::Plain, op)
    }

    /// [`CoordinatorRuntime::write`], storing the records as part of `producer_id`'s
    /// transaction (Kafka's transactional offset commits): they apply through
    /// [`CoordinatorShard::replay_transactional`] once committed.
    pub fn write_transactional<T: Send + 'static>(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        op: impl FnOnce(&mut S, i64) -> WriteResult<S::Record, T> + Send + 'static,
    ) -> Completion<T> {
        self.write_as(
            partition,
            WriteKind::Transactional {
                producer_id,
                producer_epoch,
            },
            op,
        )
    }

    /// Write the COMMIT or ABORT marker of `producer_id`'s transaction to
    /// `partition` (WriteTxnMarkers for a coordinator's own partition); once it is
    /// committed the shard applies it ([`CoordinatorShard::replay_end_transaction`]).
    pub fn complete_transaction(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Completion<()> {
        self.write_as(
            partition,
            WriteKind::Marker {
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
            },
            |_: &mut S, _| WriteResult::response(()),
        )
    }

    fn write_as<T: Send + 'static>(
        &self,
        partition: i32,
        kind: WriteKind,
        op: impl FnOnce(&mut S, i64) -> WriteResult<S::Record, T> + Send + 'static,
    ) -> Completion<T> {
        let (tx, rx) = oneshot::channel();
        let operation: Operation<S> = Box::new(move |shard, now| {
            let WriteResult {
                records,
                response,
                mut deferred,
            } = op(shard, now);
            deferred.push(Box::new(move |result| {
                let _ = tx.send(result.map(|()| response));
            }));
            Outcome {
                records,
                deferred,
                kind,
            }
        });
        Completion(
            self.submit(partition, Event::Operation(operation))
                .map(|()| rx),
        )
    }

    /// Read from `partition`'s shard when its turn in the queue comes, and answer at
    /// once: the state a shard holds is what its committed records made it (Kafka's
    /// read operations, which read the last committed snapshot).
    pub fn read<T: Send + 'static>(
        &self,
        partition: i32,
        op: impl FnOnce(&S, i64) -> T + Send + 'static,
    ) -> Completion<T> {
        let (tx, rx) = oneshot::channel();
        let operation: Operation<S> = Box::new(move |shard, now| {
            let _ = tx.send(Ok(op(shard, now)));
            Outcome {
                records: Vec::new(),
                deferred: Vec::new(),
                kind: WriteKind::Plain,
            }
        });
        Completion(
            self.submit(partition, Event::Operation(operation))
                .map(|()| rx),
        )
    }

    /// Have `partition`'s shard look at its timers now.
    pub fn wake_timers(&self, partition: i32) {
        if let Some(slot) = self.slots.read().get(&partition) {
            let _ = slot.events.try_send(Event::WakeTimers);
        }
    }

    fn submit(&self, partition: i32, event: Event<S>) -> Result<(), CoordinatorError> {
        let slots = self.slots.read();
        let Some(slot) = slots.get(&partition) else {
            return Err(CoordinatorError::NotCoordinator(partition));
        };
        match slot.status.load(Ordering::Acquire) {
            LOADING => return Err(CoordinatorError::LoadInProgress(partition)),
            CLOSED => return Err(CoordinatorError::NotCoordinator(partition)),
            _ => {}
        }
        slot.events.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CoordinatorError::NotAvailable(format!(
                "{} shard {partition} has {MAX_QUEUED_EVENTS_PER_SHARD} operations queued",
                self.name
            )),
            mpsc::error::TrySendError::Closed(_) => CoordinatorError::NotCoordinator(partition),
        })
    }
}

/// What loading found: how many records were replayed, and the batches above the high
/// watermark, which apply once committed.
type Loaded<R> = (usize, Vec<PendingWrite<R>>);

/// Replay `log` into `shard`: committed records (below the high watermark) are
/// replayed; the rest come back as a write still waiting for its commit. Blocking.
fn load_shard<S: CoordinatorShard>(
    shard: &mut S,
    log: &dyn CoordinatorPartition,
    now: i64,
) -> Result<Loaded<S::Record>, CoordinatorError> {
    let high_watermark = *log.high_watermark().borrow();
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut replayed = 0usize;
    let mut uncommitted: Vec<PendingWrite<S::Record>> = Vec::new();
    let unreadable =
        |e: String| CoordinatorError::NotAvailable(format!("cannot read {}: {e}", log.name()));
    while offset < end {
        let stored: Bytes = log
            .read(offset, LOAD_READ_BYTES)
            .map_err(|e| unreadable(e.0))?;
        if stored.is_empty() {
            break;
        }
        for batch in BatchIter::new(&stored) {
            let batch = batch.map_err(|e| unreadable(e.to_string()))?;
            offset = batch.next_offset();
            let committed = batch.base_offset() < high_watermark;
            if batch.is_control() {
                let Some(marker) = control_record_type(&batch) else {
                    continue;
                };
                let kind = WriteKind::Marker {
                    producer_id: batch.producer_id(),
                    producer_epoch: batch.producer_epoch(),
                    coordinator_epoch: -1,
                    commit: marker == ControlRecordType::Commit,
                };
                if committed {
                    apply(shard, now, kind, &[]);
                } else {
                    uncommitted.push(PendingWrite::loaded(offset, kind, Vec::new()));
                }
                continue;
            }
            let kind = if batch.is_transactional() {
                WriteKind::Transactional {
                    producer_id: batch.producer_id(),
                    producer_epoch: batch.producer_epoch(),
                }
            } else {
                WriteKind::Plain
            };
            // Only coordinators write here (clients are refused), so an undecodable
            // batch means damage: skip it loudly rather than take every group or
            // transaction of the partition down with it.
            let records = match decode_records(&batch, LOAD_MAX_DECOMPRESSED) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        "Skipping undecodable batch at offset {} of {}: {e}",
                        batch.base_offset(),
                        log.name()
                    );
                    continue;
                }
            };
            let decoded: Vec<S::Record> = records
                .iter()
                .filter_map(|r| S::decode(r.key.as_deref()?, r.value.as_deref()))
                .collect();
            if committed {
                replayed += decoded.len();
                apply_replayed(shard, now, kind, &decoded);
            } else if !decoded.is_empty() {
                uncommitted.push(PendingWrite::loaded(offset, kind, decoded));
            }
        }
    }
    Ok((replayed, uncommitted))
}

/// Replay records read back while loading (a plain batch record by record).
fn apply_replayed<S: CoordinatorShard>(
    shard: &mut S,
    now: i64,
    kind: WriteKind,
    records: &[S::Record],
) {
    match kind {
        WriteKind::Plain => {
            for r in records {
                shard.replay(now, r);
            }
        }
        _ => apply(shard, now, kind, records),
    }
}

/// Apply a committed write of `kind` to the state machine.
fn apply<S: CoordinatorShard>(shard: &mut S, now: i64, kind: WriteKind, records: &[S::Record]) {
    match kind {
        WriteKind::Plain => shard.apply_committed(now, records),
        WriteKind::Transactional {
            producer_id,
            producer_epoch,
        } => {
            for r in records {
                shard.replay_transactional(now, producer_id, producer_epoch, r);
            }
        }
        WriteKind::Marker {
            producer_id,
            commit,
            ..
        } => shard.replay_end_transaction(now, producer_id, commit),
    }
}

/// Records appended and not yet committed, and what waits on them.
struct PendingWrite<R> {
    /// Committed once the high watermark reaches this offset.
    offset: i64,
    kind: WriteKind,
    records: Vec<R>,
    deferred: Vec<Deferred>,
    /// When the deferred work gives up waiting (the records still apply if they commit
    /// later, as the log is the truth).
    deadline: i64,
}

impl<R> PendingWrite<R> {
    /// A batch found above the high watermark while loading: nobody waits on it.
    fn loaded(offset: i64, kind: WriteKind, records: Vec<R>) -> PendingWrite<R> {
        PendingWrite {
            offset,
            kind,
            records,
            deferred: Vec::new(),
            deadline: i64::MAX,
        }
    }
}

/// One shard's serial event loop.
struct ShardLoop<S: CoordinatorShard> {
    name: &'static str,
    partition: i32,
    shard: S,
    log: Arc<dyn CoordinatorPartition>,
    hw: watch::Receiver<i64>,
    clock: Arc<dyn Clock>,
    status: Arc<AtomicU8>,
    /// In offset order.
    pending: VecDeque<PendingWrite<S::Record>>,
    /// The offset after the last record this shard appended (or found at load).
    last_written: i64,
    /// No timer runs before this, after a timer's records failed to store.
    timers_retry_at: Option<i64>,
    write_timeout_ms: i64,
}

impl<S: CoordinatorShard> ShardLoop<S> {
    async fn run(mut self, mut events: mpsc::Receiver<Event<S>>) {
        let committed = *self.hw.borrow_and_update();
        self.complete_committed(committed);
        loop {
            if self.status.load(Ordering::Acquire) == CLOSED {
                break;
            }
            let now = self.clock.now_ms();
            self.expire_pending(now);
            self.run_timers(now);
            let sleep = self.sleep_from(now);
            tokio::select! {
                biased;
                changed = self.hw.changed() => {
                    if changed.is_err() {
                        // The partition was closed under us (deleted, or no longer
                        // hosted): nothing more can be written or committed.
                        break;
                    }
                    let committed = *self.hw.borrow_and_update();
                    self.complete_committed(committed);
                }
                event = events.recv() => {
                    let Some(first) = event else { break };
                    // Take what else is queued before looking at timers again: finding
                    // the next deadline walks every member of the shard, so doing it
                    // per event would cost O(members) each (a flood of joins into one
                    // group would be quadratic).
                    let mut next = Some(first);
                    let mut taken = 0;
                    while let Some(event) = next.take() {
                        if self.status.load(Ordering::Acquire) == CLOSED {
                            break;
                        }
                        if let Event::Operation(op) = event {
                            self.handle(op);
                        }
                        taken += 1;
                        if taken < MAX_EVENTS_PER_TURN {
                            next = events.try_recv().ok();
                        }
                    }
                }
                () = tokio::time::sleep(sleep) => {}
            }
        }
        self.close(&mut events);
    }

    /// How long to sleep: until the next timer or pending deadline, at most
    /// [`MAX_TIMER_SLEEP`].
    fn sleep_from(&self, now: i64) -> Duration {
        let timer = match self.timers_retry_at {
            Some(at) => Some(at),
            None => self.shard.next_deadline(),
        };
        let pending = self
            .pending
            .iter()
            .filter(|w| !w.deferred.is_empty())
            .map(|w| w.deadline)
            .min();
        let next = [timer, pending].into_iter().flatten().min();
        match next {
            Some(at) => {
                Duration::from_millis((at - now).clamp(0, MAX_TIMER_SLEEP.as_millis() as i64) as u64)
            }
            None => MAX_TIMER_SLEEP,
        }
    }

    fn handle(&mut self, op: Operation<S>) {
        let now = self.clock.now_ms();
        let shard = &mut self.shard;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(shard, now)));
        match outcome {
            Ok(Outcome {
                records,
                deferred,
                kind,
            }) => {
                self.append(now, kind, records, deferred);
            }
            Err(_) => tracing::error!(
                "An operation of the {} shard for partition {} panicked; it is answered NOT_COORDINATOR",
                self.name,
                self.partition
            ),
        }
    }

    /// Append `records` (if any) and park `deferred` until they, and every earlier
    /// write, are committed. Returns whether the records were appended.
    fn append(
        &mut self,
        now: i64,
        kind: WriteKind,
        records: Vec<S::Record>,
        deferred: Vec<Deferred>,
    ) -> bool {
        let deadline = now.saturating_add(self.write_timeout_ms);
        let is_marker = matches!(kind, WriteKind::Marker { .. });
        if records.is_empty() && !is_marker {
            if self.pending.is_empty() {
                for d in deferred {
                    d(Ok(()));
                }
            } else {
                self.pending.push_back(PendingWrite {
                    offset: self.last_written,
                    kind: WriteKind::Plain,
                    records,
                    deferred,
                    deadline,
                });
            }
            return true;
        }
        let batch = encode_batch::<S>(kind, &records, now);
        match self.log.append(batch) {
            Ok(end) => {
                debug_assert!(end > self.last_written, "offsets only grow");
                self.last_written = end;
                self.pending.push_back(PendingWrite {
                    offset: end,
                    kind,
                    records,
                    deferred,
                    deadline,
                });
                // On a single replica the high watermark is usually past the batch
                // already: answer without another turn of the loop.
                let committed = *self.hw.borrow();
                self.complete_committed(committed);
                true
            }
            Err(e) => {
                tracing::error!(
                    "Failed to write {} records to {}: {e}",
                    self.name,
                    self.log.name()
                );
                self.shard.on_write_failed(&records);
                let error = CoordinatorError::NotAvailable(e.0);
                for d in deferred {
                    d(Err(error.clone()));
                }
                false
            }
        }
    }

    /// Apply and answer every pending write the high watermark has passed.
    fn complete_committed(&mut self, high_watermark: i64) {
        let now = self.clock.now_ms();
        while self
            .pending
            .front()
            .is_some_and(|w| w.offset <= high_watermark)
        {
            let Some(write) = self.pending.pop_front() else {
                break;
            };
            apply(&mut self.shard, now, write.kind, &write.records);
            for d in write.deferred {
                d(Ok(()));
            }
        }
    }

    /// Answer writes that waited longer than the write timeout; their records still
    /// apply if they are committed later.
    fn expire_pending(&mut self, now: i64) {
        for write in self.pending.iter_mut().filter(|w| w.deadline <= now) {
            for d in write.deferred.drain(..) {
                d(Err(CoordinatorError::NotAvailable(format!(
                    "records not committed within {} ms",
                    self.write_timeout_ms
                ))));
            }
        }
    }

    fn run_timers(&mut self, now: i64) {
        if self.timers_retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.timers_retry_at = None;
        if self.shard.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        let shard = &mut self.shard;
        let effects =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.on_timer(now)));
        match effects {
            Ok(WriteResult {
                records, deferred, ..
            }) => {
                if !self.append(now, WriteKind::Plain, records, deferred) {
                    self.timers_retry_at = Some(now + TIMER_RETRY_BACKOFF_MS);
                }
            }
            Err(_) => {
                tracing::error!(
                    "The {} timer of partition {} panicked; continuing",
                    self.name,
                    self.partition
                );
                self.timers_retry_at = Some(now + TIMER_RETRY_BACKOFF_MS);
            }
        }
    }

    fn close(mut self, events: &mut mpsc::Receiver<Event<S>>) {
        self.status.store(CLOSED, Ordering::Release);
        events.close();
        // Queued operations are dropped unrun: their submitters see NOT_COORDINATOR.
        while events.try_recv().is_ok() {}
        for write in self.pending.drain(..) {
            for d in write.deferred {
                d(Err(CoordinatorError::NotCoordinator(self.partition)));
            }
        }
        self.shard.on_unloaded();
        tracing::info!("Unloaded the {} shard of {}", self.name, self.log.name());
    }
}

/// One uncompressed batch holding `records`, as Kafka's coordinators write them
/// (transactional ones with the producer's id and epoch and no sequence), or a
/// transaction marker.
fn encode_batch<S: CoordinatorShard>(kind: WriteKind, records: &[S::Record], now: i64) -> Vec<u8> {
    if let WriteKind::Marker {
        producer_id,
        producer_epoch,
        coordinator_epoch,
        commit,
    } = kind
    {
        let marker = if commit {
            ControlRecordType::Commit
        } else {
            ControlRecordType::Abort
        };
        return build_end_txn_marker(producer_id, producer_epoch, coordinator_epoch, marker, now);
    }
    let stored: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = S::encode(r);
            Record {
                offset: i as i64,
                timestamp: now,
                key: Some(key),
                value,
                headers: Vec::new(),
            }
        })
        .collect();
    match kind {
        WriteKind::Transactional {
            producer_id,
            producer_epoch,
        } => {
            let mut batch =
                build_record_batch(&stored, Compression::None, producer_id, producer_epoch, -1);
            if let Ok(mut m) = RecordBatchMut::new(&mut batch) {
                m.set_transactional(false);
            }
            batch
        }
        _ => build_record_batch(&stored, Compression::None, -1, -1, -1),
    }
}
