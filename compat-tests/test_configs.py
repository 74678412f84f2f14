"""Dynamic configs, with real clients against a real broker: IncrementalAlterConfigs and
AlterConfigs (what `kafka-configs --alter` sends) on topics and brokers, checked and
answered with Kafka's errors, persisted through the controller, reported by
DescribeConfigs with the right source, and applied to the running broker without a
restart.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic, ResourceType)

from conftest import run_java, unique_topic, wait_for


def incremental(admin, resource_type, name, entries, validate_only=False):
    """Run one IncrementalAlterConfigs; the KafkaError, or None."""
    res = ConfigResource(resource_type, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, op, v in entries])
    try:
        admin.incremental_alter_configs([res], validate_only=validate_only)[res].result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0]


def described(admin, resource_type, name) -> dict:
    res = ConfigResource(resource_type, name)
    return admin.describe_configs([res])[res].result(timeout=30)


def produce_one(bootstrap, topic, size) -> KafkaError | None:
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0, "enable.idempotence": False,
                  "message.max.bytes": 10_000_000, "compression.type": "none"})
    out = []
    p.produce(topic, key=b"k", value=b"x" * size, on_delivery=lambda err, msg: out.append(err))
    assert p.flush(30) == 0
    return out[0]


def test_topic_configs_change_at_run_time_with_kafkas_checks(ottla):
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    topic = unique_topic("cfg")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    T = ResourceType.TOPIC
    SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE,
                                     AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT)

    # Applied to the running partition: a smaller max.message.bytes refuses what the
    # default accepted, at once and without a restart.
    assert produce_one(ottla.bootstrap, topic, 5000) is None
    assert incremental(admin, T, topic, [("max.message.bytes", SET, "2000"),
                                         ("retention.ms", SET, "3600000")]) is None
    c = described(admin, T, topic)
    assert c["max.message.bytes"].value == "2000"
    assert c["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert c["retention.ms"].value == "3600000"
    err = produce_one(ottla.bootstrap, topic, 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err

    # List configs take APPEND and SUBTRACT; the rest do not.
    assert incremental(admin, T, topic, [("cleanup.policy", APPEND, "compact")]) is None
    assert described(admin, T, topic)["cleanup.policy"].value == "delete,compact"
    assert incremental(admin, T, topic, [("cleanup.policy", SUBTRACT, "delete")]) is None
    assert described(admin, T, topic)["cleanup.policy"].value == "compact"
    err = incremental(admin, T, topic, [("retention.ms", APPEND, "5")])
    assert err.code() == KafkaError.INVALID_CONFIG, err

    # DELETE falls back to the default; validate_only changes nothing.
    assert incremental(admin, T, topic, [("max.message.bytes", DELETE, None)]) is None
    c = described(admin, T, topic)
    assert c["max.message.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert produce_one(ottla.bootstrap, topic, 5000) is None
    assert incremental(admin, T, topic, [("retention.ms", SET, "1")], validate_only=True) is None
    assert described(admin, T, topic)["retention.ms"].value == "3600000"

    # Kafka's errors, and nothing changed by a refused request.
    assert incremental(admin, T, topic, [("no.such.config", SET, "1")]).code() == KafkaError.INVALID_CONFIG
    assert incremental(admin, T, topic, [("retention.ms", SET, "soon")]).code() == KafkaError.INVALID_CONFIG
    assert incremental(admin, T, unique_topic("missing"),
                       [("retention.ms", SET, "1")]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert described(admin, T, topic)["retention.ms"].value == "3600000"

    # The legacy AlterConfigs replaces the whole set: retention.ms goes, segment.ms comes.
    res = ConfigResource(T, topic, set_config={"segment.ms": "600000"})
    admin.alter_configs([res])[res].result(timeout=30)
    c = described(admin, T, topic)
    assert c["segment.ms"].value == "600000"
    assert c["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Survives a restart (persisted by the controller).
    ottla.restart()
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    assert described(admin, T, topic)["segment.ms"].value == "600000"


def test_broker_configs_per_broker_and_cluster_wide(ottla, java_program):
    # The cluster-wide default (an empty broker name, which confluent-kafka cannot send):
    # through the Java Admin.
    run_java(java_program, "OttlaConfigs", ottla, timeout=120)
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    B = ResourceType.BROKER
    SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
    key = "leader.replication.throttled.rate"
    c = described(admin, B, "1")
    assert c[key].source == ConfigSource.DEFAULT_CONFIG.value and not c[key].is_read_only
    assert incremental(admin, B, "1", [(key, SET, "2000000")]) is None
    c = described(admin, B, "1")
    assert (c[key].value, c[key].source) == ("2000000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert "Updated leader.replication.throttled.rate to 2000000" in ottla.stderr_text()
    # Read-only broker configs are refused with INVALID_REQUEST, unknown ones INVALID_CONFIG.
    err = incremental(admin, B, "1", [("num.io.threads", SET, "4")])
    assert err.code() == KafkaError.INVALID_REQUEST and "Cannot update these configs dynamically" in err.str()
    assert incremental(admin, B, "1", [("no.such.config", SET, "4")]).code() == KafkaError.INVALID_CONFIG
    assert incremental(admin, B, "1", [(key, SET, "fast")]).code() == KafkaError.INVALID_CONFIG
    assert described(admin, B, "1")["num.io.threads"].is_read_only
    assert incremental(admin, B, "1", [(key, DELETE, None)]) is None
    c = described(admin, B, "1")
    assert c[key].source == ConfigSource.DEFAULT_CONFIG.value


def test_dynamic_broker_defaults_apply_to_running_topics(ottla_factory, java_program):
    """``kafka-configs --entity-default --alter --add-config log.retention.ms=...`` (the
    Java Admin on the empty broker name) changes the retention of every topic without an
    override on the running broker: old segments go, DescribeConfigs shows the topic's
    retention.ms from DYNAMIC_DEFAULT_BROKER_CONFIG with log.retention.ms as its synonym;
    a per-broker ``message.max.bytes`` beats the default and refuses larger records; a
    topic override still wins; ``log.retention.hours`` stays read-only, as in Kafka.
    Deleting the defaults restores the static values."""
    broker = ottla_factory(overrides={"log.retention.check.interval.ms": 300})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    plain, pinned = unique_topic("dflt"), unique_topic("pinned")
    for t, cfg in ((plain, {}), (pinned, {"retention.ms": str(7 * 24 * 3600 * 1000)})):
        cfg = {"segment.bytes": str(1 << 20), "file.delete.delay.ms": "100", **cfg}
        admin.create_topics([NewTopic(t, 1, 1, config=cfg)])[t].result(timeout=30)
    old = int(__import__("time").time() * 1000) - 3600 * 1000
    for t in (plain, pinned):
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for i in range(3000):
            p.produce(t, value=b"x" * 1000, timestamp=old)
        assert p.flush(30) == 0
    T, B = ResourceType.TOPIC, ResourceType.BROKER
    SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE

    run_java(java_program, "OttlaConfigs", broker, "set-default", "log.retention.ms", "60000", timeout=120)
    c = described(admin, T, plain)["retention.ms"]
    assert (c.value, c.source) == ("60000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    syn = c.synonyms["log.retention.ms"]
    assert (syn.value, syn.source) == ("60000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    assert described(admin, T, pinned)["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    def start_offset(topic):
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec
        tp = TopicPartition(topic, 0)
        return admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result().offset

    # The running partition took the new retention: its old sealed segments went; the
    # pinned topic kept all of its records.
    wait_for(lambda: start_offset(plain) > 0, 30, "the cluster default applied to the running topic")
    assert start_offset(pinned) == 0

    # Per broker beats the cluster default.
    run_java(java_program, "OttlaConfigs", broker, "set-default", "message.max.bytes", "500000", timeout=120)
    assert incremental(admin, B, "1", [("message.max.bytes", SET, "20000")]) is None
    c = described(admin, T, plain)["max.message.bytes"]
    assert (c.value, c.source) == ("20000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert produce_one(broker.bootstrap, plain, 50_000).code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert incremental(admin, B, "1", [("message.max.bytes", DELETE, None)]) is None
    assert described(admin, T, plain)["max.message.bytes"].value == "500000"
    assert produce_one(broker.bootstrap, plain, 50_000) is None

    err = incremental(admin, B, "1", [("log.retention.hours", SET, "1")])
    assert err.code() == KafkaError.INVALID_REQUEST and "log.retention.hours" in err.str()
    assert not described(admin, B, "1")["log.retention.ms"].is_read_only

    run_java(java_program, "OttlaConfigs", broker, "delete-default", "log.retention.ms", timeout=120)
    run_java(java_program, "OttlaConfigs", broker, "delete-default", "message.max.bytes", timeout=120)
    c = described(admin, T, plain)["retention.ms"]
    assert (c.value, c.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value)
    assert described(admin, T, plain)["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value


def test_a_config_change_racing_the_deletion_of_its_topic(ottla):
    """IncrementalAlterConfigs on a topic while it is being deleted: every answer is
    success (before the deletion) or UNKNOWN_TOPIC_OR_PARTITION (after), never another
    error, and nothing of the change survives the topic: a topic created again under
    the same name starts with Kafka's defaults."""
    import threading
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    T, SET = ResourceType.TOPIC, AlterConfigOpType.SET
    for round_ in range(5):
        topic = unique_topic(f"race{round_}")
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        answers = []

        def alter():
            for i in range(40):
                answers.append(incremental(admin, T, topic, [("retention.ms", SET, str(60_000 + i))]))

        racer = threading.Thread(target=alter)
        racer.start()
        admin.delete_topics([topic])[topic].result(timeout=30)
        racer.join(60)
        assert not racer.is_alive()
        codes = {a.code() if a else None for a in answers}
        assert codes <= {None, KafkaError.UNKNOWN_TOPIC_OR_PART}, codes
        err = incremental(admin, T, topic, [("retention.ms", SET, "1")])
        assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 30, f"{topic} gone")
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        c = described(admin, T, topic)["retention.ms"]
        assert (c.value, c.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value), round_
