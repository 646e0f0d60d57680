"""CLI commands of the data stage: ``vocalis data synth``, ``prepare`` and ``longfile``.

Thin wrappers: parse, call :mod:`vocalis.data`, render with rich. Heavy imports (torch, hydra) happen
inside the command bodies so that ``vocalis --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from vocalis.cli.caches import print_cache
from vocalis.cli.progress import stage_progress

#: progress and messages go to stderr; the summary of what a command made (its result) to stdout
console = Console(stderr=True)
out_console = Console()

data_app = typer.Typer(
    help="Datasets and the feature cache: generate synthetic data, prepare features.",
    no_args_is_help=True,
)


@data_app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Where to write the class-per-folder tree of WAV/FLAC files."),
    classes: int = typer.Option(8, "--classes", help="Number of call types (2-8)."),
    per_class: int = typer.Option(50, "--per-class", help="Clips per call type."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes byte-identical files."),
    force: bool = typer.Option(False, "--force", help="Rewrite even if OUT_DIR already holds this set."),
) -> None:
    """Generate the synthetic marine-mammal-like dataset (1-5 s clips, mixed sample rates, 0-20 dB SNR)."""
    import time

    from vocalis.data.synthetic import SynthSpec, generate

    spec = SynthSpec(classes=classes, per_class=per_class, seed=seed)
    t0 = time.perf_counter()
    with console.status(f"writing {classes * per_class} clips to {out_dir}"):
        generate(out_dir, spec, force=force)
    out_console.print(
        f"[green]synthetic data[/] {classes} classes x {per_class} clips in {out_dir} "
        f"({time.perf_counter() - t0:.1f} s): {', '.join(spec.labels)}"
    )


@data_app.command(
    "prepare",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def prepare(
    overrides: list[str] = typer.Argument(
        None, help="Hydra overrides, e.g. data=folder data.root=DIR paths.cache_dir=/tmp/cache"
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the cache is current."),
) -> None:
    """Decode, window and featurize a dataset into the feature cache (does nothing if it is current)."""
    from omegaconf import OmegaConf

    from vocalis.configs import compose_config
    from vocalis.data.prepare import prepare_from_config
    from vocalis.errors import ConfigError

    cfg = compose_config(list(overrides or []))
    try:
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
        paths_cfg = OmegaConf.to_container(cfg.paths, resolve=True)
    except Exception as exc:  # a missing mandatory value (data.root=???) and the like
        key = getattr(exc, "full_key", None)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config: {key + ': ' if key else ''}{first}") from None
    if not isinstance(data_cfg, dict) or not isinstance(paths_cfg, dict):
        raise ConfigError("config: the data and paths groups must be mappings")
    bar, progress = stage_progress(console)
    with bar:
        cache = prepare_from_config(
            {str(k): v for k, v in data_cfg.items()},
            {str(k): v for k, v in paths_cfg.items()},
            seed=int(cfg.get("seed", 42)),
            force=force,
            progress=progress,
        )
    print_cache(out_console, cache, kind="cache")


@data_app.command("longfile")
def longfile(
    output: Path = typer.Argument(..., help="The WAV file to write (and OUTPUT.truth.csv next to it)."),
    minutes: float = typer.Option(60.0, "--minutes", min=0.0, help="Length of the recording."),
    source_dir: Path | None = typer.Option(
        None, "--from", help="Folder of recordings whose calls are pasted in (default: synthetic chirps)."
    ),
    sample_rate: int = typer.Option(32_000, "--sample-rate", min=1, help="Sample rate of the file, Hz."),
    calls_per_minute: float = typer.Option(6.0, "--calls-per-minute", min=0.0, help="Mean call rate."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same file."),
) -> None:
    """Write a long field-like recording (noise with calls at random times) for demos and benchmarks.

    Written block by block in bounded memory, as 16-bit PCM; OUTPUT.truth.csv lists what was pasted where.
    """
    from vocalis.data.long_recording import write_long_recording
    from vocalis.errors import DatasetError

    if source_dir is not None and not source_dir.is_dir():
        raise DatasetError(f"{source_dir}: --from must be a folder of recordings")
    with console.status(f"writing {minutes:g} min to {output}"):
        path = write_long_recording(
            output,
            minutes * 60,
            sample_rate=sample_rate,
            source_dir=source_dir,
            calls_per_minute=calls_per_minute,
            seed=seed,
        )
    out_console.print(
        f"wrote {path} ({minutes:g} min at {sample_rate} Hz) and {path.name}.truth.csv", highlight=False
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.add_typer(data_app, name="data")
