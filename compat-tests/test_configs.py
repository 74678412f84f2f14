"""Dynamic configs, with real clients against a real broker: IncrementalAlterConfigs and
AlterConfigs (what `kafka-configs --alter` sends) on topics and brokers, checked and
answered with Kafka's errors, persisted through the controller, reported by
DescribeConfigs with the right source, and applied to the running broker without a
restart. The tests show the running logs acting on the new values: segment.bytes rolls at
the new size, min.insync.replicas refuses or accepts acks=all, and cleanup.policy starts
or stops compaction and time retention. Refused values (out of range, wrong type,
read-only) change nothing.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic, OffsetSpec, ResourceType)

from conftest import _recv_exact, now_ms, run_java, segment_files, unique_topic, wait_for


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
    # A value of the wrong type: see test_broker_config_refusals_are_kafkas.
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


# --------------------------------------------------------------------------
# Changed configs act on the running logs (segment.bytes, min.insync.replicas,
# cleanup.policy), proven by what the partition then does.
# --------------------------------------------------------------------------

MIB = 1 << 20
SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE


def produce_values(bootstrap: str, topic: str, count: int, key=None, value_size: int = 1000,
                   timestamp: int | None = None, **conf) -> None:
    """``count`` records of ``value_size`` bytes to partition 0, all acknowledged.
    ``key(i)`` gives the key of record ``i``."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 64 * 1024,
                  "compression.type": "none", **conf})
    errors = []
    for i in range(count):
        kw = {"timestamp": timestamp} if timestamp is not None else {}
        p.produce(topic, key=key(i) if key else None, value=f"{i:08d}".encode().ljust(value_size, b"v"),
                  partition=0, on_delivery=lambda err, msg: err and errors.append(err), **kw)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0 and not errors, errors[:3]


