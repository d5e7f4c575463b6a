"""The report end to end: a tiny real sweep (`launch.submit --grid ... --local`, 2 x 2 points on the
debug data sets of experiment 1), a run that fails and one still running, then `gssm_jax.report`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, subprocess_env

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

import matplotlib.image as mpimg  # noqa: E402
import pandas as pd  # noqa: E402

from gssm_jax.report import main as report_main  # noqa: E402

FIGURES = (
    "kl_gap_vs_tokens.png",
    "kl_gap_vs_params.png",
    "kl_gap_vs_train_sequences.png",
    "heatmap.png",
    "kl_t.png",
)
SHORT = (
    "--config.optim.steps=6",
    "--config.log.period=2",
    "--config.eval.period=2",
    "--config.eval.batches=1",
    "--config.checkpoint.period=6",
    "--config.model.nb_layers=1",
)
SWEEP = ("--config", "configs/experiment1/sweep.py:debug", "--grid", "configs/grids/exp1_debug.py")


def _run(*cmd: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *cmd],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(root: Path, name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return _run(
        "launch.submit", *args, "--name", name, "--root", str(root), "--local", *SHORT, env=env
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """Debug sets written, the 2 x 2 sweep run, one run failed and one started; the report taken
    while that one is running, then again once it has been stopped."""
    tmp = tmp_path_factory.mktemp("report")
    env = subprocess_env(GSSM_DATA_ROOT=str(tmp / "data"))
    written = _run("gssm_jax.write_data", "--config", "configs/experiment1/data_debug.py", env=env)
    assert written.returncode == 0, written.stderr
    runs = tmp / "runs"
    done = _submit(runs, "sweep", *SWEEP, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # alpha_x 0.5 has no written set: the run starts, finds no data and exits 2.
    failed = _submit(runs, "failed", *SWEEP[:2], "--config.data.alpha_x=0.5", env=env)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    # An evaluation output of gssm_jax.inference.evaluation for one run (kl_t per position).
    evals = runs / "sweep" / "runs" / "0" / "evals"
    evals.mkdir()
    (evals / "6.json").write_text(json.dumps({"step": 6, "kl_t": list(np.linspace(1.0, 0.2, 31))}))

    live = subprocess.Popen(
        [sys.executable, "-m", "launch.submit", *SWEEP[:2], "--name", "live", "--root", str(runs),
         "--local", *SHORT, "--config.data.alpha_x=0.1", "--config.optim.steps=100000",
         "--config.eval.period=100000"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for(runs / "live" / "runs" / "0" / "metrics" / "train.jsonl", live)
        code = report_main([str(runs), "--out", str(tmp / "report"), "--quiet"])
    finally:
        live.send_signal(signal.SIGTERM)
        out, _ = live.communicate(timeout=120)
    assert code == 0
    assert live.returncode == 75, out
    after = report_main([str(runs / "live"), "--out", str(tmp / "after"), "--quiet"])
    assert after == 0
    return {"tmp": tmp, "report": tmp / "report", "after": tmp / "after"}


def test_csv_has_one_row_per_run_with_grid_keys(sweep):
    table = pd.read_csv(sweep["report"] / "runs.csv")
    rows = table[table["run"].str.startswith("sweep/")].sort_values("run")
    assert len(rows) == 4 and set(rows["status"]) == {"complete"}
    points = set(zip(rows["model.emb_dim"], rows["data.train_sequences"]))
    assert points == {(8, 128), (8, 1024), (32, 128), (32, 1024)}
    assert set(rows["data.alpha_x"]) == {0.1} and set(rows["alpha_z"]) == {0.001}
    assert (rows["train_sequences"] == rows["data.train_sequences"]).all()
    assert (rows["step"] == 6).all() and (rows["tokens"] == 6 * 16 * 32).all()
    small, large = (rows[rows["model.emb_dim"] == d]["params"].iloc[0] for d in (8, 32))
    assert 0 < small < large
    for key in ("train_loss", "eval_loss", "eval_entropy", "eval_kl_gap", "best_eval_kl_gap"):
        assert rows[key].notna().all(), key
    gap = rows["eval_loss"] - rows["eval_entropy"]
    assert (
        np.allclose(gap, rows["eval_kl_gap"])
        and (rows["best_eval_kl_gap"] <= rows["eval_kl_gap"] + 1e-9).all()
    )
    assert (rows["family"] == "transformer").all() and (rows["wall_time_s"] > 0).all()


def test_every_figure_exists_decodes_and_is_not_blank(sweep):
    for name in FIGURES:
        image = mpimg.imread(sweep["report"] / name)
        assert image.shape[-1] == 4 and min(image.shape[:2]) > 100, name  # RGBA
        rgba_N = np.ascontiguousarray((image[..., :4] * 255).astype(np.uint8)).view(np.uint32)
        colours = len(np.unique(rgba_N))
        assert colours > 20, f"{name}: {colours} colours, looks blank"
    page = (sweep["report"] / "index.html").read_text()
    for name in (*FIGURES, "runs.csv", "sweep/3"):
        assert name in page


def test_failed_and_running_runs_show_their_status(sweep):
    table = pd.read_csv(sweep["report"] / "runs.csv").set_index("run")
    assert table.loc["failed/0", "status"] == "failed" and table.loc["failed/0", "exit_code"] == 2
    assert table.loc["live/0", "status"] == "running" and table.loc["live/0", "step"] >= 2
    page = (sweep["report"] / "index.html").read_text()
    assert "failed/0: failed (exit 2)" in page and "live/0: running" in page
    stopped = pd.read_csv(sweep["after"] / "runs.csv").set_index("run")
    assert stopped.loc["live/0", "status"] == "stopped" and stopped.loc["live/0", "exit_code"] == 75


def test_bad_paths_and_keys_exit_2(sweep, tmp_path, capsys):
    assert report_main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "no such directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "holds no run directory" in capsys.readouterr().err
    runs = str(sweep["tmp"] / "runs" / "sweep")
    assert (
        report_main([runs, "--out", str(tmp_path / "r"), "--color", "no.such_key", "--quiet"]) == 2
    )
    assert "key 'no.such_key'" in capsys.readouterr().err


def test_any_config_key_can_colour_and_group(sweep, tmp_path):
    out = tmp_path / "r"
    runs = str(sweep["tmp"] / "runs" / "sweep")
    assert (
        report_main(
            [
                runs,
                "--out",
                str(out),
                "--color",
                "optim.lr",
                "--heatmap",
                "model.emb_dim",
                "data.train_sequences",
                "--metric",
                "final",
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "runs.csv")
    assert set(table["optim.lr"]) == {1e-3}
    assert (out / "heatmap.png").is_file() and (out / "kl_t.png").is_file()


def test_a_root_without_results_gets_a_table_and_says_why_figures_are_missing(sweep, tmp_path):
    out = tmp_path / "r"
    assert report_main([str(sweep["tmp"] / "runs" / "failed"), "--out", str(out), "--quiet"]) == 0
    assert len(pd.read_csv(out / "runs.csv")) == 1
    assert not list(out.glob("*.png"))
    page = (out / "index.html").read_text()
    assert "not drawn, no run has a positive held-out kl_gap yet" in page
    assert "not drawn, no run has evals/&lt;step&gt;.json" in page
