"""SASL/SCRAM (SCRAM-SHA-256, SCRAM-SHA-512; RFC 5802/7677) and the AlterUserScramCredentials
(API 51) / DescribeUserScramCredentials (API 50) admin APIs, with real clients and raw sockets.

Certificates, the raw Kafka frame helpers and the confluent-kafka produce/read-back helpers come
from ``test_security.py``. One broker for most of the module (``scram``): ``listeners=PLAINTEXT://..,
SASL_PLAINTEXT://..,SASL_SSL://..``, ``sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512``,
and on SASL_SSL only ``listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN``; PLAIN
keeps its JAAS users (admin, alice) on both SASL listeners, and SASL_SSL also carries
``listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=...ScramLoginModule required;`` (accepted,
ignored). SCRAM credentials are created over the PLAINTEXT listener (no authentication there), each
test with its own users. Kafka refuses to alter one user twice in one request, so a user's two
mechanisms are always created by two requests.

* ``test_confluent_create_describe_and_login``: confluent-kafka (its bundled librdkafka; Debian's
  kcat has a SCRAM nonce bug) creates SCRAM-SHA-256 (4096 iterations) + SCRAM-SHA-512 (8192) for
  alice and SCRAM-SHA-512 (8192) + SCRAM-SHA-256 (16384, the maximum) for bob;
  describe_user_scram_credentials of [alice, bob] and of everyone shows exactly those mechanisms
  and iterations; producer + consumer log in with SCRAM-SHA-512 as alice over SASL_PLAINTEXT and
  as bob over SASL_SSL and read back every record field; SCRAM-SHA-256 logins work on
  SASL_PLAINTEXT, PLAIN still works next to SCRAM on both listeners, SCRAM-SHA-256 is refused on
  SASL_SSL (not enabled there); replacing alice's SCRAM-SHA-512 credential (new password, 4096
  iterations) shows in describe, the new password logs in and the old one no longer does.
* ``test_confluent_scram_login_refused``: a wrong password (SASL_PLAINTEXT and SASL_SSL), an
  unknown user, a user without a SCRAM-SHA-256 credential logging in with SCRAM-SHA-256, and a
  PLAIN-only user logging in with SCRAM: librdkafka reports an authentication error carrying the
  broker's "Authentication failed during authentication due to invalid credentials with SASL
  mechanism SCRAM-SHA-512" (or -256); the broker logs "Failed authentication with /127.0.0.1" and
  never logs a password; the right password still works.
* ``test_confluent_admin_errors``: iterations 1000 / 4095 / 20000 / 16385 -> UNACCEPTABLE_CREDENTIAL
  (93) "Iterations N is less than the minimum 4096 for SCRAM-SHA-512" / "... more than the maximum
  16384 for ..."; deleting a credential that does not exist (no user; another mechanism than the
  user has) -> RESOURCE_NOT_FOUND (91) "Attempt to delete a user credential that does not exist";
  describing a user without credentials -> 91 "Attempt to describe a user credential that does not
  exist" (per user: the other user in the same request is described); the same user twice in one
  request (two upsertions; a deletion and an upsertion) -> DUPLICATE_RESOURCE (92) and neither
  alteration is applied; in a request with one good and one refused upsertion the good one is
  applied.
* ``test_raw_admin_errors``: ApiVersions advertises APIs 50 and 51 v0; raw AlterUserScramCredentials
  v0 with an empty user name (upsertion, deletion) -> 93 "Username must not be empty"; mechanism 0
  or 3 -> UNSUPPORTED_SASL_MECHANISM (33); a user twice -> exactly one result, 92; raw
  DescribeUserScramCredentials v0 with a null user list lists everyone (no error, mechanism +
  iterations only: the response parses to its exact schema, no salts or keys), a user listed
  twice -> one result with 92.
* ``test_credentials_survive_restart``: a broker with only SCRAM enabled (no JAAS at all): a
  user's SCRAM-SHA-512 and SCRAM-SHA-256 credentials and the data produced with them survive
  ``restart()``; deleting SCRAM-SHA-512 makes new SCRAM-SHA-512 logins fail while SCRAM-SHA-256
  still works; deleting SCRAM-SHA-256 too makes describe answer 91 and those logins fail; the
  deletions survive another restart; a credential created again survives ``kill -9``.
* ``test_kafka_python_scram_sha_256``: kafka-python's admin creates a SCRAM-SHA-256 user over
  PLAINTEXT and describes it (a null user list, and by name); then kafka-python with
  ``sasl_mechanism="SCRAM-SHA-256"`` over SASL_PLAINTEXT: create_topics, describe_cluster (the
  broker at this port), producer, consumer, every field compared.
* ``test_java_scram_sasl_ssl``: Java kafka-clients 4.1.0 (``java/src/OttlaSecurity.java``
  ``scram-admin``), logged in over SASL_SSL with SCRAM-SHA-512 as a user confluent-kafka created,
  creates another user with alterUserScramCredentials and describes it (and the Admin's error
  cases); that user produces and consumes over SASL_SSL/SCRAM-SHA-512; a wrong password fails
  with SaslAuthenticationException carrying the broker's message; confluent-kafka describes both
  users.
* ``test_kafkajs_scram``: kafkajs 2.2.4 (``kafkajs/security.js``) with ``scram-sha-512`` over
  SASL_SSL: describeCluster, createTopics, produce, a consumer group reads everything back; a
  wrong password fails with KafkaJSSASLAuthenticationError naming the broker's message;
  ``scram-sha-256`` connects over SASL_PLAINTEXT.
* ``test_raw_scram_exchange``: SaslHandshake lists the listener's mechanisms (SASL_SSL: SCRAM-SHA-256
  refused with 33); a Python SCRAM client (hashlib/hmac) logs in with SaslAuthenticate v0, v1 and
  v2 for both mechanisms and over TLS: the server-first message carries the client nonce extended
  by the server's, the credential's salt and iterations (set by the test), the server-final
  message carries the right server signature, Metadata is answered afterwards; a user name with
  "," and "=" logs in with RFC 5802's "=2C"/"=3D" escaping. Refused with 58 and the broker's
  message, then the connection closed: client-final nonces that are not exactly the server's (a
  character changed, truncated, the client's part only, a suffix, a prefix, a fresh one; each with
  a proof that is valid for the message sent, so only the nonce check can refuse it), a corrupted
  proof, a wrong password, a client-first message for an unknown user or for a mechanism the user
  has no credential for, and a malformed client-first message.
* ``test_raw_failed_scram_logins_bounded``: 200 failed SCRAM logins (20 connections at a time:
  wrong passwords, unknown users, altered nonces, corrupted proofs) are each answered with 58 and
  closed; the broker's RSS grows by less than 32 MB, it logs the failures, and a raw SCRAM login
  and a confluent-kafka SCRAM client still work afterwards.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import hashlib
import hmac
import os
import pathlib
import secrets
import socket
import struct
import time
import types

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from conftest import (NODE_ID, make_records, run_java, status_kb, stop_module_broker,
                      unique_topic, wait_for)
from test_groups_kafkajs import JS_DIR, kafkajs_ready  # noqa: F401 - the kafkajs fixture (npm ci once)
from test_security import (  # noqa: F401 - certs is a fixture
    API_VERSIONS,
    FAILED_AUTH_LOG,
    HOST,
    IO_TIMEOUT,
    JAAS,
    NONE,
    SASL_AUTHENTICATION_FAILED,
    UNSUPPORTED_SASL_MECHANISM,
    USERS,
    Certs,
    Closed,
    Reader,
    Secure,
    api_versions_over,
    assert_kafkajs_round_trip,
    assert_read_back,
    certs,
    ck_admin_conf,
    ck_brokers,
    ck_metadata_error,
    ck_produce,
    ck_read_all,
    ck_roundtrip,
    create_topic,
    kp_round_trip,
    run_security_js,
    distinct_ports,
    failed_auth_lines,
    listeners_value,
    metadata_v1_brokers,
    roundtrip,
    sasl_authenticate,
    sasl_handshake,
    start_secure,
    tls_connect,
    tls_context,
    uvarint,
    wait_closed,
    start_module_secure,
    wait_listening,
)

SCRAM_256, SCRAM_512 = "SCRAM-SHA-256", "SCRAM-SHA-512"
MECHS_ALL = ["PLAIN", SCRAM_256, SCRAM_512]     # sasl.enabled.mechanisms (SASL_PLAINTEXT)
MECHS_SSL = [SCRAM_512, "PLAIN"]                # listener.name.sasl_ssl.sasl.enabled.mechanisms
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

# Kafka error codes
RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE, UNACCEPTABLE_CREDENTIAL = 91, 92, 93
# API keys
DESCRIBE_USER_SCRAM_CREDENTIALS, ALTER_USER_SCRAM_CREDENTIALS = 50, 51
# ScramMechanism types on the wire
MECH_TYPE = {SCRAM_256: 1, SCRAM_512: 2}
HASH = {SCRAM_256: "sha256", SCRAM_512: "sha512"}
CK_MECH = {SCRAM_256: ScramMechanism.SCRAM_SHA_256, SCRAM_512: ScramMechanism.SCRAM_SHA_512}

DELETE_MISSING = "Attempt to delete a user credential that does not exist"
# Kafka appends ": <user>" to this one
DESCRIBE_MISSING = "Attempt to describe a user credential that does not exist"

# Each user's password, unique strings so the broker's log can be searched for them.
PW = {u: f"{u}-pw-{secrets.token_hex(4)}" for u in (
    "alice", "bob", "erin", "carol", "dave", "heidi", "frank", "ivan", "java-admin", "java-user",
    "js-user", "judy", "ken", "o=dd,name", "leo")}


def scram_failed(mechanism: str) -> str:
    """The message Kafka's SaslServerAuthenticator sends with error 58 for any SCRAM failure."""
    return f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"


