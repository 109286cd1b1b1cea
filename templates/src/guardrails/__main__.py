# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""Command line: `python -m guardrails <command>`; `make check` and `make dev` use it.

manifest check   validate microapp.yaml (schema, risk tier, expiry)
audit verify     prove the audit log's hash chain is intact
dev              run the local sign-in service and the app (make dev)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from guardrails.audit import verify_file
from guardrails.config import Settings
from guardrails.manifest import ManifestError, compute_risk_tier, load_manifest

EXPIRY_WARNING_DAYS = 30


def cmd_manifest_check(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.file)
    except ManifestError as exc:
        print(f"{exc.path} has {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Fix them in microapp.yaml and run `make check` again.", file=sys.stderr)
        return 1
    for notice in manifest.notices:
        print(f"  note: {notice}")
    tier, reasons = compute_risk_tier(manifest.raw)
    days_left = (manifest.expires - dt.date.today()).days
    print(
        f"{manifest.path}: valid. App {manifest.app_id} ({manifest.kind}), "
        f"risk tier {tier}: {'; '.join(reasons)}."
    )
    if days_left < 0:
        print(
            f"  EXPIRED {-days_left} day(s) ago ({manifest.expires}): ask the CoE to renew "
            "it and update lifecycle.expires.",
            file=sys.stderr,
        )
        return 1
    if days_left <= EXPIRY_WARNING_DAYS:
        print(
            f"  warning: expires in {days_left} day(s) ({manifest.expires}); "
            "ask the CoE to renew it."
        )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
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

    from guardrails.manifest import upgrade
    from guardrails.policy import PolicyError, evaluate, table

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
    from guardrails import drift

    return drift.main([args.root])


def cmd_dev(args: argparse.Namespace) -> int:
    from guardrails.devserver import run_dev

    try:
        manifest = load_manifest(Settings.from_env().manifest_path)
    except ManifestError as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        return 1
    run_dev(manifest, port=args.port, idp_port=args.idp_port, reload=not args.no_reload)
    return 0


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

    drift = sub.add_parser("drift", help="check template-owned files against FILES.sha256")
    drift.add_argument("root", nargs="?", default=".", help="the app folder")
    drift.set_defaults(func=cmd_drift)

    dev = sub.add_parser("dev", help="local sign-in service + app with auto-reload")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--idp-port", type=int, default=9400)
    dev.add_argument("--no-reload", action="store_true")
    dev.set_defaults(func=cmd_dev)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
