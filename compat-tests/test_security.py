"""TLS and SASL/PLAIN listeners (Kafka's ``listeners``, ``listener.security.protocol.map``,
``ssl.*``, ``sasl.enabled.mechanisms`` and ``listener.name.<l>.plain.sasl.jaas.config``) with
real clients and raw sockets.

Certificates are made once per session with the ``openssl`` CLI in a temporary directory (never
committed): a self-signed CA, a server certificate for CN=localhost with subjectAltName
IP:127.0.0.1,DNS:localhost (RSA, unencrypted PKCS#8; also the same key as traditional RSA PEM
and as an encrypted PKCS#8 key, and an EC P-256 server certificate with a SEC1 key), a client
certificate CN=client,O=ottla-tests (EC P-256), and a second, untrusted CA with its own client
certificate. The server keystore is one PEM file: key, certificate, CA certificate.

One broker for most of the module (``secure``): ``listeners=PLAINTEXT://..,SSL://..,
SASL_PLAINTEXT://..,SASL_SSL://..`` (PLAINTEXT first, so conftest's readiness check works),
``ssl.keystore.type=PEM`` + ``ssl.keystore.location``, ``sasl.enabled.mechanisms=PLAIN``, PLAIN
users admin and alice from ``listener.name.sasl_plaintext.plain.sasl.jaas.config`` /
``listener.name.sasl_ssl.plain.sasl.jaas.config``. Tests that need other settings start their own.

* ``test_metadata_advertises_the_listener_used``: confluent-kafka's Metadata through each of the
  four listeners lists broker 1 at that listener's own port (a client bootstrapped on the SSL
  port stays on the SSL port).
* ``test_confluent_ssl``: confluent-kafka (librdkafka) over SSL, verifying the server certificate
  against the CA: creates a 2-partition topic, produces 300 records (keys, binary values, repeated
  headers, explicit timestamps) and reads every field back at the acknowledged offsets.
* ``test_confluent_sasl_plaintext``: the same over SASL_PLAINTEXT with PLAIN as alice.
* ``test_confluent_sasl_wrong_password``: alice with a wrong password gets no metadata; librdkafka
  reports an authentication error carrying the broker's message "Authentication failed: Invalid
  username or password"; the broker logs "Failed authentication with /127.0.0.1" with the reason.
* ``test_confluent_sasl_ssl_with_group``: SASL_SSL + PLAIN: produce, read back by assignment,
  and again with a subscribed consumer group that commits (FindCoordinator, JoinGroup, ... over
  SASL_SSL: the coordinator is advertised on the SASL_SSL listener too); committed offsets are the
  end offsets.
* ``test_mtls_required``: ``ssl.client.auth=required``: a client without a certificate, and one
  whose certificate is signed by an untrusted CA, get no ApiVersions answer (raw TLS) and no
  metadata (confluent-kafka); with the CA-signed client certificate (EC key) confluent-kafka
  produces and reads back.
* ``test_mtls_requested``: ``ssl.client.auth=requested``: clients with and without a certificate
  both work.
* ``test_custom_listener_name``: ``listeners=PLAINTEXT://..,EXTERNAL://..`` with
  ``listener.security.protocol.map=EXTERNAL:SASL_SSL,PLAINTEXT:PLAINTEXT`` and only per-listener
  settings (``listener.name.external.ssl.keystore.location``, ``...sasl.enabled.mechanisms``,
  ``...plain.sasl.jaas.config``): SASL_SSL works on EXTERNAL (produce + read back), Metadata on
  EXTERNAL lists the broker at EXTERNAL's port and on PLAINTEXT at PLAINTEXT's, and EXTERNAL
  does not speak plaintext Kafka.
* ``test_server_key_forms``: the server key as PKCS#8, as traditional RSA PEM, as SEC1 EC PEM (EC
  certificate), and inline (``ssl.keystore.key`` + ``ssl.keystore.certificate.chain``): the
  broker serves TLS with exactly the configured certificate and librdkafka gets metadata.
* ``test_sighup_reloads_the_key_store``: the key store file is replaced (RSA certificate → EC
  certificate) and the broker gets SIGHUP: new TLS connections get the new certificate, one
  opened before keeps answering, confluent-kafka works; a truncated key store is then refused
  with a log line and the rotated certificate stays.
* ``test_dynamic_key_store_config_reloads_the_listener``: IncrementalAlterConfigs on broker 1
  sets ``listener.name.ssl.ssl.keystore.location`` (what ``kafka-configs`` sends): the listener
  serves it at once and after a restart; on the cluster-wide default (raw request, name "") it
  is refused INVALID_REQUEST ("broker id must be specified"), as Kafka refuses it.
* ``test_raw_reauthentication``: with ``connections.max.reauth.ms=1500``, SaslAuthenticate v1
  answers session_lifetime_ms 1500; a request after the lifetime closes the connection; a
  re-authentication (handshake + authenticate on the same connection) renews it; re-authenticating
  as another user fails with Kafka's "Cannot change principals during re-authentication" message.
* ``test_clients_reauthenticate_and_keep_their_connections``: confluent-kafka produces for four
  session lifetimes: every message is delivered and the broker never closes a connection for an
  expired session (librdkafka re-authenticates).
* ``test_encrypted_key_refused``: an encrypted PKCS#8 key makes the broker exit non-zero at
  start-up with an error naming the problem.
* ``test_kcat``: kcat (librdkafka 2.0.2) over SSL and SASL_PLAINTEXT/PLAIN: ``-L`` lists the
  broker at the port used; 200 ``key|value`` lines produced with ``-P -K'|'`` come back
  identical, in order, with ``-C -e``.
* ``test_kafka_python``: kafka-python over SSL, SASL_PLAINTEXT and SASL_SSL (PLAIN): admin
  create_topics and describe_cluster (the broker at the port used), producer, consumer
  (assign + seek_to_beginning), every field compared.
* ``test_java_sasl_ssl``: Java kafka-clients 4.1.0 (``java/src/OttlaSecurity.java``) over SASL_SSL
  with ``ssl.truststore.type=PEM``: describeCluster at the bootstrap port, createTopics, idempotent
  producer, consumer, every field compared; with a wrong password, describeCluster fails with
  SaslAuthenticationException carrying the broker's message.
* ``test_kafkajs_sasl_ssl``: kafkajs 2.2.4 (``kafkajs/security.js``) over SASL_SSL: describeCluster,
  createTopics, produce, a consumer group reads everything back; a wrong password makes connect()
  fail with kafkajs' SASL authentication error naming the broker's message.
* ``test_raw_garbage_on_tls_port``: random bytes, a ClientHello of garbage and a plaintext Kafka
  frame sent to the SSL port each get their connection closed (at most a TLS alert first); an
  idle TCP connection that never starts TLS holds nothing up; a TLS connection opened before the
  garbage still answers ApiVersions, and confluent-kafka still works over SSL afterwards.
* ``test_raw_sasl_handshake``: SaslHandshake v1 for "SCRAM-SHA-999" on SASL_PLAINTEXT gets
  error 33 (UNSUPPORTED_SASL_MECHANISM) with mechanisms ["PLAIN"]; v0 and v1 for PLAIN get
  error 0 with ["PLAIN"]; ApiVersions advertises SaslHandshake v0-1 and SaslAuthenticate v0-2.
* ``test_raw_request_before_authentication``: a Metadata request before authenticating on
  SASL_PLAINTEXT closes the connection without an answer; one sent after SaslHandshake but before
  SaslAuthenticate closes it too (at most after Kafka's empty error response, never with data);
  ApiVersions on a fresh connection is answered; after ApiVersions + SaslHandshake +
  SaslAuthenticate (v1 and v2) as alice, Metadata and FindCoordinator are answered with this
  listener's port.
* ``test_raw_thousand_failed_logins``: 1,000 connections (20 at a time) each send SaslHandshake
  PLAIN + SaslAuthenticate (v0, v1 and v2 in turn) with a wrong password or an unknown user: every
  one is answered with error 58 (SASL_AUTHENTICATION_FAILED) and the message "Authentication
  failed: Invalid username or password", then closed; the broker logs the failures, its RSS grows
  by less than 32 MB, and a SASL client still produces and reads back afterwards.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import types

import pytest

import conftest
from conftest import (
    NODE_ID,
    Ottla,
    api_versions_v0,
    free_port,
    make_records,
    run_java,
    status_kb,
    unique_topic,
    wait_for, stop_module_broker)
from test_groups_kafkajs import JS_DIR, kafkajs_ready  # noqa: F401 - the kafkajs fixture (npm ci once)

OPENSSL = shutil.which("openssl")
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
HOST = "127.0.0.1"
IO_TIMEOUT = 10.0

USERS = {"admin": "admin-secret", "alice": "alice-secret"}
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
AUTH_FAILED_MESSAGE = "Authentication failed: Invalid username or password"
FAILED_AUTH_LOG = "Failed authentication with /127.0.0.1"

# Kafka error codes
NONE = 0
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58
INVALID_REQUEST = 42

# API keys
METADATA, FIND_COORDINATOR, API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 3, 10, 18, 17, 36

ALL_LISTENERS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


# ====================================================================== certificates

@dataclasses.dataclass(frozen=True)
class Certs:
    dir: pathlib.Path
    ca: str                 # CA certificate (PEM): the clients' trust anchor and the broker's truststore
    server_key: str         # unencrypted PKCS#8 RSA key
    server_cert: str        # CN=localhost, SAN IP:127.0.0.1, DNS:localhost
    server_keystore: str    # key + certificate + CA certificate, one PEM file
    server_rsa_keystore: str  # the same with the key as "BEGIN RSA PRIVATE KEY"
    server_ec_keystore: str   # an EC P-256 server certificate with a SEC1 "BEGIN EC PRIVATE KEY"
    server_ec_cert: str
    server_encrypted_keystore: str  # "BEGIN ENCRYPTED PRIVATE KEY" + certificate
    client_key: str         # EC P-256, PKCS#8
    client_cert: str        # CN=client,O=ottla-tests, signed by the CA
    rogue_ca: str           # an unrelated CA
    rogue_client_key: str
    rogue_client_cert: str  # CN=client,O=ottla-tests, signed by the unrelated CA

    def der(self, pem_path: str) -> bytes:
        return ssl.PEM_cert_to_DER_cert(pathlib.Path(pem_path).read_text())


REQ_CNF = """\
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

