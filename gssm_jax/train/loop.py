"""The training loop: the only stateful code; it ties data, model, baseline, metrics and checkpoints.

Each logged step reports the batch's loss next to the exact entropy of the same tokens
(`kl_gap = loss - entropy`). SIGTERM, SIGUSR1 and SIGINT finish the current step, save a checkpoint
and return EXIT_PREEMPTED, so a job scheduler can requeue the run and resume it exactly; a signal
during start-up returns EXIT_PREEMPTED before the first step (see `gssm_jax.train.stopping`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gssm_jax import checkpoint, parallel, profile
from gssm_jax.config import resolved_data_path, resolved_graph_spec, validate
from gssm_jax.data import files
from gssm_jax.data.stream import StreamSource, cpu_tables, process_rows, stream_dataset
from gssm_jax.exitcodes import EXIT_OK, EXIT_PREEMPTED
from gssm_jax.gssm.entropy import make_entropy_fn
from gssm_jax.gssm.graph import Graph, parse_graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
from gssm_jax.metrics import MetricsWriter, console_line, truncate_after
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step_lib
from gssm_jax.train.stopping import StopFlag


def log_environment(workdir: str) -> None:
    kinds = sorted({d.device_kind for d in jax.devices()})
    print(
        f"host={socket.gethostname()} process_index={jax.process_index()} "
        f"process_count={jax.process_count()} devices={jax.device_count()} "
        f"local_devices={jax.local_device_count()} device_kinds={kinds} workdir={workdir}",
        flush=True,
    )


class Trainer:
    """Holds what the loop needs between steps; `run()` trains to `optim.steps` or a stop signal."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str) -> None:
        validate(config)
        if resolved_data_path(config) != config.data.path:  # a sweep's {alpha_x}... placeholders
            config = config.copy_and_resolve_references()
            config.data.path = resolved_data_path(config)
        self.config = c = config
        self.workdir = workdir
        self.graph: Graph = parse_graph(resolved_graph_spec(c))
        self.tables_np = draw_kernels(self.graph, c.data.graph_seed)
        self.mesh = parallel.make_mesh(c.mesh)
        parallel.check_divisibility(c, self.mesh)
        self.batch_sharding = NamedSharding(self.mesh, parallel.batch_spec(c))
        self.replicated = NamedSharding(self.mesh, P())
        self.model = train_state.model_from_config(c, self.graph.vocab_size)
        self.global_shape = (c.data.batch_size, c.data.seq_len)
        self.rows = process_rows(self.batch_sharding, self.global_shape)
        self.is_chief = jax.process_index() == 0
        self.metrics = MetricsWriter(workdir, enabled=self.is_chief)
        self._trace = profile.TraceWindow(c.profile, workdir)
        self.manager = checkpoint.make_manager(
            os.path.join(workdir, "checkpoints"), c.checkpoint.keep, c.checkpoint.async_save
        )

    # -- pieces -----------------------------------------------------------------------------
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

    def _init_state(self) -> tuple[Any, Any, dict | None]:
        c = self.config
        abstract, shardings = train_state.abstract_train_state(c, self.mesh, self.model)
        latest = self.manager.latest_step()
        if latest is None:
            state, _ = train_state.create_train_state(
                c, self.mesh, self.model, jax.random.key(c.seed)
            )
            return state, shardings, None
        state, loader_state = checkpoint.restore(self.manager, latest, abstract)
        if self.is_chief:
            truncate_after(self.workdir, latest)
        print(f"resumed from {self.manager.directory}/{latest}", flush=True)
        return state, shardings, loader_state

    def _write_config(self) -> None:
        if self.is_chief:
            os.makedirs(self.workdir, exist_ok=True)
            with open(os.path.join(self.workdir, "config.json"), "w") as f:
                f.write(self.config.to_json_best_effort(indent=2, sort_keys=True))

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: StopFlag | None = None) -> int:
        """Trains to optim.steps, or until `stop` is set (by default a flag installed here)."""
        own_flag = stop is None
        if own_flag:
            stop = StopFlag()
            stop.install()
        try:
            return self._run(stop)
        finally:
            if own_flag:
                stop.restore()

    def _run(self, stop: StopFlag) -> int:
        c = self.config
        self._write_config()
        log_environment(self.workdir)
        state, shardings, loader_state = self._init_state()
        step = int(jax.device_get(state.step))
        if step >= c.optim.steps:
            print(f"run already complete at step {step}: {self.workdir}", flush=True)
            return EXIT_OK
        train_step = train_step_lib.make_train_step(c, self.model, self.mesh, shardings)
        eval_step = train_step_lib.make_eval_step(c, self.model, self.mesh, shardings)
        tables = jax.device_put(as_device_tables(self.tables_np), self.replicated)
        entropy_fn = jax.jit(
            make_entropy_fn(self.graph, c.data.seq_len),
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=NamedSharding(self.mesh, P(self.batch_sharding.spec[0])),
        )
        eval_set = self._eval_set(tables, entropy_fn)

        iterator: Iterator = iter(self._train_dataset())
        if loader_state is not None:
            iterator.set_state(loader_state)
        expected = {"next_index": step}
        if iterator.get_state().get("next_index") != step:
            raise RuntimeError(f"loader state {iterator.get_state()} does not match {expected}")

        try:
            if stop.agreed():  # signalled during start-up: nothing changed since the checkpoint
                print(
                    f"stopped before the first step (at step {step}, nothing new to save); "
                    f"exiting with code {EXIT_PREEMPTED} (run again with the same --workdir to "
                    "resume)",
                    flush=True,
                )
                return EXIT_PREEMPTED
            return self._loop(
                state, step, iterator, train_step, eval_step, tables, entropy_fn, eval_set, stop
            )
        finally:
            self._trace.finish()
            self.manager.wait_until_finished()
            self.metrics.close()

    def _train_dataset(self):
        """Grain dataset whose element k is this process's rows of global batch k."""
        c = self.config
        if c.data.source == "files":
            train_set = files.open_checked(c.data.path, self.graph, self.tables_np, c.data)
            source = files.FileSource(
                train_set,
                c.data.batch_size,
                self.rows,
                c.optim.steps,
                c.data.shuffle_seed,
                c.data.train_sequences,
            )
        else:
            source = self._source(c.data.seed, c.optim.steps)
        return stream_dataset(source, c.data.worker_threads, c.data.prefetch)

    def _eval_set(self, tables: Any, entropy_fn: Any) -> list[tuple[jax.Array, float]]:
        """Fixed held-out batches, each with the mean exact entropy of its sequences."""
        c = self.config
        if c.data.source == "files":  # entropy: mean of the stored exact per-sequence entropies
            path = files.eval_set_path(c.data)
            test_set = files.open_checked(path, self.graph, self.tables_np, c.data)
            batches = files.eval_batches(test_set, c.data.batch_size, self.rows, c.eval.batches)
            return [(self._global(local, c.data.batch_size), h) for local, h in batches]
        source = self._source(c.eval.seed, c.eval.batches)
        out = []
        for local in (source[k] for k in range(c.eval.batches)):
            batch = self._global(local, c.data.batch_size)
            out.append((batch, float(jnp.mean(entropy_fn(tables, batch)))))
        return out

    def _evaluate(self, state: Any, eval_step: Any, eval_set: list) -> dict[str, float]:
        losses = [float(eval_step(state.params, batch)) for batch, _ in eval_set]
        loss = float(np.mean(losses))
        entropy = float(np.mean([h for _, h in eval_set]))
        return {"loss": loss, "entropy": entropy, "kl_gap": loss - entropy}

    @staticmethod
    def _timings(window: dict, wall: float, tokens_per_step: int) -> dict[str, float]:
        """Per-step means over the window since the last log; the parts add up to step_time_s."""
        n = window["steps"]
        return {
            "step_time_s": wall / n,
            "data_wait_s": window["data"] / n,
            "compute_s": window["compute"] / n,
            "log_s": window["log"] / n,
            "checkpoint_s": window["ckpt"] / n,
            "profile_s": window["profile"] / n,
            "tokens_per_s": tokens_per_step * n / wall,
            "tokens_per_s_per_device": tokens_per_step * n / wall / jax.device_count(),
        }

    def _save(self, step: int, state: Any, iterator: Iterator) -> float:
        t0 = time.perf_counter()
        checkpoint.save(self.manager, step, state, iterator.get_state())
        return time.perf_counter() - t0

    def _loop(
        self, state, step, iterator, train_step, eval_step, tables, entropy_fn, eval_set, stop
    ) -> int:
        c = self.config
        tokens_per_step = c.data.batch_size * c.data.seq_len
        trace = self._trace
        flops = profile.flops_per_token(c.model, c.data.seq_len - 1, self.graph.vocab_size)["total"]
        peak = profile.peak_flops(jax.devices()[0].device_kind, c.model.dtype)
        window = {
            "data": 0.0,
            "compute": 0.0,
            "log": 0.0,
            "ckpt": 0.0,
            "profile": 0.0,
            "steps": 0.0,
        }
        t_window = time.perf_counter()
        while step < c.optim.steps:
            t_prof = time.perf_counter()
            trace.before_step(step)
            window["profile"] += time.perf_counter() - t_prof
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                t0 = time.perf_counter()
                with jax.profiler.TraceAnnotation("data_wait"):
                    batch = self._global(next(iterator), c.data.batch_size)
                t1 = time.perf_counter()
                with jax.profiler.TraceAnnotation("train_step"):
                    state, metrics = train_step(state, batch)
                    jax.block_until_ready(metrics)
                t2 = time.perf_counter()
            step += 1
            t_prof = time.perf_counter()
            trace.after_step(step)
            window["profile"] += time.perf_counter() - t_prof
            window["data"] += t1 - t0
            window["compute"] += t2 - t1
            window["steps"] += 1

            if step % c.log.period == 0 or step == c.optim.steps:
                t3 = time.perf_counter()
                with jax.profiler.TraceAnnotation("log"):
                    entropy = float(jnp.mean(entropy_fn(tables, batch)))
                    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                window["log"] += time.perf_counter() - t3
                record = {
                    "step": step,
                    "loss": m["loss"],
                    "entropy": entropy,
                    "kl_gap": m["loss"] - entropy,
                    "lr": m["lr"],
                    "grad_norm": m["grad_norm"],
                }
                record.update(
                    self._timings(window, time.perf_counter() - t_window, tokens_per_step)
                )
                per_device = record["tokens_per_s_per_device"]
                record["flops_per_token"] = flops
                # tokens/s counts B x T; the model runs on the T - 1 predicting positions
                predicted = per_device * (c.data.seq_len - 1) / c.data.seq_len
                record["mfu"] = None if peak is None else predicted * flops / peak
                record["host_rss_bytes"] = profile.host_rss_bytes()
                record["peak_device_bytes"] = profile.peak_device_bytes()
                self.metrics.write("train", record)
                if self.is_chief:
                    print(console_line(record), flush=True)
                window = dict.fromkeys(window, 0.0)
                t_window = time.perf_counter()

            if step % c.eval.period == 0 or step == c.optim.steps:
                t4 = time.perf_counter()
                with jax.profiler.TraceAnnotation("eval"):
                    ev = self._evaluate(state, eval_step, eval_set)
                self.metrics.write("eval", {"step": step, **ev})
                if self.is_chief:
                    print(
                        f"eval step {step} | loss {ev['loss']:.4f} | entropy "
                        f"{ev['entropy']:.4f} | kl_gap {ev['kl_gap']:.4f}",
                        flush=True,
                    )
                t_window += time.perf_counter() - t4  # eval is not part of the step time

            stopping = stop.agreed()
            if step % c.checkpoint.period == 0 or step == c.optim.steps or stopping:
                with jax.profiler.TraceAnnotation("checkpoint"):
                    window["ckpt"] += self._save(step, state, iterator)
            if stopping and step < c.optim.steps:
                self.manager.wait_until_finished()
                print(
                    f"checkpoint saved at step {step}; exiting with code {EXIT_PREEMPTED} "
                    f"(run again with the same --workdir to resume)",
                    flush=True,
                )
                return EXIT_PREEMPTED
        self.manager.wait_until_finished()
        if self.is_chief:
            final = {"step": step, "workdir": self.workdir, "eval": ev}
            with open(os.path.join(self.workdir, "final.json"), "w") as f:
                json.dump(final, f)
            print(
                f"done: final eval kl_gap {ev['kl_gap']:.4f} nats/token (loss {ev['loss']:.4f}, "
                f"entropy {ev['entropy']:.4f}); metrics in {self.workdir}/metrics, "
                f"checkpoints in {self.workdir}/checkpoints",
                flush=True,
            )
        return EXIT_OK


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, stop: StopFlag | None = None
) -> int:
    """Trains per `config` into `workdir` (resuming if it holds a checkpoint); returns the exit code.

    `stop`: an installed StopFlag (gssm_jax.main installs one at start-up); None installs one here.
    """
    return Trainer(config, workdir).run(stop)
