"""kcat's balanced consumer (``kcat -G group topic``, librdkafka's group consumer) against a
real ottla process.

kcat has no "stop at the end" in balanced mode that works reliably across versions (``-e``
needs every assigned partition to report EOF, and a rebalance resets that), so each run is
bounded by a message count (``-c N``) and a timeout. kcat commits with librdkafka's
auto-commit, including the final commit when it closes the consumer after the N-th message;
the committed offsets are then read back with confluent-kafka's AdminClient
(list_consumer_group_offsets, i.e. OffsetFetch) and ``Consumer.committed()``.

* one kcat run reads the whole topic: every record exactly once, and the group's committed
  offsets are the end offsets;
* a second run of the same group after more records were produced gets exactly the new ones
  (it resumed at the committed offsets);
* two kcat members started together split a 4-partition topic 2/2 (each reads only its
  partitions), together read every record exactly once, and both commit.
"""

from __future__ import annotations

import collections
import shutil
import subprocess

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import ck_create_topic, ck_group_offsets, unique_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
PARTITIONS = 3


def produce(bootstrap: str, topic: str, per_partition: int, tag: str, partitions: int = PARTITIONS) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors = []
    for i in range(per_partition * partitions):
        p.produce(topic, key=f"{tag}-{i}", value=f"{tag}-value-{i}", partition=i % partitions,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0 and not errors, errors[:5]


def kcat_group(bootstrap: str, group: str, topic: str, count: int, client_id: str) -> subprocess.Popen:
    assert KCAT, "kcat is not installed (scripts/test.sh installs the Debian package)"
    cmd = [KCAT, "-b", bootstrap, "-G", group, topic, "-c", str(count), "-q",
           "-f", "%p %o %k\\n",
           "-X", f"client.id={client_id}",
           "-X", "auto.offset.reset=earliest",
           "-X", "session.timeout.ms=6000",
           "-X", "heartbeat.interval.ms=1000",
           "-X", "auto.commit.interval.ms=1000"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float, what: str) -> list[tuple[int, int, str]]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what}: kcat did not finish within {timeout}s; got {len(out.splitlines())} "
                             f"messages; stderr:\n{err.decode(errors='replace')[-3000:]}") from None
    assert proc.returncode == 0, f"{what}: kcat exited {proc.returncode}:\n{err.decode(errors='replace')[-3000:]}"
    recs = []
    for line in out.decode().splitlines():
        p, o, k = line.split(" ", 2)
        recs.append((int(p), int(o), k))
    return recs


def test_kcat_group_consumes_to_end_and_commits(ottla):
    topic = unique_topic("groups-kcat")
    group = f"kcat-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=PARTITIONS)
    per = 1000
    produce(ottla.bootstrap, topic, per, "a")

    # Run 1: the whole topic.
    recs = finish(kcat_group(ottla.bootstrap, group, topic, per * PARTITIONS, "kcat-1"), 90, "run 1")
    by_p = collections.defaultdict(list)
    for p, o, k in recs:
        by_p[p].append(o)
    assert {p: sorted(v) for p, v in by_p.items()} == {p: list(range(per)) for p in range(PARTITIONS)}
    assert {k for _, _, k in recs} == {f"a-{i}" for i in range(per * PARTITIONS)}
    assert ck_group_offsets(ottla.bootstrap, group) == {p: per for p in range(PARTITIONS)}

    # Run 2, after 20 more per partition: exactly the new ones.
    produce(ottla.bootstrap, topic, 20, "b")
    recs = finish(kcat_group(ottla.bootstrap, group, topic, 20 * PARTITIONS, "kcat-2"), 60, "run 2")
    assert sorted((p, o) for p, o, _ in recs) == sorted((p, o) for p in range(PARTITIONS)
                                                        for o in range(per, per + 20))
    assert ck_group_offsets(ottla.bootstrap, group) == {p: per + 20 for p in range(PARTITIONS)}
    c = Consumer({"bootstrap.servers": ottla.bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        assert {tp.partition: tp.offset for tp in tps} == {p: per + 20 for p in range(PARTITIONS)}
    finally:
        c.close()


def test_kcat_two_members_split_the_topic(ottla):
    parts, per = 4, 300
    topic = unique_topic("groups-kcat2")
    group = f"kcat2-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=parts)
    produce(ottla.bootstrap, topic, per, "a", partitions=parts)
    # Both start together, so both are in the group's first generation (the broker's initial
    # rebalance delay): two partitions each, and each stops after reading its two.
    m1 = kcat_group(ottla.bootstrap, group, topic, 2 * per, "kcat-m1")
    m2 = kcat_group(ottla.bootstrap, group, topic, 2 * per, "kcat-m2")
    r1 = finish(m1, 90, "member 1")
    r2 = finish(m2, 90, "member 2")
    parts1 = {p for p, _, _ in r1}
    parts2 = {p for p, _, _ in r2}
    assert len(parts1) == 2 and len(parts2) == 2 and not (parts1 & parts2), \
        f"partitions read: member 1 {sorted(parts1)}, member 2 {sorted(parts2)}"
    seen = collections.Counter((p, o) for p, o, _ in r1 + r2)
    assert set(seen) == {(p, o) for p in range(parts) for o in range(per)}
    assert all(n == 1 for n in seen.values()), [k for k, n in seen.items() if n > 1][:10]
    assert ck_group_offsets(ottla.bootstrap, group) == {p: per for p in range(parts)}