CLIENT_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(d: pathlib.Path, *args: str) -> None:
    p = subprocess.run([OPENSSL, *args], cwd=d, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")


def make_certs(d: pathlib.Path) -> Certs:
    d.mkdir(parents=True, exist_ok=True)
    (d / "req.cnf").write_text(REQ_CNF)
    (d / "server.ext").write_text(SERVER_EXT)
    (d / "client.ext").write_text(CLIENT_EXT)
    rsa = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]

    def ca(name: str, cn: str) -> None:
        _openssl(d, "genpkey", *rsa, "-out", f"{name}.key")
        _openssl(d, "req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}/O=ottla-tests",
                 "-days", "3", "-sha256", "-config", "req.cnf", "-extensions", "v3_ca", "-out", f"{name}.pem")

    def leaf(name: str, keyalg: list[str], subj: str, ext: str, ca_name: str) -> None:
        _openssl(d, "genpkey", *keyalg, "-out", f"{name}.key")
        _openssl(d, "req", "-new", "-key", f"{name}.key", "-subj", subj, "-config", "req.cnf",
                 "-out", f"{name}.csr")
        _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.pem", "-CAkey", f"{ca_name}.key",
                 "-set_serial", str(random.randrange(1 << 60, 1 << 62)), "-days", "3", "-sha256",
                 "-extfile", ext, "-out", f"{name}.pem")

    ca("ca", "Ottla test CA")
    ca("rogue-ca", "Rogue CA")
    leaf("server", rsa, "/CN=localhost", "server.ext", "ca")
    leaf("server-ec", ec, "/CN=localhost", "server.ext", "ca")
    leaf("client", ec, "/CN=client/O=ottla-tests", "client.ext", "ca")
    leaf("rogue-client", ec, "/CN=client/O=ottla-tests", "client.ext", "rogue-ca")
    _openssl(d, "pkey", "-in", "server.key", "-traditional", "-out", "server-rsa.key")
    _openssl(d, "ec", "-in", "server-ec.key", "-out", "server-ec-sec1.key")
    _openssl(d, "pkcs8", "-topk8", "-in", "server.key", "-v2", "aes-256-cbc", "-passout", "pass:changeit",
             "-out", "server-enc.key")

    def text(name: str) -> str:
        return (d / name).read_text()

    expect = {"server.key": "-----BEGIN PRIVATE KEY-----", "server-rsa.key": "-----BEGIN RSA PRIVATE KEY-----",
              "server-ec-sec1.key": "-----BEGIN EC PRIVATE KEY-----",
              "server-enc.key": "-----BEGIN ENCRYPTED PRIVATE KEY-----", "client.key": "-----BEGIN PRIVATE KEY-----"}
    for name, head in expect.items():
        assert text(name).startswith(head), f"{name} does not start with {head}: {text(name)[:60]!r}"
    (d / "server-keystore.pem").write_text(text("server.key") + text("server.pem") + text("ca.pem"))
    (d / "server-rsa-keystore.pem").write_text(text("server-rsa.key") + text("server.pem") + text("ca.pem"))
    (d / "server-ec-keystore.pem").write_text(text("server-ec-sec1.key") + text("server-ec.pem") + text("ca.pem"))
    (d / "server-enc-keystore.pem").write_text(text("server-enc.key") + text("server.pem") + text("ca.pem"))
    p = lambda name: str(d / name)  # noqa: E731
    return Certs(dir=d, ca=p("ca.pem"), server_key=p("server.key"), server_cert=p("server.pem"),
                 server_keystore=p("server-keystore.pem"), server_rsa_keystore=p("server-rsa-keystore.pem"),
                 server_ec_keystore=p("server-ec-keystore.pem"), server_ec_cert=p("server-ec.pem"),
                 server_encrypted_keystore=p("server-enc-keystore.pem"),
                 client_key=p("client.key"), client_cert=p("client.pem"), rogue_ca=p("rogue-ca.pem"),
                 rogue_client_key=p("rogue-client.key"), rogue_client_cert=p("rogue-client.pem"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    if OPENSSL is None:
        pytest.skip("the openssl CLI is not installed (Debian package openssl): it makes the test certificates")
    return make_certs(tmp_path_factory.mktemp("security-certs"))


# ====================================================================== brokers

@dataclasses.dataclass
class Secure:
    broker: Ottla
    ports: dict[str, int]  # listener name -> port

    def addr(self, listener: str) -> str:
        return f"{HOST}:{self.ports[listener]}"


def distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def listeners_value(ports: dict[str, int]) -> str:
    assert next(iter(ports)) == "PLAINTEXT", "PLAINTEXT must come first (conftest's readiness check uses it)"
    return ",".join(f"{name}://{HOST}:{port}" for name, port in ports.items())


def all_listener_overrides(certs: Certs, ports: dict[str, int], **extra) -> dict:
    return {
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": certs.server_keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": certs.ca,
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        **extra,
    }


def wait_listening(broker: Ottla, ports: dict[str, int]) -> None:
    """conftest waits for the PLAINTEXT listener; the others must accept TCP connections too."""
    for name, port in ports.items():
        def accepts(port=port):
            assert broker.is_running(), f"broker exited: {broker.stderr_tail(40)}"
            with socket.create_connection((HOST, port), timeout=2):
                return True
        wait_for(accepts, 30, f"listener {name} on port {port} to accept connections")


def start_secure(ottla_factory, ports: dict[str, int], overrides: dict, name: str | None = None) -> Secure:
    b = ottla_factory(overrides=overrides, port=ports["PLAINTEXT"], name=name)
    wait_listening(b, ports)
    return Secure(b, ports)


def start_module_secure(request, tmp_path_factory, name: str, ports: dict[str, int],
                        overrides: dict) -> Ottla:
    """Start a module fixture's broker on ``ports`` (PLAINTEXT among them) and wait until
    every listener accepts; the fixture tears it down with ``stop_module_broker``."""
    b = Ottla(tmp_path_factory.mktemp(name), name=name, port=ports["PLAINTEXT"], overrides=overrides)
    request.module._ottla_module_brokers = [b]  # conftest attaches its stderr tail to failures
    b.start()
    try:
        wait_listening(b, ports)
    except BaseException:
        b.kill9()
        raise
    return b


@pytest.fixture(scope="module")
def secure(request, tmp_path_factory, certs) -> Secure:
    ports = dict(zip(ALL_LISTENERS, distinct_ports(len(ALL_LISTENERS))))
    b = start_module_secure(request, tmp_path_factory, "ottla-security", ports,
                            all_listener_overrides(certs, ports))
    yield Secure(b, ports)
    stop_module_broker(b, "ottla-security")


# ====================================================================== confluent-kafka helpers

def ck_conf(certs: Certs, protocol: str, user: str = "alice", password: str | None = None,
            client_cert: bool = False) -> dict:
    conf: dict = {"security.protocol": protocol}
    if "SSL" in protocol:
        conf["ssl.ca.location"] = certs.ca
        if client_cert:
            conf["ssl.certificate.location"] = certs.client_cert
            conf["ssl.key.location"] = certs.client_key
    if protocol.startswith("SASL"):
        conf.update({"sasl.mechanisms": "PLAIN", "sasl.username": user,
                     "sasl.password": USERS[user] if password is None else password})
    return conf


def ck_admin_conf(bootstrap: str, conf: dict):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, **conf})


