"""Finding recordings in folders: the one walk used by data sources, ``vocalis predict``, calibration
audio and long-recording generation."""

from __future__ import annotations

from pathlib import Path

#: File name endings taken as audio when a folder is searched (case-insensitive): what libsndfile reads.
#: Anything else (README, CSV, images) is not a recording; a file named explicitly is always tried,
#: whatever its ending.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd"}
    | {".caf", ".w64", ".rf64", ".sd2", ".voc"}
)


def is_audio_file(path: Path) -> bool:
    """Whether ``path``'s ending is one of :data:`AUDIO_EXTENSIONS`."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def find_audio_files(
    root: str | Path, *, recursive: bool = True, others: list[Path] | None = None
) -> list[Path]:
    """The audio files under ``root``, sorted; ``root`` itself when it is a file.

    Hidden files and folders (a name starting with ``.``) are skipped; with ``recursive=False`` only
    ``root``'s own entries are searched. Files that are not audio are left out, and appended to ``others``
    when a list is given (so a caller can report them). A missing ``root`` gives an empty list.
    """
    base = Path(root)
    if base.is_file():
        return [base]
    if not base.is_dir():
        return []
    found = []
    for path in sorted(base.rglob("*") if recursive else base.iterdir()):
        if any(part.startswith(".") for part in path.relative_to(base).parts) or not path.is_file():
            continue
        if is_audio_file(path):
            found.append(path)
        elif others is not None:
            others.append(path)
    return found
