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
