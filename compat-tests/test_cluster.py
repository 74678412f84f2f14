"""A three-node cluster: three `ottla serve` processes (combined broker and controller)
form the metadata quorum (openraft) over their CONTROLLER listeners, as three KRaft
nodes in combined mode do, and serve clients together.

What holds here: metadata changes are replicated to every node; partitions (and the
group coordinator's `__consumer_offsets` partitions) are spread over the three brokers
and clients follow the leaders; the quorum keeps accepting metadata changes with one
controller down and refuses them with two down, without corrupting anything. Partition
data replication (replication factor 3) is tested in test_replication.py.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import (OTTLA_BIN, ck_consume_all, ck_group_offsets, ck_produce, free_port, make_records,
                      run_java, unique_topic, wait_for)

NODES = 3


def start_cluster(ottla_factory, n: int = NODES, extra: dict | None = None,
                  per_node: dict[int, dict] | None = None):
    """`n` formatted, started nodes; `extra` settings for all of them, `per_node` for
    node ids (1-based) one by one."""
    ports = [free_port() for _ in range(n)]
    controller_ports = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller_ports[i]}" for i in range(n))
    nodes = []
    for i in range(n):
        overrides = {
            "node.id": str(i + 1),
            "listeners": f"PLAINTEXT://127.0.0.1:{ports[i]},CONTROLLER://127.0.0.1:{controller_ports[i]}",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "offsets.topic.num.partitions": "6",
            **(extra or {}),
            **((per_node or {}).get(i + 1, {})),
        }
        nodes.append(ottla_factory(overrides=overrides, name=f"node{i + 1}", start=False, port=ports[i]))
    return format_and_start(nodes)


def format_and_start(nodes):
    """Format every node's directories with one new cluster id, as Kafka's kafka-storage
    does, then start them all and wait: a node finishes starting only once a quorum has
    formed."""
    cluster_id = subprocess.run([OTTLA_BIN, "random-uuid"], capture_output=True, text=True,
                                check=True).stdout.strip()
    for node in nodes:
        ottla_format(node, cluster_id)
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready(90)
    return nodes


def ottla_format(node, cluster_id: str) -> subprocess.CompletedProcess:
    cmd = [OTTLA_BIN, "format", "-t", cluster_id]
    for k, v in node.overrides.items():
        cmd += ["--override", f"{k}={v}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done
    return done


def bootstrap(nodes) -> str:
    return ",".join(n.bootstrap for n in nodes)


def brokers_seen_by(node) -> set[int]:
    md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=10)
    return set(md.brokers)


def cluster_id_seen_by(node) -> str:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})  # kept alive until the answer
    return admin.describe_cluster(request_timeout=30).result(timeout=60).cluster_id


def topics_seen_by(node) -> dict[str, dict[int, int]]:
    """{topic: {partition: leader}} in `node`'s own Metadata answer."""
    md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=10)
    return {name: {p: t.partitions[p].leader for p in t.partitions} for name, t in md.topics.items()}


def create_topic(node, topic: str, partitions: int, timeout: float = 30) -> None:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                             operation_timeout=timeout, request_timeout=timeout)
    fs[topic].result(timeout=timeout + 30)


def test_three_nodes_share_metadata_and_serve_the_partitions_each_leads(ottla_factory):
    nodes = start_cluster(ottla_factory)
    # The cluster id is the one the nodes were formatted with, on every node.
    formatted = {(n.log_dir / "meta.properties").read_text().split("cluster.id=")[1].split()[0] for n in nodes}
    assert len(formatted) == 1, formatted
    assert {cluster_id_seen_by(n) for n in nodes} == formatted
    for node in nodes:
        wait_for(lambda node=node: brokers_seen_by(node) == {1, 2, 3}, 30,
                 f"{node.name} to list the three registered brokers")

    topic = unique_topic("spread")
    create_topic(nodes[0], topic, 6)
    # Every node learns the topic from the replicated metadata log, with the same leaders.
    wait_for(lambda: all(topic in topics_seen_by(n) for n in nodes), 30, "the topic on every node")
    leaders = [topics_seen_by(n)[topic] for n in nodes]
    assert leaders[0] == leaders[1] == leaders[2], leaders
    assert set(leaders[0].values()) == {1, 2, 3}, f"partitions spread over the brokers: {leaders[0]}"

    # Clients follow the leaders: each record lands on the broker that leads its partition.
    records = make_records(600, "cluster")
    acked = ck_produce(bootstrap(nodes), topic, records)
    assert sorted(acked) == list(range(600))
    got = ck_consume_all(bootstrap(nodes), topic, range(6))
    sent = sorted(r.value for r in records)
    assert sorted(m.value() for msgs in got.values() for m in msgs) == sent
    for p, msgs in got.items():
        # Each partition's log lives on its leader only.
        leader = leaders[0][p]
        holder = [n for n in nodes if n.partition_dir(topic, p).exists()]
        assert [n.name for n in holder] == [f"node{leader}"], (p, leader, [n.name for n in holder])
        assert [m.offset() for m in msgs] == list(range(len(msgs)))

    # A consumer group: its coordinator is the leader of its __consumer_offsets
    # partition, wherever that is; the commits are read back from any node.
    group = unique_topic("cluster-group")
    c = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 90
        while seen < 600 and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=1.0):
                if m.error() is None:
                    seen += 1
        assert seen == 600, seen
        c.commit(asynchronous=False)
    finally:
        c.close()
    ends = {p: len(msgs) for p, msgs in got.items()}
    for node in nodes:
        assert ck_group_offsets(node.bootstrap, group) == ends, node.name


