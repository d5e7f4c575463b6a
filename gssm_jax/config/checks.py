"""`validate(config)`: every check of a run config, grouped by section, before any work starts.

Each failing check raises ConfigError (GraphError for the graph) naming the dotted key and its
value; the model's own fields are checked by its family's dataclass (`gssm_jax.models.configs`).
"""

from __future__ import annotations

import math
import os

import ml_collections

from gssm_jax.config.errors import ConfigError
from gssm_jax.config.resolve import (
    checked_family_config,
    graph_of,
    is_text,
    mesh_rules,
    resolved_data_path,
    vocab_size,
)


def _require(ok: bool, key: str, value, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {msg}")


def _choice(key: str, value, choices: tuple[str, ...]) -> None:
    listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
    _require(value in choices, key, value, f"must be {listed}")


def _positive_int(c: ml_collections.ConfigDict, key: str) -> None:
    value = c
    for part in key.split("."):
        value = value[part]
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    _require(ok, key, value, "must be a positive integer")


def check_data(c: ml_collections.ConfigDict) -> None:
    d = c.data
    for key in ("seq_len", "batch_size", "mc_draws"):
        _positive_int(c, f"data.{key}")
    _require(d.seq_len >= 2, "data.seq_len", d.seq_len, "must be >= 2")
    _choice("data.source", d.source, ("stream", "files", "text"))
    _require(
        d.source != "files" or bool(d.path),
        "data.path",
        d.path,
        "is required when data.source='files'",
    )
    resolved_data_path(c)
    _require(d.worker_threads >= 0, "data.worker_threads", d.worker_threads, "must be >= 0")
    _require(d.prefetch >= 0, "data.prefetch", d.prefetch, "must be >= 0")
    _require(
        isinstance(d.train_sequences, int) and d.train_sequences >= 0,
        "data.train_sequences",
        d.train_sequences,
        "must be an integer >= 0 (0: the whole train set)",
    )
    _require(
        d.source == "files" or d.train_sequences == 0,
        "data.train_sequences",
        d.train_sequences,
        "needs data.source='files' (a stream has no set to take sequences from)",
    )
    _require(
        isinstance(d.shuffle_seed, int) and 0 <= d.shuffle_seed < 2**32,
        "data.shuffle_seed",
        d.shuffle_seed,
        "must be an integer in [0, 2**32)",
    )
    if is_text(c):
        # imported here: gssm_jax.data.text_config imports this package's errors module
        from gssm_jax.data.text_config import check_text_config

        check_text_config(d)


def check_optim(c: ml_collections.ConfigDict) -> None:
    o = c.optim
    for key in ("steps", "accum_steps", "nonfinite_patience"):
        _positive_int(c, f"optim.{key}")
    _choice("optim.nonfinite", o.nonfinite, ("skip", "stop"))
    for key in ("lr", "eps"):
        v = o[key]
        _require(math.isfinite(v) and v > 0, f"optim.{key}", v, "must be a finite number > 0")
    for key in ("b1", "b2"):
        _require(0 <= o[key] < 1, f"optim.{key}", o[key], "must be in [0, 1)")
    _require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    _require(o.clip_norm >= 0, "optim.clip_norm", o.clip_norm, "must be >= 0 (0 disables clipping)")
    _choice("optim.schedule", o.schedule, ("cosine", "constant"))
    _require(
        0 <= o.warmup <= o.steps, "optim.warmup", o.warmup, f"must be in [0, optim.steps={o.steps}]"
    )
    _require(0 <= o.final_lr_frac <= 1, "optim.final_lr_frac", o.final_lr_frac, "must be in [0, 1]")
    _require(
        c.data.batch_size % o.accum_steps == 0,
        "optim.accum_steps",
        o.accum_steps,
        f"must divide data.batch_size={c.data.batch_size}",
    )
    check_kron_training(c)


def check_kron_training(c: ml_collections.ConfigDict) -> None:
    """optim.freeze, optim.kron_lr and optim.distill (the Kronecker factors themselves are checked
    by the model's dataclass)."""
    o = c.optim
    _choice("optim.freeze", o.freeze, ("none", "kron", "pretrained"))
    _require(
        o.freeze == "none" or c.model.mlp == "kronecker",
        "optim.freeze",
        o.freeze,
        "needs model.mlp='kronecker' (it freezes the Kronecker factors or the rest)",
    )
    _require(
        o.kron_lr is None or (math.isfinite(o.kron_lr) and o.kron_lr > 0),
        "optim.kron_lr",
        o.kron_lr,
        "must be a finite number > 0 (or unset: optim.lr)",
    )
    weight = o.distill.weight
    _require(math.isfinite(weight) and weight >= 0, "optim.distill.weight", weight, "must be >= 0")
    teacher = o.distill.teacher
    _require(
        not teacher or os.path.isfile(os.path.join(teacher, "config.json")),
        "optim.distill.teacher",
        teacher,
        "is not a run directory (no config.json in it)",
    )


def check_mesh(c: ml_collections.ConfigDict) -> None:
    m = c.mesh
    _require(m.data == -1 or m.data >= 1, "mesh.data", m.data, "must be -1 or >= 1")
    _require(m.model >= 1, "mesh.model", m.model, "must be >= 1")
    length_rule = dict(mesh_rules(m)).get("length")
    _require(
        length_rule is None,
        "mesh.rules",
        ("length", length_rule),
        "sequence sharding is not supported: map the logical axis 'length' to None",
    )


def check_loop(c: ml_collections.ConfigDict) -> None:
    """checkpoint, eval, log and profile: the loop's periods and counts, and log.wandb."""
    for key in (
        "checkpoint.period",
        "checkpoint.keep",
        "eval.period",
        "eval.batches",
        "log.period",
    ):
        _positive_int(c, key)
    _require(c.profile.num_steps >= 1, "profile.num_steps", c.profile.num_steps, "must be >= 1")
    w = c.log.wandb
    _choice("log.wandb.mode", w.mode, ("disabled", "offline", "online"))
    _require(
        w.mode == "disabled" or bool(w.project),
        "log.wandb.project",
        w.project,
        "must name a project when log.wandb.mode is not 'disabled'",
    )


def check_runtime(c: ml_collections.ConfigDict) -> None:
    r = c.runtime
    _choice("runtime.keep_freed_memory", r.keep_freed_memory, ("auto", "on", "off"))
    cpu = r.cpu_devices
    _require(cpu >= -1, "runtime.cpu_devices", cpu, "must be -1 (one per core), 0 or a count")
    _require(
        cpu <= 0 or c.data.batch_size % cpu == 0,
        "runtime.cpu_devices",
        cpu,
        f"must divide data.batch_size={c.data.batch_size}",
    )


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError (or GraphError) naming the first bad field, before any work starts."""
    if not is_text(c):  # a text run has no graph: its vocabulary is its tokenizer's
        graph_of(c)
    check_data(c)
    checked_family_config(c, vocab_size(c))
    check_optim(c)
    check_mesh(c)
    check_loop(c)
    check_runtime(c)
