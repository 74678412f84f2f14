"""kafka-python (pure-Python client, from PyPI) against a real ottla process.

kafka-python 3.x enables the idempotent producer by default (like the Java
client), so these produce requests also exercise InitProducerId and sequence
checking. Consumption uses no group: ``group_id=None`` + ``assign`` + seeks.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource

from conftest import (
    CODECS,
    NODE_ID,
    assert_contiguous,
    check_stored_batches,
    expected_offset_for_time,
    make_records,
    now_ms,
    Rec,
    sent_uncompressed_by_client,
    time_queries,
    unique_topic,
    wait_for,
)

PER_CODEC = 10_000
PARTITIONS = 3
TOPIC_CONFIG = {"retention.ms": "987654321", "max.message.bytes": "2000000"}
TIMESTAMP_CREATE_TIME = 0  # kafka-python's ConsumerRecord.timestamp_type for CreateTime


def admin_client(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kafka-python",
                            request_timeout_ms=30000)


def kp_produce(bootstrap, topic, recs: list[Rec], **conf) -> dict[int, tuple[int, int]]:
    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=64 * 1024,
                         max_request_size=4 * 1024 * 1024, **conf)
    try:
        futs = [prod.send(topic, key=r.key, value=r.value, headers=r.header_list(), timestamp_ms=r.ts)
                for r in recs]
        prod.flush(timeout=180)
        out = {}
        for i, f in enumerate(futs):
            md = f.get(timeout=60)
            out[i] = (md.partition, md.offset)
        return out
    finally:
        prod.close(timeout=30)


def kp_consume_all(bootstrap, topic, partitions, start=0, timeout=120):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", max_poll_records=5000, fetch_max_wait_ms=200,
                      client_id="compat-kafka-python")
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        if start == 0:
            c.seek_to_beginning(*tps)
        else:
            for tp in tps:
                c.seek(tp, start)
        ends = c.end_offsets(tps, timeout_ms=30000)
        out = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, (
                f"consume timed out: positions {[c.position(tp) for tp in tps]}, ends {ends}")
            for tp, recs in c.poll(timeout_ms=1000).items():
                out[tp.partition].extend(recs)
        return out
    finally:
        c.close()


def rec_fields(r: Rec):
    return (r.key, r.value, r.header_list(), r.ts, TIMESTAMP_CREATE_TIME)


def cr_fields(cr):
    return (cr.key, cr.value, list(cr.headers or []), cr.timestamp, cr.timestamp_type)


class Dataset:
    def __init__(self, broker, topic):
        self.broker, self.topic = broker, topic
        self.by_pos: dict[tuple[int, int], Rec] = {}
        self.codec_of: dict[tuple[int, int], str] = {}

    def count(self, p):
        return sum(1 for (pp, _) in self.by_pos if pp == p)

    def ts_by_offset(self, p):
        return [self.by_pos[(p, o)].ts for o in range(self.count(p))]


@pytest.fixture(scope="module")
def dataset(ottla_module) -> Dataset:
    topic = unique_topic("kp-codecs")
    admin = admin_client(ottla_module.bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1,
                                     "configs": TOPIC_CONFIG}},
                            timeout_ms=30000, wait_for_metadata=True)
    finally:
        admin.close()
    ds = Dataset(ottla_module, topic)
    base_ts = now_ms() - 3_600_000
    for n, codec in enumerate(CODECS):
        recs = make_records(PER_CODEC, f"kp-{codec}", start=n * PER_CODEC, base_ts=base_ts)
        acked = kp_produce(ottla_module.bootstrap, topic, recs, acks="all",
                           compression_type=None if codec == "none" else codec)
        for i, pos in acked.items():
            assert pos not in ds.by_pos, f"two records acknowledged at {pos}"
            ds.by_pos[pos] = recs[i]
            ds.codec_of[pos] = codec
    return ds


def test_produce_all_codecs_acknowledged(dataset):
    assert len(dataset.by_pos) == PER_CODEC * len(CODECS)
    assert_contiguous({p: sorted(o for (pp, o) in dataset.by_pos if pp == p) for p in range(PARTITIONS)})
    assert all(dataset.count(p) > 0 for p in range(PARTITIONS))


def test_consume_from_beginning_every_field(dataset):
    got = kp_consume_all(dataset.broker.bootstrap, dataset.topic, range(PARTITIONS))
    assert_contiguous({p: [cr.offset for cr in v] for p, v in got.items()},
                      {p: dataset.count(p) for p in range(PARTITIONS)})
    bad = []
    for p, crs in got.items():
        for cr in crs:
            want = rec_fields(dataset.by_pos[(p, cr.offset)])
            if cr_fields(cr) != want:
                bad.append(f"p{p}@{cr.offset}: got {cr_fields(cr)!r}\n    want {want!r}")
    assert not bad, f"{len(bad)} mismatches, first ones:\n" + "\n".join(bad[:5])


def test_consume_from_middle_offset(dataset):
    for p in range(PARTITIONS):
        start = dataset.count(p) // 2 + 1
        got = kp_consume_all(dataset.broker.bootstrap, dataset.topic, [p], start=start)
        assert [cr.offset for cr in got[p]] == list(range(start, dataset.count(p)))
        for cr in got[p]:
            assert cr_fields(cr) == rec_fields(dataset.by_pos[(p, cr.offset)])


def test_batches_on_disk_keep_codec(dataset):
    """Batches are stored as kafka-python sent them (Kafka's layout, producer's codec)."""
    def ts_at(p, o):
        r = dataset.by_pos.get((p, o))
        return r.ts if r else None
    problems = check_stored_batches(
        dataset.broker.log_dir, dataset.topic, {p: dataset.count(p) for p in range(PARTITIONS)},
        codec_at=lambda p, o: dataset.codec_of.get((p, o)), ts_at=ts_at,
        incompressible_ok=sent_uncompressed_by_client("kafka-python"))
    assert not problems, "\n".join(problems[:20])


def test_offsets_for_times(dataset):
    c = KafkaConsumer(bootstrap_servers=dataset.broker.bootstrap, group_id=None,
                      enable_auto_commit=False)
    try:
        problems = []
        for p in range(PARTITIONS):
            tp = TopicPartition(dataset.topic, p)
            ts = dataset.ts_by_offset(p)
            for q in time_queries(ts):
                res = c.offsets_for_times({tp: q}, timeout_ms=30000)[tp]
                want = expected_offset_for_time(ts, q)
                got = None if res is None else (res.offset, res.timestamp)
                exp = None if want < 0 else (want, ts[want])
                if got != exp:
                    problems.append(f"p{p} ts>={q}: got {got}, want {exp}")
        assert not problems, "\n".join(problems)
        tps = [TopicPartition(dataset.topic, p) for p in range(PARTITIONS)]
        assert c.beginning_offsets(tps, timeout_ms=30000) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps, timeout_ms=30000) == {tp: dataset.count(tp.partition) for tp in tps}
    finally:
        c.close()


def test_describe_topic_and_cluster(dataset):
    admin = admin_client(dataset.broker.bootstrap)
    try:
        assert dataset.topic in admin.list_topics()
        [t] = admin.describe_topics([dataset.topic])
        assert t["name"] == dataset.topic and t["error_code"] == 0, t
        parts = sorted(t["partitions"], key=lambda x: x["partition_index"])
        assert [x["partition_index"] for x in parts] == list(range(PARTITIONS))
        for x in parts:
            assert (x["error_code"], x["leader_id"], list(x["replica_nodes"]), list(x["isr_nodes"])) == \
                (0, NODE_ID, [NODE_ID], [NODE_ID]), x
        cl = admin.describe_cluster()
        assert cl["cluster_id"], cl
        assert cl["controller_id"] == NODE_ID, cl
        assert [(b["broker_id"], b["host"], b["port"]) for b in cl["brokers"]] == \
            [(NODE_ID, dataset.broker.host, dataset.broker.port)], cl
    finally:
        admin.close()


def test_describe_configs(dataset):
    admin = admin_client(dataset.broker.bootstrap)
    try:
        res = admin.describe_configs([ConfigResource("TOPIC", dataset.topic)], config_filter="all")
        cfg = res["topic"][dataset.topic]

        def check(name, value, source):
            assert name in cfg, f"{name} missing from DescribeConfigs: {sorted(cfg)}"
            assert (cfg[name]["value"], cfg[name]["config_source"]) == (value, source), (name, cfg[name])

        check("retention.ms", "987654321", "DYNAMIC_TOPIC_CONFIG")
        check("max.message.bytes", "2000000", "DYNAMIC_TOPIC_CONFIG")
        check("cleanup.policy", "delete", "DEFAULT_CONFIG")
        check("segment.bytes", "1073741824", "DEFAULT_CONFIG")
        check("min.insync.replicas", "1", "DEFAULT_CONFIG")
        check("message.timestamp.type", "CreateTime", "DEFAULT_CONFIG")

        # Only the configs set on the topic are "modified" (kafka-python's default filter).
        modified = admin.describe_configs([ConfigResource("TOPIC", dataset.topic)])["topic"][dataset.topic]
        assert set(modified) == set(TOPIC_CONFIG), sorted(modified)

        # a subset of keys can be asked for
        sub = admin.describe_configs([ConfigResource("TOPIC", dataset.topic, ["cleanup.policy", "retention.ms"])],
                                     config_filter="all")["topic"][dataset.topic]
        assert {k: v["value"] for k, v in sub.items()} == {"cleanup.policy": "delete", "retention.ms": "987654321"}

        bres = admin.describe_configs([ConfigResource("BROKER", str(NODE_ID))], config_filter="all")
        bcfg = bres["broker"][str(NODE_ID)]
        assert (bcfg["auto.create.topics.enable"]["value"], bcfg["auto.create.topics.enable"]["config_source"]) \
            == ("false", "STATIC_BROKER_CONFIG")
        assert (bcfg["log.retention.hours"]["value"], bcfg["log.retention.hours"]["config_source"]) \
            == ("168", "DEFAULT_CONFIG")
    finally:
        admin.close()


def test_delete_topic(dataset):
    admin = admin_client(dataset.broker.bootstrap)
    try:
        res = admin.delete_topics([dataset.topic], timeout_ms=30000)
        assert [t["error_code"] for t in res["topics"]] == [0], res
        wait_for(lambda: dataset.topic not in admin.list_topics(), 30, "deleted topic to leave metadata")
        [t] = admin.describe_topics([dataset.topic])
        assert t["error_code"] == 3, t  # UNKNOWN_TOPIC_OR_PARTITION
    finally:
        admin.close()
