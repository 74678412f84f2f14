"""Kafka ACLs (``authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer``,
``super.users``, ``allow.everyone.if.no.acl.found``; CreateAcls / DescribeAcls / DeleteAcls and
the checks KafkaApis makes) with real clients against real ``ottla`` processes.

Brokers here listen on PLAINTEXT (first: the inter-broker listener, principal User:ANONYMOUS,
which the transaction coordinator's WriteTxnMarkers to itself use) and SASL_PLAINTEXT with PLAIN
users admin, alice and bob; ``super.users=User:admin;User:ANONYMOUS``. Clients under test (alice,
bob) use only SASL_PLAINTEXT; admin creates topics and ACLs and reads data back. One broker
(``acl``) serves most tests, each with its own topics, groups and transactional ids; the tests
that need other settings, a restart or an exact ACL listing start their own.

* ``test_authorizer_off_security_disabled``: without ``authorizer.class.name`` create_acls and
  delete_acls fail with SECURITY_DISABLED, and a raw DescribeAcls v1 answers SECURITY_DISABLED
  (librdkafka drops DescribeAcls' error code, so describe errors are checked raw throughout).
* ``test_no_acls_denies_everything``: alice without ACLs: her produce fails with
  TOPIC_AUTHORIZATION_FAILED (nothing is stored), her consumer gets TOPIC_AUTHORIZATION_FAILED and
  no records, a raw Fetch v4 as alice answers TOPIC_AUTHORIZATION_FAILED, Metadata of all topics omits the topic, Metadata of the topic by name (and of a topic
  that does not exist) answers TOPIC_AUTHORIZATION_FAILED, create_topics fails with
  TOPIC_AUTHORIZATION_FAILED. admin (super user) sees and reads everything.
* ``test_write_acl_allows_produce_only``: topic WRITE for alice: she produces (plain and
  idempotent: KIP-679, InitProducerId needs WRITE on some topic), Metadata lists the topic (WRITE
  implies DESCRIBE), admin reads every record back; her group consumer (with a GROUP READ ACL)
  gets TOPIC_AUTHORIZATION_FAILED and no records.
* ``test_prefixed_acls``: PREFIXED READ + WRITE on ``orders-<run>-`` topics and READ on
  ``orders-<run>-`` groups: alice produces to and consumes (group, commit) ``orders-<run>-a``;
  ``other-<run>-a`` and ``orders-<run>`` (the prefix without its last character) are denied.
* ``test_deny_beats_allow``: ALLOW ALL on a topic plus DENY WRITE for alice (and, on a second
  topic, DENY WRITE for ``User:*``): produce fails with TOPIC_AUTHORIZATION_FAILED, reading works.
* ``test_group_acl_gates_consumer_group``: topic READ without GROUP READ: subscribe + poll yields
  GROUP_AUTHORIZATION_FAILED and no records; with GROUP READ the group consumes everything and
  commits, and admin's list_consumer_group_offsets shows the committed end offset.
* ``test_transactional_id_acl``: without TRANSACTIONAL_ID WRITE init_transactions fails with
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED; with it (and topic WRITE) one transaction is aborted and
  one committed, and admin's read_committed consumer sees exactly the committed records.
* ``test_create_topics_needs_create`` / ``test_delete_topics_needs_delete`` /
  ``test_describe_configs_needs_describe_configs``: CreateTopics needs TOPIC CREATE (a PREFIXED ACL
  covers only its prefix) or CLUSTER CREATE, DeleteTopics needs TOPIC DELETE, DescribeConfigs needs
  DESCRIBE_CONFIGS on the topic: each fails with TOPIC_AUTHORIZATION_FAILED before the ACL and
  works after.
* ``test_describe_delete_and_restart``: describe_acls by principal, by resource (LITERAL and ANY),
  with pattern MATCH (literal name, wildcard, prefixes) and by permission return exactly the
  matching bindings; invalid creations (empty name, principal without a colon, a CLUSTER not named
  kafka-cluster) answer INVALID_REQUEST while a valid one in the same request is created; alice
  gets CLUSTER_AUTHORIZATION_FAILED for create/delete_acls and a raw DescribeAcls, bob with CLUSTER
  DESCRIBE may describe but not create; delete_acls returns exactly what it deleted and it is gone; after a
  restart the ACLs (and the deletion) are still there and still gate produce; an ACL deleted after
  the restart stops granting.
* ``test_allow_everyone_if_no_acl_found``: with ``allow.everyone.if.no.acl.found=true`` alice
  creates a topic, produces and reads where no ACL exists; once an ACL for bob (READ) exists on
  the topic alice is denied (produce and read) and bob may read but not write.
* ``test_mtls_principal``: SSL listener with ``ssl.client.auth=required``: an ACL for
  ``User:CN=alice,OU=acl,O=ottla-tests`` (RFC 2253, most specific first) lets that certificate
  produce and read; another certificate (CN=mallory) is denied; the shared client certificate made
  as ``/CN=client/O=ottla-tests`` is ``User:O=ottla-tests,CN=client`` (RFC 2253 order).
* ``test_java_admin_acls``: Java kafka-clients 4.1.0 (``java/src/OttlaAcls.java``) creates six
  ACLs; describeAcls(AclBindingFilter.ANY), by principal + type, and with MATCH list exactly the
  expected bindings; invalid creations fail with InvalidRequestException (a valid one in the same
  call succeeds); alice gets ClusterAuthorizationException from create/describe/deleteAcls;
  deleteAcls returns the deleted bindings and describeAcls shows the rest, then none.
* ``test_group_admin_apis_follow_group_acls``: bob without ACLs on a group with committed offsets:
  describe_consumer_groups and delete_consumer_groups fail with GROUP_AUTHORIZATION_FAILED,
  list_consumer_groups leaves the group out; raw DescribeGroups / DeleteGroups answer the group
  GROUP_AUTHORIZATION_FAILED, ListGroups omits it, OffsetDelete answers it top-level. With group
  DESCRIBE: described (Empty, protocol consumer) and listed, still not deletable; with group DELETE
  OffsetDelete answers TOPIC_AUTHORIZATION_FAILED for the partition until topic READ, then deletes
  the offsets, and delete_consumer_groups removes the group.
* ``test_topic_admin_apis_follow_topic_acls``: bob without ACLs (then with topic DESCRIBE only):
  create_partitions, delete_records, incremental_alter_configs of the topic fail with
  TOPIC_AUTHORIZATION_FAILED, of the broker with CLUSTER_AUTHORIZATION_FAILED, raw DeleteRecords and
  DescribeProducers answer TOPIC_AUTHORIZATION_FAILED; with topic ALTER, DELETE, ALTER_CONFIGS and
  READ each works and admin sees the effect (3 partitions, low watermark 4, retention.ms); the broker
  config needs CLUSTER ALTER_CONFIGS.
* ``test_consumer_protocol_regex_and_describe_follow_topic_acls``: alice's ``group.protocol=consumer``
  member with a regex gets only the matching topic she may DESCRIBE (no error; admin's describe
  shows the assignment), and the other once READ on it is granted; ConsumerGroupDescribe as bob
  (group DESCRIBE, no topic ACL) answers TOPIC_AUTHORIZATION_FAILED.
* ``test_cluster_admin_apis_need_cluster_acls``: Java Admin (``java/src/OttlaAdminAcls.java``) as
  bob: describeLogDirs, describeMetadataQuorum, listPartitionReassignments,
  describeUserScramCredentials, electLeaders, alterPartitionReassignments and
  alterUserScramCredentials fail with ClusterAuthorizationException, describeTransactions with
  TransactionalIdAuthorizationException (a raw DescribeTransactions too), listTransactions omits the
  transaction; with CLUSTER DESCRIBE (and TRANSACTIONAL_ID DESCRIBE) the describes work and the
  alterations still fail; with CLUSTER ALTER they work.
"""

from __future__ import annotations

import dataclasses
import pathlib
import random
import socket
import struct
import time
import types
import uuid

import pytest
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType)

from conftest import Ottla, make_records, raw_request, run_java, stop_module_broker, wait_for
from test_security import (  # noqa: F401 - certs is a fixture
    HOST,
    IO_TIMEOUT,
    Certs,
    Reader,
    _openssl,
    certs,
    ck_admin_conf as admin_for,
    create_topic as create_secure_topic,
    distinct_ports,
    listeners_value,
    plain_token,
    roundtrip,
    sasl_authenticate,
    sasl_handshake,
    start_module_secure,
    string,
    wait_listening,
)

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
        + " ".join(f'user_{u}="{p}"' for u, p in PASSWORDS.items()) + ";")
SUPER_USERS = "User:admin;User:ANONYMOUS"
CLUSTER = "kafka-cluster"

ALICE, BOB = "User:alice", "User:bob"

TOPIC_AUTH = KafkaError.TOPIC_AUTHORIZATION_FAILED          # 29
GROUP_AUTH = KafkaError.GROUP_AUTHORIZATION_FAILED          # 30
CLUSTER_AUTH = KafkaError.CLUSTER_AUTHORIZATION_FAILED      # 31
TXN_AUTH = KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED  # 53
SECURITY_DISABLED = KafkaError.SECURITY_DISABLED            # 54
INVALID_REQUEST = KafkaError.INVALID_REQUEST                # 42

ANY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)


def run_id() -> str:
    return uuid.uuid4().hex[:8]


# ====================================================================== brokers

@dataclasses.dataclass
class AclBroker:
    broker: Ottla
    ports: dict[str, int]

    def addr(self, listener: str = "SASL_PLAINTEXT") -> str:
        return f"{HOST}:{self.ports[listener]}"

    @property
    def plain(self) -> str:
        return self.addr("PLAINTEXT")

    @property
    def sasl(self) -> str:
        return self.addr("SASL_PLAINTEXT")


