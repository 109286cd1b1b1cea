"""A new user's first hour: the prerequisites check that `make demo` runs first, and the
tutorial's facts (questions, file counts, tiers) checked against what copier really asks and
renders, so the tutorial cannot go stale."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from .conftest import REPO, UV


def test_the_prerequisites_check_says_what_to_install(tmp_path):
    """With git missing from PATH, `.ci/prereqs` (run by make demo and make setup) fails and
    names the package to install; with everything there it says what it found."""
    found = subprocess.run([REPO / ".ci/prereqs"], capture_output=True, text=True, check=False)
    assert found.returncode == 0 and "prerequisites found: Python 3." in found.stdout
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    bare = subprocess.run(
        ["bash", REPO / ".ci/prereqs"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(bin_dir)},
        check=False,
    )
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert "missing: git\n  install it with: sudo apt install git" in bare.stdout
    assert "install what is missing above" in bare.stdout and not bare.stderr


TUTORIAL = REPO / "docs/tutorials/first-app.md"
KIND_SECTIONS = {
    "Approval": "approval",
    "Dashboard": "dashboard",
    "Incident helper": "incident-helper",
}


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start) + len(start))]


def _tutorial_kinds() -> dict[str, tuple[dict, int, str]]:
    """Kind -> (answers typed in bold, tier stated, section text) from step 1."""
    step = _section(TUTORIAL.read_text(), "## 1. Generate the app", "## 2.")
    found = {}
    for title, kind in KIND_SECTIONS.items():
        part = step[step.index(f"### {title}\n") :]
        part = part[: part.index("\n### ", 5)] if "\n### " in part[5:] else part
        rows = re.findall(r"^\| `([a-z_]+)` \| (.*) \|$", part, flags=re.M)
        typed = {
            key: re.match(r"\*\*(.+?)\*\*", answer)[1]
            for key, answer in rows
            if answer.startswith("**")
        }
        tier = int(re.search(r"risk tier: \*\*(\d)\*\*", part)[1])
        found[kind] = (dict(rows), typed, tier)
    return found


def test_the_tutorial_asks_what_copier_asks_and_states_the_real_tier():
    """Per kind: the question rows are the questions copier asks, in its order; each accepted
    answer is copier's default; the typed answers pass the validators; the tier is the one
    computed from them. A new question, a changed default or tier makes this fail."""
    from . import inprocess

    questions = inprocess.QUESTIONS
    for kind, (rows, typed, tier) in _tutorial_kinds().items():
        answers = {**typed, "kind": kind}
        values = inprocess.context(answers)
        asked = [key for key in questions if inprocess.asked(key, values)]
        assert list(rows) == asked, kind
        for key, answer in rows.items():
            accepted = re.match(r"accept `([^`]*)`", answer)
            if accepted:
                labels = {v: k for k, v in (questions[key].get("choices") or {}).items()}
                value = values[key]
                shown = {True: "Yes", False: "No"}.get(value, str(value))
                assert accepted[1] in (shown, labels.get(value, "").split(":")[0]), (kind, key)
            elif answer.startswith("accept (empty)"):
                assert values[key] == "", (kind, key)
            assert inprocess.validate(key, answers) == "", (kind, key)
        assert values["risk_tier"] == tier, kind


def test_the_tutorial_shows_what_make_dev_prints():
    """The `make dev` banner of each kind, as devserver.banner prints it for the manifest the
    tutorial's answers render (demo users, role labels, groups)."""
    import yaml
    from guardrails.core.manifest import Manifest
    from guardrails.testing.devserver import banner

    from . import inprocess

    text = TUTORIAL.read_text()
    for kind, (_rows, typed, _tier) in _tutorial_kinds().items():
        raw = yaml.safe_load(
            inprocess.render("templates/microapp.yaml.jinja", {**typed, "kind": kind})
        )
        printed = banner(Manifest(raw=raw, path=TUTORIAL), 8000, "http://localhost:9400")
        assert f"```text\n{printed}\n```" in text, f"{kind}:\n{printed}"


def test_the_tutorial_states_no_durations():
    """Timings differ from machine to machine and go stale: the tutorial does not state any."""
    text = TUTORIAL.read_text()
    assert not re.search(r"\b\d+(\.\d+)? ?(s|sec|seconds?|min|minutes?)\b", text)


def test_make_setup_without_the_package_says_where_to_find_it(rendered, tmp_path):
    """A new app's `make setup` where no index has microapp-guardrails (uv offline here, as on
    a machine without the CoE's index) fails saying both ways to point it at the package: the
    company index, or a wheelhouse built in a clone of the template."""
    fresh = shutil.ignore_patterns(".venv", "uv.lock", ".git")  # the render, before any set-up
    app = shutil.copytree(rendered["dashboard"], tmp_path / "app", symlinks=True, ignore=fresh)
    done = subprocess.run(
        ["make", "setup", f"PYTHON={sys.executable}", f"UV={UV}"],
        cwd=app,
        capture_output=True,
        text=True,
        env={**os.environ, "UV_OFFLINE": "1"},
        timeout=300,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0 and "Could not lock the dependencies" in said, said
    assert "make setup PACKAGE_INDEX=https://<your company index>/simple" in said
    assert "run make wheelhouse, then here:" in said
    assert "make setup WHEELHOUSE=<the clone>/.wheelhouse" in said
