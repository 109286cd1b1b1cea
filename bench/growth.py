"""`make bench GROWTH=1` / `make bench SOAK=1`: costs as the data grows, and a mixed soak.

Growth curve: an approval app (rendered from this working tree with copier) is seeded with
10, 1,000, 10,000 and 100,000 requests (`python -m guardrails.testing seed`), on SQLite and on
a throw-away PostgreSQL cluster (guardrails.testing.postgres), and for each size its main list
(GET / signed in as the approver: the paged list, the "waiting for your decision" list and
their counts) is driven for a fixed time at 8 connections, once with `ui.page_size: 10` (every
size then shows 10 rows, as the 10-row anchor does: the curve isolates the data's cost) and once
with the default 50. The sizes are measured in turn, two rounds (medians reported), so a busy
spell on a shared machine hits them alike. Reported per size and page size: requests/s, p50
and p99 latency, the app process's RSS after the run, and each as a ratio to the 10-row anchor
at the same page size, measured in the same run.

Soak: the app seeded with 10,000 requests serves, for 5 minutes, signed-in reads of the main
list (6 connections) and submissions of new requests (2 connections) at once, exporting its
traces and metrics to a local OTLP/HTTP receiver. Reported per minute: requests, failed
requests, p99 of reads and of writes, RSS; and RSS at the end against RSS after the warm-up.

QUICK=1 shortens everything (sizes up to 10,000, 5-second runs, a 1-minute soak in 15-second
slices). The app runs under uvicorn in its own process with this repository's .venv
(microapp-guardrails from the working tree, PYTHONPATH=<app>/src). Results: printed as Markdown
tables and written to bench/results/growth-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))

from loadtest import (  # noqa: E402
    HOST,
    base_env,
    rss_mib,
    run_load,
    start_receiver,
    start_server,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FULL = {
    "sizes": [10, 1_000, 10_000, 100_000],
    "duration": 15.0,
    "warmup": 3.0,
    "soak_s": 300.0,
    "slice_s": 60.0,
    "soak_rows": 10_000,
    "soak_warmup": 30.0,
}
QUICK = {
    "sizes": [10, 1_000, 10_000],
    "duration": 5.0,
    "warmup": 2.0,
    "soak_s": 60.0,
    "slice_s": 15.0,
    "soak_rows": 1_000,
    "soak_warmup": 10.0,
}


def render_app(work: Path, kind: str = "approval") -> Path:
    app = work / kind
    subprocess.run(
        [
            str(Path(sys.executable).parent / "copier"),
            "copy",
            "--defaults",
            "--quiet",
            "-d",
            "app_name=Leave requests",
            "-d",
            "owner_email=hr-ops@example.com",
            "-d",
            f"kind={kind}",
            "--vcs-ref",
            "HEAD",
            str(REPO),
            str(app),
        ],
        check=True,
    )
    # the working tree's kind files, committed or not (a bench of what is being changed)
    src = REPO / "kinds" / kind / "files" / "src" / "app"
    for path in src.rglob("*"):
        if path.is_file():
            target = app / "src" / "app" / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return app


# The Python generator (it counts a chosen status as answered: the writes' 303).
LOADGEN = types.SimpleNamespace(loadgen="python", sent=Counter(), cpus=os.cpu_count() or 1)


def load(
    port: int,
    path: str,
    cookie: str,
    conns: int,
    duration: float,
    method: str = "GET",
    body: str = "",
    ok: tuple[int, ...] = (200,),
) -> dict:
    return run_load(LOADGEN, port, method, path, cookie, body, conns, duration, 10**7, ok=ok)


def sign_in(url: str, email: str, csrf_page: str = "/requests/new") -> tuple[str, str]:
    """A real sign-in at the local provider; returns (cookie header, CSRF token)."""
    from guardrails.testing import login

    with httpx.Client(follow_redirects=True, timeout=15, headers={"accept": "text/html"}) as c:
        login(c, types.SimpleNamespace(url=url), email)
        found = CSRF.search(c.get(f"{url}{csrf_page}").text) if csrf_page else None
        name = next(n for n in c.cookies if "microapp-session" in n)
        return f"{name}={c.cookies[name]}", found[1] if found else ""


class Databases:
    """A fresh database per size: a new SQLite file, or a new PostgreSQL database."""

    def __init__(self, engine: str, work: Path, pg_url: str | None):
        self.engine, self.work, self.pg_url, self.n = engine, work, pg_url, 0

    def fresh(self) -> str:
        self.n += 1
        if self.engine == "sqlite":
            return f"sqlite:///{self.work / f'growth-{self.n}.db'}"
        from sqlalchemy import create_engine, text

        admin = create_engine(
            self.pg_url.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE growth_{self.n}"))
        admin.dispose()
        return self.pg_url.rsplit("/", 1)[0] + f"/growth_{self.n}"


def in_app(app: Path, env: dict, what: str, *args: str) -> None:
    """`python *args` in the app's folder with its environment; raises with its output."""
    done = subprocess.run([sys.executable, *args], cwd=app, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stdout}{done.stderr[-3000:]}")


