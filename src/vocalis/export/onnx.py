"""Export a trained network, featurizer included, to an ONNX artifact with a model card.

``export_artifact(run_dir, out_dir)`` is the core of ``vocalis export``:

1. rebuild the network from a checkpoint (:func:`vocalis.models.checkpoint.load_network`) and put
   :class:`vocalis.features.LogMel` in front of it and a softmax behind it;
2. export with the dynamo exporter: input ``waveform`` ``[rows, samples]`` (dynamic rows; a row is one
   trained window or, when the run's hop lets windows share STFT frames, a stream of windows at that hop,
   see :class:`vocalis.features.StreamLogMel`), outputs ``probabilities``, ``logits`` and (our networks)
   ``embedding``, the penultimate layer ``[windows, D]`` that drift monitoring summarises (one row a window);
3. check the graph (``onnx.checker``) and the numbers: onnxruntime against PyTorch on real windows decoded
   from the run's feature cache (synthetic ones when the audio is not at hand), one window a row and as
   streams, max |Δprob| within ``parity_tol`` (default 1e-4);
4. optionally quantize to int8 behind the accuracy gate (:mod:`vocalis.export.quantize`);
5. write ``model.json`` and the same facts into the ONNX ``metadata_props``.

Everything is built in a staging directory and moved into place only when every check passed, so a failed
export leaves no artifact behind.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vocalis import __version__
from vocalis.contracts.card import ARTIFACT_FILES, CARD_FILE, MODEL_FILE, ModelCard
from vocalis.contracts.provenance import git_commit
from vocalis.contracts.run_files import read_json_object
from vocalis.contracts.runtime import onnx_session
from vocalis.errors import ArtifactError, ConfigError
from vocalis.export.check_windows import AudioWindows, cache_windows, folder_windows, synthetic_windows
from vocalis.export.parity import onnx_probabilities, parity_report
from vocalis.features import STFT_KINDS, LogMel, StreamLogMel, stream_layout
from vocalis.models import embed_and_logits, supports_embedding
from vocalis.models.checkpoint import LoadedNetwork, load_network

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
#: fp32 parity: max |onnxruntime - PyTorch| over class probabilities
PARITY_TOL = 1e-4
#: windows used for the parity check
PARITY_WINDOWS = 24


class WaveformClassifier(nn.Module):
    """Waveforms ``[B, samples]`` -> ``(probabilities, logits[, embedding])``: the featurizer, the network,
    a softmax, and (for networks whose penultimate layer is known) that layer as a third output.

    The featurizer is the attribute ``featurizer``; its nodes carry that name scope in the ONNX graph, which
    lets quantization leave them in float.
    """

    def __init__(self, featurizer: nn.Module, net: nn.Module, *, embedding: bool | None = None) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.net = net
        self.with_embedding = supports_embedding(net) if embedding is None else embedding

    @property
    def output_names(self) -> list[str]:
        """The ONNX output names, in the order :meth:`forward` returns them."""
        return ["probabilities", "logits", *(["embedding"] if self.with_embedding else [])]

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Class probabilities and logits of each window, and its embedding when ``with_embedding``."""
        x = self.featurizer(waveform)
        if not self.with_embedding:
            logits = self.net(x)
            return torch.softmax(logits, dim=-1), logits
        emb, logits = embed_and_logits(self.net, x)  # one pass: the embedding costs no extra inference
        return torch.softmax(logits, dim=-1), logits, emb


def stream_hop_samples(loaded: LoadedNetwork, stft: str = "matmul") -> int | None:
    """The window hop (samples, the run's ``hop_s``) at which the exported graph takes streams, or ``None``
    when its windows cannot share STFT frames (``stft="fft"``, a hop that is not a whole number of STFT
    hops, windows that do not overlap): then the graph takes one window per row only."""
    if stft != "matmul":
        return None
    sr = loaded.features.sample_rate
    hop = max(1, round(loaded.hop_s * sr))
    return hop if stream_layout(loaded.features, loaded.window_samples, hop) is not None else None


