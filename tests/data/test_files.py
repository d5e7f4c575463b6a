"""Reading written sets: epochs and shuffling, process slices, exact resume, clear errors."""

from __future__ import annotations

import os
import shutil
import signal

import grain
import numpy as np
import pytest
from conftest import (
    RESUME_STEPS,
    ROOT,
    main_cmd,
    read_jsonl,
    signal_at_step,
    start_cmd,
    train_losses,
)

from gssm_jax.config import ConfigError, default_config, validate
from gssm_jax.data import files, layout, set_grid, set_writer
from gssm_jax.gssm.graph import parse_graph
from gssm_jax.gssm.kernels import draw_kernels
from gssm_jax.gssm.sample import sample_tokens
from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG, EXIT_PREEMPTED
from gssm_jax.train import checkpoint

DEBUG = str(ROOT / "configs" / "experiment1" / "data_debug.py")
TRAIN_CONFIG = "configs/experiment1/train_files.py:debug"
N_TRAIN = 120  # 15 steps of 8 sequences per epoch: 40 steps cross two epoch boundaries


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The first entry of the debug grid, small: (grid entry, train set dir)."""
    c = set_grid.load_config(DEBUG)
    c.root = str(tmp_path_factory.mktemp("sets"))
    c.grid, c.seeds = [{"alpha_x": [0.1], "alpha_z": [0.001]}], [0]
    c.n_train, c.n_test, c.batch_size = N_TRAIN, 64, 64
    set_writer.write_grid(c)
    (entry,) = set_grid.entries(c)
    return entry, os.path.join(c.root, entry.grid_id, "train")


def _opened(dataset):
    entry, path = dataset
    return entry, files.FileSet(path), draw_kernels(entry.graph, entry.graph_seed)


class _Indices:
    """A stand-in set whose batches are the indices of the sequences they would read."""

    def __init__(self, num_sequences: int) -> None:
        self.num_sequences = num_sequences

    def batch(self, seq_idx_B: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
        return seq_idx_B[rows[0] : rows[1]]


def _seq_indices(global_batch, rows, num_batches, shuffle_seed) -> list[np.ndarray]:
    """The sequence indices of each element of `files.TrainWalk.dataset` over the N_TRAIN set."""
    dataset = files.TrainWalk(
        _Indices(N_TRAIN), global_batch, rows, num_batches, shuffle_seed
    ).dataset()
    return list(dataset)


def test_epochs_visit_every_sequence_once_in_a_new_order():
    seq_idx = np.concatenate(_seq_indices(8, (0, 8), 45, shuffle_seed=3))  # 3 epochs
    epochs = seq_idx.reshape(3, N_TRAIN)
    for order in epochs:
        assert sorted(order) == list(range(N_TRAIN))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(N_TRAIN))
    other_seed = _seq_indices(8, (0, 8), 1, shuffle_seed=4)[0]
    assert not np.array_equal(other_seed, seq_idx[:8])
    straddling = _seq_indices(7, (0, 7), 40, shuffle_seed=3)  # 120 = 17 * 7 + 1
    np.testing.assert_array_equal(np.concatenate(straddling), seq_idx[:280])


def test_the_walk_is_grains_shuffle_of_the_sequence_range():
    """`SequenceIndices` only stands in for `grain.MapDataset.range`: the order, epochs and
    straddling batches are Grain's shuffle and repeat of the range, also over a subset."""
    for n, batch, seed in ((N_TRAIN, 8, 3), (N_TRAIN, 7, 0), (37, 5, 11)):
        walk = grain.MapDataset.range(n).shuffle(seed=seed).repeat()
        want = np.array([walk[i] for i in range(batch * 30)]).reshape(30, batch)
        got = files.TrainWalk(_Indices(N_TRAIN), batch, (0, batch), 30, seed, n).dataset()
        np.testing.assert_array_equal(np.stack(list(got)), want)


def test_process_rows_tile_the_global_batch(dataset):
    _, fs, _ = _opened(dataset)
    whole = files.TrainWalk(fs, 8, (0, 8), 30, shuffle_seed=0).dataset()
    halves = [
        files.TrainWalk(fs, 8, rows, 30, shuffle_seed=0).dataset() for rows in ((0, 4), (4, 8))
    ]
    for k in (0, 14, 15, 29):
        tokens = np.concatenate([h[k]["tokens"] for h in halves])
        np.testing.assert_array_equal(tokens, whole[k]["tokens"])
        for h in halves:  # every process sees the entropies of the whole global batch
            np.testing.assert_array_equal(h[k]["entropy"], whole[k]["entropy"])


def test_reads_are_the_sampled_tokens_and_their_stored_entropies(dataset):
    entry, fs, tables = _opened(dataset)
    element = files.TrainWalk(fs, 8, (0, 8), 30, shuffle_seed=0).dataset()[17]
    seq_idx_B = _seq_indices(8, (0, 8), 30, shuffle_seed=0)[17]
    assert element["tokens"].dtype == np.int32 and element["tokens"].shape == (8, fs.seq_len)
    want = sample_tokens(entry.graph, tables, entry.data_seed, seq_idx_B, fs.seq_len)
    np.testing.assert_array_equal(element["tokens"], np.asarray(want))
    np.testing.assert_array_equal(element["entropy"], fs.entropy_N[seq_idx_B])


