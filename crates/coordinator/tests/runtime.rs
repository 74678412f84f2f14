//! The coordinator runtime, deterministically: an in-memory partition whose high
//! watermark the test moves by hand, a manual clock, a small counter state machine, and
//! a single-threaded executor (a shard's loop runs whenever the test awaits). No
//! network, no sleeps.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use ottla_coordinator::runtime::MAX_QUEUED_EVENTS_PER_SHARD;
use ottla_coordinator::{
    Clock, CoordinatorError, CoordinatorPartition, CoordinatorRuntime, CoordinatorShard,
    ManualClock, PartitionLoader, PartitionWriter, WriteError, WriteResult,
};
use ottla_protocol::batch::{BatchIter, RecordBatchMut};
use parking_lot::Mutex;
use tokio::sync::watch;

// ------------------------------------------------------------------ the partition

/// A partition in memory. Its high watermark moves only when the test says so (or at
/// once, with `auto_commit`), as a leader's would when followers catch up.
struct MemoryPartition {
    /// (base offset, batch bytes)
    batches: Mutex<Vec<(i64, Vec<u8>)>>,
    end: Mutex<i64>,
    hw: watch::Sender<i64>,
    auto_commit: AtomicBool,
    fail_appends: AtomicBool,
    /// While set, the next `read` blocks on it (a slow load).
    read_gate: Mutex<Option<Arc<std::sync::Barrier>>>,
}

impl MemoryPartition {
    fn new(auto_commit: bool) -> Arc<MemoryPartition> {
        Arc::new(MemoryPartition {
            batches: Mutex::new(Vec::new()),
            end: Mutex::new(0),
            hw: watch::channel(0).0,
            auto_commit: AtomicBool::new(auto_commit),
            fail_appends: AtomicBool::new(false),
            read_gate: Mutex::new(None),
        })
    }

    fn commit_to(&self, offset: i64) {
        self.hw.send_replace(offset);
    }

    fn commit_all(&self) {
        self.commit_to(*self.end.lock());
    }

    fn end(&self) -> i64 {
        *self.end.lock()
    }
}

impl PartitionWriter for MemoryPartition {
    fn append(&self, mut batch: Vec<u8>) -> Result<i64, WriteError> {
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(WriteError("disk on fire".into()));
        }
        let mut end = self.end.lock();
        let count = {
            let mut b = RecordBatchMut::new(&mut batch).map_err(|e| WriteError(e.to_string()))?;
            b.set_base_offset(*end);
            b.view().records_count() as i64
        };
        self.batches.lock().push((*end, batch));
        *end += count;
        let new_end = *end;
        drop(end);
        if self.auto_commit.load(Ordering::SeqCst) {
            self.commit_to(new_end);
        }
        Ok(new_end)
    }

    fn high_watermark(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }
}

impl PartitionLoader for MemoryPartition {
    fn log_start_offset(&self) -> i64 {
        0
    }
    fn log_end_offset(&self) -> i64 {
        self.end()
    }
    fn read(&self, offset: i64, _max_bytes: usize) -> Result<Bytes, WriteError> {
        let gate = self.read_gate.lock().take();
        if let Some(gate) = gate {
            gate.wait();
        }
        let mut out = Vec::new();
        for (base, batch) in self.batches.lock().iter() {
            let next = BatchIter::new(batch)
                .next()
                .unwrap()
                .map(|b| b.next_offset())
                .unwrap();
            if next > offset {
                debug_assert!(*base >= 0);
                out.extend_from_slice(batch);
            }
        }
        Ok(Bytes::from(out))
    }
    fn name(&self) -> String {
        "memory-0".into()
    }
}

// ------------------------------------------------------------------ the state machine

/// Named counters; a record sets one (or deletes it). A timer, when armed, writes
/// `timer=1` at its deadline.
#[derive(Default)]
struct Counters {
    values: HashMap<String, i64>,
    timer_at: Option<i64>,
    replayed_while_loading: usize,
    /// Records of open transactions, by producer id.
    in_transactions: HashMap<i64, Vec<Set>>,
}

