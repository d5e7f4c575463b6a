"""Text sources (files, folders, JSONL), the byte and SentencePiece tokenizers, the `data.text`
config checks, and the one-line errors of bad input."""

from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest

from gssm_jax.config import ConfigError
from gssm_jax.data import text
from gssm_jax.data.text_config import (
    SINGLE_SOURCE,
    TEXT_DEFAULTS,
    check_text_config,
    text_sources,
    text_weights,
)
from gssm_jax.data.text_sources import TextDataError, read_documents, source_files
from gssm_jax.data.text_tokenizers import ByteTokenizer, SentencePieceTokenizer, load_tokenizer


def _write(path, content) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def _jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def test_a_folder_is_its_txt_and_jsonl_files_below_it_in_path_order(tmp_path):
    _write(tmp_path / "b.txt", "bee")
    _write(tmp_path / "a" / "z.txt", "a/z")
    _write(tmp_path / "a" / "b" / "c.jsonl", _jsonl({"text": "one"}, {"text": "two"}))
    _write(tmp_path / "a.txt", "a.txt")
    _write(tmp_path / "notes.md", "not text of the source")
    _write(tmp_path / ".hidden.txt", "hidden")
    _write(tmp_path / ".git" / "x.txt", "hidden folder")
    _write(tmp_path / "empty.txt", "")
    names = [f[len(str(tmp_path)) + 1 :] for f in source_files(str(tmp_path))]
    assert names == ["a/b/c.jsonl", "a/z.txt", "a.txt", "b.txt", "empty.txt"]
    assert read_documents(str(tmp_path)) == ["one", "two", "a/z", "a.txt", "bee"]


def test_jsonl_documents_are_the_configured_field_of_each_line(tmp_path):
    path = _write(
        tmp_path / "d.jsonl",
        _jsonl({"body": "first ✓", "id": 1}, "", {"body": ""}, {"body": "third\nline"}),
    )
    assert read_documents(path, jsonl_field="body") == ["first ✓", "third\nline"]
    assert read_documents(_write(tmp_path / "p.text", "whole file\n")) == ["whole file\n"]


@pytest.mark.parametrize(
    "files, source, field, message",
    [
        ({}, "nowhere", "text", r"nowhere: no such file or folder"),
        ({"e.txt": ""}, "e.txt", "text", r"e.txt: no text \(empty file\)"),
        ({"d/x.md": "x"}, "d", "text", r"d: folder holds no \*.txt or \*.jsonl file"),
        ({"d/1.txt": "", "d/2.jsonl": "\n"}, "d", "text", r"d: no text \(its 2 files are empty\)"),
        ({"b.txt": b"ok \xff\xfe"}, "b.txt", "text", r"b.txt: not UTF-8 \(byte 3: b'\\xff'\)"),
        (
            {"j.jsonl": _jsonl({"text": "a"}, "{not json")},
            "j.jsonl",
            "text",
            r"j.jsonl, line 2: not JSON \(",
        ),
        (
            {"j.jsonl": _jsonl({"text": "a"}, "", {"body": "b"})},
            "j.jsonl",
            "text",
            r"j.jsonl, line 3: no field 'text' \(config data.text.jsonl_field\)",
        ),
        ({"j.jsonl": _jsonl([1, 2])}, "j.jsonl", "text", r"line 1: no field 'text'"),
        (
            {"j.jsonl": _jsonl({"t": 5})},
            "j.jsonl",
            "t",
            r"line 1: field 't' is a int, not a string",
        ),
    ],
)
def test_bad_sources_are_one_line_errors_naming_the_file(tmp_path, files, source, field, message):
    for name, content in files.items():
        _write(tmp_path / name, content)
    with pytest.raises(TextDataError, match=message) as e:
        read_documents(str(tmp_path / source), field)
    assert "\n" not in str(e.value) and str(tmp_path / source) in str(e.value)
    assert isinstance(e.value, ConfigError)


