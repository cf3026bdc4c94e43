"""The generator and mailbox: reproducible, realistic, time-ordered, and changeable between walks."""

import json
import re
import uuid

from inbox.normalize import normalize
from simulator import Mailbox
from simulator.data import BODY_MAX
from simulator.data import as_dto

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def snapshot(mailbox):
    return json.dumps([mailbox.get(i) for i in mailbox.ids()], ensure_ascii=False)


def test_same_seed_same_messages_and_changes():
    """Two mailboxes with one seed and the same calls hold byte-identical messages."""
    first, second = Mailbox(seed=42, messages=500), Mailbox(seed=42, messages=500)
    for mailbox in (first, second):
        mailbox.add(20)
        mailbox.update(10)
    assert snapshot(first) == snapshot(second)
    assert snapshot(first) != snapshot(Mailbox(seed=43, messages=500))


def test_ids_are_uuid7_in_time_order():
    """Ids are UUIDv7 whose order is the order of their sent time."""
    mailbox = Mailbox(seed=1, messages=300)
    ids = mailbox.ids()
    assert all(UUID7.match(i) for i in ids)
    sent = [mailbox.get(i)["sent"] for i in ids]
    assert sent == sorted(sent)
    assert [uuid.UUID(i).int >> 80 for i in ids] == sorted(uuid.UUID(i).int >> 80 for i in ids)


def test_messages_are_realistic_and_varied():
    """Both directions, inbound without patient, unicode subjects, attachments and large bodies."""
    mailbox = Mailbox(seed=7, messages=2000)
    resources = [mailbox.get(i) for i in mailbox.ids()]
    inbound = [r for r in resources if mailbox.direction(r["id"]) == "inbound"]
    outbound = [r for r in resources if mailbox.direction(r["id"]) == "outbound"]
    assert len(inbound) > 600 and len(outbound) > 400
    assert any("subject" not in r for r in inbound)
    assert all("subject" in r for r in outbound)
    assert any(not r["topic"]["text"].isascii() for r in resources)
    assert any("contentReference" in part for r in resources for part in r["payload"])
    bodies = [len(part["contentString"]) for r in resources for part in r["payload"] if "contentString" in part]
    assert max(bodies) > 3000 and max(bodies) <= BODY_MAX
    assert {r["status"] for r in outbound} == {"in-progress", "completed", "failed"}
    assert {r["status"] for r in inbound} == {"completed"}


def test_resources_normalize_with_their_patient_and_status():
    """The project's normalizer reads each generated resource and its DTO the same way."""
    mailbox = Mailbox(seed=3, messages=200)
    for message_id in mailbox.ids():
        resource, direction = mailbox.get(message_id), mailbox.direction(message_id)
        record = normalize(resource, direction)
        dto_record = normalize(as_dto(resource, direction))
        assert record.id == dto_record.id == message_id
        assert record.patient == dto_record.patient
        assert dto_record.direction == direction
        assert record.message_time and record.as_of >= record.message_time


def test_update_settles_in_progress_messages_with_a_newer_time():
    """update() moves in-progress outbound messages to completed/failed with a later lastUpdated."""
    mailbox = Mailbox(seed=9, messages=400)
    pending = mailbox.pending()
    before = {i: normalize(mailbox.get(i)).as_of for i in pending}
    changed = mailbox.update(5)
    assert changed == pending[:5]
    for message_id in changed:
        resource = mailbox.get(message_id)
        assert resource["status"] in ("completed", "failed")
        assert normalize(resource).as_of > before[message_id]
    assert mailbox.update(message_ids=changed) == []
    assert len(mailbox.pending()) == len(pending) - 5


def test_added_messages_are_newer_than_all_others():
    """add() creates messages whose ids sort after every existing id."""
    mailbox = Mailbox(seed=2, messages=100)
    newest = mailbox.ids()[-1]
    added = mailbox.add(3, direction="outbound", pending=True)
    assert all(i > newest for i in added)
    assert mailbox.ids()[-3:] == added
    assert all(mailbox.get(i)["status"] == "in-progress" for i in added)
