"""Prometheus metrics (``metrics.listener``), scraped by a real Prometheus (Debian's
``prometheus`` package, installed by scripts/test.sh).

* ``test_metrics_endpoint_counts_what_clients_did``: confluent-kafka produces 2,000 records
  of 100 bytes to a 2-partition topic and reads them back; the endpoint (OpenMetrics text)
  then shows exactly 2,000 ``kafka_server_brokertopicmetrics_messagesin_total`` for the
  topic, bytes in and out of at least the records' size, Produce and Fetch request
  counts, the partition count, each partition's log size equal to its ``.log`` bytes on
  disk and its log end offset, one active controller, the process's RSS and descriptors;
  ``/health`` answers 200, other paths 404; every series docker/grafana-dashboard.json
  plots is served. A group that read 600 records of partition 0 and 400 of partition 1
  and committed them shows ``kafka_consumergroup_current_offset`` 600 / 400 and
  ``kafka_consumergroup_lag`` 400 / 600; the Produce latency histogram
  (``kafka_network_requestmetrics_totaltimems``) counts as many requests as the Produce
  request counter, with cumulative buckets ending at that count.
* ``test_prometheus_scrapes_the_broker``: a Prometheus server scrapes the broker every
  second while a producer writes 3,000 records (100-byte values, 1,500 per partition) and
  a confluent-kafka consumer that joins a group through ``subscribe()`` reads them as they
  come, committing every 250 records, and stops after 2,000 with a final commit (it stays
  in the group). Halfway the producer waits until Prometheus has scraped 1,500 records in
  and the group's lag, so the scrapes happen during the run. Through the query API, once
  the last scrape is in: the messages-in counter is exactly 3,000, and ``increase()`` /
  ``rate()`` over the run (from the sample at 0 before the first record to the first
  sample at 3,000) are exactly 3,000 and 3,000 over that range; bytes in are at least the
  values produced, the bytes-out counter at least the keys and values the consumer read;
  the group's lag per partition is the records produced to it minus the offset the
  consumer reports as committed (``committed()``), 1,000 in all; a Produce p99 latency
  comes from ``histogram_quantile`` over the latency buckets; ``up`` is 1. Waits poll the
  query API until the value matches or 60 s pass, then fail with the values seen.
* ``test_metrics_endpoint_under_a_thousand_partitions``: with 1,000 partitions (one record
  each) the endpoint serves a log-size series and the end offset of every one of them, six
  times in a row. Time is bounded by the HTTP client's 30 s timeout (a hang fails) and
  printed, never asserted. Memory: the broker's peak RSS during the six scrapes (VmHWM
  reset through ``/proc/<pid>/clear_refs`` just before, and VmRSS polled every
  millisecond) is less than 32 MB above its RSS before them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import REPO, ck_create_topic, free_port, status_kb, unique_topic, wait_for

RECORDS = 2000
SIZE = 100
PROM_PRODUCED = 3000  # by the producer of the Prometheus test, 1,500 per partition
PROM_CONSUMED = 2000  # by its group member before it stops and commits
# Every HTTP request's timeout: generous, but a hung or runaway request fails.
HTTP_TIMEOUT = 30


def start_with_metrics(ottla_factory):
    port = free_port()
    broker = ottla_factory(overrides={"metrics.listener": f"http://127.0.0.1:{port}/metrics"})
    return broker, f"http://127.0.0.1:{port}"


def produce(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=b"m" * SIZE, partition=i % 2)
    assert p.flush(30) == 0


def consume_all(bootstrap: str, topic: str, n: int) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("metrics-g"),
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    got = 0
    deadline = time.time() + 60
    while got < n and time.time() < deadline:
        for m in c.consume(500, timeout=1.0):
            assert m.error() is None, m.error()
            got += 1
    c.close()
    assert got == n


def commit_positions(bootstrap: str, topic: str, group: str, wanted: dict[int, int]) -> None:
    """Read `wanted[p]` records of each partition p from offset 0, then commit just past
    them as `group` would after processing them."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        commits = []
        for p, n in wanted.items():
            c.assign([TopicPartition(topic, p, 0)])
            got = 0
            deadline = time.time() + 60
            while got < n and time.time() < deadline:
                for m in c.consume(min(500, n - got), timeout=1.0):
                    assert m.error() is None, m.error()
                    got += 1
                    if got == n:
                        commits.append(TopicPartition(topic, p, m.offset() + 1))
                        break
            assert got == n, f"read {got} of {n} records of partition {p}"
        c.commit(offsets=commits, asynchronous=False)
    finally:
        c.close()


def scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=HTTP_TIMEOUT) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_endpoint_counts_what_clients_did(ottla_factory):
    broker, base = start_with_metrics(ottla_factory)
    topic = unique_topic("metrics")
    ck_create_topic(broker.bootstrap, topic, partitions=2)
    produce(broker.bootstrap, topic, RECORDS)
    consume_all(broker.bootstrap, topic, RECORDS)
    group = unique_topic("metrics-lag")
    commit_positions(broker.bootstrap, topic, group, {0: 600, 1: 400})
    m = scrape(base)
    t = f'{{topic="{topic}"}}'
    for p, committed in ((0, 600), (1, 400)):
        labels = f'{{consumergroup="{group}",topic="{topic}",partition="{p}"}}'
        assert m[f"kafka_consumergroup_current_offset{labels}"] == committed
        assert m[f"kafka_consumergroup_lag{labels}"] == RECORDS // 2 - committed
    produced = m['kafka_network_requestmetrics_requests_total{request="Produce"}']
    latency = "kafka_network_requestmetrics_totaltimems"
    assert m[f'{latency}_count{{request="Produce"}}'] == produced
    buckets = sorted((float(k.split('le="')[1].split('"')[0].replace("+Inf", "inf")), v)
                     for k, v in m.items()
                     if k.startswith(f"{latency}_bucket{{") and 'request="Produce"' in k)
    assert len(buckets) == 17 and buckets[-1] == (float("inf"), produced), buckets
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "cumulative buckets"
    assert m[f'{latency}_sum{{request="Produce"}}'] > 0
    assert m[f"kafka_server_brokertopicmetrics_messagesin_total{t}"] == RECORDS
    assert m[f"kafka_server_brokertopicmetrics_bytesin_total{t}"] >= RECORDS * SIZE
    assert m[f"kafka_server_brokertopicmetrics_bytesout_total{t}"] >= RECORDS * SIZE
    assert m['kafka_network_requestmetrics_requests_total{request="Produce"}'] >= 1
    assert m['kafka_network_requestmetrics_requests_total{request="Fetch"}'] >= 1
    # Every partition hosted: the topic's and __consumer_offsets' (the group made it).
    hosted = [d for d in broker.log_dir.iterdir() if (d / "partition.metadata").exists()]
    assert m["kafka_server_replicamanager_partitioncount"] == len(hosted) >= 2
    assert m["kafka_server_replicamanager_underreplicatedpartitions"] == 0
    assert m["kafka_controller_kafkacontroller_activecontrollercount"] == 1
    for p in (0, 1):
        labels = f'{{topic="{topic}",partition="{p}"}}'
        on_disk = sum(f.stat().st_size for f in broker.partition_dir(topic, p).glob("*.log"))
        assert m[f"kafka_log_log_size{labels}"] == on_disk
        assert m[f"kafka_log_log_logendoffset{labels}"] == RECORDS // 2
        assert m[f"kafka_log_log_logstartoffset{labels}"] == 0
    # Open client connections: three more while three sockets are open, back after.
    count = "kafka_server_socketservermetrics_connection_count"
    before = scrape(base)[count]
    host, port = broker.bootstrap.split(":")
    sockets = [socket.create_connection((host, int(port))) for _ in range(3)]
    wait_for(lambda: scrape(base)[count] == before + 3, 10, "3 more connections counted")
    for s_ in sockets:
        s_.close()
    wait_for(lambda: scrape(base)[count] == before, 10, "the closed connections uncounted")
    assert m["process_resident_memory_bytes"] > 1 << 20
    assert m["process_open_fds"] >= 3
    # Every series the Grafana dashboard in docker/ plots is one the broker serves.
    dashboard = (REPO / "docker" / "grafana-dashboard.json").read_text()
    exprs = [t["expr"] for panel in json.loads(dashboard)["panels"] for t in panel["targets"]]
    plotted = {n for e in exprs for n in re.findall(r"\b((?:kafka|process)_[a-z_]+)", e)}
    served = {name.split("{")[0] for name in m}
    assert plotted and plotted <= served, plotted - served
    with urllib.request.urlopen(base + "/health", timeout=HTTP_TIMEOUT) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/nope", timeout=HTTP_TIMEOUT)
    assert e.value.code == 404


