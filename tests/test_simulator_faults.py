"""Fault injection: seeded rates, bounds, and Metriport's 429/5xx answers over HTTP."""

import pytest
import requests

from simulator import Faults
from simulator import Simulator
from simulator.faults import RATE_LIMITED
from simulator.faults import SERVER_ERROR

LIST = "/medical/v1/message"


def kinds(faults, draws):
    return [faults.draw().kind for _ in range(draws)]


def test_faults_appear_at_the_configured_rates():
    """Over 4000 draws, 429s and 5xx come within a few points of their configured fractions."""
    drawn = kinds(Faults(rate_limit=0.2, server_error=0.1, seed=7, max_consecutive=100), 4000)
    assert abs(drawn.count(RATE_LIMITED) / 4000 - 0.2) < 0.03
    assert abs(drawn.count(SERVER_ERROR) / 4000 - 0.1) < 0.03


def test_same_seed_same_faults_and_other_seed_differs():
    """The fault sequence is a function of the seed."""
    first = kinds(Faults(rate_limit=0.3, server_error=0.2, seed=1), 300)
    assert first == kinds(Faults(rate_limit=0.3, server_error=0.2, seed=1), 300)
    assert first != kinds(Faults(rate_limit=0.3, server_error=0.2, seed=2), 300)


def test_faults_are_bounded_in_a_row_in_total_and_in_delay():
    """Even at rate 1 a client gets through after max_consecutive faults; limit and delay hold."""
    drawn = kinds(Faults(rate_limit=1.0, seed=3, max_consecutive=2), 30)
    assert drawn[:3] == [RATE_LIMITED, RATE_LIMITED, None] and None in drawn[3:6]
    limited = Faults(server_error=1.0, seed=3, max_consecutive=100, limit=5)
    assert kinds(limited, 50).count(SERVER_ERROR) == 5
    slow = Faults(slow=1.0, delay_max=0.05, seed=3)
    delays = [slow.draw().delay for _ in range(200)]
    assert all(0 < delay <= 0.05 for delay in delays)


def test_invalid_rates_are_refused():
    """A rate outside 0..1, or 429 + 5xx above 1, is a ValueError at construction."""
    with pytest.raises(ValueError):
        Faults(rate_limit=1.5)
    with pytest.raises(ValueError):
        Faults(rate_limit=0.6, server_error=0.6)


def test_rate_limited_answer_looks_like_express_rate_limit():
    """A 429 is plain text with Retry-After and the draft-6 RateLimit-* headers."""
    with Simulator(seed=1, messages=5, faults=Faults(rate_limit=1.0, retry_after=2, seed=1)) as sim:
        response = requests.get(sim.url + LIST, headers={"x-api-key": sim.api_key}, timeout=5)
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Too many requests, please try again later."
    assert response.headers["Retry-After"] == "2"
    assert response.headers["RateLimit-Policy"] == "60;w=60"
    assert response.headers["RateLimit-Limit"] == "60"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Reset"] == "2"


def test_server_errors_are_transient_and_counted():
    """5xx answers come at the configured rate, a retrying client gets every page, and the
    simulator counts each status."""
    faults = Faults(server_error=0.3, rate_limit=0.2, seed=9)
    with Simulator(seed=2, messages=300, faults=faults) as sim:
        seen = []
        url = sim.url + LIST + "?count=7"
        while url:
            response = requests.get(url, headers={"x-api-key": sim.api_key}, timeout=5)
            if response.status_code in (429, 500, 502, 503, 504):
                continue
            page = response.json()
            seen += [m["id"] for m in page["messages"]]
            url = page["meta"].get("nextPage")
        counts = sim.requests
        failures = sum(counts[f"list {s}"] for s in (500, 502, 503, 504))
    assert sorted(seen, reverse=True) == seen and len(set(seen)) == 300
    assert counts["list 200"] == 43
    assert counts["list"] == counts["list 200"] + failures + counts["list 429"]
    assert 0.15 < failures / counts["list"] < 0.45 and counts["list 429"] > 0
    assert faults.injected == failures + counts["list 429"]


def test_slow_answers_are_still_normal_pages():
    """With slow=1 every answer is delayed, yet it is a normal page and counts as no fault."""
    with Simulator(seed=1, messages=3, faults=Faults(slow=1.0, delay_max=0.05, seed=4)) as sim:
        response = requests.get(sim.url + LIST, headers={"x-api-key": sim.api_key}, timeout=5)
        assert sim.faults.injected == 0
    assert response.status_code == 200 and response.json()["meta"]["itemsOnPage"] == 3


def test_forbidden_requests_are_not_faulted():
    """The key check comes first: a request without a key gets 403 even at fault rate 1."""
    with Simulator(seed=1, messages=3, faults=Faults(rate_limit=1.0, seed=4)) as sim:
        response = requests.get(sim.url + LIST, timeout=5)
        assert response.status_code == 403
        assert sim.faults.injected == 0


def test_scripted_faults_hit_exact_requests():
    """script={2: 503, 3: 429} answers exactly the 2nd and 3rd API requests with those statuses."""
    with Simulator(seed=1, messages=3, faults=Faults(script={2: 503, 3: 429})) as sim:
        statuses = [
            requests.get(sim.url + LIST, headers={"x-api-key": sim.api_key}, timeout=5).status_code
            for _ in range(5)
        ]
    assert statuses == [200, 503, 429, 200, 200]


def test_outage_restart_on_the_same_port_keeps_the_messages():
    """stop() refuses connections; start(port) on the same port serves the same messages again."""
    with Simulator(seed=1, messages=8) as sim:
        url, port = sim.url, sim.port
        before = requests.get(url + LIST, headers={"x-api-key": sim.api_key}, timeout=5).json()
        sim.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(url + LIST, headers={"x-api-key": sim.api_key}, timeout=5)
        sim.start(port=port)
        after = requests.get(url + LIST, headers={"x-api-key": sim.api_key}, timeout=5).json()
    assert after == before


def test_control_api_scripts_faults():
    """PUT /_simulator/faults with a script forces statuses on the next API requests."""
    with Simulator(seed=1, messages=3) as sim:
        headers = {"x-api-key": sim.api_key}
        put = requests.put(sim.url + "/_simulator/faults", json={"script": {"1": 502}}, headers=headers, timeout=5)
        assert put.status_code == 200
        first = requests.get(sim.url + LIST, headers=headers, timeout=5)
        second = requests.get(sim.url + LIST, headers=headers, timeout=5)
        bad = requests.put(sim.url + "/_simulator/faults", json={"script": {"1": 404}}, headers=headers, timeout=5)
    assert (first.status_code, second.status_code) == (502, 200)
    assert first.json() == {"message": "Internal server error"}
    assert bad.status_code == 400
