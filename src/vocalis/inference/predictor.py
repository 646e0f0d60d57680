"""The torch-free predictor: an exported artifact + onnxruntime -> per-window and per-file predictions.

Imports onnxruntime, numpy, soundfile and soxr (through :mod:`vocalis.audio`) and the contracts
(:mod:`vocalis.contracts`), never torch nor the export package, so the command line's ``predict`` and the
service start fast and run where torch is not installed.

Windows. The ONNX input has a fixed length (the trained window, ``card.window_s``), so a window override
must equal the card's window: a model trained on 3 s windows is never shown 5 s ones. The hop is free.
Windows start every hop from 0; the last, partial window is zero-padded (as
:class:`vocalis.contracts.windows.WindowSpec` cuts them everywhere else in the project) and its ``end_s``
is the end of the audio. Short recordings follow the project's one rule
(:func:`~vocalis.contracts.windows.require_featurizable`): any recording with a sample is predicted,
zero-padded to a window; one with none is refused.

Streams. An artifact whose card has ``stream_hop_samples`` also takes rows holding several consecutive
windows at that hop and computes their shared STFT frames once (docs/artifact.md). Every entry point
(:meth:`predict`, :meth:`predict_stream`, :meth:`predict_windows`, which the engines call) feeds it each
run of windows that continue each other at that hop (decided from the samples) as stream rows of up to a
batch of windows, and other windows one a row. Older artifacts get one window a row. The probabilities are
the same.

Long files. :meth:`Predictor.predict_stream` reads blocks with :func:`vocalis.audio.stream` and keeps the
samples of the windows that straddle a block boundary, so its windows are the same samples as the
whole-file path's while memory stays bounded by one block plus one batch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vocalis import audio
from vocalis.contracts.backbone_session import artifact_session
from vocalis.contracts.card import MODEL_FILE, ModelCard
from vocalis.contracts.progress import AudioProgress
from vocalis.contracts.runtime import default_threads
from vocalis.contracts.windows import WindowSpec, require_featurizable
from vocalis.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

#: two window lengths closer than this (seconds) are the same window
_WINDOW_TOLERANCE_S = 1e-6

Source = str | Path | bytes | np.ndarray


@dataclass
class WindowPrediction:
    """One analysis window: its place in the recording, its top labels and every class probability."""

    start_s: float
    end_s: float
    top: list[tuple[str, float]]
    probs: np.ndarray

    def to_dict(self, classes: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready dict; with ``classes`` it includes every class probability by name."""
        out: dict[str, Any] = {
            "start_s": round(self.start_s, 6),
            "end_s": round(self.end_s, 6),
            "top": [
                {"label": label, "confidence": round(float(p), 6), "rank": i + 1}
                for i, (label, p) in enumerate(self.top)
            ],
        }
        if classes is not None:
            out["probs"] = {c: round(float(p), 6) for c, p in zip(classes, self.probs, strict=True)}
        return out


@dataclass
class FileSummary:
    """A recording in one line: the label with the highest window probability, and per-class statistics.

    ``top_label`` is the class whose maximum over windows is highest (a detection view: one confident
    window is enough), ``top_confidence`` that maximum.
    """

    top_label: str
    top_confidence: float
    max_probs: dict[str, float]
    mean_probs: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "top_label": self.top_label,
            "top_confidence": round(self.top_confidence, 6),
            "max_probs": {k: round(v, 6) for k, v in self.max_probs.items()},
            "mean_probs": {k: round(v, 6) for k, v in self.mean_probs.items()},
        }


@dataclass
class FilePrediction:
    """Predictions for one recording. ``sample_rate`` and ``channels`` are the original file's."""

    file: str
    duration_s: float
    sample_rate: int
    channels: int
    windows: list[WindowPrediction]
    summary: FileSummary
    window_s: float = 0.0
    hop_s: float = 0.0
    classes: list[str] = field(default_factory=list)
    #: mean of the windows' penultimate-layer embeddings ``[D]``, when asked for and the model has one
    embedding: np.ndarray | None = None

    def probabilities(self) -> np.ndarray:
        """All window probabilities as ``[n_windows, n_classes]``."""
        return np.stack([w.probs for w in self.windows]) if self.windows else np.zeros((0, 0))

    def to_dict(self, *, include_probs: bool = False) -> dict[str, Any]:
        """JSON-ready dict (per-window class probabilities only with ``include_probs``)."""
        return {
            "file": self.file,
            "duration_s": round(self.duration_s, 6),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "summary": self.summary.to_dict(),
            "windows": [w.to_dict(self.classes if include_probs else None) for w in self.windows],
        }


