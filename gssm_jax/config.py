"""The run configuration: one schema with debug-sized defaults, and its validation.

Config files under `configs/` start from `default_config()` and change fields; the returned ConfigDict
is locked, so a misspelled key in a file or on the command line is an error naming it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import string
import traceback

import ml_collections

from gssm_jax.gssm.graph import Graph, parse_graph, with_alphas
from gssm_jax.models.configs import (  # noqa: F401 - ATTENTION_CHOICES, INIT_CHOICES, cudnn_supports re-exported
    ATTENTION_CHOICES,
    FAMILY_CONFIGS,
    INIT_CHOICES,
    KERNEL_CHOICES,
    FieldError,
    Shared,
    cudnn_supports,
)


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
    c.data.train_sequences = 0  # with source="files": train on the set's first N sequences (0: all)
    # Grain threads sampling stream batches in the background (a files run reads in one thread:
    # its work holds the GIL, so more threads would only contend for it)
    c.data.worker_threads = 2
    c.data.prefetch = 4  # batches buffered ahead of the train step
    # Graphs with `context` nodes, stream: the Monte Carlo entropy baseline's kernel draws and their
    # seed, for train and eval alike (with source="files" the set's stored entropies are used).
    c.data.mc_draws = 64
    c.data.mc_seed = 0

    c.model = ml_collections.ConfigDict()
    # transformer, or a recurrent family (mamba, hawk, mingru, minlstm) with its own section below;
    # the keys up to `attention` are shared, except nb_heads, hidden_dim, rope_theta, init and attention,
    # which are the transformer's (gssm_jax/models/configs.py has every family's fields)
    c.model.family = "transformer"
    c.model.emb_dim = 64
    c.model.nb_layers = 2
    c.model.nb_heads = 4
    c.model.hidden_dim = 256
    c.model.rope_theta = 10_000.0
    c.model.norm_eps = 1e-5
    c.model.weight_tying = False
    # the transformer's weight init: fan_in_zero_out (fan_in, with the two residual output
    # projections at zero), fan_in (std fan_in^-0.5, cut at +-3 std: the earlier PyTorch system's)
    # or fixed (std init_std, residual output projections init_std / sqrt(2 nb_layers)); the
    # recurrent families use fixed (gssm_jax/models/init.py)
    c.model.init = "fan_in_zero_out"
    c.model.init_std = 0.02  # used by init="fixed"
    c.model.dtype = "float32"  # compute dtype; parameters stay float32
    c.model.remat = False
    # attention kernel: auto (blocked on CPU, cudnn on GPU in bfloat16, else xla), blocked, xla, cudnn
    c.model.attention = "auto"
    # MLP matrices: "dense", or "kronecker": each a sum of kron_terms Kronecker products whose second
    # factor (of the D x F gate/up matrices; down uses its transpose) is kron_factor "m2xn2" ("":
    # balanced factorisations of D and F). See gssm_jax/models/kron.py and `python -m gssm_jax.kron`.
    c.model.mlp = "dense"
    c.model.kron_terms = 1
    c.model.kron_factor = ""
    # custom: hand-written backward passes (faster on XLA:CPU); autodiff: JAX differentiates plain
    # formulas (jax.jvp works); auto: custom on CPU, autodiff elsewhere
    c.model.kernels = "auto"
    # Each recurrent family's own fields (gssm_jax/models/configs.py); debug sizes within 20% of
    # the transformer's parameter count at the shared emb_dim and nb_layers.
    c.model.mamba = ml_collections.ConfigDict(
        dict(expand=4, state_dim=64, head_dim=32, conv_width=4, chunk_size=64)
    )
    c.model.hawk = ml_collections.ConfigDict(
        dict(expand=2, nb_heads=4, conv_width=4, hidden_dim=192)
    )
    c.model.mingru = ml_collections.ConfigDict(dict(expand=2, hidden_dim=192))
    c.model.minlstm = ml_collections.ConfigDict(dict(expand=2, hidden_dim=192))

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
    # Kronecker runs (train/optim.py): freeze "none", "kron" (train only the rest) or "pretrained"
    # (train only the Kronecker factors); kron_lr: the factors' peak learning rate (None: lr).
    c.optim.freeze = "none"
    c.optim.kron_lr = ml_collections.config_dict.placeholder(float)
    # Distillation (train/distill.py): loss += weight * KL(teacher || model) per next token; teacher
    # is a run directory (its latest checkpoint), "" for none.
    c.optim.distill = ml_collections.ConfigDict()
    c.optim.distill.teacher = ""
    c.optim.distill.weight = 1.0

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
    # XLA CPU devices, one per core for data parallelism across cores: 0 = XLA's default (one
    # device); N; -1 = one per core (the largest count dividing data.batch_size). Applied only
    # when JAX runs on the CPU and XLA_FLAGS does not set the count. See gssm_jax/cpudevices.py.
    c.runtime.cpu_devices = 0

    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = ""  # host:port; empty: auto-detect (Slurm) or single process
    c.distributed.num_processes = ml_collections.config_dict.placeholder(int)
    c.distributed.process_id = ml_collections.config_dict.placeholder(int)

    c.lock()
    return c


class MissingConfigFileError(ConfigError, FileNotFoundError):
    """A --config path that names no file."""


def _where(error: BaseException, file: str) -> str:
    """`FILE:LINE` of the deepest frame of `error` inside `file` (or just FILE)."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(file):
            line = frame.lineno
    if isinstance(error, SyntaxError) and error.lineno is not None:
        line = error.lineno
    return f"{file}:{line}" if line is not None else file


