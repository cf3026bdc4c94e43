"""Behind a TLS-terminating proxy the mirror's page links keep the public scheme, once the proxy's
address is in gunicorn's ``FORWARDED_ALLOW_IPS`` (docs/mirror.md, README's deployment section).

The proxy is played by a client connecting from 127.0.0.2 (Linux answers the whole 127/8 on
loopback) with ``X-Forwarded-Proto: https``; gunicorn trusts only 127.0.0.1 and ::1 by default.
"""

import http.client
import json
import pathlib
import socket
import sys

import pytest

from cli.dev.embedded import free_port
from conftest import TEST_WEBHOOK_KEY
from inbox.normalize import normalize
from inbox.store import Store
from servers import running

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))
PROXY = "127.0.0.2"


class _FromProxy(http.client.HTTPConnection):
    """An HTTP connection whose source address is the proxy's."""

    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), self.timeout, (PROXY, 0))


def _next_page(port):
    conn = _FromProxy("127.0.0.1", port, timeout=5)
    conn.request("GET", "/medical/v1/message?count=1", headers={
        "x-api-key": "test-reader-key", "Host": "inbox.example.org",
        "X-Forwarded-Proto": "https"})
    answer = conn.getresponse()
    body = json.loads(answer.read())
    conn.close()
    assert answer.status == 200, body
    return body["meta"]["nextPage"]


@pytest.mark.parametrize("allowed, scheme", [(None, "http"), (PROXY, "https")])
def test_next_page_keeps_https_only_from_an_allowed_proxy(settings, tmp_path, allowed, scheme):
    for n in range(2):
        Store(settings).upsert([normalize({
            "resourceType": "Communication", "id": f"019a0000-0000-7000-8000-00000000000{n}",
            "status": "completed", "sent": "2026-09-14T15:41:50.000Z"}, "inbound")], "reconcile")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": settings.redis_url,
           "INBOX_NAMESPACE": settings.namespace, "METRIPORT_WEBHOOK_KEY": TEST_WEBHOOK_KEY,
           "INBOX_API_KEYS": "test-reader-key"}
    if allowed:
        env["FORWARDED_ALLOW_IPS"] = allowed
    argv = [COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running(argv, env, port, tmp_path / "serve.log"):
        assert _next_page(port).startswith(f"{scheme}://inbox.example.org/medical/v1/message?")
