"""Replicated partitions on a three-node cluster: followers copy their leader with
Kafka's Fetch (replica id set), the leader advances the high watermark over the ISR and
answers acks=all once every in-sync replica has the batch, and the ISR changes through
the controller (AlterPartition) when a follower stops and when it catches up again.
"""

from __future__ import annotations

import os
import signal
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
