//! The classic group state machine driven through whole rebalances with explicit time:
//! no network, no clock, so every transition is reproducible.

use bytes::Bytes;
use ottla_group::coordinator::{CoordinatorConfig, GroupCoordinator};
use ottla_group::types::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i64 = 3_000;

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(CoordinatorConfig {
        initial_rebalance_delay_ms: DELAY,
        ..Default::default()
    })
}

fn join_req(group: &str, member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
        reason: None,
        topic_access: Default::default(),
    }
}

fn heartbeat(
    c: &mut GroupCoordinator,
    now: i64,
    group: &str,
    member: &str,
    generation: i32,
) -> i16 {
    c.heartbeat(
        now,
        HeartbeatRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        },
    )
}

fn sync(
    c: &mut GroupCoordinator,
    now: i64,
    ticket: Ticket,
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> (Option<SyncResponse>, Effects) {
    c.sync(
        now,
        ticket,
        SyncRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments,
        },
    )
}

/// Join one member fully: returns (member id, generation).
fn single_member_group(c: &mut GroupCoordinator, group: &str) -> (String, i32) {
    let (first, _) = c.join(0, 1, join_req(group, "", &["range"]), "s");
    let id = first.unwrap().member_id;
    let (parked, effects) = c.join(0, 1, join_req(group, &id, &["range"]), "s");
    assert!(parked.is_none());
    assert!(
        effects.joins.is_empty(),
        "the initial rebalance delay holds the first join"
    );
    let effects = c.tick(DELAY);
    assert_eq!(effects.joins.len(), 1);
    let (ticket, join) = &effects.joins[0];
    assert_eq!(*ticket, 1);
    assert_eq!(join.error, error::NONE);
    assert_eq!(join.leader, id);
    assert_eq!(join.members.len(), 1, "the leader sees every member");
    assert_eq!(join.protocol_name.as_deref(), Some("range"));
    let generation = join.generation_id;
    let (reply, effects) = sync(
        c,
        DELAY,
        2,
        group,
        &id,
        generation,
        vec![(id.clone(), Bytes::from_static(b"A"))],
    );
    assert!(reply.is_none());
    assert_eq!(
        effects.syncs,
        vec![(
            2,
            SyncResponse {
                error: 0,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"A")
            }
        )]
    );
    assert_eq!(
        effects.records.len(),
        1,
        "the group metadata is stored after the leader's sync"
    );
    (id, generation)
}

/// `member` leaves `group` on its own (no static instance id).
fn leave_alone(
    c: &mut GroupCoordinator,
    now: i64,
    group: &str,
    member: &str,
) -> (Vec<i16>, Effects) {
    c.leave(
        now,
        group,
        &[LeaveMember {
            member_id: member.into(),
            group_instance_id: None,
        }],
    )
}

/// A commit of `offset` for partition 0 of topic "t", without leader epoch or metadata.
fn commit_one(group: &str, generation: i32, member: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest {
        offset_commit_version: Some(8),
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        offsets: vec![PartitionOffsetCommit {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        }],
    }
}

#[test]
fn one_member_joins_syncs_and_heartbeats() {
    let mut c = coordinator();
    let (id, generation) = single_member_group(&mut c, "g");
    assert_eq!(generation, 1);
    assert_eq!(
        heartbeat(&mut c, DELAY + 100, "g", &id, generation),
        error::NONE
    );
    assert_eq!(c.describe("g").state, "Stable");
    assert_eq!(
        c.describe("g").members[0].assignment,
        Bytes::from_static(b"A")
    );
}

