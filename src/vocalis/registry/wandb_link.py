"""Link a model to a W&B registry collection (the reference system's registry), when W&B is reachable.

``link_wandb(source, collection)``: ``source`` is a W&B artifact path (``entity/project/name:version``,
as a training run with ``logger=wandb`` logs it) or a local artifact directory, which is then logged as a
``model`` artifact in a short run of ``project`` first. The link target is
``wandb-registry-<registry>/<collection>``. Offline, nothing is attempted and :class:`ConfigError` says
what is needed.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from vocalis.errors import ConfigError

log = logging.getLogger(__name__)


def wandb_requirements() -> list[str]:
    """What is missing for an online W&B link (empty when nothing is)."""
    missing = []
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        missing.append(f"W&B online (WANDB_MODE is '{mode}'; unset it or set WANDB_MODE=online)")
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
            has_key = netrc.netrc().authenticators(host) is not None
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            has_key = False
    if not has_key:
        missing.append("an API key (WANDB_API_KEY, or run `wandb login` once)")
    return missing


def link_wandb(
    source: str,
    collection: str,
    *,
    registry: str = "model",
    project: str = "vocalis",
    entity: str | None = None,
    aliases: list[str] | None = None,
) -> str:
    """Link ``source`` into ``wandb-registry-<registry>/<collection>``; return the linked artifact's path."""
    missing = wandb_requirements()
    if missing:
        raise ConfigError(
            "link-wandb needs " + " and ".join(missing) + "; the artifact to link comes from a training run "
            "with logger=wandb (entity/project/name:version) or is a local artifact directory"
        )
    import wandb

    target = f"wandb-registry-{registry}/{collection}"
    try:
        if Path(source).is_dir():
            with wandb.init(project=project, entity=entity, job_type="register") as run:
                art = wandb.Artifact(Path(source).name, type="model")
                art.add_dir(str(source))
                logged = run.log_artifact(art)
                logged.wait()
                linked = run.link_artifact(logged, target, aliases=aliases)
        else:
            linked = wandb.Api().artifact(source).link(target, aliases=aliases)
    except Exception as exc:  # network, permissions, unknown artifact: one line for the user
        raise ConfigError(f"link-wandb: linking {source} to {target} failed: {exc}") from None
    path = f"{target}:{getattr(linked, 'version', '') or 'latest'}"
    log.info("linked %s to %s", source, path)
    return path
