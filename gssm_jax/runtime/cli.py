"""The one command-line module: `--config FILE[:ARG]` plus overrides, and one-line flag errors.

`gssm_jax.main`, `gssm_jax.write_data`, `gssm_jax.difficulty`, `gssm_jax.kron`, `gssm_jax.bench
data|train` and `launch.submit` all read `--config.KEY=VALUE` here, in any position (before or
after `--config`).
A value is parsed by the type of the field it replaces (int, float, bool, str; a Python literal for
tuples, lists and sections). An unknown key or a value of the wrong type is a `CliError` naming the
flag and the key; `parse_args` turns it (and any ConfigError raised while loading) into one line on
stderr and exit code 2, before any work starts. The plain-flag CLIs (evaluate, generate) parse
with `OneLineParser` and report their user errors with `report_error`, the same way.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import ml_collections

from gssm_jax.config import ConfigError, config_from_json, load_config_file, schema
from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG

OVERRIDE_PREFIX = "--config."
# The embedded default config (the debug run, = configs/debug.py): the schema module's get_config().
DEFAULT_CONFIG_FILE = schema.__file__


class CliError(ConfigError):
    """A command-line argument that cannot be applied, named as it was typed."""


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(the other arguments, [(dotted key, value text)] of every `--config.KEY=VALUE`, in order)."""
    rest: list[str] = []
    overrides: list[tuple[str, str]] = []
    for arg in argv:
        if not arg.startswith(OVERRIDE_PREFIX):
            rest.append(arg)
            continue
        key, eq, text = arg[len(OVERRIDE_PREFIX) :].partition("=")
        if not eq or not key:
            raise CliError(f"{arg!r}: expected --config.KEY=VALUE (with '=')")
        overrides.append((key, text))
    return rest, overrides


def _walk(config: ml_collections.ConfigDict, key: str) -> tuple[Any, str]:
    """(the section holding `key`'s last part, that part); CliError when a part does not exist."""
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        named = depth == len(parts) - 1 and ".".join(parts[:depth]) in schema.NAMED_SOURCES
        if named and isinstance(node, ml_collections.ConfigDict):
            break  # a text source's name: a new one is added
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:depth])
            known = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, known, n=1)
            hint = f" (did you mean {'.'.join([*parts[:depth], close[0]])}?)" if close else ""
            scope = f"section {where}" if where else "the config"
            raise CliError(f"config key {key}: {scope} has no field {part!r}{hint}")
        if depth < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_value(kind: type, text: str) -> Any:
    """`text` as a value of type `kind`; ValueError (with what was expected) otherwise."""
    if kind is bool:
        if text.lower() not in _BOOLS:
            raise ValueError("expected true or false")
        return _BOOLS[text.lower()]
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if kind is str:
        return text
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        if kind in (ml_collections.ConfigDict, dict):
            raise ValueError("expected a Python dict literal (the field is a section)") from None
        if kind in (tuple, list):
            raise ValueError(f"expected a Python {kind.__name__} literal") from None
        return text  # a field of unknown type (None so far) takes a literal or else a string
    if kind is ml_collections.ConfigDict or kind is dict:
        if not isinstance(value, dict):
            raise ValueError("expected a Python dict literal (the field is a section)")
        return ml_collections.ConfigDict(value) if kind is ml_collections.ConfigDict else value
    if kind in (tuple, list):
        if not isinstance(value, tuple | list):
            raise ValueError(f"expected a Python {kind.__name__} literal")
        return kind(value)
    return value


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets dotted `key` of `config` from its command-line text; CliError naming it otherwise."""
    flag = f"{OVERRIDE_PREFIX}{key}={text}"
    try:
        section, name = _walk(config, key)
    except CliError as e:
        raise CliError(f"{flag}: {e}") from None
    # a text source's path or weight: any literal (a weight may turn from 3 to 2.5), else a string
    named = key.rpartition(".")[0] in schema.NAMED_SOURCES
    kind = object if named else section.get_type(name)
    try:
        value = parse_value(kind, text)
        with section.unlocked():
            if named and name in section:
                del section[name]  # its old value's type does not bind the new one
            section[name] = value
    except (ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CliError(f"{flag}: config key {key} ({kind.__name__}): {reason}") from None


def load_config(
    config_arg: str, overrides: Sequence[tuple[str, str]] = ()
) -> ml_collections.ConfigDict:
    """The config of file `config_arg` (`FILE[:ARG]`) with `overrides` applied in order."""
    config = load_config_file(config_arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config {config_arg!r}: get_config() returned {type(config).__name__}")
    for key, text in overrides:
        apply_override(config, key, text)
    return config


def leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every field, sections flattened, in the config's order."""
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def keys_help(config: ml_collections.ConfigDict) -> str:
    """One line per config key with its value: what `--help` shows below the flags."""
    return "\n".join(f"  {OVERRIDE_PREFIX}{key}={value!r}" for key, value in leaves(config))


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str], default_config: str | None
) -> tuple[argparse.Namespace, ml_collections.ConfigDict]:
    """(parsed flags, loaded config with overrides) for a parser with a `--config` argument.

    `--help` lists the flags and then every config key with its value in the file given by
    `--config` (or `default_config`). A bad argument prints one line and exits 2.
    """
    try:
        rest, overrides = split_overrides(argv)
        if "-h" in rest or "--help" in rest:
            args, _ = parser.parse_known_args([a for a in rest if a not in ("-h", "--help")])
            help_config = args.config or default_config
            if help_config is not None:  # without a config file there are no keys to list
                parser.epilog = (
                    f"config keys (set any with --config.KEY=VALUE; values from {help_config}):\n"
                    + keys_help(load_config_file(help_config))
                )
            parser.print_help()
            sys.exit(0)
        args = parser.parse_args(rest)
        config_arg = args.config or default_config
        if config_arg is None:
            raise CliError("--config FILE is required")
        return args, load_config(config_arg, overrides)
    except (CliError, ConfigError) as e:
        exit_with_error(e)


def saved_run_config(path: str, argv: Sequence[str]) -> ml_collections.ConfigDict:
    """A run's saved `config.json` with the command line's --config.KEY=VALUE overrides on top
    (a bad one exits 2 with one line)."""
    try:
        config = config_from_json(path)
        for key, text in split_overrides(argv)[1]:
            apply_override(config, key, text)
    except (OSError, ValueError) as e:
        exit_with_error(e)
    return config


def report_error(error: BaseException) -> int:
    """Prints `error: ...` (first line only) to stderr; returns EXIT_BAD_CONFIG."""
    lines = str(error).splitlines() or [type(error).__name__]
    print(f"error: {lines[0]}", file=sys.stderr, flush=True)
    return EXIT_BAD_CONFIG


def exit_with_error(error: BaseException) -> NoReturn:
    """`report_error`, then exit with EXIT_BAD_CONFIG."""
    sys.exit(report_error(error))


def config_parser(
    prog: str, doc: str | None, default_config: str | None
) -> argparse.ArgumentParser:
    """An argparse parser with the shared `--config` argument; add the command's own flags to it."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    # one-line errors; mypy rejects assigning to a method, which is what this override is
    parser.error = _usage_error  # type: ignore[method-assign]
    parser.add_argument(
        "--config",
        default=None,
        help=f"config file, FILE or FILE:ARG (default: {default_config or 'required'}); "
        "--config.KEY=VALUE overrides any key (listed below with --help)",
    )
    return parser


def _usage_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_CONFIG)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def non_negative(cast: Callable) -> Callable:
    """A flag type: `cast(text)`, which must be >= 0."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
        return value

    return parse