#[test]
fn followers_sync_waits_for_the_leader_and_gets_its_own_assignment() {
    let mut c = coordinator();
    let (leader, g1) = single_member_group(&mut c, "g");
    let now = 5_000;
    // A second member joins: the group rebalances, the leader learns via heartbeat.
    let (r, _) = c.join(now, 10, join_req("g", "", &["range"]), "s");
    let follower = r.unwrap().member_id;
    let (r, e) = c.join(now, 10, join_req("g", &follower, &["range"]), "s");
    assert!(r.is_none() && e.joins.is_empty());
    assert_eq!(
        heartbeat(&mut c, now, "g", &leader, g1),
        error::REBALANCE_IN_PROGRESS
    );
    let (r, e) = c.join(now, 11, join_req("g", &leader, &["range"]), "s");
    assert!(r.is_none());
    assert_eq!(
        e.joins.len(),
        2,
        "both parked joins are answered once all members rejoined"
    );
    let g2 = e.joins[0].1.generation_id;
    assert_eq!(g2, g1 + 1);
    for (ticket, resp) in &e.joins {
        assert_eq!(resp.leader, leader);
        assert_eq!(
            resp.members.len(),
            if *ticket == 11 { 2 } else { 0 },
            "only the leader gets members"
        );
    }
    // The follower's sync parks until the leader's arrives.
    let (r, e) = sync(&mut c, now, 20, "g", &follower, g2, vec![]);
    assert!(r.is_none() && e.syncs.is_empty());
    let (r, e) = sync(
        &mut c,
        now,
        21,
        "g",
        &leader,
        g2,
        vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
        ],
    );
    assert!(r.is_none());
    let mut got: Vec<(Ticket, Bytes)> = e
        .syncs
        .into_iter()
        .map(|(t, s)| (t, s.assignment))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (20, Bytes::from_static(b"F")),
            (21, Bytes::from_static(b"L"))
        ]
    );
}

/// Group "g" with a leader and a second member, both synced in generation `g2` at
/// `now`: (leader, other, g2).
fn two_member_group(c: &mut GroupCoordinator, now: i64) -> (String, String, i32) {
    let (leader, _) = single_member_group(c, "g");
    let (r, _) = c.join(now, 10, join_req("g", "", &["range"]), "s");
    let other = r.unwrap().member_id;
    c.join(now, 10, join_req("g", &other, &["range"]), "s");
    let (_, e) = c.join(now, 11, join_req("g", &leader, &["range"]), "s");
    let g2 = e.joins[0].1.generation_id;
    let mut all = vec![
        (leader.clone(), Bytes::from_static(b"L")),
        (other.clone(), Bytes::from_static(b"O")),
    ];
    all.sort();
    sync(c, now, 12, "g", &leader, g2, all);
    sync(c, now, 13, "g", &other, g2, vec![]);
    (leader, other, g2)
}

/// Heartbeat `member` of group "g" every `step` ms from `from`, ticking after each, until
/// a session timeout has passed: the time reached and each heartbeat's answer.
fn heartbeat_through_a_session(
    c: &mut GroupCoordinator,
    from: i64,
    step: i64,
    member: &str,
    generation: i32,
) -> (i64, Vec<i16>) {
    let mut t = from;
    let mut answers = Vec::new();
    while t < from + i64::from(SESSION) + step {
        t += step;
        answers.push(heartbeat(c, t, "g", member, generation));
        c.tick(t);
    }
    (t, answers)
}

#[test]
fn a_silent_member_expires_and_the_group_rebalances_without_it() {
    let mut c = coordinator();
    let now = 5_000;
    let (leader, other, g2) = two_member_group(&mut c, now);
    assert_eq!(c.describe("g").state, "Stable");
    // `other` stops heartbeating; the leader keeps going.
    let (t, answers) = heartbeat_through_a_session(&mut c, now, 1_000, &leader, g2);
    assert!(
        answers.iter().all(|a| *a != error::UNKNOWN_MEMBER_ID),
        "{answers:?}"
    );
    assert_eq!(
        c.describe("g").members.len(),
        1,
        "the silent member was removed"
    );
    assert_eq!(
        heartbeat(&mut c, t, "g", &other, g2),
        error::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut c, t, "g", &leader, g2),
        error::REBALANCE_IN_PROGRESS
    );
    let (_, e) = c.join(t, 30, join_req("g", &leader, &["range"]), "s");
    assert_eq!(e.joins.len(), 1);
    assert_eq!(e.joins[0].1.generation_id, g2 + 1);
    assert_eq!(e.joins[0].1.members.len(), 1);
}

