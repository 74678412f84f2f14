//! Members that speak the classic protocol inside a consumer group: how a group migrates
//! online between the protocols (KIP-848's upgrade and downgrade, Kafka's
//! `classicGroupJoinToConsumerGroup`, `classicGroupSyncToConsumerGroup`,
//! `classicGroupHeartbeatToConsumerGroup` and `classicGroupLeaveToConsumerGroup`).
//!
//! A classic member's JoinGroup is a full heartbeat: its subscription (the embedded
//! consumer protocol's topics and owned partitions) updates the member, the group epoch
//! and the target as a ConsumerGroupHeartbeat would, and the member is reconciled with
//! what it says it owns. Its generation is its member epoch; SyncGroup hands it its
//! assigned partitions (there is no leader: the broker assigned them); Heartbeat answers
//! REBALANCE_IN_PROGRESS whenever the member has to join again to make progress (the
//! group epoch moved, it must revoke, or partitions it waits for became free).

use std::collections::BTreeMap;

use super::member::{iter, ConsumerMember, MemberState};
use super::records::{ClassicMemberMetadata, ConsumerGroupKey, TopicPartitions};
use super::topics::TopicsImage;
use super::{ConsumerGroup, ConsumerGroupConfig, MigrationPolicy};
use crate::subscription::{decode_subscription, encode_assignment};
use crate::types::{
    error, CoordinatorRecord, HeartbeatRequest, JoinRequest, JoinResponse, LeaveMember,
    SyncRequest, SyncResponse,
};

/// The protocol type of classic members a consumer group can host.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl ConsumerMember {
    pub fn uses_classic_protocol(&self) -> bool {
        self.metadata.classic_member_metadata.is_some()
    }

    /// The session timeout that applies: a classic member's own, else the group's.
    pub fn session_timeout_ms(&self, config: &ConsumerGroupConfig) -> i32 {
        self.metadata
            .classic_member_metadata
            .as_ref()
            .map_or(config.session_timeout_ms, |c| c.session_timeout_ms)
    }

    fn first_protocol(&self) -> Option<&str> {
        self.metadata
            .classic_member_metadata
            .as_ref()
            .and_then(|c| c.supported_protocols.first())
            .map(|(name, _)| name.as_str())
    }
}

/// Partitions by topic name, turned into ids with `topics` (unknown topics dropped).
pub fn by_id(topics: &TopicsImage, partitions: &[(String, Vec<i32>)]) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (name, ps) in partitions {
        if let Some(t) = topics.topic(name) {
            out.entry(t.id).or_default().extend(ps.iter().copied());
        }
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

/// Partitions by topic id, turned into names with `topics` (unknown ids dropped).
pub fn by_name(topics: &TopicsImage, partitions: &TopicPartitions) -> Vec<(String, Vec<i32>)> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (id, p) in iter(partitions) {
        if let Some(name) = topics.name(id) {
            out.entry(name.to_string()).or_default().push(p);
        }
    }
    out.into_iter().collect()
}

