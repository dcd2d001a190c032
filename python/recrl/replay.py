"""Replay buffer with uniform, prioritized and sequence sampling, backed by ``recrl._core``.

Layout:
    Transitions live in a ring of ``capacity`` slots over contiguous float32 arrays held by
    Rust. The next observation of slot ``i`` is the observation of slot ``(i + 1) % capacity``,
    which contains the next step of the same episode, so observations are stored once. When a step
    ends its episode (``terminals`` or ``truncations`` set), its final next observation is
    written into the following slot, a boundary slot that is never sampled. Each episode thus
    uses one slot more than its number of steps. A step whose episode goes on is pending (not
    sampled) until the next step of the episode is added.

Sampling:
    ``sample`` draws uniformly with or without replacement. ``sample_prioritized`` draws slot
    ``i`` with probability ``p_i^alpha / sum_j p_j^alpha`` and returns importance weights
    ``w_i = (N P(i))^-beta / max_j w_j``, the maximum taken over every sampleable slot
    (Schaul et al., "Prioritized Experience Replay", ICLR 2016, Eq. (1) and Sec. 3.4). New
    transitions get the largest priority among sampleable transitions, or 1 when there is none.
    ``sample_sequences`` draws windows of ``length`` consecutive steps of one episode.

Priority updates:
    Each batch carries ``indices`` and ``stamps``, the insertion counter of each slot. Passing
    the stamps to ``update_priorities`` rejects updates of slots overwritten since they were
    sampled. Without stamps, an update is rejected when the slot's current transition has never
    been sampled. Rejected updates are counted in ``stale_updates``.

Threads and memory:
    ``extend``, sampling and ``update_priorities`` may run from several Python threads at once:
    the Rust store sits behind a read-write lock and releases the GIL while it works. Several
    Rust threads gather each batch into output tensors that each Python thread allocates once
    per batch shape and then reuses. A batch is therefore valid until the same thread draws the
    next batch of the same kind and shape; set ``reuse_outputs=False`` to get fresh tensors. The
    tensors share memory with the arrays Rust fills (``torch.from_numpy`` semantics), and are
    pinned when ``pin_memory=True`` and CUDA is available.

Limitations:
    Actions, rewards and extras are float32. Steps of one episode must be added in order, with
    no step of another episode in between. ``save`` keeps extends and priority updates of other
    threads waiting until it finishes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import torch

from recrl import _core
from recrl.errors import InvalidArgumentError, ShapeError

__all__ = ["ReplayBatch", "ReplayBuffer", "SumTree"]

logger = logging.getLogger(__name__)

ArrayLike = Union[npt.ArrayLike, torch.Tensor]


def _ready(values: ArrayLike, dtype: type[np.generic]) -> bool:
    # A contiguous 1-D array of the right dtype passes as it is, which keeps the per-batch cost
    # of the common case to a few attribute reads.
    return (
        type(values) is np.ndarray
        and values.dtype == dtype
        and values.ndim == 1
        and values.flags.c_contiguous
    )


def _integers(name: str, values: ArrayLike) -> npt.NDArray[np.int64]:
    if _ready(values, np.int64):
        return values  # type: ignore[return-value]
    array = np.asarray(_to_numpy(values))
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InvalidArgumentError(f"{name}: expected integers, got dtype {array.dtype}")
    # Unsigned values above the int64 range would wrap around to negative ones.
    if array.size and array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"{name}: {array.max()} does not fit in int64")
    return np.ascontiguousarray(array, dtype=np.int64).reshape(-1)


def _floats(name: str, values: ArrayLike) -> npt.NDArray[np.float64]:
    if _ready(values, np.float64):
        return values  # type: ignore[return-value]
    array = np.asarray(_to_numpy(values))
    if array.size and not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise InvalidArgumentError(f"{name}: expected numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64).reshape(-1)


def _leaf(index: int) -> int:
    # Checked here so that a negative index is named, not a failed unsigned conversion.
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InvalidArgumentError(f"index: expected an integer >= 0, got {index!r}")
    return int(index)


class SumTree:
    """A sum tree over float64 leaves that also keeps their smallest positive value and maximum.

    Draws leaf ``i`` with probability ``value_i / total`` through :meth:`find_prefix_many` on
    uniform masses in ``[0, total)``, as prioritized replay does. Each node has eight children,
    so a walk over a million leaves reads 7 cache lines.

    Args:
        capacity: Number of leaves, at least 1. Every leaf starts at 0.
    """

    def __init__(self, capacity: int) -> None:
        self._tree = _core.SumTree(_count("capacity", capacity))

    @property
    def capacity(self) -> int:
        """Number of leaves."""
        return self._tree.capacity

    def set(self, index: int, value: float) -> None:
        """Set leaf ``index`` to a finite ``value >= 0``, at most :meth:`max_value`."""
        self._tree.set(_leaf(index), value)

    def max_value(self) -> float:
        """Return the largest leaf value accepted, so that the sum of all leaves stays finite."""
        return self._tree.max_value()

    def set_many(self, indices: ArrayLike, values: ArrayLike) -> None:
        """Set leaf ``indices[i]`` to ``values[i]``. A repeated index keeps its last value.

        Every index and value is checked before any leaf changes.

        Raises:
            InvalidArgumentError: An index outside ``[0, capacity)``, a value that is not finite
                and ``>= 0``, or arrays that are not integers and numbers.
            ShapeError: Arrays of different lengths.
        """
        self._tree.set_many(_integers("indices", indices), _floats("values", values))

    def get(self, index: int) -> float:
        """Return leaf ``index``."""
        return self._tree.get(_leaf(index))

    def total(self) -> float:
        """Return the sum of all leaves."""
        return self._tree.total()

    def min_positive(self) -> float:
        """Return the smallest positive leaf, or infinity when every leaf is 0."""
        return self._tree.min_positive()

    def max(self) -> float:
        """Return the largest leaf, or 0 when every leaf is 0."""
        return self._tree.max()

    def find_prefix(self, mass: float) -> int:
        """Return the leaf ``i`` whose prefix sums satisfy ``sum[:i] <= mass < sum[:i + 1]``.

        Raises:
            InvalidArgumentError: ``mass`` outside ``[0, total)``.
        """
        return self._tree.find_prefix(mass)

    def find_prefix_many(self, masses: ArrayLike) -> npt.NDArray[np.int64]:
        """Return the leaf of every mass, as :meth:`find_prefix` does, int64 ``[B]``.

        Raises:
            InvalidArgumentError: A mass outside ``[0, total)``.
        """
        return self._tree.find_prefix_many(_floats("masses", masses))


@dataclass(frozen=True)
class ReplayBatch:
    """A batch of transitions as CPU tensors (leading dims ``[B]``, or ``[B, T]`` for sequences).

    Attributes:
        observations: float32 ``[..., S]``.
        actions: float32 ``[..., A]``.
        rewards: float32 ``[..., K]``.
        next_observations: float32 ``[..., S]``.
        terminals: bool ``[...]``, the step ended its episode in a terminal state.
        truncations: bool ``[...]``, the episode was cut at this step without a terminal state.
        extras: float32 ``[..., width]`` per extra column name.
        indices: int64 ``[...]`` slots the rows came from.
        stamps: int64 ``[...]`` insertion stamps of those slots, for ``update_priorities``.
        weights: float32 ``[B]`` importance weights of prioritized sampling, else ``None``.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    truncations: torch.Tensor
    extras: dict[str, torch.Tensor]
    indices: torch.Tensor
    stamps: torch.Tensor
    weights: torch.Tensor | None


