"""Relational storage: engine factory, models, repositories, migrations and health.

SQLite by default (one machine, several replicas share the file), PostgreSQL when
DATABASE_URL is set. Import submodules for the rest; this keeps Alembic out of replicas
that only need an engine.
"""

from stratmaster.db.engine import create_db_engine
from stratmaster.db.tenants import TenantRecord, TenantRepository

__all__ = ["TenantRecord", "TenantRepository", "create_db_engine"]