def produce_acks(bootstrap: str, topic: str, acks: str) -> KafkaError | None:
    """One record with ``acks``, no retries: its delivery error, or None."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "retries": 0,
                  "enable.idempotence": False, "message.timeout.ms": 20_000})
    out = []
    p.produce(topic, key=b"k", value=b"v", partition=0, on_delivery=lambda err, msg: out.append(err))
    assert p.flush(30) == 0
    return out[0]


def watermarks(admin, topic: str) -> tuple[int, int]:
    tp = TopicPartition(topic, 0)
    early = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=30).offset
    late = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(timeout=30).offset
    return early, late


def test_a_lowered_segment_bytes_rolls_the_running_log_at_the_new_size(ottla):
    """segment.bytes lowered by IncrementalAlterConfigs on a running topic: the next
    append rolls the (already larger) active segment, as Kafka's ``maybeRoll`` does, and
    every segment after it stays within the new size."""
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    topic = unique_topic("segbytes")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    part = ottla.partition_dir(topic, 0)
    produce_values(ottla.bootstrap, topic, 1600)  # ~1.6 MB: one segment at the 1 GiB default
    files = segment_files(part)
    assert len(files) == 1 and files[0].stat().st_size > 1.5 * MIB, files

    assert incremental(admin, ResourceType.TOPIC, topic, [("segment.bytes", SET, str(MIB))]) is None
    c = described(admin, ResourceType.TOPIC, topic)["segment.bytes"]
    assert (c.value, c.source) == (str(MIB), ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    produce_values(ottla.bootstrap, topic, 3200)  # ~3.3 MB more

    files = segment_files(part)
    sizes = [f.stat().st_size for f in files]
    assert len(files) >= 4, list(zip(files, sizes))
    assert int(files[1].stem) == 1600, f"the first append after the change rolls: {files}"
    assert all(size <= MIB for size in sizes[1:]), list(zip([f.name for f in files], sizes))
    assert watermarks(admin, topic) == (0, 4800)


def test_min_insync_replicas_raised_and_lowered_on_a_running_topic(ottla):
    """min.insync.replicas raised above the replication factor (1 on a single broker):
    acks=all is refused with NOT_ENOUGH_REPLICAS (19) before anything is appended, while
    acks=1 is still accepted. Deleted again (back to the default of 1): acks=all is
    accepted."""
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    topic = unique_topic("minisr")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    T = ResourceType.TOPIC
    assert produce_acks(ottla.bootstrap, topic, "all") is None

    assert incremental(admin, T, topic, [("min.insync.replicas", SET, "2")]) is None
    assert described(admin, T, topic)["min.insync.replicas"].value == "2"
    err = produce_acks(ottla.bootstrap, topic, "all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    assert watermarks(admin, topic) == (0, 1), "the refused record was not appended"
    assert produce_acks(ottla.bootstrap, topic, "1") is None
    assert watermarks(admin, topic) == (0, 2)

    assert incremental(admin, T, topic, [("min.insync.replicas", DELETE, None)]) is None
    c = described(admin, T, topic)["min.insync.replicas"]
    assert (c.value, c.source) == ("1", ConfigSource.DEFAULT_CONFIG.value)
    assert produce_acks(ottla.bootstrap, topic, "all") is None
    assert watermarks(admin, topic) == (0, 3)


def read_from_zero(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record of partition 0, from offset 0 to the end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("cfg-reader"),
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= high:
                        return out
                    continue
                raise AssertionError(f"consumer error {m.error()}")
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() + 1 >= high:
                return out
        raise AssertionError(f"read {len(out)} records in 60 s without reaching {high}")
    finally:
        c.close()


def test_cleanup_policy_changes_switch_compaction_and_retention_on_a_running_topic(ottla_factory):
    """A topic is written under ``cleanup.policy=delete`` with records stamped two hours
    ago: 20 keys updated over and over, and every fourth record under a key of its own.
    It is then switched to ``compact`` together with ``retention.ms`` of one hour, and
    the running cleaner compacts it. A consumer from offset 0 sees each updated key once,
    with its latest value, and every single-use key. Time retention is not applied to a
    compact-only topic, so nothing is deleted and the log start stays 0. Switched back to
    ``delete``, the same retention.ms now deletes the old segments, and the log start
    moves to the first remaining segment. (Every cleaned segment keeps some two-hour-old
    records, so its largest timestamp is old. A segment the cleaner empties falls back to
    its file's modification time, in Kafka as here.)"""
    broker = ottla_factory(overrides={"log.cleaner.backoff.ms": 200,
                                      "log.retention.check.interval.ms": 300})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique_topic("policy")
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "delete", "segment.bytes": str(MIB), "min.cleanable.dirty.ratio": "0.01",
        "file.delete.delay.ms": "100"})])[topic].result(timeout=30)
    T = ResourceType.TOPIC
    part = broker.partition_dir(topic, 0)
    written, updated_keys = 3200, 20
    keys = [f"once-{i:05d}".encode() if i % 4 == 3 else f"key-{i % updated_keys:02d}".encode()
            for i in range(written)]
    latest = {k: i for i, k in enumerate(keys)}  # each key's last index
    old = now_ms() - 2 * 3600 * 1000
    produce_values(broker.bootstrap, topic, written, key=keys.__getitem__, timestamp=old)

    assert incremental(admin, T, topic, [("cleanup.policy", SET, "compact"),
                                         ("retention.ms", SET, str(3600 * 1000))]) is None
    assert described(admin, T, topic)["cleanup.policy"].value == "compact"
    # A bit more than a segment of one filler key: the segment holding the last updates
    # rolls, so every update is in a cleanable (inactive) segment.
    filler = 1200
    produce_values(broker.bootstrap, topic, filler, key=lambda i: b"filler", timestamp=old)
    end = written + filler

    def compacted():
        records = read_from_zero(broker.bootstrap, topic)
        got: dict[bytes, list[bytes]] = {}
        for _o, k, v in records:
            if k != b"filler":
                got.setdefault(k, []).append(v[:8])
        want = {k: [f"{i:08d}".encode()] for k, i in latest.items()}
        return got == want and records

    records = wait_for(compacted, 60, "the cleaner compacting the topic after cleanup.policy=compact",
                       interval=1.0)
    offsets = [o for o, _k, _v in records]
    assert offsets == sorted(set(offsets)) and len(records) < end // 2, (len(records), end)
    assert "Log cleaner cleaned log" in broker.stderr_text()
    assert watermarks(admin, topic) == (0, end), "no time retention on a compact-only topic"

    segments_before = segment_files(part)
    assert incremental(admin, T, topic, [("cleanup.policy", SET, "delete")]) is None
    # Every record is two hours old and retention.ms is one hour: the old segments go.
    early = wait_for(lambda: (e := watermarks(admin, topic)[0]) > 0 and e, 30,
                     "time retention after cleanup.policy=delete")
    wait_for(lambda: not list(part.glob("*.deleted")), 30, ".deleted files removed")
    files = segment_files(part)
    assert int(files[0].stem) == early, (early, files)
    assert len(files) < len(segments_before), (segments_before, files)
    assert watermarks(admin, topic) == (early, end)


