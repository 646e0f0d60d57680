"""Rebuilding a trained network from a checkpoint, without the Lightning module or its config.

A checkpoint's ``hyper_parameters`` carry every fact needed to rebuild and use the network (the contract is
:mod:`vocalis.contracts.checkpoint`). Evaluation, export and pruning read checkpoints only through
:func:`load_network`; it lives with the models, below training and evaluation, so that neither imports the
other to get at a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vocalis.contracts.checkpoint import read_checkpoint
from vocalis.contracts.features import FeatureParams
from vocalis.models import build_model


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

    @property
    def window_samples(self) -> int:
        """Samples per window at the featurizer's rate."""
        return round(self.window_s * self.features.sample_rate)


def load_network(ckpt_path: str | Path) -> LoadedNetwork:
    """Rebuild the network stored in a Lightning checkpoint (the module's ``net.`` parameters)."""
    ckpt = read_checkpoint(ckpt_path)
    hp = ckpt.hparams
    classes = list(hp["classes"])
    model_kwargs = dict(hp.get("model_kwargs") or {})
    # never try to load ImageNet weights again when rebuilding a trained network
    model_kwargs.pop("pretrained_path", None)
    net = build_model(hp["model_name"], len(classes), int(hp["n_mels"]), int(hp["n_frames"]), **model_kwargs)
    net.load_state_dict(ckpt.net_state)
    net.eval()
    return LoadedNetwork(
        net=net,
        classes=classes,
        features=ckpt.features,
        window_s=float(hp["window_s"]),
        hop_s=float(hp["hop_s"]),
        model_name=str(hp["model_name"]),
        model_kwargs=model_kwargs,
        cache_hash=hp.get("cache_hash"),
        cache_dir=hp.get("cache_dir"),
        hparams=hp,
    )