def build_classifier(loaded: LoadedNetwork, stft: str = "fft", *, stream: bool = False) -> WaveformClassifier:
    """The exported module for a loaded network, in eval mode: :class:`LogMel`, the network, a softmax.

    ``stft="fft"`` is LogMel exactly as training ran it (the reference the parity check compares against);
    ``"matmul"`` is the same LogMel with its STFT as matrix products, faster in onnxruntime than the ONNX
    ``STFT`` and ``DFT`` operators (measured in ``benchmarks/bench_inference.py``). ``stream=True`` (matmul
    only, when :func:`stream_hop_samples` allows) takes streams: rows of ``k`` windows at the run's hop,
    whose STFT frames are computed once (:class:`vocalis.features.StreamLogMel`).
    """
    if stft not in STFT_KINDS:
        raise ConfigError(f"stft: choose one of {STFT_KINDS}, got '{stft}'")
    hop = stream_hop_samples(loaded, stft) if stream else None
    if stream and hop is None:
        raise ConfigError(
            f"stream: windows of {loaded.window_s} s every {loaded.hop_s} s cannot share STFT frames "
            f"(stft={stft}, STFT hop {loaded.features.hop_length} samples)"
        )
    featurizer: nn.Module = (
        StreamLogMel(loaded.features, loaded.window_samples, hop)
        if hop is not None
        else LogMel(loaded.features, stft=stft)
    )
    return WaveformClassifier(featurizer, loaded.net).eval()


