//! Kafka's classic group protocol as a deterministic state machine.
//!
//! Every call takes the current time explicitly and returns [`Effects`]: records for
//! `__consumer_offsets` and replies to requests that were parked earlier (a JoinGroup
//! waits for the rebalance to complete, a follower's SyncGroup waits for the leader's).
//! Time-driven transitions — session expiry, rebalance timeout, the initial rebalance
//! delay — happen in [`GroupCoordinator::tick`]. [`GroupCoordinator::replay_at`]
//! applies a stored record, which is how a coordinator loads its state at start-up.
//! Offset commits and tombstones (deleted groups and offsets, expired offsets) change
//! nothing when they are made: they take effect through the same `replay_at`, called by
//! [`GroupCoordinator::apply_stored`] once the runtime has stored them, so memory is
//! never ahead of the log and the live path and the load path are the same code.
//!
//! States and transitions follow Kafka's `GroupCoordinator`/`GroupMetadata` (classic):
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                    ▲                                          │ leader's sync
//!   └── last member ─────┴──────── join / leave / expiry ──── Stable ◀┘
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use crate::consumer::classic::{by_name, CONSUMER_PROTOCOL_TYPE};
use crate::consumer::records::ConsumerGroupKey;
use crate::consumer::topics::TopicsImage;
use crate::consumer::{
    ClassicMemberState, ConsumerGroup, ConsumerGroupConfig, ConsumerGroupDescription,
    ConsumerHeartbeat, ConsumerHeartbeatResponse, GroupError,
};
use crate::records::{CoordinatorKey, GroupMetadataValue, MemberMetadata, OffsetCommitValue};
use crate::subscription::encode_assignment;
use crate::subscription::subscribed_topics;
use crate::types::*;
use std::sync::Arc;