def too_few(n: int, mechanism: str) -> str:
    return f"Iterations {n} is less than the minimum 4096 for {mechanism}"


def too_many(n: int, mechanism: str) -> str:
    return f"Iterations {n} is more than the maximum 16384 for {mechanism}"


# ====================================================================== the broker

def scram_overrides(certs: Certs, ports: dict[str, int]) -> dict:
    return {
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": certs.server_keystore,
        "sasl.enabled.mechanisms": ",".join(MECHS_ALL),
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": ",".join(MECHS_SSL),
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
    }


@pytest.fixture(scope="module")
def scram(request, tmp_path_factory, certs) -> Secure:
    ports = dict(zip(("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"), distinct_ports(3)))
    b = start_module_secure(request, tmp_path_factory, "ottla-scram", ports,
                            scram_overrides(certs, ports))
    yield Secure(b, ports)
    stop_module_broker(b, "ottla-scram")


# ====================================================================== confluent-kafka helpers

def scram_conf(certs: Certs, protocol: str, user: str, password: str, mechanism: str = SCRAM_512) -> dict:
    conf = {"security.protocol": protocol, "sasl.mechanisms": mechanism, "sasl.username": user,
            "sasl.password": password}
    if "SSL" in protocol:
        conf["ssl.ca.location"] = certs.ca
    return conf


def plain_conf(certs: Certs, protocol: str, user: str = "alice") -> dict:
    return {**scram_conf(certs, protocol, user, USERS[user]), "sasl.mechanisms": "PLAIN"}


def upsert(user: str, mechanism: str, iterations: int, password: str, salt: bytes | None = None):
    return UserScramCredentialUpsertion(user, ScramCredentialInfo(CK_MECH[mechanism], iterations),
                                        password.encode(), salt)


def delete(user: str, mechanism: str):
    return UserScramCredentialDeletion(user, CK_MECH[mechanism])


def ck_alter(bootstrap: str, alterations: list) -> dict[str, object]:
    """alter_user_scram_credentials: {user: None | the KafkaError (or other exception) it failed with}."""
    admin = ck_admin_conf(bootstrap, {})  # referenced until every future is done
    futs = admin.alter_user_scram_credentials(alterations, request_timeout=30)
    out: dict[str, object] = {}
    for user, f in futs.items():
        try:
            f.result(timeout=60)
            out[user] = None
        except KafkaException as e:
            out[user] = e.args[0]
        except Exception as e:  # noqa: BLE001 - reported by the caller's assertion
            out[user] = e
    return out


def ck_create(bootstrap: str, user: str, mechanism: str, iterations: int, password: str | None = None,
              salt: bytes | None = None) -> None:
    res = ck_alter(bootstrap, [upsert(user, mechanism, iterations, password or PW[user], salt)])
    assert res == {user: None}, f"creating {mechanism} ({iterations} iterations) for {user!r}: {describe_result(res)}"


def infos(desc) -> dict[str, int]:
    out: dict[str, int] = {}
    for ci in desc.scram_credential_infos:
        m = ci.mechanism if isinstance(ci.mechanism, ScramMechanism) else ScramMechanism(ci.mechanism)
        name = {ScramMechanism.SCRAM_SHA_256: SCRAM_256, ScramMechanism.SCRAM_SHA_512: SCRAM_512}.get(m, repr(m))
        assert name not in out, f"{desc.user}: {name} described twice"
        out[name] = ci.iterations
    return out


def ck_describe(bootstrap: str, users: list[str] | None) -> dict[str, object]:
    """describe_user_scram_credentials: {user: {mechanism: iterations} | the KafkaError it failed with}.
    ``users=None`` describes everyone (librdkafka sends an empty user array)."""
    admin = ck_admin_conf(bootstrap, {})
    if users is None:
        res = admin.describe_user_scram_credentials(request_timeout=30).result(timeout=60)
        return {u: infos(d) for u, d in res.items()}
    out: dict[str, object] = {}
    for user, f in admin.describe_user_scram_credentials(users, request_timeout=30).items():
        try:
            out[user] = infos(f.result(timeout=60))
        except KafkaException as e:
            out[user] = e.args[0]
    return out


