"""Guardrail overhead under load: a generated app vs a bare FastAPI app (run by bench/run.py).

Runs with the generated app's virtual environment (.venv, made by the app's `make setup`: it
imports guardrails from the installed microapp-guardrails[testing]). It starts, all on 127.0.0.1:
the local OIDC provider (guardrails.testing.devserver.run_idp), a small OTLP/HTTP receiver,
then each app in turn under uvicorn (same settings for both; an app with its own .venv runs
with it), signs in to the guarded one through the real redirects (guardrails.testing.login),
and drives each route with a load
generator in another process (wrk if installed, else bench/loadgen.py). Every load run is
bounded by a request count and a duration. Prints one JSON document after `LOADTEST-JSON `.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
ROUTES = {  # name: (method, path)
    "hello": ("GET", "/bench/hello"),
    "page": ("GET", "/bench/page"),
    "action": ("POST", "/bench/action"),
}


# ---------------------------------------------------------------------- OTLP receiver
class Receiver(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP protobuf posts as a collector does; counts posts, bytes and spans."""

    lock = threading.Lock()
    posts: ClassVar[Counter] = Counter()
    payload: ClassVar[Counter] = Counter()
    spans = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        spans = 0
        if self.path == "/v1/traces":
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )

            request = ExportTraceServiceRequest.FromString(body)
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            type(self).posts[self.path] += 1
            type(self).payload[self.path] += len(body)
            type(self).spans += spans
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def start_receiver() -> tuple[ThreadingHTTPServer, str, type[Receiver]]:
    """A receiver with its own counters (one per app under test)."""
    handler = type("AppReceiver", (Receiver,), {"posts": Counter(), "payload": Counter()})
    server = ThreadingHTTPServer((HOST, 0), handler)
    threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True).start()
    return server, f"http://{HOST}:{server.server_port}", handler


def telemetry_report(handler: type[Receiver], served: int) -> dict:
    return {
        "receiver_posts": dict(handler.posts),
        "receiver_bytes": dict(handler.payload),
        "spans_received": handler.spans,
        "requests_sent": served,
        "spans_per_request": round(handler.spans / served, 2) if served else None,
    }


# ---------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly (lifespan)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# One bench user makes thousands of requests a minute: far above an app's request quota
# (`quotas.requests_per_minute`, 120 by default), which would answer 429. The quota is raised, not
# removed, so its check is still measured.
BENCH_QUOTA = 10**9


def raise_request_quota(app_dir: Path) -> None:
    """Set `quotas.requests_per_minute` in the app's microapp.yaml to BENCH_QUOTA."""
    manifest = app_dir / "microapp.yaml"
    if not manifest.exists():
        return
    text = manifest.read_text()
    raised, found = re.subn(
        r"^(\s+requests_per_minute:\s*)\d+", rf"\g<1>{BENCH_QUOTA}", text, flags=re.M
    )
    if not found:  # not declared: the default applies, so declare it
        line = f"  requests_per_minute: {BENCH_QUOTA}\n"
        raised, found = re.subn(r"^quotas:[ \t]*\n", lambda m: m[0] + line, text, flags=re.M)
        if not found:
            raised = f"{text.rstrip()}\nquotas:\n{line}"
    if raised != text:
        manifest.write_text(raised)


