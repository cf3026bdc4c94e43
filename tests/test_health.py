"""GET /healthz and GET /readyz for orchestrators."""

import time

from cli.dev.embedded import free_port
from receiver import create_app


def test_healthz_answers_without_redis(settings):
    """Liveness says the process is up even when Redis is not."""
    dead = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = create_app(dead).test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_reports_redis_keys_and_encryption(settings, client):
    """Ready with Redis up and a webhook key; the details name no key, only counts and modes."""
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert checks["redis"] == "ok"
    assert (checks["webhook_keys"], checks["api_keys"], checks["encryption"]) == (1, 1, "off")
    assert settings.webhook_keys[0] not in response.get_data(as_text=True)


def test_readyz_reports_encryption_on(settings):
    """With a key ring configured the readiness details say encryption is on."""
    ring = settings.replace(encryption_keys=(("k1", b"k" * 32),))
    assert create_app(ring).test_client().get("/readyz").get_json()["checks"]["encryption"] == "on"


def test_readyz_is_503_fast_when_redis_is_down(settings):
    """Redis unreachable: 503 not_ready with the failing check, answered within about a second."""
    dead = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(dead).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    body = response.get_json()
    assert (body["error"], body["checks"]["redis"]) == ("not_ready", "unavailable")
