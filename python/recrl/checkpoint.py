"""Crash-safe training checkpoints: every tensor in safetensors, everything else in JSON.

A checkpoint is a folder with two files:

``state.safetensors``
    module state dicts (``module/<name>/<key>``), optimizer state tensors
    (``optimizer/<name>/<parameter index>/<key>``), the torch CPU and CUDA random states and the
    state of each ``torch.Generator`` as uint8 tensors (``rng/...``, ``generator/<name>``), and
    any extra tensors of the caller (``tensor/<name>``).
``state.json``
    the optimizers' ``param_groups`` and scalar state, scheduler states, Python ``random`` and
    NumPy global states, the state of each ``numpy.random.Generator``, the caller's JSON
    metadata (counters, position in the data, histories). It also records the size and SHA-256
    of ``state.safetensors`` and of every replay buffer file (``files``), and the SHA-256 of the
    document itself (``document_sha256``).

Replay buffers are written beside them by :meth:`recrl.replay.ReplayBuffer.save` (contents,
priorities, write position and sampling generator) into ``replay/<name>/``. Nothing is read
through pickle.

:func:`load_checkpoint` checks the sizes and checksums, the structure of ``state.json`` and the
names, shapes and dtypes of the tensors against the objects it restores before it changes any of
them. Every failure raises :class:`~recrl.errors.RecrlIOError` naming the damaged file. Format 1
checkpoints, written before checksums were recorded, load without the checksum checks.

Writing is atomic at folder level. The files go into a hidden temporary folder beside the
destination and are synced. Then the previous checkpoint is renamed to ``.<name>.old``, the new
folder is renamed into place, and only then is the old one deleted. A crash at any moment
therefore leaves a complete checkpoint under the name or under ``.<name>.old``, and
:func:`load_checkpoint` reads whichever exists.

:class:`RunCheckpoints` organises the checkpoints of a run made of named phases (training
stages, sweep points, epoch loops). A finished phase keeps a record that lets a resumed run
skip it. The running phase has a periodic checkpoint that lets it continue mid-way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

import recrl
from recrl import _files, distributed
from recrl.errors import InvalidArgumentError, RecrlError, RecrlIOError
from recrl.replay import ReplayBuffer

__all__ = [
    "Checkpoint",
    "Phase",
    "RunCheckpoints",
    "TrainingState",
    "checkpoint_path",
    "differing_keys",
    "load_checkpoint",
    "metrics_rows_at_checkpoint",
    "optimizers_of",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
# Format 1 checkpoints lack the ``files`` and ``document_sha256`` checksums and still load.
READABLE_VERSIONS = (1, 2)
TENSOR_FILE = "state.safetensors"
JSON_FILE = "state.json"


@dataclass
class TrainingState:
    """The live objects a checkpoint saves from and restores into, each under a name.

    Attributes:
        modules: networks, target networks included; their ``state_dict`` is saved.
        optimizers: optimizers; tensors of their state go to safetensors, the rest to JSON.
        schedulers: learning-rate schedulers (anything with ``state_dict``/``load_state_dict``
            whose state is plain JSON values).
        generators: NumPy generators; their bit generator state is saved.
        torch_generators: torch generators (data shuffles, noise).
        replay_buffers: replay buffers, saved with ``ReplayBuffer.save``; loading returns new
            buffers in :attr:`Checkpoint.replay_buffers`, because a buffer is rebuilt, not filled.
    """

    modules: dict[str, torch.nn.Module] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    generators: dict[str, np.random.Generator] = field(default_factory=dict)
    torch_generators: dict[str, torch.Generator] = field(default_factory=dict)
    replay_buffers: dict[str, ReplayBuffer] = field(default_factory=dict)


@dataclass
class Checkpoint:
    """The result of :func:`load_checkpoint`, besides the objects it restores in place.

    Attributes:
        path: the folder read (the retired ``.<name>.old`` folder after an interrupted write).
        metadata: the JSON metadata given to :func:`save_checkpoint`.
        tensors: the extra tensors given to :func:`save_checkpoint`, on CPU.
        replay_buffers: the saved replay buffers, rebuilt.
    """

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    replay_buffers: dict[str, ReplayBuffer]


def optimizers_of(owner: object) -> dict[str, torch.optim.Optimizer]:
    """Return the optimizers stored as attributes of ``owner``, by attribute name."""
    return {
        name: value
        for name, value in sorted(vars(owner).items())
        if isinstance(value, torch.optim.Optimizer)
    }


def _to_json(value: Any) -> Any:
    """Convert ``value`` to JSON values, tagging tuples so they come back as tuples."""
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(item) for item in value]}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise InvalidArgumentError(
                f"checkpoint metadata: expected string keys, got {sorted(map(repr, value))}"
            )
        return {key: _to_json(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidArgumentError(
        f"checkpoint metadata: expected JSON values (dict, list, tuple, str, number, bool, "
        f"None), got {type(value).__name__}; pass tensors through tensors="
    )


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(item) for item in value["__tuple__"])
        return {key: _from_json(item) for key, item in value.items()}
    return value


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    # A copy, so tensors that share storage (tied weights, views) save as separate entries.
    return tensor.detach().to("cpu", copy=True).contiguous()


def _collect(
    state: TrainingState, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``state`` into the safetensors entries and the JSON document."""
    entries: dict[str, torch.Tensor] = {}
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "recrl_version": recrl.__version__,
        "modules": {},
        "optimizers": {},
    }

    for name, module in state.modules.items():
        keys = []
        for key, tensor in module.state_dict().items():
            entries[f"module/{name}/{key}"] = _cpu_copy(tensor)
            keys.append(key)
        document["modules"][name] = keys

    for name, optimizer in state.optimizers.items():
        saved = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        tensor_keys: dict[str, list[str]] = {}
        for index, parameter_state in saved["state"].items():
            for key, value in parameter_state.items():
                if isinstance(value, torch.Tensor):
                    entries[f"optimizer/{name}/{index}/{key}"] = _cpu_copy(value)
                    tensor_keys.setdefault(str(index), []).append(key)
                else:
                    scalars.setdefault(str(index), {})[key] = value
        document["optimizers"][name] = {
            "param_groups": saved["param_groups"],
            "tensors": tensor_keys,
            "scalars": scalars,
        }

    document["schedulers"] = {name: s.state_dict() for name, s in state.schedulers.items()}
    document["generators"] = {
        name: generator.bit_generator.state for name, generator in state.generators.items()
    }
    for name, torch_generator in state.torch_generators.items():
        entries[f"generator/{name}"] = torch_generator.get_state()
    document["torch_generators"] = sorted(state.torch_generators)

    # Global generators: Python, NumPy's legacy global state, torch CPU and, when CUDA is in
    # use, every CUDA device. CUDA is not initialised just to read its state.
    document["python_random"] = random.getstate()
    document["numpy_global"] = np.random.get_state(legacy=False)
    entries["rng/torch"] = torch.get_rng_state()
    initialised = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    cuda_states = torch.cuda.get_rng_state_all() if initialised else []
    for device, cuda_state in enumerate(cuda_states):
        entries[f"rng/cuda/{device}"] = cuda_state
    document["cuda_devices"] = len(cuda_states)

    for name, tensor in tensors.items():
        entries[f"tensor/{name}"] = _cpu_copy(tensor)
    document["tensors"] = sorted(tensors)
    document["replay_buffers"] = sorted(state.replay_buffers)
    document["metadata"] = dict(metadata)
    return entries, _to_json(document)


