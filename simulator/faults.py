"""Seeded, bounded fault injection for the simulator's API: 429s, transient 5xx, slow answers.

Each API request draws once from a seeded generator, so a run with the same seed and the same
request sequence sees the same faults. Faults are bounded so a well-behaved client always gets
through: never more than ``max_consecutive`` faults in a row, at most ``limit`` in total, and
delays capped at ``delay_max`` seconds.
"""

import dataclasses
import random
import threading

RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
#: what Metriport's rate limiter (express-rate-limit) answers, as plain text
RATE_LIMIT_TEXT = "Too many requests, please try again later."
SERVER_ERROR_STATUSES = (500, 502, 503, 504)


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do to one request: ``kind`` (None = answer normally), a status and a delay."""

    kind: str | None
    status: int = 200
    delay: float = 0.0


class Faults:
    """The fault plan of one simulator run; ``draw()`` decides the fate of the next request.

    Rates are fractions of requests (0..1): ``rate_limit`` answered 429, ``server_error``
    answered 5xx, ``slow`` delayed by up to ``delay_max`` seconds before answering. ``script``
    forces exact faults for a test: ``{3: 503, 4: 429}`` answers the 3rd and 4th API requests
    with those statuses (1-based, outside the random bounds).
    """

    def __init__(
        self,
        rate_limit=0.0,
        server_error=0.0,
        slow=0.0,
        delay_max=0.2,
        retry_after=1,
        seed=0,
        max_consecutive=3,
        limit=None,
        script=None,
    ):
        for name, rate in (("rate_limit", rate_limit), ("server_error", server_error), ("slow", slow)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1.")
        if rate_limit + server_error > 1.0:
            raise ValueError("rate_limit + server_error must not exceed 1.")
        self.rate_limit = rate_limit
        self.server_error = server_error
        self.slow = slow
        self.delay_max = delay_max
        self.retry_after = retry_after
        self.max_consecutive = max_consecutive
        self.limit = limit
        self.script = dict(script or {})
        for status in self.script.values():
            if status != 429 and status not in SERVER_ERROR_STATUSES:
                raise ValueError("a scripted fault must be 429 or one of 500, 502, 503, 504.")
        self.draws = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._consecutive = 0
        self.injected = 0

    def draw(self):
        """The ``Fault`` for the next request."""
        with self._lock:
            self.draws += 1
            roll = self._rng.random()
            slow_roll = self._rng.random()
            status_roll = self._rng.random()
            delay = self.delay_max * self._rng.random() if slow_roll < self.slow else 0.0
            allowed = self._consecutive < self.max_consecutive and (
                self.limit is None or self.injected < self.limit
            )
            kind = None
            scripted = self.script.get(self.draws)
            if scripted is not None:
                kind, status = (RATE_LIMITED if scripted == 429 else SERVER_ERROR), scripted
            elif allowed and roll < self.rate_limit:
                kind, status = RATE_LIMITED, 429
            elif allowed and roll < self.rate_limit + self.server_error:
                kind = SERVER_ERROR
                status = SERVER_ERROR_STATUSES[int(status_roll * len(SERVER_ERROR_STATUSES))]
            if kind is None:
                self._consecutive = 0
                return Fault(None, 200, delay)
            self._consecutive += 1
            self.injected += 1
            return Fault(kind, status, delay)
