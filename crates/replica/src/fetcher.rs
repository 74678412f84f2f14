//! Follower fetching: Kafka's `ReplicaFetcherManager` and `ReplicaFetcherThread`.
//!
//! A follower copies its leader's log by sending it Fetch requests with its own broker
//! id as the replica id, exactly as Kafka's brokers do (so a follower could fetch from
//! a Kafka broker, and a Kafka follower from Ottla). One fetcher task per leader broker
//! (`num.replica.fetchers=1`) fetches every partition this broker follows there, in one
//! request per round.
//!
//! Each round (Kafka's `AbstractFetcherThread.processFetchRequest`):
//! - a partition fetches at its log end offset, naming the epoch of its last batch
//!   (Fetch v12+ `last_fetched_epoch`); a leader whose log differs from there answers
//!   with a `diverging_epoch` instead of records, and the follower truncates to where
//!   the two logs agree (KIP-101/279, `truncateOnFetchResponse`), then fetches again;
//! - records are appended with the offsets and leader epochs the leader gave them, and
//!   the follower's high watermark follows the leader's;
//! - OFFSET_OUT_OF_RANGE asks the leader for its log start and end (ListOffsets as a
//!   replica) and truncates to the end, or restarts the log at the start;
//! - a partition whose leader answers NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH or
//!   UNKNOWN_LEADER_EPOCH waits `replica.fetch.backoff.ms` and tries again, until the
//!   metadata moves it elsewhere; a failed request backs all of them off.
//!
//! The partition itself refuses writes from a fetch that belonged to an older
//! leadership ([`crate::FollowerWriteError::NotFollowing`]), so a late answer never
//! touches a log that has become a leader's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ottla_client::{ClientConfig, NodeClient};
use ottla_protocol::batch::batch_size_at;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::partition::{
    now_ms, FollowerWriteError, Partition, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use crate::quota::ReplicationQuota;

/// Fetch versions a follower speaks: v12 added `last_fetched_epoch` and
/// `diverging_epoch` (truncation without OffsetForLeaderEpoch), v13 topic ids, v15 the
/// replica state in place of the replica id.
const FETCH_VERSIONS: (i16, i16) = (12, 16);
/// ListOffsets versions for the out-of-range reset (v4 added the leader epoch).
const LIST_OFFSETS_VERSIONS: (i16, i16) = (4, 9);

/// The broker settings a follower fetches with (Kafka's `replica.fetch.*`).
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// This broker's node id: the replica id of every fetch.
    pub node_id: i32,
    /// `replica.fetch.max.bytes` (1 MiB): per partition; at least one batch always.
    pub max_partition_bytes: i32,
    /// `replica.fetch.response.max.bytes` (10 MiB): per response.
    pub max_response_bytes: i32,
    /// `replica.fetch.wait.max.ms` (500): how long the leader may hold a fetch.
    pub max_wait_ms: i32,
    /// `replica.fetch.min.bytes` (1).
    pub min_bytes: i32,
    /// `replica.fetch.backoff.ms` (1000): the pause after an error.
    pub backoff: Duration,
    /// The connection's settings (`replica.socket.timeout.ms` as the request timeout).
    pub client: ClientConfig,
}

impl FetcherConfig {
    /// Kafka's defaults for broker `node_id`.
    pub fn new(node_id: i32) -> FetcherConfig {
        FetcherConfig {
            node_id,
            max_partition_bytes: 1_048_576,
            max_response_bytes: 10_485_760,
            max_wait_ms: 500,
            min_bytes: 1,
            backoff: Duration::from_millis(1000),
            client: ClientConfig::for_broker(node_id),
        }
    }
}

/// One followed partition, as its fetcher sees it.
#[derive(Clone)]
struct FetchTarget {
    partition: Arc<Partition>,
    /// The leader epoch this broker follows at: sent as `current_leader_epoch`, and
    /// the only epoch whose answers may write to the log.
    leader_epoch: i32,
    /// No fetch before this (after an error).
    delayed_until: Option<Instant>,
    /// The leader answered OFFSET_OUT_OF_RANGE: ask it for its offsets first.
    out_of_range: bool,
}

