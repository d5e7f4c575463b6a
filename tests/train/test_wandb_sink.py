"""Weights & Biases logging of a training run (gssm_jax/train/wandb_sink.py), offline: the tests
read back what wandb wrote in the run's DIR/wandb/offline-run-*/ (tests/wandb_offline.py)."""

from __future__ import annotations

import json
import sys

import pytest
import wandb_offline
from conftest import read_jsonl, run_cmd

from gssm_jax.config import ConfigError
from gssm_jax.train import wandb_run, wandb_sink

pytest.importorskip("wandb")

SHORT = [
    "--config.optim.warmup=2",
    "--config.log.period=2",
    "--config.eval.period=4",
    "--config.checkpoint.period=4",
    "--config.log.wandb.mode=offline",
    "--config.log.wandb.project=tests",
    "--config.log.wandb.tags=('ci',)",
    "--config.log.wandb.system_stats=False",
]


def test_a_run_and_its_resume_are_one_wandb_run_with_every_record(wandb_env, tmp_path, run_main):
    run = tmp_path / "run"
    trace = ["--config.profile.start_step=1", "--config.profile.num_steps=1"]
    code, out = run_main(run, "--config.optim.steps=8", *SHORT, *trace)
    assert code == 0, out
    code, out = run_main(run, "--config.optim.steps=12", *SHORT)  # resumed from step 8
    assert code == 0 and "resumed from" in out, out
    state = wandb_run.SyncState.load(run)
    starts = wandb_offline.offline_runs(run / "wandb")
    assert [s.run_id for s in starts] == [state.id, state.id] and all(s.exited for s in starts)
    first, second = starts
    assert (first.project, first.name, first.group, first.tags) == ("tests", "run", "", ["ci"])
    # the config: the resolved config.json (then the resumed one, optim.steps changed)
    assert first.config == json.loads((run / "config.json").read_text())
    assert second.config == json.loads((run / "config.1.json").read_text())
    # every train and eval record once, at its step, across the two starts
    rows = [row for s in starts for row in s.history]
    assert [r["_step"] for r in rows] == sorted({r["_step"] for r in rows})
    for stream in ("train", "eval"):
        records = read_jsonl(run / "metrics" / f"{stream}.jsonl")
        sent = {r["_step"]: r[f"{stream}/loss"] for r in rows if f"{stream}/loss" in r}
        assert sent == {r["step"]: r["loss"] for r in records}, stream
    assert max(r["_step"] for r in first.history) == 8
    assert min(r["_step"] for r in second.history) == 10
    assert all(r["tokens"] == r["_step"] * 8 * 32 for r in rows)
    # the final summary, and the profile window's traces as an artifact
    final = json.loads((run / "final.json").read_text())
    assert first.summary["status"] == "complete" and first.summary["step"] == 8
    assert second.summary["eval_kl_gap"] == pytest.approx(final["eval"]["kl_gap"])
    assert second.summary["step"] == 12
    (artifact,) = first.artifacts
    assert artifact["type"] == "profile" and "trace.json.gz" in artifact["files"]
    assert not second.artifacts  # the traces did not change: not sent again
    # uploading the run afterwards adds its report's summary and figures, no record twice
    from gssm_jax.report import main as report_main

    assert report_main([str(run), "--wandb", "offline", "--quiet"]) == 0
    third = wandb_offline.offline_runs(run / "wandb")[2]
    assert third.run_id == state.id and third.history == []
    assert third.summary["params"] > 0 and "figures/report/kl_gap_vs_tokens" in third.summary


def _records(steps):
    return [("train", {"step": s, "loss": 1.0 / s}) for s in steps]


def test_a_resume_from_an_older_checkpoint_does_not_send_steps_twice(wandb_env, tmp_path):
    config = {"data": {"batch_size": 2, "seq_len": 4}, "seed": 0}
    for steps in ((1, 2, 3, 4, 5, 6), (5, 6, 7)):  # the second start re-trains 5 and 6
        sink = wandb_sink.WandbSink(tmp_path, config, "offline", "tests", system_stats=False)
        for stream, record in _records(steps):
            sink.write(stream, record)
        sink.close(summary={"status": "stopped"})
    starts = wandb_offline.offline_runs(tmp_path / "wandb")
    assert [[r["_step"] for r in s.history] for s in starts] == [[1, 2, 3, 4, 5, 6], [7]]
    assert starts[1].summary.get("status") is None  # the same summary is not sent again


def test_a_wandb_failure_warns_once_and_training_goes_on(wandb_env, tmp_path, monkeypatch, capsys):
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.CommError("cannot reach the server\n(details)")

    monkeypatch.setattr(wandb, "init", refuse)
    sink = wandb_sink.WandbSink(tmp_path, {}, "online", "tests", system_stats=False)
    for stream, record in _records((1, 2)):
        sink.write(stream, record)
    sink.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CommError: cannot reach the server (details)" in err[0]
    assert "--wandb" in err[0] and not sink.enabled


def test_only_process_0_logs_and_disabled_means_no_sink(tmp_path):
    on = {"log": {"wandb": {"mode": "offline", "project": "p"}}}
    assert wandb_sink.sinks_for_run(str(tmp_path), on, is_chief=False) == []
    off = {"log": {"wandb": {"mode": "disabled"}}}
    assert wandb_sink.sinks_for_run(str(tmp_path), off, is_chief=True) == []
    assert not (tmp_path / "wandb").exists()


def test_without_the_wandb_package_a_run_fails_in_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[wandb\]'"):
        wandb_sink.require_wandb("offline")
    wandb_sink.require_wandb("disabled")  # no package needed
    blocker = tmp_path / "blocker" / "wandb"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker.parent))
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "gssm_jax.main", f"--workdir={workdir}"]
    code, out, err = run_cmd([*cmd, "--config.log.wandb.mode=offline"], tmp_path)
    assert code == 2, out + err
    assert err.strip().splitlines() == [
        "error: log.wandb.mode='offline' needs the wandb package, which is not installed: "
        "pip install -e '.[wandb]'"
    ]
    assert not workdir.exists()


def test_log_wandb_keys_are_checked_before_a_run_starts():
    from gssm_jax.config import default_config, validate

    c = default_config()
    c.log.wandb.mode = "sometimes"
    with pytest.raises(ConfigError, match=r"log\.wandb\.mode='sometimes': must be 'disabled'"):
        validate(c)
    c.log.wandb.mode, c.log.wandb.project = "offline", ""
    with pytest.raises(ConfigError, match=r"log\.wandb\.project='': must name a project"):
        validate(c)
