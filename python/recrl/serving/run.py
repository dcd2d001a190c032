"""Export of the actor saved in a training run directory.

A run directory (or the two files given directly) holds:

- ``actor.safetensors``: the actor's ``state_dict()`` written by ``safetensors.torch.save_file``;
- ``actor.json``: how to rebuild it, ``{"class": "CategoricalActor" | "MLP", "config": {...}}``
  where ``config`` contains the constructor arguments (for ``CategoricalActor``: ``encoder`` with
  the :class:`recrl.nets.StateEncoder` arguments, ``hidden_dims``, ``item_vocabulary``,
  ``action_dim``, ``temperature``; for ``MLP``: ``input_dim``, ``hidden_dims``, ``output_dim``,
  ``activation``), and optionally ``dataset`` (the prepared dataset, relative to the run
  directory, whose ``item_vocabulary.npy`` maps item ids), ``feature_names``, ``field_names``,
  ``normalisation`` (``{"mean": [...], "std": [...]}``), and for an MLP ``state_dim`` and
  ``fusion`` (``{"mode": ..., "weights": [...], "names": [...]}``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from recrl.errors import InvalidArgumentError, RecrlIOError
from recrl.serving.export import (
    Fusion,
    Normalisation,
    export_categorical_actor,
    export_mlp,
    vocabulary_fingerprint,
)

__all__ = ["export_run", "locate_actor"]

WEIGHTS_NAME = "actor.safetensors"
DESCRIPTION_NAME = "actor.json"


def locate_actor(source: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return the (weights, description) files of a run directory or of either file.

    Args:
        source: a run directory holding ``actor.safetensors`` and ``actor.json``, or one of
            those two files (the other is looked up beside it).

    Raises:
        RecrlIOError: when a file is missing.
    """
    source = Path(source)
    if source.is_dir():
        weights, description = source / WEIGHTS_NAME, source / DESCRIPTION_NAME
    elif source.suffix == ".json":
        weights, description = source.with_suffix(".safetensors"), source
    else:
        weights, description = source, source.with_suffix(".json")
    for path in (weights, description):
        if not path.is_file():
            raise RecrlIOError(
                f"{path}: not found; expected a run directory with {WEIGHTS_NAME} and "
                f"{DESCRIPTION_NAME}, or those files (recrl tscac writes them for a categorical "
                "TSCAC policy; a Gaussian one is not exported)"
            )
    return weights, description


def _item_vocabulary(
    description: dict[str, Any], base: Path, override: str | os.PathLike[str] | None
) -> np.ndarray[Any, np.dtype[np.int64]]:
    if override is not None:
        path = Path(override)
        if path.is_dir():
            path = path / "item_vocabulary.npy"
    elif description.get("dataset"):
        path = (base / description["dataset"] / "item_vocabulary.npy").resolve()
    else:
        raise InvalidArgumentError(
            "item_vocabulary: the actor description names no dataset; pass the prepared "
            "dataset or its item_vocabulary.npy"
        )
    if not path.is_file():
        raise RecrlIOError(f"{path}: item vocabulary not found")
    vocabulary: np.ndarray[Any, np.dtype[np.int64]] = np.load(path, allow_pickle=False).astype(
        np.int64
    )
    expected = description.get("item_vocabulary_sha256")
    if expected is not None and vocabulary_fingerprint(vocabulary) != expected:
        raise InvalidArgumentError(
            f"item_vocabulary: {path} is not the vocabulary the actor was trained with (SHA-256 "
            f"differs from {expected[:12]}... in actor.json); pass the prepared dataset the run "
            "was trained on"
        )
    return vocabulary


def export_run(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    item_vocabulary: str | os.PathLike[str] | None = None,
) -> Path:
    """Rebuild the actor of a run and export it to ``out``.

    Args:
        source: run directory, ``actor.safetensors`` or ``actor.json``.
        out: destination policy file.
        item_vocabulary: a prepared dataset folder or an ``item_vocabulary.npy`` file, for a
            categorical actor whose description names no dataset.

    Returns:
        The destination path.
    """
    from safetensors.torch import load_file

    from recrl.nets import MLP, CategoricalActor, StateEncoder

    weights_path, description_path = locate_actor(source)
    description: dict[str, Any] = json.loads(description_path.read_text())
    config = description.get("config", {})
    normalisation = (
        Normalisation(**description["normalisation"]) if description.get("normalisation") else None
    )
    state = load_file(str(weights_path))

    kind = description.get("class")
    if kind == "CategoricalActor":
        actor = CategoricalActor(
            StateEncoder(**config["encoder"]),
            config["hidden_dims"],
            config["item_vocabulary"],
            action_dim=config.get("action_dim", 16),
            temperature=config.get("temperature", 1.0),
        )
        actor.load_state_dict(state)
        return export_categorical_actor(
            actor.eval(),
            out,
            item_vocabulary=_item_vocabulary(description, description_path.parent, item_vocabulary),
            feature_names=description.get("feature_names"),
            field_names=description.get("field_names"),
            normalisation=normalisation,
        )
    if kind == "MLP":
        mlp = MLP(
            config["input_dim"],
            config["hidden_dims"],
            config["output_dim"],
            activation=config.get("activation", "relu"),
        )
        mlp.load_state_dict(state)
        fusion = Fusion(**description["fusion"]) if description.get("fusion") else None
        return export_mlp(
            mlp.eval(),
            out,
            state_dim=description.get("state_dim", 0),
            feature_names=description.get("feature_names"),
            normalisation=normalisation,
            fusion=fusion,
        )
    raise InvalidArgumentError(
        f"{description_path}: class: expected 'CategoricalActor' or 'MLP', got {kind!r}"
    )