/// A member parked in JoinGroup sends no heartbeats and must not expire (Kafka's
/// `hasSatisfiedHeartbeat`); nor may its passed session deadline count as due work, or
/// the runtime's timer would wake every millisecond until the rebalance ends.
#[test]
fn a_member_parked_in_a_join_is_not_a_deadline() {
    let mut c = coordinator();
    let now = 5_000;
    let (leader, other, g2) = two_member_group(&mut c, now);
    // The leader rejoins and waits for `other`, which keeps heartbeating but is slow
    // to rejoin.
    let (parked, _) = c.join(now, 20, join_req("g", &leader, &["range"]), "s");
    assert!(parked.is_none(), "the leader waits for the other member");
    let (t, answers) = heartbeat_through_a_session(&mut c, now, 500, &other, g2);
    assert!(
        answers.iter().all(|a| *a == error::REBALANCE_IN_PROGRESS),
        "{answers:?}"
    );
    assert_eq!(c.describe("g").state, "PreparingRebalance");
    assert_eq!(c.describe("g").members.len(), 2, "nobody expired");
    let next = c.next_deadline().expect("the rebalance timeout is pending");
    assert!(
        next > t,
        "next deadline {next} is already past at {t}: the timer would spin"
    );
}

#[test]
fn kafka_error_codes_for_bad_requests() {
    let mut c = coordinator();
    let (id, generation) = single_member_group(&mut c, "g");
    assert_eq!(
        heartbeat(&mut c, DELAY, "g", "nobody", generation),
        error::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut c, DELAY, "nogroup", &id, generation),
        error::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut c, DELAY, "g", &id, generation + 5),
        error::ILLEGAL_GENERATION
    );
    let (r, _) = sync(&mut c, DELAY, 9, "g", &id, generation - 1, vec![]);
    assert_eq!(r.unwrap().error, error::ILLEGAL_GENERATION);
    let mut other_type = join_req("g", "", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        c.join(DELAY, 9, other_type, "s").0.unwrap().error,
        error::INCONSISTENT_GROUP_PROTOCOL
    );
    let no_common = join_req("g", "", &["roundrobin"]);
    assert_eq!(
        c.join(DELAY, 9, no_common, "s").0.unwrap().error,
        error::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut short = join_req("g2", "", &["range"]);
    short.session_timeout_ms = 10;
    assert_eq!(
        c.join(DELAY, 9, short, "s").0.unwrap().error,
        error::INVALID_SESSION_TIMEOUT
    );
    assert_eq!(
        c.join(DELAY, 9, join_req("", "", &["range"]), "s")
            .0
            .unwrap()
            .error,
        error::INVALID_GROUP_ID
    );
    // A simple (generation -1) commit to a group that has members is refused.
    let (results, effects) = c.commit_offsets(DELAY, commit_one("g", -1, "", 5));
    assert_eq!(results[0].error, error::UNKNOWN_MEMBER_ID);
    assert!(effects.records.is_empty());
    assert_eq!(c.delete_group("g").0, error::NON_EMPTY_GROUP);
    assert_eq!(c.delete_group("nope").0, error::GROUP_ID_NOT_FOUND);
}

