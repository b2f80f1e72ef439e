"""The reviewers' page (/steward/) without a browser: sessions over HTTP against a real governed
server with basic auth. Permissions, four eyes, CSRF, escaping, filters, verification, errors.
The browser layer (tests/test_reviewers_page_browser.py) drives the same page in Chromium."""

from __future__ import annotations

import time

import markupsafe
import pytest
import requests
import sqlalchemy as sa

from mlflow_steward.plugins.targets import DeploymentInfo
from mlflow_steward.records import db, monitor_runs, schema
from mlflow_steward.records.audit import AuditLog
from mlflow_steward.records.deployments import DeploymentStore
from tests.reviewers_page_world import (
    CSRF,
    HOSTILE_COMMENT,
    HOSTILE_NAME,
    HOSTILE_TAG,
    PASSWORD,
    api,
    deny_reading,
    page_server,
    register,
    request_approval,
    tampered,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with page_server(tmp_path_factory.mktemp("reviewers")) as server:
        server.version = register(server, HOSTILE_NAME, tag=HOSTILE_TAG)
        request_approval(server, "alice", HOSTILE_NAME, server.version, "please <i>review</i>")
        yield server


def escaped(text: str) -> str:
    """``text`` as the page's templates write it (jinja2's autoescape)."""
    return str(markupsafe.escape(text))


def browser(server, user: str) -> requests.Session:
    session = requests.Session()
    session.auth = (user, PASSWORD)
    return session


def get(session, server, path: str = "/steward/") -> requests.Response:
    return session.get(f"{server.url}{path}", timeout=60)


def review_form(
    session, server, verdict: str, name: str, version: str, **extra
) -> requests.Response:
    page = get(session, server)
    assert page.status_code == 200, page.text
    token = CSRF.search(page.text).group(1)
    form = {
        "csrf_token": token,
        "verdict": verdict,
        "name": name,
        "version": version,
        "alias": "production",
        "action": "set_alias",
        "comment": "",
        **extra,
    }
    return session.post(f"{server.url}/steward/review", data=form, timeout=60)


def reviews(server, name: str) -> list[tuple[str, str]]:
    engine = db.get_engine(server.backend)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.approvals.c.approver, schema.approvals.c.verdict)
            .where(schema.approvals.c.model == name)
            .order_by(schema.approvals.c.id)
        )
        return [(r.approver, r.verdict) for r in rows]


def audit_count(server) -> int:
    return len(AuditLog(db.get_engine(server.backend)).entries())


def test_the_page_needs_a_login(world):
    response = requests.get(f"{world.url}/steward/", timeout=30)
    assert response.status_code == 401
    wrong = requests.get(f"{world.url}/steward/", auth=("bob", "not bob's"), timeout=30)
    assert wrong.status_code == 401


def test_pending_request_with_each_policys_verdict_rendered_as_text(world):
    page = get(browser(world, "bob"), world)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    text = page.text
    # The hostile name, tag and comment appear escaped, never as markup.
    assert escaped(HOSTILE_NAME) in text
    assert "<img src=x" not in text
    assert HOSTILE_TAG not in text
    assert escaped(HOSTILE_TAG) in text
    assert "<i>review</i>" not in text
    # The request, who made it, and each policy's verdict on the promotion if made now.
    assert 'class="requester">alice<' in text
    assert "require-identity" in text
    assert "approvals" in text
    assert "0 of 1 required approvals" in text
    # The recorded request decision (the evidence) is listed with its audit entry.
    assert "request_approval" in text


def test_a_forged_post_is_refused_and_records_nothing(world):
    bob = browser(world, "bob")
    before, count = reviews(world, HOSTILE_NAME), audit_count(world)
    form = {
        "verdict": "approve",
        "name": HOSTILE_NAME,
        "version": world.version,
        "alias": "production",
    }
    # No token at all (a form on another site), with or without the page's cookie.
    no_token = bob.post(f"{world.url}/steward/review", data=form, timeout=30)
    assert no_token.status_code == 403
    assert "security token is missing" in no_token.text
    get(bob, world)  # now bob has a session cookie
    assert bob.post(f"{world.url}/steward/review", data=form, timeout=30).status_code == 403
    # alice's token in bob's session: bound to the user and the session, refused.
    alice = browser(world, "alice")
    alice_token = CSRF.search(get(alice, world).text).group(1)
    stolen = bob.post(
        f"{world.url}/steward/review", data={**form, "csrf_token": alice_token}, timeout=30
    )
    assert stolen.status_code == 403
    assert "does not match" in stolen.text
    # The right token, sent from another origin.
    token = CSRF.search(get(bob, world).text).group(1)
    cross = bob.post(
        f"{world.url}/steward/review",
        data={**form, "csrf_token": token},
        headers={"Origin": "http://evil.example"},
        timeout=30,
    )
    assert cross.status_code == 403
    assert "another site" in cross.text
    # A link cannot approve: GET explains, records nothing.
    assert get(bob, world, "/steward/review?verdict=approve").status_code == 405
    assert reviews(world, HOSTILE_NAME) == before
    assert audit_count(world) == count