def _one_line(error: BaseException) -> str:
    """The error's message on one line, without ConfigDict's dump of every other field."""
    text = " ".join(str(error).replace("\\n", " ").strip("'\"").split())
    return re.sub(r" Other fields present: \"\{.*\}\"", "", text)


def load_python_function(path: str, function: str, what: str = "--config"):
    """Calls `function()` (`function(ARG)` for `FILE:ARG`) of the Python file at `path`.

    The one loader of config and grid files. Every failure is a one-line ConfigError naming the
    file (and its line, for an error raised in it): no such file, a syntax error, no `function`,
    or an exception in the file (e.g. a misspelled key of a locked config).
    """
    file, _, arg = str(path).partition(":")
    if not os.path.isfile(file):
        raise MissingConfigFileError(f"{what} {path!r}: no such file")
    try:
        spec = importlib.util.spec_from_file_location(f"gssm_{function}_file", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, function, None)):
            raise ConfigError(f"{what} {path!r}: the file defines no {function}()")
        return getattr(module, function)(arg) if arg else getattr(module, function)()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any error in a user's file is reported as one line
        raise ConfigError(f"{what} {_where(e, file)}: {type(e).__name__}: {_one_line(e)}") from e


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of an ml_collections config file; `FILE:ARG` calls `get_config(ARG)`."""
    return load_python_function(path, "get_config")


def _update_from(c: ml_collections.ConfigDict, saved: dict, prefix: str = "") -> None:
    for key, value in saved.items():
        if key not in c:
            raise ConfigError(f"saved config key {prefix}{key} is not in this version's schema")
        if isinstance(c[key], ml_collections.ConfigDict) and key != "graph":
            _update_from(c[key], value, f"{prefix}{key}.")
        elif key == "rules":
            c[key] = tuple(tuple(rule) for rule in value)
        else:
            c[key] = value


def config_from_json(path: str) -> ml_collections.ConfigDict:
    """The locked config a run saved as `config.json` (keys it lacks keep their defaults)."""
    import json

    with open(path) as f:
        return config_from_dict(json.load(f))


def config_from_dict(saved: dict) -> ml_collections.ConfigDict:
    """The locked config of a saved (JSON) dict; keys it lacks keep their defaults."""
    c = default_config()
    with c.unlocked():
        c.data.graph = ml_collections.ConfigDict(saved.get("data", {}).get("graph", c.data.graph))
    _update_from(c, saved)
    return c


def get_config() -> ml_collections.ConfigDict:
    """Lets this module double as the default config file of `python -m gssm_jax.main`."""
    return default_config()


def family_config(m: ml_collections.ConfigDict, vocab_size: int) -> Shared:
    """The model section `m` (config.model) as its family's dataclass: the fields of section
    model.<family> (when the family has one) over the shared model.* keys. Raises ConfigError for
    an unknown family."""
    family = m.get("family", "transformer")
    _require(
        family in FAMILY_CONFIGS,
        "model.family",
        family,
        f"must be one of {', '.join(FAMILY_CONFIGS)}",
    )
    cls = FAMILY_CONFIGS[family]
    section = m[family].to_dict() if family in m else {}
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in section:
            values[f.name] = section[f.name]
        elif f.name in m:
            values[f.name] = m[f.name]
    return cls(vocab_size=vocab_size, **values)


def family_key(m: ml_collections.ConfigDict, field: str) -> str:
    """The dotted config key a family field of model section `m` comes from."""
    if m.family in m and field in m[m.family]:
        return f"model.{m.family}.{field}"
    return f"model.{field}"


def checked_family_config(c: ml_collections.ConfigDict, vocab_size: int) -> Shared:
    """`family_config` after its checks; a failing one is a ConfigError naming the config key."""
    cfg = family_config(c.model, vocab_size)
    try:
        cfg.check()
    except FieldError as e:
        raise ConfigError(
            f"config {family_key(c.model, e.field)}={e.value!r}: {e.message}"
        ) from None
    return cfg


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
    return with_alphas(spec, c.data.alpha_x, c.data.alpha_z)


def graph_of(c: ml_collections.ConfigDict) -> Graph:
    """The parsed graph of a run config (GraphError naming the node and field if it is bad)."""
    return parse_graph(resolved_graph_spec(c))


def rules_of(c: ml_collections.ConfigDict) -> tuple:
    return tuple((str(k), v) for k, v in c.mesh.rules)


PATH_FIELDS = ("alpha_x", "alpha_z", "graph_seed")


def resolved_data_path(c: ml_collections.ConfigDict) -> str:
    """`data.path` with `{alpha_x}`, `{alpha_z}` (X's and the hidden nodes' alpha, `:g`) and
    `{graph_seed}` filled in: the names `gssm_jax.data.write` gives its sets, so a sweep over
    `data.alpha_x`, `data.alpha_z` and `data.graph_seed` reads each point's own set."""
    path = c.data.path
    fields = {name for _, name, _, _ in string.Formatter().parse(path) if name is not None}
    if not fields:
        return path
    unknown = sorted(fields - set(PATH_FIELDS))
    if unknown:
        named = ", ".join(f"{{{f}}}" for f in PATH_FIELDS)
        raise ConfigError(
            f"config data.path={path!r}: unknown field {{{unknown[0]}}}; it may name {named}"
        )
    spec = resolved_graph_spec(c)
    alpha_x = [f["alpha"] for f in spec.values() if f.get("observed", False)]
    alpha_z = sorted({f["alpha"] for f in spec.values() if not f.get("observed", False)})
    _require(
        "alpha_z" not in fields or len(alpha_z) == 1,
        "data.path",
        path,
        f"{{alpha_z}} needs one alpha for every hidden node, the graph has {alpha_z}",
    )
    values = {"alpha_x": f"{alpha_x[0]:g}", "alpha_z": f"{alpha_z[0]:g}"}
    return path.format(graph_seed=c.data.graph_seed, **values)


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError (or GraphError) naming the first bad field, before any work starts."""
    graph_of(c)
    for key in (
        "data.seq_len",
        "data.batch_size",
        "data.mc_draws",
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
    resolved_data_path(c)
    _require(
        c.data.worker_threads >= 0, "data.worker_threads", c.data.worker_threads, "must be >= 0"
    )
    _require(c.data.prefetch >= 0, "data.prefetch", c.data.prefetch, "must be >= 0")
    _require(
        isinstance(c.data.train_sequences, int) and c.data.train_sequences >= 0,
        "data.train_sequences",
        c.data.train_sequences,
        "must be an integer >= 0 (0: the whole train set)",
    )
    _require(
        c.data.source == "files" or c.data.train_sequences == 0,
        "data.train_sequences",
        c.data.train_sequences,
        "needs data.source='files' (a stream has no set to take sequences from)",
    )
    _require(
        isinstance(c.data.shuffle_seed, int) and 0 <= c.data.shuffle_seed < 2**32,
        "data.shuffle_seed",
        c.data.shuffle_seed,
        "must be an integer in [0, 2**32)",
    )
    checked_family_config(c, graph_of(c).vocab_size)
    length_rule = dict(rules_of(c)).get("length")
    _require(
        length_rule is None,
        "mesh.rules",
        ("length", length_rule),
        "sequence sharding is not supported: map the logical axis 'length' to None",
    )
    _require(
        c.runtime.keep_freed_memory in ("auto", "on", "off"),
        "runtime.keep_freed_memory",
        c.runtime.keep_freed_memory,
        "must be 'auto', 'on' or 'off'",
    )
    cpu = c.runtime.cpu_devices
    _require(cpu >= -1, "runtime.cpu_devices", cpu, "must be -1 (one per core), 0 or a count")
    _require(
        cpu <= 0 or c.data.batch_size % cpu == 0,
        "runtime.cpu_devices",
        cpu,
        f"must divide data.batch_size={c.data.batch_size}",
    )
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
    _validate_kron(c)
    _require(c.profile.num_steps >= 1, "profile.num_steps", c.profile.num_steps, "must be >= 1")


def _validate_kron(c: ml_collections.ConfigDict) -> None:
    """optim.freeze, optim.kron_lr and optim.distill (the Kronecker factors themselves are
    checked by the transformer's config, gssm_jax.models.configs)."""
    _require(
        c.optim.freeze in ("none", "kron", "pretrained"),
        "optim.freeze",
        c.optim.freeze,
        "must be 'none', 'kron' or 'pretrained'",
    )
    _require(
        c.optim.freeze == "none" or c.model.mlp == "kronecker",
        "optim.freeze",
        c.optim.freeze,
        "needs model.mlp='kronecker' (it freezes the Kronecker factors or the rest)",
    )
    kron_lr = c.optim.kron_lr
    _require(
        kron_lr is None or (math.isfinite(kron_lr) and kron_lr > 0),
        "optim.kron_lr",
        kron_lr,
        "must be a finite number > 0 (or unset: optim.lr)",
    )
    weight = c.optim.distill.weight
    _require(math.isfinite(weight) and weight >= 0, "optim.distill.weight", weight, "must be >= 0")
    teacher = c.optim.distill.teacher
    _require(
        not teacher or os.path.isfile(os.path.join(teacher, "config.json")),
        "optim.distill.teacher",
        teacher,
        "is not a run directory (no config.json in it)",
    )
