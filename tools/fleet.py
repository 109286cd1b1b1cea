"""The CoE's fleet report: which apps are behind, expired, drifted, on a flagged guardrails
release, or refused by the policies, read from each app's own files (no app is set up or run).

    python -m tools.fleet [APP ...] [--from FILE] [--json OUT.json] [--html OUT.html]
    make fleet APPS="../app-a ../app-b"          (or APPS_FILE=fleet.txt)

APP is a local folder or a git URL (cloned into a temporary folder). FILE lists one per line
(`#` starts a comment). Per app, from `.copier-answers.yml`, `microapp.yaml`, `uv.lock` and git:
id, owner, team, kind, tier, classification, stage, template version and releases behind,
guardrails version (flagged by `advisories.yaml`), expiry, policy verdict, last update.
Output: a terminal table, and on request JSON (for dashboards) and one static HTML page.
Exit status 1 when an app needs action (so a scheduled job can open issues), 2 on bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from guardrails.cli import drift
from guardrails.core import policy
from guardrails.core.manifest import upgrade, validate
from guardrails.core.rules import EXPIRY_WARNING_DAYS, days_until_expiry, expiry_status
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[1]
ADVISORIES = REPO / "advisories.yaml"
PACKAGE = "microapp-guardrails"
RELEASE_TAG = re.compile(r"^v(\d+\.\d+\.\d+)$")


@dataclass
class AppReport:
    source: str
    app_id: str = "?"
    name: str = ""
    owner: str = ""
    team: str = ""
    kind: str = ""
    tier: int | None = None
    classification: str = ""
    stage: str = ""
    template_ref: str = ""
    template_version: str = ""
    releases_behind: int | None = None
    guardrails: str = ""
    advisories: list[str] = field(default_factory=list)
    expires: str = ""
    days_left: int | None = None
    expiry: str = ""
    policy: str = ""
    policy_rules: list[str] = field(default_factory=list)
    drift: str = ""
    last_update: str = ""
    actions: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- template releases
def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def releases(template: Path) -> list[Version]:
    """The template's release tags (vX.Y.Z), oldest first."""
    found = (RELEASE_TAG.match(tag) for tag in git(template, "tag", "-l", "v*").split())
    return sorted(Version(m[1]) for m in found if m)


def template_version(ref: str, template: Path) -> Version | None:
    """The release an app's `_commit` names: a tag, or a commit read as `<last tag>.postN`."""
    if match := RELEASE_TAG.match(ref):
        return Version(match[1])
    described = git(template, "describe", "--tags", "--long", "--match", "v*", ref)
    if match := re.fullmatch(r"v(\d+\.\d+\.\d+)-(\d+)-g\w+", described):
        base, ahead = match[1], int(match[2])
        return Version(base if not ahead else f"{base}.post{ahead}")
    return None


# ---------------------------------------------------------------------- guardrails version
def guardrails_version(app: Path) -> str:
    """The SDK version the app runs: its lock file, else a vendored copy (0.x), else the pin."""
    lock = app / "uv.lock"
    if lock.exists():
        for package in tomllib.loads(lock.read_text("utf-8")).get("package", []):
            if package.get("name") == PACKAGE:
                return str(package.get("version", ""))
    vendored = app / "src/guardrails/_version.py"
    text = vendored.read_text("utf-8") if vendored.exists() else ""
    if match := re.search(r'__version__ = "([^"]+)"', text):
        return match[1]
    pyproject = app / "pyproject.toml"
    text = pyproject.read_text("utf-8") if pyproject.exists() else ""
    if match := re.search(rf"{PACKAGE}\s*(~=|==|>=)\s*([\w.]+)", text):
        return f"{match[1]}{match[2]} (not locked)"
    return ""


def load_advisories(path: Path) -> list[dict[str, Any]]:
    entries = (yaml.safe_load(path.read_text("utf-8")) or {}).get("advisories") or []
    for entry in entries:
        missing = {"id", "status", "affected", "summary"} - set(entry)
        if missing or entry["status"] not in {"vulnerable", "withdrawn"}:
            raise ValueError(
                f"{path}: advisory {entry.get('id', '?')} needs id, status "
                "(vulnerable | withdrawn), affected and summary"
            )
        SpecifierSet(entry["affected"])  # raises on a bad specifier
    return entries


