"""The console through Flask's test client: login, CSRF, headers, pages, no message content."""

import re

import pytest

from inbox.normalize import normalize
from inbox.store import Delivery
from receiver import create_app

OPERATOR_KEY = "operator-key-for-tests"
CANARY = "CANARY-console-subject"
PAGES = ("/console/", "/console/webhooks", "/console/reconciliation", "/console/feed",
         "/console/jobs", "/console/history?id=m-console-1")


@pytest.fixture
def console_settings(settings):
    return settings.replace(operator_keys=(OPERATOR_KEY,))


@pytest.fixture
def browser(console_settings):
    return create_app(console_settings).test_client()


def csrf_of(response):
    return re.search(r'name="csrf" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def log_in(client, key=OPERATOR_KEY):
    token = csrf_of(client.get("/console/login"))
    return client.post("/console/login", data={"csrf": token, "key": key})


def test_pages_need_a_login(browser):
    """Every page sends a stranger to the login form; a POST without a session is refused."""
    for page in PAGES:
        response = browser.get(page)
        assert (response.status_code, response.headers["Location"]) == (302, "/console/login")


def test_login_sets_a_strict_httponly_cookie_and_opens_every_page(browser):
    """The right key: a signed HttpOnly SameSite=Strict cookie, then every page renders."""
    response = log_in(browser)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    for page in PAGES:
        response = browser.get(page)
        assert response.status_code == 200, page
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "<script" not in response.get_data(as_text=True)


@pytest.mark.parametrize("key, code", [("wrong-key", "operator_key_invalid"), ("", "operator_key_invalid")])
def test_wrong_key_is_refused(browser, key, code):
    """A wrong or empty key gets 401 and no session."""
    response = log_in(browser, key)
    assert response.status_code == 401 and code in response.get_data(as_text=True)
    assert browser.get("/console/").status_code == 302


def test_no_operator_keys_admits_nobody(settings):
    """Without INBOX_OPERATOR_KEYS every login is refused, whatever is typed."""
    client = create_app(settings).test_client()
    response = log_in(client, "anything")
    assert response.status_code == 401
    assert "operator_keys_not_configured" in response.get_data(as_text=True)


def test_post_without_or_with_a_wrong_csrf_token_is_refused(browser):
    """Login, logout and requeue all refuse a POST whose token is missing or wrong (403)."""
    assert browser.post("/console/login", data={"key": OPERATOR_KEY}).status_code == 403
    log_in(browser)
    assert browser.post("/console/jobs/requeue", data={"job": "x"}).status_code == 403
    assert browser.post("/console/logout", data={"csrf": "forged"}).status_code == 403
    assert browser.get("/console/").status_code == 200


def test_a_session_ends_when_its_key_is_removed(console_settings, browser):
    """A cookie made under a key that is no longer configured opens nothing."""
    log_in(browser)
    cookie = browser.get_cookie("inbox_console", path="/console")
    rotated = create_app(console_settings.replace(operator_keys=("another-key", OPERATOR_KEY + "x")))
    client = rotated.test_client()
    client.set_cookie("inbox_console", cookie.value, path="/console")
    assert client.get("/console/").status_code == 302


def test_pages_show_ids_and_counts_never_content(browser, store):
    """A stored message's canary text appears on no page, its id and versions do."""
    resource = {"resourceType": "Communication", "id": "m-console-1", "status": "in-progress",
                "topic": {"text": CANARY}, "payload": [{"contentString": CANARY}],
                "sent": "2024-05-01T10:00:00Z"}
    store.upsert([normalize(resource, "inbound")], "webhook", delivery=Delivery("dl-1", "h"))
    store.upsert([normalize(dict(resource, status="completed"), "inbound")], "reconcile")
    log_in(browser)
    texts = {page: browser.get(page).get_data(as_text=True) for page in PAGES}
    assert not any(CANARY in text for text in texts.values())
    history = texts["/console/history?id=m-console-1"]
    assert history.count('class="event"') == 2 and "dl-1" in history
    assert '<td id="stored">1</td>' in texts["/console/"]


def test_invalid_history_id_is_400(browser):
    """An id outside the id alphabet is refused without a lookup."""
    log_in(browser)
    response = browser.get("/console/history?id=<script>")
    assert response.status_code == 400 and "<script>" not in response.get_data(as_text=True)
