"""`make bench`: what the template costs its users, each figure against a baseline measured in
the same invocation (docs/performance.md explains the figures).

  1. `copier copy` of each kind with defaults vs `copier copy` of a one-file template
  2. `copier update` across one (throw-away) version vs a fresh copy of that version
  3. requests/s and latency of authenticated pages with every guardrail on vs a bare FastAPI
     app (bench/loadtest.py, run with the generated app's virtual environment)
  4. optional (--tests): this repository's `make test` wall time, by phase

Prints a table and writes it as JSON to bench/results/<UTC time>.json (and latest.json).
Everything it builds lives in a temporary folder; the app's virtual environment is cached
(see --cache) so that a second run does not reinstall it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
COPIER = str(BIN / "copier")
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "demo", "bench", "__pycache__", ".pytest_cache", ".ruff_cache"
)
ANSWERS = {"app_name": "Leave requests", "owner_email": "hr-ops@example.com"}
NOT_YET = "not yet available"
TARGETS = {"copy": 1.3, "update": 2.0, "get": 0.85, "audit_ms": 1.0}


# ---------------------------------------------------------------------- small helpers
def sh(cmd: list[str], cwd: Path | None = None, check: bool = True, **kw):
    env = {**os.environ, **kw.pop("env", {})}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}"
            f"{done.stderr[-3000:]}"
        )
    return done


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = sh(cmd, cwd=cwd, check=False)
    return time.perf_counter() - started, done


def git(cwd: Path, *args: str) -> str:
    return sh(["git", *args], cwd=cwd).stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(
        cwd,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.com",
        "-c",
        "core.hooksPath=/dev/null",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        message,
    )


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------- templates
def template_versions(tmp: Path) -> tuple[Path, str, str]:
    """This working tree as a throw-away template repository with two releases, like the
    update tests: vA is the working tree, vB changes only a guardrail file (no migration)."""
    tpl = tmp / "template"
    shutil.copytree(REPO, tpl, ignore=IGNORE)
    version_file = tpl / "templates/src/guardrails/_version.py"
    current = re.search(r'__version__ = "([^"]+)"', version_file.read_text())[1]
    major, minor, patch = (int(x) for x in re.findall(r"\d+", current)[:3])
    old, new = f"v{major}.{minor}.{patch}", f"v{major}.{minor}.{patch + 1}"
    git(tpl, "init", "-q", "-b", "main")
    commit_all(tpl, f"Release {old}")
    git(tpl, "tag", old)
    version_file.write_text(version_file.read_text().replace(f'"{current}"', f'"{new[1:]}"'))
    sh([sys.executable, "templates/src/guardrails/drift.py", "--write", "templates"], cwd=tpl)
    commit_all(tpl, f"Release {new}")
    git(tpl, "tag", new)
    return tpl, old, new


def floor_template(tmp: Path, files: int = 1, name: str = "") -> Path:
    """Copier's own floor: one question and `files` one-line templated files, in a git
    repository. With 1 file it is what copier costs at all; with as many files as an app has,
    what copier costs per file, whatever the files say."""
    floor = tmp / (name or f"floor-{files}")
    floor.mkdir()
    (floor / "copier.yml").write_text(
        '_min_copier_version: "9.19"\nname:\n  type: str\n  default: world\n'
    )
    if files == 1:
        (floor / "README.md.jinja").write_text("Hello {{ name }}\n")
    for i in range(files if files > 1 else 0):
        folder = floor / f"folder{i % 8}"
        folder.mkdir(exist_ok=True)
        (folder / f"file{i}.txt.jinja").write_text(f"File {i} says hello to {{{{ name }}}}\n")
    git(floor, "init", "-q", "-b", "main")
    commit_all(floor, f"{files} files")
    return floor


def kinds() -> list[str]:
    """Every kind the `kind` question offers (copier decides which ones it accepts)."""
    question = yaml.safe_load((REPO / "copier.yml").read_text())["kind"]
    choices = question.get("choices", {})
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def copy_cmd(tpl: Path, dst: Path, ref: str, kind: str | None) -> list[str]:
    cmd = [COPIER, "copy", "--quiet", "--defaults", "--vcs-ref", ref]
    if kind is not None:
        cmd += ["--data", f"kind={kind}"]
        for key, value in ANSWERS.items():
            cmd += ["--data", f"{key}={value}"]
    return [*cmd, str(tpl), str(dst)]


# ---------------------------------------------------------------------- 1. copy
def probe_kinds(tmp: Path, tpl: Path, ref: str) -> dict[str, dict]:
    """Copy each kind once (also the warm-up): accepted, or refused as not yet available."""
    found = {}
    for kind in kinds():
        dst = tmp / f"probe-{kind}"
        done = sh(copy_cmd(tpl, dst, ref, kind), check=False)
        text = done.stdout + done.stderr
        if done.returncode == 0:
            files = sum(1 for p in dst.rglob("*") if p.is_file())
            found[kind] = {"status": "ok", "files": files}
        elif NOT_YET in text:
            reason = next(ln.strip() for ln in text.splitlines() if NOT_YET in ln)
            found[kind] = {"status": "skipped", "reason": reason}
        else:
            found[kind] = {"status": "error", "reason": text.strip()[-500:]}
        log(f"kind {kind}: {found[kind]['status']}")
    return found


def bench_copy(tmp: Path, tpl: Path, ref: str, probed: dict, runs: int) -> dict:
    """Each accepted kind vs the one-file floor (the target), and vs a floor with as many files
    as the first kind's app (how much of the cost is copier's per-file work)."""
    out: dict = {"runs": runs, "kinds": {k: dict(v) for k, v in probed.items()}}
    accepted = [k for k, v in probed.items() if v["status"] == "ok"]
    files = probed[accepted[0]]["files"] if accepted else 1
    floors = {"floor": floor_template(tmp, 1), "floor_n": floor_template(tmp, files)}
    out["floor_n_files"] = files
    n = 0

    def fresh() -> Path:
        nonlocal n
        n += 1
        return tmp / f"copy-{n}"

    for floor in floors.values():
        timed(copy_cmd(floor, fresh(), "HEAD", None))  # warm-up
    times: dict[str, list[float]] = {k: [] for k in [*floors, *accepted]}
    for _ in range(runs):  # interleaved, so drift in machine load hits each alike
        for name, floor in floors.items():
            seconds, done = timed(copy_cmd(floor, fresh(), "HEAD", None))
            if done.returncode != 0:
                raise RuntimeError(f"copy of the {name} template failed: {done.stderr}")
            times[name].append(seconds)
        for kind in accepted:
            seconds, done = timed(copy_cmd(tpl, fresh(), ref, kind))
            if done.returncode != 0:
                raise RuntimeError(f"copy of {kind} failed: {done.stderr}")
            times[kind].append(seconds)
    for name in floors:
        out[f"{name}_seconds"] = times[name]
        out[f"{name}_median"] = median(times[name])
    for kind in accepted:
        entry = out["kinds"][kind]
        entry["seconds"] = times[kind]
        entry["median"] = median(times[kind])
        entry["ratio"] = entry["median"] / out["floor_median"]
        entry["ratio_n"] = entry["median"] / out["floor_n_median"]
        log(f"copy {kind}: {entry['median']:.3f} s, floor {out['floor_median']:.3f} s")
    return out


# ---------------------------------------------------------------------- 2. update
def floor_versions(tmp: Path, files: int) -> Path:
    """The many-file floor with an answers file and two releases (v1.0.0, v1.0.1 changes one
    file), so that `copier update` can be timed on a template that does nothing else."""
    floor = floor_template(tmp, files, name=f"floor-update-{files}")
    (floor / "{{ _copier_conf.answers_file }}.jinja").write_text(
        "{{ _copier_answers | to_nice_yaml }}"
    )
    commit_all(floor, "Answers file")
    git(floor, "tag", "v1.0.0")
    changed = floor / "folder0" / "file0.txt.jinja"
    changed.write_text(changed.read_text() + "A second line.\n")
    commit_all(floor, "One file changed")
    git(floor, "tag", "v1.0.1")
    return floor


def bench_update(tmp: Path, tpl: Path, old: str, new: str, kinds_ok: list[str], runs: int) -> dict:
    """`copier update` old -> new of each kind vs a fresh copy at new, interleaved; and the
    same for the many-file floor (what copier's update costs whatever the template)."""
    out: dict = {"runs": runs, "from": old, "to": new, "kinds": {}}
    files = _files_in(tmp, tpl, new, kinds_ok[0])
    subjects = [(kind, tpl, old, new, kind) for kind in kinds_ok]
    subjects.append(("floor", floor_versions(tmp, files), "v1.0.0", "v1.0.1", None))
    out["floor_n_files"] = files
    for name, template, from_, to, kind in subjects:
        update = [COPIER, "update", "--quiet", "--defaults", "--skip-answered"]
        update += ["--conflict", "inline", "--vcs-ref", to]
        copies, updates = [], []
        for i in range(runs + 1):  # the first pair is a warm-up
            app = tmp / f"update-{name}-{i}"
            sh(copy_cmd(template, app, from_, kind))
            git(app, "init", "-q", "-b", "main")
            commit_all(app, f"Generated at {from_}")
            seconds, done = timed(update, cwd=app)
            if done.returncode != 0:
                raise RuntimeError(f"copier update of {name} failed:\n{done.stderr[-3000:]}")
            answers = yaml.safe_load((app / ".copier-answers.yml").read_text())
            if answers.get("_commit") != to:
                raise RuntimeError(f"update of {name} did not reach {to}: {answers}")
            fresh_seconds, done = timed(copy_cmd(template, tmp / f"fresh-{name}-{i}", to, kind))
            if done.returncode != 0:
                raise RuntimeError(f"copy of {name} at {to} failed: {done.stderr}")
            if i:
                updates.append(seconds)
                copies.append(fresh_seconds)
        entry = {
            "update_seconds": updates,
            "copy_seconds": copies,
            "update_median": median(updates),
            "copy_median": median(copies),
        }
        entry["ratio"] = entry["update_median"] / entry["copy_median"]
        if kind is None:
            out["floor"] = entry
        else:
            out["kinds"][kind] = entry
        log(f"update {name}: {entry['update_median']:.3f} s, copy {entry['copy_median']:.3f} s")
    return out


def _files_in(tmp: Path, tpl: Path, ref: str, kind: str) -> int:
    dst = tmp / f"count-{kind}"
    if not dst.exists():
        sh(copy_cmd(tpl, dst, ref, kind))
    return sum(1 for p in dst.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- 3. load
def app_venv(app: Path, cache: Path, profile: bool) -> Path:
    """A virtual environment with the generated app's dependencies (cached by their hash)."""
    project = tomllib.loads((app / "pyproject.toml").read_text())["project"]
    deps = sorted(project["dependencies"] + project["optional-dependencies"]["dev"])
    key = hashlib.sha256(json.dumps([sys.version, deps]).encode()).hexdigest()[:12]
    venv = cache / f"venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        log(f"building the app's virtual environment in {venv} (cached for the next run)")
        shutil.rmtree(venv, ignore_errors=True)
        sh([sys.executable, "-m", "venv", str(venv)])
        sh([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        sh([str(python), "-m", "pip", "install", "--quiet", *deps])
        (venv / ".complete").write_text("\n".join(deps))
    if profile and not (venv / "bin" / "py-spy").exists():
        sh([str(python), "-m", "pip", "install", "--quiet", "py-spy"])
    return python


def bench_load(args, tmp: Path, tpl: Path, ref: str, kind: str) -> dict:
    app = tmp / "load-app"
    sh(copy_cmd(tpl, app, ref, kind))
    python = app_venv(app, args.cache, args.profile)
    profile = RESULTS / f"profile-{args.stamp}.speedscope.json" if args.profile else None
    cmd = [
        str(python),
        str(BENCH / "loadtest.py"),
        f"--app-dir={app}",
        f"--work={tmp / 'load-work'}",
        f"--rounds={args.rounds}",
        f"--duration={args.duration}",
        f"--latency={args.latency_duration}",
        f"--warmup={args.warmup}",
        f"--connections={args.connections}",
        f"--requests={args.requests}",
        f"--loadgen={args.loadgen}",
        f"--audit-samples={args.audit_samples}",
    ]
    if profile:
        cmd.append(f"--profile={profile}")
    if args.against:
        other = tmp / "against-template"
        shutil.copytree(args.against, other, ignore=IGNORE)
        git(other, "init", "-q", "-b", "main")
        commit_all(other, "The template to compare with")
        sh(copy_cmd(other, tmp / "against-app", "HEAD", kind))
        cmd.append(f"--against-app-dir={tmp / 'against-app'}")
    cmd += [f"--app-env={kv}" for kv in args.app_env]
    log(f"load: {kind} app vs bare FastAPI, {args.duration:g} s per run ({args.loadgen} loadgen)")
    done = sh(cmd, check=False, timeout=1200)
    for line in done.stdout.splitlines():
        if line.startswith("LOADTEST-JSON "):
            report = json.loads(line[len("LOADTEST-JSON ") :])
            report["kind"] = kind
            return report
    raise RuntimeError(f"loadtest failed ({done.returncode}):\n{done.stderr[-5000:]}")


# ---------------------------------------------------------------------- 4. make test
def bench_tests(tmp: Path) -> dict:
    """`make test` once, timed; pytest's junit XML gives the time of each test module."""
    junit = tmp / "junit.xml"
    log("make test (several minutes)")
    started = time.perf_counter()
    done = sh(
        ["make", "test", f"PYTEST_ARGS=--junit-xml={junit} -o junit_family=xunit2"],
        cwd=REPO,
        check=False,
        timeout=3600,
    )
    wall = time.perf_counter() - started
    out: dict = {"wall_seconds": wall, "returncode": done.returncode, "modules": {}}
    if not junit.exists():
        out["error"] = (done.stdout + done.stderr)[-3000:]
        return out
    suite = ET.parse(junit).getroot()  # noqa: S314 (pytest's own output, written just now)
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    modules: dict[str, dict] = defaultdict(lambda: {"tests": 0, "failed": 0, "seconds": 0.0})
    for case in suite.iter("testcase"):
        module = case.get("classname", "?").split(".")
        name = next((m for m in module if m.startswith("test_")), module[-1]) + ".py"
        entry = modules[name]
        entry["tests"] += 1
        entry["seconds"] += float(case.get("time") or 0)
        problem = case.find("failure")
        problem = problem if problem is not None else case.find("error")
        if problem is not None:
            entry["failed"] += 1
            message = (problem.get("message") or problem.text or "").strip()
            out.setdefault("failures", []).append(f"{case.get('name')}: {message[:300]}")
    out["modules"] = dict(sorted(modules.items(), key=lambda kv: -kv[1]["seconds"]))
    out["pytest_seconds"] = float(suite.get("time") or 0)
    out["outside_pytest_seconds"] = wall - out["pytest_seconds"]
    return out


# ---------------------------------------------------------------------- report
def machine(load: dict | None) -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    info = {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "copier": sh([COPIER, "--version"]).stdout.split()[-1],
        "git": sh(["git", "--version"]).stdout.split()[-1],
    }
    if shutil.which("wrk"):
        info["wrk"] = sh(["wrk", "--version"], check=False).stdout.split()[1]
    if load:
        info["app"] = load.get("versions", {})
    return info


def fmt_s(x: float) -> str:
    return f"{x:.3f} s"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


LABELS = {
    "hello": "GET /bench/hello (constant)",
    "page": "GET /bench/page (20 rows)",
    "action": "POST /bench/action (audited)",
}


def load_rows(load: dict) -> list[tuple]:
    rows: list[tuple] = []
    routes = load["routes"]
    bare = routes["bare"]
    apps = [name for name in ("guarded", "against") if name in routes]
    conns = load["connections"]
    for route, label in LABELS.items():
        if route not in bare:
            continue
        for name in apps:
            b, g = bare[route]["throughput"], routes[name][route]["throughput"]
            ratio = g["rps"] / b["rps"]
            gets = route == "page" and name == "guarded"
            title = f"{label} req/s, {conns} conn" if name == "guarded" else "  the --against app"
            rows.append(
                (
                    title,
                    f"{b['rps']:.0f}/s",
                    f"{g['rps']:.0f}/s",
                    f"{ratio:.0%}",
                    f">= {TARGETS['get']:.0%}" if gets else "-",
                    verdict(ratio >= TARGETS["get"]) if gets else "-",
                )
            )
        for run, n in (("throughput", conns), ("latency", 1)):
            for name in apps:
                b = bare[route][run]["latency_ms"]
                g = routes[name][route][run]["latency_ms"]
                suffix = "" if name == "guarded" else ", the --against app"
                rows.append(
                    (
                        f"  p50 / p99, {n} conn{suffix}",
                        f"{b['p50']:.2f} / {b['p99']:.2f} ms",
                        f"{g['p50']:.2f} / {g['p99']:.2f} ms",
                        f"{g['p50'] / b['p50']:.2f}x",
                        "-",
                        "-",
                    )
                )
    iso = load["audit_isolated"]["fsync"]["append"]
    audit_target = f"p50 <= {TARGETS['audit_ms']:g} ms"
    rows.append(
        (
            "audit append p50 / p99, alone (fsync on)",
            "-",
            f"{iso['p50']:.3f} / {iso['p99']:.3f} ms",
            "-",
            audit_target,
            verdict(iso["p50"] <= TARGETS["audit_ms"]),
        )
    )
    for name in apps:
        for run, n in (("throughput", conns), ("latency", 1)):
            under = routes[name].get("action", {}).get(run, {}).get("audit_append_ms")
            if not (under and under.get("n")):
                continue
            app = "the app" if name == "guarded" else "the --against app"
            rows.append(
                (
                    f"audit append p50 / p99, in {app}, {n} conn ({under['n']} events)",
                    "-",
                    f"{under['p50']:.3f} / {under['p99']:.3f} ms",
                    "-",
                    audit_target,
                    verdict(under["p50"] <= TARGETS["audit_ms"]),
                )
            )
    telemetry = load["telemetry"]
    if "spans_received" in telemetry:  # results written before the --against option
        telemetry = {"guarded": telemetry}
    for name, tel in telemetry.items():
        app = "" if name == "guarded" else ", the --against app"
        rows.append(
            (
                f"telemetry received (OTLP/HTTP){app}",
                "-",
                f"{tel['spans_received']} spans, {tel['spans_per_request']}/request",
                "-",
                "-",
                "-",
            )
        )
    return rows


def rows_for(result: dict) -> list[tuple]:
    """(measure, baseline, measured, ratio, target, met) for the table."""
    rows: list[tuple] = []
    copy = result.get("copy")
    if copy:
        for kind, entry in copy["kinds"].items():
            if entry["status"] != "ok":
                rows.append((f"copy {kind}", f"{entry['status']}: {entry['reason'][:90]}"))
                continue
            rows.append(
                (
                    f"copy {kind} ({entry['files']} files), median of {copy['runs']}",
                    fmt_s(copy["floor_median"]),
                    fmt_s(entry["median"]),
                    f"{entry['ratio']:.2f}x",
                    f"<= {TARGETS['copy']}x",
                    verdict(entry["ratio"] <= TARGETS["copy"]),
                )
            )
            if "ratio_n" in entry:
                rows.append(
                    (
                        f"  vs a template of {copy['floor_n_files']} one-line files",
                        fmt_s(copy["floor_n_median"]),
                        fmt_s(entry["median"]),
                        f"{entry['ratio_n']:.2f}x",
                        "-",
                        "-",
                    )
                )
    update = result.get("update")
    if update:
        for kind, entry in update["kinds"].items():
            rows.append(
                (
                    f"update {kind} {update['from']} -> {update['to']}, median of {update['runs']}",
                    fmt_s(entry["copy_median"]),
                    fmt_s(entry["update_median"]),
                    f"{entry['ratio']:.2f}x",
                    f"<= {TARGETS['update']}x",
                    verdict(entry["ratio"] <= TARGETS["update"]),
                )
            )
        if "floor" in update:
            entry = update["floor"]
            rows.append(
                (
                    f"  a template of {update['floor_n_files']} one-line files, v1.0.0 -> v1.0.1",
                    fmt_s(entry["copy_median"]),
                    fmt_s(entry["update_median"]),
                    f"{entry['ratio']:.2f}x",
                    "-",
                    "-",
                )
            )
    load = result.get("load")
    if load:
        rows += load_rows(load)
    tests = result.get("tests")
    if tests:
        rows.append(
            (
                f"make test: wall time (exit code {tests['returncode']})",
                "-",
                fmt_s(tests["wall_seconds"]),
                "-",
                "-",
                "-",
            )
        )
        if "pytest_seconds" in tests:
            rows.append(
                (
                    "  ruff, make, pytest start-up",
                    "-",
                    fmt_s(tests["outside_pytest_seconds"]),
                    "-",
                    "-",
                    "-",
                )
            )
            for module, entry in tests["modules"].items():
                failed = f", {entry['failed']} failed" if entry["failed"] else ""
                rows.append(
                    (
                        f"  {module} ({entry['tests']} tests{failed})",
                        "-",
                        fmt_s(entry["seconds"]),
                        "-",
                        "-",
                        "-",
                    )
                )
    return rows


def table(result: dict) -> str:
    m = result["machine"]
    app = m.get("app", {})
    head = [
        f"microapp-templates benchmarks, {result['started']}"
        + (f" [{result['label']}]" if result.get("label") else ""),
        f"machine: {m['cores']} cores ({m['cpu']}), {m['os']}, Python {m['python']}, "
        f"copier {m['copier']}, git {m['git']}" + (f", wrk {m['wrk']}" if "wrk" in m else ""),
    ]
    if "load_average_at_end" in result:
        head.append(
            "load average (1 min) at start / end: "
            f"{result['load_average_at_start'][0]:.2f} / {result['load_average_at_end'][0]:.2f}"
            " (other work on the machine skews every figure; the ratios less so)"
        )
    if app:
        head.append(
            f"app: fastapi {app.get('fastapi')}, uvicorn {app.get('uvicorn')} "
            f"({app.get('uvicorn_loop')}, {app.get('uvicorn_http')}, 1 worker), "
            f"sqlalchemy {app.get('sqlalchemy')}, opentelemetry-sdk {app.get('opentelemetry-sdk')}"
        )
    s = result["settings"]
    head.append(
        f"settings: runs={s['runs']}; load: {s.get('rounds', 1)} alternating round(s) of "
        f"{s['duration']:g} s at {s['connections']} connections and {s['latency_duration']:g} s "
        f"at 1 (+{s['warmup']:g} s warm-up), medians; "
        f"loadgen={s['loadgen']}, quick={s['quick']}"
    )
    cols = ("measure", "baseline", "measured", "ratio", "target", "met")
    rows = rows_for(result)
    full = [r for r in rows if len(r) == len(cols)]
    widths = [max(len(str(r[i])) for r in [cols, *full]) for i in range(len(cols))]
    lines = [*head, ""]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        if len(row) != len(cols):
            lines.append(f"{row[0].ljust(widths[0])}  {row[1]}")
        else:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    prof = (result.get("load") or {}).get("profile")
    if prof and "error" not in prof:
        lines += [
            "",
            f"profile: guarded app under load, route {prof['route']}, py-spy --gil "
            f"({prof['gil_seconds']} s of GIL time; {prof['speedscope']})",
            "  self time by component:",
        ]
        lines += [f"    {pct:5.1f} %  {name}" for name, pct in prof["self_pct"]]
        lines.append("  selected functions, inclusive (a caller includes its callees):")
        lines += [f"    {pct:5.1f} %  {name}: {what}" for name, pct, what in prof["hot_spots_pct"]]
    elif prof:
        lines += ["", f"profile: {prof['error']}"]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter loads")
    parser.add_argument("--tests", action="store_true", help="also time `make test` by phase")
    parser.add_argument("--profile", action="store_true", help="py-spy the guarded app")
    parser.add_argument("--only", default="copy,update,load", help="phases to run")
    parser.add_argument("--runs", type=int, help="copy/update runs per figure (default 7; 3)")
    parser.add_argument("--rounds", type=int, help="alternating load rounds (default 3; 1)")
    parser.add_argument("--duration", type=float, help="seconds per load round (default 4; 3)")
    parser.add_argument("--latency-duration", type=float, help="1-connection rounds (2; 2)")
    parser.add_argument("--warmup", type=float, help="warm-up before each load run (2; 1)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200_000, help="cap per load run")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--audit-samples", type=int, help="isolated audit appends (1000; 300)")
    parser.add_argument(
        "--app-env", action="append", default=[], help="KEY=VALUE for the guarded app (repeat)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="another template folder (e.g. a git worktree of an older commit) whose app is "
        "load-tested alongside, in the same rounds: a before/after of a guardrails change",
    )
    parser.add_argument("--load-kind", help="kind whose app is load-tested (first accepted)")
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument("--show", type=Path, help="print the table of an earlier results file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "microapp-bench",
    )
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "runs": (7, 3),
        "rounds": (3, 1),
        "duration": (4, 3),
        "latency_duration": (2, 2),
        "warmup": (2, 1),
        "audit_samples": (1000, 300),
    }
    for name, (full, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    args.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    return args


def main() -> int:
    args = parse_args()
    if args.show:
        print(table(json.loads(args.show.read_text())))
        return 0
    phases = set(args.only.split(","))
    RESULTS.mkdir(exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "label": args.label,
        "settings": {
            k: getattr(args, k)
            for k in (
                "runs",
                "rounds",
                "duration",
                "latency_duration",
                "warmup",
                "connections",
                "requests",
                "loadgen",
                "quick",
                "audit_samples",
            )
        },
    }
    result["load_average_at_start"] = os.getloadavg()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="microapp-bench-"))
    try:
        log(f"throw-away template versions in {tmp}")
        tpl, old, new = template_versions(tmp)
        probed = probe_kinds(tmp, tpl, new)
        result["kinds"] = probed
        accepted = [k for k, v in probed.items() if v["status"] == "ok"]
        if "copy" in phases:
            result["copy"] = bench_copy(tmp, tpl, new, probed, args.runs)
        if "update" in phases and accepted:
            result["update"] = bench_update(tmp, tpl, old, new, accepted, args.runs)
        if "load" in phases and accepted:
            kind = args.load_kind or accepted[0]
            result["load"] = bench_load(args, tmp, tpl, new, kind)
        if args.tests:
            result["tests"] = bench_tests(tmp)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = machine(result.get("load"))
    result["seconds"] = time.perf_counter() - started
    result["load_average_at_end"] = os.getloadavg()
    for name in (f"{args.stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    result["table"] = text
    for name in (f"{args.stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"\n({result['seconds']:.0f} s; written to bench/results/{args.stamp}.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
