#!/usr/bin/env python3
"""Record real clients' request frames as fuzz seeds.

Starts ottla (the compat tests' `Ottla`, binary from OTTLA_BIN) advertising a proxy
port, relays every connection through this script and writes each client-to-broker
frame (without its size prefix) to fuzz/seeds/request/ (the `request` and `handler`
targets' seeds), and each produced record batch to fuzz/seeds/record_batch/. The
clients are confluent-kafka (librdkafka) from the compat-tests virtualenv: admin,
produce with every codec, consume in a group with commits.

    .venv/bin/python fuzz/capture_seeds.py
"""
import hashlib
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
sys.path.insert(0, str(HERE.parent / "compat-tests"))
from conftest import CODECS, Ottla, ck_create_topic, free_port  # noqa: E402


def save(kind: str, data: bytes) -> None:
    d = SEEDS / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def produce_batches(frame: bytes) -> None:
    """Record batches inside a Produce request, found by their magic byte (a seed only
    needs to be close to valid)."""
    i = 0
    while True:
        i = frame.find(b"\x02", i + 1)
        if i < 16:
            if i == -1:
                return
            continue
        start = i - 16
        length = struct.unpack(">i", frame[start + 8:start + 12])[0]
        if 49 <= length <= len(frame) - start - 12:
            save("record_batch", frame[start:start + 12 + length])


def relay(src: socket.socket, dst: socket.socket, record: bool) -> None:
    buf = b""
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
            if not record:
                continue
            buf += chunk
            while len(buf) >= 4:
                (n,) = struct.unpack(">i", buf[:4])
                if len(buf) < 4 + n:
                    break
                frame, buf = buf[4:4 + n], buf[4 + n:]
                save("request", frame)
                if frame[:2] == b"\x00\x00":  # Produce
                    produce_batches(frame)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen: int, upstream: int) -> None:
    server = socket.create_server(("127.0.0.1", listen))
    while True:
        client, _ = server.accept()
        try:
            broker = socket.create_connection(("127.0.0.1", upstream))
        except OSError:  # the broker is gone (the capture is over)
            client.close()
            continue
        threading.Thread(target=relay, args=(client, broker, True), daemon=True).start()
        threading.Thread(target=relay, args=(broker, client, False), daemon=True).start()


def main() -> None:
    real, front = free_port(), free_port()
    # The proxy first: readiness is checked with a Metadata round trip, which follows the
    # advertised port.
    threading.Thread(target=proxy, args=(front, real), daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        broker = Ottla(Path(work), port=real, overrides={
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{front}",
            "group.initial.rebalance.delay.ms": 0,
        }).start()
        try:
            boot = f"127.0.0.1:{front}"
            admin = AdminClient({"bootstrap.servers": boot})
            ck_create_topic(boot, "seeds", partitions=2)
            for codec in CODECS:
                p = Producer({"bootstrap.servers": boot, "compression.type": codec,
                              "enable.idempotence": codec == "zstd", "linger.ms": 5})
                for i in range(20):
                    p.produce("seeds", key=f"k{i}", value=f"{codec}-{i}" * 5, partition=i % 2,
                              headers=[("h", b"v")])
                assert p.flush(30) == 0
            c = Consumer({"bootstrap.servers": boot, "group.id": "seeds-group",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe(["seeds"])
            got = 0
            deadline = time.time() + 30
            while got < 100 and time.time() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    got += 1
            c.commit(asynchronous=False)
            c.close()
            admin.list_consumer_groups().result(30)
            admin.describe_consumer_groups(["seeds-group"])["seeds-group"].result(30)
            admin.delete_topics(["seeds"])["seeds"].result(30)
            print(f"consumed {got}; seeds: " + ", ".join(
                f"{d.name} {len(list(d.iterdir()))}" for d in sorted(SEEDS.iterdir())))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
