"""The mirror API: Metriport's List Messages and Get Message, served from the local store.

Code written for Metriport (its SDK's ``listMessages``/``listMessagesPage`` included) reads the
local copy unchanged when pointed at this service: same query parameters, same ``meta`` (absolute
``nextPage``/``prevPage`` on the host the client called, ``itemsInTotal`` on the first page
only), same id-descending order with inclusive ``fromItem``/``toItem`` id cursors, and the same
error shape ``{status, name, title, detail}``. Resources are served exactly as stored.

Every filter the SDK's ``listMessages`` sends is honoured and carried in the page links:
``direction``, ``patientId``, ``status`` (the SDK's ``processing``/``completed``/``failed``, each
matching the FHIR codes that mean it) and ``destination``. A value outside a filter's domain is a
400 "Missing or invalid parameters", as Metriport's request validation answers.

A record that cannot be opened (sealed under a key no longer in the ring, tampered) is left out
of its page, which is otherwise served; the ``X-Inbox-Unreadable`` header says how many were left
out, and the shared counter ``unreadable:<reason>`` counts them.
"""

import json
from urllib.parse import urlencode

from flask import Blueprint
from flask import Response
from flask import request

from inbox.errors import InvalidQuery
from inbox.normalize import valid_id
from inbox.settings import DIRECTIONS
from inbox.store import Unreadable
from receiver.auth import api_key_required
from receiver.auth import audit_read
from receiver.errors import error_response
from receiver.resources import resources

ROUTE = "/medical/v1/message"

bp = Blueprint("mirror", __name__)
DEFAULT_COUNT = 50
MAX_COUNT = 500
#: the SDK's list filter ``status`` (``messageStatusSchema``) and the stored codes each one selects:
#: Metriport stores FHIR Communications (``in-progress`` after sending) or the SDK's own codes
STATUS_FILTER = {
    "processing": frozenset({"processing", "in-progress", "preparation", "on-hold"}),
    "completed": frozenset({"completed"}),
    "failed": frozenset({"failed", "not-done", "stopped"}),
}
#: the SDK's destination bound (a Direct address or an OID, 1-255 characters)
MAX_DESTINATION = 255
#: filters in the order the page links carry them
FILTERS = ("direction", "patientId", "status", "destination")
#: how many records of a page could not be opened and were left out of it
UNREADABLE_HEADER = "X-Inbox-Unreadable"

#: Metriport's status names and titles for the errors this API answers with
_ERRORS = {
    400: ("BAD_REQUEST", "Missing or invalid parameters"),
    404: ("NOT_FOUND", "NotFoundError"),
}


def _json(payload, status=200):
    """A JSON answer keeping the stored key order (Flask's provider would sort the keys)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def metriport_error(status, detail):
    """An error in Metriport's shape, ``{status, name, title, detail}``."""
    name, title = _ERRORS[status]
    return _json({"status": status, "name": name, "title": title, "detail": detail}, status)


def _store():
    return resources().store


@bp.get(ROUTE)
@api_key_required
def list_messages():
    """``GET /medical/v1/message``: one page of messages, newest id first."""
    try:
        filters = _filters(request.args)
        count, from_item, to_item = _pagination(request.args)
    except InvalidQuery as exc:
        return metriport_error(400, exc.detail)
    store = _store()
    skipped = []
    page, prev_item, next_item, first = _paginate(store, filters, count, from_item, to_item, skipped)
    meta = {}
    if prev_item:
        meta["prevPage"] = _page_url({"toItem": prev_item}, count, filters)
    if next_item:
        meta["nextPage"] = _page_url({"fromItem": next_item}, count, filters)
    meta["itemsOnPage"] = len(page)
    if page and first:
        meta["itemsInTotal"] = _total(store, filters)
    audit_read("message.list", ids=[m.id for m in page])
    response = _json({"meta": meta, "messages": [m.resource for m in page]})
    return _unreadable(store, response, skipped)


