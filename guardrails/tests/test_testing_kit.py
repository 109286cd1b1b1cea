"""The test kit apps use: a signed-in client that keeps the CSRF token, and the demo incident
service (what `make dev` starts for an incident helper) served for real."""

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from guardrails import User, audit, create_app, render, require_user
from guardrails.testing import serve, serve_demo_incidents, signed_in


def page_app(runtime):
    app = create_app(runtime=runtime)
    router = APIRouter()

    @router.get("/")
    def home(request: Request, user: User = Depends(require_user)):
        return render(request, "signed_out.html")  # any page on base.html carries the token

    @router.post("/things")
    def change(request: Request, user: User = Depends(require_user)):
        audit.record("thing.create", resource=("thing", 1))
        return JSONResponse({"by": user.label})

    app.include_router(router)
    return app


def test_signed_in_keeps_the_csrf_token_for_forms(runtime, demo):
    with serve(page_app, runtime) as live, signed_in(live, demo["admin"]) as client:
        assert client.token
        assert client.get("/").status_code == 200
        assert client.post_form("/things", {"x": "1"}).json() == {"by": demo["admin"]}
        assert client.post("/things", data={"x": "1"}).status_code == 403  # without the token


def test_demo_incident_service_issues_tokens_and_serves_incidents():
    with serve_demo_incidents("127.0.0.1", 0, client_id="demo-app") as demo:
        assert demo.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=demo.url, timeout=10) as http:
            assert http.get("/api/incidents").status_code == 401
            token = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "incidents:read"},
                auth=("demo-app", demo.client_secret),
            ).json()["access_token"]
            listed = http.get("/api/incidents", headers={"authorization": f"Bearer {token}"})
        assert listed.status_code == 200
        assert {i["id"] for i in listed.json()["items"]} == {
            i["id"] for i in demo.store.incidents.values() if i["status"] == "open"
        }


def test_the_local_sign_in_page_is_styled_offline_and_lists_the_demo_users(tmp_path, manifest):
    """The first page a citizen developer sees (`make dev`): the app's stylesheet and icon from
    the local service itself (nothing from the network), one button per demo user with the
    role's label, and one sentence saying production uses the company's sign-in."""
    import contextlib
    import dataclasses
    import re
    from pathlib import Path

    from guardrails.core.runtime import build_runtime
    from guardrails.testing import demo_users, run_idp, test_settings

    raw = {
        **manifest.raw,
        "sso": {**manifest.raw["sso"], "role_labels": {"admin": "Administrator"}},
    }
    labelled = dataclasses.replace(manifest, raw=raw)
    assert [u.label for u in demo_users(labelled)] == ["Requester", "Approver", "Administrator"]
    with contextlib.ExitStack() as stack:
        issuer = stack.enter_context(run_idp(labelled))
        runtime = build_runtime(test_settings(tmp_path, issuer), labelled)
        live = stack.enter_context(serve(page_app, runtime))
        page = httpx.get(f"{live.url}/login", follow_redirects=True, timeout=10)
        assert page.status_code == 200 and "/oauth2/authorize" in str(page.url)
        html = page.text
        links = re.findall(r'(?:href|src)="([^"]*)"', html)
        assert "/_local/app.css" in links and "/_local/favicon.svg" in links
        assert all(link.startswith("/") for link in links), links  # no CDN, no network
        for user in demo_users(labelled):
            assert f'value="{user.email}">Sign in as {user.label}</button>' in html
        assert "In production, people sign in with your company's sign-in" in html
        css = httpx.get(f"{issuer}/_local/app.css", timeout=10)
        static = Path(__file__).parents[1] / "src/guardrails/static/app.css"
        assert css.status_code == 200 and css.text == static.read_text()
        assert css.headers["content-type"].startswith("text/css")
        with signed_in(live, "admin@example.com") as client:  # the app shows the label too
            home = client.get("/").text
            assert '<span class="role" title="role admin">Administrator</span>' in home
            assert 'rel="icon" href="/static/guardrails/favicon.svg"' in home
        icon = httpx.get(f"{live.url}/favicon.ico", follow_redirects=True, timeout=10)
        assert icon.headers["content-type"].startswith("image/svg+xml")


def test_the_local_provider_imports_its_signing_key_once(runtime, demo, monkeypatch):
    """Importing a private RSA key runs cryptography's check of it (about 50 ms), and signing
    with it takes 1 ms: the local provider signs each ID token with its key imported once,
    and local_access_token with the same key. The tokens still verify (the sign-ins work)."""
    import joserfc.jwk

    from guardrails.testing import local_access_token, login

    imported = []
    plain = joserfc.jwk.RSAKey.import_key.__func__

    def counted(cls, value, *args, **kwargs):
        key = plain(cls, value, *args, **kwargs)
        imported.append(key.is_private)
        return key

    monkeypatch.setattr(joserfc.jwk.RSAKey, "import_key", classmethod(counted))
    with serve(page_app, runtime) as live:
        for email in [*demo.values(), *demo.values()]:
            with httpx.Client(follow_redirects=True, timeout=15) as client:
                login(client, live, email)
                assert client.get(f"{live.url}/").status_code == 200
        for _ in range(3):
            assert local_access_token(runtime.settings.sso_issuer, "api", demo["admin"])
    assert imported.count(True) <= 1, imported  # the provider's private key, at most once
