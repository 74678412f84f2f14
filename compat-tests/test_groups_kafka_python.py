"""Consumer groups with kafka-python against a real ottla process, and group-protocol bad input.

Client level (kafka-python's ``KafkaConsumer`` / ``KafkaAdminClient``):

* ``KafkaConsumer(group_id=..., auto_offset_reset='earliest')`` consumes a topic to the end
  and commits; a second run of the same group gets nothing (committed offsets are the end
  offsets); after more records are produced a third run gets exactly those.
* Two members in one group split a 4-partition topic 2/2 and together read every record once;
  the admin client's list_groups (state filter), describe_groups (members, decoded
  subscriptions and assignments), list_group_offsets for two groups in one call (OffsetFetch
  v8+) and delete_groups agree.

Protocol level (requests built with kafka-python's protocol classes, sent over a plain
socket, one request at a time, so each test controls exactly which member says what):

* JoinGroup v5 with an empty member id gets MEMBER_ID_REQUIRED (79) and a member id.
* Heartbeat from an unknown member id: UNKNOWN_MEMBER_ID (25); from a known member with the
  wrong generation: ILLEGAL_GENERATION (22); the real member is unaffected.
* SyncGroup with a stale generation (after a second member forced generation 2):
  ILLEGAL_GENERATION (22); SyncGroup v5 naming another protocol type: INCONSISTENT_GROUP_PROTOCOL
  (23); the leader's assignment is fanned out to the follower byte for byte.
* JoinGroup with another protocol type, or with no protocol in common, for a non-empty group:
  INCONSISTENT_GROUP_PROTOCOL (23); the group is unaffected.
* Protocol selection: the protocol supported by every member with the most first-choice votes;
  each member's metadata for that protocol is what the leader is given.
* OffsetCommit with generation -1 and no member id while the group has members:
  UNKNOWN_MEMBER_ID (25); with the member's id but generation -1: ILLEGAL_GENERATION (22);
  nothing is stored; the member's own commit works, and once the group is empty a "simple"
  commit (generation -1) works.
* 10,000 members join one group (one connection each): every join is answered, with one
  generation, one leader and every member listed (the broker keeps Kafka's unbounded default
  group.max.size, so none is refused), the broker's memory stays bounded, a member of another group
  keeps heartbeating without errors throughout, and the dead members are expired afterwards.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
import resource
import selectors
import socket
import struct
import threading
import time

import pytest
from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsResponse
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse
from kafka.protocol.consumer import (
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)

from conftest import _recv_exact, api_versions_v0, ck_create_topic, status_kb, unique_topic, wait_for

IO_TIMEOUT = 30.0

# Kafka error codes
NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79

# API keys and the versions used here
JOIN, SYNC, HEARTBEAT, LEAVE, OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS = 11, 14, 12, 13, 8, 9, 15
JOIN_V, SYNC_V, HEARTBEAT_V, LEAVE_V, COMMIT_V, FETCH_V, DESCRIBE_V = 5, 5, 4, 4, 8, 8, 5


# ====================================================================== kafka-python clients


def kp_produce_spread(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int = 0) -> None:
    from kafka import KafkaProducer
    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, client_id="compat-groups-kp")
    try:
        futs = [prod.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % partitions)
                for i in range(start, start + partitions * per_partition)]
        prod.flush(timeout=120)
        for f in futs:
            f.get(timeout=60)
    finally:
        prod.close(timeout=30)


def kp_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                         enable_auto_commit=False, client_id="compat-groups-kp",
                         fetch_max_wait_ms=200, session_timeout_ms=10000, heartbeat_interval_ms=1000)


def kp_admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-groups-kp-admin",
                            request_timeout_ms=30000)


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    admin = kp_admin(bootstrap)
    try:
        res = admin.list_group_offsets({group: None})[group]
        return {tp.partition: om.offset for tp, om in res.items() if om.offset >= 0}
    finally:
        admin.close()


def test_kafka_python_consume_to_end_and_commit(ottla):
    parts, per = 3, 1000
    topic = unique_topic("groups-kp")
    group = f"kp-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=parts)
    kp_produce_spread(ottla.bootstrap, topic, parts, per)
    tps = [TopicPartition(topic, p) for p in range(parts)]

    # Run 1: read everything, commit, check committed() before leaving.
    c = kp_consumer(ottla.bootstrap, topic, group)
    try:
        got = collections.defaultdict(list)
        deadline = time.monotonic() + 90
        while sum(map(len, got.values())) < parts * per:
            assert time.monotonic() < deadline, f"run 1 timed out: { {p: len(v) for p, v in got.items()} }"
            for tp, recs in c.poll(timeout_ms=500).items():
                got[tp.partition] += [r.offset for r in recs]
        assert {p: v for p, v in got.items()} == {p: list(range(per)) for p in range(parts)}
        assert c.assignment() == set(tps)
        c.commit()
        assert {tp.partition: c.committed(tp) for tp in tps} == {p: per for p in range(parts)}
    finally:
        c.close()
    assert committed_offsets(ottla.bootstrap, group) == {p: per for p in range(parts)}

    # Run 2: same group, nothing new.
    c = kp_consumer(ottla.bootstrap, topic, group)
    try:
        extra = []

        def assigned():
            for tp, recs in c.poll(timeout_ms=200).items():
                extra.extend((tp.partition, r.offset) for r in recs)
            return c.assignment() == set(tps)
        wait_for(assigned, 30, "run 2 to be assigned every partition")
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for tp, recs in c.poll(timeout_ms=300).items():
                extra += [(tp.partition, r.offset) for r in recs]
        assert extra == [], f"the second run of the group got records again: {extra[:10]}"
        assert {tp.partition: c.position(tp) for tp in tps} == {p: per for p in range(parts)}

        # New records: this member (still in the group) gets exactly those.
        kp_produce_spread(ottla.bootstrap, topic, parts, 10, start=parts * per)
        got = collections.defaultdict(list)
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < parts * 10:
            assert time.monotonic() < deadline, f"new records not delivered: {dict(got)}"
            for tp, recs in c.poll(timeout_ms=300).items():
                got[tp.partition] += [r.offset for r in recs]
        assert dict(got) == {p: list(range(per, per + 10)) for p in range(parts)}
        c.commit()
    finally:
        c.close()
    assert committed_offsets(ottla.bootstrap, group) == {p: per + 10 for p in range(parts)}


class _ForwardRebalance(ConsumerRebalanceListener):
    """Hands kafka-python's rebalance callbacks to the member."""
    def __init__(self, member):
        self.member = member

    def on_partitions_revoked(self, revoked):
        self.member.on_revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self.member.on_assigned(assigned)


