"""Transactions on a three-node cluster survive the loss of a broker (kill -9).

`__transaction_state` has three replicas in a cluster (transaction.state.log.replication.factor,
Kafka's default; min.isr 2) and the data topics have three replicas with min.insync.replicas 2.
When the broker leading a transactional id's `__transaction_state` partition dies, another
in-sync replica becomes leader, loads the id's state (including a transaction stuck between
PrepareCommit/PrepareAbort and its markers) and becomes the id's coordinator; when a data
partition's leader dies, the markers of a completing transaction follow the partition to its
new leader. What must hold, as in Kafka:

* ``test_transactions_survive_the_loss_of_their_coordinator``: a confluent-kafka transactional
  producer runs committed and aborted transactions (aborted records flushed to the log first),
  its coordinator's broker is killed right after an abort returned (its markers possibly not yet
  written), and the *same* producer object goes on (librdkafka finds the new coordinator). The new
  coordinator is another broker; later transactions commit; a read_committed consumer sees exactly
  the committed records, none of the aborted ones, no duplicates, per partition in produced order at
  their produced offsets (also from the new leaders of the dead broker's data partitions, which
  must know the aborted transactions from replication); every partition has exactly one marker per
  transaction; the last stable offset reaches the high watermark.
* ``test_a_transaction_open_when_its_coordinator_dies_is_completed_or_aborted``: a transaction is
  open (records flushed) when its coordinator dies; a new producer with the same transactional.id
  initialises against the new coordinator, which fences the old epoch and aborts the open
  transaction, then commits its own. read_committed sees only committed records, LSO == HW; the
  killed broker returns, takes its preferred leaderships back (it coordinates the id again, from
  its own replica of `__transaction_state`), and nothing visible changes; one more transaction
  through the returned coordinator commits.
* ``test_markers_reach_a_partition_whose_leader_moved``: the leader of a data partition of an
  open, flushed transaction is killed (the active controller, so that the failover takes longer
  than offsets.commit.timeout.ms, as any broker's death does with Kafka's default session timeout),
  then the transaction is committed: commit_transaction returns within 90 s (librdkafka retries
  EndTxn while the coordinator waits for the ISR to shrink), the coordinator (alive) retries the
  marker of that partition until its new leader takes it; read_committed sees the transaction's
  records there, LSO == HW, and the producer goes on.

The transaction that is completing when its coordinator dies may get a second marker on each of
its partitions (``Model.allow_extra_marker``); everything else is exactly one marker per
transaction per partition.
"""

from __future__ import annotations

import struct
import time

from confluent_kafka import KafkaException

from conftest import raw_request, unique_topic, wait_for
from test_cluster import bootstrap, start_cluster
from test_failover import FAILOVER, active_controller, node_by_id, survivors, wait_full_isr, wait_leader_other_than
from test_replication import create_replicated, partition_state
from test_transactions import (FENCED_CODES, assert_partition_lists, high_watermarks, produce_and_flush, read_topic,
                               stable_offsets, txn_producer, wait_stable)

TXN_STATE = "__transaction_state"
TXN_STATE_PARTITIONS = 6  # as start_cluster does for __consumer_offsets: fewer to create and load
PARTITIONS = 3  # test_transactions' helpers (high_watermarks, wait_stable) cover partitions 0-2
PARTS = range(PARTITIONS)
CLUSTER = {**FAILOVER, "transaction.state.log.num.partitions": str(TXN_STATE_PARTITIONS)}
FIND_COORDINATOR = 10
KEY_TYPE_TRANSACTION = 1


# ----------------------------------------------------------------------------- helpers


def java_hash_partition(key: str, partitions: int) -> int:
    """Kafka's partitionFor: Utils.abs(key.hashCode()) % partitions."""
    h = 0
    for unit in struct.unpack(f"<{len(key.encode('utf-16-le')) // 2}H", key.encode("utf-16-le")):
        h = (31 * h + unit) & 0xFFFFFFFF
    if h >= 2**31:
        h -= 2**32
    return (0 if h == -(2**31) else abs(h)) % partitions


