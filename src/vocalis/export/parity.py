"""Running an exported graph on windows and comparing its probabilities with a reference (numpy only).

Used by the fp32 parity check of :mod:`vocalis.export.onnx` and by the int8 checks of
:mod:`vocalis.export.quantize`; both import it, neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort


def onnx_probabilities(
    session: ort.InferenceSession, windows: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """Probabilities ``[n, classes]`` from an onnxruntime session on waveform windows, in batches."""
    out = [
        session.run(["probabilities"], {"waveform": windows[i : i + batch_size]})[0]
        for i in range(0, len(windows), batch_size)
    ]
    return np.concatenate(out)


def parity_report(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """How far two probability arrays ``[n, classes]`` are apart (max and mean |Δ|, top-1 agreement)."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    agree = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "top1_agreement": agree}
