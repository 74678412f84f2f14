//! Server-side partition assignors of the consumer group protocol (KIP-848).
//!
//! With `group.protocol=consumer` the coordinator, not a group leader, computes each
//! group's *target assignment*: whenever membership, subscriptions or topic metadata
//! change it runs the assignor the members chose (`group.remote.assignor`, else the
//! first of `group.consumer.assignors`) and then moves every member towards its target
//! through heartbeats. This module is that computation and nothing else: pure functions
//! from a [`GroupSpec`] (members, their subscriptions and their current target
//! assignment) and a [`SubscribedTopics`] view of the metadata to a [`GroupAssignment`].
//! No I/O, no clock, no randomness: the same input always gives the same output, which
//! the coordinator relies on when it replays records and which the tests rely on.
//!
//! The specification is Kafka's `org.apache.kafka.coordinator.group.assignor` package:
//! the `GroupSpec` / `MemberSubscription` / `SubscribedTopicDescriber` /
//! `GroupAssignment` interfaces, [`UniformAssignor`] (`uniform`, the default) and
//! [`RangeAssignor`] (`range`).
//!
//! Where Kafka's result depends on Java hash-map iteration order (which member or topic
//! is visited first), Ottla visits members in member-id order and topics in Kafka's
//! `Uuid` order ([`topic_order`]); the properties Kafka guarantees (validity, balance,
//! stickiness) are the same, only ties may be broken differently.
//!
//! Rack awareness: members carry their `rack_id`, but neither assignor uses it yet.
//! TODO(issue 14): rack-aware placement as Kafka's newer builders do it (balance first,
//! then prefer a member on a rack holding a replica, then stickiness); it needs the
//! replica racks of every partition in [`SubscribedTopics`].

mod range;
mod uniform;

#[cfg(test)]
mod properties;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

pub use range::RangeAssignor;
pub use uniform::{UniformAssignor, MAX_BALANCE_ITERATIONS};

/// A topic's id (Kafka's `Uuid`; the all-zero id is never a real topic).
pub type TopicId = Uuid;

/// A partition index within a topic (`int32` on the wire).
pub type PartitionId = i32;

/// Partitions per topic, the shape of every assignment (Kafka's
/// `Map<Uuid, Set<Integer>>`). Topics with no partitions are never present.
pub type TopicPartitions = BTreeMap<TopicId, BTreeSet<PartitionId>>;

/// `uniform`, Kafka's `UniformAssignor.NAME`.
pub const UNIFORM_ASSIGNOR_NAME: &str = "uniform";

/// `range`, Kafka's `RangeAssignor.NAME`.
pub const RANGE_ASSIGNOR_NAME: &str = "range";

/// A server-side assignor (Kafka's `ConsumerGroupPartitionAssignor`).
///
/// Implementations must be deterministic and must assign every partition of every
/// subscribed topic to exactly one member subscribed to that topic.
pub trait ConsumerGroupAssignor: Send + Sync {
    /// The name members ask for in `ServerAssignor` of ConsumerGroupHeartbeat.
    fn name(&self) -> &'static str;

    /// Computes the group's new target assignment. Every member of `group` appears in
    /// the result, with an empty assignment if it gets nothing.
    fn assign(
        &self,
        group: &GroupSpec,
        topics: &dyn SubscribedTopics,
    ) -> Result<GroupAssignment, AssignorError>;
}

/// The built-in assignors, in Kafka's default `group.consumer.assignors` order
/// (`uniform,range`): the first is the group's default.
pub fn builtin_assignors() -> [&'static dyn ConsumerGroupAssignor; 2] {
    [&UniformAssignor, &RangeAssignor]
}

/// The built-in assignor called `name`, if any.
pub fn assignor_by_name(name: &str) -> Option<&'static dyn ConsumerGroupAssignor> {
    builtin_assignors().into_iter().find(|a| a.name() == name)
}

/// Why an assignment could not be computed. The coordinator keeps the previous target
/// assignment when this happens (as Kafka does on `PartitionAssignorException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignorError {
    /// A member subscribes to a topic id the metadata does not know. The coordinator
    /// resolves subscriptions against the same metadata, so this means the two are out
    /// of step; Kafka fails the assignment the same way.
    #[error(
        "member {member_id} is subscribed to topic {topic_id}, which doesn't exist in the topic metadata"
    )]
    UnknownTopic {
        member_id: String,
        topic_id: TopicId,
    },
    /// The metadata reports more partitions than a partition index (`int32`) can name.
    #[error("topic {topic_id} has {partitions} partitions, more than an int32 partition index")]
    TooManyPartitions { topic_id: TopicId, partitions: u32 },
}

/// What the assignor may know about the subscribed topics (Kafka's
/// `SubscribedTopicDescriber`), typically backed by the coordinator's metadata image.
pub trait SubscribedTopics {
    /// The topic's partition count, or `None` if the topic does not exist.
    fn num_partitions(&self, topic_id: TopicId) -> Option<u32>;
}

