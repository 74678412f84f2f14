//! The `range` assignor (Kafka 4.1's `RangeAssignor`).
//!
//! Per topic, the subscribers in a fixed order get contiguous ranges of partitions:
//! `partitions / subscribers` each, one more for the first `partitions % subscribers`.
//! When every member subscribes to the same topics and those topics have the same
//! partition count, each member gets the *same partition numbers* of every topic
//! (co-partitioning), which is what joins over co-partitioned streams need. For
//! example members M0, M1 over topics T1 and T2 of 3 partitions each:
//! `M0: T1 0-1, T2 0-1` and `M1: T1 2, T2 2`.
//!
//! The order is static members first, by `group.instance.id`, then the others by member
//! id: a static member that restarts (and gets a new member id) keeps its ranges as
//! long as membership, subscriptions and partition counts do not change. Beyond that
//! `range` is not sticky, deliberately: as in Kafka, the current assignment is not an
//! input, because keeping it would break co-partitioning.
//!
//! Rack awareness is not implemented (see the TODO in the module above).

use std::collections::BTreeMap;

use super::{
    partition_count, AssignorError, ConsumerGroupAssignor, GroupAssignment, GroupSpec,
    MemberAssignment, PartitionId, SubscribedTopics, TopicId, RANGE_ASSIGNOR_NAME,
};

