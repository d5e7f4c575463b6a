"""What every training benchmark shares: its config, its batches, and a model's jitted train step
timed step by step (`Timed`; `TorchTimed` for the PyTorch reference), started at a batch that may
run out of memory (`start_model`)."""

from __future__ import annotations

import gc
import resource
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gssm_jax.benchmarks import torch_ref
from gssm_jax.benchmarks.batchfit import with_batch
from gssm_jax.config import family_config, graph_of, vocab_size
from gssm_jax.runtime import cli

if TYPE_CHECKING:  # JAX is imported lazily: `keep_freed_memory` must run before it starts
    from collections.abc import Callable

    import ml_collections
    from jax.sharding import Mesh

    from gssm_jax.models.configs import TransformerConfig
    from gssm_jax.models.registry import Model

TORCH_THREADS = 2  # the earlier system's CPU runs; this project's CPU machines have 2 cores

PRESETS = {
    "cpu": dict(
        batch=16, seq_len=256, layers=4, heads=4, emb_dim=64, hidden_dim=256, dtype="float32"
    ),
    "seeds004": dict(
        batch=16, seq_len=2048, layers=12, heads=12, emb_dim=288, hidden_dim=1152, dtype="bfloat16"
    ),
}


def bench_config(
    shape: dict, attention: str = "auto", overrides: Sequence[tuple[str, str]] = ()
) -> ml_collections.ConfigDict:
    """The default config with the benchmark's shape (a PRESETS entry with overrides), then the
    command line's `--config.KEY=VALUE` overrides."""
    from gssm_jax.config import default_config, validate

    c = default_config()
    c.data.batch_size, c.data.seq_len = shape["batch"], shape["seq_len"]
    m, t = c.model, c.model.transformer
    m.emb_dim, m.nb_layers, t.nb_heads = shape["emb_dim"], shape["layers"], shape["heads"]
    t.hidden_dim, m.dtype, t.attention = shape["hidden_dim"], shape["dtype"], attention
    c.optim.steps = 10_000
    c.runtime.cpu_devices = -1  # on CPU, one XLA device per core (gssm_jax.runtime.cpudevices)
    for key, text in overrides:
        cli.apply_override(c, key, text)
    validate(c)
    return c


def transformer_config(c: ml_collections.ConfigDict, vocab: int) -> TransformerConfig:
    """The transformer's dataclass of config `c`: what the PyTorch reference and `bench train`'s
    plain model are written for (ConfigError for another family)."""
    from gssm_jax.config import ConfigError
    from gssm_jax.models.configs import TransformerConfig

    m = family_config(c.model, vocab)
    if not isinstance(m, TransformerConfig):
        raise ConfigError(
            f"config model.family={c.model.family!r}: this benchmark times a transformer"
        )
    return m


def random_tokens(c: ml_collections.ConfigDict, count: int, vocab: int) -> list:
    """`count` global batches of uniformly random tokens (NumPy, nothing to compile)."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (c.data.batch_size, c.data.seq_len)
    return [rng.integers(0, vocab, shape).astype(np.int32) for _ in range(count)]


def real_tokens(c: ml_collections.ConfigDict, count: int) -> list:
    """`count` global batches of the config's graph stream (seed 0)."""
    import numpy as np

    from gssm_jax.gssm import kernels, sample

    graph = graph_of(c)
    tables = kernels.as_device_tables(kernels.draw_kernels(graph, c.data.graph_seed))
    B, T = c.data.batch_size, c.data.seq_len
    return [
        sample.sample_tokens(graph, tables, 0, np.arange(k * B, (k + 1) * B), T)
        for k in range(count)
    ]


