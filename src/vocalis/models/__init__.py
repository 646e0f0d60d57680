"""Networks that map a log-mel batch ``[B, 1, n_mels, frames]`` to class logits ``[B, n_classes]``.

Hydra builds them from the ``model=`` group by ``_target_`` (a constructor here, or any importable one);
every constructor takes the class count and the input shape from the data, so one config trains on any
dataset. A checkpoint records the network as a name and keyword arguments; :func:`build_model` rebuilds
it from those without the config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet

from vocalis.errors import ConfigError
from vocalis.models.compact import CompactCNN
from vocalis.models.resnet import resnet18, resnet34, resnet_embed

#: the short names checkpoints (and artifact cards) record for the constructors shipped here
MODELS: dict[str, Callable[..., nn.Module]] = {
    "compact": CompactCNN,
    "resnet18": resnet18,
    "resnet34": resnet34,
}


def _import(path: str) -> Callable[..., nn.Module]:
    from hydra.utils import get_object

    try:
        obj = get_object(path)
    except Exception as exc:  # hydra wraps import and attribute errors differently across versions
        raise ConfigError(f"model: cannot import '{path}' ({exc})".splitlines()[0]) from None
    if not callable(obj):
        raise ConfigError(f"model: '{path}' is not a constructor")
    return obj  # type: ignore[no-any-return]


def model_name(target: str) -> str:
    """The name a checkpoint records for the constructor at import path ``target``.

    One of :data:`MODELS` (``vocalis.models.CompactCNN`` -> ``compact``), or the import path itself for a
    constructor from elsewhere, which :func:`build_model` imports again.
    """
    ctor = _import(target)
    return next((name for name, known in MODELS.items() if known is ctor), target)


def build_model(name: str, n_classes: int, n_mels: int, n_frames: int, **kwargs: Any) -> nn.Module:
    """Build the network ``name`` (a :data:`MODELS` name or an import path) for ``n_classes`` classes and
    ``[1, n_mels, n_frames]`` inputs."""
    ctor = MODELS.get(name)
    if ctor is None:
        if "." not in name:
            raise ConfigError(f"model: unknown model '{name}', choose one of {sorted(MODELS)}")
        ctor = _import(name)
    return ctor(n_classes=n_classes, n_mels=n_mels, n_frames=n_frames, **kwargs)


def supports_embedding(net: nn.Module) -> bool:
    """Whether :func:`embed_and_logits` knows the network's penultimate layer (ours do; others may not)."""
    return isinstance(net, CompactCNN | ResNet)


def embed_and_logits(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The penultimate layer ``[B, D]`` and the logits of a log-mel batch, in one forward pass.

    The logits are the network's own head applied to that embedding, so they equal ``net(x)``.
    """
    if isinstance(net, CompactCNN):
        emb = net.embed(x)
        return emb, net.head(emb)
    if isinstance(net, ResNet):
        emb = resnet_embed(net, x)
        return emb, net.fc(emb)
    raise ConfigError(f"model: {type(net).__name__} exposes no penultimate layer (no embedding)")


__all__ = [
    "MODELS",
    "CompactCNN",
    "build_model",
    "embed_and_logits",
    "model_name",
    "resnet18",
    "resnet34",
    "supports_embedding",
]
