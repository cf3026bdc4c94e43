"""Reconciliation against a Metriport that answers 20 % of requests with 429/5xx and is slow."""

import math

import pytest

from chaos.harness import assert_store_equals_mailbox
from chaos.harness import created_per_message
from chaos.harness import environment
from chaos.harness import reconcile_command
from chaos.harness import summary_of
from inbox.store import Store
from simulator import Faults
from simulator import Simulator

pytestmark = pytest.mark.chaos

MESSAGES = 1000
PAGE = 50


def test_reconcile_completes_within_budget_under_faults(chaos_settings, processes):
    """With 10 % 429 and 10 % 5xx and a third of pages slow, one full run completes within its
    request budget, retries exactly the faults injected, and leaves the store equal to the simulator."""
    faults = Faults(rate_limit=0.1, server_error=0.1, slow=0.3, delay_max=0.2, retry_after=1, seed=20)
    with Simulator(seed=20, messages=MESSAGES, faults=faults) as sim:
        pages = sum(math.ceil(len(sim.mailbox.ids(d)) / PAGE) for d in ("inbound", "outbound"))
        budget = 2 * pages
        settings = chaos_settings.replace(api_url=sim.url, api_key=sim.api_key)
        env = environment(settings, RECONCILE_PAGE_SIZE=PAGE, RECONCILE_REQUEST_BUDGET=budget)
        run = processes.start("reconcile", reconcile_command(), env)
        assert run.wait(60) == 0, run.log()
        summary = summary_of(run)
        injected = faults.injected
        answered = sim.requests

    assert summary["outcome"] == "completed"
    assert injected >= 3, "the fault plan injected too few faults to prove anything"
    assert answered["list 429"] + sum(answered[f"list {s}"] for s in (500, 502, 503, 504)) == injected
    assert summary["retries"] == injected
    assert summary["requests"] == pages + injected <= budget
    store = Store(chaos_settings)
    assert_store_equals_mailbox(store, sim.mailbox)
    assert set(created_per_message(store).values()) == {1}
