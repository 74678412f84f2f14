"""Static group membership (KIP-345) with a real client (confluent-kafka / librdkafka).

- A static member that restarts within its session timeout takes its old place: the
  other member sees no rebalance (no revoke, no new assignment) and the restarted member
  gets back the partitions it had.
- Two live consumers with the same group.instance.id: the older one is fenced with
  FENCED_INSTANCE_ID, as in Kafka.
"""

import threading
import time

from confluent_kafka import Consumer, KafkaError

from conftest import ck_create_topic, unique_topic, wait_for

SESSION_MS = 10000


def static_consumer(bootstrap: str, group: str, instance: str, events: list):
    """A static member; returns (consumer, on_assign, on_revoke, errors from error_cb)."""
    def on_assign(c, partitions):
        events.append(("assign", sorted(p.partition for p in partitions)))

    def on_revoke(c, partitions):
        events.append(("revoke", sorted(p.partition for p in partitions)))

    errors = []
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": instance,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "error_cb": lambda e: errors.append(e),
    })
    return c, on_assign, on_revoke, errors


class Poller:
    """Polls one consumer on a thread until stopped; records errors from poll()."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.errors: list[KafkaError] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                m = self.consumer.poll(0.2)
            except Exception as e:  # librdkafka raises fatal errors from poll()
                self.errors.append(e.args[0] if e.args else e)
                return
            if m is not None and m.error():
                self.errors.append(m.error())

    def halt(self):
        self.stop.set()
        self.thread.join(timeout=10)


def assignment_of(events: list) -> list[int] | None:
    for kind, parts in reversed(events):
        if kind == "assign":
            return parts
    return None


def test_static_member_restart_causes_no_rebalance(ottla):
    topic = unique_topic("static")
    ck_create_topic(ottla.bootstrap, topic, partitions=4)
    group = f"g-{topic}"
    events_a, events_b = [], []
    a, a_assign, a_revoke, _ = static_consumer(ottla.bootstrap, group, "instance-a", events_a)
    b, b_assign, b_revoke, b_errors = static_consumer(ottla.bootstrap, group, "instance-b", events_b)
    a.subscribe([topic], on_assign=a_assign, on_revoke=a_revoke)
    b.subscribe([topic], on_assign=b_assign, on_revoke=b_revoke)
    pa, pb = Poller(a), Poller(b)
    wait_for(lambda: assignment_of(events_a) and assignment_of(events_b)
             and sorted(assignment_of(events_a) + assignment_of(events_b)) == [0, 1, 2, 3],
             60, "both static members to share the 4 partitions")
    a_parts = assignment_of(events_a)
    b_events_before = list(events_b)

    # A static member's close does not leave the group (no LeaveGroup): it restarts.
    pa.halt()
    a.close()
    events_a2 = []
    a2, a2_assign, a2_revoke, a2_errors = static_consumer(ottla.bootstrap, group, "instance-a", events_a2)
    a2.subscribe([topic], on_assign=a2_assign, on_revoke=a2_revoke)
    pa2 = Poller(a2)
    try:
        wait_for(lambda: assignment_of(events_a2) is not None, 30, "the restarted static member's assignment")
        assert assignment_of(events_a2) == a_parts, "the static member got its old partitions back"
        # Give a rebalance, if one were wrongly triggered, time to reach the other member.
        time.sleep(3)
        assert events_b == b_events_before, f"the other member saw a rebalance: {events_b[len(b_events_before):]}"
        assert not pb.errors and not pa2.errors, (pb.errors, pa2.errors)
        assert not [e for e in b_errors + a2_errors if e.fatal()], (b_errors, a2_errors)
    finally:
        for p in (pa2, pb):
            p.halt()
        a2.close()
        b.close()
    log = ottla.stderr_text()
    assert "Static member instance-a" in log, "the broker logged the static rejoin"


def test_duplicate_instance_id_is_fenced(ottla):
    topic = unique_topic("fence")
    ck_create_topic(ottla.bootstrap, topic, partitions=2)
    group = f"g-{topic}"
    events_1, events_2 = [], []
    first, f_assign, f_revoke, first_errors = static_consumer(ottla.bootstrap, group, "twin", events_1)
    first.subscribe([topic], on_assign=f_assign, on_revoke=f_revoke)
    p1 = Poller(first)
    wait_for(lambda: assignment_of(events_1) == [0, 1], 60, "the first twin's assignment")
    second, s_assign, s_revoke, _ = static_consumer(ottla.bootstrap, group, "twin", events_2)
    second.subscribe([topic], on_assign=s_assign, on_revoke=s_revoke)
    p2 = Poller(second)
    try:
        def fenced():
            errs = p1.errors + first_errors
            return any(getattr(e, "code", lambda: None)() == KafkaError.FENCED_INSTANCE_ID
                       or "FENCED_INSTANCE_ID" in str(e) or "fenced" in str(e).lower() for e in errs)
        wait_for(fenced, 30, "the older consumer with the same group.instance.id to be fenced")
        wait_for(lambda: assignment_of(events_2) == [0, 1], 30, "the newer twin to own the partitions")
    finally:
        p1.halt()
        p2.halt()
        second.close()
        try:
            first.close()
        except Exception:
            pass  # a fenced consumer may refuse to close cleanly
