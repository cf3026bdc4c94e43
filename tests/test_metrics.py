"""``GET /metrics``: Prometheus text from the shared Redis figures, without PHI."""

import time

from prometheus_client.parser import text_string_to_metric_families

from cli.dev.embedded import free_port
from conftest import finished_run
from inbox.feed import Consumer
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.runs import RunLog
from receiver import create_app


def communication(n, status="completed"):
    return {
        "resourceType": "Communication",
        "id": f"msg-{n:04d}",
        "status": status,
        "subject": {"reference": "Patient/patient-secret-id"},
        "topic": {"text": "Confidential subject"},
    }


def scrape(settings):
    """The scrape as {(name, frozenset(labels)): value}, parsed by prometheus_client."""
    response = create_app(settings).test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def test_counters_by_channel_and_reason(settings, store):
    """Created/updated/duplicates per channel, repairs and rejections come out as counters."""
    store.upsert([normalize(communication(n, "in-progress"), "inbound") for n in range(3)], "webhook")
    store.upsert([normalize(communication(n, "in-progress"), "inbound") for n in range(5)], "reconcile")
    store.upsert([normalize(communication(0), "inbound")], "fetch")
    store.count_event("rejected:signature_mismatch", by=4)
    store.count_event("rejected:body_too_large")
    _, samples = scrape(settings)
    metric = lambda name, **labels: samples[(name, frozenset(labels.items()))]  # noqa: E731
    assert metric("metriport_inbox_messages_total", outcome="created", channel="webhook") == 3
    assert metric("metriport_inbox_messages_total", outcome="created", channel="reconcile") == 2
    assert metric("metriport_inbox_messages_total", outcome="duplicate", channel="reconcile") == 3
    assert metric("metriport_inbox_messages_total", outcome="updated", channel="fetch") == 1
    assert metric("metriport_inbox_repaired_total") == 2
    assert metric("metriport_inbox_webhooks_rejected_total", reason="signature_mismatch") == 4
    assert metric("metriport_inbox_webhooks_rejected_total", reason="body_too_large") == 1
    assert metric("metriport_inbox_feed_length") == 6
    assert metric("metriport_inbox_encryption_enabled") == 0


def test_last_reconcile_run_and_group_lag(settings, store, redis_client):
    """The newest run record gives outcome and age; each consumer group its lag and pending."""
    store.upsert([normalize(communication(n), "inbound") for n in range(8)], "reconcile")
    Consumer(settings, "search", "c").read(count=3)
    finished = time.time() - 120
    RunLog(store).append(finished_run("failed", ended_at=finished - 300))
    RunLog(store).append(finished_run("completed", ended_at=finished))
    _, samples = scrape(settings)
    assert samples[("metriport_inbox_reconcile_last_run_success", frozenset())] == 1
    assert abs(samples[("metriport_inbox_reconcile_last_run_timestamp_seconds", frozenset())] - finished) < 0.002
    runs = ("metriport_inbox_reconcile_runs_total", frozenset({("outcome", "completed")}))
    assert samples[runs] == 1
    age = samples[("metriport_inbox_reconcile_last_run_age_seconds", frozenset())]
    assert 119 <= age < 180
    RunLog(store).append(finished_run("budget_exhausted"))
    _, samples = scrape(settings)
    assert samples[("metriport_inbox_reconcile_last_run_success", frozenset())] == 0
    assert samples[("metriport_inbox_feed_consumer_lag", frozenset({("group", "search")}))] == 5
    assert samples[("metriport_inbox_feed_consumer_pending", frozenset({("group", "search")}))] == 3


def test_no_phi_and_no_ids_in_metrics(settings, store):
    """Message ids, patient ids and subject lines never appear in the scrape."""
    store.upsert([normalize(communication(n), "inbound") for n in range(2)], "webhook")
    store.count_event("rejected:Patient John Doe")
    text, samples = scrape(settings)
    for secret in ("msg-0000", "patient-secret-id", "Confidential", "John"):
        assert secret not in text
    assert samples[("metriport_inbox_webhooks_rejected_total", frozenset({("reason", "other")}))] == 1


def test_missing_or_odd_run_records_are_tolerated(settings, store, redis_client):
    """Without runs there is no run sample; a run record that is not JSON is skipped."""
    _, samples = scrape(settings)
    assert not any(name.startswith("metriport_inbox_reconcile") for name, _ in samples)
    redis_client.lpush(RedisKeys(settings.namespace).reconcile_runs, "not json")
    _, samples = scrape(settings)
    assert not any(name.startswith("metriport_inbox_reconcile") for name, _ in samples)


def test_redis_down_still_answers_with_redis_up_0(settings):
    """With Redis unreachable the scrape answers 200 and says so, with process figures."""
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    started = time.monotonic()
    response = app.test_client().get("/metrics")
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "metriport_inbox_redis_up 0.0" in text
    assert "process_cpu_seconds_total" in text and "metriport_inbox_feed_length" not in text


def test_redis_up_queue_persistence_and_runs_counter(settings, store, redis_client):
    """redis_up 1, queue depth, failed jobs, the persistence check and runs by outcome."""
    store.count_event("runs:completed", by=3)
    store.count_event("runs:failed")
    _, samples = scrape(settings)
    assert samples[("metriport_inbox_redis_up", frozenset())] == 1
    assert samples[("metriport_inbox_queue_depth", frozenset())] == 0
    assert samples[("metriport_inbox_jobs_failed", frozenset())] == 0
    assert samples[("metriport_inbox_reconcile_runs_total", frozenset({("outcome", "completed")}))] == 3
    assert samples[("metriport_inbox_reconcile_runs_total", frozenset({("outcome", "failed")}))] == 1
    aof = redis_client.info("persistence")["aof_enabled"]
    policy = redis_client.info("memory")["maxmemory_policy"]
    expected_ok = int(bool(aof) and policy == "noeviction"
                      and redis_client.config_get("appendfsync")["appendfsync"] != "no")
    assert samples[("metriport_inbox_redis_persistence_ok", frozenset())] == expected_ok
    assert samples[("metriport_inbox_unreadable_records", frozenset())] == 0


def test_requests_and_webhook_latency_by_route_and_status(settings):
    """Every answer is counted by route template and status; the webhook is timed."""
    client = create_app(settings).test_client()
    _, before = scrape(settings)
    client.post("/webhook", data=b"{}", headers={"x-metriport-signature": "bad"})
    client.get("/healthz")
    _, after = scrape(settings)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("metriport_inbox_http_requests_total", route="/webhook", method="POST", status="401") == 1
    assert delta("metriport_inbox_http_requests_total", route="/healthz", method="GET", status="200") == 1
    assert delta("metriport_inbox_webhook_duration_seconds_count", status="401") == 1
