"""Kronecker surgery on a run (the library of `python -m gssm_jax.kron`).

Reads RUN's checkpoint (latest, or --step N), replaces every MLP matrix W of a dense-MLP run (any
family with a SwiGLU MLP: transformer, hawk, mingru, minlstm) by a sum of r Kronecker products (`gssm_jax.models.kronecker`: vanloan, prune or random) and writes
NEWRUN: a checkpoint at the same step with the factorised parameters, fresh optimizer moments and
RUN's data-loader state; RUN's metrics/train.jsonl up to that step (NEWRUN's own history; not RUN's
eval.jsonl, evals/, probe/, samples/ or TensorBoard files, which describe RUN's model); a config.json
with model.mlp='kronecker', model.kron_terms, model.kron_factor, optim.steps = N + --steps, plus any
--config.key=value overrides (e.g. --config.optim.freeze=pretrained). `python -m gssm_jax.main
--workdir NEWRUN` then continues training it. RUN is only read.

It prints, and writes to NEWRUN/kron.json, each matrix's relative reconstruction error, the
parameter counts before and after, and the held-out kl_gap (a text run: bits per byte) of both
models at that step. Errors a
user can cause exit 2 with one line naming the flag or key, before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

from gssm_jax import config as config_lib
from gssm_jax.models.family import BLOCK_PREFIX, block_name
from gssm_jax.runtime import cli

# What NEWRUN inherits from RUN: the history of its own parameters (RUN's training steps up to the
# surgery). Not RUN's eval.jsonl, evals/, probe/, samples/ or TensorBoard files: they describe RUN's
# model, and a report would take them for NEWRUN's (its best eval kl_gap, its kl_t curve).
INHERITED = (os.path.join("metrics", "train.jsonl"),)


class SurgeryError(ValueError):
    """A flag or source run the surgery cannot work with."""


def source_config(run: str):
    """RUN's saved config; SurgeryError unless RUN's family has a dense SwiGLU MLP."""
    path = os.path.join(run, "config.json")
    if not os.path.isfile(path):
        raise SurgeryError(f"--from {run!r}: no config.json, not a run directory")
    try:
        config = config_lib.config_from_json(path)
        cfg = config_lib.family_config(config.model, config_lib.vocab_size(config))
    except (OSError, ValueError) as e:
        raise SurgeryError(f"--from {run!r}: {path} does not load ({e})") from None
    if cfg.mlp_hidden_dim == 0:
        raise SurgeryError(
            f"--from {run!r}: model.family={cfg.family!r} has no SwiGLU MLP to factorise"
        )
    if cfg.mlp != "dense":
        raise SurgeryError(
            f"--from {run!r}: model.mlp={cfg.mlp!r}; only dense-MLP runs can be factorised"
        )
    return config


def new_config(source, init: str, terms: int, factor: str, steps: int | None, overrides):
    """RUN's config with the Kronecker MLP, optim.steps = the fine-tuning steps (the caller adds
    the checkpoint's step) and the overrides applied; validated."""
    if init not in ("vanloan", "prune", "random"):
        raise SurgeryError(f"--init {init!r}: must be vanloan, prune or random")
    if steps is not None and steps < 1:
        raise SurgeryError(f"--steps {steps}: must be >= 1")
    if any(key == "optim.steps" for key, _ in overrides):
        raise SurgeryError("--config.optim.steps: use --steps (the fine-tuning steps after --step)")
    config = config_lib.config_from_dict(json.loads(source.to_json_best_effort()))
    config.model.mlp = "kronecker"
    config.model.kron_terms = terms
    config.model.kron_factor = factor
    config.optim.steps = source.optim.steps if steps is None else steps
    for key, text in overrides:
        cli.apply_override(config, key, text)
    try:
        config_lib.validate(config)
    except config_lib.ConfigError as e:
        raise SurgeryError(
            str(e).replace("model.kron_terms=", "model.kron_terms (--terms)=")
        ) from None
    return config