def seed(app: Path, env: dict, rows: int) -> float:
    started = time.perf_counter()
    # the schema first, as a deployment does (only a laptop's SQLite is upgraded at start-up)
    in_app(app, env, "db upgrade", "-m", "guardrails", "db", "upgrade")
    in_app(app, env, f"seeding {rows} rows", "-m", "guardrails.testing", "seed", f"--rows={rows}")
    # The seeding command gives the audit export 5 s; a big seed leaves a backlog that the app
    # would deliver while it is measured. An app in use has its export current: deliver it now.
    flush = "from guardrails.core.runtime import runtime\n"
    flush += "with runtime() as rt:\n    assert rt.audit_log.outbox.flush(timeout=900)\n"
    in_app(app, env, "delivering the audit export", "-c", flush)
    return time.perf_counter() - started


def app_env(base: dict, app: Path, work: Path, issuer: str, url: str, tag: str) -> dict:
    return {
        **base,
        "PYTHONPATH": str(app / "src"),
        "DATABASE_URL": url,
        "MICROAPP_AUDIT_FILE": str(work / f"audit-{tag}.jsonl"),
        "MICROAPP_SSO_ISSUER": issuer,
        "OTEL_SDK_DISABLED": "true",
    }


def set_page_size(app: Path, size: int) -> None:
    """The app's `ui.page_size` (read at start-up): the rendered manifest plus a `ui` block."""
    manifest = app / "microapp.yaml"
    original = app / "microapp.yaml.orig"
    if not original.exists():
        original.write_bytes(manifest.read_bytes())
    manifest.write_text(f"{original.read_text()}\nui:\n  page_size: {size}\n")


def measure_list(args, app: Path, work: Path, env: dict, tag: str) -> dict:
    server = start_server(tag, "app.main:build", app, work, env)
    try:
        cookie, _ = sign_in(server.url, "approver@example.com")
        load(server.port, "/", cookie, args.connections, args.warmup)
        report = load(server.port, "/", cookie, args.connections, args.duration)
        if report["ok"] != report["requests"] or report["socket_errors"]:
            raise RuntimeError(f"{tag}: failed requests: {report}")
        return {
            "rps": report["rps"],
            "p50_ms": report["latency_ms"]["p50"],
            "p99_ms": report["latency_ms"]["p99"],
            "rss_mib": rss_mib(server.process.pid),
            "requests": report["requests"],
        }
    finally:
        server.stop()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def growth(
    args, app: Path, work: Path, issuer: str, base: dict, engine: str, pg_url: str | None
) -> list[dict]:
    """Seed a database of each size, then measure every (size, page size) in turn, round after
    round: a busy spell on a shared machine then hits every size alike. Each figure is the
    median of the rounds; ratios are to the first size at the same page size."""
    dbs = Databases(engine, work, pg_url)
    envs = {}
    for size in args.sizes:
        env = app_env(base, app, work, issuer, dbs.fresh(), f"{engine}-{size}")
        envs[size] = (env, seed(app, env, size))
        print(f"  {engine:10} {size:>7} rows seeded in {envs[size][1]:.1f} s", flush=True)
    runs: dict[tuple[int, int], list[dict]] = {}
    for n in range(args.rounds):
        for size in args.sizes:
            for page in args.page_sizes if n % 2 == 0 else args.page_sizes[::-1]:
                set_page_size(app, page)
                run = measure_list(args, app, work, envs[size][0], f"growth-{engine}-{size}")
                runs.setdefault((size, page), []).append(run)
                print(
                    f"  {engine:10} {size:>7} rows, page {page:>3}, round {n + 1}: "
                    f"{run['rps']:7.1f} req/s  p99 {run['p99_ms']:7.1f} ms  "
                    f"RSS {run['rss_mib']:6.1f} MiB",
                    flush=True,
                )
    rows_out = []
    for page in args.page_sizes:
        curve = []
        for size in args.sizes:
            measured = runs[(size, page)]
            curve.append(
                {
                    "engine": engine,
                    "rows": size,
                    "page_size": page,
                    "shown": min(size, page),
                    "seed_s": envs[size][1],
                    "rounds": measured,
                    **{k: median([r[k] for r in measured]) for k in measured[0]},
                }
            )
        anchor = curve[0]
        # With a page larger than the anchor's rows, the anchor shows fewer rows than a full
        # page: the first full page is a second anchor that separates "more rows on the page"
        # from "more rows in the database".
        full = next((r for r in curve if r["rows"] >= page), anchor)
        for row in curve:
            row["rps_ratio"] = row["rps"] / anchor["rps"]
            row["p99_ratio"] = row["p99_ms"] / anchor["p99_ms"]
            row["rss_ratio"] = row["rss_mib"] / anchor["rss_mib"]
            row["rps_full_ratio"] = row["rps"] / full["rps"]
            row["p99_full_ratio"] = row["p99_ms"] / full["p99_ms"]
        rows_out += curve
    original = app / "microapp.yaml.orig"
    (app / "microapp.yaml").write_bytes(original.read_bytes())  # the default page size again
    return rows_out


