"""The documentation builds, its links and anchors hold, and its reference lists are generated.

`mkdocs build --strict` turns every warning into an error: a broken relative link or anchor, a
page left out of the nav, an unknown `<!-- generated: NAME -->` marker (mkdocs.yml,
`validation:`). The generated reference sections come from the code (docs/gen_reference.py);
a section whose source is missing says "Not generated", which the last test reports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"

pytestmark = [
    pytest.mark.slow,  # four site builds: make test runs them, make test-fast does not
    pytest.mark.skipif(
        not MKDOCS.exists(),
        reason=f"mkdocs is not installed next to {sys.executable} (add mkdocs-material to the "
        "dev dependencies and run `make setup`)",
    ),
]


def build(config: Path, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", **env},
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation of this working tree, built once into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    done = build(REPO / "mkdocs.yml", out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_docs_build_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "reference" / "questions.html").is_file()


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    """A copy of mkdocs.yml and docs/ (without the rest of the repository)."""
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    ("link", "complaint"),
    [
        ("[gone](no-such-page.md)", "no-such-page.md"),
        ("[gone](reference/manifest.md#no-such-heading)", "no-such-heading"),
    ],
    ids=["missing-page", "missing-anchor"],
)
def test_a_broken_link_fails_the_build(
    docs_copy: Path, tmp_path: Path, link: str, complaint: str
) -> None:
    index = docs_copy / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\nSee {link}.\n", encoding="utf-8")
    done = build(docs_copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0, "the build passed with a broken link"
    assert complaint in done.stdout + done.stderr


def test_a_missing_source_fails_when_sources_are_required(docs_copy: Path, tmp_path: Path) -> None:
    # The copy has no copier.yml, kinds/ or guardrails/: every generated section is missing.
    done = build(docs_copy / "mkdocs.yml", tmp_path / "site", MICROAPP_DOCS_REQUIRE_SOURCES="1")
    assert done.returncode != 0
    assert "generated reference" in done.stdout + done.stderr


def test_every_reference_section_is_generated(site: Path) -> None:
    """Each `<!-- generated: NAME -->` found its source (copier.yml, kinds/, the schema, the
    guardrails package and its command line) in this working tree."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        for match in re.finditer(r"Not generated</p>\s*<p>(.*?)</p>", html, re.DOTALL):
            problems.append(f"{page.relative_to(site)}: {re.sub(r'<[^>]+>', '', match[1])}")
    assert not problems, "reference sections not generated:\n" + "\n".join(problems)
