"""Export of trained policies to a single safetensors file that ``recrl.Scorer`` loads.

A policy file contains float32 weights under fixed tensor names and, under the key ``"recrl"`` of
the safetensors ``__metadata__`` header, a JSON description: the kind of policy, the network
architecture, the feature order, the categorical vocabularies with their unknown index, the
normalisation statistics, the score fusion and the recrl version. Reading it parses a JSON
header and copies arrays; no code runs, unlike a pickle. ``docs/serving.md`` lists the layout.

Three kinds are supported:

- ``categorical``: a :class:`recrl.nets.CategoricalActor`, with or without its
  :class:`recrl.nets.StateEncoder`; candidate j scores ``<f(s), phi_j>``.
- ``mlp``: a :class:`recrl.nets.MLP` over ``[request features, candidate features]``, one row
  per candidate, whose K outputs are fused into one score when K > 1.
- ``fusion``: no network, K predictions per candidate fused with fixed weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

import recrl
from recrl import _files
from recrl.errors import InvalidArgumentError, ShapeError

if TYPE_CHECKING:
    from torch import nn

    from recrl.nets import MLP, CategoricalActor

__all__ = [
    "FORMAT_VERSION",
    "Fusion",
    "Normalisation",
    "export_categorical_actor",
    "export_fusion",
    "export_mlp",
    "read_policy_metadata",
    "vocabulary_fingerprint",
    "write_policy",
]

logger = logging.getLogger(__name__)

#: Version of the file layout; ``recrl.Scorer`` rejects other versions.
FORMAT_VERSION = 1

#: Raw item id that marks an empty history slot in batched requests.
HISTORY_PADDING = -1


@dataclass(frozen=True)
class Fusion:
    """Fixed weights that turn K per-candidate predictions into one ranking score.

    Attributes:
        weights: w [K], finite.
        mode: ``"sum"`` for ``sum_k w_k p_k``, or ``"product"`` for ``prod_k p_k ** w_k``
            (computed as ``exp(sum_k w_k ln p_k)``; predictions must be >= 0).
        names: optional name of each prediction, such as ``["click", "like"]``.
    """

    weights: Sequence[float]
    mode: str = "sum"
    names: Sequence[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the ``fusion`` entry of the metadata, after checking the fields."""
        if self.mode not in ("sum", "product"):
            raise InvalidArgumentError(
                f"fusion mode: expected 'sum' or 'product', got {self.mode!r}"
            )
        weights = [float(w) for w in self.weights]
        if not weights or not all(np.isfinite(weights)):
            raise InvalidArgumentError(
                f"fusion weights: expected at least one finite weight, got {weights}"
            )
        if self.names is not None and len(self.names) != len(weights):
            raise ShapeError(f"fusion names: expected {len(weights)} names, got {len(self.names)}")
        return {
            "mode": self.mode,
            "weights": weights,
            "names": list(self.names) if self.names is not None else None,
        }


@dataclass(frozen=True)
class Normalisation:
    """Per-feature statistics: the scorer feeds ``(x - mean) / std`` to the network.

    Attributes:
        mean: float [F].
        std: float [F], every value > 0.
    """

    mean: npt.ArrayLike
    std: npt.ArrayLike

    def to_json(self, width: int) -> dict[str, list[float]]:
        """Return the ``normalisation`` entry, checking that it covers ``width`` features."""
        mean = np.asarray(self.mean, dtype=np.float32).ravel()
        std = np.asarray(self.std, dtype=np.float32).ravel()
        if mean.shape != (width,) or std.shape != (width,):
            raise ShapeError(
                f"normalisation: expected mean and std of shape ({width},), "
                f"got {mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise InvalidArgumentError(
                "normalisation: expected finite means and finite standard deviations > 0"
            )
        return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _float32(tensor: Any) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(tensor.detach().cpu().numpy().astype(np.float32))


def _activation_entry(module: nn.Module) -> dict[str, Any]:
    from torch import nn

    if isinstance(module, nn.ReLU):
        return {"name": "relu", "parameter": None}
    if isinstance(module, nn.ELU):
        return {"name": "elu", "parameter": float(module.alpha)}
    if isinstance(module, nn.GELU):
        if module.approximate != "none":
            raise InvalidArgumentError(
                f"activation: only the exact GELU is supported, got approximate="
                f"{module.approximate!r}"
            )
        return {"name": "gelu", "parameter": None}
    if isinstance(module, nn.Tanh):
        return {"name": "tanh", "parameter": None}
    if isinstance(module, nn.LeakyReLU):
        return {"name": "leaky_relu", "parameter": float(module.negative_slope)}
    raise InvalidArgumentError(
        f"activation: expected ReLU, ELU, GELU, Tanh or LeakyReLU, got {type(module).__name__}"
    )