def describe_result(res: dict) -> str:
    return ", ".join(f"{u!r}: " + (repr(v) if not isinstance(v, KafkaError) else f"KafkaError({v.code()}, {v.str()!r})")
                     for u, v in res.items())


def assert_kafka_error(got, code: int, message: str | None, what: str, prefix: bool = False) -> None:
    assert isinstance(got, KafkaError), f"{what}: expected error {code} {message!r}, got {got!r}"
    ok_msg = message is None or (got.str().startswith(message) if prefix else got.str() == message)
    assert got.code() == code and ok_msg, \
        f"{what}: expected error {code} {message!r}{' (prefix)' if prefix else ''}, got {got.code()} {got.str()!r}"


def auth_errors(bootstrap: str, conf: dict) -> tuple[Exception | None, list]:
    exc, errs = ck_metadata_error(bootstrap, conf, timeout=3)
    auth = [e for e in errs + [exc.args[0] if exc is not None and exc.args else None]
            if e is not None and hasattr(e, "code") and e.code() == KafkaError._AUTHENTICATION]
    return exc, auth


def assert_login_refused(bootstrap: str, conf: dict, mechanism: str, what: str) -> None:
    exc, auth = auth_errors(bootstrap, conf)
    assert exc is not None, f"{what}: list_topics returned metadata"
    assert auth, f"{what}: no _AUTHENTICATION error from librdkafka; list_topics raised {exc!r}"
    assert any(scram_failed(mechanism) in e.str() for e in auth), \
        f"{what}: the authentication errors do not carry the broker's message: {[e.str() for e in auth]}"


# ====================================================================== a SCRAM client (RFC 5802)

def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def saslname(user: str) -> str:
    return user.replace("=", "=3D").replace(",", "=2C")


@functools.lru_cache(maxsize=64)
def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(HASH[mechanism], password.encode(), salt, iterations)


class ScramClient:
    def __init__(self, mechanism: str, user: str, password: str):
        self.mechanism, self.user, self.password = mechanism, user, password
        self.cnonce = secrets.token_urlsafe(24)
        self.first_bare = f"n={saslname(user)},r={self.cnonce}"
        self.server_first_msg = ""
        self.attrs: dict[str, str] = {}
        self.expected_server_final = b""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, HASH[self.mechanism]).digest()

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def server_first(self, data: bytes | None) -> dict[str, str]:
        assert data, f"empty server-first message: {data!r}"
        self.server_first_msg = data.decode()
        attrs = {}
        for part in self.server_first_msg.split(","):
            k, sep, v = part.partition("=")
            assert sep and len(k) == 1, f"server-first message {self.server_first_msg!r}: bad attribute {part!r}"
            attrs[k] = v
        assert {"r", "s", "i"} <= set(attrs), f"server-first message {self.server_first_msg!r} lacks r, s or i"
        self.attrs = attrs
        return attrs

    def client_final(self, nonce: str | None = None, corrupt_proof: bool = False) -> bytes:
        """The client-final message for ``nonce`` (default: the server's), with a proof that is
        valid for exactly the message sent (AuthMessage includes the nonce sent)."""
        nonce = self.attrs["r"] if nonce is None else nonce
        without_proof = f"c={b64(b'n,,')},r={nonce}"
        auth = f"{self.first_bare},{self.server_first_msg},{without_proof}".encode()
        salted = salted_password(self.mechanism, self.password, base64.b64decode(self.attrs["s"]),
                                 int(self.attrs["i"]))
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(HASH[self.mechanism], client_key).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, self._hmac(stored_key, auth)))
        if corrupt_proof:
            proof = bytes([proof[0] ^ 0x01]) + proof[1:]
        self.expected_server_final = f"v={b64(self._hmac(self._hmac(salted, b'Server Key'), auth))}".encode()
        return f"{without_proof},p={b64(proof)}".encode()


def changed(nonce: str) -> str:
    """``nonce`` with its last character replaced."""
    return nonce[:-1] + ("A" if nonce[-1] != "A" else "B")


def connect(port: int, ctx=None):
    if ctx is not None:
        return tls_connect(port, ctx)
    s = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return s


def scram_login(sock, client: ScramClient, version: int, corr: int = 2) -> dict[str, str]:
    """A complete, successful exchange (after SaslHandshake): returns the server-first attributes."""
    err, msg, auth = sasl_authenticate(sock, client.client_first(), version=version, corr=corr)
    assert err == NONE and msg in (None, ""), \
        f"{client.mechanism} client-first for {client.user!r} (SaslAuthenticate v{version}): error {err} {msg!r}"
    attrs = client.server_first(auth)
    assert attrs["r"].startswith(client.cnonce) and len(attrs["r"]) > len(client.cnonce), \
        f"server nonce {attrs['r']!r} does not extend the client nonce {client.cnonce!r}"
    assert "," not in attrs["r"][len(client.cnonce):]
    err, msg, auth = sasl_authenticate(sock, client.client_final(), version=version, corr=corr + 1)
    assert err == NONE and msg in (None, ""), \
        f"{client.mechanism} client-final for {client.user!r} (SaslAuthenticate v{version}): error {err} {msg!r}"
    assert auth == client.expected_server_final, \
        f"server-final message {auth!r}, expected {client.expected_server_final!r}"
    return attrs


def expect_refused(sock, token: bytes, mechanism: str, version: int, corr: int, what: str) -> None:
    err, msg, _ = sasl_authenticate(sock, token, version=version, corr=corr)
    assert (err, msg) == (SASL_AUTHENTICATION_FAILED, scram_failed(mechanism)), \
        f"{what} (SaslAuthenticate v{version}): answered error {err} {msg!r}"
    rest = wait_closed(sock)
    assert rest == b"", f"{what}: {len(rest)} more bytes after the failure before the close: {rest[:32].hex()}"


# ====================================================================== raw admin requests

