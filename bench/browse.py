"""Browse a seeded app as each role in headless Chromium, time the pages, take screenshots.

Run in a generated app's folder, after `python -m guardrails.testing seed --rows 100000`, with
an interpreter that has the app and microapp-guardrails[testing] (the app's .venv, or this
repository's with PYTHONPATH=src):

    python /path/to/bench/browse.py --shots docs/images --pages 3

For each demo user of the manifest: sign in at the local provider (its real form), open the
list, follow "Older" links, and print each page's load time. Screenshots go to --shots as
<kind>-paged-<role>.png. Debian's chromium (/usr/bin/chromium) is used; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import time
import urllib.parse
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def _free(port: int | None) -> bool:
    if not port:
        return False
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, default=None, help="folder for screenshots")
    parser.add_argument("--pages", type=int, default=3, help="pages to follow per role")
    parser.add_argument("--next-link", default="Older", help="text of the next-page link")
    args = parser.parse_args()

    from app.main import build
    from guardrails.core.manifest import load_manifest
    from guardrails.core.runtime import build_runtime
    from guardrails.core.settings import Settings
    from guardrails.testing import demo_users, free_port, run_idp, serve
    from playwright.sync_api import sync_playwright

    settings = Settings.from_env()
    manifest = load_manifest(settings.manifest_path)
    # The provider at the issuer the rows were seeded with (the app's own, as `make dev` runs
    # it), so that each person's own requests are theirs here too; any free port otherwise.
    seeded = urllib.parse.urlsplit(settings.sso_issuer or manifest.sso_issuer or "")
    port = seeded.port if seeded.hostname == "localhost" and _free(seeded.port) else 0
    with run_idp(manifest, port=port or 0) as issuer:
        settings = dataclasses.replace(
            settings,
            base_url=f"http://localhost:{free_port()}",
            sso_issuer=issuer,
            session_key="browse-session-key-" + "x" * 32,
            otel_disabled=True,
            audit_fsync=False,
        )
        rt = build_runtime(settings, manifest, export_telemetry=False)
        with serve(build, rt) as app, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            for user in demo_users(manifest):
                context = browser.new_context(viewport={"width": 1200, "height": 900})
                page = context.new_page()
                page.goto(f"{app.url}/login")
                page.fill('input[name="sub"]', user.email)
                page.press('input[name="sub"]', "Enter")  # that form, as this person
                page.wait_for_load_state()
                timings = []
                for n in range(args.pages):
                    started = time.perf_counter()
                    if n:
                        link = page.get_by_role("link", name=args.next_link).last
                        if not link.count():
                            break
                        link.click()
                    else:
                        page.goto(f"{app.url}/")
                    page.wait_for_load_state()
                    timings.append((time.perf_counter() - started) * 1000)
                    rows = page.locator("table tbody tr").count()
                    if n == 1 and args.shots:
                        args.shots.mkdir(parents=True, exist_ok=True)
                        shot = args.shots / f"{manifest.kind}-paged-{user.role}.png"
                        page.screenshot(path=str(shot), full_page=True)
                print(
                    f"{user.role:10} {rows:3} rows/page  "
                    + "  ".join(f"page {i + 1}: {ms:6.1f} ms" for i, ms in enumerate(timings))
                    + f"  heading: {page.locator('h1').first.inner_text()!r}"
                )
                context.close()
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
