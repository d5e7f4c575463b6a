"""The training loop: the only stateful code; it ties data, model, baseline, metrics and checkpoints.

Each logged step reports the batch's loss next to the exact entropy of the same tokens
(`kl_gap = loss - entropy`), or on text its bits per byte (`train.run_data`). The host dispatches steps without waiting for the device and fetches
their results only on logged, evaluated and checkpointed steps, so on an accelerator the device
never idles while Python runs. SIGTERM, SIGUSR1 and SIGINT finish the current step, save a
checkpoint and return EXIT_PREEMPTED, so a job scheduler can requeue the run and resume it exactly;
a signal during start-up returns EXIT_PREEMPTED before the first step (`gssm_jax.train.stopping`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gssm_jax.config import ConfigError, as_dict, resolved_data_path, validate
from gssm_jax.data.stream import process_rows
from gssm_jax.runtime import distributed, parallel, peers
from gssm_jax.runtime.exitcodes import (
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_WRITE_FAILED,
)
from gssm_jax.runtime.writes import WriteError, cause_of, path_of
from gssm_jax.train import checkpoint, profile, run_data, wandb_sink
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step_lib
from gssm_jax.train import workdir as workdir_lib
from gssm_jax.train.metrics import MetricsWriter, console_line, truncate_after
from gssm_jax.train.stopping import StopFlag
from gssm_jax.train.window import StepWindow

FINAL = workdir_lib.FINAL
DIVERGED = "diverged"  # final.json's status of a run that optim.nonfinite stopped


def log_environment(workdir: str) -> None:
    kinds = sorted({d.device_kind for d in jax.devices()})
    print(
        f"host={socket.gethostname()} process_index={jax.process_index()} "
        f"process_count={jax.process_count()} devices={jax.device_count()} "
        f"local_devices={jax.local_device_count()} device_kinds={kinds} workdir={workdir}",
        flush=True,
    )


class DivergedError(Exception):
    """The run stops: its loss or gradients stayed non-finite (optim.nonfinite), or its state is."""

    def __init__(self, step: int, why: str) -> None:
        super().__init__(f"diverged at step {step} ({why})")
        self.step = step
        self.why = why


@dataclasses.dataclass
class Start:
    """What a start found, read before anything is written: where training continues."""

    state: Any
    step: int
    restored_step: int | None  # the checkpoint restored (its data iterator state follows), or None
    skipped: list[tuple[int, str]]  # newer checkpoints that did not restore, with the reason
    changes: list[tuple[str, Any, Any]]  # config keys that differ from the run's config.json


@dataclasses.dataclass
class LoopState:
    """What the loop carries from step to step."""

    state: Any
    step: int
    iterator: Iterator
    eval_set: list[tuple[jax.Array, dict]]
    window: StepWindow = dataclasses.field(default_factory=StepWindow)
    last_eval: dict[str, float] | None = None


@dataclasses.dataclass
class RunFiles:
    """The writers a started run holds open: metrics (process 0) and the checkpoint manager.

    A failed checkpoint write raises WriteError from `save` or `wait` (an asynchronous save's
    failure from the next one); after one, `abandon` drops the failed save's folder.
    """

    metrics: MetricsWriter
    manager: Any
    directory: str
    pending: int | None = None  # the step of the last save started
    failed: bool = False

    def save(self, step: int, state: Any, iterator: Any) -> None:
        with checkpoint.write_errors(self.directory, self.pending):
            self.pending = step
            checkpoint.save(self.manager, step, state, iterator)

    def check(self) -> None:
        """Raises WriteError when an asynchronous save has failed since (without waiting)."""
        with checkpoint.write_errors(self.directory, self.pending):
            self.manager.check_for_errors()

    def wait(self) -> None:
        with checkpoint.write_errors(self.directory, self.pending):
            self.manager.wait_until_finished()

    def abandon(self, is_chief: bool) -> int | None:
        """After a failed write: waits out the saves in flight, removes unfinished ones (process
        0); returns the newest complete checkpoint's step."""
        self.failed = True
        with contextlib.suppress(Exception):  # the failure was reported; its folder goes below
            self.manager.wait_until_finished()
        if is_chief:
            checkpoint.remove_temporaries(self.directory)
        steps = checkpoint.saved_steps(self.directory)
        return steps[-1] if steps else None

    def close(self) -> None:
        if self.failed:
            with contextlib.suppress(Exception):
                self.manager.close()
        else:
            self.wait()
        self.metrics.close()


