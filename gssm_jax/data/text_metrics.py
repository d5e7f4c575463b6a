"""Bits per token and bits per byte of a text model's loss, and the unigram baseline.

The loss is the mean next-token loss in nats over a batch's targets, tokens[:, 1:]. Bits per byte
divides the bits of ALL those targets, BOS/EOS included (the model must predict document ends),
by the bytes of text the targets stand for (`token_bytes_V`: 1 for a byte token, 0 for a special;
for SentencePiece the UTF-8 bytes its pieces spell, after the model's own normalisation), so
specials cost bits but add no bytes. Uniform guessing over 256 bytes is 8 bits per byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gssm_jax.data.text import TextCorpus


def bits_per_token(mean_loss_nats: float) -> float:
    """A mean loss in nats per token, in bits per token."""
    return mean_loss_nats / math.log(2)


def bits_per_byte(mean_loss_nats: float, scored_tokens: int, scored_bytes: int) -> float:
    """Bits per byte of text of a mean loss over `scored_tokens` targets spelling `scored_bytes`."""
    return bits_per_token(mean_loss_nats) * scored_tokens / scored_bytes


def scored_counts(tokens_BxT: np.ndarray, token_bytes_V: np.ndarray) -> tuple[int, int]:
    """(targets, bytes they stand for) of a batch: its tokens[:, 1:]."""
    targets_BxL = tokens_BxT[:, 1:]
    return int(targets_BxL.size), int(token_bytes_V[targets_BxL].sum())


def unigram_probs(corpus: TextCorpus) -> np.ndarray:
    """p_V of the unigram token model of the train windows: each source's counts with add-one
    smoothing, normalised, then mixed by the sources' weights (the mix the train walk draws)."""
    V = corpus.tokenizer.vocab_size
    mixed_V = np.zeros(V)
    for s, o in zip(corpus.sources, corpus.offsets()):
        counts_V = np.bincount(corpus.train[o : o + s.train_windows].ravel(), minlength=V)
        mixed_V += s.weight * (counts_V + 1) / (counts_V.sum() + V)
    return mixed_V / mixed_V.sum()


def unigram_baseline(
    corpus: TextCorpus, batches: Sequence[np.ndarray] | None = None
) -> dict[str, float]:
    """Bits per token and per byte of the train split's unigram model (`unigram_probs`) on the
    targets of `batches` (token arrays; default: every held-out window of the corpus)."""
    batches = [corpus.heldout] if batches is None else batches
    bits_V = -np.log2(unigram_probs(corpus))
    bits, tokens, nbytes = 0.0, 0, 0
    for tokens_BxT in batches:
        t, b = scored_counts(tokens_BxT, corpus.tokenizer.token_bytes_V)
        bits += float(bits_V[tokens_BxT[:, 1:]].sum())
        tokens, nbytes = tokens + t, nbytes + b
    return {"bits_per_token": bits / tokens, "bits_per_byte": bits / nbytes}
