"""Uploading runs already on disk (`python -m gssm_jax.report PATH --wandb`, reporting/upload.py),
offline: what wandb wrote is read back from each run's DIR/wandb/offline-run-*/."""

from __future__ import annotations

import json
import sys

import pytest
import wandb_offline
from fake_runs import STEPS, write_run, write_sweep

from gssm_jax.report import main as report_main
from gssm_jax.train import wandb_run

pytest.importorskip("wandb")

POINTS = [{"optim.lr": lr, "seed": s} for lr in (1e-3, 3e-3) for s in (0, 1)]


def _starts(run_dir):
    return wandb_offline.offline_runs(run_dir / "wandb")


def test_a_sweep_uploads_one_run_per_task_grouped_by_sweep(wandb_env, tmp_path, capsys):
    sweep = write_sweep(tmp_path, "lrsweep", POINTS)
    argv = [str(sweep), "--out", str(tmp_path / "report"), "--wandb", "offline"]
    assert report_main(argv) == 0
    err = capsys.readouterr().err
    for i, point in enumerate(POINTS):
        run = sweep / "runs" / str(i)
        (start,) = _starts(run)
        assert start.run_id == wandb_run.SyncState.load(run).id
        assert (start.name, start.group, start.project) == (f"lrsweep/{i}", "lrsweep", "gssm_jax")
        assert start.config["grid"] == point and start.config["optim"]["lr"] == point["optim.lr"]
        train = {r["_step"]: r["train/loss"] for r in start.history}
        expected = [json.loads(line) for line in (run / "metrics" / "train.jsonl").open()]
        assert train == {r["step"]: r["loss"] for r in expected}
        assert [r["_step"] for r in start.history if "eval/kl_gap" in r] == list(STEPS)
        final = json.loads((run / "final.json").read_text())
        assert start.summary["status"] == "complete" and start.summary["step"] == STEPS[-1]
        assert start.summary["eval_kl_gap"] == pytest.approx(final["eval"]["kl_gap"])
        assert start.summary["params"] > 0 and start.summary["family"] == "transformer"
        sent = f"lrsweep/{i} (wandb id {start.run_id}): sent {2 * len(STEPS)} records, 1 summary"
        assert sent in err


def test_uploading_twice_sends_nothing_and_starts_no_wandb_run(wandb_env, tmp_path, capsys):
    run = write_run(tmp_path / "single")
    argv = [str(run), "--wandb", "offline"]
    assert report_main(argv) == 0
    (first,) = _starts(run)
    assert len(first.history) == len(STEPS) and first.exited
    # the run's own report figures (RUN/report/*.png, written by this report) went with it
    figure = first.summary["figures/report/kl_gap_vs_tokens"]
    assert figure["_type"] == "image-file" and figure["caption"] == "kl_gap_vs_tokens.png"
    assert any(f.endswith(".png") for f in first.files)
    state = wandb_run.SyncState.path(run).read_text()
    capsys.readouterr()
    assert report_main(argv) == 0
    assert "up to date, nothing sent" in capsys.readouterr().err
    assert len(_starts(run)) == 1 and wandb_run.SyncState.path(run).read_text() == state
    # another project is another target: everything goes there too, under the same run id
    assert report_main([*argv, "--wandb-project", "other", "--quiet"]) == 0
    second = _starts(run)[1]
    assert second.project == "other" and second.run_id == first.run_id
    assert len(second.history) == len(STEPS)


def test_pending_tasks_are_skipped(wandb_env, tmp_path, capsys):
    sweep = write_sweep(tmp_path, "half", POINTS[:2])
    pending = sweep / "runs" / "1"
    for name in ("final.json", "config.json"):
        (pending / name).unlink()
    for name in ("train.jsonl", "eval.jsonl"):
        (pending / "metrics" / name).unlink()
    assert report_main([str(sweep), "--out", str(tmp_path / "r"), "--wandb", "offline"]) == 0
    assert "half/1: nothing on disk yet, skipped" in capsys.readouterr().err
    assert len(_starts(sweep / "runs" / "0")) == 1 and not (pending / "wandb").exists()


def test_without_the_wandb_package_the_upload_is_one_line_naming_the_extra(
    tmp_path, monkeypatch, capsys
):
    run = write_run(tmp_path / "single")
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    assert report_main([str(run), "--wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --wandb='online' needs the wandb package, which is not installed: "
        "pip install -e '.[wandb]'"
    ]
    assert not (run / "report").exists()  # checked before anything is written
