"""What a written set looks like on disk, shared by the writer and the reader.

    ROOT/index.json                   grid id -> point, graph, graph seed, data seed, set paths
    ROOT/<grid id>/train/             one set (test/ alike)
        tokens.array_record           one record per sequence: seq_len tokens, `token_dtype` bytes
        entropy.npy                   float64 (num_sequences,): entropy of each sequence
        entropy_stderr.npy            float64 (num_sequences,): its Monte Carlo standard error
                                      (graphs with `context` nodes only)
        metadata.json                 graph, seeds, sizes, kernels hash, entropy mean and stderr
        DONE                          written last: a set without it is unfinished

A set is assembled in a hidden temporary sibling (`.train.tmp-HOST-PID`) and renamed into place, so
its final name only ever holds a finished set.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import numpy as np

FORMAT = "gssm_jax.data/1"
TOKENS = "tokens.array_record"
ENTROPY = "entropy.npy"
ENTROPY_STDERR = "entropy_stderr.npy"
METADATA = "metadata.json"
DONE = "DONE"
INDEX = "index.json"
WRITER_OPTIONS = "group_size:1"  # one record per chunk: what random access (and Grain) needs
READER_OPTIONS = "readahead_buffer_size:0"  # random access: no read-ahead


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type holding tokens 0 .. vocab_size-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size={vocab_size}: too large for uint32 tokens")


def is_finished(set_dir: str) -> bool:
    return os.path.isfile(os.path.join(set_dir, DONE))


def read_json(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    """Writes `path` through a temporary file and a rename, so readers see old or new, never half."""
    tmp = f"{path}.tmp-{socket.gethostname()}-{os.getpid()}"  # unique across array tasks
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