def compact_str(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


def compact_bytes(b: bytes) -> bytes:
    return uvarint(len(b) + 1) + b


def raw_alter(port: int, deletions=(), upsertions=()) -> list[tuple[str, int, str | None]]:
    """AlterUserScramCredentials v0: deletions [(name, mechanism type)], upsertions [(name, mechanism
    type, iterations, salt, salted password)]; returns [(user, error code, error message)]. An
    empty error message reads as None (Kafka answers null on success)."""
    body = uvarint(len(deletions) + 1)
    for name, mech in deletions:
        body += compact_str(name) + struct.pack(">b", mech) + b"\x00"
    body += uvarint(len(upsertions) + 1)
    for name, mech, iterations, salt, salted in upsertions:
        body += compact_str(name) + struct.pack(">bi", mech, iterations) + compact_bytes(salt) + compact_bytes(salted) + b"\x00"
    body += b"\x00"
    with connect(port) as s:
        r = Reader(roundtrip(s, ALTER_USER_SCRAM_CREDENTIALS, 0, 1, body, flexible=True))
    r.i32()  # throttle_time_ms
    out = []
    for _ in range(r.uvarint() - 1):
        user = r.compact_string()
        code = r.i16()
        msg = r.compact_string()
        r.tags()
        out.append((user, code, msg or None))
    r.tags()
    r.end()
    return out


def raw_describe(port: int, users: list[str] | None) -> tuple[int, str | None, list]:
    """DescribeUserScramCredentials v0: (error code, error message, [(user, error code, error message,
    sorted [(mechanism type, iterations)])]). Parsing to the end checks the exact schema. Empty error
    messages read as None (Kafka leaves them at their default, "", on success)."""
    if users is None:
        body = b"\x00"  # null array: everyone
    else:
        body = uvarint(len(users) + 1) + b"".join(compact_str(u) + b"\x00" for u in users)
    body += b"\x00"
    with connect(port) as s:
        r = Reader(roundtrip(s, DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 1, body, flexible=True))
    r.i32()  # throttle_time_ms
    err = r.i16()
    msg = r.compact_string()
    results = []
    for _ in range(r.uvarint() - 1):
        user = r.compact_string()
        code = r.i16()
        umsg = r.compact_string()
        creds = []
        for _ in range(r.uvarint() - 1):
            mech = r.i8()
            iterations = r.i32()
            r.tags()
            creds.append((mech, iterations))
        r.tags()
        results.append((user, code, umsg or None, sorted(creds)))
    r.tags()
    r.end()
    return err, msg or None, results


# ====================================================================== confluent-kafka

def test_confluent_create_describe_and_login(scram, certs):
    pt, sasl, sasl_ssl = scram.addr("PLAINTEXT"), scram.addr("SASL_PLAINTEXT"), scram.addr("SASL_SSL")
    res = ck_alter(pt, [upsert("alice", SCRAM_256, 4096, PW["alice"]), upsert("bob", SCRAM_512, 8192, PW["bob"])])
    assert res == {"alice": None, "bob": None}, describe_result(res)
    res = ck_alter(pt, [upsert("alice", SCRAM_512, 8192, PW["alice"]), upsert("bob", SCRAM_256, 16384, PW["bob"])])
    assert res == {"alice": None, "bob": None}, describe_result(res)

    want = {"alice": {SCRAM_256: 4096, SCRAM_512: 8192}, "bob": {SCRAM_512: 8192, SCRAM_256: 16384}}
    got = ck_describe(pt, ["alice", "bob"])
    assert got == want, describe_result(got)
    everyone = ck_describe(pt, None)
    assert {u: everyone.get(u) for u in want} == want, everyone
    assert all(v and set(v) <= {SCRAM_256, SCRAM_512} for v in everyone.values()), everyone

    # SCRAM-SHA-512 on both listeners: create a topic, produce, read every field back.
    ck_roundtrip(sasl, scram_conf(certs, "SASL_PLAINTEXT", "alice", PW["alice"]), "scram-ck-sasl", n=200)
    ck_roundtrip(sasl_ssl, scram_conf(certs, "SASL_SSL", "bob", PW["bob"]), "scram-ck-sasl-ssl", n=200)
    # SCRAM-SHA-256 on SASL_PLAINTEXT; PLAIN next to SCRAM on both listeners.
    for user in ("alice", "bob"):
        assert ck_brokers(sasl, scram_conf(certs, "SASL_PLAINTEXT", user, PW[user], SCRAM_256)) == {NODE_ID: sasl}
    assert ck_brokers(sasl, plain_conf(certs, "SASL_PLAINTEXT")) == {NODE_ID: sasl}
    assert ck_brokers(sasl_ssl, plain_conf(certs, "SASL_SSL", "admin")) == {NODE_ID: sasl_ssl}
    # SASL_SSL enables only SCRAM-SHA-512 and PLAIN.
    exc, _ = ck_metadata_error(sasl_ssl, scram_conf(certs, "SASL_SSL", "alice", PW["alice"], SCRAM_256), timeout=3)
    assert exc is not None, "SCRAM-SHA-256 worked on SASL_SSL, where only SCRAM-SHA-512 and PLAIN are enabled"

    # Replacing a credential: new password and iterations; the old password stops working.
    new_password = "alice-replaced-" + secrets.token_hex(4)
    res = ck_alter(pt, [upsert("alice", SCRAM_512, 4096, new_password)])
    assert res == {"alice": None}, describe_result(res)
    got = ck_describe(pt, ["alice"])
    assert got == {"alice": {SCRAM_256: 4096, SCRAM_512: 4096}}, describe_result(got)
    assert ck_brokers(sasl, scram_conf(certs, "SASL_PLAINTEXT", "alice", new_password)) == {NODE_ID: sasl}
    assert ck_brokers(sasl_ssl, scram_conf(certs, "SASL_SSL", "alice", new_password)) == {NODE_ID: sasl_ssl}
    assert_login_refused(sasl, scram_conf(certs, "SASL_PLAINTEXT", "alice", PW["alice"]), SCRAM_512,
                         "alice's replaced SCRAM-SHA-512 password")
    # Her SCRAM-SHA-256 credential was not touched.
    assert ck_brokers(sasl, scram_conf(certs, "SASL_PLAINTEXT", "alice", PW["alice"], SCRAM_256)) == {NODE_ID: sasl}


def test_confluent_scram_login_refused(scram, certs):
    pt, sasl, sasl_ssl = scram.addr("PLAINTEXT"), scram.addr("SASL_PLAINTEXT"), scram.addr("SASL_SSL")
    ck_create(pt, "erin", SCRAM_512, 8192)
    wrong = "not-erins-password-" + secrets.token_hex(4)
    cases = [
        ("a wrong password", sasl, scram_conf(certs, "SASL_PLAINTEXT", "erin", wrong), SCRAM_512),
        ("a wrong password over SASL_SSL", sasl_ssl, scram_conf(certs, "SASL_SSL", "erin", wrong), SCRAM_512),
        ("an unknown user", sasl, scram_conf(certs, "SASL_PLAINTEXT", "nobody-at-all", wrong, SCRAM_256), SCRAM_256),
        ("a user without a SCRAM-SHA-256 credential", sasl,
         scram_conf(certs, "SASL_PLAINTEXT", "erin", PW["erin"], SCRAM_256), SCRAM_256),
        ("a PLAIN-only user", sasl, scram_conf(certs, "SASL_PLAINTEXT", "admin", USERS["admin"]), SCRAM_512),
    ]
    before = len(failed_auth_lines(scram.broker))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(cases)) as pool:  # each waits ~3.5 s
        for f in [pool.submit(assert_login_refused, bootstrap, conf, mechanism, what)
                  for what, bootstrap, conf, mechanism in cases]:
            f.result()
    lines = wait_for(lambda: len(failed_auth_lines(scram.broker)[before:]) >= len(cases) and
                     failed_auth_lines(scram.broker)[before:], 10,
                     f"{len(cases)} '{FAILED_AUTH_LOG}' lines on the broker's stderr")
    assert lines
    text = scram.broker.stderr_since_start()  # not the command line conftest writes first (PLAIN's JAAS)
    for secret in (wrong, PW["erin"], USERS["admin"]):
        assert secret not in text, f"the broker logged a password ({secret!r})"
    # The right password still works, on both listeners.
    assert ck_brokers(sasl, scram_conf(certs, "SASL_PLAINTEXT", "erin", PW["erin"])) == {NODE_ID: sasl}
    assert ck_brokers(sasl_ssl, scram_conf(certs, "SASL_SSL", "erin", PW["erin"])) == {NODE_ID: sasl_ssl}