class Timed:
    """One model's jitted train step with its state, and the times of its timed steps."""

    step_fn: Callable[..., Any]  # (state, tokens) -> (state, metrics); TorchTimed's: tokens -> loss
    peak_bytes: int | None  # set by start_model after the warm-up
    config: ml_collections.ConfigDict  # the config it ran at, set by start_model

    def __init__(
        self,
        name: str,
        model: Model | None,
        c: ml_collections.ConfigDict,
        mesh: Mesh,
        batches: list,
    ) -> None:
        import jax
        from jax.sharding import NamedSharding

        from gssm_jax.runtime import parallel
        from gssm_jax.train import state as train_state
        from gssm_jax.train import step as train_step

        assert model is not None  # None only for TorchTimed, which builds its own
        self.model = model
        sharding = NamedSharding(mesh, parallel.batch_spec(c))
        batches = [jax.device_put(b, sharding) for b in batches]
        self.state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(0))
        self.step_fn = train_step.make_train_step(c, model, mesh, shardings)
        self._first_step(name, batches)

    def _first_step(self, name: str, batches: list) -> None:
        """Runs (and so compiles) the first step, timed as compile_s; no timed steps yet."""
        self.name, self.batches, self.k = name, batches, 0
        t0 = time.perf_counter()
        self.run_step()
        self.compile_s = time.perf_counter() - t0
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.faults: list[int] = []
        self.losses: list[float] = []

    def _step(self, batch) -> Any:
        """One train step, waited for; its loss (read after the timing)."""
        import jax

        self.state, metrics = self.step_fn(self.state, batch)
        return jax.block_until_ready(metrics)["loss"]

    def run_step(self) -> tuple[float, float, int]:
        t0, c0 = time.perf_counter(), time.process_time()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        loss = self._step(self.batches[self.k % len(self.batches)])
        times = (
            time.perf_counter() - t0,
            time.process_time() - c0,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
        )
        self.k += 1
        self.last_loss = float(loss)
        return times

    def timed_steps(self, n: int) -> None:
        for _ in range(n):
            wall, cpu, faults = self.run_step()
            self.wall.append(wall)
            self.cpu.append(cpu)
            self.faults.append(faults)
            self.losses.append(self.last_loss)


class TorchTimed(Timed):
    """The PyTorch eager reference's train step (`torch_ref.TrainStep`), timed like `Timed`."""

    def __init__(
        self,
        name: str,
        model: Model | None,
        c: ml_collections.ConfigDict,
        mesh: Mesh,
        batches: list,
    ) -> None:
        o, vocab = c.optim, vocab_size(c)
        m = transformer_config(c, vocab)
        shape = torch_ref.TorchShape(
            vocab, m.emb_dim, m.nb_layers, m.nb_heads, m.hidden_dim, m.rope_theta, m.norm_eps
        )
        self.step_fn = torch_ref.TrainStep(
            torch_ref.build(shape, threads=TORCH_THREADS), o.lr, o.b1, o.b2, o.eps, 0.0, o.clip_norm
        )
        self._first_step(name, batches)

    def _step(self, batch) -> float:
        return self.step_fn(batch)


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def is_out_of_memory(error: BaseException) -> bool:
    return "RESOURCE_EXHAUSTED" in str(error) or "Out of memory" in str(error)


def start_model(
    name: str,
    build: Callable[[ml_collections.ConfigDict], Model | None],  # None: TorchTimed builds it
    c: ml_collections.ConfigDict,
    mesh: Mesh,
    tokens: str,
    warmup: int,
    step_down: int,
    tries: int = 4,
) -> Timed | dict:
    """The compiled, warmed-up model at c's batch, or {batch, error} when it runs out of memory.

    With step_down > 0 (a searched batch: XLA's estimate can miss the allocator's fragmentation)
    an out-of-memory start is retried that many sequences smaller, up to `tries` times.
    """
    from gssm_jax.train import profile

    vocab = vocab_size(c)
    attempt = 1
    while True:
        try:
            batches = real_tokens(c, 4) if tokens == "real" else random_tokens(c, 4, vocab)
            timed_class = TorchTimed if name == "torch" else Timed
            t = timed_class(name, build(c), c, mesh, batches)
            for _ in range(warmup):
                t.run_step()
            t.peak_bytes = profile.peak_device_bytes()  # before the next model allocates
            t.config = c
            return t
        except Exception as e:  # noqa: BLE001 - XLA reports out-of-memory as a runtime error
            if not is_out_of_memory(e):
                raise
        error = f"out of memory at batch {c.data.batch_size}"
        print(f"{name}: {error}", file=sys.stderr, flush=True)
        gc.collect()
        smaller = c.data.batch_size - step_down
        if step_down <= 0 or smaller <= 0 or attempt == tries:
            return {"batch": c.data.batch_size, "error": error}
        c, attempt = with_batch(c, smaller), attempt + 1