def dashboard_growth(args, work: Path, base: dict) -> list[dict]:
    """The dashboard's ticket table (GET /tickets, newest first) over a demo database of each
    size. The page is throttled to 60 views a minute per user (by design), so it is timed with
    40 sequential views per size instead of a throughput run."""
    from guardrails.core.manifest import load_manifest
    from guardrails.testing.devserver import run_idp

    app = render_app(work, "dashboard")
    out = []
    with run_idp(load_manifest(app / "microapp.yaml"), host=HOST) as issuer:
        for size in args.sizes:
            reports = work / f"reports-{size}.db"
            env = {
                **app_env(base, app, work, issuer, f"sqlite:///{work / 'dash.db'}", "dash"),
                "DEMO_REPORTS_URL": f"sqlite:///{reports}",
            }
            create = "import sys, pathlib; from app.demo_data import create; "
            create += "create(pathlib.Path(sys.argv[1]), int(sys.argv[2]))"
            subprocess.run(
                [sys.executable, "-c", create, str(reports), str(size)],
                env=env,
                cwd=app,
                check=True,
            )
            server = start_server(f"dashboard-{size}", "app.main:build", app, work, env)
            try:
                cookie, _ = sign_in(server.url, "viewer@example.com", csrf_page="")
                times = []
                with httpx.Client(headers={"cookie": cookie, "accept": "text/html"}) as c:
                    for n in range(45):
                        started = time.perf_counter()
                        answer = c.get(f"{server.url}/tickets", timeout=30)
                        if answer.status_code != 200:
                            raise RuntimeError(f"dashboard {size}: {answer.status_code}")
                        if n >= 5:  # the first five warm up
                            times.append((time.perf_counter() - started) * 1000)
                times.sort()
                out.append(
                    {
                        "rows": size,
                        "p50_ms": times[len(times) // 2],
                        "p99_ms": times[-1],
                        "rss_mib": rss_mib(server.process.pid),
                    }
                )
                print(
                    f"  dashboard {size:>7} tickets: page p50 {out[-1]['p50_ms']:6.1f} ms, "
                    f"max {out[-1]['p99_ms']:6.1f} ms, RSS {out[-1]['rss_mib']:6.1f} MiB",
                    flush=True,
                )
            finally:
                server.stop()
    for row in out:
        row["p50_ratio"] = row["p50_ms"] / out[0]["p50_ms"]
        row["rss_ratio"] = row["rss_mib"] / out[0]["rss_mib"]
    return out


def dashboard_table(rows: list[dict]) -> str:
    out = [
        "| tickets | page p50 ms | x 10-row | slowest of 40 ms | RSS MiB | x 10-row |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['rows']:,} | {r['p50_ms']:.1f} | {r['p50_ratio']:.2f} | "
            f"{r['p99_ms']:.1f} | {r['rss_mib']:.0f} | {r['rss_ratio']:.2f} |"
        )
    return "\n".join(out)


def both(first, second) -> tuple[dict, dict]:
    """Run two load generators at once; their reports."""
    results: list = [None, None]
    threads = [
        threading.Thread(target=lambda i=i, f=f: results.__setitem__(i, f()))
        for i, f in enumerate((first, second))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results[0], results[1]


def soak(args, app: Path, work: Path, issuer: str, base: dict) -> dict:
    receiver, endpoint, handler = start_receiver()
    env = {
        **app_env(base, app, work, issuer, f"sqlite:///{work / 'soak.db'}", "soak"),
        "OTEL_SDK_DISABLED": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
    }
    seed(app, env, args.soak_rows)
    server = start_server("soak", "app.main:build", app, work, env)
    minutes = []
    try:
        reader, _ = sign_in(server.url, "approver@example.com")
        writer, token = sign_in(server.url, "requester@example.com")
        body = f"csrf_token={token}&title=Soak+test+laptop&details=made+up&action=submit"
        load(server.port, "/", reader, 6, args.soak_warmup)
        warm_rss = rss_mib(server.process.pid)
        slices = max(1, round(args.soak_s / args.slice_s))
        for n in range(slices):
            read, write = both(
                lambda: load(server.port, "/", reader, 6, args.slice_s),
                lambda: load(
                    server.port,
                    "/requests",
                    writer,
                    2,
                    args.slice_s,
                    method="POST",
                    body=body,
                    ok=(303,),
                ),
            )
            minutes.append(
                {
                    "slice": n + 1,
                    "reads": read["requests"],
                    "writes": write["requests"],
                    "write_failed": write["non_ok"] + write["socket_errors"],
                    "failed": read["non_ok"]
                    + read["socket_errors"]
                    + write["non_ok"]
                    + write["socket_errors"],
                    "read_p99_ms": read["latency_ms"]["p99"],
                    "write_p99_ms": write["latency_ms"]["p99"],
                    "read_rps": read["rps"],
                    "write_rps": write["rps"],
                    "rss_mib": rss_mib(server.process.pid),
                }
            )
            m = minutes[-1]
            print(
                f"  slice {m['slice']}: {m['reads']} reads ({m['read_rps']:.0f}/s, p99 "
                f"{m['read_p99_ms']:.0f} ms), {m['writes']} writes ({m['write_rps']:.0f}/s, "
                f"p99 {m['write_p99_ms']:.0f} ms), {m['failed']} failed, RSS "
                f"{m['rss_mib']:.1f} MiB",
                flush=True,
            )
    finally:
        server.stop()
    time.sleep(1)
    receiver.shutdown()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "guardrails",
            "audit",
            "verify",
            "--file",
            env["MICROAPP_AUDIT_FILE"],
        ],
        capture_output=True,
        text=True,
        cwd=app,
        env=env,
    )
    with Path(env["MICROAPP_AUDIT_FILE"]).open("rb") as fh:
        created = sum(1 for line in fh if b'"action":"approval.create"' in line) - args.soak_rows
    from sqlalchemy import create_engine, text

    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.scalar(text("SELECT COUNT(*) FROM approval_request"))
    engine.dispose()
    return {
        "writes_ok": sum(m["writes"] - m["write_failed"] for m in minutes),
        "rows_created": rows - args.soak_rows,
        "create_events": created,
        "rows_at_start": args.soak_rows,
        "slice_s": args.slice_s,
        "warm_rss_mib": warm_rss,
        "end_rss_mib": minutes[-1]["rss_mib"],
        "rss_ratio": minutes[-1]["rss_mib"] / warm_rss,
        "failed": sum(m["failed"] for m in minutes),
        "slices": minutes,
        "otlp_posts": dict(handler.posts),
        "spans_received": handler.spans,
        "audit_verify": verify.stdout.strip() or verify.stderr.strip(),
    }