def sasl_conf(user: str) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
            "sasl.username": user, "sasl.password": PASSWORDS[user]}


def acl_overrides(ports: dict[str, int], **extra) -> dict:
    return {
        "listeners": listeners_value(ports),
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "authorizer.class.name": AUTHORIZER,
        "super.users": SUPER_USERS,
        **extra,
    }


def start_acl_broker(ottla_factory, name: str, **extra) -> AclBroker:
    ports = dict(zip(("PLAINTEXT", "SASL_PLAINTEXT"), distinct_ports(2)))
    b = ottla_factory(overrides=acl_overrides(ports, **extra), port=ports["PLAINTEXT"], name=name)
    wait_listening(b, ports)
    return AclBroker(b, ports)


@pytest.fixture(scope="module")
def acl(request, tmp_path_factory) -> AclBroker:
    ports = dict(zip(("PLAINTEXT", "SASL_PLAINTEXT"), distinct_ports(2)))
    b = start_module_secure(request, tmp_path_factory, "ottla-acls", ports, acl_overrides(ports))
    yield AclBroker(b, ports)
    stop_module_broker(b, "ottla-acls")


# ====================================================================== admin helpers

def err_of(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def code_of(exc: BaseException | None) -> int | None:
    e = err_of(exc) if exc is not None else None
    return e.code() if e is not None else None


def outcome(fut, timeout: float = 60):
    """(result, None) or (None, the exception) of a confluent-kafka future."""
    try:
        return fut.result(timeout=timeout), None
    except Exception as e:  # noqa: BLE001 - the caller checks what it was
        return None, e


def binding(restype, name: str, op, principal: str = ALICE, perm=AclPermissionType.ALLOW,
            pattern=ResourcePatternType.LITERAL, host: str = "*") -> AclBinding:
    return AclBinding(restype, name, pattern, principal, host, op, perm)


def acl_filter(restype=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY, principal=None,
               host=None, op=AclOperation.ANY, perm=AclPermissionType.ANY) -> AclBindingFilter:
    return AclBindingFilter(restype, name, pattern, principal, host, op, perm)


def create_acls(bootstrap: str, conf: dict, bindings: list[AclBinding]) -> dict[AclBinding, BaseException | None]:
    admin = admin_for(bootstrap, conf)
    fs = admin.create_acls(bindings, request_timeout=30)
    return {b: outcome(f)[1] for b, f in fs.items()}


def describe_acls(bootstrap: str, conf: dict, flt: AclBindingFilter = ANY_ACL) -> set[AclBinding]:
    admin = admin_for(bootstrap, conf)
    return set(admin.describe_acls(flt, request_timeout=30).result(timeout=60))


def delete_acls(bootstrap: str, conf: dict, filters: list[AclBindingFilter]) -> dict[AclBindingFilter, set[AclBinding]]:
    admin = admin_for(bootstrap, conf)
    fs = admin.delete_acls(filters, request_timeout=30)
    return {f: set(fut.result(timeout=60)) for f, fut in fs.items()}


def grant(env: AclBroker, *bindings: AclBinding) -> None:
    """admin creates ``bindings`` (each must succeed) and waits until DescribeAcls lists them."""
    errors = {b: e for b, e in create_acls(env.sasl, sasl_conf("admin"), list(bindings)).items() if e is not None}
    assert not errors, f"create_acls as admin failed: {errors}"
    want = set(bindings)
    wait_for(lambda: want <= describe_acls(env.sasl, sasl_conf("admin")), 30,
             f"DescribeAcls to list {sorted(map(str, want))}")


def revoke(env: AclBroker, *bindings: AclBinding) -> None:
    """admin deletes exactly ``bindings`` (one exact filter each) and waits until they are gone."""
    filters = [acl_filter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                          b.permission_type) for b in bindings]
    deleted = set().union(*delete_acls(env.sasl, sasl_conf("admin"), filters).values())
    assert deleted == set(bindings), f"delete_acls deleted {deleted}, expected {set(bindings)}"
    wait_for(lambda: not (set(bindings) & describe_acls(env.sasl, sasl_conf("admin"))), 30,
             "DescribeAcls to stop listing the deleted ACLs")


def create_topic(bootstrap: str, conf: dict, topic: str, partitions: int = 1) -> None:
    """Create ``topic`` (as a principal that may describe it) and wait until it has leaders."""
    create_secure_topic(bootstrap, conf, topic, partitions)


def try_create_topic(bootstrap: str, conf: dict, topic: str, partitions: int = 1) -> BaseException | None:
    admin = admin_for(bootstrap, conf)
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                             operation_timeout=30, request_timeout=30)
    return outcome(fs[topic])[1]


def topic_names(bootstrap: str, conf: dict) -> set[str]:
    return set(admin_for(bootstrap, conf).list_topics(timeout=15).topics)


def topic_metadata_error(bootstrap: str, conf: dict, topic: str) -> int | None:
    """The error code of ``topic`` in a Metadata answer that names it (None: no error)."""
    md = admin_for(bootstrap, conf).list_topics(topic=topic, timeout=15)
    t = md.topics.get(topic)
    assert t is not None, f"Metadata for {topic} did not mention it: {sorted(md.topics)}"
    return t.error.code() if t.error is not None else None


# ====================================================================== produce / consume helpers

@dataclasses.dataclass
class Produced:
    recs: list
    acked: dict          # record index -> (partition, offset)
    failed: list         # KafkaError of each failed delivery (or refused produce() call)
    client_errors: list  # what error_cb reported
    undelivered: int

    def codes(self) -> set[int]:
        return {e.code() for e in self.failed}


def try_produce(bootstrap: str, conf: dict, topic: str, n: int, tag: str, partitions: int = 1,
                timeout: float = 30, extra: dict | None = None) -> Produced:
    """Produce ``n`` records (record i to partition i % partitions) and wait for every delivery
    report; never raises for delivery failures."""
    client_errors: list = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                  "message.timeout.ms": int(timeout * 1000), "error_cb": client_errors.append,
                  **conf, **(extra or {})})
    recs = make_records(n, tag, text_only=True)
    acked: dict[int, tuple[int, int]] = {}
    failed: list = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                failed.append(err)
            else:
                acked[i] = (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(recs):
        try:
            p.produce(topic, key=r.key, value=r.value, headers=r.header_list(), timestamp=r.ts,
                      partition=i % partitions, on_delivery=cb_for(i))
        except KafkaException as e:
            failed.append(e.args[0])
        p.poll(0)
    left = p.flush(timeout + 15)
    return Produced(recs, acked, failed, client_errors, left)


def must_produce(bootstrap: str, conf: dict, topic: str, n: int, tag: str, partitions: int = 1,
                 extra: dict | None = None) -> Produced:
    res = try_produce(bootstrap, conf, topic, n, tag, partitions, extra=extra)
    assert not res.failed and res.undelivered == 0 and len(res.acked) == n, (
        f"producing {n} records to {topic} as {conf.get('sasl.username', conf.get('ssl.certificate.location'))}: "
        f"{len(res.acked)} acknowledged, {len(res.failed)} failed (first: {res.failed[:3]}), "
        f"{res.undelivered} undelivered; client errors {res.client_errors[:3]}")
    return res


def assert_denied_produce(res: Produced, who: str, topic: str) -> None:
    assert not res.acked, f"{who} produced {len(res.acked)} records to {topic} without WRITE permission"
    assert res.failed and res.codes() == {TOPIC_AUTH}, (
        f"{who} producing to {topic}: expected every delivery to fail with TOPIC_AUTHORIZATION_FAILED, "
        f"got {[str(e) for e in res.failed[:3]]} ({len(res.failed)} failed, {res.undelivered} undelivered); "
        f"client errors {[str(e) for e in res.client_errors[:3]]}")


@dataclasses.dataclass
class Consumed:
    messages: list
    errors: list  # KafkaError from consume() and error_cb
    committed: dict | None = None

    def codes(self) -> set[int]:
        return {e.code() for e in self.errors}

    def keys(self) -> list[bytes]:
        return [m.key() for m in self.messages]


def try_consume(bootstrap: str, conf: dict, topic: str, *, partitions: int = 1, group: str | None = None,
                subscribe: bool = False, want: int | None = None, stop_codes: tuple = (),
                timeout: float = 30, commit: bool = False, extra: dict | None = None) -> Consumed:
    """Read ``topic`` by assignment from offset 0 (or, with ``subscribe``, as a member of
    ``group``). Stops when ``want`` records arrived, when an error with a code in ``stop_codes``
    was reported, or after ``timeout`` s. With ``commit`` the offsets are committed (sync) and
    read back with committed()."""
    errors: list = []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"acl-unused-{run_id()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000, "error_cb": errors.append,
                  "topic.metadata.refresh.interval.ms": 2000, **conf, **(extra or {})})
    msgs: list = []
    committed = None
    try:
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if want is not None and len(msgs) >= want:
                break
            if stop_codes and any(e.code() in stop_codes for e in errors):
                break
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        errors.append(m.error())
                else:
                    msgs.append(m)
        if commit and msgs:
            c.commit(asynchronous=False)
            committed = {tp.partition: tp.offset for tp in
                         c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)}
    finally:
        c.close()
    return Consumed(msgs, errors, committed)


