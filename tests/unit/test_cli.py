"""The `stratmaster` command line, without a cluster."""

from __future__ import annotations

import json

import pytest

from stratmaster.cli import main
from stratmaster.identity import LocalIssuer


@pytest.fixture(autouse=True)
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KEYCLOAK_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def test_token_prints_a_token_the_platform_verifies(capsys, data_dir):
    assert main(["token", "--tenant", "acme", "--role", "analyst"]) == 0
    token = capsys.readouterr().out.strip()
    principal = LocalIssuer(data_dir / "keys", audience="stratmaster").verifier().verify(token)
    assert (principal.tenant, principal.roles, principal.subject) == ("acme", ("analyst",), "acme-analyst")


def test_token_refuses_an_unknown_role(capsys):
    assert main(["token", "--tenant", "acme", "--role", "superuser"]) == 2
    assert "superuser" in capsys.readouterr().err


def test_a_malformed_variable_stops_the_cli_naming_it(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    assert main(["status"]) == 2
    assert "DATABASE_URL" in capsys.readouterr().err


def test_status_of_a_platform_that_is_not_running_is_unhealthy(capsys):
    assert main(["status", "--url", "http://127.0.0.1:9", "--timeout", "1"]) == 1
    assert '"status": "unhealthy"' in capsys.readouterr().out


def test_migrate_upgrades_the_embedded_database(capsys, data_dir):
    assert main(["migrate", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["migrate", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["backend"], status["at_head"], status["pending"]) == ("sqlite", True, [])
    assert (data_dir / "stratmaster.db").exists()
