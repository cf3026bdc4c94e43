"""Generated secure messages and the mailbox that holds them, in Metriport's list order.

The generator is seeded: the same seed and the same sequence of calls (``add``, ``update``) give
the very same messages, ids and timestamps, so a test or a benchmark can be replayed. Times start
at a fixed instant (not the wall clock) and ids are UUIDv7 built from those times, so id order is
time order, as the list endpoint's id-descending pages assume.
"""

import bisect
import contextlib
import copy
import datetime
import gc
import json
import random
import threading

TERMINAL = ("completed", "failed")
ORGANIZATION = "Northside Family Clinic"
DATA_SOURCE = "https://public.metriport.com/fhir/StructureDefinition/data-source.json"

#: generated history starts here (2026-09-01T00:00:00Z), in milliseconds
EPOCH_MS = 1788220800000
#: largest body Metriport accepts (``messageBodyMaxLength``)
BODY_MAX = 5000

_SUBJECTS = (
    "Discharge summary - follow-up requested",
    "Referral acknowledgement",
    "Lab results available",
    "Medication reconciliation",
    "Imaging report: chest X-ray",
    "Care plan update",
    "Prior authorization approved",
    "Request for records",
    "Consult note attached",
    "Appointment no-show",
    "Résultats d'analyse — Zoë Müller",
    "Überweisung: Kardiologie",
    "検査結果のお知らせ",
    "Seguimiento post-alta: señora Peña",
    "Follow-up 🩺 blood pressure log",
    "Ведомость выписки",
)
_SENTENCES = (
    "Please schedule a PCP follow-up within 7 days.",
    "Summary attached.",
    "CMP and CBC results for your patient are attached.",
    "We received your referral and will contact the patient to schedule.",
    "Patient reports improved symptoms since the last visit.",
    "Blood pressure remains elevated; consider titrating the ACE inhibitor.",
    "No matching patient identifiers were included.",
    "Le patient a été vu aux urgences et renvoyé à domicile.",
    "Bitte um Rückruf bezüglich der Medikation.",
    "Allergy list updated: penicillin (rash), latex (hives).",
)
_SENDERS = (
    "hospitalist@stmarys-regional.direct.example.org",
    "referrals@lakeview-cardiology.direct.example.org",
    "results@valley-labs.direct.example.org",
    "records@riverside-ortho.direct.example.org",
    "intake@hillcrest-peds.direct.example.org",
    "2.16.840.1.113883.3.9621.5.1001",
)
_NETWORKS = ("CAREQUALITY", "COMMONWELL", "EHEX")
_REASONS = (
    "Recipient endpoint rejected the submission",
    "Destination address not found in the directory",
    "Transport timeout after 3 attempts",
)


