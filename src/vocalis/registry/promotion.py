"""Moving a version to a stage: ``staging`` directly, ``production`` only through the gate.

:func:`promote` is the core of ``vocalis registry promote``. For production it resolves the candidate and
the current production version to local artifacts, picks the frozen evaluation set (the option, the gate
config, the set recorded at the last production promotion, or for a first promotion the candidate's test
split), runs :func:`vocalis.registry.gate.run_gate`, writes the report, logs it to the candidate's run and
tags the version with the verdict. The alias moves only when every check passed, or with ``force`` and a
``reason`` (recorded as the tags ``vocalis.force.reason`` and ``vocalis.force.by``).
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from vocalis.errors import ConfigError
from vocalis.registry.gate import EvalSet, GateConfig, GateResult, load_eval_set, run_gate, write_report
from vocalis.registry.registry import STAGES, TAG, ModelRef, Registry, RegistryError, VersionInfo
from vocalis.registry.resolve import resolve_model

log = logging.getLogger(__name__)

EVAL_SET_TAG = TAG + "gate.eval_set"
EVAL_HASH_TAG = TAG + "gate.eval_hash"
EVAL_SPLIT_TAG = TAG + "gate.eval_split"


@dataclass
class PromotionResult:
    """What a promotion did: the alias moved or not, the gate's result and where its report is."""

    name: str
    version: str
    stage: str
    promoted: bool
    forced: bool
    gate: GateResult | None = None
    report_md: Path | None = None
    report_json: Path | None = None
    previous: str | None = None


def _actor() -> str:
    """Who promotes: the CI actor when in GitHub Actions, else the local user."""
    return os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or getpass.getuser()


def promote(
    name: str,
    version: str,
    stage: str,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    reason: str | None = None,
    config: GateConfig | None = None,
    report_dir: str | Path = "registry-reports",
    cache_dir: str | Path | None = None,
) -> PromotionResult:
    """Point ``stage`` at ``name``/``version``; production only through the gate (see the module docstring).

    Raises:
        ConfigError: unknown stage; ``force`` without ``reason``.
        RegistryError: unknown model or version, unreachable store.
        DatasetError: the evaluation set cannot be read or its frozen content changed.
    """
    if stage not in STAGES:
        raise ConfigError(f"--to: choose one of {', '.join(STAGES)}, got '{stage}'")
    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason TEXT: a forced promotion records who and why")
    registry = Registry(tracking_uri)
    candidate = registry.get(ModelRef(name, version=str(version)))
    current = registry.alias_version(name, stage)
    if stage == "staging":
        registry.set_alias(name, candidate.version, stage)
        if force:
            registry.set_version_tags(name, candidate.version, _force_tags(reason or ""))
        return PromotionResult(
            name, candidate.version, stage, True, force, previous=current.version if current else None
        )

    config = config or GateConfig()
    cand = resolve_model(
        ModelRef(name, version=candidate.version).uri, tracking_uri=registry.tracking_uri, cache_dir=cache_dir
    )
    prod_dir = prod_label = None
    if current is not None and current.version != candidate.version:
        prod = resolve_model(
            ModelRef(name, version=current.version).uri,
            tracking_uri=registry.tracking_uri,
            cache_dir=cache_dir,
        )
        prod_dir, prod_label = prod.directory, prod.label
    eval_set = _pick_eval_set(registry, name, current, cand.directory, config)
    result = run_gate(cand.directory, cand.label, prod_dir, prod_label, eval_set, config)

    promoted = result.passed or force
    decision = "promoted" if result.passed else ("promoted (forced)" if force else "refused")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    md, js = write_report(
        result,
        Path(report_dir),
        f"{name}-v{candidate.version}-{stamp}-gate",
        decision,
        reason if force else None,
    )
    uris = registry.attach(candidate, [md, js], f"gate/v{candidate.version}-{stamp}")
    tags: dict[str, object] = {
        TAG + "gate.result": "pass" if result.passed else "fail",
        TAG + "gate.failed": ",".join(c.name for c in result.failed),
        TAG + "gate.report": uris[0] if uris else str(md.resolve()),
        TAG + "gate.at": result.created,
        TAG + "gate.accuracy": result.candidate.metrics["accuracy"],
        TAG + "gate.macro_f1": result.candidate.metrics["macro_f1"],
        TAG + "gate.windows_per_s": round(result.candidate.windows_per_s, 1),
        TAG + "gate.compared_with": result.production.label
        if result.production
        else "none (first promotion)",
    }
    if promoted:
        tags.update(
            {
                EVAL_SET_TAG: eval_set.source,
                EVAL_HASH_TAG: eval_set.hash,
                EVAL_SPLIT_TAG: eval_set.split or "",
            }
        )
    if force:
        tags.update(_force_tags(reason or ""))
    registry.set_version_tags(name, candidate.version, tags)
    registry.client.update_model_version(name, candidate.version, description=md.read_text()[:4900])
    if promoted:
        registry.set_alias(name, candidate.version, stage)
        # the frozen set of the next promotion is the one this version was judged on
        registry.set_model_tags(
            name,
            {
                EVAL_SET_TAG: eval_set.source,
                EVAL_HASH_TAG: eval_set.hash,
                EVAL_SPLIT_TAG: eval_set.split or "",
            },
        )
    return PromotionResult(
        name,
        candidate.version,
        stage,
        promoted,
        force and not result.passed,
        result,
        md,
        js,
        previous=current.version if current else None,
    )


def _force_tags(reason: str) -> dict[str, object]:
    return {
        TAG + "force.reason": reason,
        TAG + "force.by": _actor(),
        TAG + "force.at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _pick_eval_set(
    registry: Registry, name: str, current: VersionInfo | None, candidate_dir: Path, config: GateConfig
) -> EvalSet:
    """The option/config's set, else the one frozen at the last production promotion, else the
    candidate's test split (first promotion)."""
    from vocalis.contracts.card import ModelCard
    from vocalis.errors import DatasetError

    if config.eval_set:
        return load_eval_set(config.eval_set, config.eval_split)
    tags = registry.model_tags(name)
    if current is not None and tags.get(EVAL_SET_TAG):
        frozen = load_eval_set(tags[EVAL_SET_TAG], tags.get(EVAL_SPLIT_TAG) or config.eval_split)
        if frozen.hash != tags.get(EVAL_HASH_TAG):
            raise DatasetError(
                f"{tags[EVAL_SET_TAG]}: the frozen evaluation set changed since it was recorded "
                f"(sha256 {tags.get(EVAL_HASH_TAG, '')[:12]} then, {frozen.hash[:12]} now); "
                "pass --eval-set to choose a set on purpose"
            )
        return frozen
    cache_dir = (ModelCard.load(candidate_dir).source or {}).get("cache_dir")
    if not cache_dir or not Path(cache_dir).is_dir():
        raise DatasetError(
            "no evaluation set: pass --eval-set MANIFEST|CACHE (the candidate's card names no feature cache "
            "on this machine to take its test split from)"
        )
    note = (
        "first promotion: the candidate's own test split"
        if current is None
        else "no frozen set was recorded with production: the candidate's test split"
    )
    return load_eval_set(cache_dir, config.eval_split, note=note)


__all__ = ["PromotionResult", "RegistryError", "promote"]
