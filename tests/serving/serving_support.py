"""Helpers of the serving tests: build a real artifact, write audio, start `vocalis serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SR = 16_000
CLASSES = ["Bottlenose Dolphin", "Humpback Whale", "Killer Whale"]
REPO = Path(__file__).resolve().parents[2]
#: the ``vocalis`` command, run with this interpreter
VOCALIS = [sys.executable, "-c", "import sys; from vocalis.cli import main; sys.argv[0] = 'vocalis'; main()"]


def build_artifact(out: Path, *, seed: int = 0, version: str = "test-1") -> Path:
    """Export a small untrained network with the project's featurizer to ``out`` (model.onnx + model.json).

    Uses the same recipe as the exporter (waveform -> LogMel -> CompactCNN -> softmax in one ONNX graph),
    with a 1 s window at 16 kHz to keep the tests fast.
    """
    import torch
    from torch import nn

    from vocalis.features import FeatureParams, LogMel
    from vocalis.models.compact import CompactCNN

    params = FeatureParams(sample_rate=SR, n_fft=512, hop_length=160, n_mels=32, f_min=50.0, f_max=7000.0)
    torch.manual_seed(seed)
    net = CompactCNN(n_classes=len(CLASSES), n_mels=32, n_frames=params.n_frames(SR), width=4).eval()

    class Full(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.featurizer = LogMel(params)
            self.net = net

        def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.net(self.featurizer(waveform))
            return torch.softmax(logits, dim=-1), logits

    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Full().eval(),
        (torch.randn(2, SR),),
        str(out / "model.onnx"),
        input_names=["waveform"],
        output_names=["probabilities", "logits"],
        dynamic_axes={"waveform": {0: "batch"}, "probabilities": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    card = {
        "name": "serving-test",
        "version": version,
        "classes": CLASSES,
        "sample_rate": SR,
        "window_s": 1.0,
        "hop_s": 1.0,
        "features": params.to_dict(),
        "architecture": "compact",
        "metrics": {"accuracy": 0.5, "macro_f1": 0.4},
        "quantization": None,
        "onnx_opset": 17,
    }
    (out / "model.json").write_text(json.dumps(card, indent=2))
    return out


def tone(seconds: float = 2.5, sr: int = SR, freq: float = 1000.0, channels: int = 1) -> np.ndarray:
    """A noisy tone, ``[frames, channels]`` float32."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    artifact: Path, db_url: str, port: int, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``vocalis serve`` as a subprocess and wait until /ready answers (30 s at most)."""
    import httpx

    env = {
        **os.environ,
        "VOCALIS_DATABASE_URL": db_url,
        "VOCALIS_THREADS": "1",
        **(extra_env or {}),
    }
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [*VOCALIS, "serve", "--model", str(artifact), "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not become ready: {log_path.read_text()[-2000:]}")
