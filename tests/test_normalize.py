"""Normalization of every message shape Metriport may send into one ``Record``."""

import json

import pytest

from conftest import fixture_json
from inbox.errors import InvalidMessage
from inbox.normalize import Shape
from inbox.normalize import normalize

PATIENT = "0195c3d1-2f4a-7e81-b9c2-5a7d3e6f8b10"
MESSAGE_ID = "019a7f3e-5c21-7b44-9d0e-3f6a2b8c1d47"
RECEIVED_MS = 1789400515902  # 2026-09-14T15:41:55.902Z


def _shapes():
    """The same message as a list-page Communication, a wrapped Communication and an SDK DTO."""
    return {
        "communication": fixture_json("list-messages-page-1.json")["messages"][0],
        "wrapped": fixture_json("webhook-message-received.alt-communication.json")["payload"],
        "dto": fixture_json("webhook-message-received.json")["payload"],
    }


@pytest.mark.parametrize("shape", ["communication", "wrapped", "dto"])
def test_every_shape_yields_the_same_routing_fields(shape):
    """Each accepted shape gives the same id, patient, status and as-of for the same message."""
    record = normalize(_shapes()[shape], direction="inbound")
    assert (record.id, record.patient, record.status, record.direction) == (
        MESSAGE_ID, PATIENT, "completed", "inbound"
    )
    assert record.as_of == RECEIVED_MS
    assert record.terminal


def test_wrapped_communication_keeps_the_inner_resource_as_body():
    """A ``{"communication": …}`` wrapper stores the Communication itself, exactly as received."""
    wrapped = _shapes()["wrapped"]
    record = normalize(wrapped)
    assert json.loads(record.body) == wrapped["communication"]
    assert list(json.loads(record.body)) == list(wrapped["communication"])


def test_body_keeps_key_order_and_meaning_ignores_it():
    """``body`` is the resource as received; ``meaning`` ignores key order for deduplication."""
    a = normalize({"id": "m-1", "status": "completed", "b": 1, "a": 2})
    b = normalize({"a": 2, "b": 1, "status": "completed", "id": "m-1"})
    assert a.body != b.body
    assert a.meaning == b.meaning


def test_communication_and_flat_object_of_one_message_mean_the_same():
    """The simulator's Communication and its SDK object (both directions) have equal meanings."""
    from simulator.data import Generator
    from simulator.data import as_dto

    generator = Generator(seed=3)
    for direction in ("inbound", "outbound") * 20:
        _, resource = generator.message(direction)
        communication = normalize(resource, direction=direction)
        flat = normalize(as_dto(resource, direction), direction=direction)
        assert (communication.shape, flat.shape) == (Shape.COMMUNICATION, Shape.FLAT)
        assert communication.meaning == flat.meaning
        assert communication.as_of == flat.as_of
        # a fetch (no direction known) reads the same meaning from the Communication
        assert normalize({"communication": resource}).meaning == communication.meaning


@pytest.mark.parametrize("change", [
    lambda r: r["topic"].update(text="Another subject"),
    lambda r: r["payload"][0].update(contentString="Other text"),
    lambda r: r["payload"].append({"contentReference": {"reference": "DocumentReference/d-9"}}),
    lambda r: r["sender"].update(display="other@example.org"),
    lambda r: r.update(subject={"reference": "Patient/p-other"}),
    lambda r: r.update(received="2026-09-14T15:42:00.000Z"),
])
def test_a_change_of_content_changes_the_meaning(change):
    """Subject line, text, attachments, sender, patient and time are each part of the meaning."""
    resource = _shapes()["communication"]
    before = normalize(resource, direction="inbound").meaning
    changed = json.loads(json.dumps(resource))
    change(changed)
    assert normalize(changed, direction="inbound").meaning != before


def test_status_and_representation_details_are_not_the_meaning():
    """Status, as-of, extensions and key order are compared elsewhere or not at all."""
    resource = _shapes()["communication"]
    before = normalize(resource, direction="inbound").meaning
    changed = json.loads(json.dumps(resource))
    changed.update(status="entered-in-error", meta={"lastUpdated": "2027-01-01T00:00:00Z"})
    changed["extension"][0]["valueCoding"]["code"] = "COMMONWELL"
    assert normalize(changed, direction="inbound").meaning == before


def test_dto_direction_is_read_when_the_caller_does_not_know_it():
    """A DTO's own ``direction`` is used when the caller passes none; the caller's wins otherwise."""
    dto = _shapes()["dto"]
    assert normalize(dto).direction == "inbound"
    assert normalize(dict(dto, direction="outbound")).direction == "outbound"
    assert normalize(dict(dto, direction="sideways")).direction is None
    assert normalize(dict(dto, direction="outbound"), direction="inbound").direction == "inbound"


