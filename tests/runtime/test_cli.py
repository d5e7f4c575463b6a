"""gssm_jax.runtime.cli: values typed by the field they replace, overrides in any position, the resume
comparison's split into experiment-changing and harmless keys."""

from __future__ import annotations

import pytest
from conftest import ROOT

from gssm_jax.config import default_config
from gssm_jax.runtime import cli
from gssm_jax.train import workdir


def test_values_take_the_type_of_their_field():
    c = default_config()
    for key, text in (
        ("optim.lr", "1e-2"),
        ("optim.steps", "12"),
        ("model.remat", "true"),
        ("data.alpha_x", "0.5"),
        ("model.transformer.attention", "xla"),
        ("data.graph.X.parents", "['Z1', 'Z2']"),
        ("mesh.rules", "(('batch', 'data'),)"),
    ):
        cli.apply_override(c, key, text)
    assert (c.optim.lr, c.optim.steps, c.model.remat) == (1e-2, 12, True)
    assert (c.data.alpha_x, c.model.transformer.attention) == (0.5, "xla")
    assert c.data.graph.X.parents == ["Z1", "Z2"] and c.mesh.rules == (("batch", "data"),)
    cli.apply_override(c, "data.graph", "{'X': {'state_dim': 8, 'observed': True}}")
    assert list(c.data.graph) == ["X"] and c.data.graph.X.state_dim == 8


@pytest.mark.parametrize(
    ("key", "text", "named"),
    [
        ("optim.steps", "12.5", "expected an integer"),
        ("model.remat", "maybe", "expected true or false"),
        ("mesh.rules", "3", "tuple literal"),
        ("data.graph", "[1]", "dict literal"),
        ("optim", "{", "dict literal"),
        ("optim.lr.x", "1", "config key optim.lr.x: section optim.lr has no field 'x'"),
    ],
)
def test_bad_values_name_the_flag_and_key(key, text, named):
    with pytest.raises(cli.CliError, match=f"--config.{key}=") as info:
        cli.apply_override(default_config(), key, text)
    assert named in str(info.value)


def test_overrides_apply_before_or_after_config(capsys):
    parser = cli.config_parser("test", None, None)
    argv = ["--config.optim.lr=0.5", f"--config={ROOT}/configs/debug.py", "--config.seed=3"]
    _, c = cli.parse_args(parser, argv, None)
    assert (c.optim.lr, c.seed) == (0.5, 3)
    with pytest.raises(SystemExit) as info:
        cli.parse_args(cli.config_parser("test", None, None), ["--config.seed=1"], None)
    assert info.value.code == 2 and "error: --config FILE is required" in capsys.readouterr().err


def test_resume_changes_split_into_experiment_and_harmless_keys():
    a, b = default_config(), default_config()
    b.log.period, b.optim.steps, b.eval.batches, b.profile.start_step = 7, 900, 2, 5
    b.data.alpha_x, b.optim.lr, b.model.emb_dim, b.data.graph.Z1.alpha = 0.5, 1.0, 128, 0.3
    changed = workdir.changes(workdir.as_dict(a), workdir.as_dict(b))
    harmless = sorted(k for k, _, _ in changed if workdir.is_harmless(k))
    assert harmless == ["eval.batches", "log.period", "optim.steps", "profile.start_step"]
    assert sorted(k for k, _, _ in changed if not workdir.is_harmless(k)) == [
        "data.alpha_x",
        "data.graph.Z1.alpha",
        "model.emb_dim",
        "optim.lr",
    ]
