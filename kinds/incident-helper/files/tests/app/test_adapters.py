"""Yours to edit. Both incident adapters against a local server speaking the documented shapes
(generic REST and PagerDuty REST API v2), over real HTTP with a real client-credentials token."""

import httpx
import pytest

from app.incidents import ADAPTERS, NotFound, ProviderError, Refused
from guardrails.testing import serve_demo_incidents

SECRET = "adapter-tests-secret"  # pragma: allowlist secret (the demo service's, made up here)


@pytest.fixture(scope="module")
def service():
    with serve_demo_incidents(client_id="adapter-tests", client_secret=SECRET) as demo:
        yield demo.url, demo.store


def client(base: str, prefix: str) -> httpx.Client:
    token = httpx.post(
        f"{base}/oauth/token",
        auth=("adapter-tests", SECRET),
        data={"grant_type": "client_credentials", "scope": "incidents:read incidents:write"},
    )
    token.raise_for_status()
    return httpx.Client(
        base_url=f"{base}/{prefix}",
        headers={"authorization": f"Bearer {token.json()['access_token']}"},
    )


@pytest.mark.parametrize(("kind", "prefix"), [("generic", "api"), ("pagerduty", "pagerduty")])
def test_adapter_round_trip(service, kind, prefix):
    base, store = service
    adapter = ADAPTERS[kind](client(base, prefix))
    incidents = adapter.open_incidents()
    assert incidents and all(i.status in ("open", "acknowledged") for i in incidents)
    first = incidents[0]
    assert adapter.incident(first.id).title == first.title
    assert adapter.acknowledge(first.id, by="r@example.com").status == "acknowledged"
    assert store.incidents[first.id]["updated_by"] == "r@example.com"
    targets = adapter.targets(first.id)
    assert [t.id for t in targets] == ["1", "2", "3"] and "Secondary" in targets[1].name
    store.incidents[first.id]["escalation_level"] = 1  # the store is shared by both adapters
    assert adapter.escalate(first.id, "3", by="r@example.com").escalation_level == 3
    with pytest.raises(Refused):  # escalation never goes back down (the service refuses: 400)
        adapter.escalate(first.id, "2", by="r@example.com")
    note = adapter.add_note(first.id, f"{kind}: looking into it", by="r@example.com")
    assert note.author == "r@example.com"
    assert adapter.notes(first.id)[-1].text == f"{kind}: looking into it"


def test_token_is_required_and_bounded_to_scope(service):
    base, _ = service
    assert httpx.get(f"{base}/api/incidents").status_code == 401
    read_only = httpx.post(
        f"{base}/oauth/token",
        auth=("adapter-tests", SECRET),
        data={"grant_type": "client_credentials", "scope": "incidents:read"},
    )
    token = read_only.json()["access_token"]
    refused = httpx.post(
        f"{base}/api/incidents/INC1001/acknowledge",
        json={"by": "x"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 403
    wrong = httpx.post(
        f"{base}/oauth/token",
        auth=("adapter-tests", "wrong"),
        data={"grant_type": "client_credentials"},
    )
    assert wrong.status_code == 401


def test_unknown_incident_and_bad_level_are_clear_errors(service):
    base, _ = service
    generic = ADAPTERS["generic"](client(base, "api"))
    with pytest.raises(NotFound, match="does not know this incident"):
        generic.incident("NOPE")
    pagerduty = ADAPTERS["pagerduty"](client(base, "pagerduty"))
    with pytest.raises(NotFound, match="does not know this incident"):  # the page says 404
        pagerduty.acknowledge("NOPE", by="x@example.com")
    with pytest.raises(ProviderError, match="escalation level"):
        pagerduty.escalate("INC1001", "boss", by="x@example.com")


def test_ids_that_could_change_the_url_and_odd_answers_are_clear_errors(service):
    base, _ = service
    for kind, prefix in (("generic", "api"), ("pagerduty", "pagerduty")):
        adapter = ADAPTERS[kind](client(base, prefix))
        for bad in ("INC1001?", "INC1001#x", "..", "a/b", "INC1001\t", ""):
            with pytest.raises(ProviderError, match="not an incident id"):
                adapter.acknowledge(bad, by="x@example.com")
    pagerduty = ADAPTERS["pagerduty"](client(base, "pagerduty"))
    with pytest.raises(ProviderError, match="escalation level"):
        pagerduty.escalate("INC1001", "\u00b2", by="x@example.com")  # "2" as superscript
    crossed = ADAPTERS["generic"](client(base, "pagerduty"))  # answers in the other API's shapes
    with pytest.raises(ProviderError, match="unexpected shape"):
        crossed.open_incidents()
