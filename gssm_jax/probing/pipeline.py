"""Linear probes of a trained model's activations for every hidden node of the GSSM, scored
against the true states and the exact Bayes filtering posterior (the library of
`python -m gssm_jax.probe`).

Draws held-out sequences of the run's graph with their true hidden states (stream `--data-seed`,
default the run's eval seed, from sequence index 2**31 on, which neither training nor evaluation
reads), reads the model's residual stream at every layer, fits one linear softmax probe per
(layer, hidden node) on a train split of the sequences, and reports on the test split: the probe's
accuracy against the true state, the accuracy of the exact filtering posterior's argmax (the
ceiling for any causal reader), the cross-entropy of the probe to that posterior, and chance (the
majority state). Writes OUT/<step>.json and OUT/<step>.png (OUT = RUN/probe by default; `--init`
probes a fresh initialisation of the run's model and names them `init`).

The model at position t has read tokens 0..t; its probe targets z(t), whose posterior given those
tokens is the filtering posterior. Position 0 is the fixed start state and is left out by default.
Graphs with `context` nodes have no exact posterior here: they are refused (exit 2).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gssm_jax.gssm import posterior, sample
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, as_device_tables
from gssm_jax.inference.rundir import RunError, open_run
from gssm_jax.probing import capture, fit, probe_table

FIRST_INDEX = 2**31  # held-out sequences: indices [2**31, 2**31 + n) of the chosen stream


def parse_positions(items: Sequence[str] | None, length: int) -> np.ndarray:
    """Positions from `t` and `a:b` (end excluded) items; default 1..length-1."""
    if not items:
        return np.arange(1, length)
    out: list[int] = []
    for item in items:
        try:
            if ":" in item:
                lo, hi = item.split(":")
                out += range(int(lo or 1), int(hi) if hi else length)
            else:
                out.append(int(item))
        except ValueError:
            raise ValueError(f"--positions {item!r}: expected an integer or a range a:b") from None
    positions = np.array(sorted(set(out)), np.int64)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= length:
        raise ValueError(f"--positions {' '.join(items)}: positions must lie in [0, {length - 1}]")
    return positions


def _activations(fn, params, tokens_NxL, positions, batch: int) -> dict[str, np.ndarray]:
    """{layer: (N, P, D) float32} at `positions`, computed `batch` sequences at a time."""
    pos = jnp.asarray(positions)
    run = jax.jit(lambda p, t: {k: v[:, pos].astype(jnp.float32) for k, v in fn(p, t).items()})
    chunks = [run(params, tokens_NxL[i : i + batch]) for i in range(0, len(tokens_NxL), batch)]
    return {k: np.concatenate([np.asarray(c[k]) for c in chunks]) for k in chunks[0]}


def _posteriors(graph, tables, tokens_NxT, positions, batch: int) -> list[np.ndarray]:
    """Filtering marginals per node at `positions`, each (N, P, d)."""
    parts = [
        posterior.filtering_marginals(graph, tables, tokens_NxT[i : i + batch])
        for i in range(0, len(tokens_NxT), batch)
    ]
    return [
        np.concatenate([np.asarray(p[k])[:, positions] for p in parts])
        for k in range(len(parts[0]))
    ]


class _Setup(NamedTuple):
    workdir: str
    config: ml_collections.ConfigDict
    graph: Graph
    tables: Tables
    module: nn.Module
    params: Any
    step: int | str
    layers: tuple[str, ...]
    positions: np.ndarray


def _setup(args: ProbeRequest) -> _Setup:
    """Reads the run and checks every user input, before any real work."""
    run = open_run(args.workdir)
    config, graph = run.config, run.graph
    if graph is None:
        raise RunError(
            f"--workdir {run.workdir}: a text run (data.source='text') has no hidden process "
            "states to probe"
        )
    if graph.has_context:
        names = [n.name for n in graph.nodes if n.mode == "context"]
        raise posterior.ContextPosteriorError(
            f"graph of {run.workdir!r} has context nodes {names}: their state includes the kernels "
            "drawn for each sequence, which these probes do not target (no exact posterior)"
        )
    step = "init" if args.init else run.step_or_latest(args.step)
    length = config.data.seq_len - 1  # the model reads tokens 0..T-2, as in training
    positions = parse_positions(args.positions, length)
    n_test = round(args.sequences * args.test_fraction)
    if not 1 <= n_test < args.sequences:
        raise ValueError(
            f"--sequences {args.sequences} --test-fraction {args.test_fraction}: "
            "both splits need at least one sequence"
        )
    params = run.init_params() if isinstance(step, str) else run.restore_params(step)  # "init"
    module = run.model.module
    available = capture.available_layers(module, params, jnp.zeros((1, length), jnp.int32))
    layers = tuple(args.layers) if args.layers else available
    if not args.layers and not args.parts:
        layers = capture.residual_layers(available)
    capture.check_layers(layers, available)
    return _Setup(
        run.workdir, config, graph, run.process[1], module, params, step, layers, positions
    )


def _rows(a_NxPx: np.ndarray) -> np.ndarray:
    """(sequences, positions, ...) -> (rows, ...)."""
    return a_NxPx.reshape((-1,) + a_NxPx.shape[2:])


@dataclasses.dataclass(frozen=True)
class ProbeRequest:
    """What to probe: the run and checkpoint (or `init`), the held-out sequences and positions,
    the layers, and the probes' training settings (the flags of `python -m gssm_jax.probe`)."""

    workdir: str
    step: int | None = None
    init: bool = False
    sequences: int = 4096
    test_fraction: float = 0.25
    positions: Sequence[str] | None = None
    layers: Sequence[str] | None = None
    parts: bool = False
    data_seed: int | None = None
    batch: int = 256
    steps: int = fit.ProbeSettings.steps
    probe_batch: int = fit.ProbeSettings.batch
    lr: float = fit.ProbeSettings.lr
    weight_decay: float = fit.ProbeSettings.weight_decay
    seed: int = fit.ProbeSettings.seed


