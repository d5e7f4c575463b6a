"""`python -m gssm_jax.generate` and the transformer's cached generation against recomputation."""

from __future__ import annotations

import functools
import json
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import one_line_error, run_cmd, tree_digest

from gssm_jax import generate
from gssm_jax.config import default_config, family_config
from gssm_jax.inference import decoding
from gssm_jax.inference.rundir import open_run
from gssm_jax.models import registry


def cached_equals_recompute(model, kw: dict, *args) -> decoding.Completions:
    """Asserts that generate_cached and generate_recompute (jitted, logits kept) give the same
    tokens and logits, logits that move over the steps; returns the cached completions."""
    kw = dict(kw, keep_logits=True)
    cached = jax.jit(functools.partial(decoding.generate_cached, model, **kw))(*args)
    full = jax.jit(functools.partial(decoding.generate_recompute, model, **kw))(*args)
    np.testing.assert_array_equal(np.asarray(cached.tokens), np.asarray(full.tokens))
    np.testing.assert_allclose(np.asarray(cached.logits), np.asarray(full.logits), atol=1e-5)
    assert np.abs(np.diff(np.asarray(full.logits), axis=1)).max() > 1.0  # logits that move
    return cached


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_transformer_cached_equals_recompute(tiny_run, temperature):
    """The trained TINY run's transformer (2 layers here would be the same code per layer)."""
    run = open_run(str(tiny_run))
    params = run.restore_params(20)
    rng = np.random.default_rng(0)
    lengths = jnp.asarray([1, 3, 7, 12, 5, 2], jnp.int32)
    prompts = np.where(
        np.arange(12) < np.asarray(lengths)[:, None], rng.integers(0, 32, (6, 12)), 0
    )
    prompts[:, 0] = 0
    prompts = jnp.asarray(prompts, jnp.int32)
    keys = decoding.row_keys(3, jnp.arange(6))
    kw = dict(max_new=20, temperature=temperature)
    cached = cached_equals_recompute(run.model, kw, params, prompts, lengths, keys)
    assert np.ptp(np.asarray(cached.tokens)) > 0  # not a constant sequence


@pytest.mark.parametrize("family", sorted(registry.FAMILIES))
def test_every_family_cached_equals_recompute(family):
    """KV cache or recurrent state: the same greedy tokens and logits as recomputing everything
    (random parameters at init_std 0.2, so the logits differ by several nats)."""
    m = ml_collections.ConfigDict(default_config().model.to_dict())
    m.family, m.emb_dim, m.nb_layers, m.init_std = family, 32, 1, 0.2
    m.transformer.nb_heads, m.transformer.hidden_dim = 2, 64
    model = registry.build(family_config(m, 16))
    params = nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
    lengths = jnp.asarray([1, 3, 7, 12, 5, 2], jnp.int32)
    rng = np.random.default_rng(1)
    prompts = np.where(
        np.arange(12) < np.asarray(lengths)[:, None], rng.integers(0, 16, (6, 12)), 0
    )
    keys = decoding.row_keys(0, jnp.arange(6))
    kw = dict(max_new=16, temperature=0.0)
    cached_equals_recompute(model, kw, params, jnp.asarray(prompts, jnp.int32), lengths, keys)


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_cli_writes_scored_completions_and_leaves_the_run_unchanged(run_copy, tmp_path):
    before = tree_digest(run_copy)
    cmd = [sys.executable, "-m", "gssm_jax.generate", f"--workdir={run_copy}", "--num=6"]
    cmd += ["--max-new-tokens=8", "--seed=4"]
    code, stdout, stderr = run_cmd(cmd)
    assert code == 0, stdout + stderr
    out = run_copy / "samples" / "20-seed4.jsonl"
    assert stdout.strip().endswith(
        f"wrote {out} and {run_copy / 'samples' / '20-seed4.summary.json'}"
    )
    assert {k: v for k, v in tree_digest(run_copy).items() if not k.startswith("samples")} == before
    rows = read_rows(out)
    assert [r["index"] for r in rows] == list(range(6))
    lengths = [len(r["prompt"]) for r in rows]
    assert lengths == [1, 4, 7, 10, 13, 16]  # spread over [1, seq_len / 2]
    for r in rows:
        assert r["prompt"][0] == 0 and len(r["completion"]) == 8
        assert all(0 <= t < 32 for t in r["completion"])
        nll, h = np.asarray(r["true_nll"]), np.asarray(r["true_entropy"])
        assert nll.shape == h.shape == (8,) and (h >= 0).all() and (h <= np.log(32) + 1e-6).all()
        assert abs(r["sample_excess_nats"] - (nll - h).mean()) < 1e-5
    summary = json.loads((run_copy / "samples" / "20-seed4.summary.json").read_text())
    assert summary["num"] == 6 and summary["step"] == 20
    want = np.mean([r["sample_excess_nats"] for r in rows])
    assert abs(summary["sample_excess_nats"] - want) < 1e-5
    # The same seed again gives the same file (other seeds: tests/test_generate_decoding.py).
    assert generate.main([f"--workdir={run_copy}", "--num=6", "--max-new-tokens=8", "--seed=4",
                          f"--out={tmp_path / 'again.jsonl'}"]) == 0  # fmt: skip
    assert read_rows(tmp_path / "again.jsonl") == rows


