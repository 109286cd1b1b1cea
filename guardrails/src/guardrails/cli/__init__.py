"""Command line: `python -m guardrails <command>`; `make check` and `make dev` use it.

manifest check   validate microapp.yaml (schema, risk tier, expiry)
manifest tier    print the risk tier the CoE rules give, and why
manifest schema  print where the manifest's JSON Schema is installed
policy check     evaluate the CoE's Rego policies (policy/*.rego) against microapp.yaml
audit verify     prove the audit log's hash chain is intact
drift            check template-owned files and that no vendored guardrails copy remains
dev              run the local sign-in service and the app (make dev; needs [testing])
a11y             check every page as each demo user with axe-core in Chromium (make a11y)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guardrails.core.rules import days_until_expiry, expiry_status, risk_tier
from guardrails.core.settings import Settings

if TYPE_CHECKING:
    from guardrails.core.manifest import ManifestError

# Heavier modules (audit, policy, the dev server) are imported by the command that needs them,
# so `manifest check` and `--help` stay fast.


def cmd_manifest_check(args: argparse.Namespace) -> int:
    from guardrails.core.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(args.file)
    except ManifestError as exc:
        return _report_invalid(exc)
    for notice in manifest.notices:
        print(f"  note: {notice}")
    tier, reasons = risk_tier(manifest.raw)
    today = dt.date.today()
    days_left, status = (
        days_until_expiry(manifest.expires, today),
        expiry_status(manifest.expires, today),
    )
    print(
        f"{manifest.path}: valid. App {manifest.app_id} ({manifest.kind}), "
        f"risk tier {tier}: {'; '.join(reasons)}."
    )
    if status == "expired":
        print(
            f"  EXPIRED {-days_left} day(s) ago ({manifest.expires}): ask the CoE to renew "
            "it and update lifecycle.expires.",
            file=sys.stderr,
        )
        return 1
    if status == "soon":
        print(
            f"  warning: expires in {days_left} day(s) ({manifest.expires}); "
            "ask the CoE to renew it."
        )
    return 0


def _report_invalid(exc: ManifestError) -> int:
    print(f"{exc.path} has {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
    print("Fix them in microapp.yaml and run `make check` again.", file=sys.stderr)
    return 1


def cmd_manifest_tier(args: argparse.Namespace) -> int:
    from guardrails.core.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(args.file)
    except ManifestError as exc:
        return _report_invalid(exc)
    tier, reasons = risk_tier(manifest.raw)
    if args.quiet:
        print(tier)
    else:
        print(f"risk tier {tier}: {'; '.join(reasons)}")
    return 0


def cmd_manifest_schema(_args: argparse.Namespace) -> int:
    from guardrails.core.manifest import schema_path

    print(schema_path())
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from guardrails.auditing.log import verify_file

    path = Path(args.file) if args.file else Settings.from_env().audit_file
    result = verify_file(path)
    if not result.ok:
        print(f"{path}: audit chain BROKEN after {result.events} line(s):", file=sys.stderr)
        for problem in result.problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Keep this file as evidence and tell the CoE security team.", file=sys.stderr)
        return 1
    if result.events == 0:
        print(f"{path}: no audit events yet.")
    else:
        print(f"{path}: {result.events} event(s), hash chain intact.")
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    import yaml

    from guardrails.core.manifest import upgrade
    from guardrails.core.policy import PolicyError, evaluate, table

    path = Path(args.file)
    try:
        data, _notices = upgrade(yaml.safe_load(path.read_text("utf-8")) or {})
        today = dt.date.fromisoformat(args.today) if args.today else None
        result = evaluate(data, Path(args.policy_dir), today=today)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(
            f"Cannot check {path}: {exc}. Run `make check` for the manifest's own errors.",
            file=sys.stderr,
        )
        return 1
    except PolicyError as exc:
        print(f"The CoE policies are broken - tell the CoE: {exc}", file=sys.stderr)
        return 2
    if result.ok and not result.warn:
        print(f"{path}: all CoE policies pass.")
        return 0
    if result.deny:
        print(f"{path}: {len(result.deny)} policy problem(s) must be fixed:", file=sys.stderr)
        print(table(result.deny), file=sys.stderr)
    if result.warn:
        print(f"{path}: {len(result.warn)} warning(s):")
        print(table(result.warn))
    return 0 if result.ok else 1


def cmd_drift(args: argparse.Namespace) -> int:
    from guardrails.cli import drift

    extra = ["--write"] if args.write else []
    for tree in args.extended_by:
        extra += ["--extended-by", str(tree)]
    return drift.main([args.root, "--list", args.list, *extra])


def _app_manifest():
    """The app's manifest for the commands that start it, or None (the reason printed)."""
    from guardrails.core.manifest import ManifestError, load_manifest

    try:
        return load_manifest(Settings.from_env().manifest_path)
    except ManifestError as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        return None