def run_probe(args: ProbeRequest) -> dict:
    """Fits and scores the probes; raises ValueError subclasses for user errors."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    s = _setup(args)
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    data_seed = s.config.eval.seed if args.data_seed is None else args.data_seed
    tables = as_device_tables(s.tables)
    idx = FIRST_INDEX + np.arange(args.sequences, dtype=np.int64)
    states_NxTxK, tokens_NxT = sample.sample_hidden_and_tokens(
        s.graph, tables, data_seed, idx, s.config.data.seq_len
    )
    states_NxPxK = np.asarray(states_NxTxK)[:, s.positions]
    post = _posteriors(s.graph, tables, tokens_NxT, s.positions, args.batch)
    timings["sample_and_posterior_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fn = capture.capture_fn(s.module, s.layers)
    length = s.config.data.seq_len - 1
    acts = _activations(fn, s.params, tokens_NxT[:, :length], s.positions, args.batch)
    timings["activations_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_train = args.sequences - round(args.sequences * args.test_fraction)
    dims = s.graph.hidden_dims
    y_train, y_test = _rows(states_NxPxK[:n_train]).T, _rows(states_NxPxK[n_train:]).T
    pad = lambda p: np.pad(p, ((0, 0), (0, max(dims) - p.shape[-1])))
    post_test = np.stack([pad(_rows(p[n_train:])) for p in post])
    settings = fit.ProbeSettings(
        args.steps, args.probe_batch, args.lr, args.weight_decay, args.seed
    )
    scores = fit.probe_layers(
        {name: _rows(a[:n_train]) for name, a in acts.items()},
        {name: _rows(a[n_train:]) for name, a in acts.items()},
        y_train,
        y_test,
        post_test,
        dims,
        settings,
    )
    bayes = fit.bayes_scores(y_test, post_test, y_train)
    timings["probes_s"] = time.perf_counter() - t0

    nodes = [n.name for n in s.graph.hidden]
    results = _results(s.layers, nodes, scores, bayes)
    return {
        "workdir": s.workdir,
        "step": s.step,
        "layers": list(s.layers),
        "nodes": nodes,
        "sequences": args.sequences,
        "train_sequences": n_train,
        "test_sequences": args.sequences - n_train,
        "test_rows": int(y_test.shape[1]),
        "seq_len": s.config.data.seq_len,
        "positions": s.positions.tolist(),
        "data_seed": int(data_seed),
        "first_index": FIRST_INDEX,
        "probe": dataclasses.asdict(settings),
        "ceiling": dict(zip(nodes, map(float, bayes["ceiling"]))),
        "chance": dict(zip(nodes, map(float, bayes["chance"]))),
        "posterior_entropy": dict(zip(nodes, map(float, bayes["posterior_entropy"]))),
        "best": _best(nodes, results),
        "results": results,
        "timings": {**timings, "total_s": time.perf_counter() - t_start},
    }


def _results(layers, nodes, scores: dict[str, fit.Scores], bayes: dict) -> list[dict]:
    """One record per (layer, node)."""
    out = []
    for name in layers:
        for k, node in enumerate(nodes):
            acc = float(scores[name].accuracy[k])
            ceiling, chance = float(bayes["ceiling"][k]), float(bayes["chance"][k])
            headroom = (acc - chance) / (ceiling - chance) if ceiling > chance else None
            out.append(
                {
                    "layer": name,
                    "node": node,
                    "accuracy": acc,
                    "ceiling": ceiling,
                    "chance": chance,
                    "of_ceiling": acc / ceiling,
                    "of_headroom": headroom,
                    "xent_posterior": float(scores[name].xent_posterior[k]),
                    "nll_true": float(scores[name].nll_true[k]),
                }
            )
    return out


def _best(nodes, results: list[dict]) -> dict:
    """Each node's layer of highest accuracy / ceiling."""
    best = {}
    for node in nodes:
        top = max((r for r in results if r["node"] == node), key=lambda r: r["of_ceiling"])
        best[node] = {"layer": top["layer"], "of_ceiling": top["of_ceiling"]}
    return best


def write_outputs(result: dict, out: str | None) -> str:
    """OUT/<step>.json and its heatmap OUT/<step>.png (OUT default RUN/probe); what was written."""
    out = out or os.path.join(result["workdir"], "probe")
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, str(result["step"]))
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    try:
        probe_table.heatmap(result, base + ".png")
        return f"{base}.json, {base}.png"
    except ImportError:
        return f"{base}.json (no heatmap: pip install 'gssm_jax[report]' for matplotlib)"


def summary_line(result: dict, written: str) -> str:
    t = result["timings"]
    return (
        f"probed {result['sequences']} sequences x {len(result['positions'])} positions "
        f"({result['test_sequences']} held for scoring) in {t['total_s']:.1f} s "
        f"(load {t['load_s']:.1f}, data {t['sample_and_posterior_s']:.1f}, "
        f"activations {t['activations_s']:.1f}, probes {t['probes_s']:.1f}); wrote {written}"
    )
