"""Every error answer of the receiver is JSON ``{"error": <code>, "detail": <sentence>}``.

``describe`` decides status, code and sentence for any exception, once, for both ways a request
is served: Flask's error handlers (registered by ``init_app``) and the webhook, which is served
below Flask (``receiver.webhook``).
"""

import logging

from flask import has_request_context
from flask import jsonify
from werkzeug.exceptions import HTTPException

from inbox.errors import DecryptionError
from inbox.errors import InboxError
from inbox.errors import InvalidMessage
from inbox.errors import SignatureError
from inbox.errors import StoreUnavailable
from receiver import requestlog

#: HTTP status for each family of deliberate errors
STATUS = {InvalidMessage: 400, SignatureError: 401, StoreUnavailable: 503, DecryptionError: 500}
#: machine codes for HTTP errors whose generic names say less than they could
HTTP_CODES = {411: "length_required", 413: "body_too_large"}

LOGGER = logging.getLogger("metriport_inbox.errors")


def describe(exc):
    """``(status, code, detail, headers)`` of the answer to ``exc``.

    An exception that is neither ours nor an HTTP error is a bug: it answers 500 and its
    whereabouts are logged, never its message. An exception's text may quote data it choked on
    (a subject, a name), so only its type and the innermost frame reach the log.
    """
    if isinstance(exc, InboxError):
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        return status, exc.code, exc.detail, []
    if isinstance(exc, HTTPException):
        code = HTTP_CODES.get(exc.code) or (exc.name or "error").lower().replace(" ", "_")
        allowed = getattr(exc, "valid_methods", None)
        # a 405 must say what is allowed (RFC 9110 §15.5.6)
        headers = [("Allow", ", ".join(allowed))] if allowed else []
        return exc.code, code, exc.description or exc.name, headers
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
    LOGGER.error("unexpected %s at %s", type(exc).__name__, where)
    return 500, "internal_error", "The receiver failed unexpectedly.", []


def error_response(status, code, detail):
    """A JSON error answer; the one shape every route uses. ``code`` also goes to the log line."""
    if has_request_context():
        requestlog.set_reason(code)
    response = jsonify(error=code, detail=detail)
    response.status_code = status
    return response


def _handle(exc):
    status, code, detail, headers = describe(exc)
    response = error_response(status, code, detail)
    response.headers.extend(headers)
    return response


def init_app(app):
    app.register_error_handler(Exception, _handle)
