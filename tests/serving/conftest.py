"""Fixtures of the serving tests: a real model artifact (built once per session), audio files, settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from support.serving import SR, build_artifact, card_version, tone
from support.shared import build_once


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artifact, built once per session (shared by the xdist workers; tests copy it to change it)."""
    return build_once(tmp_path_factory, "serving-artifact", lambda d: build_artifact(d / "model", seed=0))


@pytest.fixture(scope="session")
def artifact_dir_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second artifact (other weights, other version) for reload tests."""
    return build_once(tmp_path_factory, "serving-artifact-v2", lambda d: build_artifact(d / "model", seed=1))


@pytest.fixture(scope="session")
def v1(artifact_dir: Path) -> str:
    """The version of ``artifact_dir``'s model card."""
    return card_version(artifact_dir)


@pytest.fixture(scope="session")
def v2(artifact_dir_v2: Path) -> str:
    """The version of ``artifact_dir_v2``'s model card."""
    return card_version(artifact_dir_v2)


@pytest.fixture(scope="session")
def wav_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 2.5 s 16-bit WAV at 16 kHz."""
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(path, tone(), SR, subtype="PCM_16")
    return path.read_bytes()


@pytest.fixture
def app_settings(artifact_dir: Path, tmp_path: Path) -> Iterator[object]:
    """Settings of an in-process app: the session artifact, a fresh SQLite log."""
    from vocalis.serving.settings import Settings

    yield Settings(
        model_dir=artifact_dir,
        database_url=f"sqlite:///{tmp_path / 'log.db'}",
        threads=1,
        admin_token="s3cret",
    )
