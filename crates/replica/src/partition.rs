//! One hosted partition: its log plus the replication state Kafka keeps beside it
//! (leader epoch, ISR, high watermark), and the leader-side validation rules of
//! Kafka's `LogValidator` that can be decided from the batch header.

use std::path::PathBuf;
use std::sync::Arc;

use ottla_log::cleaner::{CleanedLog, CleaningPlan};
use ottla_log::{FlushPlan, FlushReason, Log, LogConfig, LogError, LogSlices};

use crate::isr::{IsrChange, LeaderReplication, DEFAULT_REPLICA_LAG_TIME_MAX_MS};
use crate::quota::PartitionThrottles;
use ottla_protocol::batch::{RecordBatch, RecordBatchMut};
use ottla_protocol::control::{build_end_txn_marker, ControlRecordType};
use ottla_protocol::records::{check_uncompressed_framing, scan_records};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

/// What clients moved through a partition (Kafka's `BrokerTopicMetrics`): plain atomic
/// counters, bumped by the produce and fetch handlers without any lock, read when the
/// metrics are scraped.
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    /// Records appended by producers (`MessagesInPerSec`).
    pub messages_in: std::sync::atomic::AtomicU64,
    /// Bytes of record batches appended by producers (`BytesInPerSec`).
    pub bytes_in: std::sync::atomic::AtomicU64,
    /// Bytes of records sent to consumers, followers excluded (`BytesOutPerSec`).
    pub bytes_out: std::sync::atomic::AtomicU64,
}

/// Topic configs that matter to the leader, already parsed and defaulted by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionConfig {
    pub log: LogConfig,
    /// `max.message.bytes`: largest batch accepted, as sent.
    pub max_message_bytes: usize,
    /// `min.insync.replicas`: checked for acks=all.
    pub min_insync_replicas: usize,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime may be.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `compact`: every record needs a key.
    pub compacted: bool,
    /// `cleanup.policy` contains `delete`: DeleteRecords may move the log start.
    pub delete_policy: bool,
    /// The broker's `replica.lag.time.max.ms`: how long a follower may go without
    /// catching up before the leader drops it from the ISR.
    pub replica_lag_time_max_ms: i64,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            log: LogConfig::default(),
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
            log_append_time: false,
            timestamp_after_max_ms: 3_600_000,
            compacted: false,
            delete_policy: true,
            replica_lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
        }
    }
}

/// A partition's leadership and replicas as the controller last committed them, seen
/// from this broker (Kafka's `PartitionRegistration` with the local broker id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    /// This broker's node id.
    pub local_id: i32,
    /// The leader's node id; -1 when the partition has none (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by the controller on every change of the partition (ISR included); an
    /// AlterPartition names the one it builds on (Kafka's `partitionEpoch`).
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl LeaderAndIsr {
    pub fn is_local_leader(&self) -> bool {
        self.leader == self.local_id
    }
}

/// What [`Partition::apply_leader_and_isr`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Same role at the same epochs, or an older registration (ignored).
    Unchanged,
    /// This broker leads from now on, at a new leader epoch.
    BecameLeader,
    /// This broker follows `leader` (-1: no leader yet) at a new leader epoch.
    BecameFollower { leader: i32 },
    /// Still leader at the same epoch; the controller committed a new ISR.
    IsrUpdated,
}

/// An ISR the leader asks the controller to commit (Kafka's AlterPartition request for
/// one partition): built on `partition_epoch`, refused if the partition moved on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// When a rule needs a compressed batch's records, it may decompress to at most this
/// many times `max.message.bytes` (real data compresses 2-10x; a batch that expands
/// further is refused rather than allowed to cost memory out of proportion).
pub const DECOMPRESSION_RATIO_LIMIT: usize = 64;

/// Why DeleteRecords refused a partition, with Kafka's codes.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsError {
    #[error("this broker does not lead the partition")]
    NotLeaderOrFollower,
    #[error("{0}")]
    OffsetOutOfRange(String),
    #[error("{0}")]
    PolicyViolation(String),
    #[error("{0}")]
    Log(#[from] LogError),
}

impl DeleteRecordsError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            DeleteRecordsError::NotLeaderOrFollower => 6,
            DeleteRecordsError::OffsetOutOfRange(_) => 1,
            DeleteRecordsError::PolicyViolation(_) => 44,
            DeleteRecordsError::Log(e) => e.kafka_error_code(),
        }
    }
}

