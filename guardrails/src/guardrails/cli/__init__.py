"""Command line: `python -m guardrails <command>`; `make check` and `make dev` use it.

manifest check   validate microapp.yaml (schema, risk tier, expiry)
manifest tier    print the risk tier the CoE rules give, and why
manifest schema  print where the manifest's JSON Schema is installed
manifest migrate bring microapp.yaml to the current schema (text edits; safe to run again)
policy check     evaluate the CoE's Rego policies (policy/*.rego) against microapp.yaml
lifecycle renew  extend lifecycle.expires (at most MAX_EXPIRY_DAYS from today); make renew
report           the promotion report from report/ (make report)
catalog          write catalog-info.yaml (Backstage) from microapp.yaml; --check: in sync?
audit verify     prove the audit log's hash chain is intact (database, or --file)
db upgrade       migrate the database: guardrails' tables, then the app's (deployment Job)
db check         fail when the app's models and its migrations/ disagree (make check)
db revision      write the next migration of the app's models into migrations/versions/
drift            check template-owned files and that no vendored guardrails copy remains
deploy values    the Helm chart's values derived from microapp.yaml (make chart-values)
deploy gate      may the app be deployed today? warns before expiry, refuses after it
deploy record    the release's audit record: each gate's result and who approved it
dev              run the local sign-in service and the app (make dev; needs [testing])
a11y             check every page as each demo user with axe-core in Chromium (make a11y)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guardrails.core.rules import MAX_EXPIRY_DAYS, days_until_expiry, expiry_status, risk_tier
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


def cmd_manifest_migrate(args: argparse.Namespace) -> int:
    from guardrails.core import manifest_migrations as steps

    path = Path(args.file)
    again = "python -m guardrails manifest migrate (make migrate)"
    if not path.is_file():
        print(f"{path}: not found (run from the app folder)", file=sys.stderr)
        return 1
    text = path.read_text("utf-8")
    if steps.manifest_conflicts(text):
        print(
            f"{path} has merge conflict markers (<<<<<<< ======= >>>>>>>); nothing was changed. "
            f"Resolve them, then run: {again}",
            file=sys.stderr,
        )
        return 1
    try:
        new, done = steps.migrate_manifest(text)
    except ValueError as exc:
        print(f"{path}: {exc}; nothing was changed. Then run: {again}", file=sys.stderr)
        return 1
    if not done:
        print(f"{path}: schema_version {steps.CURRENT}, nothing to migrate")
        return 0
    if args.check:
        print(f"{path} needs a migration ({done}): run {again}", file=sys.stderr)
        return 1
    path.write_text(new, "utf-8")
    print(done)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from guardrails.core.catalog import differences, entity, render, template_version
    from guardrails.core.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(args.file)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 1
    wanted = entity(manifest.raw, template_version(Path(args.answers)))
    out = Path(args.output)
    if args.check:
        found = differences(out, wanted)
        for line in found:
            print(f"{out}: {line}", file=sys.stderr)
        if found:
            print(f"{out} is out of date with {args.file}: run make catalog", file=sys.stderr)
        return 1 if found else 0
    out.write_text(render(wanted), "utf-8")
    print(f"wrote {out} from {args.file}")
    return 0


def cmd_lifecycle_renew(args: argparse.Namespace) -> int:
    import re

    from guardrails.core.rules import renewed_expiry

    path = Path(args.file)
    try:
        new = renewed_expiry(args.days)
    except ValueError as exc:
        print(f"Cannot renew: {exc}", file=sys.stderr)
        return 2
    text = path.read_text("utf-8")
    line = re.compile(r"(\bexpires:\s*)([\"']?)(\d{4}-\d{2}-\d{2})\2")
    match = line.search(text)
    if not match:
        print(f"{path}: no lifecycle.expires date found", file=sys.stderr)
        return 1
    if dt.date.fromisoformat(match[3]) >= new:
        print(f"{path}: expires {match[3]} already, not before {new}: nothing to renew")
        return 0
    path.write_text(text[: match.start(3)] + new.isoformat() + text[match.end(3) :], "utf-8")
    print(f"lifecycle.expires {match[3]} -> {new.isoformat()} ({args.days} days from today)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from guardrails.cli.report import write
    from guardrails.core.manifest import ManifestError

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        verdict, sections = write(Path("."), out)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 1
    for section in sections:
        print(f"{section.status.upper():8} {section.title}")
    print(f"{verdict}\nwrote {out / 'promotion.html'} and {out / 'promotion.md'}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """--file: that file; --database: that database; neither: the app's database, then the
    audit file it exports to (MICROAPP_AUDIT_FILE), if there is one."""
    if args.file:
        return _verify_audit_file(Path(args.file))
    status = _verify_audit_database(args.database)
    exported = Settings.from_env().audit_file
    if not args.database and exported is not None and exported.exists():
        status = max(status, _verify_audit_file(exported))
    return status


def _chain_broken(where: str, after: str, problems: list[str], advice: str) -> int:
    """Report a broken audit chain (a file or the database) and what to keep; exit status 1."""
    print(f"{where}: audit chain BROKEN after {after}:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    print(advice, file=sys.stderr)
    return 1


def _verify_audit_file(path: Path) -> int:
    from guardrails.auditing.log import verify_file

    result = verify_file(path)
    for note in result.notes:
        print(f"{path}: note: {note}", file=sys.stderr)
    if not result.ok:
        return _chain_broken(
            f"{path}",
            f"{result.events} line(s)",
            result.problems,
            "Keep this file as evidence and tell the CoE security team.",
        )
    if result.events == 0:
        print(f"{path}: no audit events yet.")
    else:
        print(f"{path}: {result.events} event(s), hash chain intact.")
    return 0


def _verify_audit_database(url: str | None) -> int:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from guardrails.auditing.chain import verify_db
    from guardrails.core import db
    from guardrails.core.manifest import load_manifest

    settings = Settings.from_env()
    url = url or settings.database_url
    if url.startswith("sqlite:///") and not Path(url[10:]).exists():
        print(f"{url}: no database yet, so no audit events yet.")
        return 0
    try:
        app_id = load_manifest(settings.manifest_path).app_id
    except (OSError, ValueError):
        app_id = None  # no manifest here: the head row is not compared
    engine = db.make_engine(db.with_driver(url))
    shown = engine.url.render_as_string(hide_password=True)
    try:
        if not inspect(engine).has_table("guardrails_audit_event"):
            print(f"{shown}: no audit events yet (no audit table).")
            return 0
        result = verify_db(engine, app_id)
    except SQLAlchemyError as exc:
        print(f"{shown}: cannot read the audit chain: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if not result.ok:
        return _chain_broken(
            shown,
            f"{result.events} event(s)",
            result.problems,
            "Keep a copy of the database and tell the CoE security team.",
        )
    print(
        f"{shown}: {result.events} event(s), hash chain intact, head {result.head_hash}."
        if result.events
        else f"{shown}: no audit events yet."
    )
    if result.waiting:
        print(
            f"{result.waiting} committed event(s) wait to be chained: the app chains them right "
            "after their commit, and its housekeeping every few seconds (a process stopped in "
            "between). Run this again in a minute; if they still wait, no replica is running."
        )
    return 0


def _db_engine():
    """The app's database engine, its URL read as the app reads it: the `database-url` secret
    (Vault in production), or DATABASE_URL on a laptop; without a manifest, DATABASE_URL."""
    from guardrails.core import db
    from guardrails.core.runtime import build_runtime

    settings = Settings.from_env()
    if settings.manifest_path.exists():
        rt = build_runtime(settings, export_telemetry=False)
        if rt.engine is not None:
            return rt.engine, settings
    return db.make_engine(db.with_driver(settings.database_url)), settings


def _projects(settings: Settings):
    from guardrails.core import migrate

    sys.path.insert(0, "src")  # the app's package, also before it is installed
    return [migrate.guardrails_project(), migrate.app_project(settings.migrations_path)]


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from guardrails.core import migrate
    from guardrails.core.settings import ConfigError

    try:
        engine, settings = _db_engine()
    except ConfigError as exc:
        print(f"Cannot migrate: {exc}", file=sys.stderr)
        return 2
    shown = engine.url.render_as_string(hide_password=True)
    try:
        projects = _projects(settings)
        migrate.upgrade(engine, projects)
        late = migrate.behind(engine, projects)
    except SQLAlchemyError as exc:
        print(f"{shown}: cannot migrate: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if late:
        print(f"{shown}: still behind after the upgrade: {', '.join(late)}", file=sys.stderr)
        return 1
    print(f"{shown}: up to date (guardrails and app migrations).")
    return 0


def cmd_db_check(_args: argparse.Namespace) -> int:
    from guardrails.core import migrate

    settings = Settings.from_env()
    found = migrate.differences(_projects(settings))
    if found:
        print("The models and the migrations disagree:", file=sys.stderr)
        for line in found:
            print(f"  - {line}", file=sys.stderr)
        print(
            'Write a migration: make db-revision m="what changed" (then check and commit it).',
            file=sys.stderr,
        )
        return 1
    print("The models and the migrations agree.")
    return 0


def cmd_db_revision(args: argparse.Namespace) -> int:
    from guardrails.core import migrate

    projects = _projects(Settings.from_env())
    # the models are compared with a scratch database at the newest revision, as `db check`
    # does: the app's own database (DATABASE_URL) is neither read nor migrated
    with migrate.scratch_engine(projects) as engine:
        path = migrate.revision(projects[1], args.message, engine)
    if found := path:
        print(f"wrote {found}: read it, adjust it if needed, commit it; then make db-upgrade")
    else:
        print("no revision written: the models and the migrations already agree")
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


def _load_for_deploy(path: str):
    from guardrails.core.manifest import ManifestError, load_manifest

    try:
        return load_manifest(path)
    except ManifestError as exc:
        _report_invalid(exc)
        return None


def cmd_deploy_values(args: argparse.Namespace) -> int:
    import yaml

    from guardrails.core.deployment import chart_values

    manifest = _load_for_deploy(args.file)
    if manifest is None:
        return 1
    answers = manifest.path.parent / ".copier-answers.yml"
    version = "unknown"
    if answers.exists():
        version = str((yaml.safe_load(answers.read_text("utf-8")) or {}).get("_commit", version))
    text = (
        "# Generated from microapp.yaml by `python -m guardrails deploy values` (make chart-values)"
        ": do not edit.\n" + yaml.safe_dump(chart_values(manifest.raw, version), sort_keys=False)
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, "utf-8")
    else:
        print(text, end="")
    return 0


def cmd_deploy_gate(args: argparse.Namespace) -> int:
    from guardrails.core.deployment import deploy_gate

    manifest = _load_for_deploy(args.file)
    if manifest is None:
        return 1
    today = dt.date.fromisoformat(args.today) if args.today else None
    result = deploy_gate(manifest.raw, today, args.environment)
    print(result.message, file=sys.stderr if not result.allowed else sys.stdout)
    if args.outputs:  # a CI step's outputs file ($GITHUB_OUTPUT) or a dotenv report (GitLab)
        with open(args.outputs, "a", encoding="utf-8") as out:
            out.write(f"expiry={result.status}\ndays_left={result.days_left}\n")
    return 0 if result.allowed else 1


def cmd_deploy_record(args: argparse.Namespace) -> int:
    import json

    from guardrails.core.deployment import approvals, gate_results, release_record

    manifest = _load_for_deploy(args.file)
    if manifest is None:
        return 1

    def read(path: str | None):
        return json.loads(Path(path).read_text("utf-8")) if path else None

    try:
        gates, approved = gate_results(read(args.gates)), approvals(read(args.approvals))
        gates |= dict(item.split("=", 1) for item in args.gate)
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        print(f"Cannot read the gates or approvals: {exc}", file=sys.stderr)
        return 1
    tier, _reasons = risk_tier(manifest.raw)
    record = release_record(
        manifest.app_id, args.image, tier, gates, approved, args.actor, args.run
    )
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    Path(args.output).write_text(line + "\n", "utf-8")
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0


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
    migrate = manifest_sub.add_parser(
        "migrate", help="bring microapp.yaml to the current schema (idempotent, text edits)"
    )
    migrate.add_argument("--file", default=str(Settings.from_env().manifest_path))
    migrate.add_argument("--check", action="store_true", help="only say whether it is needed")
    migrate.set_defaults(func=cmd_manifest_migrate)

    life = sub.add_parser("lifecycle", help="the app's lifecycle (expiry)")
    life_sub = life.add_subparsers(dest="action", required=True)
    renew = life_sub.add_parser("renew", help="extend lifecycle.expires (make renew)")
    renew.add_argument("--file", default=str(Settings.from_env().manifest_path))
    renew.add_argument("--days", type=int, default=MAX_EXPIRY_DAYS,
                       help=f"days from today (1 to {MAX_EXPIRY_DAYS}, the default)")  # fmt: skip
    renew.set_defaults(func=cmd_lifecycle_renew)

    report = sub.add_parser("report", help="the promotion report from report/ (make report)")
    report.add_argument("--dir", default="report")
    report.set_defaults(func=cmd_report)

    catalog = sub.add_parser(
        "catalog", help="write catalog-info.yaml (Backstage Component) from microapp.yaml"
    )
    catalog.add_argument("--file", default=str(Settings.from_env().manifest_path))
    catalog.add_argument("--answers", default=".copier-answers.yml")
    catalog.add_argument("--output", default="catalog-info.yaml")
    catalog.add_argument("--check", action="store_true", help="fail when the file is out of date")
    catalog.set_defaults(func=cmd_catalog)

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    verify = audit_sub.add_parser(
        "verify", help="verify the hash chain (in the database, or in an exported file)"
    )
    verify.add_argument("--file", help="an exported audit JSONL file (e.g. MICROAPP_AUDIT_FILE)")
    verify.add_argument("--database", help="database URL (default: DATABASE_URL)")
    verify.set_defaults(func=cmd_audit_verify)

    dbp = sub.add_parser("db", help="database migrations (Alembic)")
    db_sub = dbp.add_subparsers(dest="action", required=True)
    db_sub.add_parser(
        "upgrade", help="migrate DATABASE_URL: guardrails' tables, then the app's"
    ).set_defaults(func=cmd_db_upgrade)
    db_sub.add_parser(
        "check", help="fail when the app's models and its migrations disagree"
    ).set_defaults(func=cmd_db_check)
    rev = db_sub.add_parser("revision", help="write the next migration of the app's models")
    rev.add_argument("-m", "--message", required=True, help="what changed, in a few words")
    rev.set_defaults(func=cmd_db_revision)

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

    deploy = sub.add_parser("deploy", help="deployment: chart values, the expiry gate")
    deploy_sub = deploy.add_subparsers(dest="action", required=True)
    values = deploy_sub.add_parser("values", help="the Helm chart's values from microapp.yaml")
    values.add_argument("--file", default=str(Settings.from_env().manifest_path))
    values.add_argument("--output", help="write to this file (default: print)")
    values.set_defaults(func=cmd_deploy_values)
    gate = deploy_sub.add_parser("gate", help="refuse a deploy after expiry, warn before it")
    gate.add_argument("--file", default=str(Settings.from_env().manifest_path))
    gate.add_argument("--today", help="decide as of this date (YYYY-MM-DD)")
    gate.add_argument("--environment", help="where to: production also needs stage production")
    gate.add_argument("--outputs", help="append expiry=<ok|soon|expired> and days_left=N here")
    gate.set_defaults(func=cmd_deploy_gate)

    record = deploy_sub.add_parser("record", help="the release's audit record (gates, approvals)")
    record.add_argument("--file", default=str(Settings.from_env().manifest_path))
    record.add_argument("--image", required=True, help="<repository>@sha256:... released")
    record.add_argument("--gates", help="JSON: GitHub's toJSON(needs) or GitLab's pipeline jobs")
    record.add_argument("--gate", action="append", default=[], help="JOB=RESULT (e.g. this job)")
    record.add_argument("--approvals", help="JSON: GitHub's run reviews or GitLab's deployments")
    record.add_argument("--actor", default="ci", help="who started the release")
    record.add_argument("--run", default="", help="the CI run's id or URL")
    record.add_argument("--output", default="release-record.jsonl")
    record.set_defaults(func=cmd_deploy_record)

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
