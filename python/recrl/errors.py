"""Exceptions raised by recrl.

Every class derives from :class:`RecrlError` and from the built-in exception a caller would
catch for the same mistake (``ValueError`` for bad values and shapes, ``OSError`` for files), so
both ``except recrl.errors.ShapeError`` and ``except ValueError`` work. Messages name the
argument, file, line, column or row, what was expected and what was received.
"""

from __future__ import annotations

__all__ = [
    "ColumnNotFoundError",
    "DataFormatError",
    "InvalidArgumentError",
    "InvalidDataError",
    "RecrlError",
    "RecrlIOError",
    "ShapeError",
]


class RecrlError(Exception):
    """Base class of every error recrl raises on purpose."""


class InvalidArgumentError(RecrlError, ValueError):
    """An argument whose value is outside its domain."""


class ShapeError(RecrlError, ValueError):
    """Arrays whose shapes or lengths do not match."""


class InvalidDataError(RecrlError, ValueError):
    """A value in the data, such as NaN in a feature column, that cannot be used."""


class DataFormatError(RecrlError, ValueError):
    """A file that does not follow the expected format; the message names file, line and column."""


class ColumnNotFoundError(DataFormatError):
    """A column that the schema requires and the file lacks."""


class RecrlIOError(RecrlError, OSError):
    """A file that cannot be opened, read or written."""
