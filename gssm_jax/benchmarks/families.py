"""`python -m gssm_jax.bench train --family all`: every model family's train step, side by side.

Each family is built from the default config with the benchmark's shared shape (emb_dim, layers,
dtype; the transformer also takes heads and hidden_dim) and its own section's defaults, and timed
at each of --seq-lens (default 256 and 2048) in the same process, in interleaved rounds so all see
the same machine load. The tokens per step stay about batch x the first length: a longer length
runs proportionally fewer sequences (16 x 256 -> 2 x 2048), so a model whose cost is linear in the
length keeps its tokens/s.

One JSON line per family: parameter count and FLOPs per token (the model's own analytic counts),
and per length the batch, median step time, tokens/s and model TFLOP/s; `scaling` is tokens/s at
the longest length over tokens/s at the first.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gssm_jax.benchmarks.common import machine


def _families(spec: str) -> list[str]:
    from gssm_jax.models.configs import FAMILY_CONFIGS

    names = list(FAMILY_CONFIGS) if spec == "all" else [f for f in spec.split(",") if f]
    unknown = [f for f in names if f not in FAMILY_CONFIGS]
    if unknown or not names:
        raise ValueError(
            f"--family: unknown {', '.join(map(repr, unknown)) or 'empty'}; known: all, "
            f"{', '.join(FAMILY_CONFIGS)}"
        )
    return names


def _lengths(spec: str) -> list[int]:
    lengths = [int(v) for v in spec.split(",") if v]
    if not lengths or min(lengths) < 2:
        raise ValueError(f"--seq-lens: expected lengths >= 2, got {spec!r}")
    return lengths


def main(args: argparse.Namespace, kept: bool) -> int:
    import jax

    from gssm_jax.benchmarks.batchfit import with_batch
    from gssm_jax.benchmarks.timing import Timed, bench_config, percentile, start_model
    from gssm_jax.config import ConfigError, checked_family_config, validate, vocab_size
    from gssm_jax.runtime import parallel
    from gssm_jax.train import state as train_state

    try:
        names, lengths = _families(args.family), _lengths(args.seq_lens)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = bench_config(args.shape, args.attention, args.overrides)
    vocab = vocab_size(base)
    tokens_per_step = base.data.batch_size * lengths[0]
    runs = {}
    try:
        for family in names:
            for length in lengths:
                c = with_batch(base, max(1, round(tokens_per_step / length)))
                c.model.family, c.data.seq_len = family, length
                validate(c)
                mesh = parallel.make_mesh(c.mesh)
                parallel.check_divisibility(c, mesh)
                runs[family, length] = (c, mesh)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    timed = {}
    for (family, length), (c, mesh) in runs.items():
        print(f"compiling {family} at seq_len {length}", file=sys.stderr, flush=True)
        t = start_model(
            family,
            lambda c: train_state.model_from_config(c, vocab),
            c,
            mesh,
            args.tokens,
            args.warmup,
            0,
        )
        timed[family, length] = t
    for _ in range(args.rounds):
        for t in timed.values():
            if isinstance(t, Timed):
                t.timed_steps(args.steps)
    info = machine()
    for family in names:
        cfg = checked_family_config(runs[family, lengths[0]][0], vocab)
        row: dict[str, Any] = {
            "bench": "train",
            "family": family,
            "params": cfg.param_count(),
            "config": {k: v for k, v in vars(cfg).items() if k != "vocab_size"},
            "vocab": vocab,
            "devices": jax.device_count(),
            "flops_per_token": {},
            "runs": {},
        }
        rates = {}
        for length in lengths:
            t = timed[family, length]
            row["flops_per_token"][str(length)] = cfg.flops_per_token(length - 1)["total"]
            if not isinstance(t, Timed):
                row["runs"][str(length)] = t
                continue
            batch, seq_len = t.config.data.batch_size, t.config.data.seq_len
            median = percentile(t.wall, 50)
            rates[length] = batch * (seq_len - 1) / median
            flops = row["flops_per_token"][str(length)]
            row["runs"][str(length)] = {
                "batch": batch,
                "tokens_per_step": batch * (seq_len - 1),
                "step_time_s": round(median, 6),
                "step_time_min_s": round(min(t.wall), 6),
                "tokens_per_s": round(rates[length], 1),
                "model_tflops_per_s": round(rates[length] * flops / 1e12, 4),
                "compile_and_first_step_s": round(t.compile_s, 2),
                "final_loss": round(t.losses[-1], 4),
            }
        if lengths[0] in rates and lengths[-1] in rates and len(lengths) > 1:
            row["scaling"] = round(rates[lengths[-1]] / rates[lengths[0]], 3)
        row["timed_steps"] = args.rounds * args.steps
        row["tokens"] = args.tokens
        row["malloc_keeps_memory"] = kept
        row["machine"] = info
        print(json.dumps(row), flush=True)
    return 0