def test_the_requester_cannot_approve_her_own_on_the_page(world):
    alice = browser(world, "alice")
    response = review_form(alice, world, "approve", HOSTILE_NAME, world.version)
    assert response.status_code == 403
    assert "Refused by steward" in response.text
    assert "alice" in response.text
    assert "cannot approve it" in response.text  # the approvals policy's reason
    assert ("alice", "approve") not in reviews(world, HOSTILE_NAME)
    last = AuditLog(db.get_engine(world.backend)).entries(newest_first=True, limit=1)[0]
    assert (last.actor, last.action, last.decision) == ("alice", "approve", "refused")


def test_a_user_who_may_not_read_the_model_neither_sees_nor_reviews_it(world):
    name = "churn-secret"
    version = register(world, name)
    request_approval(world, "alice", name, version)
    deny_reading(world, "carol", name)
    carol = browser(world, "carol")
    page = get(carol, world)
    assert page.status_code == 200
    assert name not in page.text
    assert HOSTILE_NAME.split("<")[0] in page.text  # what carol may read is still listed
    token = CSRF.search(page.text).group(1)
    form = {
        "csrf_token": token,
        "verdict": "approve",
        "name": name,
        "version": version,
        "alias": "production",
    }
    refused = carol.post(f"{world.url}/steward/review", data=form, timeout=30)
    assert refused.status_code == 403
    assert "may not read" in refused.text
    # The REST API refuses carol the same review.
    assert (
        api(
            world,
            "carol",
            "POST",
            "/api/2.0/steward/approvals/approve",
            json={k: form[k] for k in ("name", "version", "alias")},
        ).status_code
        == 403
    )
    assert ("carol", "approve") not in reviews(world, name)
    # Nor does the audit view show carol that model's entries; bob sees them.
    assert "No audit entries match." in get(carol, world, f"/steward/audit?model={name}").text
    assert (
        f"<td>{name}</td>" in get(browser(world, "bob"), world, f"/steward/audit?model={name}").text
    )


def test_admins_see_every_model(world):
    admin = browser(world, "admin")
    page = get(admin, world)
    assert page.status_code == 200
    assert 'data-key="churn-secret/' in page.text
    assert get(admin, world, "/steward/audit?model=churn-secret").status_code == 200
    # /steward answers with the page's address.
    moved = admin.get(f"{world.url}/steward", allow_redirects=False, timeout=30)
    assert moved.status_code in (301, 308)
    assert moved.headers["Location"].endswith("/steward/")


def test_bad_input_is_a_clear_4xx_page(world):
    bob = browser(world, "bob")
    unknown = review_form(bob, world, "approve", "no-such-model", "1")
    assert unknown.status_code in (403, 404)
    assert "<h1>" in unknown.text
    bad_version = review_form(bob, world, "approve", HOSTILE_NAME, "one")
    assert bad_version.status_code == 400
    control = review_form(bob, world, "approve", "a\x00b", "1")
    assert control.status_code == 400
    assert "control character" in control.text
    verdict = review_form(bob, world, "request", HOSTILE_NAME, world.version)
    assert verdict.status_code == 400
    since = get(bob, world, "/steward/audit?since=yesterday")
    assert since.status_code == 400
    assert "YYYY-MM-DD" in since.text
    assert get(bob, world, "/steward/audit?model=" + "x" * 5000).status_code == 200
    huge = review_form(bob, world, "approve", HOSTILE_NAME, world.version, comment="x" * 2_000_000)
    assert huge.status_code == 413
    assert "too large" in huge.text


def test_bob_approves_with_a_comment_and_the_promotion_then_passes(world):
    bob = browser(world, "bob")
    response = review_form(
        bob, world, "approve", HOSTILE_NAME, world.version, comment=HOSTILE_COMMENT
    )
    assert response.status_code == 200, response.text
    assert "bob approved version" in response.text
    assert HOSTILE_COMMENT not in response.text
    assert escaped(HOSTILE_COMMENT) in response.text
    assert reviews(world, HOSTILE_NAME)[-1] == ("bob", "approve")
    promoted = api(
        world,
        "alice",
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        json={"name": HOSTILE_NAME, "alias": "production", "version": world.version},
    )
    assert promoted.status_code == 200, promoted.text
    # Once promoted, the request is no longer pending.
    assert (
        f'data-key="{escaped(HOSTILE_NAME)}/{world.version}@production' not in get(bob, world).text
    )


