"""The keygen, rekey and audit commands, run as the installed console script against a real Redis."""

import base64
import json
import os
import pathlib
import subprocess
import sys

from conftest import raw_client
from conftest import raw_keys
from inbox import audit as trail
from inbox.crypto import Vault
from inbox.crypto import fingerprint
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store

COMMAND = str(pathlib.Path(sys.executable).parent / "metriport-inbox")
OLD = ("old", b"\x11" * 32)
NEW = ("new", b"\x22" * 32)


def entry(kid, key):
    return f"{kid}:{base64.urlsafe_b64encode(key).decode()}"


def run(*args, env):
    """Run ``metriport-inbox args`` with exactly ``env`` (plus PATH); the completed process."""
    env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([COMMAND, *args], env=env, capture_output=True, text=True, timeout=60)


def environment(settings, ring=()):
    variables = {"REDIS_URL": settings.redis_url, "INBOX_NAMESPACE": settings.namespace}
    if ring:
        variables["INBOX_ENCRYPTION_KEYS"] = ",".join(entry(*k) for k in ring)
    return variables


def fill(settings, count):
    store = Store(settings.replace(encryption_keys=(OLD,)))
    messages = [{"id": f"m-{n:05d}", "status": "in-progress", "subject": f"subject {n}",
                 "body": f"body {n}", "updatedAt": "2026-09-14T15:00:00Z"} for n in range(count)]
    store.upsert([normalize(m, direction="inbound") for m in messages], "reconcile")
    return store


def test_keygen_needs_no_settings_and_prints_a_valid_entry():
    """keygen works with broken settings and no Redis; its one stdout line is a valid ring entry."""
    done = run("keygen", env={"REDIS_URL": "nonsense", "INBOX_ENCRYPTION_KEYS": "broken"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    ring = Settings.from_env({"INBOX_ENCRYPTION_KEYS": lines[0]}).encryption_keys
    assert len(ring) == 1 and len(ring[0][1]) == 32


def test_keygen_with_a_bad_kid_exits_2():
    """keygen --kid with a space is a usage error (exit 2) and prints no key."""
    done = run("keygen", "--kid", "bad kid", env={})
    assert done.returncode == 2 and done.stdout == ""


def test_rekey_command_moves_every_record_and_reports(settings):
    """rekey --batch 10 prints a line per batch and a summary, and leaves every record under new."""
    store = fill(settings, 35)
    done = run("rekey", "--batch", "10", env=environment(settings, (NEW, OLD)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("done: rekey to new: 35/35 scanned, 35 resealed")
    ids = raw_client(store).zrange(raw_keys(store).idx_all, 0, -1)
    assert {Vault.kid_of(raw_client(store).hget(raw_keys(store).msg(i.decode()), "r")) for i in ids} == {"new"}
    assert "subject" not in done.stdout + done.stderr


def test_rekey_command_exits_1_and_names_records_that_do_not_open(settings):
    """A record sealed under a key missing from the ring makes rekey exit 1 naming its id and reason."""
    store = fill(settings, 3)
    done = run("rekey", env=environment(settings, (NEW,)))
    assert done.returncode == 1
    assert "error: decrypt_failed: 3 records could not be opened: m-00000 (decrypt_unknown_key)" in done.stderr
    assert raw_client(store).exists(raw_keys(store).msg("m-00000"))


def test_rekey_without_keys_warns_and_exits_2(settings):
    """Without a ring, rekey says encryption is off and exits with the configuration code."""
    done = run("rekey", env=environment(settings))
    assert done.returncode == 2
    assert "warning: INBOX_ENCRYPTION_KEYS is not set" in done.stderr
    assert "error: config_invalid:" in done.stderr


def test_audit_command_lists_entries_as_text_and_json(settings, redis_client):
    """audit shows the newest entries first, with fingerprints; --json gives one object per line."""
    keys = RedisKeys(settings.namespace)
    who = fingerprint("reader-key")
    trail.record(redis_client, keys, who, "message.get", ids=["m-1"])
    trail.record(redis_client, keys, who, "message.list", ids=["m-2"], query={"direction": "inbound"})
    text = run("audit", "--limit", "5", env=environment(settings, (NEW,)))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].endswith(f"Z {who} message.list n=1 direction=inbound m-2")
    as_json = run("audit", "--json", "--limit", "1", env=environment(settings, (NEW,)))
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["who"], r["action"], r["ids"]) for r in rows] == [(who, "message.list", ["m-2"])]
    assert "warning" not in as_json.stderr