def flagged(version: str, advisories: list[dict[str, Any]]) -> list[str]:
    match = re.match(r"[~=>]*(\d[\w.]*)", version)
    if not match:
        return []
    try:
        parsed = Version(match[1])
    except InvalidVersion:
        return []
    return [
        f"{a['id']} ({a['status']})"
        for a in advisories
        if SpecifierSet(a["affected"]).contains(parsed, prereleases=True)
    ]


# ---------------------------------------------------------------------- one app
def inspect(
    app: Path,
    source: str,
    template: Path,
    known: list[Version],
    advisories: list[dict[str, Any]],
    today: dt.date,
    max_behind: int,
) -> AppReport:
    report = AppReport(source=source)
    answers_file = app / ".copier-answers.yml"
    manifest_file = app / "microapp.yaml"
    if not manifest_file.exists() or not answers_file.exists():
        report.actions.append("not a microapp: no microapp.yaml or .copier-answers.yml")
        return report
    answers = yaml.safe_load(answers_file.read_text("utf-8")) or {}
    data, _notices = upgrade(yaml.safe_load(manifest_file.read_text("utf-8")) or {})
    lifecycle = data.get("lifecycle") or {}
    report.app_id = str(data.get("app_id", "?"))
    report.name = str(data.get("name", ""))
    report.owner = str(data.get("owner", ""))
    report.team = str(data.get("team", ""))
    report.kind = str(data.get("kind") or answers.get("kind", ""))
    report.tier = data.get("risk_tier")
    report.classification = str((data.get("data") or {}).get("classification", ""))
    report.stage = str(lifecycle.get("stage", ""))

    report.template_ref = str(answers.get("_commit", ""))
    version = template_version(report.template_ref, template)
    report.template_version = str(version) if version else "unknown"
    if version is not None:
        report.releases_behind = sum(1 for v in known if v > Version(version.base_version))
        if report.releases_behind > max_behind:
            report.actions.append(f"update: {report.releases_behind} release(s) behind")
    else:
        report.actions.append(f"template version {report.template_ref!r} is not in this template")

    report.guardrails = guardrails_version(app) or "unknown"
    report.advisories = flagged(report.guardrails, advisories)
    if report.advisories:
        report.actions.append("guardrails release flagged: " + ", ".join(report.advisories))

    if lifecycle.get("expires"):
        report.expires = str(lifecycle["expires"])
        report.days_left = days_until_expiry(report.expires, today)
        report.expiry = expiry_status(report.expires, today)
        if report.expiry == "expired":
            report.actions.append(f"expired on {report.expires}: renew or retire")
        elif report.expiry == "soon":
            report.actions.append(f"expires in {report.days_left} day(s): renew or retire")

    problems = validate(data, manifest_file)
    if problems:
        report.policy, report.policy_rules = "invalid", problems
    elif (app / "policy").is_dir():
        try:
            result = policy.evaluate(data, app / "policy", today)
        except policy.PolicyError as exc:
            report.policy, report.policy_rules = "error", [str(exc)]
        else:
            report.policy = "deny" if result.deny else "warn" if result.warn else "pass"
            report.policy_rules = [f"{f.rule}: {f.msg}" for f in result.deny + result.warn]
    else:
        report.policy = "no policies"
    if report.policy in {"invalid", "error", "deny"}:
        report.actions.append(f"policy {report.policy}: " + "; ".join(report.policy_rules))

    report.drift = template_drift(app, report)
    report.last_update = git(app, "log", "-1", "--format=%cs", "--", ".copier-answers.yml")
    return report


def template_drift(app: Path, report: AppReport) -> str:
    """Template-owned files edited by hand, against the list the app carries (1.0.0 on)."""
    if not (app / ".microapp/FILES.sha256").is_file():
        return "n/a"
    found = drift.check(app)
    changed = found.modified + found.missing + found.added + found.vendored
    if changed:
        report.actions.append("drift: template-owned files changed by hand: " + ", ".join(changed))
        return f"{len(changed)} file(s)"
    return "clean"


