"""Which runs one line of a scaling plot may join: only runs that agree on every varying key but
the x axis (and the keys that move a run along it) and the seeds, which the line averages over.

A line through runs that differ in anything else draws a trend that is not there: a transformer
run and a mamba run that both lack `optim.lr` used to fall into one "none" group and be joined.
Both the PNGs (figures.py) and the interactive charts (interactive.py) draw their lines by
`series_labels`; the interactive heatmap splits its cells by `cell_splits`.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

SEED_KEYS = ("seed", "data.seed", "data.graph_seed", "data.shuffle_seed", "eval.seed")
# why a report has no heatmap when only one key besides the seeds varies
NO_HEATMAP = "no two keys vary (seeds are left out: runs that differ only in seed are averaged)"
MISSING = "none"  # the label of runs without a value of a key


def label(value) -> str:
    """A cell's value as text: MISSING for None and NaN; a whole float as an integer (a grid
    key that some runs lack is a float column: 64.0 is shown as 64)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _is_int(values: pd.Series) -> bool:
    """Every present value a whole number (bools are choices, not sizes)."""
    present = [v for v in values if label(v) != MISSING]
    return bool(present) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_) and float(v).is_integer()
        for v in present
    )


def moves_along(key: str, x: str, values: pd.Series) -> bool:
    """Whether `key` may differ along a line against `x`: the x column itself; for params, the
    integer model.* keys (widths, depths, heads: a size sweep), not model.family, dtype or any
    other choice; for train_sequences, data.train_sequences."""
    if key == x:
        return True
    if x == "params":
        return key.startswith("model.") and key != "model.family" and _is_int(values)
    if x == "train_sequences":
        return key == "data.train_sequences"
    return False


def line_keys(table: pd.DataFrame, x: str, keys: list[str]) -> list[str]:
    """The keys among `keys` that vary in `table` and must be equal along one line of `x`."""
    out = []
    for key in dict.fromkeys(keys):
        if key not in table or key in SEED_KEYS or moves_along(key, x, table[key]):
            continue
        if key == "model.family" and "family" in keys and "family" in table:
            continue  # the derived family column says the same for every run, grid or not
        if table[key].map(label).nunique() > 1:
            out.append(key)
    return out


def series_labels(table: pd.DataFrame, x: str, keys: list[str]) -> pd.Series:
    """Per row, the name of its line: `k=v, ...` over `line_keys` ("all runs" when none vary;
    long JSON values such as a whole data.graph by order of appearance: `data.graph=#2`)."""
    split = line_keys(table, x, keys)
    if not split:
        return pd.Series("all runs", index=table.index, dtype=object)
    parts = []
    for key in split:
        values = table[key].map(label)
        if values.str.startswith("{").any():
            order = {v: i + 1 for i, v in enumerate(dict.fromkeys(values))}
            values = values.map(lambda v, o=order: f"#{o[v]}")
        parts.append(f"{key}=" + values)
    names = parts[0]
    for part in parts[1:]:
        names = names + ", " + part
    return names


def cell_splits(table: pd.DataFrame, cell: list[str], keys: list[str]) -> list[str]:
    """The keys to split `table` by so that no group of runs sharing the `cell` keys' values
    differs in another key of `keys` (seeds aside): taken one at a time in `keys` order while
    some cell still mixes runs that differ in one. A heatmap draws one panel per split value."""
    candidates = [k for k in dict.fromkeys(keys) if k in table and k not in cell and k not in SEED_KEYS]  # fmt: skip
    if not candidates:
        return []
    labels = table[candidates + cell].apply(lambda col: col.map(label))
    splits: list[str] = []
    while True:
        by = labels.groupby([*splits, *cell], sort=False)
        mixed = [k for k in candidates if k not in splits and (by[k].nunique() > 1).any()]
        if not mixed:
            return splits
        splits.append(mixed[0])
