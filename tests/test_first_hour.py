"""A new user's first hour: the prerequisites check that `make demo` runs first, and the
tutorial's facts (questions, file counts, tiers) checked against what copier really asks and
renders, so the tutorial cannot go stale."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .conftest import REPO


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
