#!/usr/bin/env python3
"""Record real clients' request frames as fuzz seeds.

Starts ottla advertising a proxy port, relays every connection through this script and
writes each client-to-broker frame (without its size prefix) to fuzz/seeds/handler/ and
fuzz/seeds/request/, and each produced record batch to fuzz/seeds/record_batch/. The
clients are confluent-kafka (librdkafka) from the compat-tests virtualenv: admin,
produce with every codec, consume in a group with commits.

    .venv/bin/python fuzz/capture_seeds.py target/release/ottla
"""
import hashlib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
                save("handler", frame)
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
    ottla = sys.argv[1]
    real, front = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen([ottla, "serve", "--override", f"log.dirs={data}",
                                   "--override", f"listeners=PLAINTEXT://127.0.0.1:{real}",
                                   "--override", f"advertised.listeners=PLAINTEXT://127.0.0.1:{front}",
                                   "--override", "group.initial.rebalance.delay.ms=0"],
                                  stderr=subprocess.DEVNULL)
        try:
            threading.Thread(target=proxy, args=(front, real), daemon=True).start()
            time.sleep(0.5)
            boot = f"127.0.0.1:{front}"
            admin = AdminClient({"bootstrap.servers": boot})
            for f in admin.create_topics([NewTopic("seeds", 2, 1)]).values():
                f.result(30)
            for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
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
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