def uuid7(ms, rng):
    """A UUIDv7 string for ``ms`` (milliseconds) with random bits from ``rng``."""
    value = (ms & 0xFFFFFFFFFFFF) << 80
    value |= 0x7 << 76
    value |= rng.getrandbits(12) << 64
    value |= 0b10 << 62
    value |= rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def iso(ms):
    """``ms`` as ISO-8601 UTC with milliseconds and ``Z``, as Metriport writes times."""
    stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Generator:
    """Seeded factory of FHIR ``Communication`` resources, newest last."""

    def __init__(self, seed=0, patients=None, start_ms=EPOCH_MS):
        self.rng = random.Random(seed)
        self.clock = start_ms
        self.patients = [uuid7(start_ms - 86400000 * (i + 1), self.rng) for i in range(patients or 50)]

    def tick(self):
        """Advance the generator's clock by a few seconds to a few minutes; the new time in ms."""
        self.clock += self.rng.randint(1000, 600000)
        return self.clock

    def message(self, direction=None, pending=None):
        """One new message: ``(direction, resource)``.

        ``pending`` (outbound only) forces an ``in-progress`` status (True) or a terminal one
        (False); by default a quarter of outbound messages are still in progress.
        """
        rng = self.rng
        direction = direction or ("inbound" if rng.random() < 0.6 else "outbound")
        sent = self.tick()
        message_id = uuid7(sent, rng)
        resource = {"resourceType": "Communication", "id": message_id, "meta": {}}
        patient = rng.choice(self.patients)
        if direction == "inbound":
            received = sent + rng.randint(200, 9000)
            resource["status"] = "completed"
            if rng.random() >= 0.1:  # some inbound messages match no patient
                resource["subject"] = {"reference": f"Patient/{patient}"}
            resource["topic"] = {"text": rng.choice(_SUBJECTS)}
            resource["sender"] = {"display": rng.choice(_SENDERS)}
            resource["recipient"] = [{"type": "Organization", "display": ORGANIZATION}]
            resource["sent"] = iso(sent)
            resource["received"] = iso(received)
            resource["payload"] = self._payload(message_id, sent)
            resource["extension"] = [
                {
                    "url": DATA_SOURCE,
                    "valueCoding": {"system": DATA_SOURCE, "code": rng.choice(_NETWORKS)},
                }
            ]
            resource["meta"]["lastUpdated"] = iso(received)
        else:
            if pending is None:
                pending = rng.random() < 0.25
            resource["status"] = "in-progress" if pending else rng.choice(TERMINAL)
            resource["subject"] = {"reference": f"Patient/{patient}"}
            resource["topic"] = {"text": rng.choice(_SUBJECTS)}
            resource["sender"] = {"display": ORGANIZATION}
            resource["recipient"] = [
                {"type": "Organization", "display": rng.choice(_SENDERS)},
                {"type": "Practitioner", "display": str(rng.randint(1000000000, 1999999999))},
            ]
            resource["sent"] = iso(sent)
            resource["payload"] = self._payload(message_id, sent)
            updated = sent
            if resource["status"] == "failed":
                resource["statusReason"] = {"text": rng.choice(_REASONS)}
            if not pending:
                updated = sent + rng.randint(1000, 300000)
            resource["meta"]["lastUpdated"] = iso(updated)
        return direction, resource

    def _payload(self, message_id, sent):
        """A text body (sometimes close to the 5000-character limit) and 0-3 attachments."""
        rng = self.rng
        payload = []
        if rng.random() < 0.03:
            text = " ".join(rng.choice(_SENTENCES) for _ in range(120))[: rng.randint(3000, BODY_MAX)]
        else:
            first = int(rng.random() * len(_SENTENCES))
            text = " ".join(
                _SENTENCES[(first + 3 * step) % len(_SENTENCES)] for step in range(rng.randint(1, 3))
            )
        payload.append({"contentString": text})
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
            document = uuid7(sent - rng.randint(1, 60000), rng)
            payload.append({"contentReference": {"reference": f"DocumentReference/{document}"}})
        return payload


def patient_of(resource):
    """The patient id of a Communication, or None for a message that matches no patient."""
    reference = (resource.get("subject") or {}).get("reference", "")
    return reference[len("Patient/"):] if reference.startswith("Patient/") else None


def as_dto(resource, direction):
    """The same message as the flat ``Message`` DTO of Metriport's SDK (webhook ``payload``)."""
    status = resource.get("status")
    texts = [part["contentString"] for part in resource.get("payload", ()) if "contentString" in part]
    attachments = [
        part["contentReference"]["reference"].split("/", 1)[1]
        for part in resource.get("payload", ())
        if "contentReference" in part
    ]
    if direction == "inbound":
        destination = resource["sender"]["display"]
    else:
        destination = resource["recipient"][0]["display"]
    dto = {"id": resource["id"]}
    patient = patient_of(resource)
    if patient:
        dto["patientId"] = patient
    dto["direction"] = direction
    dto["status"] = "processing" if status == "in-progress" else status
    dto["transportMethod"] = "direct" if "@" in destination else "xdr"
    if dto["transportMethod"] == "xdr":
        dto["network"] = "CAREQUALITY"
    dto["destination"] = destination
    npis = [r["display"] for r in resource.get("recipient", ()) if r.get("type") == "Practitioner"]
    if npis:
        dto["intendedRecipientNpi"] = npis
    dto["subject"] = resource["topic"]["text"]
    if texts:
        dto["body"] = texts[0]
    if attachments:
        dto["attachments"] = attachments
    if "statusReason" in resource:
        dto["reason"] = resource["statusReason"]["text"]
    dto["sentAt"] = resource.get("received") or resource["sent"]
    dto["updatedAt"] = resource["meta"]["lastUpdated"]
    return dto


