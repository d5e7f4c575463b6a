"""Grain pipeline over the on-the-fly GSSM stream.

Element k of the dataset is this process's rows of global batch k: sequences
`k * global_batch + rows` of the stream (graph seed, data seed). Which rows a process loads is read off
the batch sharding, so the global batch at a step is the same whatever the number of processes or
devices. Batches are sampled in Grain's background read threads (the jitted sampler releases the GIL)
and the iterator's state goes into every checkpoint (Grain's own checkpoint handler).
"""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np

from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, as_device_tables
from gssm_jax.gssm.sample import sample_tokens


def process_rows(sharding: jax.sharding.Sharding, global_shape: tuple[int, ...]) -> tuple[int, int]:
    """The contiguous range of global rows held by this process's devices under `sharding`."""
    starts, stops = [], []
    for index in sharding.addressable_devices_indices_map(global_shape).values():
        assert index is not None  # typed Optional by JAX; every addressable device has an index
        rows = index[0]
        starts.append(rows.start or 0)
        stops.append(global_shape[0] if rows.stop is None else rows.stop)
    lo, hi = min(starts), max(stops)
    covered: set[int] = set()
    for a, b in zip(starts, stops):
        covered.update(range(a, b))
    if len(covered) != hi - lo:
        raise ValueError(
            f"this process's devices hold non-contiguous batch rows {sorted(covered)}; "
            "use a mesh whose 'data' axis follows the process order"
        )
    return lo, hi


@dataclasses.dataclass(frozen=True)
class StreamSource:
    """Random-access view of a GSSM stream, one element per global batch (this process's rows)."""

    graph: Graph
    tables: Tables
    data_seed: int
    seq_len: int
    global_batch: int
    rows: tuple[int, int]
    num_batches: int

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        lo, hi = self.rows
        seq_idx_B = np.arange(lo, hi, dtype=np.int64) + int(k) * self.global_batch
        if seq_idx_B[-1] >= 2**32:
            raise ValueError(
                f"stream index {seq_idx_B[-1]} exceeds the 2**32 sequences of a stream"
            )
        tokens = sample_tokens(
            self.graph, self.tables, self.data_seed, seq_idx_B.astype(np.uint32), self.seq_len
        )
        return {"tokens": np.asarray(tokens)}


def cpu_tables(tables: Tables) -> Tables:
    """Kernel tables committed to the host CPU, so sampling never competes with the train step."""
    cpu = jax.local_devices(backend="cpu")[0]
    return jax.device_put(as_device_tables(tables), cpu)


def threaded(dataset: grain.MapDataset, worker_threads: int, prefetch: int) -> grain.IterDataset:
    """`dataset` (the stream's) read in `worker_threads` background threads, `prefetch` elements
    ahead (a files run reads through `files.TrainWalk.stream` instead)."""
    options = grain.ReadOptions(
        num_threads=max(worker_threads, 1), prefetch_buffer_size=max(prefetch, 1)
    )
    return dataset.to_iter_dataset(options)
