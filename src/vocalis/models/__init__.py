"""Networks that map a log-mel batch ``[B, 1, n_mels, frames]`` to class logits ``[B, n_classes]``.

Chosen by name (the Hydra group ``model=``); every constructor takes the class count and the input shape
from the data, so one config trains on any dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from vocalis.errors import ConfigError
from vocalis.models.compact import CompactCNN
from vocalis.models.resnet import resnet18, resnet34

MODELS: dict[str, Callable[..., nn.Module]] = {
    "compact": CompactCNN,
    "resnet18": resnet18,
    "resnet34": resnet34,
}


def build_model(name: str, n_classes: int, n_mels: int, n_frames: int, **kwargs: Any) -> nn.Module:
    """Build the network called ``name`` for ``n_classes`` classes and ``[1, n_mels, n_frames]`` inputs."""
    try:
        ctor = MODELS[name]
    except KeyError:
        raise ConfigError(f"model: unknown model '{name}', choose one of {sorted(MODELS)}") from None
    return ctor(n_classes=n_classes, n_mels=n_mels, n_frames=n_frames, **kwargs)


__all__ = ["MODELS", "CompactCNN", "build_model", "resnet18", "resnet34"]