@contextlib.contextmanager
def _collector_paused(pause):
    """Pause the cyclic garbage collector while building many small dicts (none of them cyclic):
    its repeated full passes over a growing heap otherwise cost a third of a bulk build."""
    was_enabled = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause and was_enabled:
            gc.enable()


class Mailbox:
    """The simulator's messages, thread-safe, with the id-cursor pages of Metriport's list.

    ``add`` and ``update`` change the mailbox between (or during) walks; pages are cut from
    id-sorted views per (direction, patient) filter, cached until the next change.
    """

    def __init__(self, seed=0, messages=0, patients=None):
        self.generator = Generator(seed, patients=patients or max(5, min(500, messages // 20)))
        self._lock = threading.RLock()
        self._resources = {}
        self._encoded = {}
        self._directions = {}
        self._views = {}
        self.add(messages)

    def __len__(self):
        return len(self._resources)

    def add(self, count=1, direction=None, pending=None):
        """Generate ``count`` new messages (newer than every existing one); their ids."""
        with self._lock, _collector_paused(count >= 1000):
            ids = []
            for _ in range(count):
                message_direction, resource = self.generator.message(direction, pending)
                self._resources[resource["id"]] = resource
                self._directions[resource["id"]] = message_direction
                ids.append(resource["id"])
            if ids:
                self._views.clear()
            return ids

    def pending(self):
        """Ids of outbound messages still ``in-progress``, oldest first."""
        with self._lock:
            return [
                message_id
                for message_id in self.ids()
                if self._resources[message_id]["status"] == "in-progress"
            ]

    def update(self, count=None, message_ids=None):
        """Move in-progress outbound messages to ``completed`` or ``failed`` with a newer
        ``meta.lastUpdated``; ``count`` of them (oldest first) or the given ids. The changed ids."""
        with self._lock:
            targets = list(message_ids) if message_ids is not None else self.pending()[:count]
            rng = self.generator.rng
            changed = []
            for message_id in targets:
                old = self._resources.get(message_id)
                if old is None or old["status"] != "in-progress":
                    continue
                resource = copy.deepcopy(old)
                resource["status"] = rng.choice(TERMINAL)
                if resource["status"] == "failed":
                    resource["statusReason"] = {"text": rng.choice(_REASONS)}
                resource["meta"]["lastUpdated"] = iso(self.generator.tick())
                self._resources[message_id] = resource
                self._encoded.pop(message_id, None)
                changed.append(message_id)
            return changed

    def get(self, message_id):
        """The current resource of ``message_id``, or None."""
        return self._resources.get(message_id)

    def encoded(self, message_id):
        """The resource as compact UTF-8 JSON, cached until it changes (pages are mostly
        serialization, and a resource is immutable between updates)."""
        body = self._encoded.get(message_id)
        if body is None:
            resource = self._resources[message_id]
            body = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self._encoded[message_id] = body
        return body

    def direction(self, message_id):
        return self._directions.get(message_id)

    def ids(self, direction=None, patient=None):
        """Ids matching the filters, ascending (oldest first)."""
        key = (direction, patient)
        with self._lock:
            view = self._views.get(key)
            if view is None:
                view = sorted(
                    message_id
                    for message_id, resource in self._resources.items()
                    if (direction is None or self._directions[message_id] == direction)
                    and (patient is None or patient_of(resource) == patient)
                )
                self._views[key] = view
            return view

    def page(self, direction=None, patient=None, count=50, from_item=None, to_item=None):
        """One page, id-descending: ``(ids, next_from_item, prev_to_item, total)``.

        Cursors are inclusive ids: ``from_item`` starts the page at the largest id <= it,
        ``to_item`` ends it at the smallest id >= it. ``next_from_item`` is the first id of the
        next page and ``prev_to_item`` the last id of the previous page (None when there is none).
        """
        with self._lock:
            view = self.ids(direction, patient)
            if to_item is not None:
                low = bisect.bisect_left(view, to_item)
                high = min(len(view), low + count) - 1
            else:
                high = len(view) - 1 if from_item is None else bisect.bisect_right(view, from_item) - 1
                low = max(0, high - count + 1)
            chosen = view[low : high + 1][::-1] if high >= low else []
            next_id = view[low - 1] if low > 0 else None
            prev_id = view[high + 1] if high + 1 < len(view) else None
            return chosen, next_id, prev_id, len(view)
