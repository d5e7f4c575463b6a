"""Real text as fixed-length token windows: packed sources, a Grain train walk, held-out batches.

Packing: each source's documents (in `text_sources` order) become one token stream, each document
as BOS, its tokens, EOS; the stream is cut into non-overlapping windows of `seq_len` tokens, so a
window may cross a document boundary (it then holds EOS BOS). Split: the last `heldout_fraction`
of each source's stream (rounded to a whole token) is held out; train windows tile the stream
from token 0 up to that point and held-out windows tile it from there, so no token is in both; the
partial window at the end of each part is dropped.

Training (`TextWalk`) has the contract of the GSSM stream and of `files.TrainWalk`: element k is
this process's rows [lo, hi) of global batch k, {"tokens": int32 (hi - lo, seq_len)}. Each source's
train windows are shuffled (Grain's shuffle, seeded by `shuffle_seed` and the source's name,
reshuffled every epoch of that source) and repeated; the sources are interleaved by their weights
(Grain's deterministic mix), so every stretch of the walk holds them in proportion.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping

import grain
import numpy as np

from gssm_jax.data.bursts import burst_stream
from gssm_jax.data.text_config import check_text_config, text_section, text_sources, text_weights
from gssm_jax.data.text_sources import TextDataError, read_documents
from gssm_jax.data.text_tokenizers import Tokenizer, load_tokenizer, token_stream


@dataclasses.dataclass(frozen=True)
class SourceStats:
    """One source of a corpus: what it read and how it was split."""

    name: str
    path: str
    weight: float
    documents: int
    text_bytes: int  # UTF-8 bytes of its documents
    tokens: int  # of its stream, BOS/EOS included
    heldout_start: int  # first held-out token of the stream
    train_windows: int
    heldout_windows: int


@dataclasses.dataclass(frozen=True, eq=False)
class TextCorpus:
    """Every source's train and held-out windows, stacked source after source (sorted by name)."""

    tokenizer: Tokenizer
    seq_len: int
    sources: tuple[SourceStats, ...]
    # (windows, seq_len) each, uint16 tokens (int32 for a vocabulary past 65,536)
    train: np.ndarray = dataclasses.field(repr=False)
    heldout: np.ndarray = dataclasses.field(repr=False)

    def offsets(self, heldout: bool = False) -> list[int]:
        """Row of each source's first window in `heldout` (or `train`)."""
        counts = [s.heldout_windows if heldout else s.train_windows for s in self.sources]
        return [int(o) for o in np.cumsum([0] + counts[:-1])]

    def describe(self) -> list[str]:
        """One line per source, for the run log."""
        return [
            f"text source {s.name} ({s.path}, weight {s.weight:g}): {s.documents} documents, "
            f"{s.text_bytes:,} bytes, {s.tokens:,} tokens -> {s.train_windows:,} train + "
            f"{s.heldout_windows:,} held-out windows of {self.seq_len}"
            for s in self.sources
        ]


def split_stream(stream_N: np.ndarray, seq_len: int, heldout_fraction: float) -> tuple:
    """(train_WxT, heldout_HxT, heldout_start) of one source's stream (see the module docstring)."""
    n = len(stream_N)
    start = n - round(heldout_fraction * n)
    w, h = start // seq_len, (n - start) // seq_len
    train_WxT = stream_N[: w * seq_len].reshape(w, seq_len)
    heldout_HxT = stream_N[start : start + h * seq_len].reshape(h, seq_len)
    return train_WxT, heldout_HxT, start


def load_corpus(
    sources: Mapping[str, str],
    weights: Mapping[str, float],
    tokenizer: Tokenizer,
    seq_len: int,
    heldout_fraction: float,
    jsonl_field: str = "text",
) -> TextCorpus:
    """Reads, tokenises, packs and splits every source; TextDataError naming a source too short
    for one window of train or of held-out text."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    stats, train, heldout = [], [], []
    for name in sorted(sources):
        path = sources[name]
        documents = read_documents(path, jsonl_field)
        stream_N = token_stream(tokenizer, documents).astype(dtype)
        train_WxT, heldout_HxT, start = split_stream(stream_N, seq_len, heldout_fraction)
        for part, windows, tokens in (
            ("train", train_WxT, start),
            ("held-out", heldout_HxT, len(stream_N) - start),
        ):
            if len(windows) == 0:
                raise TextDataError(
                    f"text source {path}: its {part} part is {tokens} tokens, shorter than one "
                    f"window of data.seq_len={seq_len} (data.text.heldout_fraction="
                    f"{heldout_fraction}); give more text or a shorter data.seq_len"
                )
        stats.append(
            SourceStats(
                name,
                path,
                float(weights[name]),
                len(documents),
                sum(len(d.encode("utf-8")) for d in documents),
                len(stream_N),
                start,
                len(train_WxT),
                len(heldout_HxT),
            )
        )
        train.append(train_WxT)
        heldout.append(heldout_HxT)
    return TextCorpus(
        tokenizer, seq_len, tuple(stats), np.concatenate(train), np.concatenate(heldout)
    )


def corpus_from_config(data: Mapping) -> TextCorpus:
    """The corpus of a run's `data` section (checked first; see text_config)."""
    check_text_config(data)
    section = text_section(data)
    return load_corpus(
        text_sources(data),
        text_weights(data),
        load_tokenizer(section["tokenizer"]),
        int(data["seq_len"]),
        float(section["heldout_fraction"]),
        section["jsonl_field"],
    )


