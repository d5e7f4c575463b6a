"""SIGTERM and resume is exact for a recurrent family too (minGRU; the transformer's own test is in
test_loop.py), and a family's bad field exits 2 naming its key."""

from __future__ import annotations

import signal

from conftest import RESUME_STEPS, main_cmd, read_jsonl, signal_at_step, start_cmd, train_losses

from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG, EXIT_PREEMPTED

FAMILY = ["--config.model.family=mingru", "--config.model.mingru.hidden_dim=64"]


def test_a_recurrent_family_resumes_exactly_after_sigterm(tmp_path, run_main):
    straight = tmp_path / "straight"
    code, out = run_main(straight, *RESUME_STEPS, *FAMILY, timeout=900)
    assert code == 0, out
    resumed = tmp_path / "resumed"
    proc = start_cmd(main_cmd(resumed, *RESUME_STEPS, *FAMILY), tmp_path)
    code, out = signal_at_step(proc, resumed, signal.SIGTERM, 20, timeout=900)
    assert code == EXIT_PREEMPTED, out
    assert max(train_losses(resumed)) < 40, "the run finished before the signal reached it"
    code, out = run_main(resumed, *RESUME_STEPS, *FAMILY, timeout=900)
    assert code == 0 and "resumed from" in out, out
    a, b = train_losses(straight), train_losses(resumed)
    assert sorted(a) == sorted(b)
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6
    eval_a = read_jsonl(straight / "metrics" / "eval.jsonl")
    eval_b = read_jsonl(resumed / "metrics" / "eval.jsonl")
    assert [r["loss"] for r in eval_a] == [r["loss"] for r in eval_b]


def test_bad_family_inputs_exit_2_naming_the_key(tmp_path, run_main):
    cases = {
        "--config.model.family=rnn": "config model.family='rnn'",
        "--config.model.family=hawk --config.model.hawk.nb_heads=3": "config model.hawk.nb_heads=3",
        "--config.model.family=mamba --config.model.mamba.head_dim=48": (
            "config model.mamba.head_dim=48: must divide the width"
        ),
    }
    for flags, message in cases.items():
        code, out = run_main(tmp_path / "bad", *flags.split())
        assert code == EXIT_BAD_CONFIG and message in out, (flags, out)
        assert "Traceback" not in out and not (tmp_path / "bad").exists()
