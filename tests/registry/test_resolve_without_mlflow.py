"""Without MLflow a ``models:/`` URI is one clear error naming the extra; a plain directory needs none."""

from __future__ import annotations

import subprocess
import sys

# MLflow made unimportable in a child process (``sys.modules[name] = None`` makes ``import`` fail),
# then the service's own loading path is asked for a models:/ URI and for a plain directory
_SCRIPT = """
import sys
sys.modules["mlflow"] = None
from vocalis.errors import ConfigError
from vocalis.serving.settings import Settings
from vocalis.serving.state import load_model, registry_uri

assert registry_uri(Settings(model_dir="artifacts/x")) is None
assert registry_uri(Settings(model_dir="models:/vocalis@production")) == "models:/vocalis@production"
try:
    load_model(Settings(model_uri="models:/vocalis@production"))
except ConfigError as exc:
    print("ERROR:", exc)
"""


def test_a_models_uri_without_mlflow_names_the_extra_to_install() -> None:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("ERROR: models:/ URIs need MLflow") and "'train' extra" in line, proc.stdout
