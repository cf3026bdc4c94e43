"""Every error this project raises on purpose, under one base with a machine code.

    InboxError                      code: what went wrong, as a stable machine string
    ├── ConfigError                 a setting is missing or malformed (exit 2)
    ├── StoreUnavailable            Redis refused, timed out or is unreachable (HTTP 503)
    │   └── StoreFull               Redis is at maxmemory and refuses writes (HTTP 503)
    ├── InvalidMessage              a message or body cannot be used (HTTP 400), code per reason
    ├── SignatureError              a webhook signature is missing or wrong (HTTP 401), code per reason
    ├── DecryptionError             a stored record cannot be decrypted (wrong key, tampered)
    ├── MetriportError              the Metriport API answered badly or not at all
    │   └── BudgetExhausted         a run used its request budget (resumable, not a failure)
    ├── InvalidPosition             a feed position is not a stream entry id (HTTP 400)
    ├── InvalidQuery                a mirror listing parameter Metriport would refuse (HTTP 400)
    ├── InvalidMode                 a reconcile mode that is neither incremental nor full
    ├── LockLost                    the reconciliation lock expired or was taken mid-run
    ├── RunFailed                   a reconcile run failed (the RQ job's error), code of its cause
    ├── DemoFailed                  ``metriport-inbox demo`` could not finish, code per reason
    └── BackupError                 a backup file is unusable, or a restore target is not empty

The ``code`` becomes ``{"error": code}`` in HTTP answers, a metric label and the CLI's message.
``detail`` is one sentence for a person. Neither ever holds message content: ids, sizes and
reasons only.
"""


class InboxError(Exception):
    """Base of every deliberate error; carries a machine ``code`` and a one-sentence ``detail``."""

    code = "inbox_error"
    exit_code = 1

    def __init__(self, detail, code=None):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def __str__(self):
        return self.detail


class ConfigError(InboxError):
    """Raised when an environment variable is missing or malformed; names the variable."""

    code = "config_invalid"
    exit_code = 2


class StoreUnavailable(InboxError):
    """Raised when Redis cannot be reached in time; callers answer 503 or exit non-zero."""

    code = "store_unavailable"


class StoreFull(StoreUnavailable):
    """Raised when Redis refuses a write because it reached ``maxmemory`` (policy noeviction).

    Nothing was written (Redis refuses a script before its first write), so the caller answers
    503 exactly as for an unreachable Redis, with its own code for the operator's alert.
    """

    code = "store_full"


class InvalidMessage(InboxError):
    """Raised when a message or webhook body cannot be stored; nothing was written."""

    code = "invalid_message"


class SignatureError(InboxError):
    """Raised when a webhook's ``x-metriport-signature`` does not verify."""

    code = "signature_mismatch"


class DecryptionError(InboxError):
    """Raised when a stored record does not decrypt: unknown key id, wrong message id or tampering."""

    code = "decrypt_failed"


class MetriportError(InboxError):
    """Raised when the Metriport API fails, refuses, or answers with something unusable."""

    code = "metriport_error"


class BudgetExhausted(MetriportError):
    """Raised when a run has used its request budget (``RECONCILE_REQUEST_BUDGET``); the next resumes."""

    code = "budget_exhausted"


class InvalidPosition(InboxError):
    """Raised when a feed position is not a stream entry id (``<ms>-<seq>`` or ``<ms>``)."""

    code = "invalid_position"


class InvalidQuery(InboxError):
    """Raised when a mirror listing parameter is one Metriport would refuse; detail says which."""

    code = "invalid_query"


class InvalidMode(InboxError):
    """Raised when a reconcile run is asked for a mode other than ``incremental`` or ``full``."""

    code = "invalid_mode"


class LockLost(InboxError):
    """Raised when the reconciliation lock expired or was taken over while a run held it."""

    code = "lock_lost"


class RunFailed(InboxError):
    """Raised when the run of a reconcile job failed, so that RQ files the job; code is the cause."""

    code = "run_failed"


class DemoFailed(InboxError):
    """Raised when ``metriport-inbox demo`` cannot finish (a part not ready or done in time)."""

    code = "demo_failed"


class BackupError(InboxError):
    """Raised when a backup file cannot be read or verified, or a restore target holds keys."""

    code = "backup_invalid"
