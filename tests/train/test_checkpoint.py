"""Checkpoints written before TrainState.nonfinite existed restore, with the count at zero."""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp

from gssm_jax.config import default_config
from gssm_jax.runtime import parallel
from gssm_jax.train import checkpoint
from gssm_jax.train import state as train_state


def test_a_checkpoint_without_the_nonfinite_count_restores(tmp_path):
    c = default_config()
    c.model.emb_dim, c.model.nb_layers = 16, 1
    c.model.transformer.nb_heads, c.model.transformer.hidden_dim = 2, 32
    c.data.seq_len, c.data.batch_size = 16, 4
    mesh = parallel.make_mesh(c.mesh)
    model = train_state.model_from_config(c, 32)
    state, _ = train_state.create_train_state(c, mesh, model, jax.random.key(0))
    abstract, _ = train_state.abstract_train_state(c, mesh, model)
    old = {"step": state.step, "params": state.params, "opt_state": state.opt_state}  # as before
    manager = checkpoint.make_manager(str(tmp_path), keep=1, async_save=False)
    manager.save(7, args=ocp.args.Composite(state=ocp.args.StandardSave(old)), force=True)
    manager.wait_until_finished()
    restored = checkpoint.restore(manager, 7, abstract)
    assert int(restored.nonfinite) == 0 and int(restored.step) == int(state.step)
    assert restored.nonfinite.sharding.is_equivalent_to(abstract.nonfinite.sharding, 0)
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(restored) == jax.tree.structure(abstract)
    manager.close()


def test_only_asyncios_closed_loop_error_is_silenced(monkeypatch):
    """TensorStore reports asyncio's `Event loop is closed` after a failed Orbax save or read as
    an unraisable exception of one of its callbacks; that one error is dropped, others are not."""
    import asyncio
    import sys
    import time

    import tensorstore as ts

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    checkpoint.quiet_orbax_errors()
    loop = asyncio.new_event_loop()
    loop.close()
    for callback in (
        lambda _: loop.call_soon_threadsafe(print),  # raised by asyncio's check: dropped
        lambda _: exec("raise RuntimeError('Event loop is closed')"),  # not asyncio's: kept
    ):
        promise, future = ts.Promise.new()
        future.add_done_callback(callback)
        promise.set_result(1)
    time.sleep(0.1)
    assert seen == ["Event loop is closed"]