def _mlp_tensors(mlp: MLP, prefix: str) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """Return the tensors and the ``mlp`` metadata entry of an MLP (dropout is skipped)."""
    from torch import nn

    tensors: dict[str, npt.NDArray[Any]] = {}
    widths: list[int] = []
    activations: list[dict[str, Any]] = []
    for module in mlp.layers:
        if isinstance(module, nn.Linear):
            if widths and len(activations) != len(widths) - 1:
                raise InvalidArgumentError(
                    "mlp: expected an activation between every two linear layers"
                )
            position = max(len(widths) - 1, 0)
            if not widths:
                widths.append(module.in_features)
            widths.append(module.out_features)
            tensors[f"{prefix}.{position}.weight"] = _float32(module.weight)
            if module.bias is None:
                tensors[f"{prefix}.{position}.bias"] = np.zeros(module.out_features, np.float32)
            else:
                tensors[f"{prefix}.{position}.bias"] = _float32(module.bias)
        elif isinstance(module, nn.Dropout):
            continue  # identity at inference
        else:
            activations.append(_activation_entry(module))
    if len(widths) < 2 or len(activations) != len(widths) - 2:
        raise InvalidArgumentError(
            "mlp: expected linear layers with one activation between each pair"
        )
    return tensors, {"prefix": prefix, "widths": widths, "activations": activations}


def vocabulary_fingerprint(vocabulary: npt.ArrayLike) -> str:
    """Return the SHA-256 of an item vocabulary's ids as little-endian int64, in hexadecimal."""
    ids = np.ascontiguousarray(np.asarray(vocabulary, dtype="<i8").ravel())
    return hashlib.sha256(ids.tobytes()).hexdigest()


def _check_names(names: Sequence[str] | None, width: int, argument: str) -> list[str]:
    if names is None:
        return [f"{argument}_{i}" for i in range(width)]
    if len(names) != width:
        raise ShapeError(f"{argument}: expected {width} names, got {len(names)}")
    return [str(name) for name in names]


def _metadata(kind: str, **entries: Any) -> dict[str, Any]:
    return {
        "format": "recrl.policy",
        "format_version": FORMAT_VERSION,
        "recrl_version": recrl.__version__,
        "kind": kind,
        **entries,
    }


def write_policy(
    path: str | os.PathLike[str],
    tensors: Mapping[str, npt.NDArray[Any]],
    metadata: Mapping[str, Any],
) -> Path:
    """Write tensors and their JSON description to ``path`` atomically.

    The file appears complete or not at all: it is written to a temporary file in the same
    folder, flushed to disk, then renamed over ``path``.

    Args:
        path: destination ``.safetensors`` file.
        tensors: name to a float32 or int64 array.
        metadata: JSON-serialisable description stored under ``"recrl"``.

    Returns:
        The destination path.
    """
    from safetensors.numpy import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = save(
        {name: np.ascontiguousarray(array) for name, array in tensors.items()},
        metadata={"recrl": json.dumps(metadata, allow_nan=False)},
    )
    _files.write_bytes(path, payload)
    logger.info("wrote %s policy to %s (%d bytes)", metadata.get("kind"), path, len(payload))
    return path


