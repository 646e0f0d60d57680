"""Prediction log migrations: an old database opens, migrates, keeps its rows and takes new ones."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from support.legacy_log import check_migrated, make_old_database, old_row, old_schema
from vocalis.serving.store import Base, PredictionStore, current_revision


def test_a_database_made_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_old_database(url)
    engine = sa.create_engine(url)
    assert "alembic_version" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    check_migrated(url, n_old=3)
    # opening it again is a no-op: same revision, same rows
    store = PredictionStore(url)
    assert store.count() == 4 and current_revision(store.engine) == "0003"
    store.close()


def test_a_database_at_the_baseline_revision_is_upgraded(tmp_path: Path) -> None:
    """A database already under Alembic at 0001 gets 0002's column, rows kept."""
    from alembic import command

    from vocalis.serving.store import _alembic_config

    url = f"sqlite:///{tmp_path / 'v1.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
    with engine.begin() as conn:
        conn.execute(old_schema().tables["predictions"].insert(), [old_row(i) for i in range(2)])
    assert current_revision(engine) == "0001"
    engine.dispose()
    check_migrated(url, n_old=2)


def test_a_new_database_matches_the_models(tmp_path: Path) -> None:
    """The migrations build exactly the schema the ORM models describe (autogenerate finds no difference)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = PredictionStore(f"sqlite:///{tmp_path / 'new.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.close()
    assert diff == []


def test_migrations_ship_inside_the_package() -> None:
    """The store finds its revisions next to its own module (an installed package), not in the repository."""
    import vocalis.serving.store as store_module
    from vocalis.serving.store import MIGRATIONS_DIR

    assert MIGRATIONS_DIR.parent == Path(store_module.__file__).resolve().parent
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert {p.name for p in (MIGRATIONS_DIR / "versions").glob("r*.py")} >= {
        "r0001_baseline.py",
        "r0002_model_name.py",
        "r0003_embedding.py",
    }