class KpMember(threading.Thread):
    def __init__(self, bootstrap, topic, group, name):
        super().__init__(name=name, daemon=True)
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.got: list[tuple[int, int]] = []
        self.owned: set[int] = set()
        self.events: list[tuple[float, str, list[int]]] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.consumer: KafkaConsumer | None = None

    def on_revoked(self, revoked):
        self.events.append((time.time(), "revoke", sorted(tp.partition for tp in revoked)))
        self.owned -= {tp.partition for tp in revoked}

    def on_assigned(self, assigned):
        self.events.append((time.time(), "assign", sorted(tp.partition for tp in assigned)))
        self.owned |= {tp.partition for tp in assigned}

    def run(self):
        try:
            c = self.consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group, auto_offset_reset="earliest",
                enable_auto_commit=False, client_id=self.name, fetch_max_wait_ms=200,
                session_timeout_ms=10000, heartbeat_interval_ms=1000, max_poll_records=100)
            c.subscribe([self.topic], listener=_ForwardRebalance(self))
            while not self.stop_flag.is_set():
                batch = c.poll(timeout_ms=200)
                for tp, recs in batch.items():
                    self.got += [(tp.partition, r.offset) for r in recs]
                if batch:
                    c.commit()
                    time.sleep(0.02)
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_kafka_python_two_members_and_admin(ottla):
    parts, per = 4, 2000
    topic = unique_topic("groups-kp2")
    group = f"kp2-{topic}"
    other = f"kp2-other-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=parts)
    kp_produce_spread(ottla.bootstrap, topic, parts, per)
    members = [KpMember(ottla.bootstrap, topic, group, f"kp-m{i}") for i in range(2)]
    for m in members:
        m.start()
    try:
        def done():
            for m in members:
                if m.error:
                    raise AssertionError(f"{m.name} failed: {m.error!r}")
            return (len({x for m in members for x in m.got}) == parts * per
                    and all(len(m.owned) == 2 for m in members))
        wait_for(done, 120, "both members to read everything and own 2 partitions each", interval=0.2)
        owned = {m.name: set(m.owned) for m in members}
        assert set().union(*owned.values()) == set(range(parts)), owned

        admin = kp_admin(ottla.bootstrap)
        try:
            def stable():
                d = admin.describe_groups([group])[group]
                return d if d["group_state"] == "Stable" and len(d["members"]) == 2 else None
            d = wait_for(stable, 30, "describe_groups: Stable with 2 members")
            assert d["error"] is None and d["protocol_type"] == "consumer", d
            assert d["protocol_data"] in ("range", "roundrobin", "sticky", "cooperative-sticky"), d
            for mem in d["members"]:
                mine = owned[mem["client_id"]]
                sub = mem["member_metadata"]
                asg = mem["member_assignment"]
                # (decoded by the admin client: ConsumerProtocolSubscription / Assignment as dicts)
                assert list(sub["topics"]) == [topic], sub
                got = {(t["topic"], p) for t in asg["assigned_partitions"] for p in t["partitions"]}
                assert got == {(topic, p) for p in mine}, (mem["client_id"], asg, mine)
            stable_groups = {g["group_id"]: g for g in admin.list_groups(states_filter=["Stable"])}
            assert group in stable_groups, stable_groups
            assert stable_groups[group]["protocol_type"] == "consumer"
            empty_groups = {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}
            assert group not in empty_groups
        finally:
            admin.close()
    finally:
        for m in members:
            m.stop_flag.set()
        for m in members:
            m.join(timeout=30)
    for m in members:
        assert m.error is None, f"{m.name}: {m.error!r}"
        assert not m.is_alive()

    count = collections.Counter(x for m in members for x in m.got)
    dups = sorted(k for k, n in count.items() if n > 1)
    assert set(count) == {(p, o) for p in range(parts) for o in range(per)}
    assert not dups, f"{len(dups)} records delivered twice: {dups[:10]}; events {[m.events for m in members]}"

    # A second group with "simple" commits (no membership), then both groups in one OffsetFetch.
    from kafka.structs import OffsetAndMetadata
    admin = kp_admin(ottla.bootstrap)
    try:
        res = admin.alter_group_offsets(other, {TopicPartition(topic, 0): OffsetAndMetadata(7, "seven", -1)})
        assert all(e.errno == 0 for e in res.values()), res
        both = admin.list_group_offsets({group: None, other: None})
        assert {tp.partition: om.offset for tp, om in both[group].items()} == {p: per for p in range(parts)}
        assert {tp: (om.offset, om.metadata) for tp, om in both[other].items()} == \
            {TopicPartition(topic, 0): (7, "seven")}
        empty = wait_for(lambda: {g["group_id"]: g for g in admin.list_groups(states_filter=["Empty"])}
                         if group in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}
                         else None, 15, "the group to be Empty after both members left")
        assert other in empty, empty
        res = dict(admin.delete_groups([group, other]))
        assert res == {group: "OK", other: "OK"}, res
        remaining = {g["group_id"] for g in admin.list_groups()}
        assert group not in remaining and other not in remaining, remaining
    finally:
        admin.close()


