"""Settings of every ``recrl`` command: defaults, ``--config`` files and ``--set`` overrides.

A command's settings form one nested mapping. Its top-level keys are the command's options,
named as their ``argparse`` destinations (``--session-gap-minutes`` is ``session_gap_minutes``),
plus the algorithm sections of ``tscac`` (``run``, ``common``, ``methods``) and ``rmtl``
(``backbone``, ``pretrain``, ``critic``, ``finetune``, ``evaluation_batch_size``). Four layers
are merged, each overriding the ones before it:

1. the built-in defaults;
2. the YAML file given with ``--config FILE``;
3. the options given explicitly on the command line;
4. every ``--set key=value``, with a dotted key into the nested mapping and the value parsed as
   a YAML scalar or list (``--set common.hidden_dims=[32,32]``).

An unknown key in the file or in ``--set`` raises an error that names it and lists the valid
keys at its level.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recrl.errors import InvalidArgumentError, RecrlIOError

__all__ = [
    "RMTL_SECTIONS",
    "TSCAC_SECTIONS",
    "ConfigSections",
    "add_common_options",
    "check_keys",
    "command_sections",
    "deep_merge",
    "free_mapping",
    "load_config_file",
    "parse_set_options",
    "relax_required",
    "resolve_settings",
]

logger = logging.getLogger(__name__)

# Options of the command line that steer the program itself rather than the run.
_NOT_SETTINGS = frozenset({"help", "config", "set", "verbose", "no_progress", "version"})


@dataclass(frozen=True)
class ConfigSections:
    """Nested settings of a command beyond its options: the algorithm configuration.

    Attributes:
        defaults: the sections merged under the options before the file and ``--set`` (a
            section may be empty where the algorithm fills in its own defaults).
        schema: every valid key, nested like ``defaults``. A leaf is None for one value, or
            :func:`free_mapping` for a value that may also be a mapping with keys of the user's
            choice (such as per-response discounts).
        check: called with the resolved settings before they are returned. It raises
            ``InvalidArgumentError`` for a value of the wrong type or out of range, naming its
            dotted key. None checks only the keys.
    """

    defaults: Mapping[str, Any]
    schema: Mapping[str, Any]
    check: Callable[[Mapping[str, Any]], None] | None = None


# -- reading the layers ------------------------------------------------------------------------


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML settings file into a mapping; an empty file gives an empty mapping.

    Raises:
        InvalidArgumentError: the file is not valid YAML or its top level is not a mapping.
        RecrlIOError: the file cannot be read.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RecrlIOError(f"--config {path}: cannot read the file: {error}") from error
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidArgumentError(f"--config {path}: invalid YAML: {error}") from error
    if values is None:
        return {}
    values = _scientific_numbers(values)
    if not isinstance(values, dict):
        raise InvalidArgumentError(
            f"--config {path}: expected a mapping of settings at the top level, got "
            f"{type(values).__name__}"
        )
    return values


def parse_set_options(assignments: Sequence[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into a nested mapping, where a later assignment wins.

    The key is split at dots into nested keys. The value is parsed as YAML, so ``3`` is an
    integer, ``1e-3`` a float, ``true`` a boolean, ``[32, 32]`` a list and ``null`` None.

    Raises:
        InvalidArgumentError: an assignment without ``=``, with an empty key part, or whose
            value is a YAML mapping or is not valid YAML.
    """
    import yaml

    nested: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        parts = key.strip().split(".")
        if not equals or not all(parts):
            raise InvalidArgumentError(
                f"--set {assignment!r}: expected KEY=VALUE with a dotted KEY such as "
                "common.steps=200 or seed=1"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise InvalidArgumentError(
                f"--set {assignment!r}: invalid YAML value: {error}"
            ) from error
        value = _scientific_numbers(value)
        if isinstance(value, dict):
            raise InvalidArgumentError(
                f"--set {assignment!r}: expected a scalar or a list; set the keys of a mapping "
                "one at a time"
            )
        node = nested
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return nested


# PyYAML implements YAML 1.1, whose floats need a dot, so it reads 1e-3 as the string "1e-3".
_SCIENTIFIC = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _scientific_numbers(value: Any) -> Any:
    """Return ``value`` with every string in scientific notation (``1e-3``) as a float."""
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value):
        return float(value)
    if isinstance(value, dict):
        return {key: _scientific_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scientific_numbers(item) for item in value]
    return value


