"""Learning per token against PyTorch: `python -m gssm_jax.bench learn [flags]`.

Trains gssm_jax's transformer (the optimized model, one row per `--inits` scheme) and the PyTorch
eager reference (`gssm_jax.benchmarks.torch_ref`, its own fan-in initialisation) on identical
batches: global batch k is sequences 16k..16k+15 of the `four` graph's stream (data seed 1), as
the training loop reads it, for each graph seed. The settings are the earlier PyTorch system's:
emb_dim 64, 4 layers, 4 heads, SwiGLU 256, seq_len 256, batch 16, AdamW lr 1e-3 constant (no
warmup), betas 0.9/0.95, eps 1e-8, weight decay 0, global-norm clip 1.

The KL gap at step s is the mean over updates s-9..s of (the batch's loss before the update minus
the exact entropy of the same batch's sequences, `gssm_jax.gssm.entropy`), in nats/token. Prints one
JSON line per (graph seed, model) with the KL at the `--at` steps and the training throughput (wall
clock, shared machines make it noisy), then one line with the means over the graph seeds. torch is
optional: without it the bench says so on stderr and trains the JAX rows only.

`--torch-from-jax INIT` adds a control row: the torch reference started from the very parameters of
the JAX row with model.transformer.init=INIT, so that the two differ by implementation (and float rounding) only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from gssm_jax.benchmarks import torch_ref
from gssm_jax.benchmarks.common import machine
from gssm_jax.models.configs import INIT_CHOICES
from gssm_jax.runtime.hostmem import keep_freed_memory

SETTINGS = dict(
    emb_dim=64,
    layers=4,
    heads=4,
    hidden_dim=256,
    seq_len=256,
    batch=16,
    lr=1e-3,
    b1=0.9,
    b2=0.95,
    eps=1e-8,
    weight_decay=0.0,
    clip_norm=1.0,
    data_seed=1,
)
WINDOW = 10  # updates averaged into one KL figure


def learn_config(graph_seed: int, init: str, steps: int, shape: dict = SETTINGS):
    """The run config of the JAX rows: the default config with the earlier system's settings."""
    from gssm_jax.config import default_config, validate

    c = default_config()
    c.data.graph_seed, c.data.seed = graph_seed, shape["data_seed"]
    c.data.batch_size, c.data.seq_len = shape["batch"], shape["seq_len"]
    m, t = c.model, c.model.transformer
    m.emb_dim, m.nb_layers, t.nb_heads = shape["emb_dim"], shape["layers"], shape["heads"]
    t.hidden_dim, t.init = shape["hidden_dim"], init
    o = c.optim
    o.steps, o.lr, o.schedule, o.warmup = steps, shape["lr"], "constant", 0
    o.b1, o.b2, o.eps = shape["b1"], shape["b2"], shape["eps"]
    o.weight_decay, o.clip_norm = shape["weight_decay"], shape["clip_norm"]
    validate(c)
    return c


def stream_batches(c, count: int) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The first `count` global batches of c's stream, each batch's mean exact entropy, and the
    vocabulary size."""
    import jax

    from gssm_jax.config import graph_of
    from gssm_jax.gssm import kernels, sample
    from gssm_jax.gssm.entropy import make_entropy_fn

    graph = graph_of(c)
    tables = kernels.as_device_tables(kernels.draw_kernels(graph, c.data.graph_seed))
    entropy_fn = jax.jit(make_entropy_fn(graph, c.data.seq_len))
    B, T = c.data.batch_size, c.data.seq_len
    batches, entropies = [], []
    for k in range(count):
        rows = np.arange(k * B, (k + 1) * B, dtype=np.uint32)
        tokens = np.asarray(sample.sample_tokens(graph, tables, c.data.seed, rows, T))
        batches.append(tokens)
        entropies.append(float(np.mean(entropy_fn(tables, tokens))))
    return batches, np.asarray(entropies), graph.vocab_size


def _fresh_state(c):
    """(mesh, model, state, shardings): the optimized model of c and its train state at init."""
    import jax

    from gssm_jax.config import graph_of
    from gssm_jax.runtime import parallel
    from gssm_jax.train import state as train_state

    mesh = parallel.make_mesh(c.mesh)
    model = train_state.model_from_config(c, graph_of(c).vocab_size)
    state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(c.seed))
    return mesh, model, state, shardings


def jax_params(c) -> dict:
    """The initial parameters of c's optimized model (NumPy), as `jax_trainer(c)` starts from."""
    import jax

    return jax.tree.map(np.array, _fresh_state(c)[2].params)


def jax_trainer(c):
    """update(tokens) -> the batch's loss before the update, for the optimized model of c."""
    import jax
    from jax.sharding import NamedSharding

    from gssm_jax.runtime import parallel
    from gssm_jax.train import step as train_step

    mesh, model, state, shardings = _fresh_state(c)
    step_fn = train_step.make_train_step(c, model, mesh, shardings)
    batch_sharding = NamedSharding(mesh, parallel.batch_spec(c))
    holder = {"state": state}

    def update(tokens: np.ndarray) -> float:
        holder["state"], metrics = step_fn(holder["state"], jax.device_put(tokens, batch_sharding))
        return float(metrics["loss"])

    return update


