"""Text as token windows: packing and the held-out split, the mixed shuffled walk, per-process
rows, exact resume from a checkpoint, held-out batches, bits per byte and the unigram baseline."""

from __future__ import annotations

import dataclasses
import math
import re

import grain
import numpy as np
import pytest

from gssm_jax.data import text, text_metrics
from gssm_jax.data.text_sources import TextDataError
from gssm_jax.data.text_tokenizers import ByteTokenizer, token_stream
from gssm_jax.train import checkpoint

T = 32  # window length of these tests


def _numbered(first: int, count: int) -> str:
    """Lines `line 00000` .. : every window of a source of them is different text."""
    return "".join(f"line {i:05d}\n" for i in range(first, first + count))


def _corpus(tmp_path, texts: dict[str, list[str]], weights=None, seq_len=T, fraction=0.1):
    """A corpus of sources {name: documents}, each written as a folder of .txt files."""
    sources = {}
    for name, documents in texts.items():
        folder = tmp_path / name
        folder.mkdir(parents=True)
        for i, doc in enumerate(documents):
            (folder / f"{i:03d}.txt").write_text(doc, encoding="utf-8")
        sources[name] = str(folder)
    weights = weights or {n: 1.0 for n in texts}
    return text.load_corpus(sources, weights, ByteTokenizer(), seq_len, fraction)


@pytest.fixture
def two_sources(tmp_path):
    """`plays` (3 documents) and `poems` (1), weights 3:1, of distinct numbered lines."""
    texts = {
        "plays": [_numbered(0, 300), _numbered(300, 200), _numbered(500, 100)],
        "poems": [_numbered(10_000, 400)],
    }
    return _corpus(tmp_path, texts, {"plays": 3, "poems": 1})


def test_documents_are_packed_with_bos_eos_and_tiled_into_windows(tmp_path):
    docs = ["héllo\n", "second document", "x" * 300]
    corpus = _corpus(tmp_path, {"a": docs}, fraction=0.2)
    tok = corpus.tokenizer
    stream_N = np.concatenate([[tok.bos_id, *d.encode("utf-8"), tok.eos_id] for d in docs]).astype(
        np.int32
    )
    np.testing.assert_array_equal(token_stream(tok, docs), stream_N)
    (s,) = corpus.sources
    n = len(stream_N)
    assert (s.documents, s.tokens, s.text_bytes) == (3, n, n - 6)
    assert s.heldout_start == n - round(0.2 * n)
    assert (
        s.train_windows == s.heldout_start // T and s.heldout_windows == (n - s.heldout_start) // T
    )
    np.testing.assert_array_equal(corpus.train, stream_N[: s.train_windows * T].reshape(-1, T))
    start = s.heldout_start
    np.testing.assert_array_equal(
        corpus.heldout, stream_N[start : start + s.heldout_windows * T].reshape(-1, T)
    )
    assert corpus.train.dtype == np.uint16


def test_heldout_text_never_appears_in_train_windows(two_sources):
    def whole_lines(windows_WxT):
        tok = two_sources.tokenizer
        return {m for row in windows_WxT for m in re.findall(r"line \d{5}\n", tok.decode(row))}

    train, heldout = whole_lines(two_sources.train), whole_lines(two_sources.heldout)
    assert len(heldout) > 40 and len(train) > 500  # whole lines inside one window
    assert not train & heldout
    # the held-out lines are each source's last tenth
    numbers = {int(line[5:]) for line in heldout}
    assert all(530 <= i < 600 or 10_355 <= i < 10_400 for i in numbers)
    assert min(numbers) < 560 and max(numbers) > 10_390


def test_a_source_shorter_than_a_window_names_the_part(tmp_path):
    with pytest.raises(TextDataError, match=r"a: its train part is \d+ tokens.*data.seq_len=32"):
        _corpus(tmp_path / "1", {"a": ["tiny"]})
    # 40 tokens: 36 train, 4 held-out at fraction 0.1
    with pytest.raises(TextDataError, match=r"its held-out part is 4 tokens.*heldout_fraction=0.1"):
        _corpus(tmp_path / "2", {"a": ["y" * 38]})


def _ids(walk: text.TextWalk, count: int) -> np.ndarray:
    return np.stack([walk.ids()[k] for k in range(count)])