# --------------------------------------------------------------------------
# Refused values change nothing
# --------------------------------------------------------------------------

# Kafka 4.1's ConfigDef wording (ConfigException(name, value, message)), as the
# controller answers it for topic configs (INVALID_CONFIG).
BAD_TOPIC_VALUES = [
    ("segment.bytes", "1000", "Value must be at least 1048576"),  # Kafka 4.x: atLeast(1 MiB)
    ("segment.bytes", "big", "Not a number of type INT"),
    ("segment.bytes", "2147483648", "Not a number of type INT"),
    ("cleanup.policy", "foo", "String must be one of: compact, delete"),
    ("min.insync.replicas", "0", "Value must be at least 1"),
    ("retention.ms", "-2", "Value must be at least -1"),
    ("min.cleanable.dirty.ratio", "1.5", "Value must be no more than 1"),
    ("max.message.bytes", "many", "Not a number of type INT"),
]


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_out_of_range_and_wrong_type_values_are_refused_and_change_nothing(ottla):
    """Each bad value, sent together with a valid change to another key, through
    IncrementalAlterConfigs and through AlterConfigs: INVALID_CONFIG with Kafka's
    "Invalid value V for configuration K: ..." message. The whole resource is refused, so
    the valid change is not applied either, and DescribeConfigs afterwards shows every
    value and source as before."""
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    topic = unique_topic("badval")
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "3600000"})])[topic].result(timeout=30)
    T = ResourceType.TOPIC
    watched = ("segment.bytes", "cleanup.policy", "min.insync.replicas", "retention.ms",
               "min.cleanable.dirty.ratio", "max.message.bytes", "segment.ms")

    def snapshot():
        c = described(admin, T, topic)
        return {k: (c[k].value, c[k].source) for k in watched}

    before = snapshot()
    assert before["retention.ms"] == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    for key, value, reason in BAD_TOPIC_VALUES:
        expected = f"Invalid value {value} for configuration {key}: {reason}"
        err = incremental(admin, T, topic, [("segment.ms", SET, "600000"), (key, SET, value)])
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, (key, value, err)
        assert err.str() == expected, (key, value, err.str())
        res = ConfigResource(T, topic, set_config={"segment.ms": "600000", key: value})
        try:
            admin.alter_configs([res])[res].result(timeout=30)
            raise AssertionError(f"AlterConfigs accepted {key}={value}")
        except KafkaException as e:
            err = e.args[0]
        assert err.code() == KafkaError.INVALID_CONFIG and err.str() == expected, (key, value, err)
        assert snapshot() == before, (key, value)
    # The topic still takes a valid change afterwards.
    assert incremental(admin, T, topic, [("segment.bytes", SET, str(MIB))]) is None
    assert described(admin, T, topic)["segment.bytes"].value == str(MIB)


# --------------------------------------------------------------------------
# The legacy AlterConfigs (key 33) on BROKER resources
# --------------------------------------------------------------------------


