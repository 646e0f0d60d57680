"""torchvision ResNets adapted to one-channel spectrograms, as the reference system did for WMMS."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from vocalis.errors import ConfigError

log = logging.getLogger(__name__)


def _adapt(net: tvm.ResNet, n_classes: int, pretrained_path: str | Path | None, arch: str) -> nn.Module:
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_file():
            raise ConfigError(
                f"model.pretrained_path: ImageNet weights for {arch} not found at '{path}'. Download "
                f"them where the network allows (torchvision's {arch} IMAGENET1K_V1 .pth) and point "
                "model.pretrained_path at the file, or set model.pretrained_path=null to train from scratch."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        log.info("initialised %s from ImageNet weights %s", arch, path)
    old = net.conv1
    conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():
        # one input channel: the sum of the RGB filters keeps pretrained features meaningful
        conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True))
    net.conv1 = conv1
    net.fc = nn.Linear(net.fc.in_features, n_classes)
    return net


def resnet18(
    n_classes: int, n_mels: int = 64, n_frames: int = 1168, pretrained_path: str | None = None
) -> nn.Module:
    """ResNet18 with a one-channel first convolution."""
    return _adapt(tvm.resnet18(weights=None), n_classes, pretrained_path, "resnet18")


def resnet34(
    n_classes: int, n_mels: int = 64, n_frames: int = 1168, pretrained_path: str | None = None
) -> nn.Module:
    """ResNet34 with a one-channel first convolution (the reference system's WMMS model)."""
    return _adapt(tvm.resnet34(weights=None), n_classes, pretrained_path, "resnet34")


def resnet_embed(net: tvm.ResNet, x: torch.Tensor) -> torch.Tensor:
    """The penultimate layer of a torchvision ResNet: its pooled features ``[B, fc.in_features]``.

    torchvision's ``forward`` up to (not including) ``fc``; a function rather than a subclass, so the
    network and its state_dict keys stay torchvision's and every checkpoint loads as before.
    """
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    h = net.layer4(net.layer3(net.layer2(net.layer1(h))))
    return torch.flatten(net.avgpool(h), 1)
