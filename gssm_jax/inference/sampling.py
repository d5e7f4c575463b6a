"""What sampling from a checkpoint shares between the process (`inference.generation`) and text
(`inference.text_generation`): the sampling settings, prompt padding and lengths, the jitted
generate program and where samples are written."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from gssm_jax.config import ConfigError
from gssm_jax.inference import decoding
from gssm_jax.inference.rundir import RunDir

SAMPLES = "samples"


class PromptError(ConfigError):
    """A prompts file that cannot be read or holds tokens the run's graph cannot produce."""


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


def make_generate_fn(run: RunDir, max_new: int, temperature: float, top_k: int, seed: int):
    """(params, prompts_BxL, lengths_B, seq_ids_B) -> new tokens (B, max_new), one jitted program
    with the run's shardings."""
    batch_2d = run.sharding("batch", None)
    batch_1d = run.sharding("batch")

    def generate(params, prompts_BxL, lengths_B, seq_ids_B):
        keys = decoding.row_keys(seed, seq_ids_B)
        return decoding.generate_cached(
            run.model, params, prompts_BxL, lengths_B, keys, max_new, temperature, top_k
        ).tokens

    jitted = jax.jit(
        generate,
        in_shardings=(run.param_shardings, batch_2d, batch_1d, batch_1d),
        out_shardings=batch_2d,
    )
    return run.in_mesh(jitted)


def default_out(run: RunDir, step: int, seed: int) -> str:
    return os.path.join(run.workdir, SAMPLES, f"{step}-seed{seed}.jsonl")


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