def kafka_request(broker, request, version: int):
    """Send one request (kafka-python's classes generated from Kafka's schemas) on a new
    connection; return the decoded response. For what confluent-kafka cannot send: the
    cluster-default broker resource (an empty name) and other brokers' ids."""
    request.with_header(correlation_id=11, client_id="ottla-compat-tests")
    with socket.create_connection((broker.host, broker.port), timeout=30) as s:
        s.settimeout(30)
        s.sendall(request.encode(version=version, header=True, framed=True))
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        payload = _recv_exact(s, size)
    return request.header.get_response_class().decode(payload, header=True)


def legacy_alter_broker(broker, name: str, configs: dict[str, str]) -> tuple[int, str | None]:
    """AlterConfigs v2 on BROKER ``name``: (error code, error message)."""
    from kafka.protocol.admin import AlterConfigsRequest
    R = AlterConfigsRequest
    req = R(version=2, validate_only=False, resources=[R.AlterConfigsResource(
        version=2, resource_type=4, resource_name=name,
        configs=[R.AlterConfigsResource.AlterableConfig(version=2, name=k, value=v)
                 for k, v in configs.items()])])
    (r,) = kafka_request(broker, req, 2).responses
    assert (r.resource_type, r.resource_name) == (4, name)
    return r.error_code, r.error_message


def describe_broker(broker, name: str) -> dict[str, tuple[str | None, int, bool]]:
    """DescribeConfigs v4 on BROKER ``name``: {key: (value, source, read_only)}."""
    from kafka.protocol.admin import DescribeConfigsRequest
    R = DescribeConfigsRequest
    req = R(version=4, include_synonyms=True, include_documentation=False, resources=[
        R.DescribeConfigsResource(version=4, resource_type=4, resource_name=name,
                                  configuration_keys=None)])
    (r,) = kafka_request(broker, req, 4).results
    assert r.error_code == 0, (name, r.error_code, r.error_message)
    return {c.name: (c.value, c.config_source, c.read_only) for c in r.configs}


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_legacy_alter_configs_on_broker_resources(ottla):
    """AlterConfigs (what ``kafka-configs --alter`` sent before 2.3) on the BROKER
    resource of this broker ("1") and on the cluster default (""). It replaces the
    resource's whole dynamic set. A per-broker value beats the cluster default, and an
    empty set for "1" lets the default show through, to the broker and to a topic
    without an override. A read-only key is refused with INVALID_REQUEST and Kafka's
    message, and the refused request changes nothing: the replace-all it asked for is
    not applied, on either resource."""
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    B, T = ResourceType.BROKER, ResourceType.TOPIC
    DYN_BROKER = ConfigSource.DYNAMIC_BROKER_CONFIG.value
    DYN_DEFAULT = ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    DEFAULT = ConfigSource.DEFAULT_CONFIG.value
    topic = unique_topic("legacy-broker")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    rate = "leader.replication.throttled.rate"

    # Per broker, through confluent-kafka's alter_configs: the whole per-broker set.
    assert incremental(admin, B, "1", [(rate, SET, "2000000")]) is None
    res = ConfigResource(B, "1", set_config={"log.retention.ms": "7200000"})
    admin.alter_configs([res])[res].result(timeout=30)
    c = described(admin, B, "1")
    assert (c["log.retention.ms"].value, c["log.retention.ms"].source) == ("7200000", DYN_BROKER)
    assert c[rate].source == DEFAULT, "AlterConfigs replaced the per-broker set"
    t = described(admin, T, topic)["retention.ms"]
    assert (t.value, t.source) == ("7200000", DYN_BROKER)

    # The cluster default: per broker still wins.
    assert legacy_alter_broker(ottla, "", {"log.retention.ms": "5400000"})[0] == 0
    assert describe_broker(ottla, "")["log.retention.ms"][:2] == ("5400000", DYN_DEFAULT)
    assert describe_broker(ottla, "1")["log.retention.ms"][:2] == ("7200000", DYN_BROKER)

    # Read-only keys: INVALID_REQUEST, Kafka's DynamicBrokerConfig message, nothing changed.
    for name, configs in (("1", {"num.io.threads": "4", "log.retention.ms": "1000"}),
                          ("", {"num.io.threads": "4"})):
        code, message = legacy_alter_broker(ottla, name, configs)
        assert (code, message) == (42, "Cannot update these configs dynamically: Set(num.io.threads)"), (
            name, code, message)
    one, default = describe_broker(ottla, "1"), describe_broker(ottla, "")
    assert one["log.retention.ms"][:2] == ("7200000", DYN_BROKER)
    assert one["num.io.threads"] == ("8", DEFAULT, True)
    assert default["log.retention.ms"][:2] == ("5400000", DYN_DEFAULT)
    assert "num.io.threads" not in default

    # An empty set for "1" removes its values: the cluster default shows through.
    assert legacy_alter_broker(ottla, "1", {}) == (0, None)
    assert describe_broker(ottla, "1")["log.retention.ms"][:2] == ("5400000", DYN_DEFAULT)
    t = described(admin, T, topic)["retention.ms"]
    assert (t.value, t.source) == ("5400000", DYN_DEFAULT)
    assert legacy_alter_broker(ottla, "", {}) == (0, None)
    t = described(admin, T, topic)["retention.ms"]
    assert (t.value, t.source) == ("604800000", DEFAULT)


