"""The job script `run.sh`: an sbatch script that also runs on a plain host with `bash run.sh`.

Under Slurm each array task runs `srun --kill-on-bad-exit=1 python -m gssm_jax.main ...` (one
process per Slurm task; when one ends with a non-zero code srun ends the others); a retryable exit
code (RETRYABLE of gssm_jax.runtime.exitcodes: 75 a checkpoint saved on a signal, 69 a lost peer,
137 a killed process) requeues the array task, any other code ends it. Each process's exit code is
appended to `stdout/<task>.exits` (`task T process P on HOST: exit RC`), so the record says which
process died first and how. Outside Slurm the script plays Slurm's part: it runs the tasks one
after another, each with nodes x tasks_per_node processes joined through a coordinator on
127.0.0.1, and restarts a task that ended with a retryable code. Every value in the body is quoted
with `shlex.quote`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from gssm_jax.runtime.exitcodes import RETRYABLE
from launch.slurm_config import SlurmConfig, sbatch_options
from launch.tasks import Task

# Characters a run directory may not hold: they cannot be carried by a quoted #SBATCH path.
_UNSAFE_PATH = re.compile(r'["%\\#\x00-\x1f\x7f]')
MAX_LOCAL_RESTARTS = 5  # like Slurm's default MaxBatchRequeue


class ScriptError(ValueError):
    """A value that cannot be written into the job script safely."""


def check_path(path: Path) -> None:
    """Raises ScriptError when `path` cannot appear in an #SBATCH line, naming the character."""
    bad = _UNSAFE_PATH.search(str(path))
    if bad:
        raise ScriptError(
            f"run directory {str(path)!r}: character {bad.group()!r} is not allowed "
            "(Slurm reads '%', '\\', '#' and '\"' in #SBATCH paths itself)"
        )


def job_name(name: str) -> str:
    """`name` reduced to characters every Slurm tool shows as they are."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:128] or "gssm"


def header(name: str, run_dir: Path, slurm: SlurmConfig, num_tasks: int) -> list[str]:
    """The #SBATCH lines: resources, one output file per array task, signal and requeue."""
    output = run_dir / "stdout" / ("%a.out" if num_tasks > 1 else "0.out")
    lines = [f"--job-name={job_name(name)}", f'--output="{output}"', "--open-mode=append"]
    if num_tasks > 1:
        limit = f"%{slurm.max_parallel_tasks}" if slurm.max_parallel_tasks else ""
        lines.append(f"--array=0-{num_tasks - 1}{limit}")
    lines += sbatch_options(slurm)
    lines.append("--requeue")
    return ["#!/bin/bash", *(f"#SBATCH {line}" for line in lines), *slurm.extra_lines]


def task_cases(tasks: Sequence[Task]) -> list[str]:
    """The body of `overrides()`: one `case` arm per task setting its --config flags."""
    arms = []
    for task in tasks:
        flags = " ".join(shlex.quote(flag) for flag in task.overrides)
        arms.append(f"    {task.task_id}) OVERRIDES=({flags}) ;;")
    return arms


def render(
    *,
    name: str,
    run_dir: Path,
    python: str,
    config_file: str,
    tasks: Sequence[Task],
    slurm: SlurmConfig,
    exit_preempted: int,
) -> str:
    """The whole run.sh for `tasks`; `config_file` is the config's path (and `:arg`) in code/."""
    q = shlex.quote
    variables = [
        f"RUN_DIR={q(str(run_dir))}",
        f"PYTHON={q(python)}",
        f"CONFIG={q(config_file)}",
        f"NUM_TASKS={len(tasks)}",
        f"NUM_PROCESSES={slurm.num_processes}",
        f"EXIT_PREEMPTED={int(exit_preempted)}",
        f"RETRYABLE={q(' '.join(str(c) for c in RETRYABLE))}",
        f"MAX_LOCAL_RESTARTS={MAX_LOCAL_RESTARTS}",
    ]
    return "\n".join(
        [
            *header(name, run_dir, slurm, len(tasks)),
            "",
            f"# Written by `python -m launch.submit` for the run {q(name)}.",
            "# `sbatch run.sh` runs it on Slurm; `bash run.sh [TASK_ID ...]` runs it on this host.",
            "# Either way a task whose workdir holds a checkpoint resumes from it.",
            "set -uo pipefail",
            "",
            *variables,
            "",
            "overrides() {  # OVERRIDES := the --config flags of task $1",
            '  case "$1" in',
            *task_cases(tasks),
            "    *) echo \"run.sh: no task '$1' (this run has tasks 0-$((NUM_TASKS - 1)))\" >&2;"
            " return 1 ;;",
            "  esac",
            "}",
            "",
            _BODY,
        ]
    )


