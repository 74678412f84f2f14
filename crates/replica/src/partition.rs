//! One hosted partition: its log plus the replication state Kafka keeps beside it
//! (leader epoch, ISR, high watermark), and the leader-side validation rules of
//! Kafka's `LogValidator` that can be decided from the batch header.

use std::path::PathBuf;
use std::sync::Arc;

use ottla_log::{FlushPlan, FlushReason, Log, LogConfig, LogError, LogSlices};

use crate::isr::{IsrChange, LeaderReplication, DEFAULT_REPLICA_LAG_TIME_MAX_MS};
use ottla_protocol::batch::{RecordBatch, RecordBatchMut};
use ottla_protocol::records::{check_uncompressed_framing, scan_records};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

/// Topic configs that matter to the leader, already parsed and defaulted by the server.
#[derive(Debug, Clone)]
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
            replica_lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
        }
    }
}

/// This broker's part in a partition, as the controller assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    /// This broker's node id.
    pub local_id: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// When a rule needs a compressed batch's records, it may decompress to at most this
/// many times `max.message.bytes` (real data compresses 2-10x; a batch that expands
/// further is refused rather than allowed to cost memory out of proportion).
pub const DECOMPRESSION_RATIO_LIMIT: usize = 64;

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
    #[error("transactional produce is not supported yet")]
    Transactional,
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas {min}")]
    NotEnoughReplicas { isr: usize, min: usize },
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
            // INVALID_TXN_STATE: the producer must not send transactional data we
            // cannot commit or abort.
            ProduceError::Transactional => 48,
            ProduceError::NotEnoughReplicas { .. } => 19,
            ProduceError::Log(e) => e.kafka_error_code(),
        }
    }
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

/// Which data a reader may see: consumers stop at the high watermark, follower replicas
/// (a later issue) read up to the log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    HighWatermark,
    LogEnd,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, as slices of the segment files (nothing is read yet).
    pub records: LogSlices,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    log: RwLock<Log>,
    /// Followers' progress, the ISR and the high watermark they allow. Taken after
    /// `log` and before `flush_holds` when several are.
    replication: Mutex<LeaderReplication>,
    config: PartitionConfig,
    /// Publishes the high watermark; delayed fetches wait on it.
    high_watermark: watch::Sender<i64>,
    /// The holds of [`PolicyFlush`]es still running: the high watermark stays at or
    /// below the lowest. A failed flush keeps its hold; its log takes no more writes.
    /// Taken after `log` when both are.
    flush_holds: Mutex<Vec<i64>>,
}

pub use ottla_log::now_ms;

