"""The container image's entrypoint (docker/entrypoint.sh), run directly: no container
engine runs on the test machines, so the image itself is not built here.

* ``test_environment_maps_to_config_keys``: with a stand-in binary that prints its
  arguments, OTTLA_LOG_RETENTION_HOURS becomes ``--override log.retention.hours=…``
  (Apache Kafka's image convention: ``_`` is ``.``, ``__`` is ``_``, ``___`` is ``-``),
  the image's defaults come first, the environment next, ``docker run`` arguments last;
  OTTLA_BIN, OTTLA_CONFIG_FILE and OTTLA_FAULT_* are not mapped.
* ``test_the_entrypoint_starts_a_broker_configured_by_the_environment``: the real
  broker started through the entrypoint serves on the listener the environment names,
  stores its data in the directory it names, and DescribeConfigs reports
  log.retention.hours from the environment as a static broker config.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import time

from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

from conftest import OTTLA_BIN, REPO, ck_create_topic, free_port, unique_topic, wait_for

ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTLA_")}
    env.update(extra)
    return env


def test_environment_maps_to_config_keys(tmp_path):
    fake = tmp_path / "fake-ottla"
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    fake.chmod(0o755)
    env = clean_env(
        OTTLA_BIN=str(fake),
        OTTLA_CONFIG_FILE="/etc/ottla/custom.properties",
        OTTLA_LOG_RETENTION_HOURS="24",
        OTTLA_LISTENERS="PLAINTEXT://0.0.0.0:19092",
        OTTLA_SOME__KEY="underscore",
        OTTLA_A___B_C="dash",
        OTTLA_FAULT_CRASH_AFTER_CLEANER_SWAP="1",
        OTTLA_METRICS_LISTENER="http://0.0.0.0:9308/metrics",
    )
    out = subprocess.run([str(ENTRYPOINT), "--override", "node.id=7"], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    args = out.splitlines()
    assert args[:3] == ["serve", "--config", "/etc/ottla/custom.properties"]
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--override"]
    assert overrides == [
        # the image's defaults
        "log.dirs=/var/lib/ottla/data",
        "listeners=PLAINTEXT://0.0.0.0:9092",
        # the environment, sorted by variable name
        "a-b.c=dash",
        "listeners=PLAINTEXT://0.0.0.0:19092",
        "log.retention.hours=24",
        "metrics.listener=http://0.0.0.0:9308/metrics",
        "some_key=underscore",
        # docker run's arguments
        "node.id=7",
    ]
    assert not any("fault" in o or o.startswith(("bin=", "config.file=")) for o in overrides)


def test_the_entrypoint_starts_a_broker_configured_by_the_environment(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    env = clean_env(
        OTTLA_BIN=OTTLA_BIN,
        OTTLA_CONFIG_FILE=str(REPO / "config" / "server.properties"),
        OTTLA_LOG_DIRS=str(data),
        OTTLA_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
        OTTLA_LOG_RETENTION_HOURS="5",
    )
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        bootstrap = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_for(lambda: admin.list_topics(timeout=2).brokers, 30, "the broker to serve")
        topic = unique_topic("entry")
        ck_create_topic(bootstrap, topic, partitions=1)
        assert (data / f"{topic}-0").is_dir(), "data in the directory the environment names"
        res = ConfigResource(ResourceType.BROKER, "1")
        c = admin.describe_configs([res])[res].result(timeout=30)["log.retention.hours"]
        assert (c.value, c.source) == ("5", ConfigSource.STATIC_BROKER_CONFIG.value)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    text = pathlib.Path(tmp_path / "broker.log").read_text(errors="replace")
    assert "ottla-entrypoint: " in text and "log.retention.hours=5" in text
    assert proc.returncode == 0, text[-2000:]


def test_version_names_the_kafka_it_speaks():
    out = subprocess.run([OTTLA_BIN, "--version"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    assert out.startswith("ottla ") and "Apache Kafka 4.1" in out, out
