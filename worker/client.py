"""The Metriport API client: one ``requests`` session per run, careful with the key and the quota.

Every request goes through ``MetriportClient._send``, which

- sends ``x-api-key`` only to ``METRIPORT_API_URL``'s origin (scheme, host, port): a ``nextPage``
  anywhere else raises ``MetriportError`` before a byte leaves, and redirects are never followed
  (``requests`` would forward a custom key header to wherever a redirect points);
- retries connection errors, timeouts, 429 and 500/502/503/504 with exponential backoff and
  jitter, waiting at least what ``Retry-After`` asks, bounded in attempts and in total time;
- spaces requests to a client-side rate (``METRIPORT_RATE_LIMIT``, off by default);
- refuses to send beyond the run's request budget (retries count: they spend quota too);
- holds every request to a total deadline (connect, headers and body together: a server that
  trickles one byte at a time is cut off, where a per-read timeout would wait forever) and to the
  run's deadline, and reads at most ``MAX_RESPONSE_BYTES`` of a body (a page of 150,000 items is
  refused, not held in memory).

List pages are validated (an object with ``meta`` and a ``messages`` list) and normalized with
the direction known from the query; an item that cannot be stored is skipped and counted by its
reason code. Errors carry ids, URLs without keys, and HTTP statuses; never response bodies.
"""

import collections
import dataclasses
import email.utils
import random
import socket
import threading
import time
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urljoin
from urllib.parse import urlsplit

import requests
import urllib3

from inbox import strictjson
from inbox.errors import BudgetExhausted
from inbox.errors import ConfigError
from inbox.errors import InvalidMessage
from inbox.errors import MetriportError
from inbox.normalize import normalize
from inbox.normalize import valid_id

LIST_PATH = "/medical/v1/message"
#: seconds to open a connection / to wait for the answer (Metriport's SDK waits 20 s in all)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
#: attempts per request, first one included, and the time all retries of one request may take
MAX_ATTEMPTS = 6
MAX_RETRY_SECONDS = 60.0
#: backoff before retry n is BACKOFF_BASE * 2**(n-1), capped, with half of it random (jitter)
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: seconds one request may take in all: connect, headers and the whole body
REQUEST_DEADLINE = 60.0
#: largest response body read; a full page of 500 messages at their SDK limits is about 4 MB
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True)
class Page:
    """One validated list page: its items as received, and the next page's URL.

    ``refused`` holds the error of a ``nextPage`` outside the API's origin: the page itself
    came from the origin and may be stored, but the walk must stop after it.
    """

    items: list
    next_url: str | None
    items_in_total: int | None = None
    refused: MetriportError | None = None
    _normalized: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def normalized(self, direction=None):
        """``(records, invalid)``: storable records, and skipped items counted by reason code.

        Kept apart from the fetch so a caller can do this CPU work in another thread than the
        one waiting on Redis (the reconcile read-ahead does it in its reader thread); worked out
        once per direction, later calls answer from memory.
        """
        if direction not in self._normalized:
            records, invalid = [], collections.Counter()
            for item in self.items:
                try:
                    records.append(normalize(item, direction))
                except InvalidMessage as exc:
                    invalid[exc.code] += 1
            self._normalized[direction] = (records, invalid)
        return self._normalized[direction]


def require_api_key(settings):
    """Raise ConfigError unless METRIPORT_API_KEY is set (checked before any work starts)."""
    if not settings.api_key:
        raise ConfigError(
            "METRIPORT_API_KEY is not set: reconciliation and fetching need the account's API key."
        )


