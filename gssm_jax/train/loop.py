"""The training loop: the only stateful code; it ties data, model, baseline, metrics and checkpoints.

Each logged step reports the batch's loss next to the exact entropy of the same tokens
(`kl_gap = loss - entropy`). SIGTERM, SIGUSR1 and SIGINT finish the current step, save a checkpoint
and return EXIT_PREEMPTED, so a job scheduler can requeue the run and resume it exactly; a signal
during start-up returns EXIT_PREEMPTED before the first step (see `gssm_jax.train.stopping`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gssm_jax import checkpoint, parallel, profile
from gssm_jax.config import ConfigError, graph_of, resolved_data_path, validate
from gssm_jax.data import files
from gssm_jax.data.stream import StreamSource, cpu_tables, process_rows, threaded
from gssm_jax.exitcodes import EXIT_OK, EXIT_PREEMPTED
from gssm_jax.gssm.entropy import make_entropy_fn
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
from gssm_jax.metrics import MetricsWriter, console_line, truncate_after
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step_lib
from gssm_jax.train import workdir as workdir_lib
from gssm_jax.train.stopping import StopFlag
from gssm_jax.train.window import StepWindow


def log_environment(workdir: str) -> None:
    kinds = sorted({d.device_kind for d in jax.devices()})
    print(
        f"host={socket.gethostname()} process_index={jax.process_index()} "
        f"process_count={jax.process_count()} devices={jax.device_count()} "
        f"local_devices={jax.local_device_count()} device_kinds={kinds} workdir={workdir}",
        flush=True,
    )


def baseline(h_B: Any, se_B: Any) -> dict[str, float]:
    """A batch's entropy (the mean of its sequences') and, where Monte Carlo is used (`se_B` not
    None), the mean of its sequences' standard errors: an upper bound on the mean's, as they share
    their kernel draws."""
    out = {"entropy": float(h_B.mean())}
    if se_B is not None:
        out["entropy_stderr"] = float(se_B.mean())
    return out


def stored(element: dict) -> dict[str, float]:
    """`baseline` from a data-set element's stored per-sequence values (`files.FileSet.batch`)."""
    return baseline(element["entropy"], element.get("entropy_stderr"))


@dataclasses.dataclass
class Start:
    """What a start found, read before anything is written: where training continues."""

    state: Any
    shardings: Any
    step: int
    restored_step: int | None  # the checkpoint restored (its data iterator state follows), or None
    skipped: list[tuple[int, str]]  # newer checkpoints that did not restore, with the reason
    changes: list[tuple[str, Any, Any]]  # config keys that differ from the run's config.json


@dataclasses.dataclass
class Run:
    """What the loop carries from step to step."""

    state: Any
    step: int
    iterator: Iterator
    window: StepWindow
    eval_set: list
    last_eval: dict[str, float] | None = None