def test_confluent_admin_errors(scram):
    pt = scram.addr("PLAINTEXT")

    def one(alteration, what: str):
        res = ck_alter(pt, [alteration])
        assert set(res) == {alteration.user}, f"{what}: results for {describe_result(res)}"
        return res[alteration.user]

    for mechanism, iterations, message in [(SCRAM_512, 1000, too_few(1000, SCRAM_512)),
                                           (SCRAM_256, 4095, too_few(4095, SCRAM_256)),
                                           (SCRAM_512, 20000, too_many(20000, SCRAM_512)),
                                           (SCRAM_256, 16385, too_many(16385, SCRAM_256))]:
        assert_kafka_error(one(upsert("carol", mechanism, iterations, PW["carol"]), f"{iterations} iterations"),
                           UNACCEPTABLE_CREDENTIAL, message, f"{mechanism} with {iterations} iterations")
    assert_kafka_error(one(delete("carol", SCRAM_512), "delete"), RESOURCE_NOT_FOUND, DELETE_MISSING,
                       "deleting a credential of a user without any")
    assert_kafka_error(ck_describe(pt, ["carol"])["carol"], RESOURCE_NOT_FOUND, DESCRIBE_MISSING,
                       "describing carol after only refused alterations", prefix=True)

    ck_create(pt, "carol", SCRAM_256, 4096)
    assert_kafka_error(one(delete("carol", SCRAM_512), "delete"), RESOURCE_NOT_FOUND, DELETE_MISSING,
                       "deleting carol's SCRAM-SHA-512 credential (she has only SCRAM-SHA-256)")
    got = ck_describe(pt, ["carol", "ghost-user"])
    assert got.get("carol") == {SCRAM_256: 4096}, describe_result(got)
    assert_kafka_error(got.get("ghost-user"), RESOURCE_NOT_FOUND, DESCRIBE_MISSING,
                       "describing a user without credentials", prefix=True)

    # One user twice in one request: DUPLICATE_RESOURCE, nothing applied.
    res = ck_alter(pt, [upsert("carol", SCRAM_512, 8192, PW["carol"]), upsert("carol", SCRAM_256, 8192, PW["carol"])])
    assert set(res) == {"carol"}, describe_result(res)
    assert_kafka_error(res["carol"], DUPLICATE_RESOURCE, None, "two upsertions for carol in one request")
    res = ck_alter(pt, [delete("carol", SCRAM_256), upsert("carol", SCRAM_512, 8192, PW["carol"])])
    assert set(res) == {"carol"}, describe_result(res)
    assert_kafka_error(res["carol"], DUPLICATE_RESOURCE, None, "a deletion and an upsertion for carol in one request")
    got = ck_describe(pt, ["carol"])
    assert got == {"carol": {SCRAM_256: 4096}}, f"after the refused duplicates: {describe_result(got)}"

    # One good and one refused upsertion: the good one is applied.
    res = ck_alter(pt, [upsert("dave", SCRAM_512, 8192, PW["dave"]), upsert("heidi", SCRAM_512, 1000, PW["heidi"])])
    assert set(res) == {"dave", "heidi"} and res["dave"] is None, describe_result(res)
    assert_kafka_error(res["heidi"], UNACCEPTABLE_CREDENTIAL, too_few(1000, SCRAM_512), "heidi with 1000 iterations")
    got = ck_describe(pt, ["dave", "heidi"])
    assert got.get("dave") == {SCRAM_512: 8192}, describe_result(got)
    assert_kafka_error(got.get("heidi"), RESOURCE_NOT_FOUND, DESCRIBE_MISSING, "describing refused heidi", prefix=True)


def test_raw_admin_errors(scram):
    port = scram.ports["PLAINTEXT"]
    with connect(port) as s:
        keys = api_versions_over(s)
    for key in (DESCRIBE_USER_SCRAM_CREDENTIALS, ALTER_USER_SCRAM_CREDENTIALS):
        assert keys.get(key, (99, -1))[0] == 0 and keys[key][1] >= 0, f"ApiVersions: API {key} -> {keys.get(key)}"

    salt = b"raw-admin-salt"
    sp = salted_password(SCRAM_512, "x-password", salt, 4096)
    assert raw_alter(port, upsertions=[("", 2, 4096, salt, sp)]) == [("", UNACCEPTABLE_CREDENTIAL, "Username must not be empty")]
    assert raw_alter(port, deletions=[("", 2)]) == [("", UNACCEPTABLE_CREDENTIAL, "Username must not be empty")]
    for mech in (0, 3):
        res = raw_alter(port, upsertions=[("raw-mech-user", mech, 4096, salt, sp)])
        assert [(u, c) for u, c, _ in res] == [("raw-mech-user", UNSUPPORTED_SASL_MECHANISM)], \
            f"upsertion with mechanism {mech}: {res}"
        res = raw_alter(port, deletions=[("raw-mech-user", mech)])
        assert [(u, c) for u, c, _ in res] == [("raw-mech-user", UNSUPPORTED_SASL_MECHANISM)], \
            f"deletion with mechanism {mech}: {res}"
    res = raw_alter(port, upsertions=[("raw-dup", 2, 4096, salt, sp), ("raw-dup", 1, 4096, salt, sp)])
    assert [(u, c) for u, c, _ in res] == [("raw-dup", DUPLICATE_RESOURCE)], f"the same user twice: {res}"
    err, msg, results = raw_describe(port, ["raw-dup"])
    assert (err, [(u, c) for u, c, _, _ in results]) == (NONE, [("raw-dup", RESOURCE_NOT_FOUND)]), (err, msg, results)
    assert results[0][2].startswith(DESCRIBE_MISSING), results

    # Create one through the raw API and describe: everyone (null array), by name, and twice.
    assert raw_alter(port, upsertions=[("raw-admin-user", 2, 5000, salt, sp)]) == [("raw-admin-user", NONE, None)]
    err, msg, results = raw_describe(port, None)
    assert err == NONE, (err, msg)
    by_user = {u: (c, creds) for u, c, _, creds in results}
    assert by_user.get("raw-admin-user") == (NONE, [(2, 5000)]), results
    assert all(c == NONE and creds and all(m in (1, 2) and 4096 <= i <= 16384 for m, i in creds)
               for c, creds in by_user.values()), results
    assert len(by_user) == len(results), f"a user listed twice: {results}"
    err, msg, results = raw_describe(port, ["raw-admin-user"])
    assert (err, results) == (NONE, [("raw-admin-user", NONE, None, [(2, 5000)])]), (err, msg, results)
    err, msg, results = raw_describe(port, ["raw-admin-user", "raw-admin-user"])
    assert err == NONE and [(u, c) for u, c, _, _ in results] == [("raw-admin-user", DUPLICATE_RESOURCE)], \
        (err, msg, results)


