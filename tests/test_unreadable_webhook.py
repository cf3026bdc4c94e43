"""A signed message.received this service cannot read still gets its message stored in seconds.

Real parts: the simulator on 127.0.0.1, the receiver app on a real WSGI server, a real
``metriport-inbox worker`` (RQ) subprocess, a real Redis. No clock runs, so the only run that
can store the new message is the immediate one the webhook queued.
"""

import subprocess
import threading
import time

import pytest
import requests

from chaos.harness import BIN
from chaos.harness import Processes
from chaos.harness import environment
from conftest import reconcile_summary
from inbox.runs import RunLog
from inbox.store import Store
from receiver import create_app
from servers import serving
from simulator import Faults
from simulator import Simulator
from webhook_helpers import event_body
from webhook_helpers import headers_for

#: Metriport's answer to a webhook must come within 4 s; the message must be stored within 10 s
STORED_WITHIN = 10.0
PAGE = 50


@pytest.fixture
def processes(tmp_path):
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def receiver(settings):
    with serving(create_app(settings)) as url:
        yield url


def unknown_shape():
    """A signed message.received whose payload names no message this service can recognise."""
    return event_body("message.received", payload={"notification": {"kind": "new-mail"}})


def wait_stored(store, message_id, timeout):
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if store.get(message_id) is not None:
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def test_unknown_shape_is_stored_by_the_immediate_run_within_10_s(settings, receiver, processes):
    """202 at once, then the immediate incremental run (a real RQ worker) stores the message:
    within 10 s, with no other run in between."""
    with Simulator(seed=41, messages=400) as sim:
        walking = settings.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=PAGE)
        assert reconcile_summary(walking, mode="full")["created"] == 400
        worker = processes.start("worker", [BIN / "metriport-inbox", "worker"],
                                 environment(walking, RECONCILE_PAGE_SIZE=PAGE))
        [new_id] = sim.mailbox.add(1, "inbound")
        store = Store(settings)

        body = unknown_shape()
        response = requests.post(receiver, data=body, headers=headers_for(body), timeout=4)
        assert response.status_code == 202, response.text
        assert response.json()["reconcile"] == "queued"
        elapsed = wait_stored(store, new_id, STORED_WITHIN)
        assert elapsed is not None, processes.logs()
        assert worker.running
        stored = store.get(new_id)
        assert (stored.first_via, stored.resource) == ("reconcile", sim.mailbox.get(new_id))
        deadline = time.monotonic() + 10
        while len(RunLog(store).recent(10)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the run records itself once its walk is over
        runs = RunLog(store).recent(10)
        assert len(runs) == 2  # the first full walk and the immediate run: nothing else ran
        assert runs[0].mode.value == "incremental" and runs[0].totals.created == 1
        assert store.stats()["unreadable:missing_id"] == 1
        # the operator's view: ids and reasons in the list, the body only when asked for
        env = environment(walking)
        listed = subprocess.run([BIN / "metriport-inbox", "unreadable-webhooks"], env=env,
                                capture_output=True, text=True, timeout=60)
        kept = response.json()["kept"]
        assert listed.returncode == 0 and f"{kept} missing_id" in listed.stdout
        assert "new-mail" not in listed.stdout
        shown = subprocess.run([BIN / "metriport-inbox", "unreadable-webhooks", "--show", kept], env=env,
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "new-mail" in shown.stdout
        print(f"unknown-shape delivery to stored message: {elapsed:.2f} s")


def test_immediate_run_finding_a_run_in_progress_hands_over(settings, receiver, processes):
    """The webhook's run finds a slow full walk holding the lock, past its first page: it leaves
    a request, and the walk in progress walks again before releasing, so the message arrives."""
    with Simulator(seed=42, messages=600) as sim:
        walking = settings.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=PAGE)
        reconcile_summary(walking, mode="full")
        processes.start("worker", [BIN / "metriport-inbox", "worker"],
                        environment(walking, RECONCILE_PAGE_SIZE=PAGE))
        sim.faults = Faults(slow=1.0, delay_max=0.15, seed=2)
        results = {}
        slow = threading.Thread(
            target=lambda: results.setdefault("run", reconcile_summary(walking, mode="full")))
        slow.start()
        try:
            while sim.requests["list"] < 3:
                time.sleep(0.02)
            [new_id] = sim.mailbox.add(1, "inbound")  # newer than the pages already read
            body = unknown_shape()
            assert requests.post(receiver, data=body, headers=headers_for(body),
                                 timeout=4).status_code == 202
            store = Store(settings)
            assert wait_stored(store, new_id, 60) is not None, processes.logs()
        finally:
            slow.join(timeout=120)
        run = results["run"]
        assert run["outcome"] == "completed" and run["created"] == 1
        skipped = [r for r in RunLog(store).recent(10) if r.outcome.value == "skipped"]
        assert len(skipped) == 1  # the immediate run, which handed over
