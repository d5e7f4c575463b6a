"""Train-step throughput: `python -m gssm_jax.bench train [--steps N] [--rounds R] [flags]`.

Times the full jitted train step (forward, backward, global-norm clipping, AdamW; the state donated
as in the loop) of the benchmark model: emb_dim 64, 4 layers, 4 heads, SwiGLU hidden 256, batch 16,
seq_len 256, on real tokens of the `four` graph (vocabulary 32). Two models are timed in the same
process, in interleaved rounds so that both see the same machine load:

- optimized: gssm_jax.models.transformer.Transformer (custom-VJP layers);
- plain: gssm_jax.models.reference.PlainTransformer, the same function and parameters written with
  einsums and jax.nn.dot_product_attention and differentiated by JAX.

Prints one JSON line per model (median, min and p90 step time; tokens/s from the median; tokens
counted as batch x (seq_len - 1), the predicted positions, as the training loop counts them), then
one line with the speedup. Before JAX starts, glibc malloc is told to keep freed memory (see
`keep_freed_memory`); --no-keep-memory measures without it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # JAX is imported lazily: `keep_freed_memory` must run before it starts
    import flax.linen as nn
    import ml_collections
    from jax.sharding import Mesh

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Makes glibc malloc reuse freed memory instead of returning it to the kernel.

    XLA:CPU allocates each step's temporaries (about 150 MB here) afresh; glibc serves such
    sizes with mmap and unmaps them on free, so every step page-faults all of it in again (about
    37k faults, 60 ms per step on the benchmark machine). One arena, no mmap and no trimming keep
    the pages mapped after the first step. It must run before JAX creates its threads; returns
    False where mallopt is unavailable (not glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(M_ARENA_MAX, 1) == 1
    ok &= libc.mallopt(M_MMAP_MAX, 0) == 1
    ok &= libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return bool(ok)


def machine() -> dict:
    """What the numbers were measured on, including the load other processes put on it."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax_version": jax.__version__,
        "jax_backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }


def bench_config(batch: int, seq_len: int, layers: int, dtype: str) -> ml_collections.ConfigDict:
    from gssm_jax.config import default_config

    c = default_config()
    c.unlock()
    c.data.batch_size, c.data.seq_len = batch, seq_len
    c.model.emb_dim, c.model.nb_layers, c.model.nb_heads, c.model.hidden_dim = 64, layers, 4, 256
    c.model.dtype = dtype
    c.optim.steps = 10_000
    c.lock()
    return c


def random_tokens(c: ml_collections.ConfigDict, count: int, vocab: int) -> list:
    """`count` global batches of uniformly random tokens (NumPy, nothing to compile)."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (c.data.batch_size, c.data.seq_len)
    return [rng.integers(0, vocab, shape).astype(np.int32) for _ in range(count)]


def real_tokens(c: ml_collections.ConfigDict, count: int) -> list:
    """`count` global batches of the config's graph stream (seed 0)."""
    import numpy as np

    from gssm_jax.config import resolved_graph_spec
    from gssm_jax.gssm import kernels, sample
    from gssm_jax.gssm.graph import parse_graph

    graph = parse_graph(resolved_graph_spec(c))
    tables = kernels.as_device_tables(kernels.draw_kernels(graph, c.data.graph_seed))
    B, T = c.data.batch_size, c.data.seq_len
    return [
        sample.sample_tokens(graph, tables, 0, np.arange(k * B, (k + 1) * B), T)
        for k in range(count)
    ]


