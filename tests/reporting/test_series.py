"""Which runs a scaling line may join (reporting/series.py), in the PNG and the interactive chart:
never runs that differ in a key other than the x axis (issue 27: a transformer and a mamba run
both without optim.lr were joined by one grey line)."""

from __future__ import annotations

import matplotlib.axes
import pandas as pd
import pytest
from fake_runs import mixed_runs

from gssm_jax.reporting import figures, interactive, plan
from gssm_jax.reporting.runs import find_runs, load_run
from gssm_jax.reporting.series import cell_splits, label, series_labels
from gssm_jax.reporting.table import DERIVED, grid_keys, runs_table


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> pd.DataFrame:
    paths = mixed_runs(tmp_path_factory.mktemp("mixed"))
    return runs_table([load_run(r) for r in find_runs([str(p) for p in paths])])


def _lines(table: pd.DataFrame, x: str) -> pd.Series:
    return series_labels(table, x, [*grid_keys(table), *DERIVED])


def test_a_line_never_joins_runs_that_differ_in_another_key(mixed):
    lines = _lines(mixed, "params")
    assert lines.nunique() == 4  # lr 1e-3, lr 3e-3, and lr 1e-2 (outside the sweep) per family
    for _, part in mixed.groupby(lines):
        assert part["family"].nunique() == 1
        assert part["optim.lr"].map(label).nunique() == 1
    # what a line does join: the widths (its x axis) and the seeds (averaged)
    sweep = mixed[mixed["optim.lr"] == 1e-3]
    assert _lines(mixed, "params")[sweep.index].nunique() == 1
    assert sweep["model.emb_dim"].nunique() == 2 and sweep["seed"].nunique() == 2


def test_only_whole_number_model_keys_move_along_the_params_axis():
    table = pd.DataFrame(
        {
            "model.emb_dim": [32, 64, 32, 64],
            "model.dtype": ["float32", "float32", "bfloat16", "bfloat16"],
            "params": [1000, 4000, 1000, 4000],
            "family": ["transformer"] * 4,
        }
    )
    lines = series_labels(table, "params", ["model.emb_dim", "model.dtype", *DERIVED])
    assert list(lines) == ["model.dtype=float32"] * 2 + ["model.dtype=bfloat16"] * 2
    # against train_sequences a width is another key: a line per width
    assert series_labels(table, "train_sequences", ["model.emb_dim"]).nunique() == 2


@pytest.mark.parametrize("colour", ["family", "optim.lr"])
def test_the_png_draws_a_line_per_series_whatever_colours_it(mixed, colour, tmp_path, monkeypatch):
    drawn = []
    plot = matplotlib.axes.Axes.plot

    def record(self, *args, **kwargs):
        drawn.append(list(args[0]))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    assert figures.scaling(mixed, "params", "best_eval_kl_gap", colour, tmp_path / "p.png") is None
    assert len(drawn) == 4


def test_the_interactive_chart_draws_the_same_lines_and_hovers_each_run(mixed):
    fig = interactive.scaling(mixed, "params", "best_eval_kl_gap", "family")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    dots = [t for t in fig.data if t.mode == "markers"]
    assert len(lines) == 4 and sum(len(t.x) for t in dots) == len(mixed)
    colours = {t.name: t.line.color for t in lines}
    assert colours["optim.lr=0.01, family=mamba"] != colours["optim.lr=0.01, family=transformer"]
    texts = [text for t in dots for text in t.text]
    assert any("<b>lr/5</b>" in t and "optim.lr=0.003" in t and "seed=1" in t for t in texts)
    assert any("<b>mamba_64</b>" in t and "family=mamba" in t for t in texts)


def test_a_heatmap_cell_never_averages_two_families():
    table = pd.DataFrame(
        {
            "run": [f"r{i}" for i in range(8)],
            "alpha_x": [0.1, 0.1, 1.0, 1.0] * 2,
            "alpha_z": [0.1, 1.0] * 4,
            "family": ["transformer"] * 4 + ["mamba"] * 4,
            "best_eval_kl_gap": [0.1, 0.2, 0.3, 0.4, 1.1, 1.2, 1.3, 1.4],
        }
    )
    assert cell_splits(table, ["alpha_x", "alpha_z"], ["family", *DERIVED]) == ["family"]
    fig = interactive.heatmap(table, "alpha_x", "alpha_z", "best_eval_kl_gap")
    assert [a.text for a in fig.layout.annotations] == ["family=transformer", "family=mamba"]
    means = sorted(cell[0] for t in fig.data for row in t.customdata for cell in row)  # z: log10
    assert means == pytest.approx([0.1, 0.2, 0.3, 0.4, 1.1, 1.2, 1.3, 1.4])


def test_the_report_colours_and_groups_by_family_when_families_differ(mixed):
    keys = plan.choose_keys(mixed, plan.ReportRequest(paths=[]))
    assert (keys.color, keys.group_params, keys.group_sequences) == ("family", "family", "family")
    one_family = mixed[mixed["family"] == "transformer"]
    assert plan.choose_keys(one_family, plan.ReportRequest(paths=[])).color == "optim.lr"
    chosen = plan.choose_keys(mixed, plan.ReportRequest(paths=[], color="seed", group="seed"))
    assert chosen.color == "seed" and chosen.group_params == "seed"  # what the user asks wins


def test_the_heatmap_takes_two_keys_that_form_a_grid_among_the_runs_holding_both(tmp_path):
    nan = float("nan")
    table = pd.DataFrame(
        {
            "run": [f"r{i}" for i in range(7)],
            "status": "complete",
            "optim.lr": [1e-3, 3e-3, 1e-2, nan, nan, nan, nan],  # one sweep ...
            "model.family": [nan, nan, nan, "transformer", "transformer", "mamba", "mamba"],
            "model.emb_dim": [nan, nan, nan, 16, 32, 16, 32],  # ... and another
            "family": ["transformer"] * 5 + ["mamba"] * 2,
            "best_eval_kl_gap": [0.3, 0.2, 0.4, 0.5, 0.3, 0.6, 0.4],
        }
    )
    keys = plan.choose_keys(table, plan.ReportRequest(paths=[]))
    assert keys.heatmap == ("model.family", "model.emb_dim")
    # model.family of one sweep says what the family column says for all: no second split
    lines = series_labels(table, "params", ["optim.lr", "model.family", "family"])
    assert set(lines[3:]) == {"optim.lr=none, family=transformer", "optim.lr=none, family=mamba"}
    why = figures.heatmap(table, "optim.lr", "model.family", "best_eval_kl_gap", tmp_path / "h.png")
    assert why == "fewer than two (optim.lr, model.family) cells with a best_eval_kl_gap"
