"""Fuzzing the API from its OpenAPI schema (schemathesis): no generated request gets a server error.

Hypothesis drives schemathesis's per-operation strategies directly (schemathesis's own pytest plugin does
not work with the pytest release the project pins), against the ASGI app with its model loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings

schemathesis = pytest.importorskip("schemathesis")

pytestmark = pytest.mark.slow

#: generated requests per API operation (bounded: the whole run stays under ~30 s on 2 cores)
EXAMPLES = 25


def test_no_generated_request_is_a_server_error(artifact_dir: Path, tmp_path: Path) -> None:
    app = create_app(
        Settings(
            model_dir=artifact_dir,
            database_url=f"sqlite:///{tmp_path / 'log.db'}",
            threads=1,
            admin_token="fuzz",
        )
    )
    failures: list[str] = []
    seen: dict[str, int] = {}
    with TestClient(app) as client:  # runs the lifespan: the model is loaded for every generated call
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.label for op in operations} >= {
            "POST /v1/predict",
            "POST /v1/predict/batch",
            "GET /v1/model",
        }
        for op in operations:
            _fuzz(client, op, failures, seen)
    assert not failures, "\n".join(failures[:5])
    assert all(n >= 1 for n in seen.values()) and len(seen) == len(operations)


def _fuzz(client: TestClient, op: object, failures: list[str], seen: dict[str, int]) -> None:
    """Send EXAMPLES generated requests for one operation; record any 5xx."""
    label = op.label  # type: ignore[attr-defined]

    @given(case=op.as_strategy())  # type: ignore[attr-defined]
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: object) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")  # type: ignore[attr-defined]
        response = client.request(**kwargs)
        seen[label] = seen.get(label, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.text[:300]} for {kwargs}")

    run()
