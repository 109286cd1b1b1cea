# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
#
# CoE policies for microapp.yaml, evaluated by the Rego engine regopy
# (`python -m guardrails policy check`, `make check`, pre-commit and CI).
# Rego v1 syntax only: `deny contains finding if { ... }`. The old `deny[msg] { ... }` form is
# refused by the runner (regopy reads it as an object, not a set, and rules would be lost).
#
# Inputs: `input` is the manifest; `data.coe.allowed_connectors` is the CoE's allow-list
# (policy/data/allowed-connectors.json); `data.verdicts` holds what the guardrails compute
# (guardrails.core.rules, the one home of each rule): risk_tier and tier_reasons, local_urls
# (connector base_url -> is it plain http to this machine), expiry ("ok" | "soon" | "expired")
# and days_until_expiry. These policies compare the manifest to the verdicts; they never
# recompute the tier, the local-URL rule or the expiry window.
package microapp.policy

import rego.v1

finding(rule, msg, fix) := {"rule": rule, "msg": msg, "fix": fix}

connectors := object.get(input, "connectors", [])

# ------------------------------------------------------------------ connectors: allow-list
approved(c) if {
	c.type == "http"
	some a in data.coe.allowed_connectors
	a.type == "http"
	c.base_url == a.base_url
}

# On a laptop (any stage but production) a connector may call a local demo service.
approved(c) if {
	c.type == "http"
	laptop_url(c.base_url)
}

approved(c) if {
	c.type == "sql"
	some a in data.coe.allowed_connectors
	a.type == "sql"
	startswith(secret_ref(c), a.secret_prefix)
}

# A connector's `secret` is a reference (vault:… or env:…) or the name of an entry under
# `secrets:`; a name resolves to that entry's reference.
secret_ref(c) := input.secrets[c.secret] if {
	c.secret
	input.secrets[c.secret]
}

secret_ref(c) := object.get(c, "secret", "") if not object.get(object.get(input, "secrets", {}), object.get(c, "secret", ""), false)

target(c) := c.base_url if c.type == "http"

target(c) := object.get(c, "secret", "no secret") if c.type == "sql"

deny contains finding(
	"connector-allow-list",
	sprintf("connector \"%s\" (%s) is not on the CoE's list of approved connectors", [c.name, target(c)]),
	"use an approved connector (policy/data/allowed-connectors.json) or ask the CoE to approve this one",
) if {
	some c in connectors
	not approved(c)
	not insecure_http(c) # reported by http-base-url instead
}

insecure_http(c) if {
	c.type == "http"
	not startswith(object.get(c, "base_url", ""), "https://")
	not laptop_url(object.get(c, "base_url", ""))
}

local_url(url) if data.verdicts.local_urls[url] == true

laptop_url(url) if {
	local_url(url)
	not production
}

# ------------------------------------------------------------------ connectors: http targets
deny contains finding(
	"http-base-url",
	sprintf("http connector \"%s\" declares no https base_url, so any host could be called", [c.name]),
	"set base_url to the https address of the one API this connector may call",
) if {
	some c in connectors
	insecure_http(c)
}

# ------------------------------------------------------------------ risk tier
deny contains finding(
	"risk-tier",
	sprintf("risk_tier says %d, but the CoE rules give %d", [input.risk_tier, data.verdicts.risk_tier]),
	sprintf("set risk_tier: %d in microapp.yaml (it is computed, not chosen; `python -m guardrails manifest tier` says why)", [data.verdicts.risk_tier]),
) if {
	input.risk_tier != data.verdicts.risk_tier
}

# ------------------------------------------------------------------ masking of sensitive data
sensitive_data if input.data.pii == true

sensitive_data if input.data.classification in {"restricted", "regulated"}

sensitive_reason := "personal data" if {
	input.data.pii == true
} else := sprintf("%s data", [input.data.classification])

