//! The group coordinator on the runtime: one [`GroupShard`] per partition of
//! `__consumer_offsets`, each holding the classic-group state machine
//! ([`GroupCoordinator`]) for the groups that hash to it, and
//! [`GroupCoordinatorService`], which routes each request to its group's shard (Kafka's
//! `GroupCoordinatorService`).
//!
//! Every method schedules its operation when called, so operations start in the order a
//! connection sent them, and returns a future of the answer. Runtime failures become the
//! error each API answers with: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS or
//! COORDINATOR_NOT_AVAILABLE.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ottla_group::consumer::records as consumer_records;
use ottla_group::consumer::topics::TopicsImage;
use ottla_group::consumer::{
    ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatResponse, GroupError,
};
use ottla_group::coordinator::{CoordinatorConfig, GroupCoordinator};
use ottla_group::records::{
    decode_group_metadata_value, decode_key, decode_offset_commit_value,
    encode_group_metadata_value, encode_key, encode_offset_commit_value, partition_for,
    CoordinatorKey, MAX_STRING_LEN,
};
use ottla_group::types::*;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::error::CoordinatorError;
use crate::partition::CoordinatorPartition;
use crate::runtime::{Completion, CoordinatorRuntime, CoordinatorShard, Deferred, WriteResult};

/// Added to the longest legitimate wait of a parked JoinGroup/SyncGroup before the
/// connection gives up on it (the coordinator answers every parked request itself; this
/// only keeps a connection from waiting forever if that ever fails to happen).
pub const PARKED_REPLY_GRACE: Duration = Duration::from_secs(30);
/// Kafka's UNSTABLE_OFFSET_COMMIT: an offset of this partition awaits its transaction.
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// A request waiting in the state machine for a later event's reply.
enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

/// A reply now, or one the state machine parked (a join waiting for the rebalance).
enum Parked<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// The groups of one `__consumer_offsets` partition.
pub struct GroupShard {
    coordinator: GroupCoordinator,
    waiters: HashMap<Ticket, Waiter>,
    next_ticket: Ticket,
    /// Makes member ids unique across broker runs.
    salt: Arc<str>,
    /// `offsets.retention.check.interval.ms`: how often expired offsets and groups are
    /// cleaned up when no member deadline brings the timer sooner.
    cleanup_interval_ms: i64,
    next_cleanup_ms: i64,
    /// Offsets committed inside transactions (TxnOffsetCommit), by producer id: they
    /// become the group's committed offsets when the producer's COMMIT marker is
    /// written here, and are dropped on ABORT (Kafka's `pendingTransactionalOffsets`).
    pending_txn_offsets: HashMap<i64, Vec<CoordinatorRecord>>,
}

impl GroupShard {
    pub fn new(config: CoordinatorConfig, salt: Arc<str>) -> GroupShard {
        let cleanup_interval_ms = config.offsets_retention_check_interval_ms.max(1);
        GroupShard {
            coordinator: GroupCoordinator::new(config),
            waiters: HashMap::new(),
            next_ticket: 1,
            salt,
            cleanup_interval_ms,
            next_cleanup_ms: i64::MAX,
            pending_txn_offsets: HashMap::new(),
        }
    }

    /// Whether an open transaction holds an offset for `group`'s `topic`-`partition`
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for it).
    pub fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn_offsets.values().flatten().any(|r| {
            matches!(&r.key, CoordinatorKey::OffsetCommit { group: g, topic: t, partition: p }
                if g == group && t == topic && *p == partition)
        })
    }

    pub fn coordinator(&self) -> &GroupCoordinator {
        &self.coordinator
    }

    fn park(&mut self, waiter: impl FnOnce(Ticket) -> Waiter) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiters.insert(ticket, waiter(ticket));
        ticket
    }

    /// The state machine's effects as the runtime's: records, and replies to parked
    /// requests that go out once those records are committed (or fail with the error
    /// that kept them from being committed).
    fn answer_with<T>(
        &mut self,
        effects: Effects,
        response: T,
    ) -> WriteResult<CoordinatorRecord, T> {
        let mut deferred: Vec<Deferred> = Vec::new();
        for (ticket, reply) in effects.joins {
            if let Some(Waiter::Join(tx)) = self.waiters.remove(&ticket) {
                deferred.push(Box::new(move |stored| {
                    let reply = match stored {
                        Ok(()) => reply,
                        Err(e) => JoinResponse::error(e.kafka_error_code(), &reply.member_id),
                    };
                    let _ = tx.send(reply);
                }));
            }
        }
        for (ticket, reply) in effects.syncs {
            if let Some(Waiter::Sync(tx)) = self.waiters.remove(&ticket) {
                deferred.push(Box::new(move |stored| {
                    let reply = match stored {
                        Ok(()) => reply,
                        Err(e) => SyncResponse::error(e.kafka_error_code()),
                    };
                    let _ = tx.send(reply);
                }));
            }
        }
        WriteResult {
            records: effects.records,
            response,
            deferred,
        }
    }
}