type Set = (String, Option<i64>);

impl CoordinatorShard for Counters {
    type Record = Set;

    fn encode((name, value): &Set) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            name.as_bytes().to_vec(),
            value.map(|v| v.to_be_bytes().to_vec()),
        )
    }

    fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Set> {
        let value = match value {
            Some(v) => Some(i64::from_be_bytes(v.try_into().ok()?)),
            None => None,
        };
        Some((String::from_utf8(key.to_vec()).ok()?, value))
    }

    fn replay(&mut self, _now: i64, (name, value): &Set) {
        match value {
            Some(v) => self.values.insert(name.clone(), *v),
            None => self.values.remove(name),
        };
    }

    fn replay_transactional(&mut self, _now: i64, producer_id: i64, _epoch: i16, record: &Set) {
        self.in_transactions
            .entry(producer_id)
            .or_default()
            .push(record.clone());
    }

    fn replay_end_transaction(&mut self, now: i64, producer_id: i64, commit: bool) {
        for r in self
            .in_transactions
            .remove(&producer_id)
            .unwrap_or_default()
        {
            if commit {
                self.replay(now, &r);
            }
        }
    }

    fn on_loaded(&mut self, _now: i64, records: usize) {
        self.replayed_while_loading = records;
    }

    fn on_timer(&mut self, _now: i64) -> WriteResult<Set, ()> {
        self.timer_at = None;
        WriteResult {
            records: vec![("timer".into(), Some(1))],
            response: (),
            deferred: vec![],
        }
    }

    fn next_deadline(&self) -> Option<i64> {
        self.timer_at
    }
}

const START_MS: i64 = 1_700_000_000_000;
const WRITE_TIMEOUT_MS: i64 = 5_000;

fn runtime(clock: Arc<ManualClock>) -> CoordinatorRuntime<Counters> {
    CoordinatorRuntime::new(
        "test coordinator",
        clock as Arc<dyn Clock>,
        WRITE_TIMEOUT_MS,
        |_| Counters::default(),
    )
}

fn set(
    rt: &CoordinatorRuntime<Counters>,
    partition: i32,
    name: &str,
    value: i64,
) -> Pin<Box<dyn Future<Output = Result<(), CoordinatorError>>>> {
    let record = (name.to_string(), Some(value));
    Box::pin(
        rt.write(partition, move |_, _| WriteResult {
            records: vec![record],
            response: (),
            deferred: vec![],
        })
        .wait(),
    )
}

fn get(
    rt: &CoordinatorRuntime<Counters>,
    partition: i32,
    name: &str,
) -> Pin<Box<dyn Future<Output = Result<Option<i64>, CoordinatorError>>>> {
    let name = name.to_string();
    Box::pin(
        rt.read(partition, move |s, _| s.values.get(&name).copied())
            .wait(),
    )
}

/// Poll once: `None` if the future is still waiting.
fn poll_once<T>(f: &mut Pin<Box<dyn Future<Output = T>>>) -> Option<T> {
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(t) => Some(t),
        Poll::Pending => None,
    }
}

/// Let every spawned task run until it waits again (single-threaded executor).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn load(
    rt: &CoordinatorRuntime<Counters>,
    partition: i32,
    log: &Arc<MemoryPartition>,
) -> Result<(), CoordinatorError> {
    let log: Arc<dyn CoordinatorPartition> = log.clone();
    rt.schedule_load(partition, 0, log).await.unwrap()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "current_thread")]
async fn a_write_is_answered_and_applied_only_once_its_records_are_committed() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(false);
    load(&rt, 0, &log).await.unwrap();

    let mut written = set(&rt, 0, "a", 7);
    // An operation handled after the write's append sees the state without it.
    let mut seen_by_next: Pin<Box<dyn Future<Output = _>>> = Box::pin(
        rt.write(0, |s: &mut Counters, _| {
            WriteResult::response(s.values.get("a").copied())
        })
        .wait(),
    );
    settle().await;
    assert_eq!(log.end(), 1, "the record was appended at once");
    assert!(
        poll_once(&mut written).is_none(),
        "no answer before the commit"
    );
    assert!(
        poll_once(&mut seen_by_next).is_none(),
        "a later operation answers after earlier writes commit"
    );

    log.commit_all();
    settle().await;
    assert_eq!(poll_once(&mut written), Some(Ok(())));
    assert_eq!(
        poll_once(&mut seen_by_next),
        Some(Ok(None)),
        "the write took effect only at its commit, after the next operation ran"
    );
    assert_eq!(get(&rt, 0, "a").await, Ok(Some(7)));
}

