"""`make bench`: what the template costs its users, each figure against a baseline measured in
the same invocation, the two alternating over the rounds (docs/performance.md explains them).

  1. `copier copy` of each kind with defaults vs `copier copy` of a one-file template
  2. `copier update` across one (throw-away) version vs a fresh copy of that version
  3. `python -m guardrails --help`, `manifest check`, `drift` in a generated app's .venv vs
     `python -c pass` in the same .venv
  4. a generated app's `make setup` (uv's cache warm) vs `uv venv` alone, and its `make test`
     vs pytest collecting the same tests, for each kind
  5. requests/s and latency of authenticated pages with every guardrail on vs a bare FastAPI
     app (bench/loadtest.py, run with the generated app's .venv)
  6. optional (--tests): this repository's `make test-fast` and `make test`, by test module

Prints a table and writes it as JSON to bench/results/<UTC time>.json (and latest.json).
Everything it builds lives in a temporary folder. Generated apps install microapp-guardrails
as their owners do, with uv (`make setup`), from a wheelhouse built from this working tree's
guardrails/; uv's own cache is what makes the second `make setup` fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
COPIER = str(BIN / "copier")
VERSION_FILE = "guardrails/src/guardrails/_version.py"  # the one home of the release number
HASH_LIST = "templates/.microapp/FILES.sha256"  # template-owned files' SHA-256 (drift check)
DRIFT = "guardrails/src/guardrails/cli/drift.py"  # standard library only: runs as a script
# Left in a working tree by the vendored layout (before 1.0): never part of the template now.
# Untracked files under these are not copied into the throw-away template (with a notice).
LEFTOVERS = ("templates/src/", "templates/tests/guardrails/")
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", ".uv", ".wheelhouse", "demo", "bench", "site", "__pycache__",
    ".pytest_cache", ".ruff_cache", "*.egg-info", "dist",
)  # fmt: skip
ANSWERS = {"app_name": "Leave requests", "owner_email": "hr-ops@example.com"}
NOT_YET = "not yet available"
TARGETS = {
    "copy": 1.3,  # x the one-file floor
    "update": 2.0,  # x a fresh copy
    "update_vs_floor": 1.1,  # update/copy ratio x copier's own on a one-file template
    "get": 0.85,  # guarded / bare requests per second, GET /bench/page, OTel exporting
    "get_otel_off": 0.92,  # the same with the OTel SDK disabled
    "post_rps": 0.6,  # POST /bench/action, guarded / bare requests per second
    "post_p99": 2.0,  # POST p99 at 8 connections, x bare's
    "audit_ms": 0.5,  # audit append p50 at 8 concurrent writers
    "cli_s": 0.5,  # each `python -m guardrails ...`
    "setup_s": 20.0,  # an app's `make setup`, uv's cache warm
    "app_test_s": 30.0,  # an app's `make test`
    "repo_test_s": 180.0,  # this repository's `make test`
    "repo_test_fast_s": 15.0,  # and `make test-fast`
}
CLI = {  # label: arguments after `python`, run in the app's folder with its .venv
    "python -c pass": ["-c", "pass"],
    "python -m guardrails --help": ["-m", "guardrails", "--help"],
    "python -m guardrails manifest check": ["-m", "guardrails", "manifest", "check"],
    "python -m guardrails drift": ["-m", "guardrails", "drift"],
}
CLI_ANCHOR = "python -c pass"
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")  # `make bench`'s own


# ---------------------------------------------------------------------- small helpers
def sh(cmd: list[str], cwd: Path | None = None, check: bool = True, **kw):
    env = {**os.environ, **kw.pop("env", {})}
    for name in ("VIRTUAL_ENV", *MAKE_VARS):  # an app's make must not inherit `make bench`'s
        env.pop(name, None)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}"
            f"{done.stderr[-3000:]}"
        )
    return done


def timed(
    cmd: list[str], cwd: Path | None = None, **kw
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = sh(cmd, cwd=cwd, check=False, **kw)
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


def tail(done: subprocess.CompletedProcess, chars: int = 3000) -> str:
    return (done.stdout[-chars:] + done.stderr[-chars:]).strip()


def find_uv() -> str:
    """uv next to this Python, else on PATH; a pyenv shim is resolved to the real binary (the
    shim's own start-up would otherwise be timed with every uv call)."""
    local = REPO / ".uv" / "bin" / "uv"  # where the root Makefile puts one if PATH has none
    uv = shutil.which("uv", path=str(BIN)) or shutil.which("uv") or (local.exists() and str(local))
    if not uv:
        raise SystemExit("uv not found: run `make setup` (it installs uv), or put uv on PATH")
    try:
        head = Path(uv).read_bytes()[:4096]
    except OSError:
        return uv
    if head.startswith(b"#!") and b"pyenv" in head:
        real = sh(["pyenv", "which", "uv"], check=False).stdout.strip()
        if real and Path(real).exists():
            return real
    return uv


UV = ""  # set by main() (find_uv)


# ---------------------------------------------------------------------- templates
def snapshot(dst: Path, src: Path = REPO) -> list[str]:
    """Copy into `dst` what a commit of this working tree would hold: tracked and new (not
    ignored) files, symlinks kept (kinds/<kind>/files/{{ "." }}), deleted files gone; bench/ and
    untracked leftovers of the vendored layout (LEFTOVERS) left out. Returns those left out."""
    tracked = set(git(src, "ls-files", "-z").split("\0"))
    listed = git(src, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    left_out = []
    for rel in sorted({f for f in listed.split("\0") if f}):
        path = src / rel
        if rel.startswith("bench/") or not (path.is_symlink() or path.is_file()):
            continue
        if rel not in tracked and rel.startswith(LEFTOVERS):
            left_out.append(rel)
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(path.readlink())
        else:
            shutil.copy2(path, target)
    return left_out


def template_versions(tmp: Path) -> tuple[Path, str, str, list[str]]:
    """This working tree as a throw-away template repository with two releases, like the
    update tests: vA is the working tree, vB a patch release of the template and the SDK
    together (the version in guardrails/src/guardrails/_version.py, which moves the app's
    `microapp-guardrails~=` pin; no migration)."""
    tpl = tmp / "template"
    tpl.mkdir()
    left_out = snapshot(tpl)
    if left_out:
        folders = sorted({"/".join(rel.split("/")[:3]) for rel in left_out})
        log(f"left out {len(left_out)} untracked file(s) of the vendored layout: {folders}")
    version_file = tpl / VERSION_FILE
    current = re.search(r'__version__ = "([^"]+)"', version_file.read_text())[1]
    major, minor, patch = (int(x) for x in re.findall(r"\d+", current)[:3])
    old, new = f"v{major}.{minor}.{patch}", f"v{major}.{minor}.{patch + 1}"
    git(tpl, "init", "-q", "-b", "main")
    commit_all(tpl, f"Release {old}")
    git(tpl, "tag", old)
    version_file.write_text(version_file.read_text().replace(f'"{current}"', f'"{new[1:]}"'))
    if (tpl / HASH_LIST).exists():  # as `make hashes` does after a template-owned change
        sh([sys.executable, DRIFT, "--write", "templates"], cwd=tpl)
    commit_all(tpl, f"Release {new}")
    git(tpl, "tag", new)
    return tpl, old, new, left_out


def build_wheelhouse(guardrails: Path, out: Path) -> Path:
    """The microapp-guardrails wheel of `guardrails/` (what a company index would serve)."""
    sh([UV, "build", "--quiet", "--wheel", "--out-dir", str(out), str(guardrails)], timeout=600)
    return out


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
    """Every kind the `kind` question offers (copier decides which ones it accepts). The
    question is in copier.yml's first document (kinds' own questions are `!include`d later)."""
    text = (REPO / "copier.yml").read_text().split("\n---", 1)[0]
    question = yaml.safe_load(text)["kind"]
    choices = question.get("choices", {})
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def copy_cmd(tpl: Path, dst: Path, ref: str, kind: str | None) -> list[str]:
    cmd = [COPIER, "copy", "--quiet", "--defaults", "--vcs-ref", ref]
    if kind is not None:
        cmd += ["--data", f"kind={kind}"]
        for key, value in ANSWERS.items():
            cmd += ["--data", f"{key}={value}"]
    return [*cmd, str(tpl), str(dst)]


class Apps:
    """Generated apps at one template version: rendered once per kind by copier, then copied
    for each `make setup`; `ready(kind)` is a set-up app (its .venv) for the CLI and load."""

    def __init__(self, args, tmp: Path, tpl: Path, ref: str, wheelhouse: Path, prefix: str = ""):
        self.args, self.tmp, self.tpl, self.ref, self.wheelhouse = args, tmp, tpl, ref, wheelhouse
        self.prefix = prefix
        self.rendered: dict[str, Path] = {}
        self.set_up: dict[str, Path] = {}
        self.count = 0

    def fresh(self, kind: str, name: str) -> Path:
        if kind not in self.rendered:
            self.rendered[kind] = self.tmp / f"{self.prefix}rendered-{kind}"
            sh(copy_cmd(self.tpl, self.rendered[kind], self.ref, kind))
        self.count += 1
        app = self.tmp / f"{self.prefix}{name}-{self.count}"
        shutil.copytree(self.rendered[kind], app, symlinks=True)
        return app

    def setup_cmd(self) -> list[str]:
        """What the owner runs (README), with the wheelhouse instead of a company index."""
        return [
            "make",
            "setup",
            f"WHEELHOUSE={self.wheelhouse}",
            f"UV={UV}",
            f"PYTHON={self.args.python}",
        ]

    def ready(self, kind: str) -> Path:
        if kind not in self.set_up:
            app = self.fresh(kind, f"ready-{kind}")
            log(f"make setup in the {self.prefix}{kind} app")
            sh(self.setup_cmd(), cwd=app, timeout=900)
            self.set_up[kind] = app
        return self.set_up[kind]


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
    for i in range(runs):  # interleaved, so drift in machine load hits each alike
        subjects = [*((name, floor, "HEAD", None) for name, floor in floors.items())]
        subjects += [(kind, tpl, ref, kind) for kind in accepted]
        for name, template, at, kind in subjects if i % 2 == 0 else reversed(subjects):
            seconds, done = timed(copy_cmd(template, fresh(), at, kind))
            if done.returncode != 0:
                raise RuntimeError(f"copy of {name} failed: {done.stderr}")
            times[name].append(seconds)
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
    changed = floor / ("README.md.jinja" if files == 1 else "folder0/file0.txt.jinja")
    changed.write_text(changed.read_text() + "A second line.\n")
    commit_all(floor, "One file changed")
    git(floor, "tag", "v1.0.1")
    return floor


def bench_update(
    tmp: Path, tpl: Path, old: str, new: str, kinds_ok: list[str], runs: int, warmup: bool
) -> dict:
    """`copier update` old -> new of each kind vs a fresh copy at new, interleaved; and the
    same for the many-file floor (what copier's update costs whatever the template)."""
    out: dict = {"runs": runs, "from": old, "to": new, "kinds": {}}
    files = _files_in(tmp, tpl, new, kinds_ok[0])
    subjects = [(kind, tpl, old, new, kind) for kind in kinds_ok]
    subjects.append(("floor", floor_versions(tmp, files), "v1.0.0", "v1.0.1", None))
    subjects.append(("floor1", floor_versions(tmp, 1), "v1.0.0", "v1.0.1", None))
    out["floor_n_files"] = files
    for name, template, from_, to, kind in subjects:
        update = [COPIER, "update", "--quiet", "--defaults", "--skip-answered"]
        update += ["--conflict", "inline", "--vcs-ref", to]
        copies, updates = [], []
        first = 0 if warmup else 1
        for i in range(first, runs + 1):  # with warmup, the first pair is not kept
            app = tmp / f"update-{name}-{i}"
            sh(copy_cmd(template, app, from_, kind))
            git(app, "init", "-q", "-b", "main")
            commit_all(app, f"Generated at {from_}")
            fresh_at = tmp / f"fresh-{name}-{i}"
            pair = [("update", update, app), ("copy", copy_cmd(template, fresh_at, to, kind), None)]
            for what, cmd, cwd in pair if i % 2 else reversed(pair):
                seconds, done = timed(cmd, cwd=cwd)
                if done.returncode != 0:
                    raise RuntimeError(f"copier {what} of {name} failed:\n{tail(done)}")
                if i:
                    (updates if what == "update" else copies).append(seconds)
            answers = yaml.safe_load((app / ".copier-answers.yml").read_text())
            if answers.get("_commit") != to:
                raise RuntimeError(f"update of {name} did not reach {to}: {answers}")
        entry = {
            "update_seconds": updates,
            "copy_seconds": copies,
            "update_median": median(updates),
            "copy_median": median(copies),
        }
        entry["ratio"] = entry["update_median"] / entry["copy_median"]
        if kind is None:
            out[name] = entry
        else:
            out["kinds"][kind] = entry
        log(f"update {name}: {entry['update_median']:.3f} s, copy {entry['copy_median']:.3f} s")
    return out


def _files_in(tmp: Path, tpl: Path, ref: str, kind: str) -> int:
    dst = tmp / f"count-{kind}"
    if not dst.exists():
        sh(copy_cmd(tpl, dst, ref, kind))
    return sum(1 for p in dst.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- 3. the CLI
def bench_cli(app: Path, kind: str, runs: int) -> dict:
    """Each `python -m guardrails` command `make check` and the pre-commit hooks run, in the
    app's folder with its .venv, alternating with `python -c pass` (the interpreter's floor)."""
    python = str(app / ".venv" / "bin" / "python")
    out: dict = {"runs": runs, "kind": kind, "commands": {}}
    times: dict[str, list[float]] = {label: [] for label in CLI}
    codes: dict[str, set[int]] = {label: set() for label in CLI}
    said: dict[str, str] = {}
    for argv in CLI.values():  # warm-up: byte-compiles what the first run imports
        timed([python, *argv], cwd=app)
    for i in range(runs):
        order = list(CLI.items())
        for label, argv in order if i % 2 == 0 else reversed(order):
            seconds, done = timed([python, *argv], cwd=app)
            times[label].append(seconds)
            codes[label].add(done.returncode)
            if done.returncode:
                said[label] = tail(done, 600)
    anchor = median(times[CLI_ANCHOR])
    for label in CLI:
        entry = {"seconds": times[label], "median": median(times[label])}
        entry["ratio"] = entry["median"] / anchor
        entry["returncodes"] = sorted(codes[label])
        if label in said:
            entry["output"] = said[label]
        out["commands"][label] = entry
        log(f"{label}: {entry['median']:.3f} s (exit {entry['returncodes']})")
    out["anchor_median"] = anchor
    return out


# ---------------------------------------------------------------------- 4. make setup, test
def _pytest_summary(done: subprocess.CompletedProcess) -> str:
    lines = [ln.strip("= ") for ln in done.stdout.splitlines() if ln.startswith("==")]
    found = [ln for ln in lines if re.search(r"\b(passed|failed|error|skipped)\b", ln)]
    return found[-1] if found else ""


def bench_app(apps: Apps, kinds_ok: list[str], runs: int, test_runs: int) -> dict:
    """For each kind: `make setup` in a freshly generated app (no .venv, no uv.lock), uv's cache
    warm, alternating with `uv venv` alone; then `make test` in the set-up app, alternating
    with `pytest --collect-only` in it (start-up, imports and collection, no test run)."""
    out: dict = {"runs": runs, "test_runs": test_runs, "kinds": {}}
    setup = apps.setup_cmd()
    log(f"make setup in the {kinds_ok[0]} app (warm-up: fills uv's cache)")
    seconds, done = timed(setup, cwd=apps.fresh(kinds_ok[0], "setup-warmup"), timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"make setup failed:\n{tail(done)}")
    out["warmup_setup_seconds"] = seconds
    t: dict = {k: defaultdict(list) for k in kinds_ok}
    for i in range(runs):
        for kind in kinds_ok:
            app = apps.fresh(kind, f"setup-{kind}")
            venv = apps.tmp / f"uv-venv-{kind}-{i}"
            pair = [
                ("uv_venv", [UV, "venv", "--quiet", "--python", apps.args.python, str(venv)], None),
                ("setup", setup, app),
            ]
            for what, cmd, cwd in pair if i % 2 == 0 else reversed(pair):
                seconds, done = timed(cmd, cwd=cwd, timeout=900)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} ({kind}) failed:\n{tail(done)}")
                t[kind][what].append(seconds)
            apps.set_up[kind] = app  # set up as its owner would: the CLI and load use it
            log(f"make setup {kind}: {t[kind]['setup'][-1]:.1f} s")
    for i in range(test_runs):
        for kind in kinds_ok:
            app = apps.ready(kind)
            python = str(app / ".venv" / "bin" / "python")
            pair = [
                ("collect", [python, "-m", "pytest", "--collect-only", "-q"], app),
                ("test", ["make", "test"], app),
            ]
            for what, cmd, cwd in pair if i % 2 == 0 else reversed(pair):
                seconds, done = timed(cmd, cwd=cwd, timeout=900)
                t[kind][what].append(seconds)
                if what == "test":
                    t[kind]["returncodes"].append(done.returncode)
                    t[kind]["summary"].append(_pytest_summary(done))
                    if done.returncode:
                        t[kind]["failure"] = [tail(done, 1500)]
            log(f"make test {kind}: {t[kind]['test'][-1]:.1f} s ({t[kind]['summary'][-1]})")
    for kind, found in t.items():
        entry = {k: v for k, v in found.items()}
        for what in ("uv_venv", "setup", "collect", "test"):
            entry[f"{what}_median"] = median(found[what])
        entry["setup_ratio"] = entry["setup_median"] / entry["uv_venv_median"]
        entry["test_ratio"] = entry["test_median"] / entry["collect_median"]
        out["kinds"][kind] = entry
    return out


# ---------------------------------------------------------------------- 5. load
def bench_load(args, tmp: Path, apps: Apps, kind: str) -> dict:
    app = apps.ready(kind)
    python = app / ".venv" / "bin" / "python"
    if args.profile and not (python.parent / "py-spy").exists():
        sh([UV, "pip", "install", "--quiet", "--python", str(python), "py-spy"], timeout=600)
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
        f"--engines={args.engines}",
        f"--otel={args.otel}",
    ]
    if args.quick:  # the two routes with targets (GET page, POST action): QUICK stays short
        cmd.append("--routes=page,action")
    if profile:
        cmd.append(f"--profile={profile}")
    if args.against:
        cmd.append(f"--against-app-dir={against_app(args, tmp, kind)}")
    cmd += [f"--app-env={kv}" for kv in args.app_env]
    log(f"load: {kind} app vs bare FastAPI, {args.duration:g} s per run ({args.loadgen} loadgen)")
    done = sh(cmd, check=False, timeout=1200)
    for line in done.stdout.splitlines():
        if line.startswith("LOADTEST-JSON "):
            report = json.loads(line[len("LOADTEST-JSON ") :])
            report["kind"] = kind
            return report
    raise RuntimeError(f"loadtest failed ({done.returncode}):\n{done.stderr[-5000:]}")


def against_app(args, tmp: Path, kind: str) -> Path:
    """The --against template's app, set up with its own guardrails wheel in its own .venv
    (bench/loadtest.py runs each app with its .venv)."""
    other = tmp / "against-template"
    if (args.against / ".git").exists():
        other.mkdir()
        snapshot(other, args.against)
    else:
        shutil.copytree(args.against, other, ignore=IGNORE, symlinks=True)
    if not (other / "guardrails" / "pyproject.toml").exists():
        raise SystemExit(
            f"--against {args.against}: no guardrails/pyproject.toml; the load benchmark "
            "compares templates whose apps install the microapp-guardrails package (1.0 on)"
        )
    git(other, "init", "-q", "-b", "main")
    commit_all(other, "The template to compare with")
    wheels = build_wheelhouse(other / "guardrails", tmp / "against-wheelhouse")
    against = Apps(args, tmp, other, "HEAD", wheels, prefix="against-")
    app = against.ready(kind)
    return app


# ---------------------------------------------------------------------- 6. make test
REPO_TESTS = {"test-fast": "repo_test_fast_s", "test": "repo_test_s"}  # target, its TARGETS key


def bench_tests(tmp: Path) -> dict:
    """This repository's `make test-fast`, then `make test`, once each, timed; pytest's junit
    XML gives the time of each test module."""
    return {target: _make_target(tmp, target) for target in REPO_TESTS}


def _make_target(tmp: Path, target: str) -> dict:
    junit = tmp / f"junit-{target}"  # make test writes sdk.xml and template.xml there
    log(f"make {target}" + (" (several minutes)" if target == "test" else ""))
    started = time.perf_counter()
    done = sh(["make", target, f"JUNIT={junit}"], cwd=REPO, check=False, timeout=3600)
    wall = time.perf_counter() - started
    out: dict = {"wall_seconds": wall, "returncode": done.returncode, "modules": {}}
    suites = sorted(junit.glob("*.xml"))
    if not suites:
        out["error"] = (done.stdout + done.stderr)[-3000:]
        return out
    modules: dict[str, dict] = defaultdict(lambda: {"tests": 0, "failed": 0, "seconds": 0.0})
    out["pytest_seconds"] = 0.0
    for path in suites:
        root = ET.parse(path).getroot()  # noqa: S314 (pytest's own output, written just now)
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        out["pytest_seconds"] += float(suite.get("time") or 0)
        prefix = "guardrails/" if path.stem == "sdk" else ""  # the SDK's suite runs in guardrails/
        for case in suite.iter("testcase"):
            module = case.get("classname", "?").split(".")  # tests.test_x.TestY
            end = next((i for i, m in enumerate(module) if m.startswith("test_")), len(module) - 1)
            entry = modules[prefix + "/".join(module[: end + 1]) + ".py"]
            entry["tests"] += 1
            entry["seconds"] += float(case.get("time") or 0)
            problem = case.find("failure")
            problem = problem if problem is not None else case.find("error")
            if problem is not None:
                entry["failed"] += 1
                message = (problem.get("message") or problem.text or "").strip()
                out.setdefault("failures", []).append(f"{case.get('name')}: {message[:300]}")
    out["modules"] = dict(sorted(modules.items(), key=lambda kv: -kv[1]["seconds"]))
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
    uv = sh([UV, "--version"], check=False).stdout.split() if UV else []
    if len(uv) > 1:
        info["uv"] = uv[1]
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


ENGINE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
OTEL_NAMES = {"on": "OTel exporting", "off": "OTel off", "against": "the --against app"}


def _app_label(app: dict) -> str:
    """ "SQLite, OTel exporting" and the like: how the table names a guarded app."""
    return f"{ENGINE_NAMES.get(app['engine'], app['engine'])}, {OTEL_NAMES[app['otel']]}"


def load_apps(load: dict) -> dict:
    """The guarded apps of a load report and their anchors (results before the matrix: the
    SQLite app with OTel exporting, and --against)."""
    apps = load.get("apps") or {
        name: {"engine": "sqlite", "otel": "on" if name == "guarded" else "against"}
        for name in ("guarded", "against")
        if name in load["routes"]
    }
    out = {}
    for name, app in apps.items():
        if name.startswith("bare"):
            continue
        out[name] = {**app, "anchor": app.get("anchor") or "bare"}
    return out


def _route_rows(load: dict, route: str, label: str, name: str, app: dict) -> list[tuple]:
    routes, conns = load["routes"], load["connections"]
    bare, mine = routes[app["anchor"]][route], routes[name][route]
    what = _app_label(app)
    b, g = bare["throughput"], mine["throughput"]
    ratio = g["rps"] / b["rps"]
    target = None
    if route == "page" and app["otel"] in ("on", "off"):
        target = TARGETS["get"] if app["otel"] == "on" else TARGETS["get_otel_off"]
    elif route == "action" and app["otel"] in ("on", "off"):
        target = TARGETS["post_rps"]
    rows: list[tuple] = [
        (
            f"{label}, {what}: req/s at {conns} conn",
            f"{b['rps']:.0f}/s",
            f"{g['rps']:.0f}/s",
            f"{ratio:.2f}",
            f">= {target:g}" if target else "-",
            verdict(ratio >= target) if target else "-",
        )
    ]
    for run, n in (("throughput", conns), ("latency", 1)):
        bl, gl = bare[run]["latency_ms"], mine[run]["latency_ms"]
        p99 = gl["p99"] / bl["p99"]
        limit = TARGETS["post_p99"] if route == "action" and n == conns and target else None
        rows.append(
            (
                f"  p50 / p99 at {n} conn (ratio: p99)",
                f"{bl['p50']:.2f} / {bl['p99']:.2f} ms",
                f"{gl['p50']:.2f} / {gl['p99']:.2f} ms",
                f"{p99:.2f}x",
                f"p99 <= {limit:g}x" if limit else "-",
                verdict(p99 <= limit) if limit else "-",
            )
        )
    if route == "action":
        for run, n in (("throughput", conns), ("latency", 1)):
            under = mine[run].get("audit_append_ms")
            if not (under and under.get("n")):
                continue
            gate = n == conns
            rows.append(
                (
                    f"  audit append in the row's transaction p50 / p99, {n} conn ({under['n']})",
                    "-",
                    f"{under['p50']:.3f} / {under['p99']:.3f} ms",
                    "-",
                    f"p50 <= {TARGETS['audit_ms']:g} ms" if gate else "-",
                    verdict(under["p50"] <= TARGETS["audit_ms"]) if gate else "-",
                )
            )
    return rows


def load_rows(load: dict) -> list[tuple]:
    rows: list[tuple] = []
    if load.get("postgresql_skipped"):
        rows.append(("load on PostgreSQL", f"skipped: {load['postgresql_skipped'][:90]}"))
    apps = load_apps(load)
    for route, label in LABELS.items():
        for name, app in apps.items():
            anchor = load["routes"].get(app["anchor"], {})
            if route in load["routes"].get(name, {}) and route in anchor:
                rows += _route_rows(load, route, label, name, app)
    every = load.get("apps") or {}
    for name, app in apps.items():
        mine, anchor = every.get(name, {}).get("rss_mib"), every.get(app["anchor"], {})
        if mine and anchor.get("rss_mib"):
            what = _app_label(app)
            rows.append(
                (
                    f"app RSS after the load, {what}",
                    f"{anchor['rss_mib']:.0f} MiB",
                    f"{mine:.0f} MiB",
                    f"{mine / anchor['rss_mib']:.2f}x",
                    "-",
                    "-",
                )
            )
    iso = load["audit_isolated"]["fsync"]["append"]
    rows.append(
        (
            "audit record alone, SQLite, 1 writer p50 / p99 (its commit included)",
            "-",
            f"{iso['p50']:.3f} / {iso['p99']:.3f} ms",
            "-",
            "-",
            "-",
        )
    )
    for name, tel in load["telemetry"].items() if "spans_received" not in load["telemetry"] else []:
        rows.append(
            (
                f"telemetry received (OTLP/HTTP), {name}",
                "-",
                f"{tel['spans_received']} spans, {tel['spans_per_request']}/request",
                "-",
                "-",
                "-",
            )
        )
    return rows


def cli_rows(cli: dict) -> list[tuple]:
    rows: list[tuple] = []
    anchor = cli["commands"][CLI_ANCHOR]
    for label, entry in cli["commands"].items():
        if label == CLI_ANCHOR:
            continue
        codes = entry["returncodes"]
        exit_note = "" if codes == [0] else f", exit {'/'.join(map(str, codes))}"
        rows.append(
            (
                f"{label} ({cli['kind']} app .venv{exit_note}), median of {cli['runs']}",
                f"{fmt_s(anchor['median'])} ({CLI_ANCHOR})" if not rows else "(same)",
                fmt_s(entry["median"]),
                f"{entry['ratio']:.0f}x",
                f"<= {TARGETS['cli_s']:g} s",
                verdict(entry["median"] <= TARGETS["cli_s"]),
            )
        )
    return rows


def app_rows(app: dict) -> list[tuple]:
    rows: list[tuple] = []
    for kind, entry in app["kinds"].items():
        rows.append(
            (
                f"make setup, {kind} app (uv cache warm), median of {app['runs']}",
                f"{fmt_s(entry['uv_venv_median'])} (uv venv)",
                fmt_s(entry["setup_median"]),
                f"{entry['setup_ratio']:.1f}x",
                f"<= {TARGETS['setup_s']:g} s",
                verdict(entry["setup_median"] <= TARGETS["setup_s"]),
            )
        )
    if "warmup_setup_seconds" in app:
        rows.append(
            (
                "  the run's first make setup (uv cache as found)",
                "-",
                fmt_s(app["warmup_setup_seconds"]),
                "-",
                "-",
                "-",
            )
        )
    for kind, entry in app["kinds"].items():
        codes = sorted(set(entry["returncodes"]))
        note = entry["summary"][-1] if entry.get("summary") else ""
        note += "" if codes == [0] else f"; exit {'/'.join(map(str, codes))}"
        rows.append(
            (
                f"make test, {kind} app ({note}), median of {app['test_runs']}",
                f"{fmt_s(entry['collect_median'])} (pytest --co)",
                fmt_s(entry["test_median"]),
                f"{entry['test_ratio']:.1f}x",
                f"<= {TARGETS['app_test_s']:g} s",
                verdict(entry["test_median"] <= TARGETS["app_test_s"] and codes == [0]),
            )
        )
    return rows


def repo_test_rows(target: str, tests: dict) -> list[tuple]:
    limit = TARGETS[REPO_TESTS[target]]
    rows: list[tuple] = [
        (
            f"make {target} (this repository; exit code {tests['returncode']})",
            "-",
            fmt_s(tests["wall_seconds"]),
            "-",
            f"<= {limit:g} s",
            verdict(tests["wall_seconds"] <= limit and tests["returncode"] == 0),
        )
    ]
    if "error" in tests:
        last = [ln for ln in tests["error"].splitlines() if ln.strip()][-3:]
        rows += [(f"  {ln.strip()[:150]}", "") for ln in last]
    for failure in tests.get("failures", [])[:10]:
        rows.append((f"  failed: {failure[:150]}", ""))
    if "pytest_seconds" in tests:
        rows.append(
            ("  ruff, make, pytest start-up", "-", fmt_s(tests["outside_pytest_seconds"]))
            + ("-",) * 3
        )
        for module, entry in tests["modules"].items():
            failed = f", {entry['failed']} failed" if entry["failed"] else ""
            rows.append(
                (f"  {module} ({entry['tests']} tests{failed})", "-", fmt_s(entry["seconds"]))
                + ("-",) * 3
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
        if "floor1" in update:  # the target: ours vs copier's own update/copy ratio
            one = update["floor1"]
            rows.append(
                (
                    "  a one-file template, v1.0.0 -> v1.0.1 (copier's own update/copy)",
                    fmt_s(one["copy_median"]),
                    fmt_s(one["update_median"]),
                    f"{one['ratio']:.2f}x",
                    "-",
                    "-",
                )
            )
            for kind, entry in update["kinds"].items():
                ratio = entry["ratio"] / one["ratio"]
                rows.append(
                    (
                        f"  update/copy of {kind} vs the one-file template's",
                        f"{one['ratio']:.2f}x",
                        f"{entry['ratio']:.2f}x",
                        f"{ratio:.2f}x",
                        f"<= {TARGETS['update_vs_floor']}x",
                        verdict(ratio <= TARGETS["update_vs_floor"]),
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
    cli = result.get("cli")
    if cli:
        rows += cli_rows(cli)
    app = result.get("app")
    if app:
        rows += app_rows(app)
    load = result.get("load")
    if load:
        rows += load_rows(load)
    if result.get("audit"):
        rows += audit_rows(result["audit"])
    tests = result.get("tests")
    if tests and "wall_seconds" not in tests:  # make test-fast and make test
        for target, entry in tests.items():
            rows += repo_test_rows(target, entry)
    elif tests:  # results written before test-fast was measured
        rows += repo_test_rows("test", tests)
    return rows


def table(result: dict) -> str:
    m = result["machine"]
    app = m.get("app", {})
    head = [
        f"microapp-templates benchmarks, {result['started']}"
        + (f" [{result['label']}]" if result.get("label") else ""),
        f"machine: {m['cores']} cores ({m['cpu']}), {m['os']}, Python {m['python']}, "
        f"copier {m['copier']}, git {m['git']}"
        + (f", uv {m['uv']}" if "uv" in m else "")
        + (f", wrk {m['wrk']}" if "wrk" in m else ""),
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
    apps = (
        f"; cli runs={s['cli_runs']}; make setup runs={s['app_runs']}, make test runs="
        f"{s['test_runs']}"
        if "cli_runs" in s
        else ""
    )
    head.append(
        f"settings: runs={s['runs']}{apps}; load: {s.get('rounds', 1)} alternating round(s) of "
        f"{s['duration']:g} s at {s['connections']} connections and {s['latency_duration']:g} s "
        f"at 1 (+{s['warmup']:g} s warm-up), medians; "
        f"loadgen={s['loadgen']}, quick={s['quick']}"
        + (f"; engines={s['engines']}, otel={s['otel']}" if "engines" in s else "")
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
    if prof and "error" not in prof and "guarded" in prof:
        lines += [
            "",
            f"profile: {prof['app']} on {prof['route']} ({prof['ratio']} of its anchor), and "
            "its bare anchor, same load; py-spy --gil, self time",
        ]
        for role in ("guarded", "bare"):
            one = prof[role]
            if "error" in one:
                lines.append(f"  {one['app']}: {one['error']}")
                continue
            lines.append(
                f"  {one['app']} ({one['gil_seconds']} s of GIL time; {one['speedscope']})"
            )
            lines += [f"    {pct:5.1f} %  {name}" for name, pct in one["functions_self_pct"]]
        guarded = prof["guarded"]
        if "error" not in guarded:
            lines.append(f"  {guarded['app']}, by component:")
            lines += [f"    {pct:5.1f} %  {name}" for name, pct in guarded["self_pct"]]
            lines.append("  its guardrails, inclusive (a caller includes its callees):")
            lines += [
                f"    {pct:5.1f} %  {name}: {what}" for name, pct, what in guarded["hot_spots_pct"]
            ]
    elif prof:
        lines += ["", f"profile: {prof.get('error', 'an earlier format: see the JSON')}"]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter loads")
    parser.add_argument(
        "--tests", action="store_true", help="also time `make test-fast` and `make test`"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the guarded app")
    parser.add_argument(
        "--only", default=",".join(PHASES), help=f"phases to run (default {','.join(PHASES)})"
    )
    parser.add_argument("--runs", type=int, help="copy/update runs per figure (default 7; 3)")
    parser.add_argument("--cli-runs", type=int, help="runs of each CLI command (15; 7)")
    parser.add_argument("--app-runs", type=int, help="make setup runs per kind (3; 1)")
    parser.add_argument("--test-runs", type=int, help="an app's make test runs per kind (2; 1)")
    parser.add_argument("--rounds", type=int, help="alternating load rounds (default 3; 1)")
    parser.add_argument("--duration", type=float, help="seconds per load round (default 4; 3)")
    parser.add_argument("--latency-duration", type=float, help="1-connection rounds (2; 2)")
    parser.add_argument("--warmup", type=float, help="warm-up before each load run (2; 1)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200_000, help="cap per load run")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--audit-samples", type=int, help="isolated audit appends (1000; 300)")
    parser.add_argument(
        "--engines", default="sqlite,postgresql", help="databases of the load test's apps"
    )
    parser.add_argument("--otel", default="on,off", help="load-test the app with OTel on, off")
    parser.add_argument(
        "--python", default="python3", help="PYTHON for the apps' `make setup` (python3)"
    )
    parser.add_argument(
        "--app-env", action="append", default=[], help="KEY=VALUE for the guarded app (repeat)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="another template folder (e.g. a git worktree of an older commit, 1.0 layout or "
        "later) whose app is load-tested alongside, in the same rounds: a before/after of a "
        "guardrails change",
    )
    parser.add_argument("--load-kind", help="kind whose app is load-tested (first accepted)")
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument("--show", type=Path, help="print the table of an earlier results file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "runs": (7, 3),
        "cli_runs": (15, 7),
        "app_runs": (3, 1),
        "test_runs": (2, 1),
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


from audit import bench_audit  # noqa: E402 - bench/ is on sys.path when run as a script
from audit import rows as audit_rows  # noqa: E402

PHASES = ("copy", "update", "cli", "app", "load", "audit")
SETTINGS = (
    "runs",
    "cli_runs",
    "app_runs",
    "test_runs",
    "rounds",
    "duration",
    "latency_duration",
    "warmup",
    "connections",
    "requests",
    "loadgen",
    "quick",
    "audit_samples",
    "python",
    "engines",
    "otel",
)


def main() -> int:
    global UV
    args = parse_args()
    if args.show:
        print(table(json.loads(args.show.read_text())))
        return 0
    phases = set(args.only.split(","))
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"--only: unknown phase(s) {sorted(unknown)}; choose from {PHASES}")
    UV = find_uv()
    RESULTS.mkdir(exist_ok=True)
    result: dict = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "label": args.label,
        "settings": {k: getattr(args, k) for k in SETTINGS},
    }
    result["load_average_at_start"] = os.getloadavg()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="microapp-bench-"))
    try:
        log(f"throw-away template versions in {tmp}")
        tpl, old, new, left_out = template_versions(tmp)
        if left_out:
            result["left_out"] = left_out
        probed = probe_kinds(tmp, tpl, new)
        result["kinds"] = probed
        accepted = [k for k, v in probed.items() if v["status"] == "ok"]
        if "copy" in phases:
            result["copy"] = bench_copy(tmp, tpl, new, probed, args.runs)
        if "update" in phases and accepted:
            # QUICK: the first kind and the floor only, no warm-up pair (the copies warmed up)
            some = accepted[:1] if args.quick else accepted
            result["update"] = bench_update(
                tmp, tpl, old, new, some, args.runs, warmup=not args.quick
            )
        if phases & {"cli", "app", "load"} and accepted:
            log(f"building the microapp-guardrails wheel ({new}) from the template's guardrails/")
            wheels = build_wheelhouse(tpl / "guardrails", tmp / "wheelhouse")
            apps = Apps(args, tmp, tpl, new, wheels)
            load_kind = args.load_kind or accepted[0]
            if "app" in phases:
                result["app"] = bench_app(apps, accepted, args.app_runs, args.test_runs)
            if "cli" in phases:
                result["cli"] = bench_cli(apps.ready(load_kind), load_kind, args.cli_runs)
            if "load" in phases:
                result["load"] = bench_load(args, tmp, apps, load_kind)
        if "audit" in phases:
            log("audit: append p50/p99 at 1 and 8 users, SQLite and PostgreSQL (bench/audit.py)")
            result["audit"] = bench_audit(
                samples=200 if args.quick else 400, rounds=1 if args.quick else 3
            )
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
    text = table(result)
    result["table"] = text
    for name in (f"{args.stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"\n({result['seconds']:.0f} s; written to bench/results/{args.stamp}.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