def start_server(name: str, factory: str, app_dir: Path, work: Path, env: dict) -> Server:
    raise_request_quota(app_dir)
    port = free_port()
    log = work / f"{name}.log"
    env = {**env, "MICROAPP_BASE_URL": f"http://{HOST}:{port}"}
    own = app_dir / ".venv" / "bin" / "python"  # the app's own environment, if it has one
    command = [
        str(own) if own.exists() else sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=out, stderr=out)
    server = Server(name, port, process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} app did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name} app did not answer /healthz:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def base_env() -> dict[str, str]:
    """This environment without any MICROAPP_*/OTEL_*/VAULT_* setting that would skew a run."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MICROAPP_", "OTEL_", "VAULT_", "DATABASE_URL", "PYTHON"))
    }


# ---------------------------------------------------------------------- load generation
def run_load(
    args,
    port: int,
    method: str,
    path: str,
    cookie: str,
    body: str,
    conns: int,
    duration: float,
    requests: int,
    ok: tuple[int, ...] = (200,),
) -> dict:
    """One bounded load run from another process; returns the generator's JSON report.
    `ok`: the statuses that count as answered (the Python generator only; wrk counts 2xx)."""
    if args.loadgen == "wrk":
        threads = 2 if args.cpus > 2 and conns >= 4 else 1
        per_thread = math.ceil(requests / threads)
        command = [
            args.wrk,
            f"-t{threads}",
            f"-c{conns}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "wrk_report.lua"),
            f"http://{HOST}:{port}{path}",
            "--",
            str(per_thread),
            method,
            cookie or "-",
            body or "-",
        ]
        marker = "WRK-JSON "
    else:
        command = [
            sys.executable,
            str(BENCH / "loadgen.py"),
            f"--port={port}",
            f"--path={path}",
            f"--method={method}",
            f"--cookie={cookie}",
            f"--body={body}",
            f"--connections={conns}",
            f"--duration={duration}",
            f"--requests={requests}",
            *(f"--ok-status={status}" for status in ok),
        ]
        marker = "LOADGEN-JSON "
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    for line in done.stdout.splitlines():
        if line.startswith(marker):
            report = json.loads(line[len(marker) :])
            report["rps"] = report["requests"] / report["duration_s"] if report["requests"] else 0
            args.sent[port] += report["requests"]
            return report
    raise RuntimeError(f"load generator failed ({done.returncode}): {done.stdout}{done.stderr}")


def sign_in(server: Server, manifest) -> tuple[str, str, str]:
    """A real sign-in through the local provider; returns (cookie header, csrf, user)."""
    from guardrails.testing import demo_users, login

    user = demo_users(manifest)[0].email
    with httpx.Client(follow_redirects=True, timeout=15, headers={"accept": "text/html"}) as c:
        login(c, types.SimpleNamespace(url=server.url), user)
        csrf = c.get(f"{server.url}/bench/csrf").json()["csrf_token"]
        name = next(n for n in c.cookies if "microapp-session" in n)
        cookie = f"{name}={c.cookies[name]}"
    return cookie, csrf, user


def check_routes(server: Server, cookie: str, body: str) -> None:
    """Each bench route answers 200 with this cookie (a redirect would mean: not signed in)."""
    headers = {"cookie": cookie, "accept": "text/html"} if cookie else {"accept": "text/html"}
    for method, path in ROUTES.values():
        r = httpx.request(
            method,
            server.url + path,
            headers={**headers, "content-type": "application/x-www-form-urlencoded"},
            content=body if method == "POST" else None,
            timeout=10,
        )
        if r.status_code != 200:
            raise RuntimeError(f"{server.name} {method} {path} answered {r.status_code}: {r.text}")


def audit_stats(server: Server, cookie: str) -> list[float]:
    r = httpx.get(f"{server.url}/bench/audit-stats", headers={"cookie": cookie}, timeout=10)
    r.raise_for_status()
    return r.json()["append_seconds"]


def summary_ms(seconds: list[float]) -> dict:
    ms = sorted(x * 1000 for x in seconds)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)],
        "max": ms[-1],
    }


# ---------------------------------------------------------------------- audit, isolated
def audit_isolated(work: Path, samples: int) -> dict:
    """`AuditLog.record` timed alone (no load, no web server): each event committed on its own
    in a SQLite database, then delivered to the JSONL file with fsync on and off."""
    import structlog
    from guardrails.auditing import chain
    from guardrails.auditing.log import AuditLog
    from guardrails.auditing.outbox import JsonlFileSink, Outbox
    from guardrails.core import db

    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    out = {}
    for fsync in (True, False):
        engine = db.make_engine(f"sqlite:///{work / f'audit-isolated-{fsync}.db'}")
        db.create_all(engine)
        chain.ensure_head(engine, "bench")
        sessions = db.make_sessionmaker(engine)
        sink = JsonlFileSink(work / f"audit-isolated-{fsync}.jsonl", fsync=fsync)
        bare = AuditLog(app_id="bench", sessions=sessions, outbox=Outbox("bench", sessions, []))
        log = AuditLog(app_id="bench", sessions=sessions, outbox=Outbox("bench", sessions, [sink]))
        for _ in range(20):
            log.record("bench.action", resource=("thing", 1), metadata={"note": 5})
        appends, records = [], []
        for _ in range(samples):
            started = time.perf_counter()
            bare.record("bench.action", resource=("thing", 1), metadata={"note": 5})
            appends.append(time.perf_counter() - started)
        for _ in range(samples):
            started = time.perf_counter()
            log.record("bench.action", resource=("thing", 1), metadata={"note": 5})
            records.append(time.perf_counter() - started)
        key = "fsync" if fsync else "no_fsync"
        out[key] = {"append": summary_ms(appends), "record": summary_ms(records)}
        engine.dispose()
    return out


# ---------------------------------------------------------------------- profiling
def profile(args, server: Server, route: str, cookie: str, body: str, out: Path) -> dict:
    """py-spy on a server during one extra (unmeasured) throughput run of `route`."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        return {"error": "py-spy is not installed"}
    seconds = max(5, round(args.duration))
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.process.pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--gil",
            "--format",
            "speedscope",
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(0.5)
    method, path = ROUTES[route]
    run_load(args, server.port, method, path, cookie, body, args.connections, seconds, 10**6)
    log, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {log[-2000:]}"}
    return {"route": route, "speedscope": str(out), **summarise_speedscope(out)}