# ====================================================================== raw protocol


def subscription(topics: list[str], user_data: bytes = b"") -> bytes:
    """ConsumerProtocolSubscription v0: the metadata "consumer" members send in JoinGroup."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", len(user_data)) + user_data


def assignment(topic: str, partitions: list[int], user_data: bytes = b"") -> bytes:
    """ConsumerProtocolAssignment v0: what the leader hands each member in SyncGroup."""
    out = struct.pack(">hi", 0, 1) + struct.pack(">h", len(topic)) + topic.encode()
    out += struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions)
    return out + struct.pack(">i", len(user_data)) + user_data


class Conn:
    """One connection; one request in flight at a time."""

    def __init__(self, broker, client_id: str = "compat-raw"):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=IO_TIMEOUT)
        self.client_id = client_id
        self.corr = 0

    def call(self, req, resp_cls, timeout: float = IO_TIMEOUT):
        self.corr += 1
        req.with_header(correlation_id=self.corr, client_id=self.client_id)
        self.sock.settimeout(timeout)
        self.sock.sendall(req.encode(header=True, framed=True))
        (size,) = struct.unpack(">i", _recv_exact(self.sock, 4))
        payload = _recv_exact(self.sock, size)
        resp = resp_cls.decode(payload, version=req.API_VERSION, header=True)
        assert resp.header.correlation_id == self.corr, (resp.header.correlation_id, self.corr)
        return resp

    def close(self):
        self.sock.close()


def join_request(group, member_id="", protocols=None, protocol_type="consumer", session_ms=30000,
                 rebalance_ms=30000, instance_id=None, topics=("raw-topic",)):
    if protocols is None:
        protocols = [("range", subscription(list(topics)))]
    P = JoinGroupRequest.JoinGroupRequestProtocol
    return JoinGroupRequest(version=JOIN_V, group_id=group, session_timeout_ms=session_ms,
                            rebalance_timeout_ms=rebalance_ms, member_id=member_id,
                            group_instance_id=instance_id, protocol_type=protocol_type,
                            protocols=[P(name=n, metadata=m) for n, m in protocols])


def join(conn, group, member_id="", **kw):
    return conn.call(join_request(group, member_id, **kw), JoinGroupResponse, timeout=kw.get("rebalance_ms", 30000) / 1000 + 30)


def join_new(conn, group, **kw):
    """A new dynamic member: the first JoinGroup (v4+) must answer MEMBER_ID_REQUIRED with a
    member id, the second joins with it."""
    r = join(conn, group, "", **kw)
    assert r.error_code == MEMBER_ID_REQUIRED, f"first JoinGroup v{JOIN_V} of a new member: {r}"
    assert r.member_id, r
    return join(conn, group, r.member_id, **kw)


def sync(conn, group, generation, member_id, assignments=None, protocol_type="consumer", protocol_name="range"):
    A = SyncGroupRequest.SyncGroupRequestAssignment
    req = SyncGroupRequest(version=SYNC_V, group_id=group, generation_id=generation, member_id=member_id,
                           group_instance_id=None, protocol_type=protocol_type, protocol_name=protocol_name,
                           assignments=[A(member_id=m, assignment=a) for m, a in (assignments or {}).items()])
    return conn.call(req, SyncGroupResponse)


def heartbeat(conn, group, generation, member_id) -> int:
    req = HeartbeatRequest(version=HEARTBEAT_V, group_id=group, generation_id=generation, member_id=member_id,
                           group_instance_id=None)
    return conn.call(req, HeartbeatResponse).error_code


def leave(conn, group, member_ids):
    M = LeaveGroupRequest.MemberIdentity
    req = LeaveGroupRequest(version=LEAVE_V, group_id=group,
                            members=[M(member_id=m, group_instance_id=None) for m in member_ids])
    return conn.call(req, LeaveGroupResponse)


def describe(conn, group):
    req = DescribeGroupsRequest(version=DESCRIBE_V, groups=[group], include_authorized_operations=False)
    (g,) = conn.call(req, DescribeGroupsResponse).groups
    return g


def commit(conn, group, generation, member_id, offsets: dict[tuple[str, int], tuple[int, str | None]]):
    """OffsetCommit; returns {(topic, partition): error code}."""
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    by_topic = collections.defaultdict(list)
    for (t, p), (o, meta) in offsets.items():
        by_topic[t].append(P(partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                             committed_metadata=meta))
    req = OffsetCommitRequest(version=COMMIT_V, group_id=group, generation_id_or_member_epoch=generation,
                              member_id=member_id, group_instance_id=None,
                              topics=[T(name=t, partitions=ps) for t, ps in by_topic.items()])
    resp = conn.call(req, OffsetCommitResponse)
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}


def fetch_offsets(conn, groups: list[str]) -> dict[str, dict]:
    """OffsetFetch v8 for several groups at once (all their offsets):
    {group: {"error": code, "offsets": {(topic, p): (offset, metadata, error)}}}."""
    G = OffsetFetchRequest.OffsetFetchRequestGroup
    req = OffsetFetchRequest(version=FETCH_V, groups=[G(group_id=g, topics=None) for g in groups],
                             require_stable=False)
    resp = conn.call(req, OffsetFetchResponse)
    out = {}
    for g in resp.groups:
        out[g.group_id] = {"error": g.error_code,
                           "offsets": {(t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
                                       for t in g.topics for p in t.partitions}}
    return out


@pytest.fixture(scope="module")
def raw_broker(ottla_module):
    """The module's broker, after checking it advertises the versions used here."""
    versions = api_versions_v0(ottla_module.host, ottla_module.port)
    wanted = {JOIN: JOIN_V, SYNC: SYNC_V, HEARTBEAT: HEARTBEAT_V, LEAVE: LEAVE_V, OFFSET_COMMIT: COMMIT_V,
              OFFSET_FETCH: FETCH_V, DESCRIBE_GROUPS: DESCRIBE_V}
    missing = {k: v for k, v in wanted.items() if k not in versions or not versions[k][0] <= v <= versions[k][1]}
    assert not missing, (f"the broker does not advertise these (api key: version): {missing}; "
                         f"it advertises { {k: versions.get(k) for k in wanted} }")
    find_coordinator(ottla_module, "raw-groups")
    return ottla_module


