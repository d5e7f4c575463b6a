"""Sweep grids: a Python file whose `get_grid()` maps dotted config keys to lists of values.

The grid's points are the Cartesian product of the lists, in the file's key order (the last key
varies fastest); point i becomes array task i. Nested dicts (or a ConfigDict) are flattened into
dotted keys, so `{"optim": {"lr": [1e-3, 3e-3]}}` and `{"optim.lr": [1e-3, 3e-3]}` are the same grid.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections


class GridError(ValueError):
    """A grid file or grid key that cannot be expanded, named by path or key."""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, list]:
    flat: dict[str, list] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping | ml_collections.ConfigDict):
            flat.update(_flatten(value, f"{dotted}."))
        elif isinstance(value, list | tuple):
            if not value:
                raise GridError(f"grid key {dotted}: the list of values is empty")
            flat[dotted] = list(value)
        else:
            raise GridError(f"grid key {dotted}: values must be a list, got {value!r}")
    return flat


def load_grid(path: str | Path) -> dict[str, list]:
    """The flattened `get_grid()` of the Python file at `path` (read by gssm_jax's one loader)."""
    from gssm_jax.config import ConfigError, load_python_function

    try:
        grid = load_python_function(str(path), "get_grid", what="grid file")
    except ConfigError as e:
        raise GridError(str(e)) from None
    if isinstance(grid, ml_collections.ConfigDict):
        grid = grid.to_dict()
    if not isinstance(grid, Mapping) or not grid:
        raise GridError(f"grid file {str(path)!r}: get_grid() must return a non-empty dict")
    return _flatten(grid)


def expand_grid(grid: Mapping[str, list]) -> list[dict[str, Any]]:
    """The grid's points as {dotted key: value} dicts; an empty grid is the one empty point."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
    """True when `dotted` names a field of `config` (a leaf or a section)."""
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, ml_collections.ConfigDict | Mapping) and part in node:
            node = node[part]
        else:
            return False
    return True


def check_grid_keys(grid: Mapping[str, list], config: ml_collections.ConfigDict) -> None:
    """Raises GridError naming the first grid key that is not a field of `config`."""
    for key in grid:
        if key == "slurm" or key.startswith("slurm."):
            raise GridError(
                f"grid key {key}: Slurm resources are one per job, they cannot vary per array task"
            )
        if not has_key(config, key):
            raise GridError(f"grid key {key}: not a field of the config")