def txn_coordinator(node, transactional_id: str) -> int:
    """The coordinator `node` names for `transactional_id`: FindCoordinator v1 with
    key_type TRANSACTION (confluent-kafka's AdminClient cannot ask for it). Raises on an
    error answer (COORDINATOR_NOT_AVAILABLE while __transaction_state has no leader)."""
    key = transactional_id.encode()
    body = struct.pack(">h", len(key)) + key + struct.pack(">b", KEY_TYPE_TRANSACTION)
    resp = raw_request("127.0.0.1", node.port, FIND_COORDINATOR, 1, body, timeout=10)
    _throttle, error, msg_len = struct.unpack(">ihh", resp[:8])
    off = 8 + max(msg_len, 0)
    (node_id,) = struct.unpack(">i", resp[off:off + 4])
    if error != 0:
        raise AssertionError(f"FindCoordinator(TRANSACTION, {transactional_id}) from {node.name}: error {error}")
    return node_id


def wait_txn_coordinator_other_than(nodes, transactional_id: str, old: int, timeout: float = 60) -> int:
    """The id's new coordinator, once every surviving broker names the same one (not `old`)."""
    seen: list = []

    def moved():
        answers = {n.name: txn_coordinator(n, transactional_id) for n in survivors(nodes, old)}
        seen.append(answers)
        ids = set(answers.values())
        if len(ids) == 1 and not ids & {old, -1}:
            return ids.pop()
        return None
    return wait_for(moved, timeout, f"a new coordinator of {transactional_id} (was {old}; seen {seen[-2:]})",
                    interval=0.25)


def txn_state_leader(node, transactional_id: str) -> int:
    return partition_state(node, TXN_STATE)[java_hash_partition(transactional_id, TXN_STATE_PARTITIONS)][0]


def setup(ottla_factory, extra: dict | None = None):
    """A three-node cluster, a 3-partition RF 3 topic with everything in sync, and the
    transaction state topic (created by the first FindCoordinator) fully in sync too."""
    nodes = start_cluster(ottla_factory, extra={**CLUSTER, **(extra or {})})
    topic = unique_topic("txn-failover")
    create_replicated(nodes[0], topic, PARTITIONS, min_insync=2)
    wait_full_isr(nodes[0], topic, PARTITIONS)
    return nodes, topic


def init_and_find_coordinator(nodes, producer, transactional_id: str) -> int:
    producer.init_transactions(90)
    wait_full_isr(nodes[0], TXN_STATE, TXN_STATE_PARTITIONS, timeout=90)
    coordinator = wait_for(lambda: (c := {txn_coordinator(n, transactional_id) for n in nodes}) and len(c) == 1
                           and c.pop(), 30, "every broker to name the same transaction coordinator")
    assert coordinator in (1, 2, 3), coordinator
    # The coordinator is the leader of the id's partition of __transaction_state (Kafka's partitionFor).
    assert coordinator == txn_state_leader(nodes[0], transactional_id), (
        coordinator, partition_state(nodes[0], TXN_STATE))
    return coordinator


