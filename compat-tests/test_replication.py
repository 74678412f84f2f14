"""Replicated partitions on a three-node cluster: followers copy their leader with
Kafka's Fetch (replica id set), the leader advances the high watermark over the ISR and
answers acks=all once every in-sync replica has the batch, and the ISR changes through
the controller (AlterPartition) when a follower stops and when it catches up again.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ck_consume_all, ck_produce, make_records, unique_topic, wait_for
from test_cluster import bootstrap, start_cluster

# Short enough that a stopped follower leaves the ISR within the test's patience.
LAG_MS = 2000


def create_replicated(node, topic: str, partitions: int, min_insync: int) -> None:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3,
                                       config={"min.insync.replicas": str(min_insync)})],
                             operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=60)


def partition_state(node, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """{partition: (leader, replicas, isr)} in `node`'s Metadata answer."""
    md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(topic, timeout=10)
    t = md.topics[topic]
    return {p: (m.leader, list(m.replicas), sorted(m.isrs)) for p, m in t.partitions.items()}


def segment_bytes(node, topic: str, partition: int) -> bytes:
    d = node.partition_dir(topic, partition)
    return b"".join(f.read_bytes() for f in sorted(d.glob("*.log")))


def produce_one(node_bootstrap: str, topic: str, value: bytes, acks: str = "all") -> KafkaError | None:
    """No retries: the broker's own answer for one record."""
    p = Producer({"bootstrap.servers": node_bootstrap, "acks": acks, "retries": 0,
                  "enable.idempotence": False, "message.timeout.ms": 20000})
    result: list = []
    p.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: result.append(err))
    assert p.flush(30) == 0, "no answer within 30 s"
    return result[0]


def test_every_replica_holds_every_acknowledged_record(ottla_factory):
    nodes = start_cluster(ottla_factory)
    topic = unique_topic("rf3")
    create_replicated(nodes[0], topic, 3, min_insync=2)
    state = partition_state(nodes[0], topic)
    assert {p: sorted(s[1]) for p, s in state.items()} == {p: [1, 2, 3] for p in range(3)}, state
    assert all(s[2] == [1, 2, 3] for s in state.values()), state
    assert {s[0] for s in state.values()} == {1, 2, 3}, f"leaders spread: {state}"

    records = make_records(3000, "rf3")
    acked = ck_produce(bootstrap(nodes), topic, records, conf={"acks": "all", "enable.idempotence": True})
    assert len(acked) == 3000
    ends = {p: 0 for p in range(3)}
    for p, offset in acked.values():
        ends[p] = max(ends[p], offset + 1)

    # Followers copy the leader's batches byte for byte (offsets, epochs and CRCs as the
    # leader wrote them): every node ends up with the same log.
    def identical():
        return all(segment_bytes(nodes[0], topic, p) == segment_bytes(n, topic, p) != b""
                   for p in range(3) for n in nodes[1:])
    wait_for(identical, 30, "the three replicas of each partition to hold the same log")
    got = ck_consume_all(bootstrap(nodes), topic, range(3))
    assert {p: len(msgs) for p, msgs in got.items()} == ends
    assert Counter(m.value() for msgs in got.values() for m in msgs) == Counter(r.value for r in records)


def test_a_stopped_follower_leaves_the_isr_and_rejoins_once_caught_up(ottla_factory):
    nodes = start_cluster(ottla_factory, extra={"replica.lag.time.max.ms": str(LAG_MS)})
    lenient, strict = unique_topic("min2"), unique_topic("min3")
    create_replicated(nodes[0], lenient, 1, min_insync=2)
    create_replicated(nodes[0], strict, 1, min_insync=3)
    # Partition 0 of each is placed on brokers 1, 2, 3 with broker 1 leading.
    for t in (lenient, strict):
        assert partition_state(nodes[0], t)[0] == (1, [1, 2, 3], [1, 2, 3])
    assert produce_one(nodes[0].bootstrap, strict, b"all three") is None

    follower = nodes[2]
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        # A follower that has everything is in sync however long it is silent (as in
        # Kafka); once the leader has more, broker 1 notices that broker 3 no longer
        # fetches, and the controller (a majority is still up) commits the smaller ISR.
        for t in (lenient, strict):
            assert produce_one(nodes[0].bootstrap, t, b"while stopped", acks="1") is None
        for t in (lenient, strict):
            wait_for(lambda t=t: partition_state(nodes[0], t)[0][2] == [1, 2], 30,
                     f"broker 3 to leave the ISR of {t}")
        # min.insync.replicas=2 is still met; 3 is not, and acks=all is refused.
        assert produce_one(nodes[0].bootstrap, lenient, b"two of three") is None
        err = produce_one(nodes[0].bootstrap, strict, b"refused")
        assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    finally:
        os.kill(follower.pid, signal.SIGCONT)

    # Back: it fetches what it missed and rejoins the ISR.
    for t in (lenient, strict):
        wait_for(lambda t=t: partition_state(nodes[0], t)[0][2] == [1, 2, 3], 30,
                 f"broker 3 to rejoin the ISR of {t}")
    assert produce_one(nodes[0].bootstrap, strict, b"all three again") is None
    wait_for(lambda: segment_bytes(nodes[2], lenient, 0) == segment_bytes(nodes[0], lenient, 0), 30,
             "the returning follower to hold the leader's log")
    got = ck_consume_all(bootstrap(nodes), strict, [0])
    assert [m.value() for m in got[0]] == [b"all three", b"while stopped", b"all three again"], \
        "the refused record was never appended"


