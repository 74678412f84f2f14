"""ApiVersions advertises exactly what the broker serves, checked over raw sockets.

The broker's ApiVersions table is read, and then:

* ``test_every_advertised_version_is_served``: every advertised API key is sent a
  minimal request (empty lists and schema defaults, a few fields set so that the
  request is one Kafka would accept) at its lowest and its highest advertised version.
  Each gets a response frame with the request's correlation id that decodes completely
  as that version's response. No error code anywhere in the response is
  UNSUPPORTED_VERSION (35), and the connection stays open: an ApiVersions round trip on
  the same socket follows. Produce is the exception that Kafka 4 also makes. It is
  advertised from v0 so that librdkafka enables compression (KAFKA-18659,
  ``ApiKeys.PRODUCE_API_VERSIONS_RESPONSE_MIN_VERSION``), but it is served from v3, and
  v0-2 close the connection as Kafka's request parsing does. On this PLAINTEXT listener,
  SaslHandshake and SaslAuthenticate are served with ILLEGAL_SASL_STATE (34), as
  Kafka's ``KafkaApis`` answers them.
* ``test_one_version_above_each_max_is_refused``: the version just above each advertised
  maximum closes the connection without a response, as Kafka does when it cannot parse
  a request. ApiVersions is the exception: it gets the documented v0 response with
  UNSUPPORTED_VERSION and the full table (KIP-511). The broker then still serves a new
  connection.
* ``test_apis_not_advertised_are_not_served``: a key Kafka 4.1 defines but this table
  leaves out (DescribeClientQuotas, UpdateFeatures, ...) closes the connection, so the
  table is not merely a subset of what is served.

The requests and responses are kafka-python 3's classes, generated from Kafka's own
message schemas (``kafka/protocol/schemas/resources/*.json``). kafka-python ships no
schema for the KIP-848 consumer group APIs, ConsumerGroupHeartbeat (68) and
ConsumerGroupDescribe (69), so Kafka 4.1's JSON schemas for them are shipped here in
``kafka_schemas/`` (unchanged, license headers included) and loaded through
kafka-python's own machinery (the ``load_json=`` class keyword of ``ApiMessage``).
After a FindCoordinator for the group (as a client does first; before it the broker has
no group coordinator and answers NOT_COORDINATOR, as Kafka does), ConsumerGroupHeartbeat
joins the group (member epoch 0, a client-generated member id as v1 requires, no
subscribed topics) and must be answered without an error and with an assignment, and
ConsumerGroupDescribe must describe that group without an error.
"""

from __future__ import annotations

import importlib
import socket
import struct
import time
import uuid

import pytest
from kafka.protocol.api_message import ApiMessage

import kafka_schemas
from conftest import api_versions_v0

IO_TIMEOUT = 15.0
UNSUPPORTED_VERSION = 35
ILLEGAL_SASL_STATE = 34
PRODUCE, API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 0, 18, 17, 36
FIND_COORDINATOR, DESCRIBE_ACLS = 10, 29
CONSUMER_GROUP_HEARTBEAT, CONSUMER_GROUP_DESCRIBE = 68, 69
GROUP_ID = "ottla-api-versions-test"
# Kafka 4 advertises Produce from v0 (KAFKA-18659) but its oldest served version is 3.
PRODUCE_OLDEST_SERVED = 3


def _message_classes() -> tuple[dict[int, type], dict[int, type]]:
    """{api_key: request class}, {api_key: response class} of every message kafka-python
    generates from Kafka's schemas."""
    requests, responses = {}, {}
    for name in ("kafka.protocol.admin", "kafka.protocol.consumer", "kafka.protocol.metadata",
                 "kafka.protocol.producer", "kafka.protocol.sasl"):
        module = importlib.import_module(name)
        for attr in dir(module):
            cls = getattr(module, attr)
            if (isinstance(cls, type) and issubclass(cls, ApiMessage) and cls is not ApiMessage
                    and getattr(cls, "_json", None)):
                (requests if cls.is_request() else responses)[cls.API_KEY] = cls
    return requests, responses


