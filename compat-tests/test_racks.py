"""Racks on a four-node cluster (nodes 1 and 2 in rack "a", 3 and 4 in rack "b"), with
real processes: rack-aware replica placement (`broker.rack`: every partition of a new
topic has a replica in each rack) and KIP-392 follower fetching (`replica.selector.class`
= Kafka's RackAwareReplicaSelector: a consumer that names its `client.rack` is sent by
the leader to the in-sync replica in its rack and reads everything from there).
"""

from __future__ import annotations

import json

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Rec, ck_produce, now_ms, unique_topic, wait_for
from test_cluster import bootstrap, start_cluster
from test_replication import partition_state

RACKS = {1: "a", 2: "a", 3: "b", 4: "b"}
SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def test_replicas_spread_over_racks_and_consumers_read_from_their_rack(ottla_factory):
    nodes = start_cluster(ottla_factory, n=4, extra={"replica.selector.class": SELECTOR},
                          per_node={i: {"broker.rack": r} for i, r in RACKS.items()})
    servers = bootstrap(nodes)
    admin = AdminClient({"bootstrap.servers": servers})

    # Placement: plain round-robin over 1,2,3,4 would put partition 0 on [1, 2], both
    # in rack "a"; rack-aware placement gives every partition one replica per rack.
    placed = unique_topic("placed")
    admin.create_topics([NewTopic(placed, num_partitions=8, replication_factor=2)],
                        operation_timeout=30)[placed].result(timeout=60)
    state = wait_for(lambda: (s := partition_state(nodes[0], placed)) and len(s) == 8 and s, 30, "the topic")
    for p, (leader, replicas, _isr) in state.items():
        assert sorted(RACKS[r] for r in replicas) == ["a", "b"], f"partition {p} on {replicas}"
    leaders = [state[p][0] for p in range(8)]
    assert sorted(leaders.count(b) for b in (1, 2, 3, 4)) == [2, 2, 2, 2], f"leaders spread: {leaders}"

    # Follower fetching: leader 1 (rack a), follower 3 (rack b).
    near = unique_topic("near")
    admin.create_topics([NewTopic(near, num_partitions=1, replica_assignment=[[1, 3]])],
                        operation_timeout=30)[near].result(timeout=60)
    records = [Rec(key=f"k{i}".encode(), value=f"v{i}".encode() * 20, headers=(), ts=now_ms())
               for i in range(2000)]
    ck_produce(servers, near, records, conf={"acks": "all"}, partition=0)
    wait_for(lambda: partition_state(nodes[0], near)[0][2] == [1, 3], 30, "replica 3 in sync")

    def consume(rack: str) -> tuple[list[bytes], dict[int, int]]:
        """Everything in the partition, and the Fetch requests sent to each broker."""
        stats: list[dict] = []
        c = Consumer({"bootstrap.servers": servers, "group.id": f"racks-{rack}", "client.rack": rack,
                      "enable.auto.commit": False, "statistics.interval.ms": 500,
                      "stats_cb": lambda s: stats.append(json.loads(s))})
        try:
            c.assign([TopicPartition(near, 0, 0)])
            values: list[bytes] = []
            deadline = now_ms() + 60_000
            while len(values) < len(records) and now_ms() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    values.append(m.value())
            # A few more fetch rounds at the end of the log, then the latest statistics.
            end = now_ms() + 2_000
            while now_ms() < end:
                c.poll(0.2)
            fetches = {b["nodeid"]: b["req"].get("Fetch", 0)
                       for b in stats[-1]["brokers"].values() if b["nodeid"] >= 0}
            return values, fetches
        finally:
            c.close()

    values, fetches = consume("b")
    print("rack b fetches", fetches)
    assert values == [r.value for r in records], "a rack-b consumer reads every record, in order"
    assert fetches.get(3, 0) >= 3, f"it fetched from follower 3 in its rack: {fetches}"
    assert fetches.get(3, 0) > fetches.get(1, 0), f"mostly from the follower: {fetches}"

    values, fetches = consume("a")
    assert values == [r.value for r in records]
    assert fetches.get(3, 0) == 0 and fetches.get(1, 0) >= 1, \
        f"a consumer in the leader's rack stays on the leader: {fetches}"
