"""Generation throughput: `python -m gssm_jax.bench generate [--batch 16] [--prompt-len 128]
[--total-len 1024] [--families a,b] [--recompute-steps N]`.

For every model family of `gssm_jax.models.registry` (the debug config's model section, vocabulary
32 of the `four` graph, parameters from init: speed does not depend on their values), on prompts of
the `four` graph's stream, all measured in the same process:

- prefill: the jitted `prefill` of batch x prompt-len tokens into a cache of total-len positions;
  tokens/s = batch x prompt_len / median time; and a `prefill` row of its own (printed first, alone
  with `--prefill-only`): the same prefill into a cache of prompt-len positions and into one of
  total-len positions, their ratio (about 1 when prefill costs what the prompt costs, not what the
  cache holds) and `apply` on the same tokens;
- cached decode: `decoding.decode_steps` (the `lax.scan` of decode steps of
  `decoding.generate_cached`) from the prefilled cache to total-len; tokens/s = batch x decode steps
  / median time; and the whole of `generate_cached` (prefill + decode) end to end;
- recompute: `decoding.generate_recompute`, the full forward pass every step. Its cost per step
  depends only on the buffer length, so the new tokens are split into chunks of `--chunk` (128)
  positions and each chunk is timed on a buffer that ends at the chunk's end (what a loop that
  recomputes the prefix, padded to a multiple of 128, costs): `--recompute-steps` steps per chunk
  are timed and the chunk's time is 128 times their mean step time. tokens/s = batch x new tokens /
  the sum over chunks.

Prints a JSON line with the machine, then one per family, with `decode_over_recompute`; the target
is at least 10x for the transformer at total length 1024 on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from gssm_jax.benchmarks.common import machine


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gssm_jax.bench generate")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--total-len", type=int, default=1024)
    p.add_argument("--families", default="", help="comma-separated (default: every family)")
    p.add_argument("--chunk", type=int, default=128, help="recompute buffer granularity")
    p.add_argument("--recompute-steps", type=int, default=8, help="timed steps per chunk")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prefill-only", action="store_true", help="only the prefill rows")
    args = p.parse_args(argv)
    if not 1 <= args.prompt_len < args.total_len or args.batch < 1:
        p.error("need batch >= 1 and 1 <= prompt-len < total-len")
    return args


def _sig(x: float) -> float:
    """x to 6 significant digits (rates and times stay consistent with each other)."""
    return float(f"{x:.6g}")


def _median_time(fn, args: tuple, repeats: int) -> float:
    """Median wall time of `fn(*args)` (blocked until ready) after one untimed call (the compile)."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _model(family: str, prompts_BxL):
    """(model, params) of `family` at the debug config's size, vocabulary 32, from init."""
    import flax.linen as nn
    import jax
    import ml_collections

    from gssm_jax.config import default_config, family_config
    from gssm_jax.models import registry

    m = ml_collections.ConfigDict(default_config().model.to_dict())
    m.family = family
    model = registry.build(family_config(m, 32))
    return model, nn.unbox(jax.jit(model.init)(jax.random.key(0), prompts_BxL[:1]))


def bench_prefill(family: str, args: argparse.Namespace, prompts_BxL) -> dict:
    """Prefill of the prompts into a cache of prompt-len and of total-len positions, and apply."""
    import functools

    import jax
    import jax.numpy as jnp

    model, params = _model(family, prompts_BxL)
    b, prompt_len = prompts_BxL.shape
    lengths = jnp.full((b,), prompt_len, jnp.int32)
    times = {}
    for name, cache_len in (("small", prompt_len), ("large", args.total_len)):
        fn = jax.jit(functools.partial(model.prefill, cache_len=cache_len))
        times[name] = _median_time(fn, (params, prompts_BxL, lengths), args.repeats)
    t_apply = _median_time(jax.jit(model.apply), (params, prompts_BxL), args.repeats)
    return {
        "row": "prefill",
        "family": family,
        "batch": b,
        "prompt_len": prompt_len,
        "small_cache_len": prompt_len,
        "large_cache_len": args.total_len,
        "prefill_small_cache_s": _sig(times["small"]),
        "prefill_large_cache_s": _sig(times["large"]),
        "large_over_small": _sig(times["large"] / times["small"]),
        "apply_s": _sig(t_apply),
    }