impl CoordinatorShard for GroupShard {
    type Record = CoordinatorRecord;

    fn encode(record: &CoordinatorRecord) -> (Vec<u8>, Option<Vec<u8>>) {
        let value = match &record.value {
            RecordValue::OffsetCommit(v) => Some(encode_offset_commit_value(v)),
            RecordValue::GroupMetadata(v) => Some(encode_group_metadata_value(v)),
            RecordValue::ConsumerGroup(v) => Some(consumer_records::encode_value(v)),
            RecordValue::Tombstone => None,
        };
        (encode_key(&record.key), value)
    }

    fn decode(key: &[u8], value: Option<&[u8]>) -> Option<CoordinatorRecord> {
        let key = decode_key(key).ok()?;
        let value = match (&key, value) {
            (CoordinatorKey::Other { .. }, _) => return None,
            (_, None) => RecordValue::Tombstone,
            (CoordinatorKey::ConsumerGroup(k), Some(v)) => {
                RecordValue::ConsumerGroup(consumer_records::decode_value(k, v).ok()?)
            }
            (CoordinatorKey::OffsetCommit { .. }, Some(v)) => {
                RecordValue::OffsetCommit(decode_offset_commit_value(v).ok()?)
            }
            (CoordinatorKey::GroupMetadata { .. }, Some(v)) => {
                RecordValue::GroupMetadata(decode_group_metadata_value(v).ok()?)
            }
        };
        Some(CoordinatorRecord { key, value })
    }

    fn replay(&mut self, now: i64, record: &CoordinatorRecord) {
        self.coordinator.replay_at(now, record);
    }

    fn apply_committed(&mut self, now: i64, records: &[CoordinatorRecord]) {
        self.coordinator.apply_stored(now, records);
    }

    fn replay_transactional(
        &mut self,
        _now: i64,
        producer_id: i64,
        _producer_epoch: i16,
        record: &CoordinatorRecord,
    ) {
        if matches!(record.key, CoordinatorKey::OffsetCommit { .. }) {
            self.pending_txn_offsets
                .entry(producer_id)
                .or_default()
                .push(record.clone());
        }
    }

    fn replay_end_transaction(&mut self, now: i64, producer_id: i64, commit: bool) {
        let Some(records) = self.pending_txn_offsets.remove(&producer_id) else {
            return;
        };
        if commit {
            self.coordinator.apply_stored(now, &records);
        }
    }

    fn on_loaded(&mut self, now: i64, records: usize) {
        self.next_cleanup_ms = now.saturating_add(self.cleanup_interval_ms);
        self.coordinator.on_loaded(now);
        tracing::debug!(
            "Loaded {records} group records: {} groups",
            self.coordinator.group_count()
        );
    }

    fn on_timer(&mut self, now: i64) -> WriteResult<CoordinatorRecord, ()> {
        if now >= self.next_cleanup_ms {
            self.next_cleanup_ms = now.saturating_add(self.cleanup_interval_ms);
        }
        let effects = self.coordinator.tick(now);
        self.answer_with(effects, ())
    }

    fn next_deadline(&self) -> Option<i64> {
        let members = self.coordinator.next_deadline();
        Some(members.map_or(self.next_cleanup_ms, |d| d.min(self.next_cleanup_ms)))
    }

    fn on_unloaded(&mut self) {
        // Kafka answers a parked join or sync NOT_COORDINATOR when its group moves away.
        let code = CoordinatorError::NotCoordinator(-1).kafka_error_code();
        for (_, waiter) in self.waiters.drain() {
            match waiter {
                Waiter::Join(tx) => drop(tx.send(JoinResponse::error(code, ""))),
                Waiter::Sync(tx) => drop(tx.send(SyncResponse::error(code))),
            }
        }
    }
}

