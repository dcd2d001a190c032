"""Crash-safe file writes shared by every part of recrl.

A file is written to a temporary name in its destination folder, flushed and synced, then
renamed over the destination, and the folder is synced. A crash therefore leaves either the old
file or the complete new one, never a torn file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "BackgroundWriter",
    "atomic_open",
    "make_staging_folder",
    "sync_directory",
    "write_bytes",
    "write_synced",
    "write_text",
]


def _umask() -> int:
    # os.umask can only be read by setting it, so set it back at once.
    current = os.umask(0o022)
    os.umask(current)
    return current


def make_staging_folder(destination: Path) -> Path:
    """Create a hidden temporary folder beside ``destination`` with the usual permissions.

    ``tempfile.mkdtemp`` creates folders readable by the owner alone; the staging folder becomes
    the user's output, so it gets the permissions a plain ``mkdir`` would give.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    folder.chmod(0o777 & ~_umask())
    return folder


def sync_directory(path: Path) -> None:
    """Flush the directory entry changes of ``path`` (a folder) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block ends without an error.

    On an error the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file private; give it the permissions a plain open() would.
        os.fchmod(descriptor, 0o666 & ~_umask())
        with os.fdopen(descriptor, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_synced(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Create ``path`` with ``write(handle)`` and sync it in place, for staging folders."""
    with path.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_and_close(handle: IO[bytes]) -> None:
    try:
        os.fsync(handle.fileno())
    finally:
        handle.close()


class BackgroundWriter:
    """Write and sync files on worker threads while the caller computes the next one.

    One thread writes the files in the order they were handed over, and a second syncs each
    written file, so the caller's next array, the copy of the previous one into the page cache
    and the disk's work on the one before all overlap. ``wait`` returns once every file handed
    over so far is written and synced, and raises the first error. Leaving the ``with`` block
    after an error drops the files not yet started. Otherwise it waits for all of them.
    """

    def __init__(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recrl-write")
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recrl-sync")
        self._pending: list[Future[Future[None]]] = []

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self._writer.shutdown(wait=True, cancel_futures=error is not None)
        self._syncer.shutdown(wait=True)

    def write(self, path: Path, write: Callable[[IO[bytes]], object]) -> None:
        """Create ``path`` with ``write(handle)`` on the writer thread, then sync it.

        Whatever ``write`` reads must not change until ``wait`` returns.
        """
        self._pending.append(self._writer.submit(self._write, path, write))

    def _write(self, path: Path, write: Callable[[IO[bytes]], object]) -> Future[None]:
        handle = path.open("wb")
        try:
            write(handle)
            handle.flush()
        except BaseException:
            handle.close()
            raise
        return self._syncer.submit(_sync_and_close, handle)

    def wait(self) -> None:
        """Wait until all files handed over are written and synced, and raise the first error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result().result()
