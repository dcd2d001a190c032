"""Saving and loading RMTL models as safetensors weights beside JSON metadata (no pickle).

A model ``NAME`` is two files: ``NAME.safetensors`` (the state dict) and ``NAME.json`` (what
is needed to rebuild the module: the architecture, the input sizes and the task names). Both
are written to a temporary file, synced and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from recrl import _files
from recrl.errors import RecrlIOError
from recrl.nets.mtl import BackboneConfig, FeatureSpec, MultiTaskBackbone, build_backbone
from recrl.rmtl.config import CriticConfig
from recrl.rmtl.critics import CriticTrainer

__all__ = [
    "load_backbone",
    "load_critics",
    "save_backbone",
    "save_critics",
    "write_json",
    "write_text",
]

_FORMAT = "recrl.rmtl/1"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and a rename."""
    _files.write_text(path, text)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, atomically."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _save_state(path: Path, module: torch.nn.Module) -> None:
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    try:
        save_file(state, temporary, metadata={"format": _FORMAT})
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_metadata(path: Path) -> dict[str, Any]:
    json_path = path.with_suffix(".json")
    weights_path = path.with_suffix(".safetensors")
    for required in (json_path, weights_path):
        if not required.is_file():
            raise RecrlIOError(f"{required}: not found; expected a model saved by recrl.rmtl")
    metadata: dict[str, Any] = json.loads(json_path.read_text())
    if metadata.get("format") != _FORMAT:
        raise RecrlIOError(
            f"{json_path}: format {metadata.get('format')!r}, this recrl reads {_FORMAT!r}"
        )
    return metadata


def save_backbone(path: str | Path, model: MultiTaskBackbone) -> None:
    """Save ``model`` as ``path.safetensors`` and ``path.json``."""
    path = Path(path)
    _save_state(path.with_suffix(".safetensors"), model)
    write_json(
        path.with_suffix(".json"),
        {
            "format": _FORMAT,
            "kind": "backbone",
            "backbone": model.config.to_dict(),
            "features": {**model.spec.__dict__, "cardinalities": list(model.spec.cardinalities)},
        },
    )


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> MultiTaskBackbone:
    """Rebuild a backbone saved by :func:`save_backbone`, in evaluation mode."""
    path = Path(path)
    metadata = _read_metadata(path)
    model = build_backbone(
        FeatureSpec.from_dict(metadata["features"]),
        BackboneConfig.from_dict(metadata["backbone"]),
    )
    model.load_state_dict(load_file(path.with_suffix(".safetensors")))
    return model.to(device).eval()


def save_critics(path: str | Path, trainer: CriticTrainer, spec: FeatureSpec, tasks: int) -> None:
    """Save the online and target critics of ``trainer`` as one safetensors file and JSON."""
    path = Path(path)
    holder = torch.nn.ModuleDict({"online": trainer.critics, "target": trainer.target_critics})
    _save_state(path.with_suffix(".safetensors"), holder)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in trainer.config.__dict__.items()}
    write_json(
        path.with_suffix(".json"),
        {
            "format": _FORMAT,
            "kind": "critics",
            "critic": config,
            "tasks": tasks,
            "features": {**spec.__dict__, "cardinalities": list(spec.cardinalities)},
        },
    )


def load_critics(path: str | Path, device: str | torch.device = "cpu") -> CriticTrainer:
    """Rebuild the critics saved by :func:`save_critics`, online and target."""
    path = Path(path)
    metadata = _read_metadata(path)
    settings: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in metadata["critic"].items()
    }
    config = CriticConfig(**settings)
    trainer = CriticTrainer(
        FeatureSpec.from_dict(metadata["features"]), int(metadata["tasks"]), config
    )
    holder = torch.nn.ModuleDict({"online": trainer.critics, "target": trainer.target_critics})
    holder.load_state_dict(load_file(path.with_suffix(".safetensors")))
    return trainer.to(device)