def find_coordinator(broker, group: str) -> None:
    """FindCoordinator, as every client sends before its first group request: it creates
    __consumer_offsets (before it exists, group requests get NOT_COORDINATOR, as from
    Kafka). On one node the coordinator is the broker itself."""
    c = Conn(broker, client_id="raw-find-coordinator")
    try:
        found = c.call(FindCoordinatorRequest(version=1, key=group, key_type=0), FindCoordinatorResponse)
        assert found.error_code == NONE and found.port == broker.port, found
    finally:
        c.close()


class Member:
    """A raw group member: its connection, id and generation."""

    def __init__(self, broker, group, name, **join_kw):
        self.conn = Conn(broker, client_id=name)
        self.group, self.name, self.join_kw = group, name, join_kw
        self.member_id = ""
        self.generation = -1
        self.last_join = None

    def join(self):
        if self.member_id:
            r = join(self.conn, self.group, self.member_id, **self.join_kw)
        else:
            r = join_new(self.conn, self.group, **self.join_kw)
        assert r.error_code == NONE, f"{self.name}: JoinGroup failed: {r}"
        self.member_id, self.generation, self.last_join = r.member_id, r.generation_id, r
        return r

    def is_leader(self):
        return self.last_join.leader == self.member_id

    def heartbeat(self):
        return heartbeat(self.conn, self.group, self.generation, self.member_id)

    def close(self):
        self.conn.close()