def ck_brokers(bootstrap: str, conf: dict, timeout: float = 15) -> dict[int, str]:
    """{node id: "host:port"} from a Metadata round trip through ``bootstrap``."""
    md = ck_admin_conf(bootstrap, conf).list_topics(timeout=timeout)
    return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}


def create_topic(bootstrap: str, conf: dict, topic: str, partitions: int = 2) -> None:
    from confluent_kafka.admin import NewTopic
    admin = ck_admin_conf(bootstrap, conf)
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                             operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=60)

    def ready():
        t = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        return (t is not None and t.error is None and len(t.partitions) == partitions
                and all(p.leader == NODE_ID for p in t.partitions.values()))
    wait_for(ready, 30, f"topic {topic} in metadata")


def ck_produce(bootstrap: str, conf: dict, topic: str, recs) -> dict[int, tuple[int, int]]:
    """Produce (acks=all), record i to partition i % 2; {record index: (partition, offset)}.
    Fails on any delivery error."""
    return conftest.ck_produce(bootstrap, topic, recs, conf={"acks": "all", **conf},
                               flush_timeout=60, partition_of=lambda i: i % 2)


def ck_read_all(bootstrap: str, conf: dict, topic: str, partitions: int = 2) -> dict[tuple[int, int], tuple]:
    """Assign every partition from offset 0 and read to the end: {(partition, offset): fields}."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-security-unused",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "error", **conf})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict[tuple[int, int], tuple] = {}
        done = {p for p, e in ends.items() if e == 0}
        deadline = time.monotonic() + 60
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"read timed out: {len(out)} records, ends {ends}"
            for m in c.consume(num_messages=1000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            done.add(m.partition())
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                out[(m.partition(), m.offset())] = message_fields(m)
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        return out
    finally:
        c.close()


def message_fields(m) -> tuple:
    return (m.key(), m.value(), m.headers() or [], m.timestamp()[1])


def rec_fields(r) -> tuple:
    return (r.key, r.value, r.header_list(), r.ts)


def assert_read_back(recs, acked: dict[int, tuple[int, int]], got: dict[tuple[int, int], tuple]) -> None:
    want = {pos: rec_fields(recs[i]) for i, pos in acked.items()}
    assert len(want) == len(recs), "two records acknowledged at the same offset"
    for p in (0, 1):
        offs = sorted(o for (pp, o) in want if pp == p)
        assert offs == list(range(len(offs))), f"partition {p}: acknowledged offsets not dense from 0: {offs[:10]}"
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"read back {len(got)} records; missing {missing[:10]}, unexpected {extra[:10]}"
    bad = [f"{pos}: got {got[pos]!r}, want {want[pos]!r}" for pos in sorted(want) if got[pos] != want[pos]]
    assert not bad, f"{len(bad)} records differ, first:\n" + "\n".join(bad[:3])


def ck_roundtrip(bootstrap: str, conf: dict, tag: str, n: int = 300) -> tuple[str, dict[tuple[int, int], bytes]]:
    """New 2-partition topic, ``n`` records produced and read back by assignment; returns the
    topic and {(partition, offset): key} of what was acknowledged."""
    topic = unique_topic(tag)
    create_topic(bootstrap, conf, topic)
    recs = make_records(n, tag)
    acked = ck_produce(bootstrap, conf, topic, recs)
    assert_read_back(recs, acked, ck_read_all(bootstrap, conf, topic))
    return topic, {pos: recs[i].key for i, pos in acked.items()}


def ck_metadata_error(bootstrap: str, conf: dict, timeout: float = 4) -> tuple[Exception | None, list]:
    """A Metadata attempt that is expected to fail: (the exception list_topics raised or None,
    the errors librdkafka reported through error_cb while trying)."""
    from confluent_kafka.admin import AdminClient
    errs: list = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "error_cb": errs.append,
                         "reconnect.backoff.ms": 200, "reconnect.backoff.max.ms": 1000, **conf})
    exc = None
    try:
        admin.list_topics(timeout=timeout)
    except Exception as e:  # noqa: BLE001 - the caller checks what it was
        exc = e
    admin.poll(0.5)  # serves error_cb
    return exc, errs


# ====================================================================== raw protocol helpers

class Closed(Exception):
    pass


def request_frame(api_key: int, version: int, corr: int, body: bytes, flexible: bool = False,
                  client_id: str = "ottla-security-tests") -> bytes:
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, corr, len(cid)) + cid  # request header v1
    if flexible:
        header += b"\x00"  # request header v2: empty tagged fields
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def recv_exact(sock, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionResetError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            raise Closed(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def roundtrip(sock, api_key: int, version: int, corr: int, body: bytes, flexible: bool = False) -> bytes:
    """Send one request and return the response after the correlation id (and, for flexible
    versions other than ApiVersions, after the response header's tagged fields)."""
    sock.sendall(request_frame(api_key, version, corr, body, flexible))
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 4 <= size <= 16 * 1024 * 1024, f"implausible response size {size}"
    payload = recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", payload)
    assert got == corr, f"correlation id {got}, expected {corr}"
    if flexible and api_key != API_VERSIONS:
        assert payload[4] == 0, f"response header tagged fields: {payload[4:8].hex()}"
        return payload[5:]
    return payload[4:]


def wait_closed(sock, timeout: float = IO_TIMEOUT) -> bytes:
    """Read until the peer closes; return what it sent first. Fails if it stays open."""
    sock.settimeout(timeout)
    got = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return bytes(got)
        except socket.timeout:
            break
        if not chunk:
            return bytes(got)
        got += chunk
    raise AssertionError(f"the broker did not close the connection within {timeout} s "
                         f"(received {len(got)} bytes: {bytes(got[:64]).hex()})")


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), f"response too short: need {n} bytes at {self.pos} of {len(self.data)}"
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = v = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else self.take(n)

    def compact_string(self) -> str | None:
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode()

    def compact_bytes(self) -> bytes | None:
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n)

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def end(self) -> None:
        assert self.pos == len(self.data), f"{len(self.data) - self.pos} unexpected trailing bytes"


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def sasl_handshake(sock, mechanism: str, version: int = 1, corr: int = 1) -> tuple[int, list[str]]:
    r = Reader(roundtrip(sock, SASL_HANDSHAKE, version, corr, string(mechanism)))
    err = r.i16()
    mechs = [r.string() for _ in range(r.i32())]
    r.end()
    return err, mechs


