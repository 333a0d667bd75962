"""The audit log: appended per tenant, filtered and paged, and refused any change by the database itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.security.audit import AuditEntry, AuditLog, outcome_of

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    return create_db_engine(url)


def entry(minutes: int, tenant: str = "acme", subject: str = "ana", action: str = "POST /knowledge/documents",
          status: int = 200) -> AuditEntry:
    return AuditEntry(at=T0 + timedelta(minutes=minutes), tenant=tenant, subject=subject, roles=("analyst",),
                      action=action, resource="/knowledge/documents", correlation_id=f"c{minutes}",
                      outcome=outcome_of(status), status=status)


def test_records_are_listed_newest_first_per_tenant_with_filters_and_pages(engine):
    audit = AuditLog(engine)
    variants = [{}, {"subject": "bo"}, {"status": 403}, {"action": "DELETE /knowledge/documents/{document_id:path}"},
                {"tenant": "globex"}]
    for minutes, kwargs in enumerate(variants):
        audit.append(entry(minutes, **kwargs))
    records, total = audit.list("acme")
    assert total == 4 and [r.correlation_id for r in records] == ["c3", "c2", "c1", "c0"]
    assert records[0].roles == ("analyst",) and records[0].at == T0 + timedelta(minutes=3)
    assert [r.correlation_id for r in audit.list("acme", subject="bo")[0]] == ["c1"]
    assert [r.outcome for r in audit.list("acme", outcome="denied")[0]] == ["denied"]
    assert [r.correlation_id for r in audit.list("acme", action="DELETE")[0]] == ["c3"]
    assert [r.correlation_id for r in audit.list("acme", since=T0 + timedelta(minutes=1),
                                                 until=T0 + timedelta(minutes=3))[0]] == ["c2", "c1"]
    page, total = audit.list("acme", limit=2, offset=2)
    assert total == 4 and [r.correlation_id for r in page] == ["c1", "c0"]
    assert audit.list("globex")[1] == 1


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET outcome = 'success'", "DELETE FROM audit_log"])
def test_the_database_refuses_to_change_or_remove_a_record(engine, statement):
    AuditLog(engine).append(entry(0, status=403))
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    assert AuditLog(engine).list("acme")[0][0].outcome == "denied"


def test_outcomes_follow_the_status():
    assert [outcome_of(s) for s in (200, 204, 302, 403, 404, 422, 500)] == [
        "success", "success", "success", "denied", "failed", "failed", "failed"]
    with pytest.raises(ValueError, match="outcome"):
        AuditLog.append(None, AuditEntry(T0, "a", "s", (), "x", "/x", None, "maybe", 200))  # type: ignore[arg-type]
