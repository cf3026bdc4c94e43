"""One logging configuration for every process: JSON lines on stderr, each with a request id.

The receiver, gunicorn's error log (``receiver/gunicorn.conf.py`` passes ``CONFIG`` as its
``logconfig_dict``), the RQ worker and the CLI all log through the root logger configured here,
so every line is one JSON object with ``time``, ``level``, ``logger``, ``message`` and
``request_id`` (empty outside a request) plus the structured fields a caller passes in ``extra``.
Only ids, codes, sizes and durations are ever passed: never a body, subject or name.
"""

import contextvars
import json
import logging
import logging.config
import re
import uuid

import orjson

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
    return uuid.uuid4().hex


#: attributes every ``LogRecord`` has: everything else on a record came from ``extra``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "taskName"}
_DATEFMT = "%Y-%m-%dT%H:%M:%S%z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, ``request_id``,
    then the record's ``extra`` fields (and ``exc_info``/``stack_info`` when present).

    Built by hand on orjson rather than with python-json-logger, which walked and renamed every
    record's attributes: the request line is written once per webhook, and formatting it costs
    2.2 us here against 11.8 us there (bench/RESULTS.md). Values JSON cannot hold are written
    as ``str(value)``.
    """

    def __init__(self):
        super().__init__(datefmt=_DATEFMT)
        self._second = None
        self._time = ""

    def formatTime(self, record, datefmt=None):
        """The record's time to the second, formatted once per second (strftime is not free)."""
        second = int(record.created)
        if second != self._second:
            self._time = super().formatTime(record, _DATEFMT)
            self._second = second
        return self._time

    def format(self, record):
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # an integer beyond 64 bits, a lone surrogate: the standard library
            return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


def formatter():
    """The JSON formatter of every line."""
    return JsonFormatter()


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
    for handler in root.handlers:
        handler._inbox_json = True
