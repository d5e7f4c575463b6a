"""Tasks of a submission: one resolved config per grid point, with the flags that reproduce it.

A task's config is built exactly as `gssm_jax.main` will build it in the job (the same
`gssm_jax.runtime.cli` loader and parser over the same `--config.key=value` flags), so a value that
would not survive the trip through the command line is an error here, before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from launch.grid import GridError, expand_grid, has_key

OVERRIDE_PREFIX = "--config."
SLURM_PREFIX = "--config.slurm."


class TaskError(ValueError):
    """A config override or grid value that cannot be handed to `gssm_jax.main`."""


@dataclasses.dataclass(frozen=True)
class Task:
    task_id: int
    grid_point: dict[str, Any]
    overrides: tuple[str, ...]  # `--config.key=value` flags for gssm_jax.main, in order
    config: ml_collections.ConfigDict

    def to_json(self, config_file: str, workdir: str) -> str:
        record = {
            "task_id": self.task_id,
            "config_file": config_file,
            "workdir": workdir,
            "grid_point": self.grid_point,
            "overrides": list(self.overrides),
            "config": json.loads(self.config.to_json_best_effort()),
        }
        return json.dumps(record, indent=2, sort_keys=False, default=repr) + "\n"


def split_overrides(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(`--config.key=value` flags for main, {slurm field: text}); anything else is an error."""
    main_flags: list[str] = []
    slurm: dict[str, str] = {}
    for arg in args:
        if not arg.startswith(OVERRIDE_PREFIX) or "=" not in arg:
            raise TaskError(f"argument {arg!r}: expected --config.<key>=<value>")
        if arg.startswith(SLURM_PREFIX):
            key, _, value = arg[len(SLURM_PREFIX) :].partition("=")
            slurm[key] = value
        else:
            main_flags.append(arg)
    return main_flags, slurm


def override_key(flag: str) -> str:
    return flag[len(OVERRIDE_PREFIX) :].partition("=")[0]


def load_config(config_arg: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config of file `config_arg` (`path[:arg]`) with `overrides` applied, as main parses it."""
    from gssm_jax.config import ConfigError
    from gssm_jax.runtime import cli

    try:
        rest, pairs = cli.split_overrides(overrides)
        if rest:
            raise TaskError(f"argument {rest[0]!r}: expected --config.<key>=<value>")
        return cli.load_config(config_arg, pairs)
    except ConfigError as e:
        raise TaskError(str(e)) from None


def format_value(value: Any) -> str:
    """`value` as the text of a `--config.key=<text>` flag."""
    if isinstance(value, str):
        return value
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, ml_collections.ConfigDict):
        a = a.to_dict()
    return a == b


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def check_override_keys(base: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    for flag in overrides:
        key = override_key(flag)
        if not has_key(base, key):
            raise TaskError(f"config key {key} (from {flag!r}): not a field of the config")


def make_task(
    task_id: int, config_arg: str, overrides: Sequence[str], point: Mapping[str, Any]
) -> Task:
    """The task of grid `point`: its flags, and its config parsed from them and checked."""
    point_flags = [f"{OVERRIDE_PREFIX}{key}={format_value(v)}" for key, v in point.items()]
    flags_ = (*overrides, *point_flags)
    try:
        config = load_config(config_arg, flags_)
    except TaskError as e:
        raise TaskError(f"task {task_id} {dict(point)}: {e}") from None
    for key, value in point.items():
        got = _lookup(config, key)
        if not _same(got, value):
            raise GridError(
                f"grid key {key}: value {value!r} reads back as {got!r} from the command line "
                f"flag {OVERRIDE_PREFIX}{key}={format_value(value)}"
            )
    return Task(task_id, dict(point), tuple(flags_), config)


def make_tasks(config_arg: str, overrides: Sequence[str], grid: Mapping[str, list]) -> list[Task]:
    """One Task per grid point (one task when there is no grid); raises on the first bad value."""
    clash = sorted(set(map(override_key, overrides)) & set(grid))
    if clash:
        raise GridError(f"grid key {clash[0]}: also set by --config.{clash[0]}=...; keep one")
    points = expand_grid(grid)
    return [make_task(i, config_arg, overrides, point) for i, point in enumerate(points)]
