"""Forgetting a patient: every record, index entry and feed entry of one patient, for good.

For operators who must purge a patient's copy (an erasure request). The records are found by a
bounded SCAN over the namespace's records (so records whose patient index entry is stale are
found too) and removed batch by batch by ``messages_forget.lua``, which leaves a marker holding
no content and no patient so that reconciliation, which still sees the messages at Metriport,
never stores them again. Then the feed and the dead letters lose every entry naming the patient
or one of its messages. One audit entry records who ran it, the patient id and the count.

Tombstones of expired messages name no patient (retention drops it) and are left as they are.
"""

import dataclasses
import getpass
import socket

from inbox import audit
from inbox.crypto import fingerprint
from inbox.feed import Feed
from inbox.rediskeys import RedisKeys
from inbox.store import Store

#: records read and removed per Redis call, and feed entries read per call
DEFAULT_BATCH = 200
ACTION = "forget.patient"


@dataclasses.dataclass
class Forgotten:
    """What ``forget_patient`` removed: counts, and the message ids (identifiers only)."""

    patient: str
    scanned: int = 0
    records: int = 0
    feed_entries: int = 0
    dead_letters: int = 0
    message_ids: list = dataclasses.field(default_factory=list)

    def line(self):
        return (f"forgot patient {self.patient}: {self.records} messages, "
                f"{self.feed_entries} feed entries, {self.dead_letters} dead letters removed "
                f"({self.scanned} records scanned)")


def operator():
    """The audit's ``who`` for a command run by hand: a fingerprint of ``cli:<user>@<host>``."""
    return fingerprint(f"cli:{getpass.getuser()}@{socket.gethostname()}")


def forget_patient(settings, client, patient, batch=DEFAULT_BATCH, on_batch=None, who=None):
    """Remove every record and feed entry of ``patient`` in ``settings``' namespace on
    ``client``; a ``Forgotten``, audited (``who`` defaults to ``operator()``)."""
    store, feed = Store(settings, client=client), Feed(settings, client=client)
    done = Forgotten(patient=patient)
    for ids in store.record_batches(batch):
        done.scanned += len(ids)
        removed = store.forget(ids, patient)
        done.records += len(removed)
        done.message_ids.extend(removed)
        if on_batch is not None:
            on_batch(done)
    done.feed_entries, done.dead_letters = feed.purge(done.message_ids, patient, batch)
    audit.record(client, RedisKeys(settings.namespace), who or operator(), ACTION,
                 ids=done.message_ids, query={"patientId": patient})
    store.count_event("forgotten_patients")
    return done