#[test]
fn static_member_restart_keeps_assignment_and_fences_the_old_id() {
    let mut c = coordinator();
    let mut req = join_req("s", "", &["range"]);
    req.group_instance_id = Some("instance-1".into());
    let (r, _) = c.join(0, 1, req.clone(), "a");
    assert!(r.is_none(), "static members skip MEMBER_ID_REQUIRED");
    let e = c.tick(DELAY);
    let old = e.joins[0].1.member_id.clone();
    let generation = e.joins[0].1.generation_id;
    sync(
        &mut c,
        DELAY,
        2,
        "s",
        &old,
        generation,
        vec![(old.clone(), Bytes::from_static(b"X"))],
    );
    // The same instance restarts and joins without a member id.
    let (r, e) = c.join(DELAY + 10, 3, req, "b");
    let r = r.expect("a stable group answers a returning static member at once");
    assert_eq!(r.error, error::NONE);
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation_id, generation, "no rebalance");
    assert!(
        r.skip_assignment,
        "a returning leader keeps the current assignment"
    );
    assert_eq!(e.records.len(), 1, "the new member id is stored");
    let new = r.member_id.clone();
    assert_eq!(
        c.heartbeat(
            DELAY + 20,
            HeartbeatRequest {
                group_id: "s".into(),
                generation_id: generation,
                member_id: old,
                group_instance_id: Some("instance-1".into())
            }
        ),
        error::FENCED_INSTANCE_ID
    );
    let (r, _) = c.sync(
        DELAY + 20,
        4,
        SyncRequest {
            group_id: "s".into(),
            generation_id: generation,
            member_id: new,
            group_instance_id: Some("instance-1".into()),
            protocol_type: None,
            protocol_name: None,
            assignments: vec![],
        },
    );
    assert_eq!(
        r.unwrap().assignment,
        Bytes::from_static(b"X"),
        "the assignment survives the restart"
    );
}

#[test]
fn offsets_commit_fetch_replay_delete_and_expire() {
    let mut c = coordinator();
    let commit = |generation: i32, offset: i64| OffsetCommitRequest {
        offset_commit_version: Some(8),
        group_id: "simple".into(),
        generation_id: generation,
        member_id: String::new(),
        group_instance_id: None,
        offsets: vec![PartitionOffsetCommit {
            topic: "t".into(),
            partition: 2,
            offset,
            leader_epoch: 4,
            metadata: Some("m".into()),
        }],
    };
    let (results, effects) = c.commit_offsets(1_000, commit(-1, 42));
    assert_eq!(results[0].error, error::NONE);
    assert_eq!(effects.records.len(), 1);
    assert!(
        c.fetch_offsets("simple", None).is_empty(),
        "not visible before it is stored"
    );
    for r in &effects.records {
        c.replay_at(1_000, r);
    }
    let fetched = c.fetch_offsets("simple", Some(&[("t".into(), vec![2, 3])]));
    assert_eq!(
        (
            fetched[0].offset,
            fetched[0].leader_epoch,
            fetched[0].metadata.as_deref()
        ),
        (42, 4, Some("m"))
    );
    assert_eq!(fetched[1].offset, -1, "never committed");
    // A fresh coordinator replaying the records sees the same state.
    let mut loaded = coordinator();
    for r in &effects.records {
        loaded.replay_at(2_000, r);
    }
    assert_eq!(
        loaded.fetch_offsets("simple", None),
        c.fetch_offsets("simple", None)
    );
    // Too-large metadata is refused per partition.
    let mut big = commit(-1, 1);
    big.offsets[0].metadata = Some("x".repeat(5000));
    assert_eq!(
        c.commit_offsets(1_000, big).0[0].error,
        error::OFFSET_METADATA_TOO_LARGE
    );
    // Expiry: an empty group's offsets go after offsets.retention, with tombstones.
    let retention = CoordinatorConfig::default().offsets_retention_ms;
    assert!(c.tick(1_000 + retention - 1).records.is_empty());
    let e = c.tick(1_000 + retention);
    assert_eq!(e.records.len(), 2, "offset tombstone and group tombstone");
    assert!(e.records.iter().all(|r| r.value == RecordValue::Tombstone));
    assert_eq!(
        c.fetch_offsets("simple", None).len(),
        1,
        "expired offsets stay until their tombstones are stored"
    );
    c.apply_stored(1_000 + retention, &e.records);
    assert_eq!(c.fetch_offsets("simple", None), vec![]);
    assert!(c.list(&[]).is_empty(), "and the group with them");
    // Delete of an empty group writes tombstones.
    let (_, stored) = c.commit_offsets(5, commit(-1, 7));
    c.apply_stored(5, &stored.records);
    let (code, e) = c.delete_group("simple");
    assert_eq!(code, error::NONE);
    assert_eq!(e.records.len(), 2);
    assert_eq!(
        c.list(&[]).len(),
        1,
        "deleted once the tombstones are stored"
    );
    c.apply_stored(6, &e.records);
    assert!(c.list(&[]).is_empty());
    assert_eq!(c.fetch_offsets("simple", None), vec![]);
}