@pytest.mark.parametrize(
    "batch, rows, num_sequences",
    [(8, (0, 8), 0), (7, (2, 5), 0), (8, (0, 8), 24), (files.BURST_SEQUENCES + 8, (0, 9), 0)],
)
def test_the_trainers_stream_is_the_dataset_in_order(batch, rows, num_sequences):
    """`TrainWalk.stream` draws the walk in bursts and splits them; its elements are exactly
    `dataset()`'s, epochs straddled, subsets and process rows alike, and end at num_batches."""
    fs = _Indices(max(N_TRAIN, batch))
    walk = files.TrainWalk(fs, batch, rows, 40, 5, num_sequences)
    want, got = list(walk.dataset()), list(walk.stream(prefetch=3))
    assert len(got) == len(want) == 40
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_grain_iterator_resumes_mid_epoch_from_an_orbax_checkpoint(dataset, tmp_path):
    _, fs, _ = _opened(dataset)
    stream = files.TrainWalk(fs, 8, (0, 8), 40, shuffle_seed=1).stream()
    straight = list(stream)
    it = iter(stream)
    for _ in range(22):  # into the second epoch, mid-burst
        next(it)
    manager = checkpoint.make_manager(str(tmp_path), keep=1, async_save=False)
    checkpoint.save(manager, 22, {"w": np.zeros(2, np.float32)}, it)
    next(it)  # the saved state is the one at save time
    manager.wait_until_finished()
    resumed = iter(stream)
    checkpoint.restore_iterator(manager, 22, resumed)
    for k, element in enumerate(resumed, start=22):
        np.testing.assert_array_equal(element["tokens"], straight[k]["tokens"])
    assert k == 39


def test_eval_batches_carry_the_stored_entropy(dataset):
    test = files.FileSet(files.eval_set_path(_Data(dataset[1])))
    batches = files.eval_batches(test, 16, (4, 12), 4)
    assert len(batches) == 4
    for k, element in enumerate(batches):
        assert "entropy_stderr" not in element  # exact entropies: no Monte Carlo
        np.testing.assert_array_equal(
            element["tokens"], test.read(np.arange(16 * k + 4, 16 * k + 12))
        )
        np.testing.assert_array_equal(element["entropy"], test.entropy_N[16 * k : 16 * k + 16])
    with pytest.raises(files.DatasetError, match="eval.batches=5"):
        files.eval_batches(test, 16, (0, 16), 5)


class _Data:
    def __init__(self, path: str, test_path: str = "") -> None:
        self.path, self.test_path = path, test_path


def test_graph_mismatch_names_the_field(dataset):
    entry, fs, tables = _opened(dataset)
    files.check_matches(fs, entry.graph, tables, entry.graph_seed, fs.seq_len)
    spec = entry.graph.to_dict()
    cases = [
        (dict(spec, X=dict(spec["X"], state_dim=16)), 0, 32, "vocabulary"),
        (spec, 0, 64, "data.seq_len=64"),
        (dict(spec, X=dict(spec["X"], alpha=0.2)), 0, 32, "data.graph X.alpha=0.2"),
        (spec, 5, 32, "data.graph_seed=5"),
    ]
    for graph_spec, seed, seq_len, name in cases:
        graph = parse_graph(graph_spec)
        with pytest.raises(files.DatasetError, match=name):
            files.check_matches(fs, graph, draw_kernels(graph, seed), seed, seq_len)


