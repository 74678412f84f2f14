"""Consumer groups with confluent-kafka (librdkafka) against a real ottla process.

Issue 3, "Compatibility tests":

* Three consumers in one group, each in its own OS process, on a 6-partition topic holding
  60,000 records: together they receive every record exactly once and each partition is
  owned by one member at a time; with librdkafka's default assignors ("range,roundrobin", the
  group must pick "range") and with ``partition.assignment.strategy=cooperative-sticky``. The
  members start one after another while records are flowing, so partitions move between
  members during consumption (real rebalances, not one initial assignment).
* One of three members is killed with SIGKILL (no LeaveGroup): its partitions move to the
  survivors within ``session.timeout.ms`` plus one rebalance, they resume at the offsets the
  dead member committed, and no record committed as consumed is delivered again to a member
  that committed it. The broker logs the expiry ("... has failed, removing it from the group").
* Commit, stop all consumers, restart the broker (SIGTERM, and also kill -9): a new consumer
  resumes at the committed offsets (``committed()`` with metadata, and the first offsets it
  is handed).

The members are small Python programs (``WORKER`` below) run with ``sys.executable``; each
writes one JSON event per line to its own log file (assignments, revocations, delivered
(partition, offset) pairs, commits before and after they are acknowledged), line-buffered so
the log of a member killed with SIGKILL holds everything it did before it died. Each member
commits synchronously after every batch it processes and again, for the partitions being
taken away, in its revocation callback (the usual at-least-once pattern, which gives exactly
once when members only leave through a rebalance).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition

from conftest import NODE_ID, ck_admin, ck_create_topic, ck_group_offsets, unique_topic, wait_for

PARTITIONS = 6
Failed = pytest.fail.Exception  # not an Exception subclass: wait_for does not swallow it
RECORDS = int(os.environ.get("OTTLA_GROUP_RECORDS", "60000"))
KILL_RECORDS = int(os.environ.get("OTTLA_GROUP_KILL_RECORDS", "18000"))
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 1000
# After the session timeout expires, the survivors learn about the rebalance with their next
# heartbeat (HEARTBEAT_MS) and then rejoin and sync: "one rebalance". Allowed for that:
REBALANCE_ALLOWANCE_S = 5.0

WORKER = r'''
import json, os, sys, time
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

cfg = json.loads(sys.argv[1])
out = open(cfg["log"], "a", buffering=1)   # line-buffered: every event is write()n at once


def emit(ev, **kw):
    kw["ev"] = ev
    kw["t"] = time.time()
    out.write(json.dumps(kw) + "\n")


topic = cfg["topic"]
owned = set()
pending = {}  # partition -> next offset to commit (consumed, not yet committed)
NO_RETRY = {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION}


def commit(parts, why, retries=20):
    offs = {p: pending[p] for p in sorted(parts) if p in pending}
    if not offs:
        return True
    for attempt in range(retries):
        emit("committing", offsets=offs, why=why, attempt=attempt)
        try:
            res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offs.items()],
                           asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            emit("commit_error", offsets=offs, why=why, attempt=attempt, code=err.code(),
                 error=str(err))
            if err.code() in NO_RETRY or why == "revoke" and attempt >= 2:
                return False
            time.sleep(0.2)
            continue
        bad = [[tp.partition, str(tp.error)] for tp in res if tp.error is not None]
        if bad:
            emit("commit_error", offsets=offs, why=why, attempt=attempt, code=None, error=bad)
            time.sleep(0.2)
            continue
        emit("committed", offsets=offs, why=why)
        for p, o in offs.items():
            if pending.get(p) == o:
                del pending[p]
        return True
    return False


def on_assign(consumer, parts):
    ps = sorted(tp.partition for tp in parts)
    owned.update(ps)
    emit("assign", parts=ps, owned=sorted(owned))


def on_revoke(consumer, parts):
    ps = sorted(tp.partition for tp in parts)
    ok = commit([p for p in ps if p in pending], "revoke")
    for p in ps:
        pending.pop(p, None)
        owned.discard(p)
    emit("revoke", parts=ps, owned=sorted(owned), commit_ok=ok)


def on_lost(consumer, parts):
    ps = sorted(tp.partition for tp in parts)
    for p in ps:
        pending.pop(p, None)
        owned.discard(p)
    emit("lost", parts=ps, owned=sorted(owned))


conf = {
    "bootstrap.servers": cfg["bootstrap"],
    "group.id": cfg["group"],
    "client.id": cfg["name"],
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": cfg["session_timeout_ms"],
    "heartbeat.interval.ms": cfg["heartbeat_ms"],
    "max.poll.interval.ms": 60000,
    "fetch.wait.max.ms": 100,
}
if cfg.get("strategy"):
    conf["partition.assignment.strategy"] = cfg["strategy"]
c = Consumer(conf)
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
emit("start", pid=os.getpid())
rate = float(cfg["rate"])
while not os.path.exists(cfg["stop"]):
    msgs = c.consume(num_messages=cfg["batch"], timeout=0.2)
    recs = []
    for m in msgs:
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                emit("error", code=m.error().code(), error=str(m.error()))
            continue
        p, o = m.partition(), m.offset()
        if p not in owned:
            emit("foreign", p=p, o=o, owned=sorted(owned))
        recs.append([p, o])
        pending[p] = o + 1
    if recs:
        emit("recs", recs=recs)
    if pending:  # this batch, or an earlier one whose commit failed
        commit(list(pending), "batch")
    if recs:
        time.sleep(len(recs) / rate)
commit(list(pending), "close")
c.close()
emit("closed")
'''


# ----------------------------------------------------------------------------- members


class Worker:
    """One consumer-group member in its own process."""

    def __init__(self, tmp_path, name: str, cfg: dict):
        self.name = name
        self.log = tmp_path / f"{name}.events.jsonl"
        self.stderr_path = tmp_path / f"{name}.stderr"
        self.stop_file = tmp_path / f"{name}.stop"
        script = tmp_path / "group_worker.py"
        if not script.exists():
            script.write_text(WORKER)
        full = dict(cfg, name=name, log=str(self.log), stop=str(self.stop_file))
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(script), json.dumps(full)],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.killed_at: float | None = None

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
                break  # a half-written last line (killed member)
        return out

    def owned(self) -> set[int]:
        self.check_alive()
        owned: set[int] = set()
        for e in self.events():
            if "owned" in e and e["ev"] in ("assign", "revoke", "lost"):
                owned = set(e["owned"])
        return owned

    def delivered(self) -> int:
        self.check_alive()
        return sum(len(e["recs"]) for e in self.events() if e["ev"] == "recs")

    def check_alive(self) -> None:
        """A member that exited on its own (crashed) fails the test at once, with its stderr."""
        if self.killed_at is None and not self.stop_file.exists() and self.proc.poll() is not None:
            raise Failed(f"{self.name} exited with {self.proc.returncode}:\n{self.stderr()}")

    def kill9(self) -> None:
        self.killed_at = time.time()
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        self.stop_file.touch()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"{self.name} did not stop within {timeout}s; stderr:\n{self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def ensure_dead(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.ensure_dead()


def start_worker(workers, tmp_path, name, broker, topic, group, strategy=None, rate=4000, batch=200):
    cfg = dict(bootstrap=broker.bootstrap, topic=topic, group=group, strategy=strategy, rate=rate,
               batch=batch, session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_ms=HEARTBEAT_MS)
    w = Worker(tmp_path, name, cfg)
    workers.append(w)
    return w


# ----------------------------------------------------------------------------- helpers


def produce_spread(bootstrap: str, topic: str, partitions: int, total: int,
                   ends_before: dict[int, int] | None = None) -> dict[int, int]:
    """``total`` small records, record i to partition i % partitions; returns the end offsets,
    checked against ``ends_before`` (an empty topic if None) plus what was sent, so a lost or
    duplicated record fails here instead of being taken from the broker as the truth."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "acks": "all", "compression.type": "lz4"})
    errors: list[str] = []
    acked = [0]

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[0] += 1

    for i in range(total):
        while True:
            try:
                p.produce(topic, value=b"value-%d" % i, key=b"k%d" % i, partition=i % partitions,
                          on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(120) == 0, "records still undelivered after 120 s"
    assert not errors, f"{len(errors)} deliveries failed: {errors[:5]}"
    assert acked[0] == total
    before = {q: 0 for q in range(partitions)} if ends_before is None else ends_before
    expected = {q: before[q] + len(range(q, total, partitions)) for q in range(partitions)}
    ends = end_offsets(bootstrap, topic, partitions)
    assert ends == expected, f"end offsets {ends}, expected {expected} from what was sent"
    return ends


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-tests-watermarks"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    finally:
        c.close()


def describe_group(bootstrap: str, group: str):
    admin = ck_admin(bootstrap)
    return admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60)


