"""confluent-kafka (librdkafka, from PyPI) against a real ottla process.

One module-scoped broker; the module builds a 3-partition topic holding
10,000 records per compression codec and the tests check it from several
angles. The topic is deleted by the last of those tests.
"""

from __future__ import annotations

import collections

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition
from confluent_kafka.admin import (
    ConfigResource,
    ConfigSource,
    OffsetSpec,
    ResourceType,
)

from conftest import (
    CODECS,
    NODE_ID,
    assert_contiguous,
    check_stored_batches,
    ck_admin,
    ck_consume_all,
    ck_create_topic,
    ck_produce,
    ck_topic_configs,
    ck_wait_topic_gone,
    expected_offset_for_time,
    make_records,
    now_ms,
    Rec,
    sent_uncompressed_by_client,
    time_queries,
    topic_batches,
    unique_topic,
    wait_for,
)

PER_CODEC = 10_000
PARTITIONS = 3
TOPIC_CONFIG = {"retention.ms": "987654321", "segment.bytes": "1048576"}


class Dataset:
    def __init__(self, broker, topic):
        self.broker = broker
        self.topic = topic
        self.by_pos: dict[tuple[int, int], Rec] = {}
        self.codec_of: dict[tuple[int, int], str] = {}

    def ts_by_offset(self, p: int) -> list[int]:
        n = self.count(p)
        return [self.by_pos[(p, o)].ts for o in range(n)]

    def count(self, p: int) -> int:
        return sum(1 for (pp, _) in self.by_pos if pp == p)


@pytest.fixture(scope="module")
def dataset(ottla_module) -> Dataset:
    topic = unique_topic("ck-codecs")
    ck_create_topic(ottla_module.bootstrap, topic, PARTITIONS, config=TOPIC_CONFIG)
    ds = Dataset(ottla_module, topic)
    base_ts = now_ms() - 3_600_000
    for n, codec in enumerate(CODECS):
        recs = make_records(PER_CODEC, f"ck-{codec}", start=n * PER_CODEC, base_ts=base_ts)
        acked = ck_produce(ottla_module.bootstrap, topic, recs,
                           conf={"compression.type": codec, "acks": "all"})
        for i, pos in acked.items():
            assert pos not in ds.by_pos, f"two records acknowledged at {pos}"
            ds.by_pos[pos] = recs[i]
            ds.codec_of[pos] = codec
    return ds


def message_fields(m):
    return (m.key(), m.value(), m.headers() or [], m.timestamp())


def rec_fields(r: Rec):
    return (r.key, r.value, r.header_list(), (TIMESTAMP_CREATE_TIME, r.ts))


def check_messages(msgs_by_partition, expected: dict[tuple[int, int], Rec]):
    mismatches = []
    for p, msgs in msgs_by_partition.items():
        for m in msgs:
            r = expected.get((p, m.offset()))
            if r is None:
                mismatches.append(f"p{p}@{m.offset()}: unexpected record key={m.key()!r}")
            elif message_fields(m) != rec_fields(r):
                mismatches.append(f"p{p}@{m.offset()}: got {message_fields(m)!r}\n    want {rec_fields(r)!r}")
    assert not mismatches, f"{len(mismatches)} mismatching records, first ones:\n" + "\n".join(mismatches[:5])


def test_produce_all_codecs_acknowledged(dataset):
    assert len(dataset.by_pos) == PER_CODEC * len(CODECS)
    counts = {p: dataset.count(p) for p in range(PARTITIONS)}
    # keys are hashed over all partitions
    assert all(c > 0 for c in counts.values()), counts
    # acknowledged offsets are exactly 0..n-1 in every partition
    assert_contiguous({p: sorted(o for (pp, o) in dataset.by_pos if pp == p) for p in range(PARTITIONS)})


def test_consume_from_beginning_every_field(dataset):
    got = ck_consume_all(dataset.broker.bootstrap, dataset.topic, range(PARTITIONS))
    assert_contiguous({p: [m.offset() for m in msgs] for p, msgs in got.items()},
                      {p: dataset.count(p) for p in range(PARTITIONS)})
    check_messages(got, dataset.by_pos)
    # header order is significant: the two "h" headers come back in produce order
    m = got[0][0]
    assert [h for h in m.headers() if h[0] == "h"][0][1].startswith(b"first-")


def test_consume_from_middle_offsets(dataset):
    """Fetching at an offset inside a (compressed) batch starts exactly there."""
    for frac in (0.25, 0.5, 0.9):
        for p in range(PARTITIONS):
            start = int(dataset.count(p) * frac)
            got = ck_consume_all(dataset.broker.bootstrap, dataset.topic, [p], start=start)
            offs = [m.offset() for m in got[p]]
            assert offs == list(range(start, dataset.count(p))), f"p{p} from {start}: {offs[:5]}..."
            check_messages(got, dataset.by_pos)


