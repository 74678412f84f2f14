//! Runs the group coordinator state machine inside the broker.
//!
//! The state machine ([`ottla_group::coordinator::GroupCoordinator`]) decides; this
//! runtime does the I/O around it: it gives each parked request a ticket and a channel,
//! appends the records it emits to `__consumer_offsets` (through the replica layer,
//! exactly as a producer's batch, and before any reply that depends on them is sent),
//! drives its timers, and loads its state by replaying the topic at start-up.
//!
//! One mutex serialises the coordinator, so records are appended in the order they
//! were decided. Appends are page-cache writes; holding the lock across them keeps that
//! order without a queue. (A per-partition coordinator shard is the scaling step.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ottla_controller::{CreateTopicSpec, TopicInfo, OFFSETS_TOPIC};
use ottla_group::coordinator::{CoordinatorConfig, GroupCoordinator};
use ottla_group::records::{
    decode_group_metadata_value, decode_key, decode_offset_commit_value,
    encode_group_metadata_value, encode_key, encode_offset_commit_value, partition_for,
    CoordinatorKey, MAX_STRING_LEN,
};
use ottla_group::types::*;
use ottla_protocol::batch::BatchIter;
use ottla_protocol::compression::Compression;
use ottla_protocol::records::{build_record_batch, decode_records, Record};
use ottla_replica::partition::{now_ms, Partition};
use ottla_replica::FetchIsolation;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::broker::Broker;

/// Read size when loading `__consumer_offsets` at start-up.
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// Upper bound for one decompressed batch while loading.
const LOAD_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// The timer task wakes at least this often even without a deadline.
const MAX_TIMER_SLEEP: Duration = Duration::from_millis(500);
/// How long the timer waits after its records could not all be stored (session expiry
/// is late by up to this much while `__consumer_offsets` is failing).
const STORE_RETRY_BACKOFF: Duration = Duration::from_secs(5);

enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

struct State {
    coordinator: GroupCoordinator,
    next_ticket: Ticket,
    waiters: HashMap<Ticket, Waiter>,
}

pub struct GroupRuntime {
    state: Mutex<State>,
    /// Kicks the timer task when a new deadline may be earlier than the one it sleeps on.
    timer: Notify,
    /// Salt for member ids, unique per broker run.
    salt: String,
    /// `offsets.topic.num.partitions`, used only to create `__consumer_offsets`; once it
    /// exists, groups map to its real partition count (a changed setting must not move
    /// groups).
    partitions_to_create: i32,
}

/// A reply that may come later.
pub enum Pending<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl<T> Pending<T> {
    /// The reply, or `fallback` if the coordinator dropped the request or did not answer
    /// within `limit`. The coordinator answers every parked request itself (at the
    /// latest when the rebalance times out or the member expires); the limit only keeps
    /// a connection from waiting forever if that ever fails to happen.
    pub async fn wait(self, fallback: T, limit: Duration) -> T {
        match self {
            Pending::Now(t) => t,
            Pending::Later(rx) => match tokio::time::timeout(limit, rx).await {
                Ok(Ok(t)) => t,
                Ok(Err(_)) => fallback,
                Err(_) => {
                    tracing::warn!("A parked group request was not answered within {limit:?}; answering REBALANCE_IN_PROGRESS");
                    fallback
                }
            },
        }
    }
}

/// Added to the longest legitimate wait of a parked JoinGroup/SyncGroup.
pub const PARKED_REPLY_GRACE: Duration = Duration::from_secs(30);

/// Strings that end up in `__consumer_offsets` records must fit Kafka's int16 lengths.
fn fits(s: &str) -> bool {
    s.len() <= MAX_STRING_LEN
}

impl GroupRuntime {
    pub fn new(config: CoordinatorConfig, partitions: i32) -> GroupRuntime {
        GroupRuntime {
            state: Mutex::new(State {
                coordinator: GroupCoordinator::new(config),
                next_ticket: 1,
                waiters: HashMap::new(),
            }),
            timer: Notify::new(),
            salt: uuid::Uuid::new_v4().to_string(),
            partitions_to_create: partitions,
        }
    }