/// Strings that end up in `__consumer_offsets` records must fit Kafka's int16 lengths.
fn fits(s: &str) -> bool {
    s.len() <= MAX_STRING_LEN
}

/// The group coordinator: routes each group to the shard of its `__consumer_offsets`
/// partition.
/// Where the service gets the cluster's topics from (the broker's metadata image).
pub type TopicsSource = Arc<dyn Fn() -> Arc<TopicsImage> + Send + Sync>;

pub struct GroupCoordinatorService {
    runtime: CoordinatorRuntime<GroupShard>,
    topics: TopicsSource,
    /// Partitions of `__consumer_offsets`, 0 until the topic exists. Groups map to the
    /// topic's real partition count, never to a changed setting.
    partitions: AtomicI32,
}

impl GroupCoordinatorService {
    /// `write_timeout_ms` is `offsets.commit.timeout.ms`.
    pub fn new(
        config: CoordinatorConfig,
        clock: Arc<dyn Clock>,
        write_timeout_ms: i64,
    ) -> GroupCoordinatorService {
        let salt: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        GroupCoordinatorService {
            runtime: CoordinatorRuntime::new(
                "group coordinator",
                clock,
                write_timeout_ms,
                move |_| GroupShard::new(config.clone(), salt.clone()),
            ),
            partitions: AtomicI32::new(0),
            topics: Arc::new(|| Arc::new(TopicsImage::default())),
        }
    }

    /// Where the cluster's topics come from (what consumer groups subscribe to).
    pub fn with_topics(mut self, source: TopicsSource) -> Self {
        self.topics = source;
        self
    }

    /// The cluster's topics now.
    pub fn topics(&self) -> Arc<TopicsImage> {
        (self.topics)()
    }

    pub fn runtime(&self) -> &CoordinatorRuntime<GroupShard> {
        &self.runtime
    }

    /// This broker became leader of `__consumer_offsets-<partition>` (of
    /// `partition_count`) at `leader_epoch`: load its groups.
    pub fn on_elected(
        &self,
        partition: i32,
        partition_count: i32,
        leader_epoch: i32,
        log: Arc<dyn CoordinatorPartition>,
    ) -> oneshot::Receiver<Result<(), CoordinatorError>> {
        self.partitions.store(partition_count, Ordering::Release);
        self.runtime.schedule_load(partition, leader_epoch, log)
    }

    /// This broker stopped leading `__consumer_offsets-<partition>`.
    pub fn on_resigned(&self, partition: i32, leader_epoch: i32) {
        self.runtime.schedule_unload(partition, leader_epoch);
    }

    /// The `__consumer_offsets` partition that holds `group_id`.
    pub fn partition_for(&self, group_id: &str) -> Result<i32, CoordinatorError> {
        match self.partitions.load(Ordering::Acquire) {
            0 => Err(CoordinatorError::NotCoordinator(-1)),
            n => Ok(partition_for(group_id, n)),
        }
    }

