"""The KIP-848 consumer group protocol (``group.protocol=consumer``) with real clients.

Issue 14: "Java KafkaConsumer with group.protocol=consumer: 3 consumers over a 12-partition topic,
members join and leave one by one while records flow; every record consumed once per committed
offset, no partition owned by two members at any moment (checked from the members' own
revocation/assignment callbacks), and assignments balanced. confluent-kafka with
group.protocol=consumer does the same. Regex subscription picks up a topic created after the group
formed."

Java (``java/src/OttlaConsumerProtocol.java``, kafka-clients 4.1.0, compiled by conftest's
``java_program`` fixture; the program prints a ``MISMATCH:`` line for every difference from Kafka's
behaviour and exits 1 if there was any, 2 if a call failed outright):

* ``consume uniform`` / ``consume range``: a producer thread releases a fifth of the records at
  each step while three members join one after another and leave one by one (``close()``);
  exactly once (members commit after every poll and in ``onPartitionsRevoked``), one owner per
  partition at every callback, the first member keeps 6 of its 12 partitions when the second
  joins (incremental), balanced 4/4/4, 6/6, 12 once settled; ``describeConsumerGroups`` (type
  CONSUMER, Stable, assignor, epochs, member ids, assignment = target assignment),
  ``listGroups`` type and state filters, committed offsets = log end offsets, Empty at the end.
* ``regex``: ``subscribe(SubscriptionPattern)`` (resolved by the broker) and
  ``subscribe(java.util.regex.Pattern)`` (resolved by the client) pick up a matching topic
  created after the group formed, keep what they own, never get a topic that only contains a
  match (full-match semantics).
* ``describe``: a consumer and a classic group in one ``describeConsumerGroups``, ``listGroups``
  type filters, admin refusals while a member is active and success once Empty, a member starting
  at reset offsets, the offline upgrade (classic -> consumer) and downgrade of an empty group
  keeping its committed offsets.
* ``migrate cooperative-sticky`` / ``migrate range``: online migration (issue 14: "Migration from
  classic to consumer and back with committed offsets kept") of a running group while a producer
  writes throughout: three ``group.protocol=classic`` members (the given assignor) are closed one
  at a time and replaced by ``group.protocol=consumer`` members (rolling upgrade), then those by
  classic members again (rolling downgrade). The group is CONSUMER from the moment the first
  consumer-protocol member has joined, with the classic members described as such
  (``MemberDescription.upgraded()`` false, the others true), and CLASSIC again once the last
  consumer-protocol member has left, when the classic members rebalance among themselves (new
  generation, their own assignor). Replacements run with ``auto.offset.reset=none`` and must start
  every partition they are given at the group's last committed offset; one owner per partition at
  every callback, no partition lost; once settled: balanced, epochs = the clients' generations,
  committed offsets = what the members committed, ``listGroups`` by type; at the end every record
  exactly once and committed = log end.

confluent-kafka 2.16.1 (librdkafka 2.16) does the same in one process: three ``Consumer`` objects
polled round-robin from the test's thread with a ``Producer`` feeding records in between, the
ownership table updated from ``on_assign`` / ``on_revoke`` / ``on_lost``; a ``^prefix.*`` regex
subscription (librdkafka sends it to the broker, RE2/J full match) picking up a later topic; and
``describe_consumer_groups`` / ``list_consumer_groups`` reporting the group type (CONSUMER vs
CLASSIC) and the target assignment, both exposed since confluent-kafka 2.10.
``test_confluent_online_migration`` is the rolling migration above with librdkafka:
``group.protocol=classic`` with cooperative-sticky, then ``group.protocol=consumer``, then classic
again (librdkafka exposes neither the member type nor the generation: the group type, the assignor
and whether members have a target assignment are checked instead).

The broker runs with ``group.consumer.heartbeat.interval.ms=1000`` (and the minimum lowered to
match, as Kafka validates) so rebalances take seconds, not the default 5 s heartbeats; nothing
asserts how fast anything happens: waits have generous deadlines and only bound the run.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupType, KafkaError, KafkaException,
                             Producer, TopicPartition)

from conftest import NODE_ID, ck_admin, ck_create_topic, ck_group_offsets, run_java, unique_topic

MAIN_CLASS = "OttlaConsumerProtocol"
PARTITIONS = 12
RECORDS = int(os.environ.get("OTTLA_KIP848_RECORDS", "6000"))
JAVA_RECORDS = int(os.environ.get("OTTLA_KIP848_JAVA_RECORDS", "12000"))
# Kafka's group.consumer.heartbeat.interval.ms must lie within [min, max]; the minimum defaults to 5 s.
HEARTBEAT_OVERRIDES = {
    "group.consumer.heartbeat.interval.ms": 1000,
    "group.consumer.min.heartbeat.interval.ms": 1000,
}
CONSUMER_GROUP_HEARTBEAT = 68
CONSUMER_GROUP_DESCRIBE = 69
QUIET_S = 3.0  # no rebalance callback for this long (three heartbeats) before checking a settled group
SETTLE_TIMEOUT_S = 60.0
Failed = pytest.fail.Exception


@pytest.fixture
def broker(ottla_factory):
    return ottla_factory(overrides=HEARTBEAT_OVERRIDES, name="ottla")


def require_consumer_protocol(b) -> None:
    """Fail at once, and say why, when the broker's ApiVersions (v0, read at start-up) lacks the
    protocol. Without it the Java consumer fails with UnsupportedVersionException ("The cluster
    does not support the new CONSUMER group protocol"), but librdkafka 2.16 reports nothing and
    never gets an assignment, so its tests would only time out."""
    missing = [f"{name} (API {key})" for key, name in ((CONSUMER_GROUP_HEARTBEAT, "ConsumerGroupHeartbeat"),
                                                       (CONSUMER_GROUP_DESCRIBE, "ConsumerGroupDescribe"))
               if key not in b.api_versions]
    assert not missing, (f"the broker does not advertise {' and '.join(missing)} in ApiVersions: the KIP-848 "
                         f"consumer group protocol is not supported (advertised keys: {sorted(b.api_versions)})")


# ----------------------------------------------------------------------------- Java


def _run(java_program, broker, *args: str, timeout: int = 300) -> str:
    require_consumer_protocol(broker)
    return run_java(java_program, MAIN_CLASS, broker, *args, timeout=timeout, heap="512m")


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_java_consumer_protocol_consume(java_program, broker, assignor):
    _run(java_program, broker, "consume", assignor, str(JAVA_RECORDS))


@pytest.mark.parametrize("classic_assignor", ["cooperative-sticky", "range"])
def test_java_online_migration(java_program, broker, classic_assignor):
    """Rolling upgrade of a running classic group to the consumer protocol and back (KIP-848 online
    migration, ``group.consumer.migration.policy`` bidirectional by default), records flowing."""
    _run(java_program, broker, "migrate", classic_assignor)


def test_java_consumer_protocol_regex(java_program, broker):
    _run(java_program, broker, "regex")


def test_java_consumer_protocol_describe(java_program, broker):
    _run(java_program, broker, "describe")


# ----------------------------------------------------------------------------- confluent-kafka members


class Table:
    """Which member owns each (topic, partition), from the members' callbacks only."""

    def __init__(self):
        self.owner: dict[tuple[str, int], str] = {}
        self.changes = 0
        self.last_change = time.monotonic()
        self.problems: list[str] = []
        self.fatal: list[str] = []  # client errors after which waiting is pointless
        # (topic, partition) -> the offset of the latest successful commit of any member
        self.committed: dict[tuple[str, int], int] = {}

    def changed(self):
        self.changes += 1
        self.last_change = time.monotonic()


FAIL_AT_ONCE = {KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION,
                KafkaError.GROUP_AUTHORIZATION_FAILED}


class Member:
    """One group.protocol=consumer Consumer, polled by the test's thread. Commits synchronously
    after every ``commit_every`` polls and, for the partitions taken away, in on_revoke."""

    def __init__(self, name: str, bootstrap: str, group: str, table: Table, subscription: list[str],
                 assignor: str | None = None, commit_every: int = 1, protocol: str = "consumer",
                 reset: str = "earliest", check_resume: bool = False):
        self.name = name
        self.protocol = protocol
        # check_resume: the first record of every partition it is given must be at the group's
        # last committed offset (Table.committed, 0 if none)
        self.check_resume = check_resume
        self.resume_at: dict[tuple[str, int], int] = {}
        self.resumes: list[tuple[int, int]] = []
        self.commit_every = commit_every
        self.polls = 0
        self.table = table
        conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": protocol,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": reset,
            "fetch.wait.max.ms": 100,
            "error_cb": self._error,
        }
        if protocol == "classic":
            # the classic protocol's own settings (refused with group.protocol=consumer)
            conf["partition.assignment.strategy"] = assignor or "range,roundrobin"
            conf["heartbeat.interval.ms"] = 1000
            assignor = None
        if assignor is not None:
            conf["group.remote.assignor"] = assignor
        self.owned: set[tuple[str, int]] = set()
        self.pending: dict[tuple[str, int], int] = {}  # next offset to commit
        self.deliveries: list[tuple[str, int, int, bytes | None]] = []
        self.callbacks: list[tuple[str, list[tuple[str, int]], bool]] = []
        self.errors: list[str] = []
        self.commit_failures: list[str] = []
        self.revoke_commits = 0  # commits in on_revoke that carried uncommitted records
        self.closing = False
        self.closed = False
        self.c = Consumer(conf)
        self.c.subscribe(subscription, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _error(self, err: KafkaError):
        self.errors.append(f"{err.name()}: {err.str()}")
        if err.code() in FAIL_AT_ONCE or err.fatal():
            self.table.fatal.append(f"{self.name}: client error {err}")

    # -- callbacks ---------------------------------------------------------------------------

    def _on_assign(self, consumer, partitions):
        parts = sorted((tp.topic, tp.partition) for tp in partitions)
        for key in parts:
            prev = self.table.owner.get(key)
            if prev is not None:
                self.table.problems.append(
                    f"{self.name}: on_assign({key}) while {'it already owns it' if prev == self.name else prev + ' still owns it'}")
            self.table.owner[key] = self.name
            self.owned.add(key)
            if self.check_resume:
                self.resume_at[key] = self.table.committed.get(key, 0)
        self.callbacks.append(("assign", parts, self.closing))
        if parts:
            self.table.changed()

    def _on_revoke(self, consumer, partitions):
        parts = sorted((tp.topic, tp.partition) for tp in partitions)
        if not parts:
            return
        if not self._commit([k for k in parts if k in self.pending], "revoke"):
            self.table.problems.append(f"{self.name}: commit in on_revoke failed: {self.commit_failures[-1]}")
        self._release("revoke", parts)

    def _on_lost(self, consumer, partitions):
        parts = sorted((tp.topic, tp.partition) for tp in partitions)
        if not parts:
            return
        self.table.problems.append(f"{self.name}: partitions lost {parts} (the member was fenced)")
        self._release("lost", parts)

    def _release(self, kind, parts):
        for key in parts:
            self.pending.pop(key, None)
            self.resume_at.pop(key, None)
            if key not in self.owned:
                self.table.problems.append(f"{self.name}: {kind} of {key}, which it did not own")
            self.owned.discard(key)
            if self.table.owner.get(key) == self.name:
                del self.table.owner[key]
        self.callbacks.append((kind, parts, self.closing))
        self.table.changed()

    # -- polling -----------------------------------------------------------------------------

    def _commit(self, keys, why) -> bool:
        offs = {k: self.pending[k] for k in keys if k in self.pending}
        if not offs:
            return True
        try:
            res = self.c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offs.items()], asynchronous=False)
        except KafkaException as e:
            self.commit_failures.append(f"{why} {sorted(offs.items())}: {e.args[0]}")
            return False
        bad = [f"{tp.topic}-{tp.partition}: {tp.error}" for tp in res if tp.error is not None]
        if bad:
            self.commit_failures.append(f"{why}: {bad}")
            return False
        self.table.committed.update(offs)
        for k, o in offs.items():
            if self.pending.get(k) == o:
                del self.pending[k]
        if why == "revoke":
            self.revoke_commits += 1
        return True

    def poll(self, timeout: float = 0.05):
        for m in self.c.consume(num_messages=200, timeout=timeout):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._AUTO_OFFSET_RESET:
                    # auto.offset.reset=error: the partition had no committed offset
                    self.table.problems.append(f"{self.name}: {err.str()} (no committed offset to start from)")
                if err.code() != KafkaError._PARTITION_EOF:
                    self.errors.append(f"{err.name()}: {err.str()}")
                    if err.code() in FAIL_AT_ONCE or err.fatal():
                        raise Failed(f"{self.name}: consumer error {err} -- does the broker support "
                                     f"group.protocol=consumer (ConsumerGroupHeartbeat, API 68)?")
                continue
            key = (m.topic(), m.partition())
            if key not in self.owned:
                self.table.problems.append(f"{self.name} got {key}@{m.offset()} while owning {sorted(self.owned)}")
            resume = self.resume_at.pop(key, None)
            if resume is not None:
                self.resumes.append((m.partition(), m.offset()))
                if m.offset() != resume:
                    self.table.problems.append(f"{self.name} started {key} at offset {m.offset()}, but the group's "
                                               f"last commit for it was {resume}")
            self.deliveries.append((m.topic(), m.partition(), m.offset(), m.value()))
            self.pending[key] = m.offset() + 1
        self.polls += 1
        if self.pending and self.polls % self.commit_every == 0:
            self._commit(list(self.pending), "batch")

    def close(self):
        self.closing = True
        self.c.close()  # on_revoke (commits), then the leave heartbeat (member epoch -1)
        self.closed = True

    def count_from(self, topic: str) -> int:
        return sum(1 for d in self.deliveries if d[0] == topic)


