"""Saving and loading trained methods as safetensors weights plus a JSON description."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save, save_file

import recrl
from recrl import _files
from recrl.errors import RecrlIOError
from recrl.nets import CategoricalActor
from recrl.serving.export import vocabulary_fingerprint
from recrl.tscac.agents import METHODS, Method, build_method
from recrl.tscac.config import CONFIG_CLASSES, config_from_dict
from recrl.tscac.data import ProblemSpec

__all__ = ["load_method", "save_actor_for_serving", "save_method", "write_text_atomically"]


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and a rename."""
    _files.write_text(path, text)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return a config dataclass as plain JSON values."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(config).items()
    }


def save_method(method: Method, directory: str | Path, name: str) -> Path:
    """Write ``method`` as ``name.safetensors`` and ``name.json`` into ``directory``.

    Returns:
        The path of the weights file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {
        key: value.detach().cpu().contiguous().clone() for key, value in method.state_dict().items()
    }
    path = directory / f"{name}.safetensors"
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    os.close(descriptor)
    try:
        save_file(weights, temporary, metadata={"method": method.method_name})
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    description = {
        "method": method.method_name,
        "config": config_to_dict(method.config),
        "spec": method.spec.to_dict(),
        "recrl_version": recrl.__version__,
    }
    write_text_atomically(directory / f"{name}.json", json.dumps(description, indent=2) + "\n")
    return path


def load_method(directory: str | Path, name: str, device: torch.device | str = "cpu") -> Method:
    """Rebuild the method saved as ``name`` in ``directory`` and load its weights."""
    directory = Path(directory)
    description_path = directory / f"{name}.json"
    if not description_path.is_file():
        raise RecrlIOError(f"{description_path}: not found; save the method with save_method")
    description = json.loads(description_path.read_text())
    method_name = description["method"]
    if method_name not in METHODS:
        raise RecrlIOError(f"{description_path}: unknown method {method_name!r}")
    config = config_from_dict(CONFIG_CLASSES[method_name], description["config"])
    spec = ProblemSpec.from_dict(description["spec"])
    method = build_method(method_name, spec, config)
    method.load_state_dict(load_file(str(directory / f"{name}.safetensors")))
    return method.to(device)


def save_actor_for_serving(
    actor: CategoricalActor, directory: str | Path, dataset_path: str | Path
) -> Path:
    """Write ``actor`` as ``actor.safetensors`` and ``actor.json`` for ``recrl export``.

    ``actor.json`` names the class, the constructor arguments and the prepared dataset (relative
    to ``directory``) whose item vocabulary maps raw item ids to the actor's item indices, with
    the SHA-256 of that vocabulary so that an export can refuse another dataset's.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {
        name: tensor.detach().cpu().contiguous() for name, tensor in actor.state_dict().items()
    }
    _files.write_bytes(directory / "actor.safetensors", save(weights))
    vocabulary = np.load(Path(dataset_path) / "item_vocabulary.npy", allow_pickle=False)
    description = {
        "class": "CategoricalActor",
        "config": actor.constructor_arguments,
        "dataset": os.path.relpath(Path(dataset_path).resolve(), directory.resolve()),
        "item_vocabulary_sha256": vocabulary_fingerprint(vocabulary),
    }
    _files.write_text(directory / "actor.json", json.dumps(description, indent=2) + "\n")
    return directory / "actor.json"