impl ConsumerGroup {
    /// Does the group speak `protocols` (Kafka's `supportsClassicProtocols`)? The
    /// protocol type must be `consumer`, and when classic members are present they must
    /// share a protocol name with the newcomer.
    fn supports_classic(&self, protocol_type: &str, protocols: &[(String, bytes::Bytes)]) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        self.members
            .values()
            .filter_map(|m| m.metadata.classic_member_metadata.as_ref())
            .all(|c| {
                c.supported_protocols
                    .iter()
                    .any(|(n, _)| protocols.iter().any(|(p, _)| p == n))
            })
    }

    /// The member a classic request names (`UNKNOWN_MEMBER_ID`, `FENCED_INSTANCE_ID` as
    /// Kafka's `validateConsumerGroupMember`), which must use the classic protocol.
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerMember, i16> {
        let member = match instance_id {
            None => self
                .members
                .get(member_id)
                .ok_or(error::UNKNOWN_MEMBER_ID)?,
            Some(instance) => {
                let id = self
                    .static_members
                    .get(instance)
                    .ok_or(error::UNKNOWN_MEMBER_ID)?;
                if id != member_id {
                    return Err(error::FENCED_INSTANCE_ID);
                }
                self.members.get(id).ok_or(error::UNKNOWN_MEMBER_ID)?
            }
        };
        if !member.uses_classic_protocol() {
            return Err(error::UNKNOWN_MEMBER_ID);
        }
        Ok(member)
    }

    /// JoinGroup of a classic member to this (non-empty) consumer group.
    /// `generated_member_id` names a member joining without an id.
    #[allow(clippy::too_many_arguments)]
    pub fn classic_join(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        req: &JoinRequest,
        generated_member_id: &str,
        out: &mut Vec<CoordinatorRecord>,
    ) -> JoinResponse {
        let unknown = req.member_id.is_empty();
        let member_id = if unknown {
            generated_member_id.to_string()
        } else {
            req.member_id.clone()
        };
        if self.members.len() >= config.max_size && !self.members.contains_key(&member_id) {
            return JoinResponse::error(error::GROUP_MAX_SIZE_REACHED, &member_id);
        }
        if !self.supports_classic(&req.protocol_type, &req.protocols) {
            return JoinResponse::error(error::INCONSISTENT_GROUP_PROTOCOL, &member_id);
        }
        if unknown && req.require_known_member_id && req.group_instance_id.is_none() {
            tracing::info!(
                "[GroupId {}] Dynamic member with unknown member id joins the consumer group. Created a new member id {} and requesting the member to rejoin with this id.",
                self.group_id,
                member_id
            );
            return JoinResponse::error(error::MEMBER_ID_REQUIRED, &member_id);
        }
        let Some(subscription) = decode_subscription(&req.protocols[0].1) else {
            return JoinResponse::error(error::INCONSISTENT_GROUP_PROTOCOL, &member_id);
        };

        // The member: existing, new, or a static member replacing its previous instance.
        let member = match &req.group_instance_id {
            // Kafka creates a dynamic member for any id it is given (the id it handed
            // out with MEMBER_ID_REQUIRED, typically).
            None => match self.members.get(&member_id) {
                Some(m) if m.uses_classic_protocol() => m.clone(),
                Some(_) => return JoinResponse::error(error::UNKNOWN_MEMBER_ID, &member_id),
                None => ConsumerMember::new(&member_id),
            },
            Some(instance) => {
                let existing = self
                    .static_members
                    .get(instance)
                    .and_then(|id| self.members.get(id))
                    .cloned();
                match existing {
                    None if unknown => ConsumerMember::new(&member_id),
                    None => return JoinResponse::error(error::UNKNOWN_MEMBER_ID, &member_id),
                    Some(old) if old.member_id == member_id => old,
                    Some(_) if !unknown => {
                        return JoinResponse::error(error::FENCED_INSTANCE_ID, &member_id)
                    }
                    Some(old) => {
                        tracing::info!(
                            "[GroupId {}] Static member with instance id {} re-joins the consumer group using the classic protocol. Created a new member {} to replace the existing member {}.",
                            self.group_id,
                            instance,
                            member_id,
                            old.member_id
                        );
                        self.replace_member(now, config, &old, &member_id, out);
                        self.members[&member_id].clone()
                    }
                }
            }
        };
        if !self.members.contains_key(&member_id) {
            tracing::info!(
                "[GroupId {}] Member {} joins the consumer group using the classic protocol.",
                self.group_id,
                member_id
            );
        }

        let before = if self.members.contains_key(&member_id) {
            member.metadata.clone()
        } else {
            Default::default()
        };
        let mut metadata = member.metadata.clone();
        if let Some(v) = &req.group_instance_id {
            metadata.instance_id = Some(v.clone());
        }
        if let Some(v) = &subscription.rack_id {
            metadata.rack_id = Some(v.clone());
        }
        if req.rebalance_timeout_ms > 0 {
            metadata.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        let mut names = subscription.topics.clone();
        names.sort();
        names.dedup();
        metadata.subscribed_topic_names = names;
        metadata.client_id = req.client_id.clone();
        metadata.client_host = req.client_host.clone();
        metadata.classic_member_metadata = Some(ClassicMemberMetadata {
            session_timeout_ms: req.session_timeout_ms,
            supported_protocols: req
                .protocols
                .iter()
                .map(|(n, m)| (n.clone(), m.to_vec()))
                .collect(),
        });
        self.update_member(
            now,
            config,
            topics,
            &req.topic_access,
            &member_id,
            &before,
            metadata,
            out,
        );

        let owned = by_id(topics, &subscription.owned_partitions);
        let (_, next) = self.reconcile(now, config, &member_id, Some(&owned), out);

        // The member must now sync within its rebalance timeout.
        self.session_deadlines.insert(
            member_id.clone(),
            now + i64::from(next.session_timeout_ms(config)),
        );
        self.classic_deadlines.insert(
            member_id.clone(),
            now + i64::from(next.metadata.rebalance_timeout_ms.max(0)),
        );
        self.revocation_deadlines.remove(&member_id);
        JoinResponse {
            error: error::NONE,
            generation_id: next.member_epoch,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: next.first_protocol().map(str::to_string),
            leader: String::new(),
            member_id,
            members: vec![],
            skip_assignment: false,
        }
    }

    /// SyncGroup of a classic member: its assigned partitions, in the consumer protocol.
    pub fn classic_sync(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        req: &SyncRequest,
    ) -> SyncResponse {
        let member = match self.classic_member(&req.member_id, req.group_instance_id.as_deref()) {
            Ok(m) => m.clone(),
            Err(code) => return SyncResponse::error(code),
        };
        if req.generation_id != member.member_epoch {
            return SyncResponse::error(error::ILLEGAL_GENERATION);
        }
        let type_ok = req
            .protocol_type
            .as_deref()
            .is_none_or(|t| t == CONSUMER_PROTOCOL_TYPE);
        let name_ok = req
            .protocol_name
            .as_deref()
            .is_none_or(|n| Some(n) == member.first_protocol());
        if !type_ok || !name_ok {
            return SyncResponse::error(error::INCONSISTENT_GROUP_PROTOCOL);
        }
        if self.group_epoch > member.member_epoch
            && member.state != MemberState::UnrevokedPartitions
        {
            self.expect_rejoin(now, &member);
            return SyncResponse::error(error::REBALANCE_IN_PROGRESS);
        }
        self.classic_deadlines.remove(&member.member_id);
        self.session_deadlines.insert(
            member.member_id.clone(),
            now + i64::from(member.session_timeout_ms(config)),
        );
        SyncResponse {
            error: error::NONE,
            protocol_type: req.protocol_type.clone(),
            protocol_name: req.protocol_name.clone(),
            assignment: encode_assignment(&by_name(topics, &member.assigned)).into(),
        }
    }

    /// Heartbeat of a classic member.
    pub fn classic_heartbeat(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        req: &HeartbeatRequest,
    ) -> i16 {
        let member = match self.classic_member(&req.member_id, req.group_instance_id.as_deref()) {
            Ok(m) => m.clone(),
            Err(code) => return code,
        };
        if req.generation_id != member.member_epoch {
            return error::ILLEGAL_GENERATION;
        }
        self.session_deadlines.insert(
            member.member_id.clone(),
            now + i64::from(member.session_timeout_ms(config)),
        );
        // A partition of its target it does not have yet is still owned by another.
        let waiting_on_unreleased = self.target.get(&member.member_id).is_some_and(|target| {
            iter(target).any(|tp| {
                !member
                    .assigned
                    .get(&tp.0)
                    .is_some_and(|ps| ps.contains(&tp.1))
                    && self.owners.get(&tp).is_some_and(|o| o != &member.member_id)
            })
        });
        if member.member_epoch < self.group_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions && !waiting_on_unreleased)
        {
            self.expect_rejoin(now, &member);
            return error::REBALANCE_IN_PROGRESS;
        }
        error::NONE
    }

    /// A classic member told to rejoin must do so within its rebalance timeout.
    fn expect_rejoin(&mut self, now: i64, member: &ConsumerMember) {
        self.classic_deadlines
            .entry(member.member_id.clone())
            .or_insert(now + i64::from(member.metadata.rebalance_timeout_ms.max(0)));
    }

    /// LeaveGroup of classic members: one error per member.
    pub fn classic_leave(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        leaving: &[LeaveMember],
        out: &mut Vec<CoordinatorRecord>,
    ) -> Vec<i16> {
        let mut errors = Vec::with_capacity(leaving.len());
        for l in leaving {
            let member_id = match &l.group_instance_id {
                Some(instance) => match self.static_members.get(instance) {
                    None => {
                        errors.push(error::UNKNOWN_MEMBER_ID);
                        continue;
                    }
                    Some(id) if !l.member_id.is_empty() && id != &l.member_id => {
                        errors.push(error::FENCED_INSTANCE_ID);
                        continue;
                    }
                    Some(id) => id.clone(),
                },
                None => l.member_id.clone(),
            };
            if !self.members.contains_key(&member_id) {
                errors.push(error::UNKNOWN_MEMBER_ID);
                continue;
            }
            tracing::info!(
                "[GroupId {}] Member {} has left group through explicit `LeaveGroup` request.",
                self.group_id,
                member_id
            );
            self.remove_member(now, config, &member_id, out);
            errors.push(error::NONE);
        }
        errors
    }

    /// Whether the group should become a classic group again: every member left uses the
    /// classic protocol and the policy allows downgrades (Kafka's
    /// `validateOnlineDowngrade`).
    pub fn should_downgrade(&self, config: &ConsumerGroupConfig) -> bool {
        config.migration_policy.allows_downgrade()
            && !self.members.is_empty()
            && self
                .members
                .values()
                .all(ConsumerMember::uses_classic_protocol)
            && self.members.len() <= config.classic_max_size
    }

    /// The members, for a conversion to a classic group.
    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    /// A static member taking over with a new member id: the old id's records are
    /// removed and the new id gets its metadata, target and current assignment.
    pub(super) fn replace_member(
        &mut self,
        now: i64,
        config: &ConsumerGroupConfig,
        old: &ConsumerMember,
        new_id: &str,
        out: &mut Vec<CoordinatorRecord>,
    ) {
        let group = self.group_id.clone();
        let target = self.target.get(&old.member_id).cloned().unwrap_or_default();
        for key in [
            ConsumerGroupKey::CurrentMemberAssignment {
                group: group.clone(),
                member: old.member_id.clone(),
            },
            ConsumerGroupKey::TargetAssignmentMember {
                group: group.clone(),
                member: old.member_id.clone(),
            },
            ConsumerGroupKey::MemberMetadata {
                group: group.clone(),
                member: old.member_id.clone(),
            },
        ] {
            self.write(now, config, out, key, None);
        }
        let mut m = old.clone();
        m.member_id = new_id.to_string();
        m.member_epoch = 0;
        m.previous_member_epoch = 0;
        self.write(
            now,
            config,
            out,
            ConsumerGroupKey::MemberMetadata {
                group: group.clone(),
                member: new_id.to_string(),
            },
            Some(super::records::ConsumerGroupValue::MemberMetadata(
                m.metadata.clone(),
            )),
        );
        self.write(
            now,
            config,
            out,
            ConsumerGroupKey::TargetAssignmentMember {
                group: group.clone(),
                member: new_id.to_string(),
            },
            Some(super::records::ConsumerGroupValue::TargetAssignmentMember(
                super::records::TargetAssignmentMemberValue {
                    topic_partitions: target,
                },
            )),
        );
        self.write(
            now,
            config,
            out,
            ConsumerGroupKey::CurrentMemberAssignment {
                group,
                member: new_id.to_string(),
            },
            Some(super::records::ConsumerGroupValue::CurrentMemberAssignment(
                m.assignment_value(),
            )),
        );
    }
}

