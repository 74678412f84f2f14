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
* ``test_prometheus_scrapes_the_broker``: a Prometheus server scraping every second sees
  the messages-in counter at the value produced, then after 1,000 more records at the
  new value with a positive ``rate()``, the bytes-out counter the consumer caused, the
  group's lag (1,000 left unread, then 2,000 after the 1,000 more), and a Produce p99
  latency from ``histogram_quantile`` over the latency buckets.
* ``test_metrics_endpoint_under_a_thousand_partitions``: with 1,000 partitions (one record
  each) the endpoint serves a log-size series for every one of them; five scrapes each
  answer within 5 s and the broker's RSS grows by less than 32 MB across them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import REPO, ck_create_topic, free_port, unique_topic, wait_for

RECORDS = 2000
SIZE = 100


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
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
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
    with urllib.request.urlopen(base + "/health", timeout=10) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/nope", timeout=10)
    assert e.value.code == 404


def prometheus_query(api: str, query: str) -> list:
    url = api + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_broker(ottla_factory, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("no prometheus binary (scripts/test.sh installs Debian's prometheus package)")
    broker, base = start_with_metrics(ottla_factory)
    topic = unique_topic("prom")
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
    try:
        produce(broker.bootstrap, topic, RECORDS)
        consume_all(broker.bootstrap, topic, RECORDS)
        group = unique_topic("prom-lag")
        commit_positions(broker.bootstrap, topic, group, {0: 500, 1: 500})
        lag = f'sum(kafka_consumergroup_lag{{consumergroup="{group}",topic="{topic}"}})'
        messages = f'kafka_server_brokertopicmetrics_messagesin_total{{topic="{topic}"}}'

        def value(query):
            try:
                result = prometheus_query(api, query)
            except OSError:
                return None
            return float(result[0]["value"][1]) if result else None

        wait_for(lambda: value(messages) == RECORDS, 60, "Prometheus to scrape the produced count")
        out = value(f'kafka_server_brokertopicmetrics_bytesout_total{{topic="{topic}"}}')
        assert out is not None and out >= RECORDS * SIZE
        wait_for(lambda: value(lag) == RECORDS - 1000, 60, "the group's lag: 1,000 unread")
        produce(broker.bootstrap, topic, 1000)
        wait_for(lambda: value(messages) == RECORDS + 1000, 60, "Prometheus to see 1,000 more")
        wait_for(lambda: value(lag) == RECORDS, 60, "the group's lag: 2,000 unread")
        rate = value(f"rate({messages}[30s])")
        assert rate is not None and rate > 0
        p99 = value('histogram_quantile(0.99, sum by (le) (rate('
                    'kafka_network_requestmetrics_totaltimems_bucket{request="Produce"}[30s])))')
        assert p99 is not None and 0 < p99 <= 10_000, p99
        up = value('up{job="ottla"}')
        assert up == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if os.environ.get("OTTLA_KEEP_PROMETHEUS_LOG"):
            print((tmp_path / "prometheus.log").read_text())


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_metrics_endpoint_under_a_thousand_partitions(ottla_factory):
    broker, base = start_with_metrics(ottla_factory)
    topic = unique_topic("metrics-many")
    ck_create_topic(broker.bootstrap, topic, partitions=1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    for i in range(1000):
        p.produce(topic, value=b"x", partition=i)
    assert p.flush(60) == 0
    scrape(base)  # the first scrape's allocations are the steady state's
    before = rss_bytes(broker.proc.pid)
    for _ in range(5):
        started = time.monotonic()
        m = scrape(base)
        took = time.monotonic() - started
        assert took < 5, f"a scrape of 1,000 partitions took {took:.1f} s"
        sizes = [k for k in m if k.startswith("kafka_log_log_size{") and f'"{topic}"' in k]
        assert len(sizes) == 1000
        assert sum(v for k, v in m.items()
                   if k.startswith("kafka_log_log_logendoffset{") and f'"{topic}"' in k) == 1000
    grew = rss_bytes(broker.proc.pid) - before
    assert grew < 32 << 20, f"RSS grew by {grew >> 20} MB over five scrapes"
    print(f"scrape of 1,000 partitions: {took * 1000:.0f} ms, RSS {before >> 20} MB, grew {grew >> 10} KB")
