"""Type checks of configuration values against the annotations of frozen dataclass fields.

Settings arrive from YAML files and ``--set`` as plain values (int, float, bool, str, list,
dict). :func:`check_fields` checks each one against its field's annotated type before a
dataclass is built, so a wrong value fails at once with an error that names the key, instead of
failing inside training. The accepted values are:

- ``int``: an integer, not a boolean and not a float (2.0 steps is rejected like 2.5);
- ``float``: an integer or a float, finite, returned as float;
- ``bool``: true or false;
- ``str``: a string, one of ``field.metadata["choices"]`` where the field lists them;
- ``tuple[X, ...]``: a list or tuple of X, returned as a tuple;
- ``dict[str, X]``: a mapping from strings to X;
- a union such as ``float | dict[str, float]``: the first member type that accepts the value.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from recrl.errors import InvalidArgumentError

__all__ = ["check_fields", "check_value", "choices", "describe_type"]


class _Mismatch(Exception):
    """A value that does not fit a type; :func:`check_value` turns it into the user's error."""


def choices(*allowed: str) -> dict[str, Any]:
    """Return field metadata that restricts a ``str`` field to ``allowed``."""
    return {"choices": allowed}


def describe_type(annotation: Any) -> str:
    """Return the English name of the values ``annotation`` accepts ("an integer")."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(member) for member in arguments)
    if origin is tuple:
        return f"a list of {_plural(arguments[0])}"
    if origin is dict:
        return f"a mapping of names to {_plural(arguments[1])}"
    names = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _plural(annotation: Any) -> str:
    names = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
    return names.get(annotation, describe_type(annotation))


def _convert(annotation: Any, value: Any) -> Any:
    """Return ``value`` as ``annotation`` demands, or raise ``_Mismatch``."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for member in arguments:
            try:
                return _convert(member, value)
            except _Mismatch:
                continue
        raise _Mismatch

    if origin is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise _Mismatch
        return tuple(_convert(arguments[0], item) for item in value)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
            raise _Mismatch
        return {key: _convert(arguments[1], item) for key, item in value.items()}

    if annotation is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        if not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value

    if annotation is type(None):
        if value is not None:
            raise _Mismatch
        return None
    if annotation is Any:
        return value
    raise TypeError(f"config_types: unsupported annotation {annotation!r}")


def check_value(key: str, annotation: Any, value: Any, allowed: Sequence[str] = ()) -> Any:
    """Return ``value`` converted to ``annotation`` (lists become tuples, ints become floats).

    Args:
        key: the dotted name of the setting, used in the error message (``common.steps``).
        annotation: the field's resolved type.
        value: the value read from YAML, JSON or ``--set``.
        allowed: the valid strings of a ``str`` field; empty for any string.

    Raises:
        InvalidArgumentError: ``value`` does not fit ``annotation`` or is not in ``allowed``.
    """
    try:
        converted = _convert(annotation, value)
    except _Mismatch:
        raise InvalidArgumentError(
            f"{key}: expected {describe_type(annotation)}, got {value!r}"
        ) from None
    if allowed and converted not in allowed:
        raise InvalidArgumentError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return converted


def check_fields(cls: type, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``values`` with each one checked and converted against the field of ``cls``.

    Args:
        cls: a dataclass; ``values`` may hold any subset of its fields.
        values: field name to plain value.
        prefix: the dotted section of ``values`` in the settings (``common``), prepended to
            the key in error messages.

    Raises:
        InvalidArgumentError: an unknown field, or a value of the wrong type or not among the
            field's choices.
    """
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            raise InvalidArgumentError(
                f"{key}: unknown field; expected one of {', '.join(sorted(fields))}"
            )
        allowed = fields[name].metadata.get("choices", ())
        checked[name] = check_value(key, hints[name], value, allowed)
    return checked
