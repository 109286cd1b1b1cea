"""`make a11y`: every page of the app, as each demo user, checked by axe-core in headless Chromium.

axe-core (npm `axe-core`, its `axe.min.js`) runs in the page through Playwright, which drives the
system's Chromium (nothing is downloaded). From the start page, each demo user follows the
app's own links (same origin, GET; one page per path shape: /requests/7 and /requests/8 are
one page), so a new page is checked without being listed anywhere. For each page: axe's
WCAG 2.1 A/AA rules, and at phone width (390 px) whether the page is wider than the screen.
The local sign-in page is checked too. Screenshots at desktop and phone width go to `--out`.

Fails (exit 1) on a serious or critical violation, or a page wider than a phone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
IMPACTS = ("critical", "serious", "moderate", "minor")
FAILING = ("critical", "serious")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Links a crawl must not follow: they sign out, download, or leave the pages.
SKIP = re.compile(r"^/(logout|login|static/|healthz|api/)|\.(csv|json|svg|png|ico)$")


@dataclass
class Page:
    """One page as one user saw it."""

    user: str
    path: str
    violations: list[dict] = field(default_factory=list)  # axe: id, impact, help, nodes
    overflow_px: int = 0  # how much wider than a phone's screen the page is

    def failures(self) -> list[str]:
        found = [
            f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['targets'][:3])}"
            for v in self.violations
            if v["impact"] in FAILING
        ]
        if self.overflow_px > 0:
            found.append(f"{self.overflow_px} px wider than a {PHONE['width']} px phone screen")
        return found


def chromium() -> str | None:
    """The system's Chromium (CHROMIUM names another)."""
    named = os.environ.get("CHROMIUM")
    return next((c for c in ([named] if named else CHROMIUMS) if c and Path(c).exists()), None)


def axe_script(explicit: str | None = None) -> Path | None:
    """axe.min.js: AXE_JS, or npm's install of axe-core under .tools/ or node_modules/."""
    candidates = [explicit or os.environ.get("AXE_JS") or ""]
    candidates += [f"{d}/node_modules/axe-core/axe.min.js" for d in (".tools", ".")]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def missing(axe: Path | None) -> str | None:
    """Why the check cannot run here, or None."""
    if chromium() is None:
        return "no Chromium found (Debian: apt install chromium; or set CHROMIUM=<path>)"
    if axe is None:
        return "axe-core not found (npm install --prefix .tools axe-core; or set AXE_JS=<path>)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (microapp-guardrails[testing] has it)"
    return None


def shape(url: str) -> str:
    """A page's shape: its path, segments holding digits as {id} (filters and sorting in the
    query string show the same page)."""
    path = urlsplit(url).path
    return "/".join("{id}" if re.search(r"\d", seg) else seg for seg in path.split("/"))


