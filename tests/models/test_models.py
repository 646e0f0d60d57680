"""The networks: shapes from the data, one-channel ResNets, a fast_dev_run of each through the trainer."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from vocalis.errors import ConfigError
from vocalis.models import MODELS, build_model, model_name


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("n_mels", "n_frames"), [(64, 101), (32, 37)])
def test_every_model_maps_any_input_shape_to_class_logits(name: str, n_mels: int, n_frames: int) -> None:
    net = build_model(name, 5, n_mels, n_frames).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, n_mels, n_frames))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


def test_resnets_take_one_channel() -> None:
    for name in ("resnet18", "resnet34"):
        net = build_model(name, 3, 64, 101)
        assert net.conv1.in_channels == 1  # type: ignore[union-attr]


def test_missing_imagenet_weights_say_where_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretrained_path.*not found.*pretrained_path=null"):
        build_model("resnet18", 3, 64, 101, pretrained_path=str(tmp_path / "nope.pth"))


def test_imagenet_weights_file_initialises_the_network(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = build_model("resnet18", 3, 64, 101, pretrained_path=str(tmp_path / "r18.pth"))
    # the one-channel conv is the sum of the RGB filters; deeper layers are copied as they are
    assert torch.allclose(net.conv1.weight, ref.conv1.weight.sum(dim=1, keepdim=True))  # type: ignore[union-attr]
    assert torch.equal(net.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)  # type: ignore[union-attr,index]


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("vgg", 3, 64, 101)
    with pytest.raises(ConfigError, match="cannot import"):
        build_model("vocalis.models.no_such_net", 3, 64, 101)


def test_a_constructor_from_elsewhere_is_recorded_by_import_path_and_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what a checkpoint records for model._target_: a short name for ours, the import path otherwise
    assert model_name("vocalis.models.CompactCNN") == "compact"
    assert model_name("vocalis.models.resnet.resnet34") == "resnet34"
    path = "vocalis.models.compact.CompactCNN"
    assert model_name(path) == "compact"
    # a constructor from outside vocalis.models keeps its import path and is imported again
    module = types.ModuleType("outside_nets")
    module.TinyNet = TinyNet  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "outside_nets", module)
    outside = "outside_nets.TinyNet"
    assert model_name(outside) == outside
    net = build_model(outside, 3, 16, 20, hidden=5)
    assert isinstance(net, TinyNet) and net(torch.zeros(2, 1, 16, 20)).shape == (2, 3)


class TinyNet(torch.nn.Module):
    """A network defined outside vocalis.models, built by import path."""

    def __init__(self, n_classes: int, n_mels: int, n_frames: int, hidden: int = 4) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(n_mels * n_frames, hidden), torch.nn.Linear(hidden, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.body(x)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compact", "resnet18", "resnet34"])
def test_fast_dev_run_of_each_model_writes_a_loadable_checkpoint(
    name: str, tiny_root: Path, tiny_overrides: list[str]
) -> None:
    from vocalis.models.checkpoint import load_network
    from vocalis.training.config import compose_config
    from vocalis.training.train import train

    run_dir = tiny_root / "runs" / f"fdr-{name}"
    cfg = compose_config(
        [*tiny_overrides, f"model={name}", "trainer.fast_dev_run=true", f"run_dir={run_dir}"]
    )
    result = train(cfg)
    assert result is not None
    loaded = load_network(result.best_checkpoint)
    assert loaded.model_name == name
    assert loaded.classes == ["downsweep_whistle", "tonal_moan", "upsweep_whistle"]
    assert (run_dir / "metrics.json").is_file()
