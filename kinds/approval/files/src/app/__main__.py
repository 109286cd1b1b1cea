"""Yours to edit. App commands: `python -m app purge [--dry-run]` (make purge)."""

from __future__ import annotations

import argparse
import sys

from app.retention import purge
from guardrails import runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("purge", help="delete archived requests older than the retention period")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    args = parser.parse_args(argv)

    with runtime() as rt:
        days = rt.manifest.retention_days
        with rt.sessionmaker() as db:
            ids = purge(db, days, dry_run=args.dry_run)
    verb = "would purge" if args.dry_run else "purged"
    print(
        f"{verb} {len(ids)} archived request(s) older than {days} days"
        + (f": {', '.join(map(str, ids))}" if ids else ".")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
