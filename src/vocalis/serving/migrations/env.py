"""Alembic environment of the prediction log, shipped inside the package.

Run by :meth:`vocalis.serving.store.PredictionStore` (``upgrade head`` at start, on the store's own
connection, passed in ``config.attributes["connection"]``) and by a developer's ``alembic`` command with the
``alembic.ini`` next to this file (the URL from ``-x url=...`` or ``VOCALIS_DATABASE_URL``).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from vocalis.serving.store import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("VOCALIS_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
        or "sqlite:///predictions.db"
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the store's connection, or over one opened here from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
