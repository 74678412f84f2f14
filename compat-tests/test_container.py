"""The container image's command line, run directly: no container engine runs on the test
machines, so the image itself is not built here. The image's entrypoint is ``ottla
serve`` itself (docker/Dockerfile's ENTRYPOINT, read from the file, paths swapped for
the test's), and the environment mapping is the binary's ``--config-env-prefix``.

* ``test_the_images_entrypoint_configures_the_broker_from_the_environment``: the
  entrypoint plus ``docker run``-style arguments, with a clean environment plus OTTLA_*
  variables. DescribeConfigs shows log.retention.hours from the environment as a
  STATIC_BROKER_CONFIG (over the file's and a ``--default``), the listener from the
  environment over the image's ``--default``, log.dirs from the image's ``--default``
  (the topic's data is there), an ``--override`` over the environment, and a second
  ``--config`` replacing the image's file. ``___`` and ``__`` reach the broker as ``-``
  and ``_`` (its unknown-key warning names the key); OTTLA_BIN, OTTLA_CONFIG_FILE and
  OTTLA_FAULT_* are not mapped; the start-up line names the keys the environment set
  and never their values.
* ``test_without_the_flag_the_environment_is_ignored``: OTTLA_* variables change
  nothing unless ``--config-env-prefix`` is given.
* ``test_bad_flags_are_refused_before_start``: an empty prefix, a ``--default`` that is
  not KEY=VALUE.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import subprocess

from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

from conftest import OTTLA_BIN, REPO, ck_create_topic, free_port, unique_topic, wait_for

DOCKERFILE = REPO / "docker" / "Dockerfile"
SERVER_PROPERTIES = REPO / "config" / "server.properties"
STATIC = ConfigSource.STATIC_BROKER_CONFIG.value
DEFAULT = ConfigSource.DEFAULT_CONFIG.value
ENV_LINE = re.compile(r"Config keys from OTTLA_\* environment variables: (.*)$", re.M)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTLA_")}
    env.update(extra)
    return env


def image_entrypoint() -> list[str]:
    """docker/Dockerfile's ENTRYPOINT (exec form: the image has no shell)."""
    lines = [l for l in DOCKERFILE.read_text().splitlines() if l.startswith("ENTRYPOINT ")]
    assert len(lines) == 1, lines
    return json.loads(lines[0].removeprefix("ENTRYPOINT "))