@bp.get(f"{ROUTE}/<message_id>")
@api_key_required
def get_message(message_id):
    """``GET /medical/v1/message/<id>``: ``{"communication": <resource as stored>}``.

    An id that breaks the id rule cannot be stored, so it is 404 at once: audited as a count,
    never echoed (in the answer or the trail).
    """
    if not valid_id(message_id):
        audit_read("message.get", invalid=1)
        return metriport_error(404, "Message not found.")
    audit_read("message.get", ids=[message_id])
    store = _store()
    message = store.open_many([message_id])[0]
    if message is None:
        return metriport_error(404, f"Message {message_id} not found.")
    if isinstance(message, Unreadable):
        response = error_response(
            500, message.code, f"Message {message_id} is stored but cannot be opened ({message.code}).")
        return _unreadable(store, response, [message])
    return _json({"communication": message.resource})


def _unreadable(store, response, skipped):
    """Say on ``response`` how many records were left out unread, and count them by reason."""
    if skipped:
        response.headers[UNREADABLE_HEADER] = str(len(skipped))
        for record in skipped:
            store.count_event(f"unreadable:{record.code}")
    return response


def _filters(args):
    """The list filters, each checked against its domain (a 400 sentence otherwise)."""
    filters = {}
    direction = args.get("direction")
    if direction:
        if direction not in DIRECTIONS:
            raise InvalidQuery("direction must be one of inbound, outbound.")
        filters["direction"] = direction
    patient = args.get("patientId")
    if patient:
        if not valid_id(patient):
            raise InvalidQuery("patientId must be 1-128 characters of A-Z a-z 0-9 . _ : -.")
        filters["patientId"] = patient
    status = args.get("status")
    if status:
        if status not in STATUS_FILTER:
            raise InvalidQuery(f"status must be one of {', '.join(STATUS_FILTER)}.")
        filters["status"] = status
    destination = args.get("destination")
    if destination:
        if len(destination) > MAX_DESTINATION or not destination.isprintable():
            raise InvalidQuery(f"destination must be 1-{MAX_DESTINATION} printable characters.")
        filters["destination"] = destination
    return filters


def _pagination(args):
    raw = args.get("count", "")
    try:
        count = int(raw) if raw != "" else 0
    except ValueError:
        raise InvalidQuery("Count has to be a number.") from None
    if count < 0:
        raise InvalidQuery("Count has to be greater than or equal to 0")
    if count > MAX_COUNT:
        raise InvalidQuery(f"Count has to be less than or equal to {MAX_COUNT}")
    from_item, to_item = args.get("fromItem") or None, args.get("toItem") or None
    if from_item and to_item:
        raise InvalidQuery("Either fromItem or toItem can be provided, but not both")
    for name, cursor in (("fromItem", from_item), ("toItem", to_item)):
        if cursor is not None and not valid_id(cursor):
            raise InvalidQuery(f"{name} must be a message id.")
    return count or DEFAULT_COUNT, from_item, to_item


def _page_url(cursor, count, filters):
    """An absolute page URL on the origin the client called, carrying the filters."""
    query = urlencode({**cursor, "count": count, **{f: filters[f] for f in FILTERS if f in filters}})
    return f"{request.root_url.rstrip('/')}{ROUTE}?{query}"


def _paginate(store, filters, count, from_item, to_item, skipped):
    """``(page, prev item id, next item id, is first page)`` as Metriport's v1 pagination.

    Forward (``fromItem`` or none): ids <= fromItem descending, one extra to find the next page,
    and a look above the first item for a previous one. Backward (``toItem``): ids >= toItem
    ascending, shown descending, one extra to find the previous page. Records that cannot be
    opened are appended to ``skipped``.
    """
    if to_item is None:
        found = _walk(store, filters, from_item, descending=True, want=count + 1, skipped=skipped)
        page = found[:count]
        next_item = found[count].id if len(found) > count else None
        prev_item = None
        if from_item and page:
            above = _walk(store, filters, page[0].id, descending=False, want=2)
            prev_item = above[1].id if len(above) == 2 else None
        return page, prev_item, next_item, prev_item is None
    found = _walk(store, filters, to_item, descending=False, want=count + 1, skipped=skipped)
    found.reverse()
    prev_item = found[0].id if len(found) > count else None
    page = found[-count:]
    next_item = None
    if page:
        below = _walk(store, filters, page[-1].id, descending=True, want=2)
        next_item = below[1].id if len(below) == 2 else None
    return page, prev_item, next_item, prev_item is None