# ====================================================================== restart

def test_credentials_survive_restart(ottla_factory, certs):
    ports = dict(zip(("PLAINTEXT", "SASL_PLAINTEXT"), distinct_ports(2)))
    sec = start_secure(ottla_factory, ports, {
        "listeners": listeners_value(ports),
        "sasl.enabled.mechanisms": f"{SCRAM_512},{SCRAM_256}",  # SCRAM only: no JAAS configuration at all
    }, name="ottla-scram-restart")
    b, pt, sasl = sec.broker, sec.addr("PLAINTEXT"), sec.addr("SASL_PLAINTEXT")
    pw256 = PW["frank"] + "-256"
    ck_create(pt, "frank", SCRAM_512, 8192)
    ck_create(pt, "frank", SCRAM_256, 4096, pw256)
    conf512 = scram_conf(certs, "SASL_PLAINTEXT", "frank", PW["frank"])
    conf256 = scram_conf(certs, "SASL_PLAINTEXT", "frank", pw256, SCRAM_256)
    topic = unique_topic("scram-restart")
    create_topic(sasl, conf512, topic)
    recs = make_records(100, "scram-restart")
    acked = ck_produce(sasl, conf512, topic, recs)

    b.restart()
    wait_listening(b, ports)
    got = ck_describe(pt, ["frank"])
    assert got == {"frank": {SCRAM_512: 8192, SCRAM_256: 4096}}, f"after a restart: {describe_result(got)}"
    assert_read_back(recs, acked, ck_read_all(sasl, conf512, topic))
    assert ck_brokers(sasl, conf256) == {NODE_ID: sasl}

    assert ck_alter(pt, [delete("frank", SCRAM_512)]) == {"frank": None}
    got = ck_describe(pt, ["frank"])
    assert got == {"frank": {SCRAM_256: 4096}}, describe_result(got)
    assert_login_refused(sasl, conf512, SCRAM_512, "frank after his SCRAM-SHA-512 credential was deleted")
    assert ck_brokers(sasl, conf256) == {NODE_ID: sasl}
    assert ck_alter(pt, [delete("frank", SCRAM_256)]) == {"frank": None}
    assert_kafka_error(ck_describe(pt, ["frank"])["frank"], RESOURCE_NOT_FOUND, DESCRIBE_MISSING,
                       "describing frank after both deletions", prefix=True)
    assert_login_refused(sasl, conf256, SCRAM_256, "frank after his SCRAM-SHA-256 credential was deleted")

    b.restart()
    wait_listening(b, ports)
    assert_kafka_error(ck_describe(pt, ["frank"])["frank"], RESOURCE_NOT_FOUND, DESCRIBE_MISSING,
                       "describing frank after the deletions and a restart", prefix=True)
    assert_login_refused(sasl, conf512, SCRAM_512, "frank's deleted SCRAM-SHA-512 credential after a restart")

    # Created again (another password): acknowledged, so it survives kill -9.
    again = PW["frank"] + "-again"
    ck_create(pt, "frank", SCRAM_512, 4096, again)
    b.kill9()
    b.start()
    wait_listening(b, ports)
    got = ck_describe(pt, ["frank"])
    assert got == {"frank": {SCRAM_512: 4096}}, f"after kill -9: {describe_result(got)}"
    assert ck_brokers(sasl, scram_conf(certs, "SASL_PLAINTEXT", "frank", again)) == {NODE_ID: sasl}


# ====================================================================== kafka-python

def test_kafka_python_scram_sha_256(scram, certs):
    from kafka import KafkaAdminClient
    from kafka.admin import ScramMechanism as KpMechanism
    from kafka.admin import UserScramCredentialUpsertion as KpUpsertion

    admin = KafkaAdminClient(bootstrap_servers=scram.addr("PLAINTEXT"), client_id="compat-scram", request_timeout_ms=30000)
    try:
        res = admin.alter_user_scram_credentials([KpUpsertion("ivan", "SCRAM-SHA-256", PW["ivan"], iterations=8192)])
        assert res == {"ivan": None}, res
        everyone = admin.describe_user_scram_credentials()  # a null user list
        want = {"error": None, "credential_infos": [{"mechanism": KpMechanism.SCRAM_SHA_256, "iterations": 8192}]}
        assert everyone.get("ivan") == want, everyone
        assert admin.describe_user_scram_credentials(["ivan"]) == {"ivan": want}
        ghost = admin.describe_user_scram_credentials(["ivan-ghost"])["ivan-ghost"]
        assert ghost["credential_infos"] == [] and str(ghost["error"]).startswith(DESCRIBE_MISSING), ghost
    finally:
        admin.close()

    bootstrap = scram.addr("SASL_PLAINTEXT")
    conf = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                sasl_plain_username="ivan", sasl_plain_password=PW["ivan"])
    topic = unique_topic("scram-kp")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-scram", request_timeout_ms=30000, **conf)
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}}, timeout_ms=30000,
                            wait_for_metadata=True)
        cl = admin.describe_cluster()
        assert [(b["broker_id"], b["host"], b["port"]) for b in cl["brokers"]] == \
            [(NODE_ID, HOST, scram.ports["SASL_PLAINTEXT"])], cl
    finally:
        admin.close()

    kp_round_trip(bootstrap, topic, conf, "scram-kp", "compat-scram")


# ====================================================================== Java

def scram_java_properties(path: pathlib.Path, certs: Certs, user: str, password: str) -> str:
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{user}" password="{password}";')
    props = {"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM_512, "sasl.jaas.config": jaas,
             "ssl.truststore.type": "PEM", "ssl.truststore.location": certs.ca}
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return str(path)