def factorised_params(src_params: dict, config, init: str, seed: int) -> tuple[dict, list[dict]]:
    """(params of the Kronecker model, one row per matrix: block, matrix, shapes, error, counts)."""
    from gssm_jax.models import kronecker

    m = config_lib.family_config(config.model, config_lib.vocab_size(config))
    shapes = kronecker.mlp_shapes(m.emb_dim, m.mlp_hidden_dim, kronecker.mlp_b_shape(m.kron_factor))
    rng = np.random.default_rng(seed)
    std, out_std = m.init_std, m.init_std / np.sqrt(2 * m.nb_layers)
    params = {k: v for k, v in src_params.items()}
    rows = []
    for i in range(m.nb_layers):
        name = block_name(i)
        dense = src_params[name]["mlp"]
        gate_up, down = (
            np.asarray(dense["gate_up"], np.float64),
            np.asarray(dense["down"], np.float64),
        )
        factors = {}
        for matrix, W, key, s in (
            ("gate", gate_up[:, 0], "gate_up", std),
            ("up", gate_up[:, 1], "gate_up", std),
            ("down", down, "down", out_std),
        ):
            a_shape, b_shape = shapes[key]
            try:
                A, B = kronecker.factorise(W, a_shape, b_shape, m.kron_terms, init, rng, s)
            except kronecker.KronRankError as e:
                raise SurgeryError(f"--terms {m.kron_terms}: {name}/mlp/{matrix}: {e}") from None
            factors[matrix] = (A, B)
            rows.append(
                {
                    "matrix": f"{name}/mlp/{matrix}",
                    "shape": list(W.shape),
                    "factors": [list(a_shape), list(b_shape)],
                    "relative_error": kronecker.relative_error(W, A, B),
                    "params_dense": int(W.size),
                    "params_kron": kronecker.param_count(a_shape, b_shape, m.kron_terms),
                }
            )
        block = dict(src_params[name])
        block["mlp"] = {
            "gate_up_a": np.stack([factors["gate"][0], factors["up"][0]]).astype(np.float32),
            "gate_up_b": np.stack([factors["gate"][1], factors["up"][1]]).astype(np.float32),
            "down_a": factors["down"][0].astype(np.float32),
            "down_b": factors["down"][1].astype(np.float32),
        }
        params[name] = block
    return params, rows


def _count(tree) -> int:
    import jax

    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _heldout(runs: list, step: int) -> list[dict]:
    """Held-out loss, entropy and kl_gap of each run's checkpoint `step`, all on the first run's
    eval set (`gssm_jax.inference.evaluation`: the eval stream, or the test set of a files run)."""
    from gssm_jax.data import files
    from gssm_jax.inference import evaluation, nll

    c = runs[0].config
    if runs[0].is_text:  # loss and bits per byte on the run's held-out text
        from gssm_jax.inference.text_eval import compare_runs

        return compare_runs(runs, step, c.eval.batches)
    data = files.eval_set_path(c.data) if c.data.source == "files" else "stream"
    batches, _ = evaluation.held_out_batches(runs[0], data, c.eval.batches)
    h_list = [evaluation.exact_per_position(runs[0], tokens) for tokens in batches]
    out = []
    for r in runs:
        record = evaluation.evaluate_step(r, step, nll.make_nll_fn(r)[0], batches, h_list)
        out.append({k: record[k] for k in ("loss", "entropy", "kl_gap")})
    return out