def sasl_authenticate(sock, token: bytes, version: int = 1, corr: int = 2) -> tuple[int, str | None, bytes | None]:
    """SaslAuthenticate v0/v1 (request header v1) or v2 (flexible, request header v2):
    (error_code, error_message, auth_bytes)."""
    if version >= 2:
        body = uvarint(len(token) + 1) + token + b"\x00"
        r = Reader(roundtrip(sock, SASL_AUTHENTICATE, version, corr, body, flexible=True))
        err, msg, auth = r.i16(), r.compact_string(), r.compact_bytes()
        r.i64()  # session_lifetime_ms
        r.tags()
    else:
        body = struct.pack(">i", len(token)) + token
        r = Reader(roundtrip(sock, SASL_AUTHENTICATE, version, corr, body))
        err, msg, auth = r.i16(), r.string(), r.bytes_()
        if version >= 1:
            r.i64()  # session_lifetime_ms
    r.end()
    return err, msg, auth


def plain_token(user: str, password: str) -> bytes:
    return b"\0" + user.encode() + b"\0" + password.encode()


def metadata_v1_brokers(sock, corr: int) -> list[tuple[int, str, int]]:
    r = Reader(roundtrip(sock, METADATA, 1, corr, struct.pack(">i", -1)))  # all topics
    brokers = []
    for _ in range(r.i32()):
        node, host, port = r.i32(), r.string(), r.i32()
        r.string()  # rack
        brokers.append((node, host, port))
    return brokers


def find_coordinator_v1(sock, group: str, corr: int) -> tuple[int, int, str, int]:
    r = Reader(roundtrip(sock, FIND_COORDINATOR, 1, corr, string(group) + b"\x00"))
    r.i32()  # throttle_time_ms
    err = r.i16()
    r.string()  # error_message
    node, host, port = r.i32(), r.string(), r.i32()
    r.end()
    return err, node, host, port


def api_versions_over(sock, corr: int = 1) -> dict[int, tuple[int, int]]:
    r = Reader(roundtrip(sock, API_VERSIONS, 0, corr, b""))
    err = r.i16()
    assert err == NONE, f"ApiVersions v0 error {err}"
    out = {}
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        out[k] = (lo, hi)
    return out


def tls_context(certs: Certs, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_connect(port: int, ctx: ssl.SSLContext, timeout: float = IO_TIMEOUT) -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=HOST)
    except BaseException:
        raw.close()
        raise
    s.settimeout(timeout)
    return s


# ====================================================================== listeners and metadata

def test_metadata_advertises_the_listener_used(secure, certs):
    for listener in ALL_LISTENERS:
        brokers = ck_brokers(secure.addr(listener), ck_conf(certs, listener))
        assert brokers == {NODE_ID: secure.addr(listener)}, (
            f"Metadata answered on the {listener} listener lists {brokers}, "
            f"expected broker {NODE_ID} at {secure.addr(listener)}")


# ====================================================================== confluent-kafka

def test_confluent_ssl(secure, certs):
    ck_roundtrip(secure.addr("SSL"), ck_conf(certs, "SSL"), "sec-ck-ssl")


def test_confluent_sasl_plaintext(secure, certs):
    ck_roundtrip(secure.addr("SASL_PLAINTEXT"), ck_conf(certs, "SASL_PLAINTEXT"), "sec-ck-sasl")


def failed_auth_lines(broker: Ottla, reason: str = "") -> list[str]:
    return [l for l in broker.stderr_text().splitlines() if FAILED_AUTH_LOG in l and reason in l]


def test_confluent_sasl_wrong_password(secure, certs):
    from confluent_kafka import KafkaError
    before = len(failed_auth_lines(secure.broker))
    exc, errs = ck_metadata_error(secure.addr("SASL_PLAINTEXT"),
                                  ck_conf(certs, "SASL_PLAINTEXT", password="not-alice-secret"))
    assert exc is not None, "list_topics with a wrong password returned metadata"
    auth = [e for e in errs + [exc.args[0] if exc.args else None]
            if e is not None and hasattr(e, "code") and e.code() == KafkaError._AUTHENTICATION]
    assert auth, (f"no _AUTHENTICATION error from librdkafka; list_topics raised {exc!r}, "
                  f"error_cb got {[str(e) for e in errs]}")
    assert any(AUTH_FAILED_MESSAGE in e.str() for e in auth), \
        f"the authentication errors do not carry the broker's message: {[e.str() for e in auth]}"

    lines = wait_for(lambda: failed_auth_lines(secure.broker)[before:], 10,
                     f"a '{FAILED_AUTH_LOG}' line on the broker's stderr")
    assert any("Invalid username or password" in l for l in lines), \
        f"the log lines do not give the reason: {lines[:3]}"

    # Right password on the same listener still works.
    assert ck_brokers(secure.addr("SASL_PLAINTEXT"), ck_conf(certs, "SASL_PLAINTEXT")) == \
        {NODE_ID: secure.addr("SASL_PLAINTEXT")}


def test_confluent_sasl_ssl_with_group(secure, certs):
    from confluent_kafka import Consumer, TopicPartition
    bootstrap, conf = secure.addr("SASL_SSL"), ck_conf(certs, "SASL_SSL", user="admin")
    topic, keys = ck_roundtrip(bootstrap, conf, "sec-ck-sasl-ssl", n=400)

    group = f"group-{topic}"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000, **conf})
    got = {}
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < 400:
            assert time.monotonic() < deadline, f"group consumer got {len(got)} of 400 records in 60 s"
            for m in c.consume(num_messages=500, timeout=1.0):
                assert m.error() is None, f"consumer error: {m.error()}"
                got[(m.partition(), m.offset())] = m.key()
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
    finally:
        c.close()
    assert got == keys, f"the group consumer read {len(got)} records, {sum(got.get(k) != v for k, v in keys.items())} differ"
    assert {tp.partition: tp.offset for tp in committed} == {0: 200, 1: 200}


# ====================================================================== mutual TLS

def mtls_broker(ottla_factory, certs: Certs, mode: str) -> Secure:
    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    return start_secure(ottla_factory, ports, {
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": certs.server_keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": certs.ca,
        "ssl.client.auth": mode,
    }, name=f"ottla-mtls-{mode}")