class WindowIds(grain.MapDataset):
    """The rows offset .. offset + n - 1 of a corpus's stacked windows: one source's windows.

    A bare lookup (as `files.SequenceIndices`), not `MapDataset.range(...).map(...)`, whose
    per-element stats wrappers the walk would pay once per window.
    """

    def __init__(self, n: int, offset: int) -> None:
        super().__init__()
        self._n, self._offset = n, offset

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._offset + index % self._n

    def __str__(self) -> str:
        return f"WindowIds({self._n}, offset={self._offset})"


def _mixed(corpus: TextCorpus, parts: list[grain.MapDataset]) -> grain.MapDataset:
    if len(parts) == 1:
        return parts[0]
    return grain.MapDataset.mix(parts, [s.weight for s in corpus.sources])


def source_seed(shuffle_seed: int, name: str) -> int:
    """The shuffle seed of source `name`: its order does not change when sources are added."""
    return int(
        np.random.SeedSequence([shuffle_seed, zlib.crc32(name.encode())]).generate_state(1)[0]
    )


def heldout_order(corpus: TextCorpus) -> grain.MapDataset:
    """Rows of `heldout` in eval order: each source's held-out windows in stream order,
    interleaved by weight, ending when a source runs out."""
    offsets = corpus.offsets(heldout=True)
    parts = [WindowIds(s.heldout_windows, o) for s, o in zip(corpus.sources, offsets)]
    return _mixed(corpus, parts)


# window ids `TextWalk.stream` draws at a time (as files.BURST_SEQUENCES: one GIL handover a burst)
BURST_WINDOWS = 1024


@dataclasses.dataclass(frozen=True)
class TextWalk:
    """This process's `rows` of the first `num_batches` global batches of the endless mixed,
    shuffled walk through the corpus's train windows."""

    corpus: TextCorpus
    global_batch: int
    rows: tuple[int, int]
    num_batches: int
    shuffle_seed: int

    def __post_init__(self) -> None:
        lo, hi = self.rows
        if not 0 <= lo < hi <= self.global_batch:
            raise ValueError(f"rows {self.rows} are not a range of a batch of {self.global_batch}")

    def _walk(self) -> grain.MapDataset:
        offsets = self.corpus.offsets()
        parts = [
            WindowIds(s.train_windows, o)
            .shuffle(seed=source_seed(self.shuffle_seed, s.name))
            .repeat()
            for s, o in zip(self.corpus.sources, offsets)
        ]
        return _mixed(self.corpus, parts)

    def ids(self, size: int | None = None) -> grain.MapDataset:
        """Rows of `train` of the walk, `size` (default: a global batch) at a time."""
        return self._walk().batch(size or self.global_batch, batch_fn=np.asarray)

    def _read(self, ids_B: np.ndarray) -> dict[str, np.ndarray]:
        lo, hi = self.rows
        return {"tokens": self.corpus.train[ids_B[lo:hi]].astype(np.int32)}

    def dataset(self) -> grain.MapDataset:
        """Element k: this process's rows of global batch k, with random access."""
        return self.ids()[: self.num_batches].map(self._read)

    def stream(self, prefetch: int = 4) -> grain.IterDataset:
        """`dataset()`'s elements in order, as the trainer reads them: ids drawn BURST_WINDOWS at
        a time in one background thread, `prefetch` batches ahead; its iterator state (Grain's)
        resumes exactly."""
        return burst_stream(
            self.ids, self.global_batch, self.num_batches, self._read, prefetch, BURST_WINDOWS
        )


def eval_batches(
    corpus: TextCorpus, global_batch: int, rows: tuple[int, int], count: int
) -> list[dict[str, np.ndarray]]:
    """The first `count` global batches of `heldout_order`, this process's `rows` of each, with
    the counts of the whole global batch's scored targets (tokens[:, 1:]) and of their bytes."""
    order = heldout_order(corpus)
    if count * global_batch > len(order):
        per_source = ", ".join(f"{s.name} {s.heldout_windows}" for s in corpus.sources)
        raise TextDataError(
            f"config eval.batches={count}: {count} batches of data.batch_size={global_batch} need "
            f"{count * global_batch} held-out windows, the corpus has {len(order)} in its mix "
            f"({per_source}); raise data.text.heldout_fraction or lower eval.batches"
        )
    lo, hi = rows
    batches = []
    for k in range(count):
        ids_B = np.array([order[i] for i in range(k * global_batch, (k + 1) * global_batch)])
        tokens_BxT = corpus.heldout[ids_B].astype(np.int32)
        batches.append(
            {
                "tokens": tokens_BxT[lo:hi],
                "scored_tokens": np.int64(tokens_BxT[:, 1:].size),
                "scored_bytes": np.int64(corpus.tokenizer.token_bytes_V[tokens_BxT[:, 1:]].sum()),
            }
        )
    return batches
