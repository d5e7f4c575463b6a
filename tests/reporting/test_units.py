"""The report's pieces without training: launcher logs -> statuses, partial files, run discovery."""

import json

import pandas as pd
import pytest

pytest.importorskip("pandas")

from gssm_jax.reporting import runs, table  # noqa: E402

LOG = """\
[run.sh 2026-11-30 09:00:00] task 3: attempt 1, 1 process(es) on this host
0: step 10 | loss 1.0
[run.sh 2026-11-30 09:01:40] task 3: checkpoint saved (exit 75); restarting it as Slurm would requeue it
[run.sh 2026-11-30 09:01:40] task 3: exit 75
[run.sh 2026-11-30 09:02:00] task 3: job 17_3, attempt 2, 1 process(es) on node1
"""


def test_launcher_events_give_status_and_time(tmp_path):
    log = tmp_path / "3.out"
    log.write_text(LOG)
    events = runs._events(log, 3)
    assert [kind for _, kind, _ in events] == ["start", "exit", "start"]
    assert runs.status_of(None, events, True) == ("running", 75)
    assert runs.status_of(None, events[:2], True) == ("stopped", 75)
    assert runs.status_of({"step": 1}, events, True) == ("complete", 75)
    failed = [*events, (events[-1][0] + 5, "exit", 1)]
    assert runs.status_of(None, failed, True) == ("failed", 1)
    assert runs.status_of(None, [], False) == ("pending", None)
    assert runs._attempt_time(failed, 0.0) == 100 + 5


def test_a_line_cut_off_mid_write_is_skipped(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"step": 2, "loss": 1.5}\n{"step": 4, "lo')
    assert runs.read_jsonl(path) == [{"step": 2, "loss": 1.5}]


def test_bare_run_directories_are_found_below_a_folder(tmp_path):
    for name in ("a", "b/c"):
        (tmp_path / name / "metrics").mkdir(parents=True)
        (tmp_path / name / "metrics" / "eval.jsonl").write_text('{"step": 5, "kl_gap": 0.5}\n')
    (tmp_path / "b" / "c" / "evals").mkdir()
    (tmp_path / "b" / "c" / "evals" / "5.json").write_text(json.dumps({"kl_t": [0.3, 0.2]}))
    refs = runs.find_runs([str(tmp_path)])
    assert [r.name for r in refs] == ["a", "c"]
    loaded = [runs.load_run(r) for r in refs]
    assert [r.status for r in loaded] == ["running", "running"]
    assert loaded[1].kl_t == {"step": 5, "kl_t": [0.3, 0.2]}
    frame = table.runs_table(loaded)
    assert list(frame["eval_kl_gap"]) == [0.5, 0.5] and frame["params"].isna().all()


def test_graph_facts_apply_the_alpha_overrides():
    graph = {
        "Z1": {"state_dim": 4, "alpha": 0.5},
        "Z2": {"state_dim": 4, "alpha": 0.5},
        "X": {"state_dim": 32, "alpha": 0.1, "parents": ["Z1", "Z2"], "observed": True},
    }
    facts = table.graph_facts({"data": {"graph": graph, "alpha_x": 0.2, "alpha_z": None}})
    assert facts == {"hidden_nodes": 2, "vocab": 32, "alpha_x": 0.2, "alpha_z": 0.5}
    frame = pd.DataFrame({"k": [1, 1], "j": [1, 2]})
    assert table.varying(frame, ["k", "j"]) == ["j"]


def test_runs_without_the_colour_key_are_drawn_grey(tmp_path):
    refs = []
    for i, point in enumerate([{"optim.lr": 0.1}, {"optim.lr": 0.2}, None]):
        d = tmp_path / f"r{i}"
        (d / "metrics").mkdir(parents=True)
        (d / "metrics" / "eval.jsonl").write_text(
            '{"step": 2, "kl_gap": 0.5}\n{"step": 4, "kl_gap": 0.25}\n'
        )
        task = {"task_id": 0, "grid_point": point} if point else None
        refs.append(runs.RunRef(f"r{i}", d, task))
    loaded = [runs.load_run(r) for r in refs]
    for run in loaded:
        run.config = {"data": {"batch_size": 2, "seq_len": 8}}
    frame = table.runs_table(loaded)
    assert frame["optim.lr"].isna().tolist() == [False, False, True]
    from gssm_jax.reporting import figures

    palette = figures.Palette("optim.lr", frame["optim.lr"])
    assert palette.color(None) == palette.color(float("nan")) != palette.color(0.1)
    path = tmp_path / "tokens.png"
    assert figures.kl_gap_vs_tokens(loaded, frame, "optim.lr", path) is None and path.is_file()
