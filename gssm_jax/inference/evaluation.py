"""Evaluate kept checkpoints of a run on held-out data, without touching what the run wrote
(the library of `python -m gssm_jax.evaluate`).

For each evaluated step it writes `RUN/evals/<step>.json`: the model's mean next-token loss, the
exact entropy of the same tokens and `kl_gap = loss - entropy` (nats/token), and the per-position
curve `kl_t` (t = 1..T-1): the model's loss at position t minus the exact -log p(x(t) | x(<t)),
averaged over the sequences, i.e. how fast the model adapts in context. The data are the run's own
held-out stream (`--data stream`, the default: `eval.seed`, the first K batches of
`data.batch_size`, the same sequences the training loop evaluates on), or a set written by
`gssm_jax.write_data` (`--data PATH`, checked against the run's graph, graph seed and seq_len).
Graphs with `context` nodes use the Monte Carlo entropy of `gssm.entropy` (64 kernel draws, seed 0,
as the training loop).

It runs as one process over the local devices, with the run's mesh rules. Only `RUN/evals/` is
written; checkpoints are read through a read-only manager. A run directory
without config or checkpoints, a missing step, a checkpoint from another model or data from another
graph exits 2 with a one-line error before any evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jax.sharding import NamedSharding

from gssm_jax.data import files
from gssm_jax.data.stream import StreamSource, cpu_tables, process_rows
from gssm_jax.gssm.entropy import sequence_entropy
from gssm_jax.inference.nll import batch_losses, curve_ends, make_nll_fn, write_record
from gssm_jax.inference.rundir import RunDir, open_run
from gssm_jax.runtime import parallel

# ---- data ---------------------------------------------------------------------------------------


def held_out_batches(run: RunDir, data: str, batches: int) -> tuple[list[np.ndarray], str]:
    """This process's rows of `batches` global batches of data.batch_size x seq_len, and a label."""
    c = run.config
    batch_sharding = NamedSharding(run.mesh, parallel.batch_spec(c))
    rows = process_rows(batch_sharding, (c.data.batch_size, c.data.seq_len))
    graph, tables = run.process
    if data == "stream":
        source = StreamSource(
            graph,
            cpu_tables(tables),
            c.eval.seed,
            c.data.seq_len,
            c.data.batch_size,
            rows,
            batches,
        )
        return [source[k]["tokens"] for k in range(batches)], f"stream eval.seed={c.eval.seed}"
    fs = files.open_checked(data, graph, tables, c.data)
    local = files.eval_batches(fs, c.data.batch_size, rows, batches)
    return [element["tokens"] for element in local], fs.path


def exact_per_position(run: RunDir, tokens_BxT: np.ndarray) -> np.ndarray:
    """-log p(x(t) | x(<t)) for t = 1..T-1 under the true process (Monte Carlo for context)."""
    res = sequence_entropy(*run.process, tokens_BxT, per_position=True)
    return np.asarray(res.per_position, np.float64)


# ---- model --------------------------------------------------------------------------------------


def evaluate_step(run: RunDir, step: int, nll_fn, batches: list, h_list: list) -> dict[str, Any]:
    """The record of one checkpoint on the given batches and their exact per-position entropies."""
    params = run.restore_params(step)
    c = run.config
    sums = np.zeros(c.data.seq_len - 1)
    loss_sum = h_sum = 0.0
    n_seq = 0
    for local_BxT, h_BxTm1 in zip(batches, h_list):
        nll_BxTm1 = batch_losses(run, nll_fn, params, local_BxT)
        sums += (nll_BxTm1 - h_BxTm1).sum(0)
        loss_sum += nll_BxTm1.sum()
        h_sum += h_BxTm1.sum()
        n_seq += len(local_BxT)
    n_tok = n_seq * (c.data.seq_len - 1)
    loss, entropy = loss_sum / n_tok, h_sum / n_tok
    return {
        "step": step,
        "loss": loss,
        "entropy": entropy,
        "kl_gap": loss - entropy,
        "kl_t": (sums / n_seq).tolist(),
        "sequences": n_seq,
        "seq_len": c.data.seq_len,
    }


def summary_line(record: dict, path: str) -> str:
    return (
        f"eval step {record['step']} | loss {record['loss']:.4f} | entropy "
        f"{record['entropy']:.4f} | kl_gap {record['kl_gap']:.4f} | "
        f"{curve_ends('kl_t', record['kl_t'])} | wrote {path}"
    )


def evaluate_run(
    workdir: str,
    step: int | None = None,
    all_steps: bool = False,
    data: str = "stream",
    batches: int | None = None,
) -> list[str]:
    """Evaluates checkpoint `step` (default the latest) or every kept one of the run in `workdir`
    on `batches` held-out batches of `data`; writes RUN/evals/<step>.json and prints a line each.
    Returns the paths written. Every user error (ConfigError) is raised before any evaluation."""
    run = open_run(workdir)
    latest = run.step_or_latest(None if all_steps else step)  # a RunError when there is none
    assert run.manager is not None  # step_or_latest raised without one
    steps = run.steps if all_steps else [latest]
    for s in steps:
        run.check_compatible(s)
    batches = batches or run.config.eval.batches
    if run.is_text:  # no true process: loss and bits per byte (inference/text_eval.py)
        from gssm_jax.inference.text_eval import evaluate_text_run

        return evaluate_text_run(run, steps, data, batches)
    tokens, label = held_out_batches(run, data, batches)
    h_list = [exact_per_position(run, t) for t in tokens]
    nll_fn, _ = make_nll_fn(run)
    written = []
    for s in steps:
        record, path = write_record(
            run, evaluate_step(run, s, nll_fn, tokens, h_list), label, batches
        )
        print(summary_line(record, path), flush=True)
        written.append(path)
    return written
