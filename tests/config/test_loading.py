"""Config files compose by imports; every config.json an earlier schema wrote still loads, resumes
without a reported change, and keeps the numerics of the run that wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gssm_jax.config import (
    ConfigError,
    as_dict,
    config_from_dict,
    default_config,
    load_config_file,
    validate,
)
from gssm_jax.config.loading import migrate, package_name
from gssm_jax.train import workdir as workdir_lib

ROOT = Path(__file__).resolve().parents[2]


def _legacy_dict(**model) -> dict:
    """A config.json as the schema before per-family sections wrote it (the transformer's keys in
    the shared model namespace, no fields that came later)."""
    saved = as_dict(default_config())
    m = saved["model"]
    for key, value in m.pop("transformer").items():
        m[key] = value
    del m["hawk"]["decay_init"], m["hawk"]["first_token"]
    del m["mingru"]["candidate"], m["minlstm"]["candidate"]
    m.update(model)
    return saved


def test_a_legacy_config_json_loads_into_the_family_sections():
    c = config_from_dict(_legacy_dict(nb_heads=8, hidden_dim=128, init="fixed"))
    validate(c)
    t = c.model.transformer
    assert (t.nb_heads, t.hidden_dim, t.init) == (8, 128, "fixed")
    assert "nb_heads" not in c.model
    # a field added since with a new default keeps the value the old run had
    assert c.model.hawk.decay_init == "griffin_ac"
    assert c.model.mingru.candidate == "linear"


def test_a_legacy_run_resumes_without_a_reported_change(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_legacy_dict()))
    config = default_config()
    config.model.hawk.decay_init = "griffin_ac"  # what the legacy run's hawk used
    assert workdir_lib.check_resume(str(tmp_path), config, allow=False) == []
    changed = default_config()
    changed.model.transformer.nb_heads = 2
    with pytest.raises(workdir_lib.ConfigChangeError, match="model.transformer.nb_heads 4 -> 2"):
        workdir_lib.check_resume(str(tmp_path), changed, allow=False)


def test_migrate_leaves_a_current_config_as_it_is():
    saved = as_dict(default_config())
    assert migrate(saved) == saved


def test_an_unknown_saved_key_is_named():
    saved = as_dict(default_config())
    saved["model"]["transformer"]["heads"] = 4
    with pytest.raises(ConfigError, match="model.transformer.heads is not in this version"):
        config_from_dict(saved)


def test_config_files_inside_the_configs_package_import_each_other():
    assert package_name(str(ROOT / "configs" / "grids" / "exp2.py"))[1] == "configs.grids.exp2"
    from gssm_jax.config.loading import load_python_function

    grid = load_python_function(str(ROOT / "configs" / "grids" / "exp2.py"), "get_grid")
    assert len(grid["data.graph"]) == 4
    c = load_config_file(str(ROOT / "configs" / "experiment1" / "data_debug.py"))
    assert c.seq_len == 32


def test_a_config_file_outside_any_package_runs_on_its_own(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from gssm_jax.config import default_config\n\n"
        "def get_config():\n    c = default_config()\n    c.optim.steps = 7\n    return c\n"
    )
    assert load_config_file(str(path)).optim.steps == 7