impl Partition {
    pub(crate) fn new(
        topic: String,
        topic_id: Uuid,
        index: i32,
        log: Log,
        config: PartitionConfig,
        leader: LeaderAndIsr,
        checkpointed_high_watermark: i64,
    ) -> Partition {
        let log_end = log.log_end_offset();
        let hw = checkpointed_high_watermark.clamp(log.log_start_offset(), log_end);
        let replication = LeaderReplication::new(
            leader.local_id,
            leader.leader_epoch,
            &leader.replicas,
            &leader.isr,
            log_end,
            hw,
            now_ms(),
            config.replica_lag_time_max_ms,
        );
        // A leader alone in its ISR starts at its log end; one with followers at the
        // checkpoint until they report in.
        let hw = replication.high_watermark();
        Partition {
            topic,
            topic_id,
            index,
            log: RwLock::new(log),
            replication: Mutex::new(replication),
            config,
            high_watermark: watch::channel(hw).0,
            flush_holds: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }
    pub fn dir(&self) -> PathBuf {
        self.log.read().dir().to_path_buf()
    }
    pub fn leader_epoch(&self) -> i32 {
        self.replication.lock().leader_epoch()
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
    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Validate and append one producer batch as leader. `required_acks` is the
    /// request's acks; -1 (all) enforces `min.insync.replicas`. Never waits for the
    /// disk while holding the log: a flush the policy asks for comes back in
    /// [`Appended::flush`].
    pub fn append_as_leader(
        &self,
        mut batch: Vec<u8>,
        required_acks: i16,
    ) -> Result<Appended, ProduceError> {
        let config = &self.config;
        let (leader_epoch, isr_size) = {
            let replication = self.replication.lock();
            (replication.leader_epoch(), replication.isr().len())
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
        if view.is_control() {
            return Err(ProduceError::ControlBatch);
        }
        if view.is_transactional() {
            return Err(ProduceError::Transactional);
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
            let info = log.append_as_leader(&mut batch, leader_epoch)?;
            let reason = log.flush_wanted(now);
            let plan = reason.map(|_| log.prepare_flush());
            let hold = (reason == Some(FlushReason::Policy) && !info.duplicate)
                .then_some(info.first_offset);
            // The high watermark follows the smallest log end of the ISR (at once when
            // the ISR is this broker alone), up to any policy flush still running.
            let mut replication = self.replication.lock();
            replication.on_leader_append(log.log_end_offset());
            let mut holds = self.flush_holds.lock();
            holds.extend(hold);
            self.publish_high_watermark(&replication, &holds);
            (info, reason.zip(plan), hold)
        };
        if info.duplicate {
            // Kafka answers a duplicate with the original batch's timestamp as its
            // log-append time (`UnifiedLog.append`), whatever the topic's timestamp type.
            log_append_time = info.max_timestamp;
        }
        let (flush, background_flush) = match flush {
            Some((FlushReason::Policy, plan)) => (Some(PolicyFlush { plan, hold }), None),
            Some((FlushReason::Background, plan)) => (None, Some(plan)),
            None => (None, None),
        };
        Ok(Appended {
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

    /// Whether `replica` is a follower replica of this partition: only a follower's
    /// fetch may read past the high watermark (to the log end).
    pub fn has_follower(&self, replica: i32) -> bool {
        self.replication.lock().follower(replica).is_some()
    }

    /// Record that `follower` fetched at `fetch_offset` at `now` (it holds everything
    /// below): the high watermark may move. Returns the ISR change the leader would
    /// like, which waits for the controller's AlterPartition (not built yet: until then
    /// the change stays pending and the ISR is the controller's).
    pub fn update_follower_fetch_state(
        &self,
        follower: i32,
        fetch_offset: i64,
        now: i64,
    ) -> Option<IsrChange> {
        let log = self.log.read();
        let mut replication = self.replication.lock();
        let outcome = replication
            .on_follower_fetch(follower, fetch_offset, log.log_end_offset(), now)
            .ok()?;
        if outcome.high_watermark.is_some() {
            let holds = self.flush_holds.lock();
            self.publish_high_watermark(&replication, &holds);
        }
        outcome.isr_change
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
        let max_offset = match isolation {
            FetchIsolation::HighWatermark => high_watermark,
            FetchIsolation::LogEnd => log_end_offset,
        };
        let records = log.slice(offset, max_bytes, max_offset, min_one_batch)?;
        Ok(ReadResult {
            records,
            high_watermark,
            log_start_offset: log.log_start_offset(),
            log_end_offset,
        })
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
            let replication = self.replication.lock();
            let mut holds = self.flush_holds.lock();
            if let Some(i) = holds.iter().position(|h| *h == hold) {
                holds.swap_remove(i);
            }
            self.publish_high_watermark(&replication, &holds);
        }
        Ok(recovery_point)
    }

    /// Publish the high watermark replication allows, but not past a hold. Callers hold
    /// the replication lock, so no append moves it or adds a hold meanwhile.
    fn publish_high_watermark(&self, replication: &LeaderReplication, holds: &[i64]) {
        let target = holds
            .iter()
            .fold(replication.high_watermark(), |to, hold| to.min(*hold));
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
                log.snapshot_producers_at_log_end()?;
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

    pub(crate) fn into_log(self) -> Log {
        self.log.into_inner()
    }
}

pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;