#[test]
fn deleted_offsets_go_only_once_their_tombstones_are_stored() {
    let mut c = coordinator();
    let commit = OffsetCommitRequest {
        offset_commit_version: Some(8),
        group_id: "g".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: [0, 1]
            .map(|partition| PartitionOffsetCommit {
                topic: "t".into(),
                partition,
                offset: 10,
                leader_epoch: -1,
                metadata: None,
            })
            .to_vec(),
    };
    let (_, stored) = c.commit_offsets(1, commit);
    c.apply_stored(1, &stored.records);
    let (code, results, e) = c.delete_offsets("g", &[("t".into(), 0), ("t".into(), 7)]);
    assert_eq!(code, error::NONE);
    assert!(results.iter().all(|r| r.error == error::NONE));
    assert_eq!(
        e.records.len(),
        1,
        "only a committed partition gets a tombstone"
    );
    // The store failed: nothing changed.
    assert_eq!(c.fetch_offsets("g", None).len(), 2);
    c.apply_stored(2, &e.records);
    let left = c.fetch_offsets("g", None);
    assert_eq!((left.len(), left[0].partition), (1, 1));
}

#[test]
fn ten_thousand_joiners_stay_pending_and_other_groups_are_unaffected() {
    let mut c = coordinator();
    let (id, generation) = single_member_group(&mut c, "other");
    let mut last_id = String::new();
    for i in 0..10_000u64 {
        let (r, _) = c.join(DELAY, 100 + i, join_req("crowd", "", &["range"]), "s");
        let r = r.unwrap();
        assert_eq!(r.error, error::MEMBER_ID_REQUIRED);
        last_id = r.member_id;
    }
    assert_eq!(
        c.describe("crowd").members.len(),
        0,
        "ids handed out are pending, not members"
    );
    assert_eq!(
        heartbeat(&mut c, DELAY + 1, "other", &id, generation),
        error::NONE
    );
    assert_eq!(c.group_count(), 2);
    // Pending ids that never come back expire after the session timeout.
    let t = DELAY + i64::from(SESSION) + 1;
    c.tick(t);
    assert_eq!(c.describe("crowd").members.len(), 0);
    assert_eq!(c.list(&["Stable".into()]).len(), 1);
    let (r, _) = c.join(t, 20_000, join_req("crowd", &last_id, &["range"]), "s");
    assert_eq!(
        r.expect("answered at once").error,
        error::UNKNOWN_MEMBER_ID,
        "the expired pending id is gone"
    );
}