def wait_all_delivered(ws: list[Worker], total: int, timeout: float) -> None:
    def done():
        seen = set()
        for w in ws:
            for e in w.events():
                if e["ev"] == "recs":
                    seen.update(map(tuple, e["recs"]))
        return len(seen) >= total

    def state():
        return {w.name: (w.delivered(), sorted(w.owned()), w.proc.poll()) for w in ws}

    try:
        wait_for(done, timeout, f"all {total} records delivered", interval=0.3)
    except AssertionError as e:
        raise AssertionError(f"{e}; members (delivered, owned, exit code): {state()}\n"
                             + "\n".join(f"--- {w.name} stderr\n{w.stderr()}" for w in ws)) from None


def wait_balanced(ws: list[Worker], per_member: int, timeout: float) -> dict[str, set[int]]:
    """Until every member owns ``per_member`` partitions and together they own all of them."""
    def balanced():
        owned = {w.name: w.owned() for w in ws}
        union = set().union(*owned.values())
        if all(len(o) == per_member for o in owned.values()) and union == set(range(PARTITIONS)) \
                and sum(map(len, owned.values())) == PARTITIONS:
            return owned
        return None

    try:
        return wait_for(balanced, timeout, f"each member to own {per_member} partitions", interval=0.3)
    except AssertionError as e:
        raise AssertionError(f"{e}; owned now: { {w.name: sorted(w.owned()) for w in ws} }") from None