def test_java_scram_sasl_ssl(scram, certs, java_program, tmp_path):
    pt = scram.addr("PLAINTEXT")
    ck_create(pt, "java-admin", SCRAM_512, 8192)
    target = types.SimpleNamespace(bootstrap=scram.addr("SASL_SSL"))
    admin_props = scram_java_properties(tmp_path / "admin.properties", certs, "java-admin", PW["java-admin"])
    out = run_java(java_program, "OttlaSecurity", target, admin_props, "scram-admin", "java-user", PW["java-user"],
                   "4096", timeout=120, heap="512m")
    assert "SCRAM USER java-user [SCRAM-SHA-512=4096]" in out, out

    user_props = scram_java_properties(tmp_path / "user.properties", certs, "java-user", PW["java-user"])
    out = run_java(java_program, "OttlaSecurity", target, user_props, "data", unique_topic("scram-java"), "300",
                   timeout=180, heap="512m")
    assert "consumed 300 records" in out, out

    bad = scram_java_properties(tmp_path / "bad.properties", certs, "java-user", "wrong-password")
    out = run_java(java_program, "OttlaSecurity", target, bad, "bad-login", scram_failed(SCRAM_512),
                   timeout=120, heap="512m")
    assert "AUTH ERROR: SaslAuthenticationException" in out and scram_failed(SCRAM_512) in out, out

    got = ck_describe(pt, ["java-user", "java-admin"])
    assert got == {"java-user": {SCRAM_512: 4096}, "java-admin": {SCRAM_512: 8192}}, describe_result(got)


# ====================================================================== kafkajs

def test_kafkajs_scram(scram, certs, kafkajs_ready):
    node = kafkajs_ready
    pt = scram.addr("PLAINTEXT")
    ck_create(pt, "js-user", SCRAM_512, 8192)
    ck_create(pt, "js-user", SCRAM_256, 4096)
    bootstrap, port = scram.addr("SASL_SSL"), scram.ports["SASL_SSL"]
    base = dict(bootstrap=bootstrap, caFile=certs.ca, timeoutMs=60000,
                sasl=dict(mechanism="scram-sha-512", username="js-user", password=PW["js-user"]))

    def run(cfg: dict) -> dict:
        return run_security_js(node, cfg)

    topic, n = unique_topic("scram-kafkajs"), 200
    assert_kafkajs_round_trip(run({**base, "mode": "data", "topic": topic, "count": n}), n, port)

    res = run({**base, "mode": "bad-login", "sasl": {**base["sasl"], "password": "wrong-password"}})
    err = res["loginError"]
    assert err is not None, "kafkajs connected with a wrong password"
    assert err["name"] == "KafkaJSSASLAuthenticationError" and scram_failed(SCRAM_512) in err["message"], err

    # "bad-login" with the right credentials: connect() succeeds (SCRAM-SHA-256, no TLS).
    res = run({"bootstrap": scram.addr("SASL_PLAINTEXT"), "caFile": None, "timeoutMs": 60000, "mode": "bad-login",
               "sasl": {"mechanism": "scram-sha-256", "username": "js-user", "password": PW["js-user"]}})
    assert res["loginError"] is None and res["error"] is None, res


# ====================================================================== raw sockets

def test_raw_scram_exchange(scram, certs):
    pt = scram.addr("PLAINTEXT")
    port, ssl_port = scram.ports["SASL_PLAINTEXT"], scram.ports["SASL_SSL"]
    ctx = tls_context(certs)

    for mechanism in MECHS_ALL:
        with connect(port) as s:
            assert sasl_handshake(s, mechanism) == (NONE, MECHS_ALL), f"SaslHandshake {mechanism} on SASL_PLAINTEXT"
    with connect(ssl_port, ctx) as s:
        assert sasl_handshake(s, SCRAM_256) == (UNSUPPORTED_SASL_MECHANISM, MECHS_SSL)
    with connect(ssl_port, ctx) as s:
        assert sasl_handshake(s, SCRAM_512) == (NONE, MECHS_SSL)

    # judy: SCRAM-SHA-512 through confluent-kafka and SCRAM-SHA-256 through the raw API, both with
    # salts chosen here, which the server-first message must carry.
    salt512, salt256 = os.urandom(32), b"judy-sha256-salt-" + os.urandom(8)
    ck_create(pt, "judy", SCRAM_512, 4096, salt=salt512)
    assert raw_alter(scram.ports["PLAINTEXT"], upsertions=[
        ("judy", MECH_TYPE[SCRAM_256], 8192, salt256, salted_password(SCRAM_256, PW["judy"], salt256, 8192))]) \
        == [("judy", NONE, None)]
    assert raw_describe(scram.ports["PLAINTEXT"], ["judy"]) == (NONE, None, [("judy", NONE, None, [(1, 8192), (2, 4096)])])
    ck_create(pt, "ken", SCRAM_256, 4096)
    ck_create(pt, "o=dd,name", SCRAM_512, 4096)

    # Good logins: every SaslAuthenticate version, both mechanisms, then Metadata is answered.
    for mechanism, salt, iterations in ((SCRAM_512, salt512, 4096), (SCRAM_256, salt256, 8192)):
        for version in (0, 1, 2):
            with connect(port) as s:
                assert API_VERSIONS in api_versions_over(s, corr=1)
                assert sasl_handshake(s, mechanism, corr=2) == (NONE, MECHS_ALL)
                attrs = scram_login(s, ScramClient(mechanism, "judy", PW["judy"]), version, corr=3)
                assert (attrs["s"], attrs["i"]) == (b64(salt), str(iterations)), \
                    f"{mechanism}: server-first {attrs}, expected s={b64(salt)} i={iterations}"
                assert metadata_v1_brokers(s, corr=5) == [(NODE_ID, HOST, port)]
    with connect(ssl_port, ctx) as s:
        assert sasl_handshake(s, SCRAM_512, corr=1) == (NONE, MECHS_SSL)
        scram_login(s, ScramClient(SCRAM_512, "judy", PW["judy"]), 2, corr=2)
        assert metadata_v1_brokers(s, corr=4) == [(NODE_ID, HOST, ssl_port)]
    # RFC 5802 saslname escaping: "o=dd,name" is sent as "o=3Ddd=2Cname".
    with connect(port) as s:
        assert sasl_handshake(s, SCRAM_512, corr=1) == (NONE, MECHS_ALL)
        scram_login(s, ScramClient(SCRAM_512, "o=dd,name", PW["o=dd,name"]), 1, corr=2)
        assert metadata_v1_brokers(s, corr=4) == [(NODE_ID, HOST, port)]

    # Refused after the client-final message (a valid server-first message came first).
    finals = [
        ("a client-final nonce with its last character changed", lambda c: c.client_final(nonce=changed(c.attrs["r"]))),
        ("a client-final nonce cut short by one character", lambda c: c.client_final(nonce=c.attrs["r"][:-1])),
        ("a client-final nonce that is only the client's part", lambda c: c.client_final(nonce=c.cnonce)),
        ("a client-final nonce with a suffix", lambda c: c.client_final(nonce=c.attrs["r"] + "x")),
        ("a client-final nonce with a prefix", lambda c: c.client_final(nonce="x" + c.attrs["r"])),
        ("a fresh client-final nonce", lambda c: c.client_final(nonce=secrets.token_urlsafe(32))),
        ("a corrupted client proof", lambda c: c.client_final(corrupt_proof=True)),
    ]
    for i, (what, final) in enumerate(finals):
        for mechanism in (SCRAM_512, SCRAM_256):
            version = i % 3
            with connect(port) as s:
                assert sasl_handshake(s, mechanism, corr=1) == (NONE, MECHS_ALL)
                c = ScramClient(mechanism, "judy", PW["judy"])
                err, msg, auth = sasl_authenticate(s, c.client_first(), version=version, corr=2)
                assert err == NONE, f"{what}: client-first answered {err} {msg!r}"
                c.server_first(auth)
                expect_refused(s, final(c), mechanism, version, 3, f"{mechanism}: {what}")
    for mechanism in (SCRAM_512, SCRAM_256):
        with connect(port) as s:
            assert sasl_handshake(s, mechanism, corr=1) == (NONE, MECHS_ALL)
            c = ScramClient(mechanism, "judy", "not-judys-password")
            err, msg, auth = sasl_authenticate(s, c.client_first(), version=1, corr=2)
            assert err == NONE, f"client-first answered {err} {msg!r}"
            c.server_first(auth)
            expect_refused(s, c.client_final(), mechanism, 1, 3, f"{mechanism}: a wrong password")
    # ... over TLS too.
    with connect(ssl_port, ctx) as s:
        assert sasl_handshake(s, SCRAM_512, corr=1) == (NONE, MECHS_SSL)
        c = ScramClient(SCRAM_512, "judy", PW["judy"])
        err, msg, auth = sasl_authenticate(s, c.client_first(), version=2, corr=2)
        assert err == NONE, (err, msg)
        c.server_first(auth)
        expect_refused(s, c.client_final(nonce=changed(c.attrs["r"])), SCRAM_512, 2, 3, "SASL_SSL: an altered nonce")

    # Refused at the client-first message.
    firsts = [
        ("an unknown user", SCRAM_512, ScramClient(SCRAM_512, "nobody-here", "whatever").client_first()),
        ("an unknown user", SCRAM_256, ScramClient(SCRAM_256, "nobody-here", "whatever").client_first()),
        ("a user without a SCRAM-SHA-512 credential", SCRAM_512, ScramClient(SCRAM_512, "ken", PW["ken"]).client_first()),
        ("the unescaped name of 'o=dd,name'", SCRAM_512, f"n,,n=o=dd,name,r={secrets.token_urlsafe(24)}".encode()),
        ("a malformed client-first message", SCRAM_512, b"hello, this is not SCRAM"),
    ]
    for i, (what, mechanism, token) in enumerate(firsts):
        with connect(port) as s:
            assert sasl_handshake(s, mechanism, corr=1) == (NONE, MECHS_ALL)
            expect_refused(s, token, mechanism, i % 3, 2, f"{mechanism}: {what}")

    # Still served.
    with connect(port) as s:
        assert sasl_handshake(s, SCRAM_256, corr=1) == (NONE, MECHS_ALL)
        scram_login(s, ScramClient(SCRAM_256, "ken", PW["ken"]), 2, corr=2)
        assert metadata_v1_brokers(s, corr=4) == [(NODE_ID, HOST, port)]


