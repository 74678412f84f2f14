"""Exactly-once transactions (KIP-98, KIP-447) with real clients against a real ottla process.

Everything here is checked against what Apache Kafka does:

* ``test_confluent_commit_abort_read_committed`` (confluent-kafka / librdkafka): one
  ``transactional.id`` runs 100 transactions of 3-6 records over the 3 partitions of a topic,
  every third one aborted (its records flushed to the log first). The offsets the broker
  assigns leave exactly one offset per partition per transaction for its marker; a
  ``read_committed`` consumer sees exactly the committed records, per partition in produced
  order and at their produced offsets (librdkafka never hands out control records, so the
  count is checked too); a ``read_uncommitted`` consumer sees every record, aborted ones
  included. While a transaction is open, ListOffsets ``read_committed`` (the last stable
  offset) is its first offset and ``read_uncommitted`` (the high watermark) is past its
  records, and a ``read_committed`` consumer stops at the last stable offset; once everything
  is complete the two agree and a ``read_committed`` consumer reaches the end.
* ``test_java_transactions_eos`` (Java kafka-clients 4.1.0, ``java/src/OttlaTxn.java eos``):
  initTransactions / beginTransaction / send / sendOffsetsToTransaction(offsets,
  consumer.groupMetadata()) / commitTransaction, then an aborted transaction with other
  offsets, then one more commit; the group's committed offsets (committed(),
  listConsumerGroupOffsets) are the committed transaction's, a new member starts there, and
  read_committed / read_uncommitted KafkaConsumers see the expected records at the expected
  offsets. Checked again from confluent-kafka here.
* ``test_eos_pipeline_survives_sigkill``: ``eos_processor.py`` (confluent-kafka,
  read_committed consumer, transactional producer, ``send_offsets_to_transaction``, 50
  records per transaction) copies 2,000 keyed records from topic A to topic B as
  ``value + ":out"``; it is SIGKILLed at least 10 times at chosen points of its transaction
  cycle (begin, produced, flushed, offsets sent, committing, committed) and restarted with
  the same ``transactional.id`` (the new instance fences the old and aborts its open
  transaction). Afterwards a read_committed consumer of B sees every input's output exactly
  once, per partition in input order, the group's offsets are A's end offsets, and the
  records of zombie transactions killed before their commit are in B's log (a
  read_uncommitted consumer sees them) but hidden from read_committed.
* ``test_confluent_zombie_fenced``: a second producer with the same ``transactional.id``
  fences the first (whose open transaction is aborted); the first's later produce and
  commit fail with a fatal fencing error (``_FENCED`` / PRODUCER_FENCED /
  INVALID_PRODUCER_EPOCH), none of its writes after the fence are acknowledged or visible.
* ``test_broker_crash_between_prepare_commit_and_markers``: with the test-only fault hook
  ``OTTLA_FAULT_CRASH_BEFORE_TXN_MARKERS=1`` the broker aborts right after the PrepareCommit
  record is durable, before any WriteTxnMarkers; restarted without it, the coordinator
  completes the commit (read_committed sees the records within a timeout, the last stable
  offset catches up with the high watermark), later plain records are visible too, and the
  transactional id can be initialised and used again.
* ``test_kafka_python_transactions`` / ``test_kafkajs_transactions``: kafka-python's
  ``KafkaProducer(transactional_id=...)`` and kafkajs' ``producer({transactionalId})`` commit
  and abort (``kafkajs/txn.js``); a read_committed confluent-kafka consumer sees only the
  committed records, a read_uncommitted one all of them, and the high watermark leaves one
  marker per partition per transaction.
* ``test_java_transactions_admin`` (``OttlaTxn admin``): the kafka-transactions.sh calls --
  Admin listTransactions (Empty / Ongoing / CompleteCommit, state and producer-id filters),
  describeTransactions (partitions, producer id/epoch, timeout, start time, coordinator;
  CompleteAbort after an abort; unknown id), describeProducers
  (currentTransactionStartOffset while open, cleared after the commit). The Java producer
  uses transactions v2 (the broker finalizes ``transaction.version`` 2): the test checks
  that each commit and abort bumped the producer epoch, in the coordinator and in the
  markers, which transactions v1 never does. The Python and JavaScript clients use v1.

The broker process is started by conftest's fixtures; ``ottla_factory`` copies ``os.environ``
when it spawns the broker, so the fault hook's variable is set with ``monkeypatch`` around
that one start (conftest has no per-broker environment parameter).
"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import OffsetSpec

from conftest import ck_admin, ck_create_topic, ck_group_offsets, run_java, unique_topic, wait_for
from test_groups_kafkajs import JS_DIR, kafkajs_ready  # noqa: F401 -- kafkajs_ready is a fixture

HERE = Path(__file__).resolve().parent
PARTITIONS = 3
PARTS = range(PARTITIONS)
Failed = pytest.fail.Exception  # not an Exception subclass: wait_for does not swallow it

# What librdkafka reports when a producer was fenced (it normalises PRODUCER_FENCED and
# INVALID_PRODUCER_EPOCH to _FENCED for transactional producers; the raw codes are accepted too).
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}

FAULT_ENV = "OTTLA_FAULT_CRASH_BEFORE_TXN_MARKERS"
# The same crash one step later: the first partition's COMMIT marker is written, the
# others are not (a restarted coordinator writes them all again; the first partition
# may then hold two markers).
FAULT_AFTER_FIRST_MARKER_ENV = "OTTLA_FAULT_CRASH_AFTER_FIRST_TXN_MARKER"

TXNS = int(os.environ.get("OTTLA_TXN_COUNT", "100"))
EOS_RECORDS = int(os.environ.get("OTTLA_EOS_RECORDS", "2000"))
EOS_MIN_KILLS = int(os.environ.get("OTTLA_EOS_KILLS", "10"))
EOS_BATCH = 50


# ----------------------------------------------------------------------------- helpers


def latest_offsets(bootstrap: str, topic: str, isolation: IsolationLevel,
                   partitions=PARTS) -> dict[int, int]:
    """ListOffsets(latest) under ``isolation``: the high watermark (READ_UNCOMMITTED) or the
    last stable offset (READ_COMMITTED) of every partition."""
    admin = ck_admin(bootstrap)  # keep a reference: the handle must outlive the futures
    fs = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                            isolation_level=isolation, request_timeout=30)
    return {tp.partition: f.result(timeout=60).offset for tp, f in fs.items()}


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    return latest_offsets(bootstrap, topic, IsolationLevel.READ_UNCOMMITTED)


def stable_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return latest_offsets(bootstrap, topic, IsolationLevel.READ_COMMITTED)


def wait_stable(bootstrap: str, topic: str, timeout: float = 60, what: str = "") -> dict[int, int]:
    """Wait until every partition's last stable offset equals its high watermark (no
    transaction open or completing on it); return the high watermarks."""
    last: dict = {}

    def ok():
        hw = high_watermarks(bootstrap, topic)
        lso = stable_offsets(bootstrap, topic)
        last.update(hw=hw, lso=lso)
        return hw if hw == lso else None

    try:
        return wait_for(ok, timeout, f"the last stable offsets of {topic} to reach its high watermarks"
                        + (f" ({what})" if what else ""), interval=0.25)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: high watermarks {last.get('hw')}, "
                             f"last stable offsets {last.get('lso')}") from None


def read_topic(bootstrap: str, topic: str, isolation: str, ends: dict[int, int],
               timeout: float = 120, linger: float = 0.0) -> dict[int, list[tuple[int, str, str]]]:
    """Read every partition from offset 0 with ``isolation.level=isolation`` until librdkafka
    reports end-of-partition at or past ``ends[p]`` (for read_committed: the last stable
    offset; control records are never handed out, so the last record may sit below it), then
    keep polling ``linger`` seconds for anything beyond. Returns {p: [(offset, key, value)]}."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "compat-tests-unused",  # required by the client; only assign() is used
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    })
    out: dict[int, list] = {p: [] for p in ends}
    eof = {p: -1 for p in ends}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout
        linger_until = None
        while True:
            if linger_until is None and all(eof[p] >= ends[p] for p in ends):
                linger_until = time.monotonic() + linger
            if linger_until is not None and time.monotonic() >= linger_until:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"a {isolation} consumer of {topic} did not reach offsets {ends} within {timeout}s: "
                    f"end-of-partition seen at {eof}, records per partition "
                    f"{ {p: len(v) for p, v in out.items()} }")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof[m.partition()] = max(eof[m.partition()], m.offset())
                        continue
                    raise AssertionError(f"{isolation} consumer of {topic}: {m.error()}")
                out[m.partition()].append((m.offset(), _s(m.key()), _s(m.value())))
    finally:
        c.close()