# kafka-python has no schema for these; Kafka 4.1's own are in kafka_schemas/.
class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=kafka_schemas):
    pass


class ConsumerGroupHeartbeatResponse(ApiMessage, load_json=kafka_schemas):
    pass


class ConsumerGroupDescribeRequest(ApiMessage, load_json=kafka_schemas):
    pass


class ConsumerGroupDescribeResponse(ApiMessage, load_json=kafka_schemas):
    pass


REQUESTS, RESPONSES = _message_classes()
for _cls in (ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
             ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse):
    _known = REQUESTS if _cls.is_request() else RESPONSES
    assert _cls.API_KEY not in _known, f"kafka-python now has a schema for key {_cls.API_KEY}"
    _known[_cls.API_KEY] = _cls


# ---------------------------------------------------------------- raw connection


class Closed(Exception):
    """The broker closed the connection (or sent nothing) instead of answering."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(f"connection reset after {len(buf)} of {n} bytes") from e
        if not chunk:
            raise Closed(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return s


def send_frame(sock: socket.socket, request, version: int, correlation_id: int,
               header_version: int | None = None) -> None:
    """Send ``request`` encoded as ``version``; with ``header_version``, the header then
    claims that version instead (for versions the schema does not know)."""
    request.with_header(correlation_id=correlation_id, client_id="ottla-api-versions-test")
    frame = bytearray(request.encode(version=version, header=True, framed=True))
    if header_version is not None:
        struct.pack_into(">h", frame, 6, header_version)  # size(4) api_key(2) api_version(2)
    sock.sendall(bytes(frame))


def read_response(sock: socket.socket, api_key: int, version: int, correlation_id: int):
    """Read one response frame and decode it as ``version``; checks the correlation id
    and that the body decodes to its last byte."""
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    payload = _recv_exact(sock, size)
    (got,) = struct.unpack(">i", payload[:4])
    assert got == correlation_id, f"key {api_key} v{version}: correlation id {got}, sent {correlation_id}"
    cls = RESPONSES[api_key]
    if api_key == API_VERSIONS:
        # Header v0 always; an error answer is encoded as v0 (KIP-511).
        pos = 4
        (err,) = struct.unpack(">h", payload[pos:pos + 2])
        if err != 0:
            version = 0
    elif cls.flexible_version_q(version):
        # Response header v1: the correlation id, then (no) tagged fields.
        assert payload[4] == 0, f"key {api_key} v{version}: response header has tagged fields"
        pos = 5
    else:
        pos = 4
    flexible = cls.flexible_version_q(version)
    decode = cls._struct.compiled_decode_from(version, compact=flexible, tagged=flexible,
                                              data_class=cls[None])
    body, end = decode(memoryview(payload), pos)
    assert end == len(payload), (
        f"key {api_key} v{version}: the response decodes to byte {end} of {len(payload)}")
    return body


def refused(sock: socket.socket) -> str | None:
    """None when the broker closes the connection without answering; else what it did."""
    try:
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        return f"answered ({size} bytes) instead of closing the connection"
    except Closed:
        return None
    except socket.timeout:
        return f"neither answered nor closed the connection within {IO_TIMEOUT} s"


def round_trip(sock, request, version: int, correlation_id: int):
    send_frame(sock, request, version, correlation_id)
    return read_response(sock, request.API_KEY, version, correlation_id)


def still_serves(sock: socket.socket, correlation_id: int) -> None:
    """An ApiVersions v0 round trip on the same connection."""
    req = REQUESTS[API_VERSIONS](version=0)
    body = round_trip(sock, req, 0, correlation_id)
    assert body.error_code == 0 and body.api_keys


def error_codes(value, path="") -> list[tuple[str, int]]:
    """Every (field path, code) of an ``error_code`` field anywhere in a decoded message."""
    out = []
    if hasattr(value, "_struct"):
        for field in value._struct._fields:
            if value.version is not None and not field.for_version_q(value.version):
                continue
            child = getattr(value, field.name)
            if field.name == "error_code" and isinstance(child, int):
                out.append((f"{path}.{field.name}", child))
            else:
                out += error_codes(child, f"{path}.{field.name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += error_codes(item, f"{path}[{i}]")
    return out


def find_group_coordinator(broker, table: dict[int, tuple[int, int]]) -> None:
    """FindCoordinator for GROUP_ID until it is answered without an error, as a client
    does before it joins. The first one makes the broker create the group coordinator
    (``__consumer_offsets``); until then group requests get NOT_COORDINATOR, as Kafka's do."""
    version = table[FIND_COORDINATOR][1]
    req = REQUESTS[FIND_COORDINATOR](version=version)
    if version >= 4:
        req.coordinator_keys = [GROUP_ID]
    else:
        req.key = GROUP_ID
    s = connect(broker)
    try:
        for attempt in range(40):
            body = round_trip(s, req, version, 500 + attempt)
            err = body.coordinators[0].error_code if version >= 4 else body.error_code
            if err == 0:
                return
            time.sleep(0.25)
    finally:
        s.close()
    raise AssertionError(f"FindCoordinator v{version} for {GROUP_ID!r}: still error {err}")


