//! Online migration between the classic and the consumer group protocol (KIP-848),
//! driven through the coordinator with explicit time: a classic group whose members
//! keep running becomes a consumer group when a consumer-protocol member joins, the
//! classic members are moved with JoinGroup/SyncGroup/Heartbeat without a partition
//! ever having two owners, and the group turns classic again when the last
//! consumer-protocol member leaves. Committed offsets survive both conversions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use ottla_group::consumer::topics::TopicsImage;
use ottla_group::consumer::{ConsumerHeartbeat, MigrationPolicy};
use ottla_group::coordinator::{CoordinatorConfig, GroupCoordinator};
use ottla_group::subscription::{decode_assignment, encode_assignment};
use ottla_group::types::*;
use uuid::Uuid;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i64 = 3_000;
const GROUP: &str = "g";
/// After the (extended) initial rebalance delay.
const T0: i64 = 10 * DELAY;

fn orders() -> Uuid {
    Uuid::from_u64_pair(1, 1)
}

fn topics() -> Arc<TopicsImage> {
    Arc::new(TopicsImage::new([("orders".to_string(), orders(), 6)]).at_version(1))
}

/// `ConsumerProtocolSubscription` v1: topics ["orders"], no user data, owned partitions.
fn subscription(owned: &[i32]) -> Bytes {
    let mut b = vec![0, 1, 0, 0, 0, 1, 0, 6];
    b.extend_from_slice(b"orders");
    b.extend_from_slice(&(-1i32).to_be_bytes());
    if owned.is_empty() {
        b.extend_from_slice(&0i32.to_be_bytes());
    } else {
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&[0, 6]);
        b.extend_from_slice(b"orders");
        b.extend_from_slice(&(owned.len() as i32).to_be_bytes());
        for p in owned {
            b.extend_from_slice(&p.to_be_bytes());
        }
    }
    Bytes::from(b)
}

fn join_req(member_id: &str, owned: &[i32]) -> JoinRequest {
    JoinRequest {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![("cooperative-sticky".into(), subscription(owned))],
        require_known_member_id: true,
        reason: None,
        topic_access: Default::default(),
    }
}

fn sync_req(member_id: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        group_id: GROUP.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("cooperative-sticky".into()),
        assignments,
    }
}

fn heartbeat(c: &mut GroupCoordinator, now: i64, member: &str, generation: i32) -> i16 {
    c.heartbeat(
        now,
        HeartbeatRequest {
            group_id: GROUP.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        },
    )
}

fn partitions(assignment: &Bytes) -> BTreeSet<i32> {
    decode_assignment(assignment)
        .expect("a consumer protocol assignment")
        .into_iter()
        .flat_map(|(t, ps)| {
            assert_eq!(t, "orders");
            ps
        })
        .collect()
}

fn coordinator(policy: MigrationPolicy) -> GroupCoordinator {
    let mut config = CoordinatorConfig {
        initial_rebalance_delay_ms: DELAY,
        ..Default::default()
    };
    config.consumer.migration_policy = policy;
    let mut c = GroupCoordinator::new(config);
    c.set_topics(topics());
    c
}

/// A classic group of two members, a with partitions 0-2 and b with 3-5, stable; an
/// offset committed. Returns (a, b, generation).
fn classic_group(c: &mut GroupCoordinator) -> (String, String, i32) {
    let mut ids = Vec::new();
    for ticket in [1, 2] {
        let (first, _) = c.join(0, ticket, join_req("", &[]), "s");
        let first = first.unwrap();
        assert_eq!(first.error, error::MEMBER_ID_REQUIRED);
        let (parked, _) = c.join(0, ticket, join_req(&first.member_id, &[]), "s");
        assert!(parked.is_none());
        ids.push(first.member_id);
    }
    // The initial rebalance delay extends while members keep joining.
    let effects = (1..=5)
        .map(|i| c.tick(i * DELAY + 1))
        .find(|e| !e.joins.is_empty())
        .expect("the rebalance completes");
    assert_eq!(effects.joins.len(), 2);
    let generation = effects.joins[0].1.generation_id;
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let leader = effects
        .joins
        .iter()
        .find(|(_, j)| !j.members.is_empty())
        .unwrap()
        .1
        .member_id
        .clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let assign = |ps: Vec<i32>| Bytes::from(encode_assignment(&[("orders".to_string(), ps)]));
    let (reply, _) = c.sync(T0, 3, sync_req(&follower, generation, vec![]));
    assert!(reply.is_none());
    let (_, effects) = c.sync(
        T0,
        4,
        sync_req(
            &leader,
            generation,
            vec![
                (a.clone(), assign(vec![0, 1, 2])),
                (b.clone(), assign(vec![3, 4, 5])),
            ],
        ),
    );
    assert_eq!(effects.syncs.len(), 2);
    let (results, effects) = c.commit_offsets(
        T0 + 1,
        OffsetCommitRequest {
            group_id: GROUP.into(),
            generation_id: generation,
            member_id: a.clone(),
            group_instance_id: None,
            offsets: vec![PartitionOffsetCommit {
                topic: "orders".into(),
                partition: 0,
                offset: 42,
                leader_epoch: -1,
                metadata: None,
            }],
            offset_commit_version: Some(8),
        },
    );
    assert_eq!(results[0].error, error::NONE);
    c.apply_stored(T0 + 1, &effects.records);
    (a, b, generation)
}