def ownership_problems(ws: list[Worker]) -> list[str]:
    """Each partition owned by at most one member at any time (from assign/revoke/lost events,
    one clock: all members run on this machine), and no record handed to a member for a
    partition it did not own."""
    problems = []
    intervals: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)
    for w in ws:
        evs = w.events()
        open_since: dict[int, float] = {}
        end_of_life = w.killed_at
        for e in evs:
            if e["ev"] == "assign":
                for p in e["parts"]:
                    if p in open_since:
                        problems.append(f"{w.name}: assigned partition {p} it already owns")
                    open_since.setdefault(p, e["t"])
            elif e["ev"] in ("revoke", "lost"):
                for p in e["parts"]:
                    if p not in open_since:
                        problems.append(f"{w.name}: {e['ev']} of partition {p} it does not own")
                        continue
                    intervals[p].append((open_since.pop(p), e["t"], w.name))
            elif e["ev"] == "foreign":
                problems.append(f"{w.name}: got {e['p']}@{e['o']} while owning {e['owned']}")
            elif e["ev"] == "closed" and end_of_life is None:
                end_of_life = e["t"]
        if end_of_life is None:
            end_of_life = float("inf")
        for p, since in open_since.items():
            intervals[p].append((since, end_of_life, w.name))
    for p, ivs in sorted(intervals.items()):
        ivs.sort()
        for (s1, e1, n1), (s2, e2, n2) in zip(ivs, ivs[1:]):
            if s2 < e1:
                problems.append(f"partition {p}: owned by {n1} until {e1:.3f} and by {n2} from {s2:.3f} "
                                f"({e1 - s2:.3f} s overlap)")
    return problems