def raw_api_versions_over_tls(port: int, ctx: ssl.SSLContext) -> tuple[bool, str]:
    """(True, "") if ApiVersions is answered over TLS, else (False, what went wrong)."""
    try:
        with tls_connect(port, ctx) as s:
            keys = api_versions_over(s)
            return API_VERSIONS in keys, ""
    except (OSError, Closed, ssl.SSLError) as e:
        return False, repr(e)


def test_mtls_required(ottla_factory, certs):
    sec = mtls_broker(ottla_factory, certs, "required")
    port, bootstrap = sec.ports["SSL"], sec.addr("SSL")

    ok, why = raw_api_versions_over_tls(port, tls_context(certs))
    assert not ok, "a TLS client without a certificate got an ApiVersions answer with ssl.client.auth=required"
    ok, why = raw_api_versions_over_tls(port, tls_context(certs, certs.rogue_client_cert, certs.rogue_client_key))
    assert not ok, "a client certificate from an untrusted CA was accepted with ssl.client.auth=required"

    exc, errs = ck_metadata_error(bootstrap, ck_conf(certs, "SSL"), timeout=3)
    assert exc is not None, "confluent-kafka without a client certificate got metadata"
    rogue = {**ck_conf(certs, "SSL"), "ssl.certificate.location": certs.rogue_client_cert,
             "ssl.key.location": certs.rogue_client_key}
    exc, errs = ck_metadata_error(bootstrap, rogue, timeout=3)
    assert exc is not None, "confluent-kafka with an untrusted client certificate got metadata"

    ok, why = raw_api_versions_over_tls(port, tls_context(certs, certs.client_cert, certs.client_key))
    assert ok, f"a TLS client with the CA-signed certificate got no ApiVersions answer: {why}"
    conf = ck_conf(certs, "SSL", client_cert=True)
    assert ck_brokers(bootstrap, conf) == {NODE_ID: bootstrap}
    ck_roundtrip(bootstrap, conf, "sec-mtls", n=200)


def test_mtls_requested(ottla_factory, certs):
    sec = mtls_broker(ottla_factory, certs, "requested")
    port, bootstrap = sec.ports["SSL"], sec.addr("SSL")
    for what, ctx in (("without a certificate", tls_context(certs)),
                      ("with the CA-signed certificate", tls_context(certs, certs.client_cert, certs.client_key))):
        ok, why = raw_api_versions_over_tls(port, ctx)
        assert ok, f"ssl.client.auth=requested: a client {what} got no ApiVersions answer: {why}"
    assert ck_brokers(bootstrap, ck_conf(certs, "SSL")) == {NODE_ID: bootstrap}
    ck_roundtrip(bootstrap, ck_conf(certs, "SSL", client_cert=True), "sec-mtls-req", n=100)


# ====================================================================== listener names, key forms

def test_custom_listener_name(ottla_factory, certs):
    ports = dict(zip(("PLAINTEXT", "EXTERNAL"), distinct_ports(2)))
    sec = start_secure(ottla_factory, ports, {
        "listeners": listeners_value(ports),
        "listener.security.protocol.map": "EXTERNAL:SASL_SSL,PLAINTEXT:PLAINTEXT",
        "listener.name.external.ssl.keystore.type": "PEM",
        "listener.name.external.ssl.keystore.location": certs.server_keystore,
        "listener.name.external.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.external.plain.sasl.jaas.config": JAAS,
    }, name="ottla-external")
    external, plaintext = sec.addr("EXTERNAL"), sec.addr("PLAINTEXT")
    conf = ck_conf(certs, "SASL_SSL")
    assert ck_brokers(external, conf) == {NODE_ID: external}
    assert ck_brokers(plaintext, {}) == {NODE_ID: plaintext}
    ck_roundtrip(external, conf, "sec-external", n=200)

    # EXTERNAL is TLS: a plaintext ApiVersions gets no Kafka answer there.
    with socket.create_connection((HOST, ports["EXTERNAL"]), timeout=IO_TIMEOUT) as s:
        s.sendall(request_frame(API_VERSIONS, 0, 1, b""))
        first = wait_closed(s)
    assert not first or first[0] == 0x15, f"plaintext request on EXTERNAL answered with {first[:32].hex()}"


KEY_FORMS = ["pkcs8-file", "rsa-file", "ec-sec1-file", "inline-pkcs8"]


@pytest.mark.parametrize("form", KEY_FORMS)
def test_server_key_forms(ottla_factory, certs, form):
    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    overrides = {"listeners": listeners_value(ports), "ssl.keystore.type": "PEM"}
    served = certs.server_cert
    if form == "pkcs8-file":
        overrides["ssl.keystore.location"] = certs.server_keystore
    elif form == "rsa-file":
        overrides["ssl.keystore.location"] = certs.server_rsa_keystore
    elif form == "ec-sec1-file":
        overrides["ssl.keystore.location"] = certs.server_ec_keystore
        served = certs.server_ec_cert
    else:
        overrides["ssl.keystore.key"] = pathlib.Path(certs.server_key).read_text()
        overrides["ssl.keystore.certificate.chain"] = (pathlib.Path(certs.server_cert).read_text()
                                                       + pathlib.Path(certs.ca).read_text())
    sec = start_secure(ottla_factory, ports, overrides, name=f"ottla-{form}")
    with tls_connect(sec.ports["SSL"], tls_context(certs)) as s:
        peer = s.getpeercert(binary_form=True)
        keys = api_versions_over(s)
    assert peer == certs.der(served), f"{form}: the broker presented another certificate than configured"
    assert API_VERSIONS in keys
    assert ck_brokers(sec.addr("SSL"), ck_conf(certs, "SSL")) == {NODE_ID: sec.addr("SSL")}


def test_sighup_reloads_the_key_store(ottla_factory, certs, tmp_path):
    """A rotated certificate is served after SIGHUP without a restart: new connections get
    it, an open connection keeps working, and a key store that does not load is refused
    with a log line while the current certificate stays."""
    keystore = tmp_path / "rotating-keystore.pem"
    shutil.copyfile(certs.server_keystore, keystore)
    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    sec = start_secure(ottla_factory, ports, {
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
    }, name="ottla-sighup")
    ctx = tls_context(certs)

    def served() -> bytes:
        with tls_connect(sec.ports["SSL"], ctx) as s:
            return s.getpeercert(binary_form=True)

    before = tls_connect(sec.ports["SSL"], ctx)
    try:
        assert before.getpeercert(binary_form=True) == certs.der(certs.server_cert)
        # Rotate: the EC certificate replaces the RSA one in the same file.
        shutil.copyfile(certs.server_ec_keystore, keystore)
        os.kill(sec.broker.pid, signal.SIGHUP)
        wait_for(lambda: served() == certs.der(certs.server_ec_cert), 15,
                 "new connections to get the rotated certificate")
        assert "Reloaded the SSL key and trust stores of listener SSL" in sec.broker.stderr_text()
        # The connection opened before the rotation goes on with its own session.
        assert API_VERSIONS in api_versions_over(before, corr=7)
    finally:
        before.close()
    ck_roundtrip(sec.addr("SSL"), ck_conf(certs, "SSL"), "sec-sighup", n=100)

    # A half-written key store: refused, the rotated certificate stays.
    keystore.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
    os.kill(sec.broker.pid, signal.SIGHUP)
    wait_for(lambda: "Cannot reload the SSL key store of listener SSL" in sec.broker.stderr_text(), 15,
             "the failed reload to be logged")
    assert sec.broker.is_running()
    assert served() == certs.der(certs.server_ec_cert)


