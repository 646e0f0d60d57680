"""The promotion gate: a candidate version reaches production only when every measured check passes.

Checks (figures in the report, one line per failed check on the command line):

1. **quality** on a frozen evaluation set, the same windows for candidate and production: accuracy and
   macro-F1 not below production's by more than ``tolerance`` (default 0.5 point), above a floor each,
   every class's recall above ``min_class_recall``; a candidate with other classes than production fails
   ``classes``. The set is a feature cache (its manifest's windows of ``eval_split``) or a CSV manifest
   (``path,label[,split]``: whole files cut into the model's windows), recorded by a content hash of its
   audio bytes, labels and window starts. By default it is the set recorded when the current production
   version was promoted (its hash must still match: a frozen set that changed is an error); for a first
   promotion, the candidate's own test split, and the report says so.
2. **artifact**: ``onnx.checker`` passes, the card's parity record is within its tolerance, the card is
   complete (every field a deployed model must carry).
3. **speed**: windows per second on this machine (best of a few timed passes, candidate and production
   interleaved so both see the same load) at least ``min_windows_per_s``; and seconds of audio per second
   (windows/s x the card's hop: what an hour of audio costs) not below production's by more than
   ``max_slowdown``, so models with other windows (a 3 s transfer head vs a 1 s network) compare fairly.

The report (markdown + JSON) is written to ``report_dir`` and logged to the model version by the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vocalis import audio
from vocalis.contracts.card import MODEL_FILE, ModelCard
from vocalis.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

#: what a deployable card must carry (beyond the fields the predictor needs to load it)
CARD_COMPLETE = (
    "name",
    "version",
    "classes",
    "sample_rate",
    "window_s",
    "hop_s",
    "features",
    "architecture",
    "metrics",
    "cache_hash",
    "git_commit",
    "created",
    "onnx_opset",
    "parity",
)


class GateConfig(BaseModel):
    """The gate's thresholds (fractions, not points: 0.005 = 0.5 point). A YAML/JSON file or CLI options."""

    model_config = ConfigDict(extra="forbid")

    eval_set: str | None = Field(default=None, description="feature cache directory or CSV manifest")
    eval_split: str = Field(default="test", description="the split of the evaluation set to use")
    tolerance: float = Field(
        default=0.005, ge=0, le=1, description="allowed drop vs production (accuracy, macro-F1)"
    )
    min_accuracy: float = Field(default=0.5, ge=0, le=1)
    min_macro_f1: float = Field(default=0.4, ge=0, le=1)
    min_class_recall: float = Field(default=0.2, ge=0, le=1)
    min_windows_per_s: float = Field(default=20.0, ge=0, description="speed budget on this machine")
    max_slowdown: float = Field(default=0.25, ge=0, le=1, description="allowed speed loss vs production")
    speed_windows: int = Field(default=128, ge=8, description="windows per timed pass")
    speed_repeats: int = Field(default=3, ge=1, description="timed passes (the best counts)")
    threads: int | None = Field(default=None, ge=1, description="onnxruntime threads (default: all cores)")

    @classmethod
    def load(cls, path: str | Path | None, **overrides: Any) -> GateConfig:
        """Read a YAML or JSON file (when given) and apply the non-None ``overrides``."""
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"--gate-config: {p} not found")
            import yaml

            try:
                loaded = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{p}: not valid YAML/JSON ({exc})") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{p}: the gate config must be a mapping")
            data.update(loaded.get("gate", loaded))
        data.update({k: v for k, v in overrides.items() if v is not None})
        from pydantic import ValidationError

        try:
            return cls(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"gate config: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


@dataclass
class Check:
    """One gate check: its name, pass/fail and the figures behind it."""

    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSet:
    """A frozen evaluation set: rows of ``path, label, start_s`` (NaN start: the whole file)."""

    source: str
    kind: str
    split: str | None
    paths: list[Path]
    labels: list[str]
    starts: list[float | None]
    hash: str
    note: str = ""

    @property
    def classes(self) -> list[str]:
        """The labels present, sorted."""
        return sorted(set(self.labels))

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the report."""
        return {
            "source": self.source,
            "kind": self.kind,
            "split": self.split,
            "hash": self.hash,
            "n_rows": len(self.labels),
            "n_files": len(set(self.paths)),
            "classes": self.classes,
            "note": self.note,
        }

    def windows(self, sample_rate: int, window_s: float) -> tuple[np.ndarray, list[str], list[str]]:
        """Waveform windows at the model's rate, their labels, and the files that did not decode."""
        from vocalis.contracts.windows import WindowSpec

        n = round(window_s * sample_rate)
        spec = WindowSpec(window_s, window_s, sample_rate)
        waves: list[np.ndarray] = []
        labels: list[str] = []
        bad: list[str] = []
        decoded: dict[Path, np.ndarray | None] = {}
        for path, label, start in zip(self.paths, self.labels, self.starts, strict=True):
            if path not in decoded:
                try:
                    decoded[path] = audio.load(path, sample_rate)
                except audio.AudioDecodeError as exc:
                    log.warning("evaluation set: skipping %s", exc)
                    decoded[path] = None
                    bad.append(str(path))
            wave = decoded[path]
            if wave is None:
                continue
            if start is None:
                cut = spec.cut(wave)
                waves.extend(cut)
                labels.extend([label] * len(cut))
            else:
                s = round(start * sample_rate)
                win = np.zeros(n, np.float32)
                piece = wave[s : s + n]
                win[: len(piece)] = piece
                waves.append(win)
                labels.append(label)
        if not waves:
            raise DatasetError(f"{self.source}: no window of the evaluation set could be decoded")
        return np.stack(waves).astype(np.float32), labels, bad


def _file_digest(path: Path, memo: dict[Path, str]) -> str:
    if path not in memo:
        try:
            memo[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            memo[path] = "missing"
    return memo[path]


def _resolve_path(value: str, base: Path) -> Path:
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    for root in (base, base.parent, base.parent.parent):
        if (root / p).exists():
            return root / p
    return p


def load_eval_set(source: str | Path, split: str = "test", note: str = "") -> EvalSet:
    """Open a feature cache directory or a CSV manifest as an evaluation set, hashed by content.

    The hash covers each row's audio bytes (SHA-256), label and window start, not the paths: the same
    recordings moved elsewhere are the same set, one changed byte is another.
    """
    import pandas as pd

    src = Path(source)
    if src.is_dir():
        manifest_path, kind = src / "manifest.csv", "cache"
        if not manifest_path.is_file():
            raise DatasetError(f"{src}: not a feature cache (no manifest.csv) and not a CSV manifest")
    elif src.is_file():
        manifest_path, kind = src, "manifest"
    else:
        raise DatasetError(
            f"{src}: evaluation set not found (give a feature cache directory or a CSV manifest)"
        )
    try:
        table = pd.read_csv(manifest_path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{manifest_path}: not a readable CSV ({exc})") from None
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise DatasetError(f"{manifest_path}: the evaluation set lacks the columns {sorted(missing)}")
    used_split: str | None = None
    if "split" in table.columns and (table["split"].astype(str) == split).any():
        table = table[table["split"].astype(str) == split]
        used_split = split
    elif kind == "cache":
        raise DatasetError(f"{manifest_path}: no window of the split '{split}'")
    if table.empty:
        raise DatasetError(f"{manifest_path}: the evaluation set is empty")
    base = manifest_path.parent
    paths = [_resolve_path(str(p), base) for p in table["path"]]
    labels = [str(v) for v in table["label"]]
    if kind == "cache" and "start_s" in table.columns:
        starts: list[float | None] = [float(s) for s in table["start_s"]]
    else:
        starts = [None] * len(paths)
    memo: dict[Path, str] = {}
    rows = sorted(
        (_file_digest(p, memo), lab, -1.0 if s is None else round(s, 6))
        for p, lab, s in zip(paths, labels, starts, strict=True)
    )
    missing_files = sorted({str(p) for p in paths if memo.get(p) == "missing"})
    if missing_files:
        raise DatasetError(
            f"{manifest_path}: {len(missing_files)} audio file(s) of the evaluation set are missing, "
            f"e.g. {missing_files[0]}"
        )
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    return EvalSet(str(src.resolve()), kind, used_split, paths, labels, starts, digest, note)


@dataclass
class ModelFigures:
    """What the gate measured of one model."""

    label: str
    card: dict[str, Any]
    metrics: dict[str, Any]
    windows_per_s: float
    n_windows: int
    skipped_files: list[str]
    #: ``windows_per_s`` x the card's hop: seconds of audio per second at the hop the model predicts with
    audio_s_per_s: float = 0.0


def _quality(predictor: Any, eval_set: EvalSet) -> tuple[dict[str, Any], int, list[str]]:
    from vocalis.evaluation.metrics import classification_metrics

    waves, labels, bad = eval_set.windows(predictor.sample_rate, predictor.card.window_s)
    index = {c: i for i, c in enumerate(predictor.classes)}
    known = np.array([lab in index for lab in labels])
    y = np.array([index.get(lab, -1) for lab in labels])[known]
    probs = predictor.predict_windows(waves[known])
    m = classification_metrics(y, probs, predictor.classes)
    out = {
        "accuracy": float(m["accuracy"]),
        "macro_f1": float(m["macro_f1"]),
        "per_class_recall": {c: float(v["recall"]) for c, v in m["per_class"].items() if v["support"] > 0},
        "n_windows": int(known.sum()),
        "n_unknown_label": int((~known).sum()),
    }
    return out, len(waves), bad


def _speed_windows(predictors: list[Any], n: int) -> list[np.ndarray]:
    """The same noise-like windows for every model (at each model's own window length)."""
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((n, p.card.window_samples)) * 0.1).astype(np.float32) for p in predictors]


def measure_speed(predictors: list[Any], n: int, repeats: int) -> list[float]:
    """Windows per second of each predictor: best of ``repeats`` passes, the models interleaved."""
    batches = _speed_windows(predictors, n)
    for p, b in zip(predictors, batches, strict=True):
        p.predict_windows(b[: min(8, n)])  # warm-up: first-run allocations are not the model's speed
    best = [0.0] * len(predictors)
    for _ in range(repeats):
        for i, (p, b) in enumerate(zip(predictors, batches, strict=True)):
            t0 = time.perf_counter()
            p.predict_windows(b)
            best[i] = max(best[i], n / (time.perf_counter() - t0))
    return best


def artifact_checks(directory: Path) -> list[Check]:
    """``onnx.checker``, the parity record and card completeness of an artifact directory."""
    import onnx

    checks = []
    try:
        onnx.checker.check_model(str(directory / MODEL_FILE), full_check=True)
        checks.append(Check("onnx-checker", True, "onnx.checker (full check) passed"))
    except Exception as exc:  # onnx raises ValidationError and others
        checks.append(Check("onnx-checker", False, f"onnx.checker rejected the model: {exc}"))
    card = ModelCard.load(directory)
    parity = card.parity or {}
    diff, tol = parity.get("max_abs_diff"), parity.get("tolerance")
    if isinstance(diff, int | float) and isinstance(tol, int | float) and parity.get("n_windows"):
        ok = diff <= tol
        checks.append(
            Check(
                "parity",
                ok,
                f"export parity max |Δprob| {diff:.3g} {'<=' if ok else '>'} {tol:g} "
                f"on {parity.get('n_windows')} {parity.get('windows', '')} windows",
                {"max_abs_diff": diff, "tolerance": tol, "n_windows": parity.get("n_windows")},
            )
        )
    else:
        checks.append(Check("parity", False, "the card carries no parity record (max_abs_diff, tolerance)"))
    data = card.to_dict()
    empty = [k for k in CARD_COMPLETE if data.get(k) in (None, "", [], {}, "unknown")]
    metrics = data.get("metrics") or {}
    empty += [f"metrics.{k}" for k in ("accuracy", "macro_f1") if not isinstance(metrics.get(k), int | float)]
    checks.append(
        Check(
            "card",
            not empty,
            "the card is complete" if not empty else f"the card lacks {', '.join(empty)}",
            {"missing": empty},
        )
    )
    return checks


@dataclass
class GateResult:
    """The gate's verdict and everything it measured."""

    passed: bool
    checks: list[Check]
    candidate: ModelFigures
    production: ModelFigures | None
    eval_set: dict[str, Any]
    config: dict[str, Any]
    first_promotion: bool
    machine: dict[str, Any]
    created: str

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the JSON report)."""
        return {
            "passed": self.passed,
            "created": self.created,
            "first_promotion": self.first_promotion,
            "candidate": asdict(self.candidate),
            "production": asdict(self.production) if self.production else None,
            "eval_set": self.eval_set,
            "config": self.config,
            "machine": self.machine,
            "checks": [asdict(c) for c in self.checks],
        }


def _machine() -> dict[str, Any]:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
    }


def run_gate(
    candidate_dir: Path,
    candidate_label: str,
    production_dir: Path | None,
    production_label: str | None,
    eval_set: EvalSet,
    config: GateConfig,
) -> GateResult:
    """Measure the candidate (and production, when there is one) and decide; see the module docstring."""
    from vocalis.inference import Predictor

    cand = Predictor.from_dir(candidate_dir, threads=config.threads)
    prod = Predictor.from_dir(production_dir, threads=config.threads) if production_dir else None
    checks: list[Check] = []

    # 1. quality on the frozen set
    cand_q, cand_n, cand_bad = _quality(cand, eval_set)
    prod_q, prod_n, prod_bad = _quality(prod, eval_set) if prod else (None, 0, [])
    if prod is not None:
        same = sorted(cand.classes) == sorted(prod.classes)
        detail = (
            "candidate and production have the same classes"
            if same
            else f"classes differ: only candidate {sorted(set(cand.classes) - set(prod.classes))}, "
            f"only production {sorted(set(prod.classes) - set(cand.classes))}"
        )
        checks.append(Check("classes", same, detail, {"candidate": cand.classes, "production": prod.classes}))
    unknown = sorted(set(eval_set.classes) - set(cand.classes))
    checks.append(
        Check(
            "eval-set-classes",
            not unknown,
            "every label of the evaluation set is a class of the candidate"
            if not unknown
            else f"labels of the evaluation set the candidate does not know: {unknown}",
        )
    )
    for metric, floor in (("accuracy", config.min_accuracy), ("macro_f1", config.min_macro_f1)):
        c = cand_q[metric]
        problems = []
        if c < floor:
            problems.append(f"below the floor {floor:.3f}")
        figures: dict[str, Any] = {"candidate": c, "floor": floor}
        if prod_q is not None:
            p = prod_q[metric]
            figures.update(production=p, tolerance=config.tolerance, delta=c - p)
            if c < p - config.tolerance - 1e-12:
                drop, tol = (p - c) * 100, config.tolerance * 100
                problems.append(f"{drop:.2f} pt below production ({p:.3f}), tolerance {tol:.2f} pt")
        vs = f" vs production {prod_q[metric]:.3f}" if prod_q is not None else ""
        checks.append(
            Check(
                metric,
                not problems,
                f"{metric} {c:.3f}{vs}" + (": " + "; ".join(problems) if problems else ""),
                figures,
            )
        )
    low = {k: v for k, v in cand_q["per_class_recall"].items() if v < config.min_class_recall}
    checks.append(
        Check(
            "class-recall",
            not low,
            f"every class's recall >= {config.min_class_recall:.2f}"
            if not low
            else "recall below "
            + f"{config.min_class_recall:.2f}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(low.items())),
            {"per_class_recall": cand_q["per_class_recall"], "floor": config.min_class_recall},
        )
    )

    # 2. the artifact itself
    checks.extend(artifact_checks(candidate_dir))

    # 3. speed on this machine
    speeds = measure_speed([cand, prod] if prod else [cand], config.speed_windows, config.speed_repeats)
    cand_wps = speeds[0]
    checks.append(
        Check(
            "speed-budget",
            cand_wps >= config.min_windows_per_s,
            f"{cand_wps:.1f} windows/s {'>=' if cand_wps >= config.min_windows_per_s else '<'} "
            f"budget {config.min_windows_per_s:g}",
            {"windows_per_s": cand_wps, "budget": config.min_windows_per_s},
        )
    )
    rates = [wps * p.card.hop_s for wps, p in zip(speeds, [cand, prod] if prod else [cand], strict=True)]
    if prod is not None:
        prod_wps = speeds[1]
        ok = rates[0] >= rates[1] * (1 - config.max_slowdown)
        checks.append(
            Check(
                "speed-vs-production",
                ok,
                f"{rates[0]:.1f} vs production {rates[1]:.1f} s of audio/s ({cand_wps:.1f} vs {prod_wps:.1f} "
                f"windows/s, hops {cand.card.hop_s:g} vs {prod.card.hop_s:g} s; "
                f"{(rates[0] / rates[1] - 1) * 100:+.1f} %, allowed -{config.max_slowdown * 100:.0f} %)",
                {
                    "candidate": rates[0],
                    "production": rates[1],
                    "unit": "audio seconds per second",
                    "candidate_windows_per_s": cand_wps,
                    "production_windows_per_s": prod_wps,
                    "max_slowdown": config.max_slowdown,
                },
            )
        )
    first = prod is None
    return GateResult(
        passed=all(c.passed for c in checks),
        checks=checks,
        candidate=ModelFigures(
            candidate_label, cand.card.to_dict(), cand_q, cand_wps, cand_n, cand_bad, rates[0]
        ),
        production=ModelFigures(
            production_label or "", prod.card.to_dict(), prod_q or {}, speeds[1], prod_n, prod_bad, rates[1]
        )
        if prod
        else None,
        eval_set=eval_set.describe(),
        config=config.model_dump(),
        first_promotion=first,
        machine=_machine(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def render_markdown(result: GateResult, decision: str, reason: str | None = None) -> str:
    """The human report: the decision, the evaluation set, candidate vs production, every check."""
    c, p = result.candidate, result.production
    verdict = "every check passed" if result.passed else f"{len(result.failed)} check(s) failed"
    lines = [
        f"# Promotion gate: {c.label}",
        "",
        f"**Decision: {decision}** ({verdict})" + (f"; forced, reason: {reason}" if reason else ""),
        "",
        f"- created: {result.created}",
        f"- machine: {result.machine['cpu_count']} CPUs, load average {result.machine['load_avg_1_5_15']}",
        f"- evaluation set: `{result.eval_set['source']}` ({result.eval_set['kind']}, split "
        f"{result.eval_set['split']}), sha256 `{result.eval_set['hash']}`, {result.eval_set['n_rows']} rows "
        f"from {result.eval_set['n_files']} files",
    ]
    if c.card.get("licence"):  # pretrained weights under their own terms (a transfer artifact)
        lines.append(f"- candidate licence: {c.card['licence']}")
    if result.first_promotion:
        lines.append(
            "- **first promotion**: no production version to compare with; the evaluation set is the "
            "candidate's own test split, and it is recorded as the frozen set for later promotions"
        )
    if result.eval_set.get("note"):
        lines.append(f"- note: {result.eval_set['note']}")
    lines += ["", "| | candidate | production |", "|---|---|---|"]

    def fig(m: ModelFigures | None, key: str) -> str:
        if m is None:
            return "-"
        v = m.metrics.get(key)
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    prod_model = f"{p.label} (card {p.card.get('version')})" if p else "-"
    lines.append(f"| model | {c.label} (card {c.card.get('version')}) | {prod_model} |")
    for key in ("accuracy", "macro_f1", "n_windows"):
        lines.append(f"| {key} | {fig(c, key)} | {fig(p, key)} |")
    lines.append(f"| windows/s | {c.windows_per_s:.1f} | {f'{p.windows_per_s:.1f}' if p else '-'} |")
    lines.append(
        f"| audio s/s (at the hop) | {c.audio_s_per_s:.1f} | {f'{p.audio_s_per_s:.1f}' if p else '-'} |"
    )
    for cls in sorted(c.metrics.get("per_class_recall", {})):
        pv = p.metrics.get("per_class_recall", {}).get(cls) if p else None
        prod_recall = f"{pv:.4f}" if pv is not None else "-"
        lines.append(f"| recall {cls} | {c.metrics['per_class_recall'][cls]:.4f} | {prod_recall} |")
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    for check in result.checks:
        detail = check.detail.replace("|", "\\|")  # a pipe in a detail would split the table cell
        lines.append(f"| {check.name} | {'pass' if check.passed else '**FAIL**'} | {detail} |")
    lines += [
        "",
        "Thresholds: " + ", ".join(f"{k}={v}" for k, v in result.config.items() if v is not None),
        "",
    ]
    return "\n".join(lines)


def write_report(
    result: GateResult, report_dir: Path, stem: str, decision: str, reason: str | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` into ``report_dir``; return both paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    data.update(decision=decision, force_reason=reason)
    json_path = report_dir / f"{stem}.json"
    md_path = report_dir / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(result, decision, reason))
    return md_path, json_path
