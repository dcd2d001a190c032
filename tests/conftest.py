"""Shared fixtures: the location of the real data, and small logs written to temporary files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """Return the folder of real data: $RECRL_SHARED_DATA, or ../shared/data beside the clone."""
    override = os.environ.get("RECRL_SHARED_DATA")
    return Path(override) if override else REPOSITORY.parent / "shared" / "data"


def require_shared(*parts: str) -> Path:
    """Return a path under the real-data folder, skipping the test when it is absent."""
    path = shared_data().joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real data not found at {path}; place the shared data folder beside the clone "
            "or set RECRL_SHARED_DATA"
        )
    return path