def test_the_audit_view_filters_and_shows_each_step(world):
    bob = browser(world, "bob")
    page = get(bob, world, "/steward/audit")
    assert page.status_code == 200
    assert "Verified: the chain of" in page.text
    only_bob = get(bob, world, "/steward/audit?actor=bob").text
    assert "<td>bob</td>" in only_bob
    assert "<td>alice</td>" not in only_bob
    requests_only = get(bob, world, "/steward/audit?action=request_approval").text
    assert "request_approval" in requests_only
    assert "<td>set_alias</td>" not in requests_only
    future = get(bob, world, "/steward/audit?since=2999-01-01").text
    assert "No audit entries match." in future
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert "request_approval" in get(bob, world, f"/steward/audit?since={today}").text


def test_a_tampered_entry_fails_verification_naming_it(world):
    bob = browser(world, "bob")
    seq = AuditLog(db.get_engine(world.backend)).entries(newest_first=True, limit=1)[0].seq - 1
    with tampered(world.backend, seq, "applied <script>x</script>"):
        page = get(bob, world, "/steward/audit").text
        assert f"Verification failed at entry {seq}" in page
        assert f"entry {seq} does not match its hash" in page
        assert "<script>x</script>" not in page
    assert "Verified: the chain of" in get(bob, world, "/steward/audit").text


def test_broken_records_still_render(world):
    """An entry whose stored JSON someone broke renders as its raw text (and fails
    verification), never a server error."""
    engine = db.get_engine(world.backend)
    table = schema.audit
    seq = AuditLog(engine).entries(model=HOSTILE_NAME, limit=1, newest_first=True)[0].seq
    with engine.connect() as conn:
        before = conn.execute(
            sa.select(table.c.reasons, table.c.details).where(table.c.seq == seq)
        ).one()
    with engine.begin() as conn:
        conn.execute(
            table.update().where(table.c.seq == seq).values(reasons="{not json", details="[1,")
        )
    try:
        bob = browser(world, "bob")
        audit = get(bob, world, "/steward/audit")
        assert audit.status_code == 200
        assert "{not json" in audit.text
        assert f"Verification failed at entry {seq}" in audit.text
        assert get(bob, world).status_code == 200
    finally:
        with engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.seq == seq)
                .values(reasons=before.reasons, details=before.details)
            )


def test_deployments_and_monitoring_verdicts(world):
    """Deployment and monitor-run records are written here as the on-prem target and the
    monitor would (the stores' own functions; their own tests drive real deployments)."""
    engine = db.get_engine(world.backend)
    store = DeploymentStore(engine)
    info = DeploymentInfo(
        name="fraud-api",
        target="steward-onprem",
        kind="onprem",
        model=HOSTILE_NAME,
        version=world.version,
        status="running",
        endpoint="http://127.0.0.1:1/invocations",
        reason=None,
        options={},
        traffic={world.version: 100},
        runtime={},
    )
    with engine.begin() as conn:
        store.insert_row(conn, info)
    store.record(info, kind="create", actor="alice", status="running")
    run = api(
        world, "alice", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}
    ).json()["run"]["info"]
    monitor_runs.record_run(
        engine,
        monitor="fraud-drift",
        model=HOSTILE_NAME,
        version=world.version,
        status="drift",
        run_id=run["run_id"],
        actions=[{"rule": 0, "action": "tag", "result": "<b>tagged</b>", "ok": True}],
        detail={},
        ts=time.time(),
    )
    bob = browser(world, "bob")
    deployments = get(bob, world, "/steward/deployments").text
    assert "fraud-api" in deployments
    assert "steward-onprem" in deployments
    assert "<img src=x" not in deployments
    assert "running" in deployments
    monitoring = get(bob, world, "/steward/monitoring").text
    assert f"/#/experiments/0/runs/{run['run_id']}" in monitoring
    assert "drift" in monitoring
    assert "<b>tagged</b>" not in monitoring
    deny_reading(world, "carol", HOSTILE_NAME)
    carol = browser(world, "carol")
    assert "fraud-api" not in get(carol, world, "/steward/deployments").text
    assert "fraud-drift" not in get(carol, world, "/steward/monitoring").text
