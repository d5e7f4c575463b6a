"""What sampling from a checkpoint shares between the process (`inference.generation`) and text
(`inference.text_generation`): the sampling settings, prompt padding and lengths, the jitted
generate program (in chunks with progress when long), where samples are written (checked before any
work; nothing overwritten) and the warning for positions past the trained length."""

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
from gssm_jax.inference import decoding
from gssm_jax.inference.rundir import RunDir
from gssm_jax.runtime import parallel

SAMPLES = "samples"


class PromptError(ConfigError):
    """A prompts file that cannot be read or holds tokens the run's graph cannot produce."""


def prompt_items(path: str, single=None) -> list[tuple[str, Any]]:
    """(where, item) of each prompt of a prompts file: the items of a JSON list, or the values of
    a JSONL file's lines; `single(data)` tells a JSON value that is one prompt by itself (a token
    list read as one line). Unreadable, not JSON or empty: a PromptError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PromptError(f"--prompts {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if single is not None and single(data):
        return [("line 1", data)]
    if isinstance(data, list):
        return [(f"item {i}", x) for i, x in enumerate(data)]
    items = []
    for n, line in enumerate(content.splitlines(), 1):
        if line.strip():
            try:
                items.append((f"line {n}", json.loads(line)))
            except ValueError as e:
                raise PromptError(f"--prompts {path} line {n}: not JSON ({e})") from None
    if not items:
        raise PromptError(f"--prompts {path}: no prompts")
    return items


def spread_lengths(num: int, seq_len: int) -> np.ndarray:
    """`num` prompt lengths spread evenly over [1, seq_len // 2]."""
    return np.linspace(1, max(1, seq_len // 2), num).round().astype(np.int64)


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


def write_summary(out: str, summary: dict) -> None:
    """The summary beside the rows, written to a temporary name and renamed."""
    path = summary_path(out)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def write_jsonl(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How completions are drawn: `max_new_tokens` per prompt, at `temperature` (0: greedy),
    keeping the `top_k` largest logits (0: all), row i with the key (seed, i)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Drawn:
    """The padded prompts (B, L) and their lengths (B,) (B rounded up to the data-parallel size;
    the first `num` rows are the prompts), the new tokens (B, K), and the seconds the program took
    (its compile included)."""

    tokens: np.ndarray
    lengths: np.ndarray
    new: np.ndarray
    num: int
    seconds: float

    def summary(self, run: RunDir, step: int, sampling: Sampling) -> dict[str, Any]:
        """The fields every `.summary.json` starts with."""
        lengths = self.lengths[: self.num]
        return {
            "workdir": run.workdir,
            "step": step,
            "num": self.num,
            **dataclasses.asdict(sampling),
            "prompt_lengths": [int(lengths.min()), int(lengths.max())],
        }

    def settings(self, sampling: Sampling) -> str:
        """`(prompts L0-L1 tokens, temperature T, top_k K)`, as the closing lines print it."""
        lengths = self.lengths[: self.num]
        return (
            f"(prompts {int(lengths.min())}-{int(lengths.max())} tokens, temperature "
            f"{sampling.temperature}, top_k {sampling.top_k or 'off'})"
        )


def draw(run: RunDir, step: int, prompts: list[list[int]], sampling: Sampling) -> Drawn:
    """Completions of `prompts` from checkpoint `step`, drawn as `sampling` says, sharded over the
    run's mesh; warns first where positions pass the trained length."""
    params = run.restore_params(step)
    tokens, lengths = padded(prompts, parallel.data_parallel_size(run.config, run.mesh))
    warn_extrapolation(run, lengths, sampling.max_new_tokens)
    seq_ids = np.arange(len(tokens), dtype=np.uint32)
    s = sampling
    gen = make_generate_fn(run, s.max_new_tokens, s.temperature, s.top_k, s.seed)
    t0 = time.perf_counter()
    new = np.asarray(jax.device_get(gen(params, tokens, lengths, seq_ids)))
    return Drawn(tokens, lengths, new, len(prompts), time.perf_counter() - t0)
