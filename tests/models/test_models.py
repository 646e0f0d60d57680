"""The networks: shapes from the data, one-channel ResNets, a fast_dev_run of each through the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vocalis.errors import ConfigError
from vocalis.models import MODELS, build_model


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