def table(rows: list[dict]) -> str:
    out = [
        "| engine | page size | rows | shown | req/s | x first | x first full | p50 ms | p99 ms "
        "| x first | x first full | RSS MiB | x first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['engine']} | {r['page_size']} | {r['rows']:,} | {r['shown']} | "
            f"{r['rps']:.0f} | {r['rps_ratio']:.2f} | {r['rps_full_ratio']:.2f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p99_ratio']:.2f} | "
            f"{r['p99_full_ratio']:.2f} | {r['rss_mib']:.0f} | {r['rss_ratio']:.2f} |"
        )
    return "\n".join(out)


def soak_table(s: dict) -> str:
    out = [
        "| slice | reads | writes | failed | read p99 ms | write p99 ms | RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in s["slices"]:
        out.append(
            f"| {m['slice']} | {m['reads']} | {m['writes']} | {m['failed']} | "
            f"{m['read_p99_ms']:.0f} | {m['write_p99_ms']:.0f} | {m['rss_mib']:.1f} |"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--soak", action="store_true", help="run the soak too")
    parser.add_argument("--no-growth", action="store_true", help="only the soak")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--kinds", default="approval,dashboard", help="whose main list")
    parser.add_argument("--sizes", help="comma-separated row counts (the first is the anchor)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--page-sizes",
        default="10,50",
        help="ui.page_size values, each a curve (10: every size shows 10 rows, like the 10-row "
        "anchor; 50: the default)",
    )
    parser.add_argument("--rounds", type=int, help="rounds over all sizes (median reported)")
    args = parser.parse_args()
    sizes = args.sizes
    for key, value in (QUICK if args.quick else FULL).items():
        setattr(args, key, value)
    if sizes:
        args.sizes = [int(s) for s in sizes.split(",")]
    args.page_sizes = [int(s) for s in args.page_sizes.split(",")]
    args.rounds = args.rounds or (1 if args.quick else 2)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    report: dict = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="microapp-growth-") as tmp:
        work = Path(tmp)
        app = render_app(work)
        sys.path.insert(0, str(app / "src"))
        from guardrails.core.manifest import load_manifest
        from guardrails.testing.devserver import run_idp

        manifest = load_manifest(app / "microapp.yaml")
        base = {
            **base_env(),
            "MICROAPP_DOTENV": str(work / "no.env"),
            "MICROAPP_SESSION_KEY": secrets.token_urlsafe(32),
            "MICROAPP_LOG_FORMAT": "json",
        }
        with run_idp(manifest, host=HOST) as issuer:
            if not args.no_growth and "approval" in args.kinds.split(","):
                report["growth"] = []
                for engine in args.engines.split(","):
                    print(f"growth curve, {engine}:", flush=True)
                    with contextlib.ExitStack() as stack:
                        pg_url = None
                        if engine == "postgresql":
                            from guardrails.testing.postgres import (
                                PostgresCluster,
                                PostgresUnavailable,
                            )

                            try:
                                pg_url = stack.enter_context(PostgresCluster.start()).url
                            except PostgresUnavailable as exc:
                                print(f"  skipped: {exc}")
                                continue
                        report["growth"] += growth(args, app, work, issuer, base, engine, pg_url)
        if not args.no_growth and "dashboard" in args.kinds.split(","):
            print("growth curve, dashboard (SQLite connector):", flush=True)
            report["dashboard"] = dashboard_growth(args, work, base)
        with run_idp(manifest, host=HOST) as issuer:
            if args.soak:
                print(f"soak, {args.soak_s:.0f} s:", flush=True)
                report["soak"] = soak(args, app, work, issuer, base)
    report["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"growth-{stamp}.json").write_text(json.dumps(report, indent=2))
    if report.get("growth"):
        print("\n" + table(report["growth"]))
    if report.get("dashboard"):
        print("\n" + dashboard_table(report["dashboard"]))
    if report.get("soak"):
        s = report["soak"]
        print("\n" + soak_table(s))
        print(
            f"\nRSS after warm-up {s['warm_rss_mib']:.1f} MiB, at the end {s['end_rss_mib']:.1f}"
            f" MiB (x {s['rss_ratio']:.2f}); failed requests: {s['failed']}; spans received: "
            f"{s['spans_received']}; audit: {s['audit_verify']}; requests created "
            f"{s['rows_created']} (answered 303: {s['writes_ok']}), their create events: "
            f"{s['create_events']}"
        )
    print(f"\nload average before {report['load']}, after {report['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