/// The partitions one fetcher task fetches, shared with the manager.
#[derive(Default)]
struct FetcherShared {
    partitions: Mutex<BTreeMap<(Uuid, i32), FetchTarget>>,
    /// Wakes an idle or backing-off task when partitions are added.
    changed: Notify,
}

struct Fetcher {
    address: String,
    shared: Arc<FetcherShared>,
    task: tokio::task::JoinHandle<()>,
}

/// The fetcher tasks of this broker, one per leader it follows partitions of.
pub struct ReplicaFetcherManager {
    config: FetcherConfig,
    runtime: tokio::runtime::Handle,
    /// `follower.replication.throttled.rate`, shared by every fetcher task.
    quota: Arc<ReplicationQuota>,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl ReplicaFetcherManager {
    /// Fetcher tasks are spawned on `runtime`; `quota` throttles fetches of throttled
    /// partitions this broker is not in sync for.
    pub fn new(
        config: FetcherConfig,
        runtime: tokio::runtime::Handle,
        quota: Arc<ReplicationQuota>,
    ) -> ReplicaFetcherManager {
        ReplicaFetcherManager {
            config,
            runtime,
            quota,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Follow `partition` from `leader` (at `address`, `host:port`) at `leader_epoch`.
    /// Moves it from any other fetcher; a no-op when already followed so.
    pub fn add_partition(
        &self,
        leader: i32,
        address: String,
        partition: Arc<Partition>,
        leader_epoch: i32,
    ) {
        let key = (partition.topic_id, partition.index);
        let mut fetchers = self.fetchers.lock();
        if let Some(f) = fetchers.get(&leader) {
            let current = f.shared.partitions.lock().get(&key).map(|t| t.leader_epoch);
            if f.address == address && current == Some(leader_epoch) {
                return;
            }
        }
        remove_from_all(&mut fetchers, &key);
        if fetchers.get(&leader).is_some_and(|f| f.address != address) {
            // The leader moved to another endpoint: a fresh task and connection.
            if let Some(old) = fetchers.remove(&leader) {
                old.task.abort();
                let moved = std::mem::take(&mut *old.shared.partitions.lock());
                let fetcher = self.spawn(leader, address.clone());
                fetcher.shared.partitions.lock().extend(moved);
                fetchers.insert(leader, fetcher);
            }
        }
        let fetcher = fetchers
            .entry(leader)
            .or_insert_with(|| self.spawn(leader, address));
        fetcher.shared.partitions.lock().insert(
            key,
            FetchTarget {
                partition,
                leader_epoch,
                delayed_until: None,
                out_of_range: false,
            },
        );
        fetcher.shared.changed.notify_one();
    }

    /// Stop following the partition (it is led here now, deleted, or leaderless).
    pub fn remove_partition(&self, topic_id: Uuid, index: i32) {
        let mut fetchers = self.fetchers.lock();
        remove_from_all(&mut fetchers, &(topic_id, index));
    }

    /// How many partitions are being fetched.
    pub fn partition_count(&self) -> usize {
        self.fetchers
            .lock()
            .values()
            .map(|f| f.shared.partitions.lock().len())
            .sum()
    }

    /// Stop every fetcher (broker shutdown).
    pub fn shutdown(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }

    fn spawn(&self, leader: i32, address: String) -> Fetcher {
        let shared = Arc::new(FetcherShared::default());
        let client = NodeClient::new(address.clone(), self.config.client.clone());
        let task = self.runtime.spawn(run_fetcher(
            leader,
            client,
            shared.clone(),
            self.config.clone(),
            self.quota.clone(),
        ));
        Fetcher {
            address,
            shared,
            task,
        }
    }
}

impl Drop for ReplicaFetcherManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Remove `key` from every fetcher, and stop fetchers left with nothing to fetch
/// (Kafka's `shutdownIdleFetcherThreads`).
fn remove_from_all(fetchers: &mut HashMap<i32, Fetcher>, key: &(Uuid, i32)) {
    fetchers.retain(|_, f| {
        let mut partitions = f.shared.partitions.lock();
        partitions.remove(key);
        if partitions.is_empty() {
            f.task.abort();
            false
        } else {
            true
        }
    });
}

/// What a partition's part of a fetch response asks of its fetcher.
enum Outcome {
    Fetched,
    Delay,
    OutOfRange,
}

/// The loop of one fetcher task.
async fn run_fetcher(
    leader: i32,
    client: NodeClient,
    shared: Arc<FetcherShared>,
    config: FetcherConfig,
    quota: Arc<ReplicationQuota>,
) {
    let name = format!(
        "[ReplicaFetcher replicaId={}, leaderId={leader}, fetcherId=0]",
        config.node_id
    );
    tracing::info!("{name} Starting");
    loop {
        let now = Instant::now();
        let (ready, next_ready) = {
            let partitions = shared.partitions.lock();
            let ready: Vec<((Uuid, i32), FetchTarget)> = partitions
                .iter()
                .filter(|(_, t)| t.delayed_until.is_none_or(|at| at <= now))
                .map(|(k, t)| (*k, t.clone()))
                .collect();
            let next = partitions.values().filter_map(|t| t.delayed_until).min();
            (ready, next)
        };
        if ready.is_empty() {
            let wake_at = next_ready.unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                _ = shared.changed.notified() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
            continue;
        }
        // Partitions the leader said were out of range ask for its offsets first.
        let mut fetchable = Vec::with_capacity(ready.len());
        for (key, target) in ready {
            if target.out_of_range {
                let outcome = reset_out_of_range(&name, &client, &target, &config).await;
                settle(&shared, &key, &target, outcome, &config);
            } else {
                fetchable.push((key, target));
            }
        }
        // Over the follower throttle: leave out the throttled partitions this broker is
        // not in sync for (Kafka's `shouldFollowerThrottle`), and if nothing is left,
        // wait a backoff (Kafka's fetcher waits `replica.fetch.backoff.ms` too).
        if quota.is_exceeded(now_ms()) {
            let before = fetchable.len();
            fetchable.retain(|(_, t)| !is_throttled(&t.partition));
            if fetchable.is_empty() && before > 0 {
                tokio::select! {
                    _ = shared.changed.notified() => {}
                    _ = tokio::time::sleep(config.backoff.max(Duration::from_millis(100))) => {}
                }
                continue;
            }
        }
        if fetchable.is_empty() {
            continue;
        }
        let version = match client
            .negotiate(ApiKey::Fetch, FETCH_VERSIONS.0, FETCH_VERSIONS.1)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                back_off_all(&name, &shared, &fetchable, &config, &e.to_string()).await;
                continue;
            }
        };
        let request = fetch_request(version, &fetchable, &config);
        let response = match client.send(version, &request).await {
            Ok(r) if r.error_code == 0 => r,
            Ok(r) => {
                let reason = format!("error code {}", r.error_code);
                back_off_all(&name, &shared, &fetchable, &config, &reason).await;
                continue;
            }
            Err(e) => {
                back_off_all(&name, &shared, &fetchable, &config, &e.to_string()).await;
                continue;
            }
        };
        let mut answers: Vec<((Uuid, i32), FetchTarget, PartitionData)> = Vec::new();
        let by_name: HashMap<String, Uuid> = fetchable
            .iter()
            .map(|((id, _), t)| (t.partition.topic.clone(), *id))
            .collect();
        let mut targets: HashMap<(Uuid, i32), FetchTarget> = fetchable.into_iter().collect();
        for topic in response.responses {
            let topic_id = if version >= 13 {
                Some(topic.topic_id)
            } else {
                by_name.get(topic.topic.as_str()).copied()
            };
            let Some(topic_id) = topic_id else { continue };
            for data in topic.partitions {
                let key = (topic_id, data.partition_index);
                if let Some(target) = targets.remove(&key) {
                    answers.push((key, target, data));
                }
            }
        }
        let throttled_bytes: usize = answers
            .iter()
            .filter(|(_, t, _)| is_throttled(&t.partition))
            .map(|(_, _, d)| d.records.as_ref().map_or(0, Bytes::len))
            .sum();
        quota.record(throttled_bytes as u64, now_ms());
        // File writes run on the blocking pool; the next round waits for them.
        let config_for_writes = config.clone();
        let name_for_writes = name.clone();
        let written = tokio::task::spawn_blocking(move || {
            answers
                .into_iter()
                .map(|(key, target, data)| {
                    let outcome =
                        process_partition(&name_for_writes, &target, data, &config_for_writes);
                    (key, target, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await;
        match written {
            Ok(outcomes) => {
                for (key, target, outcome) in outcomes {
                    settle(&shared, &key, &target, outcome, &config);
                }
            }
            Err(e) => tracing::error!("{name} Processing a fetch response failed: {e}"),
        }
    }
}

/// Whether fetching `partition` counts against the follower throttle: throttled here
/// and not in sync (the ISR's own replication is never slowed).
fn is_throttled(partition: &Partition) -> bool {
    partition.throttles.follower() && !partition.is_in_sync_here()
}

/// Back every fetched partition off after a failed request (Kafka's
/// `handlePartitionsWithErrors` for a whole request), and wait the backoff.
async fn back_off_all(
    name: &str,
    shared: &FetcherShared,
    fetched: &[((Uuid, i32), FetchTarget)],
    config: &FetcherConfig,
    reason: &str,
) {
    tracing::info!("{name} Error sending fetch request to the leader: {reason}");
    for (key, target) in fetched {
        settle(shared, key, target, Outcome::Delay, config);
    }
}

/// Record the outcome for a partition that is still followed at the same epoch.
fn settle(
    shared: &FetcherShared,
    key: &(Uuid, i32),
    target: &FetchTarget,
    outcome: Outcome,
    config: &FetcherConfig,
) {
    let mut partitions = shared.partitions.lock();
    let Some(current) = partitions.get_mut(key) else {
        return;
    };
    if current.leader_epoch != target.leader_epoch {
        return;
    }
    match outcome {
        Outcome::Fetched => {
            current.delayed_until = None;
            current.out_of_range = false;
        }
        Outcome::Delay => current.delayed_until = Some(Instant::now() + config.backoff),
        Outcome::OutOfRange => current.out_of_range = true,
    }
}

fn fetch_request(
    version: i16,
    targets: &[((Uuid, i32), FetchTarget)],
    config: &FetcherConfig,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic_id, index), target) in targets {
        let (fetch_offset, last_fetched_epoch) = target.partition.follower_fetch_position();
        let partition = FetchPartition::default()
            .with_partition(*index)
            .with_current_leader_epoch(target.leader_epoch)
            .with_fetch_offset(fetch_offset)
            .with_last_fetched_epoch(last_fetched_epoch)
            .with_log_start_offset(target.partition.log_start_offset())
            .with_partition_max_bytes(config.max_partition_bytes);
        let same_topic = topics.last().is_some_and(|t| {
            if version >= 13 {
                t.topic_id == *topic_id
            } else {
                t.topic.as_str() == target.partition.topic
            }
        });
        if !same_topic {
            let mut t = FetchTopic::default();
            if version >= 13 {
                t = t.with_topic_id(*topic_id);
            } else {
                t = t.with_topic(TopicName(StrBytes::from_string(
                    target.partition.topic.clone(),
                )));
            }
            topics.push(t);
        }
        topics
            .last_mut()
            .expect("pushed above")
            .partitions
            .push(partition);
    }
    let mut request = FetchRequest::default()
        .with_max_wait_ms(config.max_wait_ms)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_response_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    if version >= 15 {
        request = request.with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(config.node_id))
                .with_replica_epoch(-1),
        );
    } else {
        request = request.with_replica_id(BrokerId(config.node_id));
    }
    request
}

/// Apply one partition's answer (blocking: appends and truncations write files).
fn process_partition(
    name: &str,
    target: &FetchTarget,
    data: PartitionData,
    config: &FetcherConfig,
) -> Outcome {
    let partition = &target.partition;
    let epoch = target.leader_epoch;
    let code = data.error_code;
    if code == ResponseError::OffsetOutOfRange.code() {
        return Outcome::OutOfRange;
    }
    if code != 0 {
        let known = [
            ResponseError::NotLeaderOrFollower.code(),
            ResponseError::FencedLeaderEpoch.code(),
            ResponseError::UnknownLeaderEpoch.code(),
            ResponseError::UnknownTopicOrPartition.code(),
            ResponseError::UnknownTopicId.code(),
        ];
        if known.contains(&code) {
            tracing::debug!(
                "{name} Partition {} answered error {code}; retrying after {:?}",
                partition.name(),
                config.backoff
            );
        } else {
            tracing::warn!(
                "{name} Error in fetch for partition {}: error code {code}",
                partition.name()
            );
        }
        return Outcome::Delay;
    }
    let result = if data.diverging_epoch.epoch >= 0 {
        truncate_on_divergence(
            name,
            target,
            data.diverging_epoch.epoch,
            data.diverging_epoch.end_offset,
        )
    } else {
        let records = data.records.unwrap_or_default();
        let whole = whole_batches(&records);
        partition
            .append_as_follower(
                epoch,
                &records[..whole],
                data.high_watermark,
                data.log_start_offset,
            )
            .and_then(|plan| match plan {
                Some(plan) => partition
                    .complete_flush(plan)
                    .map(drop)
                    .map_err(FollowerWriteError::from),
                None => Ok(()),
            })
    };
    match result {
        Ok(()) => Outcome::Fetched,
        // Moved on while the fetch was out: the metadata publisher has re-pointed it.
        Err(FollowerWriteError::NotFollowing { .. }) => Outcome::Delay,
        Err(FollowerWriteError::Log(e)) => {
            tracing::error!(
                "{name} Unexpected error occurred while processing data for partition {}: {e}",
                partition.name()
            );
            Outcome::Delay
        }
    }
}

/// The length of the whole batches at the start of `records` (a leader may end a
/// response with part of a batch, which the next fetch brings whole).
fn whole_batches(records: &Bytes) -> usize {
    let mut at = 0;
    while let Some(Ok(size)) = batch_size_at(&records[at..]) {
        if at + size > records.len() {
            break;
        }
        at += size;
    }
    at
}

/// The leader says this log diverged at `leader_epoch`, which ends at `leader_end` on
/// the leader: truncate to where both logs agree (Kafka's `getOffsetTruncationState`).
/// When this log does not know that epoch, it truncates to the end of the largest
/// epoch below it and the next fetch checks again.
fn truncate_on_divergence(
    name: &str,
    target: &FetchTarget,
    leader_epoch: i32,
    leader_end: i64,
) -> Result<(), FollowerWriteError> {
    let partition = &target.partition;
    let log_end = partition.log_end_offset();
    let (follower_epoch, follower_end) = partition.end_offset_for_epoch(leader_epoch);
    let offset = if follower_end < 0 {
        leader_end.min(log_end)
    } else if follower_epoch == leader_epoch {
        follower_end.min(leader_end).min(log_end)
    } else {
        follower_end.min(log_end)
    };
    tracing::info!(
        "{name} Truncating partition {} with TruncationState(offset={offset}, completed={}) due to leader epoch and offset EpochEndOffset(epoch={leader_epoch}, endOffset={leader_end})",
        partition.name(),
        follower_epoch == leader_epoch || follower_end < 0
    );
    partition.truncate_to(target.leader_epoch, offset)
}

/// OFFSET_OUT_OF_RANGE: ask the leader for its log end and start (as a replica, so the
/// end is its log end) and move this log into its range (Kafka's
/// `fetchOffsetAndTruncate`).
async fn reset_out_of_range(
    name: &str,
    client: &NodeClient,
    target: &FetchTarget,
    config: &FetcherConfig,
) -> Outcome {
    let latest = leader_offset(client, target, config, LATEST_TIMESTAMP).await;
    let earliest = leader_offset(client, target, config, EARLIEST_TIMESTAMP).await;
    let (Some(leader_end), Some(leader_start)) = (latest, earliest) else {
        return Outcome::Delay;
    };
    let partition = target.partition.clone();
    let epoch = target.leader_epoch;
    let name = name.to_string();
    let done = tokio::task::spawn_blocking(move || {
        let log_end = partition.log_end_offset();
        if leader_end < log_end {
            tracing::warn!(
                "{name} Reset fetch offset for partition {} from {log_end} to current leader's latest offset {leader_end}",
                partition.name()
            );
            partition.truncate_to(epoch, leader_end)
        } else if leader_start > log_end {
            tracing::info!(
                "{name} Reset fetch offset for partition {} from {log_end} to current leader's start offset {leader_start}",
                partition.name()
            );
            partition.truncate_fully_and_start_at(epoch, leader_start)
        } else {
            Ok(())
        }
    })
    .await;
    match done {
        Ok(Ok(())) => Outcome::Fetched,
        _ => Outcome::Delay,
    }
}

/// ListOffsets on the leader for one partition, as replica `config.node_id`.
async fn leader_offset(
    client: &NodeClient,
    target: &FetchTarget,
    config: &FetcherConfig,
    timestamp: i64,
) -> Option<i64> {
    let p = &target.partition;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(config.node_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(p.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(p.index)
                .with_current_leader_epoch(target.leader_epoch)
                .with_timestamp(timestamp)])]);
    let (_, response) = client
        .send_negotiated(LIST_OFFSETS_VERSIONS.0, LIST_OFFSETS_VERSIONS.1, &request)
        .await
        .ok()?;
    let answer = response.topics.first()?.partitions.first()?;
    (answer.error_code == 0).then_some(answer.offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{FetchIsolation, LeaderAndIsr, PartitionConfig};
    use crate::ReplicaManager;
    use kafka_protocol::messages::fetch_response::EpochEndOffset;
    use ottla_protocol::compression::Compression;
    use ottla_protocol::records::{build_record_batch, Record};

    const TOPIC: &str = "t";

    /// Broker `id`'s replica of partition 0 with `leader` at `epoch`, replicas [1, 2].
    fn replica(
        dir: &std::path::Path,
        topic_id: Uuid,
        id: i32,
        leader: i32,
        epoch: i32,
    ) -> (ReplicaManager, Arc<Partition>) {
        let replicas = ReplicaManager::open(vec![dir.to_path_buf()]).unwrap();
        let p = replicas
            .ensure_partition(
                TOPIC,
                topic_id,
                0,
                PartitionConfig::default(),
                registration(id, leader, epoch),
            )
            .unwrap();
        (replicas, p)
    }

    fn registration(id: i32, leader: i32, epoch: i32) -> LeaderAndIsr {
        LeaderAndIsr {
            local_id: id,
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        }
    }

    fn append(leader: &Partition, value: &str) {
        let r = Record {
            offset: 0,
            timestamp: ottla_log::now_ms(),
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        };
        leader
            .append_as_leader(build_record_batch(&[r], Compression::None, -1, -1, -1), 1)
            .unwrap();
    }

    /// One fetch round of `follower` (broker `id`) from `leader`, as the leader's Fetch
    /// handler and this fetcher would run it.
    fn fetch_round(leader: &Partition, follower: &Arc<Partition>, id: i32) -> Outcome {
        let target = FetchTarget {
            partition: follower.clone(),
            leader_epoch: follower.leader_epoch(),
            delayed_until: None,
            out_of_range: false,
        };
        let (offset, last_epoch) = follower.follower_fetch_position();
        let mut data = PartitionData::default();
        if let Some((epoch, end_offset)) = leader.diverging_epoch(offset, last_epoch) {
            data = data.with_diverging_epoch(
                EpochEndOffset::default()
                    .with_epoch(epoch)
                    .with_end_offset(end_offset),
            );
        } else {
            let read = leader
                .read(offset, 1 << 20, FetchIsolation::LogEnd, true)
                .unwrap();
            leader.update_follower_fetch_state(id, offset, ottla_log::now_ms());
            data = data
                .with_records(Some(read.records.to_bytes().unwrap()))
                .with_high_watermark(leader.high_watermark());
        }
        process_partition("[test]", &target, data, &FetcherConfig::new(id))
    }

    fn values(p: &Partition) -> Vec<String> {
        let read = p.read(0, 1 << 20, FetchIsolation::LogEnd, true).unwrap();
        let bytes = read.records.to_bytes().unwrap();
        let mut out = Vec::new();
        for batch in ottla_protocol::batch::BatchIter::new(&bytes) {
            let batch = batch.unwrap();
            for r in ottla_protocol::records::decode_records(&batch, 1 << 20).unwrap() {
                out.push(String::from_utf8(r.value.unwrap()).unwrap());
            }
        }
        out
    }

    #[test]
    fn a_follower_copies_the_leader_and_the_high_watermark_follows_it() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = Uuid::new_v4();
        let (_m1, leader) = replica(d1.path(), id, 1, 1, 0);
        let (_m2, follower) = replica(d2.path(), id, 2, 1, 0);
        append(&leader, "a");
        append(&leader, "b");
        assert_eq!(
            leader.high_watermark(),
            0,
            "follower 2 is in the ISR and has nothing"
        );
        assert!(matches!(
            fetch_round(&leader, &follower, 2),
            Outcome::Fetched
        ));
        assert_eq!(follower.log_end_offset(), 2);
        assert_eq!(
            follower.high_watermark(),
            0,
            "the leader's high watermark at the fetch"
        );
        assert_eq!(
            leader.high_watermark(),
            0,
            "the fetch at 0 proves nothing yet"
        );
        fetch_round(&leader, &follower, 2);
        assert_eq!(
            leader.high_watermark(),
            2,
            "the fetch at 2 proves the follower has 0..2"
        );
        assert_eq!(follower.high_watermark(), 2);
        assert_eq!(values(&follower), ["a", "b"]);
        assert_eq!(
            follower.epoch_for_offset(1),
            Some(0),
            "the leader's epoch, kept"
        );
        assert!(
            follower
                .append_as_leader(build_record_batch(&[], Compression::None, -1, -1, -1), 1)
                .is_err(),
            "a follower refuses produce"
        );
    }

