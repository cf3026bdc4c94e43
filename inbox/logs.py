"""One logging configuration for every process: JSON lines on stderr, each with a request id.

The receiver, gunicorn's error log (``receiver/gunicorn.conf.py`` passes ``CONFIG`` as its
``logconfig_dict``), the RQ worker and the CLI all log through the root logger configured here,
so every line is one JSON object with ``time``, ``level``, ``logger``, ``message`` and
``request_id`` (empty outside a request) plus the structured fields a caller passes in ``extra``.
Only ids, codes, sizes and durations are ever passed: never a body, subject or name.
"""

import contextvars
import logging
import logging.config
import re
import secrets

#: the request being served by this thread or task ("" outside a request)
REQUEST_ID = contextvars.ContextVar("request_id", default="")
#: what an incoming X-Request-ID must look like to be reused (else a new one is made)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdFilter(logging.Filter):
    """Stamp every record with the current request id (a filter, so third-party loggers get it)."""

    def filter(self, record):
        record.request_id = REQUEST_ID.get()
        return True


def request_id(incoming=None):
    """``incoming`` when it is a sane id (X-Request-ID from a proxy), else a fresh random one."""
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return secrets.token_hex(16)  # as random as uuid4().hex, without building a UUID


def formatter():
    """The JSON formatter of every line: python-json-logger's orjson flavour, short field names.

    A maintained formatter rather than our own: it knows every ``LogRecord`` attribute, carries
    ``extra`` fields and encodes exceptions; its orjson encoder keeps the per-webhook request
    line cheap (bench/RESULTS.md).
    """
    from pythonjsonlogger.orjson import OrjsonFormatter

    return OrjsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def config(level="INFO"):
    """The ``logging.config.dictConfig`` dictionary: one JSON handler on stderr at the root."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["request_id"],
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # gunicorn's own loggers propagate to the root instead of writing plain text
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": level, "handlers": [], "propagate": True},
        },
    }


def configure(level="INFO"):
    """Apply ``config(level)`` once per process; later calls keep the first configuration."""
    root = logging.getLogger()
    if any(getattr(handler, "_inbox_json", False) for handler in root.handlers):
        return
    logging.config.dictConfig(config(level))
    # A line carries neither the caller's file and line nor the thread, process or
    # multiprocessing names (``formatter``), so they are not collected for every record either
    # (the logging HOWTO's "Optimization" names these switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for handler in root.handlers:
        handler._inbox_json = True
