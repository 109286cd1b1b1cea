"""Stand-in releases for the update and fleet tests, on a clone of this repository's history.

The clone keeps the real release tags (v0.1.0, v0.2.0, v1.0.0, ...) and gets two more:
  v{NEXT}   this working tree: the version guardrails/src/guardrails/_version.py says, or the
            next minor when that version is tagged already (the tree holds unreleased work)
  v{PATCH}  a patch on top that only changes a template-owned file (no migration)
No version number is written here: the tests keep passing after a version bump.
"""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import REPO, run, snapshot


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd=cwd).stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "-c", "core.hooksPath=/dev/null", "commit", "-q", "--allow-empty", "-m", message)


def snapshot_working_tree(tpl: Path) -> None:
    """Make `tpl` hold exactly this working tree (deleted files gone, symlinks kept)."""
    git(tpl, "rm", "-rq", "--ignore-unmatch", ".")
    snapshot(tpl)


def version_key(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", tag)[:3])


VERSION = re.search(
    r'__version__ = "([^"]+)"', (REPO / "guardrails/src/guardrails/_version.py").read_text()
)[1]
_TAGGED = (REPO / ".git").exists() and bool(
    run(["git", "tag", "-l", f"v{VERSION}"], cwd=REPO).stdout.strip()
)
_major, _minor, _patch = version_key(VERSION)
NEXT = f"{_major}.{_minor + 1}.0" if _TAGGED else VERSION
PATCH = "{}.{}.{}".format(*version_key(NEXT)[:2], version_key(NEXT)[2] + 1)
COMPATIBLE = f"microapp-guardrails~={_major}.{_minor}"


def tag_stand_in_releases(tpl: Path) -> None:
    """Tag this working tree v{NEXT} and a patch of it v{PATCH} in the clone `tpl`."""
    for tag in git(tpl, "tag", "-l", "v*").split():
        if version_key(tag) >= version_key(NEXT):
            git(tpl, "tag", "-d", tag)
    snapshot_working_tree(tpl)
    commit_all(tpl, f"Release {NEXT}")
    git(tpl, "tag", "-a", f"v{NEXT}", "-m", f"Release {NEXT}")
    runbook = tpl / "templates/RUNBOOK.md.jinja"
    runbook.write_text(runbook.read_text() + f"\nChecked by the CoE in release {PATCH}.\n")
    commit_all(tpl, f"Release {PATCH}")
    git(tpl, "tag", "-a", f"v{PATCH}", "-m", f"Release {PATCH}")
