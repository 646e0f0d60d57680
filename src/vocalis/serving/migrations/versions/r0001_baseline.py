"""Baseline: the prediction log as the service created it before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

A database made by that code (``Base.metadata.create_all``) has exactly this table and no
``alembic_version``; :class:`vocalis.serving.store.PredictionStore` stamps it at this revision and upgrades
it from here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the predictions table and its indexes."""
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(512), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("rms_dbfs", sa.Float(), nullable=False),
        sa.Column("spectral_centroid_hz", sa.Float(), nullable=False),
        sa.Column("spectral_bandwidth_hz", sa.Float(), nullable=False),
        sa.Column("peak_frequency_hz", sa.Float(), nullable=False),
        sa.Column("zero_crossing_rate", sa.Float(), nullable=False),
        sa.Column("top_label", sa.String(256), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("n_windows", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("site", sa.String(256), nullable=True),
        sa.Column("device", sa.String(256), nullable=True),
        sa.Column("upload_path", sa.String(1024), nullable=True),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_top_label", "predictions", ["top_label"])


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("predictions")