    /// Create `__consumer_offsets` if it does not exist yet (Kafka does this on the
    /// first FindCoordinator for a group, or a Metadata request that names it).
    pub fn ensure_offsets_topic(&self, broker: &Broker) -> anyhow::Result<Arc<TopicInfo>> {
        if let Some(t) = broker.controller.image().topic(OFFSETS_TOPIC) {
            return Ok(t.clone());
        }
        let topic = self.create_offsets_topic(broker)?;
        broker.ensure_topic_partitions(&topic)?;
        Ok(topic)
    }

    /// Create `__consumer_offsets` with the offsets topic's settings; a concurrent
    /// creator's topic is returned as is.
    fn create_offsets_topic(&self, broker: &Broker) -> anyhow::Result<Arc<TopicInfo>> {
        let config = &broker.config;
        let spec = CreateTopicSpec {
            name: OFFSETS_TOPIC.into(),
            num_partitions: self.partitions_to_create,
            replication_factor: config.offsets_topic_replication_factor,
            assignments: BTreeMap::new(),
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("compression.type".to_string(), "producer".to_string()),
                (
                    "segment.bytes".to_string(),
                    config.offsets_topic_segment_bytes.to_string(),
                ),
            ]
            .into(),
        };
        match broker.controller.create_topic(&spec, false) {
            Ok(t) => Ok(t),
            Err(ottla_controller::ControllerError::TopicAlreadyExists(_)) => broker
                .controller
                .image()
                .topic(OFFSETS_TOPIC)
                .cloned()
                .context("offsets topic vanished"),
            Err(e) => Err(e).context("cannot create __consumer_offsets"),
        }
    }

    /// Replay `__consumer_offsets` into the coordinator (start-up).
    pub fn load(&self, broker: &Broker) -> anyhow::Result<()> {
        let Some(topic) = broker.controller.image().topic(OFFSETS_TOPIC).cloned() else {
            return Ok(());
        };
        let now = now_ms();
        let mut state = self.state.lock();
        let mut records = 0usize;
        for p in &topic.partitions {
            let Some(partition) = broker.replicas.get(&topic.topic_id, p.partition) else {
                continue;
            };
            let mut offset = partition.log_start_offset();
            let end = partition.log_end_offset();
            while offset < end {
                let read = partition
                    .read(offset, LOAD_READ_BYTES, FetchIsolation::LogEnd, true)
                    .with_context(|| format!("cannot read {}", partition.name()))?;
                if read.records.is_empty() {
                    break;
                }
                let stored = read
                    .records
                    .to_bytes()
                    .with_context(|| format!("cannot read {}", partition.name()))?;
                for batch in BatchIter::new(&stored) {
                    let batch =
                        batch.with_context(|| format!("corrupt batch in {}", partition.name()))?;
                    offset = batch.next_offset();
                    if batch.is_control() {
                        continue;
                    }
                    // Only this broker writes here (clients are refused), so an
                    // undecodable batch means damage: skip it loudly rather than refuse
                    // to start and take every group down with it.
                    let decoded = match decode_records(&batch, LOAD_MAX_DECOMPRESSED) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(
                                "Skipping undecodable batch at offset {} of {}: {e}",
                                batch.base_offset(),
                                partition.name()
                            );
                            continue;
                        }
                    };
                    for record in decoded {
                        if let Some(r) = decode_record(&record) {
                            state.coordinator.replay_at(now, &r);
                            records += 1;
                        }
                    }
                }
            }
        }
        tracing::info!(
            "Loaded {records} records of {OFFSETS_TOPIC}: {} groups",
            state.coordinator.group_count()
        );
        Ok(())
    }

    /// Store the records of `effects`, let those that were stored take effect (commits
    /// and tombstones change the coordinator only once stored, group by group: another
    /// group's failing partition holds nothing back), then send the replies. If any
    /// record was not stored, every reply of the batch becomes COORDINATOR_NOT_AVAILABLE,
    /// so a client never believes in state that was not stored. Returns whether all was.
    fn apply(&self, broker: &Broker, state: &mut State, effects: Effects) -> bool {
        let stored = self.append(broker, &effects.records);
        let applied = effects.records.iter().filter(|r| stored.covers(r));
        state.coordinator.apply_stored(now_ms(), applied);
        let stored = stored.is_all();
        for (ticket, mut reply) in effects.joins {
            if !stored {
                reply = JoinResponse::error(error::COORDINATOR_NOT_AVAILABLE, &reply.member_id);
            }
            if let Some(Waiter::Join(tx)) = state.waiters.remove(&ticket) {
                let _ = tx.send(reply);
            }
        }
        for (ticket, mut reply) in effects.syncs {
            if !stored {
                reply = SyncResponse::error(error::COORDINATOR_NOT_AVAILABLE);
            }
            if let Some(Waiter::Sync(tx)) = state.waiters.remove(&ticket) {
                let _ = tx.send(reply);
            }
        }
        stored
    }

    /// Wake the timer to recompute its sleep: only joins, syncs and leaves can bring a
    /// deadline closer (commits and deletions cannot, and the timer's own effects are
    /// followed by a recomputation anyway).
    fn deadlines_may_have_moved(&self) {
        self.timer.notify_one();
    }

    /// Append each group's records to its partition of `__consumer_offsets`, one batch
    /// per partition.
    fn append(&self, broker: &Broker, records: &[CoordinatorRecord]) -> Stored {
        if records.is_empty() {
            return Stored::All;
        }
        let topic = match self.ensure_offsets_topic(broker) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("Cannot store group records: {e:#}");
                return Stored::Nothing;
            }
        };
        let partitions = topic.partitions.len() as i32;
        let now = now_ms();
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for r in records {
            let Some(group) = group_of(r) else { continue };
            let batch = by_partition
                .entry(partition_for(group, partitions))
                .or_default();
            let value = match &r.value {
                RecordValue::OffsetCommit(v) => Some(encode_offset_commit_value(v)),
                RecordValue::GroupMetadata(v) => Some(encode_group_metadata_value(v)),
                RecordValue::Tombstone => None,
            };
            batch.push(Record {
                offset: batch.len() as i64,
                timestamp: now,
                key: Some(encode_key(&r.key)),
                value,
                headers: vec![],
            });
        }
        let mut failed = BTreeSet::new();
        for (index, records) in by_partition {
            let Some(partition) = Self::offsets_partition(broker, &topic, index) else {
                tracing::error!("{OFFSETS_TOPIC}-{index} is not hosted here");
                failed.insert(index);
                continue;
            };
            let batch = build_record_batch(&records, Compression::None, -1, -1, -1);
            // `flush.messages` on the offsets topic (not the default) is honoured inline:
            // the records count as written only once durable by the topic's rules. A
            // background flush (roll, `flush.ms`) waits for no one.
            let flushed = partition
                .append_as_leader(batch, -1)
                .map_err(|e| e.to_string())
                .and_then(|appended| {
                    if let Some(plan) = appended.background_flush {
                        partition.complete_flush_in_background(plan);
                    }
                    match appended.flush {
                        Some(flush) => partition
                            .complete_policy_flush(flush)
                            .map(drop)
                            .map_err(|e| e.to_string()),
                        None => Ok(()),
                    }
                });
            if let Err(e) = flushed {
                tracing::error!(
                    "Appending group records to {} failed: {e}",
                    partition.name()
                );
                failed.insert(index);
            }
        }
        if failed.is_empty() {
            Stored::All
        } else {
            Stored::AllBut { partitions, failed }
        }
    }

    /// Partition `index` of `__consumer_offsets`, opened here if it is not yet. The
    /// controller publishes a topic (or its added partitions) before whoever created them
    /// has opened them, so a group append racing a creation can find a partition that is
    /// in the metadata but not open yet; opening is idempotent and waits for a
    /// concurrent opener.
    fn offsets_partition(broker: &Broker, topic: &TopicInfo, index: i32) -> Option<Arc<Partition>> {
        if let Some(p) = broker.replicas.get(&topic.topic_id, index) {
            return Some(p);
        }
        if let Err(e) = broker.ensure_topic_partitions(topic) {
            tracing::error!("Cannot open {OFFSETS_TOPIC}: {e:#}");
        }
        broker.replicas.get(&topic.topic_id, index)
    }

    fn ticket(state: &mut State) -> Ticket {
        let t = state.next_ticket;
        state.next_ticket += 1;
        t
    }

    pub fn join(&self, broker: &Broker, mut req: JoinRequest) -> Pending<JoinResponse> {
        if !fits(&req.group_id) {
            return Pending::Now(JoinResponse::error(error::INVALID_GROUP_ID, &req.member_id));
        }
        // Member ids embed the client id; keep them storable.
        let mut cut = req.client_id.len().min(MAX_STRING_LEN / 2);
        while !req.client_id.is_char_boundary(cut) {
            cut -= 1;
        }
        req.client_id.truncate(cut);
        let oversized = !fits(&req.member_id)
            || !fits(&req.protocol_type)
            || !fits(&req.client_host)
            || req.group_instance_id.as_deref().is_some_and(|s| !fits(s))
            || req.protocols.iter().any(|(n, _)| !fits(n));
        if oversized {
            return Pending::Now(JoinResponse::error(
                error::INCONSISTENT_GROUP_PROTOCOL,
                &req.member_id,
            ));
        }
        let mut state = self.state.lock();
        let ticket = Self::ticket(&mut state);
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(ticket, Waiter::Join(tx));
        let (reply, effects) = state.coordinator.join(now_ms(), ticket, req, &self.salt);
        let stored = self.apply(broker, &mut state, effects);
        self.deadlines_may_have_moved();
        match reply {
            Some(r) => {
                state.waiters.remove(&ticket);
                if !stored {
                    return Pending::Now(JoinResponse::error(
                        error::COORDINATOR_NOT_AVAILABLE,
                        &r.member_id,
                    ));
                }
                Pending::Now(r)
            }
            None => Pending::Later(rx),
        }
    }

    pub fn sync(&self, broker: &Broker, req: SyncRequest) -> Pending<SyncResponse> {
        let mut state = self.state.lock();
        let ticket = Self::ticket(&mut state);
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(ticket, Waiter::Sync(tx));
        let (reply, effects) = state.coordinator.sync(now_ms(), ticket, req);
        let stored = self.apply(broker, &mut state, effects);
        self.deadlines_may_have_moved();
        match reply {
            Some(r) => {
                state.waiters.remove(&ticket);
                Pending::Now(if stored {
                    r
                } else {
                    SyncResponse::error(error::COORDINATOR_NOT_AVAILABLE)
                })
            }
            None => Pending::Later(rx),
        }
    }

    pub fn heartbeat(&self, req: HeartbeatRequest) -> i16 {
        self.state.lock().coordinator.heartbeat(now_ms(), req)
    }

    pub fn leave(&self, broker: &Broker, group_id: &str, members: &[LeaveMember]) -> Vec<i16> {
        let mut state = self.state.lock();
        let (errors, effects) = state.coordinator.leave(now_ms(), group_id, members);
        self.apply(broker, &mut state, effects);
        self.deadlines_may_have_moved();
        errors
    }

    pub fn commit_offsets(
        &self,
        broker: &Broker,
        req: OffsetCommitRequest,
    ) -> Vec<PartitionResult> {
        if !fits(&req.group_id) {
            return req
                .offsets
                .iter()
                .map(|o| PartitionResult {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    error: error::INVALID_GROUP_ID,
                })
                .collect();
        }
        let mut state = self.state.lock();
        let now = now_ms();
        let (mut results, effects) = state.coordinator.commit_offsets(now, req);
        debug_assert!(effects.joins.is_empty() && effects.syncs.is_empty());
        if !self.apply(broker, &mut state, effects) {
            for r in &mut results {
                if r.error == error::NONE {
                    r.error = error::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
        results
    }

    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<FetchedOffset> {
        self.state
            .lock()
            .coordinator
            .fetch_offsets(group_id, topics)
    }

    pub fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> (i16, Vec<PartitionResult>) {
        let mut state = self.state.lock();
        let (code, results, effects) = state.coordinator.delete_offsets(group_id, partitions);
        if !self.apply(broker, &mut state, effects) {
            return (error::COORDINATOR_NOT_AVAILABLE, results);
        }
        (code, results)
    }

    pub fn delete_group(&self, broker: &Broker, group_id: &str) -> i16 {
        let mut state = self.state.lock();
        let (code, effects) = state.coordinator.delete_group(group_id);
        if !self.apply(broker, &mut state, effects) {
            return error::COORDINATOR_NOT_AVAILABLE;
        }
        code
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        self.state.lock().coordinator.describe(group_id)
    }

    pub fn list(&self, states: &[String]) -> Vec<GroupListing> {
        self.state.lock().coordinator.list(states)
    }

    /// Drive session expiry, rebalance timeouts and offset expiry until `stop` fires.
    pub async fn run_timers(
        self: Arc<Self>,
        broker: Arc<Broker>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            // A panic here must not silently stop session expiry for the rest of the
            // process's life: log it and keep ticking.
            let tick = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut state = self.state.lock();
                let now = now_ms();
                let effects = state.coordinator.tick(now);
                if !effects.is_empty() && !self.apply(&broker, &mut state, effects) {
                    // Tombstones that were not stored are made again by the next tick:
                    // not at once (a failed log stays failed until restart).
                    return STORE_RETRY_BACKOFF;
                }
                let next = state
                    .coordinator
                    .next_deadline()
                    .map(|d| (d - now).max(1) as u64);
                next.map(Duration::from_millis)
                    .unwrap_or(MAX_TIMER_SLEEP)
                    .min(MAX_TIMER_SLEEP)
            }));
            let sleep = tick.unwrap_or_else(|_| {
                tracing::error!("The group coordinator's timer panicked; continuing");
                MAX_TIMER_SLEEP
            });
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.timer.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Which of a batch of records [`GroupRuntime::append`] stored. A group's records all go
/// to one partition of `__consumer_offsets`, so they are stored or not together.
enum Stored {
    All,
    Nothing,
    AllBut {
        partitions: i32,
        failed: BTreeSet<i32>,
    },
}

impl Stored {
    fn is_all(&self) -> bool {
        matches!(self, Stored::All)
    }

    fn covers(&self, record: &CoordinatorRecord) -> bool {
        match self {
            Stored::All => true,
            Stored::Nothing => false,
            Stored::AllBut { partitions, failed } => group_of(record)
                .is_some_and(|group| !failed.contains(&partition_for(group, *partitions))),
        }
    }
}

/// The group a record belongs to (its partition key); `None` for kinds not ours.
fn group_of(record: &CoordinatorRecord) -> Option<&str> {
    match &record.key {
        CoordinatorKey::OffsetCommit { group, .. } | CoordinatorKey::GroupMetadata { group } => {
            Some(group)
        }
        CoordinatorKey::Other { .. } => None,
    }
}

/// A stored record as the coordinator's type; `None` for records it does not own.
fn decode_record(record: &Record) -> Option<CoordinatorRecord> {
    let key = decode_key(record.key.as_deref()?).ok()?;
    let value = match (&key, record.value.as_deref()) {
        (CoordinatorKey::Other { .. }, _) => return None,
        (_, None) => RecordValue::Tombstone,
        (CoordinatorKey::OffsetCommit { .. }, Some(v)) => {
            RecordValue::OffsetCommit(decode_offset_commit_value(v).ok()?)
        }
        (CoordinatorKey::GroupMetadata { .. }, Some(v)) => {
            RecordValue::GroupMetadata(decode_group_metadata_value(v).ok()?)
        }
    };
    Some(CoordinatorRecord { key, value })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::BrokerConfig;

    /// A topic published by the controller but not yet opened by its creator (what a
    /// group request racing the creation sees) still takes the group's records: the
    /// append opens the partition instead of failing it as not hosted here.
    #[test]
    fn group_records_reach_an_offsets_topic_created_elsewhere_and_not_yet_opened() {
        let dir = tempfile::tempdir().unwrap();
        let values = BTreeMap::from([
            ("log.dirs".to_string(), dir.path().display().to_string()),
            ("offsets.topic.num.partitions".to_string(), "3".to_string()),
        ]);
        let broker = Broker::start(BrokerConfig::from_values(values).unwrap()).unwrap();
        let created = broker.groups.create_offsets_topic(&broker).unwrap();
        assert_eq!(created.partitions.len(), 3);
        let index = partition_for("g", 3);
        assert!(broker.replicas.get(&created.topic_id, index).is_none());

        let tombstone = CoordinatorRecord {
            key: CoordinatorKey::GroupMetadata { group: "g".into() },
            value: RecordValue::Tombstone,
        };
        assert!(broker.groups.append(&broker, &[tombstone]).is_all());
        let partition = broker.replicas.get(&created.topic_id, index).unwrap();
        assert_eq!(partition.log_end_offset(), 1);
    }
}
