"""A misbehaving Metriport on 127.0.0.1: loops, oversized pages, trickled headers and bodies.

Raw sockets rather than ``http.server``, so the test decides every byte and when it is sent.
``script`` maps a request path (with query) to a behaviour; each behaviour is one function of the
server, so a test reads as the misbehaviour it plays. Connections are served by daemon threads
that stop when the server closes (a trickle is cut off at once).
"""

import json
import socket
import threading
import time

LIST = "/medical/v1/message"


def page(base, items, next_query=None):
    """A List Messages body: ``items`` and a ``nextPage`` on ``base`` when ``next_query`` is given."""
    meta = {"itemsOnPage": len(items)}
    if next_query is not None:
        meta["nextPage"] = f"{base}{LIST}?{next_query}"
    return {"meta": meta, "messages": items}


def message(message_id, status="completed"):
    return {"resourceType": "Communication", "id": message_id, "status": status,
            "subject": {"reference": "Patient/p-1"}, "sent": "2026-09-14T15:41:55.902Z"}


class HostileMetriport:
    """``routes[path] = callable(conn)``; unknown paths answer 404 JSON. Use as a context manager."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.closed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.closed.set()
        self.thread.join(timeout=5)
        self.sock.close()

    # -- behaviours -------------------------------------------------------------------------

    def json(self, body, status=200):
        """Answer ``body`` as JSON at once."""
        payload = json.dumps(body).encode()

        def answer(conn):
            head = (f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n")
            conn.sendall(head.encode() + payload)
        return answer

    def raw(self, payload):
        """Answer these exact bytes (headers included)."""
        return lambda conn: conn.sendall(payload)

    def trickle_body(self, interval, declared=1000):
        """Headers at once, then one body byte every ``interval`` seconds until closed."""
        def answer(conn):
            conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         f"content-length: {declared}\r\n\r\n{{".encode())
            self._drip(conn, b" " * declared, interval)
        return answer

    def trickle_headers(self, interval):
        """The status line, then one header byte every ``interval`` seconds until closed."""
        def answer(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            self._drip(conn, b"x-slow: " + b"a" * 10_000, interval)
        return answer

    def flood(self, total, declare=False):
        """A 200 body of ``total`` bytes (a JSON string), sent as fast as the client reads."""
        def answer(conn):
            length = f"content-length: {total}\r\n" if declare else "connection: close\r\n"
            conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\n".encode())
            chunk, sent = b"[" + b"1," * 32767, 0
            while sent < total and not self.closed.is_set():
                piece = chunk[: total - sent]
                conn.sendall(piece)
                sent += len(piece)
        return answer

    def slow_json(self, body, delay):
        """Answer ``body`` after ``delay`` seconds."""
        answer = self.json(body)

        def delayed(conn):
            if not self.closed.wait(delay):
                answer(conn)
        return delayed

    # -- serving ----------------------------------------------------------------------------

    def _drip(self, conn, data, interval):
        for byte in data:
            if self.closed.wait(interval):
                return
            conn.sendall(bytes((byte,)))

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(5)
        with conn:
            buffer = b""
            try:
                while not self.closed.is_set():
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    line = head.split(b"\r\n", 1)[0].decode()
                    path = line.split(" ")[1]
                    headers = {k.strip().lower(): v.strip() for k, _, v in
                               (h.decode().partition(":") for h in head.split(b"\r\n")[1:])}
                    self.requests.append((time.monotonic(), path, headers))
                    route = self.routes.get(path) or self.json({"detail": "no route"}, 404)
                    route(conn)
            except OSError:
                return
