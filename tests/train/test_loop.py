"""End-to-end runs of `python -m gssm_jax.main`: learning, exact resume, interruption, errors."""

from __future__ import annotations

import json
import signal
import sys

import numpy as np
import pytest
from conftest import (
    RESUME_STEPS,
    main_cmd,
    read_jsonl,
    run_cmd,
    signal_at_step,
    start_cmd,
    train_losses,
)

from gssm_jax.config import default_config
from gssm_jax.gssm.entropy import sequence_entropy
from gssm_jax.gssm.graph import parse_graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
from gssm_jax.gssm.sample import sample_tokens
from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG, EXIT_PREEMPTED


def _run_until(workdir, tmp_path, sig, min_step: int, *extra: str):
    """Starts a run, sends `sig` once train.jsonl has reached `min_step`; returns (code, output)."""
    proc = start_cmd(main_cmd(workdir, *RESUME_STEPS, *extra), tmp_path)
    return signal_at_step(proc, workdir, sig, min_step)


def test_resume_after_sigterm_matches_straight_run(tmp_path, run_main):
    straight = tmp_path / "straight"
    code, out = run_main(straight, *RESUME_STEPS)
    assert code == 0, out
    assert "process_index=0 process_count=1" in out
    resumed = tmp_path / "resumed"
    code, out = _run_until(resumed, tmp_path, signal.SIGTERM, 20)
    assert code == EXIT_PREEMPTED, out
    assert "checkpoint saved at step" in out
    stopped_at = max(train_losses(resumed))
    assert stopped_at < 40, "the run finished before the signal reached it"
    code, out = run_main(resumed, *RESUME_STEPS)
    assert code == 0, out
    assert "resumed from" in out
    a, b = train_losses(straight), train_losses(resumed)
    assert sorted(a) == sorted(b)
    diffs = [abs(a[s] - b[s]) for s in a]
    assert max(diffs) <= 1e-6, list(zip(sorted(a), diffs))
    eval_a = read_jsonl(straight / "metrics" / "eval.jsonl")
    eval_b = read_jsonl(resumed / "metrics" / "eval.jsonl")
    assert [r["step"] for r in eval_a] == [r["step"] for r in eval_b]
    np.testing.assert_allclose([r["loss"] for r in eval_a], [r["loss"] for r in eval_b], atol=1e-6)
    # A complete run is not trained again.
    code, out = run_main(resumed, *RESUME_STEPS)
    assert code == 0 and "already complete" in out


def test_sigusr1_and_sigint_also_checkpoint(tmp_path):
    for sig in (signal.SIGUSR1, signal.SIGINT):
        workdir = tmp_path / sig.name
        code, out = _run_until(workdir, tmp_path, sig, 4)
        assert code == EXIT_PREEMPTED, out
        assert (workdir / "checkpoints").is_dir()
        assert f"received {sig.name}" in out


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path, run_main):
    workdir = tmp_path / "run"
    code, out = run_main(workdir, "--config.optim.steps=4", "--config.optim.warmup=1")
    assert code == 0, out
    code, out = run_main(
        workdir,
        "--config.optim.steps=8",
        "--config.optim.warmup=1",
        "--config.model.emb_dim=48",
        "--config.model.transformer.nb_heads=2",
        "--allow-config-change",  # past the config comparison (tests/train/test_run_dir.py)
    )
    assert code == EXIT_BAD_CONFIG, out
    assert "error: checkpoint" in out and "has shape" in out, out
    assert "Traceback" not in out


README_KL_GAP_THRESHOLD = 0.05  # README.md: the debug run ends below this eval kl_gap


def test_default_run_learns_below_the_readme_threshold(tmp_path):
    """`python -m gssm_jax.main` with no flags, exactly as the README's first command runs it."""
    code, out, err = run_cmd([sys.executable, "-m", "gssm_jax.main"], tmp_path, timeout=600)
    out += err
    assert code == 0, out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and f"writing to {runs[0]}" in out
    assert "(malloc keeps freed memory: True)" in out  # runtime.keep_freed_memory=auto on a CPU
    workdir = runs[0]
    records = read_jsonl(workdir / "metrics" / "train.jsonl")
    for key in (
        "step",
        "loss",
        "entropy",
        "kl_gap",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "step_time_s",
        "data_wait_s",
    ):
        assert key in records[0], key
    first, last = records[0]["kl_gap"], np.mean([r["kl_gap"] for r in records[-3:]])
    assert last < 0.1 * first, (first, last)
    final = json.loads((workdir / "final.json").read_text())
    assert final["eval"]["kl_gap"] < README_KL_GAP_THRESHOLD, final
    assert f"final eval kl_gap {final['eval']['kl_gap']:.4f}" in out
    assert (workdir / "config.json").exists()
    assert list((workdir / "tensorboard").iterdir())


