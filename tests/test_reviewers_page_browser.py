"""The reviewers' page end to end in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium with that binary and driver, never downloaded) against a
real ``mlflow server --app-name steward`` with basic auth.

alice requests a promotion; bob logs in, sees it with each policy's verdict and the recorded
decisions, and approves it on the page; alice cannot approve her own; a form forged on another
site is refused; the audit view shows each step; a tampered audit entry fails verification by
name; HTML and script in names, tags and comments stay text. Screenshots of the main views are
written under pytest's base temporary directory (their paths are printed).

Without Chromium, chromedriver or selenium these tests skip, except under
``STEWARD_REQUIRE_CHROMIUM=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlflow_steward.plugins.targets import DeploymentInfo
from mlflow_steward.records import db, monitor_runs, schema
from mlflow_steward.records.audit import AuditLog
from mlflow_steward.records.deployments import DeploymentStore
from tests.reviewers_page_world import (
    HOSTILE_COMMENT,
    HOSTILE_NAME,
    HOSTILE_TAG,
    PASSWORD,
    api,
    page_server,
    register,
    request_approval,
    tampered,
)

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("STEWARD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STEWARD_CHROMEDRIVER", "/usr/bin/chromedriver")
TITLE = "Pending approvals · steward · MLflow"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def chromium():
    problem = _missing()
    if problem:
        if os.environ.get("STEWARD_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"Chromium required (STEWARD_REQUIRE_CHROMIUM=1): {problem}")
        pytest.skip(problem)
    # Selenium Manager must not try to download a browser or driver (no internet here).
    os.environ["SE_OFFLINE"] = "true"
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def world(chromium, tmp_path_factory):
    with page_server(tmp_path_factory.mktemp("reviewers-browser")) as server:
        server.version = register(server, HOSTILE_NAME, tag=HOSTILE_TAG)
        request_approval(server, "alice", HOSTILE_NAME, server.version, "ready for production")
        yield server


@pytest.fixture(scope="module")
def shots(world, tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("reviewers-screenshots")
    saved: list[Path] = []
    yield folder, saved
    # Shown in the test run's output (outside pytest's output capture), one line per file.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for path in saved:
            print(f"\nscreenshot: {path}", end="")
        print()


class Browser:
    """One user's headless Chromium. Basic credentials go with every request the browser makes
    (as a browser that has logged in to the realm sends them), so a form forged on another site
    reaches the server authenticated: only the CSRF token stops it."""

    def __init__(self, server, user: str, tmp: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.server, self.user = server, user
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1360,1000",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-component-update",
            "--metrics-recording-only",
            f"--user-data-dir={tmp / f'profile-{user}'}",
        ):
            options.add_argument(argument)
        service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp / f"driver-{user}.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(60)
        token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )

    def open(self, path: str = "/steward/") -> None:
        self.driver.get(f"{self.server.url}{path}")

    def submit(self, button) -> None:
        """Click a form's button and wait for the answer page to replace this one (a click
        returns before the browser has navigated; reading the page at once is a race)."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.css("html")[0]
        button.click()
        WebDriverWait(self.driver, 60).until(expected_conditions.staleness_of(old))

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self) -> str:
        return self.css("body")[0].text

    def shoot(self, shots, name: str) -> Path:
        folder, saved = shots
        path = folder / f"{name}.png"
        # The whole page, not only the window.
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 10_000  # a rendered page, not a blank image
        saved.append(path)
        return path

    def assert_inert(self) -> None:
        """Markup in names, tags and comments stayed text: no element came out of it, no script
        ran (each payload would change the title)."""
        assert self.css("script") == []
        assert self.css("main img") == []
        assert self.css("main i") == []
        assert not any(e.text == "looks" for e in self.css("main b"))
        assert self.driver.title.endswith("· steward · MLflow")

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def users(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    opened: dict[str, Browser] = {}

    def browser(user: str) -> Browser:
        if user not in opened:
            opened[user] = Browser(world, user, tmp)
        return opened[user]

    yield browser
    for each in opened.values():
        each.quit()


def card(browser: Browser):
    found = [
        c for c in browser.css("section.pending") if c.get_attribute("data-key").startswith("fraud")
    ]
    assert len(found) == 1, browser.text()
    return found[0]


def test_bob_sees_the_request_with_each_policys_verdict(world, users, shots):
    bob = users("bob")
    bob.open()
    assert bob.driver.title == TITLE
    assert bob.css("#current-user")[0].text == "bob"
    section = card(bob)
    text = section.text
    assert HOSTILE_NAME in text  # the name as text, markup and all
    assert "requested by alice" in text
    # Each policy's verdict if promoted now: approvals denies (no approval yet).
    rows = [r.text for r in section.find_elements("css selector", "table.policies tr")]
    assert any(r.startswith("approvals deny") and "0 of 1 required approvals" in r for r in rows)
    assert any(r.startswith("require-identity allow") for r in rows)
    # The version's tags, a hostile value among them, as text.
    assert HOSTILE_TAG in section.find_elements("css selector", "td.tag-value")[0].text
    # The recorded decision on the request (the evidence so far).
    assert "request_approval" in section.find_elements("css selector", "table.evidence")[0].text
    bob.assert_inert()
    bob.shoot(shots, "01-pending-approvals")


def test_alice_cannot_approve_her_own(world, users, shots):
    alice = users("alice")
    alice.open()
    section = card(alice)
    alice.submit(section.find_element("css selector", "button[value=approve]"))
    assert alice.css("h1")[0].text == "Refused by steward"
    message = alice.css("#error-message")[0].text
    assert "alice" in message
    assert "cannot approve it" in message
    alice.shoot(shots, "02-own-approval-refused")
    log = AuditLog(db.get_engine(world.backend)).entries(newest_first=True, limit=1)[0]
    assert (log.actor, log.action, log.decision) == ("alice", "approve", "refused")


class _Attacker(BaseHTTPRequestHandler):
    """Another site: a page whose form posts an approval to the governed server on load."""

    target = ""
    fields: dict[str, str] = {}

    def do_GET(self) -> None:
        inputs = "".join(
            f'<input type="hidden" name="{k}" value="{v}">' for k, v in self.fields.items()
        )
        body = (
            "<!doctype html><title>win a prize</title>"
            f'<form id="f" method="post" action="{self.target}">{inputs}</form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_form_forged_on_another_site_is_refused(world, users, shots):
    bob = users("bob")
    bob.open()  # bob has a session with the page, as a reviewer would
    engine = db.get_engine(world.backend)
    entries = len(AuditLog(engine).entries())
    _Attacker.target = f"{world.url}/steward/review"
    _Attacker.fields = {
        "verdict": "approve",
        "name": "fraud",
        "version": world.version,
        "alias": "production",
    }
    site = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        bob.driver.get(f"http://localhost:{site.server_address[1]}/prize")
        deadline = time.monotonic() + 30
        while "Refused" not in bob.driver.title + bob.text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert bob.css("h1")[0].text == "Refused: this form may be forged"
        assert "sent from another site" in bob.css("#error-message")[0].text
        bob.shoot(shots, "03-forged-post-refused")
    finally:
        site.shutdown()
        site.server_close()
    with engine.connect() as conn:
        approvals = conn.execute(
            sa.select(schema.approvals.c.approver).where(schema.approvals.c.verdict == "approve")
        ).all()
    assert approvals == []
    assert len(AuditLog(engine).entries()) == entries


def test_bob_approves_on_the_page_and_the_promotion_passes(world, users, shots):
    bob = users("bob")
    bob.open()
    section = card(bob)
    section.find_element("css selector", "textarea[name=comment]").send_keys(HOSTILE_COMMENT)
    bob.submit(section.find_element("css selector", "button[value=approve]"))
    notice = bob.css("#notice")[0].text
    assert notice == f"bob approved version {world.version} of {HOSTILE_NAME} for @production."
    section = card(bob)  # still pending: approved, not yet promoted
    # With bob's approval, alice's move would now pass every policy.
    verdicts = section.find_elements("css selector", "table.policies tr")
    assert any(r.text.startswith("approvals allow") and "bob" in r.text for r in verdicts)
    comment = section.find_elements("css selector", "table.reviews td.comment")
    assert [c.text for c in comment] == [HOSTILE_COMMENT]
    bob.assert_inert()
    bob.shoot(shots, "04-approved")
    promoted = api(
        world,
        "alice",
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        json={"name": HOSTILE_NAME, "alias": "production", "version": world.version},
    )
    assert promoted.status_code == 200, promoted.text
    bob.open()
    assert bob.css("#no-pending"), bob.text()


def test_the_audit_view_shows_each_step(world, users, shots):
    bob = users("bob")
    bob.open("/steward/audit")
    assert "Verified: the chain of" in bob.css("#verification")[0].text
    steps = []
    for row in bob.css("#audit-entries tr.entry"):
        cells = [cell.text for cell in row.find_elements("css selector", "td")]
        steps.append((cells[2], cells[3], cells[7]))
    story = [s for s in reversed(steps) if s[1] in ("request_approval", "approve", "set_alias")]
    assert story == [
        ("alice", "request_approval", "allowed"),
        ("alice", "approve", "refused"),
        ("bob", "approve", "allowed"),
        ("alice", "set_alias", "allowed"),
    ]
    bob.assert_inert()
    bob.shoot(shots, "05-audit-log")
    # Filters: bob's steps only.
    bob.open("/steward/audit?actor=bob")
    actors = {
        r.find_elements("css selector", "td")[2].text for r in bob.css("#audit-entries tr.entry")
    }
    assert actors == {"bob"}


def test_a_tampered_audit_entry_fails_verification_naming_it(world, users, shots):
    bob = users("bob")
    log = AuditLog(db.get_engine(world.backend))
    approval = next(e for e in log.entries() if (e.actor, e.action) == ("bob", "approve"))
    with tampered(world.backend, approval.seq, "applied, honestly"):
        bob.open("/steward/audit")
        banner = bob.css("#verification")[0].text
        assert f"Verification failed at entry {approval.seq}" in banner
        assert f"entry {approval.seq} does not match its hash: it was edited" in banner
        flagged = bob.css("tr.entry.bad")
        assert [r.get_attribute("data-seq") for r in flagged] == [str(approval.seq)]
        bob.shoot(shots, "06-audit-tampered")
    bob.open("/steward/audit")
    assert "Verified" in bob.css("#verification")[0].text


def test_deployments_and_monitoring_views(world, users, shots):
    """The deployment and monitor-run records are written as the on-prem target and a monitor
    write them (their own tests drive real deployments and monitors); the page reads them."""
    engine = db.get_engine(world.backend)
    store = DeploymentStore(engine)
    info = DeploymentInfo(
        name="fraud-api",
        target="steward-onprem",
        kind="onprem",
        model=HOSTILE_NAME,
        version=world.version,
        status="running",
        endpoint="http://127.0.0.1:8601/invocations",
        reason=None,
        options={},
        traffic={world.version: 100},
        runtime={},
    )
    with engine.begin() as conn:
        store.insert_row(conn, info)
    store.record(info, kind="create", actor="alice", status="running", reason="health gate passed")
    run = api(world, "alice", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
    run_id = run.json()["run"]["info"]["run_id"]
    monitor_runs.record_run(
        engine,
        monitor="fraud-drift",
        model=HOSTILE_NAME,
        version=world.version,
        status="drift",
        run_id=run_id,
        actions=[{"rule": 0, "action": "tag", "result": "tagged steward.drift=true", "ok": True}],
        detail={},
        ts=time.time(),
    )
    bob = users("bob")
    bob.open("/steward/deployments")
    text = bob.text()
    assert "fraud-api" in text
    assert f"{HOSTILE_NAME} version {world.version}" in text
    assert "running" in text
    bob.assert_inert()
    bob.shoot(shots, "07-deployments")
    bob.open("/steward/monitoring")
    link = bob.css("a.run-link")[0]
    assert link.get_attribute("href") == f"{world.url}/#/experiments/0/runs/{run_id}"
    assert "drift" in bob.text()
    bob.assert_inert()
    bob.shoot(shots, "08-monitoring")
    # The link opens the run in MLflow's own UI (same server, same login).
    link.click()
    deadline = time.monotonic() + 60
    while run_id not in bob.driver.current_url and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_id in bob.driver.current_url
