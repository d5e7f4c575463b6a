"""A training walk read the way the trainer reads it: indices drawn in bursts in one background
thread, split back into global batches (shared by the files and text walks).

Grain's shuffle releases and retakes the GIL once per index. Drawn one batch at a time, each
release hands the GIL to the train loop's own Python and back; drawn a burst at a time (Grain's
batch of the walk, split by its rebatch), the draws run while the loop waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grain


def burst_stream(
    batched: Callable[[int], grain.MapDataset],
    global_batch: int,
    num_batches: int,
    read: Callable[[Any], dict],
    prefetch: int,
    burst_items: int,
) -> grain.IterDataset:
    """`read` of each global batch of the walk, in order: `batched(n)` is the walk's indices in
    groups of n, drawn whole batches at a time up to `burst_items` indices, `prefetch` batches
    ahead in one thread; the iterator's state (Grain's) resumes exactly."""
    per_burst = max(1, burst_items // global_batch)  # whole batches a burst
    bursts = batched(per_burst * global_batch)
    stream = bursts.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    stream = grain.experimental.RebatchIterDataset(stream, batch_size=global_batch)
    stream = grain.experimental.LimitIterDataset(stream, count=num_batches)
    return grain.experimental.ThreadPrefetchIterDataset(
        stream.map(read), prefetch_buffer_size=max(prefetch, 1)
    )