    /// KIP-101/279: broker 1 led at epoch 0 and wrote c, d that broker 2 never copied;
    /// broker 2 became leader at epoch 1 and wrote x, y at the same offsets. When 1
    /// returns as a follower it truncates its divergent tail and copies 2's log.
    #[test]
    fn a_returning_leader_truncates_its_divergent_tail() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = Uuid::new_v4();
        let (_m1, one) = replica(d1.path(), id, 1, 1, 0);
        let (_m2, two) = replica(d2.path(), id, 2, 1, 0);
        append(&one, "a");
        append(&one, "b");
        fetch_round(&one, &two, 2);
        append(&one, "c");
        append(&one, "d");
        // Broker 1 is lost; 2 leads at epoch 1.
        assert_eq!(
            two.apply_leader_and_isr(&registration(2, 2, 1)),
            crate::RoleChange::BecameLeader
        );
        append(&two, "x");
        append(&two, "y");
        assert_eq!(
            one.apply_leader_and_isr(&registration(1, 2, 1)),
            crate::RoleChange::BecameFollower { leader: 2 }
        );
        assert_eq!(one.follower_fetch_position(), (4, 0));
        assert!(matches!(fetch_round(&two, &one, 1), Outcome::Fetched));
        assert_eq!(one.log_end_offset(), 2, "c and d are gone");
        fetch_round(&two, &one, 1);
        assert_eq!(values(&one), ["a", "b", "x", "y"]);
        assert_eq!(one.epoch_for_offset(2), Some(1));
        assert_eq!(values(&one), values(&two));
    }

    #[test]
    fn an_answer_from_an_older_leadership_changes_nothing() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = Uuid::new_v4();
        let (_m1, leader) = replica(d1.path(), id, 1, 1, 0);
        let (_m2, follower) = replica(d2.path(), id, 2, 1, 0);
        append(&leader, "a");
        let stale = FetchTarget {
            partition: follower.clone(),
            leader_epoch: 0,
            delayed_until: None,
            out_of_range: false,
        };
        follower.apply_leader_and_isr(&registration(2, 2, 1));
        let read = leader
            .read(0, 1 << 20, FetchIsolation::LogEnd, true)
            .unwrap();
        let data = PartitionData::default()
            .with_records(Some(read.records.to_bytes().unwrap()))
            .with_high_watermark(1);
        assert!(matches!(
            process_partition("[test]", &stale, data, &FetcherConfig::new(2)),
            Outcome::Delay
        ));
        assert_eq!(
            follower.log_end_offset(),
            0,
            "it leads now: the late answer is dropped"
        );
    }

    #[test]
    fn only_whole_batches_are_appended() {
        let r = Record {
            offset: 0,
            timestamp: 1,
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
        };
        let batch = build_record_batch(&[r], Compression::None, -1, -1, -1);
        let mut two = batch.clone();
        two.extend_from_slice(&batch);
        assert_eq!(whole_batches(&Bytes::from(two.clone())), two.len());
        let cut = Bytes::from(two[..two.len() - 3].to_vec());
        assert_eq!(whole_batches(&cut), batch.len());
        assert_eq!(whole_batches(&Bytes::new()), 0);
    }
}
