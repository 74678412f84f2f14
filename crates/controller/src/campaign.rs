//! A random backoff between the controller quorum's failed election campaigns.
//!
//! Why: openraft 0.9 draws a node's election timeout once, when the `Raft` is built, and
//! fires elections on a fixed tick. When the leader of a three-voter quorum dies, the two
//! survivors' timers start from the same moment (its last heartbeat); if both draws round
//! to the same tick, both campaign at once, each votes for itself and refuses the other,
//! and the next round starts exactly as the last did: the tie is a fixed point and the
//! quorum stays leaderless for good (seen in CI: sixteen split terms in 30 s; openraft
//! fixed it on its 0.10 line by drawing a new timeout per campaign). KRaft never meets
//! this: after an election that did not elect it a candidate backs off a random time of
//! up to `controller.quorum.election.backoff.max.ms` (1 s) before it tries again.
//!
//! So do as KRaft does, from outside openraft: when this node campaigns again without a
//! leader having been seen since its previous campaign, that previous campaign failed,
//! and its next one (if this one fails too) waits for a fresh random delay, past any
//! timeout openraft can have drawn ([`Backoff::pause`]). Two tied survivors draw
//! different delays, so one of them campaigns first and wins. A campaign that succeeds
//! is not slowed: a leader never campaigns, and a pause ends as soon as a leader is
//! known (should that leader fail at once, this node campaigns on its normal timer).

use std::time::Duration;

use openraft::ServerState;

/// KRaft's default `controller.quorum.election.backoff.max.ms`.
pub const ELECTION_BACKOFF_MAX: Duration = Duration::from_millis(1000);

/// What [`Backoff::observe`] remembers of the quorum's state between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A leader was known (this node or another).
    Led,
    /// This node was campaigning in this term.
    Campaigning(u64),
    /// Neither: a term with no known leader, not ours.
    Leaderless,
}

/// Decides when a node pauses its elections: a pure state machine fed with what the
/// node's Raft metrics show, so that the decision is tested without a quorum.
#[derive(Debug, Default)]
pub struct Backoff {
    last: Option<Seen>,
}

impl Backoff {
    /// Feed one look at the metrics. `Some(term of the failed campaign)` when this node
    /// has just started a campaign while its previous one (in an earlier term, with no
    /// leader seen since) failed: the caller then pauses elections for
    /// [`Backoff::pause`], or until a leader is known.
    pub fn observe(&mut self, state: ServerState, term: u64, leader: Option<u64>) -> Option<u64> {
        let now = if leader.is_some() {
            Seen::Led
        } else if state == ServerState::Candidate {
            Seen::Campaigning(term)
        } else {
            Seen::Leaderless
        };
        let failed_before = match (self.last, now) {
            (Some(Seen::Campaigning(before)), Seen::Campaigning(term)) if term > before => {
                Some(before)
            }
            _ => None,
        };
        // A leaderless term seen between two of our campaigns (a peer's request moved
        // our term) does not erase that our own campaign failed.
        if now != Seen::Leaderless || self.last.is_none() {
            self.last = Some(now);
        }
        failed_before
    }

    /// How long to refuse campaigning: longer than any election timeout openraft can
    /// have drawn (so the draw no longer decides when the next campaign starts), plus a
    /// random share of [`ELECTION_BACKOFF_MAX`] that differs between nodes. `unit` is a
    /// random number in [0, 1).
    pub fn pause(election_timeout_max: Duration, unit: f64) -> Duration {
        let unit = unit.clamp(0.0, 1.0);
        election_timeout_max + ELECTION_BACKOFF_MAX.mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLLOWER: ServerState = ServerState::Follower;
    const CANDIDATE: ServerState = ServerState::Candidate;

    #[test]
    fn a_first_campaign_after_a_leader_is_not_delayed() {
        let mut b = Backoff::default();
        assert_eq!(b.observe(FOLLOWER, 2, Some(1)), None);
        assert_eq!(b.observe(CANDIDATE, 3, None), None);
        // it won
        assert_eq!(b.observe(ServerState::Leader, 3, Some(2)), None);
        // the leader died later: a fresh first campaign
        assert_eq!(b.observe(CANDIDATE, 4, None), None);
    }

    #[test]
    fn a_second_campaign_in_a_row_backs_off() {
        let mut b = Backoff::default();
        assert_eq!(b.observe(FOLLOWER, 2, Some(1)), None);
        assert_eq!(b.observe(CANDIDATE, 3, None), None);
        assert_eq!(b.observe(CANDIDATE, 4, None), Some(3));
        // and again for each further failed one
        assert_eq!(b.observe(CANDIDATE, 5, None), Some(4));
        // the same term seen twice is the same campaign
        assert_eq!(b.observe(CANDIDATE, 5, None), None);
    }

    #[test]
    fn a_peer_moving_the_term_between_two_failed_campaigns_still_counts() {
        let mut b = Backoff::default();
        assert_eq!(b.observe(CANDIDATE, 3, None), None);
        // a peer's vote request in term 4 that this node granted or refused
        assert_eq!(b.observe(FOLLOWER, 4, None), None);
        assert_eq!(b.observe(CANDIDATE, 5, None), Some(3));
    }

    #[test]
    fn a_leader_between_two_campaigns_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.observe(CANDIDATE, 1, None), None);
        assert_eq!(b.observe(FOLLOWER, 2, Some(3)), None);
        assert_eq!(b.observe(CANDIDATE, 3, None), None);
    }

    #[test]
    fn the_startup_split_of_a_new_quorum_backs_off_only_its_next_round() {
        // A new quorum: every voter campaigns in term 1 and they split.
        let mut b = Backoff::default();
        assert_eq!(b.observe(FOLLOWER, 0, None), None);
        assert_eq!(b.observe(CANDIDATE, 1, None), None);
        // term 2 is the second campaign in a row: if it fails, term 3 waits
        assert_eq!(b.observe(CANDIDATE, 2, None), Some(1));
    }

    #[test]
    fn pauses_outlast_every_drawn_timeout_and_spread_over_the_backoff() {
        let max = Duration::from_millis(2000);
        assert_eq!(Backoff::pause(max, 0.0), Duration::from_millis(2000));
        assert_eq!(Backoff::pause(max, 0.5), Duration::from_millis(2500));
        assert!(Backoff::pause(max, 0.999) < Duration::from_millis(3000));
        // out-of-range draws are clamped, never a negative or endless pause
        assert_eq!(Backoff::pause(max, -1.0), max);
        assert_eq!(Backoff::pause(max, 7.0), Duration::from_millis(3000));
    }
}
