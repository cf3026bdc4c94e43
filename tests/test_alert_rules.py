"""deploy/prometheus/alerts.yml: valid rules over metrics that /metrics really exports."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import finished_run
from inbox.feed import Consumer
from inbox.runs import RunLog
from inbox.normalize import normalize
from receiver import create_app

RULES = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


def test_every_metric_an_alert_uses_is_exported(settings, store):
    """Each metriport_inbox_* name in an alert expression appears in a scrape of a busy store."""
    store.upsert([normalize({"id": f"m-{n}", "status": "completed"}, "inbound") for n in range(3)],
                 "reconcile")
    store.count_event("runs:failed")
    store.count_event("rejected:signature_mismatch")
    RunLog(store).append(finished_run("completed"))
    Consumer(settings, "g", "c").read(count=1)
    client = create_app(settings).test_client()
    client.post("/webhook", data=b"{}")
    text = client.get("/metrics").get_data(as_text=True)
    exported = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 10 and all(rule["alert"].startswith("Inbox") for rule in rules)
    used = {name for rule in rules for name in re.findall(r"metriport_inbox_\w+", rule["expr"])}
    assert used - exported == set()


def test_promtool_accepts_the_rules():
    """`promtool check rules` passes (.ci/run provides promtool; locally it may be absent)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not on PATH: .ci/run should have put it there")
        pytest.skip("promtool is not installed (Debian package prometheus); the rules were not checked by it")
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
