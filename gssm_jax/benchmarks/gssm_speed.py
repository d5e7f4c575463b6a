"""Sampler and exact-entropy throughput: `python -m gssm_jax.bench gssm [--graphs ..] [--shapes ..]`.

Prints one JSON line per (measurement, graph, shape): tokens/s of the JAX code (compiled first,
compile time reported apart) against a plain NumPy reference measured in the same run: a
per-time-step sampler vectorised over the batch, and the log-space dense forward algorithm over the
S joint hidden states (O(S^2) per token). Tokens are counted as batch x seq_len. The reference
forward is timed on a prefix of the time steps (`reference_tokens`) when the full run would be long;
where its S x S matrix cannot be built the row says why.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from typing import Any

import jax
import numpy as np

from gssm_jax.benchmarks.common import machine
from gssm_jax.config import four_graph
from gssm_jax.gssm import entropy, kernels, sample
from gssm_jax.gssm.graph import Graph, parse_graph

GRAPHS = {
    "exp1": {
        "Z1": dict(state_dim=64, alpha=1e-3),
        "X": dict(state_dim=32, alpha=1e-3, parents=["Z1"], observed=True),
    },
    "four": four_graph(0.05, 0.05),
    "eight": {
        **{f"Z{i}": dict(state_dim=4, alpha=0.05) for i in range(1, 9)},
        "X": dict(state_dim=64, alpha=0.05, parents=[f"Z{i}" for i in range(1, 9)], observed=True),
    },
}
SHAPES = ((16, 2048), (256, 256))
REFERENCE_MAX_S2 = 2**26  # joint-transition entries the reference forward may build
REFERENCE_SECONDS = 3.0  # time budget of one reference forward measurement
MIN_SECONDS, MAX_RUNS = 1.0, 5  # timed runs: until this much time has passed, at most this many


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss, KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---- NumPy references ---------------------------------------------------------------------------


def _inputs(graph: Graph, node, own_prev, values: dict, prev_token) -> list:
    own = [] if node.observed else [own_prev]
    x = graph.observed.name
    return own + [prev_token if p == x else values[p] for p in node.parents]


def reference_sample(graph: Graph, tables: kernels.Tables, batch: int, seq_len: int, seed: int):
    """(states_BxTxN, tokens_BxT) by a per-time-step NumPy loop, vectorised over the batch; context
    nodes get per-sequence tables from `kernels.draw_node_table_np`."""
    rng = np.random.default_rng(seed)
    rows_B = np.arange(batch)
    per_seq = []
    for node, table in zip(graph.nodes, tables):
        if table is None:
            dims = graph.input_dims(node)
            table = np.stack([kernels.draw_node_table_np(rng, node, dims) for _ in rows_B])
        per_seq.append((table, node.mode == "context"))
    names = [n.name for n in graph.hidden]
    states = np.zeros((batch, seq_len, len(names)), np.int64)
    tokens = np.zeros((batch, seq_len), np.int64)

    def draw(i, node, own_prev, values, prev_token):
        table, context = per_seq[i]
        idx = tuple(_inputs(graph, node, own_prev, values, prev_token))
        p_BxS = table[(rows_B, *idx)] if context else table[idx]
        cdf_BxS = np.cumsum(p_BxS, axis=-1)
        u_B = rng.random(batch) * cdf_BxS[:, -1]
        return np.minimum((cdf_BxS <= u_B[:, None]).sum(-1), node.state_dim - 1)

    for t in range(1, seq_len):
        values: dict[str, np.ndarray] = {}
        for i, node in enumerate(graph.hidden):
            values[node.name] = draw(i, node, states[:, t - 1, i], values, tokens[:, t - 1])
            states[:, t, i] = values[node.name]
        tokens[:, t] = draw(len(names), graph.observed, None, values, None)
    return states, tokens


def dense_log_transition(graph: Graph, tables: kernels.Tables) -> tuple[np.ndarray, np.ndarray]:
    """log T[x_prev, z, z'] (x_prev axis of size 1 when X feeds no hidden node) and log E[z', x]."""
    dims = graph.hidden_dims
    s = graph.joint_size
    old = [z[:, None] for z in np.unravel_index(np.arange(s), dims)]
    new = {n.name: z[None, :] for n, z in zip(graph.hidden, np.unravel_index(np.arange(s), dims))}
    n_prev = graph.vocab_size if graph.x_feeds_hidden else 1
    log_t = np.zeros((n_prev, s, s))
    for x_prev in range(n_prev):
        for i, node in enumerate(graph.hidden):
            idx = _inputs(graph, node, old[i], new, np.full((1, 1), x_prev))
            log_t[x_prev] += np.log(tables[i][(*idx, new[node.name])])
    emit_idx = tuple(new[p][0] for p in graph.observed.parents)
    return log_t, np.log(tables[-1][emit_idx])


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def reference_entropy(graph: Graph, tables: kernels.Tables, tokens_BxT, max_seconds=math.inf):
    """Per-sequence entropy (nats/token) by the log-space dense forward algorithm over the first
    `steps` positions; stops early once `max_seconds` have passed. Returns (H_B, steps)."""
    tokens_BxT = np.asarray(tokens_BxT)
    if graph.has_context:
        raise ValueError("reference_entropy: graphs with context nodes need Monte Carlo")
    log_t, log_e = dense_log_transition(graph, tables)
    batch, seq_len = tokens_BxT.shape
    log_alpha = np.full((batch, graph.joint_size), -np.inf)
    log_alpha[:, 0] = 0.0
    log_p = np.zeros(batch)
    start, steps = time.perf_counter(), 0
    for t in range(1, seq_len):
        x_prev = tokens_BxT[:, t - 1] if graph.x_feeds_hidden else np.zeros(batch, np.int64)
        moved = _logsumexp(log_alpha[:, :, None] + log_t[x_prev], axis=1)
        joint = moved + log_e[:, tokens_BxT[:, t]].T
        scale = _logsumexp(joint, axis=1)
        log_p += scale
        log_alpha = joint - scale[:, None]
        steps += 1
        if time.perf_counter() - start > max_seconds:
            break
    return -log_p / steps, steps


# ---- measurements -------------------------------------------------------------------------------


def _time(fn) -> tuple[float, Any]:
    """Best wall time of fn(run) over runs until MIN_SECONDS have passed (MAX_RUNS at most), and
    the first run's output."""
    best, total, runs, first = math.inf, 0.0, 0, None
    while runs < MAX_RUNS and (runs == 0 or total < MIN_SECONDS):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(runs))
        took = time.perf_counter() - start
        best, total, runs = min(best, took), total + took, runs + 1
        first = out if first is None else first
    return best, first


