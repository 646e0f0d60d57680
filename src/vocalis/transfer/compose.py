"""Export a head trained on a vocalis artifact's ``embedding`` as ONE ONNX graph: the artifact's graph up to
``embedding``, then the head.

The backbone of such a run (``backbone=artifact backbone.path=DIR``) is an ONNX graph already, so, unlike
BirdNET (a TFLite file; see :mod:`vocalis.transfer.export`), nothing stops the artifact from staying one
self-contained graph:

1. the artifact's ``model.onnx`` is cut at its ``embedding`` output: only the nodes ``embedding`` depends on
   are kept (featurizer and network up to the penultimate layer; the old classifier and softmax go);
2. the head's nodes (:meth:`vocalis.transfer.heads.Head.onnx_model`, their names prefixed ``head/``) are
   appended, reading ``embedding``;
3. outputs ``probabilities``, ``logits`` (the head's) and ``embedding`` (the artifact's penultimate layer,
   as every artifact's third output); the input, its dynamic axes and so streams stay the artifact's.

The card starts from the source artifact's (featurizer, rate, window, input length, stream hop) and names
the source (``backbone``: its name, version, digest, licence) and the head. Export checks parity: the new
artifact run by onnxruntime against the backbone (the source artifact's ``embedding``) and the head run
separately (numpy), on real windows of the run's embedding cache.

A head on a two-part artifact (a BirdNET transfer artifact: its ``model.onnx`` is a head that reads the
LiteRT backbone's embedding) cannot be one graph; it is refused with a line saying to train on
``backbone=birdnet``, which is the same embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vocalis import __version__
from vocalis.contracts.card import CARD_FILE, MODEL_FILE, ModelCard
from vocalis.contracts.provenance import git_commit
from vocalis.errors import ArtifactError, ConfigError
from vocalis.transfer.backbones import ARTIFACT_PREFIX, OnnxEmbedder
from vocalis.transfer.heads import HEAD_FILE, Head
from vocalis.transfer.train import TRANSFER_FILE

log = logging.getLogger(__name__)

#: max |Δprob| between the composed artifact and the source artifact's embedding + the head in numpy
PARITY_TOL = 1e-4
PARITY_WINDOWS = 16
#: card fields the composed artifact takes from the source artifact (its graph's first half decides them)
_FROM_SOURCE = (
    "sample_rate",
    "window_s",
    "features",
    "quantization",
    "onnx_opset",
    "input_samples",
    "stream_hop_samples",
)
#: prefix of the head's node, initializer and intermediate value names inside the composed graph
HEAD_PREFIX = "head/"


@dataclass
class ComposedExportResult:
    """The artifact directory, its card, the parity check and the backbone's licence (``quantization``:
    None, the same attributes as :class:`vocalis.export.onnx.ExportResult` has for the CLI's table)."""

    directory: Path
    card: ModelCard
    parity: dict[str, Any]
    licence: str
    quantization: dict[str, Any] | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_artifact_backbone_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a transfer run whose backbone is a vocalis artifact."""
    info = _read_json(Path(run_dir) / TRANSFER_FILE)
    return str((info.get("backbone") or {}).get("name", "")).startswith(ARTIFACT_PREFIX)


def cut_at(model: Any, output: str) -> Any:
    """A copy of ``model`` whose only output is ``output``, keeping only the nodes it depends on.

    Initializers, value infos and graph inputs nothing reads any more are dropped; local functions,
    opset imports and the inputs' (dynamic) shapes are kept.
    """
    import onnx

    graph = model.graph
    produced = {o for node in graph.node for o in node.output}
    if output not in produced and output not in {i.name for i in graph.input}:
        raise ArtifactError(f"the model has no value '{output}' to cut at")
    needed = {output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # values a sub-graph (If, Loop) reads from this scope
                for sub in [attr.g, *attr.graphs]:
                    needed.update(i for n in sub.node for i in n.input if i)
    keep.reverse()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    del g.node[:]
    g.node.extend(keep)
    kept_inits = [t for t in graph.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    kept_vi = [v for v in graph.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(kept_vi)
    outs = [o for o in graph.output if o.name == output]
    del g.output[:]
    g.output.extend(outs)
    return out


def compose(backbone_model: Any, head: Head) -> Any:
    """One ``ModelProto``: ``backbone_model`` up to ``embedding``, then ``head``.

    Outputs ``probabilities``, ``logits`` (the head's, ``[windows, n_classes]``) and ``embedding`` (the
    backbone's). The head is built at the backbone's default-domain opset.
    """
    import onnx

    outputs = {o.name: o for o in backbone_model.graph.output}
    if "embedding" not in outputs:
        raise ArtifactError(
            f"the artifact has no 'embedding' output (outputs: {sorted(outputs)}); re-export it with a "
            "vocalis version that writes one"
        )
    opset = next((o.version for o in backbone_model.opset_import if o.domain in ("", "ai.onnx")), 18)
    cut = cut_at(backbone_model, "embedding")
    head_model = head.onnx_model(opset=int(opset), prefix=HEAD_PREFIX)
    taken = {o for n in cut.graph.node for o in n.output} | {t.name for t in cut.graph.initializer}
    clash = taken & ({o for n in head_model.graph.node for o in n.output} | {"probabilities", "logits"})
    if clash:  # cut_at removed the old classifier; a name left over would make two producers
        raise ArtifactError(f"the artifact's graph up to 'embedding' already defines {sorted(clash)}")
    g = cut.graph
    g.node.extend(head_model.graph.node)
    g.initializer.extend(head_model.graph.initializer)
    embedding = outputs["embedding"]
    del g.output[:]
    g.output.extend([*head_model.graph.output, embedding])
    g.name = f"{g.name or 'artifact'}+{head.kind}_head"
    onnx.checker.check_model(cut)
    return cut


def _source_artifact(run: Path, info: dict[str, Any]) -> Path:
    path = info.get("backbone_artifact") or (info.get("backbone_config") or {}).get("name")
    if not path or not Path(str(path)).is_dir():
        raise ArtifactError(
            f"{run}: the artifact the head was trained on ({path}) is not at hand; its graph is the "
            "first half of the exported model"
        )
    return Path(str(path))


def export_composed(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    name: str | None = None,
    parity_tol: float = PARITY_TOL,
) -> ComposedExportResult:
    """Write the one-graph artifact of a transfer run on a vocalis artifact to ``out_dir``.

    Staged next to ``out_dir`` and moved into place after the checks (parity, the ONNX checker).
    """
    import onnx

    from vocalis.contracts.runtime import onnx_session
    from vocalis.export.onnx import card_metrics, check_destination, replace_dir, write_metadata
    from vocalis.transfer.export import parity_windows

    run = Path(run_dir)
    info = _read_json(run / TRANSFER_FILE)
    if not info:
        raise ArtifactError(f"{run}: not a transfer run ({TRANSFER_FILE} missing or unreadable)")
    source = _source_artifact(run, info)
    src_card = ModelCard.load(source)
    if (src_card.get("backbone") or {}).get("file"):
        raise ConfigError(
            f"{source}: a two-part artifact (its backbone is the separate file "
            f"{src_card.get('backbone', {}).get('file')}) cannot be the first half of one ONNX graph; "
            "train the head on that backbone itself (e.g. backbone=birdnet: the same embedding)"
        )
    backbone = OnnxEmbedder.from_artifact(source, threads=1)
    trained_on = dict(info.get("backbone") or {})
    digest = backbone.describe()["weights_sha256"]
    if trained_on.get("weights_sha256") and trained_on["weights_sha256"] != digest:
        raise ArtifactError(
            f"{run}: {source / MODEL_FILE} differs from the model the head was trained on "
            "(re-exported since?); train the head again on it"
        )
    head = Head.load(run / "checkpoints" / HEAD_FILE)
    if head.embedding_dim != backbone.embedding_dim:
        raise ArtifactError(
            f"{run}: the head reads {head.embedding_dim} values, the artifact's embedding has "
            f"{backbone.embedding_dim}"
        )
    out = Path(out_dir).absolute()
    check_destination(out, overwrite=overwrite)
    model = compose(onnx.load(str(source / MODEL_FILE)), head)
    run_json = _read_json(run / "run.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        onnx.save(model, str(staging / MODEL_FILE))
        head_digest = hashlib.sha256((run / "checkpoints" / HEAD_FILE).read_bytes()).hexdigest()[:12]
        licence = backbone.licence
        card = ModelCard.from_dict(
            {
                # what the graph's first half decides: the source artifact's input, featurizer and format
                **{k: src_card.get(k) for k in _FROM_SOURCE},
                "name": name or run.name,
                "version": head_digest,
                "classes": list(head.classes),
                "hop_s": float(info.get("hop_s") or src_card.hop_s),
                "architecture": f"{src_card.architecture}+{head.kind}",
                "metrics": card_metrics(_read_json(run / "metrics.json")),
                "cache_hash": info.get("cache_hash"),
                "git_commit": run_json.get("git_commit") or git_commit(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "vocalis_version": __version__,
                "parity": {},
                "optimization": {
                    **dict(src_card.optimization),
                    "composed": "the source artifact's graph up to 'embedding' + the head, one ONNX graph",
                },
                "source": {"run_dir": str(run), "checkpoint": str(run / "checkpoints" / HEAD_FILE)},
                "backbone": {
                    "name": backbone.name,
                    "runtime": "onnx (inside model.onnx)",
                    "artifact": str(source),
                    "artifact_name": src_card.name,
                    "artifact_version": src_card.version,
                    "architecture": src_card.architecture,
                    "embedding_dim": backbone.embedding_dim,
                    "sample_rate": src_card.sample_rate,
                    "weights_sha256": digest,
                    "licence": licence,
                    "licence_url": backbone.licence_url,
                },
                "head": {"kind": head.kind, **head.params},
                "licence": src_card.get("licence") or licence,
            },
            where=str(staging / CARD_FILE),
        )
        card.save(staging)
        write_metadata(staging / MODEL_FILE, card)
        # parity: the one graph as onnxruntime runs it against the artifact's embedding + the head in numpy
        windows, kind = parity_windows(
            Path(str(info.get("cache_dir"))), backbone.sample_rate, backbone.window_samples, PARITY_WINDOWS
        )
        session = onnx_session(staging / MODEL_FILE, 1)
        got, got_emb = session.run(["probabilities", "embedding"], {"waveform": windows})
        want_emb = backbone.embed(windows)
        want = head.probabilities(want_emb)
        diff = float(np.max(np.abs(got - want)))
        parity = {
            "max_abs_diff": diff,
            "embedding_max_abs_diff": float(np.max(np.abs(got_emb - want_emb))),
            "tolerance": parity_tol,
            "n_windows": len(windows),
            "windows": kind,
            "against": "the source artifact's embedding (onnxruntime) + the head (numpy)",
        }
        if not diff <= parity_tol:
            raise ArtifactError(
                f"{run}: artifact and backbone+head disagree: max |Δprob| {diff:.3g} > {parity_tol:g}"
            )
        card = ModelCard.from_dict({**card.to_dict(), "parity": parity})
        card.save(staging)
        write_metadata(staging / MODEL_FILE, card)
        for extra in staging.iterdir():
            if extra.name not in (MODEL_FILE, CARD_FILE):
                extra.unlink()
        replace_dir(staging, out, overwrite=overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("exported transfer run %s on artifact %s to %s as one ONNX graph", run, source, out)
    return ComposedExportResult(out, card, parity, licence)