def check_keys(values: Mapping[str, Any], schema: Mapping[str, Any], source: str) -> None:
    """Raise ``InvalidArgumentError`` for the first key of ``values`` that ``schema`` lacks.

    The message names the key with its dotted path and lists the valid keys at its level.
    """
    _check_keys(values, schema, source, ())


def _check_keys(
    values: Mapping[str, Any], schema: Mapping[str, Any], source: str, path: tuple[str, ...]
) -> None:
    for key, value in values.items():
        dotted = ".".join((*path, str(key)))
        if key not in schema:
            level = f" under {'.'.join(path)}" if path else ""
            raise InvalidArgumentError(
                f"{source}: unknown key {dotted!r}; valid keys{level}: "
                + ", ".join(sorted(map(str, schema)))
            )
        expected = schema[key]
        if isinstance(expected, Mapping) and expected and not isinstance(value, Mapping):
            if not _is_free_mapping(expected):
                raise InvalidArgumentError(
                    f"{source}: {dotted!r} is a section; expected a mapping of its keys "
                    f"({', '.join(sorted(map(str, expected)))}), got {value!r}"
                )
        if isinstance(value, Mapping) and isinstance(expected, Mapping):
            if not _is_free_mapping(expected):
                _check_keys(value, expected, source, (*path, str(key)))
        elif isinstance(value, Mapping) and not isinstance(expected, Mapping):
            raise InvalidArgumentError(
                f"{source}: {dotted!r} is a single value, not a section; got the mapping {value!r}"
            )


class _FreeMapping(dict[str, Any]):
    """A schema leaf whose value is a mapping with keys of the user's choice."""


def free_mapping() -> dict[str, Any]:
    """Return a schema leaf that accepts a mapping with any keys (per-response values)."""
    return _FreeMapping()