def cmd_dev(args: argparse.Namespace) -> int:
    from guardrails.testing.devserver import run_dev

    manifest = _app_manifest()
    if manifest is None:
        return 1
    run_dev(manifest, port=args.port, idp_port=args.idp_port, reload=not args.no_reload)
    return 0


def cmd_a11y(args: argparse.Namespace) -> int:
    from guardrails.testing import free_port
    from guardrails.testing.a11y import run

    manifest = _app_manifest()
    if manifest is None:
        return 1
    out = None if args.no_screenshots else Path(args.out)
    return run(manifest, out, args.axe, port=free_port(), idp_port=free_port())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m guardrails",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="area", required=True)

    manifest = sub.add_parser("manifest", help="microapp.yaml checks")
    manifest_sub = manifest.add_subparsers(dest="action", required=True)
    check = manifest_sub.add_parser("check", help="validate microapp.yaml")
    check.add_argument("--file", default=str(Settings.from_env().manifest_path))
    check.set_defaults(func=cmd_manifest_check)
    tier = manifest_sub.add_parser("tier", help="print the computed risk tier and the reasons")
    tier.add_argument("--file", default=str(Settings.from_env().manifest_path))
    tier.add_argument("--quiet", action="store_true", help="print the number only")
    tier.set_defaults(func=cmd_manifest_tier)
    schema = manifest_sub.add_parser("schema", help="print the path of the JSON Schema")
    schema.set_defaults(func=cmd_manifest_schema)

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    verify = audit_sub.add_parser("verify", help="verify the hash chain")
    verify.add_argument("--file", help="audit JSONL file (default: MICROAPP_AUDIT_FILE)")
    verify.set_defaults(func=cmd_audit_verify)

    policy = sub.add_parser("policy", help="policy-as-code checks")
    policy_sub = policy.add_subparsers(dest="action", required=True)
    pcheck = policy_sub.add_parser("check", help="evaluate policy/*.rego against microapp.yaml")
    pcheck.add_argument("--file", default=str(Settings.from_env().manifest_path))
    pcheck.add_argument("--policy-dir", default="policy")
    pcheck.add_argument("--today", help="evaluate as of this date (YYYY-MM-DD)")
    pcheck.set_defaults(func=cmd_policy_check)

    drift = sub.add_parser(
        "drift", help="installed guardrails = uv.lock, none vendored, template files unedited"
    )
    drift.add_argument("root", nargs="?", default=".", help="the app folder")
    drift.add_argument(
        "--list", default=".microapp/FILES.sha256", help="the list, relative to root"
    )
    drift.add_argument(
        "--write",
        action="store_true",
        help="write the list (the template repository's make hashes)",
    )
    drift.add_argument(
        "--extended-by",
        action="append",
        default=[],
        help="with --write: a tree that adds files to the shared one (each kind's files/)",
    )
    drift.set_defaults(func=cmd_drift)

    dev = sub.add_parser("dev", help="local sign-in service + app with auto-reload")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--idp-port", type=int, default=9400)
    dev.add_argument("--no-reload", action="store_true")
    dev.set_defaults(func=cmd_dev)

    a11y = sub.add_parser("a11y", help="axe-core on every page as each demo user (Chromium)")
    a11y.add_argument("--out", default="var/a11y", help="where the screenshots go")
    a11y.add_argument("--no-screenshots", action="store_true")
    a11y.add_argument("--axe", help="axe.min.js (default: AXE_JS, or .tools/node_modules)")
    a11y.set_defaults(func=cmd_a11y)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