class Model:
    """What each partition must hold: every record at its produced offset, one marker per
    transaction that wrote to the partition."""

    def __init__(self):
        self.committed = {p: [] for p in PARTS}   # (offset, key, value)
        self.every = {p: [] for p in PARTS}
        self.next_offset = {p: 0 for p in PARTS}
        self.layout: list[str] = []
        self.txns = {"commit": 0, "abort": 0}
        self.extra_marker_allowed = False
        self.extra_markers: list[str] = []

    def allow_extra_marker(self) -> None:
        """The next transaction may start one offset later on each partition: a second
        marker of the transaction that was completing when its coordinator died. Kafka
        writes one too when its coordinator dies between the markers and the Complete
        record (the next coordinator loads PrepareCommit/PrepareAbort and sends them again);
        readers skip it like any control record."""
        self.extra_marker_allowed = True

    def record(self, name: str, recs, offsets, commit: bool) -> None:
        for p in PARTS:
            got = [o for (pp, _k, _v), o in zip(recs, offsets) if pp == p]
            want = list(range(self.next_offset[p], self.next_offset[p] + len(got)))
            if got and self.extra_marker_allowed and got == [o + 1 for o in want]:
                self.extra_markers.append(f"{name} p{p}: starts at {got[0]}, one past the expected {want[0]}")
                want = got
            if got != want:
                self.layout.append(f"{name} p{p}: offsets {got}, expected {want}")
            if got:
                self.next_offset[p] = got[-1] + 2  # + the transaction's marker
        self.extra_marker_allowed = False
        for (p, k, v), o in zip(recs, offsets):
            self.every[p].append((o, k, v))
            if commit:
                self.committed[p].append((o, k, v))
        self.txns["commit" if commit else "abort"] += 1

    def check(self, bs: str, topic: str, what: str) -> None:
        assert not self.layout, ("offsets of transactional records do not leave exactly one offset per "
                                 "partition per transaction for its marker:\n" + "\n".join(self.layout[:10]))
        hw = wait_stable(bs, topic, timeout=90, what=what)
        assert hw == self.next_offset, (
            f"{what}: high watermarks {hw}, expected {self.next_offset} (every record plus one marker per "
            f"transaction per partition; {self.txns})")
        rc = read_topic(bs, topic, "read_committed", ends=hw)
        aborted_seen = [v for vs in rc.values() for (_o, _k, v) in vs if "/abort" in v]
        assert not aborted_seen, f"{what}: read_committed hands out aborted records: {aborted_seen[:5]}"
        assert_partition_lists(rc, self.committed, f"{what}: read_committed consumer (committed records only, "
                                                   f"each once, in order, at its produced offset)")
        ru = read_topic(bs, topic, "read_uncommitted", ends=hw)
        assert_partition_lists(ru, self.every, f"{what}: read_uncommitted consumer (every record in the log)")


def txn_records(tag: str, t: int, commit: bool, n: int = 6) -> list[tuple[int, str, str]]:
    """`n` records spread over every partition."""
    kind = "commit" if commit else "abort"
    return [((t + j) % PARTITIONS, f"{tag}-t{t:02d}-r{j}", f"{tag}/txn{t:02d}/rec{j}/{kind}") for j in range(n)]


def run_txn(producer, topic: str, model: Model, tag: str, t: int, commit: bool) -> None:
    recs = txn_records(tag, t, commit)
    producer.begin_transaction()
    offsets = produce_and_flush(producer, topic, recs, f"{tag} transaction {t}")
    if commit:
        producer.commit_transaction(90)
    else:
        producer.abort_transaction(90)
    model.record(f"{tag} txn {t}", recs, offsets, commit)


# ----------------------------------------------------------------------------- tests


def test_transactions_survive_the_loss_of_their_coordinator(ottla_factory):
    nodes, topic = setup(ottla_factory)
    tid = unique_topic("txn-coord-loss")
    errors: list = []
    prod = txn_producer(bootstrap(nodes), tid, error_cb=errors.append,
                        **{"topic.metadata.refresh.interval.ms": 1000})
    coordinator = init_and_find_coordinator(nodes, prod, tid)
    model = Model()

    # Before: 9 transactions, every third aborted (the last one, t=8, is an abort).
    for t in range(9):
        run_txn(prod, topic, model, "before", t, commit=t % 3 != 2)
    # Killed right after abort_transaction returned: the PrepareAbort is durable, its markers may
    # still be on their way; the next coordinator has to complete them from its replica.
    led_by_victim = [p for p, s in partition_state(nodes[0], topic).items() if s[0] == coordinator]
    node_by_id(nodes, coordinator).kill9()
    others = survivors(nodes, coordinator)
    model.allow_extra_marker()

    # The same producer object goes on: librdkafka sees the coordinator's connection fail, asks
    # FindCoordinator again until the new leader of the id's __transaction_state partition is named,
    # and follows the moved data partitions' leaders. It does not become fatal (asserted below).
    for t in range(9, 18):
        run_txn(prod, topic, model, "after", t, commit=t % 3 != 2)
    fatal = [e for e in errors if e.fatal()]
    assert not fatal, f"the transactional producer hit fatal errors across the failover: {fatal}"

    new_coordinator = wait_txn_coordinator_other_than(nodes, tid, coordinator)
    assert new_coordinator in {1, 2, 3} - {coordinator}, (coordinator, new_coordinator)
    assert txn_state_leader(others[0], tid) == new_coordinator
    for p in led_by_victim:
        assert partition_state(others[0], topic)[p][0] != coordinator, f"{topic}-{p} still led by the dead broker"
    print(f"coordinator {coordinator} killed (it led {topic} partitions {led_by_victim}); "
          f"new coordinator {new_coordinator}; transactions {model.txns}; "
          f"second markers of the transaction completing at the kill: {model.extra_markers}")
    model.check(bootstrap(others), topic, "after the coordinator's broker was killed")
    del prod  # destroy the client now, not after the brokers are stopped at teardown