def profile_worst(args, report: dict, targets: dict, routes: list[str]) -> dict:
    """py-spy the guarded app and route furthest below its bare anchor, then the anchor on the
    same route, so the two top-10 lists can be set side by side."""
    ratios = {}
    for name, app in report["apps"].items():
        anchor = app.get("anchor")
        if anchor and name in report["routes"] and anchor in report["routes"]:
            for route in routes:
                ours = report["routes"][name][route]["throughput"]["rps"]
                theirs = report["routes"][anchor][route]["throughput"]["rps"]
                ratios[(name, route)] = ours / theirs if theirs else 0.0
    if not ratios:
        return {"error": "no guarded app with an anchor was measured"}
    name, route = min(ratios, key=ratios.get)
    anchor = report["apps"][name]["anchor"]
    out = {"app": name, "route": route, "ratio": round(ratios[(name, route)], 2)}
    for role, target in (("guarded", name), ("bare", anchor)):
        t = targets[target]
        path = args.profile.with_name(
            args.profile.name.replace(".speedscope", f"-{target}.speedscope")
        )
        out[role] = {"app": target, **profile(args, t.server, route, t.cookie, t.body, path)}
    return out


def _bucket(file: str) -> str:
    """A frame's component: guardrails module, third-party package, or stdlib module."""
    path = file.replace("\\", "/")
    if "/guardrails/" in path:  # the installed package: guardrails.<subpackage>.<module>
        inside = path.rsplit("/guardrails/", 1)[1].removesuffix(".py").replace("/", ".")
        return "guardrails." + inside.removesuffix(".__init__")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.endswith("/apps.py"):
        return "bench routes"
    if "/src/app/" in path:
        return "app (owner code)"
    if "/lib/python" in path:
        return "stdlib:" + path.rsplit("/lib/python", 1)[1].split("/", 2)[1].removesuffix(".py")
    return "other"