def test_missing_and_truncated_files_name_the_path(dataset, tmp_path):
    _, path = dataset
    with pytest.raises(files.DatasetError, match="no such directory"):
        files.FileSet(str(tmp_path / "nowhere"))
    for name in (layout.TOKENS, layout.ENTROPY, layout.METADATA):
        broken = tmp_path / f"missing-{name}"
        shutil.copytree(path, broken)
        os.remove(broken / name)
        with pytest.raises(files.DatasetError, match=str(broken / name)):
            files.FileSet(str(broken))
    truncated = tmp_path / "truncated"
    shutil.copytree(path, truncated)
    with open(truncated / layout.TOKENS, "r+b") as f:
        f.truncate(os.path.getsize(truncated / layout.TOKENS) // 2)
    with pytest.raises(files.DatasetError, match=f"{truncated / layout.TOKENS}.*truncated"):
        files.FileSet(str(truncated))


# -- end to end: python -m gssm_jax.main on files -----------------------------------------------


def test_training_on_files_resumes_mid_epoch_exactly(dataset, tmp_path, run_main):
    _, path = dataset
    flags = [*RESUME_STEPS, f"--config.data.path={path}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    procs = [  # side by side: compilation is mostly single-threaded
        start_cmd(main_cmd(workdir, *flags, config=TRAIN_CONFIG), tmp_path)
        for workdir in (straight, resumed)
    ]
    code, out = signal_at_step(procs[1], resumed, signal.SIGTERM, 18)
    straight_out = procs[0].communicate(timeout=240)[0]
    assert procs[0].returncode == 0, straight_out
    assert code == EXIT_PREEMPTED, out
    stopped_at = max(train_losses(resumed))
    assert 15 < stopped_at < 40, "the run finished before the signal reached it"
    code, out = run_main(resumed, *flags, timeout=240, config=TRAIN_CONFIG)
    assert code == 0 and "resumed from" in out, out
    a, b = train_losses(straight), train_losses(resumed)
    assert sorted(a) == sorted(b)
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6, (a, b)
    evals = read_jsonl(straight / "metrics" / "eval.jsonl")
    eval_b = read_jsonl(resumed / "metrics" / "eval.jsonl")
    np.testing.assert_allclose([r["loss"] for r in eval_b], [r["loss"] for r in evals], atol=1e-6)
    test = files.FileSet(files.eval_set_path(_Data(path)))
    assert evals[0]["entropy"] == pytest.approx(test.entropy_N[:8].mean())  # eval.batches=1 of 8
    assert evals[0]["kl_gap"] == pytest.approx(evals[0]["loss"] - evals[0]["entropy"])
    baseline = files.TrainWalk(files.FileSet(path), 8, (0, 8), 40, shuffle_seed=0).dataset()
    for r in read_jsonl(resumed / "metrics" / "train.jsonl"):  # step s trained on batch s - 1
        assert r["entropy"] == pytest.approx(baseline[r["step"] - 1]["entropy"].mean(), abs=1e-6)
        assert "entropy_stderr" not in r  # exact entropies


def test_mismatched_config_missing_and_corrupted_sets_are_clear_errors(dataset, tmp_path):
    _, path = dataset
    missing = tmp_path / "missing" / "train"
    shutil.copytree(os.path.dirname(path), tmp_path / "corrupted")
    tokens = tmp_path / "corrupted" / "train" / layout.TOKENS  # random bytes of the same size
    tokens.write_bytes(np.random.default_rng(0).bytes(os.path.getsize(tokens)))
    cases = [  # (overrides, what the error must name); both runs side by side
        (
            ["--config.data.graph.X.alpha=0.5", f"--config.data.path={path}"],
            "data.graph X.alpha=0.5 does not match data set",
        ),
        (
            [f"--config.data.path={missing}"],
            f"data set {missing}: no such directory",  # data.path is opened first
        ),
        ([f"--config.data.path={tokens.parent}"], f"data file {tokens}: corrupted"),
    ]
    procs = [
        start_cmd(
            main_cmd(
                tmp_path / f"run{i}",
                "--config.optim.steps=2",
                "--config.optim.warmup=1",
                *overrides,
                config=TRAIN_CONFIG,
            ),
            tmp_path,
        )
        for i, (overrides, _) in enumerate(cases)
    ]
    for proc, (_, message) in zip(procs, cases):
        out = proc.communicate(timeout=240)[0]
        assert proc.returncode == EXIT_BAD_CONFIG, out
        assert message in out and "Traceback" not in out, out
        assert len([line for line in out.splitlines() if message in line]) == 1, out


def test_files_config_keys_are_validated():
    c = default_config()
    c.data.shuffle_seed = -1
    with pytest.raises(ConfigError, match="data.shuffle_seed"):
        validate(c)
    c = default_config()
    c.data.source = "files"
    with pytest.raises(ConfigError, match="data.path"):
        validate(c)
    c.data.path = "/sets/x/train"
    assert files.eval_set_path(c.data) == "/sets/x/test"
    c.data.test_path = "/elsewhere/test"
    assert files.eval_set_path(c.data) == "/elsewhere/test"


def test_an_iterator_state_of_another_pipeline_is_a_clear_error(dataset, tmp_path, run_main):
    """A files checkpoint whose data state another pipeline saved (here the one-batch-at-a-time
    loader's {"next_index": k}) stops the resume with one line and exit 2, not a KeyError."""
    _, path = dataset
    workdir = tmp_path / "run"
    flags = [
        "--config.optim.warmup=2",
        "--config.checkpoint.period=5",
        f"--config.data.path={path}",
    ]
    code, out = run_main(workdir, "--config.optim.steps=5", *flags, config=TRAIN_CONFIG)
    assert code == 0, out
    (state_file,) = (workdir / "checkpoints" / "5" / "data").glob("process_0-of-1*")
    state_file.write_text('{"next_index": 5}')
    code, out = run_main(workdir, "--config.optim.steps=10", *flags, config=TRAIN_CONFIG)
    assert code == EXIT_BAD_CONFIG, out
    assert "checkpoint 5 in" in out and "data iterator state does not fit" in out, out
    assert "Traceback" not in out, out
