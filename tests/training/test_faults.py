"""Faults and scale-out, through the real console script in subprocesses: SIGKILL mid-training then
``resume=RUN_DIR``; DDP with two CPU processes on gloo."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vocalis.training.config import compose_config
from vocalis.training.train import train


def _vocalis() -> str:
    exe = Path(sys.executable).with_name("vocalis")
    return str(exe) if exe.exists() else shutil.which("vocalis") or "vocalis"


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_finishes_the_planned_epochs(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    cmd = [
        _vocalis(),
        "train",
        *tiny_overrides,
        "trainer.max_epochs=6",
        "callbacks.last.every_n_train_steps=2",
        f"run_dir={run}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not last.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else "exited"
        assert time.monotonic() < deadline, "no last.ckpt within 240 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists(), "the run finished before it was killed"
    killed_at = torch.load(last, map_location="cpu", weights_only=False)
    assert killed_at["epoch"] < 6

    result = train(compose_config([f"resume={run}"]))
    assert result is not None and result.run_dir == run.resolve()
    info = json.loads((run / "run.json").read_text())
    assert info["epochs"] == 6 == info["max_epochs"] and info["resumed"] is True
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["global_step"] > killed_at["global_step"]
    # the run learned across the kill (the best epoch's validation accuracy beats chance on 3 classes;
    # the tiny test split, ~20 windows, is too small for a test-accuracy bar) and metrics.json is the
    # test of every window
    assert info["best_val"] > 1 / 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"] > 0


@pytest.mark.slow
@pytest.mark.cluster
def test_ddp_two_cpu_processes_make_one_run_directory(tmp_path: Path, tiny_overrides: list[str]) -> None:
    runs = tmp_path / "runs"
    cmd = [
        _vocalis(),
        "train",
        *tiny_overrides,
        "trainer=ddp",
        "trainer.max_epochs=2",
        "logger=csv",
        f"paths.runs_dir={runs}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK", "VOCALIS_RUN_DIR")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    made = list(runs.iterdir())
    assert len(made) == 1, made  # rank 1 did not make a run directory of its own
    run = made[0]
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    # rank 0 alone logged, once per epoch: one validation row for each of the 2 epochs
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert sorted(r["epoch"] for r in rows if r.get("val/acc")) == ["0", "1"]
    info = json.loads((run / "run.json").read_text())
    assert info["epochs"] == 2
    hp = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert hp["hyper_parameters"]["classes"] == json.loads((run / "classes.json").read_text())
