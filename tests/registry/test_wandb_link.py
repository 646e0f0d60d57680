"""``link-wandb`` offline: nothing is attempted and the message says what is needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vocalis.errors import ConfigError


def test_offline_link_says_what_it_needs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vocalis.registry.wandb_link import link_wandb, wandb_requirements

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B key
    missing = wandb_requirements()
    assert len(missing) == 2 and "WANDB_MODE" in missing[0] and "WANDB_API_KEY" in missing[1]
    with pytest.raises(ConfigError, match=r"link-wandb needs W&B online .* and an API key"):
        link_wandb("team/vocalis/demo:v0", "animal-sounds")


def test_the_cli_group_lists_its_commands() -> None:
    from vocalis.cli import app

    out = CliRunner().invoke(app, ["registry", "--help"])
    assert out.exit_code == 0
    for command in ("register", "list", "show", "promote", "link-wandb"):
        assert command in out.stdout