def deliveries(ws: list[Worker]) -> tuple[collections.Counter, dict[tuple[int, int], list[str]]]:
    count: collections.Counter = collections.Counter()
    who: dict[tuple[int, int], list[str]] = collections.defaultdict(list)
    for w in ws:
        for e in w.events():
            if e["ev"] == "recs":
                for p, o in e["recs"]:
                    count[(p, o)] += 1
                    who[(p, o)].append(w.name)
    return count, who


def commit_errors(ws: list[Worker]) -> list[str]:
    return [f"{w.name}: {e['why']} commit of {e['offsets']}: {e['error']}"
            for w in ws for e in w.events() if e["ev"] == "commit_error"]


def recommitted_problems(ws: list[Worker]) -> list[str]:
    """No record committed as consumed is delivered again to the member that committed it."""
    problems = []
    for w in ws:
        committed: dict[int, int] = {}
        for e in w.events():
            if e["ev"] == "committed":
                for p, o in e["offsets"].items():
                    committed[int(p)] = max(committed.get(int(p), 0), o)
            elif e["ev"] == "recs":
                for p, o in e["recs"]:
                    if o < committed.get(p, 0):
                        problems.append(f"{w.name}: got {p}@{o} again after committing offset "
                                        f"{committed[p]} for partition {p}")
    return problems[:20]


def check_exactly_once(ws: list[Worker], ends: dict[int, int]) -> None:
    count, who = deliveries(ws)
    expected = {(p, o) for p, n in ends.items() for o in range(n)}
    missing = sorted(expected - set(count))
    extra = sorted(set(count) - expected)
    dups = sorted(k for k, n in count.items() if n > 1)
    problems = []
    if missing:
        problems.append(f"{len(missing)} records never delivered, first: {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} deliveries of offsets beyond the log end: {extra[:10]}")
    if dups:
        problems.append(f"{len(dups)} records delivered more than once, first: "
                        + ", ".join(f"{p}@{o} to {who[(p, o)]}" for p, o in dups[:10]))
    if problems:
        errs = commit_errors(ws)
        if errs:
            problems.append(f"{len(errs)} failed commits, first: {errs[:8]}")
    assert not problems, "\n".join(problems)


def rebalance_lines(broker) -> list[str]:
    return [l for l in broker.stderr_since_start().splitlines()
            if re.search(r"rebalanc|Stabilized|has failed", l, re.I)]


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("strategy,assignor", [(None, "range"), ("cooperative-sticky", "cooperative-sticky")],
                         ids=["default-range", "cooperative-sticky"])