class Timed:
    """One model's jitted train step with its state, and the times of its timed steps."""

    def __init__(
        self, name: str, model: nn.Module, c: ml_collections.ConfigDict, mesh: Mesh, batches: list
    ) -> None:
        import jax
        from jax.sharding import NamedSharding

        from gssm_jax import parallel
        from gssm_jax.train import state as train_state
        from gssm_jax.train import step as train_step

        self.name, self.model = name, model
        sharding = NamedSharding(mesh, parallel.batch_spec(c))
        self.batches = [jax.device_put(b, sharding) for b in batches]
        self.state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(0))
        self.step_fn = train_step.make_train_step(c, model, mesh, shardings)
        self.k = 0
        t0 = time.perf_counter()
        self.run_step()
        self.compile_s = time.perf_counter() - t0
        self.wall, self.cpu, self.faults, self.losses = [], [], [], []

    def run_step(self) -> tuple[float, float, int]:
        import jax

        t0, c0 = time.perf_counter(), time.process_time()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        self.state, metrics = self.step_fn(self.state, self.batches[self.k % len(self.batches)])
        jax.block_until_ready(metrics)
        times = (
            time.perf_counter() - t0,
            time.process_time() - c0,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
        )
        self.k += 1
        self.last_loss = float(metrics["loss"])
        return times

    def timed_steps(self, n: int) -> None:
        for _ in range(n):
            wall, cpu, faults = self.run_step()
            self.wall.append(wall)
            self.cpu.append(cpu)
            self.faults.append(faults)
            self.losses.append(self.last_loss)


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv and not argv[0].startswith("-"):  # tolerate `bench train ...` or a program name
        argv.pop(0)
    parser = argparse.ArgumentParser(
        prog="python -m gssm_jax.bench train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--models", default="optimized,plain", help="optimized and/or plain")
    parser.add_argument(
        "--tokens",
        default="real",
        choices=("real", "random"),
        help="batches from the `four` graph's stream (default) or uniform random tokens",
    )
    parser.add_argument(
        "--no-keep-memory", action="store_true", help="leave glibc malloc at its defaults"
    )
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if not models or any(m not in ("optimized", "plain") for m in models):
        parser.error(f"--models: expected optimized and/or plain, got {args.models!r}")
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--rounds and --steps must be >= 1, --warmup >= 0")
    kept = False if args.no_keep_memory else keep_freed_memory()

    from gssm_jax import parallel
    from gssm_jax.config import resolved_graph_spec
    from gssm_jax.gssm.graph import parse_graph
    from gssm_jax.models.reference import PlainTransformer
    from gssm_jax.models.transformer import ModelConfig
    from gssm_jax.train import state as train_state

    c = bench_config(args.batch, args.seq_len, args.layers, args.dtype)
    vocab = parse_graph(resolved_graph_spec(c)).vocab_size
    mesh = parallel.make_mesh(c.mesh)
    parallel.check_divisibility(c, mesh)
    batches = real_tokens(c, 4) if args.tokens == "real" else random_tokens(c, 4, vocab)
    build = {
        "optimized": lambda: train_state.model_from_config(c, vocab),
        "plain": lambda: PlainTransformer(ModelConfig.from_config(c.model, vocab)),
    }
    timed = [Timed(name, build[name](), c, mesh, batches) for name in models]
    for t in timed:
        for _ in range(args.warmup):
            t.run_step()
    for _ in range(args.rounds):
        for t in timed:
            t.timed_steps(args.steps)

    tokens_per_step = args.batch * (args.seq_len - 1)
    m = c.model
    description = (
        f"transformer emb_dim={m.emb_dim} layers={m.nb_layers} heads={m.nb_heads} "
        f"swiglu_hidden={m.hidden_dim} vocab={vocab} {m.dtype}"
    )
    info = machine()
    rates = {}
    for t in timed:
        median = _percentile(t.wall, 50)
        rates[t.name] = tokens_per_step / median
        row = {
            "bench": "train",
            "model": f"{description} ({t.name})",
            "variant": t.name,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "tokens_per_step": tokens_per_step,
            "tokens_per_s": round(rates[t.name], 1),
            "step_time_s": round(median, 6),
            "step_time_min_s": round(min(t.wall), 6),
            "step_time_p90_s": round(_percentile(t.wall, 90), 6),
            "cpu_time_per_step_s": round(_percentile(t.cpu, 50), 4),
            "page_faults_per_step": int(_percentile(t.faults, 50)),
            "timed_steps": len(t.wall),
            "compile_and_first_step_s": round(t.compile_s, 2),
            "final_loss": round(t.losses[-1], 4),
            "tokens": args.tokens,
            "malloc_keeps_memory": kept,
            "machine": info,
        }
        print(json.dumps(row), flush=True)
    if len(timed) == 2:
        summary = {
            "bench": "train",
            "model": description,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "speedup_optimized_over_plain": round(rates["optimized"] / rates["plain"], 3),
            "tokens_per_s": {k: round(v, 1) for k, v in rates.items()},
            "step_time_s": {t.name: round(_percentile(t.wall, 50), 6) for t in timed},
            "machine": machine(),
        }
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
