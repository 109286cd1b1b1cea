"""End to end, as a person would do it: `make dev` (the app plus the local OIDC provider, in
their own processes), a browser-like HTTP client that follows the real redirects, then the
audit trail verified - and broken - with the app's own command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from .conftest import REPO, progress, run

pytestmark = pytest.mark.slow


def stop(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process group of `proc` (make and what it started), if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def make_dev(app, env=None, log=None):
    """`make dev` in `app` on free ports, as its owner would start it; stopped afterwards.

    `env` replaces the environment; `log`, a list, receives the output once it stopped."""
    from guardrails.testing import free_port  # the test kit's; imported here, it is slow to load

    port, idp_port = free_port(), free_port()
    proc = subprocess.Popen(
        ["make", "dev", f"PORT={port}", f"IDP_PORT={idp_port}"],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc, signal.SIGKILL)
                pytest.fail(f"make dev did not come up:\n{proc.stdout.read()}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc, signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            stop(proc, signal.SIGKILL)
            output, _ = proc.communicate()
        if log is not None:
            log.append(output)


@pytest.fixture(scope="module")
def dev_server(set_up):
    with make_dev(set_up["defaults"]) as url:
        yield set_up["defaults"], url


class Browser:
    """An HTTP client that follows redirects and keeps cookies, like a browser tab."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(follow_redirects=True, timeout=15, headers={"accept": "text/html"})
        self.csrf = ""

    def sign_in(self, email: str) -> httpx.Response:
        form = self.http.get(f"{self.url}/")  # not signed in: app -> provider's sign-in page
        assert "/oauth2/authorize" in str(form.url), form.url
        assert "code_challenge_method=S256" in str(form.url)
        page = self.http.post(str(form.url), data={"sub": email})  # pick the demo user
        assert page.status_code == 200 and str(page.url).startswith(self.url)
        self.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
        return page

    def post(self, path: str, **data) -> httpx.Response:
        return self.http.post(f"{self.url}{path}", data={**data, "csrf_token": self.csrf})


def audit_lines(app) -> list[dict]:
    return [json.loads(x) for x in (app / "var/audit.jsonl").read_text().splitlines()]


def test_approval_end_to_end(dev_server):
    app, url = dev_server
    requester, approver = Browser(url), Browser(url)
    assert "Demo Requester" in requester.sign_in("requester@example.com").text
    assert "Demo Approver" in approver.sign_in("approver@example.com").text

    created = requester.post("/requests", title="Team offsite", details="2 days", action="submit")
    assert created.status_code == 200 and "submitted" in created.text
    rid = created.url.path.rsplit("/", 1)[1]

    refused = requester.post(f"/requests/{rid}/approve")
    assert refused.status_code == 403
    denied = audit_lines(app)[-1]
    assert denied["action"] == "approval.approve" and denied["result"] == "denied"
    assert denied["actor"]["email"] == "requester@example.com"

    queue = approver.http.get(f"{url}/").text
    assert "Team offsite" in queue and "Waiting for your decision" in queue
    approved = approver.post(f"/requests/{rid}/approve", comment="Have fun")
    assert approved.status_code == 200 and "approved" in approved.text
    assert audit_lines(app)[-1]["action"] == "approval.approve"
    assert audit_lines(app)[-1]["result"] == "success"

    ok = run(["make", "audit-verify"], cwd=app)
    assert "hash chain intact" in ok.stdout

    log = app / "var/audit.jsonl"
    original = log.read_text()
    try:
        log.write_text(original.replace('"result":"denied"', '"result":"success"', 1))
        broken = run(["make", "audit-verify"], cwd=app, check=False)
        assert broken.returncode != 0
        assert "BROKEN" in broken.stderr and "line was edited" in broken.stderr
    finally:
        log.write_text(original)


