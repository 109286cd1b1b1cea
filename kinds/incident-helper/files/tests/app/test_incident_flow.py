"""Yours to edit. The incident helper end to end: real sign-in, the governed connector to the
demo incident service (started by app/dev.py), audited actions, who-did-what."""

import re

import pytest

from guardrails.testing import login


@pytest.fixture
def responder(live_app, demo):
    client = live_app.client()
    page = login(client, live_app, demo["responder"])
    client.token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    yield client
    client.close()


def post(client, app, path, **data):
    return client.post(f"{app.url}{path}", data={**data, "csrf_token": client.token})


def test_open_incidents_are_listed(live_app, responder):
    page = responder.get(f"{live_app.url}/")
    assert page.status_code == 200
    assert "INC1001" in page.text and "Checkout latency" in page.text
    assert "INC1006" not in page.text  # resolved


def test_actions_are_audited_with_id_and_outcome_and_shown(live_app, responder, demo):
    assert post(responder, live_app, "/incidents/INC1002/acknowledge").status_code == 200
    assert post(responder, live_app, "/incidents/INC1002/escalate", target="2").status_code == 200
    shown = post(responder, live_app, "/incidents/INC1002/notes", text="Rolled back deploy 42")
    assert shown.status_code == 200 and "Rolled back deploy 42" in shown.text
    events = [e for e in live_app.audit_events() if e["action"].startswith("incident.")]
    intents = [e["action"] for e in events if e["result"] == "intent"]
    events = [e for e in events if e["result"] == "success"]
    assert intents == [e["action"] for e in events]  # each call's intent came first
    assert [(e["action"], e["metadata"]["outcome"]) for e in events] == [
        ("incident.acknowledge", "acknowledged"),
        ("incident.escalate", "level 2"),
        ("incident.note", "added"),
    ]
    assert {e["resource"]["id"] for e in events} == {"INC1002"}
    assert {e["actor"]["email"] for e in events} == {demo["responder"]}
    assert shown.text.count(demo["responder"]) >= 3  # the who-did-what table


def test_a_refused_call_is_audited_as_a_failure(live_app, responder):
    answer = post(responder, live_app, "/incidents/INC1002/escalate", target="9")
    assert answer.status_code == 400  # the service refused it as invalid: the user's to change
    event = live_app.audit_events()[-1]
    assert (event["action"], event["result"]) == ("incident.escalate", "failure")


@pytest.mark.parametrize("bad", ["INC1002%3F", "INC1002%23x", "%2E%2E", "INC1002%09"])
def test_an_id_that_could_change_the_called_url_is_refused_before_any_call(
    live_app, responder, bad
):
    assert post(responder, live_app, f"/incidents/{bad}/acknowledge").status_code == 422
    assert responder.get(f"{live_app.url}/incidents/{bad}").status_code == 422
    assert "incident.acknowledge" not in {e["action"] for e in live_app.audit_events()}
    assert "acknowledged" not in responder.get(f"{live_app.url}/incidents/INC1002").text


def test_actions_are_rate_limited_per_user(live_app, responder):
    codes = [
        post(responder, live_app, "/incidents/INC1003/notes", text=f"n{i}").status_code
        for i in range(21)
    ]
    assert codes[:20] == [200] * 20 and codes[20] == 429


def test_people_without_a_role_are_refused(live_app, demo):
    with live_app.client() as client:
        login(client, live_app, demo["admin"])  # admins may act too
        assert client.get(f"{live_app.url}/incidents/INC1001").status_code == 200


@pytest.mark.parametrize(
    ("action", "data"),
    [("acknowledge", {}), ("escalate", {"target": "2"}), ("notes", {"text": "Anyone?"})],
)
def test_an_action_on_an_unknown_incident_is_not_found(live_app, responder, action, data):
    """The incident API's 404 is the page's 404 (not a 502), and the failure is audited."""
    answer = post(responder, live_app, f"/incidents/INC999999/{action}", **data)
    assert answer.status_code == 404, answer.text
    event = live_app.audit_events()[-1]
    assert event["result"] == "failure" and event["resource"]["id"] == "INC999999"
    assert responder.get(f"{live_app.url}/incidents/INC999999").status_code == 404


def test_pages_have_no_inline_styles(live_app, responder):
    """The strict Content-Security-Policy blocks inline styles: no page may use them."""
    for path in ("/", "/incidents/INC1001"):
        page = responder.get(f"{live_app.url}{path}")
        assert page.status_code == 200, path
        assert not re.search(r"<[a-z][^>]*\sstyle\s*=|<style[\s>]", page.text, re.I), path
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]


def test_one_user_cannot_use_up_the_incident_service_for_everyone(live_app, responder, demo):
    """Page views are limited per user (429, the user's own budget, Retry-After), before the
    connector's app-wide budget runs out for the whole on-call team (issue 16, item 6)."""
    for _ in range(29):  # the landing page after sign-in was the first of 30
        assert responder.get(f"{live_app.url}/").status_code == 200
    refused = responder.get(f"{live_app.url}/", headers={"accept": "text/html"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "You have reached the limit of 30 per minute" in refused.text
    admin = live_app.client()
    login(admin, live_app, demo["admin"])
    assert admin.get(f"{live_app.url}/").status_code == 200  # a colleague is not affected
    admin.close()


def test_an_exhausted_connector_says_so_with_retry_after(live_app, responder):
    connector = live_app.runtime.connectors.get("incidents")
    while not connector.limiter.take():  # the app-wide budget, used up by others
        pass
    answer = responder.get(f"{live_app.url}/", headers={"accept": "text/html"})
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
    assert "app-wide budget of the incidents connector" in answer.text
