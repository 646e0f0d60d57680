"""Heads: small classifiers on backbone embeddings (multinomial logistic regression or a one-layer MLP).

A head is standardisation followed by dense layers (ReLU between them), stored as plain arrays
(``head.npz``) so that it runs in numpy, becomes an ONNX graph in a few nodes (:meth:`Head.to_onnx`) and
needs neither torch nor scikit-learn to be read. scikit-learn fits it (:func:`fit_head`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

HEAD_KINDS = ("logistic", "mlp")
HEAD_FILE = "head.npz"


@dataclass
class Head:
    """``(embedding - mean) / scale``, then dense layers ``z @ W + b`` with ReLU between them."""

    kind: str
    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    params: dict[str, Any]

    @property
    def embedding_dim(self) -> int:
        """Input size."""
        return int(self.mean.shape[0])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """``float32 [n, n_classes]``."""
        z = (np.asarray(embeddings, np.float32) - self.mean) / self.scale
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = z @ w + b
            if k < len(self.weights) - 1:
                z = np.maximum(z, 0.0)
        return z.astype(np.float32)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Softmax of :meth:`logits`."""
        z = self.logits(embeddings)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write ``head.npz`` (arrays, the kind, classes and fit parameters as JSON)."""
        path = Path(path)
        arrays: dict[str, Any] = {"mean": self.mean, "scale": self.scale}
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{k}"], arrays[f"b{k}"] = w, b
        meta = {
            "kind": self.kind,
            "classes": self.classes,
            "layers": len(self.weights),
            "params": self.params,
        }
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Head:
        """Read ``head.npz``; :class:`ArtifactError` when it is missing or not a head."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                n = int(meta["layers"])
                return cls(
                    kind=str(meta["kind"]),
                    classes=list(meta["classes"]),
                    mean=data["mean"].astype(np.float32),
                    scale=data["scale"].astype(np.float32),
                    weights=[data[f"w{k}"].astype(np.float32) for k in range(n)],
                    biases=[data[f"b{k}"].astype(np.float32) for k in range(n)],
                    params=dict(meta.get("params") or {}),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a readable transfer head ({exc})") from None

    def onnx_model(self, opset: int = 18, prefix: str = "") -> Any:
        """The head as an ONNX ``ModelProto``: input ``embedding [batch, D]`` -> ``probabilities``,
        ``logits``; every other name (initializers, intermediate values) starts with ``prefix``, so the
        nodes can join another graph that already has names of its own (:mod:`vocalis.transfer.compose`)."""
        from onnx import TensorProto, helper, numpy_helper

        def n(name: str) -> str:
            return f"{prefix}{name}"

        inits = [
            numpy_helper.from_array(self.mean.astype(np.float32), n("mean")),
            numpy_helper.from_array(self.scale.astype(np.float32), n("scale")),
        ]
        nodes = [
            helper.make_node("Sub", ["embedding", n("mean")], [n("centered")], name=n("sub")),
            helper.make_node("Div", [n("centered"), n("scale")], [n("z0")], name=n("div")),
        ]
        z = n("z0")
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            inits += [
                numpy_helper.from_array(w.astype(np.float32), n(f"w{k}")),
                numpy_helper.from_array(b.astype(np.float32), n(f"b{k}")),
            ]
            last = k == len(self.weights) - 1
            out = "logits" if last else n(f"h{k}")
            nodes += [
                helper.make_node("MatMul", [z, n(f"w{k}")], [n(f"mm{k}")], name=n(f"matmul{k}")),
                helper.make_node(
                    "Add", [n(f"mm{k}"), n(f"b{k}")], [out if last else n(f"pre{k}")], name=n(f"add{k}")
                ),
            ]
            if not last:
                nodes.append(helper.make_node("Relu", [n(f"pre{k}")], [out], name=n(f"relu{k}")))
            z = out
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1, name=n("softmax")))
        n_classes = len(self.classes)
        graph = helper.make_graph(
            nodes,
            f"{self.kind}_head",
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", self.embedding_dim])],
            [
                helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes]),
                helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes]),
            ],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        return model

    def to_onnx(self, path: str | Path, opset: int = 18) -> Path:
        """The head as ONNX: input ``embedding [batch, D]`` -> outputs ``probabilities``, ``logits``."""
        import onnx

        model = self.onnx_model(opset)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        return Path(path)


def _dense_from_sklearn(
    coefs: list[np.ndarray], intercepts: list[np.ndarray], n_classes: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """scikit-learn's layers; a two-class model's single output unit becomes two softmax logits."""
    ws = [np.asarray(c, np.float32) for c in coefs]
    bs = [np.asarray(b, np.float32).reshape(-1) for b in intercepts]
    if n_classes == 2 and ws[-1].shape[1] == 1:  # sigmoid(z) == softmax([0, z])[1]
        ws[-1] = np.concatenate([np.zeros_like(ws[-1]), ws[-1]], axis=1)
        bs[-1] = np.concatenate([np.zeros_like(bs[-1]), bs[-1]])
    return ws, bs


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    classes: list[str],
    *,
    kind: str = "logistic",
    c: float = 1.0,
    hidden: int = 256,
    max_iter: int = 2000,
    seed: int = 0,
) -> Head:
    """Fit one head with inverse L2 strength ``c`` (for the MLP: ``alpha = 1 / (c * n)``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if kind not in HEAD_KINDS:
        raise ConfigError(f"head.kind: '{kind}' is not one of {', '.join(HEAD_KINDS)}")
    x = np.asarray(x_train, np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # constant features (dead ReLU units) stay 0 instead of dividing by 0
    z = (x - mean) / scale
    # every class index present in the labels, so scikit-learn's output columns are the classes' order
    present = sorted(set(np.asarray(y_train).tolist()))
    if present != list(range(len(classes))):
        missing = [classes[k] for k in range(len(classes)) if k not in present]
        raise ConfigError(f"the training split has no windows of {missing}: every class needs some")
    if kind == "logistic":
        model = LogisticRegression(C=c, max_iter=max_iter)
        model.fit(z, y_train)
        ws, bs = _dense_from_sklearn([model.coef_.T], [model.intercept_], len(classes))
    else:
        model = MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=1.0 / (c * len(z)), max_iter=max_iter, random_state=seed
        )
        model.fit(z, y_train)
        ws, bs = _dense_from_sklearn(model.coefs_, model.intercepts_, len(classes))
    return Head(
        kind=kind,
        classes=list(classes),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        weights=ws,
        biases=bs,
        params={"C": c, "hidden": hidden if kind == "mlp" else None, "max_iter": max_iter, "seed": seed},
    )
