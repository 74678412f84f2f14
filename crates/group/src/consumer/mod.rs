//! Consumer groups of the next-generation protocol (KIP-848): the broker, not a group
//! leader, assigns partitions, and members converge on the assignment one heartbeat at
//! a time. The specification is Kafka's `GroupMetadataManager.consumerGroupHeartbeat`
//! and `ConsumerGroup`.
//!
//! Every change is a record for `__consumer_offsets` that is also applied to memory
//! through [`ConsumerGroup::replay`] — the same function that loads a group at
//! start-up, so the live path and the load path cannot disagree:
//!
//! * `ConsumerGroupMemberMetadata`: what a member subscribes to and how it runs;
//! * `ConsumerGroupMetadata`: the *group epoch*, bumped whenever membership,
//!   subscriptions or the subscribed topics' metadata change;
//! * `ConsumerGroupTargetAssignmentMember`/`Metadata`: the assignor's answer for a
//!   group epoch (the *assignment epoch*);
//! * `ConsumerGroupCurrentMemberAssignment`: where each member is on its way to its
//!   target (see [`member`]): its *member epoch*, the partitions it owns and those it
//!   must still revoke;
//! * `ConsumerGroupRegularExpression`: the topics a subscription regex resolved to.
//!
//! Time is passed in (`now`); session and revocation deadlines live in memory only and
//! restart from the load time after a coordinator moves, as in Kafka.

pub mod classic;
pub mod member;
pub mod records;
pub mod topics;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::assignor::{
    ConsumerGroupAssignor, GroupSpec, MemberAssignment, MemberSpec, MemberSubscription,
    SubscribedTopics,
};
use crate::records::CoordinatorKey;
use crate::types::{error, CoordinatorRecord, RecordValue};
pub use classic::ClassicMemberState;
use member::{
    count, is_subset, ConsumerMember, MemberState, Reconciliation, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};
use records::{
    ConsumerGroupKey, ConsumerGroupMemberMetadataValue, ConsumerGroupMetadataValue,
    ConsumerGroupValue, RegularExpressionValue, TargetAssignmentMemberValue,
    TargetAssignmentMetadataValue, TopicPartitions,
};
pub use topics::TopicAccess;
use topics::{compile_subscription_regex, TopicsImage};

/// Kafka's error codes the consumer group protocol adds.
pub mod codes {
    pub const INVALID_REQUEST: i16 = 42;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
}

/// The broker settings of consumer groups (`group.consumer.*`).
#[derive(Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.max.size`
    pub max_size: usize,
    /// `group.consumer.assignors`, in order: the first is the default.
    pub assignors: Vec<&'static dyn ConsumerGroupAssignor>,
    /// `group.consumer.migration.policy`
    pub migration_policy: MigrationPolicy,
    /// `group.max.size`: a group with more classic members is not downgraded.
    pub classic_max_size: usize,
}

/// `group.consumer.migration.policy`: which online conversions between the classic and
/// the consumer protocol are allowed (KIP-848).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    Disabled,
    Upgrade,
    Downgrade,
    #[default]
    Bidirectional,
}

impl MigrationPolicy {
    /// Kafka's names, case-insensitive.
    pub fn parse(s: &str) -> Option<MigrationPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disabled" => Some(MigrationPolicy::Disabled),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ConsumerGroupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroupConfig")
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("max_size", &self.max_size)
            .field("migration_policy", &self.migration_policy)
            .field(
                "assignors",
                &self.assignors.iter().map(|a| a.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            heartbeat_interval_ms: 5000,
            session_timeout_ms: 45000,
            max_size: i32::MAX as usize,
            assignors: crate::assignor::builtin_assignors().to_vec(),
            migration_policy: MigrationPolicy::Bidirectional,
            classic_max_size: i32::MAX as usize,
        }
    }
}

impl ConsumerGroupConfig {
    fn assignor(&self, name: &str) -> Option<&'static dyn ConsumerGroupAssignor> {
        self.assignors.iter().copied().find(|a| a.name() == name)
    }
}

/// A ConsumerGroupHeartbeat request, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when not sent.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the client owns (`None`: not sent, e.g. unchanged).
    pub owned: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
    pub api_version: i16,
    /// The topics the sender may describe: what a regex it triggers resolves to.
    pub topic_access: TopicAccess,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assigned partitions, when they are to be sent.
    pub assignment: Option<TopicPartitions>,
}

/// An error answer: Kafka's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError {
    pub code: i16,
    pub message: String,
}

impl GroupError {
    pub fn new(code: i16, message: impl Into<String>) -> GroupError {
        GroupError {
            code,
            message: message.into(),
        }
    }
}

/// Kafka's `ConsumerGroup.ConsumerGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: TopicPartitions,
    pub target_assignment: TopicPartitions,
    /// Joined with the classic protocol (during a migration).
    pub classic: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<ConsumerMemberDescription>,
}

