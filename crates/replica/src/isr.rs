//! The leader's view of its followers: their fetch progress, the in-sync replica set
//! and the high watermark (Kafka's `Replica`/`ReplicaState` and the ISR half of
//! `Partition`).
//!
//! A pure state machine: the caller passes the time and the leader's log end offset,
//! and carries out what it returns (publish a new high watermark, ask the controller to
//! change the ISR). Kafka's rules:
//!
//! - A follower's fetch at offset `o` proves it holds everything below `o`. It is
//!   *caught up* at the time of a fetch that reached the leader's log end, or, for a
//!   fetch that reached the log end the leader had at the follower's previous fetch, at
//!   the time of that previous fetch (`ReplicaState.updateFetchState`).
//! - The high watermark is the smallest log end offset over the *maximal* ISR (the
//!   committed ISR plus a pending expansion, and still including replicas a pending
//!   shrink would drop), and never moves back.
//! - A follower outside the ISR is proposed for it once its log end offset reaches the
//!   high watermark and the start of the current leader epoch.
//! - A follower in the ISR that has not been caught up for `replica.lag.time.max.ms`
//!   is proposed for removal. The leader itself always stays.
//! - At most one ISR change is in flight (Kafka's `PendingExpandIsr` /
//!   `PendingShrinkIsr`); the next waits until the controller has committed it.

use std::collections::{BTreeMap, BTreeSet};

/// Kafka's `replica.lag.time.max.ms` default.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;

/// A follower's log end offset before its first fetch to this leader.
const UNKNOWN_OFFSET: i64 = -1;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    pub log_end_offset: i64,
    /// The last time the follower was known to have everything the leader had.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch.
    pub last_fetch_leader_log_end_offset: i64,
    pub last_fetch_ms: i64,
}

/// An ISR the leader wants the controller to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrChange {
    /// The follower caught up; the proposed ISR includes it.
    Expand { follower: i32, isr: BTreeSet<i32> },
    /// These followers fell behind; the proposed ISR leaves them out.
    Shrink {
        out_of_sync: Vec<i32>,
        isr: BTreeSet<i32>,
    },
}

impl IsrChange {
    pub fn proposed_isr(&self) -> &BTreeSet<i32> {
        match self {
            IsrChange::Expand { isr, .. } | IsrChange::Shrink { isr, .. } => isr,
        }
    }
}

/// A fetch from a node that is not a replica of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("broker {0} is not a replica of this partition")]
pub struct NotAReplica(pub i32);

/// What a follower's fetch changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The high watermark moved to this.
    pub high_watermark: Option<i64>,
    /// The follower should join the ISR: ask the controller.
    pub isr_change: Option<IsrChange>,
}

/// The leader side of one partition's replication.
#[derive(Debug, Clone)]
pub struct LeaderReplication {
    local_id: i32,
    leader_epoch: i32,
    /// The first offset of this leader epoch: a follower joins the ISR only once it has
    /// everything the previous leaders wrote.
    epoch_start_offset: i64,
    /// The committed ISR, leader included.
    isr: BTreeSet<i32>,
    /// An ISR change sent to the controller and not committed yet.
    pending: Option<IsrChange>,
    followers: BTreeMap<i32, FollowerState>,
    high_watermark: i64,
    lag_time_max_ms: i64,
}