def _is_free_mapping(value: Any) -> bool:
    return isinstance(value, _FreeMapping)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in: nested mappings merge, other values replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- resolution against an argparse parser -----------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_parsers(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> list[argparse.ArgumentParser]:
    """Return the chain of subparsers ``args`` went through (``prepare`` then ``kuairand``)."""
    chain: list[argparse.ArgumentParser] = []
    current = parser
    while True:
        children = _subparsers(current)
        chosen = None
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = getattr(args, action.dest or "", None)
        if not children or chosen is None:
            return chain
        current = children[chosen]
        chain.append(current)


def _setting_actions(parsers: Sequence[argparse.ArgumentParser]) -> dict[str, argparse.Action]:
    actions: dict[str, argparse.Action] = {}
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
                continue
            if action.dest in _NOT_SETTINGS or action.dest == argparse.SUPPRESS:
                continue
            actions[action.dest] = action
    return actions


def relax_required(parser: argparse.ArgumentParser) -> None:
    """Make every required option of ``parser`` and its subparsers optional for argparse.

    A value of a required option may come from ``--config`` or ``--set``, so argparse must not
    reject its absence; :func:`resolve_settings` checks it after merging. Each relaxed option is
    marked with the attribute ``recrl_required``.
    """
    for action in parser._actions:
        if action.option_strings and action.required:
            action.required = False
            action.recrl_required = True  # type: ignore[attr-defined]
    for child in _subparsers(parser).values():
        relax_required(child)


def _explicit_options(
    parser: argparse.ArgumentParser,
    chain: Sequence[argparse.ArgumentParser],
    argv: Sequence[str],
) -> dict[str, Any]:
    """Return the options of ``chain`` given on the command line, by parsing without defaults."""
    saved = []
    for child in chain:
        for action in child._actions:
            saved.append((action, action.default))
            action.default = argparse.SUPPRESS
    try:
        explicit = vars(parser.parse_args(list(argv)))
    finally:
        for action, default in saved:
            action.default = default
    return explicit


def _convert(action: argparse.Action, value: Any, source: str) -> Any:
    """Convert a value from a file or ``--set`` as argparse would convert the option's text."""
    key = action.dest
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if value is None:
        return None
    if many:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise InvalidArgumentError(
                f"{source}: {key}: expected {action.nargs} values, got {len(items)}: {items!r}"
            )
        return [_convert_one(action, item, source) for item in items]
    if isinstance(value, (list, tuple)):
        raise InvalidArgumentError(f"{source}: {key}: expected one value, got the list {value!r}")
    return _convert_one(action, value, source)


def _convert_one(action: argparse.Action, value: Any, source: str) -> Any:
    converter = action.type
    if callable(converter):
        try:
            # int(True) and int(2.5) would succeed silently; a setting of 2.5 steps is an error.
            if converter in (int, float) and isinstance(value, bool):
                raise TypeError(value)
            if converter is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            value = converter(value)
        except (TypeError, ValueError) as error:
            name = getattr(converter, "__name__", "value")
            expected = {"int": "an integer", "float": "a number"}.get(name, f"a value of {name}")
            raise InvalidArgumentError(
                f"{source}: {action.dest}: expected {expected}, got {value!r}"
            ) from error
    if action.choices is not None and value not in action.choices:
        raise InvalidArgumentError(
            f"{source}: {action.dest}: expected one of {sorted(action.choices)}, got {value!r}"
        )
    return value


def resolve_settings(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    args: argparse.Namespace,
    sections: ConfigSections | None = None,
) -> dict[str, Any]:
    """Merge defaults, ``--config``, explicit options and ``--set`` and write them into ``args``.

    ``args`` is the namespace ``parser.parse_args(argv)`` returned; ``parser`` must have gone
    through :func:`relax_required`. Each option's final value is set on ``args`` (values from
    the file or ``--set`` converted with the option's type and checked against its choices).

    Args:
        parser: the top-level parser of the command line.
        argv: the arguments ``args`` was parsed from.
        args: the parsed namespace, updated in place.
        sections: the algorithm sections of the command, if it has any.

    Returns:
        The resolved settings: option values and sections, nested.

    Raises:
        InvalidArgumentError: an unknown key, a value of the wrong type or outside the
            option's choices, or a required option without a value.
    """
    chain = _command_parsers(parser, args)
    actions = _setting_actions(chain)
    sections = sections or ConfigSections({}, {})
    defaults = {dest: copy.deepcopy(action.default) for dest, action in actions.items()}
    defaults = deep_merge(defaults, sections.defaults)
    schema = {**{dest: None for dest in actions}, **sections.schema}

    config_path = getattr(args, "config", None)
    from_file = load_config_file(config_path) if config_path else {}
    check_keys(from_file, schema, f"--config {config_path}")
    from_set = parse_set_options(getattr(args, "set", None) or [])
    check_keys(from_set, schema, "--set")
    explicit = _explicit_options(parser, chain, argv)
    from_command_line = {key: explicit[key] for key in actions if key in explicit}

    resolved = deep_merge(defaults, from_file)
    for dest, action in actions.items():
        if dest in from_file:
            resolved[dest] = _convert(action, from_file[dest], f"--config {config_path}")
    resolved = deep_merge(resolved, from_command_line)
    resolved = deep_merge(resolved, from_set)
    for dest, action in actions.items():
        if dest in from_set:
            resolved[dest] = _convert(action, from_set[dest], "--set")

    for dest, action in actions.items():
        if getattr(action, "recrl_required", False) and resolved.get(dest) is None:
            flag = max(action.option_strings, key=len)
            raise InvalidArgumentError(
                f"{flag}: missing; give it on the command line, as '{dest}:' in the --config "
                f"file, or as --set {dest}=VALUE"
            )
        setattr(args, dest, resolved[dest])
    if sections.check is not None:
        sections.check(resolved)
    return resolved


# -- the recrl command's options and sections ---------------------------------------------------


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Return the parsers that end a command line: each command, and each ``prepare`` source."""
    leaves = []
    for child in _subparsers(parser).values():
        leaves.extend(_leaf_parsers(child) or [child])
    return leaves


_SECTION_HELP = {
    "tscac": ", plus sections run, common and methods (see docs/guide.md)",
    "rmtl": ", plus sections backbone, pretrain, critic, finetune and the key "
    "evaluation_batch_size",
}

RMTL_SECTIONS = ("backbone", "pretrain", "critic", "finetune", "evaluation_batch_size")
"""Top-level keys of the rmtl settings that form :class:`recrl.rmtl.RMTLConfig`."""

TSCAC_SECTIONS = ("run", "common", "methods")
"""Top-level keys of the tscac settings that :func:`recrl.tscac.runner.run` reads."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Give every command of ``parser`` the options --config, --set and --no-progress."""
    for leaf in _leaf_parsers(parser):
        sections = _SECTION_HELP.get(leaf.prog.split()[1], "")
        leaf.add_argument(
            "--config",
            type=Path,
            default=None,
            help="YAML file of settings: the options of this command by their long names with "
            f"'_' for '-' (such as out: runs/x){sections}; command-line options override it",
        )
        leaf.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one setting after --config and the options, repeatable; KEY is "
            "dotted into nested sections (common.steps=200), VALUE is parsed as YAML (1e-3, true, "
            "[32,32])",
        )
        # The global switch, accepted after the command name too. SUPPRESS keeps the value of
        # the global option when this one is absent.
        leaf.add_argument(
            "--no-progress",
            action="store_true",
            default=argparse.SUPPRESS,
            help="hide progress bars",
        )


