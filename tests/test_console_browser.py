"""The console in a real browser: headless Chromium driven by Selenium against real gunicorn.

The store is filled the way production fills it: the simulator's webhooks (one replayed, some
refused), a reconciliation walk against the simulator (repairs what the webhooks missed and
updates a message Metriport changed), a fetch job that fails in a real RQ worker, a consumer
group, an audited API read. Each page is then opened and what it shows is compared with the
store; a screenshot of every page is saved under the test's tmp dir.

Needs Debian's chromium and chromium-driver (``.ci/run`` installs them). Without them the test
is skipped locally with the reason; under CI (``CI=true``) it fails instead.
"""

import copy
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest
import requests
from rq import Queue

from conftest import TEST_WEBHOOK_KEY
from inbox import history
from inbox import signing
from inbox.connection import Connections
from cli.dev.embedded import free_port
from inbox.feed import Consumer
from inbox.figures import Figures
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store
from inbox.traffic import Traffic
from servers import gunicorn_argv
from servers import running
from simulator import Simulator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OPERATOR_KEY = "browser-operator-key-0123456789"
READER_KEY = "browser-reader-key"
CANARY = f"CANARY-{uuid.uuid4().hex}"
COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))
PAGES = ("overview", "webhooks", "reconciliation", "feed", "jobs", "history")

pytestmark = pytest.mark.timeout(240)


def _missing():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return missing


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    missing = _missing()
    if missing:
        reason = (f"browser tests need {', '.join(missing)} "
                  "(apt-get install chromium chromium-driver; pip install -e '.[test]')")
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ": they must run in CI")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1100"):
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path_factory.mktemp("chromedriver") / "log"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def world(redis_url, tmp_path_factory):
    """A receiver under gunicorn and a simulator, with a store filled through both."""
    port = free_port()
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    with Simulator(seed=16, messages=0, webhook_url=f"http://127.0.0.1:{port}/webhook",
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        sim.mailbox.add(30, "inbound")
        sim.mailbox.add(12, "outbound")
        settings = Settings(redis_url=redis_url, namespace=namespace, webhook_keys=(TEST_WEBHOOK_KEY,),
                            inbox_api_keys=(READER_KEY,), operator_keys=(OPERATOR_KEY,),
                            api_key=sim.api_key, api_url=sim.url, reconcile_page_size=10)
        env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("METRIPORT_", "RECONCILE_", "INBOX_", "PROMETHEUS_"))},
            "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2",
            "REDIS_URL": redis_url, "INBOX_NAMESPACE": namespace,
            "METRIPORT_WEBHOOK_KEY": TEST_WEBHOOK_KEY, "INBOX_OPERATOR_KEYS": OPERATOR_KEY,
            "INBOX_API_KEYS": READER_KEY, "METRIPORT_API_KEY": sim.api_key,
            "METRIPORT_API_URL": sim.url, "RECONCILE_PAGE_SIZE": "10",
        }
        log = tmp_path_factory.mktemp("console") / "gunicorn.log"
        with running(gunicorn_argv(), env, port, log):
            facts = _fill(sim, settings, env, f"http://127.0.0.1:{port}")
            yield {"url": f"http://127.0.0.1:{port}", "settings": settings, "env": env, **facts}
    _cleanup(settings)


