"""research_source_allowlists: the hosts each tenant lets research fetch pages from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "research_source_allowlists",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name="pk_research_source_allowlists"),
    )


def downgrade() -> None:
    op.drop_table("research_source_allowlists")
