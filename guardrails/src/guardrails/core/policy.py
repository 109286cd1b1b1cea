"""Policy as code: the CoE's Rego policies in policy/, evaluated with the Rego engine regopy.

`evaluate()` runs every `policy/*.rego` module against the manifest, with the CoE's data files
(`policy/data/*.json`, as `data.coe`) and the verdicts guardrails.core.rules computes
(`data.verdicts`: risk_tier, tier_reasons, local_urls, expiry, days_until_expiry), and returns
the `deny` and `warn` findings. The policies compare the manifest to the verdicts; they do not
recompute the tier, the local-URL rule or the expiry window.
`python -m guardrails policy check` prints them as a table a non-developer can act on.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrails.core.rules import verdicts

POLICY_DIR = Path("policy")
PACKAGE = "data.microapp.policy"


class PolicyError(RuntimeError):
    """The policies themselves are broken (syntax, wrong rule shape): a CoE problem."""


@dataclass(frozen=True)
class Finding:
    rule: str
    msg: str
    fix: str


@dataclass
class Result:
    deny: list[Finding]
    warn: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.deny


def _data(policy_dir: Path) -> dict[str, Any]:
    coe: dict[str, Any] = {}
    for path in sorted((policy_dir / "data").glob("*.json")):
        content = json.loads(path.read_text("utf-8"))
        coe.update({k: v for k, v in content.items() if not k.startswith("_")})
    return {"coe": coe}


def _findings(interpreter, rule: str) -> list[Finding]:
    output = interpreter.query(f"{PACKAGE}.{rule}")
    parsed = json.loads(str(output))
    if "expressions" not in parsed:  # undefined: the package defines no such rule
        return []
    value = parsed["expressions"][0]
    if not isinstance(value, list):
        raise PolicyError(
            f"`{rule}` evaluated to {type(value).__name__}, not a set: write rules in Rego v1 "
            f"form (`{rule} contains finding if {{ ... }}`), not `{rule}[msg] {{ ... }}`"
        )
    try:
        found = [Finding(rule=f["rule"], msg=f["msg"], fix=f["fix"]) for f in value]
    except (TypeError, KeyError) as exc:
        raise PolicyError(f"`{rule}` findings need rule, msg and fix: {exc}") from None
    return sorted(found, key=lambda f: (f.rule, f.msg))


def evaluate(
    manifest: dict[str, Any], policy_dir: Path = POLICY_DIR, today: dt.date | None = None
) -> Result:
    """Evaluate the policies in `policy_dir` against a parsed manifest."""
    import regopy

    modules = sorted(policy_dir.glob("*.rego"))
    if not modules:
        raise PolicyError(f"no Rego policies in {policy_dir}/")
    interpreter = regopy.Interpreter()
    try:
        for module in modules:
            interpreter.add_module(module.name, module.read_text("utf-8"))
        interpreter.add_data_json(json.dumps(_data(policy_dir)))
        interpreter.add_data_json(json.dumps({"verdicts": verdicts(manifest, today)}))
        interpreter.set_input(manifest)
        return Result(deny=_findings(interpreter, "deny"), warn=_findings(interpreter, "warn"))
    except regopy.RegoError as exc:
        raise PolicyError(f"the policies in {policy_dir}/ do not compile: {exc}") from None


def table(findings: list[Finding], width: int = 100) -> str:
    """Rule | what is wrong | how to fix, wrapped to fit a terminal."""
    rule_w = max([len("RULE"), *(len(f.rule) for f in findings)])
    text_w = max(20, (width - rule_w - 4) // 2)
    lines = [f"{'RULE':<{rule_w}}  {'WHAT IS WRONG':<{text_w}}  HOW TO FIX"]
    for f in findings:
        wrong = textwrap.wrap(f.msg, text_w) or [""]
        fix = textwrap.wrap(f.fix, text_w) or [""]
        for i in range(max(len(wrong), len(fix))):
            lines.append(
                f"{f.rule if i == 0 else '':<{rule_w}}  "
                f"{wrong[i] if i < len(wrong) else '':<{text_w}}  "
                f"{fix[i] if i < len(fix) else ''}".rstrip()
            )
    return "\n".join(lines)
