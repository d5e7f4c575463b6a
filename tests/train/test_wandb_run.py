"""Which wandb run a directory is and what it has been sent (gssm_jax/train/wandb_run.py): no wandb
needed."""

from __future__ import annotations

import json

from gssm_jax.train import wandb_run as wr


def _sweep_task(root, name="lr", point=None):
    sweep = root / name
    (sweep / "tasks").mkdir(parents=True)
    (sweep / "runs" / "3").mkdir(parents=True)
    (sweep / "run.sh").write_text("#!/bin/bash\n")
    (sweep / "submit.json").write_text(json.dumps({"name": name}))
    task = {"task_id": 3, "grid_point": point or {"optim.lr": 0.01}}
    (sweep / "tasks" / "3.json").write_text(json.dumps(task))
    return sweep / "runs" / "3"


def test_a_sweep_task_is_named_after_its_sweep_with_its_grid_point(tmp_path):
    run = _sweep_task(tmp_path, point={"optim.lr": 0.01, "seed": 2})
    assert wr.identity(run) == wr.Identity("lr/3", "lr", {"optim.lr": 0.01, "seed": 2})
    plain = tmp_path / "alone"
    plain.mkdir()
    assert wr.identity(plain) == wr.Identity("alone", "", {})
    # runs/<i> without the root's files is no task
    (tmp_path / "x" / "runs" / "0").mkdir(parents=True)
    assert wr.identity(tmp_path / "x" / "runs" / "0").group == ""


def test_the_stable_id_depends_on_the_directory_and_config_but_not_log_wandb(tmp_path):
    config = {"optim": {"lr": 0.1}, "log": {"period": 10, "wandb": {"mode": "offline"}}}
    a = wr.stable_run_id(tmp_path / "a", config)
    assert a == wr.stable_run_id(tmp_path / "a", {**config, "log": {"period": 10}})
    assert a != wr.stable_run_id(tmp_path / "b", config)  # same config, another run
    assert a != wr.stable_run_id(tmp_path / "a", {**config, "optim": {"lr": 0.2}})
    assert len(a) == 16 and int(a, 16) >= 0


def test_progress_sends_each_step_once_and_never_goes_back():
    p = wr.Progress()
    assert p.wants("train", 10)
    p.sent("train", 10)
    assert p.wants("eval", 10)  # eval at the step a train record was sent at
    p.sent("eval", 10)
    assert not p.wants("train", 10) and not p.wants("eval", 10)
    assert not p.wants("train", 5)  # re-trained after a resume from an older checkpoint
    p.sent("train", 20)
    assert not p.wants("eval", 15)  # wandb's steps only go forward
    assert p.wants("eval", 20) and p.wants("train", 30)


def test_sync_state_round_trips_and_keeps_targets_apart(tmp_path):
    state = wr.SyncState.of(tmp_path, {"seed": 0})
    assert state.id == wr.stable_run_id(tmp_path, {"seed": 0})
    state.progress(wr.target("offline", "", "p")).sent("train", 7)
    state.progress(wr.target("offline", "", "p")).digests["summary"] = "abc"
    state.save(tmp_path)
    again = wr.SyncState.load(tmp_path)
    assert again == state
    assert again.progress(wr.target("online", "", "p")).wants("train", 7)  # not sent there yet
    (tmp_path / "wandb" / wr.STATE).write_text("{not json")
    assert wr.SyncState.load(tmp_path) is None


def test_summary_of_a_run_directory(tmp_path):
    (tmp_path / "metrics").mkdir()
    evals = [{"step": 10, "kl_gap": 0.5, "loss": 1.5}, {"step": 20, "kl_gap": 0.3, "loss": 1.3}]
    evals.append({"step": 30, "kl_gap": float("nan"), "loss": float("nan")})
    lines = [json.dumps(r) for r in evals]
    (tmp_path / "metrics" / "eval.jsonl").write_text("\n".join(lines) + "\n{cut off")
    s = wr.summary_from_dir(tmp_path, failed=False)
    assert s == {"status": "stopped", "step": 30, "best_eval_kl_gap": 0.3, "best_eval_step": 20}
    assert wr.summary_from_dir(tmp_path, failed=True)["status"] == "failed"
    final = {"step": 30, "eval": {"loss": 1.2, "entropy": 1.0, "kl_gap": 0.2}}
    (tmp_path / "final.json").write_text(json.dumps(final))
    s = wr.summary_from_dir(tmp_path, failed=True)
    assert s["status"] == "complete" and s["eval_kl_gap"] == 0.2 and s["eval_loss"] == 1.2


def test_history_rows_carry_numbers_by_stream_and_tokens():
    record = {"step": 4, "loss": 1.0, "mfu": None, "note": "x", "ok": True, "lr": 1e-3}
    row = wr.history_row("train", record, per_step=256)
    assert row == {"train/loss": 1.0, "train/lr": 1e-3, "tokens": 1024}
