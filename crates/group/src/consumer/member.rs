//! A member of a consumer group (KIP-848) and its reconciliation towards the group's
//! target assignment: Kafka's `ConsumerGroupMember` and `CurrentAssignmentBuilder`.
//!
//! A member moves to a new target one step per heartbeat, and a partition is never
//! owned by two members: partitions the member must give up are first *pending
//! revocation* (still owned, the member keeps its epoch) until a heartbeat shows the
//! client no longer holds them; partitions it should get that another member still owns
//! are *unreleased* and are handed out only once their owner has let them go.
//!
//! ```text
//!            target moved, something to revoke        revoked (owned list lacks them)
//!  STABLE ─────────────────────────────────▶ UNREVOKED_PARTITIONS ──────────────┐
//!    ▲  ▲                                                                       │
//!    │  └────── all target partitions free ◀── UNRELEASED_PARTITIONS ◀──────────┘
//!    └──────────────────────────────────────────────── (nothing unreleased)
//! ```

use std::collections::BTreeSet;

use uuid::Uuid;

use super::records::{
    ConsumerGroupMemberMetadataValue, CurrentMemberAssignmentValue, TopicPartitions,
};

/// The epoch a member that left (or was removed) answers with.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The epoch of a static member that left temporarily: it keeps its assignment until
/// it rejoins under the same `group.instance.id` or its session expires.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Kafka's `MemberState`, stored as an int8 in `ConsumerGroupCurrentMemberAssignmentValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    /// Waits for the client to revoke partitions.
    UnrevokedPartitions,
    /// Has its epoch but waits for partitions other members still own.
    UnreleasedPartitions,
    /// Owns its target assignment at the target epoch.
    #[default]
    Stable,
    /// A state this version does not know (read from a newer record).
    Unknown,
}

impl MemberState {
    pub fn value(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    pub fn from_value(v: i8) -> MemberState {
        match v {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }

    /// The names Kafka logs and ConsumerGroupDescribe tooling shows.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::UnrevokedPartitions => "UNREVOKED_PARTITIONS",
            MemberState::UnreleasedPartitions => "UNRELEASED_PARTITIONS",
            MemberState::Stable => "STABLE",
            MemberState::Unknown => "UNKNOWN",
        }
    }
}

/// One member of a consumer group: what it told the coordinator (the metadata record)
/// and where it is in its reconciliation (the current-assignment record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMember {
    pub member_id: String,
    pub metadata: ConsumerGroupMemberMetadataValue,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// Partitions the member owns and may consume.
    pub assigned: TopicPartitions,
    /// Partitions the member still owns but must give up.
    pub pending_revocation: TopicPartitions,
}

impl ConsumerMember {
    pub fn new(member_id: &str) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }

    pub fn instance_id(&self) -> Option<&str> {
        self.metadata.instance_id.as_deref()
    }

    pub fn assignment_value(&self) -> CurrentMemberAssignmentValue {
        CurrentMemberAssignmentValue {
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state.value(),
            assigned_partitions: self.assigned.clone(),
            partitions_pending_revocation: self.pending_revocation.clone(),
        }
    }

    pub fn apply_assignment(&mut self, v: &CurrentMemberAssignmentValue) {
        self.member_epoch = v.member_epoch;
        self.previous_member_epoch = v.previous_member_epoch;
        self.state = MemberState::from_value(v.state);
        self.assigned = v.assigned_partitions.clone();
        self.pending_revocation = v.partitions_pending_revocation.clone();
    }

    /// Every partition the member owns: assigned or pending revocation.
    pub fn owned(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        iter(&self.assigned).chain(iter(&self.pending_revocation))
    }

    fn with_epoch(&self, epoch: i32) -> ConsumerMember {
        let mut next = self.clone();
        if epoch != self.member_epoch {
            next.previous_member_epoch = self.member_epoch;
            next.member_epoch = epoch;
        }
        next
    }
}

pub fn iter(tp: &TopicPartitions) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    tp.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

pub fn count(tp: &TopicPartitions) -> usize {
    tp.values().map(BTreeSet::len).sum()
}

/// Is every partition of `owned` in `assigned`? Kafka's `isSubset`: an unknown owned
/// set (`None`) is not.
pub fn is_subset(owned: Option<&TopicPartitions>, assigned: &TopicPartitions) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned
        .iter()
        .all(|(t, ps)| ps.is_empty() || assigned.get(t).is_some_and(|a| ps.is_subset(a)))
}

