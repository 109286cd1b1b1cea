"""Every question's validator refuses bad answers with a message a person can act on."""

import pytest

from .conftest import DEFAULTS


@pytest.mark.parametrize(
    ("answers", "question", "message"),
    [
        ({"app_id": "../evil"}, "app_id", "is not valid: use 3 to 40 characters"),
        ({"app_id": "ab"}, "app_id", "is not valid"),
        ({"app_id": "1app"}, "app_id", "starting with a letter"),
        ({"app_id": "a" * 41}, "app_id", "is not valid"),
        ({"app_id": "Leave_Requests"}, "app_id", "is not valid"),
        ({"kind": "unknown"}, "kind", ""),
        ({"app_name": "{{ 7 * 7 }}"}, "app_name", "template markers"),
        ({"app_name": "{% raw %}"}, "app_name", "template markers"),
        ({"app_name": "../../etc"}, "app_name", "cannot contain '/'"),
        ({"app_name": "a\\b"}, "app_name", "cannot contain '/'"),
        ({"app_name": "   "}, "app_name", "cannot be empty"),
        ({"app_name": "x" * 61}, "app_name", "keep it to 60"),
        ({"description": "two\nlines"}, "description", "one line"),
        ({"description": "{{ secrets }}"}, "description", "template markers"),
        ({"team": "hr/ops"}, "team", "cannot contain '/'"),
        ({"support_channel": "{%print(1)%}"}, "support_channel", "template markers"),
        ({"owner_email": "not-an-email"}, "owner_email", "is not an e-mail address"),
        ({"owner_email": "a@b"}, "owner_email", "is not an e-mail address"),
        ({"owner_email": "a b@example.com"}, "owner_email", "is not an e-mail address"),
        ({"retention_days": 0}, "retention_days", "between 1 and 3650"),
        ({"retention_days": 3651}, "retention_days", "between 1 and 3650"),
        ({"expiry_days": 731}, "expiry_days", "between 7 and 730"),
        ({"data_classification": "secret"}, "data_classification", ""),
        ({"sso_issuer": "http://idp.example.com"}, "sso_issuer", "must be an https:// URL"),
        ({"sso_issuer": "http://127.0.0.2:8180/realms/corp"}, "sso_issuer", "https:// URL"),
        ({"sso_issuer": "https://idp.example.com/\n"}, "sso_issuer", "https:// URL"),
        ({"sso_issuer": "ftp://idp"}, "sso_issuer", "must be an https:// URL"),
        ({"sso_client_id": "my client"}, "sso_client_id", "may use letters"),
        ({"requester_groups": "a,"}, "requester_groups", "separated by commas"),
        ({"approver_groups": ""}, "approver_groups", "separated by commas"),
        ({"kind": "dashboard", "pii_reader_groups": " , "}, "pii_reader_groups", "commas"),
        ({"kind": "incident-helper", "responder_groups": ""}, "responder_groups", "commas"),
        ({"kind": "incident-helper", "incident_provider": "opsgenie"}, "incident_provider", ""),
        ({"admin_groups": "admins,,x"}, "admin_groups", "separated by commas"),
        ({"admin_groups": "admins, "}, "admin_groups", "separated by commas"),
        ({"approver_groups": "a" * 257}, "approver_groups", "1 to 256 characters"),
        ({"approver_groups": "a\nb"}, "approver_groups", "one line"),
        ({"approver_groups": "{{ 7 }}"}, "approver_groups", "template markers"),
        ({"ci_provider": "jenkins"}, "ci_provider", ""),
        ({"package_index": "http://packages.example.com/simple"}, "package_index", "https://"),
        ({"package_index": "https://x.example.com/simple\n"}, "package_index", "https://"),
        ({"package_index": "https://x.example.com/{{ 7 }}"}, "package_index", "https://"),
        # issue 16: `$` matched before a final line break; DEL and NEL went through
        ({"app_id": "leave-requests\n"}, "app_id", "is not valid"),
        ({"owner_email": "hr-ops@example.com\n"}, "owner_email", "is not an e-mail"),
        ({"sso_issuer": "https://idp.example.com\n"}, "sso_issuer", "https://"),
        ({"sso_client_id": "leave-requests\n"}, "sso_client_id", "may use letters"),
        ({"approver_groups": "hr-approvers\n"}, "approver_groups", "one line"),
        ({"app_name": "Leave requests\n"}, "app_name", "one line"),
        ({"app_name": "Leave\x7frequests"}, "app_name", "control characters"),
        ({"description": "Leave\x85requests"}, "description", "one line"),
        ({"team": "hr\u2028ops"}, "team", "one line"),
        ({"support_channel": "#hr\x1b[2Jops"}, "support_channel", "control characters"),
        ({"app_name": "Leave \u202erequests"}, "app_name", "invisible layout characters"),
    ],
)
def test_bad_answer_is_refused(copie, answers, question, message):
    result = copie.copy(extra_answers={**DEFAULTS, **answers})
    assert result.exit_code != 0, f"{answers} was accepted"
    text = str(result.exception)
    assert question in text, text
    assert message in text, text
    assert result.project_dir is None or not (result.project_dir / "microapp.yaml").exists()


@pytest.mark.parametrize(
    "answers",
    [
        {"app_name": 'Joe\'s "quoted" app: 100%'},
        {"app_name": "Équipe Café", "app_id": "equipe-cafe"},
        {"owner_email": "first.last+tag@sub.example.co.uk"},
        {"sso_issuer": "https://login.example.com:8443/realms/corp"},
        {"sso_issuer": "http://127.0.0.1:9400"},
        {"requester_groups": "a, b.c, d_e, cn:staff"},
        {"sso_issuer": "https://tenant.example.com/"},  # Auth0's form: the slash is kept
        {"sso_issuer": "http://127.0.0.1:8180/realms/corp"},
        {"sso_issuer": "http://localhost:8180/realms/corp/"},
        {
            "approver_groups": "/o-approvers, HR Approvers, hr@corp.example.com, " + "x" * 256,
            "requester_groups": "Équipe RH",
        },
        {"retention_days": 1, "expiry_days": 7},
        {"retention_days": 3650, "expiry_days": 730},
        {"package_index": "https://packages.example.com:8443/repository/pypi-internal/simple"},
    ],
)
def test_good_edge_answers_are_accepted(copie, answers):
    result = copie.copy(extra_answers={**DEFAULTS, **answers})
    assert result.exit_code == 0, result.exception


def test_an_unclear_pii_answer_counts_as_yes(copie):
    """Copier reads any answer that is not clearly "no" as yes: the safe side (tier 3)."""
    import yaml

    result = copie.copy(extra_answers={**DEFAULTS, "handles_pii": "maybe"})
    assert result.exit_code == 0, result.exception
    data = yaml.safe_load((result.project_dir / "microapp.yaml").read_text())
    assert data["data"]["pii"] is True and data["risk_tier"] == 3