def _tscac_sections() -> ConfigSections:
    """Return the sections run, common and methods of the tscac settings, with their keys.

    The sections start empty, because the runner fills in each method's own defaults (which
    differ between methods), while the schema lists every field of every method config.
    """
    from recrl.tscac.agents import METHODS
    from recrl.tscac.config import CONFIG_CLASSES
    from recrl.tscac.runner import RunConfig

    def fields_of(cls: type) -> dict[str, Any]:
        # lambdas and discounts take one value per response name as a mapping.
        free = ("discounts", "lambdas")
        return {
            field.name: free_mapping() if field.name in free else None
            for field in dataclasses.fields(cls)
        }

    common: dict[str, Any] = {}
    for cls in CONFIG_CLASSES.values():
        common.update(fields_of(cls))
    methods = {name: fields_of(CONFIG_CLASSES[name]) for name in METHODS}
    schema = {"run": fields_of(RunConfig), "common": common, "methods": methods}
    return ConfigSections(
        defaults={name: {} for name in TSCAC_SECTIONS}, schema=schema, check=_check_tscac
    )


def _check_tscac(settings: Mapping[str, Any]) -> None:
    """Check the tscac sections, and the response names in them against the dataset's."""
    from recrl.data import load_prepared
    from recrl.tscac.config import check_sections, config_from_dict
    from recrl.tscac.runner import RunConfig

    run_config = config_from_dict(RunConfig, dict(settings.get("run") or {}), "run")  # type: ignore[arg-type]
    reward_names = None
    if settings.get("data") is not None:
        reward_names = load_prepared(settings["data"]).reward_names
    check_sections(dict(settings), run_config.methods, reward_names)


def _rmtl_sections() -> ConfigSections:
    """Return the RMTL sections with their built-in defaults."""
    from recrl.rmtl import RMTLConfig

    defaults = RMTLConfig().to_dict()

    def check(settings: Mapping[str, Any]) -> None:
        from recrl.rmtl.pipeline import check_tasks

        check_tasks(
            RMTLConfig.from_dict({key: settings[key] for key in RMTL_SECTIONS if key in settings})
        )

    def keys(values: Any) -> Any:
        if isinstance(values, dict):
            return {key: keys(value) for key, value in values.items()}
        return None

    return ConfigSections(defaults=defaults, schema=keys(defaults), check=check)


def command_sections(command: str) -> ConfigSections | None:
    """Return the algorithm sections of ``command`` (tscac, rmtl), or None for other commands."""
    if command == "tscac":
        return _tscac_sections()
    if command == "rmtl":
        return _rmtl_sections()
    return None
