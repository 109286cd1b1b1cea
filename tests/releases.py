"""Stand-in releases for the update and fleet tests, on a clone of this repository's history.

The clone keeps the real release tags (v0.1.0, v0.2.0, v1.0.0, ...) and gets two more:
  v{NEXT}   this working tree: the version guardrails/src/guardrails/_version.py says, or the
            next minor when that version is tagged already (the tree holds unreleased work)
  v{PATCH}  a patch on top that only changes a template-owned file (no migration)
No version number is written here: the tests keep passing after a version bump.

A clone made without tags (CI may clone the branch alone) gets the real release tags back from
RELEASE_COMMITS, annotated with their CHANGELOG sections as `make release` writes them;
tests/test_releases.py checks that record against the tags wherever the tags are present.
"""

from __future__ import annotations

import re
from pathlib import Path

from tools.release_notes import section

from .conftest import REPO, run, snapshot

# Each release tag's commit: `make release` prints the line to add here.
RELEASE_COMMITS = {
    "v0.1.0": "a1fc0c6a69116a21c97a37651f75172aaf8b9f27",
    "v0.2.0": "04feedc40be7537390f44357eb4f144c2da0d272",
    "v1.0.0": "08aeebb2abb93b83fd936f8b4fa120ad598822d1",
}


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
_TAGGED = f"v{VERSION}" in RELEASE_COMMITS or (
    (REPO / ".git").exists() and bool(run(["git", "tag", "-l", f"v{VERSION}"], cwd=REPO).stdout)
)
_major, _minor, _patch = version_key(VERSION)
NEXT = f"{_major}.{_minor + 1}.0" if _TAGGED else VERSION
PATCH = "{}.{}.{}".format(*version_key(NEXT)[:2], version_key(NEXT)[2] + 1)
COMPATIBLE = f"microapp-guardrails~={_major}.{_minor}"


def restore_release_tags(tpl: Path) -> None:
    """Tag the releases of RELEASE_COMMITS that the clone `tpl` lacks (a clone without tags)."""
    present = set(git(tpl, "tag", "-l", "v*").split())
    changelog = (REPO / "CHANGELOG.md").read_text()
    for tag, commit in RELEASE_COMMITS.items():
        if tag in present:
            continue
        if run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=tpl, check=False).returncode:
            raise RuntimeError(
                f"this checkout has neither the tag {tag} nor its commit {commit[:12]}: the "
                "update and fleet tests need the template's history (a full clone, not --depth)"
            )
        notes = section(changelog, tag[1:])
        git(tpl, "tag", "-a", "--cleanup=verbatim", tag, commit, "-m", notes)


def tag_stand_in_releases(tpl: Path) -> None:
    """Tag this working tree v{NEXT} and a patch of it v{PATCH} in the clone `tpl`, after the
    real releases (restored from RELEASE_COMMITS when the checkout came without tags)."""
    restore_release_tags(tpl)
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