/// Why a produce to this partition failed; each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("{0}")]
    InvalidBatch(#[from] ottla_protocol::batch::BatchError),
    #[error("batch of {size} bytes exceeds max.message.bytes {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("timestamp {timestamp} is more than {limit_ms} ms in the future")]
    InvalidTimestamp { timestamp: i64, limit_ms: i64 },
    #[error("compacted topic cannot accept a record without a key")]
    MissingKeyOnCompactedTopic,
    #[error("records are invalid: {0}")]
    InvalidRecords(String),
    #[error("control batches cannot be produced by clients")]
    ControlBatch,
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas {min}")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("{isr} in-sync replicas after the append, fewer than min.insync.replicas {min}")]
    NotEnoughReplicasAfterAppend { isr: usize, min: usize },
    #[error("this broker is not the leader of the partition")]
    NotLeaderOrFollower,
    #[error("the in-sync replicas did not acknowledge within {0} ms")]
    ReplicationTimedOut(u64),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl ProduceError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ProduceError::InvalidBatch(e) => e.kafka_error_code(),
            ProduceError::MessageTooLarge { .. } => 10,
            ProduceError::InvalidTimestamp { .. } => 32,
            ProduceError::MissingKeyOnCompactedTopic
            | ProduceError::InvalidRecords(_)
            | ProduceError::ControlBatch => 87,
            ProduceError::NotEnoughReplicas { .. } => 19,
            ProduceError::NotEnoughReplicasAfterAppend { .. } => 20,
            ProduceError::NotLeaderOrFollower => 6,
            // Kafka's delayed produce expires with REQUEST_TIMED_OUT.
            ProduceError::ReplicationTimedOut(_) => 7,
            ProduceError::Log(e) => e.kafka_error_code(),
        }
    }
}

/// Why a follower's write (an append or a truncation) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FollowerWriteError {
    /// The partition moved on (this broker leads now, or follows at another epoch).
    #[error("not a follower at that leader epoch (now at {leader_epoch})")]
    NotFollowing { leader_epoch: i32 },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Result of a successful append, as the Produce response reports it.
#[derive(Debug, Clone, Copy)]
pub struct ProduceResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// A successful append, and any flush it calls for, to complete on a thread that may
/// block.
#[derive(Debug)]
pub struct Appended {
    pub result: ProduceResult,
    /// The leader epoch the batch was appended at: an acks=all wait ends with
    /// NOT_LEADER_OR_FOLLOWER once the partition has moved past it.
    pub leader_epoch: i32,
    /// The topic's `flush.messages` is reached: complete it with
    /// [`Partition::complete_policy_flush`], then acknowledge.
    pub flush: Option<PolicyFlush>,
    /// The append rolled a segment, or `flush.ms` has passed: complete this soon
    /// ([`Partition::complete_flush`]), with no one waiting (Kafka schedules both
    /// flushes), so a crash never has to scan more than about a segment.
    pub background_flush: Option<FlushPlan>,
}

/// A flush a topic's policy wants before an append is acknowledged. Until it completes,
/// the appended records stay above the high watermark: Kafka flushes inside the append,
/// before it moves the high watermark, so no consumer reads a record the policy
/// promised to fsync first and a crash could still lose.
#[derive(Debug)]
#[must_use = "the append's records stay invisible until the flush completes"]
pub struct PolicyFlush {
    plan: FlushPlan,
    /// The appended batch's first offset, which the high watermark may not pass until
    /// the plan is synced; none for a duplicate, which appended nothing.
    hold: Option<i64>,
}

/// Which data a reader may see: read_uncommitted consumers stop at the high watermark,
/// read_committed ones at the last stable offset, follower replicas read up to the log
/// end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    HighWatermark,
    TxnCommitted,
    LogEnd,
}

/// Who is appending (Kafka's `AppendOrigin`): only the broker's coordinators may write
/// control batches (transaction markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, as slices of the segment files (nothing is read yet).
    pub records: LogSlices,
    pub high_watermark: i64,
    /// The high watermark, or the first offset of the oldest open transaction if lower.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// For read_committed reads: the aborted transactions overlapping what was read.
    pub aborted: Vec<ottla_log::AbortedTxn>,
}

/// This broker's role in the partition, under one lock with the epochs that decide it.
#[derive(Debug)]
struct ReplicaState {
    /// The current leader (-1: none).
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    /// The leader's view of its followers; `None` while this broker follows.
    leading: Option<LeaderReplication>,
    /// Whether the controller's last registration has this broker in the ISR (what a
    /// follower knows of its own standing: only out-of-sync replicas are throttled).
    in_registered_isr: bool,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    /// Kafka's BrokerTopicMetrics for this partition, summed per topic when scraped.
    pub traffic: PartitionTraffic,
    /// This broker's node id.
    local_id: i32,
    log: RwLock<Log>,
    /// The role, the followers' progress, the ISR and the high watermark they allow.
    /// Taken after `log` and before `flush_holds` when several are.
    state: Mutex<ReplicaState>,
    /// Swapped whole when the topic's configs change (IncrementalAlterConfigs).
    config: RwLock<Arc<PartitionConfig>>,
    /// Publishes the high watermark; delayed fetches and acks=all produces wait on it.
    high_watermark: watch::Sender<i64>,
    /// Publishes the log end offset: a follower's delayed fetch waits on it (new data
    /// moves the log end, not the high watermark, which the followers move).
    log_end: watch::Sender<i64>,
    /// Publishes (leader, leader epoch): an acks=all produce stops waiting once this
    /// broker no longer leads at the epoch it appended at.
    leadership: watch::Sender<(i32, i32)>,
    /// The holds of [`PolicyFlush`]es still running: the high watermark stays at or
    /// below the lowest. A failed flush keeps its hold; its log takes no more writes.
    /// Taken after `log` when both are.
    flush_holds: Mutex<Vec<i64>>,
    /// Whether replication of this partition to or from this broker is throttled
    /// (`leader/follower.replication.throttled.replicas`).
    pub throttles: PartitionThrottles,
}

