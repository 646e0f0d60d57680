"""A prediction log as the service wrote it before migrations existed, and the check that it migrated."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from vocalis.serving.store import NewPrediction, PredictionStore, current_revision, head_revision


def old_schema() -> sa.MetaData:
    """The prediction log exactly as the service created it before migrations (``create_all``, no Alembic)."""
    md = sa.MetaData()
    sa.Table(
        "predictions",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("request_id", sa.String(128), nullable=False, index=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(512)),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("sample_rate", sa.Integer, nullable=False),
        sa.Column("channels", sa.Integer, nullable=False),
        sa.Column("rms_dbfs", sa.Float, nullable=False),
        sa.Column("spectral_centroid_hz", sa.Float, nullable=False),
        sa.Column("spectral_bandwidth_hz", sa.Float, nullable=False),
        sa.Column("peak_frequency_hz", sa.Float, nullable=False),
        sa.Column("zero_crossing_rate", sa.Float, nullable=False),
        sa.Column("top_label", sa.String(256), nullable=False, index=True),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("n_windows", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("site", sa.String(256)),
        sa.Column("device", sa.String(256)),
        sa.Column("upload_path", sa.String(1024)),
    )
    return md


def old_row(i: int) -> dict[str, object]:
    return {
        "created_at": datetime(2026, 11, 1, 12, i, tzinfo=UTC),
        "request_id": f"old-{i}",
        "endpoint": "predict",
        "file_name": f"{i}.wav",
        "model_version": "v-old",
        "duration_s": 2.5,
        "sample_rate": 16_000,
        "channels": 1,
        "rms_dbfs": -13.5,
        "spectral_centroid_hz": 1000.0,
        "spectral_bandwidth_hz": 50.0,
        "peak_frequency_hz": 1000.0,
        "zero_crossing_rate": 0.125,
        "top_label": "Humpback Whale",
        "confidence": 0.5 + i / 100,
        "probabilities": {"Humpback Whale": 0.5, "Killer Whale": 0.5},
        "n_windows": 3,
        "latency_ms": 12.0,
        "site": "reef-1",
        "device": None,
        "upload_path": None,
    }


def make_old_database(url: str, n_rows: int = 3) -> None:
    """Create the pre-migration schema at ``url`` and fill it with ``n_rows`` rows."""
    engine = sa.create_engine(url)
    md = old_schema()
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(md.tables["predictions"].insert(), [old_row(i) for i in range(n_rows)])
    engine.dispose()


def _new(request_id: str) -> NewPrediction:
    return NewPrediction(
        request_id=request_id,
        endpoint="predict",
        file_name="new.wav",
        model_name="reef-model",
        model_version="v-new",
        duration_s=1.0,
        sample_rate=32_000,
        channels=2,
        summary={
            "rms_dbfs": -20.0,
            "spectral_centroid_hz": 900.0,
            "spectral_bandwidth_hz": 80.0,
            "peak_frequency_hz": 880.0,
            "zero_crossing_rate": 0.05,
        },
        top_label="Killer Whale",
        confidence=0.9,
        probabilities={"Humpback Whale": 0.1, "Killer Whale": 0.9},
        n_windows=1,
        latency_ms=3.0,
    )


def check_migrated(url: str, n_old: int) -> None:
    """Open ``url`` with the current store and check the old rows survived and new writes work."""
    store = PredictionStore(url)
    try:
        assert current_revision(store.engine) == head_revision() == "0003"
        rows = store.rows()
        assert [r["request_id"] for r in rows] == [f"old-{i}" for i in range(n_old)]
        assert rows[1]["confidence"] == pytest.approx(0.51) and rows[0]["site"] == "reef-1"
        assert rows[0]["probabilities"] == {"Humpback Whale": 0.5, "Killer Whale": 0.5}
        assert all(r["model_name"] is None for r in rows)  # not recorded before revision 0002
        assert all(r["embedding"] is None for r in rows)  # nor the embedding before revision 0003
        store.add([_new("new-1")])
        new = store.rows()[-1]
        assert (new["request_id"], new["model_name"], new["channels"]) == ("new-1", "reef-model", 2)
        assert store.count() == n_old + 1
    finally:
        store.close()
