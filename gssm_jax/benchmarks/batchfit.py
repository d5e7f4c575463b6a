"""The largest global batch whose compiled train step fits a device-memory budget.

`step_bytes` compiles the train step for a batch (nothing runs, no state is allocated) and reads
XLA's own accounting of the per-device memory it needs: arguments (state and batch) plus outputs,
less the donated state they share, plus temporaries. `largest_fitting` searches the batch axis with
as few such compiles as it can: step memory is close to affine in the batch, so it aims at the
budget along the line through the two nearest probes, and bisects after any aim that did not
halve the bracket, so that a memory curve that is not a line still converges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def with_batch(c: Any, batch: int) -> Any:
    """A copy of config `c` with data.batch_size = batch."""
    c = c.copy_and_resolve_references()
    c.data.batch_size = batch
    return c


def step_bytes(
    c: Any, model: Any, mesh: Any, batch: int, abstract_state: Any, shardings: Any
) -> dict[str, int]:
    """Per-device bytes of the compiled train step of `c` at global batch `batch`."""
    import jax
    import numpy as np

    from gssm_jax.train import step as train_step

    c = with_batch(c, batch)
    step_fn: Any = train_step.make_train_step(c, model, mesh, shardings)  # in_mesh keeps .lower
    tokens = jax.ShapeDtypeStruct((batch, c.data.seq_len), np.int32)
    stats = step_fn.lower(abstract_state, tokens).compile().memory_analysis()
    parts = {
        "argument": stats.argument_size_in_bytes,
        "output": stats.output_size_in_bytes,
        "alias": stats.alias_size_in_bytes,
        "temp": stats.temp_size_in_bytes,
    }
    parts["total"] = parts["argument"] + parts["output"] - parts["alias"] + parts["temp"]
    return parts


def _floor_to(x: float, multiple: int) -> int:
    return int(x // multiple) * multiple


def _next_probe(
    seen: dict[int, int], lo: int, hi: int | None, limit: int, multiple: int, bisect: bool
) -> int:
    """The next batch to compile, strictly inside the bracket (lo fits, hi does not)."""
    if lo == 0:  # nothing fits yet: halve
        assert hi is not None  # the first probe did not fit
        return max(multiple, _floor_to(hi // 2, multiple))
    top = hi - multiple if hi is not None else 64 * lo
    middle = max(lo + multiple, _floor_to((lo + hi) // 2, multiple)) if hi is not None else 2 * lo
    others = [b for b in seen if b != lo]
    if (bisect and hi is not None) or not others:
        return min(top, middle)
    b2 = hi if hi is not None else min(others, key=lambda b: abs(b - lo))
    slope = (seen[b2] - seen[lo]) / (b2 - lo)
    if slope <= 0:
        return min(top, middle)
    guess = _floor_to(lo + (limit - seen[lo]) / slope, multiple)
    return min(top, max(lo + multiple, guess))


def largest_fitting(
    bytes_at: Callable[[int], int], limit: int, multiple: int = 1, start: int = 16
) -> tuple[int, dict[int, int]]:
    """(largest batch b, a multiple of `multiple`, with bytes_at(b) <= limit; every probe's bytes).

    Assumes bytes_at grows with the batch. Returns 0 when even `multiple` does not fit.
    """
    if multiple < 1 or limit <= 0:
        raise ValueError(f"multiple must be >= 1 and limit > 0, got {multiple} and {limit}")
    seen: dict[int, int] = {}
    lo, hi = 0, None
    batch = max(multiple, _floor_to(start, multiple))
    width = None
    for _ in range(200):
        if batch not in seen:
            seen[batch] = bytes_at(batch)
        if seen[batch] <= limit:
            lo = batch
        else:
            hi = batch
        if hi is not None and hi - lo <= multiple:
            return lo, seen
        # Aim along the line unless the last aim failed to halve the bracket (a curved memory
        # profile); then bisect once.
        new_width = None if hi is None else hi - lo
        bisect = width is not None and new_width is not None and new_width > width // 2
        batch = _next_probe(seen, lo, hi, limit, multiple, bisect)
        width = None if bisect else new_width
    raise RuntimeError(f"no convergence after 200 probes: {sorted(seen.items())}")