def test_batches_on_disk_keep_codec_and_layout(dataset):
    """Batches are stored as sent, in Kafka's on-disk layout: every batch carries
    the compression codec its producer used, offsets are dense, magic is 2, and
    segment.bytes=1048576 rolls segments."""
    def ts_at(p, o):
        r = dataset.by_pos.get((p, o))
        return r.ts if r else None
    problems = check_stored_batches(
        dataset.broker.log_dir, dataset.topic, {p: dataset.count(p) for p in range(PARTITIONS)},
        codec_at=lambda p, o: dataset.codec_of.get((p, o)), ts_at=ts_at, min_segments=2,
        incompressible_ok=sent_uncompressed_by_client("librdkafka"))
    assert not problems, "\n".join(problems[:20])


def test_offsets_for_times(dataset):
    c = Consumer({"bootstrap.servers": dataset.broker.bootstrap, "group.id": "compat-tests-unused",
                  "enable.auto.commit": False})
    try:
        queries = {p: time_queries(dataset.ts_by_offset(p)) for p in range(PARTITIONS)}
        rounds = max(len(q) for q in queries.values())
        problems = []
        for k in range(rounds):
            tps = [TopicPartition(dataset.topic, p, q[k]) for p, q in queries.items() if k < len(q)]
            res = c.offsets_for_times(tps, timeout=30)
            for tp in res:
                assert tp.error is None, tp
                want = expected_offset_for_time(dataset.ts_by_offset(tp.partition), queries[tp.partition][k])
                if tp.offset != want:
                    problems.append(f"p{tp.partition} ts>={queries[tp.partition][k]}: got {tp.offset}, want {want}")
        assert not problems, "\n".join(problems)
        for p in range(PARTITIONS):
            assert c.get_watermark_offsets(TopicPartition(dataset.topic, p), timeout=30) == (0, dataset.count(p))
    finally:
        c.close()


def test_admin_list_offsets(dataset):
    """ListOffsets through the admin API: earliest, latest, max-timestamp, by timestamp."""
    admin = ck_admin(dataset.broker.bootstrap)

    def run(spec_for):
        req = {TopicPartition(dataset.topic, p): spec_for(p) for p in range(PARTITIONS)}
        fs = admin.list_offsets(req, request_timeout=30)
        return {tp.partition: f.result(timeout=60) for tp, f in fs.items()}

    for p, r in run(lambda p: OffsetSpec.earliest()).items():
        assert r.offset == 0, (p, r)
    for p, r in run(lambda p: OffsetSpec.latest()).items():
        assert r.offset == dataset.count(p), (p, r)
    for p, r in run(lambda p: OffsetSpec.max_timestamp()).items():
        ts = dataset.ts_by_offset(p)
        assert (r.offset, r.timestamp) == (ts.index(max(ts)), max(ts)), p
    for p in range(PARTITIONS):
        for q in time_queries(dataset.ts_by_offset(p)):
            r = run(lambda pp: OffsetSpec.for_timestamp(q))[p]
            want = expected_offset_for_time(dataset.ts_by_offset(p), q)
            assert r.offset == want, f"p{p} ts>={q}: got {r.offset}, want {want}"
            if want >= 0:
                assert r.timestamp == dataset.ts_by_offset(p)[want]