def read_as_admin(env: AclBroker, topic: str, partitions: int = 1, isolation: str | None = None) -> dict:
    """Everything in ``topic`` read by admin (super user) until the high watermark:
    {(partition, offset): (key, value)}."""
    conf = sasl_conf("admin")
    c = Consumer({"bootstrap.servers": env.sasl, "group.id": f"acl-admin-{run_id()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  **({"isolation.level": isolation} if isolation else {}), **conf})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict = {}
        done = {p for p, e in ends.items() if e == 0}
        deadline = time.monotonic() + 60
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"admin read of {topic} timed out: {len(out)} records, ends {ends}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            done.add(m.partition())
                        continue
                    raise AssertionError(f"admin consumer error: {m.error()}")
                out[(m.partition(), m.offset())] = (m.key(), m.value())
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        return out
    finally:
        c.close()


def assert_read_back(res: Produced, got: dict) -> None:
    want = {pos: (res.recs[i].key, res.recs[i].value) for i, pos in res.acked.items()}
    assert got == want, (f"read back {len(got)} records, acknowledged {len(want)}; "
                         f"missing {sorted(set(want) - set(got))[:5]}, extra {sorted(set(got) - set(want))[:5]}")


def assert_denied_consume(res: Consumed, who: str, topic: str, code: int = TOPIC_AUTH) -> None:
    assert not res.messages, f"{who} read {len(res.messages)} records of {topic} without permission"
    assert code in res.codes(), (
        f"{who} reading {topic}: expected a {KafkaError(code).name()} error, got "
        f"{[str(e) for e in res.errors[:5]]}")


def group_offsets(env: AclBroker, group: str) -> dict[int, int]:
    admin = admin_for(env.sasl, sasl_conf("admin"))
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=30)[group].result(timeout=60)
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.offset >= 0}


# ====================================================================== raw protocol
# librdkafka (confluent-kafka 2.16) drops DescribeAcls' top-level error code: a refused or
# SECURITY_DISABLED DescribeAcls reaches Python as an empty, successful listing. Those answers are
# checked with raw requests instead. Fetch is probed raw too: a client that may not describe a
# topic never learns its leader, so it never sends the Fetch whose answer Kafka defines.

DESCRIBE_ACLS, FETCH = 29, 1


def sasl_socket(port: int, user: str) -> socket.socket:
    """A connection authenticated with SASL/PLAIN as ``user``."""
    s = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    err, mechs = sasl_handshake(s, "PLAIN", corr=1)
    assert err == 0, f"SaslHandshake PLAIN: error {err}, mechanisms {mechs}"
    err, msg, _ = sasl_authenticate(s, plain_token(user, PASSWORDS[user]), version=1, corr=2)
    assert err == 0, f"SaslAuthenticate as {user}: error {err} {msg!r}"
    return s


def nullable_string(v: str | None) -> bytes:
    return struct.pack(">h", -1) if v is None else string(v)


DESCRIBE_ACLS_ANY_V1 = (struct.pack(">b", 1) + nullable_string(None) + struct.pack(">b", 1)
                        + nullable_string(None) + nullable_string(None) + struct.pack(">bb", 1, 1))


def parse_describe_acls_v1(body: bytes) -> tuple[int, str | None, int]:
    """(error code, error message, number of resources) of a DescribeAcls v1 response."""
    r = Reader(body)
    r.i32()  # throttle_time_ms
    err, msg, n = r.i16(), r.string(), r.i32()
    return err, msg, n


def describe_acls_raw(sock: socket.socket, corr: int = 3) -> tuple[int, str | None, int]:
    return parse_describe_acls_v1(roundtrip(sock, DESCRIBE_ACLS, 1, corr, DESCRIBE_ACLS_ANY_V1))


def fetch_v4(sock: socket.socket, topic: str, partition: int = 0, corr: int = 4) -> tuple[int, int, bytes | None]:
    """Fetch v4 of one partition from offset 0: (error code, high watermark, records)."""
    body = struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, 0, 1 << 20)
    r = Reader(roundtrip(sock, FETCH, 4, corr, body))
    r.i32()  # throttle_time_ms
    assert r.i32() == 1, "Fetch v4: expected one topic in the response"
    assert r.string() == topic
    assert r.i32() == 1, "Fetch v4: expected one partition in the response"
    assert r.i32() == partition
    err, hw = r.i16(), r.i64()
    r.i64()  # last_stable_offset
    n = r.i32()
    for _ in range(max(n, 0)):
        r.i64(), r.i64()
    records = r.bytes_()
    r.end()
    return err, hw, records


# ====================================================================== tests

def test_authorizer_off_security_disabled(ottla):
    # A broker without authorizer.class.name; PLAINTEXT (User:ANONYMOUS).
    admin = admin_for(ottla.bootstrap, {})
    b = binding(ResourceType.TOPIC, "t", AclOperation.READ)
    fs = admin.create_acls([b], request_timeout=30)
    _, exc = outcome(fs[b])
    assert code_of(exc) == SECURITY_DISABLED, f"create_acls without an authorizer: {exc!r}"
    err, msg, n = parse_describe_acls_v1(raw_request(HOST, ottla.port, DESCRIBE_ACLS, 1, DESCRIBE_ACLS_ANY_V1))
    assert (err, n) == (SECURITY_DISABLED, 0), f"DescribeAcls v1 without an authorizer: error {err} {msg!r}, {n} resources"
    _, exc = outcome(admin.delete_acls([ANY_ACL], request_timeout=30)[ANY_ACL])
    assert code_of(exc) == SECURITY_DISABLED, f"delete_acls without an authorizer: {exc!r}"


def test_no_acls_denies_everything(acl):
    r = run_id()
    topic = f"acl-none-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    create_topic(acl.sasl, admin, topic)
    written = must_produce(acl.sasl, admin, topic, 10, f"admin-{r}")

    res = try_produce(acl.sasl, alice, topic, 10, f"alice-{r}", timeout=20)
    assert_denied_produce(res, "alice", topic)

    res = try_consume(acl.sasl, alice, topic, subscribe=True, stop_codes=(TOPIC_AUTH,), timeout=20)
    assert_denied_consume(res, "alice", topic)
    with sasl_socket(acl.ports["SASL_PLAINTEXT"], "alice") as s:
        err, hw, records = fetch_v4(s, topic)
    assert err == TOPIC_AUTH and not records, \
        f"raw Fetch v4 as alice: error {err}, high watermark {hw}, {len(records or b'')} bytes of records"

    assert topic in topic_names(acl.sasl, admin)
    names = topic_names(acl.sasl, alice)
    assert topic not in names, f"Metadata (all topics) as alice lists {topic} she may not describe"
    assert topic_metadata_error(acl.sasl, alice, topic) == TOPIC_AUTH
    # Kafka does not disclose whether an undescribable topic exists.
    assert topic_metadata_error(acl.sasl, alice, f"acl-missing-{r}") == TOPIC_AUTH

    exc = try_create_topic(acl.sasl, alice, f"acl-alice-new-{r}")
    assert code_of(exc) == TOPIC_AUTH, f"create_topics as alice without CREATE: {exc!r}"
    assert f"acl-alice-new-{r}" not in topic_names(acl.sasl, admin)

    # Nothing of alice's reached the log.
    assert_read_back(written, read_as_admin(acl, topic))


def test_write_acl_allows_produce_only(acl):
    r = run_id()
    topic, group = f"acl-write-{r}", f"acl-write-g-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    create_topic(acl.sasl, admin, topic, partitions=2)
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.WRITE),
          binding(ResourceType.GROUP, group, AclOperation.READ))

    plain = must_produce(acl.sasl, alice, topic, 40, f"alice-{r}", partitions=2)
    # KIP-679: InitProducerId without a transactional id is allowed with WRITE on any topic.
    idem = must_produce(acl.sasl, alice, topic, 40, f"alice-idem-{r}", partitions=2,
                        extra={"enable.idempotence": True})
    assert topic in topic_names(acl.sasl, alice), "WRITE implies DESCRIBE: Metadata as alice should list the topic"
    assert topic_metadata_error(acl.sasl, alice, topic) is None

    got = read_as_admin(acl, topic, partitions=2)
    want = {pos: (plain.recs[i].key, plain.recs[i].value) for i, pos in plain.acked.items()}
    want.update({pos: (idem.recs[i].key, idem.recs[i].value) for i, pos in idem.acked.items()})
    assert got == want, f"admin read {len(got)} records, alice's producers were acknowledged {len(want)}"

    res = try_consume(acl.sasl, alice, topic, partitions=2, group=group, subscribe=True,
                      stop_codes=(TOPIC_AUTH,), timeout=30)
    assert_denied_consume(res, "alice (WRITE, group READ)", topic)


def test_prefixed_acls(acl):
    r = run_id()
    prefix = f"orders-{r}-"
    covered, other, short = f"{prefix}a", f"other-{r}-a", f"orders-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    for t in (covered, other, short):
        create_topic(acl.sasl, admin, t)
    grant(acl,
          binding(ResourceType.TOPIC, prefix, AclOperation.READ, pattern=ResourcePatternType.PREFIXED),
          binding(ResourceType.TOPIC, prefix, AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED),
          binding(ResourceType.GROUP, prefix, AclOperation.READ, pattern=ResourcePatternType.PREFIXED))

    res = must_produce(acl.sasl, alice, covered, 30, f"alice-{r}")
    got = try_consume(acl.sasl, alice, covered, group=f"{prefix}group", subscribe=True, want=30,
                      timeout=45, commit=True)
    assert sorted(got.keys()) == sorted(r_.key for r_ in res.recs), \
        f"alice's group consumer of {covered} read {len(got.messages)} of 30 records; errors {got.errors[:3]}"
    assert got.committed == {0: 30}, f"committed offsets of group {prefix}group: {got.committed}"

    names = topic_names(acl.sasl, alice)
    assert covered in names and other not in names and short not in names, \
        f"Metadata as alice: {covered} should be listed, {other} and {short} not: {sorted(names)}"
    for t in (other, short):
        assert_denied_produce(try_produce(acl.sasl, alice, t, 5, f"alice-{t}", timeout=20), "alice", t)
        assert_denied_consume(try_consume(acl.sasl, alice, t, subscribe=True, stop_codes=(TOPIC_AUTH,), timeout=20),
                              "alice", t)


