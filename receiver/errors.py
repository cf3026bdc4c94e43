"""Every error answer of the receiver is JSON ``{"error": <code>, "detail": <sentence>}``."""

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


def error_response(status, code, detail):
    """A JSON error answer; the one shape every route uses. ``code`` also goes to the log line."""
    if has_request_context():
        requestlog.set_reason(code)
    response = jsonify(error=code, detail=detail)
    response.status_code = status
    return response


def _inbox_error(exc):
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    return error_response(status, exc.code, exc.detail)


def _http_error(exc):
    code = HTTP_CODES.get(exc.code) or (exc.name or "error").lower().replace(" ", "_")
    response = error_response(exc.code, code, exc.description or exc.name)
    allowed = getattr(exc, "valid_methods", None)
    if allowed:  # a 405 must say what is allowed (RFC 9110 §15.5.6)
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _unexpected_error(exc):
    """A bug: answer 500 JSON and log where it happened, never the exception's message.

    An exception's text may quote data it choked on (a subject, a name), so only its type and
    the innermost frame reach the log.
    """
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
    LOGGER.error("unexpected %s at %s", type(exc).__name__, where)
    return error_response(500, "internal_error", "The receiver failed unexpectedly.")


def init_app(app):
    app.register_error_handler(InboxError, _inbox_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
