"""Building signed webhook bodies for the receiver's tests, with the production signer."""

import json
import uuid

from conftest import TEST_WEBHOOK_KEY
from inbox.signing import HEADER
from inbox.signing import sign


def compact(value):
    """``value`` as Metriport sends it: compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def event_body(kind, delivery=None, **fields):
    """A webhook body of type ``kind`` with a fresh ``meta.messageId`` unless given."""
    meta = {
        "messageId": delivery or str(uuid.uuid4()),
        "when": "2026-09-14T15:42:07.318Z",
        "type": kind,
    }
    return compact({"meta": meta, **fields})


def headers_for(body, key=TEST_WEBHOOK_KEY):
    return {HEADER: sign(key, body), "Content-Type": "application/json"}


def message(message_id=None, **fields):
    """A flat Message object (the SDK's DTO) with a fresh id unless given."""
    base = {
        "id": message_id or str(uuid.uuid4()),
        "patientId": "0195c3d1-2f4a-7e81-b9c2-5a7d3e6f8b10",
        "direction": "inbound",
        "status": "completed",
        "subject": "Lab results available",
        "body": "Results attached.",
        "sentAt": "2026-09-14T15:41:55.902Z",
        "updatedAt": "2026-09-14T15:41:55.902Z",
    }
    return {**base, **fields}
