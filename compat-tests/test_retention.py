"""Retention by time and by size with real clients: expired segments leave the disk, the
earliest offset advances, and consumers positioned below it reset as
``auto.offset.reset`` says.

* ``test_retention_by_time_resets_consumers``: 1 MiB segments hold records stamped two hours
  ago, then records stamped now. ``retention.ms`` is lowered to one hour on the running
  broker (IncrementalAlterConfigs); the next retention pass deletes exactly the old
  segments (their files leave the disk after ``file.delete.delay.ms``), ListOffsets
  earliest moves to the first new record, and consumers starting at offset 0 get:
  ``earliest`` -> the first retained record, ``latest`` -> only what is produced after
  they start, ``error`` -> an offset-out-of-range error (librdkafka's
  ``_AUTO_OFFSET_RESET``).
* ``test_retention_by_size``: ``retention.bytes`` of 2 MiB over 1 MiB segments: after 6 MB
  are written, whole old segments go, oldest first, while the log without them would
  still hold 2 MiB (Kafka's rule); the earliest offset is then the first remaining
  segment's base, and everything from it is still readable in order.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   OffsetSpec)

from conftest import ck_admin, ck_create_topic, now_ms, segment_files, unique_topic, wait_for

SEGMENT = 1 << 20
VALUE = 1000
OVERRIDES = {"log.retention.check.interval.ms": 300}


def produce(bootstrap: str, topic: str, count: int, timestamp: int | None = None) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        kwargs = {"timestamp": timestamp} if timestamp is not None else {}
        p.produce(topic, value=f"{i:08d}".encode() * (VALUE // 8), partition=0, **kwargs)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def offsets(admin, topic: str) -> tuple[int, int]:
    tp = TopicPartition(topic, 0)
    early = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result().offset
    late = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result().offset
    return early, late


def first_from_zero(bootstrap: str, topic: str, reset: str, then_produce: bool = False):
    """What a consumer assigned at offset 0 gets first: a message or an error. With
    ``then_produce``, nothing may arrive for 3 s, then one record is produced."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("ret-g"),
                  "auto.offset.reset": reset, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        if then_produce:
            quiet_until = time.monotonic() + 3
            while time.monotonic() < quiet_until:
                m = c.poll(0.2)
                assert m is None, f"{reset}: got offset {m.offset()} before anything new"
            produce(bootstrap, topic, 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                return m
        raise AssertionError(f"nothing delivered with auto.offset.reset={reset}")
    finally:
        c.close()


def set_config(admin, topic: str, key: str, value: str) -> None:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                         incremental_configs=[ConfigEntry(key, value,
                                                          incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        assert f.result() is None


def test_retention_by_time_resets_consumers(ottla_factory):
    broker = ottla_factory(overrides=OVERRIDES)
    topic = unique_topic("ret-time")
    ck_create_topic(broker.bootstrap, topic, partitions=1,
                    config={"segment.bytes": str(SEGMENT), "file.delete.delay.ms": "200"})
    old = now_ms() - 2 * 3600 * 1000
    produce(broker.bootstrap, topic, 3000, timestamp=old)  # ~3 segments of old records
    admin = ck_admin(broker.bootstrap)
    _, old_end = offsets(admin, topic)
    assert old_end == 3000
    produce(broker.bootstrap, topic, 500)  # records stamped now
    files_before = segment_files(broker.partition_dir(topic, 0))
    assert len(files_before) >= 4, files_before

    set_config(admin, topic, "retention.ms", str(3600 * 1000))
    # The segments holding only old records go; the one where new records start stays.
    early = wait_for(lambda: (e := offsets(admin, topic)[0]) > 0 and e, 30, "retention")
    assert early <= 3000
    batches_left = segment_files(broker.partition_dir(topic, 0))
    assert int(batches_left[0].stem) == early
    assert offsets(admin, topic) == (early, 3500)
    # The deleted segments' files leave the disk (renamed .deleted, then removed).
    wait_for(lambda: not list(broker.partition_dir(topic, 0).glob("*.deleted")), 30,
             ".deleted files removed")
    assert len(segment_files(broker.partition_dir(topic, 0))) < len(files_before)

    m = first_from_zero(broker.bootstrap, topic, "earliest")
    assert m.error() is None and m.offset() == early
    m = first_from_zero(broker.bootstrap, topic, "latest", then_produce=True)
    assert m.error() is None and m.offset() == 3500
    m = first_from_zero(broker.bootstrap, topic, "error")
    assert m.error() is not None and m.error().code() == KafkaError._AUTO_OFFSET_RESET, m.error()


def test_retention_by_size(ottla_factory):
    broker = ottla_factory(overrides=OVERRIDES)
    topic = unique_topic("ret-size")
    ck_create_topic(broker.bootstrap, topic, partitions=1,
                    config={"segment.bytes": str(SEGMENT), "retention.bytes": str(2 * SEGMENT),
                            "file.delete.delay.ms": "200"})
    produce(broker.bootstrap, topic, 6000)
    admin = ck_admin(broker.bootstrap)
    part = broker.partition_dir(topic, 0)

    def within_limit():
        # Kafka's rule: the oldest segment goes while the log would still hold at least
        # retention.bytes without it; so at the end, dropping one more would not.
        files = segment_files(part)
        sizes = [f.stat().st_size for f in files]
        return sum(sizes) - sizes[0] < 2 * SEGMENT and offsets(admin, topic)[0] > 0 and files

    files = wait_for(within_limit, 30, "size retention")
    early, late = offsets(admin, topic)
    assert late == 6000
    assert early == int(files[0].stem)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("ret-g"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, early)])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < late - early and time.monotonic() < deadline:
        for m in c.consume(500, timeout=1.0):
            assert m.error() is None, m.error()
            got.append(m.offset())
            assert m.value()[:8] == f"{m.offset():08d}".encode()
    c.close()
    assert got == list(range(early, late))
