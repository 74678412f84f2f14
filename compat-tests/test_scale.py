"""10,000 partitions on one broker: created, produced to, fetched from, restarted, with
the broker's open files bounded by what is in use rather than by how many segments exist.

* ``test_ten_thousand_partitions_with_bounded_open_files``: confluent-kafka's AdminClient
  creates 100 topics of 100 partitions; one record per partition (its own name as value)
  is produced and acknowledged; the high watermark of every partition is 1 (ListOffsets);
  a consumer assigned to all 10,000 partitions reads each record back from its own
  partition. The broker's descriptors (``/proc/<pid>/fd``) stay well below one per
  partition once ``ottla.segment.file.idle.ms`` has passed (30,000 segment files exist),
  and again after a clean restart, after which every partition still holds its record.
  The clean shutdown says how many logs it flushed; the restart logs its progress
  ("Loading logs: N of M done") at every tenth of the way.

Times and memory are printed for the record, never asserted (``scripts/bench.sh scale``
measures them).
"""

from __future__ import annotations

import os
import re
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from conftest import status_kb, unique_topic, wait_for

TOPICS = 100
PARTITIONS = 100
IDLE_MS = 1500
# Sockets, epoll, the data dir lock, logs... A broker that kept every segment's files
# open would hold over 10,000 here (30,000 with its indexes).
FD_BOUND = 300


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int) -> int:
    """Descriptors once every segment file has been idle for two sweeps."""
    return wait_for(lambda: (n := open_fds(pid)) < FD_BOUND and n, timeout=6 * IDLE_MS / 1000 + 10,
                    what=f"open descriptors below {FD_BOUND} (now {open_fds(pid)})")


def read_back(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("scale-g"),
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                         "enable.partition.eof": False})
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)])
    seen: dict[tuple[str, int], bytes] = {}
    deadline = time.monotonic() + 180
    try:
        while len(seen) < len(topics) * PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=1.0):
                assert m.error() is None, m.error()
                key = (m.topic(), m.partition())
                assert key not in seen, f"{key} delivered twice"
                assert m.offset() == 0
                seen[key] = m.value()
    finally:
        consumer.close()
    return seen


def test_ten_thousand_partitions_with_bounded_open_files(ottla_factory):
    broker = ottla_factory(overrides={"ottla.segment.file.idle.ms": IDLE_MS})
    prefix = unique_topic("scale")
    topics = [f"{prefix}-{i}" for i in range(TOPICS)]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    started = time.monotonic()
    futures = admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
                                   for t in topics], request_timeout=120)
    for topic, future in futures.items():
        assert future.result() is None, topic
    print(f"created {TOPICS * PARTITIONS} partitions in {time.monotonic() - started:.2f} s, "
          f"RSS {status_kb(broker.pid)['VmRSS'] // 1024} MiB, {open_fds(broker.pid)} fds")
    dirs = [d for d in os.listdir(broker.log_dir) if d.startswith(prefix)]
    assert len(dirs) == TOPICS * PARTITIONS

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    failures = []
    for t in topics:
        for p in range(PARTITIONS):
            producer.produce(t, value=f"{t}/{p}".encode(), partition=p,
                             on_delivery=lambda err, _m: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(120) == 0
    assert failures == []
    del producer
    print(f"produced, {open_fds(broker.pid)} fds, RSS {status_kb(broker.pid)['VmRSS'] // 1024} MiB")

    ends = admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest()
                               for t in topics for p in range(PARTITIONS)}, request_timeout=120)
    assert {tp: f.result().offset for tp, f in ends.items()} == {
        TopicPartition(t, p): 1 for t in topics for p in range(PARTITIONS)}

    seen = read_back(broker.bootstrap, topics)
    assert seen == {(t, p): f"{t}/{p}".encode() for t in topics for p in range(PARTITIONS)}
    print(f"after the read: {open_fds(broker.pid)} fds")
    print(f"idle: {settled_fds(broker.pid)} fds")

    broker.restart()
    shutdown = re.search(r"Flushed (\d+) logs \((\d+) bytes\)", broker.stderr_text())
    assert shutdown and int(shutdown.group(1)) >= TOPICS * PARTITIONS, "the clean shutdown's summary"
    progress = [(int(d), int(t)) for d, t in
                re.findall(r"Loading logs: (\d+) of (\d+) done", broker.stderr_since_start())]
    assert len(progress) >= 9 and all(t >= TOPICS * PARTITIONS for _d, t in progress), (
        f"the start-up reports its progress every tenth of the way: {progress}")
    print(f"restarted: {open_fds(broker.pid)} fds, RSS {status_kb(broker.pid)['VmRSS'] // 1024} MiB")
    settled_fds(broker.pid)
    sample = topics[::10]
    seen = read_back(broker.bootstrap, sample)
    assert seen == {(t, p): f"{t}/{p}".encode() for t in sample for p in range(PARTITIONS)}
    print(f"after the restart and a read: idle {settled_fds(broker.pid)} fds")