def test_deny_beats_allow(acl):
    r = run_id()
    t1, t2 = f"acl-deny-{r}", f"acl-deny-star-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    for t in (t1, t2):
        create_topic(acl.sasl, admin, t)
    grant(acl,
          binding(ResourceType.TOPIC, t1, AclOperation.ALL),
          binding(ResourceType.TOPIC, t1, AclOperation.WRITE, perm=AclPermissionType.DENY),
          binding(ResourceType.TOPIC, t2, AclOperation.ALL),
          binding(ResourceType.TOPIC, t2, AclOperation.WRITE, principal="User:*", perm=AclPermissionType.DENY))
    for t in (t1, t2):
        written = must_produce(acl.sasl, admin, t, 20, f"admin-{t}")  # super users are never denied
        assert_denied_produce(try_produce(acl.sasl, alice, t, 10, f"alice-{t}", timeout=20), "alice", t)
        got = try_consume(acl.sasl, alice, t, want=20, timeout=30)
        assert got.keys() == [rec.key for rec in written.recs], \
            f"alice (ALL allowed, WRITE denied) read {len(got.messages)} of 20 records of {t}; errors {got.errors[:3]}"
        assert not (got.codes() & {TOPIC_AUTH}), f"alice reading {t}: {got.errors[:3]}"
        assert_read_back(written, read_as_admin(acl, t))


def test_group_acl_gates_consumer_group(acl):
    r = run_id()
    topic, group = f"acl-group-{r}", f"acl-group-g-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    create_topic(acl.sasl, admin, topic)
    written = must_produce(acl.sasl, admin, topic, 30, f"admin-{r}")
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.READ))

    res = try_consume(acl.sasl, alice, topic, group=group, subscribe=True, stop_codes=(GROUP_AUTH,), timeout=30)
    assert_denied_consume(res, "alice (topic READ, no group READ)", topic, code=GROUP_AUTH)
    assert group_offsets(acl, group) == {}

    grant(acl, binding(ResourceType.GROUP, group, AclOperation.READ))
    res = try_consume(acl.sasl, alice, topic, group=group, subscribe=True, want=30, timeout=45, commit=True)
    assert res.keys() == [rec.key for rec in written.recs], \
        f"alice's group consumer read {len(res.messages)} of 30 records; errors {res.errors[:3]}"
    assert res.committed == {0: 30}, f"committed() after commit: {res.committed}"
    assert group_offsets(acl, group) == {0: 30}


def test_transactional_id_acl(acl):
    r = run_id()
    topic, txn_id = f"acl-txn-{r}", f"acl-txn-id-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    create_topic(acl.sasl, admin, topic)
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.WRITE))

    def producer():
        return Producer({"bootstrap.servers": acl.sasl, "transactional.id": txn_id, "linger.ms": 5,
                         "transaction.timeout.ms": 60000, **alice})

    p = producer()
    try:
        p.init_transactions(30)
        exc = None
    except KafkaException as e:
        exc = e
    err = err_of(exc)
    assert err is not None and err.code() == TXN_AUTH, \
        f"init_transactions without TRANSACTIONAL_ID WRITE: expected TRANSACTIONAL_ID_AUTHORIZATION_FAILED, got {exc!r}"
    del p

    grant(acl, binding(ResourceType.TRANSACTIONAL_ID, txn_id, AclOperation.WRITE))
    p = producer()
    p.init_transactions(60)
    aborted = make_records(5, f"aborted-{r}", text_only=True)
    p.begin_transaction()
    for rec in aborted:
        p.produce(topic, key=rec.key, value=rec.value, partition=0)
    p.flush(30)
    p.abort_transaction(60)
    committed = make_records(10, f"committed-{r}", text_only=True)
    p.begin_transaction()
    for rec in committed:
        p.produce(topic, key=rec.key, value=rec.value, partition=0)
    p.commit_transaction(60)

    got = read_as_admin(acl, topic, isolation="read_committed")
    assert [k for _, (k, _) in sorted(got.items())] == [rec.key for rec in committed], \
        f"read_committed as admin: {[k for _, (k, _) in sorted(got.items())]}"
    everything = read_as_admin(acl, topic, isolation="read_uncommitted")
    assert [k for _, (k, _) in sorted(everything.items())] == [rec.key for rec in aborted + committed]


def test_create_topics_needs_create(acl):
    r = run_id()
    prefix = f"acl-create-{r}-"
    admin, alice, bob = sasl_conf("admin"), sasl_conf("alice"), sasl_conf("bob")
    # TOPIC CREATE (here PREFIXED) ...
    mine = f"{prefix}mine"
    assert code_of(try_create_topic(acl.sasl, alice, mine)) == TOPIC_AUTH
    assert mine not in topic_names(acl.sasl, admin)
    grant(acl, binding(ResourceType.TOPIC, prefix, AclOperation.CREATE, pattern=ResourcePatternType.PREFIXED))
    exc = try_create_topic(acl.sasl, alice, mine, partitions=2)
    assert exc is None, f"create_topics with TOPIC CREATE on the prefix: {exc!r}"
    wait_for(lambda: mine in topic_names(acl.sasl, admin), 30, f"{mine} in metadata")
    elsewhere = f"acl-create-other-{r}"
    assert code_of(try_create_topic(acl.sasl, alice, elsewhere)) == TOPIC_AUTH, "CREATE covers the prefix only"
    # ... or CLUSTER CREATE (any name).
    bobs = f"acl-create-bob-{r}"
    assert code_of(try_create_topic(acl.sasl, bob, bobs)) == TOPIC_AUTH
    grant(acl, binding(ResourceType.BROKER, CLUSTER, AclOperation.CREATE, principal=BOB))
    exc = try_create_topic(acl.sasl, bob, bobs)
    assert exc is None, f"create_topics with CLUSTER CREATE: {exc!r}"
    wait_for(lambda: bobs in topic_names(acl.sasl, admin), 30, f"{bobs} in metadata")
    assert elsewhere not in topic_names(acl.sasl, admin)


def test_delete_topics_needs_delete(acl):
    r = run_id()
    topic = f"acl-delete-{r}"
    admin = sasl_conf("admin")
    create_topic(acl.sasl, admin, topic)
    a = admin_for(acl.sasl, sasl_conf("alice"))
    _, exc = outcome(a.delete_topics([topic], operation_timeout=30, request_timeout=30)[topic])
    assert code_of(exc) == TOPIC_AUTH, f"delete_topics without DELETE: {exc!r}"
    assert topic in topic_names(acl.sasl, admin)
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.DELETE))
    _, exc = outcome(a.delete_topics([topic], operation_timeout=30, request_timeout=30)[topic])
    assert exc is None, f"delete_topics with DELETE: {exc!r}"
    wait_for(lambda: topic not in topic_names(acl.sasl, admin), 30, f"{topic} to disappear")


def test_describe_configs_needs_describe_configs(acl):
    r = run_id()
    topic = f"acl-configs-{r}"
    create_topic(acl.sasl, sasl_conf("admin"), topic)
    a = admin_for(acl.sasl, sasl_conf("alice"))
    res = ConfigResource(ResourceType.TOPIC, topic)
    _, exc = outcome(a.describe_configs([res], request_timeout=30)[res])
    assert code_of(exc) == TOPIC_AUTH, f"describe_configs without DESCRIBE_CONFIGS: {exc!r}"
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.DESCRIBE_CONFIGS))
    entries, exc = outcome(a.describe_configs([res], request_timeout=30)[res])
    assert exc is None, f"describe_configs with DESCRIBE_CONFIGS: {exc!r}"
    assert "retention.ms" in entries and "cleanup.policy" in entries, sorted(entries)[:10]


