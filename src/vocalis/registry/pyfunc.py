"""The MLflow pyfunc flavour of a vocalis model: the torch-free :class:`~vocalis.inference.Predictor`.

``mlflow.pyfunc.load_model("models:/vocalis@production").predict(x)`` accepts

* an audio file path (``str``/``Path``) or a list of them,
* a mono waveform at the model's sample rate (1-D ``numpy`` array) or a list of them,
* a ``pandas.DataFrame`` with a ``path`` column (what ``mlflow models serve`` hands over for
  ``{"dataframe_records": [{"path": "..."}]}``) or a ``waveform`` column,

and returns one row per input: ``file``, ``top_label``, ``top_confidence``, ``n_windows``, ``duration_s``,
``error`` (empty when it worked: one bad file never fails the batch) and ``max_prob.<class>`` per class.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

log = logging.getLogger(__name__)

#: the key under which the artifact directory is stored in the MLflow model
ARTIFACT_KEY = "artifact"


def _inputs(model_input: Any) -> list[tuple[str, Any]]:
    """``(name, source)`` pairs from whatever the caller handed over."""
    if isinstance(model_input, pd.DataFrame):
        if "path" in model_input.columns:
            return [(str(p), str(p)) for p in model_input["path"]]
        if "waveform" in model_input.columns:
            waves = model_input["waveform"]
            return [(f"waveform[{i}]", np.asarray(w, np.float32)) for i, w in enumerate(waves)]
        if len(model_input.columns) == 1 and model_input.dtypes.iloc[0].kind == "O":
            return [(str(p), str(p)) for p in model_input.iloc[:, 0]]
        raise ValueError(
            f"a DataFrame input needs a 'path' or 'waveform' column, got {list(model_input.columns)}"
        )
    if isinstance(model_input, dict):
        return _inputs(pd.DataFrame(model_input))
    if isinstance(model_input, str | Path):
        return [(str(model_input), str(model_input))]
    if isinstance(model_input, np.ndarray):
        if model_input.ndim == 1:
            return [("waveform", model_input.astype(np.float32))]
        if model_input.ndim == 2 and model_input.dtype.kind == "f":
            return [(f"waveform[{i}]", row.astype(np.float32)) for i, row in enumerate(model_input)]
        return _inputs(list(model_input.ravel()))
    if isinstance(model_input, list | tuple | pd.Series):
        out: list[tuple[str, Any]] = []
        for i, item in enumerate(model_input):
            if isinstance(item, str | Path):
                out.append((str(item), str(item)))
            else:
                out.append((f"waveform[{i}]", np.asarray(item, np.float32)))
        return out
    raise ValueError(f"cannot predict from a {type(model_input).__name__}: give paths or waveforms")


# MLflow inspects ``predict``'s type hints when the class is defined and warns that ``Any`` is no schema:
# the inputs are deliberately free-form (paths, waveforms, DataFrames), so that warning is noise here
warnings.filterwarnings("ignore", message=".*Type hint used in the model's predict function")
warnings.filterwarnings("ignore", message=".*Failed to infer signature from type hint")


class VocalisPyfunc(PythonModel):  # type: ignore[misc]  # MLflow's base class is untyped
    """Wraps :class:`vocalis.inference.Predictor` for ``mlflow.pyfunc``."""

    def __init__(self) -> None:
        self.predictor: Any = None

    def load_context(self, context: Any) -> None:
        """Open the artifact directory the model carries."""
        from vocalis.inference import Predictor

        self.predictor = Predictor.from_dir(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per input recording or waveform (see the module docstring)."""
        if self.predictor is None:
            self.load_context(context)
        predictor = self.predictor
        classes = list(predictor.classes)
        hop_s = (params or {}).get("hop_s")
        rows = []
        for name, source in _inputs(model_input):
            row: dict[str, Any] = {"file": name, "top_label": None, "top_confidence": np.nan}
            row.update(n_windows=0, duration_s=np.nan, error="")
            try:
                pred = predictor.predict(source, hop_s=hop_s, name=name)
            except Exception as exc:  # a bad file is reported in its row, never fails the batch
                row["error"] = str(exc)
                row.update({f"max_prob.{c}": np.nan for c in classes})
            else:
                row.update(
                    top_label=pred.summary.top_label,
                    top_confidence=float(pred.summary.top_confidence),
                    n_windows=len(pred.windows),
                    duration_s=float(pred.duration_s),
                )
                row.update({f"max_prob.{c}": float(pred.summary.max_probs[c]) for c in classes})
            rows.append(row)
        return pd.DataFrame(rows)