def test_the_quorum_survives_one_controller_down_and_refuses_changes_with_two(ottla_factory):
    nodes = start_cluster(ottla_factory)
    first = unique_topic("before")
    create_topic(nodes[0], first, 3)

    # One of three down (whichever it is, perhaps the active controller): a majority is
    # left, and metadata changes go on through either survivor.
    nodes[0].kill9()
    second = unique_topic("one-down")
    create_topic(nodes[1], second, 3, timeout=60)
    wait_for(lambda: second in topics_seen_by(nodes[2]), 30, "the change on the other survivor")

    # Two of three down: no majority, so no change can be committed. The request fails
    # (REQUEST_TIMED_OUT, as from Kafka when no controller answers) and the node keeps
    # serving what it has.
    nodes[1].kill9()
    third = unique_topic("two-down")
    with pytest.raises(KafkaException) as refused:
        create_topic(nodes[2], third, 3, timeout=10)
    # The client's own deadline (10 s) passes before the broker's (30 s) answers
    # REQUEST_TIMED_OUT: either way, a timeout and not some other error.
    assert refused.value.args[0].code() in (KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT), refused.value
    assert first in topics_seen_by(nodes[2]) and second in topics_seen_by(nodes[2])

    # Both return: the quorum forms again, accepts changes, and every node agrees.
    nodes[0].start(wait=False)
    nodes[1].start(wait=False)
    nodes[0].wait_ready(90)
    nodes[1].wait_ready(90)
    fourth = unique_topic("back")
    create_topic(nodes[0], fourth, 3, timeout=60)

    def agreed():
        views = [set(topics_seen_by(n)) for n in nodes]
        return views[0] == views[1] == views[2] and {first, second, fourth} <= views[0]
    wait_for(agreed, 60, "every node to list the same topics")


def test_java_admin_describes_the_quorum_and_clients_follow_the_leaders(ottla_factory, java_program):
    """Admin.describeMetadataQuorum (kafka-metadata-quorum's call) and describeCluster,
    asked of one node, then a Java producer and consumer across the cluster."""
    nodes = start_cluster(ottla_factory)
    for node in nodes:
        wait_for(lambda node=node: brokers_seen_by(node) == {1, 2, 3}, 30,
                 f"{node.name} to list the three registered brokers")
    # Any node answers, whether or not it is the active controller.
    for node in nodes:
        run_java(java_program, "OttlaCluster", node, "quorum", str(NODES), timeout=300)


def test_a_quorum_node_refuses_to_start_on_an_unformatted_directory(ottla_factory):
    """As Kafka's does: a controller quorum node needs `format` first (a lone embedded
    node formats itself)."""
    port, controller_port = free_port(), free_port()
    node = ottla_factory(overrides={
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
    }, name="unformatted", start=False, port=port)
    node.start(wait=False)
    deadline = time.monotonic() + 30
    while node.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not node.is_running(), "an unformatted quorum node must not start"
    node.proc.wait()
    assert node.proc.returncode != 0
    assert "have you run `ottla format`" in node.stderr_since_start(), node.stderr_tail(20)
    node._expected_exit = True
    # Formatted, the same node starts (a quorum of one) and serves.
    cluster_id = subprocess.run([OTTLA_BIN, "random-uuid"], capture_output=True, text=True, check=True).stdout.strip()
    ottla_format(node, cluster_id)
    again = subprocess.run([OTTLA_BIN, "format", "-t", cluster_id,
                            *[a for k, v in node.overrides.items() for a in ("--override", f"{k}={v}")]],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already formatted" in again.stderr, again
    node.start()
    assert cluster_id_seen_by(node) == cluster_id
