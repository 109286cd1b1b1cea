"""Migration for template v0.2.0: microapp.yaml schema_version 1 -> 2.

schema_version 2 renames `support.channel` to `support.contact`: the value may be a chat
channel, a mailbox or a URL, and "channel" misled owners into thinking only chat works.

Copier runs this after `copier update` has merged the new template (`_migrations` in
copier.yml), in the app's folder. In the common case the merge has already renamed the line
the template rendered, and this script only confirms it; it does the work when the owner
rewrote the support block (flow style, moved lines) so the merge could not.

Rules for every script in hooks/: standard library only (it runs under copier's Python, not
the app's), idempotent, edits text in place so comments and layout survive, prints one line
saying what it did, exits non-zero with a clear message when it cannot migrate.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MANIFEST = Path("microapp.yaml")


def load_sdk_migrations():
    """guardrails/core/manifest_migrations.py from this template checkout: the one home of the
    manifest's text migrations (standard library only), shared with the SDK's
    `python -m guardrails manifest migrate`."""
    path = Path(__file__).resolve().parents[1] / "guardrails/src/guardrails/core"
    path = path / "manifest_migrations.py"
    if not path.is_file():
        raise SystemExit(f"{Path(__file__).name}: {path} not found in the template checkout")
    sys.dont_write_bytecode = True  # leave no __pycache__ in the template checkout
    spec = importlib.util.spec_from_file_location("manifest_migrations", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MIGRATIONS = load_sdk_migrations()
VERSION_LINE = _MIGRATIONS.VERSION_LINE
rename_support_channel = _MIGRATIONS.rename_support_channel


def migrate(text: str) -> tuple[str, str]:
    """Return (new text, what was done). Raises ValueError when the file cannot be migrated."""
    if "<<<<<<<" in text or ">>>>>>>" in text:
        raise ValueError(
            "microapp.yaml has merge conflict markers; resolve them first, then "
            "run this migration again"
        )
    version = VERSION_LINE.search(text)
    if not version:
        raise ValueError("microapp.yaml has no top-level schema_version line")
    current = int(version.group(1))
    if current > 2:
        return text, f"schema_version {current}: newer than this migration, nothing to do"
    text, renamed = rename_support_channel(text)
    if current == 1:
        comment = f"  {version.group(2)}" if version.group(2) else ""
        text = VERSION_LINE.sub(f"schema_version: 2{comment}", text, count=1)
    if current == 2 and not renamed:
        return text, "already at schema_version 2, nothing to do"
    return text, "schema_version 1 -> 2: support.channel renamed to support.contact"


def main() -> int:
    if not MANIFEST.exists():
        print(f"migrate_manifest_v2: no {MANIFEST} in {Path.cwd()}", file=sys.stderr)
        return 1
    try:
        new, done = migrate(MANIFEST.read_text("utf-8"))
    except ValueError as exc:
        print(f"migrate_manifest_v2: {exc}", file=sys.stderr)
        return 1
    MANIFEST.write_text(new, "utf-8")
    print(f"migrate_manifest_v2: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