class Trainer:
    """Holds what the loop needs between steps; `run()` trains to `optim.steps` or a stop signal.

    A start reads everything first (config against the run's config.json, data sets, the newest
    checkpoint that restores) and writes into the workdir only once all of it holds, so a start
    that fails leaves the workdir as it was (or never creates it).
    """

    def __init__(
        self, config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False
    ) -> None:
        validate(config)
        if resolved_data_path(config) != config.data.path:  # a sweep's {alpha_x}... placeholders
            config = config.copy_and_resolve_references()
            config.data.path = resolved_data_path(config)
        self.config = c = config
        self.workdir = workdir
        self.allow_config_change = allow_config_change
        self.graph: Graph = graph_of(c)
        self.tables_np = draw_kernels(self.graph, c.data.graph_seed)
        self.mesh = parallel.make_mesh(c.mesh)
        parallel.check_divisibility(c, self.mesh)
        self.batch_sharding = NamedSharding(self.mesh, parallel.batch_spec(c))
        self.replicated = NamedSharding(self.mesh, P())
        self.model = train_state.model_from_config(c, self.graph.vocab_size)
        self.global_shape = (c.data.batch_size, c.data.seq_len)
        self.rows = process_rows(self.batch_sharding, self.global_shape)
        self.is_chief = jax.process_index() == 0
        self.checkpoint_dir = os.path.join(workdir, "checkpoints")
        self.tables = jax.device_put(as_device_tables(self.tables_np), self.replicated)
        self.entropy_fn = jax.jit(
            make_entropy_fn(
                self.graph,
                c.data.seq_len,
                mc_draws=c.data.mc_draws,
                mc_seed=c.data.mc_seed,
                stderr=True,
            ),
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=NamedSharding(self.mesh, P(self.batch_sharding.spec[0])),
        )
        self.tokens_per_step = c.data.batch_size * c.data.seq_len
        self.flops = profile.flops_per_token(c.model, c.data.seq_len - 1, self.graph.vocab_size)
        self.peak = profile.peak_flops(jax.devices()[0].device_kind, c.model.dtype)
        self._trace = profile.TraceWindow(c.profile, workdir)
        self.metrics: MetricsWriter | None = None
        self.manager = None
        self.stop = StopFlag()

    # -- start: read everything, then write -------------------------------------------------
    def _source(self, seed: int, num_batches: int) -> StreamSource:
        return StreamSource(
            self.graph,
            cpu_tables(self.tables_np),
            seed,
            self.config.data.seq_len,
            self.config.data.batch_size,
            self.rows,
            num_batches,
        )

    def _global(self, local_BxT: np.ndarray, batch: int) -> jax.Array:
        return jax.make_array_from_process_local_data(
            self.batch_sharding, local_BxT, (batch, self.config.data.seq_len)
        )

    def _restore(self) -> Start:
        """The newest checkpoint that restores, or a fresh state; writes nothing."""
        c = self.config
        changed = workdir_lib.check_resume(self.workdir, c, self.allow_config_change)
        abstract, shardings = train_state.abstract_train_state(c, self.mesh, self.model)
        reader = checkpoint.open_read_only(self.checkpoint_dir)
        try:
            restored = None if reader is None else checkpoint.restore_latest(reader, abstract)
        finally:
            if reader is not None:
                reader.close()
        if restored is None:
            state, _ = train_state.create_train_state(
                c, self.mesh, self.model, jax.random.key(c.seed)
            )
            return Start(state, shardings, 0, None, [], changed)
        step = int(jax.device_get(restored.state.step))
        return Start(restored.state, shardings, step, restored.step, restored.skipped, changed)

    def _open_run_dir(self, start: Start) -> None:
        """The start's writes: leftovers cleaned, bad checkpoints set aside, config recorded."""
        say = print if self.is_chief else (lambda *a, **k: None)
        if self.is_chief:
            os.makedirs(self.workdir, exist_ok=True)
            for path in checkpoint.remove_temporaries(self.checkpoint_dir):
                say(f"removed an unfinished checkpoint save (a killed process): {path}", flush=True)
            for step, why in start.skipped:
                where = checkpoint.set_aside(self.checkpoint_dir, step)
                say(f"checkpoint step {step} does not restore ({why}); kept as {where}", flush=True)
            truncate_after(self.workdir, start.step)
            recorded = workdir_lib.record_config(self.workdir, self.config, start.changes)
            if start.changes:
                say(
                    f"config changed on resume at step {start.step}: "
                    f"{workdir_lib.describe(start.changes)} (recorded in {recorded})",
                    flush=True,
                )
        if start.restored_step is not None:
            say(f"resumed from {self.checkpoint_dir}/{start.step}", flush=True)
        self.metrics = MetricsWriter(self.workdir, enabled=self.is_chief)
        self.manager = checkpoint.make_manager(
            self.checkpoint_dir, self.config.checkpoint.keep, self.config.checkpoint.async_save
        )

    def _resume_iterator(self, dataset: Any, restored_step: int | None) -> Iterator:
        """The data iterator, set to its state saved with checkpoint `restored_step`."""
        iterator: Iterator = iter(dataset)
        if restored_step is not None:
            reader = checkpoint.open_read_only(self.checkpoint_dir)
            try:
                checkpoint.restore_iterator(reader, restored_step, iterator)
            finally:
                reader.close()
        return iterator

    # -- the run ----------------------------------------------------------------------------
    def run(self, stop: StopFlag | None = None) -> int:
        """Trains to optim.steps, or until `stop` is set (by default a flag installed here)."""
        own_flag = stop is None
        if own_flag:
            stop = StopFlag()
            stop.install()
        self.stop = stop
        try:
            return self._run()
        finally:
            if own_flag:
                stop.restore()

    def _run(self) -> int:
        c = self.config
        log_environment(self.workdir)
        dataset = self._train_dataset()  # opens and checks a data set on disk first
        start = self._restore()
        if start.step >= c.optim.steps:
            print(f"run already complete at step {start.step}: {self.workdir}", flush=True)
            return EXIT_OK
        iterator = self._resume_iterator(dataset, start.restored_step)
        eval_set = self._eval_set(self.tables, self.entropy_fn)
        self._open_run_dir(start)
        self.train_step = train_step_lib.make_train_step(c, self.model, self.mesh, start.shardings)
        self.eval_step = train_step_lib.make_eval_step(c, self.model, self.mesh, start.shardings)
        try:
            if (
                self.stop.agreed()
            ):  # signalled during start-up: nothing changed since the checkpoint
                print(
                    f"stopped before the first step (at step {start.step}, nothing new to save); "
                    f"exiting with code {EXIT_PREEMPTED} (run again with the same --workdir to "
                    "resume)",
                    flush=True,
                )
                return EXIT_PREEMPTED
            return self._loop(Run(start.state, start.step, iterator, StepWindow(), eval_set))
        finally:
            self._trace.finish()
            self.manager.wait_until_finished()
            self.metrics.close()

    def _loop(self, run: Run) -> int:
        """Each step: train; log, evaluate and checkpoint when due; leave when asked to stop."""
        c = self.config
        while run.step < c.optim.steps:
            element, batch, metrics = self._train_one(run)
            last = run.step == c.optim.steps
            if last or run.step % c.log.period == 0:
                self._log(run, element, batch, metrics)
            if last or run.step % c.eval.period == 0:
                self._eval(run)
            stopping = self.stop.agreed()
            if last or stopping or run.step % c.checkpoint.period == 0:
                self._checkpoint(run)
            if stopping and not last:
                return self._preempted(run)
        return self._finish(run)

    # -- what happens each step -------------------------------------------------------------
    def _train_one(self, run: Run) -> tuple[dict, jax.Array, Any]:
        """One step: the trace window around it, waiting for the batch, the jitted update."""
        w = run.window
        with w.timed("profile"):
            self._trace.before_step(run.step)
        with jax.profiler.StepTraceAnnotation("train", step_num=run.step):
            with w.timed("data_wait"), jax.profiler.TraceAnnotation("data_wait"):
                element = next(run.iterator)
                batch = self._global(element["tokens"], self.config.data.batch_size)
            with w.timed("compute"), jax.profiler.TraceAnnotation("train_step"):
                run.state, metrics = self.train_step(run.state, batch)
                jax.block_until_ready(metrics)
        run.step += 1
        w.steps += 1
        with w.timed("profile"):
            self._trace.after_step(run.step)
        return element, batch, metrics

    def _log(self, run: Run, element: dict, batch: jax.Array, metrics: Any) -> None:
        """The train record of this step (and its console line); starts a new timing window."""
        c, w = self.config, run.window
        with w.timed("log"), jax.profiler.TraceAnnotation("log"):
            if "entropy" in element:  # a written set: its stored per-sequence values
                entropy = stored(element)
            else:
                entropy = baseline(*self.entropy_fn(self.tables, batch))
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        record = {
            "step": run.step,
            "loss": m["loss"],
            **entropy,
            "kl_gap": m["loss"] - entropy["entropy"],
            "lr": m["lr"],
            "grad_norm": m["grad_norm"],
            **w.timings(self.tokens_per_step, jax.device_count()),
            "flops_per_token": self.flops["total"],
        }
        # tokens/s counts B x T; the model runs on the T - 1 predicting positions
        predicted = record["tokens_per_s_per_device"] * (c.data.seq_len - 1) / c.data.seq_len
        record["mfu"] = None if self.peak is None else predicted * self.flops["total"] / self.peak
        record["host_rss_bytes"] = profile.host_rss_bytes()
        record["peak_device_bytes"] = profile.peak_device_bytes()
        self.metrics.write("train", record)
        if self.is_chief:
            print(console_line(record, c.optim.steps, w.elapsed()), flush=True)
        w.reset()

    def _eval(self, run: Run) -> None:
        """Loss on the held-out batches; its time is not part of any step."""
        with run.window.excluded(), jax.profiler.TraceAnnotation("eval"):
            ev = self._evaluate(run.state, self.eval_step, run.eval_set)
        self.metrics.write("eval", {"step": run.step, **ev})
        if self.is_chief:
            print(
                f"eval step {run.step} | loss {ev['loss']:.4f} | entropy {ev['entropy']:.4f} | "
                f"kl_gap {ev['kl_gap']:.4f}",
                flush=True,
            )
        run.last_eval = ev

    def _checkpoint(self, run: Run) -> None:
        """Starts saving the state and the loader position (asynchronously when configured)."""
        with run.window.timed("checkpoint"), jax.profiler.TraceAnnotation("checkpoint"):
            checkpoint.save(self.manager, run.step, run.state, run.iterator)

    def _preempted(self, run: Run) -> int:
        self.manager.wait_until_finished()
        print(
            f"checkpoint saved at step {run.step}; exiting with code {EXIT_PREEMPTED} "
            f"(run again with the same --workdir to resume)",
            flush=True,
        )
        return EXIT_PREEMPTED

    def _finish(self, run: Run) -> int:
        self.manager.wait_until_finished()
        ev = run.last_eval
        if self.is_chief:
            final = {"step": run.step, "workdir": self.workdir, "eval": ev}
            with open(os.path.join(self.workdir, "final.json"), "w") as f:
                json.dump(final, f)
            print(
                f"done: final eval kl_gap {ev['kl_gap']:.4f} nats/token (loss {ev['loss']:.4f}, "
                f"entropy {ev['entropy']:.4f}); metrics in {self.workdir}/metrics, "
                f"checkpoints in {self.workdir}/checkpoints",
                flush=True,
            )
        return EXIT_OK

    # -- data -------------------------------------------------------------------------------
    def _train_dataset(self) -> grain.IterDataset:
        """Grain dataset whose element k is this process's rows of global batch k."""
        c = self.config
        if c.data.source == "files":
            train_set = files.open_checked(c.data.path, self.graph, self.tables_np, c.data)
            walk = files.TrainWalk(
                train_set,
                c.data.batch_size,
                self.rows,
                c.optim.steps,
                c.data.shuffle_seed,
                c.data.train_sequences,
            )
            return walk.stream(c.data.prefetch)
        dataset = grain.MapDataset.source(self._source(c.data.seed, c.optim.steps))
        return threaded(dataset, c.data.worker_threads, c.data.prefetch)

    def _eval_set(self, tables: Any, entropy_fn: Any) -> list[tuple[jax.Array, dict]]:
        """Fixed held-out batches, each with its `baseline`."""
        c = self.config
        if c.data.source == "files":  # the stored per-sequence entropies
            path = files.eval_set_path(c.data)
            test_set = files.open_checked(path, self.graph, self.tables_np, c.data)
            batches = files.eval_batches(test_set, c.data.batch_size, self.rows, c.eval.batches)
            return [(self._global(e["tokens"], c.data.batch_size), stored(e)) for e in batches]
        source = self._source(c.eval.seed, c.eval.batches)
        batches = [
            self._global(source[k]["tokens"], c.data.batch_size) for k in range(c.eval.batches)
        ]
        return [(batch, baseline(*entropy_fn(tables, batch))) for batch in batches]

    def _evaluate(self, state: Any, eval_step: Any, eval_set: list) -> dict[str, float]:
        loss = float(np.mean([float(eval_step(state.params, batch)) for batch, _ in eval_set]))
        means = {k: float(np.mean([b[k] for _, b in eval_set])) for k in eval_set[0][1]}
        return {"loss": loss, **means, "kl_gap": loss - means["entropy"]}


# Errors of a start that `gssm_jax.main` reports in one line with exit code 2.
START_ERRORS = (
    ConfigError,
    checkpoint.CheckpointMismatchError,
    checkpoint.NoRestorableCheckpointError,
)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop: StopFlag | None = None,
    allow_config_change: bool = False,
) -> int:
    """Trains per `config` into `workdir` (resuming if it holds a checkpoint); returns the exit code.

    `stop`: an installed StopFlag (gssm_jax.main installs one at start-up); None installs one here.
    `allow_config_change`: resume even when the config changes the experiment (see train.workdir).
    """
    return Trainer(config, workdir, allow_config_change).run(stop)
