"""``/openapi.json`` documents every route, and real answers of every route validate against it."""

import json
import re

import pytest
from jsonschema import Draft202012Validator

from cli.dev.embedded import free_port
from conftest import SIGNATURES
from conftest import fixture_bytes
from inbox.normalize import normalize
from inbox.signing import HEADER
from inbox.signing import sign
from receiver import create_app

KEY = {"x-api-key": "test-reader-key"}


@pytest.fixture
def app(settings, store):
    """An app over a store of 5 messages (3 inbound, 2 outbound)."""
    for n in range(5):
        resource = {"resourceType": "Communication", "id": f"m-{n}", "status": "completed",
                    "subject": {"reference": "Patient/p-1"}}
        store.upsert([normalize(resource, "outbound" if n % 2 else "inbound")], "webhook")
    return create_app(settings)


@pytest.fixture
def document(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def openapi_path(rule):
    """A Flask rule as an OpenAPI path: ``<message_id>`` becomes ``{messageId}``."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>",
                  lambda m: "{" + re.sub(r"_(\w)", lambda c: c[1].upper(), m[1]) + "}", rule)


def check(document, path, method, response):
    """Assert ``response`` is documented for ``path``/``method`` and its body fits the schema."""
    operation = document["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{method.upper()} {path} answered an undocumented {response.status_code}"
    content_type = response.content_type.split(";")[0]
    assert content_type in documented["content"]
    schema = documented["content"][content_type]["schema"]
    body = response.get_json() if content_type == "application/json" else response.get_data(as_text=True)
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [schema],
            "components": document["components"]}
    errors = list(Draft202012Validator(root).iter_errors(body))
    assert not errors, [e.message for e in errors]


def test_every_route_is_documented(app, document):
    """Each route the app serves (every method) has an operation in the document.

    The operator console's HTML pages are for browsers, not an API (docs/operations.md).
    """
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue
        path = openapi_path(rule.rule)
        assert path in document["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], f"{method} {path}"


def test_document_is_openapi_31_with_valid_schemas(document):
    """The document declares OpenAPI 3.1 and every component schema is valid JSON Schema 2020-12."""
    assert document["openapi"].startswith("3.1")
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_mirror_answers_match_the_document(app, document):
    """List pages (first, middle, cursors), Get Message, and their errors validate."""
    client = app.test_client()
    path = "/medical/v1/message"
    first = client.get(f"{path}?count=2", headers=KEY)
    check(document, path, "get", first)
    middle = client.get(first.get_json()["meta"]["nextPage"], headers=KEY)
    assert "prevPage" in middle.get_json()["meta"]
    check(document, path, "get", middle)
    for query in ("toItem=m-2&count=1", "direction=outbound&patientId=p-1", "count=600",
                  "fromItem=a&toItem=b"):
        check(document, path, "get", client.get(f"{path}?{query}", headers=KEY))
    check(document, path, "get", client.get(path))
    one = "/medical/v1/message/{messageId}"
    for message_id, headers in (("m-1", KEY), ("unknown", KEY), ("m-1", {})):
        check(document, one, "get", client.get(f"/medical/v1/message/{message_id}", headers=headers))


def test_feed_metrics_and_openapi_answers_match_the_document(app, document):
    """/feed (entries, empty, errors), /metrics and /openapi.json validate."""
    client = app.test_client()
    page = client.get("/feed?limit=3", headers=KEY)
    check(document, "/feed", "get", page)
    check(document, "/feed", "get", client.get(f"/feed?after={page.get_json()['next']}", headers=KEY))
    check(document, "/feed", "get", client.get("/feed?after=9999999999999-0", headers=KEY))
    check(document, "/feed", "get", client.get("/feed?after=nope", headers=KEY))
    check(document, "/feed", "get", client.get("/feed"))
    check(document, "/metrics", "get", client.get("/metrics"))
    check(document, "/openapi.json", "get", client.get("/openapi.json"))


def test_unavailable_store_answers_match_the_document(settings):
    """With Redis down, the mirror and feed answer the documented 503, /metrics its 200."""
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    document = app.test_client().get("/openapi.json").get_json()
    client = app.test_client()
    for path, url in (("/medical/v1/message", "/medical/v1/message"),
                      ("/medical/v1/message/{messageId}", "/medical/v1/message/m-1"),
                      ("/feed", "/feed")):
        response = client.get(url, headers=KEY)
        assert response.status_code == 503
        check(document, path, "get", response)
    response = client.get("/metrics")
    assert response.status_code == 200
    check(document, "/metrics", "get", response)


def test_webhook_answers_match_the_document(app, document):
    """Ping, a stored message, and refused deliveries validate."""
    client = app.test_client()
    signatures = SIGNATURES["x-metriport-signature"]
    for name in ("webhook-ping.json", "webhook-message-received.json"):
        body = fixture_bytes(name)
        headers = {HEADER: signatures[name], "Content-Type": "application/json"}
        check(document, "/webhook", "post", client.post("/webhook", data=body, headers=headers))
    key = SIGNATURES["testWebhookKey"]
    refused = [
        (b'{"ping":"x"}', {HEADER: "0" * 64}),
        (b"not json", {HEADER: sign(key, b"not json")}),
        (json.dumps({"ping": "x" * 2_000_000}).encode(), {}),
    ]
    for body, headers in refused:
        response = client.post("/webhook", data=body, headers={**headers, "Content-Type": "application/json"})
        assert response.status_code in (400, 401, 413)
        check(document, "/webhook", "post", response)


def test_health_answers_match_the_document(app, document):
    """Liveness and readiness validate."""
    client = app.test_client()
    check(document, "/healthz", "get", client.get("/healthz"))
    check(document, "/readyz", "get", client.get("/readyz"))
