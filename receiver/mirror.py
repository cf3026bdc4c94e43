"""The mirror API: Metriport's List Messages and Get Message, served from the local store.

Code written for Metriport (its SDK's ``listMessages``/``listMessagesPage`` included) reads the
local copy unchanged when pointed at this service: same query parameters, same ``meta`` (absolute
``nextPage``/``prevPage`` on the host the client called, ``itemsInTotal`` on the first page
only), same id-descending order with inclusive ``fromItem``/``toItem`` id cursors, and the same
error shape ``{status, name, title, detail}``. Resources are served exactly as stored.
"""

import json
from urllib.parse import urlencode

from flask import Response
from flask import current_app
from flask import request

from inbox.connection import translate_errors
from inbox.settings import DIRECTIONS
from receiver.auth import api_key_required

ROUTE = "/medical/v1/message"
DEFAULT_COUNT = 50
MAX_COUNT = 500

#: Metriport's status names and titles for the errors this API answers with
_ERRORS = {
    400: ("BAD_REQUEST", "Missing or invalid parameters"),
    404: ("NOT_FOUND", "NotFoundError"),
}


class _BadRequest(Exception):
    """A query parameter Metriport would refuse; the message is the detail sentence."""


def _json(payload, status=200):
    """A JSON answer keeping the stored key order (Flask's provider would sort the keys)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def metriport_error(status, detail):
    """An error in Metriport's shape, ``{status, name, title, detail}``."""
    name, title = _ERRORS[status]
    return _json({"status": status, "name": name, "title": title, "detail": detail}, status)


def _store():
    return current_app.extensions["inbox"]["store"]


@api_key_required
def list_messages():
    """``GET /medical/v1/message``: one page of messages, newest id first."""
    try:
        filters = _filters(request.args)
        count, from_item, to_item = _pagination(request.args)
    except _BadRequest as exc:
        return metriport_error(400, str(exc))
    store = _store()
    page, prev_item, next_item, first = _paginate(store, filters, count, from_item, to_item)
    meta = {}
    if prev_item:
        meta["prevPage"] = _page_url({"toItem": prev_item}, count, filters)
    if next_item:
        meta["nextPage"] = _page_url({"fromItem": next_item}, count, filters)
    meta["itemsOnPage"] = len(page)
    if page and first:
        meta["itemsInTotal"] = _total(store, filters)
    return _json({"meta": meta, "messages": [m.resource for m in page]})


@api_key_required
def get_message(message_id):
    """``GET /medical/v1/message/<id>``: ``{"communication": <resource as stored>}``."""
    message = _store().get(message_id)
    if message is None:
        return metriport_error(404, f"Message {message_id} not found.")
    return _json({"communication": message.resource})


def _filters(args):
    filters = {}
    direction = args.get("direction")
    if direction:
        if direction not in DIRECTIONS:
            raise _BadRequest("direction must be one of inbound, outbound.")
        filters["direction"] = direction
    if args.get("patientId"):
        filters["patientId"] = args["patientId"]
    return filters


def _pagination(args):
    raw = args.get("count", "")
    try:
        count = int(raw) if raw != "" else 0
    except ValueError:
        raise _BadRequest("Count has to be a number.") from None
    if count < 0:
        raise _BadRequest("Count has to be greater than or equal to 0")
    if count > MAX_COUNT:
        raise _BadRequest(f"Count has to be less than or equal to {MAX_COUNT}")
    from_item, to_item = args.get("fromItem") or None, args.get("toItem") or None
    if from_item and to_item:
        raise _BadRequest("Either fromItem or toItem can be provided, but not both")
    return count or DEFAULT_COUNT, from_item, to_item


def _page_url(cursor, count, filters):
    """An absolute page URL on the origin the client called, carrying the filters."""
    query = urlencode({**cursor, "count": count, **filters})
    return f"{request.root_url.rstrip('/')}{ROUTE}?{query}"


def _paginate(store, filters, count, from_item, to_item):
    """``(page, prev item id, next item id, is first page)`` as Metriport's v1 pagination.

    Forward (``fromItem`` or none): ids <= fromItem descending, one extra to find the next page,
    and a look above the first item for a previous one. Backward (``toItem``): ids >= toItem
    ascending, shown descending, one extra to find the previous page.
    """
    if to_item is None:
        found = _walk(store, filters, from_item, descending=True, want=count + 1)
        page = found[:count]
        next_item = found[count].id if len(found) > count else None
        prev_item = None
        if from_item and page:
            above = _walk(store, filters, page[0].id, descending=False, want=2)
            prev_item = above[1].id if len(above) == 2 else None
        return page, prev_item, next_item, prev_item is None
    found = _walk(store, filters, to_item, descending=False, want=count + 1)
    found.reverse()
    prev_item = found[0].id if len(found) > count else None
    page = found[-count:]
    next_item = None
    if page:
        below = _walk(store, filters, page[-1].id, descending=True, want=2)
        next_item = below[1].id if len(below) == 2 else None
    return page, prev_item, next_item, prev_item is None


def _walk(store, filters, start, descending, want):
    """Up to ``want`` stored messages matching ``filters`` from ``start`` (inclusive) on.

    The index narrows the walk; each record is checked too, since a patient index may briefly
    hold an id whose record moved to another patient.
    """
    index = store.index_key(filters.get("direction"), filters.get("patientId"))
    found, cursor, skip = [], start, None
    while len(found) < want:
        batch = want - len(found) + (1 if skip else 0)
        ids = store.ids(index, start=cursor, count=batch, descending=descending)
        fresh = [i for i in ids if i != skip]
        found += [m for m in store.get_many(fresh) if m is not None and _matches(m, filters)]
        if len(ids) < batch:
            break
        cursor = skip = ids[-1]
    return found[:want]


def _matches(message, filters):
    direction, patient = filters.get("direction"), filters.get("patientId")
    return (not direction or message.direction == direction) and (
        not patient or message.patient == patient
    )


def _total(store, filters):
    """How many messages the filters select.

    With a patient, each id of the patient's index is checked against its record's patient
    and direction (packed in field ``m``), read without opening the resource.
    """
    direction, patient = filters.get("direction"), filters.get("patientId")
    if not patient:
        return store.count(store.index_key(direction))
    index = store.index_key(patient=patient)
    total, cursor, skip = 0, None, None
    while True:
        ids = store.ids(index, start=cursor, count=1000)
        pipe = store.client.pipeline(transaction=False)
        for message_id in ids:
            if message_id != skip:
                pipe.hget(store.keys.msg(message_id), "m")
        with translate_errors("count messages"):
            rows = pipe.execute()
        # m is "version|direction|patient|..." (see messages_upsert.lua)
        routing = [row.decode().split("|", 3)[1:3] for row in rows if row is not None]
        total += sum(1 for d, p in routing if p == patient and (not direction or d == direction))
        if len(ids) < 1000:
            return total
        cursor = skip = ids[-1]


def init_app(app):
    app.add_url_rule(ROUTE, "mirror.list_messages", list_messages, methods=["GET"])
    app.add_url_rule(f"{ROUTE}/<message_id>", "mirror.get_message", get_message, methods=["GET"])
