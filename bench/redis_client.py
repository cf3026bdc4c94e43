"""CPU of one round trip through redis-py, by layer: why group commit sends on its own connection.

    .venv/bin/python bench/redis_client.py        # bench/out/redis-client.txt

The same EVALSHA (a script that returns at once, with the keys and arguments of one webhook's
upsert: 9 keys, 20 arguments, a 1 KB blob) sent one way after another, alone and four at a time,
against an embedded redis-server (or ``REDIS_URL``); CPU time of this process per round trip:

- ``Script()``: what ``Store`` calls without group commit (redis-py's whole command path);
- ``pipeline``: what group commit used to send a batch with;
- ``own connection``: a redis-py ``Connection`` from the client's pool, kept, sent to with
  ``send_packed_command`` and read with ``read_response`` (what ``inbox/groupcommit.py`` does),
  packed by redis-py or by hiredis directly;
- ``raw socket``: the floor, hiredis packing and parsing on a plain socket.
"""

import os
import socket
import sys
import time
import urllib.parse

import hiredis
import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cli.dev.embedded import EmbeddedRedis  # noqa: E402

KEYS = [f"{{bench}}:key:{i}" for i in range(9)]
ARGS = ["webhook", 1700000000000, 100000, "h" * 32, 3600, "", 0, "", 0, "", "", "message-id",
        b"x" * 1000, "1:" + "a" * 32, 2, "inbound", "patient", "completed", 1700000000000,
        1700000000000]
CALLS = 5000


def cpu_per_call(send, batch):
    for _ in range(300):
        send(batch)
    started = time.process_time()
    for _ in range(CALLS):
        send(batch)
    return (time.process_time() - started) / CALLS * 1e6


def main(url):
    client = redis.Redis.from_url(url)
    script = client.register_script("return 1")
    script(keys=KEYS, args=ARGS)
    command = ("EVALSHA", script.sha, len(KEYS), *KEYS, *ARGS)

    def with_script(batch):
        for _ in range(batch):
            script(keys=KEYS, args=ARGS)

    def with_pipeline(batch):
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.evalsha(script.sha, len(KEYS), *KEYS, *ARGS)
        pipe.execute()

    connection = client.connection_pool.make_connection()

    def own_connection(pack):
        def send(batch):
            connection.send_packed_command(pack([command] * batch))
            return [connection.read_response() for _ in range(batch)]
        return send

    address = urllib.parse.urlsplit(url)
    raw = socket.create_connection((address.hostname, address.port))
    reader = hiredis.Reader()

    def raw_socket(batch):
        raw.sendall(hiredis.pack_command(command) * batch)
        replies = 0
        while replies < batch:
            if reader.gets() is False:
                reader.feed(raw.recv(65536))
            else:
                replies += 1

    sides = [
        ("Script() (redis-py command path)", with_script),
        ("pipeline (group commit before)", with_pipeline),
        ("own connection, redis-py packing", own_connection(connection.pack_commands)),
        ("own connection, hiredis packing (now)",
         own_connection(lambda commands: [b"".join(hiredis.pack_command(c) for c in commands)])),
        ("raw socket, hiredis (the floor)", raw_socket),
    ]
    print(f"CPU of this process per round trip, us (median of 3; {CALLS} round trips each)")
    print(f"{'side':40} {'1 call':>8} {'4 calls':>8}")
    for name, send in sides:
        figures = []
        for batch in (1, 4):
            runs = sorted(cpu_per_call(send, batch) for _ in range(3))
            figures.append(runs[1])
        print(f"{name:40} {figures[0]:8.1f} {figures[1]:8.1f}")
    print(f"machine: {os.cpu_count()} cpu, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if os.environ.get("REDIS_URL"):
        main(os.environ["REDIS_URL"])
    else:
        with EmbeddedRedis() as server:
            main(server.url)
