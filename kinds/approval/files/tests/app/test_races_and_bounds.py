"""Yours to edit. What a hostile user or bad timing tries: two decisions at the same moment, ids
out of range, the archive without the admin role, markup in request details under the strict
Content-Security-Policy."""

import re
import threading

import pytest

from app.models import ApprovalRequest
from guardrails.testing import login

from .test_approval_flow import act, csrf, submit

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


@pytest.mark.parametrize("rid", [2**63 - 1, 2**63, 2**64 + 1, 10**40, 0, -1])
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
        assert event["actor"]["id"] == demo[role]
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
