"""Metric sinks: one JSON line per record under DIR/metrics/, TensorBoard scalars, a console line,
and any further record sinks (wandb: gssm_jax/train/wandb_sink.py) the writer forwards to.

Only process 0 writes files; every process may print. Values are plain Python numbers by the time
they get here (the loop fetches them from device once per logged step).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

from tensorboardX import summary as tb_summary
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2

from gssm_jax.runtime.writes import WriteError, cause_of, path_of


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class RecordSink(Protocol):
    """Where MetricsWriter also sends each record (after writing it), and closes at the end."""

    def write(self, stream: str, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class _Written:
    """Turns an OSError of a full disk, quota, read-only or forbidden folder into WriteError."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            cause = cause_of(error)
            if cause is not None:
                raise WriteError(path_of(error, self.path), cause) from error


class TensorBoardEvents:
    """TensorBoard scalars appended to one event file in the calling thread, flushed per record.

    tensorboardX's SummaryWriter writes from a thread of its own, where a failed write is a
    traceback nobody can catch (and a queue that fills and blocks); here it is a WriteError.
    """

    def __init__(self, logdir: str) -> None:
        os.makedirs(logdir, exist_ok=True)
        self._events = EventsWriter(os.path.join(logdir, "events"))
        self.path = self._events._file_name

    def scalars(self, values: dict[str, float], step: int) -> None:
        with _Written(self.path):
            for tag, value in values.items():
                event = event_pb2.Event(
                    wall_time=time.time(), step=step, summary=tb_summary.scalar(tag, value)
                )
                self._events.write_event(event)
            self._events.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write was reported when it happened
            self._events.close()


class MetricsWriter:
    """Appends records to DIR/metrics/<stream>.jsonl and DIR/tensorboard/ (process 0 only), and
    hands each to `sinks`. Each record is flushed before `write` returns, so a failed write (a
    full disk, say) is a WriteError naming the file, raised to the loop."""

    def __init__(self, workdir: str, enabled: bool, sinks: Sequence[RecordSink] = ()) -> None:
        self.enabled = enabled
        self.sinks = list(sinks)
        self._files: dict[str, Any] = {}
        self._tb: TensorBoardEvents | None = None
        if enabled:
            self._dir = os.path.join(workdir, "metrics")
            with _Written(self._dir):
                os.makedirs(self._dir, exist_ok=True)
            with _Written(os.path.join(workdir, "tensorboard")):
                self._tb = TensorBoardEvents(os.path.join(workdir, "tensorboard"))

    def write(self, stream: str, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        path = os.path.join(self._dir, f"{stream}.jsonl")
        with _Written(path):
            if stream not in self._files:
                self._files[stream] = open(path, "a")  # noqa: SIM115
            f = self._files[stream]
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            f.flush()
        scalars = {}
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key != "step" and number and math.isfinite(value):  # a nan/inf is in the jsonl
                scalars[f"{stream}/{key}"] = value
        assert self._tb is not None  # an enabled writer's, until close()
        self._tb.scalars(scalars, record.get("step", 0))
        for sink in self.sinks:
            sink.write(stream, record)

    def close(self) -> None:
        for f in self._files.values():
            with contextlib.suppress(OSError):  # its failed write was reported when it happened
                f.close()
        self._files.clear()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        for sink in self.sinks:
            sink.close()
        self.sinks.clear()


def _rows(text: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """(line, record) of each complete line, and the lines dropped: a last line without its
    newline (a write cut short by a kill) and any line that is not a JSON object."""
    kept, dropped = [], []
    lines = text.split("\n")
    torn = lines.pop()  # "" when the text ends with a newline
    if torn.strip():
        dropped.append(torn)
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            kept.append((line + "\n", record))
        else:
            dropped.append(line)
    return kept, dropped


def truncate_after(workdir: str, step: int) -> list[str]:
    """Drops metric lines past `step` (left by a run killed after its last checkpoint) and torn
    lines (a kill mid-write), so a resume records each step once; returns a note per file that
    lost torn lines."""
    mdir = os.path.join(workdir, "metrics")
    if not os.path.isdir(mdir):
        return []
    notes = []
    for name in sorted(os.listdir(mdir)):
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(mdir, name)
        with open(path) as f:
            text = f.read()
        rows, dropped = _rows(text)
        kept = [line for line, record in rows if record.get("step", 0) <= step]
        if dropped:
            notes.append(f"dropped {len(dropped)} torn line(s) of {path} (a write cut short)")
        if dropped or len(kept) != len(rows):
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, path)
    return notes


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def console_line(record: dict[str, Any], total_steps: int, elapsed_s: float) -> str:
    """`step N/M | loss .. | entropy .. | kl_gap .. | .. tok/s | elapsed H:MM:SS | eta H:MM:SS`
    (a text run: `bits_per_byte ..` where a GSSM run has entropy and kl_gap); the ETA is the
    remaining steps at this window's step time (eval and checkpoints excluded)."""
    step = record["step"]
    parts = [f"step {step}/{total_steps}"]
    for key in ("loss", "entropy", "kl_gap", "bits_per_byte", "grad_norm", "lr"):
        if record.get(key) is not None:
            parts.append(f"{key} {record[key]:.4g}")
    parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    parts.append(f"elapsed {_clock(elapsed_s)}")
    parts.append(f"eta {_clock(max(total_steps - step, 0) * record['step_time_s'])}")
    return " | ".join(parts)