/// Kafka's `CurrentAssignmentBuilder`: the member's next state given the target.
pub struct Reconciliation<'a> {
    pub target_epoch: i32,
    pub target: &'a TopicPartitions,
    /// The partitions the client says it owns, if the heartbeat carried them.
    pub owned: Option<&'a TopicPartitions>,
    /// Whether another member currently owns this partition (Kafka's
    /// `currentPartitionEpoch(..) != -1` for a partition this member does not own).
    pub owned_by_other: &'a dyn Fn(Uuid, i32) -> bool,
}

impl Reconciliation<'_> {
    pub fn next(&self, member: &ConsumerMember) -> ConsumerMember {
        match member.state {
            MemberState::Stable => {
                if member.member_epoch != self.target_epoch {
                    self.compute(member, member.member_epoch)
                } else {
                    member.clone()
                }
            }
            MemberState::UnrevokedPartitions => {
                if self.owns_any(&member.pending_revocation) {
                    return member.clone();
                }
                // Revoked: the member moves one epoch on, towards the latest target.
                self.compute(member, (member.member_epoch + 1).min(self.target_epoch))
            }
            MemberState::UnreleasedPartitions | MemberState::Unknown => {
                self.compute(member, member.member_epoch)
            }
        }
    }

    /// Does the client still own any of these? Unknown (no owned list) counts as yes.
    fn owns_any(&self, partitions: &TopicPartitions) -> bool {
        let Some(owned) = self.owned else {
            return true;
        };
        iter(partitions).any(|(t, p)| owned.get(&t).is_some_and(|ps| ps.contains(&p)))
    }

    fn compute(&self, member: &ConsumerMember, epoch: i32) -> ConsumerMember {
        let mut assigned = TopicPartitions::new();
        let mut revoke = TopicPartitions::new();
        let mut to_assign = TopicPartitions::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = self
            .target
            .keys()
            .chain(member.assigned.keys())
            .copied()
            .collect();
        let empty = BTreeSet::new();
        for topic in topics {
            let target = self.target.get(&topic).unwrap_or(&empty);
            let current = member.assigned.get(&topic).unwrap_or(&empty);
            let keep: BTreeSet<i32> = current.intersection(target).copied().collect();
            let gone: BTreeSet<i32> = current.difference(target).copied().collect();
            let mut new: BTreeSet<i32> = target.difference(current).copied().collect();
            new.retain(|p| {
                let taken = (self.owned_by_other)(topic, *p);
                unreleased |= taken;
                !taken
            });
            for (set, parts) in [
                (&mut assigned, keep),
                (&mut revoke, gone),
                (&mut to_assign, new),
            ] {
                if !parts.is_empty() {
                    set.insert(topic, parts);
                }
            }
        }
        let mut next = member.clone();
        if !revoke.is_empty() && self.owns_any(&revoke) {
            next = next.with_epoch(epoch);
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = assigned;
            next.pending_revocation = revoke;
            return next;
        }
        for (t, ps) in to_assign {
            assigned.entry(t).or_default().extend(ps);
        }
        next = next.with_epoch(self.target_epoch);
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next.assigned = assigned;
        next.pending_revocation = TopicPartitions::new();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> Uuid {
        Uuid::from_u64_pair(0, n)
    }

    fn tp(parts: &[(u64, &[i32])]) -> TopicPartitions {
        parts
            .iter()
            .map(|(topic, ps)| (t(*topic), ps.iter().copied().collect()))
            .collect()
    }

    fn member(
        epoch: i32,
        state: MemberState,
        assigned: TopicPartitions,
        pending: TopicPartitions,
    ) -> ConsumerMember {
        ConsumerMember {
            member_id: "m".into(),
            member_epoch: epoch,
            previous_member_epoch: epoch - 1,
            state,
            assigned,
            pending_revocation: pending,
            ..Default::default()
        }
    }

    fn nobody(_: Uuid, _: i32) -> bool {
        false
    }

    #[test]
    fn stable_member_at_the_target_epoch_does_not_change() {
        let m = member(10, MemberState::Stable, tp(&[(1, &[0, 1])]), tp(&[]));
        let target = tp(&[(1, &[0, 1, 2])]);
        let r = Reconciliation {
            target_epoch: 10,
            target: &target,
            owned: None,
            owned_by_other: &nobody,
        };
        assert_eq!(r.next(&m), m);
    }

    #[test]
    fn new_partitions_are_assigned_at_the_target_epoch() {
        let m = member(10, MemberState::Stable, tp(&[(1, &[0])]), tp(&[]));
        let target = tp(&[(1, &[0, 1]), (2, &[3])]);
        let owned = tp(&[(1, &[0])]);
        let r = Reconciliation {
            target_epoch: 11,
            target: &target,
            owned: Some(&owned),
            owned_by_other: &nobody,
        };
        let next = r.next(&m);
        assert_eq!(
            (next.member_epoch, next.previous_member_epoch, next.state),
            (11, 10, MemberState::Stable)
        );
        assert_eq!(next.assigned, target);
        assert!(next.pending_revocation.is_empty());
    }

    #[test]
    fn partitions_to_revoke_keep_the_epoch_until_the_client_lets_them_go() {
        let m = member(10, MemberState::Stable, tp(&[(1, &[0, 1, 2])]), tp(&[]));
        let target = tp(&[(1, &[0]), (2, &[0])]);
        let owned = tp(&[(1, &[0, 1, 2])]);
        let r = Reconciliation {
            target_epoch: 12,
            target: &target,
            owned: Some(&owned),
            owned_by_other: &nobody,
        };
        let next = r.next(&m);
        assert_eq!(
            (next.member_epoch, next.state),
            (10, MemberState::UnrevokedPartitions)
        );
        assert_eq!(next.assigned, tp(&[(1, &[0])]));
        assert_eq!(next.pending_revocation, tp(&[(1, &[1, 2])]));

        // Still owned (or owned partitions unknown): no progress.
        assert_eq!(r.next(&next), next);
        let r2 = Reconciliation { owned: None, ..r };
        assert_eq!(r2.next(&next), next);

        // Revoked: one step on, straight to the target since nothing else is owned.
        let owned = tp(&[(1, &[0])]);
        let r3 = Reconciliation {
            target_epoch: 12,
            target: &target,
            owned: Some(&owned),
            owned_by_other: &nobody,
        };
        let done = r3.next(&next);
        assert_eq!(
            (done.member_epoch, done.previous_member_epoch, done.state),
            (12, 10, MemberState::Stable)
        );
        assert_eq!(done.assigned, target);
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn revocation_the_client_already_did_is_not_waited_for() {
        // The client's owned list already lacks the partitions to revoke.
        let m = member(10, MemberState::Stable, tp(&[(1, &[0, 1])]), tp(&[]));
        let target = tp(&[(1, &[0])]);
        let owned = tp(&[(1, &[0])]);
        let r = Reconciliation {
            target_epoch: 11,
            target: &target,
            owned: Some(&owned),
            owned_by_other: &nobody,
        };
        let next = r.next(&m);
        assert_eq!((next.member_epoch, next.state), (11, MemberState::Stable));
        assert_eq!(next.assigned, target);
    }

    #[test]
    fn partitions_owned_by_another_member_wait_as_unreleased() {
        let m = member(10, MemberState::Stable, tp(&[(1, &[0])]), tp(&[]));
        let target = tp(&[(1, &[0, 1, 2])]);
        let taken = |topic: Uuid, p: i32| topic == t(1) && p == 2;
        let owned = tp(&[(1, &[0])]);
        let r = Reconciliation {
            target_epoch: 11,
            target: &target,
            owned: Some(&owned),
            owned_by_other: &taken,
        };
        let next = r.next(&m);
        assert_eq!(
            (next.member_epoch, next.state),
            (11, MemberState::UnreleasedPartitions)
        );
        assert_eq!(next.assigned, tp(&[(1, &[0, 1])]));
        // Once released, the next heartbeat hands it out.
        let r2 = Reconciliation {
            owned_by_other: &nobody,
            ..r
        };
        let done = r2.next(&next);
        assert_eq!((done.member_epoch, done.state), (11, MemberState::Stable));
        assert_eq!(done.assigned, target);
        // Only unreleased, nothing new: still waits, at the target epoch.
        let only_taken = tp(&[(1, &[0, 2])]);
        let r3 = Reconciliation {
            target_epoch: 11,
            target: &only_taken,
            owned: Some(&owned),
            owned_by_other: &taken,
        };
        let waiting = r3.next(&m);
        assert_eq!(
            (waiting.member_epoch, waiting.state),
            (11, MemberState::UnreleasedPartitions)
        );
        assert_eq!(waiting.assigned, tp(&[(1, &[0])]));
    }

    #[test]
    fn subset_follows_kafka() {
        let assigned = tp(&[(1, &[0, 1])]);
        assert!(!is_subset(None, &assigned));
        assert!(is_subset(Some(&tp(&[])), &assigned));
        assert!(is_subset(Some(&tp(&[(1, &[1])])), &assigned));
        assert!(!is_subset(Some(&tp(&[(1, &[2])])), &assigned));
        assert!(!is_subset(Some(&tp(&[(2, &[0])])), &assigned));
    }

    #[test]
    fn member_state_values_round_trip() {
        for s in [
            MemberState::UnrevokedPartitions,
            MemberState::UnreleasedPartitions,
            MemberState::Stable,
        ] {
            assert_eq!(MemberState::from_value(s.value()), s);
        }
    }
}
