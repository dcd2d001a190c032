"""recrl: reinforcement learning for multi-task recommendation, with a Rust core.

The compiled kernels live in the private module ``recrl._core``; this package wraps them with
documented, validated Python functions.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from recrl import _core, errors
from recrl._core import Scorer

try:
    __version__ = version("recrl")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = _core.__version__

if _core.__version__ != __version__:
    raise ImportError(
        f"recrl {__version__} found its native module recrl._core at version {_core.__version__}; "
        "the build is stale, reinstall with `pip install --force-reinstall .`"
    )

__all__ = ["Scorer", "__version__", "errors"]
