"""Build a small, real training run for export and prediction tests.

Tone-like calls per class (distinct frequency bands, random pitch, gain and noise) are written as WAV files,
listed in a feature-cache directory laid out as docs/contracts.md says (manifest.csv, classes.json,
params.json, cache.json, features.npy), and the project's compact network is trained on their log-mels for
a few epochs with plain torch, then saved as a Lightning-style checkpoint (``net.`` parameters and the
hyper-parameters :func:`vocalis.models.checkpoint.load_network` needs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ["alpha", "beta", "gamma"]
BANDS = {"alpha": (300.0, 700.0), "beta": (1500.0, 2500.0), "gamma": (4000.0, 6000.0)}
#: a small featurizer keeps the tests fast (and proves the card, not a default, carries the parameters)
SR = 16_000
WINDOW_S = 1.0
HOP_S = 0.5


def call(label: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic vocalization of ``label``: a few chirped tones in the class band over noise."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    lo, hi = BANDS[label]
    x = rng.standard_normal(n) * 0.02
    for _ in range(3):
        f0 = rng.uniform(lo, hi)
        f1 = np.clip(f0 * rng.uniform(0.85, 1.15), lo, hi)
        centre, width = rng.uniform(0, seconds), rng.uniform(0.3, 0.8)
        env = np.exp(-0.5 * ((t - centre) / (width / 2)) ** 2)
        x += env * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))) * rng.uniform(0.2, 0.6)
    return (x * rng.uniform(0.3, 1.0)).astype(np.float32)


def make_run(root: Path, *, clips_per_class: int = 8, epochs: int = 8, seed: int = 0) -> Path:
    """Write audio, a cache and a trained run under ``root``; return the run directory."""
    import torch

    from vocalis.contracts.checkpoint import network_hparams, save_checkpoint
    from vocalis.contracts.windows import WindowSpec
    from vocalis.features import FeatureParams, LogMel
    from vocalis.models import build_model

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    audio_dir, cache_dir, run_dir = (
        root / "audio",
        root / "cache" / "tiny-0123456789ab",
        root / "runs" / "tiny",
    )
    for d in (audio_dir, cache_dir, run_dir / "checkpoints"):
        d.mkdir(parents=True, exist_ok=True)
    params = FeatureParams(sample_rate=SR, n_fft=512, hop_length=160, n_mels=32, f_min=50.0, f_max=7500.0)
    spec = WindowSpec(WINDOW_S, HOP_S, SR)
    featurizer = LogMel(params)
    rows, windows = [], []
    for ci, label in enumerate(CLASSES):
        for k in range(clips_per_class):
            split = "train" if k < clips_per_class - 3 else ("val" if k == clips_per_class - 3 else "test")
            wave = call(label, float(rng.uniform(1.6, 2.6)), SR, rng)
            path = audio_dir / f"{label}_{k}.wav"
            sf.write(path, wave, SR, subtype="FLOAT")
            cut = spec.cut(wave)
            for (start_s, end_s), win in zip(spec.bounds_seconds(len(wave)), cut, strict=True):
                rows.append(
                    {
                        "index": len(rows),
                        "clip_id": f"{label}_{k}",
                        "path": str(path),
                        "label": label,
                        "label_index": ci,
                        "split": split,
                        "group": f"{label}_{k}",
                        "start_s": start_s,
                        "end_s": end_s,
                        "duration_s": len(wave) / SR,
                        "orig_sample_rate": SR,
                    }
                )
                windows.append(win)
    with torch.no_grad():
        feats = featurizer(torch.from_numpy(np.stack(windows)))[:, 0]
    np.save(cache_dir / "features.npy", feats.numpy().astype(np.float16))
    import pandas as pd

    manifest = pd.DataFrame(rows)
    manifest.to_csv(cache_dir / "manifest.csv", index=False)
    (cache_dir / "classes.json").write_text(json.dumps(CLASSES))
    (cache_dir / "params.json").write_text(
        json.dumps({"features": params.to_dict(), "window_s": WINDOW_S, "hop_s": HOP_S, "source": {}})
    )
    (cache_dir / "cache.json").write_text(json.dumps({"hash": "0123456789ab", "n_windows": len(rows)}))

    n_frames = params.n_frames(spec.window_samples)
    net = build_model("compact", len(CLASSES), params.n_mels, n_frames, width=8, dropout=0.0)
    labels = torch.tensor(manifest["label_index"].to_numpy())
    train = torch.tensor((manifest["split"] == "train").to_numpy())
    x, y = feats[train].unsqueeze(1), labels[train]
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 16):
            idx = perm[i : i + 16]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
    net.eval()
    test = torch.tensor((manifest["split"] == "test").to_numpy())
    with torch.no_grad():
        acc = float((net(feats[test].unsqueeze(1)).argmax(1) == labels[test]).float().mean())
    hparams = network_hparams(
        model_name="compact",
        model_kwargs={"width": 8, "dropout": 0.0},
        classes=CLASSES,
        features=params,
        window_s=WINDOW_S,
        hop_s=HOP_S,
        cache_hash="0123456789ab",
        cache_dir=str(cache_dir),
    )
    for name in ("best.ckpt", "last.ckpt"):
        save_checkpoint(run_dir / "checkpoints" / name, net.state_dict(), hparams)
    # the trainer's metrics.json format (evaluate_checkpoint's flat object)
    (run_dir / "metrics.json").write_text(json.dumps({"split": "test", "accuracy": acc, "macro_f1": acc}))
    (run_dir / "run.json").write_text(
        json.dumps({"git_commit": "deadbeef", "cache_hash": "0123456789ab", "cache_dir": str(cache_dir)})
    )
    return run_dir


def shared_run(base: Path) -> Path:
    """The run under ``base/tiny-run``, built once per pytest session and shared by both test folders."""
    run_dir = base / "tiny-run" / "runs" / "tiny"
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        make_run(base / "tiny-run")
    return run_dir


def shared_artifact(base: Path, quantize: str | None = None) -> Path:
    """An exported artifact of :func:`shared_run` (fp32 or int8), built once per pytest session."""
    from vocalis.export.onnx import export_artifact

    out = base / f"tiny-artifact-{quantize or 'fp32'}"
    if not (out / "model.json").is_file():
        export_artifact(shared_run(base), out, quantize=quantize)
    return out