# Failover: short sessions so that a killed broker is fenced (and its leaderships move)
# within seconds; Kafka's defaults are 9 s and 2 s.
FAILOVER = {"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"}
# Leader kills in the no-loss test (each waits for the new leader and a full ISR).
KILLS = 8


def node_by_id(nodes, node_id: int):
    return nodes[node_id - 1]


def survivors(nodes, *down: int):
    return [n for i, n in enumerate(nodes, start=1) if i not in down]


def wait_leader_other_than(nodes, topic: str, partition: int, old: int, timeout: float = 60) -> int:
    """The partition's new leader as a surviving node reports it."""
    seen: list[int] = []

    def moved():
        for n in survivors(nodes, old):
            try:
                leader = partition_state(n, topic)[partition][0]
            except Exception:
                continue
            seen.append(leader)
            if leader not in (old, -1):
                return leader
        return None
    return wait_for(moved, timeout, f"a new leader of {topic}-{partition} (was {old}; seen {seen[-3:]})")


def wait_full_isr(node, topic: str, partitions: int, timeout: float = 60) -> None:
    wait_for(lambda: all(s[2] == [1, 2, 3] for s in partition_state(node, topic).values())
             and len(partition_state(node, topic)) == partitions, timeout,
             f"every partition of {topic} to have all three replicas in sync")


class Sequencer:
    """An idempotent acks=all producer writing numbered records on its own thread,
    remembering what was acknowledged where."""

    def __init__(self, bootstrap_servers: str, topic: str):
        import threading
        self.topic = topic
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.failed: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all",
                                   "enable.idempotence": True, "linger.ms": 5,
                                   "message.timeout.ms": 120000, "topic.metadata.refresh.interval.ms": 1000})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_delivery(self, err, msg):
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acked[msg.value()] = (msg.partition(), msg.offset())

    def _run(self):
        while not self._stop.is_set():
            value = f"seq-{self.sent:08d}".encode()
            try:
                self._producer.produce(self.topic, value=value, key=value, on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self._producer.poll(0.002)

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert self._producer.flush(180) == 0, "records still unacknowledged after 180 s"


def check_no_acknowledged_loss(nodes, topic: str, partitions: int, acked: dict) -> None:
    """Every acknowledged record is in the log exactly once, at the offset the producer
    was told, and each partition's offsets have no gap."""
    got = ck_consume_all(bootstrap(nodes), topic, range(partitions))
    where: dict[bytes, list[tuple[int, int]]] = {}
    for p, msgs in got.items():
        assert [m.offset() for m in msgs] == list(range(len(msgs))), f"a gap in partition {p}"
        for m in msgs:
            where.setdefault(m.value(), []).append((p, m.offset()))
    duplicated = {v: w for v, w in where.items() if len(w) > 1}
    assert not duplicated, f"{len(duplicated)} records stored twice, e.g. {list(duplicated.items())[:3]}"
    lost = [v for v in acked if v not in where]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    moved = [(v, acked[v], where[v][0]) for v in acked if where[v][0] != acked[v]]
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:3]}"


