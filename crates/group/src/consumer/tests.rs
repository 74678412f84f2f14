//! The consumer group state machine driven through joins, leaves, revocations and
//! expiries with explicit time. Simulated clients do what Kafka's consumers do with a
//! heartbeat's answer (take the assignment, give up what is no longer in it, report
//! what they own); after every heartbeat no partition may be owned by two clients or
//! recorded twice by the coordinator.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;
use crate::consumer::records::{decode_key, decode_value, encode_key, encode_value};

const REBALANCE_TIMEOUT: i32 = 30_000;

fn topic_id(n: u64) -> Uuid {
    Uuid::from_u64_pair(7, n)
}

fn image(topics: &[(&str, u64, u32)]) -> TopicsImage {
    TopicsImage::new(
        topics
            .iter()
            .map(|(name, id, partitions)| (name.to_string(), topic_id(*id), *partitions)),
    )
}

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        heartbeat_interval_ms: 5000,
        session_timeout_ms: 45_000,
        ..Default::default()
    }
}

/// A client as Kafka's consumers behave: it owns what the last assignment gave it.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: TopicPartitions,
    topics: Vec<String>,
    regex: Option<String>,
    instance_id: Option<String>,
    assignor: Option<String>,
}

impl Client {
    fn new(id: &str, topics: &[&str]) -> Client {
        Client {
            member_id: id.to_string(),
            epoch: 0,
            owned: TopicPartitions::new(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            regex: None,
            instance_id: None,
            assignor: None,
        }
    }

    fn request(&self) -> ConsumerHeartbeat {
        let joining = self.epoch == 0;
        ConsumerHeartbeat {
            group_id: "g".into(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance_id.clone(),
            rebalance_timeout_ms: if joining { REBALANCE_TIMEOUT } else { -1 },
            subscribed_topic_names: (joining && self.regex.is_none()).then(|| self.topics.clone()),
            subscribed_topic_regex: if joining { self.regex.clone() } else { None },
            server_assignor: if joining { self.assignor.clone() } else { None },
            owned: Some(if joining {
                TopicPartitions::new()
            } else {
                self.owned.clone()
            }),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            api_version: 1,
            ..Default::default()
        }
    }
}

struct Harness {
    group: ConsumerGroup,
    config: ConsumerGroupConfig,
    topics: TopicsImage,
    version: i64,
    now: i64,
    clients: BTreeMap<String, Client>,
    log: Vec<CoordinatorRecord>,
}

impl Harness {
    fn new(topics: TopicsImage) -> Harness {
        Harness {
            group: ConsumerGroup::new("g"),
            config: config(),
            topics,
            version: 1,
            now: 1_000,
            clients: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn send(&mut self, req: &ConsumerHeartbeat) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let mut out = Vec::new();
        let r = self.group.heartbeat(
            self.now,
            &self.config,
            &self.topics.clone().at_version(self.version),
            req,
            "generated",
            &mut out,
        );
        if r.is_err() {
            assert!(out.is_empty(), "an error answer wrote {out:?}");
        }
        self.log.extend(out);
        self.group.check_invariants();
        r
    }

    /// One heartbeat of `id`, applied to the client as Kafka's consumer applies it.
    fn beat(&mut self, id: &str) -> ConsumerHeartbeatResponse {
        let client = self.clients[id].clone();
        let r = self
            .send(&client.request())
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let c = self.clients.get_mut(id).unwrap();
        c.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            c.owned = a.clone();
        }
        self.check_clients();
        r
    }

    fn join(&mut self, client: Client) -> ConsumerHeartbeatResponse {
        let id = client.member_id.clone();
        self.clients.insert(id.clone(), client);
        self.beat(&id)
    }

    fn check_clients(&self) {
        let mut seen: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for c in self.clients.values() {
            for tp in member::iter(&c.owned) {
                if let Some(other) = seen.insert(tp, &c.member_id) {
                    panic!("{tp:?} owned by {other} and {}", c.member_id);
                }
            }
        }
    }

    /// Heartbeats round-robin until nothing changes for a full round.
    fn settle(&mut self) {
        for _ in 0..20 {
            let before: Vec<(i32, TopicPartitions)> = self
                .clients
                .values()
                .map(|c| (c.epoch, c.owned.clone()))
                .collect();
            let ids: Vec<String> = self.clients.keys().cloned().collect();
            for id in ids {
                self.now += 100;
                self.beat(&id);
            }
            let after: Vec<(i32, TopicPartitions)> = self
                .clients
                .values()
                .map(|c| (c.epoch, c.owned.clone()))
                .collect();
            if before == after && self.group.state() == ConsumerGroupState::Stable {
                return;
            }
        }
        panic!(
            "the group did not settle: {:?}",
            self.group.describe(&self.config)
        );
    }

    fn counts(&self) -> Vec<usize> {
        self.clients
            .values()
            .map(|c| member::count(&c.owned))
            .collect()
    }

    fn total_owned(&self) -> BTreeSet<(Uuid, i32)> {
        self.clients
            .values()
            .flat_map(|c| member::iter(&c.owned).collect::<Vec<_>>())
            .collect()
    }
}

#[test]
fn members_join_one_by_one_and_converge_without_double_ownership() {
    let mut h = Harness::new(image(&[("orders", 1, 12)]));
    let r = h.join(Client::new("a", &["orders"]));
    assert_eq!((r.member_epoch, r.heartbeat_interval_ms), (1, 5000));
    assert_eq!(member::count(r.assignment.as_ref().unwrap()), 12);

    h.join(Client::new("b", &["orders"]));
    h.settle();
    assert_eq!(h.counts(), vec![6, 6]);
    h.join(Client::new("c", &["orders"]));
    h.settle();
    assert_eq!(h.counts(), vec![4, 4, 4]);
    assert_eq!(h.total_owned().len(), 12);
    let d = h.group.describe(&h.config);
    assert_eq!(
        (d.state, d.group_epoch, d.assignment_epoch),
        ("Stable", 3, 3)
    );
    assert_eq!(d.assignor_name, "uniform");
    assert!(d
        .members
        .iter()
        .all(|m| m.member_epoch == 3 && m.assignment == m.target_assignment));
}

#[test]
fn a_new_member_waits_for_partitions_until_their_owner_revokes_them() {
    let mut h = Harness::new(image(&[("orders", 1, 4)]));
    h.join(Client::new("a", &["orders"]));
    // b joins: its target partitions are still a's, so it gets nothing yet.
    let r = h.join(Client::new("b", &["orders"]));
    assert_eq!(r.member_epoch, 2);
    assert!(r.assignment.unwrap().is_empty());
    assert_eq!(h.group.state(), ConsumerGroupState::Reconciling);
    // a is asked to revoke two partitions and keeps epoch 1 until it has.
    let r = h.beat("a");
    assert_eq!(r.member_epoch, 1);
    assert_eq!(member::count(r.assignment.as_ref().unwrap()), 2);
    // b still waits: a's heartbeat that reported them revoked has not come yet... it has
    // now (the client applied the assignment), so a moves to epoch 2 on its next beat.
    let r = h.beat("a");
    assert_eq!(r.member_epoch, 2);
    let r = h.beat("b");
    assert_eq!(member::count(r.assignment.as_ref().unwrap()), 2);
    assert_eq!(h.group.state(), ConsumerGroupState::Stable);
}

#[test]
fn leaving_members_hand_their_partitions_over() {
    let mut h = Harness::new(image(&[("orders", 1, 12)]));
    for id in ["a", "b", "c"] {
        h.join(Client::new(id, &["orders"]));
        h.settle();
    }
    let mut leave = h.clients["b"].request();
    leave.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
    let r = h.send(&leave).unwrap();
    assert_eq!((r.member_id.as_str(), r.member_epoch), ("b", -1));
    h.clients.remove("b");
    h.settle();
    assert_eq!(h.counts(), vec![6, 6]);
    assert_eq!(h.total_owned().len(), 12);
    // A heartbeat from the member that left is refused.
    let mut stale = h.clients["a"].request();
    stale.member_id = "b".into();
    assert_eq!(h.send(&stale).unwrap_err().code, error::UNKNOWN_MEMBER_ID);
}

#[test]
fn uniform_moves_as_few_partitions_as_possible() {
    let mut h = Harness::new(image(&[("orders", 1, 12), ("payments", 2, 6)]));
    for id in ["a", "b", "c"] {
        h.join(Client::new(id, &["orders", "payments"]));
        h.settle();
    }
    let before: BTreeMap<String, TopicPartitions> = h
        .clients
        .iter()
        .map(|(k, c)| (k.clone(), c.owned.clone()))
        .collect();
    h.join(Client::new("d", &["orders", "payments"]));
    h.settle();
    // Every partition an old member kept is one it had; only what d took moved.
    let mut moved = 0;
    for (id, old) in &before {
        let now = &h.clients[id].owned;
        assert!(
            member::iter(now).all(|tp| member::iter(old).any(|o| o == tp)),
            "{id} got a partition it did not have"
        );
        moved += member::count(old) - member::count(now);
    }
    assert_eq!(moved, member::count(&h.clients["d"].owned));
    let counts = h.counts();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
}

#[test]
fn stale_and_future_epochs_are_fenced_as_kafka_does() {
    let mut h = Harness::new(image(&[("orders", 1, 4)]));
    h.join(Client::new("a", &["orders"]));
    h.join(Client::new("b", &["orders"]));
    h.settle();
    let epoch = h.clients["a"].epoch;
    let mut req = h.clients["a"].request();
    req.member_epoch = epoch + 1;
    let e = h.send(&req).unwrap_err();
    assert_eq!(e.code, codes::FENCED_MEMBER_EPOCH);
    assert!(e.message.contains("greater member epoch"), "{}", e.message);
    req.member_epoch = epoch - 2;
    assert_eq!(h.send(&req).unwrap_err().code, codes::FENCED_MEMBER_EPOCH);
    // The previous epoch with a subset of the assignment is the lost-response case.
    let previous = h.group.members["a"].previous_member_epoch;
    req.member_epoch = previous;
    req.owned = Some(TopicPartitions::new());
    let r = h.send(&req).unwrap();
    assert_eq!(r.member_epoch, epoch);
    // Unknown member, unknown group epoch for a new member id.
    let mut unknown = h.clients["a"].request();
    unknown.member_id = "nobody".into();
    assert_eq!(h.send(&unknown).unwrap_err().code, error::UNKNOWN_MEMBER_ID);
}

#[test]
fn invalid_requests_get_kafkas_errors() {
    let cfg = config();
    let ok = Client::new("a", &["t"]).request();
    assert!(ConsumerGroup::validate(&ok, &cfg).is_ok());
    let check = |f: &dyn Fn(&mut ConsumerHeartbeat), code: i16, msg: &str| {
        let mut r = ok.clone();
        f(&mut r);
        let e = ConsumerGroup::validate(&r, &cfg).unwrap_err();
        assert_eq!(e.code, code, "{msg}: {e:?}");
        assert!(e.message.contains(msg), "{e:?}");
    };
    check(
        &|r| r.member_id.clear(),
        codes::INVALID_REQUEST,
        "MemberId can't be empty.",
    );
    check(
        &|r| r.group_id.clear(),
        codes::INVALID_REQUEST,
        "GroupId can't be empty.",
    );
    check(
        &|r| r.rebalance_timeout_ms = -1,
        codes::INVALID_REQUEST,
        "RebalanceTimeoutMs must be provided",
    );
    check(
        &|r| r.owned = Some(TopicPartitions::from([(topic_id(1), BTreeSet::from([0]))])),
        codes::INVALID_REQUEST,
        "TopicPartitions must be empty when (re-)joining.",
    );
    check(
        &|r| r.subscribed_topic_names = None,
        codes::INVALID_REQUEST,
        "SubscribedTopicNames or SubscribedTopicRegex",
    );
    check(
        &|r| r.member_epoch = -3,
        codes::INVALID_REQUEST,
        "MemberEpoch is invalid.",
    );
    check(
        &|r| {
            r.member_epoch = -2;
            r.instance_id = None
        },
        codes::INVALID_REQUEST,
        "InstanceId can't be null.",
    );
    check(
        &|r| r.server_assignor = Some("sticky".into()),
        codes::UNSUPPORTED_ASSIGNOR,
        "ServerAssignor sticky is not supported. Supported assignors: uniform, range.",
    );
    check(
        &|r| r.subscribed_topic_regex = Some("(".into()),
        codes::INVALID_REGULAR_EXPRESSION,
        "is not a valid regular expression",
    );
    check(
        &|r| r.subscribed_topic_regex = Some("((a{100}){100}){100}".into()),
        codes::INVALID_REGULAR_EXPRESSION,
        "SubscribedTopicRegex",
    );
    // Version 0 lets the coordinator name a joining member.
    let mut v0 = ok.clone();
    v0.api_version = 0;
    v0.member_id.clear();
    assert!(ConsumerGroup::validate(&v0, &cfg).is_ok());
}

#[test]
fn expired_sessions_and_late_revocations_remove_members() {
    let mut h = Harness::new(image(&[("orders", 1, 4)]));
    h.join(Client::new("a", &["orders"]));
    h.join(Client::new("b", &["orders"]));
    h.settle();
    // b's process dies: after the session timeout it is fenced.
    h.clients.remove("b");
    let session = i64::from(h.config.session_timeout_ms);
    for _ in 0..10 {
        h.now += session / 8;
        h.beat("a");
        let mut out = Vec::new();
        h.group.tick(h.now, &h.config, &mut out);
        h.group.check_invariants();
    }
    assert!(!h.group.members.contains_key("b"));
    h.settle();
    assert_eq!(h.counts(), vec![4]);

    // c joins; a is asked to revoke but never heartbeats again: fenced after the
    // rebalance timeout, and c gets everything.
    h.join(Client::new("c", &["orders"]));
    h.beat("a");
    assert_eq!(h.group.members["a"].state, MemberState::UnrevokedPartitions);
    let deadline = h.group.next_deadline().unwrap();
    assert!(deadline <= h.now + i64::from(REBALANCE_TIMEOUT) + 1);
    h.clients.remove("a");
    h.now += i64::from(REBALANCE_TIMEOUT) + 1;
    let mut out = Vec::new();
    h.group.tick(h.now, &h.config, &mut out);
    assert!(!h.group.members.contains_key("a"));
    assert!(out.iter().any(|r| matches!(&r.key, CoordinatorKey::ConsumerGroup(ConsumerGroupKey::MemberMetadata { member, .. }) if member == "a") && r.value == RecordValue::Tombstone));
    h.settle();
    assert_eq!(h.counts(), vec![4]);
}

#[test]
fn a_static_member_that_restarts_keeps_its_partitions() {
    let mut h = Harness::new(image(&[("orders", 1, 6)]));
    for (id, instance) in [("a", "i-a"), ("b", "i-b")] {
        let mut c = Client::new(id, &["orders"]);
        c.instance_id = Some(instance.into());
        h.join(c);
        h.settle();
    }
    let had = h.clients["a"].owned.clone();
    assert_eq!(member::count(&had), 3);
    let epoch_before = h.group.group_epoch();
    // a leaves temporarily (epoch -2) ...
    let mut leave = h.clients["a"].request();
    leave.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
    assert_eq!(h.send(&leave).unwrap().member_epoch, -2);
    h.clients.remove("a");
    // ... another process cannot take its instance id while it is held ...
    let mut thief = Client::new("x", &["orders"]);
    thief.instance_id = Some("i-b".into());
    assert_eq!(
        h.send(&thief.request()).unwrap_err().code,
        codes::UNRELEASED_INSTANCE_ID
    );
    // ... and it comes back under a new member id with the same partitions, no rebalance.
    let mut back = Client::new("a2", &["orders"]);
    back.instance_id = Some("i-a".into());
    let r = h.join(back);
    assert_eq!(r.assignment.unwrap(), had);
    assert_eq!(h.group.group_epoch(), epoch_before);
    assert!(!h.group.members.contains_key("a"));
    h.settle();
    assert_eq!(h.counts(), vec![3, 3]);
}

#[test]
fn regex_subscriptions_follow_topic_creation() {
    let mut h = Harness::new(image(&[("rx-a", 1, 2), ("other", 2, 2)]));
    let mut c = Client::new("a", &[]);
    c.regex = Some("rx-.*".into());
    let r = h.join(c);
    assert_eq!(
        r.assignment.unwrap(),
        TopicPartitions::from([(topic_id(1), BTreeSet::from([0, 1]))])
    );
    // A topic created later (new metadata version) is picked up on the next heartbeat.
    h.topics = image(&[("rx-a", 1, 2), ("other", 2, 2), ("rx-b", 3, 3)]);
    h.version = 2;
    let epoch = h.group.group_epoch();
    h.settle();
    assert!(h.group.group_epoch() > epoch);
    assert_eq!(h.total_owned().len(), 5);
    assert!(h.log.iter().any(|r| matches!(&r.key, CoordinatorKey::ConsumerGroup(ConsumerGroupKey::RegularExpression { regex, .. }) if regex == "rx-.*")));
}

#[test]
fn regex_resolution_keeps_only_topics_the_member_may_describe() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut h = Harness::new(image(&[("rx-open", 1, 2), ("rx-secret", 2, 2)]));
    let secret_granted = Arc::new(AtomicBool::new(false));
    let granted = secret_granted.clone();
    let access = TopicAccess::new(move |t| t != "rx-secret" || granted.load(Ordering::SeqCst));
    let mut c = Client::new("a", &[]);
    c.regex = Some("rx-.*".into());
    h.clients.insert("a".into(), c);
    let mut req = h.clients["a"].request();
    req.topic_access = access.clone();
    let r = h.send(&req).unwrap();
    // Silently left out, as Kafka: no error, the partitions of the other topic only.
    assert_eq!(
        r.assignment.unwrap(),
        TopicPartitions::from([(topic_id(1), BTreeSet::from([0, 1]))])
    );
    let resolved = |h: &Harness| -> Vec<String> {
        h.log
            .iter()
            .rev()
            .find_map(|r| match &r.value {
                RecordValue::ConsumerGroup(ConsumerGroupValue::RegularExpression(v)) => {
                    Some(v.topics.clone())
                }
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(resolved(&h), vec!["rx-open".to_string()]);

    // A grant is a metadata change: the next heartbeat resolves again and takes it.
    secret_granted.store(true, Ordering::SeqCst);
    h.version = 2;
    let c = h.clients["a"].clone();
    let mut req = c.request();
    req.topic_access = access;
    let r = h.send(&req).unwrap();
    assert_eq!(
        resolved(&h),
        vec!["rx-open".to_string(), "rx-secret".to_string()]
    );
    let epoch_before = c.epoch;
    assert!(
        r.member_epoch > epoch_before,
        "the group epoch did not move"
    );
}

#[test]
fn added_partitions_get_assigned() {
    let mut h = Harness::new(image(&[("orders", 1, 2)]));
    h.join(Client::new("a", &["orders"]));
    h.join(Client::new("b", &["orders"]));
    h.settle();
    h.topics = image(&[("orders", 1, 6)]);
    h.version = 2;
    h.settle();
    assert_eq!(h.counts(), vec![3, 3]);
}

#[test]
fn range_assignor_is_chosen_by_the_members() {
    let mut h = Harness::new(image(&[("orders", 1, 4)]));
    for id in ["a", "b"] {
        let mut c = Client::new(id, &["orders"]);
        c.assignor = Some("range".into());
        h.join(c);
        h.settle();
    }
    assert_eq!(h.group.describe(&h.config).assignor_name, "range");
    let a: Vec<i32> = member::iter(&h.clients["a"].owned)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(a, vec![0, 1]);
}

#[test]
fn offsets_are_checked_against_member_epochs() {
    let mut h = Harness::new(image(&[("orders", 1, 2)]));
    h.join(Client::new("a", &["orders"]));
    let epoch = h.clients["a"].epoch;
    assert_eq!(h.group.validate_offset_commit("a", epoch, 9, false), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("a", epoch - 1, 9, false),
        Err(codes::STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        h.group.validate_offset_commit("a", epoch + 1, 9, false),
        Err(codes::STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        h.group.validate_offset_commit("a", epoch, 8, false),
        Err(codes::UNSUPPORTED_VERSION)
    );
    assert_eq!(h.group.validate_offset_commit("a", epoch, 3, true), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("zz", epoch, 9, false),
        Err(error::UNKNOWN_MEMBER_ID)
    );
    // An admin commit (no member) only to an empty group.
    assert_eq!(
        h.group.validate_offset_commit("", -1, 9, false),
        Err(error::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        ConsumerGroup::new("g").validate_offset_commit("", -1, 9, false),
        Ok(())
    );
    assert_eq!(h.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(
        h.group.validate_offset_fetch(Some("a"), epoch - 1),
        Err(codes::STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        h.group.validate_offset_fetch(Some("a"), -1),
        Err(codes::STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        h.group.validate_offset_fetch(None, 3),
        Err(error::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(h.group.validate_offset_fetch(Some("a"), epoch), Ok(()));
}

#[test]
fn replaying_the_records_rebuilds_the_same_group() {
    let mut h = Harness::new(image(&[("orders", 1, 12)]));
    for id in ["a", "b", "c"] {
        let mut c = Client::new(id, &["orders"]);
        c.regex = (id == "c").then(|| "ord.*".to_string());
        h.join(c);
        h.settle();
    }
    // One member in the middle of a revocation when the coordinator moves.
    h.join(Client::new("d", &["orders"]));
    h.beat("a");
    let mut loaded = ConsumerGroup::new("g");
    for r in &h.log {
        // Through the bytes Kafka would store.
        let CoordinatorKey::ConsumerGroup(key) = &r.key else {
            panic!("{r:?}")
        };
        let key_bytes = encode_key(key);
        let key = decode_key(
            i16::from_be_bytes([key_bytes[0], key_bytes[1]]),
            &key_bytes[2..],
        )
        .unwrap()
        .unwrap();
        let value = match &r.value {
            RecordValue::ConsumerGroup(v) => Some(decode_value(&key, &encode_value(v)).unwrap()),
            RecordValue::Tombstone => None,
            other => panic!("{other:?}"),
        };
        assert!(loaded.replay(h.now, &h.config, &key, value.as_ref()));
    }
    loaded.check_invariants();
    assert_eq!(loaded.describe(&h.config), h.group.describe(&h.config));
    assert_eq!(loaded.members, h.group.members);
    assert_eq!(loaded.owners, h.group.owners);
    // Carrying on from the loaded copy converges like the original.
    h.group = loaded;
    h.settle();
    assert_eq!(h.counts(), vec![3, 3, 3, 3]);
}

#[test]
fn the_group_is_bounded_by_its_max_size() {
    let mut h = Harness::new(image(&[("orders", 1, 2)]));
    h.config.max_size = 1;
    h.join(Client::new("a", &["orders"]));
    let e = h
        .send(&Client::new("b", &["orders"]).request())
        .unwrap_err();
    assert_eq!(e.code, error::GROUP_MAX_SIZE_REACHED);
    assert_eq!(
        e.message,
        "The consumer group has reached its maximum capacity of 1 members."
    );
}
