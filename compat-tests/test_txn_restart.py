"""A broker restart in the middle of a transaction completes or aborts it (issue 10, part 3).

One node, real clients (a confluent-kafka transactional producer, read_committed /
read_uncommitted consumers), plus three raw requests confluent-kafka cannot make with the
details needed here: DescribeTransactions v0 (the coordinator's state and producer epoch),
OffsetFetch v7 with ``require_stable`` (per-partition UNSTABLE_OFFSET_COMMIT) and, through
confluent-kafka's Admin, ListOffsets latest with ``isolation_level=1`` (the last stable offset,
LSO). Where each test crashes in the two-phase commit:

* ``test_ongoing_transaction_aborted_after_restart[kill9]``: phase 0 -- the transaction is
  *Ongoing* (AddPartitionsToTxn recorded in ``__transaction_state``, records acknowledged on
  three partitions, no EndTxn sent) when the broker is SIGKILLed. After the restart the
  coordinator reloads the transaction from ``__transaction_state`` and, once the producer's
  ``transaction.timeout.ms`` (5 s, counted from the transaction's start) has passed, aborts it
  as Kafka does: epoch bumped by one (the producer that left it open is fenced), PrepareAbort,
  ABORT markers, CompleteAbort. The LSO moves from the transaction's first offset to the high
  watermark, which is exactly one abort marker past the records; a read_committed consumer sees
  only the transaction committed before it, at its offsets, a read_uncommitted one sees the
  aborted records too (they were durable); the old producer's ``commit_transaction`` then fails
  with a fencing error and writes nothing; a new producer with the same ``transactional.id``
  commits a transaction that read_committed sees.
* ``test_ongoing_transaction_aborted_after_restart[sigterm]``: the same, phase 0, but the
  broker is stopped cleanly (SIGTERM, exit code 0) instead of killed.
* ``test_pending_offsets_aborted_after_restart``: phase 0 of a transaction that also sent
  offsets (``send_offsets_to_transaction``: AddOffsetsToTxn + TxnOffsetCommit) for a group.
  Before the crash OffsetFetch ``require_stable`` answers UNSTABLE_OFFSET_COMMIT for those
  partitions and plain OffsetFetch the previously committed offsets. After the SIGKILL, restart
  and the timeout abort, OffsetFetch ``require_stable`` answers without error, with the offsets
  committed before the transaction (never UNSTABLE_OFFSET_COMMIT forever); a read_committed
  consumer's ``committed()`` (librdkafka asks with require_stable) agrees; the transaction's
  output records are invisible to read_committed; a new producer with the same id commits new
  offsets and they become the group's.

Not covered here:

* A crash between PrepareCommit and the markers: ``test_transactions.py``
  (``OTTLA_FAULT_CRASH_BEFORE_TXN_MARKERS``).
* A crash after the COMMIT markers reached some but not all partitions of a transaction: no
  fault hook stops the broker there (on one node all markers of a transaction go to the same
  leader in one WriteTxnMarkers request, whose appends all start together), so it cannot be
  reached deterministically from outside the process.

The broker's own ``transaction.max.timeout.ms`` (15 min) and abort timer are left at their
defaults; the coordinator arms its timer for each transaction's deadline.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from conftest import _recv_exact, ck_create_topic, ck_group_offsets, wait_for
from test_security import Reader, uvarint
from test_transactions import (FENCED_CODES, assert_partition_lists, high_watermarks, produce_and_flush,
                               read_topic, stable_offsets, txn_producer, wait_stable)

PARTITIONS = 3  # test_transactions' helpers (high_watermarks, wait_stable) cover partitions 0-2
PARTS = range(PARTITIONS)
TXN_TIMEOUT_MS = 5000
# How long a restarted broker gets to abort the open transaction: its 5 s timeout plus generous
# room for the restart, the coordinator's load, the markers and a slow machine.
ABORT_DEADLINE_S = 60

OFFSET_FETCH, DESCRIBE_TRANSACTIONS = 9, 65
UNSTABLE_OFFSET_COMMIT = 88
Failed = pytest.fail.Exception  # not an Exception subclass: wait_for does not swallow it


# ----------------------------------------------------------------------------- raw flexible requests


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


_corr = [100]


def flex_request(broker, api_key: int, version: int, body: bytes, timeout: float = 10.0) -> Reader:
    """One request with a v2 (flexible) header on a fresh connection; a Reader positioned
    after the v1 response header (correlation id and its tagged fields)."""
    _corr[0] += 1
    cid = b"ottla-compat-tests"
    header = struct.pack(">hhih", api_key, version, _corr[0], len(cid)) + cid + b"\x00"
    with socket.create_connection((broker.host, broker.port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        r = Reader(_recv_exact(s, size))
    got = r.i32()
    assert got == _corr[0], f"correlation id {got}, sent {_corr[0]}"
    r.tags()
    return r


def describe_txn(broker, txn_id: str) -> dict:
    """DescribeTransactions v0 of one id: error, state, producer id and epoch, partitions."""
    r = flex_request(broker, DESCRIBE_TRANSACTIONS, 0, uvarint(2) + compact_string(txn_id) + b"\x00")
    r.i32()  # throttle_time_ms
    n = r.uvarint() - 1
    assert n == 1, f"DescribeTransactions: {n} states for one id"
    out = dict(error=r.i16(), id=r.compact_string(), state=r.compact_string(), timeout_ms=r.i32(),
               start_ms=r.i64(), producer_id=r.i64(), epoch=r.i16(), partitions=set())
    for _ in range(r.uvarint() - 1):
        topic = r.compact_string()
        for _ in range(r.uvarint() - 1):
            out["partitions"].add((topic, r.i32()))
        r.tags()
    r.tags()
    r.tags()
    r.end()
    return out


def offset_fetch(broker, group: str, topic: str, require_stable: bool) -> dict:
    """OffsetFetch v7 of partitions 0-2: {"error": top-level error,
    partition: (committed offset, error)}."""
    body = (compact_string(group) + uvarint(2) + compact_string(topic) + uvarint(PARTITIONS + 1)
            + b"".join(struct.pack(">i", p) for p in PARTS) + b"\x00"
            + (b"\x01" if require_stable else b"\x00") + b"\x00")
    r = flex_request(broker, OFFSET_FETCH, 7, body)
    r.i32()  # throttle_time_ms
    out: dict = {}
    for _ in range(r.uvarint() - 1):
        name = r.compact_string()
        for _ in range(r.uvarint() - 1):
            p, offset = r.i32(), r.i64()
            r.i32()  # committed_leader_epoch
            r.compact_string()  # metadata
            err = r.i16()
            r.tags()
            if name == topic:
                out[p] = (offset, err)
        r.tags()
    out["error"] = r.i16()
    r.tags()
    r.end()
    return out


# ----------------------------------------------------------------------------- helpers


def start_broker(ottla_factory, name: str):
    b = ottla_factory(name=name)
    versions = b.api_versions
    assert versions.get(OFFSET_FETCH, (0, -1))[1] >= 7 and DESCRIBE_TRANSACTIONS in versions, (
        f"the broker does not offer OffsetFetch v7 / DescribeTransactions: {versions}")
    return b


def wait_aborted(b, txn_id: str, before: dict) -> dict:
    """Wait until the coordinator shows the id's transaction CompleteAbort with the epoch bumped
    once past ``before`` (Kafka's fence-and-abort of a timed-out transaction)."""
    seen: list = []

    def done():
        d = describe_txn(b, txn_id)
        if not seen or seen[-1] != (d["error"], d["state"], d["epoch"]):
            seen.append((d["error"], d["state"], d["epoch"]))
        return d if d["error"] == 0 and d["state"] == "CompleteAbort" else None

    try:
        d = wait_for(done, ABORT_DEADLINE_S, f"the restarted coordinator to abort {txn_id}'s timed-out "
                     f"transaction (DescribeTransactions CompleteAbort)", interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; (error, state, epoch) seen since the restart: {seen}") from None
    print(f"{txn_id} after the restart: (error, state, epoch) seen {seen}")
    assert d["producer_id"] == before["producer_id"] and d["epoch"] == before["epoch"] + 1, (
        f"the timed-out transaction was aborted with producer id {d['producer_id']} epoch {d['epoch']}; "
        f"Kafka fences the producer that left it open: producer id {before['producer_id']}, "
        f"epoch {before['epoch'] + 1}")
    return d


def stable_group_offsets(b, group: str, topic: str, what: str, timeout: float = 30) -> dict:
    """Poll OffsetFetch require_stable until it answers without any error (no
    UNSTABLE_OFFSET_COMMIT); every distinct answer seen is printed."""
    seen: list = []

    def settled():
        r = offset_fetch(b, group, topic, True)
        if not seen or seen[-1] != r:
            seen.append(r)
        return r if r["error"] == 0 and all(r[p][1] == 0 for p in PARTS) else None

    try:
        r = wait_for(settled, timeout, f"OffsetFetch require_stable to answer without error: {what}",
                     interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; answers seen: {seen}") from None
    print(f"OffsetFetch require_stable answers ({what}): {seen}")
    return r


def wait_stable_topic(bs: str, topic: str) -> dict[int, int]:
    return wait_stable(bs, topic, timeout=ABORT_DEADLINE_S, what=f"{topic}: LSO == high watermark")


def values(view: dict) -> dict[int, list[tuple[int, str]]]:
    return {p: [(o, v) for (o, _k, v) in view[p]] for p in PARTS}


def stop_broker(b, how: str) -> None:
    if how == "kill9":
        b.kill9()
    else:
        rc = b.stop()
        assert rc == 0, f"the broker exited with {rc} after SIGTERM"


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_ongoing_transaction_aborted_after_restart(ottla_factory, topic_name, how):
    b = start_broker(ottla_factory, f"ottla-{how}")
    bs = b.bootstrap
    ck_create_topic(bs, topic_name, partitions=PARTITIONS)
    txn_id = f"txn-restart-{topic_name}"

    prod = txn_producer(bs, txn_id, **{"transaction.timeout.ms": TXN_TIMEOUT_MS})
    prod.init_transactions(60)
    prod.begin_transaction()
    first = [(p, f"c{p}-{i}", f"{topic_name}/committed-before/{p}/{i}") for p in PARTS for i in range(2)]
    produce_and_flush(prod, topic_name, first, "the committed transaction before the crash")
    prod.commit_transaction(60)
    assert wait_stable(bs, topic_name, what="first transaction committed") == {p: 3 for p in PARTS}

    # Phase 0: the second transaction is open on all three partitions; no EndTxn.
    prod.begin_transaction()
    began = time.monotonic()
    open_recs = [(p, f"o{p}-{i}", f"{topic_name}/open-at-crash/{p}/{i}") for p in PARTS for i in range(3)]
    offsets = produce_and_flush(prod, topic_name, open_recs, "the transaction open at the crash")
    want_offsets = [3 + i for _p in PARTS for i in range(3)]
    assert offsets == want_offsets, f"open transaction's offsets {offsets}, expected {want_offsets}"
    hw, lso = high_watermarks(bs, topic_name), stable_offsets(bs, topic_name)
    assert hw == {p: 6 for p in PARTS} and lso == {p: 3 for p in PARTS}, (
        f"with the transaction open: high watermarks {hw} (expected 6), last stable offsets {lso} "
        f"(expected its first offset, 3)")
    before = describe_txn(b, txn_id)
    elapsed = time.monotonic() - began
    assert before["error"] == 0 and before["state"] == "Ongoing", (
        f"{elapsed:.1f} s into the transaction (timeout {TXN_TIMEOUT_MS} ms) the coordinator "
        f"describes it as {before}, not Ongoing")
    assert before["partitions"] == {(topic_name, p) for p in PARTS}, before
    assert before["timeout_ms"] == TXN_TIMEOUT_MS, before

    stop_broker(b, how)
    b.start()

    wait_aborted(b, txn_id, before)
    hw = wait_stable(bs, topic_name, timeout=ABORT_DEADLINE_S,
                     what="the aborted transaction no longer holding back the LSO")
    assert hw == {p: 7 for p in PARTS}, (
        f"high watermarks {hw} after the abort: expected 7 (the open transaction's three records "
        f"at 3-5 plus one ABORT marker at 6)")
    committed = {p: [(o, v) for (pp, _k, v), o in zip(first, [0, 1] * PARTITIONS) if pp == p] for p in PARTS}
    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    assert_partition_lists(values(rc), committed,
                           "read_committed after the restart (only the transaction committed before it)")
    ru = read_topic(bs, topic_name, "read_uncommitted", ends=hw)
    everything = {p: committed[p] + [(3 + i, f"{topic_name}/open-at-crash/{p}/{i}") for i in range(3)]
                  for p in PARTS}
    assert_partition_lists(values(ru), everything,
                           "read_uncommitted after the restart (the aborted records were durable)")

    # The producer that left the transaction open is fenced and writes nothing.
    with pytest.raises(KafkaException) as info:
        prod.commit_transaction(30)
    err = info.value.args[0]
    assert err.code() in FENCED_CODES, (
        f"the old producer's commit after the timeout abort failed with {err.code()} ({err}), "
        f"expected a fencing error")
    del prod, info, err
    assert high_watermarks(bs, topic_name) == {p: 7 for p in PARTS}, "the fenced commit wrote something"
    assert stable_offsets(bs, topic_name) == {p: 7 for p in PARTS}

    # The id works again.
    again = txn_producer(bs, txn_id, **{"transaction.timeout.ms": TXN_TIMEOUT_MS})
    again.init_transactions(60)
    again.begin_transaction()
    later = [(p, f"n{p}", f"{topic_name}/after-restart/{p}") for p in PARTS]
    assert produce_and_flush(again, topic_name, later, "a new transaction with the same id") == [7] * PARTITIONS
    again.commit_transaction(60)
    hw = wait_stable(bs, topic_name, what="the new transaction committed")
    assert hw == {p: 9 for p in PARTS}, hw
    for p, _k, v in later:
        committed[p].append((7, v))
    rc = read_topic(bs, topic_name, "read_committed", ends=hw)
    assert_partition_lists(values(rc), committed, "read_committed after a new transaction with the same id")
    d = describe_txn(b, txn_id)
    assert d["state"] == "CompleteCommit" and d["epoch"] > before["epoch"] + 1, d
    del again


def test_pending_offsets_aborted_after_restart(ottla_factory, topic_name):
    b = start_broker(ottla_factory, "ottla-offsets")
    bs = b.bootstrap
    src, out, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{topic_name}"
    ck_create_topic(bs, src, partitions=PARTITIONS)
    ck_create_topic(bs, out, partitions=PARTITIONS)
    plain = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    produce_and_flush(plain, src, [(p, f"k{i}", f"in-{p}-{i}") for p in PARTS for i in range(10)], "input")
    del plain
    txn_id = f"txn-offsets-{topic_name}"

    # The group's consumer (assign: a simple consumer, generation -1) supplies the metadata.
    consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(src, p, 0) for p in PARTS])

    def send_offsets(producer, offset: int) -> None:
        producer.send_offsets_to_transaction([TopicPartition(src, p, offset) for p in PARTS],
                                             consumer.consumer_group_metadata(), 60)

    prod = txn_producer(bs, txn_id, **{"transaction.timeout.ms": TXN_TIMEOUT_MS})
    prod.init_transactions(60)
    prod.begin_transaction()
    produce_and_flush(prod, out, [(p, f"a{p}", f"out-committed-{p}") for p in PARTS], "committed output")
    send_offsets(prod, 4)
    prod.commit_transaction(60)
    r = stable_group_offsets(b, group, src, "the first transaction's offsets committed")
    assert all(r[p] == (4, 0) for p in PARTS), f"offsets after the first transaction: {r}, expected 4"

    # Phase 0 of a transaction with output records and pending offsets 9.
    prod.begin_transaction()
    began = time.monotonic()
    produce_and_flush(prod, out, [(p, f"b{p}", f"out-open-at-crash-{p}") for p in PARTS], "open output")
    send_offsets(prod, 9)
    pending = offset_fetch(b, group, src, True)
    assert all(pending[p][1] == UNSTABLE_OFFSET_COMMIT for p in PARTS), (
        f"OffsetFetch require_stable with offsets pending in an open transaction: {pending}; expected "
        f"UNSTABLE_OFFSET_COMMIT ({UNSTABLE_OFFSET_COMMIT}) for every partition")
    loose = offset_fetch(b, group, src, False)
    assert all(loose[p] == (4, 0) for p in PARTS) and loose["error"] == 0, (
        f"OffsetFetch without require_stable while the offsets are pending: {loose}; expected the "
        f"committed 4")
    before = describe_txn(b, txn_id)
    elapsed = time.monotonic() - began
    assert before["error"] == 0 and before["state"] == "Ongoing", (
        f"{elapsed:.1f} s into the transaction the coordinator describes it as {before}, not Ongoing")
    assert {(t, p) for (t, p) in before["partitions"] if t == out} == {(out, p) for p in PARTS}, before
    assert any(t == "__consumer_offsets" for (t, _p) in before["partitions"]), (
        f"the group's __consumer_offsets partition is not in the transaction: {before}")

    b.kill9()
    b.start()

    r = stable_group_offsets(b, group, src, "the pending offsets to be aborted after the restart",
                             timeout=ABORT_DEADLINE_S)
    assert all(r[p] == (4, 0) for p in PARTS), (
        f"after the abort the group's committed offsets are {r}, expected the ones committed before "
        f"the transaction (4)")
    wait_aborted(b, txn_id, before)
    committed = consumer.committed([TopicPartition(src, p) for p in PARTS], timeout=30)
    assert {tp.partition: tp.offset for tp in committed} == {p: 4 for p in PARTS}, committed
    assert ck_group_offsets(bs, group) == {p: 4 for p in PARTS}

    hw = wait_stable_topic(bs, out)
    assert hw == {p: 4 for p in PARTS}, (
        f"output high watermarks {hw}: expected commit marker at 1, aborted record at 2, abort marker at 3")
    rc = read_topic(bs, out, "read_committed", ends=hw)
    assert_partition_lists(values(rc), {p: [(0, f"out-committed-{p}")] for p in PARTS},
                           "read_committed output after the restart (the aborted transaction's record hidden)")

    # A new producer with the id commits new offsets.
    again = txn_producer(bs, txn_id, **{"transaction.timeout.ms": TXN_TIMEOUT_MS})
    again.init_transactions(60)
    again.begin_transaction()
    produce_and_flush(again, out, [(p, f"c{p}", f"out-after-restart-{p}") for p in PARTS], "output after")
    send_offsets(again, 7)
    again.commit_transaction(60)
    r = stable_group_offsets(b, group, src, "the new transaction's offsets committed")
    assert all(r[p] == (7, 0) for p in PARTS), f"offsets after the new transaction: {r}, expected 7"
    committed = consumer.committed([TopicPartition(src, p) for p in PARTS], timeout=30)
    assert {tp.partition: tp.offset for tp in committed} == {p: 7 for p in PARTS}, committed
    hw = wait_stable_topic(bs, out)
    rc = read_topic(bs, out, "read_committed", ends=hw)
    assert_partition_lists(values(rc), {p: [(0, f"out-committed-{p}"), (4, f"out-after-restart-{p}")]
                                        for p in PARTS},
                           "read_committed output after the new transaction")
    consumer.close()
    del prod, again

