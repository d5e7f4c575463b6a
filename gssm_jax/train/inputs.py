"""The trainer's inputs: the training stream and the fixed held-out batches of a run config, each
element with the entropy baseline of its tokens.

A source is picked by `data.source` ("stream": sampled on the fly; "files": a set written by
`gssm_jax.write_data`; "text": real text, `gssm_jax.data.text`, whose elements have no entropy).
Either way element k of the training dataset is this process's rows of global batch k (so the
global batch at a step is the same whatever the number of processes), and the dataset is a Grain
iterator whose state goes into every checkpoint.
"""

from __future__ import annotations

from typing import Any

import grain
import ml_collections
import numpy as np

from gssm_jax.data import files, text
from gssm_jax.data.stream import StreamSource, cpu_tables, threaded
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables


def baseline(h_B: Any, se_B: Any) -> dict[str, float]:
    """A batch's entropy (the mean of its sequences') and, where Monte Carlo is used (`se_B` not
    None), the mean of its sequences' standard errors: an upper bound on the mean's, as they share
    their kernel draws."""
    out = {"entropy": float(np.mean(h_B))}
    if se_B is not None:
        out["entropy_stderr"] = float(np.mean(se_B))
    return out


def stored(element: dict) -> dict[str, float]:
    """`baseline` from a data-set element's stored per-sequence values (`files.FileSet.batch`)."""
    return baseline(element["entropy"], element.get("entropy_stderr"))


def stream_source(
    c: ml_collections.ConfigDict,
    graph: Graph,
    tables_np: Tables,
    seed: int,
    num_batches: int,
    rows: tuple[int, int],
) -> StreamSource:
    """The on-the-fly stream of `seed`: `num_batches` global batches, this process's `rows`."""
    return StreamSource(
        graph,
        cpu_tables(tables_np),
        seed,
        c.data.seq_len,
        c.data.batch_size,
        rows,
        num_batches,
    )


def train_dataset(
    c: ml_collections.ConfigDict, graph: Graph, tables_np: Tables, rows: tuple[int, int]
) -> grain.IterDataset:
    """Grain dataset whose element k is this process's rows of global training batch k (a set on
    disk is opened and checked against the run's graph first)."""
    if c.data.source == "files":
        train_set = files.open_checked(c.data.path, graph, tables_np, c.data)
        walk = files.TrainWalk(
            train_set,
            c.data.batch_size,
            rows,
            c.optim.steps,
            c.data.shuffle_seed,
            c.data.train_sequences,
        )
        return walk.stream(c.data.prefetch)
    source = stream_source(c, graph, tables_np, c.data.seed, c.optim.steps, rows)
    return threaded(grain.MapDataset.source(source), c.data.worker_threads, c.data.prefetch)


def eval_elements(
    c: ml_collections.ConfigDict, graph: Graph, tables_np: Tables, rows: tuple[int, int]
) -> list[dict]:
    """This process's rows of the `eval.batches` held-out batches: the eval stream (`eval.seed`),
    or the test set of a files run, whose elements carry their stored entropies."""
    if c.data.source == "files":
        test_set = files.open_checked(files.eval_set_path(c.data), graph, tables_np, c.data)
        return files.eval_batches(test_set, c.data.batch_size, rows, c.eval.batches)
    source = stream_source(c, graph, tables_np, c.eval.seed, c.eval.batches, rows)
    return [source[k] for k in range(c.eval.batches)]


def text_train_dataset(
    c: ml_collections.ConfigDict, corpus: text.TextCorpus, rows: tuple[int, int]
) -> grain.IterDataset:
    """The shuffled, mixed walk through a text corpus's train windows: element k is this process's
    rows of global batch k."""
    walk = text.TextWalk(corpus, c.data.batch_size, rows, c.optim.steps, c.data.shuffle_seed)
    return walk.stream(c.data.prefetch)


def text_eval_elements(
    c: ml_collections.ConfigDict, corpus: text.TextCorpus, rows: tuple[int, int]
) -> list[dict]:
    """This process's rows of the `eval.batches` held-out text batches, each with the scored
    targets and bytes of the whole global batch."""
    return text.eval_batches(corpus, c.data.batch_size, rows, c.eval.batches)
