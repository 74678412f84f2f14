"""Bad input against a real ottla process, over raw sockets.

Issue 2, "Bad input": a frame larger than ``socket.request.max.bytes``, a truncated frame, a
header naming an unknown API key or version, garbage bytes, array lengths larger than the
frame: the connection is closed, as Kafka closes a connection whose request it cannot parse
(an ApiVersions request of a version it lacks is answered with the documented v0 error
instead), the broker keeps serving other connections, and memory does not balloon. A batch with a wrong CRC gets
CORRUPT_MESSAGE (2), a batch over ``max.message.bytes`` gets MESSAGE_TOO_LARGE (10), an
unknown topic with auto-create off gets UNKNOWN_TOPIC_OR_PARTITION (3), an invalid topic
name gets INVALID_TOPIC_EXCEPTION (17); none of these changes stored data.

Everything here is hand-encoded from Kafka's message schemas
(clients/src/main/resources/common/message/*.json) so that the bytes are exactly what a test
wants, including bytes no client library would send. After every hostile action each test
checks that the broker is still alive and serves a fresh connection (an ApiVersions round
trip on a new socket) and, where it matters, that the broker's peak RSS (VmHWM) did not grow
by more than MEMORY_BUDGET.

One broker for the whole module (``socket.request.max.bytes=1048576``,
``auto.create.topics.enable=false``), started with conftest's ``Ottla`` class.
"""

from __future__ import annotations

import gzip
import os
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from conftest import Ottla, status_kb, stop_module_broker

MAX_REQUEST = 1_048_576  # socket.request.max.bytes for this module's broker
MEMORY_BUDGET_KB = 200 * 1024  # allowed VmHWM / VmRSS growth per hostile action, in kB
IO_TIMEOUT = 10.0

# Kafka error codes
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
INVALID_RECORD = 87

# API keys
PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS = 18, 19, 20
# First flexible (compact encoding + tagged fields) version of each API used here.
FIRST_FLEXIBLE = {PRODUCE: 9, FETCH: 12, LIST_OFFSETS: 6, METADATA: 9, API_VERSIONS: 3,
                  CREATE_TOPICS: 5, DELETE_TOPICS: 4}


# ====================================================================== encoding

_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)

try:  # optional fast path; the pure-Python table version is the reference
    import crc32c as _crc32c_mod  # type: ignore

    def crc32c(data: bytes) -> int:
        return _crc32c_mod.crc32c(data)
except ImportError:  # pragma: no cover - depends on the machine
    def crc32c(data: bytes) -> int:
        c = 0xFFFFFFFF
        table = _CRC32C_TABLE
        for b in data:
            c = table[(c ^ b) & 0xFF] ^ (c >> 8)
        return c ^ 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def uvarint(n: int) -> bytes:
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n: int) -> bytes:
    """Zig-zag signed varint (records use it for lengths, deltas, counts)."""
    return uvarint((n << 1) ^ (n >> 63))


class W:
    """Writer for Kafka's primitive types; ``flexible`` switches to compact encodings."""

    def __init__(self, flexible: bool = False):
        self.b = bytearray()
        self.flex = flexible

    def raw(self, data: bytes) -> "W":
        self.b += data
        return self

    def i8(self, v: int) -> "W":
        return self.raw(struct.pack(">b", v))

    def i16(self, v: int) -> "W":
        return self.raw(struct.pack(">h", v))

    def i32(self, v: int) -> "W":
        return self.raw(struct.pack(">i", v))

    def i64(self, v: int) -> "W":
        return self.raw(struct.pack(">q", v))

    def boolean(self, v: bool) -> "W":
        return self.i8(1 if v else 0)

    def string(self, s: str | None) -> "W":
        if s is None:
            return self.raw(uvarint(0) if self.flex else struct.pack(">h", -1))
        data = s.encode()
        return self.raw((uvarint(len(data) + 1) if self.flex else struct.pack(">h", len(data))) + data)

    def array(self, n: int | None) -> "W":
        if n is None:
            return self.raw(uvarint(0) if self.flex else struct.pack(">i", -1))
        return self.raw(uvarint(n + 1) if self.flex else struct.pack(">i", n))

    def bytes_(self, data: bytes | None) -> "W":
        if data is None:
            return self.raw(uvarint(0) if self.flex else struct.pack(">i", -1))
        return self.raw((uvarint(len(data) + 1) if self.flex else struct.pack(">i", len(data))) + data)

    def tags(self) -> "W":
        if self.flex:
            self.b.append(0)
        return self

    def done(self) -> bytes:
        return bytes(self.b)


class R:
    """Reader for Kafka's primitive types."""

    def __init__(self, data: bytes, flexible: bool = False):
        self.d = data
        self.p = 0
        self.flex = flexible

    def _take(self, n: int) -> bytes:
        if self.p + n > len(self.d):
            raise AssertionError(f"response truncated: need {n} bytes at {self.p}, have {len(self.d) - self.p}")
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def _unpack(self, fmt: str):
        s = struct.calcsize(fmt)
        return struct.unpack(fmt, self._take(s))[0]

    def i8(self) -> int:
        return self._unpack(">b")

    def i16(self) -> int:
        return self._unpack(">h")

    def i32(self) -> int:
        return self._unpack(">i")

    def i64(self) -> int:
        return self._unpack(">q")

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def string(self) -> str | None:
        n = self.uvarint() - 1 if self.flex else self.i16()
        return None if n < 0 else self._take(n).decode()

    def array(self) -> int:
        return self.uvarint() - 1 if self.flex else self.i32()

    def bytes_(self) -> bytes | None:
        n = self.uvarint() - 1 if self.flex else self.i32()
        return None if n < 0 else self._take(n)

    def tags(self) -> None:
        if self.flex:
            for _ in range(self.uvarint()):
                self.uvarint()
                self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.d) - self.p


def request_header(api_key: int, version: int, corr: int, flexible: bool = False,
                   client_id: str | None = "ottla-bad-input") -> bytes:
    """Request header v1 (v2 when ``flexible``: an empty tagged-field section added)."""
    w = W().i16(api_key).i16(version).i32(corr).string(client_id)  # client_id is never compact
    if flexible:
        w.raw(b"\x00")
    return w.done()


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


# ---------------------------------------------------------------------- record batches

@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    ts: int = 0
    offset: int = -1  # filled in when read back


def encode_record(offset_delta: int, r: Rec, base_ts: int) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += varint(r.ts - base_ts) + varint(offset_delta)
    for part in (r.key, r.value):
        body += varint(-1) if part is None else varint(len(part)) + part
    body += varint(len(r.headers))
    for k, v in r.headers:
        kb = k.encode()
        body += varint(len(kb)) + kb
        body += varint(-1) if v is None else varint(len(v)) + v
    return varint(len(body)) + bytes(body)


