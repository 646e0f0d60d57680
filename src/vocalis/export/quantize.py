"""int8 quantization of an exported model, accepted only behind a test-accuracy gate.

Static quantization (``onnxruntime.quantization.quantize_static``) calibrated on training windows of the
run's feature cache: activations get fixed int8 ranges, weights per-channel int8. The featurizer's nodes
(everything upstream of the tensor the featurizer hands to the network) and the final softmax stay in
float, so the log-mel is computed exactly as in training. When there is no training audio to calibrate on,
dynamic quantization (weights only, activation ranges computed per batch) is used instead.

The gate: the int8 model's window accuracy on the run's test windows may be at most ``max_accuracy_drop``
below the fp32 model's; otherwise :class:`ArtifactError` (unless forced) and no artifact is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from vocalis.contracts.runtime import onnx_session
from vocalis.errors import ArtifactError, ConfigError
from vocalis.export.check_windows import AudioWindows, cache_windows
from vocalis.export.parity import onnx_probabilities, parity_report
from vocalis.models.checkpoint import LoadedNetwork

log = logging.getLogger(__name__)

#: int8 parity is looser than fp32 parity by nature: max |Δprob| vs the PyTorch model on the parity windows
INT8_PARITY_TOL = 0.1


class WindowsReader(CalibrationDataReader):
    """Feeds calibration windows to onnxruntime's calibrator in small batches."""

    def __init__(self, windows: np.ndarray, batch_size: int = 16) -> None:
        self.windows = np.ascontiguousarray(windows, dtype=np.float32)
        self.batch_size = batch_size
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None at the end."""
        if self._pos >= len(self.windows):
            return None
        batch = self.windows[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return {"waveform": batch}

    def rewind(self) -> None:
        """Start again from the first window."""
        self._pos = 0


def featurizer_nodes(model: onnx.ModelProto, featurizer_tensor: str | None) -> list[str]:
    """Names of the nodes that compute ``featurizer_tensor`` (its ancestors), plus every Softmax."""
    producers = {out: node for node in model.graph.node for out in node.output}
    keep: set[str] = set()
    stack = [featurizer_tensor] if featurizer_tensor else []
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in keep:
            continue
        keep.add(node.name)
        stack.extend(node.input)
    keep.update(n.name for n in model.graph.node if n.op_type == "Softmax")
    return sorted(keep)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name: exclusion lists work by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def window_accuracy(session: ort.InferenceSession, windows: AudioWindows, batch_size: int = 32) -> float:
    """Top-1 accuracy of an onnxruntime session on labelled windows."""
    probs = onnx_probabilities(session, windows.waveforms, batch_size)
    return float(np.mean(probs.argmax(axis=1) == windows.labels))


def quantize_model(
    fp32_path: Path,
    out_path: Path,
    *,
    featurizer_tensor: str | None,
    calibration: AudioWindows | None,
    quant_format: str = "qdq",
) -> dict[str, Any]:
    """Quantize ``fp32_path`` to ``out_path``: static with ``calibration`` windows, else dynamic."""
    fmt = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}.get(quant_format.lower())
    if fmt is None:
        raise ConfigError(f"quant-format: choose 'qdq' or 'qoperator', got '{quant_format}'")
    work = out_path.parent / f"{out_path.stem}.pre.onnx"
    # shape inference for the quantizer; no ORT graph optimisation so node and tensor names stay put
    quant_pre_process(
        str(fp32_path), str(work), skip_optimization=True, skip_onnx_shape=False, skip_symbolic_shape=True
    )
    model = onnx.load(str(work))
    _name_nodes(model)
    onnx.save(model, str(work))
    exclude = featurizer_nodes(model, featurizer_tensor)
    if featurizer_tensor is None:
        log.warning("featurizer output not found in the graph: its nodes may be quantized")
    report: dict[str, Any] = {"excluded_nodes": len(exclude)}
    # onnxruntime's quantizer logs harmless per-tensor remarks on the root logger; keep them out of the CLI
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        _quantize(work, out_path, exclude, calibration, fmt, report, quant_format)
    finally:
        root.setLevel(level)
    work.unlink(missing_ok=True)
    return report


def _quantize(
    work: Path,
    out_path: Path,
    exclude: list[str],
    calibration: AudioWindows | None,
    fmt: QuantFormat,
    report: dict[str, Any],
    quant_format: str,
) -> None:
    if calibration is not None and len(calibration):
        quantize_static(
            str(work),
            str(out_path),
            WindowsReader(calibration.waveforms),
            quant_format=fmt,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        report.update(
            method="static",
            format=quant_format.lower(),
            calibration_windows=len(calibration),
            calibration_source=calibration.source,
        )
    else:
        log.warning("no calibration audio: dynamic int8 quantization (weights only)")
        quantize_dynamic(
            str(work), str(out_path), weight_type=QuantType.QInt8, nodes_to_exclude=exclude, per_channel=True
        )
        report.update(method="dynamic", format="qoperator", calibration_windows=0)


def quantize_artifact(
    fp32_path: Path,
    out_path: Path,
    *,
    loaded: LoadedNetwork,
    cache_dir: Path | None,
    featurizer_tensor: str | None,
    parity_windows: AudioWindows,
    parity_reference: np.ndarray,
    max_accuracy_drop: float = 0.01,
    calibration_windows: int = 256,
    test_windows: int = 2000,
    quant_format: str = "qdq",
    force: bool = False,
    calibration: AudioWindows | None = None,
) -> dict[str, Any]:
    """Quantize, then check int8 against fp32 on the run's test windows (the gate) and PyTorch (parity).

    ``calibration`` overrides the training windows read from the cache (tests calibrate on silence to
    make the gate fail for real).
    """
    sr, w = loaded.features.sample_rate, loaded.window_samples
    if calibration is None:
        calibration = cache_windows(
            cache_dir,
            splits=("train",),
            classes=loaded.classes,
            sample_rate=sr,
            window_samples=w,
            limit=calibration_windows,
            seed=1,
        )
    report = quantize_model(
        fp32_path,
        out_path,
        featurizer_tensor=featurizer_tensor,
        calibration=calibration,
        quant_format=quant_format,
    )
    int8 = onnx_session(out_path)
    parity = parity_report(parity_reference, onnx_probabilities(int8, parity_windows.waveforms))
    parity.update(tolerance=INT8_PARITY_TOL, n_windows=len(parity_windows), windows=parity_windows.source)
    report["parity"] = parity

    test = cache_windows(
        cache_dir,
        splits=("test",),
        classes=loaded.classes,
        sample_rate=sr,
        window_samples=w,
        limit=test_windows,
    )
    test = AudioWindows(test.waveforms[test.labels >= 0], test.labels[test.labels >= 0], test.source)
    report.update(max_accuracy_drop=max_accuracy_drop, forced=False, test_windows=len(test))
    if not len(test):
        report.update(fp32_accuracy=None, int8_accuracy=None, accuracy_drop=None)
        if not force:
            raise ArtifactError(
                f"{fp32_path.name}: no test audio in the run's feature cache to check the int8 accuracy "
                "against fp32; refusing to ship an unchecked int8 model (use --force to accept it)"
            )
        report["forced"] = True
        log.warning("int8 accuracy gate skipped (forced): no test windows")
        return report
    acc32 = window_accuracy(onnx_session(fp32_path), test)
    acc8 = window_accuracy(int8, test)
    drop = acc32 - acc8
    report.update(fp32_accuracy=acc32, int8_accuracy=acc8, accuracy_drop=drop)
    log.info("int8 gate: fp32 %.4f, int8 %.4f on %d test windows", acc32, acc8, len(test))
    if drop > max_accuracy_drop + 1e-12:
        message = (
            f"int8 accuracy {acc8:.2%} vs fp32 {acc32:.2%} on {len(test)} test windows: a drop of "
            f"{100 * drop:.2f} points exceeds the allowed {100 * max_accuracy_drop:.2f}"
        )
        if not force:
            raise ArtifactError(f"{message}; refusing to write the int8 artifact (use --force to accept it)")
        report["forced"] = True
        log.warning("%s; kept because forced", message)
    return report
