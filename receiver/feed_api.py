"""``GET /feed``: the feed over HTTP, for apps that prefer polling to a Redis consumer group.

The client keeps the position: each answer carries ``next``, to send back as ``after``. Entries
hold ids and routing fields only; the message itself is one ``GET /medical/v1/message/<id>``
away. Like the stream, this is at-least-once: the entry id is the idempotency key.
"""

from flask import Blueprint
from flask import jsonify
from flask import request

from inbox.errors import InvalidPosition
from receiver.auth import api_key_required
from receiver.auth import audit_read
from receiver.errors import error_response
from receiver.resources import resources

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

bp = Blueprint("feed", __name__)


@bp.get("/feed")
@api_key_required
def poll():
    """Up to ``limit`` entries strictly after ``after`` (from the oldest without it)."""
    after = request.args.get("after") or None
    try:
        limit = int(request.args.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        return error_response(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    try:
        entries = resources().feed.after(after, limit)
    except InvalidPosition as exc:
        return error_response(400, exc.code, exc.detail)
    position = entries[-1].id if entries else (after or "0-0")
    audit_read("feed.read", ids=[e.message_id for e in entries])
    return jsonify(entries=[e.routing() for e in entries], next=position)


def init_app(app):
    app.register_blueprint(bp)