impl MigrationPolicy {
    pub fn allows_upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    pub fn allows_downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }
}

/// A classic group's member as it is carried into a consumer group by an upgrade.
#[derive(Debug, Clone)]
pub struct ClassicMemberState {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (name, metadata) of every protocol it joined with.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Its metadata for the group's selected protocol (a `ConsumerProtocolSubscription`).
    pub subscription: Vec<u8>,
    /// Its current assignment (a `ConsumerProtocolAssignment`).
    pub assignment: Vec<u8>,
}

impl ConsumerGroup {
    /// The consumer group a classic group becomes (Kafka's `ConsumerGroup.fromClassicGroup`
    /// and `createConsumerGroupRecords`): every member keeps its partitions, at the
    /// classic generation as its member epoch, the group epoch and the target's epoch.
    pub fn from_classic(
        now: i64,
        config: &ConsumerGroupConfig,
        group_id: &str,
        generation: i32,
        members: &[ClassicMemberState],
        topics: &TopicsImage,
        out: &mut Vec<CoordinatorRecord>,
    ) -> ConsumerGroup {
        use super::records::{
            ConsumerGroupMemberMetadataValue, ConsumerGroupMetadataValue, ConsumerGroupValue,
            CurrentMemberAssignmentValue, TargetAssignmentMemberValue,
            TargetAssignmentMetadataValue,
        };
        let mut group = ConsumerGroup::new(group_id);
        let g = || group_id.to_string();
        let mut assigned: Vec<TopicPartitions> = Vec::with_capacity(members.len());
        let mut taken = std::collections::BTreeSet::new();
        for m in members {
            let subscription = decode_subscription(&m.subscription).unwrap_or_default();
            let mut names = subscription.topics.clone();
            names.sort();
            names.dedup();
            let metadata = ConsumerGroupMemberMetadataValue {
                instance_id: m.instance_id.clone(),
                rack_id: subscription.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: names,
                subscribed_topic_regex: None,
                server_assignor: None,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                classic_member_metadata: Some(ClassicMemberMetadata {
                    session_timeout_ms: m.session_timeout_ms,
                    supported_protocols: m.protocols.clone(),
                }),
            };
            let key = ConsumerGroupKey::MemberMetadata {
                group: g(),
                member: m.member_id.clone(),
            };
            group.write(
                now,
                config,
                out,
                key,
                Some(ConsumerGroupValue::MemberMetadata(metadata)),
            );
            // A partition two members claim stays with the first (one owner, always).
            let mut mine = by_id(
                topics,
                &crate::subscription::decode_assignment(&m.assignment).unwrap_or_default(),
            );
            for (t, ps) in mine.iter_mut() {
                ps.retain(|p| taken.insert((*t, *p)));
            }
            mine.retain(|_, ps| !ps.is_empty());
            assigned.push(mine);
        }
        let hash = topics.metadata_hash(&group.subscribed_topic_names());
        let key = ConsumerGroupKey::Metadata { group: g() };
        let value = ConsumerGroupMetadataValue {
            epoch: generation,
            metadata_hash: hash,
        };
        group.write(
            now,
            config,
            out,
            key,
            Some(ConsumerGroupValue::Metadata(value)),
        );
        for (m, a) in members.iter().zip(&assigned) {
            let key = ConsumerGroupKey::TargetAssignmentMember {
                group: g(),
                member: m.member_id.clone(),
            };
            let value = TargetAssignmentMemberValue {
                topic_partitions: a.clone(),
            };
            group.write(
                now,
                config,
                out,
                key,
                Some(ConsumerGroupValue::TargetAssignmentMember(value)),
            );
        }
        let key = ConsumerGroupKey::TargetAssignmentMetadata { group: g() };
        let value = TargetAssignmentMetadataValue {
            assignment_epoch: generation,
        };
        group.write(
            now,
            config,
            out,
            key,
            Some(ConsumerGroupValue::TargetAssignmentMetadata(value)),
        );
        for (m, a) in members.iter().zip(assigned) {
            let key = ConsumerGroupKey::CurrentMemberAssignment {
                group: g(),
                member: m.member_id.clone(),
            };
            let value = CurrentMemberAssignmentValue {
                member_epoch: generation,
                previous_member_epoch: generation,
                state: MemberState::Stable.value(),
                assigned_partitions: a,
                partitions_pending_revocation: TopicPartitions::new(),
            };
            group.write(
                now,
                config,
                out,
                key,
                Some(ConsumerGroupValue::CurrentMemberAssignment(value)),
            );
        }
        group
    }
}
