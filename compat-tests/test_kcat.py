"""kcat (Debian's `kcat` package, librdkafka 2.0.x) against a real ottla process.

What kcat cannot do, and how this suite deals with it:

* kcat has no admin API: the topic is created and deleted with confluent-kafka's
  AdminClient; kcat only describes it (`-L`).
* kcat's producer cannot set a message timestamp (no option for it): librdkafka
  stamps each message with CreateTime at produce time. The suite checks every
  timestamp comes back as CreateTime, within the wall-clock window of the kcat
  run, and non-decreasing per partition, instead of comparing exact values.
* kcat's producer sets the same headers (`-H`) on every message of one run, so
  headers are per codec: two headers named "h" with different values (order
  must be kept), a null-valued header and an empty-valued one.
* kcat cannot describe configs; the other suites cover DescribeConfigs.

Keys are set per message with `-K '|'`; values are text (kcat's input and its
JSON output are line/string based).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import (
    CODECS,
    NODE_ID,
    check_stored_batches,
    ck_admin,
    ck_create_topic,
    ck_wait_topic_gone,
    expected_offset_for_time,
    make_records,
    sent_uncompressed_by_client,
    time_queries,
    unique_topic,
)

PER_CODEC = 10_000
PARTITIONS = 3
KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(*args, input_bytes: bytes | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    assert KCAT, "kcat is not installed (scripts/test.sh installs the Debian package)"
    p = subprocess.run([KCAT, *args], input=input_bytes, capture_output=True, timeout=timeout)
    return p


def headers_for(codec: str) -> list:
    # as kcat -J prints them: a flat [name, value, name, value, ...] list
    return ["h", f"first-{codec}", "nullheader", None, "emptyheader", "", "h", f"second-{codec}"]


class Dataset:
    def __init__(self, broker, topic):
        self.broker, self.topic = broker, topic
        self.produced: dict[str, tuple[str, str, int, int]] = {}  # key -> (codec, value, t0, t1)
        self.order: dict[str, int] = {}  # key -> produce sequence number
        self._consumed = None

    def consume_all(self) -> list[dict]:
        p = kcat("-C", "-b", self.broker.bootstrap, "-t", self.topic, "-o", "beginning", "-e", "-J", "-q",
                 "-X", "fetch.wait.max.ms=100")
        assert p.returncode == 0, f"kcat -C failed ({p.returncode}): {p.stderr.decode()[-2000:]}"
        return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]

    @property
    def consumed(self) -> list[dict]:
        if self._consumed is None:
            self._consumed = self.consume_all()
        return self._consumed

    def by_partition(self) -> dict[int, list[dict]]:
        out = {p: [] for p in range(PARTITIONS)}
        for m in self.consumed:
            out[m["partition"]].append(m)
        for v in out.values():
            v.sort(key=lambda m: m["offset"])
        return out


@pytest.fixture(scope="module")
def dataset(ottla_module) -> Dataset:
    topic = unique_topic("kcat-codecs")
    # kcat has no admin API: create the topic with confluent-kafka's AdminClient.
    ck_create_topic(ottla_module.bootstrap, topic, PARTITIONS)
    ds = Dataset(ottla_module, topic)
    seq = 0
    for n, codec in enumerate(CODECS):
        recs = make_records(PER_CODEC, f"kcat-{codec}", start=n * PER_CODEC, text_only=True)
        lines = []
        for r in recs:
            k, v = r.key.decode(), r.value.decode()
            assert "|" not in k and "\n" not in v
            lines.append(f"{k}|{v}\n")
        hdr_args = []
        for name, value in zip(headers_for(codec)[0::2], headers_for(codec)[1::2]):
            hdr_args += ["-H", name if value is None else f"{name}={value}"]
        t0 = int(time.time() * 1000) - 1
        p = kcat("-P", "-b", ottla_module.bootstrap, "-t", topic, "-K", "|", "-z", codec,
                 "-X", "acks=all", "-X", "linger.ms=5", *hdr_args,
                 input_bytes="".join(lines).encode())
        t1 = int(time.time() * 1000) + 1
        err = p.stderr.decode()
        assert p.returncode == 0 and "fail" not in err.lower() and "error" not in err.lower(), \
            f"kcat -P ({codec}) rc={p.returncode}: {err[-2000:]}"
        for r in recs:
            ds.produced[r.key.decode()] = (codec, r.value.decode(), t0, t1)
            ds.order[r.key.decode()] = seq
            seq += 1
    return ds


def test_consume_every_field(dataset):
    msgs = dataset.consumed
    keys = [m["key"] for m in msgs]
    assert len(keys) == len(set(keys)), "duplicate records"
    assert set(keys) == set(dataset.produced), (
        f"missing {len(set(dataset.produced) - set(keys))}, unexpected {len(set(keys) - set(dataset.produced))}")
    bad = []
    for p, ms in dataset.by_partition().items():
        offs = [m["offset"] for m in ms]
        assert offs == list(range(len(ms))), f"p{p}: offsets not contiguous from 0"
        seqs = [dataset.order[m["key"]] for m in ms]
        assert seqs == sorted(seqs), f"p{p}: records not in produce order"
        tss = [m["ts"] for m in ms]
        assert tss == sorted(tss), f"p{p}: CreateTime timestamps go backwards"
        for m in ms:
            codec, value, t0, t1 = dataset.produced[m["key"]]
            want = (m["topic"], value, headers_for(codec), "create", True, NODE_ID)
            got = (dataset.topic, m["payload"], m.get("headers"), m["tstype"], t0 <= m["ts"] <= t1,
                   m["broker"])
            if got != want:
                bad.append(f"p{p}@{m['offset']}: {m}\n    want value={value!r} headers={headers_for(codec)} "
                           f"ts in [{t0}, {t1}]")
    assert not bad, f"{len(bad)} mismatches, first ones:\n" + "\n".join(bad[:5])


def test_consume_from_offset(dataset):
    full = dataset.by_partition()
    for p in range(PARTITIONS):
        start = len(full[p]) // 2 + 3
        r = kcat("-C", "-b", dataset.broker.bootstrap, "-t", dataset.topic, "-p", str(p), "-o", str(start),
                 "-e", "-J", "-q")
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        got = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        assert [m["offset"] for m in got] == list(range(start, len(full[p])))
        assert got == full[p][start:]


def test_batches_on_disk_keep_codec(dataset):
    """Batches are stored as kcat sent them (Kafka's layout, the codec given with -z)."""
    full = dataset.by_partition()
    codec_of = {(p, m["offset"]): dataset.produced[m["key"]][0] for p, ms in full.items() for m in ms}
    ts_of = {(p, m["offset"]): m["ts"] for p, ms in full.items() for m in ms}
    problems = check_stored_batches(
        dataset.broker.log_dir, dataset.topic, {p: len(full[p]) for p in range(PARTITIONS)},
        codec_at=lambda p, o: codec_of.get((p, o)), ts_at=lambda p, o: ts_of.get((p, o)),
        incompressible_ok=sent_uncompressed_by_client("librdkafka"))
    assert not problems, "\n".join(problems[:20])


def test_query_offsets_by_timestamp(dataset):
    """kcat -Q (ListOffsets by timestamp) and -o s@<ts> (consume from a timestamp)."""
    full = dataset.by_partition()
    ts = {p: [m["ts"] for m in full[p]] for p in range(PARTITIONS)}
    queries = {p: time_queries(ts[p]) for p in range(PARTITIONS)}
    problems = []
    for k in range(max(len(q) for q in queries.values())):
        args = []
        for p, q in queries.items():
            if k < len(q):
                args += ["-t", f"{dataset.topic}:{p}:{q[k]}"]
        r = kcat("-Q", "-J", "-b", dataset.broker.bootstrap, *args)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        res = json.loads(r.stdout.decode())[dataset.topic]
        for p, q in queries.items():
            if k >= len(q):
                continue
            want = expected_offset_for_time(ts[p], q[k])
            got = res[str(p)]
            if got.get("offset") != want or "error" in got:
                problems.append(f"-Q p{p} ts>={q[k]}: got {got}, want offset {want}")
    for p in range(PARTITIONS):
        for q in queries[p][:4] + queries[p][-2:]:
            want = expected_offset_for_time(ts[p], q)
            r = kcat("-C", "-b", dataset.broker.bootstrap, "-t", dataset.topic, "-p", str(p),
                     "-o", f"s@{q}", "-c", "1", "-e", "-J", "-q")
            assert r.returncode == 0, r.stderr.decode()[-2000:]
            lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
            got = json.loads(lines[0])["offset"] if lines else -1
            if got != want:
                problems.append(f"-o s@{q} p{p}: first offset {got}, want {want}")
    assert not problems, "\n".join(problems)


def test_metadata_list(dataset):
    r = kcat("-L", "-J", "-b", dataset.broker.bootstrap, "-t", dataset.topic)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    md = json.loads(r.stdout.decode())
    assert md["brokers"] == [{"id": NODE_ID, "name": dataset.broker.bootstrap}], md["brokers"]
    assert md["controllerid"] == NODE_ID, md
    [t] = md["topics"]
    assert t["topic"] == dataset.topic and "error" not in t, t
    assert [p["partition"] for p in t["partitions"]] == list(range(PARTITIONS))
    for p in t["partitions"]:
        assert (p["leader"], p["replicas"], p["isrs"], p.get("error")) == \
            (NODE_ID, [{"id": NODE_ID}], [{"id": NODE_ID}], None), p


def test_delete_topic(dataset):
    # kcat has no admin API: delete with confluent-kafka's AdminClient, check with kcat -L.
    admin = ck_admin(dataset.broker.bootstrap)
    fs = admin.delete_topics([dataset.topic], operation_timeout=30)
    fs[dataset.topic].result(timeout=60)
    ck_wait_topic_gone(dataset.broker.bootstrap, dataset.topic)
    r = kcat("-L", "-J", "-b", dataset.broker.bootstrap)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert dataset.topic not in [t["topic"] for t in json.loads(r.stdout.decode())["topics"]]