def test_three_members_exactly_once(ottla, workers, tmp_path, strategy, assignor):
    """Members join one after another while records flow; every record is delivered exactly
    once, each partition has one owner at a time, the group ends balanced 2/2/2 and Stable,
    with the protocol the members asked for, and commits reach the end of every partition."""
    topic = unique_topic("groups-ck")
    group = f"ck-{assignor}-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=PARTITIONS)
    ends = produce_spread(ottla.bootstrap, topic, PARTITIONS, RECORDS)

    kw = dict(broker=ottla, topic=topic, group=group, strategy=strategy, rate=4000)
    w0 = start_worker(workers, tmp_path, "w0", **kw)
    wait_for(lambda: w0.delivered() >= RECORDS // 12, 60, "w0 to consume its first records", interval=0.2)
    w1 = start_worker(workers, tmp_path, "w1", **kw)
    wait_for(lambda: w1.delivered() >= RECORDS // 30, 60, "w1 to get partitions and consume", interval=0.2)
    w2 = start_worker(workers, tmp_path, "w2", **kw)
    ws = [w0, w1, w2]

    wait_all_delivered(ws, RECORDS, timeout=120)
    owned = wait_balanced(ws, 2, timeout=45)

    # The first member was alone in the group at first: it owned every partition.
    first = next(e for e in w0.events() if e["ev"] == "assign")
    assert first["parts"] == list(range(PARTITIONS)), f"w0's first assignment: {first}"

    # Admin view while the members are active (what kafka-consumer-groups --describe shows).
    def stable_description():
        d = describe_group(ottla.bootstrap, group)
        return d if d.state == ConsumerGroupState.STABLE and len(d.members) == 3 else None

    desc = wait_for(stable_description, 30, "describe_consumer_groups to show 3 members, Stable")
    assert desc.partition_assignor == assignor, desc.partition_assignor
    assert not desc.is_simple_consumer_group
    assert desc.coordinator.id == NODE_ID, desc.coordinator
    assert (desc.coordinator.host, desc.coordinator.port) == (ottla.host, ottla.port), desc.coordinator
    by_client = {m.client_id: m for m in desc.members}
    assert set(by_client) == {"w0", "w1", "w2"}, [(m.client_id, m.member_id) for m in desc.members]
    assert len({m.member_id for m in desc.members}) == 3
    for name, parts in owned.items():
        got = {(tp.topic, tp.partition) for tp in by_client[name].assignment.topic_partitions}
        assert got == {(topic, p) for p in parts}, f"{name}: broker says {sorted(got)}, member owns {parts}"
    admin = ck_admin(ottla.bootstrap)  # keep a reference: the handle must outlive the futures
    listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}, request_timeout=30).result(timeout=60)
    assert not listed.errors, listed.errors
    assert group in {g.group_id for g in listed.valid}, \
        (f"list_consumer_groups(states=STABLE): {[(g.group_id, g.state) for g in listed.valid]}; without a filter: "
         f"{[(g.group_id, g.state) for g in admin.list_consumer_groups(request_timeout=30).result(timeout=60).valid]}")
    assert {g.group_id: g.state for g in listed.valid}[group] == ConsumerGroupState.STABLE
    listed_empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}, request_timeout=30).result(timeout=60)
    assert group not in {g.group_id for g in listed_empty.valid}

    for w in ws:
        rc = w.stop()
        assert rc == 0, f"{w.name} exited with {rc}:\n{w.stderr()}"
        assert w.events()[-1]["ev"] == "closed"

    check_exactly_once(ws, ends)
    problems = ownership_problems(ws)
    assert not problems, "\n".join(problems)
    if strategy == "cooperative-sticky":
        # Incremental protocol: a member only gives up partitions that move to another member.
        for w in ws:
            evs = w.events()
            for i, e in enumerate(evs):
                if e["ev"] != "revoke":
                    continue
                back = {p for later in evs[i + 1:] if later["ev"] == "assign" for p in later["parts"]}
                assert not (set(e["parts"]) & back), \
                    f"{w.name} revoked {e['parts']} and got {sorted(set(e['parts']) & back)} back"
    assert ck_group_offsets(ottla.bootstrap, group) == ends
    d = wait_for(lambda: (lambda d: d if d.state == ConsumerGroupState.EMPTY else None)(
        describe_group(ottla.bootstrap, group)), 15, "the group to be Empty after all members left")
    assert d.members == [], d.members
    lines = rebalance_lines(ottla)
    assert any("Stabilized" in l for l in lines), f"no 'Stabilized group' line in broker stderr: {lines[-10:]}"
    assert any("Preparing to rebalance" in l for l in lines), \
        f"no 'Preparing to rebalance group' line in broker stderr: {lines[-10:]}"
    # Emptied, the group keeps its protocol type ("consumer"): it is not a simple consumer group.
    assert not d.is_simple_consumer_group, "the emptied group lost its protocol type (reported as simple)"


