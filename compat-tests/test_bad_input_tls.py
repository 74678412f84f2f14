"""Bad input over TLS: ``test_bad_input.py``'s hostile frames sent inside TLS sessions.

Issue 13, "Bad input": the hostile-frame tests run on a TLS listener too. On an SSL listener
Ottla reads requests through rustls instead of straight off the TCP socket, so the framing
code sees the same bytes through a different reader (records of at most 16 kB, a close_notify
or a TLS error instead of a plain EOF). Every frame here is built with ``test_bad_input``'s
encoders and sent as application data of an established TLS session (the client
verifies the broker's certificate against the test CA); each test asserts what its plaintext
counterpart asserts, then that the broker still answers ApiVersions on a FRESH TLS connection
and on its PLAINTEXT listener, and that its RSS (VmRSS and the peak, VmHWM) grew by less than
``test_bad_input.MEMORY_BUDGET_KB`` (conftest's ``status_kb``).

The client side of TLS is an ``ssl.SSLObject`` over memory BIOs on a plain TCP socket
(``TlsSock``): the bytes are exactly the ones ``ssl.SSLSocket`` would send, but the test also
controls the TCP socket, so it can half-close a session (close_notify, then FIN) as the
plaintext tests half-close a socket, cut the connection in the middle of a TLS record, and
look for a close without consuming a reply.

One broker for the whole module: ``listeners=PLAINTEXT://..,SSL://..`` (PLAINTEXT first:
conftest's readiness check uses it), ``ssl.keystore.type=PEM`` with ``test_security``'s
``certs.server_keystore``, ``socket.request.max.bytes=1048576``,
``auto.create.topics.enable=false``, as ``test_bad_input``'s broker.

* ``test_api_versions_baseline``: ApiVersions v0 and v3 over TLS list the same versions as
  ApiVersions v0 over PLAINTEXT (the round trips every other test relies on).
* ``test_frame_larger_than_socket_request_max_bytes``: size prefixes of 1 GiB,
  ``socket.request.max.bytes`` + 1 and 2 GiB - 1, followed by 64 kB more: the TLS connection is
  closed without a reply, before the broker waits for (or allocates) the frame.
* ``test_negative_or_tiny_size_prefix``: size prefixes -1, -2^31, 0, 1 and 3 (with that many
  bytes): the connection is closed without a reply.
* ``test_truncated_frame_does_not_affect_others``: a TLS connection stuck 10 bytes into a
  100-byte frame and 50 more stuck mid-frame (10 of them in the middle of a TLS record) do not
  hold up an established TLS connection, new TLS connections or the PLAINTEXT listener; a frame
  cut in its body followed by close_notify + FIN, and a TLS record cut in half followed by a
  FIN, each get their connection closed.
* ``test_unknown_api_key``: api keys 9999, 1000, 32767 and -1: closed without an answer.
* ``test_known_key_unsupported_version``: Produce v99, Metadata v999, Fetch v32767, Produce v-1:
  closed without an answer.
* ``test_api_versions_unsupported_version_gets_v0_error_response``: ApiVersions v99 and v32767
  are answered in the v0 format with UNSUPPORTED_VERSION (35) and the advertised ranges, and
  the same TLS connection then serves the retry.
* ``test_garbage_bytes``: 4 kB of random bytes (six seeds: random, a plausible size prefix, a
  real Metadata header, a real flexible ApiVersions header in front of garbage) as application
  data of an established session: the connection is closed, at the latest once the client
  half-closes its TLS session; at most 10 log lines each.
* ``test_hostile_array_lengths``: ``test_bad_input._hostile_array_cases`` (array counts, string
  and bytes lengths far beyond the frame in Metadata, CreateTopics, Produce, DeleteTopics,
  ListOffsets, Fetch, ApiVersions, classic and flexible) and the header cases (tagged-field
  count and size, client id longer than the frame): every connection is closed, none answered,
  memory bounded after each.
* ``test_hostile_arrays_many_connections_at_once``: the same frames on 40 TLS connections at
  once: all closed, memory bounded.
* ``test_zy_broker_survived_everything``: still the first process, no panic on stderr, ApiVersions
  answered over TLS and PLAINTEXT.
* ``test_zz_tls_client_still_produces_and_reads_back``: confluent-kafka with
  ``security.protocol=SSL`` and ``ssl.ca.location=certs.ca`` creates a 2-partition topic,
  produces 300 records (keys, binary values, headers, timestamps) and reads every field back at
  the acknowledged offsets, all over the SSL listener.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import ssl
import struct
import time

import pytest

from conftest import Ottla, stop_module_broker
from test_bad_input import (
    API_VERSIONS,
    assert_api_versions_v0_fallback,
    CREATE_TOPICS,
    FETCH,
    FIRST_FLEXIBLE,
    IO_TIMEOUT,
    MAX_REQUEST,
    METADATA,
    MEMORY_BUDGET_KB,
    NONE,
    PRODUCE,
    Closed,
    Conn,
    Guard,
    W,
    _hostile_array_cases,
    api_versions_roundtrip,
    api_versions_v0_body,
    framed,
    produce_body,
    request_header,
    uvarint,
)
from test_security import (  # noqa: F401 - certs is a fixture
    HOST,
    certs,
    ck_conf,
    ck_roundtrip,
    distinct_ports,
    listeners_value,
    start_module_secure,
    tls_context,
)

TLS_RECORD_CHUNK = 16 * 1024  # application bytes handed to the TLS layer at a time


# ====================================================================== TLS connections

class TlsSock:
    """The client end of a TLS session on a plain TCP socket: ``ssl.SSLObject`` over memory BIOs.

    It offers what ``test_bad_input.Conn`` uses of a socket (``sendall``, ``recv``,
    ``settimeout``, ``close``); ``recv`` returns b"" once the session ends (close_notify, a
    TLS alert, or a TCP EOF without close_notify; ``end`` says which) and lets
    ``ConnectionResetError`` and ``socket.timeout`` through as a plain socket does."""

    def __init__(self, port: int, ctx: ssl.SSLContext, timeout: float = IO_TIMEOUT):
        self.raw = socket.create_connection((HOST, port), timeout=timeout)
        self.raw.settimeout(timeout)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)
        self.pending = bytearray()  # application bytes read ahead by is_open()
        self.end: str | None = None  # how the session ended, once it has
        try:
            while True:
                try:
                    self.tls.do_handshake()
                    self._flush()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    data = self.raw.recv(65536)
                    if not data:
                        raise ConnectionError("the broker closed the connection during the TLS handshake")
                    self.incoming.write(data)
        except BaseException:
            self.raw.close()
            raise

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def close(self) -> None:
        self.raw.close()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.sendall(data)

    def _flush_quietly(self) -> None:
        """While reading: TLS bytes owed to the broker (a KeyUpdate answer, say) go out if
        the connection still takes them; if not, reading goes on to find the close."""
        try:
            self._flush()
        except OSError:
            pass

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.tls.write(view[:TLS_RECORD_CHUNK])
            view = view[n:]
            self._flush()

    def send_partial_record(self, data: bytes) -> None:
        """Encrypt ``data`` (one TLS record) but send only the first half of the record."""
        assert 0 < len(data) <= TLS_RECORD_CHUNK
        self.tls.write(data)
        record = self.outgoing.read()
        assert len(record) > len(data), f"{len(record)} bytes of TLS record for {len(data)} bytes of data"
        self.raw.sendall(record[:len(record) // 2])

    def recv(self, n: int) -> bytes:
        if self.pending:
            out = bytes(self.pending[:n])
            del self.pending[:n]
            return out
        while self.end is None:
            try:
                data = self.tls.read(n)
            except ssl.SSLWantReadError:
                self._flush_quietly()
                raw = self.raw.recv(65536)  # socket.timeout, ConnectionResetError: the caller's
                if raw:
                    self.incoming.write(raw)
                else:
                    self.incoming.write_eof()
                continue
            except ssl.SSLZeroReturnError:
                self.end = "close_notify"
                break
            except ssl.SSLEOFError:
                self.end = "TCP EOF without close_notify"
                break
            except ssl.SSLError as e:  # a TLS alert from the broker
                self.end = f"TLS error {e!r}"
                break
            self._flush_quietly()
            if data:
                return data
            self.end = "close_notify"
        return b""

    def is_open(self, wait: float) -> bool:
        """True unless the session ends within ``wait`` s; application data that arrives
        meanwhile is kept for ``recv`` (the TLS counterpart of a MSG_PEEK)."""
        if self.pending:
            return True
        old = self.raw.gettimeout()
        self.raw.settimeout(wait)
        try:
            data = self.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            return False
        finally:
            self.raw.settimeout(old)
        if not data:
            return False
        self.pending += data
        return True

    def half_close(self) -> None:
        """End the client's side as a TLS client does: close_notify, then a TCP FIN. The
        broker's side stays readable."""
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify is queued; the broker's is not awaited
        except ssl.SSLError:
            pass
        try:
            self._flush()
            self.raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed by the broker


