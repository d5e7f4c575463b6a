"""Train-step throughput: `python -m gssm_jax.bench train [--preset P] [--max-batch] [flags]`.

Times the full jitted train step (forward, backward, global-norm clipping, AdamW; the state donated
as in the loop) on real tokens of the `four` graph (vocabulary 32). Presets:

- cpu (default): emb_dim 64, 4 layers, 4 heads, SwiGLU hidden 256, batch 16, seq_len 256, float32;
- seeds004: the largest model of the original experiment 1: emb_dim 288, 12 layers,
  12 heads, SwiGLU hidden 1152, batch 16, seq_len 2048, bfloat16; meant for a GPU.

Flags override single fields. Two models are timed in the same process, in interleaved rounds so
that both see the same machine load:

- optimized: gssm_jax.models.transformer.Transformer (custom-VJP layers; attention per
  `--attention`, default auto: the blocked kernel on CPU, cuDNN flash attention on GPU in bf16);
- plain: gssm_jax.models.reference.PlainTransformer, the same function and parameters written with
  einsums and jax.nn.dot_product_attention (XLA) and differentiated by JAX;
- torch: the same transformer in PyTorch eager (`gssm_jax.benchmarks.torch_ref`, the earlier system's
  way: autograd, clip_grad_norm_, torch.optim.AdamW) with 2 threads, on the same batches. torch is
  optional (`pip install -e ".[bench]"`); without it the bench says so on stderr and skips the row.

Prints one JSON line per model (median, min and p90 step time; tokens/s from the median; tokens
counted as batch x (seq_len - 1), the predicted positions, as the training loop counts them; model
FLOP/s from `gssm_jax.train.profile.flops_per_token`; MFU against the device's peak, null where the peak
is unknown, as on every CPU), then one line with the speedups over plain and over torch.

--max-batch first searches the largest global batch whose compiled optimized train step fits the
device memory (the allocator's bytes_limit; on CPU give --memory-limit-gib), using XLA's memory
accounting (`gssm_jax.benchmarks.batchfit`), then times both models at that batch; a model that runs
out of memory there is retried one step smaller. Before JAX starts, glibc malloc is told to keep
freed memory (see `gssm_jax.runtime.hostmem`); --no-keep-memory measures without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from gssm_jax.benchmarks import torch_ref
from gssm_jax.benchmarks.batchfit import with_batch
from gssm_jax.benchmarks.common import machine
from gssm_jax.benchmarks.timing import (
    PRESETS,
    TORCH_THREADS,
    Timed,
    bench_config,
    percentile,
    start_model,
    transformer_config,
)
from gssm_jax.config import vocab_size
from gssm_jax.models.configs import ATTENTION_CHOICES
from gssm_jax.runtime import cli, cpudevices
from gssm_jax.runtime.hostmem import keep_freed_memory

if TYPE_CHECKING:  # JAX is imported lazily: `keep_freed_memory` must run before it starts
    import ml_collections
    from jax.sharding import Mesh

    from gssm_jax.models.registry import Model


MODELS = ("optimized", "plain", "torch")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gssm_jax.bench train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    for field, kind in (
        ("batch", int),
        ("seq_len", int),
        ("layers", int),
        ("heads", int),
        ("emb_dim", int),
        ("hidden_dim", int),
    ):
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=None)
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    parser.add_argument(
        "--attention", default="auto", choices=ATTENTION_CHOICES, help="model.transformer.attention"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="any of optimized, plain, torch (default: all)"
    )
    parser.add_argument(
        "--tokens",
        default="real",
        choices=("real", "random"),
        help="batches from the `four` graph's stream (default) or uniform random tokens",
    )
    parser.add_argument(
        "--max-batch",
        action="store_true",
        help="search the largest batch that fits the device memory, then time at that batch",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=None,
        help="memory budget per device for --max-batch (default: the device's bytes_limit)",
    )
    parser.add_argument(
        "--no-keep-memory", action="store_true", help="leave glibc malloc at its defaults"
    )
    parser.add_argument(
        "--family",
        default=None,
        help="time model families instead (a family, a comma list, or 'all'; see "
        "gssm_jax.benchmarks.families): one row per family at each of --seq-lens",
    )
    parser.add_argument(
        "--seq-lens",
        default="256,2048",
        help="with --family: sequence lengths timed in the same run (tokens per step kept at "
        "batch x the first length)",
    )
    try:
        argv, overrides = cli.split_overrides(argv)
    except cli.CliError as e:
        parser.error(str(e))
    args = parser.parse_args(argv)
    args.overrides = overrides  # --config.KEY=VALUE, applied on top of the preset's config
    args.model_names = [m for m in args.models.split(",") if m]
    if not args.model_names or any(m not in MODELS for m in args.model_names):
        parser.error(f"--models: expected some of {','.join(MODELS)}, got {args.models!r}")
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--rounds and --steps must be >= 1, --warmup >= 0")
    if args.memory_limit_gib is not None and not args.memory_limit_gib > 0:
        parser.error(f"--memory-limit-gib: must be > 0, got {args.memory_limit_gib}")
    args.shape = {
        k: v if getattr(args, k) is None else getattr(args, k)
        for k, v in PRESETS[args.preset].items()
    }
    return args


def _ratio(rates: dict, other: str) -> float | None:
    return round(rates["optimized"] / rates[other], 3) if other in rates else None


def device_memory_limit(limit_gib: float | None) -> int | None:
    """Bytes per device for the batch search: the flag, else the allocator's limit (not on CPU)."""
    import jax

    if limit_gib is not None:
        return int(limit_gib * 2**30)
    return (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")


def search_batch(
    c: ml_collections.ConfigDict, mesh: Mesh, limit: int, model: Model, multiple: int
) -> dict:
    """The largest batch (a multiple of `multiple`) of `model`'s train step within `limit` bytes
    per device, and the probes."""
    from gssm_jax.benchmarks import batchfit
    from gssm_jax.train import state as train_state

    abstract, shardings = train_state.abstract_train_state(c, mesh, model)
    t0 = time.perf_counter()

    def bytes_at(batch: int) -> int:
        parts = batchfit.step_bytes(c, model, mesh, batch, abstract, shardings)
        print(
            f"  batch {batch}: {parts['total'] / 2**20:.1f} MiB per device "
            f"(temporaries {parts['temp'] / 2**20:.1f} MiB)",
            file=sys.stderr,
            flush=True,
        )
        return parts["total"]

    print(
        f"{type(model.module).__name__}: searching the largest batch under {limit / 2**20:.1f} MiB",
        file=sys.stderr,
    )
    best, probes = batchfit.largest_fitting(bytes_at, limit, multiple, c.data.batch_size)
    return {
        "largest_batch": best,
        "memory_limit_bytes": limit,
        "batch_multiple": multiple,
        "estimated_bytes": probes.get(best),
        "probes": {str(b): v for b, v in sorted(probes.items())},
        "search_s": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv and not argv[0].startswith("-"):  # tolerate `bench train ...` or a program name
        argv.pop(0)
    args = _parse(argv)
    kept = False if args.no_keep_memory else keep_freed_memory()
    from gssm_jax.config import ConfigError

    try:  # the CPU device split goes into XLA_FLAGS before JAX starts its client
        c = bench_config(args.shape, args.attention, args.overrides)
    except ConfigError as e:
        return cli.report_error(e)
    cpudevices.apply(c.runtime.cpu_devices, c.data.batch_size)
    if args.family is not None:
        from gssm_jax.benchmarks import families

        return families.main(args, kept)

    import jax

    from gssm_jax.config import family_config
    from gssm_jax.models import layers, registry
    from gssm_jax.models.reference import PlainTransformer
    from gssm_jax.runtime import parallel
    from gssm_jax.train import profile
    from gssm_jax.train import state as train_state

    try:
        vocab = vocab_size(c)
        mesh = parallel.make_mesh(c.mesh)
        parallel.check_divisibility(c, mesh)
        train_state.model_from_config(c, vocab)  # cudnn on a CPU backend fails here
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    limit = None
    if args.max_batch:
        limit = device_memory_limit(args.memory_limit_gib)
        if limit is None:
            print("error: --max-batch on this backend needs --memory-limit-gib", file=sys.stderr)
            return 2
    build = {
        "optimized": lambda c: train_state.model_from_config(c, vocab),
        "plain": lambda c: registry.build(
            family_config(c.model, vocab), PlainTransformer(transformer_config(c, vocab))
        ),
        "torch": lambda c: None,  # TorchTimed builds it
    }
    if "torch" in args.model_names and not torch_ref.available():
        print(f"bench train: {torch_ref.MISSING}", file=sys.stderr, flush=True)
        args.model_names.remove("torch")
    if limit is not None and "torch" in args.model_names:
        print("bench train: --max-batch times the JAX models only", file=sys.stderr, flush=True)
        args.model_names.remove("torch")
    multiple = parallel.data_parallel_size(c, mesh) * c.optim.accum_steps
    step_down = multiple if args.max_batch else 0
    timed, searches = [], {}
    for name in args.model_names:
        run_c = c
        if limit is not None:
            model = build[name](c)
            assert model is not None  # torch, built by TorchTimed, is not searched (removed above)
            searches[name] = search_batch(c, mesh, limit, model, multiple)
            run_c = with_batch(c, max(multiple, searches[name]["largest_batch"]))
        t = start_model(name, build[name], run_c, mesh, args.tokens, args.warmup, step_down)
        if isinstance(t, Timed):
            timed.append(t)
            continue
        row = {"bench": "train", "variant": name, "preset": args.preset, "seq_len": c.data.seq_len}
        row.update(t)
        if name in searches:
            row["max_batch_search"] = searches[name]
        print(json.dumps(row), flush=True)
    for _ in range(args.rounds):
        for t in timed:
            t.timed_steps(args.steps)

    m = transformer_config(c, vocab)
    device_kind = jax.devices()[0].device_kind
    peak = profile.peak_flops(device_kind, m.dtype)
    flops = profile.flops_per_token(m, c.data.seq_len - 1, vocab)["total"]
    description = (
        f"transformer emb_dim={m.emb_dim} layers={m.nb_layers} heads={m.nb_heads} "
        f"swiglu_hidden={m.hidden_dim} vocab={vocab} {m.dtype}"
    )
    attention = {
        "optimized": layers.resolve_attention(
            m.attention, m.dtype, jax.default_backend(), m.emb_dim // m.nb_heads, m.kernels
        ),
        "plain": "xla",
        "torch": "torch.nn.functional.scaled_dot_product_attention",
    }
    info = machine()
    rates = {}
    for t in timed:
        batch, seq_len = t.config.data.batch_size, t.config.data.seq_len
        tokens_per_step = batch * (seq_len - 1)
        median = percentile(t.wall, 50)
        rates[t.name] = tokens_per_step / median
        per_device = rates[t.name] / mesh.devices.size
        row = {
            "bench": "train",
            "model": f"{description} ({t.name})",
            "variant": t.name,
            "preset": args.preset,
            "attention": attention[t.name],
            "batch": batch,
            "seq_len": seq_len,
            "tokens_per_step": tokens_per_step,
            "tokens_per_s": round(rates[t.name], 1),
            "step_time_s": round(median, 6),
            "step_time_min_s": round(min(t.wall), 6),
            "step_time_p90_s": round(percentile(t.wall, 90), 6),
            "flops_per_token": flops,
            "model_tflops_per_s_per_device": round(per_device * flops / 1e12, 4),
            "peak_tflops_per_device": None if peak is None else peak / 1e12,
            "mfu": None if peak is None else round(per_device * flops / peak, 4),
            "peak_device_bytes": t.peak_bytes,
            "devices": mesh.devices.size,
            "cpu_time_per_step_s": round(percentile(t.cpu, 50), 4),
            "page_faults_per_step": int(percentile(t.faults, 50)),
            "timed_steps": len(t.wall),
            "compile_and_first_step_s": round(t.compile_s, 2),
            "final_loss": round(t.losses[-1], 4),
            "tokens": args.tokens,
            "malloc_keeps_memory": kept,
            "machine": info,
        }
        if t.name in searches:
            row["max_batch_search"] = searches[t.name]
        print(json.dumps(row), flush=True)
    if "optimized" in rates and len(rates) > 1:  # each model at its own batch under --max-batch
        summary = {
            "bench": "train",
            "model": description,
            "preset": args.preset,
            "batch": {t.name: t.config.data.batch_size for t in timed},
            "seq_len": c.data.seq_len,
            "speedup_optimized_over_plain": _ratio(rates, "plain"),
            "speedup_optimized_over_torch": _ratio(rates, "torch"),
            "torch_threads": TORCH_THREADS if "torch" in rates else None,
            "tokens_per_s": {k: round(v, 1) for k, v in rates.items()},
            "step_time_s": {t.name: round(percentile(t.wall, 50), 6) for t in timed},
            "machine": info,
        }
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
