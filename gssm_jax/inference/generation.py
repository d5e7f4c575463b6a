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

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gssm_jax.config import ConfigError
from gssm_jax.gssm import scoring
from gssm_jax.gssm.kernels import as_device_tables
from gssm_jax.gssm.sample import sample_tokens
from gssm_jax.inference import decoding
from gssm_jax.inference.rundir import RunDir, open_run
from gssm_jax.runtime import parallel

SAMPLES = "samples"


class PromptError(ConfigError):
    """A prompts file that cannot be read or holds tokens the run's graph cannot produce."""


# ---- prompts ------------------------------------------------------------------------------------


def spread_lengths(num: int, seq_len: int) -> np.ndarray:
    """`num` prompt lengths spread evenly over [1, seq_len // 2]."""
    return np.linspace(1, max(1, seq_len // 2), num).round().astype(np.int64)


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
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise PromptError(f"--prompts {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    items = None
    if isinstance(data, list) and data and all(type(t) is int for t in data):
        items = [("line 1", data)]  # a single token list (one-line JSONL)
    elif isinstance(data, list):
        items = [(f"item {i}", x) for i, x in enumerate(data)]
    if items is None:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((f"line {n}", json.loads(line)))
                except ValueError as e:
                    raise PromptError(f"--prompts {path} line {n}: not JSON ({e})") from None
    if not items:
        raise PromptError(f"--prompts {path}: no prompts")
    out = []
    for where, item in items:
        prompt = item.get("prompt") if isinstance(item, dict) else item
        ok = isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt)
        if not ok:
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


def padded(prompts: list[list[int]], multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded prompts_BxL and lengths_B, B rounded up to `multiple` with [0] prompts."""
    b = -(-len(prompts) // multiple) * multiple
    max_len = max(len(p) for p in prompts)
    tokens = np.zeros((b, max_len), np.int32)
    lengths = np.ones(b, np.int32)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = p
        lengths[i] = len(p)
    return tokens, lengths


# ---- generation ---------------------------------------------------------------------------------


CHUNK = 512  # decode steps per jitted call of a longer generation (a progress line between calls)


class Progress:
    """`generating: K/N new tokens per prompt (P%) | elapsed | eta` on stderr: after the first
    chunk, then at most one line every `every_s` seconds, and at the end (none for a generation
    done in one call)."""

    def __init__(self, total: int, every_s: float = 3.0, stream: Any = None):
        self.total, self.every_s, self.stream = total, every_s, stream or sys.stderr
        self.t0 = time.perf_counter()
        self.last: float | None = None

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        due = self.last is None or now - self.last >= self.every_s
        if not due and done < self.total:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed * (self.total - done) / done
        print(
            f"generating: {done}/{self.total} new tokens per prompt ({100 * done / self.total:.0f}%)"
            f" | elapsed {elapsed:.0f} s | eta {eta:.0f} s",
            file=self.stream,
            flush=True,
        )


def make_generate_fn(
    run: RunDir,
    max_new: int,
    temperature: float,
    top_k: int,
    seed: int,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
):
    """(params, prompts_BxL, lengths_B, seq_ids_B) -> new tokens (B, max_new) with the run's
    shardings: one jitted program up to `chunk` new tokens; past that a jitted prefill and the
    decode scan in jitted chunks of `chunk` steps (the same tokens: the cache, the keys and the
    steps are the same), calling `progress(tokens done per prompt)` after each (default: a
    `Progress` line on stderr every few seconds)."""
    batch_2d = run.sharding("batch", None)
    batch_1d = run.sharding("batch")
    shardings = (run.param_shardings, batch_2d, batch_1d, batch_1d)

    if max_new <= chunk:

        def generate(params, prompts_BxL, lengths_B, seq_ids_B):
            keys = decoding.row_keys(seed, seq_ids_B)
            return decoding.generate_cached(
                run.model, params, prompts_BxL, lengths_B, keys, max_new, temperature, top_k
            ).tokens

        jitted = jax.jit(generate, in_shardings=shardings, out_shardings=batch_2d)
        return run.in_mesh(jitted)

    def start(params, prompts_BxL, lengths_B, seq_ids_B):
        keys_B = decoding.row_keys(seed, seq_ids_B)
        cache_len = prompts_BxL.shape[1] + max_new
        first_B, _, cache = decoding.prefill_and_draw(
            run.model, params, prompts_BxL, lengths_B, keys_B, cache_len, temperature, top_k
        )
        return first_B, cache, keys_B

    def more(params, last_B, cache, keys_B, first_index, steps):
        tok_SxB, _, last_B, cache = decoding.decode_scan(
            run.model, params, cache, last_B, keys_B, first_index, steps, temperature, top_k
        )
        return tok_SxB.T, last_B, cache

    start_fn = run.in_mesh(jax.jit(start, in_shardings=shardings))
    more_fn = run.in_mesh(jax.jit(more, static_argnums=5, donate_argnums=2))
    report = progress or Progress(max_new)

    def generate_in_chunks(params, prompts_BxL, lengths_B, seq_ids_B):
        last_B, cache, keys_B = start_fn(params, prompts_BxL, lengths_B, seq_ids_B)
        pieces, done = [last_B[:, None]], 1
        while done < max_new:
            steps = min(chunk, max_new - done)
            index = jnp.asarray(done, jnp.int32)
            tok_BxS, last_B, cache = more_fn(params, last_B, cache, keys_B, index, steps)
            pieces.append(tok_BxS)
            done += steps
            jax.block_until_ready(tok_BxS)
            report(done)
        return jnp.concatenate(pieces, axis=1)

    return generate_in_chunks


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


class OutputError(ConfigError):
    """An --out path the samples cannot be written to, found before anything is generated."""


def summary_path(out: str) -> str:
    """The `.summary.json` beside the JSONL rows `out`."""
    return out.removesuffix(".jsonl") + ".summary.json"


def _check_writable(out: str) -> None:
    """OutputError when `out` or its summary is a directory, or a folder above it is a file."""
    for path in (out, summary_path(out)):
        if os.path.isdir(path):
            which = "is" if path == out else f"its summary {path} is"
            raise OutputError(f"--out {out}: {which} a directory; name a file (.jsonl)")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"--out {out}: {parent} is a file, not a directory")


def output_path(run: RunDir, step: int, seed: int, out: str | None, overwrite: bool) -> str:
    """Where the samples go, checked before any work. Default RUN/samples/<step>-seed<s>.jsonl,
    or the first free <step>-seed<s>-<n>.jsonl (n = 2, 3, ...) when earlier samples hold that
    name; `--out` names a file, which must not exist unless `overwrite`."""
    if out is None:
        base = os.path.join(run.workdir, SAMPLES, f"{step}-seed{seed}")
        out, n = f"{base}.jsonl", 1
        while not overwrite and any(map(os.path.exists, (out, summary_path(out)))):
            n += 1
            out = f"{base}-{n}.jsonl"
    elif os.path.isfile(out) and not overwrite:
        raise OutputError(
            f"--out {out}: the file exists; pass --overwrite to replace it, or name a new file"
        )
    _check_writable(out)
    return out


def warn_extrapolation(run: RunDir, lengths_B: np.ndarray, max_new: int) -> None:
    """One warning line on stderr when rows reach positions past the trained data.seq_len."""
    trained = int(run.config.data.seq_len)
    longest = int(np.max(lengths_B)) + max_new - 1  # the last position a new token is read at
    if longest > trained:
        print(
            f"warning: prompts of up to {int(np.max(lengths_B))} tokens + {max_new} new tokens "
            f"make sequences of {longest} positions, longer than the run's trained "
            f"data.seq_len={trained}: positions past {trained} are extrapolation",
            file=sys.stderr,
            flush=True,
        )


def write_jsonl(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


def write_summary(out: str, summary: dict) -> None:
    """The summary beside the rows, written to a temporary name and renamed."""
    path = summary_path(out)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How completions are drawn: `max_new_tokens` per prompt, at `temperature` (0: greedy),
    keeping the `top_k` largest logits (0: all), row i with the key (seed, i)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0


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
    args = sampling
    params = run.restore_params(step)
    multiple = parallel.data_parallel_size(run.config, run.mesh)
    tokens, lengths = padded(prompts, multiple)
    warn_extrapolation(run, lengths, args.max_new_tokens)
    seq_ids = np.arange(len(tokens), dtype=np.uint32)
    gen = make_generate_fn(run, args.max_new_tokens, args.temperature, args.top_k, args.seed)
    t0 = time.perf_counter()
    new = np.asarray(jax.device_get(gen(params, tokens, lengths, seq_ids)))
    seconds = time.perf_counter() - t0
    n = len(prompts)
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
        "workdir": run.workdir,
        "step": step,
        "num": n,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "seed": args.seed,
        "prompt_lengths": [int(lengths[:n].min()), int(lengths[:n].max())],
        "true_cross_entropy": float(nll.mean()),
        "true_entropy": float(h.mean()),
        "sample_excess_nats": float(excess.overall),
        "seconds": seconds,
    }
    write_summary(out, summary)
    print(
        f"generated {n} x {args.max_new_tokens} tokens from step {step} (prompts "
        f"{summary['prompt_lengths'][0]}-{summary['prompt_lengths'][1]} tokens, temperature "
        f"{args.temperature}, top_k {args.top_k or 'off'}) in {seconds:.2f} s incl. compile | "
        f"true -log p {summary['true_cross_entropy']:.4f} | entropy {summary['true_entropy']:.4f}"
        f" | sample_excess_nats {summary['sample_excess_nats']:.4f} | wrote {out} and "
        f"{summary_path(out)}",
        flush=True,
    )
    return out
