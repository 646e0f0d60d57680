"""Drift reports: served traffic (the prediction log) against the reference stored in the artifact.

Evidently runs the tests and renders the HTML report. Each monitored column gets a two-sample test at a
p-value threshold (0.05 by default); the share of drifted columns is the *drift share*, and drift is
*detected* when that share reaches ``drift_share`` (0.5 by default, Evidently's dataset-drift rule):

- data drift: the five audio summary features the service logs per file (level, spectral centroid,
  bandwidth, peak frequency, zero-crossing rate), two-sample Kolmogorov-Smirnov;
- prediction drift: the distribution of the top label (chi-square test of homogeneity on the two
  samples' counts, which also copes with a class the reference never predicted) and the top
  confidence (Kolmogorov-Smirnov);
- embedding drift (models exported with an ``embedding`` output, whose reference and logged rows carry
  it): the :data:`~vocalis.monitoring.embedding.EMBEDDING_DIMS` projected coordinates of the mean
  penultimate-layer embedding (:mod:`vocalis.monitoring.embedding`), Kolmogorov-Smirnov each, combined
  into one test of the share (Bonferroni, see :func:`_embedding_test`). Tested only when the reference
  has them and at least ``min_rows`` logged rows do (older rows and older artifacts have none); the
  summary's ``embedding`` says which and gives each coordinate's test.

Every test's statistic is computed with scipy from the same samples, next to Evidently's p-value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vocalis.errors import ConfigError
from vocalis.monitoring.embedding import EMBEDDING_COLUMNS
from vocalis.monitoring.errors import MonitoringError, NotEnoughDataError
from vocalis.monitoring.reference import SUMMARY_COLUMNS, Reference

log = logging.getLogger(__name__)

#: fewer logged predictions than this and a drift test means nothing: refuse rather than report noise
DEFAULT_MIN_ROWS = 30
DEFAULT_P_THRESHOLD = 0.05
DEFAULT_DRIFT_SHARE = 0.5
PREDICTION_COLUMNS: tuple[str, ...] = ("top_label", "confidence")
_CATEGORICAL = frozenset({"top_label"})


@dataclass(frozen=True)
class DriftWindow:
    """Which logged predictions are compared: those since a time, or the last N (or both)."""

    since: datetime | None = None
    last: int | None = None
    until: datetime | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "last": self.last,
        }


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` -> timedelta; :class:`ConfigError` otherwise."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--since: '{text}' is not a duration like 7d, 12h, 30m, 90s or 2w")
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def make_window(
    since: str | timedelta | None = None, last: int | None = None, *, now: datetime | None = None
) -> DriftWindow:
    """A window from ``--since`` (duration before ``now``) and/or ``--last N``."""
    if last is not None and last <= 0:
        raise ConfigError(f"--last: {last} must be a positive number of predictions")
    start = None
    if since is not None:
        delta = parse_duration(since) if isinstance(since, str) else since
        start = (now or datetime.now(UTC)) - delta
    return DriftWindow(since=start, last=last)


def traffic_from_store(store: Any, window: DriftWindow, model_version: str | None = None) -> pd.DataFrame:
    """Logged predictions of ``window`` from a :class:`vocalis.serving.store.PredictionStore` as a frame."""
    rows = store.rows(since=window.since, until=window.until)
    if model_version is not None:
        rows = [r for r in rows if r.get("model_version") == model_version]
    if window.last is not None:
        rows = rows[-window.last :]
    return pd.DataFrame(rows)


@dataclass
class ColumnTest:
    """One column's two-sample test."""

    column: str
    kind: str  # "data", "prediction" or "embedding"
    test: str
    statistic: float
    p_value: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "column": self.column,
            "kind": self.kind,
            "test": self.test,
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            "drifted": self.drifted,
        }


