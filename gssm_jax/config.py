"""The run configuration: one schema with debug-sized defaults, and its validation.

Config files under `configs/` start from `default_config()` and change fields; the returned ConfigDict
is locked, so a misspelled key in a file or on the command line is an error naming it.
"""

from __future__ import annotations

import importlib.util
import math
import os

import ml_collections

from gssm_jax.gssm.graph import parse_graph

# model.attention values; see gssm_jax.models.layers.resolve_attention
ATTENTION_CHOICES = ("auto", "blocked", "xla", "cudnn")
# model.init values; see gssm_jax.models.init
INIT_CHOICES = ("fan_in", "fixed")


def cudnn_supports(dtype: str, head_dim: int) -> bool:
    """Whether cuDNN flash attention takes this compute dtype and head dimension."""
    return dtype == "bfloat16" and head_dim % 8 == 0 and head_dim <= 128


class ConfigError(ValueError):
    """A config value that cannot work, named by its dotted key."""


def four_graph(alpha_x: float = 0.05, alpha_z: float = 0.05) -> dict:
    """Z1..Z4 (4 states each) -> X (32 tokens): the `four` graph of the benchmarks."""
    graph = {f"Z{i}": dict(state_dim=4, alpha=alpha_z) for i in range(1, 5)}
    graph["X"] = dict(state_dim=32, alpha=alpha_x, parents=["Z1", "Z2", "Z3", "Z4"], observed=True)
    return graph


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init and dropout-free training: only the init uses it

    c.data = ml_collections.ConfigDict()
    c.data.graph = four_graph()
    c.data.alpha_x = ml_collections.config_dict.placeholder(float)  # overrides X's alpha when set
    c.data.alpha_z = ml_collections.config_dict.placeholder(float)  # overrides every hidden alpha
    c.data.graph_seed = 0
    c.data.seed = 1  # training stream
    c.data.seq_len = 128
    c.data.batch_size = 32  # global, in sequences
    c.data.source = "stream"  # "stream" (generated on the fly) or "files"
    c.data.path = ""  # with source="files": a set written by gssm_jax.data.write (its train/ dir)
    c.data.test_path = ""  # with source="files": the eval set; empty: the `test` set beside `path`
    c.data.shuffle_seed = 0  # with source="files": seed of the per-epoch orders of the train set
    c.data.worker_threads = 2  # Grain read threads producing batches in the background
    c.data.prefetch = 4  # batches buffered ahead of the train step

    c.model = ml_collections.ConfigDict()
    c.model.emb_dim = 64
    c.model.nb_layers = 2
    c.model.nb_heads = 4
    c.model.hidden_dim = 256
    c.model.rope_theta = 10_000.0
    c.model.norm_eps = 1e-5
    c.model.weight_tying = False
    # weight init: fan_in (std fan_in^-0.5, cut at +-3 std: the earlier PyTorch system's) or fixed
    # (std init_std, residual output projections init_std / sqrt(2 nb_layers))
    c.model.init = "fan_in"
    c.model.init_std = 0.02  # used by init="fixed"
    c.model.dtype = "float32"  # compute dtype; parameters stay float32
    c.model.remat = False
    # attention kernel: auto (blocked on CPU, cudnn on GPU in bfloat16, else xla), blocked, xla, cudnn
    c.model.attention = "auto"

    c.optim = ml_collections.ConfigDict()
    c.optim.steps = 300
    c.optim.lr = 3e-3
    c.optim.schedule = "cosine"  # "cosine" (with warmup) or "constant"
    c.optim.warmup = 30
    c.optim.final_lr_frac = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.1
    c.optim.clip_norm = 1.0
    c.optim.accum_steps = 1  # micro-batches per step

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all devices not used by `model`
    c.mesh.model = 1
    c.mesh.rules = (
        ("batch", "data"),
        ("length", None),
        ("embed", None),
        ("heads", "model"),
        ("kv", None),
        ("mlp", "model"),
        ("vocab", None),
    )

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.period = 100
    c.checkpoint.keep = 3
    c.checkpoint.async_save = True

    c.eval = ml_collections.ConfigDict()
    c.eval.period = 100
    c.eval.seed = 1_000_003  # held-out stream
    c.eval.batches = 4

    c.log = ml_collections.ConfigDict()
    c.log.period = 10

    c.profile = ml_collections.ConfigDict()
    c.profile.start_step = -1  # -1: no trace
    c.profile.num_steps = 3
    c.profile.all_processes = False
    c.profile.memory_step = -1  # -1: no device memory profile

    c.runtime = ml_collections.ConfigDict()
    # glibc malloc keeps freed memory (faster XLA:CPU steps, RSS stays at its peak): auto = on
    # when JAX runs on the CPU; on; off. See gssm_jax/hostmem.py.
    c.runtime.keep_freed_memory = "auto"

    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = ""  # host:port; empty: auto-detect (Slurm) or single process
    c.distributed.num_processes = ml_collections.config_dict.placeholder(int)
    c.distributed.process_id = ml_collections.config_dict.placeholder(int)

    c.lock()
    return c