def form_group(members: list[Member], timeout: float = 60) -> int:
    """Join every member into one generation (joins run concurrently; members whose join
    returned an older generation rejoin), then sync: the leader assigns partition i to member i.
    Returns the generation."""
    deadline = time.monotonic() + timeout
    n = len(members)
    with cf.ThreadPoolExecutor(n) as ex:
        futs = {ex.submit(m.join): m for m in members}
        results: dict[str, int] = {}
        while True:
            done, _ = cf.wait(list(futs), timeout=max(0.1, deadline - time.monotonic()),
                              return_when=cf.FIRST_COMPLETED)
            assert done, f"JoinGroup did not complete within {timeout}s (joined: {results})"
            # joins of one generation complete together: collect the others too
            more, _ = cf.wait([f for f in futs if f not in done], timeout=0.5)
            for f in set(done) | set(more):
                m = futs.pop(f)
                results[m.name] = f.result().generation_id
            if not futs and len(set(results.values())) == 1:
                leaders = [m for m in members if m.is_leader()]
                if len(leaders) == 1 and len(leaders[0].last_join.members) == n:
                    break
            assert time.monotonic() < deadline, f"no common generation within {timeout}s: {results}"
            # Not everyone is in one generation yet: whoever is back rejoins (the others may be
            # waiting for exactly that).
            time.sleep(0.1)
            pending = set(futs.values())
            for m in members:
                if m not in pending:
                    futs[ex.submit(m.join)] = m
    gen = members[0].generation
    (leader,) = [m for m in members if m.is_leader()]
    assigns = {m.member_id: assignment("raw-topic", [i]) for i, m in enumerate(members)}
    proto = leader.last_join.protocol_name
    r = sync(leader.conn, leader.group, gen, leader.member_id, assigns, protocol_name=proto)
    assert r.error_code == NONE, f"leader SyncGroup: {r}"
    for m in members:
        if m is not leader:
            r = sync(m.conn, m.group, gen, m.member_id, protocol_name=proto)
            assert r.error_code == NONE, f"{m.name} SyncGroup: {r}"
            assert r.assignment == assigns[m.member_id], (r.assignment, assigns[m.member_id])
    return gen


def test_raw_member_id_required_and_heartbeat_errors(raw_broker):
    group = unique_topic("raw-hb")
    c = Conn(raw_broker, client_id="raw-hb-client")
    try:
        first = join(c, group, "")
        assert first.error_code == MEMBER_ID_REQUIRED, first
        assert first.member_id and first.generation_id == -1, first
        r = join(c, group, first.member_id)
        assert r.error_code == NONE, r
        assert r.member_id == first.member_id and r.leader == r.member_id, r
        assert r.generation_id >= 1 and r.protocol_name == "range", r
        assert [(m.member_id, m.metadata) for m in r.members] == [(r.member_id, subscription(["raw-topic"]))]
        gen, me = r.generation_id, r.member_id
        mine = assignment("raw-topic", [0, 1, 2])
        s = sync(c, group, gen, me, {me: mine})
        assert s.error_code == NONE and s.assignment == mine, s
        assert (s.protocol_type, s.protocol_name) == ("consumer", "range"), s
        assert heartbeat(c, group, gen, me) == NONE

        # Unknown member id, wrong generation: errors, and nothing changes for the real member.
        assert heartbeat(c, group, gen, "no-such-member") == UNKNOWN_MEMBER_ID
        assert heartbeat(c, group, gen, "") == UNKNOWN_MEMBER_ID
        assert heartbeat(c, group, gen + 1, me) == ILLEGAL_GENERATION
        assert heartbeat(c, group, gen - 1, me) == ILLEGAL_GENERATION
        assert heartbeat(c, group, gen, me) == NONE
        d = describe(c, group)
        assert d.error_code == NONE and d.group_state == "Stable", d
        assert (d.protocol_type, d.protocol_data) == ("consumer", "range"), d
        assert [(m.member_id, m.client_id, m.member_metadata, m.member_assignment) for m in d.members] == \
            [(me, "raw-hb-client", subscription(["raw-topic"]), mine)], d.members

        # LeaveGroup (batched form, v3+): the group empties and the member is gone.
        lv = leave(c, group, [me])
        assert lv.error_code == NONE and [(m.member_id, m.error_code) for m in lv.members] == [(me, NONE)], lv
        assert heartbeat(c, group, gen, me) == UNKNOWN_MEMBER_ID
        assert leave(c, group, [me]).members[0].error_code == UNKNOWN_MEMBER_ID
        # Kafka keeps the emptied group (state Empty, generation bumped) until its periodic
        # cleanup (offsets.retention.check.interval.ms, 10 minutes by default) removes it, so
        # DescribeGroups right after the last member left answers Empty, not Dead.
        d = describe(c, group)
        assert d.group_state == "Empty" and list(d.members) == [], d
    finally:
        c.close()


