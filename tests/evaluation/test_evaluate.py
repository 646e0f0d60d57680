"""``vocalis evaluate``: the same numbers as training's metrics.json, the report files, the rich table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vocalis.evaluation import classification_metrics
from vocalis.evaluation.evaluate import evaluate_run

# the run evaluated is the session's run of the real trainer (``trained_run`` in tests/conftest.py, shared
# with the export tests); the tests write their reports into their own folders, never into the run


def test_metrics_of_a_known_prediction() -> None:
    import numpy as np

    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert 0.5 < m["macro_auroc"] <= 1.0


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_metrics_and_writes_the_report(
    trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = evaluate_run(trained_run, checkpoint="best", split="test", output_dir=out)
    saved = json.loads((trained_run / "metrics.json").read_text())
    again = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "macro_auroc", "per_class", "confusion_matrix"):
        assert again[key] == saved[key], key  # same code, same checkpoint, same data: exactly equal
    assert result.metrics["accuracy"] == saved["accuracy"]

    import matplotlib.image

    img = matplotlib.image.imread(out / "confusion_matrix.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100

    rows = list(csv.DictReader((out / "per_class.csv").open()))
    assert [r["class"] for r in rows] == list(saved["per_class"])
    wrong = list(csv.DictReader((out / "misclassified.csv").open()))
    n_wrong = saved["n"] - sum(saved["confusion_matrix"][k][k] for k in range(len(rows)))
    assert len(wrong) == n_wrong
    if wrong:
        assert {"path", "start_s", "end_s", "true", "pred_1", "prob_1", "pred_3"} <= set(wrong[0])
        assert all(r["true"] != r["pred_1"] for r in wrong)


@pytest.mark.slow
def test_cli_table_shows_the_metrics_json_values(trained_run: Path, tmp_path: Path) -> None:
    from vocalis.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        ["evaluate", str(trained_run), "--checkpoint", "last", "--split", "val", "--output", str(out)],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["split"] == "val" and m["checkpoint"].endswith("last.ckpt")
    assert f"{m['accuracy']:.4f}" in res.output and f"{m['macro_f1']:.4f}" in res.output
    for name in m["per_class"]:
        assert name in res.output


def test_evaluate_a_missing_run_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the console script's entry point, in process (the subprocess form is tested in tests/test_cli.py)
    from vocalis.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["evaluate", str(tmp_path / "nope")])
    stderr = capsys.readouterr().err
    assert ended.value.code == 2  # a user error
    assert "run directory not found" in " ".join(stderr.split()) and "Traceback" not in stderr