def _row(bench: str, name: str, batch: int, seq_len: int, tokens_per_s, reference, **extra):
    speedup = None if tokens_per_s is None or reference is None else tokens_per_s / reference
    return {
        "bench": bench,
        "graph": name,
        "batch": batch,
        "seq_len": seq_len,
        "tokens_per_s": None if tokens_per_s is None else round(tokens_per_s),
        "reference_tokens_per_s": None if reference is None else round(reference),
        "speedup": None if speedup is None else round(speedup, 2),
        **extra,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }


def bench_sample(name: str, graph: Graph, tables, batch: int, seq_len: int) -> dict:
    sampler = sample.make_sampler(graph, seq_len)
    device_tables = kernels.as_device_tables(tables)
    start = time.perf_counter()
    sampler(device_tables, 0, np.arange(batch)).block_until_ready()
    compile_s = time.perf_counter() - start
    best, _ = _time(lambda r: sampler(device_tables, 0, np.arange(batch) + (r + 1) * batch))
    start = time.perf_counter()
    reference_sample(graph, tables, batch, seq_len, seed=0)
    reference_s = time.perf_counter() - start
    n = batch * seq_len
    return _row(
        "sample", name, batch, seq_len, n / best, n / reference_s, compile_s=round(compile_s, 2)
    )


def bench_entropy(name: str, graph: Graph, tables, batch: int, seq_len: int) -> dict:
    tokens = sample.sample_tokens(graph, tables, 0, np.arange(batch), seq_len)
    fn = jax.jit(entropy.make_entropy_fn(graph, seq_len))
    device_tables = kernels.as_device_tables(tables)
    start = time.perf_counter()
    compiled = fn.lower(device_tables, tokens).compile()
    compile_s = time.perf_counter() - start
    best, h_B = _time(lambda r: compiled(device_tables, tokens))
    n = batch * seq_len
    extra: dict[str, Any] = {
        "compile_s": round(compile_s, 2),
        "entropy_normalised": round(float(h_B.mean()) / math.log(graph.vocab_size), 4),
    }
    s2 = entropy.dense_entries(graph)
    if s2 > REFERENCE_MAX_S2:
        gb = s2 * 4 / 1e9
        extra["reason"] = (
            f"dense reference needs a {graph.joint_size} x {graph.joint_size} joint "
            f"transition ({gb:.1f} GB in float32)"
        )
        return _row("entropy", name, batch, seq_len, n / best, None, **extra)
    start = time.perf_counter()
    h_ref_B, steps = reference_entropy(graph, tables, tokens, REFERENCE_SECONDS)
    reference_s = time.perf_counter() - start
    extra["reference_tokens"] = batch * steps
    if steps == seq_len - 1:
        extra["max_abs_diff_vs_reference"] = float(np.abs(np.asarray(h_B) - h_ref_B).max())
    return _row("entropy", name, batch, seq_len, n / best, batch * steps / reference_s, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gssm_jax.bench gssm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--graphs", default=",".join(GRAPHS), help=f"comma-separated, from {', '.join(GRAPHS)}"
    )
    parser.add_argument(
        "--shapes",
        default=",".join(f"{b}x{t}" for b, t in SHAPES),
        help="comma-separated BATCHxSEQ_LEN",
    )
    parser.add_argument("--benches", default="sample,entropy", help="sample and/or entropy")
    parser.add_argument("--graph-seed", type=int, default=0)
    args = parser.parse_args(argv)
    graphs = [g for g in args.graphs.split(",") if g]
    for g in graphs:
        if g not in GRAPHS:
            parser.error(f"--graphs: unknown graph {g!r} (known: {', '.join(GRAPHS)})")
    shapes = []
    for shape in args.shapes.split(","):
        try:
            b, t = (int(v) for v in shape.split("x"))
        except ValueError:
            parser.error(f"--shapes: expected BATCHxSEQ_LEN such as 16x2048, got {shape!r}")
        if b < 1 or t < 2:
            parser.error(f"--shapes: need batch >= 1 and seq_len >= 2, got {shape!r}")
        shapes.append((b, t))
    benches = {"sample": bench_sample, "entropy": bench_entropy}
    for b in args.benches.split(","):
        if b not in benches:
            parser.error(f"--benches: unknown bench {b!r} (known: sample, entropy)")
    for name in graphs:
        graph = parse_graph(GRAPHS[name])
        tables = kernels.draw_kernels(graph, args.graph_seed)
        for bench in args.benches.split(","):
            for batch, seq_len in shapes:
                print(f"[bench] {bench} {name} {batch}x{seq_len} ...", file=sys.stderr, flush=True)
                row = benches[bench](name, graph, tables, batch, seq_len)
                print(json.dumps(row), flush=True)
    return 0