def test_broker_config_refusals_are_kafkas(ottla):
    """Kafka checks a BROKER resource on the broker that receives it
    (``ConfigAdminManager.preprocess``), before the controller sees it. Everything refused
    there is answered with INVALID_REQUEST (42). That includes a value
    ``DynamicBrokerConfig.validate`` refuses: its ConfigException becomes an
    InvalidRequestException, which KAFKA-13609 keeps for compatibility. It also includes
    a broker id other than the receiving broker's ("Unexpected broker id, expected 1, but
    received 2") and a name that is not a number. Topic configs get INVALID_CONFIG from
    the controller instead (see above). Nothing is changed by any of them."""
    admin = AdminClient({"bootstrap.servers": ottla.bootstrap})
    B = ResourceType.BROKER
    problems = []

    def expect(what, got, want):
        if got != want:
            problems.append(f"{what}: got {got}, Kafka answers {want}")

    bad_long = (42, "Invalid value soon for configuration log.retention.ms: Not a number of type LONG")
    expect("AlterConfigs broker 1 log.retention.ms=soon",
           legacy_alter_broker(ottla, "1", {"log.retention.ms": "soon"}), bad_long)
    expect("AlterConfigs broker '' log.retention.ms=soon",
           legacy_alter_broker(ottla, "", {"log.retention.ms": "soon"}), bad_long)
    err = incremental(admin, B, "1", [("log.retention.ms", SET, "soon")])
    expect("IncrementalAlterConfigs broker 1 log.retention.ms=soon",
           err and (err.code(), err.str()), bad_long)
    err = incremental(admin, B, "1", [("message.max.bytes", SET, "-1")])
    expect("IncrementalAlterConfigs broker 1 message.max.bytes=-1", err and (err.code(), err.str()),
           (42, "Invalid value -1 for configuration message.max.bytes: Value must be at least 0"))
    expect("AlterConfigs broker 2 sent to broker 1",
           legacy_alter_broker(ottla, "2", {"log.retention.ms": "1000"}),
           (42, "Unexpected broker id, expected 1, but received 2"))
    expect("AlterConfigs broker 'x'", legacy_alter_broker(ottla, "x", {"log.retention.ms": "1000"}),
           (42, "Node id must be an integer, but it is: x"))

    one, default = describe_broker(ottla, "1"), describe_broker(ottla, "")
    expect("broker 1 log.retention.ms afterwards", one["log.retention.ms"][1],
           ConfigSource.DEFAULT_CONFIG.value)
    expect("broker 1 message.max.bytes afterwards", one["message.max.bytes"][1],
           ConfigSource.DEFAULT_CONFIG.value)
    expect("cluster default afterwards", sorted(default), [])
    assert not problems, "\n".join(problems)
