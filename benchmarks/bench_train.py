"""Training throughput on the CPU: samples per second per model, and the share of step time spent waiting
for data with 0, 1 and 2 DataLoader workers, side by side in one run.

    uv run python benchmarks/bench_train.py                  # synthetic demo cache (prepared if needed)
    uv run python benchmarks/bench_train.py --cache DIR      # any prepared feature cache

The loop is a plain PyTorch training loop over :class:`vocalis.data.datamodule.CacheDataModule` (the
loader training uses), so "data wait" is exactly the time ``next(iterator)`` blocks. ``--per-item`` also
measures the loader without its batched ``__getitems__`` read (the profiling "before").
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vocalis.data.datamodule import CacheDataModule, CachedWindows, _collate
from vocalis.models import build_model


class PerItemWindows(CachedWindows):
    """The dataset without the batched read: one memmap read and one tensor per window."""

    def __getitems__(self, items: list[int]) -> list[tuple[torch.Tensor, int, int]]:  # type: ignore[override]
        return [self[i] for i in items]


def open_cache(cache_dir: str | None, root: Path) -> Any:
    """The cache at ``cache_dir``, or the demo's synthetic cache under ``root`` (prepared when missing)."""
    if cache_dir:
        from vocalis.contracts.cache import FeatureCache

        return FeatureCache.open(cache_dir)
    from vocalis.training.config import compose_config
    from vocalis.training.train import prepare_data

    return prepare_data(compose_config(["experiment=demo", f"paths.root_dir={root}"]))


def run(net: torch.nn.Module, loader: DataLoader[Any], steps: int, warmup: int = 2) -> tuple[float, float]:
    """Train ``steps`` steps; return (samples/s, share of time waiting for data)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    wait = compute = 0.0
    n = 0
    it = iter(loader)
    for step in range(steps + warmup):
        t0 = time.perf_counter()
        try:
            x, y, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, y, _ = next(it)
        t1 = time.perf_counter()
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if step >= warmup:
            wait += t1 - t0
            compute += t2 - t1
            n += len(y)
    return n / (wait + compute), wait / (wait + compute)


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", help="a prepared feature cache directory")
    ap.add_argument("--root", default="/tmp/vocalis-bench", help="project root for the demo cache")
    ap.add_argument("--models", default="compact_small,compact,resnet18,resnet34")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--per-item", action="store_true", help="also time the per-item loader (no __getitems__)")
    args = ap.parse_args()
    torch.manual_seed(0)
    cache = open_cache(args.cache, Path(args.root))
    dm = CacheDataModule(cache, batch_size=args.batch_size, num_workers=0)
    n_classes = len(cache.classes)
    print(
        f"cache {cache.dir} ({len(dm.datasets['train'])} train windows, {dm.n_mels}x{dm.n_frames}); "
        f"batch {args.batch_size}; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, no GPU"
    )
    widths = {"compact_small": {"width": 8}, "compact": {"width": 16}}
    print(f"{'model':<14} {'params':>8} {'workers':>7} {'loader':>9} {'samples/s':>10} {'data wait':>10}")
    for name in args.models.split(","):
        arch = "compact" if name.startswith("compact") else name
        net = build_model(arch, n_classes, dm.n_mels, dm.n_frames, **widths.get(name, {}))
        params = sum(p.numel() for p in net.parameters())
        for workers in [int(w) for w in args.workers.split(",")]:
            kinds = ["batched", "per-item"] if args.per_item else ["batched"]
            for kind in kinds:
                ds = dm.datasets["train"]
                if kind == "per-item":
                    ds = PerItemWindows(ds.features_path, ds.indices, ds.labels)
                loader = DataLoader(
                    ds,
                    batch_size=args.batch_size,
                    shuffle=True,
                    num_workers=workers,
                    collate_fn=_collate,
                    persistent_workers=workers > 0,
                )
                sps, share = run(net, loader, args.steps)
                print(
                    f"{name:<14} {params:>8d} {workers:>7d} {kind:>9} {sps:>10.1f} {share:>9.1%}", flush=True
                )
    # the loader alone: how fast batches come out of the memmap with no model in the way
    for kind in ("batched", "per-item"):
        ds = dm.datasets["train"]
        if kind == "per-item":
            ds = PerItemWindows(ds.features_path, ds.indices, ds.labels)
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=0, collate_fn=_collate)
        t0 = time.perf_counter()
        count = sum(len(b[1]) for _, b in zip(range(50), loader, strict=False))
        dt = time.perf_counter() - t0
        print(
            f"loader only, {kind:<8}: {count / dt:>9.0f} windows/s ({dt / max(count, 1) * 1e6:.0f} us/window)"
        )


if __name__ == "__main__":
    main()
