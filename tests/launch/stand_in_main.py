"""A stand-in for `gssm_jax.main` with the same contract and no JAX, for fast launcher tests.

Copied over `gssm_jax/main.py` in a throwaway copy of the repository. It parses the same flags,
reports `process_index=I process_count=N` (from the coordinator flags or Slurm's variables),
"trains" `optim.steps` steps of a deterministic loss, writes metrics/train.jsonl (process 0),
keeps its checkpoint in checkpoints/step.json, resumes from it, and on SIGTERM/SIGUSR1/SIGINT
finishes the step, saves and exits with EXIT_PREEMPTED.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from gssm_jax.runtime.exitcodes import EXIT_OK, EXIT_PREEMPTED

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory")
STEP_SECONDS = float(os.environ.get("STAND_IN_STEP_SECONDS", "0.02"))
STOP: list[int] = []


def process_layout(config) -> tuple[int, int]:
    dist = config.distributed
    if dist.coordinator:
        return dist.process_id, dist.num_processes
    if "SLURM_STEP_ID" in os.environ:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_STEP_NUM_TASKS"])
    return 0, 1


def barrier(config, workdir: str, index: int, count: int) -> None:
    """Waits for every process of this attempt, as joining a JAX runtime would."""
    attempt = config.distributed.coordinator or "{}.{}".format(
        os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_RESTART_COUNT", "0")
    )
    folder = os.path.join(workdir, "barrier", attempt.replace(":", "_"))
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, str(index)), "w").close()
    while len(os.listdir(folder)) < count:
        time.sleep(0.01)


def loss_at(config, step: int) -> float:
    return 3.0 * math.exp(-config.optim.lr * step) + 0.01 * config.seed


def main(argv: list[str]) -> int:
    del argv
    config = _CONFIG.value
    workdir = _WORKDIR.value
    index, count = process_layout(config)
    print(f"stand-in process_index={index} process_count={count} file={__file__}", flush=True)
    ckpt = os.path.join(workdir, "checkpoints", "step.json")
    step = 0
    if os.path.exists(ckpt):
        with open(ckpt) as f:
            step = json.load(f)["step"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    if step >= config.optim.steps:
        return EXIT_OK
    for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(s, lambda signum, frame: STOP.append(signum))
    barrier(config, workdir, index, count)
    os.makedirs(os.path.join(workdir, "metrics"), exist_ok=True)
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    while step < config.optim.steps:
        time.sleep(STEP_SECONDS)
        step += 1
        if index == 0 and step % config.log.period == 0:
            with open(os.path.join(workdir, "metrics", "train.jsonl"), "a") as f:
                f.write(json.dumps({"step": step, "loss": loss_at(config, step)}) + "\n")
        if STOP and step < config.optim.steps:
            break
    if index == 0:
        with open(ckpt, "w") as f:
            json.dump({"step": step}, f)
    if step < config.optim.steps:
        print(f"checkpoint saved at step {step}; exiting with code {EXIT_PREEMPTED}", flush=True)
        return EXIT_PREEMPTED
    print(f"done at step {step}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(app.run(main))
