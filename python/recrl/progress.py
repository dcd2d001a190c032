"""Progress bars of recrl's long loops, with one switch for all of them.

Every loop that can take more than a few seconds (reading and preparing a log, training steps,
epochs and batches, evaluation, scoring files) wraps its iterable in :func:`progress_bar`. The
bars go to stderr. By default tqdm shows them only when stderr is a terminal; the command's
``--no-progress`` calls ``set_progress(False)`` to hide them everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["progress_bar", "progress_enabled", "set_progress"]

T = TypeVar("T")

_enabled: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Show every progress bar (True), hide them all (False), or let tqdm decide (None).

    With None a bar is shown only when its output, stderr by default, is a terminal.
    """
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool | None:
    """Return the current switch: True, False, or None when tqdm decides from the terminal."""
    return _enabled


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    description: str | None = None,
    unit: str = "it",
    leave: bool = True,
    enabled: bool = True,
) -> Any:
    """Wrap ``iterable`` in a tqdm bar that obeys :func:`set_progress`.

    Args:
        iterable: the items to iterate; None gives a bar to advance by hand with ``update``.
        total: number of items when ``len(iterable)`` does not exist or is wrong.
        description: text before the bar.
        unit: name of one item, such as ``step`` or ``batch``.
        leave: keep the finished bar on screen; inner loops pass False.
        enabled: a caller's own switch; False hides this bar whatever the global setting.

    Returns:
        A ``tqdm`` object, iterable like ``iterable``.
    """
    from tqdm import tqdm  # type: ignore[import-untyped]

    disable: bool | None = _enabled is False or not enabled
    if _enabled is None and enabled:
        # tqdm's own rule: None disables the bar when the output is not a terminal.
        disable = None
    return tqdm(iterable, total=total, desc=description, unit=unit, leave=leave, disable=disable)
