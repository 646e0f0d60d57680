"""Finding recordings in folders: the one walk used by data sources, ``vocalis predict``, calibration
audio and long-recording generation.

The walk never skips anything silently when asked: a folder it cannot list, a symbolic link loop, a
dangling link or a special file (pipe, socket, device) is handed back with its reason in ``problems``, so
``vocalis predict`` can name every input it did not predict.
"""

from __future__ import annotations

import errno
import os
import stat
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


def describe_os_error(exc: OSError, path: str | Path) -> str:
    """A short reason for an :class:`OSError` on ``path``, in words a user acts on."""
    code = exc.errno
    if code == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    if code == errno.ENAMETOOLONG:
        return f"file name too long ({len(str(path))} characters; the system allows fewer)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.ENOENT:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"dangling symbolic link (its target '{target}' does not exist)"
        return "file not found"
    if code == errno.EISDIR:
        return "is a directory, not an audio file"
    return exc.strerror or type(exc).__name__


def special_file_reason(mode: int) -> str | None:
    """Why a path of this ``st_mode`` is no audio file (a pipe, socket, device), or None for a file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not an audio file"
    kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"not a regular file ({kind}); refusing to read it"


def find_audio_files(
    root: str | Path,
    *,
    recursive: bool = True,
    others: list[Path] | None = None,
    problems: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """The audio files under ``root``, sorted; ``root`` itself when it is a file.

    Hidden files and folders (a name starting with ``.``) are skipped; with ``recursive=False`` only
    ``root``'s own entries are searched. Linked folders are followed once: a link back to a folder already
    searched is a loop. Files that are not audio are left out, and appended to ``others`` when a list is
    given (so a caller can report them). What cannot be searched or is no file (a folder without read
    permission, a link loop, a dangling link, a pipe) is appended to ``problems`` with its reason when a
    list is given. A missing ``root`` gives an empty list.
    """
    base = Path(root)
    if base.is_file():
        return [base]
    if not base.is_dir():
        return []
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()

    def note(path: Path, reason: str) -> None:
        if problems is not None:
            problems.append((path, reason))

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in visited:
                note(folder, "symbolic link loop (leads back to a folder already searched)")
                return
            visited.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            note(folder, f"cannot search the folder: {describe_os_error(exc, folder)}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                mode = entry.stat().st_mode  # follows links: a loop or a dangling link raises here
            except OSError as exc:
                note(path, describe_os_error(exc, path))
                continue
            if stat.S_ISDIR(mode):
                if recursive:
                    walk(path)
            elif not stat.S_ISREG(mode):
                note(path, special_file_reason(mode) or "not a regular file")
            elif is_audio_file(path):
                found.append(path)
            elif others is not None:
                others.append(path)

    walk(base)
    return sorted(found)
