"""The vault on its own: sealing, opening, key rings, tampering, keyed digests, key helpers."""

import base64
import json

import pytest

from inbox.crypto import Vault
from inbox.crypto import encryption_warning
from inbox.crypto import fingerprint
from inbox.crypto import keygen
from inbox.errors import DecryptionError
from inbox.settings import Settings

OLD = ("old", b"\x01" * 32)
NEW = ("new", b"\x02" * 32)
BODY = b'{"id":"m-1","topic":{"text":"canary-subject"},"payload":[{"contentString":"canary-body"}]}'
#: too short to compress into fewer bytes: stored as it is
TINY = b'{"k":"Zq8wX"}'
#: a Communication of about 1 KB, as the store keeps it
RESOURCE = json.dumps({
    "resourceType": "Communication", "id": "m-1", "status": "completed",
    "subject": {"reference": "Patient/0195f1c2-7a33-7c1e-9e43-5b0f6c2d9a10"},
    "topic": {"text": "canary-subject: discharge summary"},
    "sender": {"reference": "Practitioner/0195f1c2-7a33-7c1e-9e43-5b0f6c2d9a11"},
    "recipient": [{"reference": "Organization/0195f1c2-7a33-7c1e-9e43-5b0f6c2d9a12"}],
    "sent": "2026-11-29T10:00:00.000Z", "received": "2026-11-29T10:00:01.000Z",
    "payload": [{"contentString": "canary-body. Patient discharged on 11/28 after three days of "
                 "observation. Please schedule a follow-up visit within seven days and review the "
                 "attached medication list; labs pending at discharge will be sent when final."},
                {"contentReference": {"reference": "DocumentReference/0195f1c2-7a33-7c1e-9e43"}}],
}, separators=(",", ":")).encode()


def test_sealed_blob_opens_to_the_plaintext_and_hides_it():
    """A sealed blob carries the key id, not the text, and opens back to the exact bytes."""
    vault = Vault([OLD])
    blob = vault.seal("m-1", BODY)
    assert b"canary" not in blob
    assert Vault.kid_of(blob) == "old"
    assert vault.open("m-1", blob) == BODY


def test_each_seal_uses_a_fresh_nonce():
    """Sealing the same bytes twice gives two different blobs (random nonce per write)."""
    vault = Vault([OLD])
    assert vault.seal("m-1", BODY) != vault.seal("m-1", BODY)


def test_wrong_message_id_fails_to_decrypt():
    """A ciphertext opened as another message (moved between records) raises DecryptionError."""
    vault = Vault([OLD])
    blob = vault.seal("m-1", BODY)
    with pytest.raises(DecryptionError) as caught:
        vault.open("m-2", blob)
    assert caught.value.code == "decrypt_failed"
    assert "m-2" in caught.value.detail


def test_ring_of_two_keys_opens_blobs_of_either_and_seals_with_the_first():
    """Ring [new, old] opens what [old] and [new] sealed, and seals under new."""
    ring = Vault([NEW, OLD])
    assert ring.open("m-1", Vault([OLD]).seal("m-1", BODY)) == BODY
    assert ring.open("m-1", Vault([NEW]).seal("m-1", BODY)) == BODY
    assert Vault.kid_of(ring.seal("m-1", BODY)) == "new"


def test_key_missing_from_the_ring_is_reported_by_kid():
    """A blob sealed under a key no longer in the ring names that key id and the message id."""
    blob = Vault([OLD]).seal("m-1", BODY)
    with pytest.raises(DecryptionError) as caught:
        Vault([NEW]).open("m-1", blob)
    assert caught.value.code == "decrypt_unknown_key"
    assert "'old'" in caught.value.detail and "m-1" in caught.value.detail


@pytest.mark.parametrize("position", [20, 40, -1])
def test_tampered_ciphertext_is_detected(position):
    """Flipping one byte of the nonce, ciphertext or tag raises DecryptionError, no plaintext."""
    vault = Vault([OLD])
    blob = bytearray(vault.seal("m-1", BODY))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError) as caught:
        vault.open("m-1", bytes(blob))
    assert "canary" not in str(caught.value)


@pytest.mark.parametrize("blob", [b"\x01", b"\x01\x03old", b"\x01\x00" + b"\x00" * 40,
                                  b"\x01\xffxx" + b"\x00" * 40])
def test_malformed_header_is_a_decryption_error(blob):
    """Truncated blobs and impossible key id lengths raise DecryptionError, never IndexError."""
    with pytest.raises(DecryptionError) as caught:
        Vault([OLD]).open("m-1", blob)
    assert caught.value.code == "decrypt_malformed"


@pytest.mark.parametrize("body, mark", [(TINY, b"\x00"), (RESOURCE, b"\x02")])
def test_a_blob_written_unencrypted_says_so_and_opens_with_or_without_keys(body, mark):
    """Written with no keys (before encryption was switched on), it reads until rekey seals it;
    compressed (mark 0x02) when that is shorter, as it is (mark 0x00) otherwise."""
    blob = Vault().seal("m-1", body)
    assert blob[:1] == mark
    assert len(blob) < len(body) if mark == b"\x02" else blob == mark + body
    assert Vault().open("m-1", blob) == body
    assert Vault([OLD]).open("m-1", blob) == body
    assert not Vault([OLD]).is_current(blob) and Vault().is_current(blob)


