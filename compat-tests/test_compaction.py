"""Log compaction (``cleanup.policy=compact``) seen by real clients.

* ``test_a_compacted_topic_keeps_the_latest_value_of_each_key``: confluent-kafka writes
  100,000 records over 1,000 keys (each key updated 100 times), then deletes 100 keys with
  tombstones, then keeps writing a filler key so that segments roll and the cleaner runs
  more than once (``delete.retention.ms=0``: the tombstones go on the second pass). A
  consumer from offset 0 then sees each live key exactly once, with its latest value, at
  offsets in increasing order, and none of the deleted keys; the partition's ``.log``
  files shrank to a fraction of what was written; the broker logged Kafka's cleaner summary
  ("Log cleaner cleaned log <partition> (dirty section = [...]) ... size reduction").
* ``test_a_crash_in_the_middle_of_a_swap_leaves_a_consistent_log``: with
  ``OTTLA_FAULT_CRASH_AFTER_CLEANER_SWAP=1`` the broker aborts right after committing a
  cleaned segment's swap (``.swap`` files written, replaced segments not yet deleted).
  Restarted without the hook, it finishes the swap at start-up; a consumer from offset 0
  sees every key's latest value once, no offset twice, in order.
* ``test_consumer_offsets_is_compacted``: a group commits 3,000 times; with
  ``offsets.topic.segment.bytes`` small, ``__consumer_offsets`` is cleaned down to a few
  KB (one record per key), and after a restart the group's committed offset is the last one.
"""

from __future__ import annotations

import os
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import (ck_admin, ck_create_topic, read_batch_headers, segment_files, unique_topic,
                      wait_for)

KEYS = 1_000
UPDATES = 100
DELETED = range(100)  # keys deleted with a tombstone at the end
FILLER = b"filler"
FAULT_ENV = "OTTLA_FAULT_CRASH_AFTER_CLEANER_SWAP"
BROKER = {"log.cleaner.backoff.ms": "200"}
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": str(1 << 20),  # Kafka's minimum
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "0",
}


def key(k: int) -> bytes:
    return f"key-{k:04}".encode()


def value(k: int, i: int) -> bytes:
    return f"key-{k:04}-update-{i:03}-".encode() + b"x" * 64


def produce_updates(bootstrap: str, topic: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 1000,
                  "compression.type": "lz4"})
    for i in range(UPDATES):
        for k in range(KEYS):
            p.produce(topic, key=key(k), value=value(k, i), partition=0)
            if k % 500 == 0:
                p.poll(0)
    for k in DELETED:
        p.produce(topic, key=key(k), value=None, partition=0)
    assert p.flush(60) == 0, "every update and tombstone acknowledged"


def produce_filler(bootstrap: str, topic: str, n: int = 1_200) -> None:
    """A bit more than a segment of one key, so the segment holding the updates rolls."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(n):
        p.produce(topic, key=FILLER, value=b"f" * 1000, partition=0)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    """Every record of partition 0 from offset 0 to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("reader"),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        _low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.time() + 120
        while time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().name() == "_PARTITION_EOF":
                    if m.offset() >= high:
                        break
                    continue
                raise AssertionError(f"consumer error {m.error()}")
            out.append((m.offset(), m.key(), m.value()))
        else:
            raise AssertionError(f"read {len(out)} records in 120 s without reaching {high}")
        return out
    finally:
        c.close()


def compacted_view_problems(records) -> list[str]:
    """What keeps `records` (offset order as read) from being the fully compacted view."""
    problems = []
    offsets = [o for o, _k, _v in records]
    if offsets != sorted(set(offsets)):
        problems.append("offsets are not strictly increasing")
    seen: dict[bytes, list[tuple[int, bytes | None]]] = {}
    for o, k, v in records:
        if k != FILLER:
            seen.setdefault(k, []).append((o, v))
    for k in range(KEYS):
        got = seen.get(key(k), [])
        if k in DELETED:
            if got:
                problems.append(f"deleted {key(k)!r} still has {len(got)} record(s), first {got[0]}")
        elif [v for _o, v in got] != [value(k, UPDATES - 1)]:
            problems.append(f"{key(k)!r}: {len(got)} record(s) {[v[:24] if v else v for _o, v in got][:3]}")
    return problems