/// The `range` assignor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl ConsumerGroupAssignor for RangeAssignor {
    fn name(&self) -> &'static str {
        RANGE_ASSIGNOR_NAME
    }

    fn assign(
        &self,
        group: &GroupSpec,
        topics: &dyn SubscribedTopics,
    ) -> Result<GroupAssignment, AssignorError> {
        // Static members first by instance id, then dynamic members by member id.
        let mut members: Vec<(&String, Option<&String>)> = group
            .members()
            .iter()
            .map(|(id, m)| (id, m.subscription.instance_id.as_ref()))
            .collect();
        members.sort_by(|(id_a, inst_a), (id_b, inst_b)| {
            (inst_a.is_none(), inst_a, id_a).cmp(&(inst_b.is_none(), inst_b, id_b))
        });

        // Subscribers of each topic, in that order (the homogeneous case, Kafka's
        // separate fast path, is the special case where every list is the same).
        let mut subscribers: BTreeMap<TopicId, Vec<usize>> = BTreeMap::new();
        for (index, (member_id, _)) in members.iter().enumerate() {
            let subscription = &group.members()[*member_id].subscription;
            for &topic_id in &subscription.subscribed_topic_ids {
                subscribers.entry(topic_id).or_default().push(index);
            }
        }

        let mut targets = vec![MemberAssignment::default(); members.len()];
        for (topic_id, subs) in &subscribers {
            let partitions = partition_count(topics, members[subs[0]].0, *topic_id)?;
            let (partitions, count) = (partitions as usize, subs.len());
            let (quota, mut extra) = (partitions / count, partitions % count);
            let mut next = 0usize;
            for &m in subs {
                let mut len = quota;
                if extra > 0 {
                    len += 1;
                    extra -= 1;
                }
                if len > 0 {
                    targets[m].partitions.insert(
                        *topic_id,
                        (next..next + len).map(|p| p as PartitionId).collect(),
                    );
                }
                next += len;
            }
        }

        Ok(GroupAssignment {
            members: members
                .into_iter()
                .map(|(id, _)| id.clone())
                .zip(targets)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    //! Kafka 4.1's `RangeAssignorTest`, ported with its expected assignments (Kafka
    //! lists a member that gets no partitions of a topic with an empty set for it;
    //! Ottla never lists empty topics).

    use super::super::test_util::*;
    use super::super::*;

    fn t(n: u64) -> TopicId {
        topic(n)
    }

    fn range(group: &GroupSpec, meta: &BTreeMap<TopicId, u32>) -> GroupAssignment {
        RangeAssignor.assign(group, meta).unwrap()
    }

    #[test]
    fn one_member_no_topic() {
        let g = group(vec![("A", member(&[], &[]))]);
        assert_assignment(&range(&g, &metadata(&[(t(1), 3)])), &[("A", &[])]);
    }

    #[test]
    fn one_member_subscribed_to_nonexistent_topic() {
        let g = group(vec![("A", member(&[t(2)], &[]))]);
        let err = RangeAssignor
            .assign(&g, &metadata(&[(t(1), 3)]))
            .unwrap_err();
        assert!(matches!(err, AssignorError::UnknownTopic { .. }));
    }

    #[test]
    fn first_assignment_two_members_two_topics_same_subscriptions() {
        let g = group(vec![
            ("A", member(&[t(1), t(3)], &[])),
            ("B", member(&[t(1), t(3)], &[])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 3), (t(3), 2)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0, 1]), (t(3), &[0])]),
                ("B", &[(t(1), &[2]), (t(3), &[1])]),
            ],
        );
    }

    #[test]
    fn first_assignment_three_members_three_topics_different_subscriptions() {
        let g = group(vec![
            ("A", member(&[t(1), t(2)], &[])),
            ("B", member(&[t(3)], &[])),
            ("C", member(&[t(2), t(3)], &[])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 3), (t(2), 3), (t(3), 2)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0, 1, 2]), (t(2), &[0, 1])]),
                ("B", &[(t(3), &[0])]),
                ("C", &[(t(2), &[2]), (t(3), &[1])]),
            ],
        );
    }

    #[test]
    fn first_assignment_more_members_than_partitions() {
        let both = [t(1), t(3)];
        let g = group(vec![
            ("A", member(&both, &[])),
            ("B", member(&both, &[])),
            ("C", member(&both, &[])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 3), (t(3), 2)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0]), (t(3), &[0])]),
                ("B", &[(t(1), &[1]), (t(3), &[1])]),
                ("C", &[(t(1), &[2])]),
            ],
        );
    }

    #[test]
    fn static_membership() {
        let meta = metadata(&[(t(1), 3)]);
        let before = range(
            &group(vec![
                ("A", static_member("instanceA", &[t(1)])),
                ("B", static_member("instanceB", &[t(1)])),
            ]),
            &meta,
        );
        // A restarts as "memberA1" with the same instance id.
        let after = range(
            &group(vec![
                ("memberA1", static_member("instanceA", &[t(1)])),
                ("B", static_member("instanceB", &[t(1)])),
            ]),
            &meta,
        );
        assert_eq!(before.members["A"], after.members["memberA1"]);
        assert_eq!(before.members["B"], after.members["B"]);
    }

    #[test]
    fn mixed_static_membership() {
        let meta = metadata(&[(t(1), 5)]);
        let before = range(
            &group(vec![
                ("A", static_member("instanceA", &[t(1)])),
                ("C", static_member("instanceC", &[t(1)])),
                ("B", member(&[t(1)], &[])),
            ]),
            &meta,
        );
        let after = range(
            &group(vec![
                ("memberA1", static_member("instanceA", &[t(1)])),
                ("C", static_member("instanceC", &[t(1)])),
                ("B", member(&[t(1)], &[])),
            ]),
            &meta,
        );
        assert_eq!(before.members["A"], after.members["memberA1"]);
        assert_eq!(before.members["B"], after.members["B"]);
        assert_eq!(before.members["C"], after.members["C"]);
        // Static members first: A 0-1, C 2-3, then the dynamic B 4.
        assert_assignment(
            &after,
            &[
                ("memberA1", &[(t(1), &[0, 1])]),
                ("C", &[(t(1), &[2, 3])]),
                ("B", &[(t(1), &[4])]),
            ],
        );
    }

    #[test]
    fn reassignment_more_members_than_partitions_when_one_member_added() {
        let both = [t(1), t(2)];
        let g = group(vec![
            ("A", member(&both, &[(t(1), &[0]), (t(2), &[0])])),
            ("B", member(&both, &[(t(1), &[1]), (t(2), &[1])])),
            ("C", member(&both, &[])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 2), (t(2), 2)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0]), (t(2), &[0])]),
                ("B", &[(t(1), &[1]), (t(2), &[1])]),
                ("C", &[]),
            ],
        );
    }

    #[test]
    fn reassignment_when_one_partition_added() {
        let both = [t(1), t(2)];
        let g = group(vec![
            ("A", member(&both, &[(t(1), &[0, 1]), (t(2), &[0, 1])])),
            ("B", member(&both, &[(t(1), &[2]), (t(2), &[2])])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 4), (t(2), 4)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0, 1]), (t(2), &[0, 1])]),
                ("B", &[(t(1), &[2, 3]), (t(2), &[2, 3])]),
            ],
        );
    }

    #[test]
    fn reassignment_when_one_member_added() {
        let both = [t(1), t(2)];
        let g = group(vec![
            ("A", member(&both, &[(t(1), &[0, 1]), (t(2), &[0, 1])])),
            ("B", member(&both, &[(t(1), &[2]), (t(2), &[2])])),
            ("C", member(&both, &[])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 3), (t(2), 3)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0]), (t(2), &[0])]),
                ("B", &[(t(1), &[1]), (t(2), &[1])]),
                ("C", &[(t(1), &[2]), (t(2), &[2])]),
            ],
        );
    }

    #[test]
    fn reassignment_when_one_member_and_one_partition_added() {
        let both = [t(1), t(2)];
        let g = group(vec![
            ("A", member(&both, &[(t(1), &[0, 1]), (t(2), &[0, 1])])),
            ("B", member(&both, &[(t(1), &[2]), (t(2), &[2])])),
            ("C", member(&[t(1)], &[])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 4), (t(2), 3)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0, 1]), (t(2), &[0, 1])]),
                ("B", &[(t(1), &[2]), (t(2), &[2])]),
                ("C", &[(t(1), &[3])]),
            ],
        );
    }

    #[test]
    fn reassignment_when_one_member_removed() {
        let g = group(vec![(
            "B",
            member(&[t(1), t(2)], &[(t(1), &[2]), (t(2), &[2])]),
        )]);
        let a = range(&g, &metadata(&[(t(1), 3), (t(2), 3)]));
        assert_assignment(&a, &[("B", &[(t(1), &[0, 1, 2]), (t(2), &[0, 1, 2])])]);
    }

    #[test]
    fn reassignment_when_multiple_subscriptions_removed() {
        // Before: A t1 t2, B t2, C t2 t3. Now: A t1, B t1 t2 t3, C t2.
        let g = group(vec![
            ("A", member(&[t(1)], &[(t(1), &[0, 1, 2]), (t(2), &[0])])),
            ("B", member(&[t(1), t(2), t(3)], &[(t(2), &[1])])),
            ("C", member(&[t(2)], &[(t(2), &[2]), (t(3), &[0, 1])])),
        ]);
        let a = range(&g, &metadata(&[(t(1), 3), (t(2), 3), (t(3), 2)]));
        assert_assignment(
            &a,
            &[
                ("A", &[(t(1), &[0, 1])]),
                ("B", &[(t(1), &[2]), (t(2), &[0, 1]), (t(3), &[0, 1])]),
                ("C", &[(t(2), &[2])]),
            ],
        );
    }
}
