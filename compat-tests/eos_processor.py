"""An exactly-once consume-transform-produce processor (confluent-kafka / librdkafka), the
application side of ``test_transactions.py::test_eos_pipeline_survives_sigkill``.

Usage: ``python eos_processor.py '<json config>'``, config keys:

* ``bootstrap``, ``input``, ``output``, ``group``, ``transactional_id``
* ``ends``: ``{partition: end offset}`` of the input topic; the processor exits 0 once the
  group's committed offsets reach them
* ``log``: a file to which one JSON event per line is appended (line-buffered, so the log
  of a process killed with SIGKILL holds every event it wrote before it died)
* ``batch`` (records per transaction), ``record_delay_s`` (a pause after each record, so
  a test can kill the processor at many points), ``pre_commit_pause_s`` (a pause between
  ``offsets_sent`` and ``committing``: a kill that follows an ``offsets_sent`` event then lands
  before the EndTxn request is sent), ``session_timeout_ms``

The pattern is the standard one (KIP-98 / KIP-447): ``init_transactions`` first (fencing any
earlier instance with the same ``transactional.id`` and aborting its open transaction), then a
``read_committed`` consumer without auto-commit subscribes to the input; for each batch of up to
``batch`` records: ``begin_transaction``, produce ``value + b":out"`` with the same key to the
same partition of the output topic, ``send_offsets_to_transaction(consumer.position(...),
consumer.consumer_group_metadata())``, ``commit_transaction``. An abortable error aborts the
transaction and rewinds the consumer to the group's committed offsets; a fatal error exits 3.

Events (``ev``): start, init_done, assign, revoke, lost, begin, produced, flushed,
offsets_sent, committing, committed, retry, aborted, fatal, done. ``txn`` counts this run's
transactions from 0.
"""

from __future__ import annotations

import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer

cfg = json.loads(sys.argv[1])
out = open(cfg["log"], "a", buffering=1)  # line-buffered: every event is write()n at once


def emit(ev: str, **kw) -> None:
    kw["ev"] = ev
    kw["t"] = time.time()
    out.write(json.dumps(kw) + "\n")


BATCH = int(cfg.get("batch", 50))
RECORD_DELAY = float(cfg.get("record_delay_s", 0.0))
PRE_COMMIT_PAUSE = float(cfg.get("pre_commit_pause_s", 0.0))
INPUT, OUTPUT = cfg["input"], cfg["output"]
ENDS = {int(p): int(o) for p, o in cfg["ends"].items()}


class Abort(Exception):
    """The open transaction must be aborted (abortable error or failed delivery)."""


state = {"in_txn": False, "txn": 0, "batch": [], "delivery_errors": []}


def on_delivery(err, msg):
    if err is not None:
        state["delivery_errors"].append(str(err))


producer = Producer({
    "bootstrap.servers": cfg["bootstrap"],
    "client.id": f"eos-processor-{os.getpid()}",
    "transactional.id": cfg["transactional_id"],
    "transaction.timeout.ms": 60000,
    "linger.ms": 5,
    "message.timeout.ms": 60000,
})
emit("start", pid=os.getpid())
producer.init_transactions(120)
emit("init_done")


def abort_open(why: str) -> None:
    if state["in_txn"]:
        producer.abort_transaction(60)
        emit("aborted", txn=state["txn"], why=why, records=len(state["batch"]))
        state["txn"] += 1
    state["in_txn"] = False
    state["batch"] = []
    state["delivery_errors"] = []


def on_assign(c, parts):
    emit("assign", parts=sorted(tp.partition for tp in parts))


def on_revoke(c, parts):
    # Not expected with one member; if it happens, the open transaction's records must not
    # be committed with offsets of partitions this member no longer owns.
    abort_open("revoke")
    emit("revoke", parts=sorted(tp.partition for tp in parts))


def on_lost(c, parts):
    abort_open("lost")
    emit("lost", parts=sorted(tp.partition for tp in parts))


consumer = Consumer({
    "bootstrap.servers": cfg["bootstrap"],
    "group.id": cfg["group"],
    "client.id": f"eos-processor-{os.getpid()}",
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": int(cfg.get("session_timeout_ms", 6000)),
    "heartbeat.interval.ms": 1000,
    "max.poll.interval.ms": 120000,
    "fetch.wait.max.ms": 100,
})
consumer.subscribe([INPUT], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)


