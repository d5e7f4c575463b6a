"""Dataset grids: which graphs and seeds `gssm_jax.write_data` turns into train/test sets.

A grid config (an ml_collections file whose `get_config()` returns a ConfigDict) has the fields

    root              directory the sets and `index.json` go to
    graph             base graph spec (as `data.graph` of a run config)
    grid              list of sub-grids, each a mapping key -> list of values; a sub-grid is the
                      cartesian product of its lists, the grid is the union of its sub-grids
                      (points giving the same graph are written once). Keys: `alpha_x` (the
                      observed node's alpha), `alpha_z` (every hidden node's alpha) or
                      `NODE.FIELD` (any field of one node, e.g. `Z1.state_dim`)
    seeds             graph seeds; each point is written once per seed
    data_seed_offset  the sequences of seed s come from the stream with data seed s + offset
    n_train, n_test   sequences per set
    seq_len           tokens per sequence
    batch_size        sequences sampled per call while writing
    mc_draws          Monte Carlo kernel draws per sequence for the entropy of `context` graphs

Each (point, seed) is a grid entry with a readable id such as `alpha_x=0.01__alpha_z=0.001__seed=3`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from gssm_jax.config import ConfigError, load_config_file
from gssm_jax.gssm.graph import Graph, parse_graph, with_alphas

GRID_FIELDS = (
    "root",
    "graph",
    "grid",
    "seeds",
    "data_seed_offset",
    "n_train",
    "n_test",
    "seq_len",
    "batch_size",
    "mc_draws",
)
MAX_SEQUENCES = 2**31  # train indices [0, n_train), test indices from TEST_OFFSET: never overlap
TEST_OFFSET = 2**31


class GridError(ValueError):
    """A grid config value that cannot work, named by its key."""


@dataclasses.dataclass(frozen=True)
class GridEntry:
    """One graph and seed of a grid: its train and test sets go to `root/grid_id/{train,test}`."""

    grid_id: str
    point: dict[str, Any]
    graph: Graph
    graph_seed: int
    data_seed: int

    def index_record(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "graph": self.graph.to_dict(),
            "graph_seed": self.graph_seed,
            "data_seed": self.data_seed,
            "train": f"{self.grid_id}/train",
            "test": f"{self.grid_id}/test",
        }


def load_config(path: str) -> ml_collections.ConfigDict:
    """Runs `get_config()` of the config file at `path`."""
    try:
        return load_config_file(path)
    except ConfigError as e:
        raise GridError(str(e)) from None


def plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return {k: plain(v) for k, v in value.to_dict().items()}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _apply(spec: dict, key: str, value: Any) -> None:
    if key in ("alpha_x", "alpha_z"):
        spec.update(with_alphas(spec, **{key: value}))
        return
    node, _, field = key.partition(".")
    if node not in spec or not field:
        raise GridError(
            f"grid key {key!r}: expected alpha_x, alpha_z or NODE.FIELD with NODE "
            f"one of {sorted(spec)}"
        )
    spec[node][field] = value


def _positive(c: Any, key: str) -> int:
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GridError(f"grid config {key}={value!r}: must be a positive integer")
    return value


def check(c: Any) -> None:
    """Raises GridError naming the first bad field of a grid config."""
    missing = [f for f in GRID_FIELDS if f not in c]
    if missing:
        raise GridError(
            f"grid config: missing field {missing[0]!r} (fields: {', '.join(GRID_FIELDS)})"
        )
    if not isinstance(c.root, str) or not c.root:
        raise GridError(f"grid config root={c.root!r}: must be a non-empty path")
    for key in ("n_train", "n_test", "seq_len", "batch_size", "mc_draws"):
        _positive(c, key)
    if c.seq_len < 2:
        raise GridError(f"grid config seq_len={c.seq_len!r}: must be >= 2")
    for key in ("n_train", "n_test"):
        if c[key] > MAX_SEQUENCES:
            raise GridError(f"grid config {key}={c[key]!r}: at most {MAX_SEQUENCES} sequences")
    seeds = list(c.seeds)
    if not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise GridError(f"grid config seeds={seeds!r}: must be a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise GridError(f"grid config seeds={seeds!r}: lists a seed twice")
    offset = c.data_seed_offset
    if not isinstance(offset, int) or offset < 0 or max(seeds) + offset >= 2**32:
        raise GridError(
            f"grid config data_seed_offset={offset!r}: data seeds must lie in [0, 2**32)"
        )
    sub_grids = plain(c.grid)
    if not isinstance(sub_grids, list) or not sub_grids:
        raise GridError(f"grid config grid={sub_grids!r}: must be a non-empty list of sub-grids")
    for sub in sub_grids:
        if not isinstance(sub, dict) or not all(isinstance(v, list) and v for v in sub.values()):
            raise GridError(f"grid config grid: sub-grid {sub!r} must map keys to non-empty lists")


def entries(c: Any) -> list[GridEntry]:
    """The grid's entries, points in config order then seeds; each graph validated."""
    check(c)
    base = plain(c.graph)
    points: list[dict[str, Any]] = []
    for sub in plain(c.grid):
        keys = list(sub)
        points.extend(dict(zip(keys, values)) for values in itertools.product(*sub.values()))
    out: list[GridEntry] = []
    seen: set[str] = set()
    for point in points:
        spec = json.loads(json.dumps(base))
        for key, value in point.items():
            _apply(spec, key, value)
        try:
            graph = parse_graph(spec)
        except ValueError as e:
            raise GridError(f"grid point {point}: {e}") from e
        name = "__".join(f"{k}={_format(v)}" for k, v in point.items())
        signature = json.dumps(graph.to_dict(), sort_keys=True)
        if signature in seen:
            continue
        seen.add(signature)
        for seed in c.seeds:
            out.append(
                GridEntry(f"{name}__seed={seed}", point, graph, seed, seed + c.data_seed_offset)
            )
    ids = [e.grid_id for e in out]
    if len(set(ids)) != len(ids):
        raise GridError("grid config grid: two points give different graphs under the same id")
    return out


def task_entries(
    all_entries: Sequence[GridEntry], task_id: int, task_count: int
) -> list[GridEntry]:
    """The entries array task `task_id` of `task_count` writes: every task_count-th one."""
    if task_count < 1:
        raise GridError(f"--task-count={task_count}: must be >= 1")
    if not 0 <= task_id < task_count:
        raise GridError(f"--task-id={task_id}: must lie in [0, task count {task_count})")
    return list(all_entries[task_id::task_count])
