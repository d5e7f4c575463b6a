"""Evaluate checkpoints of a text run on held-out text (`python -m gssm_jax.evaluate` on a run
with `data.source="text"`).

There is no true process behind text, so no exact entropy and no KL gap: a record holds the mean
next-token loss (nats/token), `bits_per_token`, `bits_per_byte` (docs/text.md) and the
per-position loss curve `loss_t` (t = 1..T-1), how the loss falls with context. The data are the
run's own held-out split (`--data stream`, the default: the first K batches of the split's windows,
those the training loop evaluates on), or the held-out split of another text source (`--data PATH`,
a file or folder read with the run's tokenizer, seq_len and heldout_fraction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from jax.sharding import NamedSharding

from gssm_jax.config import ConfigError
from gssm_jax.data import text
from gssm_jax.data.stream import process_rows
from gssm_jax.data.text_config import text_section
from gssm_jax.inference.nll import batch_losses, curve_ends, make_nll_fn, write_record
from gssm_jax.inference.rundir import RunDir
from gssm_jax.runtime import parallel
from gssm_jax.train.run_data import text_eval_record

OWN_SPLIT = ("stream", "heldout")  # --data values that mean the run's own held-out split


def corpus_of(run: RunDir, data: str) -> tuple[text.TextCorpus, str]:
    """The corpus whose held-out split is evaluated, and a label for the record."""
    c = run.config
    if data in OWN_SPLIT:
        corpus = text.corpus_from_config(c.data)
    else:
        section = {**text_section(c.data), "sources": {}, "weights": {}}
        other = {"path": data, "seq_len": c.data.seq_len, "text": section}
        try:
            corpus = text.corpus_from_config(other)
        except ConfigError as e:
            raise ConfigError(f"--data {data}: {e}") from None
    paths = ", ".join(s.path for s in corpus.sources)
    fraction = text_section(c.data)["heldout_fraction"]
    return corpus, f"held-out split ({fraction:g}) of {paths}"


def held_out_text(run: RunDir, data: str, batches: int) -> tuple[list[dict], str]:
    """This process's rows of `batches` held-out global batches, with their scored tokens and
    bytes, and a label."""
    c = run.config
    batch_sharding = NamedSharding(run.mesh, parallel.batch_spec(c))
    rows = process_rows(batch_sharding, (c.data.batch_size, c.data.seq_len))
    corpus, label = corpus_of(run, data)
    return text.eval_batches(corpus, c.data.batch_size, rows, batches), label


def evaluate_text_step(
    run: RunDir, step: int, nll_fn: Callable, elements: list[dict], params: Any = None
) -> dict[str, Any]:
    """The record of checkpoint `step` (or of `params`) on held-out text batches."""
    params = run.restore_params(step) if params is None else params
    c = run.config
    sums_L = np.zeros(c.data.seq_len - 1)
    n_seq = scored_tokens = scored_bytes = 0
    for element in elements:
        nll_BxL = batch_losses(run, nll_fn, params, element["tokens"])
        sums_L += nll_BxL.sum(0)
        n_seq += len(nll_BxL)
        scored_tokens += int(element["scored_tokens"])
        scored_bytes += int(element["scored_bytes"])
    loss = float(sums_L.sum() / (n_seq * (c.data.seq_len - 1)))
    return {
        "step": step,
        "sequences": n_seq,
        "seq_len": c.data.seq_len,
        **text_eval_record(loss, scored_tokens, scored_bytes),
        "loss_t": (sums_L / n_seq).tolist(),
    }


def summary_line(record: dict, path: str) -> str:
    return (
        f"eval step {record['step']} | loss {record['loss']:.4f} | bits_per_byte "
        f"{record['bits_per_byte']:.4f} | bits_per_token {record['bits_per_token']:.4f} | "
        f"{curve_ends('loss_t', record['loss_t'])} | no exact entropy for text (no kl_gap) | "
        f"wrote {path}"
    )


def evaluate_text_run(run: RunDir, steps: list[int], data: str, batches: int) -> list[str]:
    """Evaluates `steps` of text run `run`; writes RUN/evals/<step>.json and prints a line each."""
    elements, label = held_out_text(run, data, batches)
    nll_fn, _ = make_nll_fn(run)
    written = []
    for s in steps:
        record, path = write_record(
            run, evaluate_text_step(run, s, nll_fn, elements), label, batches
        )
        print(summary_line(record, path), flush=True)
        written.append(path)
    return written


def compare_runs(runs: list[RunDir], step: int, batches: int) -> list[dict[str, float]]:
    """Loss, bits per token and bits per byte of each run's checkpoint `step`, all on the first
    run's held-out text (what `gssm_jax.kron` reports before and after a factorisation)."""
    elements, _ = held_out_text(runs[0], "stream", batches)
    out = []
    for r in runs:
        record = evaluate_text_step(r, step, make_nll_fn(r)[0], elements)
        out.append({k: record[k] for k in ("loss", "bits_per_token", "bits_per_byte")})
    return out