def build_batch(records: list[Rec], compression: int = 0, base_offset: int = 0,
                last_offset_delta: int | None = None, count: int | None = None,
                magic: int = 2, records_bytes: bytes | None = None) -> bytes:
    """A v2 record batch as a producer sends it (producer id -1: not idempotent).
    ``last_offset_delta``, ``count``, ``magic`` and ``records_bytes`` override the real values
    to build inconsistent batches with a valid CRC."""
    base_ts = min(r.ts for r in records)
    max_ts = max(r.ts for r in records)
    body = b"".join(encode_record(i, r, base_ts) for i, r in enumerate(records))
    if compression == 1:
        body = gzip.compress(body)
    elif compression != 0:
        raise ValueError("only none and gzip are encoded here")
    if records_bytes is not None:
        body = records_bytes
    after_crc = struct.pack(
        ">hiqqqhii", compression,
        len(records) - 1 if last_offset_delta is None else last_offset_delta,
        base_ts, max_ts, -1, -1, -1,
        len(records) if count is None else count) + body
    after_length = struct.pack(">ibI", -1, magic, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


def parse_batches(data: bytes) -> list[Rec]:
    """Records of the complete v2 batches in ``data`` (a Fetch response's records); CRCs checked."""
    out: list[Rec] = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if pos + 12 + length > len(data):
            break  # a partial batch at the end of a fetch response is allowed
        b = data[pos:pos + 12 + length]
        pos += 12 + length
        _epoch, magic, crc = struct.unpack_from(">ibI", b, 12)
        assert magic == 2, f"batch at offset {base_offset} has magic {magic}"
        assert crc32c(b[21:]) == crc, f"batch at offset {base_offset}: stored CRC does not match its bytes"
        attrs, _lod, base_ts, max_ts, _pid, _pe, _seq, count = struct.unpack_from(">hiqqqhii", b, 21)
        if attrs & 0x20:  # control batch
            continue
        body = b[61:]
        codec = attrs & 7
        if codec == 1:
            body = gzip.decompress(body)
        elif codec != 0:
            raise AssertionError(f"codec {codec} not decoded by this test")
        rd = R(body)

        def sv() -> int:
            u = rd.uvarint()
            return (u >> 1) ^ -(u & 1)

        for _ in range(count):
            sv()  # record length
            rd.i8()  # attributes
            ts_delta = sv()
            off_delta = sv()
            kl = sv()
            key = None if kl < 0 else rd._take(kl)
            vl = sv()
            value = None if vl < 0 else rd._take(vl)
            headers = []
            for _ in range(sv()):
                hk = rd._take(sv()).decode()
                hl = sv()
                headers.append((hk, None if hl < 0 else rd._take(hl)))
            ts = max_ts if attrs & 0x08 else base_ts + ts_delta
            out.append(Rec(key, value, headers, ts, base_offset + off_delta))
    return out


# ====================================================================== connections

class Closed(Exception):
    pass


class Conn:
    def __init__(self, bootstrap: str, timeout: float = IO_TIMEOUT):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.corr = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> int:
        self.corr += 1
        self.send_raw(framed(request_header(api_key, version, self.corr, flexible) + body))
        return self.corr

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self.recv_exact(4))
        assert 4 <= size <= 64 * 1024 * 1024, f"implausible response size {size}"
        return self.recv_exact(size)

    def request(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> R:
        """Send and read the response; returns a reader positioned after the response header."""
        corr = self.send(api_key, version, body, flexible)
        payload = self.recv_frame()
        (got,) = struct.unpack_from(">i", payload)
        assert got == corr, f"correlation id {got}, expected {corr}"
        r = R(payload[4:], flexible)
        if flexible and api_key != API_VERSIONS:  # ApiVersions responses always use header v0
            r.tags()
        return r

    def outcome(self, corr: int, timeout: float = IO_TIMEOUT) -> tuple[str, bytes]:
        """After a hostile request: ("closed", b"") if the broker closed the connection, or
        ("answered", payload) for a response frame carrying ``corr``. Fails on anything else."""
        self.sock.settimeout(timeout)
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            if len(buf) >= 4:
                (size,) = struct.unpack_from(">i", buf)
                assert 4 <= size <= 64 * 1024 * 1024, f"broker sent a frame of size {size}"
                if len(buf) >= 4 + size:
                    payload = bytes(buf[4:4 + size])
                    (got,) = struct.unpack_from(">i", payload)
                    assert got == corr, f"response with correlation id {got}, expected {corr}"
                    return "answered", payload
            if time.monotonic() > deadline:
                pytest.fail(f"broker neither closed the connection nor answered within {timeout} s "
                            f"(got {len(buf)} bytes)")
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                continue
            if not chunk:
                assert not buf, f"connection closed in the middle of a response ({len(buf)} bytes)"
                return "closed", b""
            buf += chunk

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Read until the broker closes; returns whatever it sent first. Fails on timeout."""
        self.sock.settimeout(timeout)
        got = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(got)
            except socket.timeout:
                break
            if not chunk:
                return bytes(got)
            got += chunk
        pytest.fail(f"broker did not close the connection within {timeout} s (received {len(got)} bytes)")

    def is_open(self, wait: float = 0.5) -> bool:
        """True if the broker has not closed the connection (nothing to read within ``wait``)."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
            return bool(data)
        except socket.timeout:
            return True
        except OSError:
            return False


# ====================================================================== requests

def api_versions_v0_body(payload_after_corr: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    """Parse an ApiVersions response in v0 format, requiring it to be exactly that long."""
    r = R(payload_after_corr)
    err = r.i16()
    n = r.i32()
    assert 0 <= n <= 1000, f"api_keys count {n}"
    keys = {}
    for _ in range(n):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    assert r.remaining() == 0, (
        f"{r.remaining()} unexpected trailing bytes after a v0 ApiVersions response body "
        f"(error {err}, {n} keys): not the v0 format")
    return err, keys


def api_versions_roundtrip(bootstrap: str) -> dict[int, tuple[int, int]]:
    with Conn(bootstrap) as c:
        corr = c.send(API_VERSIONS, 0, b"")
        payload = c.recv_frame()
    (got,) = struct.unpack_from(">i", payload)
    assert got == corr
    err, keys = api_versions_v0_body(payload[4:])
    assert err == NONE, f"ApiVersions v0 error {err}"
    return keys


def produce_body(topics: dict[str, dict[int, bytes | None]], acks: int = -1, timeout_ms: int = 10_000) -> bytes:
    """Produce v3..v8 request body."""
    w = W().string(None).i16(acks).i32(timeout_ms).array(len(topics))
    for name, parts in topics.items():
        w.string(name).array(len(parts))
        for idx, records in parts.items():
            w.i32(idx).bytes_(records)
    return w.done()


def produce(bootstrap: str, topic: str, partition: int, records: bytes | None, acks: int = -1,
            conn: Conn | None = None) -> tuple[int, int]:
    """Produce v3; returns (error_code, base_offset) of the one partition."""
    res = produce_multi(bootstrap, {topic: {partition: records}}, acks, conn)
    return res[(topic, partition)]


def produce_multi(bootstrap: str, topics: dict[str, dict[int, bytes | None]], acks: int = -1,
                  conn: Conn | None = None) -> dict[tuple[str, int], tuple[int, int]]:
    own = conn is None
    c = conn or Conn(bootstrap)
    try:
        r = c.request(PRODUCE, 3, produce_body(topics, acks))
        out = {}
        for _ in range(r.array()):
            name = r.string()
            for _ in range(r.array()):
                idx, err, base, _ = r.i32(), r.i16(), r.i64(), r.i64()  # .., log_append_time_ms
                out[(name, idx)] = (err, base)
        r.i32()  # throttle_time_ms
        assert r.remaining() == 0, f"{r.remaining()} trailing bytes in a Produce v3 response"
        return out
    finally:
        if own:
            c.close()


def fetch_all(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, list[Rec]]:
    """Fetch v4 from offset 0 up to the high watermark: (high_watermark, records)."""
    out: list[Rec] = []
    offset = 0
    hw = -1
    with Conn(bootstrap) as c:
        for _ in range(10_000):
            body = (W().i32(-1).i32(100).i32(1).i32(8 * 1024 * 1024).i8(0)
                    .array(1).string(topic).array(1).i32(partition).i64(offset).i32(4 * 1024 * 1024).done())
            r = c.request(FETCH, 4, body)
            r.i32()  # throttle
            got = None
            for _ in range(r.array()):
                r.string()
                for _ in range(r.array()):
                    idx, err, hw = r.i32(), r.i16(), r.i64()
                    r.i64()  # last stable offset
                    for _ in range(max(r.array(), 0)):  # aborted transactions
                        r.i64(), r.i64()
                    records = r.bytes_()
                    if idx == partition:
                        got = (err, records or b"")
            assert got is not None, "Fetch response without our partition"
            err, records = got
            assert err == NONE, f"Fetch {topic}-{partition} at offset {offset}: error {err}"
            recs = [x for x in parse_batches(records) if x.offset >= offset]
            out += recs
            if recs:
                offset = recs[-1].offset + 1
            if offset >= hw:
                return hw, out
            assert recs, f"Fetch at offset {offset} below high watermark {hw} returned no records"
    raise AssertionError("fetch_all did not reach the high watermark")


def create_topics_raw(bootstrap: str, versions: dict, topics: list[tuple[str, int, int, dict]],
                      validate_only: bool = False) -> list[tuple[str, int, str | None]]:
    """CreateTopics at the highest version we encode (<= 7) that the broker advertises;
    returns [(name, error_code, error_message)]."""
    lo, hi = versions[CREATE_TOPICS]
    v = min(hi, 7)
    assert v >= lo, f"CreateTopics versions {lo}..{hi} not encodable here"
    flex = v >= FIRST_FLEXIBLE[CREATE_TOPICS]
    w = W(flex).array(len(topics))
    for name, parts, rf, cfg in topics:
        w.string(name).i32(parts).i16(rf).array(0).array(len(cfg))
        for k, val in cfg.items():
            w.string(k).string(val).tags()
        w.tags()
    w.i32(30_000)
    if v >= 1:
        w.boolean(validate_only)
    w.tags()
    with Conn(bootstrap) as c:
        r = c.request(CREATE_TOPICS, v, w.done(), flexible=flex)
    if v >= 2:
        r.i32()
    out = []
    for _ in range(r.array()):
        name = r.string()
        if v >= 7:
            r._take(16)
        err = r.i16()
        msg = r.string() if v >= 1 else None
        if v >= 5:
            r.i32(), r.i16()
            for _ in range(max(r.array(), 0)):
                r.string(), r.string(), r.i8(), r.i8(), r.i8()
                r.tags()
        r.tags()
        out.append((name, err, msg))
    return out


def create_topic(bootstrap: str, versions: dict, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    res = create_topics_raw(bootstrap, versions, [(name, partitions, 1, configs or {})])
    assert [(n, e) for n, e, _ in res] == [(name, NONE)], f"CreateTopics {name}: {res}"


def produce_when_ready(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Produce a good batch, retrying briefly while a new topic becomes available; base offset."""
    deadline = time.monotonic() + 15
    while True:
        err, base = produce(bootstrap, topic, partition, batch)
        if err == NONE:
            return base
        if err not in (UNKNOWN_TOPIC_OR_PARTITION, 6) or time.monotonic() > deadline:  # 6 = NOT_LEADER
            raise AssertionError(f"producing a good batch to {topic}-{partition} failed with error {err}")
        time.sleep(0.2)


def topic_exists(bootstrap: str, name: str) -> bool:
    """Metadata v1 for all topics (never auto-creates)."""
    with Conn(bootstrap) as c:
        r = c.request(METADATA, 1, W().array(None).done())
    for _ in range(r.array()):  # brokers
        r.i32(), r.string(), r.i32(), r.string()
    r.i32()  # controller id
    names = set()
    for _ in range(r.array()):
        r.i16()
        names.add(r.string())
        r.i8()
        for _ in range(r.array()):
            r.i16(), r.i32(), r.i32()
            for _ in range(r.array()):
                r.i32()
            for _ in range(r.array()):
                r.i32()
    return name in names


# ====================================================================== the broker

@pytest.fixture(scope="module")
def broker(request, tmp_path_factory):
    b = Ottla(tmp_path_factory.mktemp("ottla-bad-input"), name="ottla-bad-input", overrides={
        "socket.request.max.bytes": str(MAX_REQUEST),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    })
    request.module._ottla_module_brokers = [b]  # conftest attaches its stderr tail to failures
    b.start()
    yield b
    stop_module_broker(b, "ottla-bad-input")


@pytest.fixture(scope="module")
def versions(broker) -> dict[int, tuple[int, int]]:
    v = api_versions_roundtrip(broker.bootstrap)
    for key, needed in ((PRODUCE, 3), (FETCH, 4), (METADATA, 1)):
        assert key in v and v[key][0] <= needed <= v[key][1], (
            f"api key {key} v{needed} is used by these tests but the broker advertises {v.get(key)}")
    assert CREATE_TOPICS in v, "CreateTopics not advertised"
    return v


class Guard:
    """Checks after a hostile action: the process lives, a fresh connection gets an ApiVersions
    answer, peak and current memory did not grow by more than the budget, the log did not flood."""

    def __init__(self, broker: Ottla, budget_kb: int = MEMORY_BUDGET_KB, max_log_lines: int | None = None):
        self.broker = broker
        self.budget = budget_kb
        self.max_log_lines = max_log_lines
        self.before = status_kb(broker.pid)
        self.lines_before = len(broker.stderr_text().splitlines())

    def check(self, what: str) -> None:
        b = self.broker
        assert b.is_running(), f"{what}: broker died (exit {b.proc.poll()}); stderr:\n{b.stderr_tail(40)}"
        try:
            keys = api_versions_roundtrip(b.bootstrap)
        except (OSError, Closed, AssertionError) as e:
            pytest.fail(f"{what}: a fresh connection no longer gets an ApiVersions answer: {e!r}")
        assert PRODUCE in keys
        after = status_kb(b.pid)
        for k in ("VmHWM", "VmRSS"):
            grew = after[k] - self.before[k]
            assert grew < self.budget, (
                f"{what}: {k} grew by {grew} kB ({self.before[k]} -> {after[k]} kB), budget {self.budget} kB")
        if self.max_log_lines is not None:
            time.sleep(0.2)
            added = len(b.stderr_text().splitlines()) - self.lines_before
            assert added <= self.max_log_lines, (
                f"{what}: the broker wrote {added} log lines (at most {self.max_log_lines} expected)")


def unique(prefix: str) -> str:
    return f"bad-{prefix}-{uuid.uuid4().hex[:8]}"


BASE_TS = int(time.time() * 1000) - 600_000


def recs(n: int, tag: str, start: int = 0, value_size: int = 20) -> list[Rec]:
    """Deterministic records (same arguments, same records) with a repeated header key."""
    return [Rec(f"{tag}-k{i}".encode(), (f"{tag}-v{i}-".encode() * (value_size // 8 + 1))[:value_size],
                [("h", f"a{i}".encode()), ("dup", b"1"), ("dup", None), ("dup", b"3")], BASE_TS + i)
            for i in range(start, start + n)]


def assert_stored(bootstrap: str, topic: str, partition: int, expected: list[Rec]) -> None:
    hw, got = fetch_all(bootstrap, topic, partition)
    assert hw == len(expected), f"{topic}-{partition}: high watermark {hw}, expected {len(expected)}"
    assert [g.offset for g in got] == list(range(len(expected))), f"offsets {[g.offset for g in got]}"
    for i, (e, g) in enumerate(zip(expected, got)):
        assert (g.key, g.value, g.headers, g.ts) == (e.key, e.value, e.headers, e.ts), (
            f"{topic}-{partition} offset {i}: stored {g}, expected {e}")


# ====================================================================== framing

def test_api_versions_baseline(broker, versions):
    """The well-formed round trips the other tests rely on."""
    assert versions[API_VERSIONS][0] == 0, f"ApiVersions v0 should stay supported: {versions[API_VERSIONS]}"
    hi = versions[API_VERSIONS][1]
    if hi >= 3:
        with Conn(broker.bootstrap) as c:
            body = W(True).string("ottla-bad-input").string("1.0").tags().done()
            r = c.request(API_VERSIONS, 3, body, flexible=True)
            r.flex = True
            assert r.i16() == NONE
            n = r.array()
            keys = {}
            for _ in range(n):
                k, lo, mx = r.i16(), r.i16(), r.i16()
                r.tags()
                keys[k] = (lo, mx)
            assert keys == versions, f"ApiVersions v3 and v0 disagree: {keys} vs {versions}"


@pytest.mark.parametrize("size", [1 << 30, MAX_REQUEST + 1, 0x7FFFFFFF], ids=["1GiB", "max+1", "2GiB-1"])
def test_frame_larger_than_socket_request_max_bytes(broker, size):
    """Kafka: InvalidReceiveException, the connection is closed before anything is allocated."""
    g = Guard(broker, max_log_lines=10)
    with Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", size) + request_header(API_VERSIONS, 0, 1))
        try:
            c.send_raw(os.urandom(64 * 1024))  # keep feeding: the broker must not wait for the rest
        except OSError:
            pass  # already closed: fine
        c.wait_closed()
    g.check(f"size prefix {size}")


@pytest.mark.parametrize("size", [-1, -0x80000000, 0, 1, 3])
def test_negative_or_tiny_size_prefix(broker, size):
    """A negative size is invalid; a frame too short for a request header cannot be parsed."""
    g = Guard(broker, max_log_lines=10)
    with Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", size) + b"\x00" * max(size, 0))
        c.wait_closed()
    g.check(f"size prefix {size}")


def test_truncated_frame_does_not_affect_others(broker):
    """Size says 100, 10 bytes arrive, then the client goes quiet / closes."""
    g = Guard(broker)
    with Conn(broker.bootstrap) as healthy:
        def roundtrip():
            r = healthy.request(API_VERSIONS, 0, b"")
            assert r.i16() == NONE
        roundtrip()
        hostile = Conn(broker.bootstrap)
        hostile.send_raw(struct.pack(">i", 100) + request_header(METADATA, 1, 1)[:10])
        # Many more stalled connections, each mid-frame.
        stalled = []
        for i in range(50):
            s = Conn(broker.bootstrap)
            s.send_raw(struct.pack(">i", 100 + i) + os.urandom(10))
            stalled.append(s)
        roundtrip()  # the same healthy connection keeps working while others are stuck
        api_versions_roundtrip(broker.bootstrap)  # and so do new ones
        hostile.close()
        for s in stalled:
            s.close()
        roundtrip()
        # Truncated in the middle of a request body: a Metadata v1 frame whose size covers the
        # header and 2 of the 4 bytes of the topics array length, then EOF from the client.
        with Conn(broker.bootstrap) as t:
            payload = request_header(METADATA, 1, 7) + b"\x00\x00"
            t.send_raw(struct.pack(">i", len(payload) + 2) + payload)
            t.sock.shutdown(socket.SHUT_WR)
            t.wait_closed()
        roundtrip()
    g.check("truncated frames")


@pytest.mark.parametrize("api_key", [9999, 1000, 32767, -1])
def test_unknown_api_key(broker, api_key):
    """Kafka cannot parse the header of an unknown key and closes the connection."""
    g = Guard(broker, max_log_lines=10)
    with Conn(broker.bootstrap) as c:
        corr = c.send(api_key, 0, b"\x00" * 16)
        kind, payload = c.outcome(corr)
    assert kind == "closed", f"api key {api_key}: answered {payload[:32]!r}; Kafka closes the connection"
    g.check(f"api key {api_key}")


@pytest.mark.parametrize("api_key,version", [(PRODUCE, 99), (METADATA, 999), (FETCH, 32767), (PRODUCE, -1)])
def test_known_key_unsupported_version(broker, versions, api_key, version):
    """Kafka closes the connection: it cannot know the body layout of a version it lacks
    (only ApiVersions gets an answer, tested below)."""
    g = Guard(broker, max_log_lines=10)
    with Conn(broker.bootstrap) as c:
        corr = c.send(api_key, version, produce_body({"x": {0: b""}}))
        kind, payload = c.outcome(corr)
    assert kind == "closed", (
        f"api key {api_key} v{version}: answered {payload[:32]!r}; Kafka closes the connection")
    g.check(f"api key {api_key} v{version}")


def assert_api_versions_v0_fallback(c, versions: dict, version: int, client_id: str) -> None:
    """ApiVersions ``version`` (unsupported) on connection ``c``: the v0-format answer with
    UNSUPPORTED_VERSION and the advertised ranges, then a retry with a listed version on the
    same connection, as Java clients and librdkafka do."""
    body = W(True).string(client_id).string("9.9").tags().done()
    corr = c.send(API_VERSIONS, version, body, flexible=True)
    payload = c.recv_frame()
    (got,) = struct.unpack_from(">i", payload)
    assert got == corr, f"correlation id {got}, expected {corr}"
    err, keys = api_versions_v0_body(payload[4:])
    assert err == UNSUPPORTED_VERSION, f"error_code {err}, expected {UNSUPPORTED_VERSION}"
    assert API_VERSIONS in keys, f"api_keys must include ApiVersions (18): {keys}"
    lo, hi = keys[API_VERSIONS]
    assert (lo, hi) == versions[API_VERSIONS], (
        f"ApiVersions range in the error response {keys[API_VERSIONS]} differs from the "
        f"advertised {versions[API_VERSIONS]}")
    for k, rng in keys.items():
        assert versions.get(k) == rng, f"api key {k}: {rng} in the error response, {versions.get(k)} advertised"
    r = c.request(API_VERSIONS, hi if hi < 3 else 3, W(hi >= 3).string(client_id)
                  .string("9.9").tags().done() if hi >= 3 else b"", flexible=hi >= 3)
    assert r.i16() == NONE


@pytest.mark.parametrize("version", [99, 32767])
def test_api_versions_unsupported_version_gets_v0_error_response(broker, versions, version):
    """Kafka answers an ApiVersions request of a version it lacks with a response in the v0
    format: error_code 35 (UNSUPPORTED_VERSION) and the api_keys list (Kafka lists
    ApiVersions' own range there; the full list is accepted too). The client then retries with a
    version from that list on the same connection, so the connection stays open."""
    g = Guard(broker, max_log_lines=10)
    with Conn(broker.bootstrap) as c:
        assert_api_versions_v0_fallback(c, versions, version, "ottla-bad-input")
    g.check(f"ApiVersions v{version}")


@pytest.mark.parametrize("seed", range(6))
def test_garbage_bytes(broker, seed):
    """4 KB of random bytes: the connection is closed (at the latest when the client half-closes
    and the broker sees EOF mid-frame); the broker stays up and logs little."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(4096))
    if seed == 1:  # a plausible size prefix, so the broker has to parse garbage as a request
        data[:4] = struct.pack(">i", 4092)
    if seed == 2:  # a real header in front of a garbage body
        data[:4] = struct.pack(">i", 4092)
        hdr = request_header(METADATA, 1, 77)
        data[4:4 + len(hdr)] = hdr
    if seed == 3:  # a real flexible header in front of a garbage body
        data[:4] = struct.pack(">i", 4092)
        hdr = request_header(API_VERSIONS, 3, 77, flexible=True)
        data[4:4 + len(hdr)] = hdr
    g = Guard(broker, max_log_lines=10)
    with Conn(broker.bootstrap) as c:
        try:
            c.send_raw(bytes(data))
        except OSError:
            pass
        closed = not c.is_open(3.0)
        if not closed:
            c.sock.shutdown(socket.SHUT_WR)
            c.wait_closed()
    g.check(f"garbage seed {seed}")


def _hostile_array_cases(versions: dict) -> list[tuple[str, int, int, bool, bytes]]:
    """(name, api_key, version, flexible, body) with counts or lengths far beyond the frame."""
    huge = 0x7FFFFFFF
    cases = []

    def pick(key: int, flexible: bool) -> int | None:
        lo, hi = versions.get(key, (0, -1))
        first_flex = FIRST_FLEXIBLE[key]
        cands = [v for v in range(lo, hi + 1) if (v >= first_flex) == flexible]
        if key == FETCH and not flexible:
            cands = [v for v in cands if v <= 6]  # layouts encoded below
        return max(cands) if cands else None

    few = b"\x00\x03abc\x00\x00\x00\x01"
    for flex in (False, True):
        tag = "flex" if flex else "classic"
        v = pick(METADATA, flex)
        if v is not None:
            cases.append((f"metadata-topics-{tag}", METADATA, v, flex, W(flex).array(huge).done() + few))
            cases.append((f"metadata-topics-1M-{tag}", METADATA, v, flex, W(flex).array(1_000_000).done() + few))
        v = pick(CREATE_TOPICS, flex)
        if v is not None:
            cases.append((f"createtopics-topics-{tag}", CREATE_TOPICS, v, flex, W(flex).array(huge).done() + few))
            cases.append((f"createtopics-assignments-{tag}", CREATE_TOPICS, v, flex,
                          W(flex).array(1).string("x").i32(1).i16(1).array(huge).done() + few))
            cases.append((f"createtopics-broker-ids-{tag}", CREATE_TOPICS, v, flex,
                          W(flex).array(1).string("x").i32(-1).i16(-1).array(1).i32(0).array(huge).done() + few))
            cases.append((f"createtopics-configs-{tag}", CREATE_TOPICS, v, flex,
                          W(flex).array(1).string("x").i32(1).i16(1).array(0).array(huge).done() + few))
        v = pick(PRODUCE, flex)
        if v is not None:
            head = W(flex).string(None).i16(-1).i32(1000)
            cases.append((f"produce-topics-{tag}", PRODUCE, v, flex, W(flex).raw(head.done()).array(huge).done() + few))
            cases.append((f"produce-partitions-{tag}", PRODUCE, v, flex,
                          W(flex).raw(head.done()).array(1).string("x").array(huge).done() + few))
            cases.append((f"produce-records-length-{tag}", PRODUCE, v, flex,
                          W(flex).raw(head.done()).array(1).string("x").array(1).i32(0).done()
                          + (uvarint(huge) if flex else struct.pack(">i", huge)) + b"\x00" * 10))
        v = pick(DELETE_TOPICS, flex)
        if v is not None:
            cases.append((f"deletetopics-{tag}", DELETE_TOPICS, v, flex, W(flex).array(huge).done() + few))
        v = pick(LIST_OFFSETS, flex)
        if v is not None:
            head = W(flex).i32(-1) if v < 2 else W(flex).i32(-1).i8(0)
            cases.append((f"listoffsets-{tag}", LIST_OFFSETS, v, flex, head.array(huge).done() + few))
    v = pick(FETCH, False)
    if v is not None:
        cases.append(("fetch-topics-classic", FETCH, v, False,
                      W().i32(-1).i32(0).i32(1).i32(1000).i8(0).array(huge).done() + few))
    v = pick(METADATA, False)
    if v is not None:
        cases.append(("metadata-negative-count", METADATA, v, False, W().i32(-2).done() + few))
        cases.append(("metadata-string-longer-than-frame", METADATA, v, False,
                      W().array(1).i16(0x7FFF).done() + b"abc"))
        cases.append(("metadata-empty-body", METADATA, v, False, b""))
    # Compact lengths that do not fit 32 bits, and a header tag section claiming huge sizes.
    if versions.get(API_VERSIONS, (0, 0))[1] >= 3:
        cases.append(("apiversions-huge-compact-string", API_VERSIONS, 3, True,
                      uvarint(0xFFFFFFFF) + b"abc"))
    return cases


def test_hostile_array_lengths(broker, versions):
    """Every count/length far larger than the frame: the connection is closed, as Kafka closes
    one whose request it cannot parse ("Tried to allocate a collection of size ..."), and
    memory does not balloon. (The kafka-protocol crate decodes with Vec::with_capacity(count),
    so each of these is a potential multi-gigabyte allocation from a 20-byte frame.)"""
    cases = _hostile_array_cases(versions)
    assert len(cases) >= 8, f"too few cases for the advertised versions {versions}"
    # Header-level: flexible header with a tagged-field section of absurd count / size.
    flex_md = versions[METADATA][1] if versions[METADATA][1] >= FIRST_FLEXIBLE[METADATA] else 12
    header_cases = [
        ("header-tag-count", struct.pack(">hhih", METADATA, flex_md, 5, 1) + b"x" + uvarint(0x7FFFFFFF) + b"\x00"),
        ("header-tag-size", struct.pack(">hhih", METADATA, flex_md, 5, 1) + b"x" + b"\x01\x00"
         + uvarint(0x7FFFFFFF) + b"ab"),
        ("header-client-id-longer-than-frame", struct.pack(">hhih", METADATA, 1, 5, 0x7FFF) + b"abc"),
    ]
    answered = {}  # cases not closed: name -> how they ended
    g_all = Guard(broker)
    for name, key, v, flex, body in cases:
        g = Guard(broker)
        with Conn(broker.bootstrap) as c:
            corr = c.send(key, v, body, flexible=flex)
            kind, _ = c.outcome(corr)
        if kind != "closed":
            answered[name] = f"v{v}:{kind}"
        g.check(f"{name} (api {key} v{v})")
    for name, payload in header_cases:
        g = Guard(broker)
        with Conn(broker.bootstrap) as c:
            c.send_raw(framed(payload))
            kind, _ = c.outcome(5)
        if kind != "closed":
            answered[name] = kind
        g.check(name)
    g_all.check("all hostile array cases")
    assert not answered, f"answered instead of closed: {answered}"


def test_hostile_arrays_many_connections_at_once(broker, versions):
    """The same frames on 40 connections at once: every connection is closed and memory
    stays bounded (no per-connection multi-gigabyte reservation that happens to fit when
    done one at a time)."""
    cases = _hostile_array_cases(versions)
    g = Guard(broker)
    conns = []
    for i in range(40):
        name, key, v, flex, body = cases[i % len(cases)]
        c = Conn(broker.bootstrap)
        c.send(key, v, body, flexible=flex)
        conns.append(c)
    kinds = []
    for c in conns:
        kinds.append(c.outcome(c.corr)[0])
        c.close()
    assert kinds == ["closed"] * len(conns), kinds
    g.check("40 concurrent hostile frames")


# ====================================================================== produce errors

def test_wrong_crc_gets_corrupt_message(broker, versions):
    topic = unique("crc")
    create_topic(broker.bootstrap, versions, topic, partitions=2)
    good1 = recs(3, "good1")
    assert produce_when_ready(broker.bootstrap, topic, 0, build_batch(good1)) == 0
    g = Guard(broker)

    payload_flip = bytearray(build_batch(recs(3, "bad")))
    payload_flip[61 + 10] ^= 0xFF  # a byte inside the first record
    crc_flip = bytearray(build_batch(recs(3, "bad")))
    crc_flip[17] ^= 0x01  # the CRC field itself
    header_flip = bytearray(build_batch(recs(3, "bad")))
    header_flip[21 + 8] ^= 0x01  # base timestamp (covered by the CRC)
    for what, batch in (("payload byte", payload_flip), ("crc field", crc_flip), ("header field", header_flip)):
        for acks in (-1, 1):
            err, _ = produce(broker.bootstrap, topic, 0, bytes(batch), acks=acks)
            assert err == CORRUPT_MESSAGE, f"flipped {what}, acks={acks}: error {err}, expected {CORRUPT_MESSAGE}"

    # acks=0: no Produce response. Kafka closes the connection when an acks=0 produce fails (so
    # the client notices); otherwise the next response on the connection is the next request's.
    with Conn(broker.bootstrap) as c:
        c.send(PRODUCE, 3, produce_body({topic: {0: bytes(payload_flip)}}, acks=0))
        try:
            r = c.request(API_VERSIONS, 0, b"")
            assert r.i16() == NONE
        except Closed:
            pass

    # Per-partition outcome: a corrupt batch for partition 0 next to a good one for partition 1.
    good_p1 = recs(2, "p1")
    res = produce_multi(broker.bootstrap, {topic: {0: bytes(payload_flip), 1: build_batch(good_p1)}})
    assert res[(topic, 0)][0] == CORRUPT_MESSAGE, res
    assert res[(topic, 1)] == (NONE, 0), res

    good2 = recs(2, "good2", start=3)
    err, base = produce(broker.bootstrap, topic, 0, build_batch(good2))
    assert (err, base) == (NONE, 3), f"good batch after the corrupt ones: {(err, base)}, expected (0, 3)"
    assert_stored(broker.bootstrap, topic, 0, good1 + good2)
    assert_stored(broker.bootstrap, topic, 1, good_p1)
    g.check("corrupt batches")


def test_invalid_batches_are_rejected_without_storing(broker, versions):
    """Batches with a valid CRC but inconsistent contents. Kafka rejects each (INVALID_RECORD 87,
    or CORRUPT_MESSAGE 2) and stores nothing: a producer's request carries exactly one batch per
    partition (v3+), magic 2, and last_offset_delta == count - 1."""
    topic = unique("invalid")
    create_topic(broker.bootstrap, versions, topic)
    good1 = recs(3, "good1")
    assert produce_when_ready(broker.bootstrap, topic, 0, build_batch(good1)) == 0
    g = Guard(broker)
    r3 = recs(3, "bad")
    bad_crc = bytearray(build_batch(r3))
    bad_crc[70] ^= 0xFF
    truncated = build_batch(r3)[:-5]
    length_too_long = bytearray(build_batch(r3))
    length_too_long[8:12] = struct.pack(">i", len(length_too_long) - 12 + 100)
    cases = {
        "good batch followed by a corrupt batch": build_batch(recs(2, "x")) + bytes(bad_crc),
        "two good batches in one partition": build_batch(recs(2, "x")) + build_batch(recs(2, "y")),
        "truncated batch": truncated,
        "batch length beyond the records": bytes(length_too_long),
        "empty records": b"",
        "12 bytes only": b"\x00" * 12,
        "magic 3": build_batch(r3, magic=3),
        "last_offset_delta != count - 1": build_batch(r3, last_offset_delta=7),
        "count 0 with records": build_batch(r3, count=0, last_offset_delta=-1),
        "count larger than the records present": build_batch(r3, count=5, last_offset_delta=4),
    }
    results = {}
    for what, data in cases.items():
        err, _ = produce(broker.bootstrap, topic, 0, data)
        results[what] = err
    accepted = {k: v for k, v in results.items() if v == NONE}
    odd = {k: v for k, v in results.items() if v not in (CORRUPT_MESSAGE, INVALID_RECORD, INVALID_REQUEST, NONE)}
    good2 = recs(2, "good2", start=3)
    err, base = produce(broker.bootstrap, topic, 0, build_batch(good2))
    assert not accepted, f"invalid batches were accepted: {accepted} (all results: {results})"
    assert not odd, f"unexpected error codes: {odd} (all results: {results})"
    assert (err, base) == (NONE, 3), f"good batch afterwards: {(err, base)}, expected (0, 3)"
    assert_stored(broker.bootstrap, topic, 0, good1 + good2)
    g.check("invalid batches")


def _batch_of_size(size: int, tag: str, compression: int = 0) -> bytes:
    """An uncompressed one-record batch of exactly ``size`` bytes (log overhead included)."""
    n = max(size - 100, 0)
    for _ in range(20):
        b = build_batch([Rec(tag.encode(), b"v" * n, [], int(time.time() * 1000) - 1000)], compression)
        if len(b) == size:
            return b
        n += size - len(b)
    raise AssertionError(f"could not build a batch of {size} bytes")


def test_message_too_large(broker, versions):
    """max.message.bytes applies to the batch as sent, log overhead (offset + length) included:
    Kafka accepts a 1024-byte batch on a topic with max.message.bytes=1024 and rejects 1025."""
    topic = unique("too-large")
    create_topic(broker.bootstrap, versions, topic, configs={"max.message.bytes": "1024"})
    good = recs(3, "good", value_size=100)
    assert produce_when_ready(broker.bootstrap, topic, 0, build_batch(good)) == 0
    stored = list(good)
    g = Guard(broker)

    exact = _batch_of_size(1024, "exact")
    assert len(exact) == 1024
    err, base = produce(broker.bootstrap, topic, 0, exact)
    assert (err, base) == (NONE, 3), f"a batch of exactly max.message.bytes: {(err, base)}"
    stored += parse_batches(exact)

    for size in (1025, 2000, 200_000):
        err, _ = produce(broker.bootstrap, topic, 0, _batch_of_size(size, f"big{size}"))
        assert err == MESSAGE_TOO_LARGE, f"batch of {size} bytes: error {err}, expected {MESSAGE_TOO_LARGE}"
    many = recs(40, "many", start=100, value_size=50)  # many small records, one batch > 1024
    err, _ = produce(broker.bootstrap, topic, 0, build_batch(many))
    assert err == MESSAGE_TOO_LARGE, f"40-record batch of {len(build_batch(many))} bytes: error {err}"

    # A gzip batch under the limit that inflates far beyond it is fine: the limit is on the batch as sent.
    big_values = [Rec(f"z{i}".encode(), b"z" * 4000, [("h", b"1")], int(time.time() * 1000) - 500)
                  for i in range(5)]
    zbatch = build_batch(big_values, compression=1)
    assert len(zbatch) <= 1024, len(zbatch)
    err, base = produce(broker.bootstrap, topic, 0, zbatch)
    assert (err, base) == (NONE, len(stored)), f"small gzip batch of 20 kB of records: {(err, base)}"
    stored += big_values

    assert_stored(broker.bootstrap, topic, 0, stored)
    g.check("too-large batches")


def test_unknown_topic_with_auto_create_off(broker, versions):
    topic = unique("missing")
    err, _ = produce(broker.bootstrap, topic, 0, build_batch(recs(2, "x")))
    assert err == UNKNOWN_TOPIC_OR_PARTITION, f"produce to an unknown topic: error {err}"
    # Metadata for it (v4+ would also carry allow_auto_topic_creation; v1 means "create if the
    # broker auto-creates", which it must not do here).
    with Conn(broker.bootstrap) as c:
        r = c.request(METADATA, 1, W().array(1).string(topic).done())
        for _ in range(r.array()):
            r.i32(), r.string(), r.i32(), r.string()
        r.i32()
        assert r.array() == 1
        err = r.i16()
        name = r.string()
        assert (name, err) == (topic, UNKNOWN_TOPIC_OR_PARTITION), f"Metadata for {topic}: {(name, err)}"
    assert not topic_exists(broker.bootstrap, topic), "the unknown topic was auto-created"

    # An existing topic, a partition it does not have.
    existing = unique("one-partition")
    create_topic(broker.bootstrap, versions, existing)
    good = recs(2, "good")
    assert produce_when_ready(broker.bootstrap, existing, 0, build_batch(good)) == 0
    for p in (1, 7, -1):
        err, _ = produce(broker.bootstrap, existing, p, build_batch(recs(2, "x")))
        assert err == UNKNOWN_TOPIC_OR_PARTITION, f"partition {p} of a 1-partition topic: error {err}"
    res = produce_multi(broker.bootstrap, {existing: {0: build_batch(recs(1, "more", start=2))},
                                           topic: {0: build_batch(recs(1, "y"))}})
    assert res[(existing, 0)] == (NONE, 2), res
    assert res[(topic, 0)][0] == UNKNOWN_TOPIC_OR_PARTITION, res
    assert_stored(broker.bootstrap, existing, 0, good + recs(1, "more", start=2))
    assert not topic_exists(broker.bootstrap, topic), "the unknown topic was auto-created"


INVALID_NAMES = ["bad name!", "a" * 300, "a" * 250, "", ".", "..", "bad/slash", "tab\there", "ünïcode"]


@pytest.mark.parametrize("name", INVALID_NAMES,
                         ids=["space-bang", "300chars", "250chars", "empty", "dot", "dotdot", "slash", "tab", "unicode"])
def test_invalid_topic_name(broker, versions, name):
    res = create_topics_raw(broker.bootstrap, versions, [(name, 1, 1, {})])
    assert len(res) == 1 and res[0][1] == INVALID_TOPIC_EXCEPTION, (
        f"CreateTopics {name!r}: {res}, expected error {INVALID_TOPIC_EXCEPTION}")
    assert not topic_exists(broker.bootstrap, name)


def test_invalid_topic_name_next_to_a_valid_one(broker, versions):
    """Errors are per topic: the valid one is created, the invalid one is not; the 249-character
    name (Kafka's maximum) is valid."""
    ok1 = unique("valid")
    ok2 = "c" * 249
    res = create_topics_raw(broker.bootstrap, versions,
                            [(ok1, 1, 1, {}), ("bad name!", 1, 1, {}), (ok2, 1, 1, {})])
    assert {(n, e) for n, e, _ in res} == {(ok1, NONE), ("bad name!", INVALID_TOPIC_EXCEPTION), (ok2, NONE)}, res
    assert topic_exists(broker.bootstrap, ok1) and topic_exists(broker.bootstrap, ok2)
    assert not topic_exists(broker.bootstrap, "bad name!")
    good = recs(2, "good")
    assert produce_when_ready(broker.bootstrap, ok1, 0, build_batch(good)) == 0
    assert_stored(broker.bootstrap, ok1, 0, good)


def test_invalid_topic_name_via_confluent_admin(broker):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = admin.create_topics([NewTopic("bad name!", num_partitions=1, replication_factor=1)],
                             request_timeout=30)
    with pytest.raises(KafkaException) as ei:
        fs["bad name!"].result(timeout=60)
    err = ei.value.args[0]
    assert err.code() == KafkaError.TOPIC_EXCEPTION == INVALID_TOPIC_EXCEPTION, f"got {err}"


# ====================================================================== under load

def test_hostile_connections_while_a_producer_keeps_producing(broker, versions):
    """A confluent-kafka producer (acks=all) keeps producing while other connections send every
    kind of bad input: all its records are acknowledged and stored, in order."""
    from confluent_kafka import Producer
    topic = unique("busy")
    create_topic(broker.bootstrap, versions, topic)
    assert produce_when_ready(broker.bootstrap, topic, 0, build_batch(recs(1, "first"))) == 0
    g = Guard(broker)

    delivered: list[tuple[int, bytes]] = []
    errors: list[str] = []
    stop = threading.Event()
    produced = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.offset(), msg.value()))

    def run_producer():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                      "batch.size": 65536, "message.timeout.ms": 60000, "compression.type": "none"})
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, key=f"k{i}".encode(), value=f"value-{i}".encode(), partition=0,
                          on_delivery=on_delivery)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
            if i % 200 == 0:
                time.sleep(0.02)  # ~10k records/s at most: keeps the fetch-back check quick
        produced[0] = i
        left = p.flush(60)
        if left:
            errors.append(f"{left} records undelivered after flush")
        del p

    t = threading.Thread(target=run_producer, daemon=True)
    t.start()
    # One hostile connection stays mid-frame for the whole test.
    stuck = Conn(broker.bootstrap)
    stuck.send_raw(struct.pack(">i", 1000) + b"\x00" * 10)
    hostile_cases = _hostile_array_cases(versions)
    rnd = random.Random(7)
    started = time.monotonic()
    rounds = 0
    try:
        while rounds < 3 or time.monotonic() - started < 8:  # at least 8 s of abuse
            rounds += 1
            for name, key, v, flex, body in hostile_cases:
                with Conn(broker.bootstrap) as c:
                    corr = c.send(key, v, body, flexible=flex)
                    c.outcome(corr)
            for _ in range(5):
                with Conn(broker.bootstrap) as c:
                    try:
                        c.send_raw(struct.pack(">i", 1 << 30) + rnd.randbytes(1000))
                    except OSError:
                        pass
                    c.wait_closed()
                with Conn(broker.bootstrap) as c:
                    try:
                        c.send_raw(rnd.randbytes(4096))
                        c.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    c.wait_closed()
                with Conn(broker.bootstrap) as c:
                    c.send(9999, 0, b"\x00" * 8)
                    c.outcome(c.corr)
                with Conn(broker.bootstrap) as c:
                    c.send_raw(struct.pack(">i", 100) + b"\x00" * 10)
            bad = bytearray(build_batch(recs(2, "bad")))
            bad[70] ^= 0xFF
            assert produce(broker.bootstrap, topic, 0, bytes(bad))[0] == CORRUPT_MESSAGE
            time.sleep(0.2)
    finally:
        stop.set()
        t.join(120)
        stuck.close()
    assert not t.is_alive(), "producer thread did not finish"
    assert not errors, f"producer errors while hostile connections ran: {errors[:10]}"
    assert produced[0] > 100 and len(delivered) == produced[0], (
        f"produced {produced[0]}, delivered {len(delivered)}")
    delivered.sort()
    assert [o for o, _ in delivered] == list(range(1, 1 + len(delivered))), "acknowledged offsets not contiguous"
    hw, stored = fetch_all(broker.bootstrap, topic, 0)
    assert hw == 1 + len(delivered), f"high watermark {hw}, expected {1 + len(delivered)}"
    assert [(s.offset, s.value) for s in stored[1:]] == delivered, "stored records differ from acknowledged ones"
    print(f"{rounds} rounds of hostile connections; {len(delivered)} records acknowledged meanwhile")
    g.check("hostile connections under load")