def minimal_request(api_key: int, version: int):
    """A request of schema defaults (empty lists, empty or null strings, zeros) with the
    few fields set that make it one Kafka would accept and answer."""
    req = REQUESTS[api_key](version=version)
    if api_key == PRODUCE:
        req.acks = -1  # acks=0 is answered with no response at all
        req.timeout_ms = 1000
    elif api_key == API_VERSIONS:
        req.client_software_name = "ottla-compat-tests"  # v3+ checks these as Kafka does
        req.client_software_version = "1.0"
    elif api_key == 1:  # Fetch: answer at once
        req.max_wait_ms = 0
    elif api_key == DESCRIBE_ACLS:
        # UNKNOWN (0) filters make Kafka refuse the request while parsing it; ANY is 1.
        req.resource_type_filter = 1
        if version >= 1:
            req.pattern_type_filter = 1
        req.operation = 1
        req.permission_type = 1
    elif api_key == CONSUMER_GROUP_HEARTBEAT:
        # A join: epoch 0 with a member id the client generates (v1 refuses an empty one,
        # as KIP-1082 has it), a rebalance timeout, and an empty subscription (not null,
        # which a join may not send). Kafka answers with an (empty) assignment.
        req.group_id = GROUP_ID
        req.member_id = str(uuid.uuid4())
        req.member_epoch = 0
        req.rebalance_timeout_ms = 30000
        req.subscribed_topic_names = []
        req.topic_partitions = []
    elif api_key == CONSUMER_GROUP_DESCRIBE:
        req.group_ids = [GROUP_ID]
    return req


@pytest.fixture(scope="module")
def table(ottla_module) -> dict[int, tuple[int, int]]:
    s = connect(ottla_module)
    try:
        req = minimal_request(API_VERSIONS, 3)
        body = round_trip(s, req, 3, 1)
    finally:
        s.close()
    assert body.error_code == 0
    out = {a.api_key: (a.min_version, a.max_version) for a in body.api_keys}
    # v0 and v3 report the same table.
    assert api_versions_v0(ottla_module.host, ottla_module.port) == out
    unknown = sorted(set(out) - set(REQUESTS))
    assert not unknown, f"advertised keys kafka-python has no schema for: {unknown}"
    return out


