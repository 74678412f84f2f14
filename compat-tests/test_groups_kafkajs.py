"""kafkajs (Node.js, from npm) consumer groups against a real ottla process.

``kafkajs/group.js`` runs two kafkajs consumers in one group (``consumer.run`` with
``eachMessage``; kafkajs commits after every batch) over a 4-partition topic until every record
was delivered and committed, describes the group with kafkajs' admin client while both members
are in it, disconnects them (LeaveGroup), then fetches the group's offsets and lists groups.
This test checks the JSON it prints: every record delivered exactly once (both members joined
the group's first generation, so no rebalance happens while records flow), the members split
the partitions, committed offsets are the end offsets (kafkajs' fetchOffsets, and
confluent-kafka's OffsetFetch from Python), the group was Stable with two members and is Empty
afterwards.

kafkajs is pinned in ``kafkajs/package.json`` / ``package-lock.json``; the test runs ``npm ci``
when ``kafkajs/node_modules`` is missing. It needs ``node`` (>= 14) and ``npm``.
"""

from __future__ import annotations

import collections
import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import ck_create_topic, ck_group_offsets, unique_topic

HERE = Path(__file__).resolve().parent
JS_DIR = HERE / "kafkajs"
NODE = shutil.which("node")
NPM = shutil.which("npm")


@pytest.fixture(scope="session")
def kafkajs_ready() -> str:
    if NODE is None:
        pytest.skip("node is not installed: the kafkajs suite needs Node.js (>= 14) and npm")
    if not (JS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
        if NPM is None:
            pytest.fail("npm is not installed (needed once to install kafkajs into compat-tests/kafkajs)")
        with open(Path(tempfile.gettempdir()) / "ottla-compat-kafkajs-npm.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (JS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
                cmd = [NPM, "ci" if (JS_DIR / "package-lock.json").exists() else "install",
                       "--no-audit", "--no-fund", "--loglevel=error"]
                p = subprocess.run(cmd, cwd=JS_DIR, capture_output=True, text=True, timeout=300)
                if p.returncode != 0:
                    pytest.fail(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return NODE


def test_kafkajs_group_consumes_to_end_and_commits(kafkajs_ready, ottla, tmp_path):
    parts, per = 4, 1500
    topic = unique_topic("groups-kafkajs")
    group = f"kafkajs-{topic}"
    ck_create_topic(ottla.bootstrap, topic, partitions=parts)
    p = Producer({"bootstrap.servers": ottla.bootstrap, "linger.ms": 5})
    for i in range(parts * per):
        p.produce(topic, key=f"k{i}", value=f"v{i}", partition=i % parts)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    ends = {p: per for p in range(parts)}

    cfg = dict(bootstrap=ottla.bootstrap, topic=topic, group=group, members=2, ends=ends, timeoutMs=90000)
    proc = subprocess.run([kafkajs_ready, str(JS_DIR / "group.js"), json.dumps(cfg)], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=150)
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"group.js printed no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-5000:]}")
    members = res["members"]
    crashes = [c for m in members for c in m["crashes"]]
    assert res["error"] is None and proc.returncode == 0, \
        f"{res['error']}\ncrashes: {crashes}\nstderr:\n{proc.stderr[-5000:]}"
    assert not crashes, crashes

    # Every record exactly once; the members split the partitions.
    count = collections.Counter((d[0], d[1]) for m in members for d in m["deliveries"])
    assert set(count) == {(p, o) for p in range(parts) for o in range(per)}
    dups = sorted(k for k, n in count.items() if n > 1)
    joins = [(m["name"], j["groupProtocol"], j["memberAssignment"]) for m in members for j in m["joins"]]
    assert not dups, f"{len(dups)} records delivered twice, first {dups[:10]}; joins: {joins}"
    by_member = [{d[0] for d in m["deliveries"]} for m in members]
    assert all(by_member) and not (by_member[0] & by_member[1]), f"partitions per member: {by_member}; {joins}"
    last = [m["joins"][-1] for m in members]
    assert len({j["leaderId"] for j in last}) == 1 and sum(j["isLeader"] for j in last) == 1, last
    assigned = [set(j["memberAssignment"].get(topic, [])) for j in last]
    assert assigned[0] | assigned[1] == set(range(parts)) and not (assigned[0] & assigned[1]), assigned

    # The admin views.
    active = res["describe_active"]
    assert active["state"] == "Stable" and active["protocolType"] == "consumer", active
    assert active["protocol"] == last[0]["groupProtocol"], (active, last[0])
    assert sorted(x["memberId"] for x in active["members"]) == sorted(j["memberId"] for j in last), active
    assert all(x["assignmentBytes"] > 0 for x in active["members"]), active
    fetched = {t["topic"]: {int(q["partition"]): int(q["offset"]) for q in t["partitions"]}
               for t in res["fetch_offsets"]}
    assert fetched == {topic: ends}, fetched
    assert res["describe_after"]["state"] == "Empty" and res["describe_after"]["members"] == 0, res["describe_after"]

    # And from another client.
    assert ck_group_offsets(ottla.bootstrap, group) == ends

    # Listed after the members left: still a "consumer" group (an emptied group keeps its
    # protocol type).
    assert [(g["groupId"], g["protocolType"]) for g in res["list_groups"]] == [(group, "consumer")], res["list_groups"]