def _slug(user: str, path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{user.split('@')[0]}{path}").strip("-") or "start"


def check_pages(
    base_url: str,
    users: list[str],
    axe: Path,
    shots: Path | None = None,
    max_pages: int = 25,
    say=print,
) -> list[Page]:
    """Sign in as each user through the local sign-in page and check every page reached."""
    from playwright.sync_api import sync_playwright

    source = axe.read_text("utf-8")
    pages: list[Page] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            for number, user in enumerate(users, start=1):
                # axe is added to every document before its own scripts: the page's strict
                # Content-Security-Policy does not apply to it, nothing is loaded.
                context = browser.new_context(viewport=DESKTOP)
                context.add_init_script(script=source)
                tab = context.new_page()
                tab.goto(f"{base_url}/login")
                if number == 1:  # the local sign-in page, once
                    pages.append(_check(tab, "sign-in", "/login", shots))
                tab.click(f'button[name="sub"][value="{user}"]')
                tab.wait_for_url(f"{base_url}/**")
                seen: set[str] = set()
                queue = [urlsplit(tab.url).path or "/"]
                while queue and len(seen) < max_pages:
                    path = queue.pop(0)
                    if shape(path) in seen:
                        continue
                    seen.add(shape(path))
                    tab.goto(base_url + path)
                    pages.append(_check(tab, user, path, shots))
                    for href in tab.eval_on_selector_all(
                        "a[href]", "links => links.map(a => a.href)"
                    ):
                        parts = urlsplit(href)
                        if href.startswith(base_url) and not SKIP.search(parts.path):
                            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
                if number == 1:  # pages no link leads to, once: an error page and signing out
                    tab.goto(f"{base_url}/no-such-page")
                    pages.append(_check(tab, user, "/no-such-page (not found)", shots))
                    tab.goto(f"{base_url}/")
                    tab.click('form[action="/logout"] button[type="submit"]')
                    tab.wait_for_load_state()
                    # the provider's own sign-out page (confirm), then the app's signed-out page
                    pages.append(_check(tab, user, f"{shape(tab.url)} (signing out)", shots))
                    confirm = tab.locator('form button[type="submit"]')
                    if not tab.url.startswith(base_url) and confirm.count() == 1:
                        confirm.click()
                        tab.wait_for_load_state()
                        pages.append(_check(tab, user, f"{shape(tab.url)} (signed out)", shots))
                checked = sum(page.user == user for page in pages)
                say(f"    {user}: {checked} page(s) checked ({number}/{len(users)} users)")
                context.close()
        finally:
            browser.close()
    return pages


def _check(tab, user: str, path: str, shots: Path | None) -> Page:
    result = tab.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations'], iframes: false})",
        AXE_TAGS,
    )
    violations = [
        {
            "id": v["id"],
            "impact": v["impact"] or "minor",
            "help": v["help"],
            "targets": [" ".join(map(str, n["target"])) for n in v["nodes"]],
        }
        for v in result["violations"]
    ]
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=shots / f"{_slug(user, path)}-desktop.png", full_page=True)
    tab.set_viewport_size(PHONE)
    overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if shots is not None:
        tab.screenshot(path=shots / f"{_slug(user, path)}-phone.png", full_page=True)
    tab.set_viewport_size(DESKTOP)
    return Page(user=user, path=path, violations=violations, overflow_px=max(0, int(overflow)))


def summary(pages: list[Page]) -> str:
    """Violations by impact over all pages, then each failing page."""
    counts = Counter(v["impact"] for p in pages for v in p.violations)
    users = len({p.user for p in pages})
    lines = [
        f"axe-core (WCAG 2.1 A/AA): {len(pages)} page(s) as {users} user(s); violations by "
        "impact: " + ", ".join(f"{impact} {counts.get(impact, 0)}" for impact in IMPACTS)
    ]
    for page in pages:
        for failure in page.failures():
            lines.append(f"  {page.user} {page.path}: {failure}")
    return "\n".join(lines)


def run(manifest, out: Path | None, axe_js: str | None, port: int, idp_port: int) -> int:
    """`python -m guardrails a11y`: the app and the local sign-in service, then the check."""
    from app.main import build  # the owner's app factory, as make dev and the tests use it

    from guardrails.core.runtime import build_runtime
    from guardrails.core.settings import Settings
    from guardrails.testing import serve
    from guardrails.testing.devserver import demo_users, dev_stack

    axe = axe_script(axe_js)
    reason = missing(axe)
    if reason:
        print(f"a11y check skipped: {reason}")
        return 0
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the sign-in service's requests
    with dev_stack(manifest, port, idp_port):
        runtime = build_runtime(Settings.from_env(), manifest)
        with serve(build, runtime) as live:
            users = [u.email for u in demo_users(manifest)]
            print(f"==> checking the app's pages as {len(users)} demo user(s) with axe-core")
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
            pages = check_pages(live.url, users, axe, out)
    print(summary(pages))
    if out is not None:
        print(f"Screenshots (desktop and phone): {out}/")
    return 1 if any(p.failures() for p in pages) else 0
