"""Type stubs of the compiled module ``recrl._core``.

Every function validates its arguments, releases the GIL for the work, and raises the classes of
:mod:`recrl.errors` (subclasses of ``ValueError`` or ``OSError``) on bad input.
"""

from os import PathLike
from typing import final

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

def write_csv(
    path: str | PathLike[str],
    columns: list[tuple[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]],
    *,
    delimiter: str = ",",
) -> None:
    """Write int64 and float64 columns with a header line, atomically (NaN as an empty field)."""

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
