"""The promotion report (`make report`): one HTML and one Markdown page that an app owner links
when asking for promotion: tests, policy verdict with its rules, risk tier and the approvals it
requires, SBOM summary, dependency audit, secret scan, expiry, template and guardrails versions.

`make report` runs the tools and leaves their outputs in report/ (junit.xml, tests.exit,
sbom.cdx.json, deps-audit.json, secrets.exit); this module reads them, evaluates the policies
itself, and writes report/promotion.md and report/promotion.html. A missing output is shown as
"not run", never as a pass.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import xml.etree.ElementTree as ET  # noqa: S405 (our own pytest's junit file)
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from guardrails.core import policy
from guardrails.core.manifest import load_manifest
from guardrails.core.rules import REQUIRED_APPROVALS, days_until_expiry, expiry_status, risk_tier


@dataclass
class Section:
    title: str
    status: str  # pass | fail | warn | not run
    lines: list[str] = field(default_factory=list)


def _exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def tests(out: Path) -> Section:
    junit = out / "junit.xml"
    if not junit.is_file():
        return Section("Tests", "not run", ["report/junit.xml is missing"])
    root = ET.parse(junit).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else list(root)
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                                   "skipped")}  # fmt: skip
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    ok = count["failures"] == count["errors"] == 0 and _exit_code(out / "tests.exit") == 0
    return Section("Tests", "pass" if ok else "fail", [
        f"{count['tests']} run: {passed} passed, {count['failures']} failed, "
        f"{count['errors']} errors, {count['skipped']} skipped"
    ])  # fmt: skip


def policies(manifest, policy_dir: Path, today: dt.date) -> Section:
    try:
        result = policy.evaluate(manifest.raw, policy_dir, today)
    except policy.PolicyError as exc:
        return Section("Policy verdict", "fail", [str(exc)])
    lines = [f"deny `{f.rule}`: {f.msg} (fix: {f.fix})" for f in result.deny]
    lines += [f"warn `{f.rule}`: {f.msg} (fix: {f.fix})" for f in result.warn]
    status = "fail" if result.deny else "warn" if result.warn else "pass"
    return Section("Policy verdict", status, lines or ["every CoE rule passes"])


def tier(manifest) -> Section:
    approvals = REQUIRED_APPROVALS[manifest.risk_tier]
    return Section(f"Risk tier {manifest.risk_tier}", "pass", [
        "Required approvals: " + "; ".join(approvals),
        "Why: " + "; ".join(risk_tier(manifest.raw)[1]),
    ])  # fmt: skip


def sbom(out: Path) -> Section:
    path = out / "sbom.cdx.json"
    if not path.is_file():
        return Section("SBOM", "not run", ["report/sbom.cdx.json is missing"])
    components = json.loads(path.read_text()).get("components") or []
    sdk = [c.get("version") for c in components if c.get("name") == "microapp-guardrails"]
    return Section("SBOM", "pass", [
        f"{len(components)} packages (CycloneDX, report/sbom.cdx.json)",
        f"microapp-guardrails {sdk[0] if sdk else 'not found'}",
    ])  # fmt: skip


def dependency_audit(out: Path) -> Section:
    path = out / "deps-audit.json"
    if not path.is_file():
        return Section("Dependency audit", "not run", ["report/deps-audit.json is missing"])
    try:
        data: Any = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError:
        return Section("Dependency audit", "not run", ["pip-audit gave no JSON (offline?)"])
    deps = data.get("dependencies", data if isinstance(data, list) else [])
    found = []
    for dep in deps:
        for vuln in dep.get("vulns") or []:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no release yet"
            found.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    clean = [f"{len(deps)} packages, no known vulnerability (pip-audit)"]
    return Section("Dependency audit", "fail" if found else "pass", found or clean)


def secret_scan(out: Path) -> Section:
    code = _exit_code(out / "secrets.exit")
    if code is None:
        return Section("Secret scan", "not run", ["report/secrets.exit is missing"])
    return Section("Secret scan", "pass" if code == 0 else "fail", [
        "no secret found in the committed files (detect-secrets)" if code == 0
        else "detect-secrets found possible secrets: run make secrets-scan"
    ])  # fmt: skip


def lifecycle(manifest, today: dt.date) -> Section:
    expires = manifest.raw["lifecycle"]["expires"]
    status = expiry_status(expires, today)
    days = days_until_expiry(expires, today)
    text = f"expires {expires} ({days} days)" if days >= 0 else f"expired {expires}"
    return Section("Expiry", {"ok": "pass", "soon": "warn"}.get(status, "fail"), [
        f"Stage {manifest.raw['lifecycle']['stage']}, {text}; renew with make renew"
    ])  # fmt: skip


def versions(app: Path) -> Section:
    answers_file = app / ".copier-answers.yml"
    answers = yaml.safe_load(answers_file.read_text()) if answers_file.is_file() else {}
    try:
        sdk = metadata.version("microapp-guardrails")
    except metadata.PackageNotFoundError:
        sdk = "not installed"
    return Section("Versions", "pass", [
        f"template {(answers or {}).get('_commit', 'unknown')}", f"microapp-guardrails {sdk}"
    ])  # fmt: skip


def build(app: Path, out: Path, today: dt.date | None = None) -> tuple[str, list[Section]]:
    today = today or dt.date.today()
    manifest = load_manifest(app / "microapp.yaml")
    sections = [
        tests(out), policies(manifest, app / "policy", today), tier(manifest), sbom(out),
        dependency_audit(out), secret_scan(out), lifecycle(manifest, today), versions(app),
    ]  # fmt: skip
    blocking = [s.title for s in sections if s.status in {"fail", "not run"}]
    verdict = ("Ready to ask for promotion" if not blocking
               else "Not ready: " + ", ".join(blocking))  # fmt: skip
    return verdict, sections


MARK = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "not run": "NOT RUN"}


def markdown(app_id: str, verdict: str, sections: list[Section], when: str) -> str:
    out = [f"# Promotion report: {app_id}", "", f"**{verdict}** ({when})", ""]
    for s in sections:
        out += [f"## {s.title}: {MARK[s.status]}", ""] + [f"- {line}" for line in s.lines] + [""]
    return "\n".join(out)


def page(app_id: str, verdict: str, sections: list[Section], when: str) -> str:
    parts = []
    for s in sections:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in s.lines)
        css = s.status.replace(" ", "-")
        parts.append(f'<section class="{css}"><h2>{html.escape(s.title)} '
                     f'<span>{MARK[s.status]}</span></h2><ul>{items}</ul></section>')  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Promotion report: {html.escape(app_id)}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; }}
section {{ border-left: 6px solid #8c959f; padding: .2rem 1rem; margin: 1rem 0; }}
section.pass {{ border-color: #1a7f37; }} section.fail, section.not-run {{ border-color: #cf222e; }}
section.warn {{ border-color: #bf8700; }} h2 {{ font-size: 1.1rem; }} h2 span {{ float: right; }}
</style></head><body>
<h1>Promotion report: {html.escape(app_id)}</h1>
<p><strong>{html.escape(verdict)}</strong> ({html.escape(when)})</p>
{"".join(parts)}
</body></html>
"""


def write(app: Path, out: Path, today: dt.date | None = None) -> tuple[str, list[Section]]:
    verdict, sections = build(app, out, today)
    app_id = load_manifest(app / "microapp.yaml").app_id
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (out / "promotion.md").write_text(markdown(app_id, verdict, sections, when), "utf-8")
    (out / "promotion.html").write_text(page(app_id, verdict, sections, when), "utf-8")
    return verdict, sections