def bench_family(family: str, args: argparse.Namespace, prompts_BxL) -> dict:
    import functools

    import jax
    import jax.numpy as jnp

    from gssm_jax.inference import decoding

    model, params = _model(family, prompts_BxL)
    b, prompt_len = prompts_BxL.shape
    total, new = args.total_len, args.total_len - prompt_len
    lengths = jnp.full((b,), prompt_len, jnp.int32)
    keys = decoding.row_keys(0, jnp.arange(b))

    prefill = jax.jit(functools.partial(model.prefill, cache_len=total))
    t_prefill = _median_time(prefill, (params, prompts_BxL, lengths), args.repeats)
    cached = jax.jit(functools.partial(decoding.generate_cached, model, max_new=new))
    t_cached = _median_time(cached, (params, prompts_BxL, lengths, keys), args.repeats)
    _, cache = prefill(params, prompts_BxL, lengths)
    first = prompts_BxL[:, -1]
    decode = jax.jit(functools.partial(decoding.decode_steps, model, steps=new - 1))
    t_decode = _median_time(decode, (params, cache, first, keys), args.repeats)

    t_recompute, chunks = 0.0, []
    steps = args.recompute_steps
    for start in range(prompt_len, total, args.chunk):
        end = min(start + args.chunk, total)
        fn = jax.jit(
            functools.partial(decoding.generate_recompute, model, max_new=steps, buffer_len=end)
        )
        start_prompts = jnp.zeros((b, start), jnp.int32).at[:, :prompt_len].set(prompts_BxL)
        start_lengths = jnp.full((b,), start, jnp.int32)
        t = _median_time(fn, (params, start_prompts, start_lengths, keys), 1)
        chunks.append({"buffer_len": end, "step_s": t / steps})
        t_recompute += (end - start) * t / steps
    return {
        "family": family,
        "batch": b,
        "prompt_len": prompt_len,
        "total_len": total,
        "params": model.param_count(),
        "prefill_tokens_per_s": _sig(b * prompt_len / t_prefill),
        "decode_tokens_per_s": _sig(b * (new - 1) / t_decode),
        "recompute_tokens_per_s": _sig(b * new / t_recompute),
        "decode_over_recompute": _sig((b * (new - 1) / t_decode) / (b * new / t_recompute)),
        "cached_end_to_end_tokens_per_s": _sig(b * new / t_cached),
        "prefill_s": _sig(t_prefill),
        "decode_s": _sig(t_decode),
        "cached_end_to_end_s": _sig(t_cached),
        "recompute_s": _sig(t_recompute),
        "recompute_step_s": [
            {"buffer_len": c["buffer_len"], "step_s": _sig(c["step_s"])} for c in chunks
        ],  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    import jax.numpy as jnp
    import numpy as np

    from gssm_jax.config import four_graph
    from gssm_jax.gssm.graph import parse_graph
    from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
    from gssm_jax.gssm.sample import sample_tokens
    from gssm_jax.models import registry

    families = [f for f in args.families.split(",") if f] or list(registry.FAMILIES)
    unknown = [f for f in families if f not in registry.FAMILIES]
    if unknown:
        print(f"error: --families: unknown family {unknown[0]!r}", file=sys.stderr)
        return 2
    graph = parse_graph(four_graph())
    tables = as_device_tables(draw_kernels(graph, 0))
    tokens = sample_tokens(graph, tables, 0, np.arange(args.batch), max(2, args.prompt_len))
    prompts = jnp.asarray(tokens[:, : args.prompt_len], jnp.int32)
    print(json.dumps({"bench": "generate", **machine()}), flush=True)
    for family in families:
        rows = [bench_prefill(family, args, prompts)]
        if not args.prefill_only:
            rows.append(bench_family(family, args, prompts))
        for row in rows:
            load = machine()["loadavg_1min"]
            print(json.dumps({"bench": "generate", **row, "loadavg_1min": load}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