@dataclass
class DriftResult:
    """What a drift run found; :meth:`to_dict` is the JSON summary of the CLI and the endpoint."""

    drift_detected: bool
    drift_share: float
    engine: str
    tests: list[ColumnTest]
    n_reference: int
    n_current: int
    window: dict[str, Any]
    p_threshold: float
    drift_share_threshold: float
    current_span: dict[str, str | None] = field(default_factory=dict)
    class_distribution: dict[str, dict[str, float]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    embedding: dict[str, Any] = field(default_factory=dict)
    report_html: str | None = None
    computed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: top-level ``drift_detected`` and ``drift_share``, then the details."""
        return {
            "drift_detected": self.drift_detected,
            "drift_share": self.drift_share,
            "n_drifted": sum(t.drifted for t in self.tests),
            "n_tests": len(self.tests),
            "p_value_threshold": self.p_threshold,
            "drift_share_threshold": self.drift_share_threshold,
            "engine": self.engine,
            "sample_sizes": {"reference": self.n_reference, "current": self.n_current},
            "window": {**self.window, **self.current_span},
            "tests": [t.to_dict() for t in self.tests],
            "class_distribution": self.class_distribution,
            "embedding": self.embedding,
            "model": self.model,
            "report_html": self.report_html,
            "computed_at": self.computed_at,
        }


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _chi2_homogeneity(
    ref: pd.Series, cur: pd.Series, _feature_type: Any, threshold: float
) -> tuple[float, bool]:
    """Evidently stat-test implementation: chi-square homogeneity p-value of two categorical samples."""
    p = _chi2_table_test(ref, cur)[1]
    return p, p < threshold


def _chi2_table_test(ref: pd.Series, cur: pd.Series) -> tuple[float, float]:
    from scipy.stats import chi2_contingency

    keys = sorted(set(ref.dropna().astype(str)) | set(cur.dropna().astype(str)))
    if len(keys) < 2:  # one category on both sides: nothing can differ
        return 0.0, 1.0
    r, c = ref.astype(str).value_counts(), cur.astype(str).value_counts()
    table = np.array([[int(r.get(k, 0)) for k in keys], [int(c.get(k, 0)) for k in keys]])
    res = chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


_stattest: Any = None


def _label_stattest() -> Any:
    """The chi-square homogeneity test, registered with Evidently once per process."""
    global _stattest
    if _stattest is None:
        from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
        from evidently.legacy.core import ColumnType

        _stattest = StatTest(
            name="chi2_homogeneity",
            display_name="chi-square homogeneity p_value",
            allowed_feature_types=[ColumnType.Categorical],
        )
        register_stattest(_stattest, default_impl=_chi2_homogeneity)
    return _stattest


def with_embedding_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :data:`EMBEDDING_COLUMNS`: taken as they are, or expanded from the prediction log's
    ``embedding`` column (a list per row, NULL on rows logged without one); NaN where there is none."""
    if all(c in frame.columns for c in EMBEDDING_COLUMNS):
        return frame
    out = frame.copy()
    width = len(EMBEDDING_COLUMNS)
    values = np.full((len(frame), width), np.nan)
    if "embedding" in frame.columns:
        for i, vec in enumerate(frame["embedding"].tolist()):
            if isinstance(vec, list | tuple | np.ndarray) and len(vec) == width:
                values[i] = np.asarray(vec, dtype=np.float64)
    for j, c in enumerate(EMBEDDING_COLUMNS):
        out[c] = values[:, j]
    return out


def _monitored_frame(frame: pd.DataFrame, where: str, embedding: bool = False) -> pd.DataFrame:
    missing = [c for c in (*SUMMARY_COLUMNS, *PREDICTION_COLUMNS) if c not in frame.columns]
    if missing:
        raise MonitoringError(f"{where}: missing columns {missing}")
    numeric = [*SUMMARY_COLUMNS, *(EMBEDDING_COLUMNS if embedding else ()), "confidence"]
    source = with_embedding_columns(frame) if embedding else frame
    out = source[[*SUMMARY_COLUMNS, *(EMBEDDING_COLUMNS if embedding else ()), *PREDICTION_COLUMNS]].copy()
    for c in numeric:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out["top_label"] = out["top_label"].astype(str)
    return out


def _embedding_coverage(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[int, int]:
    """Rows of the reference and of the traffic that carry the projected embedding."""
    ref = with_embedding_columns(reference)[list(EMBEDDING_COLUMNS)].notna().all(axis=1)
    cur = with_embedding_columns(current)[list(EMBEDDING_COLUMNS)].notna().all(axis=1)
    return int(ref.sum()), int(cur.sum())


def _shares(labels: pd.Series) -> dict[str, float]:
    counts = labels.astype(str).value_counts(normalize=True).sort_index()
    return {str(k): round(float(v), 6) for k, v in counts.items()}


def compute_drift(
    reference: Reference,
    current: pd.DataFrame,
    *,
    window: DriftWindow | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    html_path: str | Path | None = None,
    engine: str = "evidently",
) -> DriftResult:
    """Test ``current`` (logged predictions) against ``reference``; optionally write Evidently's HTML report.

    ``engine="scipy"`` runs the same tests without Evidently's report (no HTML): the service's periodic
    runs use it, because Evidently renders its plots on every run whether or not HTML is wanted.
    Raises :class:`NotEnoughDataError` when ``current`` holds fewer than ``min_rows`` predictions.
    """
    from scipy.stats import ks_2samp

    if engine not in ("evidently", "scipy"):
        raise ConfigError(f"drift engine: '{engine}' is neither 'evidently' nor 'scipy'")
    if html_path is not None and engine != "evidently":
        raise ConfigError("an HTML report needs the evidently engine")
    if len(current) < min_rows:
        raise NotEnoughDataError(
            f"{len(current)} logged prediction(s) in the window; drift needs at least {min_rows} "
            "(widen --since or --last, or wait for more traffic)"
        )
    n_ref_emb, n_cur_emb = _embedding_coverage(reference.frame, current)
    # the embedding is tested only when both sides have enough of it: an older artifact or a log of
    # rows served without an embedding must not turn into a drift of "missing values"
    use_emb = n_ref_emb >= min_rows and n_cur_emb >= min_rows
    embedding_info: dict[str, Any] = {
        "tested": use_emb,
        "columns": list(EMBEDDING_COLUMNS) if use_emb else [],
        "rows": {"reference": n_ref_emb, "current": n_cur_emb},
        "projection": reference.meta.get("embedding"),
    }
    ref = _monitored_frame(reference.frame, "reference", use_emb)
    cur = _monitored_frame(current, "prediction log", use_emb)
    emb_cols: tuple[str, ...] = EMBEDDING_COLUMNS if use_emb else ()

    # statistic and p-value of every test from scipy; with the evidently engine the p-values are
    # Evidently's (the same tests: its "ks" is scipy's two-sided ks_2samp, "chi2_homogeneity" is ours)
    stats: dict[str, tuple[str, float, float]] = {}
    for column in (*SUMMARY_COLUMNS, *emb_cols, *PREDICTION_COLUMNS):
        if column in _CATEGORICAL:
            statistic, p = _chi2_table_test(ref[column], cur[column])
            stats[column] = ("chi-square homogeneity", statistic, p)
        else:
            a, b = ref[column].dropna().to_numpy(), cur[column].dropna().to_numpy()
            if len(a) and len(b):
                ks = ks_2samp(a, b)
                stats[column] = ("Kolmogorov-Smirnov", float(ks.statistic), float(ks.pvalue))
            else:
                stats[column] = ("Kolmogorov-Smirnov", float("nan"), float("nan"))
    snapshot = None
    if engine == "evidently":
        snapshot = _evidently_snapshot(ref, cur, p_threshold, drift_share, emb_cols)
        for metric in snapshot.dict()["metrics"]:
            column = metric.get("config", {}).get("column")
            if column in stats:
                name, statistic, _ = stats[column]
                stats[column] = (name, statistic, float(metric["value"]))

    tests = [
        ColumnTest(
            column=column,
            kind="prediction" if column in PREDICTION_COLUMNS else "data",
            test=name,
            statistic=statistic,
            p_value=p,
            drifted=bool(np.isfinite(p) and p < p_threshold),
        )
        for column, (name, statistic, p) in stats.items()
        if column not in emb_cols
    ]
    if emb_cols:
        group = _embedding_test([stats[c] for c in emb_cols], p_threshold)
        tests.insert(len(SUMMARY_COLUMNS), group)
        embedding_info["coordinates"] = [
            {"column": c, "statistic": _finite(stats[c][1]), "p_value": _finite(stats[c][2])}
            for c in emb_cols
        ]
    share = sum(t.drifted for t in tests) / len(tests)
    html = None
    if html_path is not None and snapshot is not None:
        html_file = Path(html_path)
        html_file.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_file))
        html = str(html_file)
    span: dict[str, str | None] = {}
    if "created_at" in current.columns and len(current):
        times = pd.to_datetime(current["created_at"], utc=True)
        span = {"first_prediction": times.min().isoformat(), "last_prediction": times.max().isoformat()}
    versions = (
        {str(k): int(v) for k, v in current["model_version"].value_counts().items()}
        if "model_version" in current.columns
        else {}
    )
    result = DriftResult(
        engine=engine,
        drift_detected=share >= drift_share,
        drift_share=share,
        tests=tests,
        n_reference=len(ref),
        n_current=len(cur),
        window=(window or DriftWindow()).describe(),
        p_threshold=p_threshold,
        drift_share_threshold=drift_share,
        current_span=span,
        class_distribution={"reference": _shares(ref["top_label"]), "current": _shares(cur["top_label"])},
        model={"reference_model_version": reference.meta.get("model_version"), "current_versions": versions},
        embedding=embedding_info,
        report_html=html,
    )
    log.info(
        "drift: %d/%d tests drifted (share %.2f) on %d current vs %d reference predictions",
        sum(t.drifted for t in tests),
        len(tests),
        share,
        len(cur),
        len(ref),
    )
    return result


