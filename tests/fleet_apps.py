"""A fleet of apps for the fleet tests: generated at every release, each with an owner's edits.

`owner_edits(app, n)` makes the changes owners typically make between two updates, in the
places the template invites them to (owner-owned files, the owner's sections of shared files,
and the owner-owned manifest), and returns every line it added, so a test can check that an
update kept each one.
"""

from __future__ import annotations

import re
from pathlib import Path


def _edit(path: Path, old: str | re.Pattern, new: str, added: list[tuple[str, str]]) -> None:
    text = path.read_text() if path.exists() else ""
    changed = (
        re.sub(old, new, text, count=1)
        if isinstance(old, re.Pattern)
        else text.replace(old, new, 1)
    )
    assert changed != text, f"{path.name}: the owner's edit point is missing"
    path.write_text(changed)
    before = set(text.splitlines())
    added += [
        (path.name, line) for line in changed.splitlines() if line.strip() and line not in before
    ]


def owner_edits(app: Path, n: int, connector: bool = True) -> list[tuple[str, str]]:
    """Edit app `app` as owner number `n` would; returns (file, line) for each added line.
    `connector`: also declare a new connector (which the CoE's allow-list does not know yet)."""
    added: list[tuple[str, str]] = []
    routes = app / "src/app/routes.py"
    _edit(
        routes,
        re.compile(r"\Z"),
        f'\n\n@router.get("/owner-{n}")\ndef owner_page_{n}() -> dict:\n'
        f'    return {{"owner": {n}}}\n',
        added,
    )
    _edit(
        app / "pyproject.toml",
        "app = []  # yours",
        f'app = ["packaging>=23", "tabulate>=0.{n}"]  # yours',
        added,
    )
    _edit(  # app.mk is included by the Makefile if present; older kinds had none to start with
        app / "app.mk",
        re.compile(r"\Z"),
        f"\n.PHONY: owner-{n}\nowner-{n}: ## The owner's own target\n\t@echo owner {n}\n",
        added,
    )
    readme = app / "README.md"
    if readme.exists() and "<!-- owner notes -->" in readme.read_text():
        _edit(
            readme,
            "<!-- owner notes -->",
            f"<!-- owner notes -->\nAsk the on-call lead (desk {n}) before changing approvers.",
            added,
        )
    manifest = app / "microapp.yaml"
    _edit(manifest, re.compile(r"sla_hours: \d+"), f"sla_hours: {30 + n}", added)
    _edit(
        manifest,
        re.compile(r"^(    admin: \[)(.*)\]$", re.M),
        rf'\g<1>\g<2>, "owner-{n}-admins"]',
        added,
    )
    if connector:
        spec = (
            f"  - name: reports-{n}\n"
            "    type: sql\n"
            "    access: read-only\n"
            f'    secret: "env:REPORTS_{n}_URL"'
        )
        empty = "connectors: []" in manifest.read_text()
        where = re.compile(r"^connectors: \[\]$" if empty else r"^connectors:$", re.M)
        _edit(manifest, where, f"connectors:\n{spec}", added)
    return added