def prometheus_query(api: str, query: str, at: str | None = None) -> list:
    """An instant query through Prometheus's HTTP API (`at`: evaluation time, unix
    seconds; default now)."""
    params = {"query": query} | ({"time": at} if at is not None else {})
    url = api + "/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def poll(read, wanted, what: str, timeout: float = 60):
    """Call `read` until `wanted(value)`, or fail after `timeout` s with the values it
    returned (the last ten distinct ones)."""
    deadline = time.monotonic() + timeout
    seen: list = []
    while True:
        v = read()
        if not seen or seen[-1] != v:
            seen = (seen + [v])[-10:]
        if wanted(v):
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus did not show {what} within {timeout} s; "
                                 f"values seen, oldest first: {seen}")
        time.sleep(0.2)


def ms_text(ms: int) -> str:
    """Unix milliseconds as the seconds Prometheus's API takes, without float rounding."""
    return f"{ms // 1000}.{ms % 1000:03d}"


class GroupMember(threading.Thread):
    """A confluent-kafka consumer that joins `group` through subscribe(), reads the topic
    as it is produced, commits its positions every 250 records and after `stop_after`,
    reports what the coordinator holds for it (committed()), then stays in the group
    (heartbeating, not polling) until `leave` is set."""

    def __init__(self, bootstrap: str, topic: str, group: str, stop_after: int):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.group, self.stop_after = bootstrap, topic, group, stop_after
        self.assigned = threading.Event()
        self.done = threading.Event()
        self.leave = threading.Event()
        self.consumed = 0
        self.consumed_bytes = 0
        self.committed: dict[int, int] = {}
        self.error: BaseException | None = None

    def run(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            c.subscribe([self.topic], on_assign=lambda _c, parts: parts and self.assigned.set())
            deadline = time.monotonic() + 120
            while self.consumed < self.stop_after:
                assert time.monotonic() < deadline, f"consumed {self.consumed} in 120 s"
                m = c.poll(0.5)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                self.consumed += 1
                self.consumed_bytes += len(m.value() or b"") + len(m.key() or b"")
                if self.consumed % 250 == 0 or self.consumed == self.stop_after:
                    c.commit(asynchronous=False)
            parts = [TopicPartition(self.topic, p) for p in (0, 1)]
            self.committed = {tp.partition: tp.offset for tp in c.committed(parts, timeout=30)
                              if tp.offset >= 0}
        except BaseException as e:  # noqa: BLE001 - re-raised by the test
            self.error = e
        finally:
            self.done.set()
        self.leave.wait(300)
        c.close()


def test_prometheus_scrapes_the_broker(ottla_factory, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("no prometheus binary (scripts/test.sh installs Debian's prometheus package)")
    broker, base = start_with_metrics(ottla_factory)
    topic = unique_topic("prom")
    group = unique_topic("prom-group")
    ck_create_topic(broker.bootstrap, topic, partitions=2)
    target = base.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: ottla\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    member = GroupMember(broker.bootstrap, topic, group, stop_after=PROM_CONSUMED)
    t = f'topic="{topic}"'
    messages = f"kafka_server_brokertopicmetrics_messagesin_total{{{t}}}"
    lag_query = f'kafka_consumergroup_lag{{consumergroup="{group}",{t}}}'

    def value(query, at=None):
        try:
            result = prometheus_query(api, query, at)
        except OSError:  # not listening yet
            return None
        return float(result[0]["value"][1]) if result else None

    def lags():
        try:
            result = prometheus_query(api, lag_query)
        except OSError:
            return None
        return {int(r["metric"]["partition"]): float(r["value"][1]) for r in result}

    try:
        # A scrape of the new topic's counter at 0 before anything is produced: the start
        # of the window the increase is measured over.
        poll(lambda: value(messages), lambda v: v == 0, "the new topic's messages-in at 0")
        member.start()
        assert member.assigned.wait(60), "the group member got no partitions in 60 s"

        delivered = {0: 0, 1: 0}

        def on_delivery(err, msg):
            assert err is None, err
            delivered[msg.partition()] += 1

        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for i in range(PROM_PRODUCED):
            p.produce(topic, value=b"m" * SIZE, key=b"k%05d" % i, partition=i % 2,
                      on_delivery=on_delivery)
            if i % 100 == 99:
                p.poll(0)
                time.sleep(0.05)  # spread the run over a few scrapes
            if i + 1 == PROM_PRODUCED // 2:
                # Halfway: wait until Prometheus has scraped the broker mid-run, with half
                # the records in and the member's first commits showing as lag.
                assert p.flush(30) == 0
                poll(lambda: value(messages), lambda v: v == PROM_PRODUCED // 2,
                     "messages-in at half the records while the run goes on")
                poll(lags, lambda v: bool(v), "the group's lag while the member consumes")
        assert p.flush(30) == 0
        del p
        assert delivered == {0: PROM_PRODUCED // 2, 1: PROM_PRODUCED // 2}, delivered
        assert member.done.wait(120), f"the member consumed {member.consumed} of {PROM_CONSUMED}"
        if member.error is not None:
            raise member.error
        committed = member.committed
        assert sum(committed.values()) == PROM_CONSUMED, committed

        # Messages in: the counter shows exactly what was produced once the last scrape
        # is in. Then increase() and rate() over the run: evaluated at the first sample
        # at the total, over a range reaching 1 ms before the last sample at 0, they are
        # exactly the produced count and that count over the range. Prometheus
        # extrapolates nothing: the range ends on a sample and its first sample is 0 (a
        # counter is not extrapolated below zero). The extra 1 ms keeps the 0 sample
        # inside the range whether its start is closed (2.x) or open (3.x).
        poll(lambda: value(messages), lambda v: v == PROM_PRODUCED, "messages-in at the total")
        samples = prometheus_query(api, f"{messages}[10m]")[0]["values"]
        samples = [(round(float(ts) * 1000), float(v)) for ts, v in samples]
        zero_at = max(ts for ts, v in samples if v == 0)
        total_at = min(ts for ts, v in samples if v == PROM_PRODUCED)
        window = total_at - zero_at + 1
        during = [int(v) for ts, v in samples if zero_at < ts < total_at]
        assert PROM_PRODUCED // 2 in during, samples
        increase = value(f"increase({messages}[{window}ms])", ms_text(total_at))
        assert increase == PROM_PRODUCED, (increase, samples)
        rate = value(f"rate({messages}[{window}ms])", ms_text(total_at))
        assert rate == pytest.approx(PROM_PRODUCED / (window / 1000), rel=1e-9), (rate, samples)
        bytes_in = value(f"kafka_server_brokertopicmetrics_bytesin_total{{{t}}}")
        assert bytes_in is not None and bytes_in >= PROM_PRODUCED * SIZE, bytes_in

        # Bytes out: at least the keys and values the member consumed (the counter also
        # has the batch framing and whatever the consumer fetched ahead).
        out = poll(lambda: value(f"kafka_server_brokertopicmetrics_bytesout_total{{{t}}}"),
                   lambda v: v is not None and v >= member.consumed_bytes,
                   f"bytes-out of at least the {member.consumed_bytes} bytes consumed")

        # Lag per partition: produced minus what the member says it committed.
        want = {p_: delivered[p_] - off for p_, off in committed.items()}
        seen = poll(lags, lambda v: v == want, f"the group's lag {want} (produced {delivered}, "
                    f"committed {committed})")
        total_lag = value(f"sum({lag_query})")
        assert total_lag == PROM_PRODUCED - PROM_CONSUMED, total_lag

        p99 = value('histogram_quantile(0.99, sum by (le) (rate('
                    'kafka_network_requestmetrics_totaltimems_bucket{request="Produce"}[30s])))')
        assert p99 is not None and 0 < p99 <= 10_000, p99
        up = value('up{job="ottla"}')
        assert up == 1
        print(f"Prometheus: {PROM_PRODUCED} in over {window} ms ({len(during)} scrapes mid-run: "
              f"{during}), rate {rate:.1f}/s; bytes out {out:.0f} >= {member.consumed_bytes} "
              f"consumed; lag {seen} (committed {committed}); Produce p99 {p99:.1f} ms")
    finally:
        member.leave.set()
        if member.is_alive():
            member.join(30)
        proc.terminate()
        proc.wait(timeout=30)
        if os.environ.get("OTTLA_KEEP_PROMETHEUS_LOG"):
            print((tmp_path / "prometheus.log").read_text())


class RssSampler(threading.Thread):
    """Polls a process's VmRSS every millisecond and keeps the highest, in kB."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.samples = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid)["VmRSS"])
            self.samples += 1
            time.sleep(0.001)

    def stop(self) -> int:
        self.halt.set()
        self.join(10)
        return self.peak_kb


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (`5` to /proc/<pid>/clear_refs,
    Linux 4.0+); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def test_metrics_endpoint_under_a_thousand_partitions(ottla_factory):
    """Bounded time: every scrape must answer within the HTTP client's timeout
    (HTTP_TIMEOUT, so a hung or runaway scrape fails); the times are printed, not
    asserted. Bounded memory: the broker's peak RSS over six scrapes, the first included,
    is at most 32 MB above its RSS before them; the peak is the kernel's VmHWM, reset just
    before the scrapes, together with VmRSS polled every millisecond meanwhile."""
    broker, base = start_with_metrics(ottla_factory)
    topic = unique_topic("metrics-many")
    ck_create_topic(broker.bootstrap, topic, partitions=1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    for i in range(1000):
        p.produce(topic, value=b"x", partition=i)
    assert p.flush(60) == 0
    del p
    pid = broker.proc.pid
    hwm_reset = reset_peak_rss(pid)
    before = status_kb(pid)
    sampler = RssSampler(pid)
    sampler.start()
    times = []
    try:
        for _ in range(6):
            started = time.monotonic()
            m = scrape(base)
            times.append(time.monotonic() - started)
            sizes = [k for k in m if k.startswith("kafka_log_log_size{") and f'"{topic}"' in k]
            assert len(sizes) == 1000
            assert sum(v for k, v in m.items() if k.startswith("kafka_log_log_logendoffset{")
                       and f'"{topic}"' in k) == 1000
    finally:
        polled_kb = sampler.stop()
    after = status_kb(pid)
    # Without the reset, VmHWM still bounds the scrapes' peak if it rose during them.
    hwm_kb = after["VmHWM"] if hwm_reset or after["VmHWM"] > before["VmHWM"] else 0
    peak_kb = max(polled_kb, hwm_kb, after["VmRSS"])
    grew_kb = peak_kb - before["VmRSS"]
    print(f"scrapes of 1,000 partitions: {', '.join(f'{t * 1000:.1f}' for t in times)} ms; "
          f"RSS {before['VmRSS']} kB before, peak {peak_kb} kB (VmHWM "
          f"{'reset, ' if hwm_reset else 'not reset, '}{after['VmHWM']} kB; polled "
          f"{polled_kb} kB over {sampler.samples} samples), {after['VmRSS']} kB after")
    assert grew_kb < 32 * 1024, f"peak RSS {grew_kb} kB above the {before['VmRSS']} kB before"
