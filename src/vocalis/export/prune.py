"""Magnitude pruning of a trained network before export, with optional fine-tuning on cached features.

Unstructured: the smallest ``amount`` of all convolution and linear weights, globally by |w| (L1).
Structured: in every convolution, the ``amount`` of output channels with the smallest L2 norm.
Either way the pruned weights are zeros in a dense graph: the ONNX file keeps its size and onnxruntime
its speed (no sparse kernels on CPU) unless channels are physically removed, which this module does not do;
the benchmark records that honestly. Fine-tuning runs a short loop over the run's cached log-mel features
(``features.npy``, the train split), with the pruning masks applied so pruned weights stay zero.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from vocalis.contracts.cache import FeatureCache
from vocalis.errors import CacheError
from vocalis.models.checkpoint import LoadedNetwork

log = logging.getLogger(__name__)


def _targets(net: nn.Module, structured: bool) -> list[tuple[nn.Module, str]]:
    kinds: tuple[type[nn.Module], ...] = (nn.Conv2d,) if structured else (nn.Conv2d, nn.Linear)
    return [(m, "weight") for m in net.modules() if isinstance(m, kinds)]


def sparsity(net: nn.Module) -> float:
    """Fraction of zero weights over all convolution and linear layers."""
    zeros = total = 0
    for module, _ in _targets(net, structured=False):
        w = module.weight
        assert isinstance(w, torch.Tensor)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total if total else 0.0


def _cached_split(
    cache_dir: Path | None, split: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached log-mels ``[n, n_mels, frames]`` and class indices of one split, or None without a cache."""
    if cache_dir is None:
        return None
    try:
        cache = FeatureCache.open(cache_dir)
        manifest = cache.manifest
    except (CacheError, OSError, ValueError) as exc:
        log.info("no usable feature cache: %s", exc)
        return None
    index = {c: i for i, c in enumerate(classes)}
    rows = manifest[(manifest["split"] == split) & manifest["label"].isin(index)]
    if rows.empty:
        return None
    positions = rows["index"].to_numpy()
    x = np.asarray(cache.features[np.sort(positions)], dtype=np.float32)
    order = np.argsort(positions)
    y = np.array([index[str(label)] for label in rows["label"].to_numpy()[order]])
    return x, y


@torch.no_grad()
def _accuracy(net: nn.Module, data: tuple[np.ndarray, np.ndarray] | None) -> float | None:
    if data is None:
        return None
    net.eval()
    x, y = data
    correct = 0
    for i in range(0, len(x), 64):
        logits = net(torch.from_numpy(x[i : i + 64]).unsqueeze(1))
        correct += int((logits.argmax(1).numpy() == y[i : i + 64]).sum())
    return correct / len(x)


def _finetune(net: nn.Module, data: tuple[np.ndarray, np.ndarray], epochs: int, lr: float = 1e-4) -> None:
    x, y = torch.from_numpy(data[0]).unsqueeze(1), torch.from_numpy(data[1])
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        net.train()
        for m in net.modules():  # keep the trained normalisation statistics: a few batches would skew them
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        log.info("fine-tune epoch %d: loss %.4f", epoch + 1, total / len(x))
    net.eval()


def prune_network(
    loaded: LoadedNetwork,
    amount: float,
    *,
    structured: bool = False,
    finetune_epochs: int = 0,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Prune ``loaded.net`` in place (and fine-tune it when asked and features are cached); return a report
    with the sparsity reached and the cached test-feature accuracy before, after pruning and after tuning."""
    net = loaded.net
    test = _cached_split(cache_dir, "test", loaded.classes)
    report: dict[str, Any] = {
        "amount": amount,
        "structured": structured,
        "accuracy_before": _accuracy(net, test),
    }
    targets = _targets(net, structured)
    if structured:
        for module, name in targets:
            prune.ln_structured(module, name, amount=amount, n=2, dim=0)
    else:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    report["accuracy_pruned"] = _accuracy(net, test)
    report["finetune_epochs"] = 0
    if finetune_epochs > 0:
        train = _cached_split(cache_dir, "train", loaded.classes)
        if train is None:
            log.warning("no cached training features: pruning without fine-tuning")
        else:
            _finetune(net, train, finetune_epochs)
            report.update(finetune_epochs=finetune_epochs, finetune_windows=len(train[0]))
            report["accuracy_finetuned"] = _accuracy(net, test)
    for module, name in targets:  # make the masks permanent: plain weights with zeros, as export needs
        prune.remove(module, name)
    net.eval()
    report["sparsity"] = sparsity(net)
    report["test_windows"] = 0 if test is None else len(test[0])
    log.info("pruned: %s", report)
    return report