def test_the_byte_tokenizer_round_trips_utf8_and_shows_bad_bytes_as_replacement():
    tok = load_tokenizer("bytes")
    assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 258
    assert (tok.bos_id, tok.eos_id) == (256, 257)
    ids = tok.encode("Ünïcode ✓\n")
    assert ids.dtype == np.int32 and len(ids) == len("Ünïcode ✓\n".encode()) and ids.max() < 256
    assert tok.decode(ids) == "Ünïcode ✓\n"
    framed = [tok.bos_id, *ids[:3], tok.eos_id, tok.bos_id, 0xE2, 0x9C, 0x41]
    assert tok.decode(framed) == "Ün\ufffdA"  # the cut ✓ (2 of its 3 bytes) is one U+FFFD
    assert tok.decode(framed, specials=True) == "<|bos|>Ün<|eos|><|bos|>\ufffdA"
    np.testing.assert_array_equal(tok.token_bytes_V, [1] * 256 + [0, 0])


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    """A tiny SentencePiece model trained here, offline, on text this test writes."""
    spm = pytest.importorskip("sentencepiece", reason="pip install sentencepiece (or .[text])")
    folder = tmp_path_factory.mktemp("sp")
    words = ["the", "king", "queen", "lord", "lady", "sword", "love", "night", "sun", "moon"]
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 10)) for _ in range(400)] + ["ünïcödé ✓"]
    _write(folder / "train.txt", "\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(folder / "train.txt"),
        model_prefix=str(folder / "tiny"),
        vocab_size=300,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return str(folder / "tiny.model")


def test_a_sentencepiece_model_encodes_decodes_and_packs_a_corpus(sp_model, tmp_path):
    tok = load_tokenizer(sp_model)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.vocab_size == tok.pieces == 300 and (tok.bos_id, tok.eos_id) == (1, 2)
    assert tok.decode(tok.encode("the queen ✓ of night")) == "the queen ✓ of night"
    phrase = "the queen ✓ of night"  # its pieces spell it with the model's leading space
    assert tok.token_bytes_V[tok.encode(phrase)].sum() == len((" " + phrase).encode())
    assert tok.token_bytes_V[tok.sp.piece_to_id("<0x41>")] == 1
    assert tok.token_bytes_V[[0, 1, 2]].tolist() == [0, 0, 0]  # unk, BOS, EOS
    lone = tok.sp.piece_to_id("<0xC3>")  # the first byte of a 2-byte character, alone
    assert tok.decode([tok.bos_id, lone, *tok.encode("x"), tok.eos_id]) == "\ufffd x"
    assert "<|eos|>" in tok.decode([*tok.encode("a"), tok.eos_id], specials=True)
    _write(tmp_path / "src" / "t.txt", "the king and the lady love the moon at night\n" * 40)
    corpus = text.load_corpus({"s": str(tmp_path / "src")}, {"s": 1}, tok, 16, 0.2)
    (s,) = corpus.sources
    assert s.train_windows > 0 and s.heldout_windows > 0
    assert corpus.train.max() < tok.vocab_size and corpus.train[0, 0] == tok.bos_id


def test_bad_tokenizer_files_are_config_errors(sp_model, tmp_path):
    with pytest.raises(ConfigError, match=r"data.text.tokenizer='nope.model': no such file"):
        load_tokenizer("nope.model")
    junk = _write(tmp_path / "junk.model", "not a model")
    with pytest.raises(ConfigError, match=r"data.text.tokenizer=.*junk.model.*not a SentencePiece"):
        load_tokenizer(junk)


def _data(**text_keys):
    """A run's `data` section (a ConfigDict, as the run config holds it) on text."""
    path = text_keys.pop("path", "")
    section = ml_collections.ConfigDict({**TEXT_DEFAULTS, **text_keys})
    return ml_collections.ConfigDict({"path": path, "seq_len": 8, "text": section})


def test_one_path_or_named_sources_mixed_by_weights(tmp_path):
    a = _write(tmp_path / "a.txt", "a" * 200)
    b = _write(tmp_path / "b" / "1.txt", "b" * 200)
    data = _data(path=a)
    check_text_config(data)
    assert text_sources(data) == {SINGLE_SOURCE: a} and text_weights(data) == {SINGLE_SOURCE: 1.0}
    data = _data(sources={"poems": b, "plays": a}, weights={"plays": 3, "poems": 1})
    check_text_config(data)
    assert list(text_sources(data)) == ["plays", "poems"]
    assert text_weights(data) == {"plays": 3.0, "poems": 1.0}
    corpus = text.corpus_from_config(data)
    assert [(s.name, s.weight) for s in corpus.sources] == [("plays", 3.0), ("poems", 1.0)]
    data.text.weights = {}
    assert text_weights(data) == {"plays": 1.0, "poems": 1.0}
    check_text_config({"path": a, "seq_len": 8})  # a plain dict; no text section: the defaults


@pytest.mark.parametrize(
    "keys, message",
    [
        ({}, r"data.path='': data.source='text' needs a file or folder"),
        ({"path": "A", "sources": {"x": "A"}}, r"data.path=.*not both"),
        ({"path": "missing.txt"}, r"data.path='missing.txt': no such file or folder"),
        ({"sources": {"x": "A", "y": "nowhere"}}, r"data.text.sources.y='nowhere': no such file"),
        (
            {"path": "A", "weights": {"plays": 2}},
            r"data.text.weights.plays=2: no source of that name",
        ),
        (
            {"sources": {"x": "A", "y": "A"}, "weights": {"x": 0, "y": 1}},
            r"weights.x=0: must be a number > 0",
        ),
        (
            {"sources": {"x": "A", "y": "A"}, "weights": {"x": 1, "y": -2.0}},
            r"weights.y=-2.0: must be",
        ),
        ({"sources": {"x": "A", "y": "A"}, "weights": {"x": 1}}, r"no weight for source 'y'"),
        ({"sources": {"x": "A"}, "weights": {"x": "3"}}, r"weights.x='3': must be a number"),
        (
            {"path": "A", "tokenizer": "none.model"},
            r"data.text.tokenizer='none.model': no such file",
        ),
        ({"path": "A", "jsonl_field": ""}, r"data.text.jsonl_field='': must be a non-empty"),
        ({"path": "A", "heldout_fraction": 0.0}, r"heldout_fraction=0.0: must lie strictly"),
        ({"path": "A", "heldout_fraction": 1}, r"heldout_fraction=1: must lie strictly"),
    ],
)
def test_bad_text_config_is_one_line_naming_the_key(tmp_path, monkeypatch, keys, message):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "A", "some text")
    with pytest.raises(ConfigError, match=message) as e:
        check_text_config(_data(**keys))
    assert "\n" not in str(e.value)