def test_describe_topic_and_cluster(dataset):
    admin = ck_admin(dataset.broker.bootstrap)
    md = admin.list_topics(topic=dataset.topic, timeout=10)
    t = md.topics[dataset.topic]
    assert t.error is None
    assert sorted(t.partitions) == list(range(PARTITIONS))
    for p in t.partitions.values():
        assert (p.leader, p.replicas, p.isrs, p.error) == (NODE_ID, [NODE_ID], [NODE_ID], None), p
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {
        NODE_ID: (dataset.broker.host, dataset.broker.port)}

    from confluent_kafka import TopicCollection
    td = admin.describe_topics(TopicCollection([dataset.topic]), request_timeout=30)[dataset.topic].result()
    assert td.name == dataset.topic
    assert td.topic_id is not None and str(td.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA", "no topic id"
    assert [p.id for p in td.partitions] == list(range(PARTITIONS))
    assert all(p.leader.id == NODE_ID for p in td.partitions)

    cl = admin.describe_cluster(request_timeout=30).result()
    assert cl.cluster_id, "empty cluster id"
    assert [n.id for n in cl.nodes] == [NODE_ID]
    assert (cl.nodes[0].host, cl.nodes[0].port) == (dataset.broker.host, dataset.broker.port)
    assert cl.controller is not None and cl.controller.id == NODE_ID


def test_describe_configs(dataset):
    cfg = ck_topic_configs(dataset.broker.bootstrap, dataset.topic)

    def check(name, value, source):
        assert name in cfg, f"{name} missing from DescribeConfigs"
        e = cfg[name]
        assert (e.value, ConfigSource(e.source)) == (value, source), \
            f"{name}: got {e.value!r} source {e.source}, want {value!r} {source}"

    # passed at creation
    check("retention.ms", "987654321", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    check("segment.bytes", "1048576", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # Kafka defaults
    check("cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG)
    check("max.message.bytes", "1048588", ConfigSource.DEFAULT_CONFIG)
    check("min.insync.replicas", "1", ConfigSource.DEFAULT_CONFIG)
    check("retention.bytes", "-1", ConfigSource.DEFAULT_CONFIG)
    check("compression.type", "producer", ConfigSource.DEFAULT_CONFIG)

    # a topic created without configs reports the default retention
    bare = unique_topic("ck-bare")
    ck_create_topic(dataset.broker.bootstrap, bare, 1)
    cfg = ck_topic_configs(dataset.broker.bootstrap, bare)
    check("retention.ms", "604800000", ConfigSource.DEFAULT_CONFIG)
    check("segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG)
    check("cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG)

    # the broker resource: what we passed with --override is static, the rest default
    admin = ck_admin(dataset.broker.bootstrap)
    res = ConfigResource(ResourceType.BROKER, str(NODE_ID))
    cfg = admin.describe_configs([res], request_timeout=30)[res].result(timeout=60)
    check("auto.create.topics.enable", "false", ConfigSource.STATIC_BROKER_CONFIG)
    check("log.dirs", str(dataset.broker.log_dir), ConfigSource.STATIC_BROKER_CONFIG)
    check("num.partitions", "1", ConfigSource.DEFAULT_CONFIG)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(ottla_module, acks):
    topic = unique_topic(f"ck-acks-{acks}")
    ck_create_topic(ottla_module.bootstrap, topic, PARTITIONS)
    recs = make_records(3000, f"acks{acks}")
    acked = ck_produce(ottla_module.bootstrap, topic, recs,
                       conf={"acks": acks, "compression.type": "lz4"})
    got = ck_consume_all(ottla_module.bootstrap, topic, range(PARTITIONS))
    assert_contiguous({p: [m.offset() for m in msgs] for p, msgs in got.items()})
    assert sum(len(v) for v in got.values()) == len(recs)
    by_key = {r.key: r for r in recs}
    for p, msgs in got.items():
        # per partition, records are in produce order
        idx = [int(m.key().rsplit(b"-k", 1)[1]) for m in msgs]
        assert idx == sorted(idx), f"p{p}: records out of produce order"
        for m in msgs:
            assert message_fields(m) == rec_fields(by_key[m.key()])
    if acks != "0":
        # the offsets the broker acknowledged are where the records are
        expected = {pos: recs[i] for i, pos in acked.items()}
        check_messages(got, expected)
        assert len(expected) == len(recs)


def test_idempotent_producer(ottla_module):
    topic = unique_topic("ck-idempotent")
    ck_create_topic(ottla_module.bootstrap, topic, PARTITIONS)
    recs = make_records(10_000, "idem")
    acked = ck_produce(ottla_module.bootstrap, topic, recs,
                       conf={"enable.idempotence": True, "compression.type": "zstd",
                             "linger.ms": 2, "batch.num.messages": 500})
    expected = {pos: recs[i] for i, pos in acked.items()}
    assert len(expected) == len(recs), "two records acknowledged at the same offset"
    got = ck_consume_all(ottla_module.bootstrap, topic, range(PARTITIONS))
    assert_contiguous({p: [m.offset() for m in msgs] for p, msgs in got.items()})
    keys = [m.key() for msgs in got.values() for m in msgs]
    dups = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not dups, f"duplicates: {dups[:5]}"
    assert len(keys) == len(recs)
    check_messages(got, expected)
    # On disk: every batch carries the producer id/epoch and sequences are dense per partition.
    for p, bs in topic_batches(ottla_module.log_dir, topic, range(PARTITIONS)).items():
        pids = {(b["producer_id"], b["producer_epoch"]) for b in bs}
        assert len(pids) == 1 and next(iter(pids))[0] >= 0, f"p{p}: producer ids {pids}"
        seq = 0
        for b in bs:
            assert b["base_sequence"] == seq, f"p{p}@{b['base_offset']}: base sequence {b['base_sequence']}, expected {seq}"
            seq += b["count"]


def test_delete_topic(dataset):
    admin = ck_admin(dataset.broker.bootstrap)
    fs = admin.delete_topics([dataset.topic], operation_timeout=30, request_timeout=30)
    fs[dataset.topic].result(timeout=60)
    ck_wait_topic_gone(dataset.broker.bootstrap, dataset.topic)
    # Kafka renames (then later removes) the partition directories of a deleted topic.
    wait_for(lambda: not any(dataset.broker.partition_dir(dataset.topic, p).exists()
                             for p in range(PARTITIONS)),
             30, "partition directories of the deleted topic to go away")
    # and the name is free again
    ck_create_topic(dataset.broker.bootstrap, dataset.topic, 1)
    got = ck_consume_all(dataset.broker.bootstrap, dataset.topic, [0])
    assert got[0] == []
