"""The signed-in GET on a shared machine: CPU time per request, and where it goes.

Throughput on a machine that other work shares moves with that work (bench/loadtest.py's
ratios move by 10 points between runs on 2 busy cores). The CPU time the server process spends
per request moves much less: this script measures it for the bare app and for one or more
variants of the guarded app, in alternating rounds, and can profile them with py-spy.

It runs with a generated app's virtual environment, as bench/loadtest.py does (whose helpers it
uses: provider, OTLP receiver, servers, sign-in, load generator):

    make bench BENCH_ARGS="--only load --quick --keep"        # keeps the set-up app
    APP=$(ls -d /tmp/microapp-bench-*/ready-approval-1 | tail -1)
    $APP/.venv/bin/python bench/get_path.py --app-dir $APP \\
        --variant new=guardrails/src --variant old=/path/to/old/checkout/guardrails/src \\
        --variant new-off=guardrails/src:OTEL_SDK_DISABLED=true

A variant is NAME=GUARDRAILS_SRC[:KEY=VALUE,...]: the guarded app importing the guardrails
package from that folder (PYTHONPATH, ahead of the installed wheel, whose dependencies it must
share) with extra environment variables. Telemetry exports to a local OTLP receiver unless a
variant turns it off. `--profile` (py-spy in the app's environment) adds each app's 10
functions with the most self time while holding the GIL. Only for the benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loadtest  # noqa: E402 - bench/loadtest.py, next to this file

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(args, server, cookie: str) -> dict:
    method, path = loadtest.ROUTES[args.route]
    loadtest.run_load(args, server.port, method, path, cookie, "", args.connections, 1, 10**7)
    before = cpu_seconds(server.process.pid)
    report = loadtest.run_load(
        args, server.port, method, path, cookie, "", args.connections, args.seconds, 10**7
    )
    used = cpu_seconds(server.process.pid) - before
    return {
        "rps": report["rps"],
        "cpu_us": 1e6 * used / report["requests"],
        "non_ok": report.get("non_ok", 0),
    }


def spy(args, server, cookie: str, out: Path) -> Path:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not py_spy:
        raise SystemExit("py-spy is not installed in this environment (uv pip install py-spy)")
    command = [py_spy, "record", "--pid", str(server.process.pid), "--duration"]
    command += [str(round(args.seconds)), "--rate", "250", "--gil", "--format", "speedscope"]
    spying = subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    method, path = loadtest.ROUTES[args.route]
    loadtest.run_load(
        args, server.port, method, path, cookie, "", args.connections, args.seconds, 10**7
    )
    spying.wait(timeout=args.seconds + 60)
    return out


def top_functions(path: Path, n: int = 10) -> dict:
    """GIL seconds, the n functions with the most self time (% of GIL time), and the share of
    self time in the guardrails package's own functions."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    own, total, guardrails = Counter(), 0.0, 0.0
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=False):
            if not stack:
                continue
            total += weight
            leaf = frames[stack[-1]]
            own[f"{leaf['name']} ({loadtest._bucket(leaf.get('file', ''))})"] += weight
            if "/guardrails/" in leaf.get("file", ""):
                guardrails += weight
    return {
        "gil_seconds": round(total, 2),
        "guardrails_pct": round(100 * guardrails / total, 1) if total else 0.0,
        "top": [[name, round(100 * w / total, 1)] for name, w in own.most_common(n)],
    }


def parse_variant(text: str) -> tuple[str, Path, dict[str, str]]:
    name, rest = text.split("=", 1)
    source, _, extra = rest.partition(":")
    env = dict(kv.split("=", 1) for kv in extra.split(",") if kv)
    return name, Path(source).resolve(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--variant", action="append", required=True, help="NAME=SRC[:K=V,...]")
    parser.add_argument("--route", default="page", choices=sorted(loadtest.ROUTES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="py-spy each app once")
    parser.add_argument("--loadgen", default="wrk" if shutil.which("wrk") else "python")
    args = parser.parse_args()
    args.wrk, args.cpus, args.sent = shutil.which("wrk"), os.cpu_count() or 1, Counter()
    variants = [parse_variant(v) for v in args.variant]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the provider's access log
    work = Path(tempfile.mkdtemp(prefix="get-path-"))
    sys.path.insert(0, str(args.app_dir / "src"))
    from guardrails.core.manifest import load_manifest
    from guardrails.testing.devserver import run_idp

    manifest = load_manifest(args.app_dir / "microapp.yaml")
    base = {
        **loadtest.base_env(),
        "MICROAPP_DOTENV": str(work / "no.env"),
        "MICROAPP_SESSION_KEY": secrets.token_urlsafe(32),
        "MICROAPP_LOG_FORMAT": "json",
    }
    receiver, endpoint, _ = loadtest.start_receiver()
    results: dict[str, list[dict]] = {}
    profiles: dict[str, dict] = {}
    with run_idp(manifest, host=loadtest.HOST) as issuer:

        def start(name: str, source: Path | None, extra: dict[str, str]):
            path = [str(source)] if source else []
            env = {
                **base,
                "PYTHONPATH": os.pathsep.join([*path, str(args.app_dir / "src"), str(BENCH)]),
                "DATABASE_URL": f"sqlite:///{work / name}.db",
            }
            if source:
                env |= {
                    "MICROAPP_AUDIT_FILE": str(work / f"{name}-audit.jsonl"),
                    "MICROAPP_SSO_ISSUER": issuer,
                    "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                    **extra,
                }
            factory = "apps:guarded" if source else "apps:bare"
            server = loadtest.start_server(name, factory, args.app_dir, work, env)
            cookie = loadtest.sign_in(server, manifest)[0] if source else ""
            return server, cookie

        apps = [("bare", None, {}), *variants]
        for round_ in range(args.rounds):
            order = apps if round_ % 2 == 0 else list(reversed(apps))
            for name, source, extra in order:
                server, cookie = start(name, source, extra)
                try:
                    results.setdefault(name, []).append(measure(args, server, cookie))
                    if args.profile and round_ == 0:
                        out = work / f"{name}.speedscope.json"
                        profiles[name] = top_functions(spy(args, server, cookie, out))
                finally:
                    server.stop()
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{n} {r[-1]['cpu_us']:.0f} us" for n, r in results.items()),
                flush=True,
            )
    receiver.shutdown()
    bare_cpu = statistics.median(r["cpu_us"] for r in results["bare"])
    bare_rps = statistics.median(r["rps"] for r in results["bare"])
    print(
        f"\nGET /bench/{args.route}, {args.connections} connections, {args.rounds} rounds "
        f"of {args.seconds:g} s, medians; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'app':<24} {'CPU us/request':>15} {'bare/app CPU':>13} {'req/s':>8} {'ratio':>6}")
    for name, runs in results.items():
        cpu = statistics.median(r["cpu_us"] for r in runs)
        rps = statistics.median(r["rps"] for r in runs)
        print(f"{name:<24} {cpu:>15.0f} {bare_cpu / cpu:>13.2f} {rps:>8.0f} {rps / bare_rps:>6.2f}")
    for name, prof in profiles.items():
        print(
            f"\n{name}: {prof['gil_seconds']} s of GIL time, "
            f"{prof['guardrails_pct']} % of it in guardrails' own functions"
        )
        for function, pct in prof["top"]:
            print(f"  {pct:5.1f} %  {function}")
    print("GET-PATH-JSON " + json.dumps({"results": results, "profiles": profiles}))


if __name__ == "__main__":
    main()
