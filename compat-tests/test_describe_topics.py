"""DescribeTopicPartitions (API 75, KIP-966): what ``kafka-topics --describe`` and the Java
Admin's ``describeTopics`` use from Kafka 3.7/3.8 on.

* ``test_java_admin_describe_topics_pages_through_partitions`` (``OttlaDescribeTopics``): with at
  most 7 partitions per answer (the Admin 4.1 pages with DescribeTopicPartitions when the broker
  advertises it) topics of 30 and 5 partitions come back whole and in order (leader 1, in sync);
  an unknown topic is UnknownTopicOrPartitionException.
* ``test_cursor_and_limit_at_the_protocol_level``: the same paging seen in raw requests: a limit of
  7 over a 30-partition topic answers partitions 0-6 and a cursor at partition 7; a request from
  that cursor continues there.
"""

from __future__ import annotations

import struct

from conftest import ck_create_topic, raw_request, run_java, unique_topic

DESCRIBE_TOPIC_PARTITIONS = 75


def test_java_admin_describe_topics_pages_through_partitions(java_program, ottla):
    big, small = unique_topic("describe-big"), unique_topic("describe-small")
    ck_create_topic(ottla.bootstrap, big, partitions=30)
    ck_create_topic(ottla.bootstrap, small, partitions=5)
    run_java(java_program, "OttlaDescribeTopics", ottla, big, "30", small, "5", timeout=120)


def _compact_string(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b) + 1]) + b


def _describe(node, topic: str, limit: int, cursor: tuple[str, int] | None):
    """Request v0 (flexible: request header v2); returns (partition indexes, next cursor)."""
    body = bytes([2]) + _compact_string(topic) + b"\x00"  # topics: one, no tagged fields
    body += struct.pack(">i", limit)
    if cursor is None:
        body += b"\xff"  # null cursor (int8 -1)
    else:
        body += b"\x01" + _compact_string(cursor[0]) + struct.pack(">i", cursor[1]) + b"\x00"
    body += b"\x00"  # request tagged fields
    # raw_request writes a v1 header; the v2 header adds an empty tagged-field section.
    resp = raw_request("127.0.0.1", node.port, DESCRIBE_TOPIC_PARTITIONS, 0, b"\x00" + body, timeout=10)
    r = resp[1:]  # response header v1: tagged fields
    pos = 4  # throttle
    n_topics = r[pos] - 1
    pos += 1
    assert n_topics == 1
    err = struct.unpack(">h", r[pos:pos + 2])[0]
    assert err == 0, err
    pos += 2
    name_len = r[pos] - 1
    pos += 1 + name_len + 16 + 1  # name, topic id, is_internal
    n_parts = r[pos] - 1
    pos += 1
    indexes = []
    for _ in range(n_parts):
        perr, index, leader, epoch = struct.unpack(">hiii", r[pos:pos + 14])
        assert perr == 0 and leader == 1
        pos += 14
        indexes.append(index)
        for _array in range(2):  # replicas, isr
            k = r[pos] - 1
            pos += 1 + 4 * k
        for _array in range(2):  # eligible leader replicas, last known elr (nullable)
            k = r[pos] - 1
            pos += 1 + 4 * max(k, 0)
        k = r[pos] - 1  # offline replicas
        pos += 1 + 4 * k
        pos += 1  # tagged fields
    pos += 4 + 1  # authorized operations, tagged fields
    if r[pos] == 0xff:
        return indexes, None
    pos += 1
    clen = r[pos] - 1
    cname = r[pos + 1:pos + 1 + clen].decode()
    cpart = struct.unpack(">i", r[pos + 1 + clen:pos + 5 + clen])[0]
    return indexes, (cname, cpart)


def test_cursor_and_limit_at_the_protocol_level(ottla):
    topic = unique_topic("describe-cursor")
    ck_create_topic(ottla.bootstrap, topic, partitions=30)
    first, cursor = _describe(ottla, topic, 7, None)
    assert first == list(range(7)) and cursor == (topic, 7), (first, cursor)
    second, cursor = _describe(ottla, topic, 7, cursor)
    assert second == list(range(7, 14)) and cursor == (topic, 14), (second, cursor)
    rest, cursor = _describe(ottla, topic, 100, (topic, 14))
    assert rest == list(range(14, 30)) and cursor is None
