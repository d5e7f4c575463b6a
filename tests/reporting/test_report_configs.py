"""The experiment grids the README and the configs' docstrings name: each submits (dry run) with
the config it goes with, into the number of runs it promises, and its points are well formed."""

import re

import pytest
from conftest import ROOT

from launch import submit

# ml_collections loads each task's config file with the deprecated load_module()
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

GRIDS = [
    ("configs/experiment1/sweep.py:sizes", "configs/grids/exp1_sizes_x.py", 7 * 10 * 5),
    ("configs/experiment1/sweep.py:sizes", "configs/grids/exp1_sizes_z.py", 6 * 10 * 5),
    ("configs/experiment1/sweep.py:sequences", "configs/grids/exp1_sequences_x.py", 7 * 10 * 9),
    ("configs/experiment1/sweep.py:sequences", "configs/grids/exp1_sequences_z.py", 6 * 10 * 9),
    ("configs/experiment1/sweep.py:debug", "configs/grids/exp1_debug.py", 4),
    ("configs/experiment2/onfly.py", "configs/grids/exp2.py", 4 * 3),
    ("configs/experiment2/onfly.py:debug", "configs/grids/exp2_debug.py", 4),
    ("configs/base.py", "configs/grids/lr.py", 6),
]


@pytest.mark.parametrize(("config", "grid", "count"), GRIDS)
def test_grid_submits_with_its_config(config, grid, count, capsys, tmp_path):
    args = ["--config", str(ROOT / config), "--grid", str(ROOT / grid)]
    code = submit.main(["--dry-run", "--root", str(tmp_path), *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"{count} task(s)" in out.out
    if "exp1" in grid:  # every run reads its own point's set
        paths = re.findall(r"data\.alpha_[xz]=(\S+) data\.graph_seed=(\d+)", out.out)
        assert len(paths) == (count if "debug" not in grid else 0)


def test_experiment2_graphs_share_joint_states_and_alpha_x():
    from configs.experiment2 import onfly as e2

    for nodes, states in e2.STATES.items():
        graph = e2.graph(nodes)
        hidden = [f for name, f in graph.items() if name != "X"]
        assert len(hidden) == nodes and states**nodes == 256
        assert {f["alpha"] for f in hidden} == {e2.ALPHA_Z[nodes]}
        assert graph["X"]["alpha"] == e2.ALPHA_X and graph["X"]["kernel_type"] == "fullrank"
