"""Sample completions from a trained checkpoint and score them under the true process (the
library of `python -m gssm_jax.generate`).

Prompts: by default sequences 0..num-1 of the run's held-out stream (`eval.seed`, the run's own
graph and kernels), cut to lengths spread evenly from 1 (the start token alone) to data.seq_len / 2,
or all to `--prompt-len L`; or `--prompts FILE`: JSON (a list of token lists) or JSONL (one token
list per line), lists may also be objects with a "prompt" field. Every prompt starts with the start
token 0, as every sequence of the process does.

Generation is one jitted program: a prefill of the right-padded prompts into the model's cache
(KV cache or recurrent state), then a `lax.scan` of decode steps (`gssm_jax.inference.decoding`), sharded by
the run's mesh rules (prompts along `batch`, parameters as in training). Past `CHUNK` new tokens the
scan runs in jitted chunks with a progress line on stderr every few seconds (the same tokens).
Sequences longer than the trained `data.seq_len` get a warning line: positions past it are
extrapolation. Row i draws with the key
(seed, i), so a completion depends only on the seed, its index and its prompt.

Each completion is scored under the true process (`gssm.scoring`): the exact -log p(x(t) | x(<t))
of every generated token and the exact conditional entropy H_t at its position, and
`sample_excess_nats` = mean(-log p - H_t) per sequence and over all generated tokens (context
graphs: the Monte Carlo mixture over 64 kernel draws). It is near 0 for a perfect model at
temperature 1 and grows as the model gets worse. Writes JSONL, one line per prompt (index, prompt,
completion, true_nll, true_entropy, sample_excess_nats), to `--out` (default
`RUN/samples/<step>-seed<s>.jsonl`, or `-2`, `-3`, ... after the name when earlier samples hold it:
nothing is overwritten; an existing `--out` is refused without `--overwrite`, and so is one that is
a directory, before any work) and the overall figures beside it (`.summary.json`); prints where it
wrote both. Nothing else in RUN changes. Errors exit 2 with one line.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gssm_jax.gssm import scoring
from gssm_jax.gssm.kernels import as_device_tables
from gssm_jax.gssm.sample import sample_tokens
from gssm_jax.inference import decoding
from gssm_jax.inference.rundir import RunDir, open_run
from gssm_jax.inference.sampling import (
    PromptError,
    Sampling,
    draw,
    output_path,
    prompt_items,
    spread_lengths,
    summary_path,
    write_jsonl,
    write_summary,
)

# ---- prompts ------------------------------------------------------------------------------------


def stream_prompts(run: RunDir, num: int, prompt_len: int | None) -> list[list[int]]:
    """Sequences 0..num-1 of the run's held-out stream, cut to their prompt lengths."""
    c = run.config
    lengths = (
        np.full(num, prompt_len) if prompt_len else spread_lengths(num, c.data.seq_len)
    ).tolist()
    graph, tables_np = run.process
    tables = as_device_tables(tables_np)
    tokens = np.asarray(
        sample_tokens(graph, tables, c.eval.seed, np.arange(num), max(2, max(lengths)))
    )
    return [tokens[i, :n].tolist() for i, n in enumerate(lengths)]


def file_prompts(path: str, vocab_size: int) -> list[list[int]]:
    """Token lists from a JSON list or a JSONL file, checked against the vocabulary."""
    items = prompt_items(
        path, lambda data: isinstance(data, list) and data and all(type(t) is int for t in data)
    )
    out = []
    for where, item in items:
        prompt = item.get("prompt") if isinstance(item, dict) else item
        if not (isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt)):
            raise PromptError(f"--prompts {path} {where}: expected a non-empty list of integers")
        bad = [t for t in prompt if not 0 <= t < vocab_size]
        if bad:
            raise PromptError(
                f"--prompts {path} {where}: token {bad[0]} is outside the vocabulary "
                f"[0, {vocab_size})"
            )
        if prompt[0] != 0:
            raise PromptError(
                f"--prompts {path} {where}: starts with token {prompt[0]}; sequences of the "
                "process start with the start token 0"
            )
        out.append(prompt)
    return out


# ---- generation ---------------------------------------------------------------------------------


def score(run: RunDir, prompts_BxL, lengths_B, new_BxK) -> tuple[np.ndarray, np.ndarray, Any]:
    """Per generated token: true -log p and H_t, (B, K) each, and the excess per sequence."""
    joined = decoding.join(jnp.asarray(prompts_BxL), jnp.asarray(lengths_B), jnp.asarray(new_BxK))
    graph, tables = run.process
    scores = scoring.token_scores(graph, as_device_tables(tables), joined)
    k = new_BxK.shape[1]
    cols = np.asarray(lengths_B)[:, None] - 1 + np.arange(k)  # position t is index t - 1
    rows = np.arange(len(cols))[:, None]
    nll, h = np.asarray(scores.nll)[rows, cols], np.asarray(scores.entropy)[rows, cols]
    mask = decoding.completion_mask(jnp.asarray(lengths_B), k, joined.shape[1])
    return nll, h, scoring.excess_nats(scores, mask)


def generate_run(
    workdir: str,
    sampling: Sampling,
    step: int | None = None,
    num: int = 64,
    prompt_len: int | None = None,
    prompts_file: str | None = None,
    out: str | None = None,
    prompt: str | None = None,
    overwrite: bool = False,
) -> str:
    """Samples completions from checkpoint `step` (default the latest) of the run in `workdir` and
    scores them under the true process; writes the JSONL rows and a `.summary.json` beside them
    (default RUN/samples/<step>-seed<s>.jsonl) and prints one line. Returns the JSONL path. A text
    run (or a text `prompt`) goes to `text_generation`: text in, text out, nothing scored."""
    run = open_run(workdir)
    if run.is_text or prompt is not None:
        from gssm_jax.inference.text_generation import generate_text_run

        return generate_text_run(
            run, sampling, step, num, prompt_len, prompts_file, prompt, out, overwrite
        )
    step = run.step_or_latest(step)
    run.check_compatible(step)
    out = output_path(run, step, sampling.seed, out, overwrite)
    if prompts_file:
        prompts = file_prompts(prompts_file, run.process[0].vocab_size)
    else:
        prompts = stream_prompts(run, num, prompt_len)
    d = draw(run, step, prompts, sampling)
    n, tokens, lengths, new = d.num, d.tokens, d.lengths, d.new
    nll, h, excess = score(run, tokens[:n], lengths[:n], new[:n])
    per_seq = np.asarray(excess.per_sequence)
    rows = [
        {
            "index": i,
            "prompt": prompts[i],
            "completion": new[i].tolist(),
            "true_nll": nll[i].astype(np.float64).round(6).tolist(),
            "true_entropy": h[i].astype(np.float64).round(6).tolist(),
            "sample_excess_nats": float(per_seq[i]),
        }
        for i in range(n)
    ]
    write_jsonl(out, rows)
    summary: dict[str, Any] = {
        **d.summary(run, step, sampling),
        "true_cross_entropy": float(nll.mean()),
        "true_entropy": float(h.mean()),
        "sample_excess_nats": float(excess.overall),
        "seconds": d.seconds,
    }
    write_summary(out, summary)
    print(
        f"generated {n} x {sampling.max_new_tokens} tokens from step {step} "
        f"{d.settings(sampling)} in {d.seconds:.2f} s incl. compile | "
        f"true -log p {summary['true_cross_entropy']:.4f} | entropy {summary['true_entropy']:.4f}"
        f" | sample_excess_nats {summary['sample_excess_nats']:.4f} | wrote {out} and "
        f"{summary_path(out)}",
        flush=True,
    )
    return out