def test_describe_delete_and_restart(ottla_factory):
    env = start_acl_broker(ottla_factory, "ottla-acl-restart")
    r = run_id()
    prefix = f"acl8-{r}-"
    t, other, group, txn = f"{prefix}orders", f"{prefix}other", f"acl8-g-{r}", f"acl8-txn-{r}"
    admin, alice, bob = sasl_conf("admin"), sasl_conf("alice"), sasl_conf("bob")
    for topic in (t, other):
        create_topic(env.sasl, admin, topic)
    P, L = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
    a1 = binding(ResourceType.TOPIC, t, AclOperation.WRITE)
    a2 = binding(ResourceType.TOPIC, prefix, AclOperation.READ, pattern=P)
    a3 = binding(ResourceType.TOPIC, "*", AclOperation.DESCRIBE, principal=BOB)
    a4 = binding(ResourceType.GROUP, group, AclOperation.READ)
    a5 = binding(ResourceType.BROKER, CLUSTER, AclOperation.DESCRIBE, principal=BOB)
    a6 = binding(ResourceType.TRANSACTIONAL_ID, txn, AclOperation.WRITE)
    a7 = binding(ResourceType.TOPIC, t, AclOperation.WRITE, principal=BOB, perm=AclPermissionType.DENY)
    a8 = binding(ResourceType.TOPIC, f"{prefix}zzz", AclOperation.ALTER, principal=BOB, pattern=P, host="127.0.0.1")
    everything = {a1, a2, a3, a4, a5, a6, a7, a8}
    grant(env, *everything)
    assert describe_acls(env.sasl, admin) == everything

    # Filters.
    assert describe_acls(env.sasl, admin, acl_filter(principal=ALICE)) == {a1, a2, a4, a6}
    assert describe_acls(env.sasl, admin, acl_filter(ResourceType.TOPIC, t, L)) == {a1, a7}
    assert describe_acls(env.sasl, admin, acl_filter(ResourceType.TOPIC, t)) == {a1, a7}  # pattern ANY
    assert describe_acls(env.sasl, admin, acl_filter(ResourceType.TOPIC, prefix, P)) == {a2}
    assert describe_acls(env.sasl, admin, acl_filter(ResourceType.TOPIC, t, ResourcePatternType.MATCH)) == \
        {a1, a2, a3, a7}
    assert describe_acls(env.sasl, admin, acl_filter(ResourceType.TOPIC, f"{prefix}zzz-1",
                                                    ResourcePatternType.MATCH)) == {a2, a3, a8}
    assert describe_acls(env.sasl, admin, acl_filter(perm=AclPermissionType.DENY)) == {a7}
    assert describe_acls(env.sasl, admin, acl_filter(ResourceType.BROKER)) == {a5}
    assert describe_acls(env.sasl, admin, acl_filter(host="127.0.0.1")) == {a8}
    assert describe_acls(env.sasl, admin, acl_filter(op=AclOperation.WRITE, principal=ALICE)) == {a1, a6}
    assert describe_acls(env.sasl, admin, acl_filter(principal="User:nobody")) == set()

    # Invalid creations answer INVALID_REQUEST, each on its own; a valid one in the request is created.
    bad = [binding(ResourceType.TOPIC, "", AclOperation.READ),
           binding(ResourceType.TOPIC, t, AclOperation.READ, principal="alice"),
           binding(ResourceType.BROKER, "not-the-cluster", AclOperation.ALTER)]
    good = binding(ResourceType.GROUP, f"acl8-valid-{r}", AclOperation.READ)
    results = create_acls(env.sasl, admin, bad + [good])
    assert results[good] is None, f"the valid creation next to invalid ones: {results[good]!r}"
    for b in bad:
        assert code_of(results[b]) == INVALID_REQUEST, f"create_acls {b}: expected INVALID_REQUEST, got {results[b]!r}"
    everything.add(good)
    wait_for(lambda: describe_acls(env.sasl, admin) == everything, 30, "the valid ACL to be listed (and no invalid one)")

    # Only CLUSTER ALTER may create/delete ACLs, CLUSTER DESCRIBE describe them.
    extra = binding(ResourceType.TOPIC, t, AclOperation.READ, principal=BOB)
    assert code_of(create_acls(env.sasl, alice, [extra])[extra]) == CLUSTER_AUTH
    with sasl_socket(env.ports["SASL_PLAINTEXT"], "alice") as s:
        err, msg, n = describe_acls_raw(s)
    assert (err, n) == (CLUSTER_AUTH, 0), f"DescribeAcls v1 as alice: error {err} {msg!r}, {n} resources"
    with sasl_socket(env.ports["SASL_PLAINTEXT"], "bob") as s:
        err, msg, n = describe_acls_raw(s)
    assert err == 0 and n > 0, f"DescribeAcls v1 as bob (CLUSTER DESCRIBE): error {err} {msg!r}, {n} resources"
    alice_admin = admin_for(env.sasl, alice)  # kept referenced: the handle must outlive its futures
    _, exc = outcome(alice_admin.delete_acls([ANY_ACL], request_timeout=30)[ANY_ACL])
    assert code_of(exc) == CLUSTER_AUTH, f"delete_acls as alice: {exc!r}"
    assert describe_acls(env.sasl, bob) == everything, "bob has CLUSTER DESCRIBE"
    assert code_of(create_acls(env.sasl, bob, [extra])[extra]) == CLUSTER_AUTH, "bob has no CLUSTER ALTER"
    assert describe_acls(env.sasl, admin) == everything

    # Enforcement before the restart.
    must_produce(env.sasl, alice, t, 10, f"alice-before-{r}")
    assert_denied_produce(try_produce(env.sasl, alice, other, 5, f"alice-other-{r}", timeout=20), "alice", other)

    # delete_acls answers what it deleted.
    f_bob_topics = acl_filter(ResourceType.TOPIC, principal=BOB)
    f_nothing = acl_filter(ResourceType.GROUP, "no-such-group", L)
    deleted = delete_acls(env.sasl, admin, [f_bob_topics, f_nothing])
    assert deleted == {f_bob_topics: {a3, a7, a8}, f_nothing: set()}, deleted
    everything -= {a3, a7, a8}
    assert describe_acls(env.sasl, admin) == everything
    assert delete_acls(env.sasl, admin, [f_bob_topics]) == {f_bob_topics: set()}

    env.broker.restart()
    wait_listening(env.broker, env.ports)
    got = wait_for(lambda: describe_acls(env.sasl, admin), 30, "DescribeAcls after the restart")
    assert got == everything, (f"ACLs after a restart: missing {sorted(map(str, everything - got))}, "
                               f"unexpected {sorted(map(str, got - everything))}")
    assert describe_acls(env.sasl, bob) == everything
    must_produce(env.sasl, alice, t, 10, f"alice-after-{r}")
    assert_denied_produce(try_produce(env.sasl, alice, other, 5, f"alice-other2-{r}", timeout=20), "alice", other)

    # Deleted after the restart: no longer grants.
    revoke(env, a1)
    assert_denied_produce(try_produce(env.sasl, alice, t, 5, f"alice-revoked-{r}", timeout=20), "alice", t)
    got = read_as_admin(env, t)
    assert len(got) == 20, f"{t} holds {len(got)} records, alice was acknowledged 20"


def test_allow_everyone_if_no_acl_found(ottla_factory):
    env = start_acl_broker(ottla_factory, "ottla-acl-everyone", **{"allow.everyone.if.no.acl.found": "true"})
    r = run_id()
    topic = f"acl-everyone-{r}"
    alice, bob = sasl_conf("alice"), sasl_conf("bob")
    # No ACL on the cluster or the topic: alice may create, describe, write and read it.
    create_topic(env.sasl, alice, topic)
    res = must_produce(env.sasl, alice, topic, 20, f"alice-{r}")
    got = try_consume(env.sasl, alice, topic, want=20, timeout=30)
    assert got.keys() == [rec.key for rec in res.recs], f"alice read {len(got.messages)} of 20; {got.errors[:3]}"

    grant(env, binding(ResourceType.TOPIC, topic, AclOperation.READ, principal=BOB))
    assert_denied_produce(try_produce(env.sasl, alice, topic, 5, f"alice-late-{r}", timeout=20), "alice", topic)
    assert_denied_consume(try_consume(env.sasl, alice, topic, subscribe=True, stop_codes=(TOPIC_AUTH,), timeout=20),
                          "alice", topic)
    assert topic not in topic_names(env.sasl, alice)
    assert_denied_produce(try_produce(env.sasl, bob, topic, 5, f"bob-{r}", timeout=20), "bob (READ only)", topic)
    got = try_consume(env.sasl, bob, topic, want=20, timeout=30)
    assert got.keys() == [rec.key for rec in res.recs], f"bob (READ) read {len(got.messages)} of 20; {got.errors[:3]}"


# ---------------------------------------------------------------------- mutual TLS

def make_client_cert(certs: Certs, d: pathlib.Path, name: str, subj: str) -> tuple[str, str]:
    """An EC client certificate for ``subj`` signed by the session CA: (cert, key) paths."""
    d.mkdir(parents=True, exist_ok=True)
    ext = d / "client.ext"
    ext.write_text((certs.dir / "client.ext").read_text())
    (d / "req.cnf").write_text((certs.dir / "req.cnf").read_text())
    _openssl(d, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key")
    _openssl(d, "req", "-new", "-key", f"{name}.key", "-subj", subj, "-config", "req.cnf", "-out", f"{name}.csr")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", certs.ca, "-CAkey", str(certs.dir / "ca.key"),
             "-set_serial", str(random.randrange(1 << 60, 1 << 62)), "-days", "3", "-sha256",
             "-extfile", "client.ext", "-out", f"{name}.pem")
    return str(d / f"{name}.pem"), str(d / f"{name}.key")


def test_mtls_principal(ottla_factory, certs, tmp_path):
    ports = dict(zip(("PLAINTEXT", "SSL"), distinct_ports(2)))
    b = ottla_factory(overrides={
        "listeners": listeners_value(ports),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": certs.server_keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": certs.ca,
        "ssl.client.auth": "required",
        "authorizer.class.name": AUTHORIZER,
        "super.users": SUPER_USERS,
    }, port=ports["PLAINTEXT"], name="ottla-acl-mtls")
    wait_listening(b, ports)
    env = AclBroker(b, ports)
    plain, ssl_addr = env.plain, env.addr("SSL")

    alice_cert = make_client_cert(certs, tmp_path / "certs", "alice", "/O=ottla-tests/OU=acl/CN=alice")
    mallory_cert = make_client_cert(certs, tmp_path / "certs", "mallory", "/O=ottla-tests/OU=acl/CN=mallory")

    def tls(cert_key: tuple[str, str]) -> dict:
        return {"security.protocol": "SSL", "ssl.ca.location": certs.ca,
                "ssl.certificate.location": cert_key[0], "ssl.key.location": cert_key[1]}

    r = run_id()
    topic, topic2 = f"acl-mtls-{r}", f"acl-mtls-client-{r}"
    for t in (topic, topic2):
        create_topic(plain, {}, t)  # User:ANONYMOUS on PLAINTEXT is a super user
    alice_principal = "User:CN=alice,OU=acl,O=ottla-tests"
    client_principal = "User:O=ottla-tests,CN=client"  # made as /CN=client/O=ottla-tests
    bindings = [binding(ResourceType.TOPIC, topic, AclOperation.WRITE, principal=alice_principal),
                binding(ResourceType.TOPIC, topic, AclOperation.READ, principal=alice_principal),
                binding(ResourceType.TOPIC, topic2, AclOperation.WRITE, principal=client_principal)]
    errs = {x: e for x, e in create_acls(plain, {}, bindings).items() if e is not None}
    assert not errs, errs
    wait_for(lambda: set(bindings) <= describe_acls(plain, {}), 30, "the mTLS ACLs to be listed")

    res = must_produce(ssl_addr, tls(alice_cert), topic, 20, f"alice-{r}")
    got = try_consume(ssl_addr, tls(alice_cert), topic, want=20, timeout=30)
    assert got.keys() == [rec.key for rec in res.recs], \
        f"{alice_principal} read {len(got.messages)} of 20; errors {got.errors[:3]}"
    assert_denied_produce(try_produce(ssl_addr, tls(mallory_cert), topic, 5, f"mallory-{r}", timeout=20),
                          "User:CN=mallory,OU=acl,O=ottla-tests", topic)
    assert_denied_consume(try_consume(ssl_addr, tls(mallory_cert), topic, subscribe=True, stop_codes=(TOPIC_AUTH,),
                                      timeout=20),
                          "User:CN=mallory,OU=acl,O=ottla-tests", topic)
    assert_denied_produce(try_produce(ssl_addr, tls(alice_cert), topic2, 5, f"alice2-{r}", timeout=20),
                          alice_principal, topic2)
    must_produce(ssl_addr, tls((certs.client_cert, certs.client_key)), topic2, 10, f"client-{r}")