def torch_trainer(c, vocab: int, seed: int, threads: int, params: dict | None = None):
    """The reference's update, from its own fan-in draw (torch seed `seed`) or from `params`, a
    JAX transformer's parameters."""
    from gssm_jax.benchmarks.timing import transformer_config

    m, o = transformer_config(c, vocab), c.optim
    shape = torch_ref.TorchShape(
        vocab, m.emb_dim, m.nb_layers, m.nb_heads, m.hidden_dim, m.rope_theta, m.norm_eps
    )
    model = torch_ref.build(shape, seed=seed, threads=threads)
    if params is not None:
        torch_ref.load_jax_params(model, params)
    return torch_ref.TrainStep(model, o.lr, o.b1, o.b2, o.eps, o.weight_decay, o.clip_norm)


def kl_at(losses: np.ndarray, entropies: np.ndarray, steps: list[int]) -> dict[str, float]:
    """Mean of loss - entropy over the WINDOW updates ending at each step (1-based)."""
    gap = np.asarray(losses) - entropies[: len(losses)]
    return {str(s): round(float(gap[max(0, s - WINDOW) : s].mean()), 5) for s in steps}


def train(update, batches: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Losses of every update over `batches` and the tokens/s of the updates after the first."""
    losses, t0 = [update(batches[0])], time.perf_counter()
    losses += [update(b) for b in batches[1:]]
    seconds = time.perf_counter() - t0
    tokens = (len(batches) - 1) * batches[0].shape[0] * (batches[0].shape[1] - 1)
    return np.asarray(losses), tokens / seconds if seconds > 0 else float("nan")


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gssm_jax.bench learn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=600, help="updates per run (default 600)")
    parser.add_argument("--at", default="100,300,600", help="steps whose KL is reported")
    parser.add_argument("--graph-seeds", default="0,1,2", help="graph seeds (default 0,1,2)")
    parser.add_argument(
        "--inits",
        default="",
        help="model.transformer.init of the JAX rows, comma-separated (default: config)",
    )
    parser.add_argument(
        "--torch-from-jax",
        default="",
        help="also train the torch reference from the JAX row's initial parameters under this "
        "model.transformer.init (a control: the same start, so the two rows differ by implementation only)",
    )
    parser.add_argument("--no-torch", action="store_true", help="train the JAX rows only")
    parser.add_argument("--no-jax", action="store_true", help="train the torch row only")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch's threads (default 1: the curve does not depend on it beyond rounding, and "
        "PyTorch's OpenMP threads stall on a CPU shared with other jobs)",
    )
    parser.add_argument("--batch", type=int, default=SETTINGS["batch"])
    parser.add_argument("--seq-len", type=int, default=SETTINGS["seq_len"])
    parser.add_argument("--layers", type=int, default=SETTINGS["layers"])
    args = parser.parse_args(argv)
    try:
        args.at_steps, args.seeds = _int_list(args.at), _int_list(args.graph_seeds)
    except ValueError as e:
        parser.error(f"--at/--graph-seeds: expected comma-separated integers ({e})")
    args.init_list = [i for i in args.inits.split(",") if i]
    bad = [i for i in [*args.init_list, args.torch_from_jax] if i and i not in INIT_CHOICES]
    if bad:
        parser.error(f"--inits: expected some of {','.join(INIT_CHOICES)}, got {bad[0]!r}")
    if args.steps < 1 or not args.seeds or any(not 1 <= s <= args.steps for s in args.at_steps):
        parser.error("--steps must be >= 1 and every --at step in 1..--steps")
    if args.batch < 1 or args.seq_len < 2 or args.layers < 1 or args.torch_threads < 1:
        parser.error("--batch, --layers and --torch-threads must be >= 1, --seq-len >= 2")
    args.shape = {**SETTINGS, "batch": args.batch, "seq_len": args.seq_len, "layers": args.layers}
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    keep_freed_memory()
    from gssm_jax.config import default_config

    inits = args.init_list or [default_config().model.transformer.init]
    use_torch = not args.no_torch and torch_ref.available()
    if not args.no_torch and not use_torch:
        print(f"bench learn: {torch_ref.MISSING}", file=sys.stderr, flush=True)
    info = machine()
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        base = learn_config(seed, inits[0], args.steps, args.shape)
        batches, entropies, vocab = stream_batches(base, args.steps)
        runs = [] if args.no_jax else [(f"jax (init={i})", i, "jax") for i in inits]
        runs += [("torch", None, "torch")] if use_torch else []
        if use_torch and args.torch_from_jax:
            i = args.torch_from_jax
            runs += [(f"torch (params of jax init={i})", i, "torch")]
        for name, init, library in runs:
            if library == "jax":
                update = jax_trainer(learn_config(seed, init, args.steps, args.shape))
            else:
                start = (
                    None
                    if init is None
                    else jax_params(learn_config(seed, init, args.steps, args.shape))
                )
                update = torch_trainer(base, vocab, base.seed, args.torch_threads, start)
            losses, rate = train(update, batches)
            row = {
                "bench": "learn",
                "model": name,
                "graph_seed": seed,
                "kl_gap": kl_at(losses, entropies, args.at_steps),
                "final_loss": round(float(losses[-1]), 5),
                "tokens_per_s": round(rate, 1),
                "steps": args.steps,
                "settings": args.shape,
                "machine": info,
            }
            results.setdefault(name, []).append(row)
            print(json.dumps(row), flush=True)
    means = {
        name: {
            str(s): round(float(np.mean([r["kl_gap"][str(s)] for r in rows])), 5)
            for s in args.at_steps
        }
        for name, rows in results.items()
    }
    summary = {"bench": "learn", "graph_seeds": args.seeds, "mean_kl_gap": means}
    if "torch" in means:
        summary["jax_at_most_torch"] = {
            name: all(kl[str(s)] <= means["torch"][str(s)] for s in args.at_steps)
            for name, kl in means.items()
            if name.startswith("jax")
        }
    summary["machine"] = info
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