def read_policy_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the JSON description of a policy file without loading its tensors."""
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
    description = header.get("__metadata__", {}).get("recrl")
    if description is None:
        raise InvalidArgumentError(f"policy file {path}: no 'recrl' entry in __metadata__")
    result: dict[str, Any] = json.loads(description)
    return result


def export_categorical_actor(
    actor: CategoricalActor,
    path: str | os.PathLike[str],
    *,
    item_vocabulary: npt.ArrayLike,
    feature_names: Sequence[str] | None = None,
    field_names: Sequence[str] | None = None,
    normalisation: Normalisation | None = None,
) -> Path:
    """Export a categorical actor: candidate j scores ``<f(s), phi_j>``.

    Args:
        actor: the trained actor; its encoder must leave out the current item
            (``include_item=False``) because the item is the action.
        path: destination file.
        item_vocabulary: int64 [V - 1], raw item id of dense index k + 1 (``item_vocabulary``
            of a prepared dataset); index 0 is the unknown item.
        feature_names: names of the numeric state features, in order.
        field_names: names of the categorical fields, in order.
        normalisation: statistics of the numeric features when callers pass raw values;
            ``None`` when they pass values already normalised as in the prepared dataset.

    Returns:
        The destination path.
    """
    vocabulary = np.ascontiguousarray(np.asarray(item_vocabulary, dtype=np.int64).ravel())
    rows = actor.item_embeddings.num_embeddings
    if len(vocabulary) >= rows:
        raise ShapeError(
            f"item_vocabulary: expected at most {rows - 1} ids (the embedding table has {rows} "
            f"rows, index 0 unknown), got {len(vocabulary)}"
        )
    if len(np.unique(vocabulary)) != len(vocabulary):
        raise InvalidArgumentError("item_vocabulary: expected distinct ids, got duplicates")
    tensors, mlp_entry = _mlp_tensors(actor.preference, "preference")
    tensors["item_embeddings"] = _float32(actor.item_embeddings.weight)
    tensors["item_vocabulary"] = vocabulary

    encoder = actor.encoder
    if encoder.include_item:
        raise InvalidArgumentError(
            "actor.encoder: include_item must be False for a categorical actor, whose action "
            "is the item"
        )
    cardinalities: list[int] = []
    if encoder.fields is not None:
        buffer = encoder.fields.get_buffer("cardinalities")
        cardinalities = [int(c) for c in buffer.tolist()]
    names = _check_names(field_names, len(cardinalities), "field")
    if encoder.fields is not None:
        tensors["encoder.fields"] = _float32(encoder.fields.table.weight)
    if encoder.include_history:
        tensors["encoder.items"] = _float32(encoder.items.weight)
    encoder_entry = {
        "numeric_dim": encoder.numeric_dim,
        "embedding_dim": encoder.items.embedding_dim,
        "fields": [
            {"name": name, "cardinality": int(cardinality), "unknown_index": 0}
            for name, cardinality in zip(names, cardinalities)
        ],
        "include_history": encoder.include_history,
        "history_vocabulary_size": encoder.items.num_embeddings,
        "history_padding": HISTORY_PADDING,
        "pooling": "mean over known items",
    }
    metadata = _metadata(
        "categorical",
        state={
            "dim": encoder.numeric_dim,
            "features": _check_names(feature_names, encoder.numeric_dim, "feature"),
            "normalisation": normalisation.to_json(encoder.numeric_dim) if normalisation else None,
        },
        encoder=encoder_entry,
        mlp=mlp_entry,
        candidates={"kind": "item_ids", "vocabulary_size": rows, "unknown_index": 0},
        fusion=None,
        temperature=float(actor.temperature),
    )
    return write_policy(path, tensors, metadata)


def export_mlp(
    mlp: MLP,
    path: str | os.PathLike[str],
    *,
    state_dim: int = 0,
    feature_names: Sequence[str] | None = None,
    normalisation: Normalisation | None = None,
    fusion: Fusion | None = None,
) -> Path:
    """Export an MLP that scores each candidate from ``[request features, candidate features]``.

    Args:
        mlp: the trained network, input width S = ``state_dim`` + candidate features.
        path: destination file.
        state_dim: number of leading inputs shared by all candidates of a request; the rest
            are per candidate.
        feature_names: names of all S inputs, in order.
        normalisation: statistics of all S inputs when callers pass raw values.
        fusion: weights fusing the K outputs; required when K > 1, forbidden when K = 1.

    Returns:
        The destination path.
    """
    if not 0 <= state_dim <= mlp.input_dim:
        raise InvalidArgumentError(
            f"state_dim: expected a value in [0, {mlp.input_dim}], got {state_dim}"
        )
    if (mlp.output_dim > 1) != (fusion is not None):
        raise InvalidArgumentError(
            f"fusion: required exactly when the MLP has more than one output; it has "
            f"{mlp.output_dim} and fusion is {fusion}"
        )
    fusion_entry = fusion.to_json() if fusion is not None else None
    if fusion_entry is not None and len(fusion_entry["weights"]) != mlp.output_dim:
        raise ShapeError(
            f"fusion weights: expected {mlp.output_dim} (one per output), "
            f"got {len(fusion_entry['weights'])}"
        )
    tensors, mlp_entry = _mlp_tensors(mlp, "mlp")
    names = _check_names(feature_names, mlp.input_dim, "feature")
    metadata = _metadata(
        "mlp",
        state={
            "dim": state_dim,
            "features": names,
            "normalisation": normalisation.to_json(mlp.input_dim) if normalisation else None,
        },
        mlp=mlp_entry,
        candidates={"kind": "features", "dim": mlp.input_dim - state_dim},
        fusion=fusion_entry,
    )
    return write_policy(path, tensors, metadata)


def export_fusion(path: str | os.PathLike[str], fusion: Fusion) -> Path:
    """Export a fusion-only policy: each candidate carries K predictions [K].

    Args:
        path: destination file.
        fusion: the weights and mode.

    Returns:
        The destination path.
    """
    entry = fusion.to_json()
    metadata = _metadata(
        "fusion",
        state={"dim": 0, "features": [], "normalisation": None},
        candidates={"kind": "predictions", "dim": len(entry["weights"])},
        fusion=entry,
    )
    # safetensors needs at least one tensor to hold the header; the weights double as a check.
    tensors = {"fusion.weights": np.asarray(entry["weights"], dtype=np.float32)}
    return write_policy(path, tensors, metadata)