fn consumer_join(member: &str) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: GROUP.into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: REBALANCE,
        subscribed_topic_names: Some(vec!["orders".into()]),
        owned: Some(Default::default()),
        client_id: "new-client".into(),
        client_host: "/127.0.0.1".into(),
        api_version: 1,
        ..Default::default()
    }
}

/// Every partition has at most one owner among the members, as described.
fn owners(c: &GroupCoordinator) -> BTreeMap<i32, String> {
    let d = c.describe_consumer_group(GROUP).expect("a consumer group");
    let mut owner = BTreeMap::new();
    for m in &d.members {
        for p in m.assignment.get(&orders()).into_iter().flatten() {
            assert!(
                owner.insert(*p, m.member_id.clone()).is_none(),
                "partition {p} owned twice"
            );
        }
    }
    owner
}

#[test]
fn a_running_classic_group_upgrades_and_downgrades_online() {
    let mut c = coordinator(MigrationPolicy::Bidirectional);
    let (a, b, generation) = classic_group(&mut c);
    let mut now = T0 + 10;

    // A consumer-protocol member joins: the group converts, the classic members keep
    // their partitions at their generation, the newcomer waits for released partitions.
    let (r, effects) = c.consumer_heartbeat(now, consumer_join("c"), &topics(), "s");
    let r = r.expect("the upgrade succeeds");
    assert!(c.is_consumer_group(GROUP));
    assert_eq!(r.member_epoch, generation + 1);
    assert!(
        r.assignment.unwrap().is_empty(),
        "all partitions are still owned"
    );
    assert!(effects
        .records
        .iter()
        .any(|r| r.value == RecordValue::Tombstone
            && matches!(
                &r.key,
                ottla_group::records::CoordinatorKey::GroupMetadata { .. }
            )));
    let d = c.describe_consumer_group(GROUP).unwrap();
    assert_eq!(d.members.len(), 3);
    assert!(d
        .members
        .iter()
        .filter(|m| m.member_id != "c")
        .all(|m| m.classic));
    assert_eq!(owners(&c).len(), 6);
    // Offsets stay.
    assert_eq!(
        c.fetch_offsets(GROUP, Some(&[("orders".into(), vec![0])]))[0].offset,
        42
    );

    // The classic members are told to rejoin; each gives up what the target takes away.
    let mut generations: BTreeMap<String, i32> =
        [(a.clone(), generation), (b.clone(), generation)].into();
    let mut owned: BTreeMap<String, BTreeSet<i32>> =
        [(a.clone(), (0..3).collect()), (b.clone(), (3..6).collect())].into();
    for round in 0..6 {
        for m in [&a, &b] {
            now += 100;
            let code = heartbeat(&mut c, now, m, generations[m]);
            if code == error::NONE {
                continue;
            }
            assert_eq!(code, error::REBALANCE_IN_PROGRESS, "round {round}");
            let mine: Vec<i32> = owned[m].iter().copied().collect();
            let (join, _) = c.join(now, 10, join_req(m, &mine), "s");
            let join = join.expect("answered at once, no leader to wait for");
            assert_eq!(join.error, error::NONE);
            assert_eq!(join.protocol_name.as_deref(), Some("cooperative-sticky"));
            assert!(join.members.is_empty() && join.leader.is_empty());
            generations.insert(m.clone(), join.generation_id);
            let (sync, _) = c.sync(now, 11, sync_req(m, join.generation_id, vec![]));
            let sync = sync.unwrap();
            assert_eq!(sync.error, error::NONE);
            // The client keeps what it is given (revoking the rest).
            owned.insert(m.clone(), partitions(&sync.assignment));
            let all: Vec<i32> = owned.values().flatten().copied().collect();
            let unique: BTreeSet<i32> = all.iter().copied().collect();
            assert_eq!(
                all.len(),
                unique.len(),
                "a partition held by two classic members"
            );
        }
        let (r, _) = c.consumer_heartbeat(
            now,
            ConsumerHeartbeat {
                member_epoch: c
                    .describe_consumer_group(GROUP)
                    .unwrap()
                    .members
                    .iter()
                    .find(|m| m.member_id == "c")
                    .unwrap()
                    .member_epoch,
                rebalance_timeout_ms: -1,
                subscribed_topic_names: None,
                owned: None,
                ..consumer_join("c")
            },
            &topics(),
            "s",
        );
        r.unwrap();
        owners(&c);
    }
    let d = c.describe_consumer_group(GROUP).unwrap();
    assert_eq!(d.state, "Stable", "{d:?}");
    let sizes: Vec<usize> = d
        .members
        .iter()
        .map(|m| m.assignment.get(&orders()).map_or(0, BTreeSet::len))
        .collect();
    assert_eq!(sizes, vec![2, 2, 2], "{d:?}");
    assert_eq!(owners(&c).len(), 6);

    // The consumer-protocol member leaves: only classic members are left, and the group
    // becomes classic again, rebalancing so that their own assignor takes over.
    let (r, _) = c.consumer_heartbeat(
        now,
        ConsumerHeartbeat {
            member_epoch: -1,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            owned: None,
            ..consumer_join("c")
        },
        &topics(),
        "s",
    );
    assert_eq!(r.unwrap().member_epoch, -1);
    assert!(!c.is_consumer_group(GROUP));
    let classic = c.describe(GROUP);
    assert_eq!(classic.state, "PreparingRebalance");
    assert_eq!(classic.protocol_type, "consumer");
    assert_eq!(classic.members.len(), 2);
    // The classic group is at the epoch the members are at: they are told to rejoin,
    // not fenced (which would lose their partitions).
    assert_eq!(generations[&a], generations[&b]);
    let code = heartbeat(&mut c, now + 1, &a, generations[&a]);
    assert_eq!(code, error::REBALANCE_IN_PROGRESS);
    assert_eq!(
        c.fetch_offsets(GROUP, Some(&[("orders".into(), vec![0])]))[0].offset,
        42
    );
    let listed = c.list(&[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group_type, GroupType::Classic);
}

#[test]
fn a_disabled_policy_refuses_the_upgrade_with_kafkas_message() {
    let mut c = coordinator(MigrationPolicy::Disabled);
    classic_group(&mut c);
    let (r, effects) = c.consumer_heartbeat(T0 + 10, consumer_join("c"), &topics(), "s");
    let e = r.unwrap_err();
    assert_eq!(e.code, error::GROUP_ID_NOT_FOUND);
    assert_eq!(
        e.message,
        "Cannot upgrade classic group g to consumer group because online upgrade is disabled."
    );
    assert!(effects.records.is_empty());
    assert!(!c.is_consumer_group(GROUP));
    assert_eq!(c.describe(GROUP).state, "Stable");
}

#[test]
fn an_upgraded_group_survives_a_reload() {
    let mut c = coordinator(MigrationPolicy::Bidirectional);
    let mut log: Vec<CoordinatorRecord> = Vec::new();
    // Only the records matter: collect them as the runtime would store them.
    let (a, _, generation) = classic_group(&mut c);
    let _ = a;
    let (r, effects) = c.consumer_heartbeat(T0 + 10, consumer_join("c"), &topics(), "s");
    r.unwrap();
    log.extend(effects.records);
    let before = c.describe_consumer_group(GROUP).unwrap();
    let mut loaded = coordinator(MigrationPolicy::Bidirectional);
    for r in &log {
        loaded.replay_at(T0 + 10, r);
    }
    let after = loaded.describe_consumer_group(GROUP).unwrap();
    assert_eq!(after.members, before.members);
    assert_eq!(
        (after.group_epoch, after.assignment_epoch),
        (before.group_epoch, before.assignment_epoch)
    );
    assert!(after
        .members
        .iter()
        .filter(|m| m.member_id != "c")
        .all(|m| m.classic && m.member_epoch == generation));
}

#[test]
fn a_new_classic_member_joins_a_consumer_group_with_the_id_it_was_given() {
    let mut c = coordinator(MigrationPolicy::Bidirectional);
    let (r, _) = c.consumer_heartbeat(T0, consumer_join("c"), &topics(), "s");
    assert_eq!(r.unwrap().member_epoch, 1);
    let (first, _) = c.join(T0, 1, join_req("", &[]), "s");
    let first = first.unwrap();
    assert_eq!(first.error, error::MEMBER_ID_REQUIRED);
    let (join, _) = c.join(T0, 2, join_req(&first.member_id, &[]), "s");
    let join = join.unwrap();
    assert_eq!(join.error, error::NONE, "{join:?}");
    assert_eq!(join.member_id, first.member_id);
    let d = c.describe_consumer_group(GROUP).unwrap();
    assert_eq!(d.members.len(), 2);
    assert!(d
        .members
        .iter()
        .any(|m| m.member_id == first.member_id && m.classic));
    // Its sync hands it what it may own now: nothing that c still holds.
    let (sync, _) = c.sync(
        T0,
        3,
        sync_req(&first.member_id, join.generation_id, vec![]),
    );
    let sync = sync.unwrap();
    assert_eq!(sync.error, error::NONE);
    let mine = partitions(&sync.assignment);
    let held: BTreeSet<i32> = owners(&c)
        .into_iter()
        .filter(|(_, m)| m == "c")
        .map(|(p, _)| p)
        .collect();
    assert!(mine.is_disjoint(&held), "{mine:?} vs {held:?}");
}
