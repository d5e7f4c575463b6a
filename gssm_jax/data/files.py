"""Training and evaluation from sets written by `gssm_jax.data.write`.

Element k of the training dataset is this process's rows `rows=(lo, hi)` of global batch k, as for
the stream: global batch k holds positions [k * B, (k + 1) * B) of an endless walk through the train
set, epoch after epoch; position p is sequence `perm_e[p mod N]` with e = p // N and `perm_e` a
permutation drawn from (shuffle seed, e). A batch may straddle two epochs. The element index k is
the whole iterator state (`{"next_index": k}` in every checkpoint), so a run resumes exactly
mid-epoch. Evaluation reads the test set in order, with each batch's entropy the mean of the stored
exact entropies of exactly its sequences.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import grain
import numpy as np

from gssm_jax.config import ConfigError
from gssm_jax.data import layout
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, kernels_hash


class DatasetError(ConfigError):
    """A data set that is missing, unfinished, truncated, or written for another graph."""


METADATA_KEYS = (
    "format",
    "graph",
    "graph_seed",
    "data_seed",
    "num_sequences",
    "seq_len",
    "vocab_size",
    "token_dtype",
    "kernels_hash",
    "entropy",
    "files",
)


def _read_metadata(path: str) -> dict[str, Any]:
    try:
        meta = layout.read_json(path)
    except ValueError as e:
        raise DatasetError(f"data file {path}: not valid JSON ({e})") from e
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise DatasetError(f"data file {path}: no field {missing[0]!r}")
    if meta["format"] != layout.FORMAT:
        raise DatasetError(
            f"data file {path}: format {meta['format']!r}, this reader reads {layout.FORMAT!r}"
        )
    return meta


class FileSet:
    """A finished set on disk, checked against its metadata when opened."""

    def __init__(self, path: str) -> None:
        self.path = path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise DatasetError(
                f"data set {path}: no such directory (write it with "
                "`python -m gssm_jax.data.write --config GRID`)"
            )
        if not layout.is_finished(path):
            raise DatasetError(
                f"data set {path}: unfinished (no {layout.DONE} marker); re-run "
                "`python -m gssm_jax.data.write` to complete it"
            )
        self.metadata = meta = _read_metadata(self._file(layout.METADATA))
        self.num_sequences: int = meta["num_sequences"]
        self.seq_len: int = meta["seq_len"]
        self.dtype = np.dtype(meta["token_dtype"])
        self.record_bytes = self.seq_len * self.dtype.itemsize
        tokens_path = self._file(layout.TOKENS)
        want = meta["files"][layout.TOKENS]["bytes"]
        got = os.path.getsize(tokens_path)
        if got != want:
            raise DatasetError(
                f"data file {tokens_path}: {got} bytes, metadata says {want}; the "
                "file is truncated or was replaced: delete the set and re-write it"
            )
        entropy_path = self._file(layout.ENTROPY)
        try:
            self.entropy_N = np.load(entropy_path)
        except ValueError as e:
            raise DatasetError(f"data file {entropy_path}: unreadable ({e})") from e
        if self.entropy_N.shape != (self.num_sequences,):
            raise DatasetError(
                f"data file {entropy_path}: shape {self.entropy_N.shape}, metadata "
                f"says ({self.num_sequences},)"
            )
        self.source = grain.sources.ArrayRecordDataSource(tokens_path)
        if len(self.source) != self.num_sequences:
            raise DatasetError(
                f"data file {tokens_path}: {len(self.source)} records, metadata "
                f"says {self.num_sequences}"
            )

    def _file(self, name: str) -> str:
        path = os.path.join(self.path, name)
        if not os.path.isfile(path):
            raise DatasetError(
                f"data file {path}: missing from the set; delete the set and re-write it"
            )
        return path

    def read(self, seq_idx_B: np.ndarray) -> np.ndarray:
        """Tokens tokens_BxT (int32, as the sampler returns them) of sequences `seq_idx_B`."""
        records = self.source.__getitems__(seq_idx_B.tolist())
        data = b"".join(records)
        if len(data) != len(records) * self.record_bytes:
            bad = next(int(i) for i, r in zip(seq_idx_B, records) if len(r) != self.record_bytes)
            raise DatasetError(
                f"data file {os.path.join(self.path, layout.TOKENS)}: record {bad} "
                f"is not {self.seq_len} tokens of {self.dtype.name}"
            )
        return np.frombuffer(data, self.dtype).reshape(len(records), self.seq_len).astype(np.int32)


def check_matches(fs: FileSet, graph: Graph, tables: Tables, graph_seed: int, seq_len: int) -> None:
    """Raises DatasetError naming the first config field that differs from the set's metadata."""
    meta = fs.metadata

    def fail(field: str, ours: Any, theirs: Any) -> DatasetError:
        return DatasetError(
            f"config {field}={ours!r} does not match data set {fs.path} (written with {theirs!r})"
        )

    if graph.vocab_size != meta["vocab_size"]:
        raise fail(
            f"data.graph {graph.observed.name}.state_dim (vocabulary)",
            graph.vocab_size,
            meta["vocab_size"],
        )
    if seq_len != meta["seq_len"]:
        raise fail("data.seq_len", seq_len, meta["seq_len"])
    ours_graph, theirs_graph = graph.to_dict(), meta["graph"]
    for name in sorted(set(ours_graph) | set(theirs_graph)):
        if name not in theirs_graph or name not in ours_graph:
            raise fail(f"data.graph node {name!r}", ours_graph.get(name), theirs_graph.get(name))
        for field, value in ours_graph[name].items():
            if theirs_graph[name].get(field) != value:
                raise fail(f"data.graph {name}.{field}", value, theirs_graph[name].get(field))
    if graph_seed != meta["graph_seed"]:
        raise fail("data.graph_seed", graph_seed, meta["graph_seed"])
    if kernels_hash(tables) != meta["kernels_hash"]:
        raise fail(
            "kernels_hash (of data.graph, data.graph_seed)",
            kernels_hash(tables),
            meta["kernels_hash"],
        )