def test_dynamic_key_store_config_reloads_the_listener(ottla_factory, certs):
    """`kafka-configs --alter --entity-type brokers --entity-name 1 --add-config
    listener.name.ssl.ssl.keystore.location=...` (IncrementalAlterConfigs on this
    broker): the listener serves the new key store at once and after a restart; the
    cluster-wide default is refused, as Kafka refuses per-broker key stores there."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    sec = start_secure(ottla_factory, ports, {
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": certs.server_keystore,
    }, name="ottla-dynamic-keystore")
    ctx = tls_context(certs)

    def served() -> bytes:
        with tls_connect(sec.ports["SSL"], ctx) as s:
            return s.getpeercert(binary_form=True)

    def alter(name: str) -> KafkaException | None:
        admin = AdminClient({"bootstrap.servers": sec.addr("PLAINTEXT")})
        res = ConfigResource(ConfigResource.Type.BROKER, name, incremental_configs=[ConfigEntry(
            "listener.name.ssl.ssl.keystore.location", certs.server_ec_keystore,
            incremental_operation=AlterConfigOpType.SET)])
        try:
            admin.incremental_alter_configs([res])[res].result(timeout=30)
            return None
        except KafkaException as e:
            return e

    assert served() == certs.der(certs.server_cert)
    # The cluster-wide default (resource name ""): refused. The Admin clients will not
    # send an empty broker name, so IncrementalAlterConfigs v0 by hand.
    key = b"listener.name.ssl.ssl.keystore.location"
    body = (struct.pack(">i", 1) + struct.pack(">b", 4) + string("")
            + struct.pack(">i", 1) + string(key.decode()) + struct.pack(">b", 0)
            + string(certs.server_ec_keystore) + b"\x00")
    with socket.create_connection((HOST, ports["PLAINTEXT"]), timeout=IO_TIMEOUT) as s:
        r = Reader(roundtrip(s, 44, 0, 5, body))
    r.i32()  # throttle
    assert r.i32() == 1
    code, message, rtype, rname = r.i16(), r.string(), r.i8(), r.string()
    assert (code, rtype, rname) == (INVALID_REQUEST, 4, ""), (code, message)
    assert "broker id must be specified" in (message or ""), message
    assert served() == certs.der(certs.server_cert)

    assert alter(str(NODE_ID)) is None
    wait_for(lambda: served() == certs.der(certs.server_ec_cert), 15,
             "the listener to serve the key store set through the dynamic config")
    ck_roundtrip(sec.addr("SSL"), ck_conf(certs, "SSL"), "sec-dynamic-keystore", n=100)

    sec.broker.stop()
    sec.broker.start()
    wait_listening(sec.broker, ports)
    assert served() == certs.der(certs.server_ec_cert), "the dynamic key store was not applied at start-up"


REAUTH_MS = 1500


def start_reauth_broker(ottla_factory, certs) -> Secure:
    ports = dict(zip(("PLAINTEXT", "SASL_PLAINTEXT"), distinct_ports(2)))
    return start_secure(ottla_factory, ports, {
        "listeners": listeners_value(ports),
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "connections.max.reauth.ms": str(REAUTH_MS),
    }, name="ottla-reauth")


def login_v1(sock, user: str, corr: int) -> int:
    """SaslHandshake v1 + SaslAuthenticate v1 with PLAIN; returns session_lifetime_ms."""
    assert sasl_handshake(sock, "PLAIN", corr=corr)[0] == NONE
    token = plain_token(user, USERS[user])
    r = Reader(roundtrip(sock, SASL_AUTHENTICATE, 1, corr + 1, struct.pack(">i", len(token)) + token))
    err, msg = r.i16(), r.string()
    r.bytes_()
    lifetime = r.i64()
    r.end()
    assert err == NONE, msg
    return lifetime


def test_raw_reauthentication(ottla_factory, certs):
    """KIP-368 as Kafka serves it: SaslAuthenticate v1 tells the session lifetime
    (`connections.max.reauth.ms`); past it, anything but a re-authentication closes the
    connection; a re-authentication on the same connection renews the session, with the
    same principal only."""
    sec = start_reauth_broker(ottla_factory, certs)
    port = sec.ports["SASL_PLAINTEXT"]

    # Not re-authenticated: the first request after the lifetime closes the connection.
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
        assert login_v1(s, "alice", 1) == REAUTH_MS
        assert metadata_v1_brokers(s, 3)
        time.sleep(REAUTH_MS / 1000 + 0.4)
        with pytest.raises(Closed):
            metadata_v1_brokers(s, 4)

    # Re-authenticated before the end: the connection goes on past the first lifetime.
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
        assert login_v1(s, "alice", 1) == REAUTH_MS
        time.sleep(REAUTH_MS / 1000 * 0.6)
        assert login_v1(s, "alice", 3) == REAUTH_MS
        time.sleep(REAUTH_MS / 1000 * 0.6)
        assert metadata_v1_brokers(s, 5), "the renewed session was refused"

    # Re-authenticating as someone else: Kafka's refusal, then the connection closes.
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
        login_v1(s, "alice", 1)
        assert sasl_handshake(s, "PLAIN", corr=3)[0] == NONE
        err, msg, _ = sasl_authenticate(s, plain_token("admin", USERS["admin"]), corr=4)
        assert err == SASL_AUTHENTICATION_FAILED
        assert msg == "Cannot change principals during re-authentication from User.alice: User.admin", msg
        wait_closed(s)
    assert sec.broker.is_running()


def test_clients_reauthenticate_and_keep_their_connections(ottla_factory, certs):
    """confluent-kafka (librdkafka, KIP-368 since 2.2) produces for several session
    lifetimes: it re-authenticates on its connections, so the broker never has to close
    one for an expired session, and every message is delivered."""
    from confluent_kafka import Producer

    sec = start_reauth_broker(ottla_factory, certs)
    conf = ck_conf(certs, "SASL_PLAINTEXT")
    topic = unique_topic("sec-reauth")
    create_topic(sec.addr("SASL_PLAINTEXT"), conf, topic)
    delivered, failed = [], []
    p = Producer({**conf, "bootstrap.servers": sec.addr("SASL_PLAINTEXT"), "linger.ms": 0})
    deadline = time.monotonic() + 4 * REAUTH_MS / 1000
    n = 0
    while time.monotonic() < deadline:
        p.produce(topic, value=b"%d" % n,
                  on_delivery=lambda err, msg: (failed if err else delivered).append(err or msg.offset()))
        n += 1
        p.poll(0.1)
    assert p.flush(30) == 0
    assert not failed, failed[:3]
    assert len(delivered) == n
    expired = [line for line in sec.broker.stderr_text().splitlines() if "did not re-authenticate" in line]
    assert not expired, expired[:3]


def test_encrypted_key_refused(ottla_factory, certs):
    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    b = ottla_factory(overrides={"listeners": listeners_value(ports), "ssl.keystore.type": "PEM",
                                 "ssl.keystore.location": certs.server_encrypted_keystore},
                      port=ports["PLAINTEXT"], name="ottla-encrypted-key", start=False)
    b.start(wait=False)
    try:
        code = b.proc.wait(30)
    except subprocess.TimeoutExpired:
        b.kill9()
        pytest.fail("the broker kept running with an encrypted private key in ssl.keystore.location")
    b.kill9()  # already exited: marks the exit as expected for the teardown check
    err = b.stderr_since_start()
    assert code != 0, f"exit code {code} with an encrypted key; stderr:\n{err[-2000:]}"
    assert "encrypted" in err.lower(), f"the start-up error does not say the key is encrypted:\n{err[-2000:]}"
    assert "panicked at" not in err, err[-3000:]


# ====================================================================== kcat

def kcat_security_args(certs: Certs, listener: str) -> list[str]:
    out = []
    for k, v in ck_conf(certs, listener).items():
        out += ["-X", f"{k}={v}"]
    return out


@pytest.mark.parametrize("listener", ["SSL", "SASL_PLAINTEXT"])
def test_kcat(secure, certs, listener):
    if KCAT is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs the Debian package)")
    bootstrap = secure.addr(listener)
    sec_args = kcat_security_args(certs, listener)
    topic = unique_topic(f"sec-kcat-{listener.lower()}")
    create_topic(bootstrap, ck_conf(certs, listener), topic, partitions=1)

    p = subprocess.run([KCAT, "-L", "-b", bootstrap, *sec_args, "-t", topic], capture_output=True, timeout=60)
    listing = p.stdout.decode()
    assert p.returncode == 0, f"kcat -L rc={p.returncode}: {p.stderr.decode()[-2000:]}"
    assert f"broker {NODE_ID} at {bootstrap}" in listing, listing

    lines = [f"k{i}|{listener}-value-{i}-" + "x" * (i % 50) for i in range(200)]
    p = subprocess.run([KCAT, "-P", "-b", bootstrap, *sec_args, "-t", topic, "-K", "|", "-X", "acks=all"],
                       input=("\n".join(lines) + "\n").encode(), capture_output=True, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 0 and "error" not in err.lower() and "fail" not in err.lower(), \
        f"kcat -P rc={p.returncode}: {err[-2000:]}"
    p = subprocess.run([KCAT, "-C", "-b", bootstrap, *sec_args, "-t", topic, "-o", "beginning", "-e", "-q",
                        "-f", "%k|%s\\n"], capture_output=True, timeout=60)
    assert p.returncode == 0, f"kcat -C rc={p.returncode}: {p.stderr.decode()[-2000:]}"
    assert p.stdout.decode().splitlines() == lines


# ====================================================================== kafka-python

def kp_security(certs: Certs, listener: str) -> dict:
    conf: dict = {"security_protocol": listener}
    if "SSL" in listener:
        conf["ssl_cafile"] = certs.ca
    if listener.startswith("SASL"):
        conf.update(sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password=USERS["alice"])
    return conf


def kp_round_trip(bootstrap: str, topic: str, conf: dict, prefix: str, client_id: str) -> None:
    """kafka-python with `conf`: 300 records produced to partitions 0 and 1 of `topic`, then
    read back by assignment from the beginning, every field compared."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    recs = make_records(300, prefix)
    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", **conf)
    try:
        futs = [prod.send(topic, key=r.key, value=r.value, headers=r.header_list(), timestamp_ms=r.ts,
                          partition=i % 2) for i, r in enumerate(recs)]
        prod.flush(timeout=60)
        acked = {}
        for i, f in enumerate(futs):
            md = f.get(timeout=60)
            acked[i] = (md.partition, md.offset)
    finally:
        prod.close(timeout=30)

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", fetch_max_wait_ms=200, client_id=client_id, **conf)
    got = {}
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + 60
        while len(got) < len(recs):
            assert time.monotonic() < deadline, f"kafka-python read {len(got)} of {len(recs)} records in 60 s"
            for tp, crs in c.poll(timeout_ms=1000).items():
                for cr in crs:
                    got[(tp.partition, cr.offset)] = (cr.key, cr.value, list(cr.headers or []), cr.timestamp)
    finally:
        c.close()
    assert_read_back(recs, acked, got)


