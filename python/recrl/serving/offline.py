"""Offline scoring of a JSONL file of requests, as run by ``recrl score``.

Each input line is one request, a JSON object. ``state`` is a list of S numbers, left out for
a fusion policy. ``candidates`` is a list of item ids for a categorical policy, else a list of
C rows of numbers. A categorical policy with a state encoder also reads ``categorical`` (F
codes) and ``history`` (item ids, most recent first). An optional ``id`` is copied to the output.
Each output line contains ``indices`` (positions in ``candidates``, best first), ``scores`` and,
for a categorical policy, ``items`` (the chosen item ids).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recrl import _files
from recrl._core import Scorer
from recrl.errors import DataFormatError, RecrlError, RecrlIOError
from recrl.progress import progress_bar

__all__ = ["score_file"]

logger = logging.getLogger(__name__)


def _requests(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(
                    f"{path}, line {line_number}: invalid JSON: {error}"
                ) from None
            if not isinstance(request, dict) or "candidates" not in request:
                raise DataFormatError(
                    f"{path}, line {line_number}: expected an object with 'candidates'"
                )
            yield line_number, request


def _integer_ids(values: Any, field: str) -> npt.NDArray[np.int64]:
    """Return the JSON list ``values`` as int64 ids, rejecting fractions, text and booleans."""
    if not isinstance(values, list):
        raise DataFormatError(f"{field}: expected a list of integer ids, got {values!r}")
    for position, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataFormatError(
                f"{field}[{position}]: expected an integer id, got {value!r}; ids are never rounded"
            )
    try:
        return np.asarray(values, dtype=np.int64).reshape(len(values))
    except OverflowError as error:
        raise DataFormatError(f"{field}: an id does not fit in int64: {error}") from error


def _score_request(scorer: Scorer, request: dict[str, Any], k: int, invalid: str) -> dict[str, Any]:
    categorical_policy = scorer.kind == "categorical"
    state = request.get("state")
    # No reshaping: a row of the wrong width must fail with the expected shape.
    candidates: npt.NDArray[np.int64] | npt.NDArray[np.float32]
    if categorical_policy:
        candidates = _integer_ids(request["candidates"], "candidates")
    else:
        candidates = np.asarray(request["candidates"], dtype=np.float32)
    codes = request.get("categorical")
    history = request.get("history")
    indices, scores = scorer.top_k(
        None if state is None else np.asarray(state, dtype=np.float32),
        candidates,
        k,
        categorical=None if codes is None else _integer_ids(codes, "categorical"),
        history=None if history is None else _integer_ids(history, "history"),
        invalid=invalid,
    )
    result: dict[str, Any] = {}
    if "id" in request:
        result["id"] = request["id"]
    result["indices"] = indices.tolist()
    # NaN scores (invalid="rank_last") are written as null, which JSON can represent.
    result["scores"] = [None if np.isnan(s) else float(s) for s in scores]
    if categorical_policy:
        result["items"] = candidates[indices].tolist()
    return result


def score_file(
    policy: str | os.PathLike[str],
    requests: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    k: int = 50,
    invalid: str = "raise",
    progress: bool = True,
) -> int:
    """Score every request of a JSONL file and write the top ``k`` of each, atomically.

    Args:
        policy: policy file written by ``recrl export``.
        requests: JSONL file of requests (format in the module documentation).
        out: JSONL file of results, one line per request in input order.
        k: candidates kept per request (all when a request has fewer).
        invalid: ``"raise"`` or ``"rank_last"`` for candidates with NaN or infinite inputs.
        progress: show a tqdm progress bar on stderr (unless ``recrl.progress.set_progress``
            hides every bar).

    Returns:
        The number of requests scored.
    """
    scorer = Scorer.load(policy)
    requests, out = Path(requests), Path(out)
    if not requests.is_file():
        raise RecrlIOError(f"{requests}: requests file not found")
    count = 0
    with _files.atomic_open(out, "w", encoding="utf-8") as handle:
        lines = _requests(requests)
        bar = progress_bar(lines, description="score", unit="request", enabled=progress)
        for line_number, request in bar:
            try:
                result = _score_request(scorer, request, k, invalid)
            except (RecrlError, ValueError, TypeError) as error:
                raise DataFormatError(f"{requests}, line {line_number}: {error}") from error
            handle.write(json.dumps(result) + "\n")
            count += 1
    logger.info(
        "scored %d requests from %s into %s (%d unknown candidate ids, %d unknown history ids)",
        count,
        requests,
        out,
        scorer.unknown_candidates,
        scorer.unknown_history,
    )
    return count