HOT_SPOTS = {  # functions whose inclusive share says what one guardrail costs
    "GuardrailsMiddleware.__call__": "the guardrails' middleware (and everything inside it)",
    "GuardrailsMiddleware._read_session": "session cookie check + read",
    "SessionStore.read": "server-side session read (per request)",
    "SessionStore.save": "server-side session write",
    "check_csrf": "CSRF check (unsafe methods)",
    "enforce_quota": "the request quota",
    "HttpServer.start": "OTel: request span and metric, start",
    "HttpServer.end": "OTel: request span and metric, end",
    "AuditLog.record": "audit record (event, chain, log line)",
    "AuditLog._append": "audit chain append (in the change's transaction)",
    "Chainer.after_commit": "audit: chaining round after the commit (PostgreSQL)",
    "BatchProcessor.worker": "OTel: span export thread",
    "prepare_secrets": "secrets gate",
}


def summarise_speedscope(path: Path, top: int = 10) -> dict:
    """Where the GIL time went: self time by component, and the inclusive share of the
    functions that say what each guardrail costs (HOT_SPOTS)."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    self_time, functions, function_self = Counter(), Counter(), Counter()
    total = 0.0
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=False):
            if not stack:
                continue
            total += weight
            leaf = frames[stack[-1]]
            self_time[_bucket(leaf.get("file", ""))] += weight
            function_self[f"{leaf['name']} ({_bucket(leaf.get('file', ''))})"] += weight
            seen = set()
            for i in stack:
                f = frames[i]
                name = f"{_bucket(f.get('file', ''))}: {f['name']}"
                if name not in seen:
                    seen.add(name)
                    functions[name] += weight
    spots = Counter({k: v for k, v in functions.items() if k.split(": ", 1)[1] in HOT_SPOTS})

    def share(counter: Counter, n: int = top) -> list[list]:
        return [[k, round(100 * v / total, 1)] for k, v in counter.most_common(n)]

    return {
        "gil_seconds": round(total, 2),
        "self_pct": share(self_time),
        "functions_self_pct": share(function_self),
        "hot_spots_pct": [
            [name, pct, HOT_SPOTS[name.split(": ", 1)[1]]]
            for name, pct in share(spots, len(HOT_SPOTS))
        ],
    }


# ---------------------------------------------------------------------- apps and databases
ENGINE_TAG = {"sqlite": "sqlite", "postgresql": "pg"}


def app_name(engine: str, mode: str) -> str:
    """guarded (SQLite, OTel exporting: the name earlier results use), guarded-otel-off,
    guarded-pg, guarded-pg-otel-off; against: the --against app (SQLite, exporting)."""
    if mode == "against":
        return "against"
    name = "guarded" if engine == "sqlite" else f"guarded-{ENGINE_TAG[engine]}"
    return name if mode == "on" else f"{name}-otel-off"


def database_urls(args, engines: list[str], stack: contextlib.ExitStack, report: dict) -> dict:
    """engine: a function giving each app its own database. PostgreSQL: one throw-away cluster
    with fsync on (commits as durable as in production), a database per app."""
    urls = {}
    if "sqlite" in engines:
        urls["sqlite"] = lambda name: f"sqlite:///{args.work / name}.db"
    if "postgresql" in engines:
        from guardrails.testing.postgres import PostgresCluster, PostgresUnavailable

        try:
            cluster = stack.enter_context(PostgresCluster.start(durable=True))
        except PostgresUnavailable as exc:
            report["postgresql_skipped"] = str(exc)
            return urls

        def pg_url(name: str) -> str:
            import psycopg

            database = name.replace("-", "_")
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {database}")  # a name made here, not input
            return cluster.url.rsplit("/", 1)[0] + "/" + database

        urls["postgresql"] = pg_url
    return urls


def db_upgrade(app_dir: Path, env: dict) -> None:
    """`python -m guardrails db upgrade` with the app's environment (production never migrates
    at start-up; only a laptop's SQLite does)."""
    own = app_dir / ".venv" / "bin" / "python"
    python = str(own) if own.exists() else sys.executable
    done = subprocess.run(
        [python, "-m", "guardrails", "db", "upgrade"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"db upgrade failed in {app_dir}:\n{done.stdout}{done.stderr}")


def rss_mib(pid: int) -> float | None:
    """The process's resident memory now (Linux /proc), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------- main
@dataclasses.dataclass
class Target:
    """One app under load: its server, its cookie and form body (the bare app needs none)."""

    server: Server
    cookie: str
    body: str
    audited: bool


def combine(runs: list[dict]) -> dict:
    """Rounds of one measurement: the median of each figure, and every round kept."""
    out = {
        "rounds": len(runs),
        "requests": sum(r["requests"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
        "non_ok": sum(r["non_ok"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "rps": statistics.median(r["rps"] for r in runs),
        "latency_ms": {
            k: statistics.median(r["latency_ms"][k] for r in runs) for k in runs[0]["latency_ms"]
        },
        "runs": runs,
    }
    appends = [x for r in runs for x in r.pop("audit_append_seconds", [])]
    if appends:
        out["audit_append_ms"] = summary_ms(appends)
    return out


def measure(args, targets: dict[str, Target], routes: list[str]) -> dict:
    """Each route on each app, in alternating rounds so that a change in the machine's other
    work during the benchmark affects both apps alike."""
    passes = (("throughput", args.connections, args.duration), ("latency", 1, args.latency))
    raw: dict = {name: {r: {p[0]: [] for p in passes} for r in routes} for name in targets}
    for route in routes:
        method, path = ROUTES[route]
        for t in targets.values():  # warm-up, not measured
            body = t.body if method == "POST" else ""
            run_load(
                args,
                t.server.port,
                method,
                path,
                t.cookie,
                body,
                args.connections,
                args.warmup,
                args.requests,
            )
        for n in range(args.rounds):
            order = list(targets.items())
            if n % 2:
                order.reverse()
            for pass_name, conns, seconds in passes:
                for name, t in order:
                    body = t.body if method == "POST" else ""
                    if t.audited:
                        audit_stats(t.server, t.cookie)  # forget earlier appends
                    report = run_load(
                        args,
                        t.server.port,
                        method,
                        path,
                        t.cookie,
                        body,
                        conns,
                        seconds,
                        args.requests,
                    )
                    if t.audited and method == "POST":
                        report["audit_append_seconds"] = audit_stats(t.server, t.cookie)
                    raw[name][route][pass_name].append(report)
    return {
        name: {r: {p: combine(runs) for p, runs in by_pass.items()} for r, by_pass in rs.items()}
        for name, rs in raw.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure")
    parser.add_argument("--duration", type=float, default=4, help="seconds per round")
    parser.add_argument("--latency", type=float, default=2, help="seconds per 1-conn round")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200_000, help="cap per load run")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--audit-samples", type=int, default=500)
    parser.add_argument(
        "--engines", default="sqlite,postgresql", help="databases the apps run on (each its own)"
    )
    parser.add_argument("--otel", default="on,off", help="guarded app with OTel exporting / off")
    parser.add_argument("--profile", type=Path, help="write a py-spy speedscope profile here")
    parser.add_argument(
        "--app-env", action="append", default=[], help="KEY=VALUE for the guarded app (repeat)"
    )
    parser.add_argument(
        "--against-app-dir", type=Path, help="another rendered app, measured alongside"
    )
    args = parser.parse_args()
    args.wrk = shutil.which("wrk")
    if args.loadgen == "auto":
        args.loadgen = "wrk" if args.wrk else "python"
    if args.loadgen == "wrk" and not args.wrk:
        raise SystemExit("wrk is not installed (apt-get install wrk), use --loadgen python")
    args.cpus = os.cpu_count() or 1
    args.sent = Counter()  # requests sent per port, warm-ups included
    routes = [r for r in args.routes.split(",") if r]
    args.work.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the provider's access log
    sys.path.insert(0, str(args.app_dir / "src"))

    from guardrails.core.manifest import load_manifest
    from guardrails.testing.devserver import run_idp

    manifest = load_manifest(args.app_dir / "microapp.yaml")
    env = {
        **base_env(),
        "MICROAPP_DOTENV": str(args.work / "no.env"),
        "MICROAPP_SESSION_KEY": secrets.token_urlsafe(32),
        "MICROAPP_LOG_FORMAT": "json",
    }
    report: dict = {
        "engines": args.engines,
        "otel": args.otel,
        "app_env": args.app_env,
        "loadgen": args.loadgen,
        "connections": args.connections,
        "rounds": args.rounds,
        "routes": {},
        "telemetry": {},
    }
    engines = [e for e in args.engines.split(",") if e]
    otel = [o for o in args.otel.split(",") if o]
    servers: dict[str, Server] = {}
    receivers: dict[str, tuple] = {}
    report["apps"] = {}
    with contextlib.ExitStack() as stack:
        urls = database_urls(args, engines, stack, report)
        issuer = stack.enter_context(run_idp(manifest, host=HOST))
        try:
            targets: dict[str, Target] = {}
            for engine in engines:
                if engine not in urls:
                    continue
                bare = "bare" if engine == "sqlite" else f"bare-{ENGINE_TAG[engine]}"
                bare_env = {
                    **env,
                    "PYTHONPATH": os.pathsep.join([str(args.app_dir / "src"), str(BENCH)]),
                    "DATABASE_URL": urls[engine](bare),
                }
                servers[bare] = start_server(bare, "apps:bare", args.app_dir, args.work, bare_env)
                check_routes(servers[bare], "", "note=hello")
                targets[bare] = Target(servers[bare], "", "note=hello", audited=False)
                report["apps"][bare] = {"engine": engine, "otel": None, "anchor": None}
                variants = [(args.app_dir, on) for on in otel]
                if args.against_app_dir and engine == "sqlite":
                    variants.append((args.against_app_dir, "against"))
                for app_dir, mode in variants:
                    name = app_name(engine, mode)
                    app_env = {
                        **env,
                        "PYTHONPATH": os.pathsep.join([str(app_dir / "src"), str(BENCH)]),
                        "DATABASE_URL": urls[engine](name),
                        "MICROAPP_AUDIT_FILE": str(args.work / f"{name}-audit.jsonl"),
                        "MICROAPP_SSO_ISSUER": issuer,
                    }
                    if mode == "off":
                        app_env["OTEL_SDK_DISABLED"] = "true"
                    else:
                        receivers[name] = start_receiver()
                        app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receivers[name][1]
                    app_env.update(dict(kv.split("=", 1) for kv in args.app_env))
                    if engine != "sqlite":  # migrated first, as a deployment's Job does
                        db_upgrade(app_dir, app_env)
                    server = start_server(name, "apps:guarded", app_dir, args.work, app_env)
                    servers[name] = server
                    cookie, csrf, user = sign_in(server, manifest)
                    body = f"csrf_token={csrf}&note=hello"
                    check_routes(server, cookie, body)
                    report["signed_in_as"] = user
                    targets[name] = Target(server, cookie, body, audited=True)
                    report["apps"][name] = {"engine": engine, "otel": mode, "anchor": bare}
            report["routes"] = measure(args, targets, routes)
            for name, server in servers.items():
                report["apps"][name]["rss_mib"] = rss_mib(server.process.pid)
            if args.profile:
                report["profile"] = profile_worst(args, report, targets, routes)
        finally:
            for server in servers.values():
                server.stop()
    time.sleep(0.5)  # the last export (flushed at shutdown) is in flight
    for name, (receiver, _, handler) in receivers.items():
        receiver.shutdown()
        report["telemetry"][name] = telemetry_report(handler, args.sent[servers[name].port])
    report["audit_isolated"] = audit_isolated(args.work, args.audit_samples)
    report["versions"] = versions()
    print("LOADTEST-JSON " + json.dumps(report), flush=True)


def versions() -> dict:
    from importlib import metadata

    names = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "opentelemetry-sdk", "h11"]
    found = {n: metadata.version(n) for n in names if _installed(n)}
    found["uvicorn_loop"] = "uvloop" if _installed("uvloop") else "asyncio"
    found["uvicorn_http"] = "httptools" if _installed("httptools") else "h11"
    found["python"] = sys.version.split()[0]
    return found


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