def _embedding_test(coordinates: list[tuple[str, float, float]], p_threshold: float) -> ColumnTest:
    """The projected embedding as ONE test of the drift share: its coordinates' KS tests, Bonferroni-combined.

    One test, not one per coordinate: eight coordinates voting separately would outvote the seven input
    and prediction tests, so a shift the network is blind to (a gain change it normalises away) could
    never reach the share, and one it sees would count eight times. The statistic is the largest KS
    distance, the p-value the smallest coordinate p-value times their number (capped at 1).
    """
    ps = np.array([p for _, _, p in coordinates], dtype=np.float64)
    finite = ps[np.isfinite(ps)]
    p = float(min(1.0, finite.min() * len(ps))) if finite.size else float("nan")
    stat = max((st for _, st, _ in coordinates if np.isfinite(st)), default=float("nan"))
    return ColumnTest(
        column="embedding",
        kind="embedding",
        test=f"Kolmogorov-Smirnov on {len(coordinates)} projected coordinates (Bonferroni)",
        statistic=float(stat),
        p_value=p,
        drifted=bool(np.isfinite(p) and p < p_threshold),
    )


def _evidently_snapshot(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    p_threshold: float,
    drift_share: float,
    emb_cols: tuple[str, ...] = (),
) -> Any:
    """Evidently's data-drift preset over the monitored columns (current first, reference second)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [*SUMMARY_COLUMNS, *emb_cols, "confidence"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=["top_label"])
    report = Report(
        [
            DataDriftPreset(
                columns=[*SUMMARY_COLUMNS, *emb_cols, *PREDICTION_COLUMNS],
                num_method="ks",
                per_column_method={"top_label": _label_stattest()},
                threshold=p_threshold,
                drift_share=drift_share,
            )
        ]
    )
    return report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )


def drift_for_artifact(
    artifact_dir: str | Path,
    store: Any,
    window: DriftWindow,
    *,
    model_version: str | None = None,
    html_path: str | Path | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    engine: str = "evidently",
) -> DriftResult:
    """Load the artifact's reference, read ``window`` from the prediction log and compute drift."""
    from vocalis.monitoring.reference import load_reference

    reference = load_reference(artifact_dir)
    current = traffic_from_store(store, window, model_version)
    result = compute_drift(
        reference,
        current,
        window=window,
        min_rows=min_rows,
        p_threshold=p_threshold,
        drift_share=drift_share,
        html_path=html_path,
        engine=engine,
    )
    result.model["artifact"] = str(artifact_dir)
    return result
