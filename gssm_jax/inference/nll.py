"""The pieces every evaluation shares: the jitted per-position loss of a run's model and the
atomic write of `RUN/evals/<step>.json` (used by `inference.evaluation`, `inference.text_eval` and
`train.surgery`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from gssm_jax.inference.rundir import CHECKPOINTS, RunDir
from gssm_jax.runtime import parallel

EVALS = "evals"


def make_nll_fn(run: RunDir) -> tuple[Callable, NamedSharding]:
    """(params, tokens_BxT) -> the model's next-token loss at positions 1..T-1, (B, T-1), jitted
    with the run's shardings; and the batch sharding."""
    apply = run.model.apply
    batch_sharding = NamedSharding(run.mesh, parallel.batch_spec(run.config))

    def nll(params, tokens_BxT):
        logits = apply(params, tokens_BxT[:, :-1]).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxT[:, 1:])

    jitted = jax.jit(
        nll, in_shardings=(run.param_shardings, batch_sharding), out_shardings=batch_sharding
    )
    return run.in_mesh(jitted), batch_sharding


def batch_losses(run: RunDir, nll_fn: Callable, params, local_BxT: np.ndarray) -> np.ndarray:
    """This process's rows of one global batch through `nll_fn` (`make_nll_fn`): the model's
    next-token loss, (local B, T-1) float64."""
    c = run.config
    sharding = NamedSharding(run.mesh, parallel.batch_spec(c))
    shape = (c.data.batch_size, c.data.seq_len)
    tokens = jax.make_array_from_process_local_data(sharding, local_BxT, shape)
    return np.asarray(jax.device_get(nll_fn(params, tokens)), np.float64)


def write_record(run: RunDir, measured: dict, data: str, batches: int) -> tuple[dict, str]:
    """RUN/evals/<step>.json (written to a temporary name and renamed): the step, its checkpoint,
    the data and number of batches it was measured on, then what was `measured`. Returns the
    record and its path."""
    step = measured["step"]
    record = {
        "step": step,
        "checkpoint": os.path.join(run.workdir, CHECKPOINTS, str(step)),
        "data": data,
        "batches": batches,
        **{k: v for k, v in measured.items() if k != "step"},
    }
    directory = os.path.join(run.workdir, EVALS)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{step}.json")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.write("\n")
    os.replace(tmp, path)
    return record, path


def curve_ends(name: str, curve_T: list[float]) -> str:
    """`NAME first k X, last k Y`: the mean of a per-position curve over its first and last
    eighth, as the evaluation lines print it."""
    values = np.asarray(curve_T)
    k = max(1, len(values) // 8)
    return f"{name} first {k} {values[:k].mean():.4f}, last {k} {values[-k:].mean():.4f}"
