"""Each kind's routes fuzzed from their own OpenAPI schema (schemathesis), signed in: no 5xx.

The kind's code runs in this process as every new app gets it (kinds/<kind>/files/src, its few
templated files rendered in-process), with the manifest the template renders, its demo services
(app/dev.py) and the local sign-in service. A handful of generated requests per route keeps it
cheap; what fails is listed with the request that made it fail.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from guardrails.core.manifest import load_manifest
from guardrails.core.runtime import build_runtime
from guardrails.testing import login, serve, test_settings, with_free_local_ports
from guardrails.testing.devserver import app_services, demo_users, run_idp

from . import inprocess
from .conftest import DASHBOARD, DEFAULTS, INCIDENTS
from .kind_code import kind_code

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
hypothesis = pytest.importorskip("hypothesis")

# each kind's models are declared once per kind module load; SQLAlchemy says it replaced them
pytestmark = pytest.mark.filterwarnings(
    "ignore:This declarative base already contains:sqlalchemy.exc.SAWarning"
)
EXAMPLES = 8  # generated requests per route
ANSWERS = {"approval": DEFAULTS, "dashboard": DASHBOARD, "incident-helper": INCIDENTS}


def signed_in_headers(client, live, manifest) -> dict[str, str]:
    users = sorted(demo_users(manifest), key=lambda u: u.role != "admin")  # the widest role
    page = login(client, live, users[0].email)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
    return {"cookie": cookie, "x-csrf-token": token[1] if token else "", "accept": "text/html"}


def fuzz(operation, base_url: str, headers: dict[str, str], failures: list[str]) -> None:
    """EXAMPLES generated requests to one route; each 5xx is added to `failures`."""

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy())
    def call(case):
        response = case.call(base_url=base_url, headers=headers, allow_redirects=False)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path} -> {response.status_code}: "
                f"{case.as_curl_command()}\n{response.text[:300]}"
            )

    call()


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_no_route_answers_5xx(kind, tmp_path):
    manifest_file = tmp_path / "microapp.yaml"
    manifest_file.write_text(inprocess.render("templates/microapp.yaml.jinja", ANSWERS[kind]))
    manifest = with_free_local_ports(load_manifest(manifest_file))
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        build = stack.enter_context(kind_code(kind, ANSWERS[kind], tmp_path))
        issuer = stack.enter_context(run_idp(manifest))
        env = stack.enter_context(app_services(tmp_path / "var", manifest))
        settings = test_settings(tmp_path, issuer, environ=env)
        live = stack.enter_context(serve(build, build_runtime(settings, manifest)))
        client = stack.enter_context(live.client())
        headers = signed_in_headers(client, live, manifest)
        schema = schemathesis.openapi.from_dict(live.app.openapi())
        operations = [result.ok() for result in schema.get_all_operations()]
        assert operations, "the kind declares no routes in its OpenAPI schema"
        for operation in operations:
            fuzz(operation, live.url, headers, failures)
    assert failures == [], "\n\n".join(failures[:5])