/// One consumer group's state.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    group_id: String,
    group_epoch: i32,
    metadata_hash: i64,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    /// The target assignment of the assignment epoch, per member.
    target: BTreeMap<String, TopicPartitions>,
    /// Which member owns each partition (assigned or pending revocation).
    owners: HashMap<(Uuid, i32), String>,
    /// `group.instance.id` → member id.
    static_members: HashMap<String, String>,
    /// Subscription regexes and the topics they resolved to.
    regexes: BTreeMap<String, RegularExpressionValue>,
    /// When each member's session ends unless it heartbeats (memory only).
    session_deadlines: HashMap<String, i64>,
    /// Members asked to revoke: the epoch they were asked at and the deadline.
    revocation_deadlines: HashMap<String, (i32, i64)>,
    /// Classic members that must join (after REBALANCE_IN_PROGRESS) or sync (after a
    /// join) by this time (memory only).
    classic_deadlines: HashMap<String, i64>,
}

fn record(
    group: &str,
    key: ConsumerGroupKey,
    value: Option<ConsumerGroupValue>,
) -> CoordinatorRecord {
    debug_assert_eq!(key.group(), group);
    CoordinatorRecord {
        key: CoordinatorKey::ConsumerGroup(key),
        value: value.map_or(RecordValue::Tombstone, RecordValue::ConsumerGroup),
    }
}