def test_raw_sync_with_stale_generation(raw_broker):
    group = unique_topic("raw-sync")
    a = Member(raw_broker, group, "raw-a")
    b = Member(raw_broker, group, "raw-b")
    try:
        gen1 = form_group([a])
        assert a.heartbeat() == NONE

        # b joins: the group rebalances; a learns it from its heartbeat and rejoins.
        with cf.ThreadPoolExecutor(1) as ex:
            fb = ex.submit(b.join)
            wait_for(lambda: a.heartbeat() == REBALANCE_IN_PROGRESS, 15,
                     "a's heartbeat to answer REBALANCE_IN_PROGRESS", interval=0.1)
            ra = a.join()
            rb = fb.result(timeout=60)
        gen2 = ra.generation_id
        assert gen2 > gen1 and rb.generation_id == gen2, (gen1, ra, rb)
        (leader,) = [m for m in (a, b) if m.is_leader()]
        follower = b if leader is a else a
        assert sorted(m.member_id for m in leader.last_join.members) == sorted([a.member_id, b.member_id])
        assert follower.last_join.members == [], "only the leader is sent the member list"

        # SyncGroup for the old generation, from an unknown member, or naming another
        # protocol type: rejected.
        assert sync(leader.conn, group, gen1, leader.member_id).error_code == ILLEGAL_GENERATION
        assert sync(follower.conn, group, gen1, follower.member_id).error_code == ILLEGAL_GENERATION
        assert sync(follower.conn, group, gen2, "no-such-member").error_code == UNKNOWN_MEMBER_ID
        assert sync(leader.conn, group, gen2, leader.member_id, protocol_type="connect").error_code == \
            INCONSISTENT_GROUP_PROTOCOL
        assert sync(leader.conn, group, gen2, leader.member_id, protocol_name="roundrobin").error_code == \
            INCONSISTENT_GROUP_PROTOCOL

        # The real sync: the leader's assignment reaches the follower byte for byte.
        assigns = {leader.member_id: assignment("raw-topic", [0], b"L"),
                   follower.member_id: assignment("raw-topic", [1, 2], b"F")}
        rl = sync(leader.conn, group, gen2, leader.member_id, assigns)
        assert rl.error_code == NONE and rl.assignment == assigns[leader.member_id], rl
        rf = sync(follower.conn, group, gen2, follower.member_id)
        assert rf.error_code == NONE and rf.assignment == assigns[follower.member_id], rf
        assert sync(follower.conn, group, gen1, follower.member_id).error_code == ILLEGAL_GENERATION

        # Heartbeats: the old generation is illegal, the current one fine.
        assert heartbeat(a.conn, group, gen1, a.member_id) == ILLEGAL_GENERATION
        assert a.heartbeat() == NONE and b.heartbeat() == NONE
        d = describe(a.conn, group)
        assert d.group_state == "Stable" and len(d.members) == 2, d
    finally:
        a.close()
        b.close()


def test_raw_join_inconsistent_protocol(raw_broker):
    group = unique_topic("raw-proto")
    a = Member(raw_broker, group, "raw-a")
    c = Conn(raw_broker, client_id="raw-intruder")
    try:
        gen = form_group([a])
        # Another protocol type for a non-empty group.
        r = join(c, group, "", protocol_type="connect")
        assert r.error_code == INCONSISTENT_GROUP_PROTOCOL, r
        # Same type, but no protocol in common with the members.
        r = join(c, group, "", protocols=[("roundrobin", subscription(["raw-topic"]))])
        assert r.error_code == INCONSISTENT_GROUP_PROTOCOL, r
        # Empty protocol type / empty protocol list are never acceptable.
        r = join(c, group, "", protocol_type="")
        assert r.error_code == INCONSISTENT_GROUP_PROTOCOL, r
        r = join(c, group, "", protocols=[])
        assert r.error_code == INCONSISTENT_GROUP_PROTOCOL, r
        # The group did not notice.
        assert a.heartbeat() == NONE
        d = describe(c, group)
        assert d.group_state == "Stable" and [m.member_id for m in d.members] == [a.member_id], d
        assert d.protocol_type == "consumer"
        assert heartbeat(c, group, gen, a.member_id) == NONE
    finally:
        a.close()
        c.close()