def failed_scram_login(port: int, i: int) -> str | None:
    """One connection that must end in error 58 and a close; None, or what went wrong."""
    mechanism = (SCRAM_512, SCRAM_256)[i % 2]
    version = i % 3
    kind = (i // 2) % 4
    what = ("a wrong password", "an unknown user", "an altered nonce", "a corrupted proof")[kind]
    try:
        with connect(port) as s:
            hs = sasl_handshake(s, mechanism, corr=1)
            if hs != (NONE, MECHS_ALL):
                return f"#{i}: SaslHandshake {mechanism} answered {hs}"
            user, password = ("leo", PW["leo"]) if kind != 0 else ("leo", f"wrong-{i}")
            if kind == 1:
                user = f"unknown-{i}"
            c = ScramClient(mechanism, user, password)
            token = c.client_first()
            if kind != 1:
                err, msg, auth = sasl_authenticate(s, token, version=version, corr=2)
                if err != NONE:
                    return f"#{i} ({what}, {mechanism}, v{version}): client-first answered {err} {msg!r}"
                c.server_first(auth)
                token = c.client_final(nonce=changed(c.attrs["r"]) if kind == 2 else None,
                                       corrupt_proof=kind == 3)
            err, msg, _ = sasl_authenticate(s, token, version=version, corr=3)
            if (err, msg) != (SASL_AUTHENTICATION_FAILED, scram_failed(mechanism)):
                return f"#{i} ({what}, {mechanism}, v{version}): answered error {err} {msg!r}"
            rest = wait_closed(s)
            if rest:
                return f"#{i} ({what}): {len(rest)} more bytes after the failure before the close: {rest[:32].hex()}"
    except (OSError, Closed, AssertionError, struct.error, ValueError) as e:
        return f"#{i} ({what}, {mechanism}, v{version}): {e!r}"
    return None


def test_raw_failed_scram_logins_bounded(scram, certs):
    pt, port = scram.addr("PLAINTEXT"), scram.ports["SASL_PLAINTEXT"]
    ck_create(pt, "leo", SCRAM_512, 4096)
    ck_create(pt, "leo", SCRAM_256, 4096)
    pid = scram.broker.pid
    logged_before = len(failed_auth_lines(scram.broker))
    # Warm up (one of each kind and mechanism) before the baseline.
    problems = [p for p in (failed_scram_login(port, i) for i in range(8)) if p]
    assert not problems, problems
    rss_before = status_kb(pid)["VmRSS"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        problems = [p for p in pool.map(lambda i: failed_scram_login(port, i), range(8, 208)) if p]
    assert not problems, f"{len(problems)} of 200 failed SCRAM logins went wrong, first: {problems[:5]}"
    time.sleep(0.5)
    rss_after = status_kb(pid)["VmRSS"]
    assert scram.broker.is_running()
    grew = rss_after - rss_before
    assert grew < 32 * 1024, f"VmRSS grew by {grew} kB ({rss_before} -> {rss_after} kB) over 200 failed SCRAM logins"
    logged = len(failed_auth_lines(scram.broker)) - logged_before
    assert logged >= 1, "the broker logged none of the failed SCRAM authentications"

    with connect(port) as s:
        assert sasl_handshake(s, SCRAM_512, corr=1) == (NONE, MECHS_ALL)
        scram_login(s, ScramClient(SCRAM_512, "leo", PW["leo"]), 1, corr=2)
        assert metadata_v1_brokers(s, corr=4) == [(NODE_ID, HOST, port)]
    ck_roundtrip(scram.addr("SASL_PLAINTEXT"), scram_conf(certs, "SASL_PLAINTEXT", "leo", PW["leo"]),
                 "scram-after-bad-logins", n=100)
