"""A Lightning DataModule over a prepared feature cache (:class:`vocalis.contracts.cache.FeatureCache`).

Batches are read straight from the memory-mapped ``features.npy`` (float16 on disk, float32 out): no
audio is decoded and no log-mel computed while training, so the loader is rarely the bottleneck.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from vocalis.contracts.cache import FeatureCache
from vocalis.data.splits import check_max_per_class, few_shot_indices
from vocalis.errors import CacheError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class CachedWindows(Dataset[tuple[torch.Tensor, int, int]]):
    """The windows ``indices`` of a cache's ``features.npy``: items ``(x [1, n_mels, frames], label, index)``.

    The memory map is opened lazily in each process (a pickled memmap would copy the whole array into
    every worker) and a batch is read with one sorted fancy-index (``__getitems__``), which the
    DataLoader prefers to per-item reads.
    """

    def __init__(self, features_path: str | Path, indices: np.ndarray, labels: np.ndarray) -> None:
        self.features_path = str(features_path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_features"] = None
        return state

    @property
    def features(self) -> np.ndarray:
        """The memory-mapped feature array, opened on first use in this process."""
        if self._features is None:
            self._features = np.load(self.features_path, mmap_mode="r")
        return self._features

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        row = int(self.indices[i])
        x = torch.from_numpy(np.asarray(self.features[row], dtype=np.float32)).unsqueeze(0)
        return x, int(self.labels[i]), row

    def __getitems__(self, items: list[int]) -> list[tuple[torch.Tensor, int, int]]:
        pos = np.asarray(items, dtype=np.int64)
        rows = self.indices[pos]
        order = np.argsort(rows, kind="stable")
        block = np.asarray(self.features[rows[order]], dtype=np.float32)  # one sorted read of the map
        x = np.empty_like(block)
        x[order] = block
        xt = torch.from_numpy(x).unsqueeze(1)
        return [(xt[k], int(self.labels[p]), int(rows[k])) for k, p in enumerate(pos.tolist())]


def _collate(items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, idx = zip(*items, strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), torch.tensor(idx, dtype=torch.long)


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Number of examples of each class."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)


def inverse_frequency_weights(labels: np.ndarray, n_classes: int) -> list[float]:
    """Class weights ``N / (K * count)`` (mean 1 over present classes; absent classes get 0)."""
    counts = class_counts(labels, n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return [float(v) for v in w]


class CacheDataModule(L.LightningDataModule):
    """Train/val/test loaders over a :class:`~vocalis.contracts.cache.FeatureCache`.

    ``balanced_sampler=True`` draws training windows with probability inversely proportional to their
    class frequency (with replacement, one epoch = as many draws as training windows).

    ``max_per_class=N`` (few-shot, ``data.max_per_class``) keeps N training and at most N validation
    recordings per class, drawn with ``seed`` by :func:`vocalis.data.splits.few_shot_indices` (the draw
    transfer heads use); the test split is never reduced.
    """

    def __init__(
        self,
        cache: FeatureCache,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        balanced_sampler: bool = False,
        seed: int = 0,
        max_per_class: int | None = None,
    ) -> None:
        super().__init__()
        self.cache = cache
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.balanced_sampler = balanced_sampler
        self.seed = seed
        self.max_per_class = check_max_per_class(max_per_class)
        self.classes: list[str] = list(cache.classes)
        manifest = cache.manifest
        features_path = Path(cache.dir) / "features.npy"
        if not features_path.is_file():
            raise CacheError(f"{features_path}: feature cache has no features.npy")
        self.datasets: dict[str, CachedWindows] = {}
        labels = manifest.set_index("index")["label_index"]
        for split, indices in few_shot_indices(manifest, self.max_per_class, seed).items():
            self.datasets[split] = CachedWindows(features_path, indices, labels.loc[indices].to_numpy())
        if self.max_per_class:
            log.info(
                "few-shot: at most %d recordings per class, seed %d: %s windows (train/val/test)",
                self.max_per_class,
                seed,
                "/".join(str(len(self.datasets[s])) for s in SPLITS),
            )
        if len(self.datasets["train"]) == 0:
            raise CacheError(f"{cache.dir}: the cache has no training windows")
        shape = tuple(cache.features.shape)
        self.n_mels, self.n_frames = int(shape[1]), int(shape[2])

    @property
    def train_labels(self) -> np.ndarray:
        """Class index of every training window."""
        return self.datasets["train"].labels

    def _loader(self, split: str, shuffle: bool, sampler: Sampler[int] | None = None) -> DataLoader[Any]:
        ds = self.datasets[split]
        g = torch.Generator()
        g.manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=_collate,
            generator=g,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled (or class-balanced) training windows."""
        sampler = None
        if self.balanced_sampler:
            counts = class_counts(self.train_labels, len(self.classes)).astype(np.float64)
            weights = 1.0 / counts[self.train_labels]
            g = torch.Generator()
            g.manual_seed(self.seed)
            sampler = WeightedRandomSampler(
                weights.tolist(), num_samples=len(weights), replacement=True, generator=g
            )
        return self._loader("train", shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader[Any]:
        """Validation windows (the test split stands in when a dataset has no validation split)."""
        split = "val" if len(self.datasets["val"]) else "test"
        return self._loader(split, shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        """Test windows."""
        return self._loader("test", shuffle=False)