def test_killing_leaders_loses_no_acknowledged_record(ottla_factory):
    nodes = start_cluster(ottla_factory, extra=FAILOVER)
    topic = unique_topic("kill9")
    partitions = 3
    create_replicated(nodes[0], topic, partitions, min_insync=2)
    wait_full_isr(nodes[0], topic, partitions)
    seq = Sequencer(bootstrap(nodes), topic)
    try:
        for kill in range(KILLS):
            partition = kill % partitions
            leader = partition_state(nodes[(kill + 1) % 3], topic)[partition][0]
            victim = node_by_id(nodes, leader)
            before = len(seq.acked)
            victim.kill9()
            new_leader = wait_leader_other_than(nodes, topic, partition, leader)
            assert new_leader in (1, 2, 3)
            victim.start(wait=False)
            victim.wait_ready(90)
            # The restarted broker catches up and rejoins every ISR before the next kill,
            # so a kill never takes the last in-sync replica.
            wait_full_isr(survivors(nodes, leader)[0], topic, partitions, timeout=90)
            wait_for(lambda b=before: len(seq.acked) > b + 100, 60, "the producer to go on after the failover")
    finally:
        seq.finish()
    assert not seq.failed, f"{len(seq.failed)} deliveries failed: {seq.failed[:3]}"
    assert len(seq.acked) > KILLS * 100
    check_no_acknowledged_loss(nodes, topic, partitions, seq.acked)


def test_a_returning_old_leader_truncates_its_divergent_tail(ottla_factory):
    nodes = start_cluster(ottla_factory, extra=FAILOVER)
    topic = unique_topic("diverge")
    create_replicated(nodes[0], topic, 1, min_insync=1)
    assert partition_state(nodes[0], topic)[0] == (1, [1, 2, 3], [1, 2, 3])
    assert produce_one(nodes[0].bootstrap, topic, b"a") is None
    wait_for(lambda: all(segment_bytes(n, topic, 0) == segment_bytes(nodes[0], topic, 0) for n in nodes[1:]),
             30, "a on every replica")

    # Broker 1 leads alone for a moment: 2 and 3 are paused, and acks=1 writes land on 1
    # only (the ISR cannot shrink without a quorum, so the high watermark stays at 1).
    for n in nodes[1:]:
        os.kill(n.pid, signal.SIGSTOP)
    try:
        # A follower's fetch already waiting at the leader would still carry the next
        # records to it (into its socket, read when it resumes): let those fetches run
        # out (replica.fetch.wait.max.ms, 500 ms) first, so the writes stay on 1 alone.
        time.sleep(2)
        for v in (b"lost-1", b"lost-2"):
            assert produce_one(nodes[0].bootstrap, topic, v, acks="1") is None
    finally:
        nodes[0].kill9()
        for n in nodes[1:]:
            os.kill(n.pid, signal.SIGCONT)

    # 2 and 3 form the quorum, fence 1 and elect 2, which writes at the same offsets.
    new_leader = wait_leader_other_than(nodes, topic, 0, 1)
    for v in (b"b", b"c"):
        assert produce_one(node_by_id(nodes, new_leader).bootstrap, topic, v) is None

    # 1 returns as a follower, learns that its log diverged at epoch 0 and truncates.
    nodes[0].start(wait=False)
    nodes[0].wait_ready(90)
    leader_node = node_by_id(nodes, new_leader)
    wait_for(lambda: segment_bytes(nodes[0], topic, 0) == segment_bytes(leader_node, topic, 0), 60,
             "the old leader to hold the new leader's log")
    assert "Truncating partition" in nodes[0].stderr_since_start()
    got = ck_consume_all(bootstrap(nodes), topic, [0])
    assert [m.value() for m in got[0]] == [b"a", b"b", b"c"]


def test_cleanly_stopped_brokers_leave_the_isr_and_acks_all_is_refused(ottla_factory):
    """Two brokers stopped one after the other with SIGTERM: each hands its leaderships
    over and leaves the ISR through the controller (controlled shutdown), so the last
    broker refuses acks=all with NOT_ENOUGH_REPLICAS, and nothing refused ever becomes
    visible, also after they return."""
    nodes = start_cluster(ottla_factory, extra=FAILOVER)
    topic = unique_topic("sigterm")
    create_replicated(nodes[0], topic, 1, min_insync=2)
    assert produce_one(nodes[0].bootstrap, topic, b"before") is None

    nodes[0].stop()  # the leader: its partition moves at once, no session to wait for
    state = partition_state(nodes[1], topic)[0]
    assert state[0] in (2, 3) and state[2] == [2, 3], state
    assert produce_one(nodes[1].bootstrap, topic, b"two left") is None

    leader_id = state[0]
    leader = node_by_id(nodes, leader_id)
    other = nodes[1] if leader is nodes[2] else nodes[2]
    other.stop()
    assert partition_state(leader, topic)[0][2] == [leader_id], partition_state(leader, topic)
    err = produce_one(leader.bootstrap, topic, b"refused")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err

    for n in (nodes[0], other):
        n.start(wait=False)
    for n in (nodes[0], other):
        n.wait_ready(90)
    wait_full_isr(leader, topic, 1)
    got = ck_consume_all(bootstrap(nodes), topic, [0])
    assert [m.value() for m in got[0]] == [b"before", b"two left"]