@pytest.mark.parametrize("listener", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_kafka_python(secure, certs, listener):
    from kafka import KafkaAdminClient
    bootstrap, conf = secure.addr(listener), kp_security(certs, listener)
    topic = unique_topic(f"sec-kp-{listener.lower()}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-security", request_timeout_ms=30000,
                             **conf)
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}},
                            timeout_ms=30000, wait_for_metadata=True)
        cl = admin.describe_cluster()
        assert [(b["broker_id"], b["host"], b["port"]) for b in cl["brokers"]] == \
            [(NODE_ID, HOST, secure.ports[listener])], cl
    finally:
        admin.close()

    kp_round_trip(bootstrap, topic, conf, f"sec-kp-{listener}", "compat-security")


# ====================================================================== Java

def java_properties(path: pathlib.Path, certs: Certs, password: str) -> str:
    jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="alice" password="{password}";')
    props = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.jaas.config": jaas,
             "ssl.truststore.type": "PEM", "ssl.truststore.location": certs.ca}
    # java.util.Properties format: escape backslashes (none here) and keep one key per line
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return str(path)


def test_java_sasl_ssl(secure, certs, java_program, tmp_path):
    target = types.SimpleNamespace(bootstrap=secure.addr("SASL_SSL"))
    good = java_properties(tmp_path / "good.properties", certs, USERS["alice"])
    out = run_java(java_program, "OttlaSecurity", target, good, "data", unique_topic("sec-java"), "500",
                   timeout=180, heap="512m")
    assert "consumed 500 records" in out, out
    bad = java_properties(tmp_path / "bad.properties", certs, "wrong-password")
    out = run_java(java_program, "OttlaSecurity", target, bad, "bad-login", timeout=120, heap="512m")
    assert "AUTH ERROR: SaslAuthenticationException" in out, out


# ====================================================================== kafkajs

def run_security_js(node: str, cfg: dict) -> dict:
    """Run kafkajs/security.js with `cfg`; its last stdout line is the JSON result."""
    p = subprocess.run([node, str(JS_DIR / "security.js"), json.dumps(cfg)], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=120)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"security.js printed no result (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")


