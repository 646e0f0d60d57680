"""Lightning-style checkpoints: the hyper-parameters a checkpoint must carry, one writer and one reader.

A checkpoint is the dict Lightning saves: ``state_dict`` (the module's parameters; the network's under
``net.``) and ``hyper_parameters``, which carry every fact needed to rebuild and use the network (see
:data:`REQUIRED_HPARAMS`). The trainer's checkpoints come from Lightning itself; :func:`save_checkpoint`
writes the same layout for code that trains without Lightning (tests, benchmarks), and
:func:`read_checkpoint` is how every reader opens one. torch is imported inside the functions only, so
importing this module stays torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vocalis.contracts.features import FeatureParams
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import ArtifactError

#: keys every checkpoint's ``hyper_parameters`` must hold
REQUIRED_HPARAMS = ("model_name", "classes", "features", "window_s", "hop_s", "n_mels", "n_frames")
#: the prefix of the network's parameters in ``state_dict`` (the Lightning module's ``net`` attribute)
NET_PREFIX = "net."


def network_hparams(
    *,
    model_name: str,
    classes: list[str],
    features: FeatureParams,
    window_s: float,
    hop_s: float,
    model_kwargs: Mapping[str, Any] | None = None,
    cache_hash: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The ``hyper_parameters`` of a checkpoint (``n_mels`` and ``n_frames`` follow from the featurizer
    and the window)."""
    window = WindowSpec(window_s, hop_s, features.sample_rate)
    return {
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs or {}),
        "classes": list(classes),
        "features": features.to_dict(),
        "window_s": float(window_s),
        "hop_s": float(hop_s),
        "n_mels": features.n_mels,
        "n_frames": features.n_frames(window.window_samples),
        "cache_hash": cache_hash,
        "cache_dir": cache_dir,
    }


@dataclass
class Checkpoint:
    """A checkpoint read back: the network's parameters (``net.`` prefix removed) and the hyper-parameters."""

    path: Path
    net_state: dict[str, Any]
    hparams: dict[str, Any]

    @property
    def features(self) -> FeatureParams:
        """The featurizer parameters the network was trained with."""
        return FeatureParams.from_dict(self.hparams["features"])


def save_checkpoint(path: str | Path, net_state: Mapping[str, Any], hparams: Mapping[str, Any]) -> Path:
    """Write a Lightning-style checkpoint of a network's ``state_dict`` (keys without the ``net.`` prefix)
    and its :func:`network_hparams`."""
    import torch

    missing = [k for k in REQUIRED_HPARAMS if k not in hparams]
    if missing:
        raise ValueError(f"hyper-parameters lack {missing}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{NET_PREFIX}{k}": v for k, v in net_state.items()}
    torch.save({"state_dict": state, "hyper_parameters": dict(hparams)}, out)
    return out


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint; :class:`ArtifactError` when it is missing, unreadable or lacks a required fact."""
    import torch

    src = Path(path)
    if not src.is_file():
        raise ArtifactError(f"{src}: checkpoint not found")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ArtifactError(f"{src}: not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict):
        raise ArtifactError(f"{src}: not a Lightning-style checkpoint (a {type(ckpt).__name__})")
    hp = dict(ckpt.get("hyper_parameters") or {})
    missing = [k for k in REQUIRED_HPARAMS if k not in hp]
    if missing:
        raise ArtifactError(f"{src}: checkpoint lacks hyper-parameters {missing}")
    state = {
        k[len(NET_PREFIX) :]: v for k, v in (ckpt.get("state_dict") or {}).items() if k.startswith(NET_PREFIX)
    }
    if not state:
        raise ArtifactError(f"{src}: checkpoint has no '{NET_PREFIX}' parameters")
    return Checkpoint(src, state, hp)
