"""The fleet: 20 apps generated at every release of this template (and at the untagged commit
276b400 that real apps record), each edited by its owner, then

- the CoE's fleet report over them (terminal table, JSON, HTML opened in headless Chromium),
- every app updated to the newest release with zero conflicts and zero owner lines lost.

Apps are rendered in-process by copier from a clone of this repository's history with its real
release tags plus stand-ins for this working tree (tests/releases.py); none is set up.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update
from guardrails.core.manifest import upgrade, validate

from .conftest import REPO, progress, run
from .fleet_apps import owner_edits
from .releases import NEXT, PATCH, commit_all, git, tag_stand_in_releases

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)
KINDS = ["approval", "dashboard", "incident-helper"]
CLASSES = ["internal", "public", "internal", "restricted"]
# Five generations: the two 0.x releases (approval only then), the untagged commit after 0.2.0,
# 1.0.0, and this working tree.
PLAN = ["v0.1.0"] * 3 + ["v0.2.0"] * 3 + ["276b400"] * 4 + ["v1.0.0"] * 5 + [f"v{NEXT}"] * 5
TODAY = dt.date.today() + dt.timedelta(days=20)  # the 7-day apps have expired by then


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    tpl = tmp_path_factory.mktemp("template") / "microapp-templates"
    run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(tpl)], cwd=REPO)
    tag_stand_in_releases(tpl)
    return tpl


def generate(template: Path, root: Path, n: int, ref: str) -> tuple[Path, str, list]:
    """App number n, copied at `ref`, committed, edited by its owner, committed again."""
    answers = {
        "app_name": f"Fleet app {n}",
        "owner_email": f"team{n % 7}@example.com",
        "kind": "approval" if ref.startswith("v0.") else KINDS[n % 3],
        "data_classification": CLASSES[n % 4],
        "expiry_days": 7 if n % 6 == 0 else 45 if n % 6 == 1 else 365,
    }
    app = root / f"app-{n:02d}"
    run_copy(str(template), app, data=answers, defaults=True, unsafe=False, vcs_ref=ref, quiet=True)
    git(app, "init", "-q", "-b", "main")
    commit_all(app, f"Generated at {ref}")
    added = owner_edits(app, n, connector=n % 2 == 0)
    commit_all(app, "Owner edits")
    return app, ref, added


def in_parallel(function, *argument_lists):
    """Each call in its own process (copier changes the working directory), on every core."""
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1), mp_context=context) as pool:
        return list(pool.map(function, *argument_lists))


@pytest.fixture(scope="module")
def fleet(template, tmp_path_factory) -> dict[Path, tuple[str, list[tuple[str, str]]]]:
    """app folder -> (the version it was generated at, the owner's added lines)."""
    root = tmp_path_factory.mktemp("fleet")
    progress(f"generating {len(PLAN)} apps at {', '.join(dict.fromkeys(PLAN))}")
    made = in_parallel(generate, [template] * len(PLAN), [root] * len(PLAN), range(len(PLAN)), PLAN)
    return {app: (ref, added) for app, ref, added in made}


def fleet_cli(*args: str, cwd: Path) -> tuple[int, str]:
    done = run([sys.executable, "-m", "tools.fleet", *args], cwd=cwd, check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, done.stdout


def test_the_report_names_what_needs_action(fleet, template, tmp_path):
    apps = list(fleet)
    listing = tmp_path / "apps.txt"
    listing.write_text("# the fleet\n" + "\n".join(str(a) for a in apps[1:]) + "\n")
    code, out = fleet_cli(
        f"file://{apps[0]}",  # a git URL: cloned
        "--from", str(listing),
        "--template", str(template),
        "--today", TODAY.isoformat(),
        "--json", str(tmp_path / "fleet.json"),
        "--html", str(tmp_path / "fleet.html"),
        cwd=REPO,
    )  # fmt: skip
    assert code == 1 and f"{len(PLAN)} app(s)" in out
    report = json.loads((tmp_path / "fleet.json").read_text())
    assert report["summary"]["latest_release"] == PATCH
    by_id = {a["app_id"]: a for a in report["apps"]}
    assert len(by_id) == len(PLAN)
    releases = git(template, "tag", "-l", "v*").split()
    for n, (ref, _added) in enumerate(fleet.values()):
        row = by_id[f"fleet-app-{n}"]
        assert (
            row["owner"] == f"team{n % 7}@example.com" and row["classification"] == CLASSES[n % 4]
        )
        if ref == "276b400":
            assert row["template_version"].startswith("0.2.0.post")
        else:
            assert row["template_version"] == ref[1:]
        behind = (
            len(releases)
            - 1
            - sorted(releases, key=_key).index("v0.2.0" if ref == "276b400" else ref)
        )
        assert row["releases_behind"] == behind, (ref, row)
        assert row["expiry"] == {0: "expired", 1: "soon"}.get(n % 6, "ok"), row
        if ref.startswith("v0.") or ref == "276b400":
            assert any("MAG-2026-002" in a for a in row["advisories"]), row
        assert row["policy"] in {"pass", "warn", "deny", "no policies"}, row
        assert row["drift"] == ("n/a" if ref.startswith("v0.") or ref == "276b400" else "clean")
        if n % 2 == 0 and ref != "v0.1.0" and ref != "v0.2.0":
            # the owner's new connector is not on the CoE's allow-list yet
            assert row["policy"] == "deny" and "connector-allow-list" in " ".join(
                row["policy_rules"]
            )
        assert row["last_update"] == dt.date.today().isoformat()
        assert row["actions"], row  # every app is behind PATCH at least
    assert f"fleet-app-0: expired on {by_id['fleet-app-0']['expires']}" in out


def _key(tag: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", tag)[:3])


def test_a_current_healthy_app_needs_no_action_and_a_withdrawn_release_does(fleet, template):
    healthy = next(
        app for n, (app, (ref, _)) in enumerate(fleet.items()) if ref == f"v{NEXT}" and n % 2
    )
    code, out = fleet_cli(str(healthy), "--template", str(template), "--max-behind", "1",
                          cwd=REPO)  # fmt: skip
    assert code == 0 and "0 need action" in out, out
    (healthy / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "microapp-guardrails"\nversion = "1.0.0"\n'
    )
    advisories = healthy.parent / "advisories.yaml"
    advisories.write_text(
        "advisories:\n  - {id: MAG-TEST-1, status: withdrawn, affected: '==1.0.0',\n"
        "     summary: a release the CoE withdrew}\n"
    )
    code, out = fleet_cli(str(healthy), "--template", str(template), "--max-behind", "1",
                          "--advisories", str(advisories), cwd=REPO)  # fmt: skip
    assert code == 1 and "MAG-TEST-1 (withdrawn)" in out
    (healthy / "uv.lock").unlink()
    policy = healthy / "policy/microapp.rego"  # a template-owned file edited by hand
    kept = policy.read_text()
    policy.write_text(kept + "\n# relaxed by hand\n")
    code, out = fleet_cli(str(healthy), "--template", str(template), "--max-behind", "1",
                          cwd=REPO)  # fmt: skip
    policy.write_text(kept)
    assert code == 1 and "drift: template-owned files changed by hand: policy/microapp.rego" in out


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (.ci/run installs it)")
def test_the_html_page_sorts_and_charts_offline_in_chromium(fleet, template, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "fleet.html"
    fleet_cli(*map(str, fleet), "--template", str(template), "--today", TODAY.isoformat(),
              "--html", str(page_file), cwd=REPO)  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        assert len(page.locator("#fleet tbody tr").all()) == len(PLAN)
        versions = {ref for ref, _ in fleet.values()}
        assert page.locator("svg rect.bar").count() == len(versions)
        page.get_by_role("columnheader", name="behind").click()
        page.get_by_role("columnheader", name="behind").click()  # descending
        first = page.locator("#fleet tbody tr").first.locator("td").nth(8).inner_text()
        assert int(first) == max(int(t) for t in page.locator("#fleet tbody td:nth-child(9)")
                                 .all_inner_texts())  # fmt: skip
        page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
        browser.close()
    assert requests == [page_file.as_uri()], requests  # no network assets
    progress(f"fleet page screenshot: {tmp_path / 'fleet.png'}")


def test_every_app_updates_to_the_newest_release_without_conflicts_or_lost_lines(fleet, template):
    """The goal of issue 18: owner edits everywhere owners are invited to make them, and every
    app, from every release, updated with zero conflicts and zero owner lines lost."""
    progress(f"updating {len(fleet)} apps to v{PATCH}")
    results = in_parallel(update_and_look, list(fleet), [added for _ref, added in fleet.values()])
    for (ref, _added), (name, conflicted, lost, problems, commit) in zip(
        fleet.values(), results, strict=True
    ):
        assert not conflicted, (ref, name, conflicted)
        assert not lost, (ref, name, lost)
        assert not problems, (ref, name, problems)
        assert commit == f"v{PATCH}", (ref, name, commit)


def update_and_look(app: Path, added: list[tuple[str, str]]):
    """Update one app to v{PATCH}; return what a reviewer would look for."""
    run_update(
        str(app),
        vcs_ref=f"v{PATCH}",
        defaults=True,
        overwrite=True,
        unsafe=True,  # the apps before 1.0.0 cross its migration (the only --trust update)
        quiet=True,
        conflict="inline",
        skip_answered=True,
    )
    conflicted = [
        str(p.relative_to(app))
        for p in app.rglob("*")
        if p.is_file() and ".git" not in p.parts and (
            p.suffix == ".rej" or MARKERS.search(p.read_text(errors="replace"))
        )
    ]  # fmt: skip
    text = {
        name: "\n".join(p.read_text() for p in app.rglob(name) if ".git" not in p.parts)
        for name in {name for name, _ in added}
    }
    lost = [(name, line) for name, line in added if line not in text[name].splitlines()]
    manifest, _ = upgrade(yaml.safe_load((app / "microapp.yaml").read_text()))
    problems = validate(manifest) + ([] if manifest["schema_version"] == 3 else ["schema"])
    commit = yaml.safe_load((app / ".copier-answers.yml").read_text())["_commit"]
    return app.name, conflicted, lost, problems, commit
