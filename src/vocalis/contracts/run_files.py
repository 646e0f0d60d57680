"""The JSON files of a run directory that later stages read (``run.json``, ``metrics.json``,
``transfer.json``), read one way: a JSON object, or ``{}`` when the file is absent or unreadable."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when the file is missing, unreadable (logged) or not an object.

    Export and registration treat a run's side files as optional facts: a run without ``metrics.json``
    still exports (its card then records no metrics), so a missing file is no error here.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}