impl SubscribedTopics for BTreeMap<TopicId, u32> {
    fn num_partitions(&self, topic_id: TopicId) -> Option<u32> {
        self.get(&topic_id).copied()
    }
}

impl SubscribedTopics for HashMap<TopicId, u32> {
    fn num_partitions(&self, topic_id: TopicId) -> Option<u32> {
        self.get(&topic_id).copied()
    }
}

/// Whether all members subscribe to the same topics (Kafka's `SubscriptionType`):
/// the uniform assignor has a cheaper, perfectly balanced builder for that case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionType {
    Homogeneous,
    Heterogeneous,
}

/// One member's subscription (Kafka's `MemberSubscription`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    /// `rack_id` from the heartbeat; not used yet (see the module's rack TODO).
    pub rack_id: Option<String>,
    /// `group.instance.id` of a static member: `range` orders members by it so that a
    /// restarted static member (new member id) gets its old ranges back.
    pub instance_id: Option<String>,
    /// The topics the member subscribes to, already resolved to ids (a regular
    /// expression subscription is resolved by the coordinator, not here).
    pub subscribed_topic_ids: BTreeSet<TopicId>,
}

/// One member's assignment (Kafka's `MemberAssignment`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAssignment {
    pub partitions: TopicPartitions,
}

impl MemberAssignment {
    /// The number of partitions, over all topics.
    pub fn len(&self) -> usize {
        self.partitions.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.values().all(BTreeSet::is_empty)
    }

    /// Every (topic, partition), in topic-id then partition order.
    pub fn iter(&self) -> impl Iterator<Item = (TopicId, PartitionId)> + '_ {
        self.partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
    }

    fn add(&mut self, topic_id: TopicId, partition: PartitionId) {
        self.partitions
            .entry(topic_id)
            .or_default()
            .insert(partition);
    }
}

impl FromIterator<(TopicId, PartitionId)> for MemberAssignment {
    fn from_iter<I: IntoIterator<Item = (TopicId, PartitionId)>>(iter: I) -> Self {
        let mut assignment = MemberAssignment::default();
        for (t, p) in iter {
            assignment.add(t, p);
        }
        assignment
    }
}

/// A member as the assignor sees it (Kafka's `MemberSubscriptionAndAssignmentImpl`):
/// its subscription and its *current target* assignment, which the sticky assignor
/// tries to preserve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    pub subscription: MemberSubscription,
    pub assignment: MemberAssignment,
}

/// The group as the assignor sees it (Kafka's `GroupSpec`).
///
/// The current assignments are input, not trusted state: a partition claimed by two
/// members, a partition index beyond the topic's count or a topic the member no longer
/// subscribes to are dropped by the assignors rather than propagated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSpec {
    members: BTreeMap<String, MemberSpec>,
    subscription_type: Option<SubscriptionType>,
}

impl GroupSpec {
    pub fn new(members: BTreeMap<String, MemberSpec>) -> Self {
        let mut subscriptions = members
            .values()
            .map(|m| &m.subscription.subscribed_topic_ids);
        let subscription_type = subscriptions.next().map(|first| {
            if subscriptions.all(|s| s == first) {
                SubscriptionType::Homogeneous
            } else {
                SubscriptionType::Heterogeneous
            }
        });
        GroupSpec {
            members,
            subscription_type,
        }
    }

