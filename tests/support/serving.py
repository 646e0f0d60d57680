"""Serving test material: a real artifact, audio, a `vocalis serve` subprocess."""

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


def build_artifact(out: Path, *, seed: int = 0) -> Path:
    """Export a small untrained network to ``out`` with the project's exporter (model.onnx + model.json).

    The serving tests need what a trained run cannot give cheaply: two versions with other weights and
    the class names of real species. So the compact CNN (1 s windows at 16 kHz) is written with the one
    checkpoint writer (:func:`vocalis.contracts.checkpoint.save_checkpoint`) and the trainer's
    ``metrics.json`` format, then goes through :func:`vocalis.export.onnx.export_artifact`: the same path,
    checks and card as ``vocalis export``. Tests of trained behaviour use the session's real run instead.
    """
    import torch

    from vocalis.contracts.checkpoint import network_hparams, save_checkpoint
    from vocalis.contracts.features import FeatureParams
    from vocalis.export.onnx import export_artifact
    from vocalis.models.compact import CompactCNN

    params = FeatureParams(sample_rate=SR, n_fft=512, hop_length=160, n_mels=32, f_min=50.0, f_max=7000.0)
    hparams = network_hparams(
        model_name="compact",
        model_kwargs={"width": 4},
        classes=CLASSES,
        features=params,
        window_s=1.0,
        hop_s=1.0,
    )
    torch.manual_seed(seed)
    net = CompactCNN(n_classes=len(CLASSES), n_mels=32, n_frames=hparams["n_frames"], width=4).eval()
    run = out.parent / f"run-{seed}"
    save_checkpoint(run / "checkpoints" / "best.ckpt", net.state_dict(), hparams)
    (run / "metrics.json").write_text(json.dumps({"split": "test", "accuracy": 0.5, "macro_f1": 0.4}))
    export_artifact(run, out, name="serving-test")
    return out


def card_version(artifact: Path) -> str:
    """The version string in an artifact's model card."""
    return str(json.loads((artifact / "model.json").read_text())["version"])


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
    """Start ``vocalis serve`` as a subprocess and wait until /ready answers (90 s at most).

    A start-up on a 2-core machine at load average 14 took 26 s; the tests are not about start-up time.
    """
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
    deadline = time.monotonic() + 90
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
