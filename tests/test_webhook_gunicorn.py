"""POST /webhook under a real gunicorn: chunked bodies, Redis outages, and what reaches the log.

These need the real server: chunked transfer encoding is decoded by gunicorn, the log is the
process's own stderr, and an outage must be survived by the running workers.
"""

import http.client
import json
import os
import select
import signal
import socket
import time
import uuid

import pytest

from cli.dev.embedded import EmbeddedRedis
from cli.dev.embedded import free_port
from conftest import TEST_WEBHOOK_KEY
from inbox.signing import HEADER
from servers import gunicorn_argv
from servers import running
from webhook_helpers import event_body
from webhook_helpers import headers_for
from webhook_helpers import message

pytestmark = pytest.mark.chaos

FIVE_MIB = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def redis_server():
    """A Redis of this module's own, so a test can stop and restart it."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    """gunicorn with the receiver's own config on 127.0.0.1; yields (port, log path)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "server.log"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "REDIS_URL": redis_server.url,
        "INBOX_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}",
        "METRIPORT_WEBHOOK_KEY": TEST_WEBHOOK_KEY,
    }
    with running(gunicorn_argv(), env, port, log_path):
        yield port, log_path


def request(port, body, headers, chunked=False):
    """POST ``body`` to /webhook; returns (status, parsed JSON answer, raw answer).

    Like a careful HTTP client, it stops sending once the server has answered early (a 413
    comes before the body is read, and gunicorn then closes rather than drain megabytes).
    """
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    if chunked:
        pieces = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
        headers = {**headers, "Transfer-Encoding": "chunked"}
    else:
        headers = {**headers, "Content-Length": str(len(body))}
    head = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        raw = response.read()
        return response.status, json.loads(raw), raw


def nested(leaf, depth):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def received(payload):
    return event_body("message.received", payload=payload)


def big_body():
    return event_body("message.received", payload=message(body="x" * FIVE_MIB))


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_five_mib_body_is_413(server, chunked):
    """A 5 MiB body is refused with 413 whether its length is declared or chunked."""
    port, _ = server
    body = big_body()
    status, answer, _ = request(port, body, headers_for(body), chunked=chunked)
    assert (status, answer["error"]) == (413, "body_too_large")


def test_chunked_body_under_the_limit_is_accepted(server):
    """Chunked encoding itself is fine: a small chunked delivery is stored."""
    port, _ = server
    body = event_body("message.received", payload=message())
    status, answer, _ = request(port, body, headers_for(body), chunked=True)
    assert (status, answer["created"]) == (200, 1)


def test_body_cut_short_of_its_length_is_400(server):
    """A client that closes its side before sending the Content-Length it declared is answered
    400 bad_request, before the partial body is parsed."""
    port, _ = server
    body = event_body("message.received", payload=message())
    head = ("POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers_for(body).items())
            + f"Content-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, json.loads(response.read())["error"]) == (400, "bad_request")


def test_body_without_length_is_411(server):
    """A POST with neither Content-Length nor chunked encoding is refused with 411."""
    port, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/webhook")
        conn.putheader(HEADER, "ab" * 32)
        conn.endheaders()
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["error"]) == (411, "length_required")
    finally:
        conn.close()


def test_canary_never_reaches_logs_or_error_bodies(server):
    """A canary in subjects, bodies, names and reasons appears in no log line and no answer."""
    port, log_path = server
    canary = f"CANARY-{uuid.uuid4().hex}"
    stored_id = str(uuid.uuid4())
    communication = {
        "resourceType": "Communication", "id": str(uuid.uuid4()), "status": "completed",
        "topic": {"text": canary}, "sender": {"display": f"Dr {canary}"},
        "payload": [{"contentString": canary}],
    }
    status = {"id": stored_id, "status": "failed", "reason": canary}
    bodies = [
        (received(message(stored_id, subject=canary, body=canary)), None),
        (received({"communication": communication}), None),
        (received(message(subject=canary)), "wrong-key"),
        (received({"subject": canary, "body": canary}), None),
        (received(message(subject=canary, extra=nested(canary, 70))), None),
        (received(message(f"{canary} id")), None),
        (event_body("message.status", payload=status), None),
        (received(message(body=canary * (FIVE_MIB // len(canary)))), None),
        (b'{"meta": {"type": "message.received"}, "payload": "' + canary.encode() + b'"', None),
    ]
    answers, signatures = [], []
    for body, key in bodies:
        headers = headers_for(body, key or TEST_WEBHOOK_KEY)
        signatures.append(headers[HEADER])
        status, _, raw = request(port, body, headers)
        answers.append((status, raw))
    # 202: signed message.received bodies without a readable message are kept (sealed) and
    # reconciled at once, never echoed
    assert [status for status, _ in answers] == [200, 200, 401, 202, 400, 202, 200, 413, 400]
    log = log_path.read_text()
    assert stored_id in log  # the log is captured and carries ids
    assert canary not in log
    assert not any(signature in log for signature in signatures)
    assert not any(canary.encode() in raw for _, raw in answers)


def test_redis_killed_is_503_fast_and_recovers_without_restart(server, redis_server):
    """Redis stopped: 503 within 2 s; Redis back: the same workers store again."""
    port, _ = server
    body = event_body("message.received", payload=message())
    try:
        redis_server.stop()
        started = time.monotonic()
        status, answer, _ = request(port, body, headers_for(body))
        elapsed = time.monotonic() - started
        assert (status, answer["error"]) == (503, "store_unavailable")
        assert elapsed < 2.0
    finally:
        redis_server.start()
    status, answer, _ = request(port, body, headers_for(body))
    assert (status, answer["created"]) == (200, 1)


def test_hung_redis_is_503_within_two_seconds(server, redis_server):
    """Redis frozen (accepting but never answering): 503 within 2 s, never a hang."""
    port, _ = server
    body = event_body("message.received", payload=message())
    try:
        redis_server.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        status, answer, _ = request(port, body, headers_for(body))
        elapsed = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert (status, answer["error"]) == (503, "store_unavailable")
    assert elapsed < 2.0


def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def test_metrics_answer_while_redis_is_down_with_counts_of_every_worker(server, redis_server):
    """/metrics: 200 and redis_up 0 with Redis stopped; request counts summed across workers."""
    port, _ = server
    body = event_body("message.received", payload=message())
    request(port, body, headers_for(body))
    try:
        redis_server.stop()
        started = time.monotonic()
        status, headers, text = get(port, "/metrics")
        elapsed = time.monotonic() - started
    finally:
        redis_server.start()
    assert status == 200 and elapsed < 5
    assert "metriport_inbox_redis_up 0.0" in text
    assert 'metriport_inbox_http_requests_total{method="POST",route="/webhook",status="200"}' in text
    assert "metriport_inbox_webhook_duration_seconds_bucket" in text
    _, _, text = get(port, "/metrics")
    assert "metriport_inbox_redis_up 1.0" in text


def test_every_log_line_is_json_with_a_request_id(server):
    """gunicorn's own lines and the app's are JSON; a request's line carries its X-Request-ID."""
    port, log_path = server
    status, headers, _ = get(port, "/healthz", {"X-Request-ID": "trace-me-7"})
    assert status == 200 and headers["X-Request-ID"] == "trace-me-7"
    time.sleep(0.2)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line["logger"].startswith("gunicorn") for line in lines)
    assert any(line.get("request_id") == "trace-me-7" and line.get("route") == "/healthz"
               for line in lines)