def test_each_epoch_of_a_source_visits_every_window_once_in_a_new_order(tmp_path):
    corpus = _corpus(tmp_path, {"a": [_numbered(0, 400)]})
    W = corpus.sources[0].train_windows  # 123: batches straddle the epochs
    walk = text.TextWalk(corpus, 8, (0, 8), 50, shuffle_seed=3)
    ids = _ids(walk, 47).ravel()[: 3 * W].reshape(3, W)
    for epoch in ids:
        assert sorted(epoch) == list(range(W))
    assert not np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[0], np.arange(W))
    other = _ids(text.TextWalk(corpus, 8, (0, 8), 50, shuffle_seed=4), 1)[0]
    assert not np.array_equal(other, ids[0, :8])


def test_sources_are_mixed_by_weight_each_reshuffled_per_epoch(two_sources):
    plays, poems = two_sources.sources
    assert (plays.name, poems.name) == ("plays", "poems")
    walk = text.TextWalk(two_sources, 8, (0, 8), 100, shuffle_seed=0)
    ids_KxB = _ids(walk, 100)
    from_plays_KxB = ids_KxB < plays.train_windows
    assert (from_plays_KxB.sum(axis=1) == 6).all()  # 3:1, in every batch of 8
    poem_ids = ids_KxB[~from_plays_KxB] - plays.train_windows
    first_epoch = poem_ids[: poems.train_windows]
    assert sorted(first_epoch) == list(range(poems.train_windows))
    again = _ids(text.TextWalk(two_sources, 8, (0, 8), 100, shuffle_seed=0), 100)
    np.testing.assert_array_equal(again, ids_KxB)  # deterministic
    only_poems = dataclasses.replace(
        two_sources, sources=(poems,), train=two_sources.train[plays.train_windows :]
    )
    alone = _ids(text.TextWalk(only_poems, 2, (0, 2), 50, shuffle_seed=0), 50).ravel()
    np.testing.assert_array_equal(alone, poem_ids[:100])  # a source's order ignores the others


def test_process_rows_see_disjoint_windows_that_tile_the_global_batch(two_sources):
    whole = text.TextWalk(two_sources, 8, (0, 8), 60, shuffle_seed=1)
    halves = [text.TextWalk(two_sources, 8, rows, 60, shuffle_seed=1) for rows in ((0, 4), (4, 8))]
    streams = [iter(h.stream()) for h in halves]
    for k, element in enumerate(whole.stream()):
        a, b = (next(s)["tokens"] for s in streams)
        assert a.shape == b.shape == (4, T) and a.dtype == np.int32
        np.testing.assert_array_equal(np.concatenate([a, b]), element["tokens"])
        ids_B = whole.ids()[k]
        assert not set(ids_B[:4]) & set(ids_B[4:])
        assert {tuple(r) for r in a}.isdisjoint({tuple(r) for r in b})
    assert k == 59


@pytest.mark.parametrize(
    "batch, rows", [(8, (0, 8)), (6, (2, 5)), (text.BURST_WINDOWS + 8, (0, 9))]
)
def test_the_trainers_stream_is_the_dataset_in_order(two_sources, batch, rows):
    count = 30 if batch < text.BURST_WINDOWS else 4  # Grain's shuffle of a tiny source is slow
    walk = text.TextWalk(two_sources, batch, rows, count, shuffle_seed=2)
    got, want = list(walk.stream(prefetch=3)), list(walk.dataset())
    assert len(got) == len(want) == count
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    ids_B = walk.ids()[3]
    np.testing.assert_array_equal(want[3]["tokens"], two_sources.train[ids_B[rows[0] : rows[1]]])


def test_the_iterator_resumes_exactly_from_its_state_and_an_orbax_checkpoint(two_sources, tmp_path):
    walk = text.TextWalk(two_sources, 8, (0, 8), 200, shuffle_seed=5)
    straight = [e["tokens"] for e in walk.stream()]
    it = iter(walk.stream())
    for _ in range(137):  # past the end of poems' first epoch, mid-burst
        next(it)
    state = it.get_state()
    manager = checkpoint.make_manager(str(tmp_path), keep=1, async_save=False)
    checkpoint.save(manager, 137, {"w": np.zeros(2, np.float32)}, it)
    next(it)  # the saved state is the one at save time
    manager.wait_until_finished()
    resumed = iter(walk.stream())
    checkpoint.restore_iterator(manager, 137, resumed)
    for k, element in enumerate(resumed, start=137):
        np.testing.assert_array_equal(element["tokens"], straight[k])
    assert k == 199
    fresh = iter(walk.stream())
    fresh.set_state(state)
    np.testing.assert_array_equal(next(fresh)["tokens"], straight[137])