def export_onnx(
    module: nn.Module,
    window_samples: int,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    *,
    stream_hop: int | None = None,
) -> Path:
    """Export ``module`` (waveform -> probabilities, logits) to ``path`` with a dynamic batch axis.

    With ``stream_hop`` (a module whose featurizer is :class:`StreamLogMel`) the samples axis is dynamic
    too: a row of ``window_samples + (k - 1) * stream_hop`` samples gives ``k`` windows.
    """
    path = Path(path)
    # a stream example of three windows: the trace must not see k == 1 as a constant
    example = torch.zeros(2, window_samples + (2 * stream_hop if stream_hop else 0))
    example[:, ::97] = 0.1  # not all zeros: nothing data dependent, but keep the trace honest
    batch = torch.export.Dim("batch", min=1, max=65536)
    axes: dict[int, Any] = {0: batch}
    if stream_hop:
        axes[1] = torch.export.Dim("samples", min=window_samples, max=2**31 - 1)
    try:
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=["waveform"],
            output_names=list(getattr(module, "output_names", ["probabilities", "logits"])),
            dynamic_shapes=(axes,),
            opset_version=opset,
            verbose=False,
        )
    except Exception as exc:  # the exporter raises many types; the user needs the reason, not a trace
        raise ArtifactError(f"{path}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
    if program is None:
        raise ArtifactError(f"{path}: ONNX export returned no program")
    program.save(str(path))
    return path


def featurizer_output(model_path: str | Path) -> str | None:
    """Name of the tensor the featurizer hands to the network (the last node in the ``featurizer`` scope)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    last = None
    for node in model.graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
        if "'featurizer'" in scopes:
            last = node.output[0]
    return last


def check_model(path: str | Path) -> None:
    """``onnx.checker.check_model`` with shape inference; :class:`ArtifactError` on failure."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError and others
        raise ArtifactError(f"{path}: onnx.checker rejected the model ({exc})") from None


def write_metadata(path: str | Path, card: ModelCard) -> None:
    """Copy the card into the ONNX file's ``metadata_props`` (and name the producer)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in card.metadata_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "vocalis"
    model.producer_version = __version__
    model.doc_string = f"{card.name} {card.version}: waveform [batch, {card.window_samples}] -> probabilities"
    onnx.save(model, str(path))


@torch.no_grad()
def torch_probabilities(module: nn.Module, windows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Probabilities from the PyTorch module, in batches."""
    out = [
        module(torch.from_numpy(windows[i : i + batch_size]))[0].numpy()
        for i in range(0, len(windows), batch_size)
    ]
    return np.concatenate(out)


def stream_parity(
    session: Any, reference_module: nn.Module, waveforms: np.ndarray, hop: int, rows: int = 2
) -> dict[str, Any]:
    """Parity of the graph's stream input: the parity windows laid end to end as ``rows`` streams, their
    windows at ``hop`` cut out and run through the reference (LogMel as training ran it) one by one,
    against the graph run on the streams. Every frame sharing and edge case of a real stream is in it."""
    w = waveforms.shape[1]
    audio = waveforms.reshape(-1)
    per_row = max(1, (len(audio) // rows - w) // hop + 1)
    span = w + (per_row - 1) * hop
    streams = np.stack([audio[i * span : (i + 1) * span] for i in range(min(rows, len(audio) // span))])
    cut = np.stack([s[j * hop : j * hop + w] for s in streams for j in range(per_row)])
    reference = torch_probabilities(reference_module, cut)
    got = session.run(["probabilities"], {"waveform": streams})[0]
    report = parity_report(reference, got) if got.shape == reference.shape else {"max_abs_diff": float("inf")}
    report.update(n_windows=len(cut), n_streams=len(streams), hop_samples=hop)
    return report


@dataclass
class RunFacts:
    """What an export reads from a run directory (every part optional but the checkpoint)."""

    checkpoint: Path
    run_dir: Path | None
    name: str
    metrics: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


def card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the card keeps of a run's ``metrics.json`` (the format the trainer writes: one flat object from
    :func:`vocalis.evaluation.evaluate.evaluate_checkpoint`, ``accuracy``, ``macro_f1``, ... and ``split``):
    its numbers and strings. The per-class table and the confusion matrix stay in the run directory."""
    if metrics and metrics.get("split") != "test":
        log.warning("metrics.json holds '%s' metrics, not test metrics", metrics.get("split"))
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}


def resolve_run(source: str | Path, checkpoint: str = "best") -> RunFacts:
    """Find the checkpoint and the run's metrics.json/run.json for a run directory or a checkpoint file."""
    src = Path(source)
    if src.is_file():
        run_dir = src.parent.parent if src.parent.name == "checkpoints" else None
        ckpt = src
    elif src.is_dir():
        run_dir = src
        if checkpoint not in ("best", "last"):
            raise ConfigError(f"checkpoint: choose 'best' or 'last', got '{checkpoint}'")
        ckpt = src / "checkpoints" / f"{checkpoint}.ckpt"
        if not ckpt.is_file():
            found = (
                sorted(p.name for p in (src / "checkpoints").glob("*.ckpt"))
                if (src / "checkpoints").is_dir()
                else []
            )
            raise ArtifactError(f"{ckpt}: checkpoint not found (checkpoints present: {found or 'none'})")
    else:
        raise ArtifactError(f"{src}: no such run directory or checkpoint file")
    metrics = read_json_object(run_dir / "metrics.json") if run_dir else {}
    # metrics.json holds the test metrics of ONE checkpoint (the trainer evaluates best.ckpt): another
    # checkpoint of the run gets none in its card rather than figures that are not its own
    evaluated = Path(str(metrics.get("checkpoint") or "best.ckpt")).name
    if metrics and evaluated != ckpt.name:
        log.warning(
            "%s: metrics.json evaluates %s, not this checkpoint; the card gets no metrics", ckpt, evaluated
        )
        metrics = {}
    run = read_json_object(run_dir / "run.json") if run_dir else {}
    name = run_dir.name if run_dir else ckpt.stem
    return RunFacts(ckpt, run_dir, name, card_metrics(metrics), run)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cache_dir(facts: RunFacts, loaded: LoadedNetwork) -> Path | None:
    for candidate in (facts.run.get("cache_dir"), loaded.cache_dir):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def parity_windows(loaded: LoadedNetwork, cache_dir: Path | None, n: int = PARITY_WINDOWS) -> AudioWindows:
    """Real windows for the parity check (test, then any split, of the run's cache), else synthetic ones."""
    w = loaded.window_samples
    real = cache_windows(
        cache_dir,
        splits=("test", "val", "train"),
        classes=loaded.classes,
        sample_rate=loaded.features.sample_rate,
        window_samples=w,
        limit=n,
    )
    if len(real):
        return real
    log.warning("no audio from a feature cache at hand: parity is checked on synthetic windows")
    return synthetic_windows(n, w, loaded.features.sample_rate)


@dataclass
class ExportResult:
    """What an export produced: the artifact directory, its card and the checks' figures."""

    directory: Path
    card: ModelCard
    parity: dict[str, Any]
    quantization: dict[str, Any] | None = None


#: a directory holding anything but ARTIFACT_FILES (contracts.card) is not replaced, even with
#: ``overwrite``, so ``-o .`` or ``-o ~`` can never be wiped


def check_destination(out: Path, *, overwrite: bool) -> None:
    """Refuse an output path the export would have to destroy to write to.

    A missing path or an empty folder is fine. An existing artifact (``model.onnx`` + ``model.json`` and
    nothing but :data:`ARTIFACT_FILES`) is replaced only with ``overwrite``. Anything else (a file, a
    folder holding other things) is refused with :class:`ConfigError`; nothing is touched.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{out}: exists and is not a folder; choose a new artifact folder")
    if not out.exists():
        return
    try:
        entries = sorted(out.iterdir())
    except OSError as exc:
        raise ConfigError(f"{out}: cannot list the folder ({exc.strerror})") from None
    if not entries:
        return
    names = {e.name for e in entries}
    others = [e.name for e in entries if e.name not in ARTIFACT_FILES or not e.is_file() or e.is_symlink()]
    if others or not {MODEL_FILE, CARD_FILE} <= names:
        shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
        raise ConfigError(
            f"{out}: not empty and not a vocalis artifact (holds {shown or 'no model.onnx/model.json'}); "
            "refusing to replace it, choose a new or empty folder"
        )
    if not overwrite:
        raise ConfigError(f"{out}: an artifact is already there; pass --overwrite to replace it")


def _replace_dir(staging: Path, out: Path, *, overwrite: bool) -> None:
    replace_dir(staging, out, overwrite=overwrite)


def replace_dir(staging: Path, out: Path, *, overwrite: bool) -> None:
    """Move ``staging`` to ``out``; an old artifact there is renamed aside first and removed after."""
    check_destination(out, overwrite=overwrite)  # again: the folder may have changed during the export
    if out.exists() and any(out.iterdir()):
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        aside.rmdir()
        out.rename(aside)
        try:
            staging.rename(out)
        except OSError:
            aside.rename(out)  # put the old artifact back
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        if out.exists():
            out.rmdir()  # empty: check_destination said so
        staging.rename(out)


def export_artifact(
    source: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    checkpoint: str = "best",
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    max_accuracy_drop: float = 0.01,
    calibration_windows: int = 256,
    test_windows: int = 2000,
    quant_format: str = "qdq",
    prune_amount: float = 0.0,
    prune_structured: bool = False,
    finetune_epochs: int = 0,
    parity_tol: float = PARITY_TOL,
    name: str | None = None,
    stft: str = "matmul",
    calibration_audio: str | Path | None = None,
    calibration: AudioWindows | None = None,
) -> ExportResult:
    """Export a run (directory or checkpoint file) to ``out_dir`` (``model.onnx`` + ``model.json``).

    Args:
        source: a run directory (``checkpoints/{best,last}.ckpt``, optional ``metrics.json``/``run.json``)
            or a checkpoint file.
        out_dir: the artifact directory, written through a temporary sibling and renamed into place once
            every check passed. An existing folder must be empty, or an artifact with ``overwrite``
            (see :func:`check_destination`); anything else raises :class:`ConfigError` before any work.
        overwrite: replace an existing artifact at ``out_dir``.
        checkpoint: ``best`` or ``last`` for a run directory.
        quantize: ``None`` or ``"int8"`` (static quantization, see :mod:`vocalis.export.quantize`).
        opset: ONNX opset.
        force: keep an int8 model whose test accuracy dropped more than ``max_accuracy_drop``, or one that
            could not be checked for lack of test audio.
        max_accuracy_drop: the int8 gate, as a fraction (0.01 = 1 percentage point).
        calibration_windows: training windows used to calibrate int8 ranges.
        test_windows: cap on the test windows of the accuracy gate.
        quant_format: ``qdq`` or ``qoperator``.
        prune_amount: fraction of weights to prune (0 = no pruning), see :mod:`vocalis.export.prune`.
        prune_structured: prune whole output channels (L2) instead of single weights (L1).
        finetune_epochs: epochs of fine-tuning on the cached training features after pruning.
        parity_tol: max |Δprob| allowed between onnxruntime (fp32) and PyTorch.
        name: the model's name in the card (default: the run directory's name).
        stft: how LogMel in the graph computes its STFT: ``matmul`` (faster in onnxruntime) or ``fft``
            (the ONNX STFT operator); either way parity is checked against LogMel as training ran it.
        calibration_audio: a folder (or file) of recordings to calibrate int8 on instead of the run's
            training windows.
        calibration: calibration windows given directly (overrides both).

    Raises:
        ArtifactError: a check failed (parity, checker, the int8 gate); nothing is written then.
    """
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize: only 'int8' is supported, got '{quantize}'")
    if not 0.0 <= prune_amount < 1.0:
        raise ConfigError(f"prune-amount: must be in [0, 1), got {prune_amount}")
    out = Path(out_dir).absolute()
    check_destination(out, overwrite=overwrite)  # before any work: refuse fast, touch nothing
    facts = resolve_run(source, checkpoint)
    loaded = load_network(facts.checkpoint)
    sr = loaded.features.sample_rate
    window_samples = loaded.window_samples
    cache_dir = _cache_dir(facts, loaded)
    optimization: dict[str, Any] = {}

    if prune_amount > 0:
        from vocalis.export.prune import prune_network

        optimization["pruning"] = prune_network(
            loaded,
            prune_amount,
            structured=prune_structured,
            finetune_epochs=finetune_epochs,
            cache_dir=cache_dir,
        )

    reference_module = build_classifier(loaded, "fft")  # LogMel as training computed it
    stream_hop = stream_hop_samples(loaded, stft)
    module = build_classifier(loaded, stft, stream=stream_hop is not None)
    optimization["featurizer_graph"] = (
        f"StreamLogMel(hop={stream_hop})" if stream_hop else f"LogMel(stft={stft})"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        fp32_path = staging / "model.fp32.onnx"
        export_onnx(module, window_samples, fp32_path, opset, stream_hop=stream_hop)
        check_model(fp32_path)
        windows = parity_windows(loaded, cache_dir)
        session = onnx_session(fp32_path)
        reference = torch_probabilities(reference_module, windows.waveforms)
        parity = parity_report(reference, onnx_probabilities(session, windows.waveforms))
        parity.update(tolerance=parity_tol, n_windows=len(windows), windows=windows.source)
        if stream_hop:
            parity["stream"] = stream_parity(session, reference_module, windows.waveforms, stream_hop)
        log.info("fp32 parity: %s", parity)
        worst = max(parity["max_abs_diff"], parity.get("stream", {}).get("max_abs_diff", 0.0))
        if not worst <= parity_tol:
            raise ArtifactError(
                f"{facts.checkpoint}: onnxruntime and PyTorch disagree: max |Δprob| "
                f"{worst:.3g} > {parity_tol:g} on {len(windows)} {windows.source} windows"
            )
        quant_report = None
        final = staging / MODEL_FILE
        if quantize == "int8":
            from vocalis.export.quantize import quantize_artifact

            if calibration is None and calibration_audio is not None:
                calibration = folder_windows(
                    calibration_audio,
                    sample_rate=sr,
                    window_samples=window_samples,
                    limit=calibration_windows,
                )
                if not len(calibration):
                    raise ArtifactError(f"{calibration_audio}: no decodable audio to calibrate on")

            quant_report = quantize_artifact(
                fp32_path,
                final,
                loaded=loaded,
                cache_dir=cache_dir,
                featurizer_tensor=featurizer_output(fp32_path),
                parity_windows=windows,
                parity_reference=reference,
                max_accuracy_drop=max_accuracy_drop,
                calibration_windows=calibration_windows,
                test_windows=test_windows,
                quant_format=quant_format,
                force=force,
                calibration=calibration,
            )
            optimization["int8"] = quant_report
            check_model(final)
        else:
            fp32_path.rename(final)

        digest = _file_digest(facts.checkpoint)[:12]
        card = ModelCard(
            name=name or facts.name,
            version=f"{digest}-int8" if quantize else digest,
            classes=list(loaded.classes),
            sample_rate=sr,
            window_s=loaded.window_s,
            hop_s=loaded.hop_s,
            features=loaded.features.to_dict(),
            architecture=loaded.model_name,
            metrics=facts.metrics,
            cache_hash=facts.run.get("cache_hash") or loaded.cache_hash,
            git_commit=facts.run.get("git_commit") or git_commit(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            vocalis_version=__version__,
            quantization=quantize,
            onnx_opset=opset,
            input_samples=window_samples,
            stream_hop_samples=stream_hop,
            parity=parity,
            optimization=optimization,
            source={
                "run_dir": str(facts.run_dir) if facts.run_dir else None,
                "checkpoint": str(facts.checkpoint),
                "cache_dir": str(cache_dir) if cache_dir else None,
                "model_kwargs": loaded.model_kwargs,
            },
        )
        write_metadata(final, card)
        check_model(final)
        card.save(staging)
        for leftover in staging.glob("*.fp32.onnx"):
            leftover.unlink()
        for extra in staging.iterdir():  # external-data or helper files other than the two we ship
            if extra.name not in (MODEL_FILE, CARD_FILE):
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        _replace_dir(staging, out, overwrite=overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    # the drift reference (reference.parquet) from the training split; never fails the export
    from vocalis.monitoring.reference import try_build_reference

    try_build_reference(cache_dir, out)
    log.info("exported %s to %s", facts.checkpoint, out)
    return ExportResult(out, card, parity, quant_report)