# ---------------------------------------------------------------------- Java

def java_sasl_properties(path: pathlib.Path, user: str) -> str:
    jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="{user}" password="{PASSWORDS[user]}";')
    props = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config": jaas}
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return str(path)


def test_java_admin_acls(ottla_factory, java_program, tmp_path):
    env = start_acl_broker(ottla_factory, "ottla-acl-java")
    tag = run_id()
    admin_props = java_sasl_properties(tmp_path / "admin.properties", "admin")
    alice_props = java_sasl_properties(tmp_path / "alice.properties", "alice")
    target = types.SimpleNamespace(bootstrap=env.sasl)
    out = run_java(java_program, "OttlaAcls", target, admin_props, alice_props, tag, timeout=180, heap="512m")

    topic, prefix, group, txn = f"java-acl-{tag}", "java-acl-", f"java-group-{tag}", f"java-txn-{tag}"
    acls = {
        "topic-read": f"TOPIC:LITERAL:{topic} User:alice * READ ALLOW",
        "prefix-write": f"TOPIC:PREFIXED:{prefix} User:alice * WRITE ALLOW",
        "group-read": f"GROUP:LITERAL:{group} User:alice * READ ALLOW",
        "bob-deny": f"TOPIC:LITERAL:{topic} User:bob 127.0.0.1 DESCRIBE DENY",
        "cluster": "CLUSTER:LITERAL:kafka-cluster User:bob * DESCRIBE ALLOW",
        "txn": f"TRANSACTIONAL_ID:LITERAL:{txn} User:alice * WRITE ALLOW",
    }
    valid = f"GROUP:LITERAL:java-valid-{tag} User:alice * READ ALLOW"

    def section(name: str) -> tuple[int, list[str]]:
        lines = out.splitlines()
        counts = [l for l in lines if l.startswith(f"{name} ")]
        assert len(counts) == 1, f"expected one '{name} <count>' line in:\n{out}"
        items = sorted(l[len(name) + 5:] for l in lines if l.startswith(f"{name}-ACL "))
        return int(counts[0].split()[1]), items

    assert section("CREATED") == (6, sorted(acls.values()))
    assert section("ANY") == (6, sorted(acls.values()))
    alice_topics = sorted([acls["topic-read"], acls["prefix-write"]])
    assert section("ALICE-TOPICS") == (2, alice_topics)
    assert section("MATCH") == (3, sorted([acls["topic-read"], acls["prefix-write"], acls["bob-deny"]]))
    for label in ("empty-name", "no-colon", "cluster-name"):
        assert f"INVALID {label} InvalidRequestException" in out, out
    assert "VALID-IN-SAME-REQUEST created" in out, out
    assert section("WITH-VALID") == (7, sorted([*acls.values(), valid]))
    for op in ("create", "describe", "delete"):
        assert f"ALICE-{op.upper()} ClusterAuthorizationException" in out, out
    deleted_alice = sorted([acls["topic-read"], acls["prefix-write"], acls["group-read"], acls["txn"], valid])
    assert section("DELETED") == (5, deleted_alice)
    assert section("AFTER-DELETE") == (2, sorted([acls["bob-deny"], acls["cluster"]]))
    assert section("DELETED-REST") == (2, sorted([acls["bob-deny"], acls["cluster"]]))
    assert section("FINAL") == (0, [])
    assert describe_acls(env.sasl, sasl_conf("admin")) == set(), "confluent-kafka still sees ACLs after Java deleted all"


# ---------------------------------------------------------------------- admin APIs, per resource
# Group, topic and cluster admin APIs as a principal that is no super user: Kafka checks each
# group / topic / transactional id (or the cluster) and answers its own error codes.
# librdkafka and the Java Admin look up a group's or a transactional id's coordinator first,
# and FindCoordinator already refuses without DESCRIBE on the key; so each refusal is also
# checked with a raw request sent straight to the broker (one broker: it is every coordinator),
# where the handler under test answers it.

from confluent_kafka import ConsumerGroupState  # noqa: E402
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, NewPartitions  # noqa: E402

from test_security import uvarint  # noqa: E402

DELETE_RECORDS, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS, OFFSET_DELETE = 21, 15, 16, 42, 47
DESCRIBE_PRODUCERS, DESCRIBE_TRANSACTIONS = 61, 65


def raw_as(env: AclBroker, user: str, api_key: int, version: int, body: bytes, flexible: bool = False) -> bytes:
    """One request on a fresh connection authenticated as ``user``: the response body."""
    with sasl_socket(env.ports["SASL_PLAINTEXT"], user) as s:
        return roundtrip(s, api_key, version, 3, body, flexible)


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


def raw_describe_groups(env: AclBroker, user: str, group: str) -> tuple[int, str, str, str, int]:
    """DescribeGroups v1 of one group: (error, group id, state, protocol type, members)."""
    r = Reader(raw_as(env, user, DESCRIBE_GROUPS, 1, struct.pack(">i", 1) + string(group)))
    r.i32()  # throttle_time_ms
    assert r.i32() == 1, "DescribeGroups v1: expected one group in the response"
    err, gid, state, ptype = r.i16(), r.string(), r.string(), r.string()
    r.string()  # protocol_data
    members = r.i32()
    for _ in range(max(members, 0)):
        r.string(), r.string(), r.string(), r.bytes_(), r.bytes_()
    r.end()
    return err, gid, state, ptype, members


def raw_list_groups(env: AclBroker, user: str) -> tuple[int, set[str]]:
    """ListGroups v1: (error, group ids)."""
    r = Reader(raw_as(env, user, LIST_GROUPS, 1, b""))
    r.i32()  # throttle_time_ms
    err, ids = r.i16(), set()
    for _ in range(r.i32()):
        ids.add(r.string())
        r.string()  # protocol_type
    r.end()
    return err, ids


def raw_delete_groups(env: AclBroker, user: str, group: str) -> dict[str, int]:
    """DeleteGroups v0 of one group: {group id: error}."""
    r = Reader(raw_as(env, user, DELETE_GROUPS, 0, struct.pack(">i", 1) + string(group)))
    r.i32()  # throttle_time_ms
    out = {}
    for _ in range(r.i32()):
        gid = r.string()
        out[gid] = r.i16()
    r.end()
    return out


def raw_offset_delete(env: AclBroker, user: str, group: str, topic: str, partition: int = 0) -> tuple[int, dict]:
    """OffsetDelete v0 of one partition: (top-level error, {(topic, partition): error})."""
    body = string(group) + struct.pack(">i", 1) + string(topic) + struct.pack(">ii", 1, partition)
    r = Reader(raw_as(env, user, OFFSET_DELETE, 0, body))
    err = r.i16()
    r.i32()  # throttle_time_ms
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(name, p)] = r.i16()
    r.end()
    return err, out


def raw_delete_records(env: AclBroker, user: str, topic: str, offset: int, partition: int = 0) -> dict:
    """DeleteRecords v0 of one partition: {(topic, partition): (error, low watermark)}."""
    body = struct.pack(">i", 1) + string(topic) + struct.pack(">iiq", 1, partition, offset) + struct.pack(">i", 30000)
    r = Reader(raw_as(env, user, DELETE_RECORDS, 0, body))
    r.i32()  # throttle_time_ms
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            p, low, err = r.i32(), r.i64(), r.i16()
            out[(name, p)] = (err, low)
    r.end()
    return out


def raw_describe_producers(env: AclBroker, user: str, topic: str, partition: int = 0) -> dict:
    """DescribeProducers v0 (flexible) of one partition: {(topic, partition): (error, active producers)}."""
    body = uvarint(2) + compact_string(topic) + uvarint(2) + struct.pack(">i", partition) + b"\x00" + b"\x00"
    r = Reader(raw_as(env, user, DESCRIBE_PRODUCERS, 0, body, flexible=True))
    r.i32()  # throttle_time_ms
    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.compact_string()
        for _ in range(r.uvarint() - 1):
            p, err = r.i32(), r.i16()
            r.compact_string()  # error_message
            producers = r.uvarint() - 1
            for _ in range(producers):
                r.i64(), r.i32(), r.i32(), r.i64(), r.i32(), r.i64()
                r.tags()
            r.tags()
            out[(name, p)] = (err, producers)
        r.tags()
    r.tags()
    r.end()
    return out


