"""Reading a trained network back from a checkpoint, without the Lightning module or its config.

A checkpoint's ``hyper_parameters`` carry every fact needed to rebuild and use the network: the model
name and arguments, the class names, the featurizer parameters, the window and hop, and the feature cache
it was trained on. Export and evaluation read checkpoints only through :func:`load_network`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vocalis.errors import ArtifactError
from vocalis.features import FeatureParams
from vocalis.models import build_model

#: keys every checkpoint's ``hyper_parameters`` must hold
REQUIRED_HPARAMS = ("model_name", "classes", "features", "window_s", "hop_s", "n_mels", "n_frames")


@dataclass
class LoadedNetwork:
    """A trained network in eval mode and the facts needed to use it."""

    net: nn.Module
    classes: list[str]
    features: FeatureParams
    window_s: float
    hop_s: float
    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    cache_hash: str | None = None
    cache_dir: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)


def load_network(ckpt_path: str | Path) -> LoadedNetwork:
    """Rebuild the network stored in a Lightning checkpoint (the module's ``net.`` parameters)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ArtifactError(f"{path}: not a readable checkpoint ({exc})") from None
    hp = dict(ckpt.get("hyper_parameters") or {})
    missing = [k for k in REQUIRED_HPARAMS if k not in hp]
    if missing:
        raise ArtifactError(f"{path}: checkpoint lacks hyper-parameters {missing}")
    classes = list(hp["classes"])
    model_kwargs = dict(hp.get("model_kwargs") or {})
    # never try to load ImageNet weights again when rebuilding a trained network
    model_kwargs.pop("pretrained_path", None)
    net = build_model(hp["model_name"], len(classes), int(hp["n_mels"]), int(hp["n_frames"]), **model_kwargs)
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    if not state:
        raise ArtifactError(f"{path}: checkpoint has no 'net.' parameters")
    net.load_state_dict(state)
    net.eval()
    return LoadedNetwork(
        net=net,
        classes=classes,
        features=FeatureParams.from_dict(hp["features"]),
        window_s=float(hp["window_s"]),
        hop_s=float(hp["hop_s"]),
        model_name=str(hp["model_name"]),
        model_kwargs=model_kwargs,
        cache_hash=hp.get("cache_hash"),
        cache_dir=hp.get("cache_dir"),
        hparams=hp,
    )