#: audio seconds per inference batch when the batch size is not given: onnxruntime's arena grows with the
#: batch's activations (1-hour file, ResNet34 with 11.67 s windows: 1.1 GB peak RSS at 16 windows a batch,
#: 355 MB at 2, same speed), while speed stops improving well before (3 s windows: 8 as fast as 32)
BATCH_AUDIO_S = 24.0


def auto_batch_size(window_s: float) -> int:
    """Windows per batch: about :data:`BATCH_AUDIO_S` seconds of audio, between 1 and 16."""
    return max(1, min(16, int(BATCH_AUDIO_S // max(window_s, 1e-3))))


class Predictor:
    """Runs an exported model (``model.onnx`` + ``model.json``) on recordings."""

    def __init__(
        self,
        session: ort.InferenceSession,
        card: ModelCard,
        directory: Path | None = None,
        *,
        batch_size: int | None = None,
    ) -> None:
        self.session = session
        self.card = card
        self.directory = directory
        self.batch_size = max(1, int(batch_size)) if batch_size else auto_batch_size(card.window_s)
        self._input = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        self._output = "probabilities" if "probabilities" in outputs else outputs[0]
        # the hop at which the graph takes streams (rows of consecutive windows); None: one window a row
        self._stream_hop = card.stream_hop_samples
        # optional third output (artifacts exported before it have none)
        self._embedding = "embedding" if "embedding" in outputs else None

    # -- loading ------------------------------------------------------------------------------------
    @classmethod
    def from_dir(
        cls, path: str | Path, threads: int | None = None, *, batch_size: int | None = None
    ) -> Predictor:
        """Load an artifact directory; :class:`ArtifactError` names what is missing or corrupt.

        ``batch_size`` windows per onnxruntime call; by default :func:`auto_batch_size` of the window.
        """
        directory = Path(path)
        if not directory.is_dir():
            raise ArtifactError(f"{directory}: model artifact directory not found")
        card = ModelCard.load(directory)
        model_path = directory / MODEL_FILE
        if not model_path.is_file():
            raise ArtifactError(f"{model_path}: ONNX model not found")
        n_threads = threads or default_threads()
        # one ONNX graph, or a two-part transfer artifact (LiteRT backbone + ONNX head) run as one session
        session = artifact_session(directory, card, n_threads)
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2:
            raise ArtifactError(f"{model_path}: expected one input [batch, samples], got {inputs}")
        samples = inputs[0].shape[1]
        if not isinstance(samples, int):  # a stream graph: the window it was exported for is in its metadata
            exported = session.get_modelmeta().custom_metadata_map.get("vocalis.input_samples", "")
            samples = int(exported) if exported.isdigit() else samples
        elif card.stream_hop_samples is not None:
            raise ArtifactError(
                f"{model_path}: the card says the model takes streams (hop {card.stream_hop_samples} "
                f"samples) but its input has a fixed length of {samples} samples"
            )
        if isinstance(samples, int) and samples != card.window_samples:
            raise ArtifactError(
                f"{model_path}: the model takes {samples} samples per window but the card says "
                f"{card.window_samples} ({card.window_s} s at {card.sample_rate} Hz)"
            )
        n_out = session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(card.classes):
            raise ArtifactError(
                f"{model_path}: the model has {n_out} outputs but the card lists {len(card.classes)} classes"
            )
        log.info("loaded %s (%s, %d threads)", directory, card.version, n_threads)
        return cls(session, card, directory, batch_size=batch_size)

    # -- facts --------------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names, in output order."""
        return list(self.card.classes)

    @property
    def sample_rate(self) -> int:
        """The model's sample rate (inputs are resampled to it)."""
        return int(self.card.sample_rate)

    @property
    def has_embedding(self) -> bool:
        """Whether the model has the ``embedding`` output (its penultimate layer)."""
        return self._embedding is not None

    @property
    def version(self) -> str:
        """The artifact's version string."""
        return str(self.card.version)

    def window_spec(self, window_s: float | None = None, hop_s: float | None = None) -> WindowSpec:
        """Windows to cut: the card's window (an override must equal it) and the card's or a given hop."""
        if window_s is not None and abs(window_s - self.card.window_s) > _WINDOW_TOLERANCE_S:
            raise ConfigError(
                f"window: this model was trained on {self.card.window_s:g} s windows and its ONNX input "
                f"has a fixed length, so the window cannot be {window_s:g} s (change the hop instead)"
            )
        hop = self.card.hop_s if hop_s is None else float(hop_s)
        if not hop > 0:
            raise ConfigError(f"hop: must be positive, got {hop_s}")
        return WindowSpec(self.card.window_s, hop, self.sample_rate)

    # -- running the model --------------------------------------------------------------------------
    def predict_windows(self, windows: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` for waveform windows ``[n, window_samples]``.

        Windows whose samples continue each other at the graph's stream hop (a recording cut at that hop,
        as every engine cuts it) are fed as streams, so their shared STFT frames are computed once; the
        probabilities are those of one window a row (the export-time stream parity check)."""
        return self._run(self._checked(windows), batch_size, embedding=False)[0]

    def _checked(self, windows: np.ndarray) -> np.ndarray:
        # a view of overlapping windows (vocalis.inference.jobs.cut) stays a view: each onnxruntime row is
        # built contiguous below, and copying every window first doubled the samples held
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.card.window_samples:
            raise ValueError(f"windows must be [n, {self.card.window_samples}], got {list(x.shape)}")
        return x

    def _stream_runs(self, x: np.ndarray) -> list[tuple[int, int]]:
        """``(first, stop)`` of each run of windows in ``x`` that continue each other at the stream hop:
        window ``i + 1`` starts with window ``i``'s last ``w - hop`` samples. Decided by the samples alone,
        so a run fed as one stream gives exactly these windows (no run longer than one window when the
        graph takes no streams)."""
        n, w, hop = len(x), self.card.window_samples, self._stream_hop
        if hop is None or not 0 < hop < w or n < 2:
            return [(i, i + 1) for i in range(n)]
        # one vectorised comparison of every neighbour pair's overlap (cheap next to the DFT it saves)
        follows = np.equal(x[1:, : w - hop], x[:-1, hop:]).all(axis=1)
        breaks = np.flatnonzero(~follows) + 1
        edges = [0, *breaks.tolist(), n]
        return list(itertools.pairwise(edges))

    def _run(
        self, x: np.ndarray, batch_size: int | None, *, embedding: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (and embeddings) of the windows ``x``, in order: runs of consecutive windows as
        one stream row of up to ``batch_size`` windows per onnxruntime call, the other windows
        ``batch_size`` rows per call."""
        names = [self._output, *([self._embedding] if embedding and self._embedding else [])]
        w, hop = self.card.window_samples, self._stream_hop or 0
        bs = batch_size or self.batch_size
        outs: list[list[np.ndarray]] = []  # per call: [probs, (emb)]
        single: list[int] = []  # windows waiting to be run one a row

        def flush_single() -> None:
            for i in range(0, len(single), bs):
                rows = x[single[i : i + bs]]
                outs.append(self.session.run(names, {self._input: rows}))
            single.clear()

        for first, stop in self._stream_runs(x):
            if stop - first == 1:
                single.append(first)
                if len(single) >= bs:
                    flush_single()
                continue
            flush_single()
            for lo in range(first, stop, bs):
                chunk = x[lo : min(stop, lo + bs)]
                if len(chunk) == 1:
                    outs.append(self.session.run(names, {self._input: np.ascontiguousarray(chunk)}))
                    continue
                # the stream: the first window, then the last hop samples of each following one
                row = np.concatenate([chunk[0], chunk[1:, w - hop :].reshape(-1)])
                outs.append(self.session.run(names, {self._input: row[None, :]}))
        flush_single()
        n_classes = len(self.classes)
        probs = (
            np.concatenate([o[0] for o in outs]).astype(np.float32)
            if outs
            else np.zeros((0, n_classes), np.float32)
        )
        if not embedding:
            return probs, None
        if not outs:
            return probs, np.zeros((0, 0), np.float32)
        return probs, np.concatenate([o[1] for o in outs]).astype(np.float32)

    def _predict_consecutive(
        self, windows: np.ndarray, hop: int, batch_size: int | None, *, embedding: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (and, with ``embedding``, embeddings) of windows cut ``hop`` samples apart from
        one signal: fed as streams when the graph takes them at this hop (see :meth:`predict_windows`)."""
        if embedding:
            return self.predict_windows_embedded(windows, batch_size)
        return self.predict_windows(windows, batch_size), None

    def predict_windows_embedded(
        self, windows: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``[n, n_classes]`` and embeddings ``[n, D]``, both from the same session runs
        (consecutive windows fed as streams, as in :meth:`predict_windows`).

        Raises :class:`ArtifactError` when the model has no ``embedding`` output (exported before it).
        """
        if self._embedding is None:
            raise ArtifactError(
                f"{self.directory or 'model'}: the model has no 'embedding' output (export it again with "
                "this version of vocalis)"
            )
        probs, emb = self._run(self._checked(windows), batch_size, embedding=True)
        return probs, emb if emb is not None else np.zeros((0, 0), np.float32)

    def _results(
        self,
        probs: np.ndarray,
        starts: np.ndarray,
        n_samples: int,
        spec: WindowSpec,
        top_k: int,
        min_conf: float,
    ) -> list[WindowPrediction]:
        classes = self.classes
        k = max(1, min(int(top_k), len(classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        sr = spec.sample_rate
        ends = spec.ends(starts, n_samples)
        out = []
        for p, idx, s, e in zip(probs, order, starts.tolist(), ends.tolist(), strict=True):
            top = [(classes[j], float(p[j])) for j in idx if p[j] >= min_conf]
            out.append(WindowPrediction(s / sr, e / sr, top, p))
        return out

    def _summarise(self, windows: list[WindowPrediction]) -> FileSummary:
        probs = np.stack([w.probs for w in windows])
        mx, mean = probs.max(axis=0), probs.mean(axis=0)
        best = int(np.argmax(mx))
        classes = self.classes
        return FileSummary(
            top_label=classes[best],
            top_confidence=float(mx[best]),
            max_probs={c: float(v) for c, v in zip(classes, mx, strict=True)},
            mean_probs={c: float(v) for c, v in zip(classes, mean, strict=True)},
        )

    def _file_prediction(
        self,
        name: str,
        duration: float,
        sr: int,
        channels: int,
        windows: list[WindowPrediction],
        spec: WindowSpec,
    ) -> FilePrediction:
        return FilePrediction(
            file=name,
            duration_s=duration,
            sample_rate=sr,
            channels=channels,
            windows=windows,
            summary=self._summarise(windows),
            window_s=spec.window_s,
            hop_s=spec.hop_s,
            classes=self.classes,
        )

    # -- public entry points ------------------------------------------------------------------------
    def predict(
        self,
        source: Source,
        *,
        window_s: float | None = None,
        hop_s: float | None = None,
        top_k: int = 3,
        min_conf: float = 0.0,
        name: str | None = None,
        batch_size: int | None = None,
        embedding: bool = False,
    ) -> FilePrediction:
        """Predict one recording held in memory.

        Args:
            source: a path, encoded bytes (any format :mod:`vocalis.audio` decodes), or a mono float32
                waveform at :attr:`sample_rate`.
            window_s: must equal the card's window when given (see the module notes).
            hop_s: seconds between window starts (default: the card's hop).
            top_k: labels kept per window.
            min_conf: labels below this probability are left out of ``top`` (``probs`` keeps them all).
            name: how to call the recording in results and errors.
            batch_size: windows per onnxruntime call (default: the predictor's).
            embedding: also return the mean window embedding (``FilePrediction.embedding``), from the
                same session runs; :class:`ArtifactError` when the model has none.
        """
        spec = self.window_spec(window_s, hop_s)
        if isinstance(source, np.ndarray):
            label = name or "<waveform>"
            wave = audio.to_mono(np.asarray(source, dtype=np.float32))
            if not np.isfinite(wave).all():
                raise audio.AudioDecodeError(label, "waveform has NaN/infinite samples")
            sr, channels, duration = self.sample_rate, 1, len(wave) / self.sample_rate
        else:
            label = name or (str(source) if isinstance(source, str | Path) else "<bytes>")
            raw, sr = audio.decode(source, name=label)
            channels, duration = raw.shape[1], raw.shape[0] / sr
            wave = audio.resample(audio.to_mono(raw), sr, self.sample_rate)
            del raw  # the decoded multichannel copy is not needed any more
        require_featurizable(len(wave), label, self.sample_rate)
        bs = batch_size or self.batch_size
        # windows are cut one batch at a time: cutting them all at once costs n_windows * window bytes
        # (a small hop on a long recording asks for gigabytes), a batch costs bs * window
        parts = [
            self._predict_consecutive(batch, spec.hop_samples, bs, embedding=embedding)
            for batch in self._cut_batches(wave, spec, bs)
        ]
        probs = np.concatenate([p for p, _ in parts])
        emb = np.concatenate([e for _, e in parts if e is not None]) if embedding else None
        windows = self._results(probs, spec.starts(len(wave)), len(wave), spec, top_k, min_conf)
        fp = self._file_prediction(label, duration, sr, channels, windows, spec)
        fp.embedding = emb.mean(axis=0) if emb is not None else None
        return fp

    @staticmethod
    def _cut_batches(wave: np.ndarray, spec: WindowSpec, batch_size: int) -> Iterator[np.ndarray]:
        """The windows :meth:`WindowSpec.cut` gives, ``batch_size`` at a time (same samples, same padding)."""
        w, h = spec.window_samples, spec.hop_samples
        n = spec.count(len(wave))
        for first in range(0, n, batch_size):
            count = min(batch_size, n - first)
            lo = first * h
            hi = (first + count - 1) * h + w
            piece = np.zeros(hi - lo, dtype=np.float32)
            have = wave[lo:hi]
            piece[: len(have)] = have
            idx = (np.arange(count) * h)[:, None] + np.arange(w)[None, :]
            yield piece[idx]

    def predict_stream(
        self,
        path: str | Path,
        *,
        window_s: float | None = None,
        hop_s: float | None = None,
        top_k: int = 3,
        min_conf: float = 0.0,
        name: str | None = None,
        batch_size: int | None = None,
        block_s: float = 60.0,
        on_progress: AudioProgress | None = None,
        embedding: bool = False,
    ) -> FilePrediction:
        """Predict a recording of any length in bounded memory (blocks of ``block_s`` seconds).

        Gives the same windows as :meth:`predict` (to resampler precision when the file's rate differs
        from the model's). ``on_progress(seconds)`` is called with the audio seconds done after each block.
        ``embedding`` also gives the mean window embedding, as in :meth:`predict`.
        """
        spec = self.window_spec(window_s, hop_s)
        label = name or str(path)
        hdr = audio.info(path, name=label)  # the header only, not the samples
        windows: list[WindowPrediction] = []
        total = 0
        emb_sum: np.ndarray | None = None  # a running sum: the mean needs no list of every window's vector
        emb_n = 0
        for chunk_starts, chunk, total in self._stream_windows(path, spec, label, block_s, batch_size):
            probs, emb = self._predict_consecutive(chunk, spec.hop_samples, batch_size, embedding=embedding)
            if emb is not None and len(emb):
                emb_sum = emb.sum(axis=0) if emb_sum is None else emb_sum + emb.sum(axis=0)
                emb_n += len(emb)
            # the final window's end needs the final length; every other window is whole
            windows.extend(self._results(probs, chunk_starts, 1 << 62, spec, top_k, min_conf))
            if on_progress is not None:
                on_progress(total / self.sample_rate)
        require_featurizable(total, label, self.sample_rate)
        if windows:  # the last window ends at the end of the audio, as WindowSpec.ends says
            last = np.array([round(windows[-1].start_s * self.sample_rate)])
            windows[-1].end_s = float(spec.ends(last, total)[0]) / self.sample_rate
        # a truncated file (an MP3 cut short, a WAV whose header claims more) holds less than its header
        # says: report what was decoded, so the duration agrees with the last window's end
        decoded = total / self.sample_rate
        duration = hdr.duration if abs(hdr.duration - decoded) <= 2 / self.sample_rate else decoded
        fp = self._file_prediction(label, duration, hdr.sample_rate, hdr.channels, windows, spec)
        fp.embedding = (emb_sum / emb_n).astype(np.float32) if emb_sum is not None else None
        return fp

    def _stream_windows(
        self, path: str | Path, spec: WindowSpec, label: str, block_s: float, batch_size: int | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """Yield ``(starts, windows, samples_seen)`` batches cut from streamed blocks."""
        w, h = spec.window_samples, spec.hop_samples
        bs = batch_size or self.batch_size
        buf = np.zeros(0, dtype=np.float32)
        buf_start = 0  # absolute sample index of buf[0]
        next_start = 0
        total = 0
        emitted = 0
        pending: list[np.ndarray] = []
        pending_starts: list[int] = []
        for block in audio.stream(path, self.sample_rate, block_seconds=block_s, name=label):
            buf = np.concatenate([buf, block]) if len(buf) else block
            total += len(block)
            while next_start + w <= total:
                off = next_start - buf_start
                pending.append(buf[off : off + w])
                pending_starts.append(next_start)
                next_start += h
                if len(pending) >= bs:
                    emitted += len(pending)
                    yield np.array(pending_starts), np.stack(pending), total
                    pending, pending_starts = [], []
            drop = min(next_start - buf_start, len(buf))
            buf, buf_start = buf[drop:].copy(), buf_start + drop
        # the tail: windows that run past the end, zero-padded (WindowSpec.count decides how many)
        for k in range(emitted + len(pending), spec.count(total)):
            s = k * h
            win = np.zeros(w, dtype=np.float32)
            piece = buf[max(0, s - buf_start) : max(0, s - buf_start) + w]
            win[: len(piece)] = piece
            pending.append(win)
            pending_starts.append(s)
        if pending:
            yield np.array(pending_starts), np.stack(pending), total