class MissingConfigFileError(ConfigError, FileNotFoundError):
    """A --config path that names no file."""


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of an ml_collections config file; `FILE:ARG` calls `get_config(ARG)`."""
    file, _, arg = str(path).partition(":")
    if not os.path.isfile(file):
        raise MissingConfigFileError(f"--config {path!r}: no such file")
    spec = importlib.util.spec_from_file_location("gssm_config_file", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config {path!r}: the file defines no get_config()")
    return module.get_config(arg) if arg else module.get_config()


def get_config() -> ml_collections.ConfigDict:
    """Lets this module double as the default config file of `python -m gssm_jax.main`."""
    return default_config()


def _require(ok: bool, key: str, value, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {msg}")


def _positive_int(c, key: str) -> None:
    value = c
    for part in key.split("."):
        value = value[part]
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        key,
        value,
        "must be a positive integer",
    )


def resolved_graph_spec(c: ml_collections.ConfigDict) -> dict:
    """The graph of `c.data` with `alpha_x` / `alpha_z` applied."""
    spec = c.data.graph.to_dict() if hasattr(c.data.graph, "to_dict") else dict(c.data.graph)
    spec = {name: dict(fields) for name, fields in spec.items()}
    for fields in spec.values():
        override = c.data.alpha_x if fields.get("observed", False) else c.data.alpha_z
        if override is not None:
            fields["alpha"] = override
    return spec


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError (or GraphError) naming the first bad field, before any work starts."""
    parse_graph(resolved_graph_spec(c))
    for key in (
        "data.seq_len",
        "data.batch_size",
        "model.emb_dim",
        "model.nb_layers",
        "model.nb_heads",
        "model.hidden_dim",
        "optim.steps",
        "optim.accum_steps",
        "checkpoint.period",
        "checkpoint.keep",
        "eval.period",
        "eval.batches",
        "log.period",
    ):
        _positive_int(c, key)
    _require(c.data.seq_len >= 2, "data.seq_len", c.data.seq_len, "must be >= 2")
    _require(
        c.data.source in ("stream", "files"),
        "data.source",
        c.data.source,
        "must be 'stream' or 'files'",
    )
    _require(
        c.data.source != "files" or bool(c.data.path),
        "data.path",
        c.data.path,
        "is required when data.source='files'",
    )
    _require(
        c.data.worker_threads >= 0, "data.worker_threads", c.data.worker_threads, "must be >= 0"
    )
    _require(c.data.prefetch >= 0, "data.prefetch", c.data.prefetch, "must be >= 0")
    _require(
        isinstance(c.data.shuffle_seed, int) and c.data.shuffle_seed >= 0,
        "data.shuffle_seed",
        c.data.shuffle_seed,
        "must be an integer >= 0",
    )
    _require(
        c.model.emb_dim % c.model.nb_heads == 0,
        "model.nb_heads",
        c.model.nb_heads,
        f"must divide model.emb_dim={c.model.emb_dim}",
    )
    _require(
        (c.model.emb_dim // c.model.nb_heads) % 2 == 0,
        "model.emb_dim",
        c.model.emb_dim,
        "head dimension emb_dim/nb_heads must be even for rotary embeddings",
    )
    _require(
        c.model.dtype in ("float32", "bfloat16"),
        "model.dtype",
        c.model.dtype,
        "must be 'float32' or 'bfloat16'",
    )
    _require(
        c.model.attention in ATTENTION_CHOICES,
        "model.attention",
        c.model.attention,
        f"must be one of {', '.join(ATTENTION_CHOICES)}",
    )
    if c.model.attention == "cudnn":
        _require(
            c.model.dtype == "bfloat16",
            "model.attention",
            c.model.attention,
            f"needs model.dtype='bfloat16' (cuDNN flash attention), got {c.model.dtype!r}",
        )
        head_dim = c.model.emb_dim // c.model.nb_heads
        _require(
            cudnn_supports(c.model.dtype, head_dim),
            "model.attention",
            c.model.attention,
            f"needs a head dimension (emb_dim/nb_heads) that is a multiple of 8 and <= 128, "
            f"got {head_dim}",
        )
    _require(
        c.model.init in INIT_CHOICES,
        "model.init",
        c.model.init,
        f"must be one of {', '.join(INIT_CHOICES)}",
    )
    _require(
        c.runtime.keep_freed_memory in ("auto", "on", "off"),
        "runtime.keep_freed_memory",
        c.runtime.keep_freed_memory,
        "must be 'auto', 'on' or 'off'",
    )
    for key in ("rope_theta", "norm_eps", "init_std"):
        v = c.model[key]
        _require(math.isfinite(v) and v > 0, f"model.{key}", v, "must be a finite number > 0")
    for key in ("lr", "eps"):
        v = c.optim[key]
        _require(math.isfinite(v) and v > 0, f"optim.{key}", v, "must be a finite number > 0")
    for key in ("b1", "b2"):
        v = c.optim[key]
        _require(0 <= v < 1, f"optim.{key}", v, "must be in [0, 1)")
    _require(c.optim.weight_decay >= 0, "optim.weight_decay", c.optim.weight_decay, "must be >= 0")
    _require(
        c.optim.clip_norm >= 0,
        "optim.clip_norm",
        c.optim.clip_norm,
        "must be >= 0 (0 disables clipping)",
    )
    _require(
        c.optim.schedule in ("cosine", "constant"),
        "optim.schedule",
        c.optim.schedule,
        "must be 'cosine' or 'constant'",
    )
    _require(
        0 <= c.optim.warmup <= c.optim.steps,
        "optim.warmup",
        c.optim.warmup,
        f"must be in [0, optim.steps={c.optim.steps}]",
    )
    _require(
        0 <= c.optim.final_lr_frac <= 1,
        "optim.final_lr_frac",
        c.optim.final_lr_frac,
        "must be in [0, 1]",
    )
    _require(
        c.data.batch_size % c.optim.accum_steps == 0,
        "optim.accum_steps",
        c.optim.accum_steps,
        f"must divide data.batch_size={c.data.batch_size}",
    )
    _require(c.mesh.data == -1 or c.mesh.data >= 1, "mesh.data", c.mesh.data, "must be -1 or >= 1")
    _require(c.mesh.model >= 1, "mesh.model", c.mesh.model, "must be >= 1")
    _require(c.profile.num_steps >= 1, "profile.num_steps", c.profile.num_steps, "must be >= 1")
