"""The LightningModule: a network (built by Hydra from ``model=``) trained on cached log-mel windows.

The module holds the network as ``self.net`` and saves as hyper-parameters every fact
:func:`vocalis.models.checkpoint.load_network` needs to rebuild it without this class or its config
(``model_name`` and ``model_kwargs`` name the constructor and its arguments for
:func:`vocalis.models.build_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from vocalis.training.augment import AugmentConfig, dynamic_range_gain, mixup, spec_augment

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class VocalisClassifier(L.LightningModule):
    """Classify log-mel windows ``[B, 1, n_mels, n_frames]`` into ``classes``.

    ``net`` is the network, ``model_name``/``model_kwargs`` what rebuilds it (recorded, not used here).
    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) called with the parameters
    and the optimizer; ``class_weights`` re-weights the cross-entropy for imbalanced data.
    """

    def __init__(
        self,
        net: nn.Module,
        model_name: str,
        classes: Sequence[str],
        features: dict[str, Any],
        window_s: float,
        hop_s: float,
        n_mels: int,
        n_frames: int,
        model_kwargs: dict[str, Any] | None = None,
        cache_hash: str | None = None,
        cache_dir: str | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        augment: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # the network and the factories are code, not facts: model_name/model_kwargs and the resolved
        # config.yaml of the run record them
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.hparams["classes"] = list(classes)
        self.hparams["model_kwargs"] = dict(model_kwargs or {})
        n_classes = len(classes)
        self.net = net
        self.channels_last = channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            # in-place compile keeps the state-dict keys ("net.*") that load_network reads
            self.net.compile()
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.augment = AugmentConfig(**(augment or {}))
        self.top_db = float(features.get("top_db", 80.0))
        weight = torch.tensor(list(class_weights), dtype=torch.float32) if class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.train_acc = MulticlassAccuracy(n_classes, average="micro")
        self.val_acc = MulticlassAccuracy(n_classes, average="micro")
        self.val_f1 = MulticlassF1Score(n_classes, average="macro")
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of log-mels."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_train_start(self) -> None:
        """Forget the best validation accuracy of the sanity check."""
        self.val_acc_best.reset()

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        a = self.augment
        x = dynamic_range_gain(x, a.gain_db, self.top_db)
        return spec_augment(x, a.freq_masks, a.freq_width, a.time_masks, a.time_width)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """One optimisation step, with augmentations and optional mixup."""
        x, y = batch[0], batch[1]
        x = self._augment(x)
        a = self.augment
        if a.mixup_alpha > 0 and float(torch.rand(())) < a.mixup_prob:
            xm, ya, yb, lam = mixup(x, y, a.mixup_alpha)
            logits = self(xm)
            loss = lam * self.criterion(logits, ya) + (1 - lam) * self.criterion(logits, yb)
        else:
            logits = self(x)
            loss = self.criterion(logits, y)
        self.train_loss(loss)
        self.train_acc(logits.argmax(dim=1), y)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Accumulate validation loss, accuracy and macro-F1."""
        x, y = batch[0], batch[1]
        logits = self(x)
        # unweighted, unsmoothed loss: comparable across runs whatever the training loss was
        loss = nn.functional.cross_entropy(logits, y)
        pred = logits.argmax(dim=1)
        self.val_loss(loss)
        self.val_acc(pred, y)
        self.val_f1(pred, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/macro_f1", self.val_f1, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        """Track the best validation accuracy so far (``val/acc_best``)."""
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        """The optimizer (default Adam 1e-3) and, when configured, an epoch-wise LR scheduler."""
        opt = (
            self._optimizer(params=self.parameters())
            if self._optimizer is not None
            else torch.optim.Adam(self.parameters(), lr=1e-3)
        )
        if self._scheduler is None:
            return opt
        sched = self._scheduler(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