def test_prompts_file_greedy_equals_top_1(run_copy, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('[0, 5, 9]\n{"prompt": [0]}\n\n[0, 1, 2, 3, 4, 5, 6]\n')
    outs = []
    for i, flags in enumerate([["--temperature=0"], ["--top-k=1", "--seed=9"]]):
        out = tmp_path / f"{i}.jsonl"
        argv = [f"--workdir={run_copy}", f"--prompts={prompts}", "--max-new-tokens=5"]
        assert generate.main([*argv, *flags, "--step=10", f"--out={out}"]) == 0
        outs.append(read_rows(out))
    assert [r["prompt"] for r in outs[0]] == [[0, 5, 9], [0], [0, 1, 2, 3, 4, 5, 6]]
    assert [r["completion"] for r in outs[0]] == [r["completion"] for r in outs[1]]


_error = functools.partial(one_line_error, generate.main)


def test_errors_are_one_line_exit_2(run_copy, tmp_path, capsys):
    base = [f"--workdir={run_copy}", "--max-new-tokens=4"]
    assert "--max-new-tokens" in _error([f"--workdir={run_copy}"], capsys)
    assert "no checkpoint at --step 3" in _error([*base, "--step=3"], capsys)
    assert "--temperature" in _error([*base, "--temperature=-1"], capsys)
    assert "not allowed with" in _error([*base, "--prompt-len=3", "--prompts=x"], capsys)
    bad = tmp_path / "bad.json"
    for text, msg in [
        ("[[0, 1], [0, 99]]", "item 1: token 99 is outside the vocabulary [0, 32)"),
        ("[[3, 1]]", "item 0: starts with token 3"),
        ("[[0, 1], []]", "item 1: expected a non-empty list of integers"),
        ("[0, 1]\n{oops", "line 2: not JSON"),
    ]:
        bad.write_text(text)
        assert msg in _error([*base, f"--prompts={bad}"], capsys)
    assert "No such file" in _error([*base, f"--prompts={tmp_path / 'none'}"], capsys)
    assert not (run_copy / "samples").exists()


# ---- issue 24: outputs checked first, nothing overwritten, extrapolation said, progress shown ----


def _no_generation(monkeypatch):
    """Makes any generation fail the test: the checks must come before the work."""
    from gssm_jax.inference import generation, sampling

    def fail(*args, **kwargs):
        raise AssertionError("generation started before the --out check")

    monkeypatch.setattr(generation, "draw", fail)
    monkeypatch.setattr(sampling, "draw", fail)  # text_generation's


def test_a_bad_out_is_refused_before_any_work(run_copy, tmp_path, capsys, monkeypatch):
    _no_generation(monkeypatch)
    base = [f"--workdir={run_copy}", "--max-new-tokens=4", "--num=2"]
    folder = tmp_path / "existing"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("earlier\n")
    assert f"--out {folder}: is a directory" in _error([*base, f"--out={folder}"], capsys)
    assert "is a file, not a directory" in _error([*base, f"--out={afile}/x.jsonl"], capsys)
    assert "--overwrite" in _error([*base, f"--out={afile}"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "existing", "run"]
    assert afile.read_text() == "earlier\n" and not list(folder.iterdir())


def test_default_names_never_overwrite_earlier_samples(run_copy, capsys):
    """Earlier samples at the default name: the next free -2, -3 ... (--overwrite: the name
    itself); the one CLI run also has prompts longer than the trained seq_len: one warning."""
    from gssm_jax.inference.sampling import output_path

    samples = run_copy / "samples"
    samples.mkdir()
    (samples / "20-seed0.jsonl").write_text("earlier\n")
    (samples / "20-seed0-2.summary.json").write_text("{}\n")  # a summary alone holds its name too
    run = open_run(str(run_copy))
    assert output_path(run, 20, 0, None, False) == str(samples / "20-seed0-3.jsonl")
    assert output_path(run, 20, 0, None, True) == str(samples / "20-seed0.jsonl")
    assert output_path(run, 20, 1, None, False) == str(samples / "20-seed1.jsonl")
    argv = [f"--workdir={run_copy}", "--max-new-tokens=2", "--num=2", "--prompt-len=40"]
    assert generate.main(argv) == 0
    out = samples / "20-seed0-3.jsonl"
    printed = capsys.readouterr()
    assert printed.out.strip().endswith(f"wrote {out} and {samples / '20-seed0-3.summary.json'}")
    assert len(read_rows(out)) == 2 and (samples / "20-seed0.jsonl").read_text() == "earlier\n"
    warnings = [ln for ln in printed.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "data.seq_len=32" in warnings[0], warnings


def test_positions_past_the_trained_length_are_said_to_be_extrapolation(tiny_run, capsys):
    from gssm_jax.inference.sampling import warn_extrapolation

    run = open_run(str(tiny_run))  # trained at seq_len 32
    warn_extrapolation(run, np.array([8, 30]), 3)  # 30 + 3 - 1 = 32 positions: none past
    assert capsys.readouterr().err == ""
    warn_extrapolation(run, np.array([8, 500]), 4)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: prompts of up to 500 tokens + 4 new")
    assert "503 positions" in err[0] and "data.seq_len=32" in err[0]
    assert "extrapolation" in err[0]


def test_a_long_generation_runs_in_chunks_with_progress_and_the_same_tokens(tiny_run):
    from gssm_jax.inference import sampling as generation

    run = open_run(str(tiny_run))
    params = run.restore_params(20)
    tokens, lengths = generation.padded([[0, 3, 5], [0], [0, 1, 2, 3, 4, 5]], 1)
    seq_ids = np.arange(3, dtype=np.uint32)
    done: list[int] = []
    whole = generation.make_generate_fn(run, 8, 1.0, 0, 5)(params, tokens, lengths, seq_ids)
    chunked = generation.make_generate_fn(run, 8, 1.0, 0, 5, chunk=3, progress=done.append)
    np.testing.assert_array_equal(
        np.asarray(chunked(params, tokens, lengths, seq_ids)), np.asarray(whole)
    )
    assert done == [4, 7, 8]
    import io

    stream = io.StringIO()
    report = generation.Progress(8, every_s=0.0, stream=stream)
    report(4)
    report(8)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("generating: 4/8 new tokens per prompt (50%)")
    assert lines[1].startswith("generating: 8/8") and len(lines) == 2