    fn write<T: Send + 'static>(
        &self,
        group_id: &str,
        op: impl FnOnce(&mut GroupShard, i64) -> WriteResult<CoordinatorRecord, T> + Send + 'static,
    ) -> Completion<T> {
        match self.partition_for(group_id) {
            Ok(p) => self.runtime.write(p, op),
            Err(e) => Completion::failed(e),
        }
    }

    fn read<T: Send + 'static>(
        &self,
        group_id: &str,
        op: impl FnOnce(&GroupShard, i64) -> T + Send + 'static,
    ) -> Completion<T> {
        match self.partition_for(group_id) {
            Ok(p) => self.runtime.read(p, op),
            Err(e) => Completion::failed(e),
        }
    }

    /// JoinGroup. A join the rebalance parks is answered when the rebalance completes;
    /// `limit` bounds that wait (then REBALANCE_IN_PROGRESS).
    pub fn join(
        &self,
        mut req: JoinRequest,
        limit: Duration,
    ) -> impl Future<Output = JoinResponse> + Send + 'static {
        let member_id = req.member_id.clone();
        let topics = self.topics();
        let early = if !fits(&req.group_id) {
            Some(error::INVALID_GROUP_ID)
        } else {
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
            oversized.then_some(error::INCONSISTENT_GROUP_PROTOCOL)
        };
        let scheduled = match early {
            Some(code) => Err(code),
            None => Ok(self.write(&req.group_id.clone(), move |shard, now| {
                let (tx, rx) = oneshot::channel();
                let ticket = shard.park(|_| Waiter::Join(tx));
                let salt = shard.salt.clone();
                shard.coordinator.set_topics(topics);
                let (reply, effects) = shard.coordinator.join(now, ticket, req, &salt);
                let parked = match reply {
                    Some(r) => {
                        shard.waiters.remove(&ticket);
                        Parked::Now(r)
                    }
                    None => Parked::Later(rx),
                };
                shard.answer_with(effects, parked)
            })),
        };
        async move {
            let completion = match scheduled {
                Err(code) => return JoinResponse::error(code, &member_id),
                Ok(c) => c,
            };
            match completion.wait().await {
                Ok(parked) => {
                    let fallback = JoinResponse::error(error::REBALANCE_IN_PROGRESS, &member_id);
                    wait_parked(parked, fallback, limit).await
                }
                Err(e) => JoinResponse::error(e.kafka_error_code(), &member_id),
            }
        }
    }

    /// SyncGroup. A follower's sync waits for the leader's; `limit` bounds that wait.
    pub fn sync(
        &self,
        req: SyncRequest,
        limit: Duration,
    ) -> impl Future<Output = SyncResponse> + Send + 'static {
        let topics = self.topics();
        let completion = self.write(&req.group_id.clone(), move |shard, now| {
            let (tx, rx) = oneshot::channel();
            let ticket = shard.park(|_| Waiter::Sync(tx));
            shard.coordinator.set_topics(topics);
            let (reply, effects) = shard.coordinator.sync(now, ticket, req);
            let parked = match reply {
                Some(r) => {
                    shard.waiters.remove(&ticket);
                    Parked::Now(r)
                }
                None => Parked::Later(rx),
            };
            shard.answer_with(effects, parked)
        });
        async move {
            match completion.wait().await {
                Ok(parked) => {
                    let fallback = SyncResponse::error(error::REBALANCE_IN_PROGRESS);
                    wait_parked(parked, fallback, limit).await
                }
                Err(e) => SyncResponse::error(e.kafka_error_code()),
            }
        }
    }

    pub fn heartbeat(&self, req: HeartbeatRequest) -> impl Future<Output = i16> + Send + 'static {
        let completion = self.write(&req.group_id.clone(), move |shard, now| {
            WriteResult::response(shard.coordinator.heartbeat(now, req))
        });
        async move {
            completion
                .wait()
                .await
                .unwrap_or_else(|e| e.kafka_error_code())
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848): answered once the records it wrote are
    /// committed, against the cluster's `topics`.
    pub fn consumer_heartbeat(
        &self,
        req: ConsumerHeartbeat,
        topics: Arc<TopicsImage>,
    ) -> impl Future<Output = Result<ConsumerHeartbeatResponse, GroupError>> + Send + 'static {
        let too_long = [
            Some(&req.group_id),
            Some(&req.member_id),
            req.instance_id.as_ref(),
            req.rack_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(req.subscribed_topic_names.iter().flatten())
        .any(|s| !fits(s));
        let scheduled = if too_long {
            Err(GroupError::new(
                ottla_group::consumer::codes::INVALID_REQUEST,
                "A string of the request is longer than a record can store.",
            ))
        } else {
            Ok(self.write(&req.group_id.clone(), move |shard, now| {
                let salt = shard.salt.clone();
                let (result, effects) = shard
                    .coordinator
                    .consumer_heartbeat(now, req, &topics, &salt);
                shard.answer_with(effects, result)
            }))
        };
        async move {
            match scheduled {
                Err(e) => Err(e),
                Ok(c) => c
                    .wait()
                    .await
                    .unwrap_or_else(|e| Err(GroupError::new(e.kafka_error_code(), e.to_string()))),
            }
        }
    }

    /// ConsumerGroupDescribe, for one group.
    pub fn describe_consumer_group(
        &self,
        group_id: String,
    ) -> impl Future<Output = Result<ConsumerGroupDescription, GroupError>> + Send + 'static {
        let completion = self.read(&group_id.clone(), move |shard, _| {
            shard.coordinator.describe_consumer_group(&group_id)
        });
        async move {
            completion
                .wait()
                .await
                .unwrap_or_else(|e| Err(GroupError::new(e.kafka_error_code(), e.to_string())))
        }
    }

    /// LeaveGroup: one error per member, or the error for the whole request.
    pub fn leave(
        &self,
        group_id: String,
        members: Vec<LeaveMember>,
    ) -> impl Future<Output = Result<Vec<i16>, i16>> + Send + 'static {
        let completion = self.write(&group_id.clone(), move |shard, now| {
            let (errors, effects) = shard.coordinator.leave(now, &group_id, &members);
            shard.answer_with(effects, errors)
        });
        async move { completion.wait().await.map_err(|e| e.kafka_error_code()) }
    }

    /// OffsetCommit: one result per offset, in the request's order. The offsets are
    /// visible to OffsetFetch once their records are committed.
    pub fn commit_offsets(
        &self,
        req: OffsetCommitRequest,
    ) -> impl Future<Output = Vec<PartitionResult>> + Send + 'static {
        self.commit_offsets_as(req, None)
    }

    /// TxnOffsetCommit: checked like an OffsetCommit (generation, member), stored in
    /// `producer_id`'s transaction, visible to OffsetFetch once it commits.
    pub fn txn_commit_offsets(
        &self,
        req: OffsetCommitRequest,
        producer_id: i64,
        producer_epoch: i16,
    ) -> impl Future<Output = Vec<PartitionResult>> + Send + 'static {
        self.commit_offsets_as(req, Some((producer_id, producer_epoch)))
    }

    /// Commit offsets plainly or inside `transaction` (producer id, epoch).
    fn commit_offsets_as(
        &self,
        req: OffsetCommitRequest,
        transaction: Option<(i64, i16)>,
    ) -> impl Future<Output = Vec<PartitionResult>> + Send + 'static {
        let if_failed = req.results(error::NONE);
        let group_id = req.group_id.clone();
        let scheduled = if !fits(&req.group_id) {
            Err(req.results(error::INVALID_GROUP_ID))
        } else {
            let op = move |shard: &mut GroupShard, now| {
                let (results, effects) = shard.coordinator.commit_offsets(now, req);
                shard.answer_with(effects, results)
            };
            Ok(match (transaction, self.partition_for(&group_id)) {
                (_, Err(e)) => Completion::failed(e),
                (None, Ok(p)) => self.runtime.write(p, op),
                (Some((producer_id, producer_epoch)), Ok(p)) => {
                    self.runtime
                        .write_transactional(p, producer_id, producer_epoch, op)
                }
            })
        };
        async move {
            match scheduled {
                Err(results) => results,
                Ok(c) => c.wait().await.unwrap_or_else(|e| {
                    if_failed
                        .into_iter()
                        .map(|r| PartitionResult {
                            error: e.kafka_error_code(),
                            ..r
                        })
                        .collect()
                }),
            }
        }
    }

    /// WriteTxnMarkers for `__consumer_offsets-<partition>`: end `producer_id`'s
    /// transaction there (its offsets become committed, or are dropped).
    pub fn complete_transaction(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send + 'static {
        self.runtime
            .complete_transaction(
                partition,
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
            )
            .wait()
    }

    /// OffsetFetch for one group (`topics: None`: every committed partition, sorted by
    /// topic).
    /// With `require_stable` (KIP-447, read_committed consumers), a partition with an
    /// offset still inside an open transaction answers UNSTABLE_OFFSET_COMMIT, and the
    /// consumer asks again.
    /// `member` is who asks (OffsetFetch v9+: member id, if any, and member epoch),
    /// checked against a consumer group as Kafka does (UNKNOWN_MEMBER_ID,
    /// STALE_MEMBER_EPOCH); `None` for older versions.
    pub fn fetch_offsets(
        &self,
        group_id: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
        member: Option<(Option<String>, i32)>,
    ) -> impl Future<Output = Result<Vec<FetchedOffset>, i16>> + Send + 'static {
        let completion = self.read(&group_id.clone(), move |shard, _| {
            if let Some((member_id, epoch)) = &member {
                let code = shard.coordinator.validate_offset_fetch(
                    &group_id,
                    member_id.as_deref(),
                    *epoch,
                );
                if code != error::NONE {
                    return Err(code);
                }
            }
            let mut fetched = shard
                .coordinator
                .fetch_offsets(&group_id, topics.as_deref());
            if require_stable {
                for f in &mut fetched {
                    if shard.has_pending_txn_offset(&group_id, &f.topic, f.partition) {
                        f.error = UNSTABLE_OFFSET_COMMIT;
                        f.offset = -1;
                        f.metadata = None;
                    }
                }
            }
            Ok(fetched)
        });
        async move {
            completion
                .wait()
                .await
                .map_err(|e| e.kafka_error_code())
                .and_then(|r| r)
        }
    }

    /// OffsetDelete: (group error, per-partition results).
    pub fn delete_offsets(
        &self,
        group_id: String,
        partitions: Vec<(String, i32)>,
    ) -> impl Future<Output = (i16, Vec<PartitionResult>)> + Send + 'static {
        let completion = self.write(&group_id.clone(), move |shard, _| {
            let (code, results, effects) = shard.coordinator.delete_offsets(&group_id, &partitions);
            shard.answer_with(effects, (code, results))
        });
        async move {
            completion
                .wait()
                .await
                .unwrap_or_else(|e| (e.kafka_error_code(), Vec::new()))
        }
    }

    /// DeleteGroups, for one group.
    pub fn delete_group(&self, group_id: String) -> impl Future<Output = i16> + Send + 'static {
        let completion = self.write(&group_id.clone(), move |shard, _| {
            let (code, effects) = shard.coordinator.delete_group(&group_id);
            shard.answer_with(effects, code)
        });
        async move {
            completion
                .wait()
                .await
                .unwrap_or_else(|e| e.kafka_error_code())
        }
    }

    /// DescribeGroups, for one group.
    pub fn describe(
        &self,
        group_id: String,
    ) -> impl Future<Output = GroupDescription> + Send + 'static {
        let id = group_id.clone();
        let completion = self.read(&group_id.clone(), move |shard, _| {
            shard.coordinator.describe(&group_id)
        });
        async move {
            completion
                .wait()
                .await
                .unwrap_or_else(|e| GroupDescription {
                    group_id: id,
                    error: e.kafka_error_code(),
                    state: "",
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                })
        }
    }

    /// ListGroups over every shard here: the groups of the shards that answered, and
    /// the error of one that did not (as Kafka, COORDINATOR_LOAD_IN_PROGRESS while a
    /// shard loads).
    pub fn list(
        &self,
        states: Vec<String>,
    ) -> impl Future<Output = (i16, Vec<GroupListing>)> + Send + 'static {
        let states = Arc::new(states);
        let completions: Vec<Completion<Vec<GroupListing>>> = self
            .runtime
            .partitions()
            .into_iter()
            .map(|p| {
                let states = states.clone();
                self.runtime
                    .read(p, move |shard, _| shard.coordinator.list(&states))
            })
            .collect();
        async move {
            let mut code = error::NONE;
            let mut groups = Vec::new();
            for c in completions {
                match c.wait().await {
                    Ok(listed) => groups.extend(listed),
                    Err(e) => code = e.kafka_error_code(),
                }
            }
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            (code, groups)
        }
    }

    /// Every committed offset of every group of the shards loaded here (a shard that
    /// does not answer, say one still loading, contributes nothing): the metrics
    /// endpoint's consumer lag.
    pub fn committed_offsets(&self) -> impl Future<Output = Vec<CommittedOffset>> + Send + 'static {
        let completions: Vec<Completion<Vec<CommittedOffset>>> = self
            .runtime
            .partitions()
            .into_iter()
            .map(|p| {
                self.runtime
                    .read(p, |shard, _| shard.coordinator.committed_offsets())
            })
            .collect();
        async move {
            let mut offsets = Vec::new();
            for c in completions {
                if let Ok(found) = c.wait().await {
                    offsets.extend(found);
                }
            }
            offsets
        }
    }
}

/// The reply, or `fallback` if the state machine dropped the parked request or did not
/// answer within `limit`.
async fn wait_parked<T>(parked: Parked<T>, fallback: T, limit: Duration) -> T {
    match parked {
        Parked::Now(t) => t,
        Parked::Later(rx) => match tokio::time::timeout(limit, rx).await {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => fallback,
            Err(_) => {
                tracing::warn!(
                    "A parked group request was not answered within {limit:?}; answering REBALANCE_IN_PROGRESS"
                );
                fallback
            }
        },
    }
}