def test_a_resource_is_compressed_before_sealing_and_a_short_one_is_not():
    """A Communication is sealed compressed (mark 0x03), in well under its JSON's bytes; a body
    that does not compress shorter is sealed as it is (mark 0x01)."""
    vault = Vault([OLD])
    blob = vault.seal("m-1", RESOURCE)
    assert blob[0] == 3 and b"canary" not in blob
    assert len(blob) < 0.7 * len(RESOURCE)
    assert vault.open("m-1", blob) == RESOURCE and Vault.kid_of(blob) == "old"
    assert vault.seal("m-1", TINY)[0] == 1 and vault.open("m-1", vault.seal("m-1", TINY)) == TINY


def test_a_changed_mark_fails_authentication():
    """Switching a sealed blob's mark between compressed and not fails to open, both ways."""
    vault = Vault([OLD])
    for body, other in ((RESOURCE, 1), (TINY, 3)):
        blob = vault.seal("m-1", body)
        with pytest.raises(DecryptionError) as caught:
            vault.open("m-1", bytes((other,)) + blob[1:])
        assert caught.value.code == "decrypt_failed"


def test_a_compressed_blob_that_does_not_decompress_is_a_decryption_error():
    """A truncated compressed blob written unencrypted raises DecryptionError, nothing else."""
    blob = Vault().seal("m-1", RESOURCE)
    with pytest.raises(DecryptionError) as caught:
        Vault().open("m-1", blob[:-40])
    assert caught.value.code == "decrypt_malformed"
    assert "canary" not in caught.value.detail


def test_an_unmarked_plain_blob_is_refused_while_encryption_is_on():
    """Plain JSON put into a record by anything but this store is not served as authentic."""
    with pytest.raises(DecryptionError) as caught:
        Vault([OLD]).open("m-1", BODY)
    assert caught.value.code == "decrypt_unsealed"
    assert "canary" not in caught.value.detail
    assert Vault().open("m-1", BODY) == BODY  # no keys: nothing is authentic, nothing to refuse


def test_digest_is_keyed():
    """The same content under two different rings has different digests, and neither is a plain hash."""
    first, second = Vault([OLD]).digests(BODY, "m1"), Vault([NEW]).digests(BODY, "m1")
    assert first != second
    assert Vault().digests(BODY, "m1")[0] not in first + second


def test_digests_are_tagged_with_what_they_compare_with():
    """A digest names its meaning version and key id (none in clear): the store compares only
    digests of one tag, and knows a stored digest no key of its ring can reproduce."""
    assert Vault().digests(BODY, "m1")[0].startswith("m1:")
    assert Vault([OLD]).digests(BODY, "m1")[0].startswith(f"m1.{OLD[0]}:")
    assert Vault([OLD]).digests(BODY, "m2")[0].startswith(f"m2.{OLD[0]}:")


def test_rotated_ring_lists_the_new_digest_first_and_keeps_the_old():
    """Ring [new, old] yields the new digest first and the old one second, for dedupe across rotation."""
    assert Vault([NEW, OLD]).digests(BODY, "m1") == (
        Vault([NEW]).digests(BODY, "m1") + Vault([OLD]).digests(BODY, "m1")
    )


def test_keygen_output_is_a_valid_ring_entry():
    """keygen's entry parses through Settings.from_env into a 32-byte key with its kid."""
    entry = keygen()
    settings = Settings.from_env({"INBOX_ENCRYPTION_KEYS": entry})
    kid, key = settings.encryption_keys[0]
    assert entry.startswith(kid + ":") and len(key) == 32
    assert base64.urlsafe_b64encode(key).decode() == entry.split(":", 1)[1]


def test_keygen_makes_different_keys_and_checks_the_kid():
    """Two entries never share a key; an explicit kid is used as given or refused when malformed."""
    assert keygen("a").split(":")[1] != keygen("a").split(":")[1]
    assert keygen("rot-2").startswith("rot-2:")
    with pytest.raises(ValueError):
        keygen("no spaces")


def test_fingerprint_is_short_stable_and_not_the_key():
    """A fingerprint is 12 hex digits, the same for the same key, different across keys."""
    assert fingerprint("reader-key-1") == fingerprint(b"reader-key-1")
    assert fingerprint("reader-key-1") != fingerprint("reader-key-2")
    assert len(fingerprint("reader-key-1")) == 12
    assert "reader" not in fingerprint("reader-key-1")


def test_encryption_warning_only_without_keys():
    """The warning names INBOX_ENCRYPTION_KEYS when off and is None when a key is set."""
    assert "INBOX_ENCRYPTION_KEYS" in encryption_warning(Settings())
    assert encryption_warning(Settings(encryption_keys=(OLD,))) is None


def test_single_digest_is_the_current_one():
    """digest() is the first of digests() without its tag: what the delivery ledger holds."""
    ring = Vault([NEW, OLD])
    assert ring.digests(BODY, "m1")[0] == f"m1.{NEW[0]}:{ring.digest(BODY)}"
    assert Vault().digests(BODY, "m1") == [f"m1:{Vault().digest(BODY)}"]
    assert ring.digest(BODY) != Vault().digest(BODY)
