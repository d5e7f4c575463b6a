"""Where a run's time and memory go: trace windows, memory readings, model FLOPs and MFU.

A trace of steps [profile.start_step, start_step + num_steps) is written under DIR/profile/ in the
XProf layout (open with TensorBoard's profile plugin or `xprof DIR/profile`), and its Perfetto
version is copied to DIR/profile/trace.json.gz (drag it into ui.perfetto.dev).
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
from typing import Any

import jax
import ml_collections

from gssm_jax.config import family_config

# Dense peak FLOP/s per device for the compute dtypes the model uses, from vendor data sheets.
# Matched by substring of `device.device_kind`, first match wins.
PEAK_FLOPS = (
    ("H200", {"bfloat16": 989e12, "float32": 494e12}),  # fp32 via TF32 tensor cores
    ("H100", {"bfloat16": 989e12, "float32": 494e12}),  # SXM; PCIe parts are ~25% lower
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
    ("L40S", {"bfloat16": 362e12, "float32": 183e12}),
    ("A10", {"bfloat16": 125e12, "float32": 62.5e12}),
    ("V100", {"bfloat16": 125e12, "float32": 15.7e12}),  # no bf16: fp16 tensor-core peak
    ("TPU v6", {"bfloat16": 918e12, "float32": 918e12}),
    ("TPU v5p", {"bfloat16": 459e12, "float32": 459e12}),
    ("TPU v5 lite", {"bfloat16": 197e12, "float32": 197e12}),
    ("TPU v5e", {"bfloat16": 197e12, "float32": 197e12}),
    ("TPU v4", {"bfloat16": 275e12, "float32": 275e12}),
)


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """Peak FLOP/s of one device of this kind, or None where unknown (every CPU)."""
    for key, peaks in PEAK_FLOPS:
        if key.lower() in device_kind.lower():
            return peaks[dtype]
    return None


def flops_per_token(model: Any, seq_len: int, vocab: int) -> dict:
    """Matmul FLOPs per trained token (multiply-add = 2 FLOPs) of the model: forward, backward
    (twice the forward: gradients for inputs and for weights) and total.

    `model` is the run config's `config.model` section or a family config; each family counts its
    own (`gssm_jax.models.configs`): the transformer its weight matmuls and both attention
    contractions over the full length, the recurrent families their projections and scans. Norms,
    softmax, rotary and the embedding gather are ignored (under 1% at these sizes).
    """
    if isinstance(model, ml_collections.ConfigDict):
        model = family_config(model, vocab)
    return model.flops_per_token(seq_len)


def host_rss_bytes() -> int:
    """Resident set size of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_device_bytes() -> int | None:
    """Largest peak_bytes_in_use over local devices, where the backend reports it (not CPU)."""
    peaks = []
    for d in jax.local_devices():
        stats = d.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            peaks.append(stats["peak_bytes_in_use"])
    return max(peaks) if peaks else None


class TraceWindow:
    """Starts a jax.profiler trace before step `start` and stops it after `num_steps` steps."""

    def __init__(self, cfg: ml_collections.ConfigDict, workdir: str) -> None:
        self.start = cfg.start_step
        self.stop = cfg.start_step + cfg.num_steps
        self.memory_step = cfg.memory_step
        self.enabled = cfg.start_step >= 0 and (cfg.all_processes or jax.process_index() == 0)
        self.logdir = os.path.join(workdir, "profile")
        suffix = "" if jax.process_count() == 1 else f".p{jax.process_index()}"
        self.perfetto_path = os.path.join(self.logdir, f"trace{suffix}.json.gz")
        self.active = False

    def before_step(self, step: int) -> None:
        """Call with the number of the step about to run (0-based)."""
        if self.enabled and step == self.start and not self.active:
            os.makedirs(self.logdir, exist_ok=True)
            jax.profiler.start_trace(self.logdir, create_perfetto_trace=True)
            self.active = True

    def wants_sync(self, step: int) -> bool:
        """Whether step `step` (the number of steps done after it) must be waited for: inside the
        trace window (its steps are traced as they run) and at the memory-profile step."""
        return self.active or step == self.memory_step

    def after_step(self, step: int) -> None:
        """Call with the number of steps done."""
        if self.active and step >= self.stop:
            self.finish()
        if step == self.memory_step and (jax.process_index() == 0 or self.enabled):
            os.makedirs(self.logdir, exist_ok=True)
            suffix = "" if jax.process_count() == 1 else f".p{jax.process_index()}"
            path = os.path.join(self.logdir, f"memory_step{step}{suffix}.prof")
            jax.profiler.save_device_memory_profile(path)
            print(f"device memory profile: {path}", flush=True)

    def finish(self) -> None:
        if not self.active:
            return
        jax.profiler.stop_trace()
        self.active = False
        runs = sorted(glob.glob(os.path.join(self.logdir, "plugins", "profile", "*")))
        found = glob.glob(os.path.join(runs[-1], "*perfetto_trace.json.gz")) if runs else []
        if found:
            shutil.copyfile(found[0], self.perfetto_path)
        print(
            f"profile: XProf trace under {self.logdir} (xprof / tensorboard --logdir), "
            f"Perfetto trace {self.perfetto_path if found else '(none written)'}",
            flush=True,
        )
