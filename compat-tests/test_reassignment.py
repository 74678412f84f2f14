"""Partition reassignment on a four-node cluster, with real processes: what
`kafka-reassign-partitions --execute / --verify / --cancel` does through the Java Admin
(AlterPartitionReassignments and ListPartitionReassignments), with Kafka's replication
throttles, set through IncrementalAlterConfigs as `--throttle` sets them, slowing the
copy down. The moved data must arrive whole on the new replicas,
the old replicas must delete their copies, and a cancelled move must leave the
partition where it was. The Admin calls and their checks are in
java/src/OttlaReassign.java; this file sets the cluster up and checks the data and the
log directories.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Rec, ck_consume_all, ck_produce, now_ms, run_java, unique_topic, wait_for
from test_cluster import bootstrap, start_cluster
from test_replication import partition_state

# OttlaReassign throttles at 150 kB/s each way, through dynamic configs as
# kafka-reassign-partitions --throttle does: the first ~1.5 MB of a move goes at once
# (Kafka's rate is measured over 10 whole windows of 1 s), the rest at the limit.
RECORDS_PER_PARTITION = 3000  # 1 KiB each: ~3 MB, about 10 s at the throttled rate


def test_reassignment_moves_partitions_and_cancels_through_the_java_admin(ottla_factory, java_program):
    nodes = start_cluster(ottla_factory, n=4)
    servers = bootstrap(nodes)
    topic = unique_topic("reassign")
    admin = AdminClient({"bootstrap.servers": servers})
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replica_assignment=[[1, 2], [2, 1], [1, 2]])],
                             operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=60)
    payload = b"x" * 1000
    sent = {}
    for p in range(3):
        records = [Rec(key=f"p{p}-{i}".encode(), value=f"p{p}-{i}:".encode() + payload, headers=(),
                       ts=now_ms()) for i in range(RECORDS_PER_PARTITION)]
        ck_produce(servers, topic, records, conf={"acks": "all"}, partition=p)
        sent[p] = [r.value for r in records]

    run_java(java_program, "OttlaReassign", nodes[0], topic, timeout=400)

    def dirs(partition: int) -> set[int]:
        return {i for i, n in enumerate(nodes, start=1) if n.partition_dir(topic, partition).exists()}
    # Replicas that left deleted their copies; the new ones hold the partition.
    wait_for(lambda: dirs(0) == {3, 4}, 30, f"partition 0 only on brokers 3 and 4 (on {dirs(0)})")
    wait_for(lambda: dirs(1) == {1, 2}, 30, f"partition 1 back on 1 and 2 only (on {dirs(1)})")
    assert dirs(2) == {1, 2}
    # Every broker has applied the move before the consumer asks any of them.
    wait_for(lambda: all(partition_state(n, topic)[0][0] in (3, 4) for n in nodes), 30,
             "every broker to name 3 or 4 as partition 0's leader")

    # The data arrived whole on the new replicas.
    got = ck_consume_all(servers, topic, range(3))
    for p in range(3):
        assert [m.value() for m in got[p]] == sent[p], f"partition {p} holds exactly what was acknowledged"
        assert [m.offset() for m in got[p]] == list(range(RECORDS_PER_PARTITION))
    # Each new replica holds the same bytes as its leader.
    seg = lambda n, p: b"".join(f.read_bytes() for f in sorted(n.partition_dir(topic, p).glob("*.log")))
    assert seg(nodes[2], 0) == seg(nodes[3], 0), "brokers 3 and 4 hold identical logs of partition 0"
    logs = "".join(n.stderr_text() for n in nodes)
    assert "Started the reassignment of" in logs and "Cancelled the reassignment of" in logs
    assert "Stopped hosting" in logs
    assert "Updated leader.replication.throttled.rate to 150000" in logs
