"""`python -m gssm_jax.report` with --where, --compare, --fit and --page on planted run directories:
a setup effect known per graph seed, a power law in parameters and in training sequences."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gssm_jax import report
from gssm_jax.config import default_config

SEEDS = (0, 1, 2)
BASE = {0: 0.30, 1: 0.50, 2: 0.20}  # per graph seed: far more spread than the setup effect
EFFECT = {"transformer": 0.02, "mamba": -0.03}  # small_z (alpha_x 0.05) minus small_x (1e-3)
WIDTHS = (16, 32, 64, 128)
SEQUENCES = (64, 256, 1024, 4096)


def write_run(run_dir: Path, kl: float, family="transformer", alpha_x=1e-3, graph_seed=0,
              emb_dim=32, sequences=0) -> None:  # fmt: skip
    """A complete run whose evals end at `kl`, with a kl_t curve."""
    c = default_config()
    c.model.family, c.model.emb_dim = family, emb_dim
    c.data.alpha_x, c.data.graph_seed, c.data.seq_len, c.data.batch_size = (
        alpha_x,
        graph_seed,
        16,
        4,
    )
    c.optim.steps, c.optim.warmup = 40, 2
    if sequences:
        c.data.source, c.data.train_sequences = "files", sequences
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "config.json").write_text(c.to_json_best_effort(sort_keys=True))
    evals = [{"step": s, "loss": 1 + kl * 40 / s, "entropy": 1.0, "kl_gap": kl * 40 / s} for s in (20, 40)]  # fmt: skip
    train = [{**e, "step_time_s": 0.01, "flops_per_token": 1000 * emb_dim} for e in evals]
    for name, records in (("eval", evals), ("train", train)):
        (run_dir / "metrics" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))  # fmt: skip
    (run_dir / "final.json").write_text(json.dumps({"step": 40, "eval": evals[-1]}))
    (run_dir / "evals").mkdir()
    curve = [kl * 4 / (t + 1) for t in range(15)]
    (run_dir / "evals" / "40.json").write_text(json.dumps({"kl_t": curve}))


@pytest.fixture(scope="module")
def setups(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("setups")
    for family, effect in EFFECT.items():
        for g in SEEDS:
            write_run(root / f"{family}-x-{g}", BASE[g], family, 1e-3, g)
            write_run(root / f"{family}-z-{g}", BASE[g] + effect, family, 5e-2, g)
    return root


@pytest.fixture(scope="module")
def laws(tmp_path_factory) -> Path:
    """kl = 40 N^-0.5 on streams (N the model's parameter count) and 3 D^-0.4 on finite sets at
    width 32, times a per-seed factor (seeds move together)."""
    from gssm_jax.reporting.params import count_params

    root = tmp_path_factory.mktemp("laws")
    for g in SEEDS:
        for w in WIDTHS:
            write_run(root / f"w{w}-{g}", 0.0, emb_dim=w, graph_seed=g)
            n = count_params(json.loads((root / f"w{w}-{g}" / "config.json").read_text()))
            (root / f"w{w}-{g}").rename(root / "tmp")
            write_run(root / f"w{w}-{g}", 40 * n**-0.5 * (1 + 0.03 * (g - 1)), emb_dim=w, graph_seed=g)  # fmt: skip
            import shutil

            shutil.rmtree(root / "tmp")
        for d in SEQUENCES:
            kl = 3 * d**-0.4 * (1 + 0.03 * (g - 1))
            write_run(root / f"n{d}-{g}", kl, graph_seed=g, sequences=d)
    return root


def run(paths, out: Path, *flags: str) -> int:
    dirs = sorted(str(p) for p in Path(paths).iterdir() if p.is_dir())
    return report.main([*dirs, "--out", str(out), "-q", "--metric", "final", "--keys", "data.graph_seed", *flags])  # fmt: skip


def test_compare_pairs_graph_seeds_and_recovers_the_planted_effect(setups, tmp_path):
    page = tmp_path / "pages" / "setups.md"
    assert run(setups, tmp_path / "r", "--compare", "alpha_x", "--page", str(page)) == 0
    table = pd.read_csv(tmp_path / "r" / "comparison.csv").set_index("family")
    for family, effect in EFFECT.items():
        row = table.loc[family]
        assert row["n_pairs"] == 3 and row["mean_diff"] == pytest.approx(effect, abs=1e-9)
        assert row["signs"] == ("+++" if effect > 0 else "---")
        assert row["ci_low"] == pytest.approx(effect, abs=1e-9)  # every pair the same difference
    for name in ("compare_alpha_x.png", "kl_t_mamba.png", "kl_t_transformer.png", "curves.png"):
        assert (tmp_path / "r" / name).stat().st_size > 1000, name
    text = page.read_text()
    assert "+0.0200" in text and "-0.0300" in text and "on every seed" in text
    assert (page.parent / "setups" / "runs.csv").exists()
    assert (page.parent / "setups" / "kl_t_mamba.png").exists()
    assert "](setups/mean_vs_family.png)" in text


def test_where_keeps_only_the_matching_runs(setups, tmp_path):
    assert run(setups, tmp_path / "r", "--where", "family=mamba", "--where", "alpha_x=0.05") == 0
    table = pd.read_csv(tmp_path / "r" / "runs.csv")
    assert len(table) == 3 and set(table["family"]) == {"mamba"}


def test_bad_where_and_compare_exit_2_with_one_line(setups, tmp_path, capsys):
    assert run(setups, tmp_path / "r", "--where", "family") == 2
    assert run(setups, tmp_path / "r", "--where", "nokey=1") == 2
    assert run(setups, tmp_path / "r", "--where", "family=rnn") == 2
    assert run(setups, tmp_path / "r", "--compare", "nokey") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "no run matches" in err[2]


def test_fit_recovers_both_planted_exponents_and_draws_them(laws, tmp_path):
    assert run(laws, tmp_path / "r", "--fit") == 0
    fits = pd.read_csv(tmp_path / "r" / "fits.csv")
    by_form = {r["form"]: r for _, r in fits.iterrows()}
    assert by_form["kl(N)"]["alpha"] == pytest.approx(0.5, rel=0.02)
    assert by_form["kl(D)"]["alpha"] == pytest.approx(0.4, rel=0.02)
    assert by_form["kl(N)"]["alpha_low"] <= 0.5 <= by_form["kl(N)"]["alpha_high"] + 1e-9
    for name in ("fit_params.png", "fit_train_sequences.png", "kl_vs_compute.png"):
        assert (tmp_path / "r" / name).stat().st_size > 1000, name


def test_fit_with_too_few_points_is_refused_in_the_table(laws, tmp_path):
    assert run(laws, tmp_path / "r", "--fit", "--where", "train_sequences=64", "--where", "data.graph_seed=0") == 0  # fmt: skip
    fits = pd.read_csv(tmp_path / "r" / "fits.csv")
    assert fits["fit"].str.startswith("refused: ").all()
    assert fits["alpha"].isna().all() if "alpha" in fits else True


def test_fit_splits_the_runs_by_the_other_keys(setups, tmp_path):
    """Two setups: one params fit per setup, each refused here
    (two families: two values of params)."""
    assert run(setups, tmp_path / "r", "--fit", "params") == 0
    fits = pd.read_csv(tmp_path / "r" / "fits.csv")
    assert list(fits["runs"]) == ["alpha_x=0.001", "alpha_x=0.05"]  # family follows params
    assert fits["fit"].str.contains("refused: .*2 distinct", regex=True).all()