def open_checked(path: str, graph: Graph, tables: Tables, data: Any) -> FileSet:
    """Opens the set at `path`, checked against the run config's `data` section."""
    fs = FileSet(path)
    check_matches(fs, graph, tables, data.graph_seed, data.seq_len)
    return fs


def eval_set_path(data: Any) -> str:
    """`data.test_path`, or the `test` set beside `data.path`."""
    if data.test_path:
        return data.test_path
    return os.path.join(os.path.dirname(os.path.abspath(data.path)), "test")


def epoch_permutation(num_sequences: int, shuffle_seed: int, epoch: int) -> np.ndarray:
    """The order of epoch `epoch`: a pure function of (num_sequences, shuffle seed, epoch)."""
    return np.random.default_rng([shuffle_seed, epoch]).permutation(num_sequences)


class FileSource:
    """Random-access view of epochs over a set, one element per global batch (this process's rows).

    `num_sequences`: epochs run over the set's first that many sequences (0: all of them), so one
    written set serves a sweep over the number of training sequences."""

    def __init__(
        self,
        fs: FileSet,
        global_batch: int,
        rows: tuple[int, int],
        num_batches: int,
        shuffle_seed: int,
        num_sequences: int = 0,
    ) -> None:
        if not 0 <= num_sequences <= fs.num_sequences:
            raise DatasetError(
                f"config data.train_sequences={num_sequences}: must lie in [0, "
                f"{fs.num_sequences}], the sequences of {fs.path} (0: all)"
            )
        self.fs, self.global_batch, self.rows = fs, global_batch, rows
        self.num_batches, self.shuffle_seed = num_batches, shuffle_seed
        self.num_sequences = num_sequences or fs.num_sequences
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.num_batches

    def _order(self, epoch: int) -> np.ndarray:
        with self._lock:
            if epoch not in self._orders:
                if len(self._orders) >= 2:
                    del self._orders[min(self._orders)]
                self._orders[epoch] = epoch_permutation(
                    self.num_sequences, self.shuffle_seed, epoch
                )
            return self._orders[epoch]

    def seq_indices(self, k: int) -> np.ndarray:
        """Set indices seq_idx_B of this process's rows of global batch k."""
        lo, hi = self.rows
        pos_B = np.arange(lo, hi, dtype=np.int64) + int(k) * self.global_batch
        n = self.num_sequences
        epoch_B, within_B = pos_B // n, pos_B % n
        seq_idx_B = np.empty_like(pos_B)
        for epoch in np.unique(epoch_B):
            mask = epoch_B == epoch
            seq_idx_B[mask] = self._order(int(epoch))[within_B[mask]]
        return seq_idx_B

    def __getitem__(self, k: int) -> np.ndarray:
        return self.fs.read(self.seq_indices(k))


def eval_batches(
    fs: FileSet, global_batch: int, rows: tuple[int, int], count: int
) -> list[tuple[np.ndarray, float]]:
    """The first `count` global batches of the set in order: (this process's rows, the mean stored
    entropy of all the batch's sequences)."""
    if count * global_batch > fs.num_sequences:
        raise DatasetError(
            f"config eval.batches={count}: {count} batches of data.batch_size={global_batch} "
            f"need {count * global_batch} sequences, test set {fs.path} has {fs.num_sequences}"
        )
    lo, hi = rows
    out = []
    for k in range(count):
        start = k * global_batch
        local_BxT = fs.read(np.arange(start + lo, start + hi))
        out.append((local_BxT, float(fs.entropy_N[start : start + global_batch].mean())))
    return out