@dataclasses.dataclass
class TlsBroker:
    ottla: Ottla
    ports: dict[str, int]
    ctx: ssl.SSLContext

    @property
    def ssl_port(self) -> int:
        return self.ports["SSL"]

    @property
    def plain(self) -> str:
        return f"{HOST}:{self.ports['PLAINTEXT']}"

    def addr(self, listener: str) -> str:
        return f"{HOST}:{self.ports[listener]}"


class TlsConn(Conn):
    """``test_bad_input.Conn`` (send, request, outcome, wait_closed, ...) over a TLS session
    with the broker's SSL listener."""

    def __init__(self, tb: TlsBroker, timeout: float = IO_TIMEOUT):
        self.sock = TlsSock(tb.ssl_port, tb.ctx, timeout)
        self.corr = 0

    def is_open(self, wait: float = 0.5) -> bool:
        return self.sock.is_open(wait)

    def half_close(self) -> None:
        self.sock.half_close()


def tls_api_versions(tb: TlsBroker) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 on a new TLS connection: {api key: (min, max)}."""
    with TlsConn(tb) as c:
        corr = c.send(API_VERSIONS, 0, b"")
        payload = c.recv_frame()
    (got,) = struct.unpack_from(">i", payload)
    assert got == corr, f"correlation id {got}, expected {corr}"
    err, keys = api_versions_v0_body(payload[4:])
    assert err == NONE, f"ApiVersions v0 over TLS: error {err}"
    return keys


class TlsGuard(Guard):
    """``test_bad_input.Guard`` plus a fresh TLS connection: after a hostile action the process
    lives, ApiVersions is answered over TLS and over PLAINTEXT, VmHWM / VmRSS grew by less than
    the budget, the log did not flood."""

    def __init__(self, tb: TlsBroker, budget_kb: int = MEMORY_BUDGET_KB, max_log_lines: int | None = None):
        super().__init__(tb.ottla, budget_kb=budget_kb, max_log_lines=max_log_lines)
        self.tb = tb

    def check(self, what: str) -> None:
        b = self.broker
        assert b.is_running(), f"{what}: broker died (exit {b.proc.poll()}); stderr:\n{b.stderr_tail(40)}"
        try:
            keys = tls_api_versions(self.tb)
        except (OSError, Closed, AssertionError) as e:
            pytest.fail(f"{what}: a fresh TLS connection no longer gets an ApiVersions answer: {e!r}")
        assert PRODUCE in keys, f"{what}: ApiVersions over TLS without Produce: {keys}"
        super().check(what)  # PLAINTEXT ApiVersions, memory, log lines


def assert_closed_without_reply(c: TlsConn, what: str) -> None:
    got = c.wait_closed()
    assert not got, (f"{what}: the broker sent {len(got)} bytes of application data before closing "
                     f"({got[:32].hex()}); Kafka closes without a reply")


# ====================================================================== the broker

@pytest.fixture(scope="module")
def tls_broker(request, tmp_path_factory, certs) -> TlsBroker:
    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    b = start_module_secure(request, tmp_path_factory, "ottla-bad-input-tls", ports, {
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": certs.server_keystore,
        "socket.request.max.bytes": str(MAX_REQUEST),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    })
    yield TlsBroker(b, ports, tls_context(certs))
    stop_module_broker(b, "ottla-bad-input-tls")


@pytest.fixture(scope="module")
def versions(tls_broker) -> dict[int, tuple[int, int]]:
    v = tls_api_versions(tls_broker)
    plain = api_versions_roundtrip(tls_broker.plain)
    assert v == plain, f"ApiVersions over TLS {v} differs from PLAINTEXT {plain}"
    for key, needed in ((PRODUCE, 3), (FETCH, 4), (METADATA, 1)):
        assert key in v and v[key][0] <= needed <= v[key][1], (
            f"api key {key} v{needed} is used by these tests but the broker advertises {v.get(key)}")
    assert CREATE_TOPICS in v, "CreateTopics not advertised"
    return v


# ====================================================================== framing

def test_api_versions_baseline(tls_broker, versions):
    assert versions[API_VERSIONS][0] == 0, f"ApiVersions v0 should stay supported: {versions[API_VERSIONS]}"
    if versions[API_VERSIONS][1] >= 3:
        with TlsConn(tls_broker) as c:
            body = W(True).string("ottla-bad-input-tls").string("1.0").tags().done()
            r = c.request(API_VERSIONS, 3, body, flexible=True)
            r.flex = True
            assert r.i16() == NONE
            keys = {}
            for _ in range(r.array()):
                k, lo, mx = r.i16(), r.i16(), r.i16()
                r.tags()
                keys[k] = (lo, mx)
            assert keys == versions, f"ApiVersions v3 and v0 over TLS disagree: {keys} vs {versions}"


@pytest.mark.parametrize("size", [1 << 30, MAX_REQUEST + 1, 0x7FFFFFFF], ids=["1GiB", "max+1", "2GiB-1"])
def test_frame_larger_than_socket_request_max_bytes(tls_broker, size):
    """Kafka: InvalidReceiveException, the connection is closed before anything is allocated."""
    g = TlsGuard(tls_broker, max_log_lines=10)
    with TlsConn(tls_broker) as c:
        c.send_raw(struct.pack(">i", size) + request_header(API_VERSIONS, 0, 1))
        try:
            c.send_raw(os.urandom(64 * 1024))  # keep feeding: the broker must not wait for the rest
        except OSError:
            pass  # already closed: fine
        assert_closed_without_reply(c, f"size prefix {size}")
    g.check(f"size prefix {size} over TLS")


@pytest.mark.parametrize("size", [-1, -0x80000000, 0, 1, 3])
def test_negative_or_tiny_size_prefix(tls_broker, size):
    """A negative size is invalid; a frame too short for a request header cannot be parsed."""
    g = TlsGuard(tls_broker, max_log_lines=10)
    with TlsConn(tls_broker) as c:
        c.send_raw(struct.pack(">i", size) + b"\x00" * max(size, 0))
        assert_closed_without_reply(c, f"size prefix {size}")
    g.check(f"size prefix {size} over TLS")


def test_truncated_frame_does_not_affect_others(tls_broker):
    """Size says 100, 10 bytes arrive, then the client goes quiet / closes; some connections
    stop in the middle of a TLS record instead."""
    tb = tls_broker
    g = TlsGuard(tb)
    with TlsConn(tb) as healthy:
        def roundtrip():
            r = healthy.request(API_VERSIONS, 0, b"")
            assert r.i16() == NONE
        roundtrip()
        hostile = TlsConn(tb)
        stalled: list[TlsConn] = []
        try:
            hostile.send_raw(struct.pack(">i", 100) + request_header(METADATA, 1, 1)[:10])
            for i in range(50):
                s = TlsConn(tb)
                stalled.append(s)
                data = struct.pack(">i", 100 + i) + os.urandom(10)
                if i % 5 == 4:
                    s.sock.send_partial_record(data)  # the broker holds half a TLS record
                else:
                    s.send_raw(data)
            roundtrip()  # the same healthy connection keeps working while others are stuck
            assert PRODUCE in tls_api_versions(tb)  # and so do new TLS connections
            assert PRODUCE in api_versions_roundtrip(tb.plain)  # and the PLAINTEXT listener
            assert all(s.is_open(0.1) for s in stalled[:5]), "a stalled connection was closed early"
        finally:
            hostile.close()
            for s in stalled:
                s.close()
        roundtrip()
        # Truncated in the middle of a request body: a Metadata v1 frame whose size covers the
        # header and 2 of the 4 bytes of the topics array length, then the client ends its TLS
        # session (close_notify + FIN).
        with TlsConn(tb) as t:
            payload = request_header(METADATA, 1, 7) + b"\x00\x00"
            t.send_raw(struct.pack(">i", len(payload) + 2) + payload)
            t.half_close()
            assert_closed_without_reply(t, "frame truncated by close_notify")
        # The frame's last bytes in a TLS record cut in half, then a FIN without close_notify.
        with TlsConn(tb) as t:
            payload = request_header(METADATA, 1, 8) + struct.pack(">i", -1)
            t.send_raw(struct.pack(">i", len(payload)) + payload[:6])
            t.sock.send_partial_record(payload[6:])
            t.sock.raw.shutdown(socket.SHUT_WR)
            assert_closed_without_reply(t, "TLS record truncated by a FIN")
        roundtrip()
    g.check("truncated frames over TLS")


@pytest.mark.parametrize("api_key", [9999, 1000, 32767, -1])
def test_unknown_api_key(tls_broker, api_key):
    """Kafka cannot parse the header of an unknown key and closes the connection."""
    g = TlsGuard(tls_broker, max_log_lines=10)
    with TlsConn(tls_broker) as c:
        corr = c.send(api_key, 0, b"\x00" * 16)
        kind, payload = c.outcome(corr)
    assert kind == "closed", f"api key {api_key} over TLS: answered {payload[:32]!r}; Kafka closes the connection"
    g.check(f"api key {api_key} over TLS")


@pytest.mark.parametrize("api_key,version", [(PRODUCE, 99), (METADATA, 999), (FETCH, 32767), (PRODUCE, -1)])
def test_known_key_unsupported_version(tls_broker, versions, api_key, version):
    """Kafka closes the connection: it cannot know the body layout of a version it lacks."""
    g = TlsGuard(tls_broker, max_log_lines=10)
    with TlsConn(tls_broker) as c:
        corr = c.send(api_key, version, produce_body({"x": {0: b""}}))
        kind, payload = c.outcome(corr)
    assert kind == "closed", (
        f"api key {api_key} v{version} over TLS: answered {payload[:32]!r}; Kafka closes the connection")
    g.check(f"api key {api_key} v{version} over TLS")


@pytest.mark.parametrize("version", [99, 32767])
def test_api_versions_unsupported_version_gets_v0_error_response(tls_broker, versions, version):
    """The v0-format answer with UNSUPPORTED_VERSION (35) and the advertised ranges; the same
    TLS connection then serves the retry."""
    g = TlsGuard(tls_broker, max_log_lines=10)
    with TlsConn(tls_broker) as c:
        assert_api_versions_v0_fallback(c, versions, version, "ottla-bad-input-tls")
    g.check(f"ApiVersions v{version} over TLS")


@pytest.mark.parametrize("seed", range(6))
def test_garbage_bytes(tls_broker, seed):
    """4 KB of random bytes inside the TLS session: the connection is closed (at the latest
    when the client ends its session and the broker sees EOF mid-frame); the broker stays up
    and logs little."""
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
    g = TlsGuard(tls_broker, max_log_lines=10)
    with TlsConn(tls_broker) as c:
        try:
            c.send_raw(bytes(data))
        except OSError:
            pass
        closed = not c.is_open(3.0)
        if not closed:
            c.half_close()
            c.wait_closed()
    g.check(f"garbage seed {seed} over TLS")


def test_hostile_array_lengths(tls_broker, versions):
    """Every count/length far larger than the frame: the connection is closed and memory does
    not balloon."""
    tb = tls_broker
    cases = _hostile_array_cases(versions)
    assert len(cases) >= 8, f"too few cases for the advertised versions {versions}"
    flex_md = versions[METADATA][1] if versions[METADATA][1] >= FIRST_FLEXIBLE[METADATA] else 12
    header_cases = [
        ("header-tag-count", struct.pack(">hhih", METADATA, flex_md, 5, 1) + b"x" + uvarint(0x7FFFFFFF) + b"\x00"),
        ("header-tag-size", struct.pack(">hhih", METADATA, flex_md, 5, 1) + b"x" + b"\x01\x00"
         + uvarint(0x7FFFFFFF) + b"ab"),
        ("header-client-id-longer-than-frame", struct.pack(">hhih", METADATA, 1, 5, 0x7FFF) + b"abc"),
    ]
    answered = {}  # cases not closed: name -> how they ended
    g_all = TlsGuard(tb)
    for name, key, v, flex, body in cases:
        g = TlsGuard(tb)
        with TlsConn(tb) as c:
            corr = c.send(key, v, body, flexible=flex)
            kind, _ = c.outcome(corr)
        if kind != "closed":
            answered[name] = f"v{v}:{kind}"
        g.check(f"{name} (api {key} v{v}) over TLS")
    for name, payload in header_cases:
        g = TlsGuard(tb)
        with TlsConn(tb) as c:
            c.send_raw(framed(payload))
            kind, _ = c.outcome(5)
        if kind != "closed":
            answered[name] = kind
        g.check(f"{name} over TLS")
    g_all.check("all hostile array cases over TLS")
    assert not answered, f"answered instead of closed over TLS: {answered}"


def test_hostile_arrays_many_connections_at_once(tls_broker, versions):
    """The same frames on 40 TLS connections at once: every connection is closed and memory
    stays bounded."""
    cases = _hostile_array_cases(versions)
    g = TlsGuard(tls_broker)
    conns = []
    try:
        for i in range(40):
            _name, key, v, flex, body = cases[i % len(cases)]
            c = TlsConn(tls_broker)
            conns.append(c)
            c.send(key, v, body, flexible=flex)
        kinds = [c.outcome(c.corr)[0] for c in conns]
    finally:
        for c in conns:
            c.close()
    assert kinds == ["closed"] * len(conns), kinds
    g.check("40 concurrent hostile frames over TLS")


# ====================================================================== afterwards

def test_zy_broker_survived_everything(tls_broker):
    """Still the same process, no panic on stderr, both listeners answer."""
    b = tls_broker.ottla
    assert b.is_running(), f"broker exited: {b.proc.poll()}"
    assert b.starts == 1
    assert not b.panics(), "broker panicked:\n" + "\n".join(b.panics()[:20])
    assert tls_api_versions(tls_broker) == api_versions_roundtrip(tls_broker.plain)


def test_zz_tls_client_still_produces_and_reads_back(tls_broker, certs):
    """confluent-kafka over SSL (server certificate verified against the CA): a new topic, 300
    records produced and every field read back at the acknowledged offsets."""
    started = time.monotonic()
    ck_roundtrip(tls_broker.addr("SSL"), ck_conf(certs, "SSL"), "bad-input-tls-ck")
    assert tls_broker.ottla.is_running()
    print(f"confluent-kafka SSL round trip in {time.monotonic() - started:.1f} s")