impl LeaderReplication {
    /// Become leader at `leader_epoch`. Followers in the ISR count as caught up now
    /// (Kafka's `resetReplicaState`), so a new leader does not shrink the ISR before
    /// they have had time to fetch; their log end offsets are unknown until they do.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local_id: i32,
        leader_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        log_end_offset: i64,
        high_watermark: i64,
        now: i64,
        lag_time_max_ms: i64,
    ) -> LeaderReplication {
        let mut isr: BTreeSet<i32> = isr.iter().copied().collect();
        isr.insert(local_id);
        let followers = replicas
            .iter()
            .filter(|r| **r != local_id)
            .map(|r| {
                let state = FollowerState {
                    log_end_offset: UNKNOWN_OFFSET,
                    last_caught_up_ms: if isr.contains(r) { now } else { 0 },
                    last_fetch_leader_log_end_offset: UNKNOWN_OFFSET,
                    last_fetch_ms: 0,
                };
                (*r, state)
            })
            .collect();
        let mut replication = LeaderReplication {
            local_id,
            leader_epoch,
            epoch_start_offset: log_end_offset,
            isr,
            pending: None,
            followers,
            high_watermark: high_watermark.min(log_end_offset),
            lag_time_max_ms,
        };
        // A leader alone in its ISR has everything committed at once (Kafka's
        // `maybeIncrementLeaderHW` on becoming leader).
        replication.advance_high_watermark(log_end_offset);
        replication.check_invariants(log_end_offset);
        replication
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR.
    pub fn isr(&self) -> &BTreeSet<i32> {
        &self.isr
    }

    /// The ISR change waiting for the controller, if any.
    pub fn pending(&self) -> Option<&IsrChange> {
        self.pending.as_ref()
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerState> {
        self.followers.get(&id)
    }

    /// The replicas whose log end offsets bound the high watermark: the committed ISR,
    /// plus a follower a pending expansion adds (a pending shrink still counts the
    /// followers it drops until it is committed).
    fn maximal_isr(&self) -> BTreeSet<i32> {
        let mut isr = self.isr.clone();
        if let Some(IsrChange::Expand { follower, .. }) = &self.pending {
            isr.insert(*follower);
        }
        isr
    }

    /// The leader appended up to `log_end_offset`: the high watermark may move (at
    /// once when the leader is the only in-sync replica).
    pub fn on_leader_append(&mut self, log_end_offset: i64) -> Option<i64> {
        self.advance_high_watermark(log_end_offset)
    }

    /// Follower `follower` fetched at `fetch_offset` at `now`, while the leader's log
    /// ended at `log_end_offset`.
    pub fn on_follower_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        log_end_offset: i64,
        now: i64,
    ) -> Result<FetchOutcome, NotAReplica> {
        let state = self
            .followers
            .get_mut(&follower)
            .ok_or(NotAReplica(follower))?;
        if fetch_offset >= log_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(now);
        } else if fetch_offset >= state.last_fetch_leader_log_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(state.last_fetch_ms);
        }
        state.log_end_offset = fetch_offset;
        state.last_fetch_leader_log_end_offset = log_end_offset;
        state.last_fetch_ms = now;
        let mut outcome = FetchOutcome {
            high_watermark: self.advance_high_watermark(log_end_offset),
            isr_change: None,
        };
        if self.pending.is_none() && !self.isr.contains(&follower) {
            let caught_up =
                fetch_offset >= self.high_watermark && fetch_offset >= self.epoch_start_offset;
            if caught_up {
                let mut isr = self.isr.clone();
                isr.insert(follower);
                let change = IsrChange::Expand { follower, isr };
                self.pending = Some(change.clone());
                outcome.isr_change = Some(change);
            }
        }
        self.check_invariants(log_end_offset);
        Ok(outcome)
    }

    /// The followers of the ISR that have not been caught up for the lag limit, as an
    /// ISR change to propose (Kafka's `maybeShrinkIsr`); none while another change is
    /// pending.
    pub fn maybe_shrink(&mut self, now: i64, log_end_offset: i64) -> Option<IsrChange> {
        if self.pending.is_some() {
            return None;
        }
        let lag = self.lag_time_max_ms;
        let out_of_sync: Vec<i32> = self
            .isr
            .iter()
            .filter(|id| **id != self.local_id)
            .filter(|id| {
                self.followers.get(id).is_some_and(|f| {
                    f.log_end_offset != log_end_offset && now - f.last_caught_up_ms > lag
                })
            })
            .copied()
            .collect();
        if out_of_sync.is_empty() {
            return None;
        }
        let isr = self
            .isr
            .iter()
            .filter(|id| !out_of_sync.contains(id))
            .copied()
            .collect();
        let change = IsrChange::Shrink { out_of_sync, isr };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// The controller committed `isr` (the pending change, or its own decision). The
    /// high watermark may move: a shrink can leave only replicas that are further on.
    pub fn apply_committed_isr(
        &mut self,
        replicas: &[i32],
        isr: &[i32],
        log_end_offset: i64,
    ) -> Option<i64> {
        // A reassignment changes the replica set at the same leader epoch: new replicas
        // are followers not yet heard from, removed ones are forgotten (their fetches
        // are refused from now on).
        self.followers.retain(|id, _| replicas.contains(id));
        for r in replicas {
            if *r != self.local_id {
                self.followers.entry(*r).or_insert(FollowerState {
                    log_end_offset: UNKNOWN_OFFSET,
                    last_caught_up_ms: 0,
                    last_fetch_leader_log_end_offset: UNKNOWN_OFFSET,
                    last_fetch_ms: 0,
                });
            }
        }
        let mut committed: BTreeSet<i32> = isr.iter().copied().collect();
        committed.insert(self.local_id);
        self.isr = committed;
        self.pending = None;
        let moved = self.advance_high_watermark(log_end_offset);
        self.check_invariants(log_end_offset);
        moved
    }

    /// The controller refused the pending change (a stale partition epoch, an
    /// unknown broker): forget it, so the next fetch or timer proposes again.
    pub fn abandon_pending(&mut self) {
        self.pending = None;
    }

    /// Move the high watermark up to the smallest log end offset of the maximal ISR.
    fn advance_high_watermark(&mut self, log_end_offset: i64) -> Option<i64> {
        let mut target = log_end_offset;
        for id in self.maximal_isr() {
            if id == self.local_id {
                continue;
            }
            match self.followers.get(&id) {
                Some(f) => target = target.min(f.log_end_offset),
                // A replica the leader does not know bounds nothing it could wait for.
                None => continue,
            }
        }
        if target > self.high_watermark {
            self.high_watermark = target;
            Some(target)
        } else {
            None
        }
    }

    fn check_invariants(&self, log_end_offset: i64) {
        debug_assert!(
            self.high_watermark <= log_end_offset,
            "high watermark {} past the log end {log_end_offset}",
            self.high_watermark
        );
        debug_assert!(
            self.isr.contains(&self.local_id),
            "the leader left its own ISR"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000;
    const LAG: i64 = DEFAULT_REPLICA_LAG_TIME_MAX_MS;

    /// Leader 1 of replicas [1, 2, 3], all in sync, log end 100, HW 100.
    fn three_in_sync() -> LeaderReplication {
        LeaderReplication::new(1, 5, &[1, 2, 3], &[1, 2, 3], 100, 100, T0, LAG)
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_of_the_isr() {
        let mut r = three_in_sync();
        assert_eq!(r.on_leader_append(150), None, "followers have not fetched");
        let out = r.on_follower_fetch(2, 150, 150, T0 + 10).unwrap();
        assert_eq!(
            out.high_watermark, None,
            "follower 3 is still at an unknown offset"
        );
        let out = r.on_follower_fetch(3, 120, 150, T0 + 20).unwrap();
        assert_eq!(out.high_watermark, Some(120));
        let out = r.on_follower_fetch(3, 150, 150, T0 + 30).unwrap();
        assert_eq!(out.high_watermark, Some(150));
        assert_eq!(r.high_watermark(), 150);
    }

    #[test]
    fn the_high_watermark_never_moves_back() {
        let mut r = three_in_sync();
        r.on_follower_fetch(2, 100, 100, T0).unwrap();
        r.on_follower_fetch(3, 100, 100, T0).unwrap();
        // A follower that truncated and refetches from lower down.
        let out = r.on_follower_fetch(3, 80, 100, T0 + 5).unwrap();
        assert_eq!(out.high_watermark, None);
        assert_eq!(r.high_watermark(), 100);
    }

    #[test]
    fn a_lone_leader_commits_at_its_own_log_end() {
        let mut r = LeaderReplication::new(1, 0, &[1], &[1], 0, 0, T0, LAG);
        assert_eq!(r.on_leader_append(7), Some(7));
        assert_eq!(r.on_leader_append(9), Some(9));
    }

    #[test]
    fn a_follower_that_stops_fetching_is_shrunk_out_after_the_lag_time() {
        let mut r = three_in_sync();
        r.on_leader_append(200);
        r.on_follower_fetch(2, 200, 200, T0 + 1_000).unwrap();
        // Follower 3 was counted caught up when this leader started (T0), and never
        // fetched since.
        assert_eq!(r.maybe_shrink(T0 + LAG, 200), None, "exactly at the limit");
        r.on_follower_fetch(2, 200, 200, T0 + LAG).unwrap();
        let change = r.maybe_shrink(T0 + LAG + 1, 200).unwrap();
        assert_eq!(
            change,
            IsrChange::Shrink {
                out_of_sync: vec![3],
                isr: BTreeSet::from([1, 2]),
            }
        );
        assert_eq!(
            r.maybe_shrink(T0 + LAG + 2, 200),
            None,
            "one change at a time"
        );
        // Until committed, follower 3 still bounds the high watermark.
        assert_eq!(r.high_watermark(), 100);
        assert_eq!(r.apply_committed_isr(&[1, 2, 3], &[1, 2], 200), Some(200));
        assert_eq!(r.isr(), &BTreeSet::from([1, 2]));
    }

    #[test]
    fn a_slow_follower_that_keeps_reaching_the_previous_log_end_stays_in_sync() {
        let mut r = three_in_sync();
        r.on_follower_fetch(2, 100, 100, T0).unwrap();
        // The leader keeps appending; follower 3 always reaches what the leader had at
        // its previous fetch, never the current end.
        let mut leader_end = 100;
        let mut t = T0;
        r.on_follower_fetch(3, 100, leader_end, t).unwrap();
        for _ in 0..10 {
            let previous_end = leader_end;
            leader_end += 50;
            t += LAG / 2;
            r.on_follower_fetch(2, leader_end, leader_end, t).unwrap();
            r.on_follower_fetch(3, previous_end, leader_end, t).unwrap();
        }
        assert_eq!(r.maybe_shrink(t, leader_end), None);
    }

    #[test]
    fn a_follower_joins_the_isr_once_at_the_high_watermark_and_the_epoch_start() {
        // Follower 3 is out of the ISR; this leader's epoch started at offset 100.
        let mut r = LeaderReplication::new(1, 6, &[1, 2, 3], &[1, 2], 100, 90, T0, LAG);
        let out = r.on_follower_fetch(3, 95, 100, T0 + 1).unwrap();
        assert_eq!(
            out.isr_change, None,
            "at the high watermark (90) but below the epoch start"
        );
        r.on_leader_append(130);
        r.on_follower_fetch(2, 130, 130, T0 + 2).unwrap();
        assert_eq!(r.high_watermark(), 130);
        let out = r.on_follower_fetch(3, 120, 130, T0 + 3).unwrap();
        assert_eq!(out.isr_change, None, "below the high watermark");
        let out = r.on_follower_fetch(3, 130, 130, T0 + 4).unwrap();
        assert_eq!(
            out.isr_change,
            Some(IsrChange::Expand {
                follower: 3,
                isr: BTreeSet::from([1, 2, 3]),
            })
        );
        // While the expansion is pending, follower 3 bounds the high watermark.
        r.on_leader_append(140);
        r.on_follower_fetch(2, 140, 140, T0 + 5).unwrap();
        assert_eq!(r.high_watermark(), 130);
        let out = r.on_follower_fetch(3, 140, 140, T0 + 6).unwrap();
        assert_eq!(out.high_watermark, Some(140));
        assert_eq!(out.isr_change, None, "already pending");
        r.apply_committed_isr(&[1, 2, 3], &[1, 2, 3], 140);
        assert_eq!(r.isr(), &BTreeSet::from([1, 2, 3]));
        assert!(r.pending().is_none());
    }

    #[test]
    fn a_refused_change_is_proposed_again() {
        let mut r = LeaderReplication::new(1, 6, &[1, 2], &[1], 10, 10, T0, LAG);
        assert!(r
            .on_follower_fetch(2, 10, 10, T0)
            .unwrap()
            .isr_change
            .is_some());
        assert!(r
            .on_follower_fetch(2, 10, 10, T0 + 1)
            .unwrap()
            .isr_change
            .is_none());
        r.abandon_pending();
        assert!(r
            .on_follower_fetch(2, 10, 10, T0 + 2)
            .unwrap()
            .isr_change
            .is_some());
    }

    #[test]
    fn a_fetch_from_a_node_that_is_not_a_replica_is_refused() {
        let mut r = three_in_sync();
        assert_eq!(r.on_follower_fetch(9, 100, 100, T0), Err(NotAReplica(9)));
        assert_eq!(
            r.on_follower_fetch(1, 100, 100, T0),
            Err(NotAReplica(1)),
            "itself"
        );
    }

    #[test]
    fn a_reassignment_adds_and_removes_followers_at_the_same_epoch() {
        let mut r = three_in_sync();
        // Replica 4 joins the replica set (a reassignment started); 3 leaves it.
        r.apply_committed_isr(&[1, 2, 4], &[1, 2], 100);
        assert_eq!(r.on_follower_fetch(3, 100, 100, T0), Err(NotAReplica(3)));
        // The new replica copies from zero and does not hold the high watermark back.
        let outcome = r.on_follower_fetch(4, 0, 100, T0).unwrap();
        assert_eq!((outcome.isr_change, r.high_watermark()), (None, 100));
        let outcome = r.on_follower_fetch(4, 100, 100, T0 + 1).unwrap();
        assert_eq!(
            outcome.isr_change,
            Some(IsrChange::Expand {
                follower: 4,
                isr: BTreeSet::from([1, 2, 4]),
            }),
            "caught up: proposed for the ISR"
        );
    }
}
