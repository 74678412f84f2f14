"""DescribeLogDirs (API 35): what ``kafka-log-dirs --describe`` (Admin ``describeLogDirs``) shows.

* ``test_java_admin_describe_log_dirs``: after records are written to three partitions, the Java
  Admin lists the broker's log dir (its configured path) with each partition's size equal to the
  bytes of its ``.log`` files on disk, offset lag 0 (a leader alone in its ISR), no future
  replica, and the file system's total and usable bytes as ``statvfs`` reports them (usable
  within 64 MiB of what Python sees a moment later).
"""

from __future__ import annotations

import os

from confluent_kafka import Producer

from conftest import ck_create_topic, run_java, unique_topic


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
