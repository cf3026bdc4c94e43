"""Every error answer of the receiver is JSON ``{"error": <code>, "detail": <sentence>}``."""

from flask import jsonify
from werkzeug.exceptions import HTTPException

from inbox.errors import InboxError
from inbox.errors import InvalidMessage
from inbox.errors import SignatureError
from inbox.errors import StoreUnavailable

#: HTTP status for each family of deliberate errors
STATUS = {InvalidMessage: 400, SignatureError: 401, StoreUnavailable: 503}


def error_response(status, code, detail):
    """A JSON error answer; the one shape every route uses."""
    response = jsonify(error=code, detail=detail)
    response.status_code = status
    return response


def _inbox_error(exc):
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    return error_response(status, exc.code, exc.detail)


def _http_error(exc):
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(exc.code, code, exc.description or exc.name)


def init_app(app):
    app.register_error_handler(InboxError, _inbox_error)
    app.register_error_handler(HTTPException, _http_error)