    /// The members, in member-id order (the order every assignor visits them in).
    pub fn members(&self) -> &BTreeMap<String, MemberSpec> {
        &self.members
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    pub fn member_subscription(&self, member_id: &str) -> Option<&MemberSubscription> {
        self.members.get(member_id).map(|m| &m.subscription)
    }

    pub fn member_assignment(&self, member_id: &str) -> Option<&MemberAssignment> {
        self.members.get(member_id).map(|m| &m.assignment)
    }

    /// Homogeneous when every member subscribes to the same topics (an empty group is
    /// homogeneous, as Kafka's default).
    pub fn subscription_type(&self) -> SubscriptionType {
        self.subscription_type
            .unwrap_or(SubscriptionType::Homogeneous)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The new target assignment of every member (Kafka's `GroupAssignment`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupAssignment {
    pub members: BTreeMap<String, MemberAssignment>,
}

/// Kafka's `Uuid.compareTo` order: most significant 64 bits, then least significant,
/// each compared as a *signed* `long` (so ids with the top bit set sort first, unlike
/// byte order). Used wherever Kafka breaks ties by topic id.
pub fn topic_order(topic_id: &TopicId) -> (i64, i64) {
    let (hi, lo) = topic_id.as_u64_pair();
    (hi as i64, lo as i64)
}

/// Looks a subscribed topic up, with Kafka's error for a topic that does not exist.
fn partition_count(
    topics: &dyn SubscribedTopics,
    member_id: &str,
    topic_id: TopicId,
) -> Result<u32, AssignorError> {
    let partitions =
        topics
            .num_partitions(topic_id)
            .ok_or_else(|| AssignorError::UnknownTopic {
                member_id: member_id.to_string(),
                topic_id,
            })?;
    if partitions > i32::MAX as u32 {
        return Err(AssignorError::TooManyPartitions {
            topic_id,
            partitions,
        });
    }
    Ok(partitions)
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the ported Kafka tests and the property tests.

    use super::*;

    /// A topic id whose [`topic_order`] is `n` (small `n`: increasing ids).
    pub fn topic(n: u64) -> TopicId {
        Uuid::from_u64_pair(0, n)
    }

    pub fn member(topics: &[TopicId], assignment: Partitions<'_>) -> MemberSpec {
        MemberSpec {
            subscription: MemberSubscription {
                subscribed_topic_ids: topics.iter().copied().collect(),
                ..Default::default()
            },
            assignment: assignment_of(assignment),
        }
    }

    pub fn static_member(instance_id: &str, topics: &[TopicId]) -> MemberSpec {
        let mut m = member(topics, &[]);
        m.subscription.instance_id = Some(instance_id.to_string());
        m
    }

    pub fn assignment_of(assignment: Partitions<'_>) -> MemberAssignment {
        assignment
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect()
    }

    pub fn group(members: Vec<(&str, MemberSpec)>) -> GroupSpec {
        GroupSpec::new(
            members
                .into_iter()
                .map(|(id, m)| (id.to_string(), m))
                .collect(),
        )
    }

    pub fn metadata(topics: &[(TopicId, u32)]) -> BTreeMap<TopicId, u32> {
        topics.iter().copied().collect()
    }

    /// One member's expected partitions, as (topic, partitions) pairs.
    pub type Partitions<'a> = &'a [(TopicId, &'a [PartitionId])];

    /// Asserts the whole group assignment, member by member.
    #[track_caller]
    pub fn assert_assignment(actual: &GroupAssignment, expected: &[(&str, Partitions<'_>)]) {
        let expected: BTreeMap<String, MemberAssignment> = expected
            .iter()
            .map(|(id, a)| (id.to_string(), assignment_of(a)))
            .collect();
        assert_eq!(actual.members, expected);
    }

    /// Kafka's `checkValidityAndBalance`: members only get partitions of topics they
    /// subscribe to, no partition twice, sizes differ by at most one.
    #[track_caller]
    pub fn check_validity_and_balance(group: &GroupSpec, assignment: &GroupAssignment) {
        let mut seen = BTreeSet::new();
        for (id, a) in &assignment.members {
            let sub = &group.member_subscription(id).unwrap().subscribed_topic_ids;
            for (t, p) in a.iter() {
                assert!(sub.contains(&t), "{id} got {t}-{p} without subscribing");
                assert!(seen.insert((t, p)), "{t}-{p} assigned twice");
            }
        }
        let sizes: Vec<usize> = assignment.members.values().map(|a| a.len()).collect();
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        if let (Some(min), Some(max)) = (min, max) {
            assert!(max - min <= 1, "unbalanced sizes {sizes:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn subscription_type_is_derived_from_the_members() {
        let (t1, t2) = (topic(1), topic(2));
        assert_eq!(
            GroupSpec::default().subscription_type(),
            SubscriptionType::Homogeneous
        );
        let same = group(vec![
            ("a", member(&[t1, t2], &[])),
            ("b", member(&[t2, t1], &[])),
        ]);
        assert_eq!(same.subscription_type(), SubscriptionType::Homogeneous);
        let different = group(vec![
            ("a", member(&[t1, t2], &[])),
            ("b", member(&[t2], &[])),
        ]);
        assert_eq!(
            different.subscription_type(),
            SubscriptionType::Heterogeneous
        );
    }

    #[test]
    fn topic_order_is_kafkas_signed_uuid_order() {
        let high_bit = Uuid::from_u64_pair(0x8000_0000_0000_0000, 0);
        let small = Uuid::from_u64_pair(1, 0);
        // Byte order puts the high-bit id last; Kafka's signed comparison puts it first.
        assert!(small < high_bit);
        assert!(topic_order(&high_bit) < topic_order(&small));
        assert!(topic_order(&Uuid::from_u64_pair(1, u64::MAX)) < topic_order(&small));
    }

    #[test]
    fn builtin_assignors_by_name() {
        assert_eq!(builtin_assignors()[0].name(), UNIFORM_ASSIGNOR_NAME);
        assert_eq!(
            assignor_by_name(RANGE_ASSIGNOR_NAME).map(|a| a.name()),
            Some("range")
        );
        assert!(assignor_by_name("sticky").is_none());
    }

    #[test]
    fn partition_counts_beyond_int32_are_refused() {
        let t = topic(1);
        let g = group(vec![("a", member(&[t], &[]))]);
        let err = UniformAssignor
            .assign(&g, &metadata(&[(t, u32::MAX)]))
            .unwrap_err();
        assert!(matches!(err, AssignorError::TooManyPartitions { .. }));
    }
}
