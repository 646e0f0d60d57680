"""The model's name next to its version in each prediction (a registry names models; versions repeat).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Rows logged before this revision keep ``model_name`` NULL: which model served them was not recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable ``model_name`` column."""
    op.add_column("predictions", sa.Column("model_name", sa.String(256), nullable=True))


def downgrade() -> None:
    """Drop ``model_name``."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("model_name")