def test_bad_config_is_rejected_before_work(tmp_path, run_main):
    cases = {
        "--config.optim.lr=-1": "optim.lr",
        "--config.data.seq_len=1": "data.seq_len",
        "--config.model.transformer.nb_heads=3": "model.transformer.nb_heads",
        "--config.data.graph.X.alpha=0": "'alpha'",
        "--config.optim.accum_steps=3": "optim.accum_steps",
    }
    for flag, name in cases.items():
        code, out = run_main(tmp_path / "bad", flag)
        assert code == EXIT_BAD_CONFIG, (flag, out)
        assert name in out, (flag, out)
        assert not (tmp_path / "bad").exists()
    code, out = run_main(tmp_path / "bad", "--config.optim.learning_rate=1")
    assert code != 0 and "learning_rate" in out


def test_a_signal_during_start_up_exits_75_before_the_first_step(tmp_path, run_main):
    """SIGUSR1 while JAX starts and compiles: kept (not fatal), exit 75, nothing trained; the
    requeued run then trains from the start."""
    workdir = tmp_path / "early"
    proc = start_cmd(main_cmd(workdir, *RESUME_STEPS), tmp_path)
    head = ""
    while "gssm_jax: writing to" not in head:  # printed after JAX starts, before any compile
        line = proc.stdout.readline()
        assert line, head
        head += line
    proc.send_signal(signal.SIGUSR1)
    out = head + proc.communicate(timeout=240)[0]
    assert proc.returncode == EXIT_PREEMPTED, out
    assert "received SIGUSR1" in out and "stopped before the first step (at step 0" in out, out
    metrics = workdir / "metrics" / "train.jsonl"
    assert not metrics.exists() or not read_jsonl(metrics)
    code, out = run_main(workdir, *RESUME_STEPS)
    assert code == 0 and "resumed from" not in out, out
    assert max(train_losses(workdir)) == 40


CONTEXT_GRAPH = {
    "Z1": dict(state_dim=4, alpha=0.05, mode="context"),
    "Z2": dict(state_dim=4, alpha=0.05),
    "X": dict(state_dim=32, alpha=0.05, parents=["Z1", "Z2"], observed=True),
}


def test_context_graph_reports_one_monte_carlo_estimator_and_its_stderr(tmp_path, run_main):
    """Train and eval use the data.mc_draws / data.mc_seed estimator; both log its standard error."""
    config = tmp_path / "context.py"
    config.write_text(
        "from gssm_jax.config import default_config\n\n\ndef get_config():\n"
        f"    c = default_config()\n    c.data.graph = {CONTEXT_GRAPH!r}\n    return c\n"
    )
    flags = ["--config.optim.steps=2", "--config.optim.warmup=1", "--config.log.period=1"]
    code, out = run_main(tmp_path / "run", *flags, "--config.data.mc_draws=8", config=str(config))
    assert code == 0, out
    train = read_jsonl(tmp_path / "run" / "metrics" / "train.jsonl")
    (ev,) = read_jsonl(tmp_path / "run" / "metrics" / "eval.jsonl")
    for record in (*train, ev):
        assert 0 < record["entropy_stderr"] < 0.5, record
    c = default_config()
    graph = parse_graph(CONTEXT_GRAPH)
    tables = as_device_tables(draw_kernels(graph, c.data.graph_seed))
    tokens = sample_tokens(graph, tables, c.eval.seed, np.arange(8), 32)  # TINY: 1 batch of 8 x 32
    want = sequence_entropy(graph, tables, tokens, mc_draws=8, mc_seed=c.data.mc_seed)
    assert ev["entropy"] == pytest.approx(float(want.per_sequence.mean()), abs=1e-4)
    assert ev["entropy_stderr"] == pytest.approx(float(want.stderr.mean()), rel=1e-3)
