"""data.train_sequences (epochs over a set's first N sequences) and data.path's grid-point fields."""

import types

import numpy as np
import pytest

from gssm_jax import config as config_lib
from gssm_jax.data import files


def fake_set(n: int):
    """A set whose element for a batch of sequences is those sequences' indices."""
    return types.SimpleNamespace(
        num_sequences=n, path="/sets/x/train", batch=lambda idx_B, rows: {"tokens": idx_B}
    )


def test_epochs_run_over_the_first_n_sequences():
    dataset = files.TrainWalk(fake_set(100), 8, (0, 8), 50, 0, num_sequences=24).dataset()
    seen = np.concatenate([dataset[k]["tokens"] for k in range(6)])  # two epochs of 24
    assert seen.max() < 24
    assert sorted(seen[:24]) == list(range(24)) and sorted(seen[24:]) == list(range(24))
    whole = files.TrainWalk(fake_set(100), 8, (0, 8), 50, 0).dataset()
    seen = np.concatenate([whole[k]["tokens"] for k in range(25)])  # two epochs of 100
    assert sorted(seen[:100]) == list(range(100)) and seen.max() == 99


def test_more_sequences_than_the_set_has_is_named():
    with pytest.raises(files.DatasetError, match="data.train_sequences=101"):
        files.TrainWalk(fake_set(100), 8, (0, 8), 50, 0, num_sequences=101)


def files_config(path: str):
    c = config_lib.default_config()
    c.data.source = "files"
    c.data.path = path
    return c


def test_data_path_fields_name_the_grid_points_set():
    c = files_config("/root/alpha_x={alpha_x}__alpha_z={alpha_z}__seed={graph_seed}/train")
    c.data.alpha_x, c.data.alpha_z, c.data.graph_seed = 1.0, 1e-3, 7
    assert config_lib.resolved_data_path(c) == "/root/alpha_x=1__alpha_z=0.001__seed=7/train"
    assert config_lib.resolved_data_path(files_config("/plain/train")) == "/plain/train"


def test_bad_data_path_fields_are_named():
    with pytest.raises(config_lib.ConfigError, match="unknown field"):
        config_lib.validate(files_config("/root/{alpha}/train"))
    c = files_config("/root/{alpha_z}/train")
    c.data.graph.Z1.alpha = 0.5  # hidden alphas differ, no data.alpha_z to unify them
    with pytest.raises(config_lib.ConfigError, match="one alpha for every hidden node"):
        config_lib.validate(c)
    c = files_config("/plain/train")
    c.data.train_sequences = -1
    with pytest.raises(config_lib.ConfigError, match="data.train_sequences"):
        config_lib.validate(c)
    c = config_lib.default_config()
    c.data.train_sequences = 100
    with pytest.raises(config_lib.ConfigError, match="needs data.source='files'"):
        config_lib.validate(c)
