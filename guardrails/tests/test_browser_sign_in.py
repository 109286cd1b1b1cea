"""A real browser signs in through the OpenID Certified provider's own login page: headless
Chromium (Debian's `chromium`, /usr/bin/chromium) driven by Playwright, against npm
`oidc-provider` 9.x (guardrails.testing.oidc_provider) and an app whose pages extend the
guardrails layout. Nothing is downloaded: Playwright's wheel brings its driver, the browser is
the system's (`playwright install` is never needed). Skipped, saying why, without Chromium, the
playwright package, node or oidc-provider (`.ci/run` and `make setup` install them)."""

import functools
import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import APIRouter, Depends, Request

from guardrails import User, create_app, render, require_user
from guardrails.testing.oidc_provider import unavailable

from .test_certified_provider import certified  # noqa: F401 - the fixture, used below

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet: no sandbox (CI runs as root), no GPU, no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCOPES = ["openid", "email", "profile", "groups"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium package (.ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (the template's dev dependencies have it)"
    return unavailable()


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

HOME = """{% extends "base.html" %}
{% block title %}Home{% endblock %}
{% block content %}
<section class="card">
  <h1>Signed in</h1>
  <p>E-mail: <span id="email">{{ user.email }}</span></p>
  {% if user.has_role("admin") %}<p id="admins-only">Only admins see this.</p>{% endif %}
</section>
{% endblock %}
"""


def page_app(runtime, pages: Path):
    """An app with one HTML page, laid out by the guardrails' base.html (name, roles, Sign out)."""
    app = create_app(runtime=runtime, pages=pages)
    router = APIRouter()

    @router.get("/")
    def home(request: Request, user: User = Depends(require_user)):
        return render(request, "home.html")

    app.include_router(router)
    return app


@pytest.fixture
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def _local_only(route):
    """Loopback only: the provider's pages @import a web font, which a closed network refuses."""
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def _sign_in_at_provider(page, issuer: str, login: str) -> None:
    """Fill in the provider's own login form, then its consent page if it shows one."""
    from playwright.sync_api import expect

    expect(page.locator('input[name="login"]')).to_be_visible()
    assert page.url.startswith(issuer.rstrip("/")), page.url
    page.fill('input[name="login"]', login)
    page.fill('input[name="password"]', "any password")
    page.click('button[type="submit"]')
    page.wait_for_load_state()
    for _ in range(3):  # consent ("Continue"), when the provider asks for it
        if not page.url.startswith(issuer.rstrip("/")):
            break
        page.locator('input[name="prompt"][value="consent"]').wait_for(state="attached")
        page.click('button[type="submit"]')
        page.wait_for_load_state()


def test_headless_chromium_signs_in_and_out_at_the_certified_provider(
    certified,  # noqa: F811 - the fixture imported above
    chromium,
    tmp_path,
):
    from playwright.sync_api import expect

    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "home.html").write_text(HOME)
    op, live = certified(app=functools.partial(page_app, pages=pages), scopes=SCOPES)
    context = chromium.new_context()
    context.route("**/*", _local_only)
    page = context.new_page()
    page.set_default_timeout(15_000)

    # The app sends the browser to the provider's own login page.
    page.goto(f"{live.url}/")
    _sign_in_at_provider(page, op.issuer, "alice")

    # Back in the app, signed in: name, e-mail, role and the admin-only element.
    page.wait_for_url(f"{live.url}/")
    who = page.locator(".who")
    expect(who).to_contain_text("Alice")
    expect(page.locator("#email")).to_have_text("alice@example.com")
    expect(who.locator(".role")).to_have_text(["Admin"])  # the role's label (sso.role_labels)
    expect(page.locator("#admins-only")).to_be_visible()
    screenshot = tmp_path / "signed-in.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.exists() and screenshot.read_bytes().startswith(b"\x89PNG")

    # Sign out (POST /logout): the provider confirms, then sends the browser to /signed-out.
    page.click('button:has-text("Sign out")')
    expect(page.locator('button[name="logout"][value="yes"]')).to_be_visible()
    assert page.url.startswith(op.metadata()["end_session_endpoint"]), page.url
    page.click('button[name="logout"][value="yes"]')
    page.wait_for_url(f"{live.url}/signed-out")
    expect(page.locator("h1")).to_have_text("You are signed out")

    # The provider asks again: its login form, not straight back into the app.
    page.goto(f"{live.url}/")
    _sign_in_at_provider(page, op.issuer, "bob")  # and another person can sign in
    page.wait_for_url(f"{live.url}/")
    expect(page.locator(".who")).to_contain_text("Bob")
    expect(page.locator(".who .role")).to_have_text(["Approver"])
    expect(page.locator("#admins-only")).to_have_count(0)
    context.close()

    actions = [(e["action"], e["result"]) for e in live.audit_events()]
    assert actions.count(("auth.login", "success")) == 2
    assert ("auth.logout", "success") in actions