class Trainer:
    """Everything a run needs, built once from its config; `run()` trains to `optim.steps` or a
    stop signal.

    A start reads everything first (config against the run's config.json, data sets, the newest
    checkpoint that restores) and writes into the workdir only once all of it holds, so a start
    that fails leaves the workdir as it was (or never creates it).
    """

    def __init__(
        self, config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False
    ) -> None:
        validate(config)
        wandb_sink.require_wandb(config.log.wandb.mode)  # before anything is read or written
        if resolved_data_path(config) != config.data.path:  # a sweep's {alpha_x}... placeholders
            config = config.copy_and_resolve_references()
            config.data.path = resolved_data_path(config)
        config = run_data.with_absolute_paths(config)  # a text run's sources, as recorded
        self.config = c = config
        self.workdir = workdir
        self.allow_config_change = allow_config_change
        self.mesh = parallel.make_mesh(c.mesh)
        parallel.check_divisibility(c, self.mesh)
        self.batch_sharding = NamedSharding(self.mesh, parallel.batch_spec(c))
        self.replicated = NamedSharding(self.mesh, P())
        # the graph and its entropy, or the text corpus (read here: a bad source exits 2)
        self.data = run_data.for_config(c, self.batch_sharding, self.replicated)
        self.model = train_state.model_from_config(c, self.data.vocab_size)
        self.abstract, self.shardings = train_state.abstract_train_state(c, self.mesh, self.model)
        self.global_shape = (c.data.batch_size, c.data.seq_len)
        self.rows = process_rows(self.batch_sharding, self.global_shape)
        self.is_chief = jax.process_index() == 0
        self.checkpoint_dir = os.path.join(workdir, "checkpoints")
        self.train_step = train_step_lib.make_train_step(c, self.model, self.mesh, self.shardings)
        self.eval_step = train_step_lib.make_eval_step(c, self.model, self.mesh, self.shardings)
        self.tokens_per_step = c.data.batch_size * c.data.seq_len
        self.flops = profile.flops_per_token(c.model, c.data.seq_len - 1, self.data.vocab_size)
        self.peak = profile.peak_flops(jax.devices()[0].device_kind, c.model.dtype)
        self.trace = profile.TraceWindow(c.profile, workdir)
        self.stop = StopFlag()
        self.say = print if self.is_chief else (lambda *a, **k: None)
        self.banner = ""  # appended to the start line "gssm_jax: writing to DIR"

    def _global(self, local_BxT: Any, batch: int) -> jax.Array:
        return jax.make_array_from_process_local_data(
            self.batch_sharding, local_BxT, (batch, self.config.data.seq_len)
        )

    # -- start: read everything, then write -------------------------------------------------
    def _restore(self) -> Start:
        """The newest checkpoint that restores, or a fresh state; writes nothing."""
        c = self.config
        workdir_lib.check_not_diverged(self.workdir, self.allow_config_change)
        changed = workdir_lib.check_resume(self.workdir, c, self.allow_config_change)
        reader = checkpoint.open_read_only(self.checkpoint_dir)
        try:
            restored = None if reader is None else checkpoint.restore_latest(reader, self.abstract)
        finally:
            if reader is not None:
                reader.close()
        if restored is None:
            key = jax.random.key(c.seed)
            state = train_state.init_train_state(c, self.mesh, self.model, self.shardings, key)
            return Start(state, 0, None, [], changed)
        step = int(jax.device_get(restored.state.step))
        return Start(restored.state, step, restored.step, restored.skipped, changed)

    def _resume_iterator(self, dataset: Any, restored_step: int | None) -> Iterator:
        """The data iterator, set to its state saved with checkpoint `restored_step`."""
        iterator: Iterator = iter(dataset)
        if restored_step is not None:
            reader = checkpoint.open_read_only(self.checkpoint_dir)
            assert reader is not None  # the directory holds checkpoint restored_step
            try:
                checkpoint.restore_iterator(reader, restored_step, iterator)
            finally:
                reader.close()
        return iterator

    def _eval_set(self) -> list[tuple[jax.Array, dict]]:
        """Fixed held-out batches, each with its entropy baseline (stored, or exact) or, on text,
        its scored tokens and bytes."""
        out = []
        for element in self.data.eval_elements(self.rows):
            batch = self._global(element["tokens"], self.config.data.batch_size)
            out.append((batch, self.data.measure(element, batch)))
        return out

    def _open_run_dir(self, start: Start) -> RunFiles:
        """The start's writes: leftovers cleaned, bad checkpoints set aside, config recorded."""
        say = self.say
        if self.is_chief:
            os.makedirs(self.workdir, exist_ok=True)
            for path in checkpoint.remove_temporaries(self.checkpoint_dir):
                say(f"removed an unfinished checkpoint save (a killed process): {path}", flush=True)
            for step, why in start.skipped:
                where = checkpoint.set_aside(self.checkpoint_dir, step)
                say(f"checkpoint step {step} does not restore ({why}); kept as {where}", flush=True)
            for note in truncate_after(self.workdir, start.step):
                say(note, flush=True)
            if workdir_lib.diverged(self.workdir) is not None:  # resumed with --allow-config-change
                os.remove(os.path.join(self.workdir, FINAL))
            recorded = workdir_lib.record_config(self.workdir, self.config, start.changes)
            if start.changes:
                say(
                    f"config changed on resume at step {start.step}: "
                    f"{workdir_lib.describe(start.changes)} (recorded in {recorded})",
                    flush=True,
                )
        if start.restored_step is not None:
            say(f"resumed from {self.checkpoint_dir}/{start.step}", flush=True)
        c = self.config.checkpoint
        manager = checkpoint.make_manager(self.checkpoint_dir, c.keep, c.async_save)
        sinks = wandb_sink.sinks_for_run(self.workdir, as_dict(self.config), self.is_chief)
        writer = MetricsWriter(self.workdir, enabled=self.is_chief, sinks=sinks)
        return RunFiles(writer, manager, self.checkpoint_dir)

    # -- the run ----------------------------------------------------------------------------
    def run(self, stop: StopFlag | None = None) -> int:
        """Trains to optim.steps, or until `stop` is set (by default a flag installed here)."""
        own_flag = stop is None
        flag = StopFlag() if stop is None else stop
        if own_flag:
            flag.install()
        self.stop = flag
        try:
            return self._run()
        finally:
            if own_flag:
                flag.restore()

    def _run(self) -> int:
        c = self.config
        dataset = self.data.train_dataset(self.rows)  # checks sets
        start = self._restore()
        if start.step >= c.optim.steps:
            print(f"run already complete at step {start.step}: {self.workdir}", flush=True)
            return EXIT_OK
        iterator = self._resume_iterator(dataset, start.restored_step)
        loop = LoopState(start.state, start.step, iterator, self._eval_set())
        self.say(f"gssm_jax: writing to {self.workdir}{self.banner}", flush=True)
        log_environment(self.workdir)
        for line in self.data.describe():
            self.say(line, flush=True)
        self.files = self._open_run_dir(start)
        peers.set_last_checkpoint(self._last_checkpoint)
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
            return self._loop(loop)
        except OSError as e:  # a metrics, checkpoint or final.json write (WriteError)
            cause = cause_of(e)
            if cause is None:
                raise
            if not isinstance(e, WriteError):
                e = WriteError(path_of(e, self.workdir), cause)
            return self._write_failed(loop, e)
        finally:
            self.trace.finish()
            self.files.close()

    def _loop(self, loop: LoopState) -> int:
        """Each step: train; log, evaluate and checkpoint when due; leave when asked to stop.

        Only logged, evaluated and checkpointed steps wait for the device. Processes agree on a
        stop signal every step in a single-process run and on logged steps otherwise (the
        agreement is a collective, which would wait for the device).
        """
        c = self.config
        single = jax.process_count() == 1
        try:
            while loop.step < c.optim.steps:
                element, batch, metrics = self._train_one(loop)
                last = loop.step == c.optim.steps
                logged = last or loop.step % c.log.period == 0
                if logged:
                    self._log(loop, element, batch, metrics)
                    self._check_nonfinite(loop, metrics)
                if last or loop.step % c.eval.period == 0:
                    self._eval(loop)
                stopping = (single or logged) and self.stop.agreed()
                if last or stopping or loop.step % c.checkpoint.period == 0:
                    self._checkpoint(loop, metrics)
                if stopping and not last:
                    return self._preempted(loop)
        except DivergedError as e:
            return self._diverged(loop, e)
        return self._finish(loop)

    # -- what happens each step -------------------------------------------------------------
    def _train_one(self, loop: LoopState) -> tuple[dict, jax.Array, Any]:
        """One step: the trace window around it, the batch, the jitted update (dispatched, not
        waited for, except inside a trace window, whose steps are timed as they run)."""
        w = loop.window
        with w.timed("profile"):
            self.trace.before_step(loop.step)
        with jax.profiler.StepTraceAnnotation("train", step_num=loop.step):
            with w.timed("data_wait"), jax.profiler.TraceAnnotation("data_wait"):
                element = next(loop.iterator)
                batch = self._global(element["tokens"], self.config.data.batch_size)
            with w.timed("compute"), jax.profiler.TraceAnnotation("train_step"):
                loop.state, metrics = self.train_step(loop.state, batch)
                if self.trace.wants_sync(loop.step + 1):
                    jax.block_until_ready(metrics)
        loop.step += 1
        w.steps += 1
        with w.timed("profile"):
            self.trace.after_step(loop.step)
        return element, batch, metrics

    def _log(self, loop: LoopState, element: dict, batch: jax.Array, metrics: Any) -> None:
        """The train record of this step (and its console line); starts a new timing window.
        Waiting for the device's queued steps counts as `compute`, the record's own work as `log`."""
        c, w = self.config, loop.window
        with w.timed("compute"):
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        with w.timed("log"), jax.profiler.TraceAnnotation("log"):
            measured = self.data.measure(element, batch)  # entropy (stored or exact) or bytes
        record = {
            "step": loop.step,
            "loss": m["loss"],
            **self.data.train_fields(m["loss"], measured),
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
        self.files.metrics.write("train", record)
        self.files.check()  # a failed asynchronous save: stop before more steps are lost
        self.say(console_line(record, c.optim.steps, w.elapsed()), flush=True)
        w.reset()

    def _eval(self, loop: LoopState) -> None:
        """Loss on the held-out batches; its time is not part of any step."""
        with loop.window.excluded(), jax.profiler.TraceAnnotation("eval"):
            losses = [self.eval_step(loop.state.params, batch) for batch, _ in loop.eval_set]
            loss = sum(float(x) for x in jax.device_get(losses)) / len(losses)
            ev = self.data.eval_record(loss, [b for _, b in loop.eval_set])
        self.files.metrics.write("eval", {"step": loop.step, **ev})
        self.say(self.data.eval_line(loop.step, ev), flush=True)
        loop.last_eval = ev

    def _check_nonfinite(self, loop: LoopState, metrics: Any) -> None:
        """Raises DivergedError when the steps up to this one end a run under optim.nonfinite: the
        first non-finite step with "stop", optim.nonfinite_patience of them in a row with "skip".

        Called on steps that wait for the device anyway (logged and checkpointed ones), so a
        run with log.period > 1 notices a streak up to log.period - 1 steps late; the skipped
        steps changed nothing meanwhile.
        """
        o = self.config.optim
        count = int(jax.device_get(metrics["nonfinite"]))
        limit = 1 if o.nonfinite == "stop" else o.nonfinite_patience
        if count >= limit:
            m = jax.device_get({k: metrics[k] for k in ("loss", "grad_norm")})
            values = ", ".join(f"{k} {float(v):.4g}" for k, v in m.items())
            raise DivergedError(loop.step, f"{values}; {count} consecutive non-finite steps")

    def _checkpoint(self, loop: LoopState, metrics: Any) -> None:
        """Starts saving the state and the loader position (asynchronously when configured),
        after checking that nothing in the state is non-finite (DivergedError otherwise)."""
        with loop.window.timed("checkpoint"), jax.profiler.TraceAnnotation("checkpoint"):
            self._check_nonfinite(loop, metrics)
            if not bool(jax.device_get(train_step_lib.all_finite(loop.state))):
                raise DivergedError(
                    loop.step, "the parameters or optimizer moments hold inf or nan"
                )
            self.files.save(loop.step, loop.state, loop.iterator)

    def _diverged(self, loop: LoopState, error: DivergedError) -> int:
        """The run's end after DivergedError: no checkpoint of this state, final.json says so."""
        self.files.wait()
        steps = checkpoint.saved_steps(self.checkpoint_dir)
        good = steps[-1] if steps else None
        where = (
            "no checkpoint was saved"
            if good is None
            else f"the last good checkpoint is step {good}"
        )
        if self.is_chief:
            final = {
                "step": error.step,
                "workdir": self.workdir,
                "status": DIVERGED,
                "diverged": {"step": error.step, "why": error.why, "last_checkpoint": good},
                "eval": loop.last_eval,
            }
            workdir_lib.write_json(os.path.join(self.workdir, FINAL), final)
        print(f"gssm_jax: {error}; {where}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED

    def _last_checkpoint(self) -> str:
        """'the last checkpoint is step N' (or that there is none), from the folder's listing."""
        steps = checkpoint.saved_steps(self.checkpoint_dir)
        return f"the last checkpoint is step {steps[-1]}" if steps else "no checkpoint was saved"

    def _write_failed(self, loop: LoopState, error: WriteError) -> int:
        """The run's end after a failed write: the unfinished save removed, one line."""
        good = self.files.abandon(self.is_chief)
        where = (
            "no checkpoint was saved"
            if good is None
            else f"the last good checkpoint is step {good}"
        )
        print(
            f"gssm_jax: {error} at step {loop.step}; {where} (run the same command again to "
            "resume once the disk can take it)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_WRITE_FAILED

    def _preempted(self, loop: LoopState) -> int:
        self.files.wait()
        print(
            f"checkpoint saved at step {loop.step}; exiting with code {EXIT_PREEMPTED} "
            f"(run again with the same --workdir to resume)",
            flush=True,
        )
        return EXIT_PREEMPTED

    def _finish(self, loop: LoopState) -> int:
        self.files.wait()
        ev = loop.last_eval
        assert ev is not None  # the loop's last step evaluates
        if self.is_chief:
            final = {"step": loop.step, "workdir": self.workdir, "status": "complete", "eval": ev}
            final.update(self.data.final_fields())
            workdir_lib.write_json(os.path.join(self.workdir, FINAL), final)
            print(
                f"{self.data.done_line(ev)}; metrics in {self.workdir}/metrics, "
                f"checkpoints in {self.workdir}/checkpoints",
                flush=True,
            )
        return EXIT_OK


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
    malloc_kept: bool = False,
) -> int:
    """Trains per `config` into `workdir` (resuming if it holds a checkpoint); returns the exit code.

    Joins the other processes first (`distributed.*`, or Slurm's). `stop`: an installed StopFlag
    (gssm_jax.main installs one at start-up); None installs one here. `allow_config_change`: resume
    even when the config changes the experiment (see train.workdir). `malloc_kept`: whether
    `runtime.hostmem.apply` put its settings in force, for the start line.
    """
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    checkpoint.quiet_orbax_errors()  # a failed save or read is reported by the run, in one line
    distributed.initialize(config.distributed)
    if stop is not None:
        stop.reassert()  # JAX's preemption notifier took SIGTERM while joining the others
    trainer = Trainer(config, workdir, allow_config_change)
    if malloc_kept:
        trainer.banner = f" (malloc keeps freed memory: {malloc_kept})"
    return trainer.run(stop)
