"""A kind is one folder: adding one takes kinds/<kind>/ and one choice line, nothing else."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import yaml
from copier import run_copy

from .conftest import DEFAULTS, KINDS, REPO, run

# dist/ too: `make publish` (tests/test_publish.py, maybe in the other worker) rebuilds it
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tools",
    ".uv",
    ".wheelhouse",
    "demo",
    "site",
    "dist",
    "__pycache__",
    "*_cache",
)
MINIMAL = {
    "questions.yml": """
reader_groups:
  type: str
  help: Groups whose members may read the notice board
  default: "{{ team }}"
  when: "{{ kind == 'notice-board' }}"
""",
    "kind.jinja": "{%- set writes = false -%}\n{%- set external = false -%}\n",
    "manifest.yaml.jinja": """
    reader: {{ reader_groups.split(',') | map('trim') | list | to_json }}
    admin: {{ admin_groups.split(',') | map('trim') | list | to_json }}
{{ secrets_block }}
connectors: []
""",
    "README.md.jinja": "## What the app does\n\nA notice board for {{ reader_groups }}.\n",
    "files/src/app/__init__.py": '"""Yours to edit."""\n',
    "files/src/app/main.py": '''"""Yours to edit."""

from fastapi import FastAPI

from guardrails import create_app


def build(runtime=None) -> FastAPI:
    return create_app(runtime=runtime)
''',
    "files/tests/app/__init__.py": "",
}


def test_a_fourth_kind_is_one_folder_and_one_choice_line(tmp_path):
    tpl = tmp_path / "template"
    shutil.copytree(REPO, tpl, ignore=IGNORE, symlinks=True)
    folder = tpl / "kinds" / "notice-board"
    for rel, text in MINIMAL.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text.removeprefix("\n"))
    for link in ('{{ "." }}', "{{ _copier_conf.answers_file }}.jinja"):
        os.symlink(os.readlink(KINDS / "approval/files" / link), folder / "files" / link)
    copier_yml = tpl / "copier.yml"
    text = copier_yml.read_text()
    anchor = '    "dashboard: read-only pages over a database'
    assert anchor in text
    copier_yml.write_text(
        text.replace(
            anchor, '    "notice-board: a read-only notice board": notice-board\n' + anchor
        )
    )
    run(["git", "init", "-q", "-b", "main"], cwd=tpl)
    run(["git", "add", "-A"], cwd=tpl)
    run(["git", "-c", "core.hooksPath=/dev/null", "commit", "-qm", "fourth kind"], cwd=tpl)

    app = tmp_path / "app"
    run_copy(
        str(tpl),
        app,
        data={**DEFAULTS, "kind": "notice-board"},
        defaults=True,
        unsafe=False,
        quiet=True,
        vcs_ref="HEAD",
    )
    manifest = yaml.safe_load((app / "microapp.yaml").read_text())
    assert manifest["kind"] == "notice-board" and manifest["risk_tier"] == 1
    assert manifest["data"]["writes"] is False
    assert manifest["sso"]["roles"] == {"reader": ["hr-ops"], "admin": ["hr-ops-admins"]}
    assert "A notice board for hr-ops." in (app / "README.md").read_text()
    for rel in ("src/app/main.py", "Makefile", "policy/microapp.rego", "tests/conftest.py"):
        assert (app / rel).is_file(), rel
    assert not list(app.rglob("*.jinja")) and not (app / "questions.yml").exists()

    from guardrails import load_manifest

    assert load_manifest(app / "microapp.yaml").kind == "notice-board"


def test_each_kind_folder_is_complete():
    for folder in sorted(p for p in KINDS.iterdir() if p.is_dir()):
        for rel in ("questions.yml", "kind.jinja", "manifest.yaml.jinja", "README.md.jinja"):
            assert (folder / rel).is_file(), f"{folder.name}: {rel}"
        link = folder / 'files/{{ "." }}'
        assert link.is_symlink() and link.resolve() == (REPO / "templates").resolve()
        answers = folder / "files/{{ _copier_conf.answers_file }}.jinja"
        assert answers.resolve() == (REPO / "partials/copier-answers.yml.jinja").resolve()
        assert (folder / "files/src/app/main.py").is_file()


def test_shared_files_do_not_name_a_kind():
    """Kind prose and kind conditions live in kinds/<kind>/, never in the shared tree."""
    kinds = [p.name for p in KINDS.iterdir() if p.is_dir()]
    for path in Path(REPO / "templates").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for kind in kinds:
                assert f"kind == '{kind}'" not in text, path
                assert f'kind == "{kind}"' not in text, path


def test_no_page_uses_inline_styles_or_scripts():
    """The apps' Content-Security-Policy (default-src 'self', no 'unsafe-inline') blocks inline
    style attributes, <style> and <script> blocks and event handlers: a page that uses one
    silently loses it (issue 16, item 11). Every kind's pages and the SDK's templates."""
    inline = re.compile(r"<[a-z][^>]*\s(style|on[a-z]+)\s*=|<(style|script)[\s>]", re.IGNORECASE)
    pages = [
        *KINDS.glob("*/files/src/app/pages/*.html"),
        *(REPO / "guardrails/src/guardrails/templates").glob("*.html"),
    ]
    assert len(pages) > 5
    offending = [str(p.relative_to(REPO)) for p in pages if inline.search(p.read_text())]
    assert offending == []
