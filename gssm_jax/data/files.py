"""Training and evaluation from sets written by `gssm_jax.write_data`.

Training reads Grain's shuffled, repeated, batched walk through the train set (`TrainWalk`);
its iterator state goes into every checkpoint (Grain's own checkpoint handler), so a run resumes
exactly mid-epoch. Each element carries the stored per-sequence entropies of its sequences, the
train-time baseline. Evaluation reads the test set in order, with each batch's entropy the mean of
the stored entropies of exactly its sequences.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from gssm_jax.config import ConfigError
from gssm_jax.data import layout
from gssm_jax.data.bursts import burst_stream
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, kernels_hash

READ_BUFFER_BYTES = 32 << 10  # the reader's file buffer: records are small and read at random


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


@contextlib.contextmanager
def _named(path: str) -> Iterator[None]:
    """Turns the ArrayRecord reader's error on a corrupted file into a DatasetError naming it."""
    try:
        yield
    except RuntimeError as e:
        raise DatasetError(
            f"data file {path}: corrupted ({str(e).splitlines()[0]}); delete the set and re-write it"
        ) from e


class FileSet:
    """A finished set on disk, checked against its metadata when opened."""

    def __init__(self, path: str) -> None:
        self.path = path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise DatasetError(
                f"data set {path}: no such directory (write it with "
                "`python -m gssm_jax.write_data --config GRID`)"
            )
        if not layout.is_finished(path):
            raise DatasetError(
                f"data set {path}: unfinished (no {layout.DONE} marker); re-run "
                "`python -m gssm_jax.write_data` to complete it"
            )
        self.metadata = meta = _read_metadata(self._file(layout.METADATA))
        self.num_sequences: int = meta["num_sequences"]
        self.seq_len: int = meta["seq_len"]
        self.dtype = np.dtype(meta["token_dtype"])
        self.record_bytes = self.seq_len * self.dtype.itemsize
        self.tokens_path = tokens_path = self._file(layout.TOKENS)
        want = meta["files"][layout.TOKENS]["bytes"]
        got = os.path.getsize(tokens_path)
        if got != want:
            raise DatasetError(
                f"data file {tokens_path}: {got} bytes, metadata says {want}; the "
                "file is truncated or was replaced: delete the set and re-write it"
            )
        self.entropy_N = self._per_sequence(layout.ENTROPY)
        self.stderr_N = None  # Monte Carlo standard errors, in sets of context graphs
        if layout.ENTROPY_STDERR in meta["files"]:
            self.stderr_N = self._per_sequence(layout.ENTROPY_STDERR)
        with _named(tokens_path):
            self.reader = ArrayRecordReader(
                tokens_path, layout.READER_OPTIONS, file_reader_buffer_size=READ_BUFFER_BYTES
            )
        if not self.reader.ok():
            raise DatasetError(
                f"data file {tokens_path}: corrupted (not a readable ArrayRecord file); delete "
                "the set and re-write it"
            )
        if self.reader.num_records() != self.num_sequences:
            raise DatasetError(
                f"data file {tokens_path}: {self.reader.num_records()} records, metadata "
                f"says {self.num_sequences}"
            )

    def _file(self, name: str) -> str:
        path = os.path.join(self.path, name)
        if not os.path.isfile(path):
            raise DatasetError(
                f"data file {path}: missing from the set; delete the set and re-write it"
            )
        return path

    def _per_sequence(self, name: str) -> np.ndarray:
        """The set's file `name` of one float a sequence."""
        path = self._file(name)
        try:
            values_N = np.load(path)
        except ValueError as e:
            raise DatasetError(f"data file {path}: unreadable ({e})") from e
        if values_N.shape != (self.num_sequences,):
            raise DatasetError(
                f"data file {path}: shape {values_N.shape}, metadata says ({self.num_sequences},)"
            )
        return values_N

    def read(self, seq_idx_B: np.ndarray) -> np.ndarray:
        """Tokens tokens_BxT (int32, as the sampler returns them) of sequences `seq_idx_B`.

        One batched read in file order (the reader is shared by the loader's threads; Grain's
        ArrayRecordDataSource would start a thread pool for every batch), put back in batch order.
        """
        order_B = np.argsort(seq_idx_B, kind="stable")
        with _named(self.tokens_path):
            records = self.reader.read(seq_idx_B[order_B].tolist())
        data = b"".join(records)
        if len(data) != len(records) * self.record_bytes:
            bad = next(
                int(i) for i, r in zip(seq_idx_B[order_B], records) if len(r) != self.record_bytes
            )
            raise DatasetError(
                f"data file {self.tokens_path}: record {bad} "
                f"is not {self.seq_len} tokens of {self.dtype.name}"
            )
        tokens_BxT = np.empty((len(records), self.seq_len), np.int32)
        tokens_BxT[order_B] = np.frombuffer(data, self.dtype).reshape(len(records), self.seq_len)
        return tokens_BxT

    def batch(self, seq_idx_B: np.ndarray, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """A loader element: the tokens of this process's `rows=(lo, hi)` of the batch of sequences
        `seq_idx_B`, and the stored entropies of all of them (with their Monte Carlo standard
        errors where the set has them)."""
        lo, hi = rows
        element = {"tokens": self.read(seq_idx_B[lo:hi]), "entropy": self.entropy_N[seq_idx_B]}
        if self.stderr_N is not None:
            element["entropy_stderr"] = self.stderr_N[seq_idx_B]
        return element


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


class SequenceIndices(grain.MapDataset):
    """The indices 0 .. n-1 of a set's sequences: what `TrainWalk` shuffles.

    `grain.MapDataset.range(n)` yields the same elements, but its `__getitem__` goes through
    Grain's per-element stats and profiler-trace wrappers (live whenever JAX is imported), about
    2 us for each of the batch's sequences on top of the shuffle's own cost; the walk reads this
    once per sequence, so it is kept to a bare lookup.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return index % self._n

    def __str__(self) -> str:
        return f"SequenceIndices({self._n})"


# sequence indices `TrainWalk.stream` draws at a time (about 10 ms of Grain's shuffle)
BURST_SEQUENCES = 1024


@dataclasses.dataclass(frozen=True)
class TrainWalk:
    """This process's `rows` of the first `num_batches` global batches of an endless walk through
    the set's first `num_sequences` sequences (0: all of them, so one written set serves a sweep
    over the number of training sequences), epoch after epoch, each epoch in its own order
    (Grain's shuffle, reseeded per epoch by repeat); a batch may straddle two epochs."""

    fs: FileSet
    global_batch: int
    rows: tuple[int, int]
    num_batches: int
    shuffle_seed: int
    num_sequences: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.num_sequences <= self.fs.num_sequences:
            raise DatasetError(
                f"config data.train_sequences={self.num_sequences}: must lie in [0, "
                f"{self.fs.num_sequences}], the sequences of {self.fs.path} (0: all)"
            )

    def _batched(self, size: int) -> grain.MapDataset:
        """The walk's sequence indices, `size` at a time (one int64 array each)."""
        walk = SequenceIndices(self.num_sequences or self.fs.num_sequences)
        walk = walk.shuffle(seed=self.shuffle_seed).repeat()
        return walk.batch(size, batch_fn=np.asarray)

    def _read(self, seq_idx_B: np.ndarray) -> dict[str, np.ndarray]:
        return self.fs.batch(seq_idx_B, self.rows)

    def dataset(self) -> grain.MapDataset:
        """Element k: `fs.batch` of global batch k, with random access."""
        return self._batched(self.global_batch)[: self.num_batches].map(self._read)

    def stream(self, prefetch: int = 4) -> grain.IterDataset:
        """`dataset()`'s elements in order, as the trainer reads them: in one background thread,
        `prefetch` elements ahead, the walk drawn BURST_SEQUENCES at a time (`bursts`); its
        iterator state (Grain's) resumes mid-epoch."""
        return burst_stream(
            self._batched,
            self.global_batch,
            self.num_batches,
            self._read,
            prefetch,
            BURST_SEQUENCES,
        )


def eval_batches(
    fs: FileSet, global_batch: int, rows: tuple[int, int], count: int
) -> list[dict[str, np.ndarray]]:
    """`fs.batch` of the first `count` global batches of the set, in order."""
    if count * global_batch > fs.num_sequences:
        raise DatasetError(
            f"config eval.batches={count}: {count} batches of data.batch_size={global_batch} "
            f"need {count * global_batch} sequences, test set {fs.path} has {fs.num_sequences}"
        )
    return [
        fs.batch(np.arange(k * global_batch, (k + 1) * global_batch), rows) for k in range(count)
    ]