def test_slow_readers_pipelining_large_fetches_hold_no_record_bytes(broker, versions):
    """Fetch responses are sent from the segment files (zero-copy), so clients that pipeline
    large fetches and never read their sockets cost the broker almost no memory: 4 connections
    x 64 fetches of a 20 MB partition. (Before, every queued response held its records in
    memory, up to the 64 MiB reply budget per connection: this grew the RSS by ~300 MB.) The first
    replies are then read back: in order, and whole."""
    topic = unique("slow-reader")
    create_topic(broker.bootstrap, versions, topic)
    batch_size = 900_000  # under this module's socket.request.max.bytes
    assert produce_when_ready(broker.bootstrap, topic, 0, _batch_of_size(batch_size, "big0")) == 0
    for i in range(1, 22):
        err, _ = produce(broker.bootstrap, topic, 0, _batch_of_size(batch_size, f"big{i}"))
        assert err == NONE
    g = Guard(broker, budget_kb=48 * 1024)
    body = (W().i32(-1).i32(0).i32(1).i32(64 << 20).i8(0)  # Fetch v4, whole partition
            .array(1).string(topic).array(1).i32(0).i64(0).i32(32 << 20).done())
    conns = []
    try:
        for _ in range(4):
            c = Conn(broker.bootstrap)
            for _ in range(64):
                c.send(FETCH, 4, body)
            conns.append(c)
        time.sleep(2)  # let the broker queue everything it will queue
        g.check("4 x 64 unread pipelined fetches of 20 MB")
        # The replies are all there, in order, when the client finally reads.
        c = conns[0]
        for i in range(2):
            frame = c.recv_frame()
            (corr,) = struct.unpack_from(">i", frame)
            assert corr == i + 1, f"reply {i} carries correlation id {corr}"
            assert len(frame) > 22 * batch_size, f"a fetch response of only {len(frame)} bytes"
    finally:
        for c in conns:
            c.close()


def test_zz_broker_survived_everything(broker):
    """Last in the module: still the same process, no panic on stderr."""
    assert broker.is_running(), f"broker exited: {broker.proc.poll()}"
    assert broker.starts == 1
    assert not broker.panics(), "broker panicked:\n" + "\n".join(broker.panics()[:20])
    api_versions_roundtrip(broker.bootstrap)
