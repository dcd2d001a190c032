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

# Readers.

def read_csv(
    path: str | PathLike[str],
    columns: list[tuple[str, str]],
    *,
    delimiter: str = ",",
    headerless_names: list[str] | None = None,
) -> dict[str, npt.NDArray[np.generic] | tuple[npt.NDArray[np.int64], list[str]]]:
    """Read the named columns (kinds int64, float32, float64, category) of a delimited file."""

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