def test_communication_without_subject_has_no_patient():
    """An inbound message matched to no patient is stored with patient None."""
    unmatched = fixture_json("list-messages-page-1.json")["messages"][1]
    assert normalize(unmatched, direction="inbound").patient is None


@pytest.mark.parametrize("subject, patient_id, expected", [
    ({"reference": "Patient/p-1"}, None, "p-1"),
    ({"reference": "Patient/p-1"}, "p-2", "p-1"),
    ({"reference": "Group/g-1"}, "p-2", "p-2"),
    ({"display": "Jane"}, None, None),
    (None, "bad id with spaces", None),
])
def test_patient_comes_from_subject_reference_then_patient_id(subject, patient_id, expected):
    """``subject.reference`` ``Patient/<id>`` wins, then ``patientId``; odd values give None."""
    message = {"id": "m-1"}
    if subject is not None:
        message["subject"] = subject
    if patient_id is not None:
        message["patientId"] = patient_id
    assert normalize(message).patient == expected


@pytest.mark.parametrize("fields, message_time, as_of", [
    ({"sent": "2026-01-01T00:00:00Z", "received": "2026-01-01T00:00:05Z"}, 1767225600000,
     1767225605000),
    ({"sentAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z"}, 1767225600000,
     1767312000000),
    ({"sent": "2026-01-01T00:00:00Z", "meta": {"lastUpdated": "2026-01-03T00:00:00+00:00"}},
     1767225600000, 1767398400000),
    ({"sent": "2026-01-01T00:00:00"}, 1767225600000, 1767225600000),
    ({"sent": "not a time"}, None, 0),
    ({}, None, 0),
])
def test_message_time_and_as_of(fields, message_time, as_of):
    """Message time is sent/received/sentAt; as-of is updatedAt, meta.lastUpdated, else the latest."""
    record = normalize({"id": "m-1", **fields})
    assert (record.message_time, record.as_of) == (message_time, as_of)


@pytest.mark.parametrize("message, code", [
    ([], "not_an_object"),
    ("m-1", "not_an_object"),
    ({"communication": "m-1"}, "not_an_object"),
    ({}, "missing_id"),
    ({"id": ""}, "missing_id"),
    ({"communication": {"status": "completed"}}, "missing_id"),
    ({"id": 17}, "invalid_id"),
    ({"id": "has space"}, "invalid_id"),
    ({"id": "x" * 129}, "invalid_id"),
    ({"id": "a/b"}, "invalid_id"),
])
def test_unusable_messages_are_rejected_with_a_reason(message, code):
    """Anything without a usable id raises InvalidMessage with a machine reason code."""
    with pytest.raises(InvalidMessage) as caught:
        normalize(message)
    assert caught.value.code == code


def test_invalid_direction_from_the_caller_is_rejected():
    """A caller-given direction outside inbound/outbound is a reason-coded error."""
    with pytest.raises(InvalidMessage) as caught:
        normalize({"id": "m-1"}, direction="both")
    assert caught.value.code == "invalid_direction"


def test_rejection_detail_holds_no_message_content():
    """The error sentence of a rejected message never echoes its content."""
    with pytest.raises(InvalidMessage) as caught:
        normalize({"id": "Jane Doe diabetes", "topic": {"text": "secret"}})
    assert "Jane" not in caught.value.detail and "secret" not in caught.value.detail


def test_lone_surrogate_is_stored_escaped_not_rejected():
    """A string with a lone surrogate (valid JSON escape, invalid UTF-8) is kept, ASCII-escaped."""
    message = json.loads('{"id": "m-1", "note": "\\ud800 caf\\u00e9"}')
    record = normalize(message)
    assert json.loads(record.body) == message
    assert json.loads(record.meaning)[2] == message


def test_non_ascii_text_is_stored_as_utf8():
    """Ordinary non-ASCII text is stored as UTF-8, not as \\u escapes (smaller, as received)."""
    record = normalize({"id": "m-1", "topic": {"text": "café"}})
    assert "café".encode("utf-8") in record.body


@pytest.mark.parametrize("status, expected", [
    ("in-progress", "in-progress"),
    ("entered-in-error", "entered-in-error"),
    ("processing", "processing"),
    ("Delivered to Jane Doe", None),
    ("a|b", None),
    ("", None),
    (7, None),
])
def test_status_is_kept_only_when_it_is_a_code(status, expected):
    """Codes pass; free text (which would reach the feed) or non-strings become None."""
    assert normalize({"id": "m-1", "status": status}).status == expected