def fetch(source: str, workdir: Path) -> Path:
    """A local folder as it is; a git URL cloned (with history: the last update's date)."""
    if re.match(r"^(\w+://|git@)", source) or source.endswith(".git"):
        target = workdir / re.sub(r"\W+", "-", source)[-60:]
        subprocess.run(["git", "clone", "-q", source, str(target)], check=True)
        return target
    return Path(source)


# ---------------------------------------------------------------------- outputs
COLUMNS = [
    ("app_id", "app"),
    ("owner", "owner"),
    ("team", "team"),
    ("kind", "kind"),
    ("tier", "tier"),
    ("classification", "data"),
    ("stage", "stage"),
    ("template_version", "template"),
    ("releases_behind", "behind"),
    ("guardrails", "guardrails"),
    ("expires", "expires"),
    ("expiry", "expiry"),
    ("policy", "policy"),
    ("drift", "drift"),
    ("last_update", "updated"),
]


def cell(report: AppReport, key: str) -> str:
    value = getattr(report, key)
    if key == "guardrails" and report.advisories:
        return f"{value} !"
    return "" if value is None else str(value)


def table(reports: list[AppReport]) -> str:
    rows = [[title for _key, title in COLUMNS] + ["action"]]
    rows += [[cell(r, k) for k, _t in COLUMNS] + [str(len(r.actions) or "")] for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in reports:
        lines += [f"{r.app_id}: {action}" for action in r.actions]
    return "\n".join(lines)


def summary(reports: list[AppReport], known: list[Version], today: dt.date) -> dict[str, Any]:
    return {
        "generated": today.isoformat(),
        "latest_release": str(known[-1]) if known else None,
        "apps": len(reports),
        "need_action": sum(1 for r in reports if r.actions),
        "expiry_warning_days": EXPIRY_WARNING_DAYS,
    }


def chart(reports: list[AppReport]) -> str:
    """An inline SVG bar chart: how many apps run each template version."""
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.template_version] = counts.get(r.template_version, 0) + 1

    def order(v: str) -> tuple[int, Any]:
        try:
            return (0, Version(v))
        except InvalidVersion:
            return (1, v)

    bars = sorted(counts.items(), key=lambda item: order(item[0]))
    most, row, width = max(counts.values(), default=1), 26, 420
    parts = [
        f'<svg role="img" aria-labelledby="chart-title" width="{width + 200}" '
        f'height="{row * len(bars) + 10}" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Apps per template version</title>',
    ]
    for i, (version, count) in enumerate(bars):
        y, length = i * row + 5, max(2, round(width * count / most))
        parts.append(
            f'<text x="120" y="{y + 16}" text-anchor="end">{html.escape(version)}</text>'
            f'<rect x="130" y="{y}" width="{length}" height="{row - 8}" class="bar"/>'
            f'<text x="{136 + length}" y="{y + 16}">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Micro app fleet, {generated}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .3rem; }}
.summary {{ color: #444; margin-bottom: 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .35rem .5rem; text-align: left;
  vertical-align: top; }}
th {{ background: #f6f8fa; cursor: pointer; user-select: none; white-space: nowrap; }}
th[aria-sort="ascending"]::after {{ content: " \\25B2"; }}
th[aria-sort="descending"]::after {{ content: " \\25BC"; }}
tr.action td:first-child {{ border-left: 4px solid #cf222e; }}
td:not(:last-child) {{ white-space: nowrap; }}
td:last-child {{ min-width: 18rem; }}
td.bad {{ color: #a40e26; font-weight: 600; }}
td.warn {{ color: #7d4e00; font-weight: 600; }}
ul {{ margin: 0; padding-left: 1.1rem; }}
svg text {{ font: 13px system-ui, sans-serif; fill: #1b1f24; }}
svg .bar {{ fill: #0969da; }}
</style></head>
<body>
<h1>Micro app fleet</h1>
<p class="summary">{apps} apps, {need_action} need action. Latest template release:
{latest}. Generated {generated}. Click a column heading to sort.</p>
<h2>Template versions across the fleet</h2>
{chart}
<h2>Apps</h2>
<table id="fleet"><thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody></table>
<script>
document.querySelectorAll("#fleet th").forEach((th, col) => th.addEventListener("click", () => {{
  const body = document.querySelector("#fleet tbody");
  const up = th.getAttribute("aria-sort") !== "ascending";
  document.querySelectorAll("#fleet th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", up ? "ascending" : "descending");
  const key = td => td.dataset.sort ?? td.textContent;
  const rows = [...body.rows].sort((a, b) => {{
    const x = key(a.cells[col]), y = key(b.cells[col]);
    const n = parseFloat(x) - parseFloat(y);
    return (isNaN(n) ? x.localeCompare(y) : n) * (up ? 1 : -1);
  }});
  rows.forEach(r => body.appendChild(r));
}}));
</script>
</body></html>
"""


def sort_key(report: AppReport, key: str) -> str | None:
    if key == "template_version":
        try:
            v = Version(report.template_version)
        except InvalidVersion:
            return None
        major, minor, micro = (*v.release, 0, 0)[:3]
        return f"{major:04d}{minor:04d}{micro:04d}{v.post or 0:04d}"
    return None


def page(reports: list[AppReport], known: list[Version], today: dt.date) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _k, title in COLUMNS) + "<th>action</th>"
    rows = []
    for r in reports:
        cells = []
        for key, _title in COLUMNS:
            css = ""
            if (
                (key == "expiry" and r.expiry == "expired")
                or (key == "policy" and r.policy in {"deny", "invalid", "error"})
                or (key == "guardrails" and r.advisories)
                or (key == "drift" and r.drift not in {"clean", "n/a"})
            ):
                css = ' class="bad"'
            elif (key == "expiry" and r.expiry == "soon") or (
                key == "releases_behind" and r.releases_behind
            ):
                css = ' class="warn"'
            sort = sort_key(r, key)
            data = f' data-sort="{sort}"' if sort else ""
            cells.append(f"<td{css}{data}>{html.escape(cell(r, key))}</td>")
        actions = "".join(f"<li>{html.escape(a)}</li>" for a in r.actions)
        cells.append(f'<td data-sort="{len(r.actions)}"><ul>{actions}</ul></td>')
        marker = ' class="action"' if r.actions else ""
        rows.append(f"<tr{marker}>{''.join(cells)}</tr>")
    info = summary(reports, known, today)
    return PAGE.format(
        generated=info["generated"],
        apps=info["apps"],
        need_action=info["need_action"],
        latest=html.escape(str(info["latest_release"])),
        chart=chart(reports),
        head=head,
        rows="\n".join(rows),
    )


# ---------------------------------------------------------------------- command line
def sources(args: argparse.Namespace) -> list[str]:
    found = list(args.apps)
    if args.from_file:
        for line in Path(args.from_file).read_text("utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fleet",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("apps", nargs="*", help="app folders or git URLs")
    parser.add_argument("--from", dest="from_file", help="a file listing apps, one per line")
    parser.add_argument("--json", help="write the report as JSON to this file")
    parser.add_argument("--html", help="write the report as one static HTML page to this file")
    parser.add_argument("--template", default=str(REPO), help="the template repository (tags)")
    parser.add_argument("--advisories", default=str(ADVISORIES), help="advisories file")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument(
        "--max-behind",
        type=int,
        default=0,
        help="releases an app may be behind before it needs action (default 0)",
    )
    args = parser.parse_args(argv)
    apps = sources(args)
    if not apps:
        parser.print_usage(sys.stderr)
        print("no apps given: name folders or git URLs, or --from FILE", file=sys.stderr)
        return 2
    template = Path(args.template)
    known = releases(template)
    advisories = load_advisories(Path(args.advisories))
    reports = []
    with tempfile.TemporaryDirectory(prefix="fleet-") as workdir:
        for source in apps:
            try:
                folder = fetch(source, Path(workdir))
            except subprocess.CalledProcessError:
                reports.append(AppReport(source=source, actions=["cannot clone the repository"]))
                continue
            reports.append(
                inspect(folder, source, template, known, advisories, args.today, args.max_behind)
            )
    print(table(reports))
    if args.json:
        document = {
            "summary": summary(reports, known, args.today),
            "apps": [asdict(r) for r in reports],
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    if args.html:
        Path(args.html).write_text(page(reports, known, args.today), "utf-8")
    need = sum(1 for r in reports if r.actions)
    print(f"\n{len(reports)} app(s), {need} need action.")
    return 1 if need else 0


if __name__ == "__main__":
    sys.exit(main())
