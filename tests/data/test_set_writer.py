"""The dataset writer: exact tokens and metadata, disjoint splits, re-runs, interrupted writers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, start_cmd

from gssm_jax import write_data
from gssm_jax.data import files, layout, set_grid, set_writer
from gssm_jax.gssm.entropy import sequence_entropy
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels, kernels_hash
from gssm_jax.gssm.sample import sample_tokens

DEBUG = str(ROOT / "configs" / "experiment1" / "data_debug.py")


def small_grid(root, **changes) -> object:
    """The debug grid, smaller still: 2 points x 2 seeds, 96 + 40 sequences of 32 tokens."""
    c = set_grid.load_config(DEBUG)
    c.root = str(root)
    c.n_train, c.n_test, c.batch_size = 96, 40, 64  # a padded last batch in both splits
    for key, value in changes.items():
        c[key] = value
    return c


def sampled(e, tables, first: int, n: int, seq_len: int, batch: int) -> np.ndarray:
    """Sequences first..first+n-1 of e's stream, in padded batches of the writer's (compiled) size."""
    out = []
    for start in range(0, n, batch):
        pos_B = np.minimum(start + np.arange(batch), n - 1)
        out.append(np.asarray(sample_tokens(e.graph, tables, e.data_seed, first + pos_B, seq_len)))
    return np.concatenate(out)[:n]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    c = small_grid(tmp_path_factory.mktemp("grid"))
    counts = set_writer.write_grid(c)
    return c, counts


def test_token_dtype_is_the_smallest_that_holds_the_vocabulary():
    assert layout.token_dtype(2) == np.uint8
    assert layout.token_dtype(256) == np.uint8
    assert layout.token_dtype(257) == np.uint16
    assert layout.token_dtype(65_536) == np.uint16
    assert layout.token_dtype(65_537) == np.uint32


def test_experiment1_grid():
    c = set_grid.load_config(str(ROOT / "configs" / "experiment1" / "data.py"))
    entries = set_grid.entries(c)
    assert len(entries) == 13 * 10  # alpha_x = alpha_z = 1e-3 is one graph, not two
    assert len({e.grid_id for e in entries}) == len(entries)
    assert (c.n_train, c.n_test, c.seq_len) == (1_000_000, 10_000, 257)
    for e in entries:
        assert e.graph.hidden_dims == (64,) and e.graph.vocab_size == 32
        alphas = (e.graph.observed.alpha, e.graph.hidden[0].alpha)
        assert 1e-3 in alphas and set(alphas) <= {1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0}
    assert {e.graph_seed for e in entries} == set(range(10))
    assert len({e.data_seed for e in entries}) == 10


@pytest.mark.parametrize(
    ("key", "value", "name"),
    [
        ("n_train", 0, "n_train"),
        ("seq_len", 1, "seq_len"),
        ("seeds", [1, 1], "seeds"),
        ("grid", [{"Q.alpha": [1.0]}], "'Q.alpha'"),
        ("grid", [{"alpha_x": [-1.0]}], "'alpha'"),
    ],
)
def test_bad_grid_names_the_field(tmp_path, key, value, name):
    c = small_grid(tmp_path)
    c[key] = value
    with pytest.raises(ValueError, match=name):
        set_grid.entries(c)


def test_rereading_gives_the_sampled_tokens_and_metadata(written):
    c, counts = written
    assert counts == {"written": 8, "skipped": 0}
    index = layout.read_json(os.path.join(c.root, layout.INDEX))
    entries = set_grid.entries(c)
    assert sorted(index["sets"]) == sorted(e.grid_id for e in entries)
    for e in entries:
        assert index["sets"][e.grid_id]["graph_seed"] == e.graph_seed
        assert index["sets"][e.grid_id]["graph"] == e.graph.to_dict()
        tables = draw_kernels(e.graph, e.graph_seed)
        for split, (first, n) in set_writer.split_ranges(c).items():
            fs = files.FileSet(os.path.join(c.root, e.grid_id, split))
            meta = fs.metadata
            assert (meta["graph"], meta["graph_seed"], meta["data_seed"]) == (
                e.graph.to_dict(),
                e.graph_seed,
                e.data_seed,
            )
            assert (meta["first_index"], meta["num_sequences"], meta["seq_len"]) == (
                first,
                n,
                c.seq_len,
            )
            assert meta["kernels_hash"] == kernels_hash(tables)
            assert meta["token_dtype"] == "uint8"
            tokens_NxT = fs.read(np.arange(n))
            want_NxT = sampled(e, tables, first, n, c.seq_len, c.batch_size)
            np.testing.assert_array_equal(tokens_NxT, want_NxT)
            for start in (0, n - 64):  # the first and last 64, the writer's (compiled) shape
                part_B = np.clip(start + np.arange(64), 0, n - 1)
                h_B = sequence_entropy(e.graph, as_device_tables(tables), want_NxT[part_B])
                h_B = np.asarray(h_B.per_sequence)
                np.testing.assert_allclose(fs.entropy_N[part_B], h_B, rtol=1e-5)
            h_N = fs.entropy_N
            assert meta["entropy"]["mean"] == pytest.approx(h_N.mean(), rel=1e-12)
            assert meta["entropy"]["stderr"] == pytest.approx(h_N.std(ddof=1) / np.sqrt(n))
            assert meta["entropy"]["method"] == "exact"


def test_train_and_test_share_kernels_never_sequences(written):
    c, _ = written
    for e in set_grid.entries(c):
        train = files.FileSet(os.path.join(c.root, e.grid_id, "train")).metadata
        test = files.FileSet(os.path.join(c.root, e.grid_id, "test")).metadata
        assert train["kernels_hash"] == test["kernels_hash"]
        assert train["data_seed"] == test["data_seed"]
        train_idx = range(train["first_index"], train["first_index"] + train["num_sequences"])
        test_idx = range(test["first_index"], test["first_index"] + test["num_sequences"])
        assert not set(train_idx) & set(test_idx)


def test_rerun_skips_finished_sets(written):
    c, _ = written
    tokens = os.path.join(c.root, set_grid.entries(c)[0].grid_id, "train", layout.TOKENS)
    before = os.stat(tokens).st_mtime_ns
    assert set_writer.write_grid(c) == {"written": 0, "skipped": 8}
    assert os.stat(tokens).st_mtime_ns == before


def test_finished_set_of_another_config_is_an_error(written):
    c, _ = written
    c = small_grid(c.root, n_train=c.n_train + 1)
    with pytest.raises(set_writer.WriteError, match="num_sequences=96"):
        set_writer.write_grid(c)


def test_unfinished_sets_are_rewritten_not_used(tmp_path):
    c = small_grid(tmp_path)
    c.seeds = [0]
    set_writer.write_grid(c)
    e = set_grid.entries(c)[0]
    train = os.path.join(c.root, e.grid_id, "train")
    test = os.path.join(c.root, e.grid_id, "test")
    good = files.FileSet(train).read(np.arange(c.n_train))
    # A writer killed before its rename leaves a temporary directory and no set.
    shutil.move(train, os.path.join(c.root, e.grid_id, ".train.tmp-host-123"))
    # A set copied without its marker (e.g. an interrupted rsync) is not finished either.
    os.remove(os.path.join(test, layout.DONE))
    with pytest.raises(files.DatasetError, match="unfinished"):
        files.FileSet(test)
    counts = set_writer.write_grid(c)
    assert counts["written"] == 2
    assert sorted(os.listdir(os.path.join(c.root, e.grid_id))) == ["test", "train"]
    np.testing.assert_array_equal(files.FileSet(train).read(np.arange(c.n_train)), good)


def test_killed_writer_leaves_no_finished_looking_set(tmp_path, capsys):
    """SIGKILL a writer process mid-set; the next run completes the grid with the right tokens."""
    config = tmp_path / "grid.py"
    config.write_text(
        "from gssm_jax.data.set_grid import load_config\n"
        "def get_config():\n"
        f"    c = load_config({DEBUG!r})\n"
        "    c.grid = [{'alpha_x': [0.1], 'alpha_z': [0.001]}]\n"
        "    c.seeds = [0]\n"
        "    c.n_train, c.n_test, c.batch_size = 400_000, 16, 2048\n"
        "    return c\n"
    )
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "gssm_jax.write_data", f"--config={config}", f"--root={root}"]
    proc = start_cmd(cmd)
    deadline = time.time() + 120
    killed_mid_write = False
    while time.time() < deadline and proc.poll() is None:
        tmps = list(root.glob("*/.train.tmp-*/" + layout.TOKENS))
        if tmps and tmps[0].stat().st_size > 0:
            proc.send_signal(signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=60)
    assert killed_mid_write, out
    (entry,) = [p for p in root.iterdir() if p.is_dir()]
    assert not (entry / "train").exists()  # nothing under the final name
    assert list(entry.glob(".train.tmp-*"))
    with pytest.raises(files.DatasetError, match="no such directory"):
        files.FileSet(str(entry / "train"))

    c = set_grid.load_config(str(config))
    # Finish it smaller and in this process (its sampler is compiled): what matters is the disk.
    c.root, c.n_train, c.batch_size = str(root), 200, 64
    assert set_writer.write_grid(c) == {"written": 2, "skipped": 0}
    assert "removing the unfinished set left by an interrupted writer" in capsys.readouterr().out
    assert not list(entry.glob(".train.tmp-*"))
    e = set_grid.entries(c)[0]
    want = sampled(e, draw_kernels(e.graph, e.graph_seed), 0, c.n_train, c.seq_len, 64)
    np.testing.assert_array_equal(files.FileSet(str(entry / "train")).read(np.arange(200)), want)


def test_array_tasks_split_the_grid(tmp_path, monkeypatch):
    c = small_grid(tmp_path)
    config = tmp_path / "grid.py"
    config.write_text(
        "from gssm_jax.data.set_grid import load_config\n"
        f"def get_config():\n    c = load_config({DEBUG!r})\n"
        "    c.n_train, c.n_test, c.batch_size = 96, 40, 64\n    return c\n"
    )
    ids = [e.grid_id for e in set_grid.entries(c)]
    assert (
        write_data.main(
            [f"--config={config}", f"--root={tmp_path / 'a'}", "--task-id=1", "--task-count=2"]
        )
        == 0
    )
    assert sorted(p for p in os.listdir(tmp_path / "a") if p != layout.INDEX) == sorted(ids[1::2])
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert write_data.main([f"--config={config}", f"--root={tmp_path / 'b'}"]) == 0
    assert sorted(p for p in os.listdir(tmp_path / "b") if p != layout.INDEX) == [ids[0]]
    index = json.loads((tmp_path / "b" / layout.INDEX).read_text())
    assert sorted(index["sets"]) == sorted(ids)  # the index always maps the whole grid
    assert (
        write_data.main(
            [f"--config={config}", f"--root={tmp_path / 'c'}", "--task-id=2", "--task-count=2"]
        )
        == 2
    )
    assert not (tmp_path / "c").exists()