def test_forged_cookie_and_token_are_refused(dev_server):
    _app, url = dev_server
    browser = Browser(url)
    browser.sign_in("admin@example.com")
    (cookie,) = list(browser.http.cookies.jar)
    forged = httpx.Client(follow_redirects=False, headers={"accept": "text/html"})
    forged.cookies.set(cookie.name, cookie.value[:-3] + "xyz", domain=cookie.domain)
    page = forged.get(f"{url}/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    api = httpx.get(
        f"{url}/api/requests", headers={"authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}
    )
    assert api.status_code == 401


def test_dashboard_sign_in_and_an_audited_export(set_up):
    app = set_up["dashboard"]
    with make_dev(app) as url:
        viewer, exporter = Browser(url), Browser(url)
        summary = viewer.sign_in("viewer@example.com")
        assert "<svg" in summary.text and "Tickets by category" in summary.text
        assert viewer.http.get(f"{url}/tickets.csv").status_code == 403
        exporter.sign_in("exporter@example.com")
        csv_file = exporter.http.get(f"{url}/tickets.csv", params={"status": "open"})
        assert csv_file.status_code == 200 and csv_file.text.startswith("id,opened_on,team")
    export = audit_lines(app)[-1]
    assert (export["action"], export["actor"]["email"]) == ("data.export", "exporter@example.com")
    assert export["metadata"]["filter"]["status"] == "open" and export["metadata"]["rows"] > 0
    assert "hash chain intact" in run(["make", "audit-verify"], cwd=app).stdout


def test_incident_helper_sign_in_and_an_audited_acknowledge(set_up):
    app = set_up["incident-helper"]
    with make_dev(app) as url:
        responder = Browser(url)
        listing = responder.sign_in("responder@example.com")
        assert "Open incidents" in listing.text and "INC1001" in listing.text
        done = responder.post("/incidents/INC1001/acknowledge")
        assert done.status_code == 200 and "acknowledged" in done.text
        assert "responder@example.com" in done.text  # the who-did-what table
    event = audit_lines(app)[-1]
    assert (event["action"], event["resource"]["id"]) == ("incident.acknowledge", "INC1001")
    assert event["metadata"]["outcome"] == "acknowledged"


# Last in this module: the apps then hold what the tests above made (requests, notes), so the
# pages that show one are checked too.
AXE = REPO / ".tools/axe/node_modules/axe-core/axe.min.js"


def test_every_page_of_every_kind_passes_axe_as_each_role(set_up):
    """`make a11y` in each kind's app, as its CI runs it: every page reached from the start page
    as each demo user (and the local sign-in page, a not-found page, the sign-out pages),
    axe-core's WCAG 2.1 A/AA rules in headless Chromium: no serious or critical violation, no
    page wider than a 390 px phone. The three apps are checked at the same time (mostly waiting
    on the browser: a third of the time)."""
    from concurrent.futures import ThreadPoolExecutor

    from guardrails.testing.a11y import missing

    reason = missing(AXE if AXE.is_file() else None)
    if reason:
        pytest.skip(f"{reason} (make setup installs axe-core with npm; .ci/run installs chromium)")
    # each kind's pages, plus the not-found page and the two pages of signing out
    least_pages = {"defaults": 10, "dashboard": 12, "incident-helper": 8}
    progress(f"make a11y in {len(least_pages)} apps at once (axe-core in Chromium)")

    def check(name: str) -> str:
        args = ["make", "a11y", f"AXE_JS={AXE}", "A11Y_ARGS=--no-screenshots"]
        result = run(args, set_up[name], check=False)
        assert "axe-core (WCAG" in result.stdout, result.stdout + result.stderr
        report = result.stdout[result.stdout.index("axe-core (WCAG") :]
        progress(f"{name}: {report.splitlines()[0]}")
        assert result.returncode == 0 and "critical 0, serious 0," in report, report
        assert int(re.search(r"(\d+) page\(s\)", report)[1]) >= least_pages[name], report
        return report

    with ThreadPoolExecutor(max_workers=len(least_pages)) as pool:
        for future in [pool.submit(check, name) for name in least_pages]:
            future.result()