impl ConsumerGroup {
    pub fn new(group_id: &str) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            ..Default::default()
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| {
            m.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
                && (m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        }) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Topic names the members subscribe to, by name or through a resolved regex.
    pub fn subscribed_topic_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for m in self.members.values() {
            names.extend(self.member_topics(&m.metadata));
        }
        names
    }

    fn member_topics<'a>(
        &'a self,
        metadata: &'a ConsumerGroupMemberMetadataValue,
    ) -> impl Iterator<Item = String> + 'a {
        let by_regex = metadata
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| self.regexes.get(r))
            .into_iter()
            .flat_map(|v| v.topics.iter().cloned());
        metadata
            .subscribed_topic_names
            .iter()
            .cloned()
            .chain(by_regex)
    }

    /// The assignor most members asked for, else the configured default (Kafka's
    /// `computePreferredServerAssignor`; ties go to the name first in order).
    fn preferred_assignor(
        &self,
        config: &ConsumerGroupConfig,
    ) -> Option<&'static dyn ConsumerGroupAssignor> {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.metadata.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let most = votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .and_then(|(name, _)| config.assignor(name));
        most.or_else(|| config.assignors.first().copied())
    }

    // ------------------------------------------------------------------ replay

    /// Applies one stored record of this group. Returns false when the record deletes
    /// the group (its metadata tombstone).
    pub fn replay(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        key: &ConsumerGroupKey,
        value: Option<&ConsumerGroupValue>,
    ) -> bool {
        match (key, value) {
            (ConsumerGroupKey::Metadata { .. }, Some(ConsumerGroupValue::Metadata(v))) => {
                self.group_epoch = v.epoch;
                self.metadata_hash = v.metadata_hash;
            }
            (ConsumerGroupKey::Metadata { .. }, None) => {
                if !self.members.is_empty() {
                    tracing::error!(
                        "[GroupId {}] Group metadata tombstone while the group has members; deleting it anyway",
                        self.group_id
                    );
                }
                return false;
            }
            (
                ConsumerGroupKey::MemberMetadata { member, .. },
                Some(ConsumerGroupValue::MemberMetadata(v)),
            ) => {
                let m = self
                    .members
                    .entry(member.clone())
                    .or_insert_with(|| ConsumerMember::new(member));
                if let Some(old) = m.metadata.instance_id.take() {
                    self.static_members.remove(&old);
                }
                m.metadata = v.clone();
                if let Some(instance) = &v.instance_id {
                    self.static_members.insert(instance.clone(), member.clone());
                }
                let session = self.members[member].session_timeout_ms(config);
                self.session_deadlines
                    .entry(member.clone())
                    .or_insert(now + i64::from(session));
            }
            (ConsumerGroupKey::MemberMetadata { member, .. }, None) => {
                if let Some(m) = self.members.remove(member) {
                    if let Some(instance) = m.instance_id() {
                        if self.static_members.get(instance) == Some(member) {
                            self.static_members.remove(instance);
                        }
                    }
                    self.release(&m);
                }
                self.session_deadlines.remove(member);
                self.revocation_deadlines.remove(member);
                self.classic_deadlines.remove(member);
            }
            (
                ConsumerGroupKey::TargetAssignmentMetadata { .. },
                Some(ConsumerGroupValue::TargetAssignmentMetadata(v)),
            ) => self.assignment_epoch = v.assignment_epoch,
            (ConsumerGroupKey::TargetAssignmentMetadata { .. }, None) => self.assignment_epoch = -1,
            (
                ConsumerGroupKey::TargetAssignmentMember { member, .. },
                Some(ConsumerGroupValue::TargetAssignmentMember(v)),
            ) => {
                self.target
                    .insert(member.clone(), v.topic_partitions.clone());
            }
            (ConsumerGroupKey::TargetAssignmentMember { member, .. }, None) => {
                self.target.remove(member);
            }
            (
                ConsumerGroupKey::CurrentMemberAssignment { member, .. },
                Some(ConsumerGroupValue::CurrentMemberAssignment(v)),
            ) => {
                let mut m = self
                    .members
                    .remove(member)
                    .unwrap_or_else(|| ConsumerMember::new(member));
                self.release(&m);
                m.apply_assignment(v);
                self.claim(&m);
                self.members.insert(member.clone(), m);
            }
            (ConsumerGroupKey::CurrentMemberAssignment { member, .. }, None) => {
                if let Some(mut m) = self.members.remove(member) {
                    self.release(&m);
                    m.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                    m.previous_member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                    m.state = MemberState::Stable;
                    m.assigned.clear();
                    m.pending_revocation.clear();
                    self.members.insert(member.clone(), m);
                }
            }
            (
                ConsumerGroupKey::RegularExpression { regex, .. },
                Some(ConsumerGroupValue::RegularExpression(v)),
            ) => {
                self.regexes.insert(regex.clone(), v.clone());
            }
            (ConsumerGroupKey::RegularExpression { regex, .. }, None) => {
                self.regexes.remove(regex);
            }
            // The subscription metadata record of Kafka before 4.1: the metadata hash
            // replaced it, nothing to keep.
            (ConsumerGroupKey::PartitionMetadata { .. }, _) => {}
            (key, Some(value)) => {
                tracing::warn!(
                    "[GroupId {}] Skipping a record whose value {value:?} does not match its key {key:?}",
                    self.group_id
                );
            }
        }
        true
    }

    fn release(&mut self, m: &ConsumerMember) {
        for tp in m.owned() {
            if self.owners.get(&tp) == Some(&m.member_id) {
                self.owners.remove(&tp);
            }
        }
    }

    /// Records the member as owner of its partitions. A partition owned by another
    /// member breaks the protocol's first invariant; it is logged, and the new owner
    /// recorded, rather than taking the coordinator down.
    fn claim(&mut self, m: &ConsumerMember) {
        for tp in m.owned() {
            if let Some(other) = self.owners.insert(tp, m.member_id.clone()) {
                if other != m.member_id {
                    tracing::error!(
                        "[GroupId {}] Partition {}-{} assigned to member {} while member {} still owns it",
                        self.group_id,
                        tp.0,
                        tp.1,
                        m.member_id,
                        other
                    );
                    debug_assert_eq!(other, m.member_id, "partition owned twice");
                }
            }
        }
    }

    /// Writes a record: appended to `out` and applied to memory.
    fn write(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        out: &mut Vec<CoordinatorRecord>,
        key: ConsumerGroupKey,
        value: Option<ConsumerGroupValue>,
    ) {
        self.replay(now, config, &key, value.as_ref());
        out.push(record(&self.group_id, key, value));
    }

    // ------------------------------------------------------------------ heartbeat

    /// Checks a heartbeat that needs no state (Kafka's
    /// `throwIfConsumerGroupHeartbeatRequestIsInvalid`).
    pub fn validate(
        req: &ConsumerHeartbeat,
        config: &ConsumerGroupConfig,
    ) -> Result<(), GroupError> {
        let invalid = |m: &str| Err(GroupError::new(codes::INVALID_REQUEST, m));
        // Kafka: v1 members name themselves; v0 ones only when they already have an id.
        let needs_id = req.api_version >= 1
            || req.member_epoch > 0
            || req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH;
        if needs_id && req.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if req.group_id.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if req.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if req.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        if req.member_epoch == 0 {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return invalid(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
                );
            }
        } else if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            if req.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        } else if req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return invalid("MemberEpoch is invalid.");
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            compile_subscription_regex(regex)
                .map_err(|m| GroupError::new(codes::INVALID_REGULAR_EXPRESSION, m))?;
        }
        if let Some(name) = &req.server_assignor {
            if config.assignor(name).is_none() {
                let names: Vec<&str> = config.assignors.iter().map(|a| a.name()).collect();
                return Err(GroupError::new(
                    codes::UNSUPPORTED_ASSIGNOR,
                    format!(
                        "ServerAssignor {name} is not supported. Supported assignors: {}.",
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`.
    fn check_epoch(
        member: &ConsumerMember,
        received: i32,
        owned: Option<&TopicPartitions>,
    ) -> Result<(), GroupError> {
        let fenced = |which: &str| {
            Err(GroupError::new(
                codes::FENCED_MEMBER_EPOCH,
                format!(
                    "The consumer group member has a {which} member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    member.member_epoch
                ),
            ))
        };
        if received > member.member_epoch {
            return fenced("greater");
        }
        if received < member.member_epoch
            && (received != member.previous_member_epoch || !is_subset(owned, &member.assigned))
        {
            return fenced("smaller");
        }
        Ok(())
    }

    /// Leaving: epoch -1 removes the member, epoch -2 (static members) keeps its
    /// assignment for it until it rejoins or its session expires.
    fn leave(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        req: &ConsumerHeartbeat,
        out: &mut Vec<CoordinatorRecord>,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let member_id = match &req.instance_id {
            None => {
                if !self.members.contains_key(&req.member_id) {
                    return Err(unknown_member(&req.member_id, &self.group_id));
                }
                req.member_id.clone()
            }
            Some(instance) => {
                let Some(current) = self.static_members.get(instance).cloned() else {
                    return Err(GroupError::new(
                        error::UNKNOWN_MEMBER_ID,
                        format!("Instance id {instance} is unknown."),
                    ));
                };
                if current != req.member_id {
                    return Err(GroupError::new(
                        error::FENCED_INSTANCE_ID,
                        format!(
                            "Static member {} with instance id {instance} was fenced by member {current}.",
                            req.member_id
                        ),
                    ));
                }
                current
            }
        };
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            tracing::info!(
                "[GroupId {}] Static member {} with instance id {} left the consumer group.",
                self.group_id,
                member_id,
                req.instance_id.as_deref().unwrap_or_default()
            );
            let mut m = self.members[&member_id].clone();
            m.previous_member_epoch = m.member_epoch;
            m.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            let key = ConsumerGroupKey::CurrentMemberAssignment {
                group: self.group_id.clone(),
                member: member_id.clone(),
            };
            let value = ConsumerGroupValue::CurrentMemberAssignment(m.assignment_value());
            self.write(now, config, out, key, Some(value));
            self.revocation_deadlines.remove(&member_id);
        } else {
            tracing::info!(
                "[GroupId {}] Member {} left the consumer group.",
                self.group_id,
                member_id
            );
            self.remove_member(now, config, &member_id, out);
        }
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes a member and bumps the group epoch (Kafka's `consumerGroupFenceMember`).
    /// When only classic members would be left and the policy allows a downgrade, the
    /// epoch stays: the coordinator turns the group classic at the epoch its members are
    /// at ([`ConsumerGroup::should_downgrade`]), as Kafka converts instead of bumping.
    fn remove_member(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        member_id: &str,
        out: &mut Vec<CoordinatorRecord>,
    ) {
        let remaining = self.members.len().saturating_sub(1);
        let downgrade = config.migration_policy.allows_downgrade()
            && remaining > 0
            && remaining <= config.classic_max_size
            && self
                .members
                .values()
                .filter(|m| m.member_id != member_id)
                .all(ConsumerMember::uses_classic_protocol);
        let group = self.group_id.clone();
        let member = member_id.to_string();
        for key in [
            ConsumerGroupKey::CurrentMemberAssignment {
                group: group.clone(),
                member: member.clone(),
            },
            ConsumerGroupKey::TargetAssignmentMember {
                group: group.clone(),
                member: member.clone(),
            },
            ConsumerGroupKey::MemberMetadata {
                group: group.clone(),
                member,
            },
        ] {
            self.write(now, config, out, key, None);
        }
        self.drop_unused_regexes(now, config, out);
        if !downgrade {
            let epoch = self.group_epoch + 1;
            let hash = self.metadata_hash;
            self.write_epoch(now, config, out, epoch, hash);
        }
    }

    fn write_epoch(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        out: &mut Vec<CoordinatorRecord>,
        epoch: i32,
        hash: i64,
    ) {
        tracing::info!(
            "[GroupId {}] Bumped group epoch to {epoch} with metadata hash {hash}.",
            self.group_id
        );
        let key = ConsumerGroupKey::Metadata {
            group: self.group_id.clone(),
        };
        let value = ConsumerGroupValue::Metadata(ConsumerGroupMetadataValue {
            epoch,
            metadata_hash: hash,
        });
        self.write(now, config, out, key, Some(value));
    }

    fn drop_unused_regexes(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        out: &mut Vec<CoordinatorRecord>,
    ) {
        let used: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.metadata.subscribed_topic_regex.as_ref())
            .collect();
        let unused: Vec<String> = self
            .regexes
            .keys()
            .filter(|r| !used.contains(r))
            .cloned()
            .collect();
        for regex in unused {
            let key = ConsumerGroupKey::RegularExpression {
                group: self.group_id.clone(),
                regex,
            };
            self.write(now, config, out, key, None);
        }
    }

    /// ConsumerGroupHeartbeat for this group against the cluster's `topics`.
    /// `fresh_member_id` names a member joining without an id (version 0 only). Records
    /// go to `out`, already applied.
    pub fn heartbeat(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        req: &ConsumerHeartbeat,
        fresh_member_id: &str,
        out: &mut Vec<CoordinatorRecord>,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
            || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
        {
            return self.leave(now, config, req, out);
        }
        let joining = req.member_epoch == 0;
        let member_id = if req.member_id.is_empty() {
            fresh_member_id.to_string()
        } else {
            req.member_id.clone()
        };
        if self.members.len() >= config.max_size && !self.members.contains_key(&member_id) {
            return Err(GroupError::new(
                error::GROUP_MAX_SIZE_REACHED,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    config.max_size
                ),
            ));
        }

        // The member: existing, new, or a static member taking over its instance id.
        let mut replaced: Option<ConsumerMember> = None;
        let member = match &req.instance_id {
            None => match self.members.get(&member_id) {
                Some(m) => {
                    Self::check_epoch(m, req.member_epoch, req.owned.as_ref())?;
                    m.clone()
                }
                None if joining => {
                    tracing::info!(
                        "[GroupId {}] Member {} joins the consumer group using the consumer protocol.",
                        self.group_id,
                        member_id
                    );
                    ConsumerMember::new(&member_id)
                }
                None => return Err(unknown_member(&member_id, &self.group_id)),
            },
            Some(instance) => {
                let existing = self
                    .static_members
                    .get(instance)
                    .and_then(|id| self.members.get(id))
                    .cloned();
                match existing {
                    None if joining => {
                        tracing::info!(
                            "[GroupId {}] Static member {} with instance id {} joins the consumer group using the consumer protocol.",
                            self.group_id,
                            member_id,
                            instance
                        );
                        ConsumerMember::new(&member_id)
                    }
                    None => {
                        return Err(GroupError::new(
                            error::UNKNOWN_MEMBER_ID,
                            format!("Instance id {instance} is unknown."),
                        ))
                    }
                    Some(old) if joining && old.member_id != member_id => {
                        if old.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                            return Err(GroupError::new(
                                codes::UNRELEASED_INSTANCE_ID,
                                format!(
                                    "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {} member.",
                                    old.member_id
                                ),
                            ));
                        }
                        tracing::info!(
                            "[GroupId {}] Static member with instance id {} re-joins the consumer group using the consumer protocol. Created a new member {} to replace the existing member {}.",
                            self.group_id,
                            instance,
                            member_id,
                            old.member_id
                        );
                        let mut m = old.clone();
                        m.member_id = member_id.clone();
                        m.member_epoch = 0;
                        m.previous_member_epoch = 0;
                        replaced = Some(old);
                        m
                    }
                    Some(old) => {
                        if old.member_id != member_id {
                            return Err(GroupError::new(
                                error::FENCED_INSTANCE_ID,
                                format!(
                                    "Static member {member_id} with instance id {instance} was fenced by member {}.",
                                    old.member_id
                                ),
                            ));
                        }
                        Self::check_epoch(&old, req.member_epoch, req.owned.as_ref())?;
                        old
                    }
                }
            }
        };

        // 0. A replaced static member hands its state to the new member id.
        if let Some(old) = &replaced {
            self.replace_member(now, config, old, &member_id, out);
        }

        // 1. The member's metadata; a new subscription moves the group epoch.
        let mut metadata = member.metadata.clone();
        if let Some(v) = &req.instance_id {
            metadata.instance_id = Some(v.clone());
        }
        if let Some(v) = &req.rack_id {
            metadata.rack_id = Some(v.clone());
        }
        if req.rebalance_timeout_ms > 0 {
            metadata.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(v) = &req.server_assignor {
            metadata.server_assignor = Some(v.clone());
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            metadata.subscribed_topic_names = names;
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            metadata.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.clone());
        }
        metadata.client_id = req.client_id.clone();
        metadata.client_host = req.client_host.clone();
        let new_member = !self.members.contains_key(&member_id);
        self.update_member(
            now,
            config,
            topics,
            &req.topic_access,
            &member_id,
            &member.metadata,
            metadata,
            out,
        );

        // 5. The member moves towards its target.
        let (member, next) = self.reconcile(now, config, &member_id, req.owned.as_ref(), out);

        // 6. Timers: the session, and the time allowed to revoke.
        self.session_deadlines.insert(
            member_id.clone(),
            now + i64::from(config.session_timeout_ms),
        );
        if next.state == MemberState::UnrevokedPartitions {
            let deadline = now + i64::from(next.metadata.rebalance_timeout_ms.max(0));
            let entry = self
                .revocation_deadlines
                .entry(member_id.clone())
                .or_insert((next.member_epoch, deadline));
            if entry.0 != next.member_epoch {
                *entry = (next.member_epoch, deadline);
            }
        } else {
            self.revocation_deadlines.remove(&member_id);
        }

        // 7. The assignment goes out to a joining member, on a full request, and when
        //    its assigned partitions changed.
        let full_request = req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.owned.is_some();
        let send = joining || full_request || next.assigned != member.assigned || new_member;
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: next.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: send.then(|| next.assigned.clone()),
        })
    }

    /// Steps 1-4 of a heartbeat (or of a classic member's JoinGroup): store the member's
    /// new metadata, move the group epoch if subscriptions or the subscribed topics'
    /// metadata changed, and compute a new target assignment for it.
    #[allow(clippy::too_many_arguments)]
    fn update_member(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        access: &TopicAccess,
        member_id: &str,
        before: &ConsumerGroupMemberMetadataValue,
        metadata: ConsumerGroupMemberMetadataValue,
        out: &mut Vec<CoordinatorRecord>,
    ) {
        let new_member = !self.members.contains_key(member_id);
        let mut bump = new_member
            || (
                &before.subscribed_topic_names,
                &before.subscribed_topic_regex,
            ) != (
                &metadata.subscribed_topic_names,
                &metadata.subscribed_topic_regex,
            );
        if new_member || &metadata != before {
            self.write(
                now,
                config,
                out,
                ConsumerGroupKey::MemberMetadata {
                    group: self.group_id.clone(),
                    member: member_id.to_string(),
                },
                Some(ConsumerGroupValue::MemberMetadata(metadata)),
            );
        }
        self.drop_unused_regexes(now, config, out);

        // Regular expressions, resolved against the topics of this metadata version.
        bump |= self.resolve_regexes(now, config, topics, access, out);

        // The subscribed topics' metadata.
        let hash = topics.metadata_hash(&self.subscribed_topic_names());
        if hash != self.metadata_hash {
            bump = true;
        }
        if bump {
            let epoch = self.group_epoch + 1;
            self.write_epoch(now, config, out, epoch, hash);
        }

        // A new target assignment when the group epoch moved past it.
        if self.group_epoch > self.assignment_epoch {
            self.assign(now, config, topics, out);
        }
    }

    /// Moves a member towards its target (Kafka's `maybeReconcile`): returns the member
    /// before and after.
    fn reconcile(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        member_id: &str,
        owned: Option<&TopicPartitions>,
        out: &mut Vec<CoordinatorRecord>,
    ) -> (ConsumerMember, ConsumerMember) {
        let member = self.members[member_id].clone();
        let empty = TopicPartitions::new();
        let target = self.target.get(member_id).unwrap_or(&empty).clone();
        let owners = &self.owners;
        let owned_by_other = |t: Uuid, p: i32| owners.get(&(t, p)).is_some_and(|o| o != member_id);
        let next = Reconciliation {
            target_epoch: self.assignment_epoch,
            target: &target,
            owned,
            owned_by_other: &owned_by_other,
        }
        .next(&member);
        if next != member {
            tracing::info!(
                "[GroupId {}] Member {} new assignment state: epoch={}, previousEpoch={}, state={}, assignedPartitions={} and revokedPartitions={}.",
                self.group_id,
                member_id,
                next.member_epoch,
                next.previous_member_epoch,
                next.state.name(),
                count(&next.assigned),
                count(&next.pending_revocation)
            );
            let value = ConsumerGroupValue::CurrentMemberAssignment(next.assignment_value());
            self.write(
                now,
                config,
                out,
                ConsumerGroupKey::CurrentMemberAssignment {
                    group: self.group_id.clone(),
                    member: member_id.to_string(),
                },
                Some(value),
            );
        }
        (member, next)
    }

    /// Resolves every regex in use against `topics` when it was resolved against an
    /// older metadata version, keeping the topics `access` allows; true if any
    /// resolution changed. ACL changes are metadata changes too, so a grant or a
    /// revoke is seen by the next heartbeat after it.
    fn resolve_regexes(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        access: &TopicAccess,
        out: &mut Vec<CoordinatorRecord>,
    ) -> bool {
        let version = topics.version();
        let in_use: BTreeSet<String> = self
            .members
            .values()
            .filter_map(|m| m.metadata.subscribed_topic_regex.clone())
            .collect();
        let mut changed = false;
        for regex in in_use {
            if self
                .regexes
                .get(&regex)
                .is_some_and(|v| v.version >= version)
            {
                continue;
            }
            let matched = match compile_subscription_regex(&regex) {
                Ok(re) => topics.matching(&re),
                Err(e) => {
                    tracing::warn!("[GroupId {}] {e}", self.group_id);
                    BTreeSet::new()
                }
            };
            let topics_now: Vec<String> =
                matched.into_iter().filter(|t| access.allows(t)).collect();
            let before = self.regexes.get(&regex).map(|v| &v.topics);
            changed |= before != Some(&topics_now);
            let key = ConsumerGroupKey::RegularExpression {
                group: self.group_id.clone(),
                regex,
            };
            let value = ConsumerGroupValue::RegularExpression(RegularExpressionValue {
                topics: topics_now,
                version,
                timestamp: now,
            });
            self.write(now, config, out, key, Some(value));
        }
        changed
    }

    /// Runs the assignor for the group epoch and writes the target records.
    fn assign(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        out: &mut Vec<CoordinatorRecord>,
    ) {
        let epoch = self.group_epoch;
        let Some(assignor) = self.preferred_assignor(config) else {
            return;
        };
        let members: BTreeMap<String, MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let ids = self
                    .member_topics(&m.metadata)
                    .filter_map(|name| {
                        topics
                            .topic(&name)
                            .filter(|t| t.partitions > 0)
                            .map(|t| t.id)
                    })
                    .collect();
                let spec = MemberSpec {
                    subscription: MemberSubscription {
                        rack_id: m.metadata.rack_id.clone(),
                        instance_id: m.metadata.instance_id.clone(),
                        subscribed_topic_ids: ids,
                    },
                    assignment: MemberAssignment {
                        partitions: self
                            .target
                            .get(&m.member_id)
                            .map(|t| {
                                // Partitions that no longer exist are not part of the
                                // assignor's input.
                                t.iter()
                                    .filter_map(|(id, ps)| {
                                        let n = topics.num_partitions(*id)?;
                                        let ps: BTreeSet<i32> = ps
                                            .iter()
                                            .copied()
                                            .filter(|p| (*p as u32) < n)
                                            .collect();
                                        (!ps.is_empty()).then_some((*id, ps))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    },
                };
                (m.member_id.clone(), spec)
            })
            .collect();
        match assignor.assign(&GroupSpec::new(members), topics) {
            Ok(assignment) => {
                let mut changed = 0;
                for (member, a) in assignment.members {
                    if self.target.get(&member) != Some(&a.partitions) {
                        changed += 1;
                        let key = ConsumerGroupKey::TargetAssignmentMember {
                            group: self.group_id.clone(),
                            member,
                        };
                        let value = ConsumerGroupValue::TargetAssignmentMember(
                            TargetAssignmentMemberValue {
                                topic_partitions: a.partitions,
                            },
                        );
                        self.write(now, config, out, key, Some(value));
                    }
                }
                tracing::info!(
                    "[GroupId {}] Computed a new target assignment for epoch {epoch} with '{}' assignor: {changed} members' assignments changed.",
                    self.group_id,
                    assignor.name()
                );
            }
            Err(e) => tracing::warn!(
                "[GroupId {}] Failed to compute a new target assignment for epoch {epoch}, keeping the previous one: {e}",
                self.group_id
            ),
        }
        let key = ConsumerGroupKey::TargetAssignmentMetadata {
            group: self.group_id.clone(),
        };
        let value = ConsumerGroupValue::TargetAssignmentMetadata(TargetAssignmentMetadataValue {
            assignment_epoch: epoch,
        });
        self.write(now, config, out, key, Some(value));
    }

    // ------------------------------------------------------------------ time

    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self.session_deadlines.values().copied();
        let revocations = self.revocation_deadlines.values().map(|(_, d)| *d);
        let classic = self.classic_deadlines.values().copied();
        sessions
            .chain(revocations)
            .chain(classic)
            .min()
            .map(|d| d + 1)
    }

    /// Removes members whose session expired or who did not revoke in time.
    pub fn tick(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        out: &mut Vec<CoordinatorRecord>,
    ) {
        let expired: Vec<String> = self
            .session_deadlines
            .iter()
            .filter(|(_, d)| now > **d)
            .map(|(m, _)| m.clone())
            .collect();
        for member in expired {
            tracing::info!(
                "[GroupId {}] Member {} fenced from the group because its session expired.",
                self.group_id,
                member
            );
            self.remove_member(now, config, &member, out);
        }
        let stalled: Vec<String> = self
            .classic_deadlines
            .iter()
            .filter(|(_, d)| now > **d)
            .map(|(m, _)| m.clone())
            .collect();
        for member in stalled {
            self.classic_deadlines.remove(&member);
            if self.members.contains_key(&member) {
                tracing::info!(
                    "[GroupId {}] Member {} fenced from the group because it did not join or sync within its rebalance timeout.",
                    self.group_id,
                    member
                );
                self.remove_member(now, config, &member, out);
            }
        }
        let late: Vec<(String, i32)> = self
            .revocation_deadlines
            .iter()
            .filter(|(_, (_, d))| now > *d)
            .map(|(m, (e, _))| (m.clone(), *e))
            .collect();
        for (member, epoch) in late {
            let still = self.members.get(&member).is_some_and(|m| {
                m.member_epoch == epoch && m.state == MemberState::UnrevokedPartitions
            });
            self.revocation_deadlines.remove(&member);
            if still {
                let timeout = self.members[&member].metadata.rebalance_timeout_ms;
                tracing::info!(
                    "[GroupId {}] Member {} fenced from the group because it failed to transition from epoch {} within {}ms.",
                    self.group_id,
                    member,
                    epoch,
                    timeout
                );
                self.remove_member(now, config, &member, out);
            }
        }
    }

    /// Restarts every member's session from `now` (after the group was loaded).
    pub fn restart_sessions(&mut self, now: i64, config: &ConsumerGroupConfig) {
        for (id, member) in &self.members {
            self.session_deadlines.insert(
                id.clone(),
                now + i64::from(member.session_timeout_ms(config)),
            );
        }
        self.revocation_deadlines.clear();
        self.classic_deadlines.clear();
    }

    // ------------------------------------------------------------------ offsets

    /// Kafka's `ConsumerGroup.validateOffsetCommit`.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
        transactional: bool,
    ) -> Result<(), i16> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(error::UNKNOWN_MEMBER_ID);
        };
        if !transactional && !m.uses_classic_protocol() && api_version < 9 {
            return Err(codes::UNSUPPORTED_VERSION);
        }
        Self::validate_member_epoch(member_epoch, m)
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch`: no member id with a negative epoch is
    /// an admin (or pre-KIP-848 client) read; anything else must be a member at its epoch.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), i16> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let Some(m) = member_id.and_then(|id| self.members.get(id)) else {
            return Err(error::UNKNOWN_MEMBER_ID);
        };
        Self::validate_member_epoch(member_epoch, m)
    }

    /// Kafka's `validateMemberEpoch`: any other epoch is STALE_MEMBER_EPOCH, or
    /// ILLEGAL_GENERATION for a classic member (whose generation is its epoch).
    fn validate_member_epoch(received: i32, member: &ConsumerMember) -> Result<(), i16> {
        if received == member.member_epoch {
            Ok(())
        } else if member.uses_classic_protocol() {
            Err(error::ILLEGAL_GENERATION)
        } else {
            Err(codes::STALE_MEMBER_EPOCH)
        }
    }

    // ------------------------------------------------------------------ queries

    pub fn describe(&self, config: &ConsumerGroupConfig) -> ConsumerGroupDescription {
        ConsumerGroupDescription {
            group_id: self.group_id.clone(),
            state: self.state().name(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self
                .preferred_assignor(config)
                .map(|a| a.name().to_string())
                .unwrap_or_default(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.metadata.instance_id.clone(),
                    rack_id: m.metadata.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    client_id: m.metadata.client_id.clone(),
                    client_host: m.metadata.client_host.clone(),
                    subscribed_topic_names: m.metadata.subscribed_topic_names.clone(),
                    subscribed_topic_regex: m.metadata.subscribed_topic_regex.clone(),
                    assignment: m.assigned.clone(),
                    target_assignment: self.target.get(&m.member_id).cloned().unwrap_or_default(),
                    classic: m.uses_classic_protocol(),
                })
                .collect(),
        }
    }

    /// Tombstones deleting the group: each member's records, then the group's (Kafka's
    /// `ConsumerGroup.createGroupTombstoneRecords`).
    pub fn tombstones(&self) -> Vec<CoordinatorRecord> {
        let g = || self.group_id.clone();
        let mut out = Vec::new();
        for member in self.members.keys() {
            for key in [
                ConsumerGroupKey::CurrentMemberAssignment {
                    group: g(),
                    member: member.clone(),
                },
                ConsumerGroupKey::TargetAssignmentMember {
                    group: g(),
                    member: member.clone(),
                },
                ConsumerGroupKey::MemberMetadata {
                    group: g(),
                    member: member.clone(),
                },
            ] {
                out.push(record(&self.group_id, key, None));
            }
        }
        for regex in self.regexes.keys() {
            out.push(record(
                &self.group_id,
                ConsumerGroupKey::RegularExpression {
                    group: g(),
                    regex: regex.clone(),
                },
                None,
            ));
        }
        for key in [
            ConsumerGroupKey::TargetAssignmentMetadata { group: g() },
            ConsumerGroupKey::PartitionMetadata { group: g() },
            ConsumerGroupKey::Metadata { group: g() },
        ] {
            out.push(record(&self.group_id, key, None));
        }
        out
    }

    /// Every partition has at most one owner, and owners agree with members.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut seen = HashMap::new();
        for m in self.members.values() {
            for tp in m.owned() {
                assert!(
                    seen.insert(tp, m.member_id.clone()).is_none(),
                    "{tp:?} owned twice"
                );
                assert_eq!(self.owners.get(&tp), Some(&m.member_id));
            }
        }
        assert_eq!(seen.len(), self.owners.len());
    }
}

fn unknown_member(member_id: &str, group_id: &str) -> GroupError {
    GroupError::new(
        error::UNKNOWN_MEMBER_ID,
        format!("Member {member_id} is not a member of group {group_id}."),
    )
}

#[cfg(test)]
mod tests;