class _Outputs:
    """Output tensors of one batch shape and the NumPy views over them that Rust fills."""

    def __init__(
        self,
        leading: tuple[int, ...],
        spec: _core.ReplayStore,
        weights: bool,
        pin_memory: bool,
    ) -> None:
        def empty(width: int | None, dtype: torch.dtype) -> torch.Tensor:
            shape = leading if width is None else (*leading, width)
            return torch.empty(shape, dtype=dtype, pin_memory=pin_memory)

        self.tensors: dict[str, torch.Tensor] = {
            "observations": empty(spec.observation_dim, torch.float32),
            "next_observations": empty(spec.observation_dim, torch.float32),
            "actions": empty(spec.action_dim, torch.float32),
            "rewards": empty(spec.reward_dim, torch.float32),
            "terminals": empty(None, torch.bool),
            "truncations": empty(None, torch.bool),
            "indices": empty(None, torch.int64),
            "stamps": empty(None, torch.int64),
        }
        if weights:
            self.tensors["weights"] = torch.empty(leading[:1], dtype=torch.float32)
        self.extra_names = [name for name, _ in spec.extras]
        for name, width in spec.extras:
            self.tensors[name] = empty(width, torch.float32)
        self.arrays = {name: tensor.numpy() for name, tensor in self.tensors.items()}
        # The tensors never change, so one batch object serves every draw into them.
        self.batch = self._make_batch()

    def _make_batch(self) -> ReplayBatch:
        tensors = self.tensors
        return ReplayBatch(
            observations=tensors["observations"],
            actions=tensors["actions"],
            rewards=tensors["rewards"],
            next_observations=tensors["next_observations"],
            terminals=tensors["terminals"],
            truncations=tensors["truncations"],
            extras={name: tensors[name] for name in self.extra_names},
            indices=tensors["indices"],
            stamps=tensors["stamps"],
            weights=tensors.get("weights"),
        )