def test_raw_protocol_selection(raw_broker):
    group = unique_topic("raw-vote")

    def protos(name, order):
        return [(p, subscription(["raw-topic"], f"{p}/{name}".encode())) for p in order]

    ms = [Member(raw_broker, group, "raw-v0", protocols=protos("raw-v0", ["roundrobin", "range"])),
          Member(raw_broker, group, "raw-v1", protocols=protos("raw-v1", ["roundrobin", "range", "sticky"])),
          Member(raw_broker, group, "raw-v2", protocols=protos("raw-v2", ["range", "roundrobin"]))]
    try:
        form_group(ms)
        # Candidates: range and roundrobin (sticky is not supported by everyone); two of three
        # members prefer roundrobin.
        for m in ms:
            assert m.last_join.protocol_name == "roundrobin", (m.name, m.last_join)
        (leader,) = [m for m in ms if m.is_leader()]
        by_id = {m.member_id: m.name for m in ms}
        got = {by_id[x.member_id]: x.metadata for x in leader.last_join.members}
        assert got == {m.name: subscription(["raw-topic"], f"roundrobin/{m.name}".encode()) for m in ms}, got
        d = describe(ms[0].conn, group)
        assert d.protocol_data == "roundrobin" and len(d.members) == 3, d
    finally:
        for m in ms:
            m.close()


def test_raw_offset_commit_generation_rules(raw_broker):
    group = unique_topic("raw-commit")
    simple = unique_topic("raw-simple")
    t = unique_topic("raw-commit-topic")
    ck_create_topic(raw_broker.bootstrap, t, partitions=4)  # commits for unknown topics are refused
    a = Member(raw_broker, group, "raw-a")
    c = Conn(raw_broker, client_id="raw-committer")
    try:
        gen = form_group([a])
        # Generation -1 without a member id while the group has a member: the "simple consumer"
        # commit is refused, and so are the other wrong combinations.
        assert commit(c, group, -1, "", {(t, 0): (5, "x")}) == {(t, 0): UNKNOWN_MEMBER_ID}
        assert commit(c, group, -1, a.member_id, {(t, 0): (5, "x")}) == {(t, 0): ILLEGAL_GENERATION}
        assert commit(c, group, gen, "no-such-member", {(t, 0): (5, "x")}) == {(t, 0): UNKNOWN_MEMBER_ID}
        assert commit(c, group, gen + 1, a.member_id, {(t, 0): (5, "x")}) == {(t, 0): ILLEGAL_GENERATION}
        assert fetch_offsets(c, [group])[group] == {"error": NONE, "offsets": {}}, "a refused commit was stored"

        # The member's own commit (any connection may carry it).
        assert commit(a.conn, group, gen, a.member_id, {(t, 0): (10, "meta-0"), (t, 1): (11, None)}) == \
            {(t, 0): NONE, (t, 1): NONE}
        assert a.heartbeat() == NONE

        # "Simple" commits to another (unknown) group work, and OffsetFetch v8 returns both
        # groups in one response, with the metadata strings round-tripped (null is stored as "").
        assert commit(c, simple, -1, "", {(t, 3): (33, "simple-meta")}) == {(t, 3): NONE}
        both = fetch_offsets(c, [group, simple])
        assert both == {
            group: {"error": NONE, "offsets": {(t, 0): (10, "meta-0", NONE), (t, 1): (11, "", NONE)}},
            simple: {"error": NONE, "offsets": {(t, 3): (33, "simple-meta", NONE)}},
        }, both

        # Once the member left, the group is empty and generation -1 commits are accepted.
        assert leave(a.conn, group, [a.member_id]).error_code == NONE
        assert commit(c, group, -1, "", {(t, 0): (20, None)}) == {(t, 0): NONE}
        # (a null metadata string is stored as "", like Kafka does)
        assert fetch_offsets(c, [group])[group]["offsets"][(t, 0)] == (20, "", NONE)
        # The emptied group keeps its protocol type: still a "consumer" group (Kafka's
        # initNextGeneration clears only the protocol name), not a "simple" one.
        d = describe(c, group)
        assert (d.group_state, d.protocol_type, d.protocol_data, list(d.members)) == \
            ("Empty", "consumer", "", []), d
    finally:
        a.close()
        c.close()


# ---------------------------------------------------------------------- 10,000 members


FLOOD_MEMBERS = int(os.environ.get("OTTLA_GROUP_FLOOD_MEMBERS", "10000"))
FLOOD_MEMORY_BUDGET_KB = 300 * 1024


