"""`python -m gssm_jax.generate` on a text run: text prompts in, decoded text out, nothing scored;
`--prompt` on a GSSM run is a one-line error."""

from __future__ import annotations

import json

from conftest import one_line_error, tree_digest

from gssm_jax import generate
from gssm_jax.data.text_tokenizers import ByteTokenizer
from gssm_jax.inference import text_generation


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_a_text_prompt_gives_decoded_text_completions(tiny_text_run, tmp_path, capsys):
    before = tree_digest(tiny_text_run)
    out = tmp_path / "romeo.jsonl"
    argv = ["--workdir", str(tiny_text_run), "--prompt", "ROMEO:", "--num", "3"]
    argv += ["--max-new-tokens", "40", "--top-k", "5", "--temperature", "0.8", "--out", str(out)]
    assert generate.main(argv) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    tok = ByteTokenizer()
    assert [r["prompt"] for r in rows] == ["ROMEO:"] * 3
    for r in rows:
        assert r["prompt_tokens"] == list(b"ROMEO:") and len(r["completion_tokens"]) == 40
        assert r["completion"] == tok.decode(r["completion_tokens"], specials=True)
        assert f"--- {r['index']}: ROMEO:{r['completion']}" in printed
    assert len({r["completion"] for r in rows}) == 3  # row i draws with its own key
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["scoring"] == text_generation.NOT_SCORED
    assert not {"true_cross_entropy", "true_entropy", "sample_excess_nats"} & set(summary)
    assert "scoring skipped: text has no true process" in printed.splitlines()[-1]
    assert tree_digest(tiny_text_run) == before


def test_invalid_utf8_is_shown_as_replacement_characters(tiny_text_run, tmp_path):
    """An early checkpoint sampled hot emits stray high bytes: each bad stretch is one U+FFFD."""
    out = tmp_path / "hot.jsonl"
    argv = ["--workdir", str(tiny_text_run), "--step", "10", "--prompt", "", "--num", "4"]
    argv += ["--max-new-tokens", "64", "--temperature", "3", "--out", str(out)]
    assert generate.main(argv) == 0
    rows = _rows(out)
    assert all(r["prompt_tokens"] == [256] and r["prompt"] == "<|bos|>" for r in rows)
    bad = [r for r in rows if "\ufffd" in r["completion"]]
    assert bad, [r["completion"] for r in rows]
    tok = ByteTokenizer()
    for r in rows:  # decoded as the tokenizer decodes: U+FFFD for each invalid stretch
        assert r["completion"] == tok.decode(r["completion_tokens"], specials=True)


def test_default_prompts_are_held_out_windows_and_prompts_files_hold_strings(
    tiny_text_run, tmp_path, capsys
):
    out = tmp_path / "held.jsonl"
    argv = ["--workdir", str(tiny_text_run), "--num", "3", "--max-new-tokens", "4"]
    assert generate.main([*argv, "--out", str(out)]) == 0
    lengths = [len(r["prompt_tokens"]) for r in _rows(out)]
    assert lengths == [1, 8, 16]  # spread over [1, seq_len / 2]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('"JULIET."\n{"prompt": "NURSE.\\n"}\n')
    again = [*argv, "--prompts", str(prompts), "--out", str(out)]
    assert "--overwrite" in one_line_error(generate.main, again, capsys)  # earlier samples kept
    assert generate.main([*again, "--overwrite"]) == 0
    assert [r["prompt"] for r in _rows(out)] == ["JULIET.", "NURSE.\n"]
    prompts.write_text("[[0, 1, 2]]")
    err = one_line_error(generate.main, [*argv, "--prompts", str(prompts)], capsys)
    assert "item 0: expected a string (a text run's prompts are text)" in err


def test_a_text_prompt_on_a_gssm_run_is_a_one_line_error(tiny_run, capsys):
    argv = ["--workdir", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "4"]
    err = one_line_error(generate.main, argv, capsys)
    assert "--prompt: text prompts need a text run (data.source='text')" in err
