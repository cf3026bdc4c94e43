"""Slow clients cannot starve Metriport: the receiver's own gunicorn config under a trickle.

48 unauthenticated connections send a request one byte per second (half of them still in the
headers, half declaring a 1,000-byte body and trickling it), which is what starved a thread pool
of 2 x 8 before. While they trickle, every signed ping must be answered within 2 s (Metriport's
ping deadline) and a signed ``message.received`` within 4 s. The server runs the shipped
``receiver/gunicorn.conf.py`` unchanged (workers, worker class, connection limits), because the
worker model is what decides this.

The second test checks the other half of the worker model: a request waiting on Redis (here a
stopped redis-server) must not hold up the rest of its worker, i.e. redis-py's socket waits
yield under gevent like gunicorn's own.
"""

import http.client
import os
import signal
import socket
import threading
import time
import uuid

import pytest

from cli.dev.embedded import EmbeddedRedis
from cli.dev.embedded import free_port
from conftest import TEST_WEBHOOK_KEY
from servers import gunicorn_argv
from servers import running
from webhook_helpers import event_body
from webhook_helpers import headers_for
from webhook_helpers import message

pytestmark = pytest.mark.timeout(60)

TRICKLERS = 48
PING_DEADLINE = 2.0
RECEIVED_DEADLINE = 4.0
#: how long the probes run while the trickle goes on (the test's own bound)
PROBE_SECONDS = 8.0

HEADER_TRICKLE = b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
BODY_HEAD = (b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\nx-metriport-signature: " + b"0" * 64 + b"\r\n\r\n")
BODY_TRICKLE = b"{" + b" " * 998 + b"}"


def start_server(redis_url, log_path, **extra_env):
    """gunicorn exactly as shipped (no worker/thread overrides) on 127.0.0.1."""
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "INBOX_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}",
        "METRIPORT_WEBHOOK_KEY": TEST_WEBHOOK_KEY,
        **extra_env,
    }
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_CMD_ARGS",
                 "GUNICORN_WORKER_CLASS", "GUNICORN_WORKER_CONNECTIONS"):
        env.pop(name, None)
    return port, running(gunicorn_argv(), env, port, log_path)


class Trickle:
    """``count`` connections, each sending its request one byte per second until stopped.

    Even ones trickle a header line; odd ones send their headers (``Content-Length: 1000``) at
    once and trickle the body. A connection the server closes is opened again at once, as an
    attacker would, so ``count`` connections trickle all the time.
    """

    def __init__(self, port, count):
        self.port = port
        self.streams = [self._open(i) for i in range(count)]
        self.stop = threading.Event()
        self.sent = 0
        self.reopened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if i % 2:
            sock.sendall(BODY_HEAD)
            return [i, sock, BODY_TRICKLE, 0]
        return [i, sock, HEADER_TRICKLE, 0]

    def _run(self):
        while not self.stop.is_set():
            for n, stream in enumerate(self.streams):
                i, sock, data, offset = stream
                if not is_open(sock) or offset >= len(data):
                    sock.close()
                    self.streams[n] = stream = self._open(i)
                    self.reopened += 1
                    sock, data, offset = stream[1], stream[2], stream[3]
                try:
                    sock.send(data[offset:offset + 1])
                    stream[3] += 1
                    self.sent += 1
                except OSError:
                    pass
            self.stop.wait(1.0)

    def body_tricklers_open(self):
        return sum(1 for i, sock, _, _ in self.streams if i % 2 and is_open(sock))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join(5)
        for _, sock, _, _ in self.streams:
            sock.close()


def is_open(sock):
    """True when the peer has not closed ``sock`` (no EOF or reset waiting to be read)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def timed_post(port, body, deadline):
    """POST a signed ``body`` on a fresh connection; (status, seconds), status None on failure."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=deadline + 1)
    try:
        conn.request("POST", "/webhook", body=body, headers=headers_for(body))
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started
    finally:
        conn.close()


def ping_body():
    return event_body("ping", ping=uuid.uuid4().hex)


def test_signed_webhooks_are_answered_in_time_while_48_clients_trickle(redis_url, tmp_path):
    """Every signed ping within 2 s and every message.received within 4 s, during the trickle."""
    port, server = start_server(redis_url, tmp_path / "server.log")
    with server, Trickle(port, TRICKLERS) as trickle:
        time.sleep(2.5)  # every trickler has sent bytes: each one now holds a request open
        probes = []
        until = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < until:
            probes.append(("ping", PING_DEADLINE, *timed_post(port, ping_body(), PING_DEADLINE)))
            received = event_body("message.received", payload=message())
            probes.append(("message.received", RECEIVED_DEADLINE,
                           *timed_post(port, received, RECEIVED_DEADLINE)))
            time.sleep(0.5)
        # the body tricklers still hold their requests open in the app: the trickle was real
        held = trickle.body_tricklers_open()
        sent = trickle.sent
    late = [(kind, status, round(seconds, 2)) for kind, deadline, status, seconds in probes
            if status != 200 or seconds > deadline]
    assert late == [], f"{len(late)} of {len(probes)} signed webhooks late or failed: {late}"
    assert len(probes) >= 8
    assert held == TRICKLERS // 2
    assert sent >= 8 * TRICKLERS


def test_a_request_waiting_on_redis_does_not_hold_up_its_worker(tmp_path):
    """With redis-server stopped (SIGSTOP), stores wait on it; pings still answer at once."""
    with EmbeddedRedis() as redis_server:
        port, server = start_server(redis_server.url, tmp_path / "server.log",
                                    WEB_CONCURRENCY="1")
        with server:
            assert timed_post(port, ping_body(), PING_DEADLINE)[0] == 200  # worker is up
            results = []
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            try:
                stores = [
                    threading.Thread(target=lambda: results.append(timed_post(
                        port, event_body("message.received", payload=message()), 10)))
                    for _ in range(4)
                ]
                for thread in stores:
                    thread.start()
                time.sleep(0.2)  # the stores are now waiting on the stopped Redis
                pings = [timed_post(port, ping_body(), PING_DEADLINE) for _ in range(5)]
            finally:
                os.kill(redis_server.process.pid, signal.SIGCONT)
            for thread in stores:
                thread.join(15)
    assert [status for status, _ in pings] == [200] * 5
    assert max(seconds for _, seconds in pings) < 0.5, pings
    # the stores waited on Redis, then either failed fast (503) or went through once it resumed
    assert sorted({status for status, _ in results}) <= [200, 503]
    assert len(results) == 4