def origin(url):
    """``(scheme, host, port)`` of ``url`` with default ports made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


class MetriportClient:
    """Talks to one Metriport API origin with one session; use as a context manager.

    ``requests`` and ``retries`` count what was sent (for the run summary and the budget).
    The session is used by one thread at a time (the reconcile read-ahead runs one fetch at once).
    """

    def __init__(self, settings, budget=None, max_attempts=MAX_ATTEMPTS,
                 max_retry_seconds=MAX_RETRY_SECONDS, backoff_base=BACKOFF_BASE,
                 timeouts=(CONNECT_TIMEOUT, READ_TIMEOUT), request_deadline=REQUEST_DEADLINE,
                 max_response_bytes=MAX_RESPONSE_BYTES, run_deadline=None):
        require_api_key(settings)
        self.base_url = settings.api_url.rstrip("/")
        self.origin = origin(self.base_url)
        self._key = settings.api_key
        self.budget = budget
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.backoff_base = backoff_base
        self.timeouts = timeouts
        self.request_deadline = request_deadline
        self.max_response_bytes = max_response_bytes
        #: ``time.monotonic()`` by which the whole run must be over, or None
        self.run_deadline = run_deadline
        self._watch = _Watch()
        self.min_interval = 1.0 / settings.metriport_rate_limit if settings.metriport_rate_limit else 0.0
        self.requests = 0
        self.retries = 0
        self._last_sent = None
        self._lock = threading.Lock()
        self.session = requests.Session()
        adapter = _WatchedAdapter(self._watch)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"accept": "application/json", "user-agent": "metriport-inbox"})

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.session.close()

    def abort(self):
        """Cut the request in flight (from any thread): it fails at once instead of at its deadline."""
        self._watch.expire("aborted")

    # -- URLs -----------------------------------------------------------------------------

    def list_url(self, direction=None, count=50, patient_id=None):
        """The first page of List Messages for a filter; ``count`` is always sent."""
        query = {"count": count}
        if direction:
            query["direction"] = direction
        if patient_id:
            query["patientId"] = patient_id
        return f"{self.base_url}{LIST_PATH}?{urlencode(query)}"

    def check_origin(self, url):
        """``url`` made absolute against the API URL; MetriportError if it leaves the origin."""
        absolute = urljoin(self.base_url + "/", url)
        if origin(absolute) != self.origin:
            scheme, host, port = origin(absolute)
            raise MetriportError(
                f"Metriport pointed to {scheme}://{host}:{port}, outside METRIPORT_API_URL's origin; "
                "stopped without sending the API key there.",
                "foreign_origin",
            )
        return absolute

    # -- endpoints ------------------------------------------------------------------------

    def list_page(self, url):
        """Fetch and validate one List Messages page at ``url`` (first page or a ``nextPage``)."""
        body = self._json(self._send("GET", url), url)
        meta = body.get("meta") if isinstance(body, dict) else None
        items = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(meta, dict) or not isinstance(items, list):
            raise MetriportError(
                "Metriport answered a list page without a meta object and a messages list.",
                "invalid_page",
            )
        next_url, refused = meta.get("nextPage"), None
        if next_url in (None, ""):
            next_url = None
        elif not isinstance(next_url, str):
            raise MetriportError("Metriport answered a list page whose nextPage is not a URL.", "invalid_page")
        else:
            try:
                next_url = self.check_origin(next_url)
            except MetriportError as exc:
                next_url, refused = None, exc
        total = meta.get("itemsInTotal")
        return Page(items, next_url, total if isinstance(total, int) else None, refused)

    def get_message(self, message_id):
        """The message ``message_id`` as Metriport serves it (``{"communication": ...}`` or flat)."""
        if not valid_id(message_id):
            raise InvalidMessage("The message id must be 1-128 characters of A-Z a-z 0-9 . _ : -.", "invalid_id")
        url = f"{self.base_url}{LIST_PATH}/{quote(message_id, safe='')}"
        return self._get_object(url, "Get Message", "invalid_message")

    def webhook_status(self):
        """``GET /settings/webhook``: enabled flag and processing / failed request counts."""
        return self._get_object(f"{self.base_url}/settings/webhook", "the webhook status", "invalid_answer")

    def _get_object(self, url, what, code):
        """The JSON object at ``url``; MetriportError ``code`` when the answer is not an object."""
        body = self._json(self._send("GET", url), url)
        if not isinstance(body, dict):
            raise MetriportError(f"Metriport answered {what} with something other than an object.", code)
        return body

    def retry_webhooks(self):
        """``POST /settings/webhook/retry``: Metriport re-sends every failed webhook request."""
        self._send("POST", f"{self.base_url}/settings/webhook/retry")

    # -- transport ------------------------------------------------------------------------

    def _json(self, body, url):
        try:
            return strictjson.loads(body)
        except ValueError:
            raise MetriportError(
                f"Metriport answered {_safe(url)} with a body that is not JSON.", "invalid_answer"
            ) from None

    def _send(self, method, url):
        """One request with the retry policy; the body of a 2xx (bytes), else MetriportError."""
        url = self.check_origin(url)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self._spend()
            limit, which = self._time_left()
            self._watch.arm(limit, which)
            body = response = failure = None
            try:
                response = self.session.request(
                    method, url, headers={"x-api-key": self._key},
                    timeout=self.timeouts, allow_redirects=False, stream=True,
                )
                with response:
                    if 200 <= response.status_code < 300:
                        body = self._body(response, url)
            except _TRANSIENT as exc:
                failure = exc
            finally:
                # checked first: a cut connection can also look like a short but complete answer
                expired = self._watch.disarm()
            if expired:
                raise _overtime(expired, url, limit)
            if body is not None:
                return body
            if failure is not None:
                reason, wait = type(failure).__name__, None
            elif response.status_code not in RETRY_STATUSES:
                raise _refusal(response, url)
            else:
                reason, wait = f"HTTP {response.status_code}", _retry_after(response)
            delay = self._backoff(attempt)
            if wait is not None:
                delay = max(delay, wait)
            if self.run_deadline is not None and time.monotonic() + delay >= self.run_deadline:
                raise _overtime("run_deadline", url, limit)
            elapsed = time.monotonic() - started
            if attempt >= self.max_attempts or elapsed + delay > self.max_retry_seconds:
                raise MetriportError(
                    f"Metriport kept failing for {_safe(url)} ({reason}) after {attempt} attempts "
                    f"in {elapsed:.1f} s.",
                    "rate_limited" if reason == "HTTP 429" else "metriport_unavailable",
                )
            self.retries += 1
            time.sleep(delay)

    def _time_left(self):
        """``(seconds, code)``: what this request may take, and which deadline bounds it."""
        if self.run_deadline is None:
            return self.request_deadline, "request_deadline"
        left = self.run_deadline - time.monotonic()
        if left <= 0:
            raise MetriportError("The run reached its deadline (RECONCILE_DEADLINE).", "run_deadline")
        if left < self.request_deadline:
            return left, "run_deadline"
        return self.request_deadline, "request_deadline"

    def _body(self, response, url):
        """The whole body, refused past ``max_response_bytes`` (declared or actually sent)."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise _too_large(url, self.max_response_bytes)
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > self.max_response_bytes:
                raise _too_large(url, self.max_response_bytes)
        return bytes(body)

    def _backoff(self, attempt):
        ceiling = min(BACKOFF_CAP, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _spend(self):
        """Count one request against the budget and keep to the client-side rate."""
        with self._lock:
            if self.budget is not None and self.requests >= self.budget:
                raise BudgetExhausted(
                    f"The run used its request budget of {self.budget} (RECONCILE_REQUEST_BUDGET); "
                    "the next run resumes from the checkpoint."
                )
            self.requests += 1
            if self.min_interval and self._last_sent is not None:
                pause = self._last_sent + self.min_interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            self._last_sent = time.monotonic()


class _Watch:
    """The total deadline of the request in flight: at expiry its socket is shut down.

    ``requests`` only bounds each read, so a server sending a byte a second holds a request
    forever. The adapter below hands this watch the socket of each request just before the
    headers are read; a timer shuts it down when the request's time is up, and the blocked read
    fails at once (headers or body alike).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._timer = None
        self._socket = None
        self._code = None
        self.expired = None

    def arm(self, seconds, code):
        with self._lock:
            self.expired, self._code, self._socket = None, code, None
            self._timer = threading.Timer(max(seconds, 0.0), self.expire)
            self._timer.daemon = True
            self._timer.start()

    def watch(self, sock):
        with self._lock:
            self._socket = sock
            if self.expired:
                _shutdown(sock)

    def expire(self, code=None):
        with self._lock:
            if self._timer is None:
                return
            self.expired = code or self._code
            if self._socket is not None:
                _shutdown(self._socket)

    def disarm(self):
        """Stop the timer; the code of the deadline that cut the request, or None."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._socket = None, None
            return self.expired


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter whose connections hand their socket to the client's ``_Watch``."""

    def __init__(self, watch, **kwargs):
        self._watch = watch
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        watch = self._watch

        def watched(connection_class):
            class Watched(connection_class):
                def getresponse(self, *a, **k):
                    watch.watch(self.sock)
                    return super().getresponse(*a, **k)
            return Watched

        def pool(pool_class):
            return type(pool_class.__name__, (pool_class,), {"ConnectionCls": watched(pool_class.ConnectionCls)})

        self.poolmanager.pool_classes_by_scheme = {
            "http": pool(urllib3.HTTPConnectionPool), "https": pool(urllib3.HTTPSConnectionPool),
        }


def _overtime(code, url, limit):
    if code == "aborted":
        return MetriportError(f"The request to {_safe(url)} was cut short: the run is ending.", "aborted")
    if code == "run_deadline":
        return MetriportError(
            f"The run reached its deadline (RECONCILE_DEADLINE) while reading {_safe(url)}.", code
        )
    return MetriportError(
        f"Metriport took longer than {limit:.0f} s to answer {_safe(url)} in full "
        "(connect, headers and body); cut off.", code
    )


def _too_large(url, limit):
    return MetriportError(
        f"Metriport answered {_safe(url)} with a body over {limit} bytes; refused.", "response_too_large"
    )


def _retry_after(response):
    """Seconds ``Retry-After`` asks for (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _refusal(response, url):
    status = response.status_code
    response.close()
    if 300 <= status < 400:
        return MetriportError(
            f"Metriport answered {_safe(url)} with a redirect (HTTP {status}); redirects are not "
            "followed so the API key stays on METRIPORT_API_URL.",
            "redirect_refused",
        )
    if status in (401, 403):
        return MetriportError(
            f"Metriport refused the API key (HTTP {status}); check METRIPORT_API_KEY.", "unauthorized"
        )
    if status == 404:
        return MetriportError(f"Metriport has nothing at {_safe(url)} (HTTP 404).", "not_found")
    return MetriportError(f"Metriport answered {_safe(url)} with HTTP {status}.", "metriport_refused")


def _safe(url):
    """The URL's path for messages: no query (cursors and patient ids stay out of errors)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
