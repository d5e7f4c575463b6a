"""Writes the train and test sets of a dataset grid (the library of `python -m gssm_jax.write_data`).

Format: ArrayRecord, one record per sequence, written with `group_size:1`. It is the format
`grain.sources.ArrayRecordDataSource` reads natively with O(1) random access to any record, which is
what per-epoch shuffling and resuming mid-epoch need (a record index is all the state there is);
batched reads (`__getitems__`) run in C++ without the GIL, so reading keeps far ahead of training.
Records are `seq_len` tokens in the smallest unsigned type that holds the vocabulary.

Which sequences: the train set of a grid entry is sequences [0, n_train) of the stream
(graph seed, data seed); the test set is sequences [2**31, 2**31 + n_test) of the same stream. They
share kernels and never share a sequence, train sets of different sizes are prefixes of each other
(for dataset-size sweeps) and the test set does not depend on n_train.

Array jobs: `--task-id I --task-count N` (or SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT) writes
every N-th grid entry. Re-running is safe: finished sets (a `DONE` marker inside their final
directory) are checked against the config and skipped; a set is assembled in a temporary directory,
fsynced and renamed into place, so an interrupted writer leaves only a temporary directory that the
next run deletes. Do not run two writers on the same task at once.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sys
import time
from typing import Any, TextIO

import jax
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from gssm_jax.data import layout
from gssm_jax.data import set_grid as grid_lib
from gssm_jax.gssm.entropy import sequence_entropy
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, as_device_tables, draw_kernels, kernels_hash
from gssm_jax.gssm.sample import sample_tokens

PROGRESS_EVERY_S = 5.0


class WriteError(ValueError):
    """A root that holds something other than what the grid config asks for."""


class Progress:
    """Prints sequences written / total and the rate, at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int, seq_len: int, prefix: str, stream: TextIO | None = None) -> None:
        self.total, self.seq_len, self.prefix = total, seq_len, prefix
        self.stream = stream or sys.stdout
        self.done = 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int, label: str, set_done: int, set_total: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < PROGRESS_EVERY_S and set_done < set_total:
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / max(rate, 1e-9)
        print(
            f"{self.prefix} {label}: {set_done:,}/{set_total:,} sequences | task "
            f"{self.done:,}/{self.total:,} | {rate:,.0f} seq/s, {rate * self.seq_len / 1e6:.2f}M "
            f"tok/s | eta {eta:.0f}s",
            file=self.stream,
            flush=True,
        )


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def set_request(
    graph: Graph,
    tables: Tables,
    graph_seed: int,
    data_seed: int,
    first_index: int,
    num_sequences: int,
    seq_len: int,
) -> dict[str, Any]:
    """The metadata fields that identify a set; a finished set must agree on all of them."""
    return {
        "format": layout.FORMAT,
        "graph": graph.to_dict(),
        "graph_seed": graph_seed,
        "data_seed": data_seed,
        "first_index": first_index,
        "num_sequences": num_sequences,
        "seq_len": seq_len,
        "vocab_size": graph.vocab_size,
        "token_dtype": layout.token_dtype(graph.vocab_size).name,
        "kernels_hash": kernels_hash(tables),
    }


def _check_finished(set_dir: str, request: dict[str, Any]) -> None:
    meta = layout.read_json(os.path.join(set_dir, layout.METADATA))
    for field, want in request.items():
        if meta.get(field) != want:
            raise WriteError(
                f"{set_dir} holds a finished set with {field}={meta.get(field)!r} but the grid "
                f"config asks for {want!r}: delete it or write to another root"
            )


def _sample_batch(
    graph: Graph,
    tables_dev: Tables,
    data_seed: int,
    seq_idx_B: np.ndarray,
    seq_len: int,
    mc_draws: int,
) -> tuple[jax.Array, Any]:
    tokens_BxT = sample_tokens(graph, tables_dev, data_seed, seq_idx_B, seq_len)
    # One set of Monte Carlo kernel draws per set (mc_seed is static: one compilation), so a
    # sequence's estimate does not depend on the batch it was written in.
    entropy = sequence_entropy(graph, tables_dev, tokens_BxT, mc_draws=mc_draws, mc_seed=data_seed)
    return tokens_BxT, entropy