def _s(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


def assert_partition_lists(got: dict[int, list], want: dict[int, list], what: str) -> None:
    """Per-partition list equality with a readable account of the difference."""
    problems = []
    for p in sorted(set(want) | set(got)):
        g, w = list(got.get(p, [])), list(want.get(p, []))
        if g == w:
            continue
        gc, wc = collections.Counter(g), collections.Counter(w)
        missing = list((wc - gc).elements())
        extra = list((gc - wc).elements())
        dups = [x for x, n in gc.items() if n > 1]
        first = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
        problems.append(
            f"partition {p}: {len(g)} records, expected {len(w)}; "
            f"missing {len(missing)} (first {missing[:5]}), unexpected {len(extra)} (first {extra[:5]}), "
            f"duplicated {len(dups)} (first {dups[:5]}); first difference at index {first}: "
            f"got {g[first] if first < len(g) else '<end>'}, expected {w[first] if first < len(w) else '<end>'}")
    assert not problems, f"{what}:\n" + "\n".join(problems)


def bounded(fn, timeout: float, what: str):
    """Run a blocking client call on a thread; fail if it does not return within ``timeout``
    (kafka-python's transactional calls wait without a timeout)."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name=what)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{what} did not return within {timeout}s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def txn_producer(bootstrap: str, transactional_id: str, **extra) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
        **extra,
    })


def produce_and_flush(producer: Producer, topic: str, recs: list[tuple[int, str, str]],
                      what: str) -> list[int]:
    """Produce (partition, key, value) records, flush, and return their offsets; fail unless
    every one was acknowledged."""
    dr: dict[int, tuple] = {}
    for j, (p, k, v) in enumerate(recs):
        def cb(err, msg, j=j):
            dr[j] = (err, msg.partition(), msg.offset())
        while True:
            try:
                producer.produce(topic, key=k, value=v, partition=p, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(60)
    assert remaining == 0, f"{what}: {remaining} records still undelivered after 60 s"
    bad = [(j, str(e)) for j, (e, _p, _o) in sorted(dr.items()) if e is not None]
    assert not bad and len(dr) == len(recs), f"{what}: deliveries failed: {bad[:5]} ({len(dr)} reports)"
    for j, (_e, p, _o) in dr.items():
        assert p == recs[j][0], f"{what}: record {j} sent to partition {recs[j][0]} landed on {p}"
    return [dr[j][2] for j in range(len(recs))]


# ----------------------------------------------------------------------------- (a) librdkafka


def _check_open_transaction(bootstrap, topic, t, recs, offsets, committed_so_far):
    """With transaction ``t`` open and its records in the log: LSO = its first offset,
    HW = past its last record, and a read_committed consumer stops at the LSO."""
    first = {p: min(o for (pp, _k, _v), o in zip(recs, offsets) if pp == p) for p in PARTS}
    last = {p: max(o for (pp, _k, _v), o in zip(recs, offsets) if pp == p) for p in PARTS}
    hw = high_watermarks(bootstrap, topic)
    lso = stable_offsets(bootstrap, topic)
    assert hw == {p: last[p] + 1 for p in PARTS}, (
        f"transaction {t} open: high watermarks {hw}, expected one past its last records {last}")
    assert lso == first, (
        f"transaction {t} open: last stable offsets (ListOffsets read_committed) {lso}, expected the "
        f"open transaction's first offsets {first} (high watermarks {hw})")
    view = read_topic(bootstrap, topic, "read_committed", ends=lso, linger=1.5)
    assert_partition_lists(view, committed_so_far,
                           f"a read_committed consumer while transaction {t} is open "
                           f"(must stop at the last stable offset {lso})")


def test_confluent_commit_abort_read_committed(ottla, topic_name):
    bs = ottla.bootstrap
    ck_create_topic(bs, topic_name, partitions=PARTITIONS)
    rnd = random.Random(20240917)
    errors: list = []
    prod = txn_producer(bs, f"txn-{topic_name}", error_cb=errors.append)
    prod.init_transactions(60)

    open_checks = {TXNS // 2 - 1, TXNS // 2}  # one committed, one aborted (t % 3 == 2)
    all_recs: dict[int, list] = {p: [] for p in PARTS}        # (offset, key, value), every record
    committed: dict[int, list] = {p: [] for p in PARTS}       # only committed transactions'
    next_offset = {p: 0 for p in PARTS}                       # expected layout
    layout_problems = []
    n_committed = n_aborted = 0
    for t in range(TXNS):
        aborted = t % 3 == 2
        n = rnd.randint(3, 6)
        # (t + j) % 3: every transaction writes to all three partitions, spread differently.
        recs = [((t + j) % PARTITIONS, f"t{t:03d}-r{j}",
                 f"{topic_name}/txn{t:03d}/rec{j}/{'aborted' if aborted else 'committed'}")
                for j in range(n)]
        prod.begin_transaction()
        offsets = produce_and_flush(prod, topic_name, recs, f"transaction {t}")
        # Offsets: each partition continues right after the previous transaction's marker.
        for p in PARTS:
            got = [o for (pp, _k, _v), o in zip(recs, offsets) if pp == p]
            want = list(range(next_offset[p], next_offset[p] + len(got)))
            if got != want:
                layout_problems.append(f"txn {t} p{p}: offsets {got}, expected {want}")
            if got:
                next_offset[p] = got[-1] + 2  # + one offset for the transaction's marker
        if t in open_checks:
            _check_open_transaction(bs, topic_name, t, recs, offsets,
                                    {p: [r for r in committed[p]] for p in PARTS})
        for (p, k, v), o in zip(recs, offsets):
            all_recs[p].append((o, k, v))
            if not aborted:
                committed[p].append((o, k, v))
        if aborted:
            prod.abort_transaction(60)
            n_aborted += n
        else:
            prod.commit_transaction(60)
            n_committed += n
    assert not layout_problems, (
        "offsets assigned to transactional records do not leave exactly one offset per partition "
        "per transaction for its marker:\n" + "\n".join(layout_problems[:20]))
    fatal = [e for e in errors if e.fatal()]
    assert not fatal, f"fatal producer errors: {fatal}"

    # Complete: LSO == HW, and HW = records + one marker per transaction per partition.
    hw = wait_stable(bs, topic_name, what="all transactions committed or aborted")
    assert hw == next_offset, (
        f"high watermarks {hw}, expected {next_offset} (every record plus one commit/abort marker "
        f"per transaction per partition)")

    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    total = sum(len(v) for v in rc.values())
    assert total == n_committed, (
        f"read_committed consumer got {total} records, {n_committed} were committed "
        f"({n_aborted} aborted); aborted values seen: "
        f"{[v for vs in rc.values() for (_o, _k, v) in vs if v.endswith('/aborted')][:5]}")
    assert_partition_lists(rc, committed, "read_committed consumer (committed records only, in order)")

    ru = read_topic(bs, topic_name, "read_uncommitted", ends=hw)
    assert sum(len(v) for v in ru.values()) == n_committed + n_aborted, (
        f"read_uncommitted consumer got {sum(len(v) for v in ru.values())} records, "
        f"{n_committed + n_aborted} were written")
    assert_partition_lists(ru, all_recs, "read_uncommitted consumer (committed and aborted records)")


# ----------------------------------------------------------------------------- (b) Java


def test_java_transactions_eos(java_program, ottla):
    out = run_java(java_program, "OttlaTxn", ottla, "eos", timeout=600, heap="512m")
    lines = dict(line.split(": ", 1) for line in out.splitlines()
                 if line.startswith(("GROUP: ", "OUTPUT: ", "INPUT: ")))
    group, output = lines["GROUP"].strip(), lines["OUTPUT"].strip()
    # The same facts from another client: OffsetFetch and a read_committed librdkafka consumer.
    offsets = ck_group_offsets(ottla.bootstrap, group)
    assert offsets == {p: 10 for p in PARTS}, (
        f"group {group}'s committed offsets (confluent-kafka OffsetFetch) {offsets}, expected the "
        f"ones sent in the committed transaction (10 per partition)")
    hw = wait_stable(ottla.bootstrap, output)
    view = read_topic(ottla.bootstrap, output, "read_committed", ends=hw)
    got = {p: [v for (_o, _k, v) in view[p]] for p in PARTS}
    want = {p: [f"in-{p}-{i}:out" for i in range(10)] + [f"after-{p}"] for p in PARTS}
    assert_partition_lists(got, want, f"read_committed confluent-kafka consumer of {output}")


def test_java_transactions_admin(java_program, ottla):
    run_java(java_program, "OttlaTxn", ottla, "admin", timeout=600, heap="512m")


# ----------------------------------------------------------------------------- (c) EOS pipeline


KILL_POINTS = ["begin", "produced", "flushed", "offsets_sent", "committing", "committed"]


class Processor:
    """One run of eos_processor.py, with its JSON-lines event log."""

    def __init__(self, tmp_path: Path, run: int, cfg: dict):
        self.run = run
        self.log = tmp_path / f"eos-run{run:02d}.events.jsonl"
        self.stderr_path = tmp_path / f"eos-run{run:02d}.stderr"
        full = dict(cfg, log=str(self.log))
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "eos_processor.py"), json.dumps(full)],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.killed = False

    def events(self) -> list[dict]:
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a half-written last line (killed)
        return out

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        evs = self.events()
        return (f"run {self.run} (exit {self.proc.poll()}), last events "
                f"{[(e['ev'], e.get('txn')) for e in evs[-8:]]}; stderr:\n{self.stderr()}")

    def wait_event(self, ev: str, txn: int, timeout: float) -> bool:
        """True once event ``ev`` of this run's transaction ``txn`` is logged; False if the
        process exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["ev"] == ev and e.get("txn") == txn for e in self.events()):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.002)
        raise Failed(f"timed out after {timeout}s waiting for {ev!r} of transaction {txn}: {self.describe()}")

    def kill9(self) -> None:
        self.killed = True
        self.proc.kill()
        self.proc.wait(timeout=30)

    def ensure_dead(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def processors():
    started: list[Processor] = []
    yield started
    for p in started:
        p.ensure_dead()


def test_eos_pipeline_survives_sigkill(ottla, tmp_path, processors):
    bs = ottla.bootstrap
    src, dst = unique_topic("eos-in"), unique_topic("eos-out")
    group, tid = f"eos-group-{src}", f"eos-txn-{src}"
    ck_create_topic(bs, src, partitions=PARTITIONS)
    ck_create_topic(bs, dst, partitions=PARTITIONS)

    # Topic A: N keyed records, value = a unique id.
    fill = Producer({"bootstrap.servers": bs, "linger.ms": 5, "enable.idempotence": True})
    inputs: dict[int, list[tuple[str, str]]] = {p: [] for p in PARTS}
    for i in range(EOS_RECORDS):
        p, k, v = i % PARTITIONS, f"key-{i:05d}", f"id-{i:05d}"
        fill.produce(src, key=k, value=v, partition=p)
        inputs[p].append((k, v))
        if i % 500 == 0:
            fill.poll(0)
    assert fill.flush(60) == 0, "input records undelivered"
    ends = {p: len(inputs[p]) for p in PARTS}
    assert high_watermarks(bs, src) == ends, "input topic end offsets"

    seed = int(os.environ.get("OTTLA_EOS_SEED", str(time.time_ns() % 2**31)))
    print(f"kill schedule seed: {seed} (set OTTLA_EOS_SEED to repeat)")
    rnd = random.Random(seed)
    # Every kill point at least once in the first six kills, then at random.
    schedule = rnd.sample(KILL_POINTS, len(KILL_POINTS)) + rnd.sample(KILL_POINTS, len(KILL_POINTS))
    cfg = dict(bootstrap=bs, input=src, output=dst, group=group, transactional_id=tid,
               ends={str(p): o for p, o in ends.items()}, batch=EOS_BATCH, record_delay_s=0.002,
               pre_commit_pause_s=0.05, session_timeout_ms=6000)
    kills = []
    while True:
        proc = Processor(tmp_path, len(processors), cfg)
        processors.append(proc)
        if len(kills) >= EOS_MIN_KILLS:
            try:
                rc = proc.proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                raise Failed(f"the last processor run did not finish within 600 s: {proc.describe()}")
            assert rc == 0, f"the last processor run failed: {proc.describe()}"
            break
        point = schedule[len(kills)] if len(kills) < len(schedule) else rnd.choice(KILL_POINTS)
        nth = rnd.randrange(3)
        delay = rnd.choice([0.0, 0.0, rnd.uniform(0.0, 0.03)])
        if not proc.wait_event(point, nth, timeout=180):
            if proc.proc.returncode == 0:
                raise Failed(f"the processor finished all {EOS_RECORDS} records after only {len(kills)} "
                             f"kills (need {EOS_MIN_KILLS}): raise OTTLA_EOS_RECORDS; {proc.describe()}")
            raise Failed(f"the processor exited on its own: {proc.describe()}")
        if delay:
            time.sleep(delay)
        proc.kill9()
        evs = proc.events()
        last = evs[-1] if evs else {"ev": None}
        flushed = [e for e in evs if e["ev"] == "flushed" and e.get("txn") == last.get("txn")]
        kills.append(dict(run=proc.run, point=point, txn=nth, last=last["ev"], last_txn=last.get("txn"),
                          flushed=flushed[-1]["n"] if flushed else 0))
    print("kills:", json.dumps(kills))

    fatal = [(p.run, e) for p in processors for e in p.events() if e["ev"] == "fatal"]
    assert not fatal, f"processor runs hit fatal errors: {fatal[:5]}"
    assert len(kills) >= EOS_MIN_KILLS, kills

    # The group's offsets are the input's end; no transaction is left open on the output.
    assert ck_group_offsets(bs, group) == ends, (
        f"group {group}'s committed offsets {ck_group_offsets(bs, group)}, expected input end offsets {ends}")
    hw = wait_stable(bs, dst, timeout=90, what="zombie transactions aborted by the next instance")

    rc = read_topic(bs, dst, "read_committed", ends=hw)
    got = {p: [(k, v) for (_o, k, v) in rc[p]] for p in PARTS}
    want = {p: [(k, v + ":out") for (k, v) in inputs[p]] for p in PARTS}
    counts = collections.Counter(v for vs in got.values() for (_k, v) in vs)
    dups = sorted(v for v, n in counts.items() if n > 1)
    missing = sorted({v for vs in want.values() for (_k, v) in vs} - set(counts))
    assert not dups and not missing, (
        f"read_committed output: {sum(counts.values())} records for {EOS_RECORDS} inputs; "
        f"{len(dups)} duplicated (first {dups[:10]}), {len(missing)} missing (first {missing[:10]}); "
        f"kills: {kills}")
    assert_partition_lists(got, want, "read_committed output, per partition in input order")

    # Zombies killed after flushing and before calling commit_transaction left their records in
    # the log; the next instance's init_transactions aborted them.
    doomed = sum(k["flushed"] for k in kills if k["last"] in ("flushed", "offsets_sent"))
    assert any(k["last"] in ("flushed", "offsets_sent") for k in kills), (
        f"no kill landed between a flush and commit_transaction (the schedule should make it): {kills}")
    ru = read_topic(bs, dst, "read_uncommitted", ends=hw)
    ru_total = sum(len(v) for v in ru.values())
    assert ru_total >= EOS_RECORDS + doomed, (
        f"read_uncommitted sees {ru_total} output records; the {EOS_RECORDS} committed ones plus at "
        f"least {doomed} flushed by killed, uncommitted transactions should be in the log")
    stray = {v for vs in ru.values() for (_o, _k, v) in vs} - {v for vs in want.values() for (_k, v) in vs}
    assert not stray, f"output records that are no transformed input: {sorted(stray)[:10]}"
    logged_commits = sum(e["n"] for p in processors for e in p.events() if e["ev"] == "committed")
    assert logged_commits <= EOS_RECORDS, (
        f"processor runs report {logged_commits} records committed for {EOS_RECORDS} inputs")


# ----------------------------------------------------------------------------- (d) zombie fencing


def test_confluent_zombie_fenced(ottla, topic_name):
    bs = ottla.bootstrap
    ck_create_topic(bs, topic_name, partitions=PARTITIONS)
    tid = f"txn-zombie-{topic_name}"
    errs1: list = []
    p1 = txn_producer(bs, tid, error_cb=errs1.append)
    p1.init_transactions(60)

    before = [(p, f"before-{p}", f"p1-committed-{p}") for p in PARTS]
    p1.begin_transaction()
    produce_and_flush(p1, topic_name, before, "p1's first transaction")
    p1.commit_transaction(60)

    # p1 opens a transaction and writes to partition 0; then p2 takes over the id.
    open_recs = [(0, f"open-{i}", f"p1-open-at-fence-{i}") for i in range(3)]
    p1.begin_transaction()
    produce_and_flush(p1, topic_name, open_recs, "p1's open transaction")

    p2 = txn_producer(bs, tid)
    p2.init_transactions(60)  # fences p1 and aborts its open transaction

    # The zombie goes on: partition 0 is already in its transaction, partition 1 is new.
    zombie_dr: list = []
    produce_errors: list = []
    for i in range(3):
        for part in (0, 1):
            try:
                p1.produce(topic_name, key=f"z{i}", value=f"p1-after-fence-{part}-{i}", partition=part,
                           on_delivery=lambda err, msg: zombie_dr.append((err, msg)))
            except KafkaException as e:
                produce_errors.append(e.args[0])
    # librdkafka raises the fatal error from flush()/poll() (confluent-kafka may wrap it in a
    # SystemError when a delivery callback runs while it is pending).
    for _ in range(2):
        try:
            p1.flush(10)
            break
        except (KafkaException, SystemError) as e:
            cause = e if isinstance(e, KafkaException) else e.__cause__
            if isinstance(cause, KafkaException):
                produce_errors.append(cause.args[0])
            cause = None  # its traceback references this frame (and so both producers)
    zombie_dr = [(err, _s(msg.value())) for err, msg in zombie_dr]
    commit_err = None
    try:
        p1.commit_transaction(30)
    except KafkaException as e:
        commit_err = e.args[0]
    try:
        p1.poll(0.5)  # serve error_cb
    except (KafkaException, SystemError):
        pass
    assert commit_err is not None, "the fenced producer's commit_transaction succeeded"
    observed = [commit_err] + produce_errors + errs1 + [e for e, _v in zombie_dr if e is not None]
    assert commit_err.fatal() or commit_err.code() in FENCED_CODES, (
        f"the fenced producer's commit failed with a non-fatal, non-fencing error: {commit_err!r} "
        f"(code {commit_err.code()}); all errors seen: {observed}")
    fenced = [e for e in observed if e.code() in FENCED_CODES]
    assert fenced, (f"no fencing error (_FENCED / PRODUCER_FENCED / INVALID_PRODUCER_EPOCH) reached the "
                    f"fenced producer; errors seen: {[(e.code(), str(e)) for e in observed]}")
    acked = [v for e, v in zombie_dr if e is None]
    assert not acked, f"the broker acknowledged writes of the fenced producer: {acked}"
    with pytest.raises(KafkaException):
        p1.begin_transaction()  # a fenced producer stays failed
        p1.produce(topic_name, value="p1-after-fence-again", partition=2)
        p1.commit_transaction(30)

    after = [(p, f"p2-{p}", f"p2-committed-{p}") for p in PARTS]
    p2.begin_transaction()
    produce_and_flush(p2, topic_name, after, "the new producer's transaction")
    p2.commit_transaction(60)

    hw = wait_stable(bs, topic_name)
    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    got = {p: [v for (_o, _k, v) in rc[p]] for p in PARTS}
    want = {p: [f"p1-committed-{p}", f"p2-committed-{p}"] for p in PARTS}
    assert_partition_lists(got, want, "read_committed consumer after fencing (p1's committed records, "
                                      "then p2's; nothing of p1's aborted or post-fence writes)")
    ru = read_topic(bs, topic_name, "read_uncommitted", ends=hw)
    ru_values = [v for vs in ru.values() for (_o, _k, v) in vs]
    assert not [v for v in ru_values if "after-fence" in v], (
        f"the fenced producer's writes reached the log: {[v for v in ru_values if 'after-fence' in v]}")
    assert all(v in ru_values for (_p, _k, v) in open_recs), (
        f"the open transaction's acknowledged records are not in the log (read_uncommitted): {ru_values}")
    del p1, p2  # destroy both clients now, not after the broker is stopped at teardown


# ----------------------------------------------------------------------------- (e) broker crash


CRASH_PRODUCER = r'''
import json, sys, time
from confluent_kafka import KafkaException, Producer

cfg = json.loads(sys.argv[1])
out = open(cfg["log"], "a", buffering=1)


def emit(ev, **kw):
    kw["ev"] = ev
    kw["t"] = time.time()
    out.write(json.dumps(kw) + "\n")


p = Producer({"bootstrap.servers": cfg["bootstrap"], "transactional.id": cfg["txn_id"],
              "linger.ms": 5, "transaction.timeout.ms": 60000})
p.init_transactions(60)
emit("init_done")
p.begin_transaction()
acks = []
for part, key, value in cfg["records"]:
    p.produce(cfg["topic"], key=key, value=value, partition=part,
              on_delivery=lambda e, m: acks.append([None if e is None else str(e), m.partition(), m.offset()]))
left = p.flush(60)
emit("flushed", left=left, acks=acks)
emit("committing")
try:
    p.commit_transaction(cfg["commit_timeout_s"])
    emit("commit_returned")
except KafkaException as e:
    emit("commit_failed", code=e.args[0].code(), error=str(e.args[0]))
time.sleep(3600)  # the test kills this process
'''


@pytest.mark.parametrize("fault", [FAULT_ENV, FAULT_AFTER_FIRST_MARKER_ENV],
                         ids=["before-markers", "after-first-marker"])
def test_broker_crash_between_prepare_commit_and_markers(ottla_factory, topic_name, tmp_path, monkeypatch,
                                                          fault):
    # conftest's Ottla.start() passes a copy of os.environ to the broker: set the hook's
    # variable for this one start only (a restart does not get it).
    monkeypatch.setenv(fault, "1")
    b = ottla_factory(name="ottla-txn-crash", allow_panics=True)
    monkeypatch.delenv(fault)
    bs = b.bootstrap
    ck_create_topic(bs, topic_name, partitions=PARTITIONS)
    records = [(i % PARTITIONS, f"k{i}", f"crash-txn-{i}") for i in range(30)]

    script = tmp_path / "crash_producer.py"
    script.write_text(CRASH_PRODUCER)
    log = tmp_path / "crash_producer.events.jsonl"
    cfg = dict(bootstrap=bs, topic=topic_name, txn_id=f"txn-crash-{topic_name}", records=records,
               log=str(log), commit_timeout_s=20)
    with open(tmp_path / "crash_producer.stderr", "wb") as err:
        child = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)],
                                 stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def events():
        try:
            return [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
        except FileNotFoundError:
            return []

    try:
        def flushed():
            if child.poll() is not None:
                raise Failed(f"the transactional producer exited with {child.returncode}: "
                             f"{(tmp_path / 'crash_producer.stderr').read_text(errors='replace')[-3000:]}")
            return next((e for e in events() if e["ev"] == "flushed"), None)
        ev = wait_for(flushed, 120, "the transactional producer to write its records")
        bad = [a for a in ev["acks"] if a[0] is not None]
        assert ev["left"] == 0 and not bad and len(ev["acks"]) == len(records), (
            f"the transaction's records were not all acknowledged before the commit: {ev}")
        try:
            b.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise Failed(f"the broker is still running 60 s after commit_transaction was called: does it "
                         f"implement the {fault} hook? producer events: {events()}") from None
        print(f"broker exited with {b.proc.returncode}; producer events: {[e['ev'] for e in events()]}")
        assert b.proc.returncode != 0, f"the broker exited cleanly ({b.proc.returncode}) instead of crashing"
    finally:
        child.kill()
        child.wait(timeout=30)
    b.kill9()  # records the (expected) exit for conftest's teardown checks
    b.start()
    assert fault not in os.environ
    if fault == FAULT_AFTER_FIRST_MARKER_ENV:
        assert "is set: aborting after the COMMIT marker of" in b.stderr_text(), \
            "the broker did not crash between two partitions' markers"

    # The restarted coordinator finds PrepareCommit and writes the markers.
    hw = wait_stable(bs, topic_name, timeout=90,
                     what="the restarted coordinator to complete the prepared commit")
    per = collections.Counter(p for p, _k, _v in records)
    assert all(hw[p] >= per[p] + 1 for p in PARTS), (
        f"high watermarks {hw}: expected each partition's {dict(per)} records plus a commit marker")
    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    want = {p: [(k, v) for (pp, k, v) in records if pp == p] for p in PARTS}
    assert_partition_lists({p: [(k, v) for (_o, k, v) in rc[p]] for p in PARTS}, want,
                           "read_committed consumer after the restart (the prepared commit completed)")

    # Not stuck: later plain records are visible to read_committed consumers too.
    plain = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    later = [(p, f"later-{p}", f"after-crash-{p}") for p in PARTS]
    produce_and_flush(plain, topic_name, later, "non-transactional records after the restart")
    hw = wait_stable(bs, topic_name)
    for p, k, v in later:
        want[p].append((k, v))
    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    assert_partition_lists({p: [(k, v) for (_o, k, v) in rc[p]] for p in PARTS}, want,
                           "read_committed consumer after plain records followed the recovered transaction")

    # And the transactional id works again.
    again = txn_producer(bs, cfg["txn_id"])
    again.init_transactions(60)
    again.begin_transaction()
    more = [(p, f"again-{p}", f"second-txn-{p}") for p in PARTS]
    produce_and_flush(again, topic_name, more, "a new transaction with the same id")
    again.commit_transaction(60)
    for p, k, v in more:
        want[p].append((k, v))
    hw = wait_stable(bs, topic_name)
    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    assert_partition_lists({p: [(k, v) for (_o, k, v) in rc[p]] for p in PARTS}, want,
                           "read_committed consumer after a new transaction with the recovered id")
    assert "panicked at" not in b.stderr_since_start(), b.stderr_since_start()[-3000:]


# ----------------------------------------------------------------------------- (f) other clients


# (action, partitions of its records); the fourth writes to partition 1 only.
TXN_PLAN = [("commit", [0, 1, 2, 0, 1, 2]), ("abort", [0, 1, 2, 0, 1, 2]), ("commit", [2, 1, 0]),
            ("abort", [1, 1, 1]), ("commit", [0, 2])]


def txn_steps(tag: str) -> list[tuple[str, list[tuple[int, str, str]]]]:
    return [(action, [(p, f"{tag}-s{s}-k{j}", f"{tag}/step{s}/{action}/{j}") for j, p in enumerate(parts)])
            for s, (action, parts) in enumerate(TXN_PLAN)]


def check_commit_abort_views(bootstrap: str, topic: str, steps, client: str) -> None:
    hw = wait_stable(bootstrap, topic, what=f"{client}'s transactions complete")
    want_hw = {p: sum(1 for _a, msgs in steps for (pp, _k, _v) in msgs if pp == p)
               + sum(1 for _a, msgs in steps if any(pp == p for (pp, _k, _v) in msgs)) for p in PARTS}
    assert hw == want_hw, (f"high watermarks {hw}, expected {want_hw} (every record plus one marker per "
                           f"transaction per partition it wrote to)")
    want_rc = {p: [(k, v) for a, msgs in steps if a == "commit" for (pp, k, v) in msgs if pp == p] for p in PARTS}
    want_ru = {p: [(k, v) for _a, msgs in steps for (pp, k, v) in msgs if pp == p] for p in PARTS}
    rc = read_topic(bootstrap, topic, "read_committed", ends=hw)
    assert_partition_lists({p: [(k, v) for (_o, k, v) in rc[p]] for p in PARTS}, want_rc,
                           f"read_committed confluent-kafka consumer of {client}'s transactions")
    ru = read_topic(bootstrap, topic, "read_uncommitted", ends=hw)
    assert_partition_lists({p: [(k, v) for (_o, k, v) in ru[p]] for p in PARTS}, want_ru,
                           f"read_uncommitted confluent-kafka consumer of {client}'s transactions")


def _kafka_python_version() -> tuple[int, ...]:
    import kafka
    return tuple(int(x) for x in kafka.__version__.split(".")[:2] if x.isdigit())


def test_kafka_python_transactions(ottla, topic_name):
    from kafka import KafkaProducer
    if _kafka_python_version() < (2, 1) or not hasattr(KafkaProducer, "init_transactions"):
        import kafka
        pytest.skip(f"kafka-python {kafka.__version__} (requirements.txt) has no transactional producer "
                    f"(added in 2.1)")
    bs = ottla.bootstrap
    ck_create_topic(bs, topic_name, partitions=PARTITIONS)
    steps = txn_steps("kafka-python")
    prod = KafkaProducer(bootstrap_servers=bs, client_id="compat-kafka-python-txn",
                         transactional_id=f"txn-kp-{topic_name}", linger_ms=5,
                         request_timeout_ms=30000, max_block_ms=60000)
    try:
        bounded(prod.init_transactions, 90, "init_transactions")
        for i, (action, msgs) in enumerate(steps):
            prod.begin_transaction()
            futs = [prod.send(topic_name, key=k.encode(), value=v.encode(), partition=p) for p, k, v in msgs]
            prod.flush(timeout=60)
            for (p, _k, v), f in zip(msgs, futs):
                md = f.get(timeout=60)  # raises if the send failed
                assert md.partition == p, f"{v} landed on partition {md.partition}"
            fn = prod.commit_transaction if action == "commit" else prod.abort_transaction
            bounded(fn, 90, f"{action}_transaction of step {i}")
    finally:
        bounded(lambda: prod.close(timeout=30), 60, "KafkaProducer.close")
    check_commit_abort_views(bs, topic_name, steps, "kafka-python")


def test_kafkajs_transactions(kafkajs_ready, ottla, topic_name):
    bs = ottla.bootstrap
    ck_create_topic(bs, topic_name, partitions=PARTITIONS)
    steps = txn_steps("kafkajs")
    cfg = dict(bootstrap=bs, topic=topic_name, transactionalId=f"txn-kafkajs-{topic_name}", timeoutMs=120000,
               steps=[{"action": a, "messages": [{"partition": p, "key": k, "value": v} for p, k, v in msgs]}
                      for a, msgs in steps])
    proc = subprocess.run([kafkajs_ready, str(JS_DIR / "txn.js"), json.dumps(cfg)], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=180)
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"txn.js printed no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-5000:]}")
    assert res["error"] is None and proc.returncode == 0, f"{res['error']}\nstderr:\n{proc.stderr[-5000:]}"
    assert [s.get("done") for s in res["steps"]] == [True] * len(steps), res["steps"]
    for s, (_a, msgs) in zip(res["steps"], steps):
        assert [x[0] for x in s["sent"]] == [p for p, _k, _v in msgs] and all(x[2] == 0 for x in s["sent"]), (
            f"step {s['step']}: kafkajs produce results {s['sent']}")
    check_commit_abort_views(bs, topic_name, steps, "kafkajs")