pub use ottla_log::now_ms;

impl Partition {
    pub(crate) fn new(
        topic: String,
        topic_id: Uuid,
        index: i32,
        log: Log,
        config: PartitionConfig,
        registration: LeaderAndIsr,
        checkpointed_high_watermark: i64,
    ) -> Partition {
        let log_end = log.log_end_offset();
        let hw = checkpointed_high_watermark.clamp(log.log_start_offset(), log_end);
        let leading = registration
            .is_local_leader()
            .then(|| leader_replication(&registration, &config, log_end, hw));
        // A leader alone in its ISR starts at its log end; one with followers (and a
        // follower) at the checkpoint until the followers (the leader) report in.
        let hw = leading
            .as_ref()
            .map_or(hw, LeaderReplication::high_watermark);
        Partition {
            topic,
            topic_id,
            index,
            traffic: PartitionTraffic::default(),
            local_id: registration.local_id,
            log: RwLock::new(log),
            state: Mutex::new(ReplicaState {
                leader: registration.leader,
                leader_epoch: registration.leader_epoch,
                partition_epoch: registration.partition_epoch,
                leading,
                in_registered_isr: registration.isr.contains(&registration.local_id),
            }),
            config: RwLock::new(Arc::new(config)),
            high_watermark: watch::channel(hw).0,
            log_end: watch::channel(log_end).0,
            leadership: watch::channel((registration.leader, registration.leader_epoch)).0,
            flush_holds: Mutex::new(Vec::new()),
            throttles: PartitionThrottles::default(),
        }
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }
    /// The settings this partition runs with now.
    pub fn config(&self) -> Arc<PartitionConfig> {
        self.config.read().clone()
    }
    /// Apply changed topic configs to the running partition (retention, segment size,
    /// max.message.bytes, min.insync.replicas, ...): the next append, roll, flush or
    /// retention check uses them; nothing already written changes.
    pub fn update_config(&self, config: PartitionConfig) {
        if **self.config.read() == config {
            return;
        }
        self.log.write().set_config(config.log.clone());
        *self.config.write() = Arc::new(config);
        tracing::info!(
            "[Partition {} broker={}] Updated its configs",
            self.name(),
            self.local_id
        );
    }
    pub fn dir(&self) -> PathBuf {
        self.log.read().dir().to_path_buf()
    }
    pub fn leader_epoch(&self) -> i32 {
        self.state.lock().leader_epoch
    }
    /// The current leader's node id (-1: none).
    pub fn leader(&self) -> i32 {
        self.state.lock().leader
    }
    pub fn is_leader(&self) -> bool {
        self.state.lock().leading.is_some()
    }
    /// The log end offset a follower last proved (leader only; `None` for a broker
    /// that is not a follower here or has not fetched yet).
    pub fn follower_log_end(&self, replica: i32) -> Option<i64> {
        let state = self.state.lock();
        let follower = state.leading.as_ref()?.follower(replica)?;
        (follower.log_end_offset >= 0).then_some(follower.log_end_offset)
    }
    /// Whether the controller's latest registration counts this broker in sync.
    pub fn is_in_sync_here(&self) -> bool {
        self.state.lock().in_registered_isr
    }
    /// The committed ISR as this broker knows it (the leader's, or empty on a follower).
    pub fn isr(&self) -> Vec<i32> {
        self.state
            .lock()
            .leading
            .as_ref()
            .map(|l| l.isr().iter().copied().collect())
            .unwrap_or_default()
    }
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log.read().log_start_offset()
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log.read().log_end_offset()
    }
    /// Offsets below this are known to be on disk (the log's recovery point).
    pub fn recovery_point(&self) -> i64 {
        self.log.read().recovery_point()
    }
    /// Bytes of the partition's segments (DescribeLogDirs).
    pub fn size_bytes(&self) -> u64 {
        self.log.read().size_bytes()
    }
    /// The log's first dirty offset if it is compacted (`cleaner-offset-checkpoint`).
    pub fn cleaner_checkpoint(&self) -> Option<i64> {
        self.log.read().cleaner_checkpoint()
    }
    /// Close the segment files not used since the previous sweep (under the read
    /// lock: fetches go on meanwhile); returns how many were closed.
    pub fn close_idle_files(&self) -> usize {
        self.log.read().close_idle_files()
    }
    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }
    /// A receiver that changes whenever the log end offset moves.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// Apply the controller's latest registration of this partition (Kafka's
    /// `Partition.makeLeader` / `makeFollower`). An older leader epoch, or an older
    /// partition epoch at the same leader epoch, changes nothing.
    pub fn apply_leader_and_isr(&self, registration: &LeaderAndIsr) -> RoleChange {
        let log = self.log.read();
        let mut state = self.state.lock();
        let newer_leader_epoch = registration.leader_epoch > state.leader_epoch;
        let same_leader_epoch = registration.leader_epoch == state.leader_epoch;
        if !(newer_leader_epoch
            || same_leader_epoch && registration.partition_epoch > state.partition_epoch
            || same_leader_epoch && registration.is_local_leader() != state.leading.is_some())
        {
            return RoleChange::Unchanged;
        }
        state.partition_epoch = registration.partition_epoch;
        state.in_registered_isr = registration.isr.contains(&self.local_id);
        let log_end = log.log_end_offset();
        let change = if registration.is_local_leader() {
            match state.leading.as_mut() {
                Some(leading) if same_leader_epoch => {
                    leading.apply_committed_isr(&registration.replicas, &registration.isr, log_end);
                    RoleChange::IsrUpdated
                }
                _ => {
                    let hw = self.high_watermark().min(log_end);
                    state.leading = Some(leader_replication(
                        registration,
                        &self.config(),
                        log_end,
                        hw,
                    ));
                    RoleChange::BecameLeader
                }
            }
        } else {
            state.leading = None;
            RoleChange::BecameFollower {
                leader: registration.leader,
            }
        };
        state.leader = registration.leader;
        state.leader_epoch = registration.leader_epoch;
        if let Some(leading) = &state.leading {
            let holds = self.flush_holds.lock();
            self.publish_high_watermark(leading.high_watermark(), &holds);
        }
        self.leadership
            .send_replace((registration.leader, registration.leader_epoch));
        match change {
            RoleChange::BecameLeader => tracing::info!(
                "[Partition {} broker={}] Leader {} with topic id {} starts at leader epoch {} from offset {log_end} with partition epoch {}, high watermark {}, ISR {:?}, replicas {:?}",
                self.name(),
                self.local_id,
                self.name(),
                self.topic_id,
                registration.leader_epoch,
                registration.partition_epoch,
                self.high_watermark(),
                registration.isr,
                registration.replicas
            ),
            RoleChange::BecameFollower { leader } => tracing::info!(
                "[Partition {} broker={}] Follower {} starts at leader epoch {} from offset {log_end} with partition epoch {} and high watermark {}. Current leader is {leader}.",
                self.name(),
                self.local_id,
                self.name(),
                registration.leader_epoch,
                registration.partition_epoch,
                self.high_watermark()
            ),
            RoleChange::IsrUpdated => tracing::info!(
                "[Partition {} broker={}] ISR updated to {} and version updated to {}",
                self.name(),
                self.local_id,
                join_ids(&registration.isr),
                registration.partition_epoch
            ),
            RoleChange::Unchanged => {}
        }
        change
    }

    /// Validate and append one producer batch as leader. `required_acks` is the
    /// request's acks; -1 (all) enforces `min.insync.replicas`. Never waits for the
    /// disk while holding the log: a flush the policy asks for comes back in
    /// [`Appended::flush`].
    pub fn append_as_leader(
        &self,
        batch: Vec<u8>,
        required_acks: i16,
    ) -> Result<Appended, ProduceError> {
        self.append_from(batch, required_acks, AppendOrigin::Client)
    }

    /// Append a COMMIT or ABORT marker for `producer_id` as leader (WriteTxnMarkers),
    /// acks=all: the caller waits for the in-sync replicas before it answers.
    pub fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        marker: ControlRecordType,
    ) -> Result<Appended, ProduceError> {
        let batch = build_end_txn_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            marker,
            now_ms(),
        );
        self.append_from(batch, -1, AppendOrigin::Coordinator)
    }

    /// Validate and append one batch as leader, from a client or from one of the
    /// broker's coordinators (which may write control batches).
    pub fn append_from(
        &self,
        mut batch: Vec<u8>,
        required_acks: i16,
        origin: AppendOrigin,
    ) -> Result<Appended, ProduceError> {
        let config = self.config();
        let (leader_epoch, isr_size) = {
            let state = self.state.lock();
            let leading = state
                .leading
                .as_ref()
                .ok_or(ProduceError::NotLeaderOrFollower)?;
            (state.leader_epoch, leading.isr().len())
        };
        if required_acks == -1 && isr_size < config.min_insync_replicas {
            return Err(ProduceError::NotEnoughReplicas {
                isr: isr_size,
                min: config.min_insync_replicas,
            });
        }
        let view = RecordBatch::new(&batch)?;
        if view.size() > config.max_message_bytes {
            return Err(ProduceError::MessageTooLarge {
                size: view.size(),
                limit: config.max_message_bytes,
            });
        }
        view.validate_for_append()?;
        if view.is_control() && origin == AppendOrigin::Client {
            return Err(ProduceError::ControlBatch);
        }
        check_uncompressed_framing(&view)
            .map_err(|e| ProduceError::InvalidRecords(e.to_string()))?;
        let now = now_ms();
        if !config.log_append_time && !view.is_log_append_time() {
            let max = view.max_timestamp();
            if max > now.saturating_add(config.timestamp_after_max_ms) {
                return Err(ProduceError::InvalidTimestamp {
                    timestamp: max,
                    limit_ms: config.timestamp_after_max_ms,
                });
            }
        }
        if config.compacted {
            // The only produce-path rule that needs the records themselves.
            let limit = config
                .max_message_bytes
                .saturating_mul(DECOMPRESSION_RATIO_LIMIT);
            let keyless = scan_records(&view, limit, |r| {
                if r.has_key {
                    std::ops::ControlFlow::Continue(())
                } else {
                    std::ops::ControlFlow::Break(())
                }
            })
            .map_err(|e| ProduceError::InvalidRecords(e.to_string()))?;
            if keyless.is_some() {
                return Err(ProduceError::MissingKeyOnCompactedTopic);
            }
        }
        let mut log_append_time = -1;
        if config.log_append_time {
            RecordBatchMut::new(&mut batch)?.set_log_append_time(now);
            log_append_time = now;
        }
        let (info, flush, hold) = {
            let mut log = self.log.write();
            let mut state = self.state.lock();
            // Leadership may have moved since the check above; the epoch stamped on the
            // batch must be the one this broker leads at.
            let leading = match state.leading.as_mut() {
                Some(leading) if leading.leader_epoch() == leader_epoch => leading,
                _ => return Err(ProduceError::NotLeaderOrFollower),
            };
            let info = match origin {
                AppendOrigin::Client => log.append_as_leader(&mut batch, leader_epoch)?,
                AppendOrigin::Coordinator => log.append_as_coordinator(&mut batch, leader_epoch)?,
            };
            let reason = log.flush_wanted(now);
            let plan = reason.map(|_| log.prepare_flush());
            let hold = (reason == Some(FlushReason::Policy) && !info.duplicate)
                .then_some(info.first_offset);
            // The high watermark follows the smallest log end of the ISR (at once when
            // the ISR is this broker alone), up to any policy flush still running.
            let log_end = log.log_end_offset();
            leading.on_leader_append(log_end);
            let mut holds = self.flush_holds.lock();
            holds.extend(hold);
            self.publish_high_watermark(leading.high_watermark(), &holds);
            self.log_end.send_replace(log_end);
            (info, reason.zip(plan), hold)
        };
        if info.duplicate {
            // Kafka answers a duplicate with the original batch's timestamp as its
            // log-append time (`UnifiedLog.append`), whatever the topic's timestamp type.
            log_append_time = info.max_timestamp;
        } else if origin == AppendOrigin::Client {
            use std::sync::atomic::Ordering::Relaxed;
            let records = (info.last_offset - info.first_offset + 1).max(0) as u64;
            self.traffic.messages_in.fetch_add(records, Relaxed);
            self.traffic.bytes_in.fetch_add(batch.len() as u64, Relaxed);
        }
        let (flush, background_flush) = match flush {
            Some((FlushReason::Policy, plan)) => (Some(PolicyFlush { plan, hold }), None),
            Some((FlushReason::Background, plan)) => (None, Some(plan)),
            None => (None, None),
        };
        Ok(Appended {
            leader_epoch,
            result: ProduceResult {
                base_offset: info.first_offset,
                last_offset: info.last_offset,
                log_append_time,
                log_start_offset: info.log_start_offset,
            },
            flush,
            background_flush,
        })
    }

    /// The leader epoch of the batch holding `offset` (Kafka's `epochForOffset`); none
    /// before the first recorded epoch.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.log.read().epoch_for_offset(offset)
    }

    /// The epoch of the last batch appended.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log.read().latest_epoch()
    }

    /// OffsetForLeaderEpoch: the largest epoch at most `epoch` that this log knows and
    /// the offset where it ends (the next epoch's first offset, or the log end for the
    /// latest); (-1, -1) when unknown (Kafka's `LeaderEpochFileCache.endOffsetFor`).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.read().end_offset_for_epoch(epoch)
    }

    /// Whether this broker leads and `replica` is one of its follower replicas: only a
    /// follower's fetch may read past the high watermark (to the log end).
    pub fn has_follower(&self, replica: i32) -> bool {
        self.state
            .lock()
            .leading
            .as_ref()
            .is_some_and(|l| l.follower(replica).is_some())
    }

    /// Record that `follower` fetched at `fetch_offset` at `now` (it holds everything
    /// below): the high watermark may move, and the follower may be due to join the
    /// ISR, which is returned for the controller to commit (AlterPartition).
    pub fn update_follower_fetch_state(
        &self,
        follower: i32,
        fetch_offset: i64,
        now: i64,
    ) -> Option<IsrProposal> {
        let log = self.log.read();
        let mut state = self.state.lock();
        let leading = state.leading.as_mut()?;
        let log_end = log.log_end_offset();
        let outcome = leading
            .on_follower_fetch(follower, fetch_offset, log_end, now)
            .ok()?;
        if outcome.high_watermark.is_some() {
            let hw = leading.high_watermark();
            let holds = self.flush_holds.lock();
            self.publish_high_watermark(hw, &holds);
        }
        let change = outcome.isr_change?;
        Some(self.propose(&state, &change, log_end))
    }

    /// The followers of the ISR that fell behind for longer than
    /// `replica.lag.time.max.ms`, as an ISR for the controller to commit (Kafka's
    /// `maybeShrinkIsr`, run every half lag time).
    pub fn maybe_shrink_isr(&self, now: i64) -> Option<IsrProposal> {
        let log = self.log.read();
        let mut state = self.state.lock();
        let log_end = log.log_end_offset();
        let change = state.leading.as_mut()?.maybe_shrink(now, log_end)?;
        Some(self.propose(&state, &change, log_end))
    }

    /// The controller refused (or never answered) `proposal`: if it is still the
    /// pending change, forget it, so the next fetch or shrink check proposes again.
    pub fn abandon_isr_proposal(&self, proposal: &IsrProposal) {
        let mut state = self.state.lock();
        if state.leader_epoch != proposal.leader_epoch {
            return;
        }
        if let Some(leading) = state.leading.as_mut() {
            let same = leading.pending().is_some_and(|p| {
                p.proposed_isr()
                    .iter()
                    .copied()
                    .eq(proposal.new_isr.iter().copied())
            });
            if same {
                leading.abandon_pending();
            }
        }
    }

    fn propose(&self, state: &ReplicaState, change: &IsrChange, log_end: i64) -> IsrProposal {
        let leading = state.leading.as_ref().expect("only a leader proposes");
        let from = join_ids(&leading.isr().iter().copied().collect::<Vec<_>>());
        let to: Vec<i32> = change.proposed_isr().iter().copied().collect();
        match change {
            IsrChange::Expand { follower, .. } => tracing::info!(
                "[Partition {} broker={}] Expanding ISR from {from} to {} (replica {follower} caught up)",
                self.name(),
                self.local_id,
                join_ids(&to)
            ),
            IsrChange::Shrink { out_of_sync, .. } => tracing::info!(
                "[Partition {} broker={}] Shrinking ISR from {from} to {}. Leader: (highWatermark: {}, endOffset: {log_end}). Out of sync replicas: {}.",
                self.name(),
                self.local_id,
                join_ids(&to),
                leading.high_watermark(),
                out_of_sync
                    .iter()
                    .map(|id| {
                        let f = leading.follower(*id);
                        format!(
                            "(brokerId: {id}, endOffset: {}, lastCaughtUpTimeMs: {})",
                            f.map_or(-1, |f| f.log_end_offset),
                            f.map_or(-1, |f| f.last_caught_up_ms)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        IsrProposal {
            topic_id: self.topic_id,
            partition: self.index,
            leader_id: self.local_id,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: to,
        }
    }

    /// Wait until the high watermark reaches `end` (acks=all), then check that the ISR
    /// still meets `min.insync.replicas` (Kafka's `DelayedProduce` and
    /// `checkEnoughReplicasReachOffset`). Ends with NOT_LEADER_OR_FOLLOWER once this
    /// broker stops leading at `leader_epoch`, and with a timeout after `timeout`.
    pub async fn wait_for_replication(
        &self,
        end: i64,
        leader_epoch: i32,
        timeout: std::time::Duration,
    ) -> Result<(), ProduceError> {
        let mut high_watermark = self.high_watermark.subscribe();
        let mut leadership = self.leadership.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *leadership.borrow_and_update() != (self.local_id, leader_epoch) {
                return Err(ProduceError::NotLeaderOrFollower);
            }
            if *high_watermark.borrow_and_update() >= end {
                let isr = self.isr().len();
                let min = self.config().min_insync_replicas;
                return if isr < min {
                    Err(ProduceError::NotEnoughReplicasAfterAppend { isr, min })
                } else {
                    Ok(())
                };
            }
            tokio::select! {
                _ = high_watermark.changed() => {}
                _ = leadership.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ProduceError::ReplicationTimedOut(timeout.as_millis() as u64));
                }
            }
        }
    }

    /// The fetch position of this follower: its log end offset and the epoch of its
    /// last batch (Fetch v12+ `last_fetched_epoch`, -1 when unknown).
    pub fn follower_fetch_position(&self) -> (i64, i32) {
        let log = self.log.read();
        (log.log_end_offset(), log.latest_epoch().unwrap_or(-1))
    }

    /// Whether this broker still follows at `leader_epoch`: a fetcher's answer from an
    /// older leadership must not touch the log.
    fn check_following(&self, leader_epoch: i32) -> Result<(), FollowerWriteError> {
        let state = self.state.lock();
        if state.leading.is_some() || state.leader_epoch != leader_epoch {
            return Err(FollowerWriteError::NotFollowing {
                leader_epoch: state.leader_epoch,
            });
        }
        Ok(())
    }

    /// Append batches fetched from the leader, offsets and epochs as the leader wrote
    /// them, then take the leader's high watermark (capped by this log's end). A flush
    /// the log's policy wants comes back to be completed off the log's lock.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        batches: &[u8],
        leader_high_watermark: i64,
        leader_log_start_offset: i64,
    ) -> Result<Option<FlushPlan>, FollowerWriteError> {
        let mut log = self.log.write();
        self.check_following(leader_epoch)?;
        if !batches.is_empty() {
            log.append_as_follower(batches)?;
        }
        // The leader's records below its start were deleted (DeleteRecords, retention):
        // so are this replica's (Kafka's LeaderOffsetIncremented).
        if leader_log_start_offset > log.log_start_offset() {
            log.increment_log_start_offset(leader_log_start_offset, "LeaderOffsetIncremented")?;
        }
        let log_end = log.log_end_offset();
        self.log_end.send_replace(log_end);
        let plan = log.flush_wanted(now_ms()).map(|_| log.prepare_flush());
        let state = self.state.lock();
        if state.leading.is_none() {
            let holds = self.flush_holds.lock();
            self.publish_high_watermark(leader_high_watermark.min(log_end), &holds);
        }
        Ok(plan)
    }

    /// Remove everything at and after `offset` (follower truncation by leader epoch,
    /// KIP-101/279). The high watermark never stays above the new log end.
    pub fn truncate_to(&self, leader_epoch: i32, offset: i64) -> Result<(), FollowerWriteError> {
        let mut log = self.log.write();
        self.check_following(leader_epoch)?;
        if offset >= log.log_end_offset() {
            return Ok(());
        }
        log.truncate_to(offset)?;
        self.after_truncation(&log);
        Ok(())
    }

    /// Empty the log and restart it at `offset` (the follower is below the leader's log
    /// start offset).
    pub fn truncate_fully_and_start_at(
        &self,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<(), FollowerWriteError> {
        let mut log = self.log.write();
        self.check_following(leader_epoch)?;
        log.truncate_fully_and_start_at(offset)?;
        self.after_truncation(&log);
        Ok(())
    }

    fn after_truncation(&self, log: &Log) {
        let log_end = log.log_end_offset();
        self.log_end.send_replace(log_end);
        self.high_watermark.send_if_modified(|hw| {
            if *hw > log_end {
                *hw = log_end;
                true
            } else {
                false
            }
        });
    }

    /// Fetch v12+: whether a follower that fetches at `fetch_offset` after a batch of
    /// `last_fetched_epoch` has diverged from this leader's log; if so the epoch and
    /// end offset it must truncate towards (Kafka's
    /// `validateFetchOffsetAndMaybeGetDivergingEpoch`).
    pub fn diverging_epoch(
        &self,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let (epoch, end) = self.end_offset_for_epoch(last_fetched_epoch);
        (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
    }

    /// Read whole batches from `offset`, bounded by `max_bytes` (at least one batch when
    /// `min_one_batch`, KIP-74) and by the isolation level.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: FetchIsolation,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let log = self.log.read();
        let high_watermark = self.high_watermark();
        let log_end_offset = log.log_end_offset();
        let last_stable_offset = stable_offset(&log, high_watermark);
        let max_offset = match isolation {
            FetchIsolation::HighWatermark => high_watermark,
            FetchIsolation::TxnCommitted => last_stable_offset,
            FetchIsolation::LogEnd => log_end_offset,
        };
        let records = log.slice(offset, max_bytes, max_offset, min_one_batch)?;
        let aborted = if isolation == FetchIsolation::TxnCommitted && !records.is_empty() {
            log.aborted_transactions(offset, max_offset)
        } else {
            Vec::new()
        };
        Ok(ReadResult {
            records,
            high_watermark,
            last_stable_offset,
            log_start_offset: log.log_start_offset(),
            log_end_offset,
            aborted,
        })
    }

    /// The last stable offset (Kafka's LSO): read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let log = self.log.read();
        stable_offset(&log, self.high_watermark())
    }

    /// Whether `producer_id` at `epoch` has a transaction open here already (its first
    /// transactional batch was verified with the coordinator, or it is past that).
    pub fn has_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.log
            .read()
            .producer_state()
            .get(producer_id)
            .is_some_and(|e| e.epoch() == epoch && e.current_txn_first_offset().is_some())
    }

    /// The producers with state in this partition (DescribeProducers).
    pub fn producers(&self) -> Vec<ottla_log::ProducerStateEntry> {
        self.log.read().producer_state().iter().cloned().collect()
    }

    /// ListOffsets: `timestamp` is a real timestamp or one of Kafka's specials (-1
    /// latest, -2 earliest, -3 max timestamp, -4 earliest local, -5 latest tiered).
    /// Returns (offset, timestamp); offset -1 when no record qualifies.
    pub fn offset_for(
        &self,
        timestamp: i64,
        isolation: FetchIsolation,
    ) -> Result<(i64, i64), LogError> {
        let log = self.log.read();
        let max_offset = match isolation {
            FetchIsolation::HighWatermark => self.high_watermark(),
            FetchIsolation::TxnCommitted => stable_offset(&log, self.high_watermark()),
            FetchIsolation::LogEnd => log.log_end_offset(),
        };
        Ok(match timestamp {
            LATEST_TIMESTAMP => (max_offset, -1),
            // Nothing is tiered: the earliest local offset is the earliest offset, and the
            // latest tiered offset is "none yet", which Kafka reports as the log start.
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP | LATEST_TIERED_TIMESTAMP => {
                (log.log_start_offset(), -1)
            }
            MAX_TIMESTAMP => log.offset_of_max_timestamp(max_offset)?.unwrap_or((-1, -1)),
            ts => log
                .offset_for_timestamp(ts, max_offset)?
                .unwrap_or((-1, -1)),
        })
    }

    /// fsync what `plan` covers, without the log's lock (appends and reads go on
    /// meanwhile), then record the new recovery point, which is returned. Blocking.
    pub fn complete_flush(&self, plan: FlushPlan) -> Result<i64, LogError> {
        let synced = plan.sync();
        self.log.write().finish_flush(plan, synced)
    }

    /// [`Partition::complete_flush`] for a policy flush; once it succeeds, the records
    /// it held back may become visible. Blocking.
    pub fn complete_policy_flush(&self, flush: PolicyFlush) -> Result<i64, LogError> {
        let recovery_point = self.complete_flush(flush.plan)?;
        if let Some(hold) = flush.hold {
            let state = self.state.lock();
            let mut holds = self.flush_holds.lock();
            if let Some(i) = holds.iter().position(|h| *h == hold) {
                holds.swap_remove(i);
            }
            if let Some(leading) = &state.leading {
                self.publish_high_watermark(leading.high_watermark(), &holds);
            }
        }
        Ok(recovery_point)
    }

    /// Publish `allowed` (what replication allows) as the high watermark, but not past
    /// a hold; it never moves back here. Callers hold the state lock, so no append
    /// moves it or adds a hold meanwhile.
    fn publish_high_watermark(&self, allowed: i64, holds: &[i64]) {
        let target = holds.iter().fold(allowed, |to, hold| to.min(*hold));
        self.high_watermark.send_if_modified(|hw| {
            if *hw < target {
                *hw = target;
                true
            } else {
                false
            }
        });
    }

    /// [`Partition::complete_flush`] on the runtime's blocking pool, with no one waiting
    /// (a roll or `flush.ms`); inline when called outside a runtime. The log reports a
    /// failure itself.
    pub fn complete_flush_in_background(self: &Arc<Self>, plan: FlushPlan) {
        let partition = self.clone();
        let flush = move || drop(partition.complete_flush(plan));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(flush)),
            Err(_) => flush(),
        }
    }

    /// Flush everything appended so far; returns the recovery point. Blocking, but the
    /// log's lock is held only to gather the files. With `closing` (a clean shutdown),
    /// first snapshot the producer state at the log end, as Kafka does on close.
    pub(crate) fn flush(&self, closing: bool) -> Result<i64, LogError> {
        let plan = {
            let mut log = self.log.write();
            if closing {
                log.prepare_close()?;
            }
            log.prepare_flush()
        };
        self.complete_flush(plan)
    }

    /// Delete expired segments (never beyond the high watermark, so a consumer never
    /// loses data it has not been allowed to read) and expire idle producer ids.
    pub(crate) fn apply_retention(
        &self,
        now: i64,
        producer_id_expiration_ms: i64,
    ) -> Result<usize, LogError> {
        let hw = self.high_watermark();
        let mut log = self.log.write();
        log.remove_expired_producers(now, producer_id_expiration_ms);
        log.apply_retention_below(now, hw)
    }

    /// DeleteRecords (Kafka's `Partition.deleteRecordsOnLeader`): move the log start
    /// offset to `offset` (-1: the high watermark). Returns the new log start offset
    /// (the partition's low watermark as this leader knows it).
    pub fn delete_records(&self, offset: i64) -> Result<i64, DeleteRecordsError> {
        if !self.is_leader() {
            return Err(DeleteRecordsError::NotLeaderOrFollower);
        }
        if !self.config.read().delete_policy {
            return Err(DeleteRecordsError::PolicyViolation(format!(
                "Records of partition {} can not be deleted due to the configured policy",
                self.name()
            )));
        }
        let hw = self.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        if offset < 0 {
            return Err(DeleteRecordsError::OffsetOutOfRange(format!(
                "The offset {offset} for partition {} is not valid",
                self.name()
            )));
        }
        if offset > hw {
            return Err(DeleteRecordsError::OffsetOutOfRange(format!(
                "Cannot increment the log start offset to {offset} of partition {} since it is larger than the high watermark {hw}",
                self.name()
            )));
        }
        let mut log = self.log.write();
        log.increment_log_start_offset(offset, "ClientRecordDeletion")?;
        Ok(log.log_start_offset())
    }

    /// The cleaning this partition's log needs now, if it is compacted and dirty
    /// enough; bounded by the high watermark (records a new leader may truncate are not
    /// compacted).
    pub fn cleaning_plan(&self, now: i64) -> Option<CleaningPlan> {
        let hw = self.high_watermark();
        self.log.read().cleaning_plan(now, hw, false)
    }

    /// Swap a cleaning's result in (the log's write lock only for the renames);
    /// `after_commit` runs once the swap is committed (see `Log::swap_cleaned_with`).
    pub fn swap_cleaned(
        &self,
        cleaned: CleanedLog,
        after_commit: impl FnOnce(),
    ) -> Result<bool, LogError> {
        self.log.write().swap_cleaned_with(cleaned, after_commit)
    }

    pub(crate) fn into_log(self) -> Log {
        self.log.into_inner()
    }
}

/// The leader side of replication for a broker that becomes leader of `registration`
/// with a log ending at `log_end` and a known high watermark `high_watermark`.
fn leader_replication(
    registration: &LeaderAndIsr,
    config: &PartitionConfig,
    log_end: i64,
    high_watermark: i64,
) -> LeaderReplication {
    LeaderReplication::new(
        registration.local_id,
        registration.leader_epoch,
        &registration.replicas,
        &registration.isr,
        log_end,
        high_watermark,
        now_ms(),
        config.replica_lag_time_max_ms,
    )
}

/// Broker ids as Kafka's logs print them: `1,2,3`.
fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// The lower of the high watermark and the oldest open transaction's first offset.
fn stable_offset(log: &Log, high_watermark: i64) -> i64 {
    log.first_unstable_offset()
        .map_or(high_watermark, |first| first.min(high_watermark))
}
