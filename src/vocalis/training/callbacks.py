"""Lightning callbacks of our own; the configs build them by ``_target_`` (``callbacks=`` group)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class LastCheckpoint(Callback):
    """``DIRPATH/last.ckpt`` every ``every_n_train_steps`` steps and at each epoch end.

    Written to a temporary file and renamed, so a run killed while saving still has a readable
    ``last.ckpt`` to resume from. (Lightning's ``ModelCheckpoint(save_last=True)`` writes in place and
    only when it saves a monitored checkpoint.)
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None = 50) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every = int(every_n_train_steps or 0)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        tmp = self.path.with_name("last.ckpt.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("last_checkpoint")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        """Save every N optimisation steps (mid-epoch kills lose at most N steps)."""
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step > 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save at the end of each epoch (after validation)."""
        self._save(trainer)