def test_eval_batches_are_the_first_heldout_batches_in_order(two_sources):
    plays, poems = two_sources.sources
    order = text.heldout_order(two_sources)
    assert [order[i] for i in range(4)] == [0, 1, 2, plays.heldout_windows]  # 3:1, stream order
    batches = text.eval_batches(two_sources, 4, (1, 3), 2)
    tok = two_sources.tokenizer
    for k, element in enumerate(batches):
        rows = [order[i] for i in range(4 * k, 4 * k + 4)]
        whole_BxT = two_sources.heldout[rows].astype(np.int32)
        np.testing.assert_array_equal(element["tokens"], whole_BxT[1:3])
        assert element["scored_tokens"] == 4 * (T - 1)
        assert element["scored_bytes"] == sum(len(tok.decode(r[1:]).encode()) for r in whole_BxT)
    most = len(order) // 4
    assert len(text.eval_batches(two_sources, 4, (0, 4), most)) == most
    with pytest.raises(
        TextDataError, match=f"eval.batches={most + 1}:.*plays {plays.heldout_windows}"
    ):
        text.eval_batches(two_sources, 4, (0, 4), most + 1)


def test_bits_per_byte_charges_specials_as_tokens_but_not_bytes():
    tok = ByteTokenizer()
    tokens_BxT = np.array([[tok.bos_id, 65, 66, tok.eos_id, tok.bos_id, 67]])
    assert text_metrics.scored_counts(tokens_BxT, tok.token_bytes_V) == (5, 3)
    uniform = math.log(tok.vocab_size)  # the loss of uniform logits
    assert text_metrics.bits_per_token(uniform) == pytest.approx(math.log2(258))
    assert text_metrics.bits_per_byte(uniform, 5, 3) == pytest.approx(math.log2(258) * 5 / 3)
    assert text_metrics.bits_per_byte(math.log(256), 100, 100) == pytest.approx(8.0)


def test_the_unigram_baseline_is_the_train_counts_smoothed_on_heldout_targets(tmp_path):
    corpus = _corpus(tmp_path, {"a": ["ab" * 150 + "aaab" * 50]}, fraction=0.25)
    counts_V = np.bincount(corpus.train.ravel(), minlength=258)
    p_V = (counts_V + 1) / (counts_V.sum() + 258)
    np.testing.assert_allclose(text_metrics.unigram_probs(corpus), p_V)
    targets = corpus.heldout[:, 1:]
    bits = -np.log2(p_V[targets]).sum()
    got = text_metrics.unigram_baseline(corpus)
    assert got["bits_per_token"] == pytest.approx(bits / targets.size)
    assert got["bits_per_byte"] == pytest.approx(bits / (targets < 256).sum())
    heldout_text = corpus.tokenizer.decode(corpus.heldout.ravel())
    assert "aaab" in heldout_text and "bab" not in heldout_text  # another mix than the train's
    one = text_metrics.unigram_baseline(corpus, [corpus.heldout[:1]])
    assert one["bits_per_token"] == pytest.approx(-np.log2(p_V[targets[:1]]).mean())


def test_a_mixture_unigram_weights_each_sources_distribution(tmp_path):
    corpus = _corpus(tmp_path, {"a": ["a" * 1600], "b": ["b" * 400]}, {"a": 1, "b": 3})
    (a, _), V = corpus.sources, 258

    def smoothed(windows_WxT):  # add-one smoothing within each source
        return (np.bincount(windows_WxT.ravel(), minlength=V) + 1) / (windows_WxT.size + V)

    p_a, p_b = smoothed(corpus.train[: a.train_windows]), smoothed(corpus.train[a.train_windows :])
    p_V = text_metrics.unigram_probs(corpus)
    np.testing.assert_allclose(p_V, (p_a + 3 * p_b) / 4)
    assert p_V[ord("b")] > 2 * p_V[ord("a")]
    assert p_V.sum() == pytest.approx(1.0)


def test_grain_mix_is_what_the_walk_interleaves():
    """The walk relies on Grain's mix being the exact deterministic interleave by weight."""
    a, b = grain.MapDataset.range(0, 100), grain.MapDataset.range(1000, 1100)
    first = [grain.MapDataset.mix([a, b], [3, 1])[i] for i in range(8)]
    assert sum(x < 1000 for x in first) == 6 and first[:3] == [0, 1, 2]