def _float_rows(name: str, values: ArrayLike, width: int) -> np.ndarray:
    array = np.ascontiguousarray(_to_numpy(values), dtype=np.float32)
    if array.ndim == 1 and width == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != width:
        raise ShapeError(f"{name}: expected shape (B, {width}), got {array.shape}")
    return array


def _flags(name: str, values: ArrayLike | None, rows: int) -> np.ndarray:
    if values is None:
        return np.zeros(rows, dtype=np.bool_)
    array = np.ascontiguousarray(_to_numpy(values), dtype=np.bool_)
    if array.shape != (rows,):
        raise ShapeError(f"{name}: expected shape ({rows},), got {array.shape}")
    return array


def _count(name: str, value: int) -> int:
    # Checked before any output tensor is allocated, which a negative size would break.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name}: expected an integer of at least 1, got {value!r}")
    return int(value)


def _to_numpy(values: ArrayLike) -> Any:
    if isinstance(values, torch.Tensor):
        # A CPU tensor outside autograd, such as the indices of a batch, converts directly.
        if values.is_cpu and not values.requires_grad:
            return values.numpy()
        return values.detach().cpu().numpy()
    return values


class ReplayBuffer:
    """A transition store over contiguous arrays with uniform, prioritized and sequence sampling.

    See the module documentation for the slot layout, episode ends and thread safety.

    Args:
        capacity: Number of slots, at least 2. Each episode also uses one boundary slot.
        observation_dim: Observation width S.
        action_dim: Action width A.
        reward_dim: Number of reward components K.
        extras: Names and widths of extra float32 columns stored per transition, for example
            ``{"propensities": 1}``.
        alpha: Prioritization exponent, at least 0; 0 makes prioritized sampling uniform.
        seed: Seed of the buffer's generator; its state is saved and restored with the buffer.
        pin_memory: Allocate batch tensors in pinned memory, which speeds up
            ``tensor.to("cuda", non_blocking=True)``. Ignored when CUDA is not available.
        reuse_outputs: Reuse the output tensors of each batch shape for every batch drawn by the
            same thread. When False, every batch gets new tensors.
    """

    def __init__(
        self,
        capacity: int,
        observation_dim: int,
        action_dim: int = 1,
        reward_dim: int = 1,
        *,
        extras: Mapping[str, int] | None = None,
        alpha: float = 0.6,
        seed: int = 0,
        pin_memory: bool = False,
        reuse_outputs: bool = True,
    ) -> None:
        store = _core.ReplayStore(
            capacity,
            observation_dim,
            action_dim,
            reward_dim,
            extras=list((extras or {}).items()),
            alpha=alpha,
            seed=seed,
        )
        self._attach(store, pin_memory, reuse_outputs)

    def _attach(self, store: _core.ReplayStore, pin_memory: bool, reuse_outputs: bool) -> None:
        self._store = store
        if pin_memory and not torch.cuda.is_available():
            logger.info("pin_memory=True ignored: CUDA is not available")
            pin_memory = False
        self._pin_memory = pin_memory
        self._reuse_outputs = reuse_outputs
        self._local = threading.local()

    @property
    def capacity(self) -> int:
        """Number of slots, boundary slots included."""
        return self._store.capacity

    @property
    def observation_dim(self) -> int:
        """Observation width S."""
        return self._store.observation_dim

    @property
    def action_dim(self) -> int:
        """Action width A."""
        return self._store.action_dim

    @property
    def reward_dim(self) -> int:
        """Number of reward components K."""
        return self._store.reward_dim

    @property
    def extras(self) -> dict[str, int]:
        """Names and widths of the extra columns."""
        return dict(self._store.extras)

    @property
    def alpha(self) -> float:
        """Prioritization exponent."""
        return self._store.alpha

    @property
    def stale_updates(self) -> int:
        """Number of priority updates rejected so far.

        An update is rejected when its slot was overwritten after it was sampled, or contains
        no sampleable transition (a never-written or episode boundary slot).
        """
        return self._store.stale_updates

    @property
    def position(self) -> int:
        """Next slot to be written."""
        return self._store.position

    def __len__(self) -> int:
        """Return the number of transitions that can be sampled now."""
        return len(self._store)

    def priorities(self) -> npt.NDArray[np.float64]:
        """Return a copy of the priority of every slot, float64 ``[capacity]``.

        Boundary and empty slots have priority 0.
        """
        return self._store.priorities()

    def sampleable_mask(self) -> npt.NDArray[np.bool_]:
        """Return which slots can be sampled now, bool ``[capacity]``."""
        return self._store.sampleable_mask()

    def extend(
        self,
        observations: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_observations: ArrayLike,
        terminals: ArrayLike | None = None,
        truncations: ArrayLike | None = None,
        extras: Mapping[str, ArrayLike] | None = None,
    ) -> None:
        """Append B steps in step order.

        Args:
            observations: float32 ``[B, S]``.
            actions: float32 ``[B, A]`` (``[B]`` when A is 1).
            rewards: float32 ``[B, K]`` (``[B]`` when K is 1).
            next_observations: float32 ``[B, S]``. Only rows that end an episode are read: the
                other next observations are the observations of the following steps.
            terminals: bool ``[B]``, the step ended its episode in a terminal state; default
                all False.
            truncations: bool ``[B]``, the episode was cut after this step; default all False.
            extras: float32 ``[B, width]`` (``[B]`` when width is 1) for every extra column.

        Raises:
            ShapeError: An array whose shape does not match the buffer.
            InvalidArgumentError: Extra columns that are missing or unknown.
        """
        observations = _float_rows("observations", observations, self.observation_dim)
        rows = observations.shape[0]
        extras = dict(extras or {})
        expected = self.extras
        if set(extras) != set(expected):
            raise InvalidArgumentError(
                f"extras: expected the columns {sorted(expected)}, got {sorted(extras)}"
            )
        self._store.extend(
            observations,
            _float_rows("actions", actions, self.action_dim),
            _float_rows("rewards", rewards, self.reward_dim),
            _float_rows("next_observations", next_observations, self.observation_dim),
            _flags("terminals", terminals, rows),
            _flags("truncations", truncations, rows),
            [_float_rows(name, extras[name], width) for name, width in expected.items()],
        )

    def _outputs(self, kind: str, leading: tuple[int, ...]) -> _Outputs:
        weights = kind == "prioritized"
        if not self._reuse_outputs:
            return _Outputs(leading, self._store, weights, self._pin_memory)
        cache: dict[tuple[str, tuple[int, ...]], _Outputs] | None
        cache = getattr(self._local, "outputs", None)
        if cache is None:
            cache = {}
            self._local.outputs = cache
        key = (kind, leading)
        if key not in cache:
            cache[key] = _Outputs(leading, self._store, weights, self._pin_memory)
        return cache[key]

    def sample(self, batch_size: int, *, replace: bool = True) -> ReplayBatch:
        """Draw B transitions uniformly at random.

        Args:
            batch_size: Number of transitions B, at least 1.
            replace: Draw with replacement. Without replacement B may not exceed ``len(self)``.

        Returns:
            A batch with ``weights`` set to None.

        Raises:
            InvalidArgumentError: The buffer is empty, or B exceeds ``len(self)`` without
                replacement.
        """
        batch_size = _count("batch_size", batch_size)
        outputs = self._outputs("uniform", (batch_size,))
        self._store.sample_uniform(batch_size, replace, outputs.arrays)
        return outputs.batch

    def sample_prioritized(self, batch_size: int, *, beta: float = 0.4) -> ReplayBatch:
        """Draw B transitions with probability proportional to ``p^alpha``, with replacement.

        Args:
            batch_size: Number of transitions B, at least 1.
            beta: Importance-sampling exponent, at least 0; 1 corrects the sampling bias fully.

        Returns:
            A batch with float32 ``weights`` [B] in (0, 1]. A weight below the smallest
            positive float32 (about 1.4e-45, for priorities hundreds of orders of magnitude
            apart) is 0.

        Raises:
            InvalidArgumentError: The buffer is empty or beta is negative.
        """
        batch_size = _count("batch_size", batch_size)
        outputs = self._outputs("prioritized", (batch_size,))
        self._store.sample_prioritized(batch_size, beta, outputs.arrays)
        return outputs.batch

    def sample_sequences(self, batch_size: int, length: int) -> ReplayBatch:
        """Draw B windows of T consecutive steps of one episode, uniformly over windows.

        The last step of a window may end its episode. A window is drawn by picking its last
        step uniformly and rejecting it when the episode has fewer than T steps up to there, so
        episodes shorter than T are never drawn.

        Args:
            batch_size: Number of windows B, at least 1.
            length: Window length T, at least 1.

        Returns:
            A batch whose arrays have leading dims ``[B, T]``.

        Raises:
            InvalidArgumentError: The buffer is empty, or no window was found in
                ``1000 + 100 B`` draws because episodes are shorter than T.
        """
        batch_size, length = _count("batch_size", batch_size), _count("length", length)
        outputs = self._outputs("sequences", (batch_size, length))
        self._store.sample_sequences(batch_size, length, outputs.arrays)
        return outputs.batch

    def gather(self, indices: ArrayLike) -> ReplayBatch:
        """Return the transitions of the given slots in new tensors.

        Args:
            indices: int64 ``[B]`` slots, each holding a sampleable transition.

        Raises:
            InvalidArgumentError: A slot that does not hold a sampleable transition, or indices
                that are not integers.
        """
        slots = _integers("indices", indices)
        outputs = _Outputs((slots.shape[0],), self._store, False, self._pin_memory)
        self._store.gather(slots, outputs.arrays)
        return outputs.batch

    def update_priorities(
        self,
        indices: ArrayLike,
        priorities: ArrayLike,
        stamps: ArrayLike | None = None,
    ) -> int:
        """Set the priority of sampled transitions, skipping slots overwritten since.

        Args:
            indices: int64 ``[B]`` slots from a batch.
            priorities: float64 ``[B]`` new priorities, finite and positive (for example
                ``|TD error| + 1e-6``).
            stamps: int64 ``[B]`` stamps from the same batch. Without them, an update is
                rejected when the slot's current transition has never been sampled.

        Returns:
            The number of updates rejected as stale, also added to ``stale_updates``.

        Raises:
            InvalidArgumentError: A slot out of range, a priority that is not finite and > 0,
                a ``p ** alpha`` that overflows the tree's sum or underflows to 0, or indices or
                stamps that are not integers.
            ShapeError: Arrays of different lengths.
        """
        return self._store.update_priorities(
            _integers("indices", indices),
            _floats("priorities", priorities),
            None if stamps is None else _integers("stamps", stamps),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the buffer into the directory ``path``, replacing it atomically.

        The directory contains ``header.json`` (shapes, write position, generator state) and one
        ``.npy`` file per array, streamed in chunks, so saving needs no second copy in memory.

        Raises:
            RecrlIOError: The directory cannot be written.
        """
        self._store.save(os.fspath(path))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        pin_memory: bool = False,
        reuse_outputs: bool = True,
    ) -> ReplayBuffer:
        """Read a buffer written by :meth:`save`, with priorities, position and generator state.

        Args:
            path: Directory written by :meth:`save`.
            pin_memory: As in the constructor.
            reuse_outputs: As in the constructor.

        Raises:
            RecrlIOError: A file cannot be read.
            DataFormatError: A file that does not match the header.
        """
        buffer = cls.__new__(cls)
        buffer._attach(_core.ReplayStore.load(os.fspath(path)), pin_memory, reuse_outputs)
        return buffer
