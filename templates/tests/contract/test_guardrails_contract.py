"""Managed by the microapp template: `copier update` replaces this file.

The guardrails contract: this app, as its owner built it, still boots with its manifest, signs
people in through the identity provider, refuses forged forms, and keeps a verifiable audit
trail. The guardrails' own tests run once, in the CoE's repository; these few run here.
"""

import httpx

from guardrails import verify_audit
from guardrails.testing import login


def test_boots_with_its_manifest(live_app, manifest):
    health = httpx.get(f"{live_app.url}/healthz")
    assert health.status_code == 200
    assert health.json()["app_id"] == manifest.app_id


def test_every_demo_role_can_sign_in(live_app, demo):
    for role, email in demo.items():
        with live_app.client() as client:
            page = login(client, live_app, email)
            assert str(page.url).startswith(live_app.url), role
            assert page.status_code < 500, role
            assert "microapp-session" in "".join(client.cookies.keys()), role


def test_forms_without_the_csrf_token_are_refused(live_app, demo):
    with live_app.client() as client:
        login(client, live_app, next(iter(demo.values())))
        forged = client.post(f"{live_app.url}/logout", data={})
    assert forged.status_code == 403
    assert live_app.audit_events()[-1]["action"] == "security.csrf"


def test_the_audit_chain_verifies(live_app, demo):
    with live_app.client() as client:
        login(client, live_app, next(iter(demo.values())))
    events = live_app.audit_events()
    assert events and events[-1]["action"] == "auth.login"
    result = verify_audit(live_app.audit_file)
    assert result.ok and result.events == len(events)
