"""DescribeLogDirs (API 35): what ``kafka-log-dirs --describe`` (Admin ``describeLogDirs``) shows.

* ``test_java_admin_describe_log_dirs``: after records are written to three partitions, the Java
  Admin lists the broker's log dir (its configured path) with each partition's size equal to the
  bytes of its ``.log`` files on disk, offset lag 0 (a leader alone in its ISR), no future
  replica, and the file system's total and usable bytes as ``statvfs`` reports them (usable
  within 64 MiB of what Python sees a moment later).
* ``test_java_admin_describe_log_dirs_on_a_cluster``: three nodes, a replication-factor-3 topic
  written with acks=all; once every replica is in the ISR and holds the same bytes,
  ``describeLogDirs(List.of(1, 2, 3))`` (``kafka-log-dirs --describe --broker-list 1,2,3``)
  shows every partition in each broker's configured log dir, sized as that broker's ``.log``
  bytes (equal on leader and followers), offset lag 0, not future. A follower is then
  paused (SIGSTOP) and the leader of one partition takes more records with acks=1: the
  leader and the other follower report the grown size, equal to their disks; once resumed,
  the follower's lag is 0 whatever it holds, and once it is back in the ISR with the
  leader's bytes all three report equal sizes again.

Offset lag is Kafka's ``ReplicaManager.getLogEndOffsetLag`` for a current (not future)
replica: ``max(0, local high watermark - local log end offset)``. A replica's high watermark
never passes its own log end offset (``UnifiedLog.updateHighWatermark`` bounds it, on the
leader and on followers taking the leader's from a Fetch answer), so it is 0 on every replica,
caught up or not.
"""

from __future__ import annotations

import os
import pathlib
import signal
from types import SimpleNamespace

from confluent_kafka import Producer

from conftest import ck_create_topic, ck_produce, make_records, run_java, unique_topic, wait_for
from test_cluster import start_cluster
from test_replication import create_replicated, partition_state, segment_bytes


def test_java_admin_describe_log_dirs(java_program, ottla):
    topic = unique_topic("log-dirs")
    ck_create_topic(ottla.bootstrap, topic, partitions=3)
    p = Producer({"bootstrap.servers": ottla.bootstrap})
    for i in range(300):
        p.produce(topic, value=b"x" * (10 * (i % 7 + 1)), partition=i % 3)
    assert p.flush(30) == 0
    out = run_java(java_program, "OttlaLogDirs", ottla, "1", timeout=120)
    dirs = [line.split() for line in out.splitlines() if line.startswith("DIR ")]
    replicas = {parts[1]: parts[2:] for parts in (line.split() for line in out.splitlines()
                                                    if line.startswith("REPLICA "))}
    assert len(dirs) == 1, dirs
    _, path, total, usable = dirs[0]
    log_dir = ottla.partition_dir(topic, 0).parent
    assert os.path.realpath(path) == os.path.realpath(log_dir)
    st = os.statvfs(log_dir)
    assert int(total) == st.f_blocks * st.f_frsize
    assert abs(int(usable) - st.f_bavail * st.f_frsize) < 64 << 20
    for part in range(3):
        on_disk = sum(f.stat().st_size for f in ottla.partition_dir(topic, part).glob("*.log"))
        assert on_disk > 0
        assert replicas.get(f"{topic}-{part}") == [str(on_disk), "0", "false"], (part, replicas)


# --------------------------------------------------------------------------
# A three-node cluster
# --------------------------------------------------------------------------

PARTITIONS = 4
# A stopped follower leaves the ISR soon after the leader has more (as test_replication.py).
LAG_MS = 2000


def describe_log_dirs(java_program, bootstrap: str, brokers: list[int]) -> dict[int, dict]:
    """One Admin ``describeLogDirs(brokers)``: {broker: {log dir: {topic-partition:
    (size, offset lag, is future)}}}."""
    out = run_java(java_program, "OttlaLogDirs", SimpleNamespace(bootstrap=bootstrap),
                   ",".join(map(str, brokers)), timeout=120)
    got: dict[int, dict] = {}
    broker = dir_ = None
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("BROKER "):
            broker, dir_ = int(parts[1]), None
            got[broker] = {}
        elif line.startswith("DIR "):
            dir_ = parts[1]
            got[broker][dir_] = {}
        elif line.startswith("REPLICA "):
            got[broker][dir_][parts[1]] = (int(parts[2]), int(parts[3]), parts[4])
    assert sorted(got) == sorted(brokers), out
    return got


def log_bytes(node, topic: str, partition: int) -> int:
    return sum(f.stat().st_size for f in node.partition_dir(topic, partition).glob("*.log"))


def replicas_of(described: dict, node, topic: str) -> dict[int, tuple[int, int, str]]:
    """The one log dir ``node`` described, which must be its configured ``log.dirs``, and
    {partition: (size, lag, future)} of ``topic`` in it."""
    dirs = described[int(node.overrides["node.id"])]
    assert len(dirs) == 1, (node.name, dirs)
    (path, replicas), = dirs.items()
    assert os.path.realpath(path) == os.path.realpath(node.log_dir), (node.name, path)
    prefix = f"{topic}-"
    return {int(tp[len(prefix):]): v for tp, v in replicas.items()
            if tp.startswith(prefix) and tp[len(prefix):].isdigit()}