def raw_describe_transactions(env: AclBroker, user: str, txn_id: str) -> tuple[int, str, str]:
    """DescribeTransactions v0 (flexible) of one id: (error, transactional id, state)."""
    body = uvarint(2) + compact_string(txn_id) + b"\x00"
    r = Reader(raw_as(env, user, DESCRIBE_TRANSACTIONS, 0, body, flexible=True))
    r.i32()  # throttle_time_ms
    assert r.uvarint() - 1 == 1, "DescribeTransactions v0: expected one transaction state"
    err, tid, state = r.i16(), r.compact_string(), r.compact_string()
    r.i32(), r.i64(), r.i64(), r.i16()  # timeout, start time, producer id, producer epoch
    for _ in range(r.uvarint() - 1):
        r.compact_string()
        r.take(4 * (r.uvarint() - 1))
        r.tags()
    r.tags()
    r.tags()
    r.end()
    return err, tid, state


def consumer_group_ids(admin) -> tuple[set[str], list]:
    res = admin.list_consumer_groups(request_timeout=30).result(timeout=60)
    return {g.group_id for g in res.valid}, list(res.errors)


def test_group_admin_apis_follow_group_acls(acl):
    r = run_id()
    topic, group = f"acl-gadmin-{r}", f"acl-gadmin-g-{r}"
    admin = sasl_conf("admin")
    create_topic(acl.sasl, admin, topic)
    must_produce(acl.sasl, admin, topic, 10, f"admin-{r}")
    got = try_consume(acl.sasl, admin, topic, group=group, subscribe=True, want=10, timeout=45, commit=True)
    assert got.committed == {0: 10}, f"admin's group consumer: {len(got.messages)} records, {got.errors[:3]}"
    assert group_offsets(acl, group) == {0: 10}
    bob = admin_for(acl.sasl, sasl_conf("bob"))  # kept referenced: the handle must outlive its futures

    # No ACL: every group API refuses the group (and ListGroups leaves it out).
    _, exc = outcome(bob.describe_consumer_groups([group], request_timeout=30)[group])
    assert code_of(exc) == GROUP_AUTH, f"describe_consumer_groups as bob without ACLs: {exc!r}"
    assert raw_describe_groups(acl, "bob", group) == (GROUP_AUTH, group, "", "", 0), \
        "DescribeGroups v1 as bob without ACLs: Kafka answers the group with GROUP_AUTHORIZATION_FAILED only"
    ids, errors = consumer_group_ids(bob)
    assert group not in ids and not errors, f"list_consumer_groups as bob without ACLs: {sorted(ids)}, errors {errors}"
    err, ids = raw_list_groups(acl, "bob")
    assert err == 0 and group not in ids, f"ListGroups v1 as bob without ACLs: error {err}, groups {sorted(ids)}"
    _, exc = outcome(bob.delete_consumer_groups([group], request_timeout=30)[group])
    assert code_of(exc) == GROUP_AUTH, f"delete_consumer_groups as bob without ACLs: {exc!r}"
    assert raw_delete_groups(acl, "bob", group) == {group: GROUP_AUTH}
    assert raw_offset_delete(acl, "bob", group, topic) == (GROUP_AUTH, {}), \
        "OffsetDelete v0 without group DELETE: Kafka answers the top-level GROUP_AUTHORIZATION_FAILED, no topics"
    assert group_offsets(acl, group) == {0: 10}, "a refused request changed the group"

    # Group DESCRIBE: describe and list; still no delete.
    grant(acl, binding(ResourceType.GROUP, group, AclOperation.DESCRIBE, principal=BOB))
    desc, exc = outcome(bob.describe_consumer_groups([group], request_timeout=30)[group])
    assert exc is None, f"describe_consumer_groups as bob with group DESCRIBE: {exc!r}"
    assert (desc.group_id, desc.state, len(desc.members)) == (group, ConsumerGroupState.EMPTY, 0), \
        f"describe_consumer_groups: {desc.group_id} {desc.state} {desc.members}"
    assert raw_describe_groups(acl, "bob", group) == (0, group, "Empty", "consumer", 0)
    ids, errors = consumer_group_ids(bob)
    assert group in ids and not errors, f"list_consumer_groups as bob with group DESCRIBE: {sorted(ids)}, errors {errors}"
    err, ids = raw_list_groups(acl, "bob")
    assert err == 0 and group in ids, f"ListGroups v1 as bob with group DESCRIBE: error {err}, groups {sorted(ids)}"
    _, exc = outcome(bob.delete_consumer_groups([group], request_timeout=30)[group])
    assert code_of(exc) == GROUP_AUTH, f"delete_consumer_groups as bob with DESCRIBE only: {exc!r}"
    assert raw_delete_groups(acl, "bob", group) == {group: GROUP_AUTH}
    assert raw_offset_delete(acl, "bob", group, topic) == (GROUP_AUTH, {})

    # Group DELETE without topic READ: OffsetDelete refuses the partition.
    grant(acl, binding(ResourceType.GROUP, group, AclOperation.DELETE, principal=BOB))
    assert raw_offset_delete(acl, "bob", group, topic) == (0, {(topic, 0): TOPIC_AUTH}), \
        "OffsetDelete v0 with group DELETE but no topic READ: Kafka answers TOPIC_AUTHORIZATION_FAILED for the partition"
    assert group_offsets(acl, group) == {0: 10}

    # ... and with topic READ the offsets go, then the group.
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.READ, principal=BOB))
    assert raw_offset_delete(acl, "bob", group, topic) == (0, {(topic, 0): 0})
    assert group_offsets(acl, group) == {}, "the deleted offsets are still committed"
    _, exc = outcome(bob.delete_consumer_groups([group], request_timeout=30)[group])
    assert exc is None, f"delete_consumer_groups as bob with group DELETE: {exc!r}"
    wait_for(lambda: group not in consumer_group_ids(admin_for(acl.sasl, admin))[0], 30,
             f"{group} to disappear from admin's list_consumer_groups")


def test_topic_admin_apis_follow_topic_acls(acl):
    r = run_id()
    topic = f"acl-tadmin-{r}"
    admin_conf = sasl_conf("admin")
    create_topic(acl.sasl, admin_conf, topic)
    must_produce(acl.sasl, admin_conf, topic, 10, f"admin-{r}")
    admin = admin_for(acl.sasl, admin_conf)
    bob = admin_for(acl.sasl, sasl_conf("bob"))
    SET = AlterConfigOpType.SET
    broker_key, topic_key = "leader.replication.throttled.rate", "retention.ms"

    def create_partitions():
        return outcome(bob.create_partitions([NewPartitions(topic, 3)], request_timeout=30)[topic])[1]

    def alter_topic():
        res = ConfigResource(ResourceType.TOPIC, topic,
                             incremental_configs=[ConfigEntry(topic_key, "3600000", incremental_operation=SET)])
        return outcome(bob.incremental_alter_configs([res], request_timeout=30)[res])[1]

    def alter_broker():
        res = ConfigResource(ResourceType.BROKER, "1",
                             incremental_configs=[ConfigEntry(broker_key, "2000000", incremental_operation=SET)])
        return outcome(bob.incremental_alter_configs([res], request_timeout=30)[res])[1]

    def delete_records():
        tp = TopicPartition(topic, 0, 4)
        return outcome(bob.delete_records([tp], request_timeout=30, operation_timeout=30)[tp])

    def partitions_seen_by_admin() -> int:
        return len(admin.list_topics(topic=topic, timeout=15).topics[topic].partitions)

    def low_watermark() -> int:
        c = Consumer({"bootstrap.servers": acl.sasl, "group.id": f"acl-wm-{run_id()}", **admin_conf})
        try:
            return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=15)[0]
        finally:
            c.close()

    def config_value(restype, name, key) -> str:
        res = ConfigResource(restype, name)
        return admin.describe_configs([res], request_timeout=30)[res].result(timeout=60)[key].value

    # No ACL.
    assert code_of(create_partitions()) == TOPIC_AUTH, "create_partitions as bob without ALTER"
    assert code_of(alter_topic()) == TOPIC_AUTH, "incremental_alter_configs (topic) as bob without ALTER_CONFIGS"
    assert code_of(alter_broker()) == CLUSTER_AUTH, "incremental_alter_configs (broker) as bob without CLUSTER ALTER_CONFIGS"
    assert raw_delete_records(acl, "bob", topic, 4) == {(topic, 0): (TOPIC_AUTH, -1)}, \
        "DeleteRecords v0 without DELETE: Kafka answers TOPIC_AUTHORIZATION_FAILED, low watermark -1"
    assert raw_describe_producers(acl, "bob", topic) == {(topic, 0): (TOPIC_AUTH, 0)}

    # Topic DESCRIBE (clients can find the leader now): still refused by each API.
    grant(acl, binding(ResourceType.TOPIC, topic, AclOperation.DESCRIBE, principal=BOB))
    _, exc = delete_records()
    assert code_of(exc) == TOPIC_AUTH, f"delete_records as bob with DESCRIBE only: {exc!r}"
    assert code_of(create_partitions()) == TOPIC_AUTH, "create_partitions as bob with DESCRIBE only"
    assert code_of(alter_topic()) == TOPIC_AUTH, "incremental_alter_configs (topic) as bob with DESCRIBE only"
    assert raw_describe_producers(acl, "bob", topic) == {(topic, 0): (TOPIC_AUTH, 0)}, \
        "DescribeProducers needs topic READ"
    assert partitions_seen_by_admin() == 1 and low_watermark() == 0
    assert config_value(ResourceType.TOPIC, topic, topic_key) != "3600000"

    # ALTER, DELETE, ALTER_CONFIGS (and READ) on the topic.
    grant(acl, *(binding(ResourceType.TOPIC, topic, op, principal=BOB) for op in
                 (AclOperation.ALTER, AclOperation.DELETE, AclOperation.ALTER_CONFIGS, AclOperation.READ)))
    exc = create_partitions()
    assert exc is None, f"create_partitions as bob with ALTER: {exc!r}"
    wait_for(lambda: partitions_seen_by_admin() == 3, 30, f"{topic} to have 3 partitions")
    deleted, exc = delete_records()
    assert exc is None and deleted.low_watermark == 4, f"delete_records as bob with DELETE: {deleted!r} {exc!r}"
    assert low_watermark() == 4
    exc = alter_topic()
    assert exc is None, f"incremental_alter_configs (topic) as bob with ALTER_CONFIGS: {exc!r}"
    wait_for(lambda: config_value(ResourceType.TOPIC, topic, topic_key) == "3600000", 30, f"{topic_key} of {topic}")
    assert raw_describe_producers(acl, "bob", topic) == {(topic, 0): (0, 0)}
    assert code_of(alter_broker()) == CLUSTER_AUTH, "topic ALTER_CONFIGS does not cover a broker"
    assert config_value(ResourceType.BROKER, "1", broker_key) != "2000000"

    # CLUSTER ALTER_CONFIGS covers brokers (undone afterwards: the broker is shared).
    cluster_alter_configs = binding(ResourceType.BROKER, CLUSTER, AclOperation.ALTER_CONFIGS, principal=BOB)
    grant(acl, cluster_alter_configs)
    try:
        exc = alter_broker()
        assert exc is None, f"incremental_alter_configs (broker) as bob with CLUSTER ALTER_CONFIGS: {exc!r}"
        wait_for(lambda: config_value(ResourceType.BROKER, "1", broker_key) == "2000000", 30, f"{broker_key} of broker 1")
    finally:
        revoke(acl, cluster_alter_configs)
        res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
            ConfigEntry(broker_key, None, incremental_operation=AlterConfigOpType.DELETE)])
        admin.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=60)