def rewind() -> None:
    """After an abort: continue from the group's committed offsets."""
    assignment = consumer.assignment()
    if not assignment:
        return
    to = {}
    for tp in consumer.committed(assignment, timeout=60):
        tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(tp)
        to[tp.partition] = tp.offset
    emit("rewound", to=to)


def retrying(what: str, fn):
    """Call fn, retrying retriable errors; raise Abort for abortable ones; exit 3 on fatal."""
    for attempt in range(30):
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                emit("fatal", op=what, code=err.code(), error=str(err))
                sys.exit(3)
            if err.txn_requires_abort():
                raise Abort(f"{what}: {err}") from e
            if err.retriable():
                emit("retry", op=what, attempt=attempt, code=err.code(), error=str(err))
                time.sleep(0.2)
                continue
            emit("fatal", op=what, code=err.code(), error=str(err), note="neither retriable nor abortable")
            sys.exit(3)
    emit("fatal", op=what, error="too many retries")
    sys.exit(3)


def commit_batch() -> None:
    txn, batch = state["txn"], state["batch"]
    per_partition: dict[int, int] = {}
    for p, _o in batch:
        per_partition[p] = per_partition.get(p, 0) + 1
    emit("produced", txn=txn, n=len(batch))
    remaining = producer.flush(60)
    if remaining or state["delivery_errors"]:
        raise Abort(f"flush: {remaining} undelivered, errors {state['delivery_errors'][:3]}")
    emit("flushed", txn=txn, n=len(batch), per_partition=per_partition)
    positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    retrying("send_offsets_to_transaction", lambda: producer.send_offsets_to_transaction(
        positions, consumer.consumer_group_metadata(), 60))
    offsets = {tp.partition: tp.offset for tp in positions}
    emit("offsets_sent", txn=txn, offsets=offsets)
    if PRE_COMMIT_PAUSE:
        time.sleep(PRE_COMMIT_PAUSE)
    emit("committing", txn=txn)
    retrying("commit_transaction", lambda: producer.commit_transaction(60))
    emit("committed", txn=txn, n=len(batch), offsets=offsets)
    state["in_txn"] = False
    state["batch"] = []
    state["txn"] += 1


def finished() -> bool:
    assignment = consumer.assignment()
    if {tp.partition for tp in assignment} != set(ENDS):
        return False
    committed = consumer.committed(assignment, timeout=30)
    return all(tp.offset >= ENDS[tp.partition] for tp in committed)


last_finished_check = 0.0
while True:
    try:
        msgs = consumer.consume(num_messages=max(1, BATCH - len(state["batch"])), timeout=0.2)
        for m in msgs:
            if m.error():
                if m.error().fatal():
                    emit("fatal", op="consume", code=m.error().code(), error=str(m.error()))
                    sys.exit(3)
                emit("consume_error", code=m.error().code(), error=str(m.error()))
                continue
            if not state["in_txn"]:
                producer.begin_transaction()
                state["in_txn"] = True
                state["delivery_errors"] = []
                emit("begin", txn=state["txn"])
            while True:
                try:
                    producer.produce(OUTPUT, key=m.key(), value=m.value() + b":out",
                                     partition=m.partition(), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            state["batch"].append((m.partition(), m.offset()))
            if RECORD_DELAY:
                time.sleep(RECORD_DELAY)
        if state["batch"] and (len(state["batch"]) >= BATCH or not msgs):
            commit_batch()
        elif not state["batch"] and not msgs and time.monotonic() - last_finished_check > 1.0:
            last_finished_check = time.monotonic()
            if finished():
                break
    except Abort as e:
        emit("abortable", error=str(e))
        abort_open(str(e))
        rewind()
    except KafkaException as e:
        err = e.args[0]
        if err.fatal():
            emit("fatal", op="loop", code=err.code(), error=str(err))
            sys.exit(3)
        if err.txn_requires_abort():
            emit("abortable", error=str(err))
            abort_open(str(err))
            rewind()
            continue
        raise

emit("done", committed={tp.partition: tp.offset
                        for tp in consumer.committed(consumer.assignment(), timeout=30)})
consumer.close()
producer.flush(30)
sys.exit(0)