class Group:
    """Members of one group plus a producer feeding numbered records, all driven from this thread."""

    def __init__(self, broker, topic: str, group: str, total: int = 0):
        self.broker = broker
        self.topic = topic
        self.group = group
        self.total = total
        self.table = Table()
        self.members: list[Member] = []
        self.active: list[Member] = []
        self.admin = ck_admin(broker.bootstrap)
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
        self.acked: dict[int, tuple[int, int]] = {}
        self.produce_errors: list[str] = []
        self.allowed = 0
        self.next = 0

    def join(self, name: str, subscription: list[str], assignor: str | None = None, commit_every: int = 1,
             **kw) -> Member:
        m = Member(name, self.broker.bootstrap, self.group, self.table, subscription, assignor, commit_every, **kw)
        self.members.append(m)
        self.active.append(m)
        return m

    def leave(self, m: Member):
        self.active.remove(m)
        m.close()

    def _delivered(self, i):
        def cb(err, msg):
            if err is not None:
                self.produce_errors.append(f"record {i}: {err}")
            else:
                self.acked[i] = (msg.partition(), msg.offset())
        return cb

    def step(self):
        end = min(self.allowed, self.total, self.next + 50)
        for i in range(self.next, end):
            self.producer.produce(self.topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % PARTITIONS,
                                  on_delivery=self._delivered(i))
        self.next = max(self.next, end)
        self.producer.poll(0)
        for m in list(self.active):
            m.poll()
        if self.table.fatal:
            raise Failed("; ".join(self.table.fatal[:5]) + " -- does the broker support group.protocol=consumer "
                         "(ConsumerGroupHeartbeat, API 68)?")

    def state(self) -> str:
        return "; ".join(f"{m.name}: {len(m.deliveries)} records, owns {sorted(m.owned)}, errors {m.errors[-3:]}"
                         for m in self.active) + f"; problems {self.table.problems[:5]}"

    def run_until(self, cond, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s; {self.state()}")
            self.step()

    def committed_at(self, ends: dict[int, int]) -> bool:
        """Whether the group's committed offsets (Admin OffsetFetch) are ``ends``; asks at most
        every half second."""
        now = time.monotonic()
        if now < getattr(self, "_next_offsets_check", 0):
            return False
        self._next_offsets_check = now + 0.5
        return ck_group_offsets(self.broker.bootstrap, self.group) == ends

    def describe(self):
        return self.admin.describe_consumer_groups([self.group], request_timeout=30)[self.group].result(timeout=60)

    def settle(self, all_parts: set[tuple[str, int]], label: str):
        """Until the callbacks have been quiet for QUIET_S, the active members own ``all_parts``
        between them, and describe_consumer_groups shows the group Stable with exactly these
        members (by client id) holding what their callbacks say, with no callback in between."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        last = "nothing checked"
        while time.monotonic() < deadline:
            self.step()
            assert not self.table.problems, f"{label}: " + "\n".join(self.table.problems[:20])
            changes = self.table.changes
            owned = {m.name: set(m.owned) for m in self.active}
            union = set().union(*owned.values())
            quiet = time.monotonic() - self.table.last_change
            if quiet < QUIET_S:
                last = f"last callback {quiet:.1f} s ago; owned {owned}"
                continue
            if union != all_parts:
                last = f"the members own {owned}, not all of {sorted(all_parts)}"
                continue
            d = self.describe()
            described = {md.client_id: {(tp.topic, tp.partition) for tp in md.assignment.topic_partitions}
                         for md in d.members}
            if d.state == ConsumerGroupState.STABLE and described == owned and self.table.changes == changes:
                return d
            last = f"describe_consumer_groups: {d.state} {described}; callbacks: {owned}"
        raise AssertionError(f"{label}: the group did not settle within {SETTLE_TIMEOUT_S:.0f} s: {last}; {self.state()}")

    def close_all(self):
        for m in self.members:
            if not m.closed:
                try:
                    m.close()
                except Exception:  # noqa: BLE001 - teardown after a failure
                    pass


def check_description(d, active: list[Member], assignor: str, label: str):
    assert d.type == ConsumerGroupType.CONSUMER, f"{label}: describe_consumer_groups type {d.type}"
    assert d.state == ConsumerGroupState.STABLE, f"{label}: state {d.state}"
    assert d.partition_assignor == assignor, f"{label}: partition_assignor {d.partition_assignor!r}, expected {assignor!r}"
    assert not d.is_simple_consumer_group, f"{label}: reported as a simple consumer group"
    assert d.coordinator.id == NODE_ID, f"{label}: coordinator {d.coordinator}"
    by_client = {md.client_id: md for md in d.members}
    assert set(by_client) == {m.name for m in active}, f"{label}: members {sorted(by_client)}"
    for m in active:
        md = by_client[m.name]
        assert md.member_id == m.c.memberid(), f"{label}: {m.name}'s member id {md.member_id!r}, the client says {m.c.memberid()!r}"
        got = {(tp.topic, tp.partition) for tp in md.assignment.topic_partitions}
        assert got == m.owned, f"{label}: {m.name} is assigned {sorted(got)}, its callbacks say {sorted(m.owned)}"
        assert md.target_assignment is not None, f"{label}: {m.name} has no target assignment"
        target = {(tp.topic, tp.partition) for tp in md.target_assignment.topic_partitions}
        assert target == got, f"{label}: {m.name}'s target assignment {sorted(target)} in a Stable group, assignment {sorted(got)}"


def check_balanced(active: list[Member], label: str):
    quota = PARTITIONS // len(active)
    sizes = {m.name: len(m.owned) for m in active}
    assert all(n == quota for n in sizes.values()), f"{label}: not balanced ({quota} each expected): {sizes}"


def group_listing(admin, group: str, **kw):
    res = admin.list_consumer_groups(request_timeout=30, **kw).result(timeout=60)
    assert not res.errors, res.errors
    return {g.group_id: g for g in res.valid}.get(group)


def check_listings(admin, group: str, state: ConsumerGroupState, label: str):
    g = group_listing(admin, group, types={ConsumerGroupType.CONSUMER})
    assert g is not None, f"{label}: list_consumer_groups(types=CONSUMER) misses {group}"
    assert g.type == ConsumerGroupType.CONSUMER, f"{label}: listed type {g.type}"
    assert g.state == state, f"{label}: listed state {g.state}, expected {state}"
    assert not g.is_simple_consumer_group, f"{label}: listed as a simple consumer group"
    assert group_listing(admin, group, types={ConsumerGroupType.CLASSIC}) is None, \
        f"{label}: list_consumer_groups(types=CLASSIC) lists the consumer group"
    assert group_listing(admin, group, states={state}) is not None, f"{label}: list_consumer_groups(states={state}) misses it"


# ----------------------------------------------------------------------------- confluent-kafka tests


@pytest.mark.parametrize("assignor", [None, "range"], ids=["default-uniform", "range"])
def test_confluent_consumer_protocol_three_members(broker, assignor):
    """Members join one after another and leave one by one while records flow: every record
    delivered exactly once, one owner per partition at every callback, balanced 4/4/4, 6/6, 12,
    the group described as a Stable CONSUMER group with the chosen assignor, committed offsets at
    the log end, Empty (still CONSUMER) once everyone left."""
    require_consumer_protocol(broker)
    expected_assignor = assignor or "uniform"  # Kafka's group.consumer.assignors default: uniform,range
    topic = unique_topic("kip848-ck")
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    all_parts = {(topic, p) for p in range(PARTITIONS)}
    total = RECORDS
    ends = {p: len(range(p, total, PARTITIONS)) for p in range(PARTITIONS)}
    g = Group(broker, topic, f"ck-kip848-{topic}", total)
    try:
        g.allowed = total // 5
        m0 = g.join("m0", [topic], assignor)
        g.run_until(lambda: len(m0.deliveries) > 0, 60, "m0 consumes")
        assert not g.table.problems, "\n".join(g.table.problems)

        g.allowed = 2 * total // 5
        # m1 commits every 10th poll only: partitions taken from it usually hold records its
        # on_revoke must commit
        m1 = g.join("m1", [topic], assignor, commit_every=10)
        g.run_until(lambda: len(m1.deliveries) > 0, 60, "m1 gets partitions and consumes")

        g.allowed = 3 * total // 5
        m2 = g.join("m2", [topic], assignor)
        d = g.settle(all_parts, "three members")
        check_balanced(g.active, "three members")
        check_description(d, g.active, expected_assignor, "three members")
        check_listings(g.admin, g.group, ConsumerGroupState.STABLE, "three members")

        g.allowed = 4 * total // 5
        g.leave(m0)
        d = g.settle(all_parts, "m0 left")
        check_balanced(g.active, "m0 left")
        check_description(d, g.active, expected_assignor, "m0 left")

        g.allowed = total
        g.leave(m1)
        d = g.settle(all_parts, "m1 left")
        check_balanced(g.active, "m1 left")
        check_description(d, g.active, expected_assignor, "m1 left")

        g.run_until(lambda: g.next >= total, 60, "the producer sends every record")
        assert g.producer.flush(60) == 0, "records still undelivered after 60 s"
        assert not g.produce_errors, g.produce_errors[:5]
        assert len(g.acked) == total
        # record i at offset i // 12 of partition i % 12 (an expectation from what was sent)
        misplaced = [(i, g.acked[i]) for i in range(total) if g.acked[i] != (i % PARTITIONS, i // PARTITIONS)]
        assert not misplaced, f"{len(misplaced)} records not at their expected offset, first: {misplaced[:5]}"
        g.run_until(lambda: len({d[1:3] for m in g.members for d in m.deliveries}) >= total, 60,
                    "every record consumed")
        g.run_until(lambda: g.committed_at(ends), 30, "m2's commits to reach the end offsets")
        check_listings(g.admin, g.group, ConsumerGroupState.STABLE, "m2 alone")
        g.leave(m2)
    finally:
        g.close_all()

    for m in g.members:
        print(f"{m.name}: {len(m.deliveries)} records, {m.revoke_commits} commits in on_revoke, "
              f"commit failures {m.commit_failures[:3]}, callbacks {[(k, len(p), c) for k, p, c in m.callbacks]}")
    assert not g.table.problems, "\n".join(g.table.problems[:30])
    # exactly once, with the right values
    seen: dict[tuple[int, int], list[str]] = {}
    values: dict[tuple[int, int], bytes | None] = {}
    for m in g.members:
        for t, p, o, v in m.deliveries:
            seen.setdefault((p, o), []).append(m.name)
            values[(p, o)] = v
    expected = {(i % PARTITIONS, i // PARTITIONS): b"v%d" % i for i in range(total)}
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    dups = sorted((k, w) for k, w in seen.items() if len(w) > 1)
    wrong = sorted((k, values[k]) for k in expected if k in values and values[k] != expected[k])
    assert not missing, f"{len(missing)} records never delivered, first: {missing[:10]}"
    assert not extra, f"{len(extra)} deliveries beyond the produced records: {extra[:10]}"
    assert not dups, (f"{len(dups)} records delivered more than once (members commit before giving a partition "
                      f"up), first: {dups[:10]}; commit failures: {[(m.name, m.commit_failures[:3]) for m in g.members]}")
    assert not wrong, f"{len(wrong)} records with the wrong value, first: {wrong[:5]}"
    # m0 was alone at first (all 12), and gave up 6 of them, not all, when m1 joined
    first_assign = next((parts for kind, parts, _ in m0.callbacks if kind == "assign" and parts), None)
    assert first_assign == sorted(all_parts), f"m0's first assignment: {first_assign}"
    first_revoke = next(((parts, closing) for kind, parts, closing in m0.callbacks if kind == "revoke"), None)
    assert first_revoke is not None and not first_revoke[1] and len(first_revoke[0]) == PARTITIONS // 2, \
        f"m0's first revocation (m1 joining) should give up {PARTITIONS // 2} partitions and keep the rest: {first_revoke}"

    assert ck_group_offsets(broker.bootstrap, g.group) == ends
    deadline = time.monotonic() + 15
    d = g.describe()
    while d.state != ConsumerGroupState.EMPTY and time.monotonic() < deadline:
        time.sleep(0.2)
        d = g.describe()
    assert d.state == ConsumerGroupState.EMPTY and d.members == [], (d.state, d.members)
    assert d.type == ConsumerGroupType.CONSUMER, f"the emptied group's type {d.type}"
    check_listings(g.admin, g.group, ConsumerGroupState.EMPTY, "all members left")


def _produce_each(bootstrap: str, topic: str, partitions: int, per_partition: int):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(per_partition):
        for q in range(partitions):
            p.produce(topic, value=f"{topic}/{q}/{i}".encode(), partition=q,
                      on_delivery=lambda err, msg: acked.append((err, msg.partition(), msg.offset())))
    assert p.flush(60) == 0
    assert all(err is None for err, _, _ in acked), [a for a in acked if a[0] is not None][:5]
    assert sorted((q, o) for _, q, o in acked) == sorted((q, i) for q in range(partitions) for i in range(per_partition))


def test_confluent_consumer_protocol_regex(broker):
    """A ``^prefix.*`` subscription (resolved by the broker) picks up a matching topic created after
    the group formed, keeps the partitions it had, and never gets a topic that merely contains a
    match."""
    require_consumer_protocol(broker)
    prefix = f"rx-{uuid.uuid4().hex[:8]}-"
    a, b, decoy = prefix + "a", prefix + "b", "x" + prefix + "a"
    ck_create_topic(broker.bootstrap, a, partitions=3)
    ck_create_topic(broker.bootstrap, decoy, partitions=1)
    _produce_each(broker.bootstrap, a, 3, 10)
    _produce_each(broker.bootstrap, decoy, 1, 10)
    g = Group(broker, a, f"ck-kip848-regex-{prefix}")
    try:
        m = g.join("rx", [f"^{prefix}.*"])
        g.run_until(lambda: m.count_from(a) >= 30, 60, f"the member reads the 30 records of {a}")
        d = g.settle({(a, p) for p in range(3)}, f"before {b} exists")
        check_description(d, g.active, "uniform", f"before {b} exists")

        ck_create_topic(broker.bootstrap, b, partitions=2)
        _produce_each(broker.bootstrap, b, 2, 10)
        g.run_until(lambda: m.count_from(b) >= 20, 120, f"the member reads the 20 records of {b}, created after the group formed")
        d = g.settle({(a, p) for p in range(3)} | {(b, p) for p in range(2)}, f"after {b} was created")
        check_description(d, g.active, "uniform", f"after {b} was created")
        g.leave(m)
    finally:
        g.close_all()

    assert not g.table.problems, "\n".join(g.table.problems[:30])
    for kind, parts, closing in m.callbacks:
        assert not (kind == "revoke" and not closing), f"{parts} revoked while the single member's subscription only grew"
        assert all(t != decoy for t, _ in parts), f"{decoy} (not a full match of ^{prefix}.*) was assigned: {m.callbacks}"
    got = sorted((t, p, o) for t, p, o, _ in m.deliveries)
    want = sorted([(a, p, o) for p in range(3) for o in range(10)] + [(b, p, o) for p in range(2) for o in range(10)])
    assert got == want, f"delivered {len(got)} records, expected each of {len(want)} once: " \
                        f"missing {sorted(set(want) - set(got))[:10]}, extra {[x for x in got if x not in want][:10]}"
    assert all(v == f"{t}/{p}/{o}".encode() for t, p, o, v in m.deliveries)


def test_confluent_describe_group_types(broker):
    """describe_consumer_groups reports a consumer-protocol group as CONSUMER with a target
    assignment and a classic group as CLASSIC without one (both in one call), and
    list_consumer_groups filters by type."""
    require_consumer_protocol(broker)
    topic = unique_topic("kip848-types")
    ck_create_topic(broker.bootstrap, topic, partitions=3)
    _produce_each(broker.bootstrap, topic, 3, 10)
    suffix = uuid.uuid4().hex[:8]
    new_group, classic_group = f"ck-kip848-new-{suffix}", f"ck-kip848-classic-{suffix}"
    g = Group(broker, topic, new_group)
    classic = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": classic_group, "client.id": "classic",
                        "enable.auto.commit": False, "auto.offset.reset": "earliest",
                        "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    try:
        m = g.join("new", [topic])
        classic.subscribe([topic])
        classic_got = []

        def both_read():
            for msg in classic.consume(num_messages=100, timeout=0.05):
                assert msg.error() is None, msg.error()
                classic_got.append(msg.offset())
            return m.count_from(topic) >= 30 and len(classic_got) >= 30

        g.run_until(both_read, 60, "both groups read the 30 records")
        g.settle({(topic, p) for p in range(3)}, "consumer group")
        admin = g.admin
        deadline = time.monotonic() + 30
        while True:
            fs = admin.describe_consumer_groups([new_group, classic_group], request_timeout=30)
            dn, dc = fs[new_group].result(timeout=60), fs[classic_group].result(timeout=60)
            if dn.state == dc.state == ConsumerGroupState.STABLE or time.monotonic() > deadline:
                break
            g.step()
            classic.consume(num_messages=100, timeout=0.05)
        assert (dn.state, dc.state) == (ConsumerGroupState.STABLE, ConsumerGroupState.STABLE), (dn.state, dc.state)
        assert dn.type == ConsumerGroupType.CONSUMER, f"consumer-protocol group described as {dn.type}"
        assert dc.type == ConsumerGroupType.CLASSIC, f"classic group described as {dc.type}"
        assert dn.partition_assignor == "uniform", dn.partition_assignor
        assert dc.partition_assignor == "range", dc.partition_assignor  # librdkafka's default list: range,roundrobin
        [mn] = dn.members
        assert mn.member_id == m.c.memberid()
        assert mn.target_assignment is not None, "the consumer group's member has no target assignment"
        assert {(tp.topic, tp.partition) for tp in mn.target_assignment.topic_partitions} == \
               {(tp.topic, tp.partition) for tp in mn.assignment.topic_partitions} == {(topic, p) for p in range(3)}
        [mc] = dc.members
        assert mc.target_assignment is None, f"a classic member has a target assignment: {mc.target_assignment}"
        assert {(tp.topic, tp.partition) for tp in mc.assignment.topic_partitions} == {(topic, p) for p in range(3)}

        listed_new = group_listing(admin, new_group, types={ConsumerGroupType.CONSUMER})
        listed_classic = group_listing(admin, classic_group, types={ConsumerGroupType.CLASSIC})
        assert listed_new is not None and listed_new.type == ConsumerGroupType.CONSUMER, listed_new
        assert listed_classic is not None and listed_classic.type == ConsumerGroupType.CLASSIC, listed_classic
        assert group_listing(admin, classic_group, types={ConsumerGroupType.CONSUMER}) is None
        assert group_listing(admin, new_group, types={ConsumerGroupType.CLASSIC}) is None
        g.leave(m)
    finally:
        g.close_all()
        classic.close()
    assert not g.table.problems, "\n".join(g.table.problems[:30])


# ----------------------------------------------------------------------------- online migration (confluent-kafka)


class Streaming(Group):
    """A Group whose producer writes record i (value b"v%d" % i) to partition i % 12 at about RATE
    records a second, from the start until ``stop_stream``."""

    RATE = 300

    def __init__(self, broker, topic: str, group: str):
        super().__init__(broker, topic, group, total=10**9)
        self.t0 = time.monotonic()

    def step(self):
        if self.total > self.next:
            self.allowed = int((time.monotonic() - self.t0) * self.RATE)
        super().step()

    def stop_stream(self):
        self.total = self.next


def _expected_type(active: list[Member]):
    return (ConsumerGroupType.CONSUMER if any(m.protocol == "consumer" for m in active)
            else ConsumerGroupType.CLASSIC)


def _migration_settled(g: Streaming, all_parts, classic_assignor: str, label: str):
    """Until settled; then the description against the members' own view, balance, the committed
    offsets and the listing by type."""
    d = g.settle(all_parts, label)
    kind = _expected_type(g.active)
    print(f"{label}: {d.type} {d.state} assignor {d.partition_assignor}, members "
          f"{sorted((md.client_id, len(md.assignment.topic_partitions)) for md in d.members)}")
    assert d.type == kind, f"{label}: described as {d.type} with members {[(m.name, m.protocol) for m in g.active]}"
    assert d.coordinator.id == NODE_ID, f"{label}: coordinator {d.coordinator}"
    by_client = {md.client_id: md for md in d.members}
    for m in g.active:
        md = by_client[m.name]
        assert md.member_id == m.c.memberid(), f"{label}: {m.name}'s member id {md.member_id!r}, the client says {m.c.memberid()!r}"
        if kind == ConsumerGroupType.CONSUMER:
            assert md.target_assignment is not None, f"{label}: {m.name} ({m.protocol}) has no target assignment"
            target = {(tp.topic, tp.partition) for tp in md.target_assignment.topic_partitions}
            assert target == m.owned, f"{label}: {m.name}'s target assignment {sorted(target)} in a Stable group, owns {sorted(m.owned)}"
        else:
            assert md.target_assignment is None, f"{label}: a classic group's member {m.name} has a target assignment"
    want_assignor = "uniform" if kind == ConsumerGroupType.CONSUMER else classic_assignor
    assert d.partition_assignor == want_assignor, f"{label}: partition_assignor {d.partition_assignor!r}, expected {want_assignor!r}"
    check_balanced(g.active, label)
    # the members commit synchronously on this thread: nothing is in flight while we ask
    committed = ck_group_offsets(g.broker.bootstrap, g.group)
    mine = {p: o for (t, p), o in g.table.committed.items()}
    assert committed == mine, f"{label}: the group's committed offsets {committed}, the members committed {mine}"
    other = ConsumerGroupType.CLASSIC if kind == ConsumerGroupType.CONSUMER else ConsumerGroupType.CONSUMER
    assert group_listing(g.admin, g.group, types={kind}) is not None, f"{label}: list_consumer_groups(types={kind}) misses it"
    assert group_listing(g.admin, g.group, types={other}) is None, f"{label}: list_consumer_groups(types={other}) lists it"


def test_confluent_online_migration(broker):
    """librdkafka: three group.protocol=classic members (cooperative-sticky) replaced one by one by
    group.protocol=consumer members while records flow, then back: the group becomes CONSUMER as
    soon as the first consumer-protocol member is in and CLASSIC again once the last one left;
    every replacement (auto.offset.reset=error) starts at the group's committed offsets; one owner
    per partition at every callback; every record exactly once; committed = log end."""
    require_consumer_protocol(broker)
    classic_assignor = "cooperative-sticky"
    topic = unique_topic("kip848-migrate-ck")
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    all_parts = {(topic, p) for p in range(PARTITIONS)}
    g = Streaming(broker, topic, f"ck-kip848-migrate-{topic}")
    count = iter(range(100))

    def start(protocol: str, reset: str) -> Member:
        return g.join(f"{protocol}-{next(count)}", [topic], classic_assignor if protocol == "classic" else None,
                      commit_every=5, protocol=protocol, reset=reset, check_resume=True)

    try:
        for _ in range(3):
            start("classic", "earliest")
        _migration_settled(g, all_parts, classic_assignor, "three classic members")
        for phase, protocol in (("upgrade", "consumer"), ("downgrade", "classic")):
            for step in range(1, 4):
                label = f"{phase} {step}/3"
                old = g.active[0]
                owned_before = {m.name: set(m.owned) for m in g.active}  # settled at the end of the previous step
                g.leave(old)
                rest = list(g.active)
                type_without = _expected_type(rest)
                downgraded = type_without == ConsumerGroupType.CLASSIC and old.protocol == "consumer"
                if downgraded:
                    deadline = time.monotonic() + 30
                    while g.describe().type != ConsumerGroupType.CLASSIC and time.monotonic() < deadline:
                        g.step()
                    assert g.describe().type == ConsumerGroupType.CLASSIC, \
                        f"{label}: still {g.describe().type} after the last consumer-protocol member {old.name} left"
                # the group the others form, when it is classic, of both kinds, or the last member of
                # old's kind left
                if (type_without == ConsumerGroupType.CLASSIC or {m.protocol for m in rest} == {"classic", "consumer"}
                        or old.protocol != rest[0].protocol):
                    _migration_settled(g, all_parts, classic_assignor, f"{label}, {old.name} gone")
                if downgraded:
                    # cooperative-sticky classic members keep what they owned in the consumer group
                    for m in rest:
                        assert owned_before[m.name] <= m.owned, \
                            f"{label}: {m.name} owns {sorted(m.owned)} in the classic group, not all of {sorted(owned_before[m.name])}"
                owned_without = {m.name: set(m.owned) for m in rest}
                new = start(protocol, "error")
                # the first description that shows the new member: the group's type then
                seen = []

                def joined():
                    d = g.describe()
                    seen[:] = [d]
                    return any(md.client_id == new.name for md in d.members)

                g.run_until(joined, 60, f"{label}: {new.name} ({protocol}) in the group's description")
                assert seen[0].type == _expected_type(g.active), \
                    f"{label}: described as {seen[0].type} as soon as {new.name} ({protocol}) joined"
                _migration_settled(g, all_parts, classic_assignor, f"{label}, {new.name} in")
                if type_without == ConsumerGroupType.CLASSIC and protocol == "consumer":
                    # the upgrade: the classic members kept their partitions (the uniform assignor is
                    # sticky), giving up only what the new member was assigned
                    for m in rest:
                        assert m.owned <= owned_without[m.name], \
                            f"{label}: {m.name} owns {sorted(m.owned)} in the consumer group, beyond {sorted(owned_without[m.name])}"

        g.stop_stream()
        total = g.next
        assert g.producer.flush(60) == 0, "records still undelivered after 60 s"
        assert not g.produce_errors, g.produce_errors[:5]
        assert len(g.acked) == total
        misplaced = [(i, g.acked[i]) for i in range(total) if g.acked[i] != (i % PARTITIONS, i // PARTITIONS)]
        assert not misplaced, f"{len(misplaced)} records not at their expected offset, first: {misplaced[:5]}"
        ends = {p: len(range(p, total, PARTITIONS)) for p in range(PARTITIONS)}
        g.run_until(lambda: len({d[1:3] for m in g.members for d in m.deliveries}) >= total, 60, "every record consumed")
        g.run_until(lambda: g.committed_at(ends), 30, "the commits to reach the end offsets")
        for m in list(g.active):
            g.leave(m)
    finally:
        g.close_all()

    for m in g.members:
        print(f"{m.name} ({m.protocol}): {len(m.deliveries)} records, {m.revoke_commits} commits in on_revoke, "
              f"commit failures {m.commit_failures[:3]}, first offsets {m.resumes}, "
              f"callbacks {[(k, len(p), c) for k, p, c in m.callbacks]}")
    assert not g.table.problems, "\n".join(g.table.problems[:30])
    seen_at: dict[tuple[int, int], list[str]] = {}
    values: dict[tuple[int, int], bytes | None] = {}
    for m in g.members:
        for t, p, o, v in m.deliveries:
            seen_at.setdefault((p, o), []).append(m.name)
            values[(p, o)] = v
    expected = {(i % PARTITIONS, i // PARTITIONS): b"v%d" % i for i in range(total)}
    missing = sorted(set(expected) - set(seen_at))
    extra = sorted(set(seen_at) - set(expected))
    dups = sorted((k, w) for k, w in seen_at.items() if len(w) > 1)
    wrong = sorted((k, values[k]) for k in expected if k in values and values[k] != expected[k])
    assert not missing, f"{len(missing)} of {total} records never delivered, first: {missing[:10]}"
    assert not extra, f"{len(extra)} deliveries beyond the produced records: {extra[:10]}"
    assert not dups, (f"{len(dups)} records delivered more than once (members commit before giving a partition "
                      f"up), first: {dups[:10]}; commit failures: {[(m.name, m.commit_failures[:3]) for m in g.members]}")
    assert not wrong, f"{len(wrong)} records with the wrong value, first: {wrong[:5]}"

    assert ck_group_offsets(broker.bootstrap, g.group) == ends
    deadline = time.monotonic() + 30
    d = g.describe()
    while d.state != ConsumerGroupState.EMPTY and time.monotonic() < deadline:
        time.sleep(0.2)
        d = g.describe()
    assert d.state == ConsumerGroupState.EMPTY and d.members == [], (d.state, d.members)
    assert d.type == ConsumerGroupType.CLASSIC, f"the emptied group's type {d.type} (its last members were classic)"