def assert_kafkajs_round_trip(res: dict, n: int, port: int) -> None:
    """security.js's "data" mode result: the cluster seen at `port`, `n` records produced
    (50 per call, record i to partition i % 2: one base offset per partition per call, 25
    records apart) and every one consumed back with its key, value and header."""
    assert res["error"] is None, res["error"]
    assert res["cluster"]["brokers"] == [{"nodeId": NODE_ID, "host": HOST, "port": port}], res["cluster"]
    assert all(r["errorCode"] == 0 for r in res["produced"]), res["produced"]
    bases = {p: sorted(int(r["baseOffset"]) for r in res["produced"] if r["partition"] == p) for p in (0, 1)}
    assert bases == {p: list(range(0, n // 2, 25)) for p in (0, 1)}, bases
    expected = {(i % 2, i // 2): i for i in range(n)}
    got = {(m["partition"], int(m["offset"])): m for m in res["consumed"]}
    assert len(res["consumed"]) == n and set(got) == set(expected), \
        f"consumed {len(res['consumed'])} records at {sorted(set(got) ^ set(expected))[:10]} (symmetric difference)"
    for pos, i in expected.items():
        m = got[pos]
        want = {"key": f"k{i}", "value": f"kafkajs-security-v{i}:" + "x" * (i % 37), "headers": {"h": f"h{i}"}}
        assert {k: m[k] for k in want} == want, f"{pos}: {m}"


def test_kafkajs_sasl_ssl(secure, certs, kafkajs_ready):
    node = kafkajs_ready
    bootstrap, port = secure.addr("SASL_SSL"), secure.ports["SASL_SSL"]
    base = dict(bootstrap=bootstrap, caFile=certs.ca, timeoutMs=60000,
                sasl=dict(mechanism="plain", username="alice", password=USERS["alice"]))

    def run(cfg: dict) -> dict:
        return run_security_js(node, cfg)

    topic, n = unique_topic("sec-kafkajs"), 200
    assert_kafkajs_round_trip(run({**base, "mode": "data", "topic": topic, "count": n}), n, port)

    res = run({**base, "mode": "bad-login", "sasl": {**base["sasl"], "password": "wrong-password"}})
    err = res["loginError"]
    assert err is not None, "kafkajs connected with a wrong password"
    assert err["name"] == "KafkaJSSASLAuthenticationError" and AUTH_FAILED_MESSAGE in err["message"], err


# ====================================================================== raw sockets

def test_raw_garbage_on_tls_port(secure, certs):
    port = secure.ports["SSL"]
    ctx = tls_context(certs)
    before = tls_connect(port, ctx)  # established before the garbage arrives
    idle = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)  # never starts TLS
    try:
        rnd = random.Random(20240613)
        garbage = [
            ("random bytes", bytes([0x00]) + rnd.randbytes(4095)),
            # a complete TLS record holding a complete ClientHello message whose body is garbage
            ("a ClientHello of garbage", bytes([0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3C]) + rnd.randbytes(60)),
            ("a plaintext Kafka ApiVersions frame", request_frame(API_VERSIONS, 0, 1, b"")),
        ]
        for what, data in garbage:
            with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
                s.sendall(data)
                try:
                    first = wait_closed(s)
                except AssertionError as e:
                    raise AssertionError(f"{what} on the SSL port: {e}") from None
            assert not first or first[0] == 0x15, (
                f"{what} on the SSL port: expected at most a TLS alert before the close, got {first[:32].hex()}")
            # Still served: a new TLS connection, and the one opened before.
            with tls_connect(port, ctx) as s2:
                assert API_VERSIONS in api_versions_over(s2), what
        assert API_VERSIONS in api_versions_over(before, corr=2)
    finally:
        before.close()
        idle.close()
    assert ck_brokers(secure.addr("SSL"), ck_conf(certs, "SSL")) == {NODE_ID: secure.addr("SSL")}
    assert secure.broker.is_running()


def test_raw_sasl_handshake(secure):
    port = secure.ports["SASL_PLAINTEXT"]
    keys = api_versions_v0(HOST, port)
    assert keys.get(SASL_HANDSHAKE, (99, -1))[0] <= 0 and keys.get(SASL_HANDSHAKE, (99, -1))[1] >= 1, \
        f"SaslHandshake versions advertised: {keys.get(SASL_HANDSHAKE)}"
    assert keys.get(SASL_AUTHENTICATE, (99, -1))[0] <= 0 and keys.get(SASL_AUTHENTICATE, (99, -1))[1] >= 2, \
        f"SaslAuthenticate versions advertised: {keys.get(SASL_AUTHENTICATE)}"

    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
        err, mechs = sasl_handshake(s, "SCRAM-SHA-999", version=1)
    assert (err, mechs) == (UNSUPPORTED_SASL_MECHANISM, ["PLAIN"])

    for version in (0, 1):
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
            err, mechs = sasl_handshake(s, "PLAIN", version=version)
        assert (err, mechs) == (NONE, ["PLAIN"]), f"SaslHandshake v{version} PLAIN"


def test_raw_request_before_authentication(secure):
    port = secure.ports["SASL_PLAINTEXT"]
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
        s.sendall(request_frame(METADATA, 1, 1, struct.pack(">i", -1)))
        first = wait_closed(s)
    assert first == b"", f"Metadata before SASL authentication was answered: {first[:64].hex()}"

    # After the handshake Kafka answers an unexpected request with its error response
    # (ILLEGAL_SASL_STATE; Metadata v1 has no top-level error code, so: no brokers, no topics)
    # and then closes; closing straight away is as good. Never any data.
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
        assert sasl_handshake(s, "PLAIN") == (NONE, ["PLAIN"])
        s.sendall(request_frame(METADATA, 1, 2, struct.pack(">i", -1)))
        first = wait_closed(s)
    if first:
        assert len(first) >= 8 and struct.unpack_from(">ii", first) == (len(first) - 4, 2), \
            f"after SaslHandshake, before SaslAuthenticate, Metadata got back {first[:64].hex()}"
        r = Reader(first[8:])
        assert r.i32() == 0, f"Metadata before SaslAuthenticate listed brokers: {first[:64].hex()}"
        r.i32()  # controller id
        assert r.i32() == 0, f"Metadata before SaslAuthenticate listed topics: {first[:64].hex()}"

    # A fresh connection is still served.
    assert API_VERSIONS in api_versions_v0(HOST, port)

    # Authenticated (v1 and v2 of SaslAuthenticate): Metadata and FindCoordinator are answered
    # with this listener's address.
    for version in (1, 2):
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
            assert API_VERSIONS in api_versions_over(s, corr=1)  # allowed before authentication
            assert sasl_handshake(s, "PLAIN", corr=2) == (NONE, ["PLAIN"])
            err, msg, _ = sasl_authenticate(s, plain_token("alice", USERS["alice"]), version=version, corr=3)
            # Kafka leaves ErrorMessage at its default, "", on success; null would do as well
            assert err == NONE and msg in (None, ""), f"SaslAuthenticate v{version} as alice: error {err} {msg!r}"
            assert metadata_v1_brokers(s, corr=4) == [(NODE_ID, HOST, port)]
            assert find_coordinator_v1(s, f"raw-group-{version}", corr=5) == (NONE, NODE_ID, HOST, port)


def failed_login(port: int, i: int) -> str | None:
    """One connection: handshake PLAIN, authenticate with bad credentials, expect 58 then a
    close. Returns None, or what went wrong."""
    user, password = ("mallory", "whatever") if i % 10 == 9 else ("alice", f"wrong-{i}")
    version = i % 3
    try:
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
            s.settimeout(IO_TIMEOUT)
            hs = sasl_handshake(s, "PLAIN", corr=1)
            if hs != (NONE, ["PLAIN"]):
                return f"#{i}: SaslHandshake answered {hs}"
            err, msg, _ = sasl_authenticate(s, plain_token(user, password), version=version, corr=2)
            if (err, msg) != (SASL_AUTHENTICATION_FAILED, AUTH_FAILED_MESSAGE):
                return f"#{i} ({user}, SaslAuthenticate v{version}): answered error {err} {msg!r}"
            rest = wait_closed(s)
            if rest:
                return f"#{i}: {len(rest)} more bytes after the failure before the close: {rest[:32].hex()}"
    except (OSError, Closed, AssertionError, struct.error) as e:
        return f"#{i} ({user}, SaslAuthenticate v{version}): {e!r}"
    return None


def test_raw_thousand_failed_logins(secure, certs):
    port = secure.ports["SASL_PLAINTEXT"]
    pid = secure.broker.pid
    logged_before = len(failed_auth_lines(secure.broker, "Invalid username or password"))
    # Warm up (allocator arenas, one of each code path) before the baseline.
    assert failed_login(port, 0) is None
    rss_before = status_kb(pid)["VmRSS"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        problems = [p for p in pool.map(lambda i: failed_login(port, i), range(1, 1001)) if p]
    assert not problems, f"{len(problems)} of 1000 failed logins went wrong, first: {problems[:5]}"
    time.sleep(0.5)
    rss_after = status_kb(pid)["VmRSS"]
    assert secure.broker.is_running()
    grew = rss_after - rss_before
    assert grew < 32 * 1024, f"VmRSS grew by {grew} kB ({rss_before} -> {rss_after} kB) over 1000 failed logins"
    logged = len(failed_auth_lines(secure.broker, "Invalid username or password")) - logged_before
    assert logged >= 1, "the broker logged none of the failed authentications"
    # A real client still works on the listener.
    ck_roundtrip(secure.addr("SASL_PLAINTEXT"), ck_conf(certs, "SASL_PLAINTEXT"), "sec-after-bad-logins", n=100)