def _retired(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def _remove_stale_staging(directory: Path) -> None:
    """Delete temporary folders that a crashed write of ``directory`` left behind."""
    if not directory.parent.is_dir():
        return
    retired = _retired(directory)
    for path in directory.parent.glob(f".{directory.name}.*"):
        if path != retired and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _digest(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _file_digest(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def _document_digest(document: Mapping[str, Any]) -> str:
    """Return the SHA-256 of ``document`` without its own checksum, in a canonical JSON form.

    The form (sorted keys, no spaces) does not depend on how ``state.json`` is indented, and
    Python's ``json`` writes floats so that they parse back to the same value.
    """
    content = {key: value for key, value in document.items() if key != "document_sha256"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(
    directory: str | Path,
    state: TrainingState,
    *,
    tensors: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state`` plus ``tensors`` and ``metadata`` as the checkpoint folder ``directory``.

    The previous checkpoint in ``directory`` stays readable until the new one is complete (see
    the module documentation). ``state.json`` records the size and SHA-256 of every other file.

    Args:
        directory: the checkpoint folder; its parent is created.
        state: the objects to save.
        tensors: extra tensors (best weights, a shuffled order), any dtype and shape.
        metadata: JSON values (dicts with string keys, lists, tuples, str, numbers, bool, None).

    Returns:
        ``directory``.
    """
    directory = Path(directory)
    entries, document = _collect(state, tensors or {}, metadata or {})
    _remove_stale_staging(directory)
    staging = _files.make_staging_folder(directory)
    try:
        payload = save(entries)
        _files.write_synced(staging / TENSOR_FILE, lambda handle: handle.write(payload))
        files = {TENSOR_FILE: _digest(payload)}
        for name, buffer in state.replay_buffers.items():
            buffer.save(staging / "replay" / name)
        # NOTE: the replay files are written by the compiled core, so their checksums come
        # from reading them back (usually from the page cache) rather than from the bytes sent.
        for path in sorted((staging / "replay").rglob("*")):
            if path.is_file():
                files[path.relative_to(staging).as_posix()] = _file_digest(path)
        document["files"] = files
        document["document_sha256"] = _document_digest(document)
        text = json.dumps(document, indent=1, sort_keys=True) + "\n"
        _files.write_synced(staging / JSON_FILE, lambda handle: handle.write(text.encode()))
        _files.sync_directory(staging)

        retired = _retired(directory)
        if directory.exists():
            shutil.rmtree(retired, ignore_errors=True)
            directory.rename(retired)
        staging.rename(directory)
        _files.sync_directory(directory.parent)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def checkpoint_path(directory: str | Path) -> Path | None:
    """Return the complete checkpoint folder for ``directory``, or None when there is none.

    After a crash between the two renames of a write, the only complete checkpoint is the
    retired ``.<name>.old`` folder. Completeness here means that both files exist; only
    :func:`load_checkpoint` checks their contents.
    """
    directory = Path(directory)
    for candidate in (directory, _retired(directory)):
        if (candidate / JSON_FILE).is_file() and (candidate / TENSOR_FILE).is_file():
            return candidate
    return None


def _restore_optimizer(
    name: str,
    optimizer: torch.optim.Optimizer,
    saved: dict[str, Any],
    entries: dict[str, torch.Tensor],
) -> None:
    parameter_states: dict[int, dict[str, Any]] = {}
    for index, keys in saved["tensors"].items():
        for key in keys:
            parameter_states.setdefault(int(index), {})[key] = entries[
                f"optimizer/{name}/{index}/{key}"
            ]
    for index, values in saved["scalars"].items():
        parameter_states.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": parameter_states, "param_groups": saved["param_groups"]})
    # Loaded moments are contiguous, but a parameter stored transposed (a strided view) had
    # moments with its strides. Fused optimizer kernels pair elements by memory position.
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == parameter.shape
                    and value.stride() != parameter.stride()
                ):
                    state[key] = torch.empty_like(parameter).copy_(value)


def _written_folder(directory: Path) -> Path | None:
    """Return ``directory`` or its retired copy, whichever exists first, or None.

    A checkpoint folder only appears under its name once complete, so an existing folder with
    a missing file is damaged, not unfinished.
    """
    for candidate in (directory, _retired(directory)):
        if candidate.is_dir():
            return candidate
    return None


def _damaged(file: Path, folder: Path, problem: str) -> RecrlIOError:
    return RecrlIOError(
        f"{file}: damaged checkpoint: {problem}. Delete the folder {folder} and resume again "
        "to redo that work from the checkpoint before it, or start a new run in another output "
        "folder (--out)"
    )


# Top-level keys of state.json and the JSON type each must have.
DOCUMENT_KEYS: dict[str, type | tuple[type, ...]] = {
    "modules": dict,
    "optimizers": dict,
    "schedulers": dict,
    "generators": dict,
    "torch_generators": list,
    "python_random": dict,
    "numpy_global": dict,
    "cuda_devices": int,
    "tensors": list,
    "replay_buffers": list,
    "metadata": dict,
}


def _read_document(folder: Path) -> dict[str, Any]:
    """Read and check ``folder/state.json``, raising RecrlIOError when it is damaged."""
    file = folder / JSON_FILE
    try:
        raw = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise _damaged(file, folder, "the file is missing") from None
    except OSError as error:
        raise _damaged(file, folder, f"cannot be read ({error.strerror})") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(file, folder, f"invalid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise _damaged(file, folder, f"expected a JSON object, got {type(raw).__name__}")

    version = raw.get("format_version")
    if version not in READABLE_VERSIONS:
        raise RecrlIOError(
            f"{file}: checkpoint format {version!r}, this recrl {recrl.__version__} reads "
            f"formats {list(READABLE_VERSIONS)}; resume with the recrl version that wrote it, "
            "or start a new run in another output folder (--out)"
        )
    if version >= 2:
        if raw.get("document_sha256") != _document_digest(raw):
            raise _damaged(file, folder, "SHA-256 mismatch of the document (edited or damaged)")
        if not isinstance(raw.get("files"), dict):
            raise _damaged(file, folder, "missing key 'files' (the checksums of the other files)")

    for key, kind in DOCUMENT_KEYS.items():
        if key not in raw:
            raise _damaged(file, folder, f"missing key {key!r}")
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            raise _damaged(
                file, folder, f"key {key!r} has the wrong type {type(raw[key]).__name__}"
            )
    document: dict[str, Any] = _from_json(raw)
    return document


def _verify_files(folder: Path, document: dict[str, Any]) -> None:
    """Compare the size and SHA-256 of every file listed in ``document`` with the disk."""
    listed = document.get("files")
    if listed is None:
        # Format 1: nothing to compare with, but the tensor file must exist.
        if not (folder / TENSOR_FILE).is_file():
            raise _damaged(folder / TENSOR_FILE, folder, "the file is missing")
        return
    if TENSOR_FILE not in listed:
        raise _damaged(folder / JSON_FILE, folder, f"'files' lacks {TENSOR_FILE}")
    for name, expected in listed.items():
        file = folder / name
        if not isinstance(expected, dict) or set(expected) != {"size", "sha256"}:
            raise _damaged(folder / JSON_FILE, folder, f"invalid 'files' entry for {name!r}")
        try:
            actual = _file_digest(file)
        except FileNotFoundError:
            raise _damaged(file, folder, "the file is missing") from None
        except OSError as error:
            raise _damaged(file, folder, f"cannot be read ({error.strerror})") from error
        if actual["size"] != expected["size"]:
            problem = f"size {actual['size']} bytes, expected {expected['size']}"
            raise _damaged(file, folder, f"{problem} (truncated or overwritten)")
        if actual["sha256"] != expected["sha256"]:
            raise _damaged(file, folder, "SHA-256 mismatch (the bytes changed after writing)")


def _required_entries(document: dict[str, Any], state: TrainingState) -> list[str]:
    """Return the safetensors keys that restoring ``state`` from ``document`` reads."""
    keys = ["rng/torch"]
    keys += [f"rng/cuda/{device}" for device in range(document["cuda_devices"])]
    for name in state.modules:
        keys += [f"module/{name}/{key}" for key in document["modules"][name]]
    for name in state.optimizers:
        for index, tensor_keys in document["optimizers"][name]["tensors"].items():
            keys += [f"optimizer/{name}/{index}/{key}" for key in tensor_keys]
    keys += [f"generator/{name}" for name in state.torch_generators]
    keys += [f"tensor/{name}" for name in document["tensors"]]
    return keys


def _check_modules(
    document: dict[str, Any], entries: dict[str, torch.Tensor], state: TrainingState
) -> str | None:
    """Return what differs between the saved module tensors and ``state.modules``, or None."""
    for name, module in state.modules.items():
        expected = module.state_dict()
        saved = document["modules"][name]
        missing = sorted(set(expected) - set(saved))
        unexpected = sorted(set(saved) - set(expected))
        if missing or unexpected:
            return (
                f"module {name!r} does not match: keys missing from the checkpoint {missing}, "
                f"keys the module lacks {unexpected}"
            )
        for key in saved:
            tensor, target = entries[f"module/{name}/{key}"], expected[key]
            if tensor.shape != target.shape or tensor.dtype != target.dtype:
                return (
                    f"module {name!r} tensor {key!r}: saved {tuple(tensor.shape)} {tensor.dtype}, "
                    f"the module has {tuple(target.shape)} {target.dtype}"
                )
    return None


@dataclass
class _Opened:
    """A checkpoint folder whose files passed the checks, not yet restored."""

    path: Path
    document: dict[str, Any]
    entries: dict[str, torch.Tensor]


def _open_folder(folder: Path, load_tensors: bool) -> _Opened:
    document = _read_document(folder)
    _verify_files(folder, document)
    if not load_tensors:
        return _Opened(folder, document, {})
    file = folder / TENSOR_FILE
    try:
        entries = load_file(str(file), device="cpu")
    except FileNotFoundError:
        raise _damaged(file, folder, "the file is missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _damaged(file, folder, f"invalid safetensors file ({error})") from error
    return _Opened(folder, document, entries)


def _open_checkpoint(directory: Path, *, fall_back: bool, load_tensors: bool = True) -> _Opened:
    """Find, read and check the checkpoint at ``directory``.

    With ``fall_back``, a damaged ``directory`` gives way to its retired ``.<name>.old`` copy
    when that one passes the checks.
    """
    folder = _written_folder(directory)
    if folder is None:
        raise RecrlIOError(f"{directory}: no checkpoint found (state.json and state.safetensors)")
    if folder != directory:
        logger.warning(
            "%s: reading the previous checkpoint %s (a write was interrupted)", directory, folder
        )
    try:
        return _open_folder(folder, load_tensors)
    except RecrlIOError as error:
        retired = _retired(directory)
        if not fall_back or folder == retired or not retired.is_dir():
            raise
        try:
            opened = _open_folder(retired, load_tensors)
        except RecrlIOError:
            raise error from None
        logger.warning("%s; reading the previous checkpoint %s instead", error, retired)
        return opened


def _check_names(kind: str, saved: Any, requested: Mapping[str, Any], path: Path) -> None:
    missing = sorted(set(requested) - set(saved))
    if missing:
        raise RecrlIOError(
            f"{path}: the checkpoint has no {kind} {missing}; it has {sorted(saved)}"
        )


def _check_against(opened: _Opened, state: TrainingState) -> None:
    """Raise unless ``opened`` contains every object of ``state`` with matching tensors."""
    path, document, entries = opened.path, opened.document, opened.entries
    _check_names("modules", document["modules"], state.modules, path)
    _check_names("optimizers", document["optimizers"], state.optimizers, path)
    _check_names("schedulers", document["schedulers"], state.schedulers, path)
    _check_names("generators", document["generators"], state.generators, path)
    _check_names("torch generators", document["torch_generators"], state.torch_generators, path)
    try:
        absent = [key for key in _required_entries(document, state) if key not in entries]
        saved_group_sizes = {
            name: [len(group["params"]) for group in document["optimizers"][name]["param_groups"]]
            for name in state.optimizers
        }
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise _damaged(path / JSON_FILE, path, f"invalid structure ({error!r})") from None
    if absent:
        raise _damaged(path / TENSOR_FILE, path, f"missing tensors {absent[:5]}")
    for name, optimizer in state.optimizers.items():
        saved_sizes = saved_group_sizes[name]
        sizes = [len(group["params"]) for group in optimizer.param_groups]
        if saved_sizes != sizes:
            raise _damaged(
                path / JSON_FILE,
                path,
                f"optimizer {name!r} has parameter groups of sizes {sizes}, saved {saved_sizes}",
            )
    mismatch = _check_modules(document, entries, state)
    if mismatch is not None:
        raise _damaged(path / TENSOR_FILE, path, mismatch)


def _restore(opened: _Opened, state: TrainingState, restore_global_generators: bool) -> Checkpoint:
    path, document, entries = opened.path, opened.document, opened.entries
    for name, module in state.modules.items():
        keys = document["modules"][name]
        module.load_state_dict({key: entries[f"module/{name}/{key}"] for key in keys})

    for name, optimizer in state.optimizers.items():
        _restore_optimizer(name, optimizer, document["optimizers"][name], entries)

    for name, scheduler in state.schedulers.items():
        scheduler.load_state_dict(document["schedulers"][name])

    for name, generator in state.generators.items():
        saved = document["generators"][name]
        kind = type(generator.bit_generator).__name__
        if saved["bit_generator"] != kind:
            raise RecrlIOError(
                f"{path}: generator {name!r} was a {saved['bit_generator']}, got a {kind}"
            )
        generator.bit_generator.state = saved

    for name, torch_generator in state.torch_generators.items():
        torch_generator.set_state(entries[f"generator/{name}"])

    if restore_global_generators:
        _restore_global_generators(document, entries)

    buffers = {}
    for name in document["replay_buffers"]:
        try:
            buffers[name] = ReplayBuffer.load(path / "replay" / name)
        except RecrlError as error:
            raise _damaged(path / "replay" / name, path, str(error)) from error
    tensors = {name: entries[f"tensor/{name}"] for name in document["tensors"]}
    return Checkpoint(path, document["metadata"], tensors, buffers)


def load_checkpoint(
    directory: str | Path,
    state: TrainingState | None = None,
    *,
    restore_global_generators: bool = True,
    fall_back: bool = False,
) -> Checkpoint:
    """Restore ``state`` in place from the checkpoint folder ``directory``.

    Every object named in ``state`` must be in the checkpoint, with module tensors of the same
    names, shapes and dtypes. The files are checked against the sizes and checksums in
    ``state.json`` before any object changes. Replay buffers are rebuilt and returned rather
    than restored in place.

    Args:
        directory: a folder written by :func:`save_checkpoint`.
        state: the objects to restore; None reads the metadata and tensors only.
        restore_global_generators: also set the Python, NumPy global, torch and CUDA states.
        fall_back: read the retired ``.<name>.old`` copy, with a logged warning, when
            ``directory`` is damaged and the copy passes the checks.

    Raises:
        RecrlIOError: There is no checkpoint at ``directory``, a file is missing, truncated,
            invalid or changed, or the checkpoint lacks a named object or has tensors that do
            not fit it. The message names the file and the folder to delete.
    """
    opened = _open_checkpoint(Path(directory), fall_back=fall_back)
    return _load_opened(opened, state or TrainingState(), restore_global_generators)


def _load_opened(
    opened: _Opened, state: TrainingState, restore_global_generators: bool
) -> Checkpoint:
    _check_against(opened, state)
    try:
        return _restore(opened, state, restore_global_generators)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        # The checks above cover the known ways a file can be damaged; this catches the rest,
        # after some objects may already have been restored.
        raise _damaged(
            opened.path / JSON_FILE, opened.path, f"cannot restore ({error!r})"
        ) from error


def _restore_global_generators(document: dict[str, Any], entries: dict[str, torch.Tensor]) -> None:
    random.setstate(document["python_random"])
    numpy_state = document["numpy_global"]
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(entries["rng/torch"])
    devices = document["cuda_devices"]
    # NOTE: no test covers the CUDA states; the tests run on CPU.
    if devices and torch.cuda.is_available():
        available = min(devices, torch.cuda.device_count())
        torch.cuda.set_rng_state_all([entries[f"rng/cuda/{i}"] for i in range(available)])


def differing_keys(stored: Any, requested: Any, prefix: str = "") -> list[str]:
    """Return the dotted keys whose values differ between two nested mappings.

    Lists compare as whole values; a key present on one side only counts as differing.
    """
    if not isinstance(stored, dict) or not isinstance(requested, dict):
        return [] if _to_json(stored) == _to_json(requested) else [prefix or "(root)"]
    keys = []
    for key in sorted(set(stored) | set(requested)):
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in stored or key not in requested:
            keys.append(name)
        else:
            keys.extend(differing_keys(stored[key], requested[key], name))
    return keys


METRICS_ROWS = "metrics_rows"


def metrics_rows_at_checkpoint(root: str | Path) -> int:
    """Return the ``metrics.csv`` rows logged up to the latest checkpoint under ``root``.

    The count is the largest recorded by the periodic checkpoint and the finished phases (row
    counts only grow during a run); 0 when no checkpoint recorded one. A resumed run keeps
    these rows and logs again what came after.
    """
    root = Path(root)
    documents = []
    if _written_folder(root / "current") is not None:
        current = _open_checkpoint(root / "current", fall_back=True, load_tensors=False)
        documents.append(current.document)
    # Hidden folders are retired copies and staging folders of interrupted writes.
    phases = sorted(path for path in (root / "phases").glob("*") if not path.name.startswith("."))
    for folder in phases:
        found = _written_folder(folder)
        if found is not None:
            documents.append(_read_document(found))
    counts = [0]
    for document in documents:
        counts.append(int(document["metadata"].get(METRICS_ROWS, 0)))
    return max(counts)


class RunCheckpoints:
    """The checkpoints of a run made of named phases, in ``root``.

    Layout::

        root/phases/<phase>/   state at the end of each finished phase, kept for resuming
        root/current/          the latest periodic checkpoint of the running phase
        root/best/             the best validation state of the running phase

    A phase name is a ``/``-separated path such as ``seed0/tscac/stage_one``, unique within the
    run. Phases run in the same order on every run of the same configuration. A resumed run
    executes the code between phases again (model construction, evaluation), so that code may
    draw random numbers only from generators that the phases restore.

    Args:
        root: the checkpoint folder, usually ``<run>/checkpoints``; None writes and reads
            nothing, for callers that train without a run folder.
        every: steps between periodic checkpoints of a phase; 0 writes none.
        resume: read the finished phases and the current checkpoint; false starts afresh and
            deletes what ``root`` holds.
        metrics_rows: returns the number of rows of the run's ``metrics.csv`` so far. Each
            checkpoint records it, so a resumed run keeps exactly the rows logged up to its
            checkpoint (see :func:`metrics_rows_at_checkpoint`).

    Under torchrun every rank reads the checkpoints and rank 0 alone writes them, because the
    ranks hold the same parameters, optimizer states and generators after every step.
    """

    def __init__(
        self,
        root: str | Path | None,
        *,
        every: int = 0,
        resume: bool = False,
        metrics_rows: Callable[[], int] | None = None,
    ) -> None:
        if every < 0:
            raise InvalidArgumentError(f"every: expected a step count >= 0, got {every}")
        self.root = None if root is None else Path(root)
        self.every = every if root is not None else 0
        self.resume = resume and root is not None
        self.writes = distributed.is_main()
        self.metrics_rows = metrics_rows
        if self.root is not None and self.writes:
            if not resume and self.root.exists():
                shutil.rmtree(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
        distributed.barrier()

    @property
    def enabled(self) -> bool:
        """Whether checkpoints are written (a root folder was given)."""
        return self.root is not None

    def folder(self, name: str) -> Path:
        """Return ``root / name``; raises when checkpoints are disabled."""
        if self.root is None:
            raise InvalidArgumentError("checkpoints: disabled (root is None), no folder to use")
        return self.root / name

    def phase(self, name: str, state: TrainingState) -> Phase:
        """Return the phase ``name``, whose checkpoints save and restore ``state``."""
        return Phase(self, name, state)

    def phase_folder(self, name: str) -> Path:
        """Return the folder of the record of the finished phase ``name``."""
        parts = name.split("/")
        if not name or any(part in ("", ".", "..") for part in parts):
            raise InvalidArgumentError(f"phase: expected a name like seed0/stage_one, got {name!r}")
        return self.folder("phases") / "--".join(parts)


class Phase:
    """One named phase of a run: skipped when finished, continued when interrupted.

    Use ``completed`` and ``restore_completed`` to skip a finished phase, ``resume`` at the
    start of the loop, ``due``/``save`` inside the loop and ``complete`` at its end.
    """

    def __init__(self, checkpoints: RunCheckpoints, name: str, state: TrainingState) -> None:
        self.checkpoints = checkpoints
        self.name = name
        self.state = state
        self.folder = checkpoints.phase_folder(name) if checkpoints.enabled else None

    @property
    def completed(self) -> bool:
        """Whether a resumed run finished this phase before."""
        if self.folder is None or not self.checkpoints.resume:
            return False
        # An existing but damaged record counts as finished, so that restoring it raises.
        return _written_folder(self.folder) is not None

    def restore_completed(self) -> dict[str, Any]:
        """Restore the state at the end of the finished phase and return its metadata."""
        if self.folder is None:
            raise InvalidArgumentError(f"phase {self.name}: checkpoints are disabled")
        logger.info("resume: phase %s finished before; loading its final state", self.name)
        return load_checkpoint(self.folder, self.state).metadata

    def resume(self) -> Checkpoint | None:
        """Restore the latest periodic checkpoint of this phase, or return None if none exists."""
        if not self.checkpoints.resume:
            return None
        current = self.checkpoints.folder("current")
        if _written_folder(current) is None:
            return None
        opened = _open_checkpoint(current, fall_back=True)
        if opened.document["metadata"].get("phase") != self.name:
            return None
        checkpoint = _load_opened(opened, self.state, restore_global_generators=True)
        logger.info(
            "resume: phase %s continues after step %d", self.name, checkpoint.metadata["step"]
        )
        return checkpoint

    def due(self, step: int) -> bool:
        """Return True when a periodic checkpoint is due after ``step``."""
        return self.checkpoints.every > 0 and step % self.checkpoints.every == 0

    def save(
        self,
        step: int,
        *,
        tensors: Mapping[str, torch.Tensor] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the periodic checkpoint after ``step``."""
        if not self.checkpoints.writes:
            return
        values = {**(metadata or {}), "phase": self.name, "step": step, **self._rows()}
        save_checkpoint(
            self.checkpoints.folder("current"), self.state, tensors=tensors, metadata=values
        )
        logger.debug("checkpoint of phase %s after step %d", self.name, step)

    def save_best(self, step: int, score: float, module: torch.nn.Module) -> None:
        """Write ``module``'s weights as the phase's best-on-validation checkpoint."""
        if self.checkpoints.every <= 0 or not self.checkpoints.writes:
            return
        save_checkpoint(
            self.checkpoints.folder("best"),
            TrainingState(modules={"model": module}),
            metadata={"phase": self.name, "step": step, "validation_score": score},
        )

    def complete(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Record the phase as finished with the current state and ``metadata``."""
        if self.folder is None or not self.checkpoints.writes:
            return
        values = {**(metadata or {}), "phase": self.name, **self._rows()}
        save_checkpoint(self.folder, self.state, metadata=values)

    def _rows(self) -> dict[str, int]:
        count = self.checkpoints.metrics_rows
        return {} if count is None else {METRICS_ROWS: count()}