deny contains finding(
	"masking-required",
	sprintf("sql connector \"%s\" has no masking rules, but the app handles %s", [c.name, sensitive_reason]),
	"add masking rules for every sensitive column (e.g. masking: {email: partial}), or sensitive_columns: [] if it has none",
) if {
	sensitive_data
	some c in connectors
	c.type == "sql"
	count(object.get(c, "masking", {})) == 0
	object.get(c, "sensitive_columns", null) != []
}

# ------------------------------------------------------------------ personal data declared
# The risk tier (and so the review an app gets) depends on data.pii, so the manifest must say
# true when a connector reads personal data (its personal_columns, which the dashboard kind's
# starter declares) or shows masked columns in clear text to a role (unmasked_for).
# Messages are built with concat: regopy's sprintf quotes a concat result without escaping.
masking_of(c) := object.get(c, "masking", {})

unmasked_columns(c) := sort([column | masking_of(c)[column] != "none"])

pii_fix := "set data.pii: true in microapp.yaml and risk_tier: 3 (`python -m guardrails manifest tier` says why)"

deny contains finding(
	"pii-declared",
	concat("", ["connector \"", c.name, "\" shows ", concat(", ", unmasked_columns(c)), " unmasked to the role(s) ", concat(", ", c.unmasked_for), ", but data.pii is false"]),
	sprintf("%s, or remove unmasked_for if none of these columns is about a person", [pii_fix]),
) if {
	input.data.pii != true
	some c in connectors
	count(object.get(c, "unmasked_for", [])) > 0
	count(unmasked_columns(c)) > 0
}

deny contains finding(
	"pii-declared",
	concat("", ["connector \"", c.name, "\" reads personal data (personal_columns: ", concat(", ", c.personal_columns), "), but data.pii is false"]),
	pii_fix,
) if {
	input.data.pii != true
	some c in connectors
	count(object.get(c, "personal_columns", [])) > 0
	count(object.get(c, "unmasked_for", [])) == 0 # else reported above
}

# ------------------------------------------------------------------ production readiness
production if input.lifecycle.stage == "production"

deny contains finding(
	"production-owner",
	"a production app needs a named owner and a support contact",
	"fill in owner and support.contact in microapp.yaml",
) if {
	production
	some value in [object.get(input, "owner", ""), object.get(input.support, "contact", "")]
	trim_space(value) == ""
}

deny contains finding(
	"production-sla",
	"a production app needs a support SLA",
	"set support.sla_hours (for example 16 for two business days)",
) if {
	production
	not input.support.sla_hours
}

secret_refs contains ref if {
	some c in connectors
	ref := secret_ref(c)
	ref != ""
}

secret_refs contains ref if {
	some ref in object.get(input, "secrets", {})
}

deny contains finding(
	"production-vault",
	sprintf("secret \"%s\" comes from an environment variable; production secrets must come from Vault", [ref]),
	"store it in Vault and reference it as vault:<mount>/<path>#<key>",
) if {
	production
	some ref in secret_refs
	startswith(ref, "env:")
}

# ------------------------------------------------------------------ lifecycle
deny contains finding(
	"expired",
	sprintf("the app expired %d day(s) ago (lifecycle.expires %s)", [0 - data.verdicts.days_until_expiry, input.lifecycle.expires]),
	"ask the CoE to renew the app, then set the new lifecycle.expires",
) if {
	data.verdicts.expiry == "expired"
}

warn contains finding(
	"expires-soon",
	sprintf("the app expires in %d day(s) (lifecycle.expires %s)", [data.verdicts.days_until_expiry, input.lifecycle.expires]),
	"ask the CoE to renew it before it expires",
) if {
	data.verdicts.expiry == "soon"
}

deny contains finding(
	"no-auto-promotion",
	sprintf("a tier %d app cannot be promoted automatically", [input.risk_tier]),
	"set lifecycle.promotion: review; tier 2 needs a security review, tier 3 full sign-off",
) if {
	object.get(input.lifecycle, "promotion", "review") == "auto"
	input.risk_tier >= 2
}
