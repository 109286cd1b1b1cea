"""Print one release's section of CHANGELOG.md: the tag message and the GitHub release notes.

    python -m tools.release_notes 1.0.0 [CHANGELOG.md]

Exits 1 with a message when the section is missing or empty, so neither `make release` nor the
release workflow can publish a release without notes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def section(changelog: str, version: str) -> str:
    """The text under `## <version>` up to the next `## ` heading, stripped."""
    match = re.search(rf"^## {re.escape(version)}[ \t]*\n(.*?)(?=^## |\Z)", changelog, re.M | re.S)
    return match[1].strip() if match else ""


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m tools.release_notes VERSION [CHANGELOG.md]", file=sys.stderr)
        return 2
    version = argv[0].removeprefix("v")
    path = Path(argv[1] if len(argv) > 1 else "CHANGELOG.md")
    notes = section(path.read_text("utf-8"), version)
    if not notes:
        print(f"{path} has no '## {version}' section with notes.", file=sys.stderr)
        return 1
    print(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
