"""Yours to edit. The approval app end to end: real sign-in, real pages, real audit trail."""

import datetime as dt
import re
import threading

import httpx
import pytest
from sqlalchemy import select

from app.models import ApprovalRequest, Status
from app.retention import purge
from guardrails import verify_audit
from guardrails.testing import audit_unwritable, bound, login


def csrf(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def as_user(live_app):
    clients = []

    def open_as(email):
        client = live_app.client()
        clients.append(client)
        home = login(client, live_app, email)
        client.token = csrf(home)
        return client

    yield open_as
    for client in clients:
        client.close()


def submit(client, app, title="New laptop"):
    answer = client.post(
        f"{app.url}/requests",
        data={"title": title, "details": "14 inch", "action": "submit", "csrf_token": client.token},
    )
    assert answer.status_code == 200, answer.text
    return int(answer.url.path.rsplit("/", 1)[1])


def act(client, app, request_id, action, comment=""):
    return client.post(
        f"{app.url}/requests/{request_id}/{action}",
        data={"comment": comment, "csrf_token": client.token},
    )


def test_request_is_approved_by_another_approver(live_app, as_user, demo):
    requester, approver = as_user(demo["requester"]), as_user(demo["approver"])
    rid = submit(requester, live_app)

    refused = act(requester, live_app, rid, "approve")
    assert refused.status_code == 403
    denied = live_app.audit_events()[-1]
    assert (denied["action"], denied["result"]) == ("approval.approve", "denied")
    assert denied["actor"]["email"] == demo["requester"]

    approved = act(approver, live_app, rid, "approve", "Enjoy")
    assert approved.status_code == 200 and "approved" in approved.text
    last = live_app.audit_events()[-1]
    assert last["action"] == "approval.approve" and last["result"] == "success"
    assert last["resource"] == {"type": "request", "id": str(rid)}
    assert last["metadata"] == {"from": "submitted", "to": "approved", "comment": "Enjoy"}
    assert verify_audit(live_app.audit_file).ok


def test_approver_cannot_approve_own_request(live_app, as_user, demo):
    approver = as_user(demo["approver"])
    rid = submit(approver, live_app, "Conference trip")
    answer = act(approver, live_app, rid, "approve")
    assert answer.status_code == 403 and "Four-eyes" in answer.text
    assert live_app.audit_events()[-1]["result"] == "denied"


def test_lists_are_filtered_by_role(live_app, as_user, demo):
    requester, approver, admin = (as_user(demo[r]) for r in ("requester", "approver", "admin"))
    submit(requester, live_app, "Rita's chair")
    draft = requester.post(
        f"{live_app.url}/requests",
        data={"title": "Rita's secret draft", "action": "draft", "csrf_token": requester.token},
    )
    assert draft.status_code == 200
    submit(approver, live_app, "Alex's monitor")
    mine = requester.get(f"{live_app.url}/").text
    assert "Rita&#39;s chair" in mine and "Alex&#39;s monitor" not in mine
    theirs = approver.get(f"{live_app.url}/").text
    assert "Rita&#39;s chair" in theirs and "secret draft" not in theirs
    assert "Waiting for your decision (1)" in theirs
    assert "secret draft" in admin.get(f"{live_app.url}/").text


def test_other_peoples_requests_are_hidden_from_requesters(live_app, as_user, demo):
    approver, requester = as_user(demo["approver"]), as_user(demo["requester"])
    rid = submit(approver, live_app)
    assert requester.get(f"{live_app.url}/requests/{rid}").status_code == 403
    assert live_app.audit_events()[-1]["action"] == "approval.view"


def test_reject_needs_a_comment_and_admin_archives(live_app, as_user, demo):
    requester, approver, admin = (as_user(demo[r]) for r in ("requester", "approver", "admin"))
    rid = submit(requester, live_app)
    refused = act(approver, live_app, rid, "reject", "  ")
    # The form again, with the message beside the comment field, not a bare error page.
    assert refused.status_code == 400 and 'id="comment-error"' in refused.text
    assert 'aria-describedby="comment-error"' in refused.text and "a comment is required" in (
        refused.text
    )
    assert act(approver, live_app, rid, "reject", "Over budget").status_code == 200
    assert act(approver, live_app, rid, "archive").status_code == 403
    archived = act(admin, live_app, rid, "archive")
    assert archived.status_code == 200 and "archived" in archived.text
    done = [
        (e["action"], e["actor"].get("email"))
        for e in live_app.audit_events()
        if e["result"] == "success" and e["action"].startswith("approval.")
    ]
    assert done[-2:] == [("approval.reject", demo["approver"]), ("approval.archive", demo["admin"])]


def test_retention_purge_removes_old_archived_requests(live_app, as_user, demo):
    requester, approver, admin = (as_user(demo[r]) for r in ("requester", "approver", "admin"))
    old, kept = submit(requester, live_app, "old"), submit(requester, live_app, "kept")
    for rid in (old, kept):
        act(approver, live_app, rid, "approve", "ok")
        act(admin, live_app, rid, "archive")
    maker = live_app.runtime.sessionmaker
    with maker.begin() as db:
        db.get(ApprovalRequest, old).archived_at = dt.datetime.now(dt.UTC) - dt.timedelta(
            days=live_app.runtime.manifest.retention_days + 1
        )
    with maker() as db:
        assert purge(db, live_app.runtime.manifest.retention_days, dry_run=True) == [old]
    with maker() as db, bound(live_app.runtime):
        assert purge(db, live_app.runtime.manifest.retention_days) == [old]
    with maker() as db:
        left = db.scalars(select(ApprovalRequest.id)).all()
        assert old not in left and kept in left
        assert db.get(ApprovalRequest, kept).status == Status.ARCHIVED
    event = live_app.audit_events()[-1]
    assert event["action"] == "retention.purge" and event["metadata"]["count"] == 1
    assert event["actor"]["id"] == "system:retention"
    assert verify_audit(live_app.audit_file).ok


def test_nothing_changes_when_the_audit_log_is_down(live_app, as_user, demo):
    requester = as_user(demo["requester"])
    with audit_unwritable(live_app.runtime):  # the database refuses audit events
        answer = requester.post(
            f"{live_app.url}/requests",
            data={"title": "Unaudited", "action": "submit", "csrf_token": requester.token},
        )
    assert answer.status_code == 503
    with live_app.runtime.sessionmaker() as db:
        assert db.scalars(select(ApprovalRequest)).all() == []


def test_api_lists_requests_for_bearer_callers(live_app, as_user, demo, manifest):
    from guardrails.testing import local_access_token, provider_id_token

    rid = submit(as_user(demo["requester"]), live_app)
    issuer = live_app.runtime.sso_issuer
    token = local_access_token(issuer, manifest.sso_audiences[0], demo["approver"])
    answer = httpx.get(f"{live_app.url}/api/requests", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert [r["id"] for r in answer.json()] == [rid]
    id_token = provider_id_token(issuer, manifest.sso_client_id, demo["approver"])
    refused = httpx.get(
        f"{live_app.url}/api/requests", headers={"authorization": f"Bearer {id_token}"}
    )
    assert refused.status_code == 401  # an ID token is not an API credential


# What a hostile user or bad timing tries: two decisions at the same moment, ids out of range,
# the archive without the admin role, markup in request details under the strict
# Content-Security-Policy.
ROUNDS = 8
INLINE_STYLE = re.compile(r"<[a-z][^>]*\sstyle\s*=|<style[\s>]", re.IGNORECASE)


@pytest.fixture
def people(live_app, demo):
    """role -> a fresh signed-in client; "approver2" is the approver in a second session."""
    clients = {}

    def sign_in(email):
        client = live_app.client()
        client.token = csrf(login(client, live_app, email))
        return client

    for role in ("requester", "approver", "admin"):
        clients[role] = sign_in(demo[role])
    clients["approver2"] = sign_in(demo["approver"])
    yield clients
    for client in clients.values():
        client.close()


def decisions(live_app, request_id):
    return [
        e
        for e in live_app.audit_events()
        if e["resource"] == {"type": "request", "id": str(request_id)}
        and e["action"] in ("approval.approve", "approval.reject")
    ]


def test_conflicting_decisions_at_the_same_moment_exactly_one_wins(live_app, people):
    """Approve and reject fired together, round after round: one 200 (after the 303), one 409
    with a denied event, and the database holds what the one success event says."""
    for number in range(ROUNDS):
        rid = submit(people["requester"], live_app, f"Race {number}")
        barrier = threading.Barrier(2)
        answers = {}

        def decide(who, action, rid=rid, barrier=barrier, answers=answers):
            barrier.wait()
            answers[action] = act(people[who], live_app, rid, action, "Decided at once")

        threads = [
            threading.Thread(target=decide, args=("approver", "approve")),
            threading.Thread(target=decide, args=("approver2", "reject")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        codes = sorted(answer.status_code for answer in answers.values())
        assert codes == [200, 409], {a: (r.status_code, r.text[:300]) for a, r in answers.items()}
        loser = next(r for r in answers.values() if r.status_code == 409)
        assert "someone else" in loser.text or "cannot be" in loser.text, loser.text

        events = decisions(live_app, rid)
        successes = [e for e in events if e["result"] == "success"]
        assert len(successes) == 1, events
        assert [e["result"] for e in events].count("denied") == 1, events
        with live_app.runtime.sessionmaker() as db:
            stored = db.get(ApprovalRequest, rid)
            assert stored.status.value == successes[0]["metadata"]["to"]
            assert stored.decision == successes[0]["metadata"]["to"]


@pytest.mark.parametrize("rid", [2**31, 2**63 - 1, 2**63, 2**64 + 1, 10**40, 0, -1])
def test_request_ids_out_of_range_are_not_found(live_app, people, rid):
    assert people["admin"].get(f"{live_app.url}/requests/{rid}").status_code == 404
    assert act(people["approver"], live_app, rid, "approve").status_code == 404
    assert act(people["admin"], live_app, rid, "archive").status_code == 404


def test_only_admins_list_archived_requests(live_app, people, demo):
    rid = submit(people["requester"], live_app, "Old chair")
    act(people["approver"], live_app, rid, "approve", "ok")
    act(people["admin"], live_app, rid, "archive")
    for role in ("requester", "approver"):
        answer = people[role].get(f"{live_app.url}/", params={"archived": "1"})
        assert answer.status_code == 403, role
        assert "Old chair" not in answer.text
        event = live_app.audit_events()[-1]
        assert (event["action"], event["result"]) == ("approval.list_archived", "denied")
        assert event["actor"]["email"] == demo[role]
        assert people[role].get(f"{live_app.url}/").status_code == 200  # the flag only
    listed = people["admin"].get(f"{live_app.url}/", params={"archived": "1"})
    assert listed.status_code == 200 and "Old chair" in listed.text


def test_details_keep_their_line_breaks_without_inline_styles(live_app, people):
    requester = people["requester"]
    answer = requester.post(
        f"{live_app.url}/requests",
        data={
            "title": "Two lines",
            "details": "First line\nsecond <b>line</b>\r\nthird",
            "action": "submit",
            "csrf_token": requester.token,
        },
    )
    assert answer.status_code == 200
    assert "First line<br>second &lt;b&gt;line&lt;/b&gt;<br>third" in answer.text
    csp = answer.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "default-src 'self'" in csp
    rid = answer.url.path.rsplit("/", 1)[1]
    rejected = act(people["approver"], live_app, rid, "reject", "Not now\nmaybe in May")
    assert "Not now<br>maybe in May" in rejected.text
    for path in ("/", "/?archived=1", "/requests/new", f"/requests/{rid}"):
        page = people["admin"].get(f"{live_app.url}{path}")
        assert page.status_code == 200, path
        assert not INLINE_STYLE.search(page.text), path