/// How long a member that joined during the current rebalance may wait in JoinGroup
/// before it is considered gone (Kafka's `NewMemberJoinTimeoutMs`). Clients do not
/// heartbeat while parked in a join, so the session timeout cannot apply, and the
/// initial rebalance delay can legitimately exceed it.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`
    pub max_group_size: usize,
    /// `offsets.retention.minutes`, in ms
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`
    pub max_metadata_bytes: usize,
    /// `offsets.retention.check.interval.ms`: how often Kafka's cleanup runs; an empty
    /// group without offsets is removed by the first cleanup after it emptied.
    pub offsets_retention_check_interval_ms: i64,
    /// `group.consumer.*`: consumer groups of the KIP-848 protocol.
    pub consumer: ConsumerGroupConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_group_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            max_metadata_bytes: 4096,
            offsets_retention_check_interval_ms: 600_000,
            consumer: ConsumerGroupConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka reports (DescribeGroups, ListGroups filters).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<Ticket>,
    awaiting_sync: Option<Ticket>,
    /// Last join/sync/heartbeat; the session expires `session_timeout_ms` after it.
    last_seen_ms: i64,
    /// Joined during the current rebalance (Kafka's `isNew`): expires on its session
    /// even while awaiting join, so a client that joined and vanished cannot stall it.
    is_new: bool,
    /// Order of joining; the leader is the earliest member.
    join_order: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn same_protocols(&self, other: &[(String, Bytes)]) -> bool {
        self.protocols == other
    }
    /// When this member counts as gone if nothing is heard from it.
    fn expiry_deadline(&self) -> i64 {
        if self.is_new && self.awaiting_join.is_some() {
            self.last_seen_ms + NEW_MEMBER_JOIN_TIMEOUT_MS
        } else {
            self.last_seen_ms + i64::from(self.session_timeout_ms)
        }
    }

    /// Kafka's `hasSatisfiedHeartbeat`: an established member parked in a join or a
    /// sync is waiting on the coordinator, not idle, so its session does not run.
    fn is_waiting(&self) -> bool {
        (self.awaiting_join.is_some() && !self.is_new) || self.awaiting_sync.is_some()
    }

    fn expired(&self, now: i64) -> bool {
        !self.is_waiting() && now > self.expiry_deadline()
    }
}

#[derive(Debug, Clone)]
struct InitialDelay {
    deadline_ms: i64,
    /// Time left of the rebalance timeout to extend the delay with.
    remaining_ms: i64,
    /// Members that joined since the delay (last) started.
    joined: usize,
}

#[derive(Debug, Clone)]
struct Group {
    group_id: String,
    state: GroupState,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: HashMap<String, i64>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    offsets: BTreeMap<(String, i32), OffsetCommitValue>,
    rebalance_deadline_ms: Option<i64>,
    initial_delay: Option<InitialDelay>,
    current_state_timestamp: i64,
    next_join_order: u64,
}

impl Group {
    fn new(group_id: &str, now: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: HashMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline_ms: None,
            initial_delay: None,
            current_state_timestamp: now,
            next_join_order: 0,
        }
    }

    fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.current_state_timestamp = now;
    }

    fn offset_tombstone(&self, topic: String, partition: i32) -> CoordinatorRecord {
        CoordinatorRecord {
            key: CoordinatorKey::OffsetCommit {
                group: self.group_id.clone(),
                topic,
                partition,
            },
            value: RecordValue::Tombstone,
        }
    }

    /// Deletes the group; written after the tombstones of all its offsets.
    fn group_tombstone(&self) -> CoordinatorRecord {
        CoordinatorRecord {
            key: CoordinatorKey::GroupMetadata {
                group: self.group_id.clone(),
            },
            value: RecordValue::Tombstone,
        }
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return vec![];
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Can a member with these protocols join? (Kafka's `supportsProtocols`.)
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Each member votes for its most preferred candidate; most votes wins, ties go to
    /// the protocol preferred by the earliest member (deterministic).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut ordered: Vec<&Member> = self.members.values().collect();
        ordered.sort_by_key(|m| m.join_order);
        let mut votes: Vec<(String, usize)> = Vec::new();
        for m in &ordered {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                match votes.iter_mut().find(|(n, _)| n == name) {
                    Some(v) => v.1 += 1,
                    None => votes.push((name.clone(), 1)),
                }
            }
        }
        let max = votes.iter().map(|(_, c)| *c).max()?;
        votes.into_iter().find(|(_, c)| *c == max).map(|(n, _)| n)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn join_response_for(&self, member_id: &str) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if is_leader {
            let mut ordered: Vec<&Member> = self.members.values().collect();
            ordered.sort_by_key(|m| m.join_order);
            ordered
                .into_iter()
                .map(|m| JoinMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            vec![]
        };
        JoinResponse {
            error: error::NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn metadata_record(&self, now: i64) -> CoordinatorRecord {
        let mut ordered: Vec<&Member> = self.members.values().collect();
        ordered.sort_by_key(|m| m.join_order);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        CoordinatorRecord {
            key: CoordinatorKey::GroupMetadata {
                group: self.group_id.clone(),
            },
            value: RecordValue::GroupMetadata(GroupMetadataValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation,
                protocol: self.protocol_name.clone(),
                leader: self.leader.clone(),
                current_state_timestamp: now,
                members: ordered
                    .into_iter()
                    .map(|m| MemberMetadata {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout: m.rebalance_timeout_ms,
                        session_timeout: m.session_timeout_ms,
                        subscription: m.metadata_for(&protocol).to_vec(),
                        assignment: m.assignment.to_vec(),
                    })
                    .collect(),
            }),
        }
    }

    /// Topics the members subscribe to, when this is a consumer group in a state where
    /// that is known (Kafka refuses OffsetDelete for those).
    fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol_name.clone()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(subscribed_topics(&m.metadata_for(&protocol))?);
        }
        Some(topics)
    }
}

/// All groups of the `__consumer_offsets` partitions this broker leads.
///
/// Committed offsets of every group live in `groups` (Kafka keeps them apart from group
/// state too, in its `OffsetMetadataManager`): for a consumer group (KIP-848) the entry
/// there is an Empty classic shell that only holds its offsets, and the group itself is
/// in `consumer_groups`. A group id is in at most one of the two kinds at a time; the
/// classic entry points treat an id in `consumer_groups` as not theirs.
#[derive(Debug, Default)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: HashMap<String, Group>,
    consumer_groups: HashMap<String, ConsumerGroup>,
    /// The cluster's topics as last given ([`GroupCoordinator::set_topics`]): what a
    /// classic member of a consumer group subscribes to and is assigned, by name.
    topics: Arc<TopicsImage>,
    /// Source of unique member ids (combined with a random part by the caller's
    /// `new_member_id`).
    member_id_counter: u64,
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: HashMap::new(),
            consumer_groups: HashMap::new(),
            topics: Default::default(),
            member_id_counter: 0,
        }
    }

    /// The cluster's topics now (called before JoinGroup and SyncGroup, which name topics
    /// for classic members of consumer groups).
    pub fn set_topics(&mut self, topics: Arc<TopicsImage>) {
        self.topics = topics;
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
            + self
                .consumer_groups
                .keys()
                .filter(|g| !self.groups.contains_key(*g))
                .count()
    }

    pub fn is_consumer_group(&self, group_id: &str) -> bool {
        self.consumer_groups.contains_key(group_id)
    }

    // ------------------------------------------------------------------ consumer groups

    /// ConsumerGroupHeartbeat (KIP-848) against the cluster's `topics`. An empty classic group is converted (its offsets stay);
    /// a classic group with members is refused, as Kafka does without online migration.
    pub fn consumer_heartbeat(
        &mut self,
        now: i64,
        req: ConsumerHeartbeat,
        topics: &TopicsImage,
        member_id_salt: &str,
    ) -> (Result<ConsumerHeartbeatResponse, GroupError>, Effects) {
        let mut effects = Effects::default();
        if let Err(e) = ConsumerGroup::validate(&req, &self.config.consumer) {
            return (Err(e), effects);
        }
        let group_id = req.group_id.clone();
        if !self.consumer_groups.contains_key(&group_id) {
            if req.member_epoch != 0 {
                let e = GroupError::new(
                    error::GROUP_ID_NOT_FOUND,
                    format!("Consumer group {group_id} not found."),
                );
                return (Err(e), effects);
            }
            if let Some(classic) = self.groups.get(&group_id) {
                if !classic.members.is_empty() {
                    if let Err(e) = self.upgrade(now, &group_id, topics, &mut effects) {
                        return (Err(e), effects);
                    }
                } else if classic.protocol_type.is_some() {
                    tracing::info!(
                        "[GroupId {group_id}] Converted the empty classic group to a consumer group."
                    );
                    effects.records.push(classic.group_tombstone());
                }
            }
            self.consumer_groups
                .entry(group_id.clone())
                .or_insert_with(|| ConsumerGroup::new(&group_id));
        }
        let fresh_member_id = if req.member_id.is_empty() {
            self.new_member_id(&req.client_id, member_id_salt)
        } else {
            String::new()
        };
        let group = self.consumer_groups.get_mut(&group_id).expect("inserted");
        let result = group.heartbeat(
            now,
            &self.config.consumer,
            topics,
            &req,
            &fresh_member_id,
            &mut effects.records,
        );
        if group.group_epoch() == 0 && group.is_empty() {
            // Created for a heartbeat that failed: nothing was written.
            self.consumer_groups.remove(&group_id);
        }
        self.maybe_downgrade(now, &group_id, &mut effects);
        (result, effects)
    }

    /// Online upgrade (KIP-848): a consumer-protocol member joins a classic group that
    /// still has members. The classic group becomes a consumer group whose members keep
    /// their partitions at their generation, as classic members of it (Kafka's
    /// `convertToConsumerGroup`); they learn of the new member at their next heartbeat.
    fn upgrade(
        &mut self,
        now: i64,
        group_id: &str,
        topics: &TopicsImage,
        effects: &mut Effects,
    ) -> Result<(), GroupError> {
        let classic = &self.groups[group_id];
        let refuse = |why: &str| {
            tracing::info!(
                "Cannot upgrade classic group {group_id} to consumer group because {why}."
            );
            Err(GroupError::new(
                error::GROUP_ID_NOT_FOUND,
                format!("Cannot upgrade classic group {group_id} to consumer group because {why}."),
            ))
        };
        if !self.config.consumer.migration_policy.allows_upgrade() {
            return refuse("online upgrade is disabled");
        }
        if classic.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return refuse("the group does not use the consumer embedded protocol");
        }
        if classic.members.len() > self.config.consumer.max_size {
            return refuse("the group size exceeds the consumer group maximum size");
        }
        let protocol = classic.protocol_name.clone().unwrap_or_default();
        let mut ordered: Vec<&Member> = classic.members.values().collect();
        ordered.sort_by_key(|m| m.join_order);
        let members: Vec<ClassicMemberState> = ordered
            .iter()
            .map(|m| ClassicMemberState {
                member_id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: m
                    .protocols
                    .iter()
                    .map(|(n, b)| (n.clone(), b.to_vec()))
                    .collect(),
                subscription: m.metadata_for(&protocol).to_vec(),
                assignment: m.assignment.to_vec(),
            })
            .collect();
        let generation = classic.generation.max(0);
        // Parked joins and syncs of the classic group are told to join again.
        let classic = self.groups.get_mut(group_id).expect("checked");
        for m in classic.members.values() {
            if let Some(t) = m.awaiting_join {
                let reply = JoinResponse::error(error::REBALANCE_IN_PROGRESS, &m.member_id);
                effects.joins.push((t, reply));
            }
            if let Some(t) = m.awaiting_sync {
                let reply = SyncResponse::error(error::REBALANCE_IN_PROGRESS);
                effects.syncs.push((t, reply));
            }
        }
        effects.records.push(classic.group_tombstone());
        let offsets = std::mem::take(&mut classic.offsets);
        *classic = Group::new(group_id, now);
        classic.offsets = offsets;
        let group = ConsumerGroup::from_classic(
            now,
            &self.config.consumer,
            group_id,
            generation,
            &members,
            topics,
            &mut effects.records,
        );
        tracing::info!("[GroupId {group_id}] Converted the classic group to a consumer group.");
        self.consumer_groups.insert(group_id.to_string(), group);
        Ok(())
    }

    /// Online downgrade (KIP-848): when only classic members are left in a consumer
    /// group (and the policy allows it), it becomes a classic group again at its group
    /// epoch and rebalances, so that the members' own assignor takes over (Kafka's
    /// `convertToClassicGroup`). Offsets stay.
    fn maybe_downgrade(&mut self, now: i64, group_id: &str, effects: &mut Effects) {
        let Some(cg) = self.consumer_groups.get(group_id) else {
            return;
        };
        if !cg.should_downgrade(&self.config.consumer) {
            return;
        }
        let mut group = Group::new(group_id, now);
        if let Some(old) = self.groups.remove(group_id) {
            group.offsets = old.offsets;
        }
        group.generation = cg.group_epoch();
        group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
        for (i, m) in cg.members().enumerate() {
            let classic = m
                .metadata
                .classic_member_metadata
                .clone()
                .unwrap_or_default();
            if let Some(instance) = &m.metadata.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let assignment = encode_assignment(&by_name(&self.topics, &m.assigned));
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.metadata.instance_id.clone(),
                    client_id: m.metadata.client_id.clone(),
                    client_host: m.metadata.client_host.clone(),
                    session_timeout_ms: classic.session_timeout_ms,
                    rebalance_timeout_ms: m.metadata.rebalance_timeout_ms,
                    protocols: classic
                        .supported_protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), Bytes::from(b.clone())))
                        .collect(),
                    assignment: Bytes::from(assignment),
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_seen_ms: now,
                    is_new: false,
                    join_order: i as u64,
                },
            );
        }
        group.next_join_order = group.members.len() as u64;
        group.protocol_name = group.select_protocol();
        group.leader = group
            .members
            .values()
            .min_by_key(|m| m.join_order)
            .map(|m| m.member_id.clone());
        group.state = GroupState::Stable;
        effects.records.extend(cg.tombstones());
        self.consumer_groups.remove(group_id);
        effects.records.push(group.metadata_record(now));
        tracing::info!("[GroupId {group_id}] Converted the consumer group to a classic group.");
        let config = self.config.clone();
        Self::prepare_rebalance(
            &mut group,
            &config,
            now,
            "downgrading the group from a consumer group",
            effects,
        );
        self.groups.insert(group_id.to_string(), group);
    }

    /// ConsumerGroupDescribe for one group.
    pub fn describe_consumer_group(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        match self.consumer_groups.get(group_id) {
            Some(g) => Ok(g.describe(&self.config.consumer)),
            None if self.groups.contains_key(group_id) => Err(GroupError::new(
                error::GROUP_ID_NOT_FOUND,
                format!("Group {group_id} is not a consumer group."),
            )),
            None => Err(GroupError::new(
                error::GROUP_ID_NOT_FOUND,
                format!("Group {group_id} not found."),
            )),
        }
    }

    /// OffsetFetch checks for a consumer group member (`member_id` `None`: an admin read).
    pub fn validate_offset_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> i16 {
        match self.consumer_groups.get(group_id) {
            Some(g) => g
                .validate_offset_fetch(member_id, member_epoch)
                .err()
                .unwrap_or(error::NONE),
            None => error::NONE,
        }
    }

    /// Tombstones of an empty consumer group about to become a classic group, applied
    /// at once (consumer group records always are, see [`crate::consumer`]).
    fn convert_empty_consumer_group(&mut self, group_id: &str, effects: &mut Effects) {
        let Some(group) = self.consumer_groups.get(group_id) else {
            return;
        };
        debug_assert!(group.is_empty());
        tracing::info!(
            "[GroupId {group_id}] Converted the empty consumer group to a classic group."
        );
        effects.records.extend(group.tombstones());
        self.consumer_groups.remove(group_id);
    }

    fn new_member_id(&mut self, client_id: &str, salt: &str) -> String {
        self.member_id_counter += 1;
        format!("{client_id}-{salt}-{}", self.member_id_counter)
    }

    // ------------------------------------------------------------------ JoinGroup

    /// JoinGroup. Returns the reply now (`Some`) or parks it under `ticket` (`None`),
    /// plus effects (which may include replies to other parked requests).
    /// `member_id_salt` makes generated member ids unique across restarts (a UUID).
    pub fn join(
        &mut self,
        now: i64,
        ticket: Ticket,
        req: JoinRequest,
        member_id_salt: &str,
    ) -> (Option<JoinResponse>, Effects) {
        let mut effects = Effects::default();
        if req.group_id.is_empty() {
            return (
                Some(JoinResponse::error(error::INVALID_GROUP_ID, &req.member_id)),
                effects,
            );
        }
        if self
            .consumer_groups
            .get(&req.group_id)
            .is_some_and(|g| !g.is_empty())
        {
            // A classic member of a consumer group (online migration).
            if req.session_timeout_ms < self.config.min_session_timeout_ms
                || req.session_timeout_ms > self.config.max_session_timeout_ms
            {
                let reply = JoinResponse::error(error::INVALID_SESSION_TIMEOUT, &req.member_id);
                return (Some(reply), effects);
            }
            let generated = if req.member_id.is_empty() {
                self.new_member_id(&req.client_id, member_id_salt)
            } else {
                String::new()
            };
            let group = self
                .consumer_groups
                .get_mut(&req.group_id)
                .expect("checked");
            let reply = group.classic_join(
                now,
                &self.config.consumer,
                &self.topics,
                &req,
                &generated,
                &mut effects.records,
            );
            return (Some(reply), effects);
        }
        self.convert_empty_consumer_group(&req.group_id, &mut effects);
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return (
                Some(JoinResponse::error(
                    error::INVALID_SESSION_TIMEOUT,
                    &req.member_id,
                )),
                effects,
            );
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return (
                    Some(JoinResponse::error(
                        error::UNKNOWN_MEMBER_ID,
                        &req.member_id,
                    )),
                    effects,
                );
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now));
        }
        if !self.groups[&req.group_id].supports(&req.protocol_type, &req.protocols) {
            return (
                Some(JoinResponse::error(
                    error::INCONSISTENT_GROUP_PROTOCOL,
                    &req.member_id,
                )),
                effects,
            );
        }
        if req.member_id.is_empty() {
            let reply = self.join_unknown_member(now, ticket, req, member_id_salt, &mut effects);
            return (reply, effects);
        }
        let reply = self.join_known_member(now, ticket, req, &mut effects);
        (reply, effects)
    }

    fn join_unknown_member(
        &mut self,
        now: i64,
        ticket: Ticket,
        req: JoinRequest,
        salt: &str,
        effects: &mut Effects,
    ) -> Option<JoinResponse> {
        let max_size = self.config.max_group_size;
        let new_id = self.new_member_id(&req.client_id, salt);
        let group = self
            .groups
            .get_mut(&req.group_id)
            .expect("checked by caller");
        if let Some(instance) = &req.group_instance_id {
            if let Some(old_id) = group.static_members.get(instance).cloned() {
                return Self::replace_static_member(
                    group,
                    &self.config,
                    now,
                    ticket,
                    req,
                    old_id,
                    new_id,
                    effects,
                );
            }
        }
        if group.members.len() + group.pending_members.len() >= max_size {
            return Some(JoinResponse::error(error::GROUP_MAX_SIZE_REACHED, ""));
        }
        if req.require_known_member_id && req.group_instance_id.is_none() {
            // KIP-394: hand out the id first, so a client that times out and retries
            // does not leave a ghost member behind.
            group
                .pending_members
                .insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
            return Some(JoinResponse::error(error::MEMBER_ID_REQUIRED, &new_id));
        }
        Self::add_member_and_rebalance(group, &self.config, now, ticket, req, new_id, effects);
        None
    }

    /// KIP-345: a static member restarting with a new member id takes the old one's
    /// place; the old id is fenced. A stable group does not rebalance for it.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        group: &mut Group,
        config: &CoordinatorConfig,
        now: i64,
        ticket: Ticket,
        req: JoinRequest,
        old_id: String,
        new_id: String,
        effects: &mut Effects,
    ) -> Option<JoinResponse> {
        let Some(mut member) = group.members.remove(&old_id) else {
            group
                .static_members
                .remove(req.group_instance_id.as_deref().unwrap_or_default());
            return Some(JoinResponse::error(error::UNKNOWN_MEMBER_ID, ""));
        };
        // A request parked under the old id will never be answered by that client.
        if let Some(t) = member.awaiting_join.take() {
            effects
                .joins
                .push((t, JoinResponse::error(error::FENCED_INSTANCE_ID, &old_id)));
        }
        if let Some(t) = member.awaiting_sync.take() {
            effects
                .syncs
                .push((t, SyncResponse::error(error::FENCED_INSTANCE_ID)));
        }
        member.member_id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols.clone();
        member.last_seen_ms = now;
        if group.leader.as_deref() == Some(old_id.as_str()) {
            group.leader = Some(new_id.clone());
        }
        group.static_members.insert(
            req.group_instance_id.clone().unwrap_or_default(),
            new_id.clone(),
        );
        tracing::info!(
            "Static member {} of group {} with unknown member id rejoins, assigning it a new member id {}",
            req.group_instance_id.as_deref().unwrap_or(""),
            group.group_id,
            new_id
        );
        group.members.insert(new_id.clone(), member);
        // Kafka (updateStaticMemberAndRebalance): a Stable group rebalances for a
        // returning static member only if the protocol it would select changes (which
        // is asked with the member's new protocols in place).
        if group.state == GroupState::Stable && group.select_protocol() == group.protocol_name {
            effects.records.push(group.metadata_record(now));
            let mut response = group.join_response_for(&new_id);
            // A returning leader keeps the current assignment (KIP-814).
            response.skip_assignment = group.leader.as_deref() == Some(new_id.as_str());
            return Some(response);
        }
        if let Some(member) = group.members.get_mut(&new_id) {
            member.awaiting_join = Some(ticket);
        }
        if group.state == GroupState::PreparingRebalance {
            Self::maybe_complete_join(group, now, effects);
        } else {
            let reason = format!("static member {new_id} rejoined");
            Self::prepare_rebalance(group, config, now, &reason, effects);
        }
        None
    }

    fn add_member_and_rebalance(
        group: &mut Group,
        config: &CoordinatorConfig,
        now: i64,
        ticket: Ticket,
        req: JoinRequest,
        member_id: String,
        effects: &mut Effects,
    ) {
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(ticket),
            awaiting_sync: None,
            last_seen_ms: now,
            is_new: true,
            join_order: group.next_join_order,
        };
        group.next_join_order += 1;
        if let Some(instance) = &req.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.members.insert(member_id.clone(), member);
        if let Some(delay) = group.initial_delay.as_mut() {
            delay.joined += 1;
        }
        match group.state {
            GroupState::PreparingRebalance => Self::maybe_complete_join(group, now, effects),
            _ => {
                let reason = format!(
                    "Adding new member {member_id} with group instance id {:?}",
                    req.group_instance_id
                );
                Self::prepare_rebalance(group, config, now, &reason, effects);
            }
        }
    }

    fn join_known_member(
        &mut self,
        now: i64,
        ticket: Ticket,
        req: JoinRequest,
        effects: &mut Effects,
    ) -> Option<JoinResponse> {
        let config = self.config.clone();
        let group = self
            .groups
            .get_mut(&req.group_id)
            .expect("checked by caller");
        if group.pending_members.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            Self::add_member_and_rebalance(group, &config, now, ticket, req, member_id, effects);
            return None;
        }
        if let Some(instance) = &req.group_instance_id {
            if let Some(current) = group.static_members.get(instance) {
                if current != &req.member_id {
                    return Some(JoinResponse::error(
                        error::FENCED_INSTANCE_ID,
                        &req.member_id,
                    ));
                }
            }
        }
        let Some(member) = group.members.get_mut(&req.member_id) else {
            return Some(JoinResponse::error(
                error::UNKNOWN_MEMBER_ID,
                &req.member_id,
            ));
        };
        member.last_seen_ms = now;
        let protocols_changed = !member.same_protocols(&req.protocols);
        let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
        match group.state {
            GroupState::PreparingRebalance => {
                member.protocols = req.protocols;
                member.session_timeout_ms = req.session_timeout_ms;
                member.rebalance_timeout_ms = req.rebalance_timeout_ms;
                if let Some(old) = member.awaiting_join.replace(ticket) {
                    // A retried join replaces the earlier one (Kafka answers the old
                    // one with UNKNOWN_MEMBER_ID... but clients only wait on the new).
                    effects.joins.push((
                        old,
                        JoinResponse::error(error::REBALANCE_IN_PROGRESS, &req.member_id),
                    ));
                }
                Self::maybe_complete_join(group, now, effects);
                None
            }
            // Nothing changed: answer with the current generation. (A Stable leader's rejoin
            // always triggers a rebalance: it wants to reassign, e.g. for new topics.)
            GroupState::CompletingRebalance | GroupState::Stable
                if !protocols_changed && (!is_leader || group.state != GroupState::Stable) =>
            {
                Some(group.join_response_for(&req.member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.protocols = req.protocols;
                member.awaiting_join = Some(ticket);
                // The client's own reason (JoinGroup v8+) when it gives one, as Kafka logs.
                let reason = req.reason.clone().unwrap_or_else(|| {
                    format!(
                        "{} re-joining group in state {}",
                        if is_leader { "leader" } else { "member" },
                        group.state.name()
                    )
                });
                Self::prepare_rebalance(group, &config, now, &reason, effects);
                None
            }
            GroupState::Empty => Some(JoinResponse::error(
                error::UNKNOWN_MEMBER_ID,
                &req.member_id,
            )),
        }
    }

    fn prepare_rebalance(
        group: &mut Group,
        config: &CoordinatorConfig,
        now: i64,
        reason: &str,
        effects: &mut Effects,
    ) {
        if group.state == GroupState::CompletingRebalance {
            // The assignment being handed out is now stale.
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(t) = m.awaiting_sync.take() {
                    effects
                        .syncs
                        .push((t, SyncResponse::error(error::REBALANCE_IN_PROGRESS)));
                }
            }
        }
        let rebalance_timeout = group.max_rebalance_timeout();
        if group.state == GroupState::Empty && config.initial_rebalance_delay_ms > 0 {
            let delay = config
                .initial_rebalance_delay_ms
                .min(rebalance_timeout.max(0));
            group.initial_delay = Some(InitialDelay {
                deadline_ms: now + delay,
                remaining_ms: (rebalance_timeout - delay).max(0),
                joined: 0,
            });
        } else {
            group.initial_delay = None;
        }
        group.rebalance_deadline_ms = Some(now + rebalance_timeout);
        let old_generation = group.generation;
        group.transition(GroupState::PreparingRebalance, now);
        tracing::info!(
            "Preparing to rebalance group {} in state PreparingRebalance with old generation {} (reason: {})",
            group.group_id,
            old_generation,
            reason
        );
        Self::maybe_complete_join(group, now, effects);
    }

    fn maybe_complete_join(group: &mut Group, now: i64, effects: &mut Effects) {
        if group.state == GroupState::PreparingRebalance
            && group.initial_delay.is_none()
            && group.all_members_joined()
        {
            Self::complete_join(group, now, effects);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, start the
    /// next generation, answer every parked JoinGroup.
    fn complete_join(group: &mut Group, now: i64, effects: &mut Effects) {
        let laggards: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in laggards {
            tracing::info!(
                "Member {id} in group {} did not rejoin in time; removing it from the group",
                group.group_id
            );
            group.members.remove(&id);
        }
        group.pending_members.clear();
        group.rebalance_deadline_ms = None;
        group.initial_delay = None;
        group.generation += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            // Kafka clears only the protocol name: an emptied consumer group is still
            // a consumer group (admin tools would otherwise call it "simple").
            group.leader = None;
            group.transition(GroupState::Empty, now);
            effects.records.push(group.metadata_record(now));
            tracing::info!(
                "Group {} with generation {} is now empty",
                group.group_id,
                group.generation
            );
            return;
        }
        group.protocol_name = group.select_protocol();
        let leader_gone = group
            .leader
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l));
        if leader_gone {
            group.leader = group
                .members
                .values()
                .min_by_key(|m| m.join_order)
                .map(|m| m.member_id.clone());
        }
        group.transition(GroupState::CompletingRebalance, now);
        tracing::info!(
            "Stabilized group {} generation {} with {} members",
            group.group_id,
            group.generation,
            group.members.len()
        );
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let response = group.join_response_for(&id);
            let member = group.members.get_mut(&id).expect("listed above");
            member.is_new = false;
            member.last_seen_ms = now;
            if let Some(t) = member.awaiting_join.take() {
                effects.joins.push((t, response));
            }
        }
    }

    // ------------------------------------------------------------------ SyncGroup

    pub fn sync(
        &mut self,
        now: i64,
        ticket: Ticket,
        req: SyncRequest,
    ) -> (Option<SyncResponse>, Effects) {
        let mut effects = Effects::default();
        if let Some(group) = self.consumer_groups.get_mut(&req.group_id) {
            let reply = group.classic_sync(now, &self.config.consumer, &self.topics, &req);
            return (Some(reply), effects);
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return (Some(SyncResponse::error(error::UNKNOWN_MEMBER_ID)), effects);
        };
        if let Err(code) = check_member(group, &req.member_id, req.group_instance_id.as_deref()) {
            return (Some(SyncResponse::error(code)), effects);
        }
        if req.generation_id != group.generation {
            return (
                Some(SyncResponse::error(error::ILLEGAL_GENERATION)),
                effects,
            );
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            return (
                Some(SyncResponse::error(error::INCONSISTENT_GROUP_PROTOCOL)),
                effects,
            );
        }
        let ok = |group: &Group, assignment: Bytes| SyncResponse {
            error: error::NONE,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol_name.clone(),
            assignment,
        };
        match group.state {
            GroupState::Empty => (Some(SyncResponse::error(error::UNKNOWN_MEMBER_ID)), effects),
            GroupState::PreparingRebalance => (
                Some(SyncResponse::error(error::REBALANCE_IN_PROGRESS)),
                effects,
            ),
            GroupState::Stable => {
                let member = group.members.get_mut(&req.member_id).expect("checked");
                member.last_seen_ms = now;
                let assignment = member.assignment.clone();
                (Some(ok(group, assignment)), effects)
            }
            GroupState::CompletingRebalance => {
                {
                    let member = group.members.get_mut(&req.member_id).expect("checked");
                    member.last_seen_ms = now;
                    member.awaiting_sync = Some(ticket);
                }
                if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in group.members.values_mut() {
                        m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    effects.records.push(group.metadata_record(now));
                    group.transition(GroupState::Stable, now);
                    let replies: Vec<(Ticket, SyncResponse)> = group
                        .members
                        .values_mut()
                        .filter_map(|m| m.awaiting_sync.take().map(|t| (t, m.assignment.clone())))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|(t, a)| (t, ok(group, a)))
                        .collect();
                    effects.syncs.extend(replies);
                }
                (None, effects)
            }
        }
    }

    // ------------------------------------------------------------------ Heartbeat

    pub fn heartbeat(&mut self, now: i64, req: HeartbeatRequest) -> i16 {
        if let Some(group) = self.consumer_groups.get_mut(&req.group_id) {
            return group.classic_heartbeat(now, &self.config.consumer, &req);
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return error::UNKNOWN_MEMBER_ID;
        };
        if let Err(code) = check_member(group, &req.member_id, req.group_instance_id.as_deref()) {
            return code;
        }
        if req.generation_id != group.generation {
            return error::ILLEGAL_GENERATION;
        }
        let state = group.state;
        let member = group.members.get_mut(&req.member_id).expect("checked");
        match state {
            GroupState::Empty => error::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                member.last_seen_ms = now;
                error::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_seen_ms = now;
                error::NONE
            }
        }
    }

    // ------------------------------------------------------------------ LeaveGroup

    /// LeaveGroup for one or more members; returns per-member error codes.
    pub fn leave(
        &mut self,
        now: i64,
        group_id: &str,
        members: &[LeaveMember],
    ) -> (Vec<i16>, Effects) {
        let mut effects = Effects::default();
        if let Some(group) = self.consumer_groups.get_mut(group_id) {
            let config = self.config.consumer.clone();
            let errors = group.classic_leave(now, &config, members, &mut effects.records);
            self.maybe_downgrade(now, group_id, &mut effects);
            return (errors, effects);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return (vec![error::UNKNOWN_MEMBER_ID; members.len()], effects);
        };
        let mut errors = Vec::with_capacity(members.len());
        let mut removed_any = false;
        for leaving in members {
            let member_id = match &leaving.group_instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    None => {
                        errors.push(error::UNKNOWN_MEMBER_ID);
                        continue;
                    }
                    Some(current)
                        if !leaving.member_id.is_empty() && current != &leaving.member_id =>
                    {
                        errors.push(error::FENCED_INSTANCE_ID);
                        continue;
                    }
                    Some(current) => current.clone(),
                },
                None => leaving.member_id.clone(),
            };
            if group.pending_members.remove(&member_id).is_some() {
                errors.push(error::NONE);
                continue;
            }
            match group.members.remove(&member_id) {
                None => errors.push(error::UNKNOWN_MEMBER_ID),
                Some(m) => {
                    tracing::info!("Member {member_id} has left group {group_id} through explicit `LeaveGroup` request");
                    answer_removed(&m, &mut effects);
                    if let Some(instance) = &m.group_instance_id {
                        group.static_members.remove(instance);
                    }
                    removed_any = true;
                    errors.push(error::NONE);
                }
            }
        }
        if removed_any {
            Self::after_member_removed(
                group,
                &self.config,
                now,
                "removing members on LeaveGroup",
                &mut effects,
            );
        }
        (errors, effects)
    }

    fn after_member_removed(
        group: &mut Group,
        config: &CoordinatorConfig,
        now: i64,
        reason: &str,
        effects: &mut Effects,
    ) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                Self::prepare_rebalance(group, config, now, reason, effects)
            }
            GroupState::PreparingRebalance => Self::maybe_complete_join(group, now, effects),
            GroupState::Empty => {}
        }
    }

    // ------------------------------------------------------------------ timers

    /// Advance time: expire sessions and pending members, finish delayed or timed-out
    /// rebalances, and return tombstones for the expired offsets of empty groups (and
    /// for such groups once they have nothing left), which apply once stored.
    pub fn tick(&mut self, now: i64) -> Effects {
        let mut effects = Effects::default();
        let config = self.config.clone();
        let mut shrunk = Vec::new();
        for group in self.consumer_groups.values_mut() {
            let before = group.member_count();
            group.tick(now, &config.consumer, &mut effects.records);
            if group.member_count() < before {
                shrunk.push(group.group_id().to_string());
            }
        }
        for group_id in shrunk {
            self.maybe_downgrade(now, &group_id, &mut effects);
        }
        let consumer_groups = &self.consumer_groups;
        for group in self.groups.values_mut() {
            if let Some(cg) = consumer_groups.get(&group.group_id) {
                if !cg.is_empty() {
                    continue;
                }
            }
            group.pending_members.retain(|_, deadline| *deadline >= now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.expired(now))
                .map(|m| m.member_id.clone())
                .collect();
            for id in &expired {
                if let Some(m) = group.members.remove(id) {
                    tracing::info!(
                        "Member {id} in group {} has failed, removing it from the group",
                        group.group_id
                    );
                    answer_removed(&m, &mut effects);
                    if let Some(instance) = &m.group_instance_id {
                        group.static_members.remove(instance);
                    }
                }
            }
            if !expired.is_empty() {
                Self::after_member_removed(
                    group,
                    &config,
                    now,
                    "removing expired members",
                    &mut effects,
                );
            }
            if group.state == GroupState::PreparingRebalance {
                if let Some(delay) = group.initial_delay.clone() {
                    if now >= delay.deadline_ms {
                        if delay.joined > 0 && delay.remaining_ms > 0 {
                            let extension =
                                config.initial_rebalance_delay_ms.min(delay.remaining_ms);
                            group.initial_delay = Some(InitialDelay {
                                deadline_ms: now + extension,
                                remaining_ms: delay.remaining_ms - extension,
                                joined: 0,
                            });
                        } else {
                            group.initial_delay = None;
                            Self::complete_join(group, now, &mut effects);
                        }
                    }
                } else if group.rebalance_deadline_ms.is_some_and(|d| now >= d) {
                    Self::complete_join(group, now, &mut effects);
                } else {
                    Self::maybe_complete_join(group, now, &mut effects);
                }
            }
            if group.state == GroupState::Empty && group.members.is_empty() {
                let retention = config.offsets_retention_ms;
                let since = group.current_state_timestamp;
                let expired: Vec<(String, i32)> = group
                    .offsets
                    .iter()
                    .filter(|(_, v)| match v.expire_timestamp {
                        // An explicit expiry from an old (v1) commit wins, as in Kafka.
                        Some(expire) => now >= expire,
                        None => now >= v.commit_timestamp.max(since) + retention,
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if !expired.is_empty() {
                    tracing::info!(
                        "Expiring {} offsets of group {}",
                        expired.len(),
                        group.group_id
                    );
                }
                // Kafka's cleanup also drops a group left with no offsets once it has
                // been idle for a retention check interval.
                let idle_for = now - group.current_state_timestamp;
                let dead = expired.len() == group.offsets.len()
                    && group.pending_members.is_empty()
                    && idle_for >= config.offsets_retention_check_interval_ms;
                for (topic, partition) in expired {
                    effects
                        .records
                        .push(group.offset_tombstone(topic, partition));
                }
                if dead && !consumer_groups.contains_key(&group.group_id) {
                    effects.records.push(group.group_tombstone());
                }
            }
        }
        effects
    }

    /// The earliest time at which `tick` has something to do, if any (lets the runtime
    /// sleep precisely instead of polling).
    pub fn next_deadline(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        for g in self.consumer_groups.values() {
            if let Some(d) = g.next_deadline() {
                consider(d);
            }
        }
        for g in self.groups.values() {
            for d in g.pending_members.values() {
                consider(*d + 1);
            }
            // A waiting member cannot expire: its deadline may be long past.
            for m in g.members.values().filter(|m| !m.is_waiting()) {
                consider(m.expiry_deadline() + 1);
            }
            if let Some(d) = &g.initial_delay {
                consider(d.deadline_ms);
            } else if let Some(d) = g.rebalance_deadline_ms {
                consider(d);
            }
        }
        next
    }

    // ------------------------------------------------------------------ offsets

    /// OffsetCommit: returns per-partition errors; accepted commits become records,
    /// which take effect only once stored ([`GroupCoordinator::apply_stored`]), so a
    /// commit that failed to reach the log is never visible.
    pub fn commit_offsets(
        &mut self,
        now: i64,
        req: OffsetCommitRequest,
    ) -> (Vec<PartitionResult>, Effects) {
        let mut effects = Effects::default();
        if req.group_id.is_empty() {
            return (req.results(error::INVALID_GROUP_ID), effects);
        }
        let simple = req.generation_id < 0 && req.member_id.is_empty();
        if let Some(group) = self.consumer_groups.get(&req.group_id) {
            // The generation field carries the member epoch (OffsetCommit v9+).
            if let Err(code) = group.validate_offset_commit(
                &req.member_id,
                req.generation_id,
                req.offset_commit_version.unwrap_or(i16::MAX),
                req.offset_commit_version.is_none(),
            ) {
                return (req.results(code), effects);
            }
            self.groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, now));
        } else {
            match self.groups.get_mut(&req.group_id) {
                None if req.generation_id < 0 => {
                    // A "simple" consumer: uses a group id for offsets only.
                    self.groups
                        .insert(req.group_id.clone(), Group::new(&req.group_id, now));
                }
                None => return (req.results(error::ILLEGAL_GENERATION), effects),
                Some(group) => {
                    let code = match group.state {
                        // Kafka: any commit with a negative generation to an empty group is a
                        // "simple" commit, whatever member id it carries.
                        GroupState::Empty if req.generation_id < 0 => None,
                        GroupState::CompletingRebalance if !simple => {
                            Some(error::REBALANCE_IN_PROGRESS)
                        }
                        _ => {
                            match check_member(
                                group,
                                &req.member_id,
                                req.group_instance_id.as_deref(),
                            ) {
                                Err(c) => Some(c),
                                Ok(()) if req.generation_id != group.generation => {
                                    Some(error::ILLEGAL_GENERATION)
                                }
                                Ok(()) => {
                                    if let Some(m) = group.members.get_mut(&req.member_id) {
                                        m.last_seen_ms = now;
                                    }
                                    None
                                }
                            }
                        }
                    };
                    if let Some(code) = code {
                        return (req.results(code), effects);
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(req.offsets.len());
        for o in &req.offsets {
            let metadata = o.metadata.clone().unwrap_or_default();
            if metadata.len() > self.config.max_metadata_bytes {
                results.push(PartitionResult {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    error: error::OFFSET_METADATA_TOO_LARGE,
                });
                continue;
            }
            let record = CoordinatorRecord {
                key: CoordinatorKey::OffsetCommit {
                    group: req.group_id.clone(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                },
                value: RecordValue::OffsetCommit(OffsetCommitValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                    commit_timestamp: now,
                    expire_timestamp: None,
                }),
            };
            effects.records.push(record);
            results.push(PartitionResult {
                topic: o.topic.clone(),
                partition: o.partition,
                error: error::NONE,
            });
        }
        (results, effects)
    }

    /// OffsetFetch for one group; `topics: None` means every committed partition.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<FetchedOffset> {
        let group = self.groups.get(group_id);
        let found = |topic: &str, partition: i32| -> FetchedOffset {
            let v = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
            FetchedOffset {
                topic: topic.to_string(),
                partition,
                offset: v.map_or(-1, |v| v.offset),
                leader_epoch: v.map_or(-1, |v| v.leader_epoch),
                metadata: Some(v.map(|v| v.metadata.clone()).unwrap_or_default()),
                error: error::NONE,
            }
        };
        match topics {
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
                .map(|(t, p)| found(t, p))
                .collect(),
            None => group
                .map(|g| g.offsets.keys().map(|(t, p)| found(t, *p)).collect())
                .unwrap_or_default(),
        }
    }

    /// OffsetDelete: refuses partitions of topics the (consumer) group subscribes to.
    /// The offsets go once the tombstones are stored ([`GroupCoordinator::apply_stored`]).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> (i16, Vec<PartitionResult>, Effects) {
        let mut effects = Effects::default();
        let Some(group) = self.groups.get(group_id) else {
            return (error::GROUP_ID_NOT_FOUND, vec![], effects);
        };
        let subscribed = match self.consumer_groups.get(group_id) {
            Some(cg) if !cg.is_empty() => Some(cg.subscribed_topic_names().into_iter().collect()),
            Some(_) => None,
            None => match group.state {
                GroupState::Empty => None,
                _ => group.subscribed_topics(),
            },
        };
        let mut results = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.as_ref().is_some_and(|s| s.contains(topic)) {
                results.push(PartitionResult {
                    topic: topic.clone(),
                    partition: *partition,
                    error: error::GROUP_SUBSCRIBED_TO_TOPIC,
                });
                continue;
            }
            if group.offsets.contains_key(&(topic.clone(), *partition)) {
                effects
                    .records
                    .push(group.offset_tombstone(topic.clone(), *partition));
            }
            results.push(PartitionResult {
                topic: topic.clone(),
                partition: *partition,
                error: error::NONE,
            });
        }
        (error::NONE, results, effects)
    }

    /// DeleteGroups: only empty groups; tombstones for the group and its offsets, which
    /// remove it once stored ([`GroupCoordinator::apply_stored`]).
    pub fn delete_group(&mut self, group_id: &str) -> (i16, Effects) {
        let mut effects = Effects::default();
        if let Some(cg) = self.consumer_groups.get(group_id) {
            if !cg.is_empty() {
                return (error::NON_EMPTY_GROUP, effects);
            }
            if let Some(offsets) = self.groups.get(group_id) {
                for (topic, partition) in offsets.offsets.keys() {
                    effects
                        .records
                        .push(offsets.offset_tombstone(topic.clone(), *partition));
                }
            }
            // Consumer group records are applied as they are written.
            effects.records.extend(cg.tombstones());
            self.consumer_groups.remove(group_id);
            tracing::info!("[GroupId {group_id}] The group has been deleted.");
            if let Some(offsets) = self.groups.get(group_id) {
                effects.records.push(offsets.group_tombstone());
            }
            return (error::NONE, effects);
        }
        let group = match self.groups.get(group_id) {
            None => return (error::GROUP_ID_NOT_FOUND, effects),
            Some(g) if g.state != GroupState::Empty || !g.members.is_empty() => {
                return (error::NON_EMPTY_GROUP, effects)
            }
            Some(g) => g,
        };
        for (topic, partition) in group.offsets.keys() {
            effects
                .records
                .push(group.offset_tombstone(topic.clone(), *partition));
        }
        effects.records.push(group.group_tombstone());
        (error::NONE, effects)
    }

    // ------------------------------------------------------------------ queries

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let classic = self
            .groups
            .get(group_id)
            .filter(|_| !self.consumer_groups.contains_key(group_id));
        let Some(group) = classic else {
            return GroupDescription {
                group_id: group_id.to_string(),
                error: error::NONE,
                // Kafka describes a group it does not know as Dead.
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: vec![],
            };
        };
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let with_data = group.state == GroupState::Stable;
        let mut ordered: Vec<&Member> = group.members.values().collect();
        ordered.sort_by_key(|m| m.join_order);
        GroupDescription {
            group_id: group_id.to_string(),
            error: error::NONE,
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: if with_data {
                protocol.clone()
            } else {
                String::new()
            },
            members: ordered
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if with_data {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if with_data {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// Every committed offset of every group, as (group, topic, partition, offset): what
    /// the metrics endpoint turns into consumer lag.
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        self.groups
            .values()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((topic, partition), v)| CommittedOffset {
                        group_id: g.group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: v.offset,
                    })
            })
            .collect()
    }

    /// ListGroups, optionally filtered by state names (case-insensitive, as Kafka).
    pub fn list(&self, states: &[String]) -> Vec<GroupListing> {
        let wanted =
            |state: &str| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state));
        let mut out: Vec<GroupListing> = self
            .groups
            .values()
            .filter(|g| !self.consumer_groups.contains_key(&g.group_id))
            .filter(|g| wanted(g.state.name()))
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
                group_type: GroupType::Classic,
            })
            .collect();
        out.extend(
            self.consumer_groups
                .values()
                .filter(|g| wanted(g.state().name()))
                .map(|g| GroupListing {
                    group_id: g.group_id().to_string(),
                    protocol_type: "consumer".to_string(),
                    state: g.state().name(),
                    group_type: GroupType::Consumer,
                }),
        );
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    // ------------------------------------------------------------------ replay

    /// Let records returned in [`Effects`] take effect, once they are stored in
    /// `__consumer_offsets`. Offset commits and every tombstone change memory only here,
    /// so a write that fails leaves the coordinator as the log is and the request (or
    /// the next tick) can be tried again. A group's metadata record describes a change
    /// already made, as in Kafka's classic coordinator, and is skipped.
    pub fn apply_stored<'a>(
        &mut self,
        now: i64,
        records: impl IntoIterator<Item = &'a CoordinatorRecord>,
    ) {
        for record in records {
            match (&record.key, &record.value) {
                (_, RecordValue::GroupMetadata(_)) => continue,
                // Applied as they were written (see `crate::consumer`).
                (CoordinatorKey::ConsumerGroup(_), _) => continue,
                // A classic group's tombstone is written only for a group without
                // members (deleted, expired, or converted to a consumer group); members
                // now mean a newer state took its place (a downgrade while the
                // tombstone of the upgrade was being stored) and it must stay.
                (CoordinatorKey::GroupMetadata { group }, RecordValue::Tombstone)
                    if self
                        .groups
                        .get(group)
                        .is_some_and(|g| !g.members.is_empty()) =>
                {
                    continue
                }
                (CoordinatorKey::GroupMetadata { group }, RecordValue::Tombstone)
                    if self.groups.contains_key(group)
                        && !self.consumer_groups.contains_key(group) =>
                {
                    tracing::info!("Group {group} transitioned to Dead and was deleted");
                }
                _ => {}
            }
            self.replay_at(now, record);
        }
    }

    /// Apply one stored record (loading at start-up, and live through
    /// [`GroupCoordinator::apply_stored`]).
    /// A group loaded with members is Stable; its members must heartbeat within their
    /// session timeout (counted from `now`) or they expire, as in Kafka.
    pub fn replay_at(&mut self, now: i64, record: &CoordinatorRecord) {
        match (&record.key, &record.value) {
            (
                CoordinatorKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                },
                RecordValue::OffsetCommit(v),
            ) => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now));
                g.offsets.insert((topic.clone(), *partition), v.clone());
            }
            (
                CoordinatorKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                },
                RecordValue::Tombstone,
            ) => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.offsets.remove(&(topic.clone(), *partition));
                }
            }
            (CoordinatorKey::GroupMetadata { group }, RecordValue::GroupMetadata(v)) => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now));
                g.generation = v.generation;
                g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
                g.protocol_name = v.protocol.clone();
                g.leader = v.leader.clone();
                g.members.clear();
                g.static_members.clear();
                for (i, m) in v.members.iter().enumerate() {
                    if let Some(instance) = &m.group_instance_id {
                        g.static_members
                            .insert(instance.clone(), m.member_id.clone());
                    }
                    let protocol = v.protocol.clone().unwrap_or_default();
                    g.members.insert(
                        m.member_id.clone(),
                        Member {
                            member_id: m.member_id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            session_timeout_ms: m.session_timeout,
                            rebalance_timeout_ms: m.rebalance_timeout,
                            protocols: vec![(protocol, Bytes::from(m.subscription.clone()))],
                            assignment: Bytes::from(m.assignment.clone()),
                            awaiting_join: None,
                            awaiting_sync: None,
                            last_seen_ms: now,
                            is_new: false,
                            join_order: i as u64,
                        },
                    );
                }
                g.next_join_order = v.members.len() as u64;
                let state = if g.members.is_empty() {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                };
                g.state = state;
                g.current_state_timestamp = if v.current_state_timestamp >= 0 {
                    v.current_state_timestamp
                } else {
                    now
                };
            }
            (CoordinatorKey::GroupMetadata { group }, RecordValue::Tombstone) => {
                // The classic group ends; offsets still stored stay (a group converted
                // to a consumer group keeps them; a deleted group's offsets were
                // tombstoned before).
                match self.groups.get_mut(group) {
                    Some(g) if !g.offsets.is_empty() => {
                        let offsets = std::mem::take(&mut g.offsets);
                        *g = Group::new(group, now);
                        g.offsets = offsets;
                    }
                    _ => {
                        self.groups.remove(group);
                    }
                }
            }
            (CoordinatorKey::ConsumerGroup(key), value) => {
                let value = match value {
                    RecordValue::ConsumerGroup(v) => Some(v),
                    _ => None,
                };
                self.replay_consumer(now, key, value);
            }
            // Mismatched key/value kinds or record types we do not own: skip.
            _ => {}
        }
    }
}

impl GroupCoordinator {
    fn replay_consumer(
        &mut self,
        now: i64,
        key: &ConsumerGroupKey,
        value: Option<&crate::consumer::records::ConsumerGroupValue>,
    ) {
        let group_id = key.group();
        if value.is_none() && !self.consumer_groups.contains_key(group_id) {
            return;
        }
        let group = self
            .consumer_groups
            .entry(group_id.to_string())
            .or_insert_with(|| ConsumerGroup::new(group_id));
        if !group.replay(now, &self.config.consumer, key, value) {
            self.consumer_groups.remove(group_id);
        }
    }

    /// After loading: every consumer group member's session restarts from `now`.
    pub fn on_loaded(&mut self, now: i64) {
        for g in self.consumer_groups.values_mut() {
            g.restart_sessions(now, &self.config.consumer);
        }
    }
}

/// Is `member_id` a current member (and not a fenced static instance)?
fn check_member(group: &Group, member_id: &str, instance: Option<&str>) -> Result<(), i16> {
    if let Some(instance) = instance {
        match group.static_members.get(instance) {
            Some(current) if current != member_id => return Err(error::FENCED_INSTANCE_ID),
            None if !group.members.contains_key(member_id) => return Err(error::UNKNOWN_MEMBER_ID),
            _ => {}
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(error::UNKNOWN_MEMBER_ID);
    }
    Ok(())
}

/// Answer requests a removed member left parked.
fn answer_removed(member: &Member, effects: &mut Effects) {
    if let Some(t) = member.awaiting_join {
        effects.joins.push((
            t,
            JoinResponse::error(error::UNKNOWN_MEMBER_ID, &member.member_id),
        ));
    }
    if let Some(t) = member.awaiting_sync {
        effects
            .syncs
            .push((t, SyncResponse::error(error::UNKNOWN_MEMBER_ID)));
    }
}