_BODY = r"""export PYTHONPATH="$RUN_DIR/code${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$RUN_DIR" || exit 1
TASK_LOG=""

say() {
  local line="[run.sh $(date '+%F %T')] $*"
  echo "$line"
  if [ -n "$TASK_LOG" ]; then echo "$line" >>"$TASK_LOG"; fi
}

retryable() {  # true when exit code $1 is one after which the same command resumes
  case " $RETRYABLE " in *" $1 "*) return 0 ;; esac
  return 1
}

# Runs "$@" as one Slurm task and appends its exit code to $EXITS. It ignores the signals Slurm
# sends to the whole step (gssm_jax.main installs its own handlers), so it outlives the process.
TASK_WRAPPER='trap "" USR1 TERM INT; "$@"; rc=$?
echo "[run.sh $(date "+%F %T")] task $GSSM_TASK process ${SLURM_PROCID:-0} on $(hostname): exit $rc" >>"$EXITS"
exit "$rc"'

main_command() {  # CMD := the gssm_jax.main command line of task $1
  overrides "$1" || return 1
  CMD=("$PYTHON" -m gssm_jax.main --config "$CONFIG" --workdir "$RUN_DIR/runs/$1" "${OVERRIDES[@]}")
}

# --- under Slurm: this is one array task; srun starts one gssm_jax.main per Slurm task ---------
CANCELLED=""

run_slurm() {
  local task=${SLURM_ARRAY_TASK_ID:-0} rc
  # --signal=USR1@T goes to the job steps (gssm_jax.main), not to this shell; SIGTERM here means
  # the job is being cancelled, timed out, preempted or requeued: Slurm decides, we do not requeue.
  trap 'CANCELLED=1; say "batch shell got SIGTERM: no requeue from this script"' TERM
  trap 'say "batch shell got SIGUSR1: ignored (send it to the steps: scancel --signal=USR1 JOBID)"' USR1
  main_command "$task" || return 1
  say "task $task: job ${SLURM_JOB_ID}, attempt $((${SLURM_RESTART_COUNT:-0} + 1)),"\
    "${SLURM_NTASKS:-1} process(es) on ${SLURM_JOB_NODELIST:-?}"
  export GSSM_TASK=$task EXITS="$RUN_DIR/stdout/$task.exits"
  srun --kill-on-bad-exit=1 --label bash -c "$TASK_WRAPPER" run.sh "${CMD[@]}"
  rc=$?
  if retryable "$rc" && [ -z "$CANCELLED" ]; then
    # SLURM_JOB_ID is this array task's own id: only this task goes back to the queue.
    say "task $task: exit $rc, which resumes (see stdout/$task.exits); requeueing job ${SLURM_JOB_ID}"
    scontrol requeue "$SLURM_JOB_ID" ||
      say "task $task: requeue refused; resume with: sbatch $(printf %q "$RUN_DIR/run.sh")"
  fi
  say "task $task: exit $rc"
  return "$rc"
}

# --- on this host: run the tasks one after another, each with NUM_PROCESSES processes ---------
STOP=""
SIGNALS=0
PIDS=()
LOGGERS=()

forward() {  # pass signal $1 once to the running processes (they live in their own sessions)
  SIGNALS=$((SIGNALS + 1))
  if [ "$1" != USR1 ]; then STOP=1; fi
  say "got SIG$1: passing it to ${PIDS[*]:-no process}"
  if [ ${#PIDS[@]} -gt 0 ]; then kill -s "$1" "${PIDS[@]}" 2>/dev/null; fi
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_local() {  # start task $1's processes: PIDS, LOGGERS
  local i port="" fd dist=()
  main_command "$1" || return 1
  PIDS=()
  LOGGERS=()
  if [ "$NUM_PROCESSES" -gt 1 ]; then port=$(free_port) || return 1; fi
  for ((i = 0; i < NUM_PROCESSES; i++)); do
    if [ "$NUM_PROCESSES" -gt 1 ]; then
      dist=("--config.distributed.coordinator=127.0.0.1:$port"
        "--config.distributed.num_processes=$NUM_PROCESSES" "--config.distributed.process_id=$i")
    fi
    exec {fd}> >(sed -u "s/^/$i: /" | tee -a "$TASK_LOG")
    LOGGERS+=("$!")
    # No SLURM_* variables (so main does not take this for an srun step), own session (so a
    # Ctrl-C reaches the processes once, through forward()).
    (unset "${!SLURM_@}"; exec setsid "${CMD[@]}" "${dist[@]}") >&"$fd" 2>&1 &
    PIDS+=("$!")
    exec {fd}>&-
  done
}

wait_pid() {  # exit code of process $1, waiting again when a trapped signal interrupts `wait`
  local seen rc
  while true; do
    seen=$SIGNALS
    wait "$1"
    rc=$?
    if [ "$seen" -eq "$SIGNALS" ]; then return "$rc"; fi
  done
}

run_local_task() {  # the largest exit code of task $1's processes, as srun reports it
  local i pid rc worst=0
  start_local "$1" || return 1
  for i in "${!PIDS[@]}"; do
    pid=${PIDS[$i]}
    wait_pid "$pid"
    rc=$?
    echo "[run.sh $(date '+%F %T')] task $1 process $i on $(hostname): exit $rc" \
      >>"$RUN_DIR/stdout/$1.exits"
    if [ "$rc" -gt "$worst" ]; then worst=$rc; fi
  done
  PIDS=()
  for pid in "${LOGGERS[@]}"; do wait "$pid" 2>/dev/null; done
  return "$worst"
}

run_local() {  # tasks $@ (default: all), each restarted after a preemption like a requeue
  local task rc restarts worst=0 tasks=("$@")
  trap 'forward INT' INT
  trap 'forward TERM' TERM
  trap 'forward USR1' USR1
  if [ ${#tasks[@]} -eq 0 ]; then mapfile -t tasks < <(seq 0 $((NUM_TASKS - 1))); fi
  for task in "${tasks[@]}"; do
    overrides "$task" || return 1
    TASK_LOG="$RUN_DIR/stdout/$task.out"
    restarts=0
    while true; do
      say "task $task: attempt $((restarts + 1)), $NUM_PROCESSES process(es) on this host"
      run_local_task "$task"
      rc=$?
      if ! retryable "$rc" || [ -n "$STOP" ]; then break; fi
      if [ "$restarts" -ge "$MAX_LOCAL_RESTARTS" ]; then break; fi
      restarts=$((restarts + 1))
      say "task $task: exit $rc, which resumes (see stdout/$task.exits); restarting it as Slurm"\
        "would requeue it"
    done
    say "task $task: exit $rc"
    if [ "$rc" -gt "$worst" ]; then worst=$rc; fi
    if [ -n "$STOP" ]; then
      say "stopped; resume with: bash $(printf %q "$RUN_DIR/run.sh")"
      break
    fi
  done
  TASK_LOG=""
  return "$worst"
}

if [ -n "${SLURM_JOB_ID:-}" ] && [ "${GSSM_LAUNCH:-slurm}" != local ]; then
  run_slurm
else
  run_local "$@"
fi
"""
