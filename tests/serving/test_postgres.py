"""The prediction log on a real PostgreSQL server that the test starts itself (initdb + pg_ctl in tmp)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from support.legacy_log import check_migrated, make_old_database
from support.serving import CLASSES, free_port
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings
from vocalis.serving.store import PredictionStore, export_log

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """Start a throw-away PostgreSQL server on a free port; yields its SQLAlchemy URL."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (the 'postgres' extra)")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    # the server refuses to run as root: run it as the 'postgres' (or 'nobody') user when we are root
    prefix: list[str] = []
    user = None
    if os.geteuid() == 0:
        for candidate in ("postgres", "nobody"):
            try:
                user = pwd.getpwnam(candidate)
                break
            except KeyError:
                continue
        if user is None or shutil.which("runuser") is None:
            pytest.skip("running as root and no unprivileged user to run PostgreSQL as")
        prefix = ["runuser", "-u", user.pw_name, "--"]
    # not pytest's tmp_path: it is private to root, and the server user must be able to write here
    root = Path(tempfile.mkdtemp(prefix="vocalis-pg-"))
    data = root / "data"
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    port = free_port()
    run = lambda *args: subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)  # noqa: E731
    out = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "vocalis", "--no-sync")
    if out.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {out.stderr.strip()[-300:]}")
    out = run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "server.log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    if out.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {out.stderr.strip()[-300:]} {log[-300:]}")
    try:
        yield f"postgresql+psycopg://vocalis@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_predictions_are_logged_in_postgres(
    postgres_url: str, artifact_dir: Path, wav_bytes: bytes, tmp_path: Path
) -> None:
    settings = Settings(model_dir=artifact_dir, database_url=postgres_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").status_code == 200
        ids = [
            client.post("/v1/predict", files={"file": ("a.wav", wav_bytes)}, data={"site": "pg-site"}).json()[
                "request_id"
            ]
            for _ in range(3)
        ]
        r = client.post(
            "/v1/predict/batch", files=[("files", ("b.wav", wav_bytes)), ("files", ("c.wav", wav_bytes))]
        )
        assert r.status_code == 200
        ids.append(r.json()["request_id"])
    store = PredictionStore(postgres_url)
    rows = store.rows()
    assert [r["request_id"] for r in rows] == [*ids[:3], ids[3], ids[3]]
    assert rows[0]["site"] == "pg-site" and set(rows[0]["probabilities"]) == set(CLASSES)
    assert rows[0]["created_at"].tzinfo is not None  # timestamptz round-trips with its zone
    assert export_log(store, tmp_path / "log.parquet") == 5
    store.close()


def test_an_old_postgres_log_is_migrated(postgres_url: str) -> None:
    """A PostgreSQL log made by the pre-migration schema, with rows, is stamped and upgraded in place."""
    import sqlalchemy as sa

    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE legacy_log")
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/legacy_log"
    make_old_database(url, n_rows=3)
    check_migrated(url, n_old=3)