def test_every_advertised_version_is_served(ottla_module, table):
    # So that ConsumerGroupHeartbeat joins and ConsumerGroupDescribe finds the group
    # instead of both getting NOT_COORDINATOR.
    find_group_coordinator(ottla_module, table)
    problems = []
    corr = 1000
    for api_key, (lo, hi) in sorted(table.items()):
        name = REQUESTS[api_key].name
        if api_key == PRODUCE:
            assert lo == 0, "Kafka 4 advertises Produce from v0 (KAFKA-18659)"
            lo = PRODUCE_OLDEST_SERVED
        for version in sorted({lo, hi}):
            corr += 2
            s = connect(ottla_module)
            try:
                body = round_trip(s, minimal_request(api_key, version), version, corr)
                unsupported = [(p, c) for p, c in error_codes(body) if c == UNSUPPORTED_VERSION]
                if unsupported:
                    problems.append(f"{name} v{version}: UNSUPPORTED_VERSION at {unsupported}")
                if api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE) and body.error_code != ILLEGAL_SASL_STATE:
                    problems.append(f"{name} v{version} on PLAINTEXT: error {body.error_code}, "
                                    f"Kafka answers ILLEGAL_SASL_STATE (34)")
                if api_key in (CONSUMER_GROUP_HEARTBEAT, CONSUMER_GROUP_DESCRIBE):
                    # Kafka answers the join with an assignment and describes the group.
                    errors = [(p, c) for p, c in error_codes(body) if c != 0]
                    if errors:
                        problems.append(f"{name} v{version}: errors {errors}")
                    elif api_key == CONSUMER_GROUP_HEARTBEAT and body.assignment is None:
                        problems.append(f"{name} v{version}: a join answered without an assignment")
                    elif api_key == CONSUMER_GROUP_DESCRIBE and [g.group_id for g in body.groups] != [GROUP_ID]:
                        problems.append(f"{name} v{version}: described {body.groups}")
                still_serves(s, corr + 1)
            except (Closed, OSError, AssertionError) as e:
                problems.append(f"{name} v{version} (advertised {table[api_key]}): {e!r}")
            finally:
                s.close()
    assert not problems, "advertised but not served:\n" + "\n".join(problems)

    # Produce v0-2: advertised (for librdkafka) but refused by closing, as Kafka does.
    for version in range(PRODUCE_OLDEST_SERVED):
        s = connect(ottla_module)
        try:
            send_frame(s, minimal_request(PRODUCE, version), version, 7)
            what = refused(s)
            assert what is None, f"Produce v{version}: {what}"
        finally:
            s.close()


def test_one_version_above_each_max_is_refused(ottla_module, table):
    problems = []
    for api_key, (lo, hi) in sorted(table.items()):
        cls = REQUESTS[api_key]
        above = hi + 1
        s = connect(ottla_module)
        try:
            if api_key == API_VERSIONS:
                # KIP-511: a version the broker lacks is answered as v0, with
                # UNSUPPORTED_VERSION and the whole table, so that the client can pick.
                send_frame(s, minimal_request(API_VERSIONS, hi), hi, 77, header_version=above)
                body = read_response(s, API_VERSIONS, 0, 77)
                got = {a.api_key: (a.min_version, a.max_version) for a in body.api_keys}
                if body.error_code != UNSUPPORTED_VERSION or got != table:
                    problems.append(f"ApiVersions v{above}: error {body.error_code}, "
                                    f"table {'equal' if got == table else got}")
                continue
            # Encode the body as the next version when Kafka's schema has one, else as
            # the max with the header claiming max+1: either way the broker refuses the
            # version before reading the body.
            if above <= cls.max_version:
                send_frame(s, minimal_request(api_key, above), above, 77)
            else:
                send_frame(s, minimal_request(api_key, hi), hi, 77, header_version=above)
            what = refused(s)
            if what:
                problems.append(f"{cls.name} v{above} (max {hi}): {what}")
        finally:
            s.close()
    assert not problems, "\n".join(problems)
    # The broker still serves a fresh connection.
    s = connect(ottla_module)
    try:
        still_serves(s, 5)
    finally:
        s.close()


def test_apis_not_advertised_are_not_served(ottla_module, table):
    missing = sorted(set(REQUESTS) - set(table))
    assert missing, "kafka-python knows no key that the broker leaves out"
    problems = []
    for api_key in missing:
        cls = REQUESTS[api_key]
        for version in sorted({0, cls.max_version}):
            if cls.valid_versions and version < cls.valid_versions[0]:
                continue
            s = connect(ottla_module)
            try:
                send_frame(s, minimal_request(api_key, version), version, 99)
                what = refused(s)
                if what:
                    problems.append(f"{cls.name} (key {api_key}) v{version}, not advertised: {what}")
            finally:
                s.close()
    assert not problems, "\n".join(problems)
    s = connect(ottla_module)
    try:
        still_serves(s, 5)
    finally:
        s.close()