def test_a_transaction_open_when_its_coordinator_dies_is_completed_or_aborted(ottla_factory):
    # Leadership returns to a restarted preferred replica within seconds (Kafka checks every 300 s).
    nodes, topic = setup(ottla_factory, extra={"leader.imbalance.check.interval.seconds": "1"})
    tid = unique_topic("txn-open-at-loss")
    p1 = txn_producer(bootstrap(nodes), tid)
    coordinator = init_and_find_coordinator(nodes, p1, tid)
    model = Model()
    run_txn(p1, topic, model, "first", 0, commit=True)

    # A transaction is open, its records in the log (on every in-sync replica), when the
    # coordinator's broker dies.
    open_recs = txn_records("open", 1, commit=False)
    p1.begin_transaction()
    open_offsets = produce_and_flush(p1, topic, open_recs, "the transaction open at the kill")
    node_by_id(nodes, coordinator).kill9()
    others = survivors(nodes, coordinator)
    new_coordinator = wait_txn_coordinator_other_than(nodes, tid, coordinator)
    assert new_coordinator in {1, 2, 3} - {coordinator}

    # While it is open, read_committed stops before it.
    lso = stable_offsets(bootstrap(others), topic)
    assert lso == {p: min(o for (pp, _k, _v), o in zip(open_recs, open_offsets) if pp == p) for p in PARTS}, (
        f"with the transaction still open the last stable offsets {lso} should be its first offsets")

    # A new instance with the same transactional.id: init_transactions reaches the new
    # coordinator, which bumps the epoch (fencing p1) and aborts the open transaction first.
    p2 = txn_producer(bootstrap(nodes), tid, **{"topic.metadata.refresh.interval.ms": 1000})
    p2.init_transactions(120)
    model.record("open txn (aborted by the new instance)", open_recs, open_offsets, commit=False)
    run_txn(p2, topic, model, "second", 2, commit=True)
    model.check(bootstrap(others), topic, "after the new instance's init_transactions and commit")

    # The fenced instance cannot commit its transaction.
    p1_commit = None
    started = time.monotonic()
    try:
        p1.commit_transaction(30)
    except KafkaException as e:
        p1_commit = e.args[0]
    assert p1_commit is not None, "the fenced instance's commit_transaction succeeded"
    assert p1_commit.fatal() or p1_commit.code() in FENCED_CODES, (
        f"the fenced instance's commit failed with a non-fatal, non-fencing error: {p1_commit.str()} "
        f"(code {p1_commit.code()})")
    print(f"the fenced instance's commit failed after {time.monotonic() - started:.1f} s: {p1_commit.str()} "
          f"(code {p1_commit.code()}, fatal {p1_commit.fatal()})")
    model.check(bootstrap(others), topic, "after the fenced instance tried to commit")

    # The killed broker returns, catches up, and takes back its preferred leaderships, among
    # them the id's __transaction_state partition: it coordinates the id again, loaded from
    # its own replica. Nothing visible changes.
    victim = node_by_id(nodes, coordinator)
    victim.start(wait=False)
    victim.wait_ready(90)
    wait_full_isr(others[0], topic, PARTITIONS, timeout=90)
    wait_full_isr(others[0], TXN_STATE, TXN_STATE_PARTITIONS, timeout=90)
    wait_for(lambda: {txn_coordinator(n, tid) for n in nodes} == {coordinator}, 60,
             f"broker {coordinator} to coordinate {tid} again (preferred leader rebalance)")
    model.check(bootstrap(nodes), topic, "after the killed broker returned and took its leaderships back")
    model.allow_extra_marker()  # the returning coordinator may send the last COMMIT markers again
    run_txn(p2, topic, model, "third", 3, commit=True)
    model.check(bootstrap(nodes), topic, "after a transaction through the returned coordinator")
    print(f"coordinator {coordinator} killed, then {new_coordinator}, then {coordinator} again; "
          f"second markers: {model.extra_markers}")
    del p1, p2