@pytest.mark.parametrize("strategy", [None, "cooperative-sticky"], ids=["default-range", "cooperative-sticky"])
def test_sigkill_member_partitions_move(ottla, workers, tmp_path, strategy):
    """A member dies without leaving: its partitions move to the two survivors within the
    session timeout plus one rebalance, the new owners resume at the dead member's last
    commit, and nothing a member committed is ever handed to it again."""
    topic = unique_topic("groups-kill")
    group = f"ck-kill-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=PARTITIONS)
    ends = produce_spread(ottla.bootstrap, topic, PARTITIONS, KILL_RECORDS)

    kw = dict(broker=ottla, topic=topic, group=group, strategy=strategy, rate=1000, batch=50)
    ws = [start_worker(workers, tmp_path, f"w{i}", **kw) for i in range(3)]
    wait_balanced(ws, 2, timeout=60)
    wait_for(lambda: all(w.delivered() >= 200 for w in ws), 30, "every member to consume", interval=0.2)
    owned = wait_balanced(ws, 2, timeout=5)
    desc = describe_group(ottla.bootstrap, group)
    victim = ws[0]
    victim_parts = sorted(owned[victim.name])
    victim_member = next(m.member_id for m in desc.members if m.client_id == victim.name)

    victim.kill9()
    survivors = ws[1:]

    def moved():
        union = set().union(*(w.owned() for w in survivors))
        return time.time() if union == set(range(PARTITIONS)) else None

    t_moved = wait_for(moved, 60, "the survivors to own every partition", interval=0.1)
    took = t_moved - victim.killed_at
    print(f"partitions {victim_parts} of the killed member moved to the survivors {took:.2f} s after the kill")
    limit = SESSION_TIMEOUT_MS / 1000 + REBALANCE_ALLOWANCE_S
    assert took <= limit, (f"partitions {victim_parts} of the killed member moved after {took:.1f} s, "
                           f"more than session.timeout.ms {SESSION_TIMEOUT_MS} ms + {REBALANCE_ALLOWANCE_S} s; "
                           f"broker: {rebalance_lines(ottla)[-8:]}")

    wait_all_delivered(ws, KILL_RECORDS, timeout=120)
    wait_balanced(survivors, 3, timeout=30)
    for w in survivors:
        assert w.stop() == 0, f"{w.name}:\n{w.stderr()}"

    problems = ownership_problems(ws) + recommitted_problems(ws)
    count, who = deliveries(ws)
    expected = {(p, o) for p, n in ends.items() for o in range(n)}
    missing = sorted(expected - set(count))
    if missing:
        problems.append(f"{len(missing)} records never delivered, first: {missing[:10]}")
    # What the victim acknowledged (committed) and what it was about to commit when it died.
    acked: dict[int, int] = {}
    attempted: dict[int, set[int]] = collections.defaultdict(set)
    got_by_victim: dict[int, int] = {}
    for e in victim.events():
        if e["ev"] == "committed":
            for p, o in e["offsets"].items():
                acked[int(p)] = max(acked.get(int(p), 0), o)
        elif e["ev"] == "committing":
            for p, o in e["offsets"].items():
                attempted[int(p)].add(o)
        elif e["ev"] == "recs":
            for p, o in e["recs"]:
                got_by_victim[p] = max(got_by_victim.get(p, -1), o)
    for p in victim_parts:
        # the survivors' first offset on p after the kill
        firsts = []
        for w in survivors:
            for e in w.events():
                if e["ev"] == "recs" and e["t"] > victim.killed_at:
                    firsts += [o for pp, o in e["recs"] if pp == p]
        if not firsts:
            if acked.get(p, 0) < ends[p]:
                problems.append(f"partition {p}: nobody consumed it after the kill (victim committed {acked.get(p)})")
            continue
        first = min(firsts)
        allowed = {acked.get(p, 0)} | {o for o in attempted[p] if o >= acked.get(p, 0)}
        if first not in allowed:
            problems.append(f"partition {p}: survivors resumed at {first}, the victim had committed "
                            f"{acked.get(p)} (and was committing {sorted(attempted[p] - {acked.get(p)})[-3:]})")
    # Duplicates only for records the victim received but had not committed when it died.
    for (p, o), n in sorted(count.items()):
        if n > 1:
            ok = (p in victim_parts and acked.get(p, 0) <= o <= got_by_victim.get(p, -1)
                  and who[(p, o)].count(victim.name) == 1 and n == 2)
            if not ok:
                problems.append(f"{p}@{o} delivered {n} times, to {who[(p, o)]} (victim committed "
                                f"{acked.get(p)} on p{p})")
                if len(problems) > 30:
                    break
    assert not problems, "\n".join(problems[:40]) + f"\ncommit errors: {commit_errors(ws)[:5]}"
    assert ck_group_offsets(ottla.bootstrap, group) == ends

    log = ottla.stderr_since_start()
    failed = [l for l in log.splitlines() if "has failed, removing it from the group" in l]
    assert failed, f"no 'has failed, removing it from the group' line in broker stderr: {rebalance_lines(ottla)[-10:]}"
    assert any(victim_member in l for l in failed), \
        f"the expiry lines do not name the killed member {victim_member}: {failed}"