def _walk(store, filters, start, descending, want, skipped=None):
    """Up to ``want`` stored messages matching ``filters`` from ``start`` (inclusive) on.

    The index narrows the walk; each record is checked too, since a patient index may briefly
    hold an id whose record moved to another patient, and status and destination have no index.
    Unreadable records go to ``skipped`` (when given) and take no place on the page.
    """
    index = store.index_key(filters.get("direction"), filters.get("patientId"))
    found, cursor, skip = [], start, None
    while len(found) < want:
        batch = want - len(found) + (1 if skip else 0)
        ids = store.ids(index, start=cursor, count=batch, descending=descending)
        fresh = [i for i in ids if i != skip]
        for message in store.open_many(fresh):
            if isinstance(message, Unreadable):
                if skipped is not None:
                    skipped.append(message)
            elif message is not None and _matches(message, filters):
                found.append(message)
        if len(ids) < batch:
            break
        cursor = skip = ids[-1]
    return found[:want]


def _matches(message, filters):
    direction, patient = filters.get("direction"), filters.get("patientId")
    status, destination = filters.get("status"), filters.get("destination")
    return (
        (not direction or message.direction == direction)
        and (not patient or message.patient == patient)
        and (not status or message.status in STATUS_FILTER[status])
        and (not destination or destination in _destinations(message.resource))
    )


def _destinations(resource):
    """Where a message went: the SDK's ``destination``, or a Communication's recipient addresses.

    Metriport's Communication names the destination address as the ``display`` of the
    ``Organization`` recipient (its ``Practitioner`` recipient is an NPI).
    """
    found = {resource.get("destination")}
    recipients = resource.get("recipient")
    for recipient in recipients if isinstance(recipients, list) else ():
        if isinstance(recipient, dict) and recipient.get("type", "Organization") == "Organization":
            found.add(recipient.get("display"))
    return {d for d in found if isinstance(d, str)}


def _total(store, filters):
    """How many messages the filters select (readable ones, for status and destination).

    Status and destination have no index: their total reads every record the index narrows to,
    once, on the first page only. With a patient, each id of the patient's index is checked against its record's routing
    (patient, direction), read without opening the resource.
    """
    direction, patient = filters.get("direction"), filters.get("patientId")
    if filters.get("status") or filters.get("destination"):
        return _count_opened(store, filters)
    if not patient:
        return store.count(store.index_key(direction))
    index = store.index_key(patient=patient)
    total, cursor, skip = 0, None, None
    while True:
        ids = store.ids(index, start=cursor, count=1000)
        fresh = [message_id for message_id in ids if message_id != skip]
        total += sum(
            1 for routing in store.routing_many(fresh)
            if routing is not None and routing[1] == patient
            and (not direction or routing[0] == direction)
        )
        if len(ids) < 1000:
            return total
        cursor = skip = ids[-1]


def _count_opened(store, filters, batch=1000):
    """How many readable records of the narrowest index match ``filters``, opened batch by batch."""
    index = store.index_key(filters.get("direction"), filters.get("patientId"))
    total, cursor, skip = 0, None, None
    while True:
        ids = store.ids(index, start=cursor, count=batch)
        fresh = [message_id for message_id in ids if message_id != skip]
        total += sum(
            1 for message in store.open_many(fresh)
            if message is not None and not isinstance(message, Unreadable) and _matches(message, filters)
        )
        if len(ids) < batch:
            return total
        cursor = skip = ids[-1]


def init_app(app):
    app.register_blueprint(bp)
