"""Test support: reading back what wandb wrote offline, the records of
`offline-run-*/run-<id>.wandb`, so the tests check wandb's own output without a server.

wandb (0.31) has no Python reader of its transaction log, so this reads the format itself: a
7-byte header (`:W&B`, 0xBEE1, version 0), then 32 KiB blocks of chunks, each a 7-byte header
(CRC-32 of type byte + payload, payload length, type: full, first, middle, last) and its payload;
a whole record is one `wandb_internal_pb2.Record` protobuf, parsed with wandb's own message
classes. `wandb sync` is what uploads these directories.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAGIC = b":W&B\xe1\xbe\x00"
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class TransactionLogError(ValueError):
    """A .wandb file that is not a transaction log, or is damaged."""


def raw_records(path: str | Path) -> Iterator[bytes]:
    """The serialized records of one .wandb file, in order (a chunk cut off at the end, as a
    writer still at work leaves it, ends the iteration)."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise TransactionLogError(f"{path}: not a wandb transaction log (header {data[:7]!r})")
    pos, pending = len(MAGIC), b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # a block's tail too short for a chunk header is zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if len(payload) < length:
            return
        if crc != zlib.crc32(payload, zlib.crc32(bytes([kind]))):
            raise TransactionLogError(f"{path}: bad checksum at byte {pos}")
        pos += CHUNK_HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload
            pending = b""
        else:
            raise TransactionLogError(f"{path}: unknown chunk type {kind} at byte {pos}")


def records(path: str | Path) -> Iterator[Any]:
    """The records of one .wandb file as `wandb_internal_pb2.Record` messages."""
    from wandb.proto import wandb_internal_pb2

    for raw in raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        yield record


def _items(items) -> dict[str, Any]:
    """{key: value} of protobuf items holding `key` or `nested_key` and `value_json`."""
    out: dict[str, Any] = {}
    for item in items:
        key = "/".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json)
    return out


@dataclasses.dataclass
class OfflineRun:
    """One offline run directory (one start or resume of a wandb run), decoded."""

    path: Path
    run_id: str
    project: str
    group: str
    name: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]  # one row per committed step, `_step` included
    summary: dict[str, Any]  # the last value of every key updated
    artifacts: list[dict[str, Any]]  # name, type and file paths of each logged artifact
    files: list[str]  # paths under files/ the run saved (media included)
    exited: bool


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Decodes `run_dir` (`.../wandb/offline-run-<time>-<id>`), which holds one .wandb file."""
    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("*.wandb"))
    if len(logs) != 1:
        raise TransactionLogError(f"{run_dir}: expected one .wandb file, found {len(logs)}")
    run = OfflineRun(run_dir, "", "", "", "", [], {}, [], {}, [], [], False)
    for record in records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.group = r.run_id, r.project, r.run_group
            run.name, run.tags = r.display_name, list(r.tags)
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "artifact":
            a = record.artifact
            paths = [entry.path for entry in a.manifest.contents]
            run.artifacts.append({"name": a.name, "type": a.type, "files": paths})
        elif kind == "files":
            run.files.extend(f.path for f in record.files.files)
        elif kind == "exit":
            run.exited = True
    run.config.pop("_wandb", None)
    return run


def offline_runs(wandb_dir: str | Path, run_id: str | None = None) -> list[OfflineRun]:
    """Every offline run under `wandb_dir` (a folder holding `offline-run-*`), oldest first; with
    `run_id`, only that run's starts and resumes."""
    dirs = sorted(Path(wandb_dir).glob("offline-run-*"))  # a second start within a second: ...-1
    runs = [read_offline_run(d) for d in dirs]
    return [r for r in runs if run_id is None or r.run_id == run_id]