def lift_compaction_lag(bootstrap: str, topic: str) -> None:
    """Sets min.compaction.lag.ms back to 0 on the running topic: the cleaner may start."""
    admin = ck_admin(bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=30)


def log_bytes(node, topic: str) -> int:
    return sum(f.stat().st_size for f in node.partition_dir(topic, 0).glob("*.log"))


def test_a_compacted_topic_keeps_the_latest_value_of_each_key(ottla_factory):
    b = ottla_factory(overrides=BROKER)
    topic = unique_topic("compacted")
    # Nothing is cleanable while the updates are written (a record must be an hour old),
    # so that what they occupy can be measured; then the lag goes, on the running topic.
    ck_create_topic(b.bootstrap, topic, partitions=1,
                    config={**TOPIC_CONFIG, "min.compaction.lag.ms": str(3600 * 1000)})
    produce_updates(b.bootstrap, topic)
    written = log_bytes(b, topic)
    lift_compaction_lag(b.bootstrap, topic)

    problems: list[str] = []

    def compacted():
        nonlocal problems
        produce_filler(b.bootstrap, topic)
        problems = compacted_view_problems(read_all(b.bootstrap, topic))
        return not problems
    wait_for(compacted, 120, "the cleaner to compact the topic (last problems: see below)", interval=1)
    after = log_bytes(b, topic)
    # What is left: 900 live keys, the filler's latest records and the active segment.
    assert after < written / 4, f"{after} bytes of .log left of {written} written"
    assert "Log cleaner cleaned log " + topic + "-0 (dirty section = [" in b.stderr_text(), (
        "Kafka's cleaner summary line")
    print(f"compacted {written} -> {after} bytes; {problems}")


def test_a_crash_in_the_middle_of_a_swap_leaves_a_consistent_log(ottla_factory, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "1")
    b = ottla_factory(overrides=BROKER, name="ottla-clean-crash", allow_panics=True)
    monkeypatch.delenv(FAULT_ENV)
    topic = unique_topic("compacted-crash")
    # The fault aborts the broker at the first swap: no cleaning (so no abort) until every
    # update is acknowledged, then the lag goes on the running topic.
    ck_create_topic(b.bootstrap, topic, partitions=1,
                    config={**TOPIC_CONFIG, "min.compaction.lag.ms": str(3600 * 1000)})
    produce_updates(b.bootstrap, topic)
    lift_compaction_lag(b.bootstrap, topic)
    try:
        produce_filler(b.bootstrap, topic)
    except Exception as e:  # the broker may die under the producer
        print(f"filler producer: {e}")
    try:
        b.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the broker did not abort after a cleaner swap: does it implement "
                             f"{FAULT_ENV}? stderr:\n{b.stderr_tail(30)}") from None
    assert b.proc.returncode != 0
    swaps = [p.name for p in b.partition_dir(topic, 0).iterdir() if p.name.endswith(".swap")]
    assert any(n.endswith(".log.swap") for n in swaps), f"the crash left a committed swap: {swaps}"
    b.kill9()
    b.start()
    assert FAULT_ENV not in os.environ
    leftovers = [p.name for p in b.partition_dir(topic, 0).iterdir()
                 if p.name.endswith((".swap", ".cleaned"))]
    assert not leftovers, f"start-up finished the swap: {leftovers}"
    assert "Completed the swap of cleaned segment" in b.stderr_since_start()
    records = read_all(b.bootstrap, topic)
    offsets = [o for o, _k, _v in records]
    assert offsets == sorted(set(offsets)), "no offset twice, in order"
    latest = {}
    for _o, k, v in records:
        latest[k] = v
    for k in range(KEYS):
        want = None if k in DELETED else value(k, UPDATES - 1)
        assert latest.get(key(k)) == want, f"{key(k)!r}: latest {latest.get(key(k))!r}"