def surgery(
    run: str, out: str, step: int | None, init: str, terms: int, factor: str, steps, seed, overrides
) -> dict:
    """Writes NEWRUN (see the module docstring); returns the report written to NEWRUN/kron.json."""
    if not run:
        raise SurgeryError("--from RUN is required")
    if not out:
        raise SurgeryError("--out NEWRUN is required")
    if os.path.exists(out) and os.listdir(out):
        raise SurgeryError(f"--out {out!r} exists and is not empty; name a new run directory")
    src_config = source_config(run)
    config = new_config(src_config, init, terms, factor, steps, overrides)
    ckpt_dir = os.path.join(run, "checkpoints")
    import jax
    import jax.numpy as jnp

    from gssm_jax.inference.rundir import for_this_host, open_run
    from gssm_jax.train import checkpoint, metrics
    from gssm_jax.train import state as train_state
    from gssm_jax.train.optim import make_optimizer

    source = open_run(run)  # read-only, on this host's devices
    available = source.steps
    if not available:
        raise SurgeryError(f"--from {run!r}: no checkpoint in {ckpt_dir}")
    step = max(available) if step is None else step
    if step not in available:
        raise SurgeryError(f"--step {step}: {run!r} has checkpoints at steps {available}")
    config.optim.steps += step

    new_local, mesh = for_this_host(config), source.mesh
    src_params = jax.tree.map(np.asarray, jax.device_get(source.restore_params(step)))

    params_np, rows = factorised_params(src_params, config, init, seed)
    model = train_state.model_from_config(new_local, config_lib.vocab_size(new_local))
    new_abstract, shardings = train_state.abstract_train_state(new_local, mesh, model)
    wanted = jax.tree.map(lambda s: tuple(s.shape), new_abstract.params)
    got = jax.tree.map(lambda a: tuple(a.shape), params_np)
    assert wanted == got, (wanted, got)  # programmer error: the module and the surgery disagree
    params = jax.device_put(jax.tree.map(jnp.asarray, params_np), shardings.params)
    state = train_state.TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        opt_state=make_optimizer(config.optim).init(params),
    )
    state = jax.device_put(state, shardings)

    os.makedirs(out, exist_ok=True)
    for name in INHERITED:
        src, dst = os.path.join(run, name), os.path.join(out, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
    metrics.truncate_after(out, step)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    new_manager = checkpoint.make_manager(
        os.path.join(out, "checkpoints"), config.checkpoint.keep, False
    )
    checkpoint.save(new_manager, step, state, None)
    new_manager.wait_until_finished()
    new_manager.close()
    # the data loader continues where RUN's stopped: its Grain state at `step`, as saved
    shutil.copytree(
        os.path.join(ckpt_dir, str(step), "data"),
        os.path.join(out, "checkpoints", str(step), "data"),
    )

    heldout = _heldout([source, open_run(out)], step)
    report = {
        "from": os.path.abspath(run),
        "step": step,
        "init": init,
        "terms": config.model.kron_terms,
        "factor": config.model.kron_factor or "balanced",
        "matrices": rows,
        "params": {
            "model_before": _count(src_params),
            "model_after": _count(params_np),
            "mlp_before": sum(r["params_dense"] for r in rows),
            "mlp_after": sum(r["params_kron"] for r in rows),
        },
        "metric": config_lib.headline_metric(config.data),
        "eval_before": heldout[0],
        "eval_after": heldout[1],
    }
    with open(os.path.join(out, "kron.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def run_params(run: str) -> tuple[Any, dict]:
    """(config, params as NumPy) of a run directory's latest checkpoint."""
    import jax

    from gssm_jax.inference.rundir import open_run

    source = open_run(run)
    params = source.restore_params(source.step_or_latest(None))
    return source.config, jax.tree.map(np.asarray, jax.device_get(params))


def distance_to_dense(dense_params: dict, kron_params: dict) -> list[float]:
    """||W - sum_k A_k kron B_k||_F / ||W||_F of every MLP matrix (gate, up, down per block)."""
    from gssm_jax.models import kronecker

    errors = []
    for name in sorted(k for k in dense_params if k.startswith(BLOCK_PREFIX)):
        gate_up, down = kronecker.dense_mlp_weights(kron_params[name]["mlp"])
        W = dense_params[name]["mlp"]
        for w, approx in ((W["gate_up"][:, 0], gate_up[:, 0]), (W["gate_up"][:, 1], gate_up[:, 1])):
            errors.append(float(np.linalg.norm(w - approx) / np.linalg.norm(w)))
        errors.append(float(np.linalg.norm(W["down"] - down) / np.linalg.norm(W["down"])))
    return errors


def print_report(report: dict, out: str) -> None:
    print(f"{'matrix':<18} {'W':>8} {'A':>8} {'B':>5} {'rel_error':>9}  params")
    for r in report["matrices"]:
        w, a, b = ("x".join(map(str, s)) for s in (r["shape"], *r["factors"]))
        print(
            f"{r['matrix']:<18} {w:>8} {a:>8} {b:>5} {r['relative_error']:>9.4f}  "
            f"{r['params_dense']} -> {r['params_kron']}"
        )
    p = report["params"]
    b, a = report["eval_before"], report["eval_after"]
    print(
        f"params: model {p['model_before']} -> {p['model_after']}, "
        f"MLP {p['mlp_before']} -> {p['mlp_after']}"
    )
    key = report.get("metric", "kl_gap")
    unit = {"kl_gap": "nats/token", "bits_per_byte": "bits/byte"}.get(key, "bits/token")
    print(
        f"held-out {key} at step {report['step']}: dense {b[key]:.4f} -> "
        f"{report['init']} r={report['terms']} {a[key]:.4f} {unit}"
    )
    print(f"wrote {out} (continue: python -m gssm_jax.main --workdir {out})")