def assert_matches_disk(described: dict, nodes, topic: str) -> dict[int, dict[int, int]]:
    """Every described node lists every partition of ``topic`` in its log dir with its size
    equal to the ``.log`` bytes on its disk, offset lag 0, not future: {node id: {partition:
    size}}."""
    sizes = {}
    for node in nodes:
        replicas = replicas_of(described, node, topic)
        assert sorted(replicas) == list(range(PARTITIONS)), (node.name, replicas)
        on_disk = {p: log_bytes(node, topic, p) for p in range(PARTITIONS)}
        assert replicas == {p: (on_disk[p], 0, "false") for p in range(PARTITIONS)}, \
            f"{node.name}: described (size, lag, future) {replicas}, .log bytes on disk {on_disk}"
        sizes[int(node.overrides["node.id"])] = {p: replicas[p][0] for p in range(PARTITIONS)}
    return sizes


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` in the stopped state. ``kill`` returns once SIGSTOP is queued;
    the group stop begins when one thread takes the signal, and on a busy machine the others
    can go on (fetch, append) meanwhile."""
    tasks = list(pathlib.Path(f"/proc/{pid}/task").iterdir())
    return bool(tasks) and all(
        (t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for t in tasks)


def all_in_sync_and_identical(nodes, topic: str) -> bool:
    state = partition_state(nodes[0], topic)
    return (sorted(state) == list(range(PARTITIONS))
            and all(s[2] == [1, 2, 3] for s in state.values())
            and all(segment_bytes(nodes[0], topic, p) == segment_bytes(n, topic, p) != b""
                    for p in range(PARTITIONS) for n in nodes[1:]))


def test_java_admin_describe_log_dirs_on_a_cluster(java_program, ottla_factory):
    nodes = start_cluster(ottla_factory, extra={"replica.lag.time.max.ms": str(LAG_MS)})
    ids = [1, 2, 3]
    every = ",".join(n.bootstrap for n in nodes)
    topic = unique_topic("log-dirs-rf3")
    create_replicated(nodes[0], topic, PARTITIONS, min_insync=2)
    wait_for(lambda: sorted(partition_state(nodes[0], topic)) == list(range(PARTITIONS)), 30,
             f"{topic}'s partitions in metadata")
    ck_produce(every, topic, make_records(2000, "log-dirs-rf3"), conf={"acks": "all"},
               partition_of=lambda i: i % PARTITIONS)
    wait_for(lambda: all_in_sync_and_identical(nodes, topic), 60,
             "every replica in the ISR and holding its leader's bytes")

    # Every broker, leaders and followers alike.
    sizes = assert_matches_disk(describe_log_dirs(java_program, every, ids), nodes, topic)
    assert sizes[1] == sizes[2] == sizes[3], sizes
    assert all(s > 0 for s in sizes[1].values()), sizes

    # Pause a follower of partition 0; its leader takes more with acks=1.
    leader_id, replicas, _ = partition_state(nodes[0], topic)[0]
    follower_id, other_id = [r for r in sorted(replicas) if r != leader_id]
    leader, follower, other = nodes[leader_id - 1], nodes[follower_id - 1], nodes[other_id - 1]
    running = f"{leader.bootstrap},{other.bootstrap}"
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: stopped(follower.pid), 30, f"every thread of broker {follower_id} to stop")
        paused_bytes = log_bytes(follower, topic, 0)
        ck_produce(leader.bootstrap, topic, make_records(500, "while-paused"), conf={"acks": "1"},
                   partition=0)
        wait_for(lambda: follower_id not in partition_state(leader, topic)[0][2], 30,
                 f"broker {follower_id} to leave partition 0's ISR")
        wait_for(lambda: segment_bytes(other, topic, 0) == segment_bytes(leader, topic, 0), 30,
                 f"broker {other_id} to copy partition 0's new records")
        paused = assert_matches_disk(describe_log_dirs(java_program, running, [leader_id, other_id]),
                                     [leader, other], topic)
        assert paused[leader_id][0] == paused[other_id][0] > sizes[leader_id][0], (paused, sizes)
        assert log_bytes(follower, topic, 0) == paused_bytes
    finally:
        os.kill(follower.pid, signal.SIGCONT)

    # Resumed: whatever it holds yet, its local high watermark is not past its log end.
    resumed = describe_log_dirs(java_program, every, ids)
    for node in nodes:
        replicas = replicas_of(resumed, node, topic)
        assert sorted(replicas) == list(range(PARTITIONS)), (node.name, replicas)
        assert all(lag == 0 and future == "false" for _, lag, future in replicas.values()), \
            (node.name, replicas)

    # Back in the ISR with the leader's bytes: all three report the same sizes again.
    wait_for(lambda: all_in_sync_and_identical(nodes, topic), 60,
             f"broker {follower_id} back in the ISR holding its leaders' bytes")
    after = assert_matches_disk(describe_log_dirs(java_program, every, ids), nodes, topic)
    assert after[1] == after[2] == after[3], after
    assert after[follower_id][0] == paused[leader_id][0], (after, paused)