def _fill(sim, settings, env, base):
    inbound = sim.mailbox.ids("inbound")
    traced = inbound[0]
    # The webhook carried an earlier version of `traced`: Metriport's copy changed since.
    early = copy.deepcopy(sim.mailbox.get(traced))
    early["status"] = "in-progress"
    early["meta"]["lastUpdated"] = early["sent"]
    first = sim.sender.message_received(early, "inbound")
    assert sim.sender.send(first)
    assert sim.sender.send(first)  # Metriport's manual retry of the same delivery: a replay
    canary = {"resourceType": "Communication", "id": str(uuid.uuid4()), "status": "completed",
              "sent": "2024-05-01T10:00:00Z", "topic": {"text": CANARY},
              "sender": {"display": f"Dr {CANARY}"}, "payload": [{"contentString": CANARY}]}
    assert sim.sender.send(sim.sender.message_received(canary, "inbound"))
    report = sim.deliver_webhooks(inbound[1:20])
    assert report.succeeded == 19
    for _ in range(3):  # refused: wrong signature
        requests.post(f"{base}/webhook", data=b'{"meta":{"type":"ping"}}',
                      headers={"x-metriport-signature": "0" * 64}, timeout=10)
    for _ in range(2):  # refused: signed, but not JSON (a signed body without a message is
        # taken, kept and reconciled: see docs/webhook.md)
        body = b'{"meta": {"type": "message.received"'
        refused = requests.post(f"{base}/webhook", data=body, timeout=10, headers={
            "x-metriport-signature": signing.sign(TEST_WEBHOOK_KEY, body),
            "content-type": "application/json"})
        assert refused.status_code == 400, refused.text
    done = subprocess.run([COMMAND, "reconcile", "--once", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    queue = Queue(settings.queue_name, connection=Connections(settings).queue)
    queue.enqueue("worker.jobs.fetch_message", "missing-message-1")
    worked = subprocess.run([COMMAND, "worker", "--burst"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert worked.returncode == 0, worked.stderr
    for output in (done.stderr, worked.stderr):  # one logging configuration: JSON lines only
        lines = [json.loads(line) for line in output.splitlines() if line.strip()]
        assert lines and all({"time", "level", "logger", "request_id"} <= line.keys() for line in lines)
    job_lines = [json.loads(line) for line in worked.stderr.splitlines() if line.strip()]
    assert any(line["logger"].startswith("rq.") for line in job_lines)
    assert any(line["request_id"] for line in job_lines)  # the fetch job's lines carry its id
    Consumer(settings, "search-index", "c1").read(count=7)
    read = requests.get(f"{base}/medical/v1/message/{traced}", headers={"x-api-key": READER_KEY},
                        timeout=10)
    assert read.status_code == 200
    return {"traced": traced, "summary": summary, "canary_id": canary["id"]}


def _cleanup(settings):
    client = Connections(settings).store
    for key in client.scan_iter(match=RedisKeys(settings.namespace).pattern(), count=1000):
        client.delete(key)
    queue = Queue(settings.queue_name, connection=Connections(settings).queue)
    for job_id in queue.failed_job_registry.get_job_ids():
        queue.failed_job_registry.remove(job_id, delete_job=True)
    queue.delete(delete_jobs=True)


def _by(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def _all(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _click(driver, element):
    """Click something that loads a new page, and wait until the new page is there.

    Once the page is replaced, chromedriver may answer a look at the old element with a plain
    WebDriverException ("Node with given id does not belong to the document") instead of a
    stale-element one: both mean the old page is gone."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    old = _by(driver, "html")

    def replaced(_):
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise

    element.click()
    WebDriverWait(driver, 20).until(replaced)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _shot(driver, tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "console-screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    return path


def _log_in(driver, url, key):
    driver.get(f"{url}/console/login")
    _by(driver, "#key").send_keys(key)
    _click(driver, _by(driver, "#login"))


def test_console_in_chromium(driver, world, tmp_path_factory):
    """Wrong key refused; every page shows the store's figures, charts drawn, no content."""
    url, settings, traced = world["url"], world["settings"], world["traced"]
    store = Store(settings)
    figures = Figures(settings)
    sources = {}

    _log_in(driver, url, "not-the-key")
    assert _by(driver, "#refused").get_attribute("data-code") == "operator_key_invalid"
    _shot(driver, tmp_path_factory, "0-refused")
    _log_in(driver, url, OPERATOR_KEY)
    assert driver.current_url == f"{url}/console/"

    # overview
    assert int(_by(driver, "#stored").text) == store.count(store.index_key())
    assert _by(driver, "#redis-state").text == "yes"
    assert _by(driver, "#encryption").text == "off" and _by(driver, "#unreadable").text == "0"
    assert _all(driver, "#persistence-warnings") or _all(driver, "#persistence-ok")
    assert int(_by(driver, "#memory-used").get_attribute("data-bytes")) > 0
    sources["overview"] = driver.page_source
    _shot(driver, tmp_path_factory, "1-overview")

    # webhooks: totals equal the hourly counters; both charts drawn
    _click(driver, _by(driver, "#nav-webhooks"))
    hours = Traffic(settings, Connections(settings).store).hours(24)
    accepted = sum(fields.get("accepted", 0) for _, fields in hours)
    refused = sum(v for _, fields in hours for k, v in fields.items() if k != "accepted")
    assert accepted == 22 and refused == 5
    assert int(_by(driver, "#accepted-total").text) == accepted
    assert int(_by(driver, "#refused-total").text) == refused
    assert len(_all(driver, "#chart-accepted rect.bar")) >= 1
    assert len(_all(driver, "#chart-refused rect.bar")) >= 1
    reasons = {row.find_elements("css selector", "td")[0].text: row.find_elements("css selector", "td")[1].text
               for row in _all(driver, "#reasons tr")[1:]}
    assert reasons == {"rejected:signature_mismatch": "3", "rejected:json_invalid": "2"}
    sources["webhooks"] = driver.page_source
    _shot(driver, tmp_path_factory, "2-webhooks")

    # reconciliation: the run, its repairs, the chart
    _click(driver, _by(driver, "#nav-reconciliation"))
    rows = _all(driver, "#runs tr.run")
    assert len(rows) == 1
    assert int(rows[0].find_element("css selector", ".repaired").text) == world["summary"]["repaired"] > 0
    assert len(_all(driver, "#chart-repaired rect.bar")) == 1
    assert "ago" in _by(driver, "#last-success").text
    sources["reconciliation"] = driver.page_source
    _shot(driver, tmp_path_factory, "3-reconciliation")

    # feed: the group's lag and pending as the store counts them
    _click(driver, _by(driver, "#nav-feed"))
    group = next(g for g in figures.groups() if g.name == "search-index")
    row = _by(driver, 'tr.group[data-group="search-index"]')
    assert int(row.find_element("css selector", ".pending").text) == group.pending == 7
    assert int(row.find_element("css selector", ".lag").text) == group.lag > 0
    assert int(_by(driver, "#feed-length").text) == figures.feed_length()
    sources["feed"] = driver.page_source
    _shot(driver, tmp_path_factory, "4-feed")

    # jobs: the failed fetch with its error line, then requeued from the page
    _click(driver, _by(driver, "#nav-jobs"))
    failed = _all(driver, "tr.failed-job")
    assert len(failed) == 1 and "missing-message-1" in failed[0].text
    error = failed[0].find_element("css selector", ".error-line").text
    assert error.startswith("inbox.errors.MetriportError") and "404" in error
    sources["jobs"] = driver.page_source
    _shot(driver, tmp_path_factory, "5-jobs")
    cookie = driver.get_cookie("inbox_console")
    forged = requests.post(f"{url}/console/jobs/requeue", data={"job": failed[0].get_attribute("data-job")},
                           cookies={"inbox_console": cookie["value"]}, timeout=10)
    assert forged.status_code == 403  # a POST without the CSRF token
    _click(driver, failed[0].find_element("css selector", "button.requeue"))
    assert "Requeued" in _by(driver, "#requeued").text
    assert _by(driver, "#queue-depth").text == "1" and _by(driver, "#failed-count").text == "0"
    _shot(driver, tmp_path_factory, "5-jobs-requeued")

    # history: webhook, replay, reconcile update, the feed entries and the audited read
    _click(driver, _by(driver, "#nav-history"))
    _by(driver, "#message-id").send_keys(traced)
    _click(driver, _by(driver, "#look-up"))
    shown = [(r.get_attribute("data-event"), r.get_attribute("data-via"), r.get_attribute("data-version"))
             for r in _all(driver, "tr.event")]
    assert shown == [("created", "webhook", "1"), ("replay", "webhook", "1"),
                     ("updated", "reconcile", "2")]
    stored = history.trace(settings, Connections(settings).store, traced)
    assert shown == [(e.event, e.via, str(e.version)) for e in stored.events]
    assert len(_all(driver, "tr.feed-entry")) == 2 and len(_all(driver, "tr.read")) == 1
    assert _by(driver, "#deliveries").text == stored.events[0].delivery
    cli = subprocess.run([COMMAND, "trace", traced, "--json"], env=world["env"], capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert [(e["event"], e["via"], str(e["version"])) for e in json.loads(cli.stdout)["events"]] == shown
    sources["history"] = driver.page_source
    _shot(driver, tmp_path_factory, "6-history")

    # the canary message is stored, yet its content is on no page
    _by(driver, "#message-id").clear()
    _by(driver, "#message-id").send_keys(world["canary_id"])
    _click(driver, _by(driver, "#look-up"))
    assert len(_all(driver, "tr.event")) == 1
    sources["history-canary"] = driver.page_source
    assert set(PAGES) <= set(sources)
    assert not [page for page, source in sources.items() if CANARY in source]
