"""Metriport's List Messages and Get Message endpoints, over the simulator's mailbox.

``count`` is validated as Metriport validates it (absent or 0 -> 50, 1..500); ``fromItem`` and
``toItem`` are exclusive; the next and previous page links are absolute URLs on the origin the
client called and carry the filters; ``itemsInTotal`` only on a first page.
"""

import urllib.parse

from flask import Blueprint
from flask import request

from simulator.answers import current
from simulator.answers import dumps
from simulator.answers import error
from simulator.answers import json_answer
from simulator.answers import raw_json_answer

LIST_PATH = "/medical/v1/message"
COUNT_DEFAULT = 50
COUNT_MAX = 500
BOTH_CURSORS = "Either fromItem or toItem can be provided, but not both"

bp = Blueprint("messages", __name__)


@bp.get(LIST_PATH)
def list_messages():
    query = request.args
    count, problem = _count(query.get("count"))
    from_item = query.get("fromItem") or None
    to_item = query.get("toItem") or None
    direction = query.get("direction") or None
    patient = query.get("patientId") or None
    if problem:
        return problem
    if from_item and to_item:
        return error(400, "Missing or invalid parameters", BOTH_CURSORS)
    if direction not in (None, "inbound", "outbound"):
        return error(
            400,
            "Missing or invalid parameters",
            "Invalid enum value. Expected 'outbound' | 'inbound', on direction",
        )
    mailbox = current().mailbox
    ids, next_id, prev_id, total = mailbox.page(direction, patient, count, from_item, to_item)
    filters = [("count", count), ("direction", direction), ("patientId", patient)]
    meta = {}
    if next_id is not None:
        meta["nextPage"] = _page_url([("fromItem", next_id), *filters])
    if prev_id is not None:
        meta["prevPage"] = _page_url([("toItem", prev_id), *filters])
    meta["itemsOnPage"] = len(ids)
    if from_item is None and to_item is None:
        meta["itemsInTotal"] = total
    messages = b",".join(mailbox.encoded(message_id) for message_id in ids)
    body = b'{"meta":' + dumps(meta) + b',"messages":[' + messages + b"]}"
    return raw_json_answer(body)


@bp.get(f"{LIST_PATH}/<message_id>")
def get_message(message_id):
    resource = current().mailbox.get(message_id)
    if resource is None:
        return error(404, "NotFoundError", "Could not find message")
    return json_answer({"communication": resource}, 200)


def _count(raw):
    """``count`` as Metriport validates it: absent or 0 -> 50, 1..500, else a 400 response."""
    if raw is None or raw == "":
        return COUNT_DEFAULT, None
    try:
        value = int(raw)
    except ValueError:
        return None, error(400, "Missing or invalid parameters", "Expected number, received nan, on count")
    if value < 0:
        return None, error(
            400, "Missing or invalid parameters", "Number must be greater than or equal to 0, on count"
        )
    if value > COUNT_MAX:
        return None, error(
            400,
            "Missing or invalid parameters",
            f"Number must be less than or equal to {COUNT_MAX}, on count",
        )
    return value or COUNT_DEFAULT, None


def _page_url(params):
    """An absolute page URL on the origin the client called, carrying the filters."""
    query = urllib.parse.urlencode([(name, value) for name, value in params if value is not None])
    return f"{request.host_url.rstrip('/')}{LIST_PATH}?{query}"
