//! Replication throttles (Kafka's `ReplicationQuotaManager`, KIP-73): during a
//! reassignment, copying a partition to its new replicas must not starve clients of
//! disk and network. Two byte rates per broker limit it:
//!
//! - `leader.replication.throttled.rate`: what this broker, as leader, sends to
//!   followers of throttled partitions (`leader.replication.throttled.replicas`);
//! - `follower.replication.throttled.rate`: what this broker, as follower, fetches for
//!   throttled partitions (`follower.replication.throttled.replicas`).
//!
//! Only replicas outside the ISR are throttled, so a reassignment slows itself down
//! but never the replication that acks=all waits for. The rate is measured as Kafka's
//! `Rate` does: bytes over a sliding window of `replication.quota.window.num` samples
//! of `replication.quota.window.size.seconds` each; while it is above the limit, the
//! leader answers throttled partitions with no records and the follower leaves them
//! out of its fetches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Kafka's `replication.quota.window.num` default.
pub const DEFAULT_QUOTA_WINDOW_NUM: usize = 11;
/// Kafka's `replication.quota.window.size.seconds` default, in ms.
pub const DEFAULT_QUOTA_WINDOW_SIZE_MS: i64 = 1_000;
/// Kafka's default rate: `Long.MAX_VALUE`, no throttle.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// One direction's byte rate and limit.
#[derive(Debug)]
pub struct ReplicationQuota {
    /// Bytes per second; [`UNLIMITED`] when not set.
    limit: AtomicU64,
    rate: Mutex<SampledRate>,
}

impl ReplicationQuota {
    pub fn new(window_num: usize, window_size_ms: i64) -> ReplicationQuota {
        ReplicationQuota {
            limit: AtomicU64::new(UNLIMITED),
            rate: Mutex::new(SampledRate::new(window_num.max(2), window_size_ms.max(1))),
        }
    }

    /// Set the limit (a dynamic broker config may change it at any time).
    pub fn set_limit(&self, bytes_per_second: u64) {
        self.limit.store(bytes_per_second, Ordering::Relaxed);
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether the measured rate is above the limit now.
    pub fn is_exceeded(&self, now_ms: i64) -> bool {
        let limit = self.limit();
        limit != UNLIMITED && self.rate.lock().rate(now_ms) > limit as f64
    }

    /// Count `bytes` replicated for throttled partitions.
    pub fn record(&self, bytes: u64, now_ms: i64) {
        if bytes > 0 && self.limit() != UNLIMITED {
            self.rate.lock().record(bytes, now_ms);
        }
    }
}

/// A byte rate over the last `samples` windows (Kafka's `SampledStat` + `Rate`).
#[derive(Debug)]
struct SampledRate {
    window_ms: i64,
    /// (window start, bytes); oldest first, at most `capacity`.
    samples: std::collections::VecDeque<(i64, u64)>,
    capacity: usize,
}

impl SampledRate {
    fn new(capacity: usize, window_ms: i64) -> SampledRate {
        SampledRate {
            window_ms,
            samples: std::collections::VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - self.window_ms * self.capacity as i64;
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| *start + self.window_ms <= horizon)
        {
            self.samples.pop_front();
        }
    }

    fn record(&mut self, bytes: u64, now_ms: i64) {
        self.expire(now_ms);
        match self.samples.back_mut() {
            Some((start, total)) if now_ms < *start + self.window_ms => *total += bytes,
            _ => {
                if self.samples.len() == self.capacity {
                    self.samples.pop_front();
                }
                self.samples.push_back((now_ms, bytes));
            }
        }
    }

    /// Bytes per second. Like Kafka's `Rate.windowSize`, the elapsed time counts at
    /// least `samples - 1` whole windows, so a first burst is measured over that span
    /// rather than over the few milliseconds it took.
    fn rate(&mut self, now_ms: i64) -> f64 {
        self.expire(now_ms);
        let Some((oldest, _)) = self.samples.front() else {
            return 0.0;
        };
        let total: u64 = self.samples.iter().map(|(_, b)| b).sum();
        let elapsed = (now_ms - oldest).max(0);
        let min_elapsed = self.window_ms * (self.capacity as i64 - 1);
        total as f64 * 1000.0 / elapsed.max(min_elapsed) as f64
    }
}

/// Whether this broker's replica of `partition` is named by a throttled-replicas
/// topic config (`*`, or `partition:broker` pairs: Kafka's
/// `leader/follower.replication.throttled.replicas`).
pub fn is_throttled_replica(config: Option<&str>, partition: i32, broker: i32) -> bool {
    let Some(config) = config.map(str::trim) else {
        return false;
    };
    if config == "*" {
        return true;
    }
    config.split(',').any(|entry| {
        let mut parts = entry.trim().splitn(2, ':');
        let p = parts.next().and_then(|p| p.trim().parse::<i32>().ok());
        let b = parts.next().and_then(|b| b.trim().parse::<i32>().ok());
        p == Some(partition) && b == Some(broker)
    })
}

/// A partition's throttle flags on this broker, set from its topic's configs by the
/// metadata publisher whenever they change.
#[derive(Debug, Default)]
pub struct PartitionThrottles {
    leader: AtomicBool,
    follower: AtomicBool,
}

impl PartitionThrottles {
    pub fn set(&self, leader: bool, follower: bool) {
        self.leader.store(leader, Ordering::Relaxed);
        self.follower.store(follower, Ordering::Relaxed);
    }
    pub fn leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
    pub fn follower(&self) -> bool {
        self.follower.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_replica_lists_name_partition_and_broker() {
        assert!(is_throttled_replica(Some("*"), 3, 7));
        assert!(is_throttled_replica(Some("0:1, 3:7"), 3, 7));
        assert!(
            !is_throttled_replica(Some("0:1,3:7"), 3, 1),
            "another broker"
        );
        assert!(
            !is_throttled_replica(Some("0:1,3:7"), 1, 7),
            "another partition"
        );
        assert!(!is_throttled_replica(Some(""), 0, 1));
        assert!(!is_throttled_replica(None, 0, 1));
    }

    #[test]
    fn the_quota_is_exceeded_only_above_its_limit_over_the_window() {
        let q = ReplicationQuota::new(11, 1000);
        q.record(1_000_000, 0);
        assert!(!q.is_exceeded(0), "no limit set: never exceeded");
        q.set_limit(100_000);
        // 1 MB recorded before the limit was set is not counted (no limit, no samples).
        assert!(!q.is_exceeded(0));
        // 1.2 MB at once: over the 10 s minimum span that is 120 kB/s > 100 kB/s.
        q.record(1_200_000, 0);
        assert!(q.is_exceeded(500));
        // 13 s later the sample has left the 11 s window.
        assert!(!q.is_exceeded(13_000));
        // 900 kB over 10 s is 90 kB/s: under.
        q.record(900_000, 20_000);
        assert!(!q.is_exceeded(20_100));
        q.record(200_000, 20_200);
        assert!(q.is_exceeded(20_300), "1.1 MB over 10 s");
        q.set_limit(UNLIMITED);
        assert!(!q.is_exceeded(20_300));
    }
}