def test_markers_reach_a_partition_whose_leader_moved(ottla_factory):
    nodes, topic = setup(ottla_factory)
    # The victim is the active controller, leading one data partition: its partitions move only
    # after a new controller is elected and its session runs out (about 7 s here), longer than
    # offsets.commit.timeout.ms (5 s), the coordinator's wait for its PrepareCommit to reach the
    # ISR of its __transaction_state partition (the victim is in it) -- as the death of any broker
    # is with Kafka's default 9 s broker.session.timeout.ms. Kafka answers that EndTxn with a
    # retriable error, librdkafka retries it, and the commit completes once the ISR has shrunk.
    # The transactional id is picked so that its coordinator is another broker (alive throughout).
    controller = active_controller(nodes[0])
    wait_for(lambda: txn_coordinator(nodes[0], "create-the-transaction-state-topic") in (1, 2, 3), 60,
             f"{TXN_STATE} to be created and led")
    wait_full_isr(nodes[0], TXN_STATE, TXN_STATE_PARTITIONS, timeout=90)
    txn_leaders = partition_state(nodes[0], TXN_STATE)
    base = unique_topic("txn-marker-moved")
    tid = next(t for t in (f"{base}-{i}" for i in range(1000))
               if txn_leaders[java_hash_partition(t, TXN_STATE_PARTITIONS)][0] != controller)
    errors: list = []
    prod = txn_producer(bootstrap(nodes), tid, error_cb=errors.append,
                        **{"topic.metadata.refresh.interval.ms": 1000})
    coordinator = init_and_find_coordinator(nodes, prod, tid)
    assert coordinator != controller
    model = Model()
    run_txn(prod, topic, model, "first", 0, commit=True)

    state = partition_state(nodes[0], topic)
    partition = next((p for p in PARTS if state[p][0] == controller), None)
    assert partition is not None, f"the active controller {controller} leads no partition of {topic}: {state}"
    victim_id = controller

    recs = txn_records("moved", 1, commit=True)
    prod.begin_transaction()
    offsets = produce_and_flush(prod, topic, recs, "the transaction whose partition leader dies")
    node_by_id(nodes, victim_id).kill9()
    others = survivors(nodes, victim_id)
    # EndTxn goes to the live coordinator: PrepareCommit is durable once the dead broker has
    # left the ISR of the id's __transaction_state partition; the marker for `partition` fails
    # against the dead leader and is retried until the new leader takes it.
    started = time.monotonic()
    try:
        prod.commit_transaction(90)
    except KafkaException as e:
        err = e.args[0]
        raise AssertionError(
            f"commit_transaction did not complete within 90 s after the leader of {topic}-{partition} "
            f"(broker {victim_id}, the active controller) died: {err.str()} (code {err.code()}, retriable "
            f"{err.retriable()}, fatal {err.fatal()}); now high watermarks "
            f"{high_watermarks(bootstrap(others), topic)}, last stable offsets "
            f"{stable_offsets(bootstrap(others), topic)} (the transaction's records end at "
            f"{ {p: max(o for (pp, _k, _v), o in zip(recs, offsets) if pp == p) for p in PARTS} }: no marker "
            f"written anywhere means the coordinator never sent them); coordinator {coordinator}") from None
    print(f"commit_transaction took {time.monotonic() - started:.1f} s")
    model.record("moved txn 1", recs, offsets, commit=True)
    new_leader = wait_leader_other_than(nodes, topic, partition, victim_id)
    assert new_leader != victim_id
    assert {txn_coordinator(n, tid) for n in others} == {coordinator}, "the coordinator did not move"

    hw = wait_stable(bootstrap(others), topic, timeout=90,
                     what=f"the COMMIT marker to reach {topic}-{partition} at its new leader {new_leader}")
    assert hw[partition] == model.next_offset[partition], (hw, model.next_offset)
    run_txn(prod, topic, model, "after", 2, commit=True)
    fatal = [e for e in errors if e.fatal()]
    assert not fatal, f"the transactional producer hit fatal errors: {fatal}"
    model.check(bootstrap(others), topic, f"after {topic}-{partition}'s leader {victim_id} was killed mid-commit")
    assert high_watermarks(bootstrap(others), topic) == model.next_offset
    del prod