def _consumer(bootstrap, group, **extra):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_TIMEOUT_MS,
                     "heartbeat.interval.ms": HEARTBEAT_MS, **extra})


def _first_offsets(c: Consumer, topic: str, want: dict[int, int], timeout: float = 60) -> dict[int, list[int]]:
    """Subscribe and read until ``want[p]`` records arrived from every partition p (or its end);
    returns {partition: [offsets in delivery order]}."""
    got: dict[int, list[int]] = {p: [] for p in want}
    c.subscribe([topic])
    deadline = time.monotonic() + timeout
    while any(len(got[p]) < want[p] for p in want):
        assert time.monotonic() < deadline, f"timed out: got { {p: len(v) for p, v in got.items()} } of {want}"
        for m in c.consume(num_messages=1000, timeout=0.5):
            assert m.error() is None, m.error()
            got[m.partition()].append(m.offset())
    return got


def test_resume_after_broker_restart(ottla, tmp_path):
    """Committed offsets (and their metadata) survive a clean restart and a kill -9, and a new
    member of the group starts exactly there."""
    parts, per = 4, 500
    topic = unique_topic("groups-restart")
    group = f"ck-restart-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=parts)
    ends = produce_spread(ottla.bootstrap, topic, parts, parts * per)

    # A member reads a bit of everything, then commits chosen positions with metadata.
    c = _consumer(ottla.bootstrap, group)
    try:
        _first_offsets(c, topic, {p: 50 for p in range(parts)})
        chosen = {p: 37 + 101 * p for p in range(parts)}
        res = c.commit(offsets=[TopicPartition(topic, p, o, metadata=f"meta-{p}") for p, o in chosen.items()],
                       asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        c.close()
    assert ck_group_offsets(ottla.bootstrap, group) == chosen

    # Clean restart.
    ottla.restart()
    c = _consumer(ottla.bootstrap, group)
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == chosen, committed
        assert {tp.partition: tp.metadata for tp in committed} == {p: f"meta-{p}" for p in range(parts)}
        got = _first_offsets(c, topic, {p: ends[p] - chosen[p] for p in range(parts)})
        for p in range(parts):
            assert got[p][0] == chosen[p], f"p{p}: resumed at {got[p][0]}, committed {chosen[p]}"
            assert got[p] == list(range(chosen[p], ends[p])), f"p{p}: offsets not contiguous to the end"
        res = c.commit(asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        c.close()
    assert ck_group_offsets(ottla.bootstrap, group) == ends
    d = describe_group(ottla.bootstrap, group)
    assert d.state == ConsumerGroupState.EMPTY and d.members == [], (d.state, d.members)

    # kill -9 (no clean shutdown): the commit acknowledged before it is still there.
    ottla.kill9()
    ottla.start()
    more = produce_spread(ottla.bootstrap, topic, parts, parts * 10, ends_before=ends)
    c = _consumer(ottla.bootstrap, group)
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == ends, committed
        got = _first_offsets(c, topic, {p: 10 for p in range(parts)})
        for p in range(parts):
            assert got[p] == list(range(ends[p], more[p])), f"p{p}: after kill -9 got {got[p]}"
    finally:
        c.close()
