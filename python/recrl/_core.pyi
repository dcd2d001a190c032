"""Type stubs of the compiled module ``recrl._core``.

Every function validates its arguments, releases the GIL for the work, and raises the classes of
:mod:`recrl.errors` (subclasses of ``ValueError`` or ``OSError``) on bad input.
"""

from collections.abc import Sequence
from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str

# Trajectories.

def stable_order(
    users: npt.NDArray[np.int64], times: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Return the permutation sorting rows by (user, time), ties kept in row order."""

def build_episodes(
    users: npt.NDArray[np.int64],
    times: npt.NDArray[np.int64],
    *,
    segments: npt.NDArray[np.uint8] | None = None,
    episode_ends: npt.NDArray[np.uint8] | None = None,
    session_gap_ms: int | None = None,
    window_end_ms: int | None = None,
    active_within_ms: int = 0,
) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.uint8]]:
    """Cut rows sorted by (user, time) into episodes.

    Returns ``episode_starts`` [E + 1], ``terminals`` [N], ``truncations`` [N], ``next_index`` [N].
    """

def sort_episodes(
    users: npt.NDArray[np.int64],
    times: npt.NDArray[np.int64],
    *,
    segments: npt.NDArray[np.uint8] | None = None,
    episode_ends: npt.NDArray[np.uint8] | None = None,
    session_gap_ms: int | None = None,
    window_end_ms: int | None = None,
    active_within_ms: int = 0,
    placement: bool = False,
) -> dict[str, Any]:
    """Sort rows by (user, time, row) and cut them into episodes in one call.

    ``segments`` and ``episode_ends`` are in input row order. Returns ``order`` [N] (the
    permutation of :func:`stable_order`), ``users`` and ``times`` [N] in sorted order,
    ``segments`` [N] sorted (only when given), the arrays of :func:`build_episodes` for the
    sorted rows and, with ``placement``, the :class:`Placement` of ``order``.
    """

def history_windows(
    users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], length: int
) -> npt.NDArray[np.int64]:
    """Return [N, length] items of the previous rows of the same user, most recent first."""

def encode_ids(
    vocabulary_source: npt.NDArray[np.int64], values: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (codes, vocabulary): codes 1..V over sorted distinct source ids, 0 for unknown."""

def take_int64(
    values: npt.NDArray[np.int64], order: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Return ``values[order]``, gathered in parallel."""

def take_columns_float32(
    columns: list[npt.NDArray[np.float32]], order: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Return the [N, K] array whose column k is ``columns[k][order]``, gathered in parallel."""

def take_columns_int64(
    columns: list[npt.NDArray[np.int64]], order: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Return the [N, K] array whose column k is ``columns[k][order]``, gathered in parallel."""

@final
class Placement:
    """The inverse of a permutation ``order`` of N rows, for reordering many columns by it.

    Scattering each source row to its place reads the columns front to back, which is faster
    than gathering ``columns[k][order]`` when ``order`` jumps around the source.
    """

    def __new__(cls, order: npt.NDArray[np.int64]) -> Placement:
        """Check that ``order`` contains every row 0..N-1 exactly once."""
    def __len__(self) -> int: ...
    def take_columns_float32(
        self, columns: list[npt.NDArray[np.float32]]
    ) -> npt.NDArray[np.float32]:
        """Return the [N, K] array whose column k is ``columns[k][order]``."""
    def take_columns_int64(self, columns: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
        """Return the [N, K] array whose column k is ``columns[k][order]``."""

def count_codes(
    codes: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_], size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (counts where ``mask`` is set, counts over all rows) of each code 0..=size."""

def side_rows(
    table_ids: npt.NDArray[np.int64],
    entity_ids: npt.NDArray[np.int64],
    train: npt.NDArray[np.bool_],
    train_counts: npt.NDArray[np.int64] | None = None,
    all_counts: npt.NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """Match each log row's entity to its side-table row, numbering the table rows in use.

    Returns ``rows`` (int64 [N]: k for table row ``used[k - 1]``, 0 without one), ``used``
    (int64 table positions of the rows in use, by increasing id), ``train_counts`` and
    ``all_counts`` (int64 per code 0..len(used)) and ``matched`` (rows with a table row).
    Counts over a whole log, per table row in increasing id order (index 0: rows without one),
    replace this log's own when passed, and decide which rows are in use.
    """

def count_distinct(values: npt.NDArray[np.int64]) -> int:
    """Return the number of distinct values."""

# Readers.

def read_csv(
    path: str | PathLike[str],
    columns: list[tuple[str, str]],
    *,
    delimiter: str = ",",
    headerless_names: list[str] | None = None,
) -> dict[str, npt.NDArray[np.generic] | tuple[npt.NDArray[np.int64], list[str]]]:
    """Read the named columns (kinds int64, uint8, float32, float64, category) of a file."""

def write_csv(
    path: str | PathLike[str],
    columns: list[tuple[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]],
    *,
    delimiter: str = ",",
) -> None:
    """Write int64 and float64 columns with a header line, atomically (NaN as an empty field)."""

def kuairand_watch_responses(
    play_ms: npt.NDArray[np.int64], duration_ms: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """Derive KuaiRand watch time (s) and watch ratio from play and video durations (ms).

    Negative play times are clipped to 0, and rows whose duration is 0 or negative get ratio 0
    and ``duration_zero`` 1. Returns ``watch_time`` and ``watch_ratio`` float32 [N],
    ``duration_zero`` uint8 [N], and the counts ``negative_play_rows`` and
    ``zero_duration_rows``.
    """

# Returns. Arrays of one response may be (N,) or (N, 1); results are (N,) when ``gammas`` is a
# float and K = 1, and (N, K) otherwise.

def discounted_returns(
    rewards: npt.NDArray[np.float32],
    gammas: float | npt.NDArray[np.float64],
    *,
    episode_starts: npt.NDArray[np.int64] | None = None,
    terminals: npt.NDArray[np.uint8] | None = None,
    truncations: npt.NDArray[np.uint8] | None = None,
    bootstrap_values: npt.NDArray[np.float32] | None = None,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Discounted reward-to-go of every row; see `recrl.returns.discounted_returns`."""

def n_step_targets(
    rewards: npt.NDArray[np.float32],
    next_values: npt.NDArray[np.float32],
    gammas: float | npt.NDArray[np.float64],
    n: int,
    *,
    episode_starts: npt.NDArray[np.int64] | None = None,
    terminals: npt.NDArray[np.uint8] | None = None,
    truncations: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.float32]:
    """n-step targets of every row; see `recrl.returns.n_step_targets`."""

def lambda_returns(
    rewards: npt.NDArray[np.float32],
    next_values: npt.NDArray[np.float32],
    gammas: float | npt.NDArray[np.float64],
    lambda_: float,
    *,
    episode_starts: npt.NDArray[np.int64] | None = None,
    terminals: npt.NDArray[np.uint8] | None = None,
    truncations: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.float32]:
    """TD(lambda) returns of every row; see `recrl.returns.lambda_returns`."""

def gae(
    rewards: npt.NDArray[np.float32],
    values: npt.NDArray[np.float32],
    next_values: npt.NDArray[np.float32],
    gammas: float | npt.NDArray[np.float64],
    lambda_: float,
    *,
    episode_starts: npt.NDArray[np.int64] | None = None,
    terminals: npt.NDArray[np.uint8] | None = None,
    truncations: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """GAE advantages and value targets of every row; see `recrl.returns.gae`."""

# Replay.

@final
class ReplayStore:
    """Thread-safe transition store; ``recrl.replay.ReplayBuffer`` documents its behaviour.

    Sampling methods fill the writable C-contiguous arrays of ``out``: ``observations``,
    ``next_observations``, ``actions``, ``rewards`` (float32), ``terminals``, ``truncations``
    (bool), ``indices``, ``stamps`` (int64), one float32 array per extra column name, and
    ``weights`` (float32) for prioritized sampling.
    """

    def __new__(
        cls,
        capacity: int,
        observation_dim: int,
        action_dim: int,
        reward_dim: int,
        *,
        extras: list[tuple[str, int]] = ...,
        alpha: float = 0.6,
        seed: int = 0,
    ) -> ReplayStore: ...
    def extend(
        self,
        observations: npt.NDArray[np.float32],
        actions: npt.NDArray[np.float32],
        rewards: npt.NDArray[np.float32],
        next_observations: npt.NDArray[np.float32],
        terminals: npt.NDArray[np.bool_],
        truncations: npt.NDArray[np.bool_],
        extras: list[npt.NDArray[np.float32]],
    ) -> None:
        """Append B steps; extras follow the order of ``extras``."""
    def sample_uniform(self, batch_size: int, replace: bool, out: dict[str, Any]) -> None:
        """Draw B slots uniformly into ``out``."""
    def sample_prioritized(self, batch_size: int, beta: float, out: dict[str, Any]) -> None:
        """Draw B slots proportionally to ``p^alpha`` into ``out``, with importance weights."""
    def sample_sequences(self, batch_size: int, length: int, out: dict[str, Any]) -> None:
        """Draw B windows of ``length`` steps of one episode into ``out``."""
    def gather(self, indices: npt.NDArray[np.int64], out: dict[str, Any]) -> None:
        """Gather the given sampleable slots into ``out``."""
    def update_priorities(
        self,
        indices: npt.NDArray[np.int64],
        priorities: npt.NDArray[np.float64],
        stamps: npt.NDArray[np.int64] | None = None,
    ) -> int:
        """Set priorities; returns the number of updates rejected as stale."""
    def save(self, path: str | PathLike[str]) -> None:
        """Write the store into a directory, atomically."""
    @staticmethod
    def load(path: str | PathLike[str]) -> ReplayStore:
        """Read a store written by ``save``."""
    def __len__(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def observation_dim(self) -> int: ...
    @property
    def action_dim(self) -> int: ...
    @property
    def reward_dim(self) -> int: ...
    @property
    def extras(self) -> list[tuple[str, int]]: ...
    @property
    def alpha(self) -> float: ...
    @property
    def stale_updates(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def slots_used(self) -> int: ...
    def priorities(self) -> npt.NDArray[np.float64]:
        """Return the priority of every slot."""
    def sampleable_mask(self) -> npt.NDArray[np.bool_]:
        """Return which slots can be sampled."""
    def generator_state(self) -> tuple[int, int, int, int]:
        """Return the four xoshiro256++ state words."""

@final
class SumTree:
    """Sum, minimum and maximum tree over float64 leaves."""

    def __new__(cls, capacity: int) -> SumTree: ...
    @property
    def capacity(self) -> int: ...
    def set(self, index: int, value: float) -> None:
        """Set leaf ``index`` to a finite ``value >= 0``."""
    def get(self, index: int) -> float:
        """Return leaf ``index``."""
    def total(self) -> float:
        """Return the sum of all leaves."""
    def min_positive(self) -> float:
        """Return the smallest positive leaf, or infinity."""
    def max(self) -> float:
        """Return the largest leaf."""
    def max_value(self) -> float:
        """Return the largest leaf value accepted; capacity times it is still finite."""
    def find_prefix(self, mass: float) -> int:
        """Return the leaf i with prefix sum before i <= mass < prefix sum through i."""
    def find_prefix_many(self, masses: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Apply ``find_prefix`` to each mass, walking all of them one level at a time."""
    def set_many(self, indices: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Set leaf ``indices[i]`` to ``values[i]``. All are checked before any is set."""

# Metrics. Labels are uint8, float32 or float64 holding 0 or 1; scores are float32 or float64.

def auc(
    labels: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> tuple[float, int, int]:
    """Return (auc, positives, negatives), ties counted as 1/2; auc is NaN for one class."""

def grouped_auc(
    labels: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    groups: npt.NDArray[np.int64],
    *,
    weighting: str = "size",
) -> tuple[float, int, int]:
    """Return (grouped auc, groups used, groups skipped); weighting is "size" or "uniform"."""

def logloss(
    labels: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    *,
    eps: float = 1e-7,
) -> float:
    """Return the mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]."""

def session_logloss(
    labels: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    sessions: npt.NDArray[np.int64],
    *,
    eps: float = 1e-7,
) -> tuple[float, int]:
    """Return (mean over sessions of the within-session mean cross-entropy, sessions)."""

# Scoring.

@final
class Scorer:
    """A policy file written by ``recrl.serving.export``, scoring candidates without torch.

    Immutable after loading, so one instance can be shared by threads; every scoring call
    releases the GIL. Candidates are int64 item ids [C] for a ``categorical`` policy, float32
    feature rows [C, candidate_width] for an ``mlp`` policy and prediction rows [C, K] for a
    ``fusion`` policy.
    """

    @staticmethod
    def load(path: str | PathLike[str]) -> Scorer:
        """Load a policy file; no code from the file is executed."""

    @property
    def kind(self) -> str:
        """``"categorical"``, ``"mlp"`` or ``"fusion"``."""

    @property
    def state_dim(self) -> int:
        """S, the width of each request's state."""

    @property
    def candidate_width(self) -> int:
        """Values per candidate row (0 when candidates are item ids)."""

    @property
    def categorical_fields(self) -> int:
        """Number of categorical codes each request carries."""

    @property
    def uses_history(self) -> bool:
        """Whether each request carries a history of item ids."""

    @property
    def metadata(self) -> str:
        """The JSON description stored in the file."""

    @property
    def unknown_candidates(self) -> int:
        """Candidate ids not found in the item vocabulary since loading."""

    @property
    def unknown_history(self) -> int:
        """History ids not found in the item vocabulary since loading."""

    def score(
        self,
        state: npt.NDArray[np.float32] | None,
        candidates: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        *,
        categorical: npt.NDArray[np.int64] | None = None,
        history: npt.NDArray[np.int64] | None = None,
        invalid: str = "raise",
    ) -> npt.NDArray[np.float32]:
        """Score the candidates of one request; returns float32 [C]."""

    def top_k(
        self,
        state: npt.NDArray[np.float32] | None,
        candidates: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        k: int,
        *,
        categorical: npt.NDArray[np.int64] | None = None,
        history: npt.NDArray[np.int64] | None = None,
        invalid: str = "raise",
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Return (indices, scores) of the min(k, C) best candidates, best first."""

    def score_batch(
        self,
        states: npt.NDArray[np.float32] | None,
        candidates: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        *,
        categorical: npt.NDArray[np.int64] | None = None,
        history: npt.NDArray[np.int64] | None = None,
        invalid: str = "raise",
        threads: int = 1,
    ) -> npt.NDArray[np.float32]:
        """Score B requests at once; returns float32 [B, C]."""

    def forward(
        self, inputs: npt.NDArray[np.float32], *, threads: int = 1
    ) -> npt.NDArray[np.float32]:
        """Run the policy's MLP on float32 [S] or [B, S]; returns [O] or [B, O]."""

def fuse_scores(
    predictions: npt.NDArray[np.float32],
    weights: npt.NDArray[np.float32],
    *,
    mode: str = "sum",
    invalid: str = "raise",
) -> npt.NDArray[np.float32]:
    """Fuse predictions [C, K] with weights [K] (``"sum"`` or ``"product"``) into [C]."""

def select_top_k(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Return (indices, scores) of the min(k, C) best scores, ties by index, NaN last."""

# Partition by user hash.

MAX_SHARDS: int

def shard_of_users(users: npt.NDArray[np.int64], shards: int) -> npt.NDArray[np.int64]:
    """Return the shard in [0, shards) of each user id [N]: splitmix64 of the salted id."""

def partition_csv(
    inputs: Sequence[str | PathLike[str]],
    folder: str | PathLike[str],
    *,
    user_column: str,
    shards: int,
    extension: str = "csv",
    delimiter: str = ",",
    headerless_names: Sequence[str] | None = None,
) -> dict[str, npt.NDArray[np.int64]]:
    """Split delimited files into ``shard-NNNNN.<extension>`` and ``.rows`` files by user.

    Returns ``rows`` and ``users`` int64 [shards], the rows and distinct users of each shard.
    """