def _write_records(
    tmp: str,
    graph: Graph,
    tables: Tables,
    request: dict[str, Any],
    batch_size: int,
    mc_draws: int,
    progress: Progress,
    label: str,
) -> dict:
    """Samples the set in batches into `tmp`; returns the metadata written beside it."""
    n, seq_len = request["num_sequences"], request["seq_len"]
    dtype = layout.token_dtype(graph.vocab_size)
    tables_dev = as_device_tables(tables)
    fields = {layout.ENTROPY: "per_sequence"}  # file -> EntropyResult field, one value a sequence
    if graph.has_context:
        fields[layout.ENTROPY_STDERR] = "stderr"
    stored = {name: np.empty((n,), np.float64) for name in fields}
    starts = list(range(0, n, batch_size))

    def launch(start: int):
        pos_B = np.minimum(start + np.arange(batch_size), n - 1)  # pad the last batch: one shape
        seq_idx_B = (request["first_index"] + pos_B).astype(np.uint32)
        return _sample_batch(graph, tables_dev, request["data_seed"], seq_idx_B, seq_len, mc_draws)

    t0 = time.perf_counter()
    tokens_path = os.path.join(tmp, layout.TOKENS)
    writer = ArrayRecordWriter(tokens_path, layout.WRITER_OPTIONS)
    pending = launch(starts[0])
    for i, start in enumerate(starts):
        tokens_BxT, entropy = pending
        if i + 1 < len(starts):
            pending = launch(starts[i + 1])  # dispatched before this batch is written
        m = min(batch_size, n - start)
        rows = np.asarray(tokens_BxT)[:m].astype(dtype)
        for row in rows:
            writer.write(row.tobytes())
        for name, field in fields.items():
            stored[name][start : start + m] = np.asarray(getattr(entropy, field), np.float64)[:m]
        progress.update(m, label, start + m, n)
    if not writer.ok():
        raise OSError(f"ArrayRecord writer failed on {tokens_path}")
    writer.close()
    _fsync_file(tokens_path)
    for name, values in stored.items():
        np.save(os.path.join(tmp, name), values)
        _fsync_file(os.path.join(tmp, name))
    entropy_N = stored[layout.ENTROPY]
    seconds = time.perf_counter() - t0
    return {
        **request,
        "entropy": {
            "mean": float(entropy_N.mean()),
            "stderr": float(entropy_N.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            "method": "monte_carlo" if graph.has_context else "exact",
            "mc_draws": int(mc_draws) if graph.has_context else None,
            "units": "nats/token over positions 1..seq_len-1",
            "per_sequence": layout.ENTROPY,
            "per_sequence_mc_stderr": layout.ENTROPY_STDERR if graph.has_context else None,
        },
        "files": {
            layout.TOKENS: {
                "bytes": os.path.getsize(tokens_path),
                "records": n,
                "writer_options": layout.WRITER_OPTIONS,
            },
            **{name: {"bytes": os.path.getsize(os.path.join(tmp, name))} for name in stored},
        },
        "writer": {
            "host": socket.gethostname(),
            "seconds": round(seconds, 3),
            "sequences_per_s": round(n / max(seconds, 1e-9), 1),
            "batch_size": batch_size,
            "jax_backend": jax.default_backend(),
        },
    }


def write_set(
    set_dir: str,
    request: dict[str, Any],
    graph: Graph,
    tables: Tables,
    *,
    batch_size: int,
    mc_draws: int,
    progress: Progress,
    label: str,
) -> bool:
    """Writes one set to `set_dir` unless it is already finished; returns whether it wrote."""
    if layout.is_finished(set_dir):
        _check_finished(set_dir, request)
        progress.update(
            request["num_sequences"],
            f"{label} (finished, skipped)",
            request["num_sequences"],
            request["num_sequences"],
        )
        return False
    parent, name = os.path.split(os.path.abspath(set_dir))
    os.makedirs(parent, exist_ok=True)
    for stale in glob.glob(os.path.join(parent, f".{name}.tmp-*")):
        print(f"removing the unfinished set left by an interrupted writer: {stale}", flush=True)
        shutil.rmtree(stale)
    if os.path.exists(set_dir):
        print(f"removing unfinished set (no {layout.DONE} marker): {set_dir}", flush=True)
        shutil.rmtree(set_dir)
    tmp = os.path.join(parent, f".{name}.tmp-{socket.gethostname()}-{os.getpid()}")
    os.makedirs(tmp)
    metadata = _write_records(tmp, graph, tables, request, batch_size, mc_draws, progress, label)
    layout.write_json_atomic(os.path.join(tmp, layout.METADATA), metadata)
    with open(os.path.join(tmp, layout.DONE), "w") as f:
        f.write("complete\n")
        f.flush()
        os.fsync(f.fileno())
    layout.fsync_dir(tmp)
    os.rename(tmp, set_dir)
    layout.fsync_dir(parent)
    return True


def write_index(root: str, grid_entries: list[grid_lib.GridEntry], config: dict) -> None:
    """Adds the grid's entries to ROOT/index.json (entries of earlier grids are kept)."""
    path = os.path.join(root, layout.INDEX)
    sets: dict[str, Any] = {}
    if os.path.isfile(path):
        sets = layout.read_json(path).get("sets", {})
    for e in grid_entries:
        record = e.index_record()
        old = sets.get(e.grid_id)
        if old is not None and {k: old.get(k) for k in record} != record:
            raise WriteError(
                f"{path}: grid id {e.grid_id!r} already names a different graph or "
                "seed there; write this grid to another root"
            )
        sets[e.grid_id] = record
    layout.write_json_atomic(path, {"format": layout.FORMAT, "config": config, "sets": sets})


def split_ranges(c: Any) -> dict[str, tuple[int, int]]:
    """(first stream index, number of sequences) of each split."""
    return {"train": (0, c.n_train), "test": (grid_lib.TEST_OFFSET, c.n_test)}


def write_grid(c: Any, task_id: int = 0, task_count: int = 1) -> dict[str, int]:
    """Writes this task's share of the grid; returns counts of sets written and skipped."""
    all_entries = grid_lib.entries(c)
    mine = grid_lib.task_entries(all_entries, task_id, task_count)
    root = os.path.abspath(c.root)
    os.makedirs(root, exist_ok=True)
    write_index(root, all_entries, grid_lib.plain(c))
    total = len(mine) * (c.n_train + c.n_test)
    progress = Progress(total, c.seq_len, f"[task {task_id}/{task_count}]")
    print(
        f"[task {task_id}/{task_count}] {len(mine)} of {len(all_entries)} grid entries, "
        f"{total:,} sequences of {c.seq_len} tokens -> {root}",
        flush=True,
    )
    counts = {"written": 0, "skipped": 0}
    for e in mine:
        tables = draw_kernels(e.graph, e.graph_seed)
        for split, (first, n) in split_ranges(c).items():
            request = set_request(e.graph, tables, e.graph_seed, e.data_seed, first, n, c.seq_len)
            request["grid_id"], request["split"] = e.grid_id, split
            wrote = write_set(
                os.path.join(root, e.grid_id, split),
                request,
                e.graph,
                tables,
                batch_size=c.batch_size,
                mc_draws=c.mc_draws,
                progress=progress,
                label=f"{e.grid_id}/{split}",
            )
            counts["written" if wrote else "skipped"] += 1
    seconds = time.perf_counter() - progress.t0
    print(
        f"[task {task_id}/{task_count}] done: {counts['written']} sets written, "
        f"{counts['skipped']} finished sets skipped, {seconds:.1f}s",
        flush=True,
    )
    return counts


def _from_env(flag: int | None, var: str, default: int) -> int:
    if flag is not None:
        return flag
    value = os.environ.get(var)
    return default if value in (None, "") else int(value)


def array_task(task_id: int | None, task_count: int | None) -> tuple[int, int]:
    """(task id, task count): the flags where given, else Slurm's array variables (the id
    counted from SLURM_ARRAY_TASK_MIN), else one task."""
    slurm_min = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
    tid = _from_env(task_id, "SLURM_ARRAY_TASK_ID", 0)
    if task_id is None and "SLURM_ARRAY_TASK_ID" in os.environ:
        tid -= slurm_min
    return tid, _from_env(task_count, "SLURM_ARRAY_TASK_COUNT", 1)