def test_unknown_text_keys_and_bad_source_names_are_config_errors(tmp_path):
    a = _write(tmp_path / "a.txt", "text")
    data = {"path": a, "seq_len": 8, "text": {"heldout": 0.1}}
    with pytest.raises(ConfigError, match=r"data.text.heldout=0.1: unknown key"):
        check_text_config(data)
    data = {"path": "", "seq_len": 8, "text": {"sources": {"two words": a}}}
    with pytest.raises(ConfigError, match=r"source name 'two words' must be a Python identifier"):
        check_text_config(data)


def test_a_corpus_too_short_for_a_window_is_named_at_load(tmp_path):
    a = _write(tmp_path / "a.txt", "x" * 60)  # 62 tokens: 56 train, 6 held-out at 0.1
    data = {"path": a, "seq_len": 8, "text": {"heldout_fraction": 0.1}}
    with pytest.raises(ConfigError, match=r"a.txt: its held-out part is 6 tokens.*seq_len=8"):
        text.corpus_from_config(data)
    data["text"]["heldout_fraction"] = 0.5
    assert text.corpus_from_config(data).sources[0].heldout_windows == 3
    data["seq_len"] = 40
    with pytest.raises(ConfigError, match=r"a.txt: its train part is 31 tokens.*seq_len=40"):
        text.corpus_from_config(data)


def test_a_model_without_bos_eos_gets_two_ids_after_its_pieces(sp_model, tmp_path):
    import sentencepiece as spm

    _write(tmp_path / "t.txt", "ab ba abba baab\n" * 50)
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "t.txt"),
        model_prefix=str(tmp_path / "nobos"),
        vocab_size=30,
        bos_id=-1,
        eos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    tok = load_tokenizer(str(tmp_path / "nobos.model"))
    n = tok.pieces
    assert (tok.bos_id, tok.eos_id, tok.vocab_size) == (n, n + 1, n + 2)
    assert tok.token_bytes_V[[n, n + 1]].tolist() == [0, 0]
    assert tok.decode([n, *tok.encode("abba"), n + 1]) == "abba"


def test_a_model_file_without_sentencepiece_installed_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "sentencepiece", None)
    with pytest.raises(ConfigError, match=r"needs the sentencepiece package \(pip install"):
        load_tokenizer(_write(tmp_path / "m.model", "x"))
