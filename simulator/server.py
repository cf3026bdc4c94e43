"""One simulator run: mailbox, fault plan, webhook sender and HTTP server, started in a thread.

``Simulator`` is what tests, benchmarks and the demo hold: start it on a free port of 127.0.0.1
(``with Simulator(...) as sim:``), point a client at ``sim.url`` with ``sim.api_key``, change
the mailbox between walks, deliver webhooks with ``sim.sender``, and read ``sim.requests`` to
see how many requests each route received. ``metriport-inbox simulate`` runs the same object in
the foreground, for use as a subprocess.
"""

import collections
import socket
import threading

from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server

from simulator.app import create_app
from simulator.data import Mailbox
from simulator.faults import Faults
from simulator.sender import WebhookSender

DEFAULT_API_KEY = "simulator-api-key"


class _QuietHandler(WSGIRequestHandler):
    """No access log: request lines carry patient ids, and tests read ``requests`` instead."""

    def log_request(self, *args, **kwargs):
        pass


class Simulator:
    """A local Metriport: ``messages`` seeded messages behind the real list semantics."""

    def __init__(
        self,
        seed=0,
        messages=1000,
        api_key=DEFAULT_API_KEY,
        faults=None,
        webhook_url=None,
        webhook_key=None,
        patients=None,
    ):
        self.seed = seed
        self.api_key = api_key
        self.mailbox = Mailbox(seed=seed, messages=messages, patients=patients)
        self.faults = faults or Faults(seed=seed)
        self.sender = WebhookSender(url=webhook_url, key=webhook_key, seed=seed)
        self.requests = collections.Counter()
        self._count_lock = threading.Lock()
        self.app = create_app(self)
        self._server = None
        self._thread = None

    def count(self, name):
        """Count one request (``list``, ``get``, ``settings``...) or response (``list 429``)."""
        with self._count_lock:
            self.requests[name] += 1

    def reset_counts(self):
        with self._count_lock:
            self.requests.clear()

    def webhook_deliveries(self, message_ids=None, shape="communication", ping=False):
        """New deliveries for ``message_ids`` (default: every message, oldest first):
        ``message.received`` for inbound messages, ``message.status`` for outbound messages
        in a terminal state (in-progress ones have nothing to announce yet)."""
        mailbox = self.mailbox
        deliveries = [self.sender.ping()] if ping else []
        for message_id in mailbox.ids() if message_ids is None else message_ids:
            resource = mailbox.get(message_id)
            if resource is None:
                continue
            if mailbox.direction(message_id) == "inbound":
                deliveries.append(self.sender.message_received(resource, "inbound", shape))
            elif resource["status"] != "in-progress":
                deliveries.append(self.sender.message_status(resource))
        return deliveries

    def deliver_webhooks(self, message_ids=None, shape="communication", ping=False, **chaos):
        """Create and send the webhooks of ``message_ids`` with ``chaos`` (see
        ``WebhookSender.deliver``); the ``Report``."""
        deliveries = self.webhook_deliveries(message_ids, shape, ping)
        return self.sender.deliver(deliveries, **chaos)

    @property
    def port(self):
        return self._server.port if self._server else None

    @property
    def url(self):
        """Base URL clients use as ``METRIPORT_API_URL``."""
        return f"http://127.0.0.1:{self.port}" if self._server else None

    def _bind(self, port):
        """A threaded WSGI server on 127.0.0.1:``port``; raises OSError if the port is taken
        (werkzeug would print and exit the whole process instead, so we bind the socket)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
            return make_server(
                "127.0.0.1",
                listener.getsockname()[1],
                self.app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )

    def start(self, port=0):
        """Serve on 127.0.0.1 (``port`` 0 = a free one) in a daemon thread; returns self."""
        self._server = self._bind(port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="metriport-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self, port=0, ready=None):
        """Serve in the calling thread until interrupted; ``ready(simulator)`` is called once bound."""
        self._server = self._bind(port)
        if ready is not None:
            ready(self)
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()
            self._server = None

    def stop(self):
        """Stop serving and wait for the server thread and any background webhook retry; a
        second call does nothing."""
        self.sender.wait(timeout=10)
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info):
        self.stop()