def test_consumer_offsets_is_compacted(ottla_factory):
    b = ottla_factory(overrides={**BROKER, "offsets.topic.segment.bytes": "16384",
                                 "offsets.topic.num.partitions": "1"})
    topic = unique_topic("offsets-compaction")
    ck_create_topic(b.bootstrap, topic, partitions=1)
    group = unique_topic("committer")
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for i in range(3_000):
            c.commit(offsets=[TopicPartition(topic, 0, i + 1)], asynchronous=False)
    finally:
        c.close()
    offsets_dir = b.partition_dir("__consumer_offsets", 0)

    def small():
        return sum(f.stat().st_size for f in offsets_dir.glob("*.log")) < 64 * 1024
    wait_for(small, 60, "__consumer_offsets to be compacted below 64 KiB", interval=0.5)
    b.restart()
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(topic, 0)], timeout=30)
    finally:
        c.close()
    assert committed[0].offset == 3_000, f"committed offset after compaction and restart: {committed}"


def test_transactions_in_a_compacted_topic(ottla_factory):
    """confluent-kafka's transactional producer writes 60 transactions over 50 keys to a
    compacted topic, every third aborted, then the filler rolls segments so the cleaner
    runs again and again (``delete.retention.ms=0``). The aborted records leave the disk
    (even a read_uncommitted consumer no longer sees them), each key keeps its latest
    committed value, and the transaction markers go once no data of their transaction
    is left (Kafka's rule): in the end the partition holds fewer markers than the 60
    written, and a read_committed consumer reads to the end."""
    b = ottla_factory(overrides=BROKER)
    topic = unique_topic("compacted-txn")
    ck_create_topic(b.bootstrap, topic, partitions=1, config=TOPIC_CONFIG)
    p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": unique_topic("txn"),
                  "linger.ms": 5})
    p.init_transactions(30)
    latest: dict[bytes, bytes] = {}
    aborted_values = set()
    for t in range(60):
        p.begin_transaction()
        for k in range(50):
            v = f"t{t:02}-k{k:02}".encode()
            p.produce(topic, key=f"k{k:02}".encode(), value=v, partition=0)
            if t % 3 == 2:
                aborted_values.add(v)
        if t % 3 == 2:
            # Sent first: librdkafka purges what is still queued when it aborts, and the
            # test needs aborted records in the log.
            assert p.flush(30) == 0
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
            latest.update({f"k{k:02}".encode(): f"t{t:02}-k{k:02}".encode() for k in range(50)})
    part = b.partition_dir(topic, 0)

    def markers_on_disk():
        return sum(1 for seg in segment_files(part) for h in read_batch_headers(seg)
                   if h["attributes"] & 0x20)

    # EndTxn answers once the outcome is recorded; the markers follow (asynchronously).
    wait_for(lambda: markers_on_disk() == 60, 30, "all 60 markers written")

    def cleaned():
        produce_filler(b.bootstrap, topic)
        records = read_all(b.bootstrap, topic)
        values = {k: v for _o, k, v in records if k != FILLER}
        leftover = [v for _o, _k, v in records if v in aborted_values]
        return values == latest and not leftover and markers_on_disk() < 60
    wait_for(cleaned, 120, "aborted data and finished markers removed by the cleaner", interval=1)
    print(f"{markers_on_disk()} of 60 markers left")

    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique_topic("rc"),
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    seen = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            assert m.error().name() == "_PARTITION_EOF", m.error()
            break
        if m.key() != FILLER:
            seen[m.key()] = m.value()
    c.close()
    assert seen == latest
