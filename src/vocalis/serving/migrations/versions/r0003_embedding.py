"""The projected mean embedding of each prediction, for embedding drift (vocalis.monitoring.embedding).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A JSON list of a few floats per row. Rows logged before this revision, and rows served by a model exported
without an ``embedding`` output, keep it NULL; drift then leaves the embedding out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable ``embedding`` column."""
    op.add_column("predictions", sa.Column("embedding", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop ``embedding``."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("embedding")
