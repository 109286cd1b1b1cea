"""Managed by the microapp template. A tiny app made only of guardrails, so these tests do not
depend on the owner's code in src/app."""

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from guardrails import User, audit, create_app, require_role, require_user
from guardrails.testing import serve


def tiny_app(runtime):
    app = create_app(runtime=runtime)
    router = APIRouter()

    @router.get("/")
    def home(request: Request, user: User = Depends(require_user)):
        return JSONResponse(
            {
                "user": user.id,
                "roles": sorted(user.roles),
                "via": user.via,
                "csrf": request.session.get("csrf"),
            }
        )

    @router.get("/admin-only")
    def admin_only(user: User = Depends(require_role("admin"))):
        return {"ok": True}

    @router.post("/change")
    def change(user: User = Depends(require_user)):
        audit.record("thing.change", resource=("thing", 1))
        return {"changed": True}

    app.include_router(router)
    return app


@pytest.fixture
def guarded(runtime):
    with serve(tiny_app, runtime) as live:
        yield live


@pytest.fixture
def non_admin(demo):
    return next(email for role, email in demo.items() if role != "admin")