#[tokio::test(flavor = "current_thread")]
async fn writes_are_pipelined_and_completed_in_offset_order() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(false);
    load(&rt, 0, &log).await.unwrap();
    let mut first = set(&rt, 0, "a", 1);
    let mut second = set(&rt, 0, "b", 2);
    settle().await;
    assert_eq!(
        log.end(),
        2,
        "the second write did not wait for the first's commit"
    );
    log.commit_to(1);
    settle().await;
    assert_eq!(poll_once(&mut first), Some(Ok(())));
    assert!(poll_once(&mut second).is_none());
    log.commit_to(2);
    settle().await;
    assert_eq!(poll_once(&mut second), Some(Ok(())));
}

#[tokio::test(flavor = "current_thread")]
async fn a_shard_that_is_not_here_or_still_loading_refuses_with_kafkas_errors() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let err = set(&rt, 3, "a", 1).await.unwrap_err();
    assert_eq!(err, CoordinatorError::NotCoordinator(3));
    assert_eq!(err.kafka_error_code(), 16, "NOT_COORDINATOR");

    // A partition with data loads on a blocking thread; hold it there.
    let log = MemoryPartition::new(true);
    {
        let first = runtime(Arc::new(ManualClock::new(START_MS)));
        load(&first, 0, &log).await.unwrap();
        set(&first, 0, "a", 1).await.unwrap();
        first.shutdown().await;
    }
    let gate = Arc::new(std::sync::Barrier::new(2));
    *log.read_gate.lock() = Some(gate.clone());
    let dyn_log: Arc<dyn CoordinatorPartition> = log.clone();
    let loaded = rt.schedule_load(1, 0, dyn_log);
    let err = set(&rt, 1, "b", 1).await.unwrap_err();
    assert_eq!(err, CoordinatorError::LoadInProgress(1));
    assert_eq!(err.kafka_error_code(), 14, "COORDINATOR_LOAD_IN_PROGRESS");
    settle().await;
    gate.wait();
    loaded.await.unwrap().unwrap();
    assert_eq!(
        get(&rt, 1, "a").await,
        Ok(Some(1)),
        "the stored record was replayed"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn loading_replays_committed_records_and_applies_the_rest_when_committed() {
    let log = MemoryPartition::new(true);
    {
        let rt = runtime(Arc::new(ManualClock::new(START_MS)));
        load(&rt, 0, &log).await.unwrap();
        set(&rt, 0, "a", 1).await.unwrap();
        set(&rt, 0, "b", 2).await.unwrap();
        set(&rt, 0, "a", 3).await.unwrap();
        rt.shutdown().await;
    }
    // A new leader whose high watermark is not yet past the last record.
    log.auto_commit.store(false, Ordering::SeqCst);
    log.commit_to(2);
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    load(&rt, 0, &log).await.unwrap();
    assert_eq!(
        get(&rt, 0, "a").await,
        Ok(Some(1)),
        "a record above the high watermark is not applied at load"
    );
    let replayed = rt.read(0, |s, _| s.replayed_while_loading).wait().await;
    assert_eq!(
        replayed,
        Ok(2),
        "only records below the high watermark are replayed at load"
    );
    // An operation that writes nothing still answers only after the pending records.
    let mut after: Pin<Box<dyn Future<Output = _>>> = Box::pin(
        rt.write(0, |_: &mut Counters, _| WriteResult::response(()))
            .wait(),
    );
    settle().await;
    assert!(poll_once(&mut after).is_none());
    log.commit_all();
    settle().await;
    assert_eq!(poll_once(&mut after), Some(Ok(())));
    assert_eq!(
        get(&rt, 0, "a").await,
        Ok(Some(3)),
        "applied once committed"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unloading_answers_waiting_writes_not_coordinator_and_refuses_new_ones() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(false);
    load(&rt, 0, &log).await.unwrap();
    let mut waiting = set(&rt, 0, "a", 1);
    settle().await;
    assert!(poll_once(&mut waiting).is_none());
    rt.schedule_unload(0, 0);
    settle().await;
    assert_eq!(
        poll_once(&mut waiting),
        Some(Err(CoordinatorError::NotCoordinator(0)))
    );
    assert_eq!(
        set(&rt, 0, "b", 1).await,
        Err(CoordinatorError::NotCoordinator(0))
    );
    assert!(rt.partitions().is_empty());
    // Leadership comes back at a newer epoch: a fresh shard replays the log.
    log.commit_all();
    let dyn_log: Arc<dyn CoordinatorPartition> = log.clone();
    rt.schedule_load(0, 1, dyn_log).await.unwrap().unwrap();
    assert_eq!(get(&rt, 0, "a").await, Ok(Some(1)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_stale_load_or_unload_is_ignored() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(true);
    let dyn_log: Arc<dyn CoordinatorPartition> = log.clone();
    rt.schedule_load(0, 5, dyn_log.clone())
        .await
        .unwrap()
        .unwrap();
    set(&rt, 0, "a", 1).await.unwrap();
    rt.schedule_unload(0, 4);
    assert_eq!(
        get(&rt, 0, "a").await,
        Ok(Some(1)),
        "an older epoch's unload is ignored"
    );
    rt.schedule_load(0, 5, dyn_log).await.unwrap().unwrap();
    assert_eq!(
        get(&rt, 0, "a").await,
        Ok(Some(1)),
        "a repeated load keeps the shard"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_shard_waiting_for_its_commit_does_not_hold_up_another() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let stuck = MemoryPartition::new(false);
    let healthy = MemoryPartition::new(true);
    load(&rt, 0, &stuck).await.unwrap();
    load(&rt, 1, &healthy).await.unwrap();
    let mut waiting = set(&rt, 0, "a", 1);
    for i in 0..100 {
        set(&rt, 1, "b", i).await.unwrap();
    }
    assert_eq!(get(&rt, 1, "b").await, Ok(Some(99)));
    assert!(poll_once(&mut waiting).is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn timers_fire_on_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let rt = runtime(clock.clone());
    let log = MemoryPartition::new(true);
    load(&rt, 0, &log).await.unwrap();
    rt.write(0, |s: &mut Counters, now| {
        s.timer_at = Some(now + 1_000);
        WriteResult::response(())
    })
    .wait()
    .await
    .unwrap();
    clock.advance(999);
    rt.wake_timers(0);
    settle().await;
    assert_eq!(log.end(), 0, "not due yet");
    clock.advance(1);
    rt.wake_timers(0);
    settle().await;
    assert_eq!(log.end(), 1, "the timer's record was written");
    assert_eq!(get(&rt, 0, "timer").await, Ok(Some(1)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_write_not_committed_in_time_fails_but_applies_if_committed_later() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let rt = runtime(clock.clone());
    let log = MemoryPartition::new(false);
    load(&rt, 0, &log).await.unwrap();
    let mut waiting = set(&rt, 0, "a", 1);
    settle().await;
    clock.advance(WRITE_TIMEOUT_MS);
    rt.wake_timers(0);
    settle().await;
    let err = poll_once(&mut waiting).unwrap().unwrap_err();
    assert_eq!(err.kafka_error_code(), 15, "COORDINATOR_NOT_AVAILABLE");
    // The record is in the log: once committed, the state follows the log.
    log.commit_all();
    assert_eq!(get(&rt, 0, "a").await, Ok(Some(1)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_append_is_answered_coordinator_not_available_and_changes_nothing() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(true);
    load(&rt, 0, &log).await.unwrap();
    log.fail_appends.store(true, Ordering::SeqCst);
    let err = set(&rt, 0, "a", 1).await.unwrap_err();
    assert_eq!(err.kafka_error_code(), 15);
    assert_eq!(get(&rt, 0, "a").await, Ok(None));
    log.fail_appends.store(false, Ordering::SeqCst);
    set(&rt, 0, "a", 2).await.unwrap();
    assert_eq!(
        get(&rt, 0, "a").await,
        Ok(Some(2)),
        "the shard goes on after a failure"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_is_refused_instead_of_growing() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(true);
    load(&rt, 0, &log).await.unwrap();
    // The shard's loop cannot run until this test awaits, so nothing drains meanwhile.
    let queued: Vec<_> = (0..MAX_QUEUED_EVENTS_PER_SHARD)
        .map(|i| rt.read(0, move |_, _| i))
        .collect();
    let refused = rt.read(0, |_, _| 0).wait().await.unwrap_err();
    assert_eq!(refused.kafka_error_code(), 15, "COORDINATOR_NOT_AVAILABLE");
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(q.wait().await, Ok(i), "queued operations run in order");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_operation_fails_alone() {
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    let log = MemoryPartition::new(true);
    load(&rt, 0, &log).await.unwrap();
    let panicked = rt
        .write(0, |_: &mut Counters, _| -> WriteResult<Set, ()> {
            panic!("a bug in one operation")
        })
        .wait()
        .await;
    assert!(panicked.is_err());
    set(&rt, 0, "a", 1).await.unwrap();
    assert_eq!(get(&rt, 0, "a").await, Ok(Some(1)));
}

fn set_in_transaction(
    rt: &CoordinatorRuntime<Counters>,
    producer_id: i64,
    name: &str,
    value: i64,
) -> impl Future<Output = Result<(), CoordinatorError>> {
    let record = (name.to_string(), Some(value));
    rt.write_transactional(0, producer_id, 0, move |_, _| WriteResult {
        records: vec![record],
        response: (),
        deferred: vec![],
    })
    .wait()
}

#[tokio::test(flavor = "current_thread")]
async fn transactional_records_apply_at_their_commit_marker_also_after_a_reload() {
    let log = MemoryPartition::new(true);
    {
        let rt = runtime(Arc::new(ManualClock::new(START_MS)));
        load(&rt, 0, &log).await.unwrap();
        set_in_transaction(&rt, 5, "a", 1).await.unwrap();
        assert_eq!(get(&rt, 0, "a").await, Ok(None), "pending until the marker");
        rt.complete_transaction(0, 5, 0, 0, true)
            .wait()
            .await
            .unwrap();
        assert_eq!(get(&rt, 0, "a").await, Ok(Some(1)));
        set_in_transaction(&rt, 6, "b", 2).await.unwrap();
        rt.complete_transaction(0, 6, 0, 0, false)
            .wait()
            .await
            .unwrap();
        assert_eq!(get(&rt, 0, "b").await, Ok(None), "aborted");
        set_in_transaction(&rt, 7, "c", 3).await.unwrap();
        rt.shutdown().await;
    }
    // The batches are stored as Kafka stores them: transactional, and control markers.
    {
        let batches = log.batches.lock();
        let kinds: Vec<(bool, bool, i64)> = batches
            .iter()
            .map(|(_, b)| {
                let v = BatchIter::new(b).next().unwrap().unwrap();
                (v.is_transactional(), v.is_control(), v.producer_id())
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (true, false, 5),
                (true, true, 5),
                (true, false, 6),
                (true, true, 6),
                (true, false, 7)
            ]
        );
    }
    let rt = runtime(Arc::new(ManualClock::new(START_MS)));
    load(&rt, 0, &log).await.unwrap();
    assert_eq!(get(&rt, 0, "a").await, Ok(Some(1)));
    assert_eq!(get(&rt, 0, "b").await, Ok(None));
    assert_eq!(
        get(&rt, 0, "c").await,
        Ok(None),
        "still open after the reload"
    );
    rt.complete_transaction(0, 7, 0, 0, true)
        .wait()
        .await
        .unwrap();
    assert_eq!(get(&rt, 0, "c").await, Ok(Some(3)));
}