@contextlib.contextmanager
def broker(cmd: list[str], env: dict[str, str], log_path: pathlib.Path, port: int):
    """Run ``cmd`` until it serves on ``port``; stop it with SIGTERM on exit and
    check that it shut down cleanly."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})

        # Stop waiting as soon as it exits (a refused config).
        wait_for(lambda: proc.poll() is not None or admin.list_topics(timeout=2).brokers, 30,
                 "the broker to serve")
        assert proc.poll() is None, log_path.read_text(errors="replace")[-2000:]
        yield admin
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0, log_path.read_text(errors="replace")[-2000:]


def broker_configs(admin: AdminClient) -> dict:
    res = ConfigResource(ResourceType.BROKER, "1")
    return admin.describe_configs([res])[res].result(timeout=30)


def test_the_images_entrypoint_configures_the_broker_from_the_environment(tmp_path):
    entrypoint = image_entrypoint()
    assert entrypoint[:2] == ["/usr/local/bin/ottla", "serve"], entrypoint
    assert entrypoint[entrypoint.index("--config-env-prefix") + 1] == "OTTLA_"
    assert "log.dirs=/var/lib/ottla/data" in entrypoint
    assert "listeners=PLAINTEXT://0.0.0.0:9092" in entrypoint
    image_data = tmp_path / "var-lib-ottla" / "data"
    swaps = {
        "/usr/local/bin/ottla": OTTLA_BIN,
        "/etc/ottla/server.properties": str(SERVER_PROPERTIES),
        "log.dirs=/var/lib/ottla/data": f"log.dirs={image_data}",
    }
    cmd = [swaps.get(a, a) for a in entrypoint]

    # `docker run IMAGE --config my.properties ...`: the image's file, minus one line and
    # plus another, mounted elsewhere.
    text = SERVER_PROPERTIES.read_text()
    assert "\nlog.retention.check.interval.ms=" in text and "\nlog.retention.hours=168" in text
    custom = tmp_path / "my.properties"
    custom.write_text("".join(
        l for l in text.splitlines(keepends=True)
        if not l.startswith("log.retention.check.interval.ms=")) + "\nlog.segment.bytes=2097152\n")
    port = free_port()
    secret = "s3cret-never-logged"
    env = clean_env(
        OTTLA_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",  # over the image's --default
        OTTLA_LOG_RETENTION_HOURS="5",  # over the file's 168 and --default 1 below
        OTTLA_NUM_PARTITIONS="2",  # under --override num.partitions=3 below
        OTTLA_SOME__UNKNOWN___KEY="1",  # some_unknown-key
        OTTLA_SSL_KEY_PASSWORD=secret,
        # Not config: mapped, they would be warned about as unknown keys (bin,
        # config.file, fault.not.a.config).
        OTTLA_BIN=OTTLA_BIN,
        OTTLA_CONFIG_FILE="/nonexistent/server.properties",
        OTTLA_FAULT_NOT_A_CONFIG="1",
    )
    args = ["--config", str(custom), "--default", "log.retention.hours=1",
            "--override", "num.partitions=3"]
    log_path = tmp_path / "broker.log"
    with broker(cmd + args, env, log_path, port) as admin:
        topic = unique_topic("entry")
        ck_create_topic(f"127.0.0.1:{port}", topic, partitions=1)
        assert (image_data / f"{topic}-0").is_dir(), "data in the image's log.dirs"
        configs = broker_configs(admin)
        got = {k: (configs[k].value, configs[k].source) for k in (
            "log.retention.hours", "num.partitions", "log.dirs", "log.segment.bytes")}
        assert got == {
            "log.retention.hours": ("5", STATIC),
            "num.partitions": ("3", STATIC),
            "log.dirs": (str(image_data), STATIC),
            "log.segment.bytes": ("2097152", STATIC),
        }
        # Only in the image's file, so that file was not read.
        c = configs["log.retention.check.interval.ms"]
        assert c.source == DEFAULT, (c.value, c.source)
        c = configs["listeners"]
        assert (c.value, c.source) == (f"PLAINTEXT://127.0.0.1:{port}", STATIC)
    text = log_path.read_text(errors="replace")
    lines = ENV_LINE.findall(text)
    # In variable-name order, names only.
    assert lines == ["listeners, log.retention.hours, num.partitions, some_unknown-key, "
                     "ssl.key.password"], lines
    assert "Ignoring unknown configuration key some_unknown-key" in text
    unknown = re.findall(r"Ignoring unknown configuration key (\S+)", text)
    assert unknown == ["some_unknown-key"], unknown
    assert secret not in text


def test_without_the_flag_the_environment_is_ignored(tmp_path):
    port = free_port()
    env = clean_env(OTTLA_LOG_RETENTION_HOURS="5", OTTLA_NUM_PARTITIONS="2")
    cmd = [OTTLA_BIN, "serve", "--config", str(SERVER_PROPERTIES),
           "--default", f"listeners=PLAINTEXT://127.0.0.1:{port}",
           "--override", f"log.dirs={tmp_path / 'data'}"]
    log_path = tmp_path / "broker.log"
    with broker(cmd, env, log_path, port) as admin:
        configs = broker_configs(admin)
        got = {k: (configs[k].value, configs[k].source)
               for k in ("log.retention.hours", "num.partitions", "listeners")}
        assert got == {
            "log.retention.hours": ("168", STATIC),
            "num.partitions": ("1", STATIC),
            "listeners": (f"PLAINTEXT://127.0.0.1:{port}", STATIC),
        }
    text = log_path.read_text(errors="replace")
    assert "environment variables" not in text


def test_bad_flags_are_refused_before_start(tmp_path):
    for flags, message in [
        (["--config-env-prefix", ""], "--config-env-prefix must not be empty"),
        (["--default", "log.dirs"], "--default log.dirs: expected KEY=VALUE"),
    ]:
        out = subprocess.run([OTTLA_BIN, "serve", *flags], env=clean_env(), cwd=tmp_path,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and message in out.stderr, (flags, out.stderr)


def test_version_names_the_kafka_it_speaks():
    out = subprocess.run([OTTLA_BIN, "--version"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    assert out.startswith("ottla ") and "Apache Kafka 4.1" in out, out