#[test]
fn new_members_parked_in_a_long_initial_delay_are_not_expired_by_their_session() {
    let mut c = coordinator();
    let join = |c: &mut GroupCoordinator, now: i64, ticket: Ticket| {
        let id = c
            .join(now, ticket, join_req("slow", "", &["range"]), "s")
            .0
            .unwrap()
            .member_id;
        assert!(c
            .join(now, ticket, join_req("slow", &id, &["range"]), "s")
            .0
            .is_none());
        id
    };
    let a = join(&mut c, 0, 1);
    // Members keep arriving, so the initial delay keeps extending past the session timeout.
    let mut joined = vec![a];
    let mut t = 0;
    let mut answered = Vec::new();
    for i in 0..5 {
        t += DELAY - 1;
        joined.push(join(&mut c, t, 10 + i));
        answered.extend(c.tick(t).joins);
    }
    assert!(
        t > i64::from(SESSION),
        "the rebalance outlived a session timeout"
    );
    while answered.is_empty() {
        assert!(t < 600_000, "the rebalance never completed");
        t += 500;
        answered.extend(c.tick(t).joins);
    }
    assert_eq!(
        answered.len(),
        joined.len(),
        "nobody was expired while parked in the join"
    );
    assert!(answered
        .iter()
        .all(|(_, r)| r.error == error::NONE && r.generation_id == 1));
}

#[test]
fn an_emptied_group_stays_a_consumer_group_until_cleanup() {
    let mut c = coordinator();
    let (id, _) = single_member_group(&mut c, "e");
    let (errors, effects) = leave_alone(&mut c, DELAY + 1, "e", &id);
    assert_eq!(errors, vec![error::NONE]);
    assert_eq!(effects.records.len(), 1, "the empty generation is stored");
    let d = c.describe("e");
    assert_eq!((d.state, d.protocol_type.as_str()), ("Empty", "consumer"));
    assert_eq!(c.list(&[])[0].protocol_type, "consumer");
    // Kafka's periodic cleanup removes it later, not on the next tick.
    c.tick(DELAY + 2);
    assert_eq!(c.describe("e").state, "Empty");
    let interval = CoordinatorConfig::default().offsets_retention_check_interval_ms;
    let e = c.tick(DELAY + 1 + interval);
    assert_eq!(e.records.len(), 1, "group tombstone");
    assert_eq!(
        c.describe("e").state,
        "Empty",
        "until the tombstone is stored"
    );
    c.apply_stored(DELAY + 1 + interval, &e.records);
    assert_eq!(c.describe("e").state, "Dead");
}

#[test]
fn commits_to_a_deleted_group_follow_kafkas_rules() {
    let mut c = coordinator();
    let (id, generation) = single_member_group(&mut c, "d");
    leave_alone(&mut c, DELAY + 1, "d", &id);
    let (code, deleted) = c.delete_group("d");
    assert_eq!(code, error::NONE);
    c.apply_stored(DELAY + 2, &deleted.records);
    // A member of the deleted group commits with its old generation: refused.
    let (r, e) = c.commit_offsets(DELAY + 3, commit_one("d", generation, &id, 1));
    assert_eq!(r[0].error, error::ILLEGAL_GENERATION);
    assert!(e.records.is_empty());
    assert_eq!(
        heartbeat(&mut c, DELAY + 3, "d", &id, generation),
        error::UNKNOWN_MEMBER_ID
    );
    // A simple commit (generation -1) starts the group afresh, as in Kafka.
    let (r, e) = c.commit_offsets(DELAY + 4, commit_one("d", -1, "anything", 1));
    assert_eq!(r[0].error, error::NONE);
    assert_eq!(e.records.len(), 1);
}

/// Kafka: a commit with a negative generation to an *empty* (not deleted) group is a
/// simple commit, whatever member id it carries.
#[test]
fn a_simple_commit_to_an_empty_group_is_accepted_from_any_member_id() {
    let mut c = coordinator();
    let (id, _) = single_member_group(&mut c, "e");
    leave_alone(&mut c, DELAY + 1, "e", &id);
    assert_eq!(c.describe("e").state, "Empty");
    let (r, e) = c.commit_offsets(DELAY + 2, commit_one("e", -1, "anything", 1));
    assert_eq!(r[0].error, error::NONE);
    assert_eq!(e.records.len(), 1);
}