def test_cluster_admin_apis_need_cluster_acls(ottla_factory, java_program, tmp_path):
    env = start_acl_broker(ottla_factory, "ottla-acl-cluster-apis")
    r = run_id()
    topic, txn_id, scram_user = f"acl-capi-{r}", f"acl-capi-txn-{r}", f"carol-{r}"
    admin = sasl_conf("admin")
    create_topic(env.sasl, admin, topic)
    p = Producer({"bootstrap.servers": env.sasl, "transactional.id": txn_id, "linger.ms": 5, **admin})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(topic, key=b"k", value=b"v", partition=0)
    p.commit_transaction(60)
    del p
    bob_props = java_sasl_properties(tmp_path / "bob.properties", "bob")
    target = types.SimpleNamespace(bootstrap=env.sasl)

    def java(*calls: str) -> dict[str, str]:
        """Run OttlaAdminAcls as bob: {call: what its line reported after '='}."""
        out = run_java(java_program, "OttlaAdminAcls", target, bob_props, topic, txn_id, scram_user,
                       ",".join(calls), timeout=120, heap="256m")
        got = {}
        for line in out.splitlines():
            name, sep, value = line.partition("=")
            if sep and name in calls:
                got[name] = value
        assert set(got) == set(calls), f"OttlaAdminAcls output lacks calls:\n{out}"
        return got

    describe_calls = ("describeLogDirs", "describeMetadataQuorum", "listPartitionReassignments",
                      "describeUserScramCredentials")
    alter_calls = ("electLeaders", "alterPartitionReassignments", "alterUserScramCredentials")
    cae = "ClusterAuthorizationException"

    # No ACL.
    got = java(*describe_calls, *alter_calls, "listTransactions", "describeTransactions")
    want = {**{c: cae for c in describe_calls + alter_calls},
            "listTransactions": "ok ids=[]", "describeTransactions": "TransactionalIdAuthorizationException"}
    assert got == want, f"as bob without ACLs: {got}"
    assert raw_describe_transactions(env, "bob", txn_id) == (TXN_AUTH, txn_id, ""), \
        "DescribeTransactions v0 without DESCRIBE: TRANSACTIONAL_ID_AUTHORIZATION_FAILED"

    # CLUSTER DESCRIBE and TRANSACTIONAL_ID DESCRIBE: the describes work, the alterations do not.
    grant(env, binding(ResourceType.BROKER, CLUSTER, AclOperation.DESCRIBE, principal=BOB),
          binding(ResourceType.TRANSACTIONAL_ID, txn_id, AclOperation.DESCRIBE, principal=BOB))
    got = java(*describe_calls, *alter_calls, "listTransactions", "describeTransactions")
    assert got["describeLogDirs"].startswith("ok brokers=1 dirs=") and not got["describeLogDirs"].endswith("dirs=0"), got
    assert got["describeMetadataQuorum"].startswith("ok leader=1 "), got
    assert got["listPartitionReassignments"] == "ok count=0", got
    assert got["describeUserScramCredentials"] == "ok users=[]", got
    assert {c: got[c] for c in alter_calls} == {c: cae for c in alter_calls}, f"CLUSTER DESCRIBE is not ALTER: {got}"
    assert got["listTransactions"] == f"ok ids=[{txn_id}]", got
    assert got["describeTransactions"] == "ok state=CompleteCommit", got
    assert raw_describe_transactions(env, "bob", txn_id) == (0, txn_id, "CompleteCommit")

    # CLUSTER ALTER.
    grant(env, binding(ResourceType.BROKER, CLUSTER, AclOperation.ALTER, principal=BOB))
    got = java(*alter_calls, "describeUserScramCredentials", "listPartitionReassignments")
    assert got == {"electLeaders": "ok partition=ElectionNotNeededException",  # one replica: already preferred
                   "alterPartitionReassignments": "ok",  # onto its current replica
                   "alterUserScramCredentials": "ok",
                   "describeUserScramCredentials": f"ok users=[{scram_user}]",
                   "listPartitionReassignments": "ok count=0"}, f"as bob with CLUSTER ALTER: {got}"


def test_consumer_protocol_regex_and_describe_follow_topic_acls(acl):
    """KIP-848 with ACLs, as Kafka 4.1's group coordinator: alice's ``group.protocol=consumer``
    member subscribed to ``^acl-rx-<run>-.*`` gets only the matching topic she may DESCRIBE (the
    other is left out silently: no error, none of its records); once admin grants her READ on the
    second topic the next resolution takes it and she reads its records too. ConsumerGroupDescribe
    by bob, with group DESCRIBE but not topic DESCRIBE, answers the whole group
    TOPIC_AUTHORIZATION_FAILED; admin describes it."""
    r = run_id()
    prefix = f"acl-rx-{r}-"
    open_topic, secret, group = prefix + "open", prefix + "secret", f"acl-rx-g-{r}"
    admin, alice = sasl_conf("admin"), sasl_conf("alice")
    create_topic(acl.sasl, admin, open_topic, partitions=2)
    create_topic(acl.sasl, admin, secret, partitions=1)
    must_produce(acl.sasl, admin, open_topic, 10, f"open-{r}", partitions=2)
    must_produce(acl.sasl, admin, secret, 10, f"secret-{r}")
    grant(acl, binding(ResourceType.GROUP, group, AclOperation.READ),
          binding(ResourceType.TOPIC, open_topic, AclOperation.READ))

    assigned: list[set] = []
    errors: list = []
    c = Consumer({"bootstrap.servers": acl.sasl, **alice, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "error_cb": errors.append})
    got: dict[str, int] = {open_topic: 0, secret: 0}

    def on_assign(consumer, parts):
        assigned.append({(p.topic, p.partition) for p in consumer.assignment()} | {(p.topic, p.partition) for p in parts})

    def poll_for(seconds: float, until=lambda: False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(m.error())
                continue
            got[m.topic()] += 1

    try:
        c.subscribe([f"^{prefix}.*"], on_assign=on_assign)
        poll_for(60, lambda: got[open_topic] >= 10)
        assert got[open_topic] == 10, f"alice read {got[open_topic]} of the 10 records of {open_topic}; errors {errors[:3]}"
        # Several heartbeats (5 s interval) later the secret topic is still not hers.
        poll_for(12)
        assert got[secret] == 0, f"alice read {got[secret]} records of {secret} without any ACL on it"
        assert assigned and all(t != secret for a in assigned for t, _ in a), \
            f"{secret} was assigned to alice without DESCRIBE: {assigned}"
        assert not [e for e in errors if e.code() in (TOPIC_AUTH, GROUP_AUTH)], \
            f"a topic left out of a regex subscription is silent in Kafka; alice got {errors[:3]}"

        # bob may describe the group but not its topics: the group is refused as a whole.
        grant(acl, binding(ResourceType.GROUP, group, AclOperation.DESCRIBE, principal=BOB))
        bob = admin_for(acl.sasl, sasl_conf("bob"))
        _, exc = outcome(bob.describe_consumer_groups([group], request_timeout=30)[group])
        assert code_of(exc) == TOPIC_AUTH, \
            f"ConsumerGroupDescribe as bob without DESCRIBE on {open_topic}: expected TOPIC_AUTHORIZATION_FAILED, got {exc!r}"
        su = admin_for(acl.sasl, admin)
        desc, exc = outcome(su.describe_consumer_groups([group], request_timeout=30)[group])
        assert exc is None and len(desc.members) == 1, f"describe_consumer_groups as admin: {exc!r}"
        assert {(tp.topic, tp.partition) for tp in desc.members[0].assignment.topic_partitions} == \
            {(open_topic, 0), (open_topic, 1)}, f"alice's assignment as admin sees it: {desc.members[0].assignment}"

        # A grant is a metadata change: the next heartbeat resolves the regex again.
        grant(acl, binding(ResourceType.TOPIC, secret, AclOperation.READ))
        poll_for(60, lambda: got[secret] >= 10)
        assert got == {open_topic: 10, secret: 10}, f"after READ on {secret}: alice read {got}; errors {errors[:3]}"
    finally:
        c.close()
