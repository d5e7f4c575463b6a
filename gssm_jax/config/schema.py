"""The run config's schema: every section with its debug-sized defaults.

Config files under `configs/` start from `default_config()` and change fields; the returned
ConfigDict is locked, so a misspelled key in a file or on the command line is an error naming it.
The model section is derived from the families' dataclasses (`gssm_jax.models.configs`), so each
model default is written once, there: `model.<field>` for the fields every family shares
(`Shared`), `model.<family>.<field>` for a family's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from gssm_jax.models.configs import FAMILY_CONFIGS, Shared

DEFAULT_FAMILY = "transformer"
# Sections keyed by text source names: a `--config.KEY=VALUE` override may add a name to them.
NAMED_SOURCES = ("data.text.sources", "data.text.weights")
# Sections whose keys are the user's own (graph nodes, source names): a saved config replaces them.
FREE_FORM = ("data.graph", *NAMED_SOURCES)


def four_graph(alpha_x: float = 0.05, alpha_z: float = 0.05) -> dict:
    """Z1..Z4 (4 states each) -> X (32 tokens): the `four` graph of the benchmarks."""
    graph: dict[str, dict[str, Any]] = {
        f"Z{i}": dict(state_dim=4, alpha=alpha_z) for i in range(1, 5)
    }
    graph["X"] = dict(state_dim=32, alpha=alpha_x, parents=["Z1", "Z2", "Z3", "Z4"], observed=True)
    return graph


def shared_fields() -> dict:
    """The shared model fields and their defaults (`Shared`, without the vocabulary)."""
    return {f.name: f.default for f in dataclasses.fields(Shared) if f.name != "vocab_size"}


def family_fields(family: str) -> dict:
    """A family's own fields (those `Shared` lacks) and their defaults."""
    shared = {f.name for f in dataclasses.fields(Shared)}
    cls = FAMILY_CONFIGS[family]
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in shared}


def model_section() -> ml_collections.ConfigDict:
    """`model.family`, the shared fields, and one section per family, from the dataclasses."""
    m = ml_collections.ConfigDict()
    m.family = DEFAULT_FAMILY  # transformer, mamba, hawk, mingru or minlstm
    for name, value in shared_fields().items():
        m[name] = value
    for family in FAMILY_CONFIGS:
        m[family] = ml_collections.ConfigDict(family_fields(family))
    return m


def data_section() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.graph = four_graph()
    d.alpha_x = ml_collections.config_dict.placeholder(float)  # overrides X's alpha when set
    d.alpha_z = ml_collections.config_dict.placeholder(float)  # overrides every hidden alpha
    d.graph_seed = 0
    d.seed = 1  # training stream
    d.seq_len = 128
    d.batch_size = 32  # global, in sequences
    # "stream" (generated on the fly), "files" (a written set) or "text" (real text: docs/text.md)
    d.source = "stream"
    # with source="files": a set written by gssm_jax.write_data (its train/ dir); with
    # source="text": a text file, JSONL file or folder of them (or data.text.sources)
    d.path = ""
    d.test_path = ""  # with source="files": the eval set; empty: the `test` set beside `path`
    d.shuffle_seed = 0  # with source="files" or "text": seed of the train set's per-epoch orders
    d.train_sequences = 0  # with source="files": train on the set's first N sequences (0: all)
    # Grain threads sampling stream batches in the background (a files run reads in one thread:
    # its work holds the GIL, so more threads would only contend for it)
    d.worker_threads = 2
    d.prefetch = 4  # batches buffered ahead of the train step
    # Graphs with `context` nodes, stream: the Monte Carlo entropy baseline's kernel draws and their
    # seed, for train and eval alike (with source="files" the set's stored entropies are used).
    d.mc_draws = 64
    d.mc_seed = 0
    # with source="text": sources, weights, tokenizer, JSONL field, held-out fraction (data.text_config)
    from gssm_jax.data.text_config import TEXT_DEFAULTS  # it imports this package's errors

    d.text = ml_collections.ConfigDict(TEXT_DEFAULTS)
    return d


def optim_section() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.steps = 300
    o.lr = 3e-3
    o.schedule = "cosine"  # "cosine" (with warmup) or "constant"
    o.warmup = 30
    o.final_lr_frac = 0.1
    o.b1 = 0.9
    o.b2 = 0.95
    o.eps = 1e-8
    o.weight_decay = 0.1
    o.clip_norm = 1.0
    o.accum_steps = 1  # micro-batches per step
    # A step whose loss or gradient norm is not finite (train/step.py) is never applied; "skip" goes
    # on and stops the run after nonfinite_patience such steps in a row, "stop" at the first one
    # (exit code 65, docs/faults.md).
    o.nonfinite = "skip"
    o.nonfinite_patience = 10
    # Kronecker runs (train/optim.py): freeze "none", "kron" (train only the rest) or "pretrained"
    # (train only the Kronecker factors); kron_lr: the factors' peak learning rate (None: lr).
    o.freeze = "none"
    o.kron_lr = ml_collections.config_dict.placeholder(float)
    # Distillation (train/distill.py): loss += weight * KL(teacher || model) per next token; teacher
    # is a run directory (its latest checkpoint), "" for none.
    o.distill = ml_collections.ConfigDict()
    o.distill.teacher = ""
    o.distill.weight = 1.0
    return o


def mesh_section() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.data = -1  # -1: all devices not used by `model`
    m.model = 1
    m.rules = (
        ("batch", "data"),
        ("length", None),
        ("embed", None),
        ("heads", "model"),
        ("kv", None),
        ("mlp", "model"),
        ("vocab", None),
    )
    return m


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init and dropout-free training: only the init uses it
    c.data = data_section()
    c.model = model_section()
    c.optim = optim_section()
    c.mesh = mesh_section()

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
    # Weights & Biases (docs/dashboards.md; needs the `wandb` extra): mode disabled, offline
    # (DIR/wandb/ for `wandb sync`) or online; group "" = the launch.submit sweep's name.
    c.log.wandb = ml_collections.ConfigDict()
    c.log.wandb.mode = "disabled"
    c.log.wandb.project = "gssm_jax"
    c.log.wandb.entity = ""  # "": the logged-in user's default entity
    c.log.wandb.group = ""
    c.log.wandb.tags = ()
    c.log.wandb.system_stats = True  # wandb's CPU/GPU/memory sampling

    c.profile = ml_collections.ConfigDict()
    c.profile.start_step = -1  # -1: no trace
    c.profile.num_steps = 3
    c.profile.all_processes = False
    c.profile.memory_step = -1  # -1: no device memory profile

    c.runtime = ml_collections.ConfigDict()
    # glibc malloc keeps freed memory (faster XLA:CPU steps, RSS stays at its peak): auto = on
    # when JAX runs on the CPU; on; off. See gssm_jax/runtime/hostmem.py.
    c.runtime.keep_freed_memory = "auto"
    # XLA CPU devices, one per core for data parallelism across cores: 0 = XLA's default (one
    # device); N; -1 = one per core (the largest count dividing data.batch_size). Applied only
    # when JAX runs on the CPU and XLA_FLAGS does not set the count. See runtime/cpudevices.py.
    c.runtime.cpu_devices = 0

    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = ""  # host:port; empty: auto-detect (Slurm) or single process
    c.distributed.num_processes = ml_collections.config_dict.placeholder(int)
    c.distributed.process_id = ml_collections.config_dict.placeholder(int)

    c.lock()
    return c


def get_config() -> ml_collections.ConfigDict:
    """Lets this module double as the default config file of `python -m gssm_jax.main`."""
    return default_config()
