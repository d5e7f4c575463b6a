"""One row per run (`runs.csv`): its grid point, what it is, how far it got and how well it did."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from gssm_jax.reporting import params as params_lib
from gssm_jax.reporting.runs import RunRecord, finite, flatten

# Columns every table has, in order; grid keys come after `status`.
LEADING = ("run", "status")
DERIVED = (
    "family",
    "params",
    "hidden_nodes",
    "vocab",
    "alpha_x",
    "alpha_z",
    "train_sequences",
)
RESULTS = (
    "step",
    "steps",
    "tokens",
    "flops_per_token",  # the model's training FLOPs per token (logged by the run)
    "train_loss",
    "train_entropy",
    "train_kl_gap",
    "eval_loss",
    "eval_entropy",
    "eval_kl_gap",
    "best_eval_kl_gap",
    "best_eval_step",
    "train_bits_per_byte",  # text runs (no entropy, no kl_gap): docs/text.md
    "eval_bits_per_byte",
    "wall_time_s",
    "train_time_s",
    "exit_code",
    "updated",
    "path",
)


def graph_facts(config: dict) -> dict[str, Any]:
    """hidden_nodes, vocab, alpha_x and alpha_z (None unless every hidden node shares one) of the
    run's graph, with data.alpha_x / data.alpha_z applied. A text run has no graph: its vocab is its
    tokenizer's and the rest is None."""
    data = config.get("data", {})
    if data.get("source") == "text":
        return {"hidden_nodes": None, "vocab": _text_vocab(data), "alpha_x": None, "alpha_z": None}
    graph = data.get("graph") or {}
    hidden = [f for f in graph.values() if isinstance(f, dict) and not f.get("observed", False)]
    observed = [f for f in graph.values() if isinstance(f, dict) and f.get("observed", False)]
    alphas_z = {
        data.get("alpha_z") if data.get("alpha_z") is not None else f.get("alpha") for f in hidden
    }
    alpha_x = data.get("alpha_x")
    if alpha_x is None and observed:
        alpha_x = observed[0].get("alpha")
    return {
        "hidden_nodes": len(hidden) or None,
        "vocab": observed[0].get("state_dim") if observed else None,
        "alpha_x": alpha_x,
        "alpha_z": alphas_z.pop() if len(alphas_z) == 1 else None,
    }


def _text_vocab(data: dict) -> int | None:
    """The tokenizer's vocabulary of a text run's `data` section (None when it cannot be read)."""
    from gssm_jax.data.text_tokenizers import BYTES, ByteTokenizer, load_tokenizer

    spec = (data.get("text") or {}).get("tokenizer", BYTES)
    try:
        return ByteTokenizer.vocab_size if spec == BYTES else load_tokenizer(spec).vocab_size
    except (ValueError, OSError):
        return None


def train_sequences(config: dict) -> int | None:
    """Sequences the run trains on: data.train_sequences, or the whole set (its metadata); None
    for a stream (every batch is new)."""
    data = config.get("data", {})
    if data.get("source") != "files":
        return None
    if data.get("train_sequences"):
        return int(data["train_sequences"])
    try:
        with open(f"{data.get('path', '')}/metadata.json") as f:
            return int(json.load(f)["num_sequences"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tokens_per_step(config: dict) -> int | None:
    data = config.get("data", {})
    b, t = data.get("batch_size"), data.get("seq_len")
    return b * t if isinstance(b, int) and isinstance(t, int) else None


def run_row(run: RunRecord) -> dict[str, Any]:
    config = run.config or {}
    point = (run.ref.task or {}).get("grid_point", {})
    last_train = run.train[-1] if run.train else {}
    last_eval = (run.final or {}).get("eval") or (run.eval[-1] if run.eval else {})
    gaps = [(finite(r.get("kl_gap")), r.get("step")) for r in run.eval]
    gaps = [(g, s) for g, s in gaps if g is not None]
    best = min(gaps) if gaps else (None, None)
    step = max([r.get("step", 0) for r in run.train + run.eval] or [0])
    per_step = _tokens_per_step(config)
    row: dict[str, Any] = {"run": run.ref.name, "status": run.status}
    for key, value in point.items():
        row[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
    row["family"] = config.get("model", {}).get("family", "transformer" if config else None)
    row["params"] = params_lib.logged_params(run.final, last_train) or params_lib.count_params(
        config
    )
    row.update(graph_facts(config) if config else {})
    row["train_sequences"] = train_sequences(config) if config else None
    row["step"] = step
    row["steps"] = config.get("optim", {}).get("steps")
    row["tokens"] = step * per_step if per_step else None
    row["flops_per_token"] = finite(last_train.get("flops_per_token"))
    for prefix, record in (("train", last_train), ("eval", last_eval)):
        for key in ("loss", "entropy", "kl_gap"):
            row[f"{prefix}_{key}"] = finite(record.get(key))
    row["best_eval_kl_gap"], row["best_eval_step"] = best
    for prefix, record in (("train", last_train), ("eval", last_eval)):
        row[f"{prefix}_bits_per_byte"] = finite(record.get("bits_per_byte"))
    row["wall_time_s"] = run.wall_time_s
    row["train_time_s"] = _train_time(run.train)
    row["exit_code"] = run.exit_code
    row["updated"] = (
        datetime.datetime.fromtimestamp(run.updated).isoformat(timespec="seconds")
        if run.updated
        else None
    )
    row["path"] = str(run.ref.run_dir)
    return row


def _train_time(records: list[dict]) -> float | None:
    """Seconds of training steps (step_time_s over each log window; eval and start-up excluded)."""
    total, prev = 0.0, 0
    for r in records:
        t, step = finite(r.get("step_time_s")), r.get("step")
        if t is None or not isinstance(step, int):
            continue
        total += t * (step - prev)
        prev = step
    return total if records else None


def runs_table(runs: list[RunRecord], extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """The table of `runs`: leading columns, grid keys, derived facts, results; `extra_keys` (any
    dotted config key, e.g. optim.lr) are added from each run's config when not already there,
    and so are the grid keys of a run without that grid point (a run outside the sweep)."""
    rows = [run_row(r) for r in runs]
    grid_keys = list(
        dict.fromkeys(k for r in rows for k in r if k not in (*LEADING, *DERIVED, *RESULTS))
    )
    # a run outside a sweep (or of another sweep) has no grid point: its value of a grid key is
    # the one its config.json holds, as for the extra keys
    for key in dict.fromkeys([*grid_keys, *extra_keys]):
        for row, run in zip(rows, runs):
            if key not in row:
                value = flatten(run.config or {}).get(key)
                row[key] = (
                    json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
                )
    grid_keys = list(
        dict.fromkeys(k for r in rows for k in r if k not in (*LEADING, *DERIVED, *RESULTS))
    )
    columns = [*LEADING, *grid_keys, *DERIVED, *RESULTS]
    return pd.DataFrame(rows, columns=columns)


def grid_keys(table: pd.DataFrame) -> list[str]:
    """The grid-point (and extra) columns, in table order."""
    fixed = {*LEADING, *DERIVED, *RESULTS}
    return [c for c in table.columns if c not in fixed]


def varying(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys with more than one distinct value among the runs."""
    return [k for k in keys if k in table and table[k].astype(str).nunique(dropna=False) > 1]
