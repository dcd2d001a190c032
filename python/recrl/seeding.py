"""One seed for every random generator of a run, and torch's deterministic mode.

:func:`seed_everything` seeds Python's ``random``, NumPy's global generator and torch (CPU and
every CUDA device) from one integer, and derives independent seeds for named components (a
replay sampler, a data shuffler) from the same integer. A derived seed depends only on the seed
and the component's name, never on the order in which components ask for it.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable

import numpy as np

from recrl.errors import InvalidArgumentError

__all__ = ["MAX_SEED", "derive_seed", "seed_everything", "set_deterministic"]

logger = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
"""Largest accepted seed; torch, NumPy and Python all take every integer in [0, MAX_SEED]."""

# cuBLAS needs a fixed workspace to give reproducible results (CUDA 10.2 and later); torch
# raises in deterministic mode without it. The variable is read when CUDA initialises.
_CUBLAS_WORKSPACE = ":4096:8"


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed <= MAX_SEED:
        raise InvalidArgumentError(f"seed: expected an integer in [0, 2**63 - 1], got {seed!r}")
    return int(seed)


def derive_seed(seed: int, name: str) -> int:
    """Return a seed in [0, 2**63 - 1] for the component ``name``, derived from ``seed``.

    NumPy's ``SeedSequence`` mixes the seed with the UTF-8 bytes of the name, so different names
    give statistically independent streams and the same pair always gives the same seed.
    """
    sequence = np.random.SeedSequence(entropy=_check_seed(seed), spawn_key=tuple(name.encode()))
    high, low = (int(word) for word in sequence.generate_state(2, dtype=np.uint32))
    return ((high << 32) | low) & MAX_SEED


def set_deterministic(enabled: bool = True) -> None:
    """Switch torch to deterministic algorithms (or back to its defaults).

    Enabling sets ``torch.use_deterministic_algorithms(True)``, turns off cuDNN autotuning
    (``benchmark``) and selects its deterministic kernels, and sets ``CUBLAS_WORKSPACE_CONFIG``
    unless it is already set. An operation without a deterministic implementation then raises
    ``RuntimeError`` instead of running nondeterministically.

    NOTE: ``CUBLAS_WORKSPACE_CONFIG`` takes effect only if CUDA has not been initialised yet in
    this process, so call this before the first CUDA operation.
    """
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False
    logger.debug("torch deterministic algorithms %s", "on" if enabled else "off")


def seed_everything(
    seed: int, *, deterministic: bool = False, components: Iterable[str] = ()
) -> dict[str, int]:
    """Seed Python ``random``, NumPy's global generator and torch, and derive component seeds.

    Args:
        seed: integer in [0, 2**63 - 1].
        deterministic: also call :func:`set_deterministic`. False leaves torch's
            deterministic setting as it is.
        components: names of components that need their own seed (each gets
            :func:`derive_seed` of ``seed`` and its name).

    Returns:
        Component name -> derived seed, in the order given.

    Raises:
        InvalidArgumentError: ``seed`` is not an integer in range.
    """
    import torch

    seed = _check_seed(seed)
    random.seed(seed)
    # NumPy's legacy global generator takes 32-bit seeds only.
    np.random.seed(derive_seed(seed, "numpy") % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        set_deterministic(True)
    derived = {name: derive_seed(seed, name) for name in components}
    logger.debug("seeded every generator with %d; components %s", seed, derived)
    return derived
