"""DeleteRecords (API 21): what ``kafka-delete-records`` and Admin ``deleteRecords`` send.

* ``test_delete_records_moves_the_log_start_offset``: 100 records in partition 0; confluent-kafka's
  AdminClient deletes the records before offset 40: the answer's low watermark is 40, the
  earliest offset (ListOffsets) is 40, a consumer positioned at offset 10 gets OFFSET_OUT_OF_RANGE
  and, with ``auto.offset.reset=earliest``, reads from offset 40 on. Offsets beyond the high
  watermark are refused (OFFSET_OUT_OF_RANGE), the high watermark itself (-1) is allowed, an
  unknown partition gets UNKNOWN_TOPIC_OR_PARTITION. After kill -9 and a restart the earliest
  offset is still where DeleteRecords put it, although no whole segment could be deleted (the
  ``log-start-offset-checkpoint``).
* ``test_delete_records_on_a_compacted_topic_is_a_policy_violation``: a ``cleanup.policy=compact``
  topic refuses with POLICY_VIOLATION and keeps its records.
* ``test_followers_follow_the_log_start_offset``: three nodes, replication factor 3; the
  followers move their log start offsets on their next fetch (their log line says so), and the
  leader elected after the old one is killed answers the same earliest offset.
* ``test_java_admin_delete_records`` (``OttlaDeleteRecords``): the Java Admin's deleteRecords and
  listOffsets(earliest) agree, beyond the high watermark is OffsetOutOfRangeException, and the low
  watermark never moves back.
"""

from __future__ import annotations

import struct

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import ck_create_topic, raw_request, run_java, unique_topic, wait_for
from test_cluster import bootstrap, start_cluster
from test_failover import FAILOVER, survivors, wait_full_isr, wait_leader_other_than
from test_replication import create_replicated, partition_state

DELETE_RECORDS = 21

RECORDS = 100


def produce(bootstrap: str, topic: str, n: int = RECORDS) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0


def delete(bootstrap: str, topic: str, offset: int, partition: int = 0):
    """(low watermark, None) or (None, the Kafka error's name)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, partition, offset)
    f = admin.delete_records([tp], request_timeout=30)[tp]
    try:
        return f.result(timeout=60).low_watermark, None
    except KafkaException as e:
        return None, e.args[0].name()


def raw_delete(node, topic: str, partition: int, offset: int) -> tuple[int, int]:
    """DeleteRecords v0 as bytes (librdkafka checks partitions itself and never sends an
    unknown one): (low watermark, error code)."""
    name = topic.encode()
    body = (struct.pack(">ih", 1, len(name)) + name + struct.pack(">iiq", 1, partition, offset)
            + struct.pack(">i", 5000))
    resp = raw_request("127.0.0.1", node.port, DELETE_RECORDS, 0, body, timeout=10)
    _throttle, _topics, n = struct.unpack(">iih", resp[:10])
    _partitions, got, low, err = struct.unpack(">iiqh", resp[10 + n:10 + n + 18])
    assert got == partition
    return low, err


def earliest(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("wm")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[0]
    finally:
        c.close()


def first_read_from(bootstrap: str, topic: str, offset: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("reader"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        for _ in range(60):
            m = c.poll(1.0)
            if m is not None and not m.error():
                return m.offset()
        raise AssertionError("nothing read")
    finally:
        c.close()


def test_delete_records_moves_the_log_start_offset(ottla_factory):
    b = ottla_factory()
    topic = unique_topic("delete-records")
    ck_create_topic(b.bootstrap, topic, partitions=1)
    produce(b.bootstrap, topic)
    assert delete(b.bootstrap, topic, 40) == (40, None)
    assert earliest(b.bootstrap, topic) == 40
    assert first_read_from(b.bootstrap, topic, 10) == 40, "a position below the start resets to it"
    assert delete(b.bootstrap, topic, RECORDS + 1) == (None, "OFFSET_OUT_OF_RANGE")
    assert delete(b.bootstrap, topic, 20) == (40, None), "the start never moves back"
    assert raw_delete(b, topic, 7, 0) == (-1, 3), "UNKNOWN_TOPIC_OR_PARTITION"
    assert raw_delete(b, topic, 0, -5) == (-1, 1), "OFFSET_OUT_OF_RANGE for a negative offset"
    b.kill9()
    b.start()
    assert earliest(b.bootstrap, topic) == 40, "DeleteRecords survives a crash"
    assert first_read_from(b.bootstrap, topic, 0) == 40
    assert delete(b.bootstrap, topic, -1) == (RECORDS, None), "-1 is the high watermark"
    assert earliest(b.bootstrap, topic) == RECORDS


def test_delete_records_on_a_compacted_topic_is_a_policy_violation(ottla_factory):
    b = ottla_factory()
    topic = unique_topic("delete-records-compacted")
    ck_create_topic(b.bootstrap, topic, partitions=1, config={"cleanup.policy": "compact"})
    produce(b.bootstrap, topic, 10)
    assert delete(b.bootstrap, topic, 5) == (None, "POLICY_VIOLATION")
    assert earliest(b.bootstrap, topic) == 0


def test_java_admin_delete_records(java_program, ottla):
    topic = unique_topic("delete-records-java")
    ck_create_topic(ottla.bootstrap, topic, partitions=1)
    produce(ottla.bootstrap, topic)
    run_java(java_program, "OttlaDeleteRecords", ottla, topic, timeout=120)
    assert earliest(ottla.bootstrap, topic) == 30


def test_followers_follow_the_log_start_offset(ottla_factory):
    """Three nodes, replication factor 3: after DeleteRecords on the leader, the followers
    move their own log start offsets on their next fetch, so the leader elected when the
    old one is killed answers the same earliest offset."""
    nodes = start_cluster(ottla_factory, extra=FAILOVER)
    topic = unique_topic("delete-records-rf3")
    create_replicated(nodes[0], topic, 1, min_insync=2)
    wait_full_isr(nodes[0], topic, 1)
    produce(bootstrap(nodes), topic)
    assert delete(bootstrap(nodes), topic, 40) == (40, None)
    wait_full_isr(nodes[0], topic, 1)
    leader = partition_state(nodes[0], topic)[0][0]
    followers = [n for i, n in enumerate(nodes, start=1) if i != leader]
    # Each follower's own log: the whole segment stays (it holds offset 40), but its start
    # moved, which its log line says.
    for n in followers:
        wait_for(lambda n=n: f"Incremented log start offset of {topic}-0 to 40 due to LeaderOffsetIncremented"
                 in n.stderr_text(), 30, f"node {n.name} to follow the leader's log start offset")
    nodes[leader - 1].kill9()
    wait_leader_other_than(nodes, topic, 0, leader)
    assert earliest(bootstrap(survivors(nodes, leader)), topic) == 40
