"""Separate controllers and brokers (`process.roles`), with real processes: three
controller-only nodes form the metadata quorum and serve nothing else, two broker-only
nodes follow the quorum's metadata as observers (as KRaft brokers fetch
`__cluster_metadata`), register and heartbeat through it, and serve clients. What must
hold: clients see only the brokers; topics, produce and consume, and consumer groups
work across the two brokers; the quorum survives the loss of a controller; a restarted
broker catches up with metadata it missed; and misconfigured roles are refused with
Kafka's messages.
"""

from __future__ import annotations

import subprocess
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import (OTTLA_BIN, Rec, ck_consume_all, ck_group_offsets, ck_produce, free_port, now_ms,
                      run_java, unique_topic, wait_for)
from test_cluster import brokers_seen_by, ottla_format
from test_replication import partition_state

CONTROLLERS = 3
BROKERS = 2


def start_split_cluster(ottla_factory):
    cports = [free_port() for _ in range(CONTROLLERS)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{cports[i]}" for i in range(CONTROLLERS))
    common = {"controller.listener.names": "CONTROLLER", "controller.quorum.voters": voters,
              "offsets.topic.num.partitions": "4", "offsets.topic.replication.factor": "2",
              "broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"}
    controllers = [
        ottla_factory(overrides={**common, "node.id": str(i + 1), "process.roles": "controller",
                                 "listeners": f"CONTROLLER://127.0.0.1:{cports[i]}"},
                      name=f"controller{i + 1}", start=False)
        for i in range(CONTROLLERS)]
    brokers = []
    for j in range(BROKERS):
        port = free_port()
        brokers.append(ottla_factory(
            overrides={**common, "node.id": str(CONTROLLERS + j + 1), "process.roles": "broker",
                       "listeners": f"PLAINTEXT://127.0.0.1:{port}"},
            name=f"broker{j + 1}", start=False, port=port))
    cluster_id = subprocess.run([OTTLA_BIN, "random-uuid"], capture_output=True, text=True,
                                check=True).stdout.strip()
    for node in controllers + brokers:
        ottla_format(node, cluster_id)
    for node in controllers + brokers:
        node.start(wait=False)
    for i, c in enumerate(controllers, start=1):
        wait_for(lambda c=c, i=i: f"Ottla controller {i} started" in c.stderr_text() or c.died_unexpectedly(),
                 60, f"controller {i} to start")
        assert c.is_running(), c.stderr_tail(40)
    for b in brokers:
        b.wait_ready(90)
    return controllers, brokers


def test_controllers_and_brokers_on_separate_nodes(ottla_factory, java_program):
    controllers, brokers = start_split_cluster(ottla_factory)
    servers = ",".join(b.bootstrap for b in brokers)
    # Clients see the two brokers, never the controllers.
    for b in brokers:
        wait_for(lambda b=b: brokers_seen_by(b) == {4, 5}, 30, f"{b.name} to list brokers 4 and 5")

    # kafka-metadata-quorum's view: controllers vote, brokers observe.
    run_java(java_program, "OttlaCluster", brokers[0], "observers", "1,2,3", "4,5", timeout=120)

    topic = unique_topic("roles")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=2)],
                        operation_timeout=30)[topic].result(timeout=60)
    wait_for(lambda: all(len(partition_state(b, topic)) == 4 for b in brokers), 30, "both brokers see the topic")
    records = [Rec(key=f"k{i}".encode(), value=f"v{i}".encode(), headers=(), ts=now_ms()) for i in range(400)]
    acked = ck_produce(servers, topic, records, conf={"acks": "all"})
    got = ck_consume_all(brokers[1].bootstrap, topic, range(4))
    assert sorted(m.value() for ms in got.values() for m in ms) == sorted(r.value for r in records)
    assert sum(len(v) for v in got.values()) == len(acked)

    # A consumer group: __consumer_offsets lives on the brokers.
    group = f"roles-group-{now_ms()}"
    c = Consumer({"bootstrap.servers": servers, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 60
        while seen < len(records) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen += 1
        assert seen == len(records)
        c.commit(asynchronous=False)
    finally:
        c.close()
    committed = ck_group_offsets(servers, group)
    assert sum(committed.values()) == len(records), committed

    # The quorum loses a controller and still takes changes (2 of 3).
    controllers[0].kill9()
    second = unique_topic("roles-after-kill")
    admin2 = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    admin2.create_topics([NewTopic(second, num_partitions=2, replication_factor=2)],
                         operation_timeout=60, request_timeout=60)[second].result(timeout=90)
    wait_for(lambda: len(partition_state(brokers[0], second)) == 2, 30, "broker 4 sees the new topic")

    # A broker that was down catches up with what it missed, and serves its replicas.
    brokers[0].stop()
    third = unique_topic("roles-while-down")
    admin2.create_topics([NewTopic(third, num_partitions=1, replication_factor=1)],
                         operation_timeout=60, request_timeout=60)[third].result(timeout=90)
    brokers[0].start()
    wait_for(lambda: third in AdminClient({"bootstrap.servers": brokers[0].bootstrap})
             .list_topics(timeout=10).topics, 30, "the restarted broker to know the new topic")
    wait_for(lambda: partition_state(brokers[0], topic) and
             all(s[2] == sorted(s[1]) for s in partition_state(brokers[0], topic).values()), 60,
             "every partition of the first topic back in sync")
    got = ck_consume_all(brokers[0].bootstrap, topic, range(4))
    assert sum(len(v) for v in got.values()) == len(records)
    assert "Following the metadata of controller.quorum.voters as an observer" in brokers[0].stderr_text()


def test_misconfigured_roles_are_refused(tmp_path):
    cport, port = free_port(), free_port()
    voters = f"1@127.0.0.1:{cport}"

    def refused(**overrides) -> str:
        cmd = [OTTLA_BIN, "serve", "--override", f"log.dirs={tmp_path / 'data'}"]
        for k, v in overrides.items():
            cmd += ["--override", f"{k.replace('_', '.')}={v}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0, f"{overrides} was accepted"
        return done.stderr

    err = refused(**{"node_id": 1, "process_roles": "broker", "controller_quorum_voters": voters,
                     "controller_listener_names": "CONTROLLER", "listeners": f"PLAINTEXT://127.0.0.1:{port}"})
    assert "If process.roles contains just the 'broker' role, the node id 1 must not be included in the set of voters" in err
    err = refused(**{"node_id": 2, "process_roles": "controller", "controller_quorum_voters": voters,
                     "controller_listener_names": "CONTROLLER", "listeners": f"CONTROLLER://127.0.0.1:{cport}"})
    assert "If process.roles contains the 'controller' role, the node id 2 must be included in the set of voters" in err
    err = refused(**{"node_id": 1, "process_roles": "controller", "controller_quorum_voters": voters,
                     "controller_listener_names": "CONTROLLER",
                     "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"})
    assert "must only contain KRaft controller listeners" in err
    err = refused(**{"process_roles": "broker"})
    assert "needs controller.quorum.voters" in err
    err = refused(**{"process_roles": "broker,zookeeper"})
    assert "Invalid value zookeeper for configuration process.roles: String must be one of: broker, controller" in err
