"""How hard a GSSM is (docs/spec.md section 5): compression proxy, exact normalised entropy, alpha search.

Pure functions of a graph and plain seeds; the command line that reads a run config is
`python -m gssm_jax.difficulty`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from gssm_jax.gssm import entropy, kernels, sample
from gssm_jax.gssm import graph as graph_lib
from gssm_jax.gssm.graph import Graph, parse_graph

# entropy, gzip: this project's scales in [0, 1]; zlib_int64_bytes: the original PyTorch system's
# first experiment, compressed bytes per token of the int64 array, kept to compare with its tables.
MEASURES = ("entropy", "gzip", "zlib_int64_bytes")


def gzip_proxy(tokens_BxT, vocab_size: int) -> float:
    """Bits per token zlib level 9 needs for the tokens stored one byte each (sequences one after
    the other), divided by log2(vocab_size): about 0 for a constant stream, about 1 for iid uniform."""
    if (
        isinstance(vocab_size, bool)
        or not isinstance(vocab_size, int)
        or not 2 <= vocab_size <= 256
    ):
        raise ValueError(f"vocab_size={vocab_size!r}: the gzip proxy needs 2 <= vocab_size <= 256")
    tokens = np.asarray(tokens_BxT)
    if tokens.size == 0:
        raise ValueError("tokens_BxT: empty, nothing to compress")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(
            f"tokens_BxT: values {tokens.min()}..{tokens.max()} outside the vocabulary "
            f"0..{vocab_size - 1}"
        )
    compressed = zlib.compress(tokens.astype(np.uint8).tobytes(), 9)
    return 8 * len(compressed) / tokens.size / math.log2(vocab_size)


def zlib_int64_bytes(tokens_BxT) -> float:
    """The original system's difficulty (its first experiment): `len(zlib.compress(tokens.astype(int64)
    .tobytes(), 9)) / tokens.size`, bytes per token with the whole batch compressed as one stream.

    Not normalised by the vocabulary: an int64 token is 8 bytes of which 7 are zero, and zlib's
    cost for those zeros and for the token's own bits both count, so its scale depends on the
    vocabulary size and on the stream's length; `gzip_proxy` divides bits by log2(vocab_size)."""
    tokens = np.asarray(tokens_BxT)
    if tokens.size == 0:
        raise ValueError("tokens_BxT: empty, nothing to compress")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens_BxT: expected integer tokens, got dtype {tokens.dtype}")
    return len(zlib.compress(tokens.astype(np.int64).tobytes(), 9)) / tokens.size


def normalised_entropy(
    graph: Graph, tables: kernels.Tables, tokens_BxT, mc_draws: int = 64
) -> float:
    """Mean exact entropy rate H / log(vocab) over the sequences, in [0, 1] (Monte Carlo over
    `mc_draws` kernel sets for graphs with context nodes)."""
    tables = kernels.as_device_tables(tables)
    h_B = entropy.sequence_entropy(graph, tables, tokens_BxT, mc_draws=mc_draws).per_sequence
    return float(np.mean(np.asarray(h_B))) / math.log(graph.vocab_size)


def with_alphas(graph: Graph, alpha_x: float | None = None, alpha_z: float | None = None) -> Graph:
    """The graph with X's alpha and/or every hidden node's alpha replaced (None keeps them)."""
    return parse_graph(graph_lib.with_alphas(graph.to_dict(), alpha_x, alpha_z))


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where the measured tokens come from: kernels from `graph_seed`, sequences 0..batch-1.

    `skip_initial`: the compression measures see `seq_len` tokens after the initial token 0 (which
    every sequence starts with), as the original stored them; the entropy sees the whole sequence."""

    graph_seed: int = 0
    data_seed: int = 0
    batch: int = 32
    seq_len: int = 1024
    mc_draws: int = 64
    skip_initial: bool = False


# The original's measuring setup (its first experiment): 1024 sequences from seed 42, of 2048 tokens for the
# 4-node graph (4096 for the 8-node one), without the initial token.
ORIGINAL_SETUP = Setup(data_seed=42, batch=1024, seq_len=2048, skip_initial=True)


def measure(graph: Graph, setup: Setup, which: Sequence[str] = MEASURES) -> dict[str, float]:
    """The requested difficulty measures of the graph under `setup`, by name."""
    for name in which:
        if name not in MEASURES:
            raise ValueError(f"measure {name!r}: must be one of {MEASURES}")
    tables = kernels.draw_kernels(graph, setup.graph_seed)
    tokens = sample.sample_tokens(
        graph, tables, setup.data_seed, np.arange(setup.batch), setup.seq_len + setup.skip_initial
    )
    stored = np.asarray(tokens)[:, 1:] if setup.skip_initial else tokens
    out = {}
    if "gzip" in which:
        out["gzip"] = gzip_proxy(stored, graph.vocab_size)
    if "zlib_int64_bytes" in which:
        out["zlib_int64_bytes"] = zlib_int64_bytes(stored)
    if "entropy" in which:
        out["entropy"] = normalised_entropy(graph, tables, tokens, setup.mc_draws)
    return out


@dataclasses.dataclass(frozen=True)
class AlphaSearch:
    """Result of `search_alpha`: the evaluated alpha closest to the target, and every evaluation."""

    alpha: float
    value: float
    target: float
    tol: float
    evaluations: tuple[tuple[float, float], ...]

    @property
    def converged(self) -> bool:
        return abs(self.value - self.target) <= self.tol

    def lines(self, node: str, measure_name: str) -> list[str]:
        """Every evaluation, then the verdict: what `python -m gssm_jax.difficulty` prints."""
        a = f"alpha_{node.upper()}"
        status = "within" if self.converged else "NOT within"
        return [
            *(
                f"  {a}={alpha:.6g}: {measure_name} {value:.4f}"
                for alpha, value in self.evaluations
            ),
            f"{a}={self.alpha:.6g} gives {measure_name} {self.value:.4f}, {status} {self.tol} of "
            f"the target {self.target}",
        ]


def search_alpha(
    graph: Graph,
    target: float,
    node: str = "x",
    measure_name: str = "entropy",
    setup: Setup = Setup(),
    bounds: tuple[float, float] = (1e-4, 10.0),
    tol: float = 0.01,
    max_evals: int = 25,
) -> AlphaSearch:
    """Bisection in log alpha for the alpha of X (node="x") or of all hidden nodes (node="z") at
    which the measure reaches `target` within `tol`, assuming it grows with alpha. Seeds are fixed
    by `setup`; kernels change discontinuously with alpha, so check `converged` on the result."""
    if node not in ("x", "z"):
        raise ValueError(
            f"node={node!r}: must be 'x' (alpha of X) or 'z' (alpha of every hidden node)"
        )
    if not 0 < target < 1:
        raise ValueError(f"target={target!r}: a normalised difficulty lies in (0, 1)")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds={bounds!r}: need 0 < low < high")
    if not tol > 0:
        raise ValueError(f"tol={tol!r}: must be > 0")
    evaluations: list[tuple[float, float]] = []

    def f(alpha: float) -> float:
        g = with_alphas(graph, alpha_x=alpha) if node == "x" else with_alphas(graph, alpha_z=alpha)
        value = measure(g, setup, (measure_name,))[measure_name]
        evaluations.append((alpha, value))
        return value

    f_lo, f_hi = f(lo), f(hi)
    if not f_lo - tol <= target <= f_hi + tol:
        raise ValueError(
            f"target={target}: the {measure_name} measure goes from {f_lo:.4f} at alpha "
            f"{lo:g} to {f_hi:.4f} at alpha {hi:g}; widen bounds"
        )
    while len(evaluations) < max_evals and not any(abs(v - target) <= tol for _, v in evaluations):
        mid = math.sqrt(lo * hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    alpha, value = min(evaluations, key=lambda e: abs(e[1] - target))
    return AlphaSearch(alpha, value, target, tol, tuple(evaluations))


def _fmt(v: float | None) -> str:
    return "config" if v is None else f"{v:g}"


def grid_table(
    graph: Graph,
    setup: Setup,
    alphas_x: Sequence[float | None],
    alphas_z: Sequence[float | None],
    measures: Sequence[str] = ("gzip", "entropy"),
    progress: TextIO | None = None,
) -> list[str]:
    """The lines of a table of `measures` over alpha_X x alpha_Z (None: the graph's own alpha),
    with one progress line per cell on `progress`."""
    label = {"entropy": "entropy" + (f" (MC {setup.mc_draws})" if graph.has_context else "")}
    cells = [(ax, az) for ax in alphas_x for az in alphas_z]
    rows = []
    for k, (ax, az) in enumerate(cells, 1):
        start = time.perf_counter()
        values = measure(with_alphas(graph, ax, az), setup, measures)
        took = time.perf_counter() - start
        if progress is not None:
            shown = ", ".join(f"{label.get(m, m)} {values[m]:.4f}" for m in measures)
            print(
                f"[{k}/{len(cells)}] alpha_X={_fmt(ax)} alpha_Z={_fmt(az)}: {shown} ({took:.1f} s)",
                file=progress,
                flush=True,
            )
        rows.append((_fmt(ax), _fmt(az), *(f"{values[m]:.4f}" for m in measures)))
    header = ("alpha_X", "alpha_Z", *(label.get(m, m) for m in measures))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]


def describe(graph: Graph, setup: Setup) -> str:
    """One line: the graph's nodes, sizes and alphas, and the setup's tokens and seeds."""
    nodes = ", ".join(f"{n.name}({n.state_dim}, alpha {n.alpha:g})" for n in graph.hidden)
    return (
        f"graph {nodes} -> {graph.observed.name}({graph.vocab_size}, alpha "
        f"{graph.observed.alpha:g}); {setup.batch} x {setup.seq_len} tokens, graph seed "
        f"{setup.graph_seed}, data seed {setup.data_seed}"
    )
