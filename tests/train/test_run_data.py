"""Training on text through `python -m gssm_jax.main`: bits per byte and no entropy in every
record, exact resume after SIGTERM, two processes on the single process's stream, every family,
and the one-line errors of bad text input."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
from conftest import (
    RESUME_STEPS,
    ROOT,
    read_jsonl,
    run_cmd,
    signal_at_step,
    start_cmd,
    start_processes,
    text_cmd,
    train_losses,
    write_play,
)

from gssm_jax.config import ConfigError, default_config
from gssm_jax.runtime import cli
from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG, EXIT_PREEMPTED
from gssm_jax.train import loop

TEXT_KEYS = {"loss", "bits_per_token", "bits_per_byte"}
FOUR_STEPS = ["--config.optim.steps=4", "--config.optim.warmup=1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_play(tmp_path_factory.mktemp("text") / "corpus")


def test_a_text_run_reports_bits_per_byte_and_no_entropy(tiny_text_run):
    final = json.loads((tiny_text_run / "final.json").read_text())
    assert set(final["eval"]) == TEXT_KEYS and final["step"] == 20
    text = final["text"]
    assert text["headline"] == "bits_per_byte"
    unigram = text["baselines"]["unigram"]["bits_per_byte"]
    assert (
        final["eval"]["bits_per_byte"]
        < unigram
        < 8
        == text["baselines"]["uniform"]["bits_per_byte"]
    )
    assert [s["name"] for s in text["sources"]] == ["text"] and text["sources"][0][
        "documents"
    ] == 10
    for stream in ("train", "eval"):
        for record in read_jsonl(tiny_text_run / "metrics" / f"{stream}.jsonl"):
            assert set(record) >= TEXT_KEYS and not {"entropy", "kl_gap"} & set(record), record
            assert record["bits_per_token"] == pytest.approx(record["loss"] / math.log(2))
    config = json.loads((tiny_text_run / "config.json").read_text())
    assert config["data"]["path"].startswith("/")  # recorded absolute, readable from anywhere


def test_the_console_names_the_corpus_and_prints_bits_per_byte(corpus, tmp_path):
    code, out, err = run_cmd(
        text_cmd(tmp_path / "run", corpus, *FOUR_STEPS, "--config.log.period=2"), tmp_path
    )
    assert code == 0, out + err
    assert "text tokenizer: bytes (256 byte values + BOS 256 + EOS 257 = 258 tokens)" in out
    assert f"text source text ({corpus}, weight 1): 10 documents" in out
    assert "held-out baselines on the 1 eval batches: uniform 8 bits/byte, unigram" in out
    step = next(line for line in out.splitlines() if line.startswith("step 4/4"))
    assert "| bits_per_byte " in step and "entropy" not in step and "kl_gap" not in step
    assert "eval step 4 | loss " in out and "| bits_per_byte " in out
    assert "done: final eval bits_per_byte " in out and "held-out baselines: unigram" in out


def test_text_resume_after_sigterm_matches_straight_run(corpus, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, out, err = run_cmd(text_cmd(straight, corpus, *RESUME_STEPS), tmp_path)
    assert code == 0, out + err
    proc = start_cmd(text_cmd(resumed, corpus, *RESUME_STEPS), tmp_path)
    code, out = signal_at_step(proc, resumed, signal.SIGTERM, 20)
    assert code == EXIT_PREEMPTED, out
    assert max(train_losses(resumed)) < 40, "the run finished before the signal reached it"
    code, out, err = run_cmd(text_cmd(resumed, corpus, *RESUME_STEPS), tmp_path)
    assert code == 0 and "resumed from" in out, out + err
    a, b = train_losses(straight), train_losses(resumed)
    assert sorted(a) == sorted(b) and max(a) == 40
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6
    eval_a = read_jsonl(straight / "metrics" / "eval.jsonl")
    eval_b = read_jsonl(resumed / "metrics" / "eval.jsonl")
    assert [r["bits_per_byte"] for r in eval_a] == pytest.approx(
        [r["bits_per_byte"] for r in eval_b], abs=1e-6
    )


def test_two_processes_train_on_the_single_process_text_stream(corpus, tmp_path):
    """Each process reads its own rows of every global batch: the two together train exactly as
    one process on the whole batch (the same losses), so their windows are the single stream's."""
    steps = ["--config.optim.steps=8", "--config.optim.warmup=2", "--config.log.period=2"]
    steps += ["--config.eval.period=4", "--config.checkpoint.period=4"]
    code, out, err = run_cmd(text_cmd(tmp_path / "single", corpus, *steps), tmp_path)
    assert code == 0, out + err
    procs = start_processes(text_cmd(tmp_path / "multi", corpus, *steps), tmp_path)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, out
        assert f"process_index={i} process_count=2 devices=4" in out, out
    a = read_jsonl(tmp_path / "single" / "metrics" / "train.jsonl")
    b = read_jsonl(tmp_path / "multi" / "metrics" / "train.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
    np.testing.assert_allclose(
        [r["bits_per_byte"] for r in b], [r["bits_per_byte"] for r in a], rtol=1e-5
    )


FAMILIES = {
    "mamba": dict(expand=2, state_dim=8, head_dim=8, conv_width=3, chunk_size=8),
    "hawk": dict(expand=2, nb_heads=2, conv_width=3, hidden_dim=32),
    "mingru": dict(expand=2, hidden_dim=32),
    "minlstm": dict(expand=2, hidden_dim=32),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_trains_on_text(family, corpus, tmp_path):
    c = default_config()
    c.data.source, c.data.path = "text", str(corpus)
    c.data.seq_len, c.data.batch_size = 17, 4
    c.model.family, c.model.nb_layers, c.model.emb_dim = family, 1, 16
    c.model[family].update(FAMILIES[family])
    c.optim.steps, c.optim.warmup, c.log.period = 4, 1, 2
    c.eval.period = c.checkpoint.period = 4
    c.eval.batches = 1
    assert loop.train_and_evaluate(c, str(tmp_path / "run")) == 0
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert set(final["eval"]) == TEXT_KEYS and final["eval"]["bits_per_byte"] < 8.5


def _data_cases(tmp_path):
    """(data overrides, what the one-line error names) of text input a run cannot use."""
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "none").mkdir()
    (tmp_path / "short.txt").write_text("too short for a window\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "a line"}\n{not json\n')
    (tmp_path / "nofield.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    big = str(write_play(tmp_path / "play"))
    return [
        ({"data.path": str(tmp_path / "nowhere")}, "nowhere': no such file or folder"),
        ({"data.path": str(tmp_path / "empty.txt")}, "empty.txt: no text (empty file)"),
        ({"data.path": str(tmp_path / "none")}, "none: folder holds no *.txt or *.jsonl"),
        ({"data.path": str(tmp_path / "short.txt")}, "short.txt: its train part is 24 tokens"),
        ({"data.path": str(tmp_path / "bad.jsonl")}, "bad.jsonl, line 2: not JSON"),
        ({"data.path": str(tmp_path / "nofield.jsonl")}, "line 2: no field 'text'"),
        (
            {"data.path": big, "data.text.weights.text": "0"},
            "config data.text.weights.text=0: must be a number > 0",
        ),
        (
            {"data.path": big, "data.text.weights.plays": "1"},
            "config data.text.weights.plays=1: no source of that name",
        ),
    ]


def test_every_bad_text_input_is_a_one_line_config_error_before_the_workdir_exists(tmp_path):
    """What `main` reports: the config's checks and the Trainer's reading of the sources (before
    it writes anything) raise one ConfigError line naming the path, line or key."""
    for overrides, named in _data_cases(tmp_path):
        c = cli.load_config(str(ROOT / "configs" / "text.py"), list(overrides.items()))
        with pytest.raises(ConfigError) as e:
            loop.Trainer(c, str(tmp_path / "run"))
        assert named in str(e.value) and "\n" not in str(e.value), (overrides, str(e.value))
        assert not (tmp_path / "run").exists()


def test_bad_text_input_through_main_is_one_line_and_exit_2(tmp_path):
    """One error of each kind through the command: a checked key (before JAX starts) and a source
    read at start-up."""
    (tmp_path / "empty.txt").write_text("")
    for path, line in [
        (
            tmp_path / "nowhere",
            f"error: config data.path='{tmp_path / 'nowhere'}': no such file or folder",
        ),
        (
            tmp_path / "empty.txt",
            f"error: text source {tmp_path / 'empty.txt'}: no text (empty file)",
        ),
    ]:
        code, out, err = run_cmd(text_cmd(tmp_path / "run", path), tmp_path)
        assert code == EXIT_BAD_CONFIG, out + err
        assert (out + err).strip().splitlines() == [line], out + err
        assert not (tmp_path / "run").exists()