def _roundtrip_all(socks: list[socket.socket], frames: list[bytes], resp_cls, version: int,
                   timeout: float) -> list:
    """Send frames[i] on socks[i] (all at once), then collect one response per socket."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for i, (s, fr) in enumerate(zip(socks, frames)):
        s.setblocking(True)
        s.sendall(fr)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        bufs[i] = bytearray()
    out: list = [None] * len(socks)
    left = len(socks)
    deadline = time.monotonic() + timeout
    try:
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{left} of {len(socks)} responses missing after {timeout}s")
            for key, _ in sel.select(timeout=min(1.0, remaining)):
                i = key.data
                try:
                    chunk = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise AssertionError(f"connection {i} closed by the broker before its response")
                b = bufs[i]
                b += chunk
                if len(b) >= 4:
                    (size,) = struct.unpack_from(">i", b, 0)
                    if len(b) >= 4 + size:
                        out[i] = resp_cls.decode(bytes(b[4:4 + size]), version=version, header=True)
                        sel.unregister(key.fileobj)
                        left -= 1
    finally:
        sel.close()
    return out


def test_raw_members_flood(ottla_factory):
    """10,000 members join one group; memory stays bounded, another group is unaffected,
    and the members that then vanish are expired."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FLOOD_MEMBERS + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    n = min(FLOOD_MEMBERS, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1000)
    assert n >= 1000, f"open-files limit too low for this test ({resource.getrlimit(resource.RLIMIT_NOFILE)})"
    if n < FLOOD_MEMBERS:
        print(f"NOTE: open-files limit allows only {n} members (wanted {FLOOD_MEMBERS})")
    broker = ottla_factory(name="ottla-flood")  # started after the limit was raised: it inherits it
    find_coordinator(broker, "flood")

    # The bystander: a member of another group, heartbeating every 0.5 s throughout.
    bystander = Member(broker, unique_topic("bystander"), "bystander", session_ms=6000)
    form_group([bystander])
    beats: list[tuple[float, int]] = []
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                code = bystander.heartbeat()
            except Exception as e:  # noqa: BLE001 - recorded and reported
                code = repr(e)
            beats.append((time.monotonic() - t0, code))
            stop.wait(0.5)

    hb = threading.Thread(target=beat, daemon=True)
    hb.start()
    pid = broker.pid
    hwm0 = status_kb(pid)["VmHWM"]
    group = unique_topic("flood")
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((broker.host, broker.port), timeout=IO_TIMEOUT))
        session_ms = rebalance_ms = 6000

        def frames(member_ids):
            out = []
            for i, mid in enumerate(member_ids):
                req = join_request(group, mid, session_ms=session_ms, rebalance_ms=rebalance_ms,
                                   protocols=[("range", subscription(["flood-topic"], b"%d" % i))])
                req.with_header(correlation_id=1, client_id=f"flood-{i}")
                out.append(req.encode(header=True, framed=True))
            return out

        t0 = time.monotonic()
        first = _roundtrip_all(socks, frames([""] * n), JoinGroupResponse, JOIN_V, timeout=120)
        codes = collections.Counter(r.error_code for r in first)
        # This broker keeps Kafka's default group.max.size (unbounded): nobody is refused.
        assert set(codes) == {MEMBER_ID_REQUIRED}, codes
        ids = [r.member_id for r in first]
        assert len(set(ids)) == len(ids) and all(ids), "member ids must be distinct and non-empty"
        second = _roundtrip_all(socks, frames(ids), JoinGroupResponse, JOIN_V,
                                timeout=rebalance_ms / 1000 + 120)
        took = time.monotonic() - t0
        codes2 = collections.Counter(r.error_code for r in second)
        assert set(codes2) == {NONE}, codes2
        gens = {r.generation_id for r in second}
        assert len(gens) == 1, f"members were answered with several generations: {sorted(gens)[:10]}"
        leaders = [r for r in second if r.leader == r.member_id]
        assert len(leaders) == 1, f"{len(leaders)} members were told they lead"
        assert [r.member_id for r in second] == ids, "each member is answered with its own id"
        listed = {m.member_id for m in leaders[0].members}
        assert listed == set(ids), f"the leader was given {len(listed)} members, {n} joined"
        hwm1 = status_kb(pid)["VmHWM"]
        print(f"{len(second)} members joined in {took:.1f}s; broker VmHWM {hwm0} kB -> {hwm1} kB")
        assert hwm1 - hwm0 <= FLOOD_MEMORY_BUDGET_KB, \
            f"broker peak RSS grew by {(hwm1 - hwm0) // 1024} MB for {n} members"
    finally:
        for s in socks:
            s.close()

    # All those members vanish without a word: they are expired and the group empties.
    c = Conn(broker, client_id="flood-observer")
    try:
        def empty():
            d = describe(c, group)
            return d if d.group_state in ("Empty", "Dead") and not d.members else None
        wait_for(empty, 60, "the flooded group to be emptied by session expiry", interval=1.0)
    finally:
        c.close()
        stop.set()
        hb.join(timeout=10)
    bad = [(lat, code) for lat, code in beats if code != NONE]
    slow = max(lat for lat, _ in beats)
    assert not bad, f"bystander heartbeats failed: {bad[:10]}"
    assert slow < 3.0, f"a bystander heartbeat took {slow:.1f}s"
    assert len(beats) >= 10, beats
    d = describe(bystander.conn, bystander.group)
    assert d.group_state == "Stable" and [m.member_id for m in d.members] == [bystander.member_id], d
    bystander.close()
    assert api_versions_v0(broker.host, broker.port)
