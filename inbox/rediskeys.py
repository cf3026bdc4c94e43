"""Every Redis key name, built in one place.

All keys of a namespace share one hash tag, ``{<ns>}``, so any script or multi-key command
touches a single Redis Cluster slot. Lua scripts never build keys: they get them from here
through KEYS.
"""


class RedisKeys:
    """Key names for one namespace (one Metriport account or environment)."""

    def __init__(self, namespace):
        self.namespace = namespace
        self.prefix = "{%s}" % namespace

    def _key(self, *parts):
        return ":".join((self.prefix, *parts))

    def msg(self, message_id):
        return self._key("msg", message_id)

    @property
    def idx_all(self):
        return self._key("idx", "all")

    def idx_direction(self, direction):
        return self._key("idx", "dir", direction)

    def idx_patient(self, patient_id):
        return self._key("idx", "patient", patient_id)

    @property
    def feed(self):
        return self._key("feed")

    @property
    def deadletter(self):
        return self._key("feed", "dead")

    def delivery(self, delivery_id):
        return self._key("delivery", delivery_id)

    @property
    def stats(self):
        return self._key("stats")

    def webhooks_hour(self, hour):
        """Webhook answers of one UTC hour (``hour``: whole hours since the epoch)."""
        return self._key("webhooks", "hour", str(hour))

    @property
    def unreadable(self):
        return self._key("unreadable")

    @property
    def reconcile_lock(self):
        return self._key("reconcile", "lock")

    def reconcile_cursor(self, direction):
        return self._key("reconcile", "cursor", direction)

    @property
    def reconcile_state(self):
        return self._key("reconcile", "state")

    @property
    def reconcile_soon(self):
        return self._key("reconcile", "soon")

    @property
    def reconcile_again(self):
        return self._key("reconcile", "again")

    def unreadable_webhook(self, delivery_id):
        return self._key("webhook", "unreadable", delivery_id)

    @property
    def reconcile_runs(self):
        return self._key("reconcile", "runs")

    @property
    def readiness(self):
        """A short-lived key that ``/readyz`` writes: a Redis at maxmemory refuses the write."""
        return self._key("ready")

    @property
    def audit(self):
        return self._key("audit")

    @property
    def rekey_cursor(self):
        return self._key("rekey", "cursor")

    @property
    def expire_cursor(self):
        return self._key("expire", "cursor")

    def pattern(self):
        """A SCAN pattern matching every key of this namespace (braces escaped for glob)."""
        return "\\{%s\\}:*" % self.namespace

    def pattern_of(self, prefix):
        """A SCAN pattern matching the keys that start with ``prefix``, a key of this namespace."""
        escaped = "".join("\\" + c if c in "[]*?\\{}" else c for c in prefix)
        return escaped + "*"
