"""Cheap checks that two copies of one fact have not drifted apart."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from .conftest import GUARDRAILS, KINDS, REPO, TEMPLATES, copier_config

SDK = GUARDRAILS / "src" / "guardrails"


def test_python_version_agrees():
    app = (TEMPLATES / "pyproject.toml.jinja").read_text()
    assert 'requires-python = ">=3.11"' in app and 'target-version = "py311"' in app
    repo = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert repo["project"]["requires-python"] == ">=3.11"
    assert repo["tool"]["ruff"]["target-version"] == "py311"


def test_guardrails_version_is_released_in_the_changelog():
    version = re.search(r'__version__ = "([^"]+)"', (SDK / "_version.py").read_text())[1]
    assert f"## {version}" in (REPO / "CHANGELOG.md").read_text()
    sdk = tomllib.loads((GUARDRAILS / "pyproject.toml").read_text())["project"]
    assert sdk["name"] == "microapp-guardrails"


def test_manifest_schema_kinds_match_the_kind_question():
    """A kind is a folder plus a choice line; the schema may list more (older apps' kinds)."""
    schema = json.loads((SDK / "core" / "manifest.schema.json").read_text())
    kind = schema["properties"]["kind"]
    question = set(copier_config()["kind"]["choices"].values())
    folders = {p.name for p in KINDS.iterdir() if (p / "files").is_dir()}
    assert question == folders
    if "enum" in kind:
        assert question <= set(kind["enum"])


def test_readme_and_ci_use_the_same_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()
    assert "make demo" in (REPO / "README.md").read_text()


def test_template_file_hash_list_is_current():
    """`make hashes` must run after any change to a template-owned, app-independent file."""
    from guardrails.cli import drift

    found = drift.check(TEMPLATES)
    assert found.clean, f"run `make hashes`: {found}"


def test_the_expiry_question_allows_what_the_sdk_renews_to():
    """copier.yml's expiry_days range ends at the SDK's MAX_EXPIRY_DAYS (make renew's limit)."""
    from guardrails.core.rules import MAX_EXPIRY_DAYS

    validator = copier_config()["expiry_days"]["validator"]
    assert f"expiry_days > {MAX_EXPIRY_DAYS}" in validator


def test_the_files_that_run_whole_under_xdist_exist():
    """conftest.WHOLE_FILES names files by path: a renamed file would silently be split
    between `make test`'s workers again."""
    from .conftest import WHOLE_FILES

    assert WHOLE_FILES and all((REPO / name).is_file() for name in WHOLE_FILES), WHOLE_FILES


# Runs a command with SIGINT's default action (a test runner's worker may ignore it, and a
# command started with it ignored could not be interrupted).
WITH_SIGINT = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); " \
    "os.execvp(sys.argv[1], sys.argv[1:])"  # fmt: skip


@pytest.mark.parametrize("interrupted", [False, True], ids=["done", "interrupted"])
@pytest.mark.parametrize("makefile", ["Makefile", "templates/Makefile"])
def test_a_long_steps_heartbeat_ends_with_the_step(makefile, interrupted, tmp_path):
    """`$(STILL)` prints a line every 10 s while a step runs, in this repository's Makefile and
    in every app's. When the step ends, or is interrupted (Ctrl-C: SIGINT to the group), its
    heartbeat ends too: a `sleep` left behind kept the caller's pipe open up to 10 s longer
    (`make setup | tee log` and every test that reads a make's output waited for it)."""
    step = "sleep 30" if interrupted else "sleep 1"
    probe = subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, "make", "-s", "-f", str(REPO / makefile),
         "--eval", f"probe: ; @$(STILL) probing {step}", "probe"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )  # fmt: skip
    if interrupted:
        time.sleep(1.5)  # the step and its heartbeat are running
        os.killpg(probe.pid, signal.SIGINT)
    code = probe.wait(timeout=60)
    assert (code != 0) if interrupted else (code == 0)
    ended = time.monotonic()
    probe.stdout.read()  # returns at end of file: when no process holds the pipe any more
    probe.stdout.close()
    assert time.monotonic() - ended < 5, "a process of the heartbeat outlived the step"
