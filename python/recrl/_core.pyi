"""Type stubs of the compiled module ``recrl._core``.

Every function validates its arguments, releases the GIL for the work, and raises the classes of
:mod:`recrl.errors` (subclasses of ``ValueError`` or ``OSError``) on bad input.
"""

from os import PathLike

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
    """Read the named columns (kinds int64, float32, float64, category) of a delimited file."""

def write_csv(
    path: str | PathLike[str],
    columns: list[tuple[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]],
    *,
    delimiter: str = ",",
) -> None:
    """Write int64 and float64 columns with a header line, atomically (NaN as an empty field)."""

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
