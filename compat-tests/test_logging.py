"""What an operator reads: the broker's log lines as JSON (``ottla.log.format=json``),
and the start-up and shutdown summaries.

* ``test_json_log_lines``: with ``ottla.log.format=json`` every line the broker writes is
  one JSON object with ``timestamp``, ``level`` and ``message`` (the fields flattened to
  the top level, as log shippers expect), including the warning about an unknown config
  key that validation logs before anything else; a bad value of the key is refused at
  start-up with Kafka's wording.
* ``test_start_and_shutdown_summaries``: a clean shutdown logs how many logs it flushed
  (one per partition hosted); the restart logs how many partitions it loaded and how many
  offsets partitions its group coordinator loaded.
"""

from __future__ import annotations

import json
import re
import subprocess

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import ck_create_topic, unique_topic


def broker_lines(text: str) -> list[str]:
    """The broker's own lines (the harness adds `===== [compat-tests] ...` markers)."""
    return [l for l in text.splitlines() if l.strip() and not l.startswith("=====")]


def test_json_log_lines(ottla_factory):
    b = ottla_factory(overrides={"ottla.log.format": "json", "no.such.key": "1"})
    topic = unique_topic("json-logs")
    ck_create_topic(b.bootstrap, topic, partitions=1)
    lines = broker_lines(b.stderr_text())
    assert len(lines) >= 3
    events = [json.loads(l) for l in lines]  # each line parses, or the test fails here
    for e in events:
        assert {"timestamp", "level", "message"} <= e.keys(), e
    messages = [e["message"] for e in events]
    assert any(e["level"] == "WARN" and e["message"] == "Ignoring unknown configuration key no.such.key"
               for e in events), messages
    assert any(m.startswith("Awaiting socket connections on ") for m in messages), messages
    bad = subprocess.run([str(b.binary), "serve", "--override", "ottla.log.format=xml",
                          "--override", f"log.dirs={b.log_dir}-unused"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert "Invalid value xml for configuration ottla.log.format" in bad.stderr, bad.stderr


def test_start_and_shutdown_summaries(ottla_factory):
    b = ottla_factory(overrides={"offsets.topic.num.partitions": "3"})
    topic = unique_topic("summaries")
    ck_create_topic(b.bootstrap, topic, partitions=4)
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(4):
        p.produce(topic, value=b"v" * 100, partition=i)
    assert p.flush(30) == 0
    # A group commit creates __consumer_offsets (3 partitions).
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique_topic("g")})
    c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    c.close()
    b.restart()
    before, _, after = b.stderr_text().rpartition("===== [compat-tests] start")
    flushed = re.findall(r"Flushed (\d+) logs \((\d+) bytes\) and wrote", before)
    assert flushed, "the clean shutdown's summary"
    logs, size = map(int, flushed[-1])
    assert logs == 4 + 3
    assert size >= 4 * 100
    assert re.search(r"Loaded 7 partitions of 2 topics in \d+ ms", after), after
    assert re.search(r"Loaded 3 of 3 offsets partitions and 0 of 0 transaction state partitions "
                     r"in \d+ ms", after), after
