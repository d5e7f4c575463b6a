"""Runs on disk without training them (imported as `fake_runs`), for the page, figure and upload
tests: the files a finished run leaves (config.json, metrics/*.jsonl, final.json, evals/<step>.json)
with made-up but plausible numbers, and a launch.submit root (run.sh, submit.json, tasks/) around
some of them.

`mixed_runs` is the case of issue 27: a transformer learning-rate sweep next to transformer and
mamba runs outside it, all four at one learning rate (0.01, from their config.json: issue 24), so a
plot grouping by optim.lr finds both families in that group.
"""

from __future__ import annotations

import json
from pathlib import Path

from gssm_jax.config import default_config

STEPS = (10, 20, 30, 40)


def write_run(
    run_dir: Path,
    family: str = "transformer",
    emb_dim: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    kl_t: bool = False,
) -> Path:
    """A complete 40-step run whose eval kl_gap falls with steps and width."""
    c = default_config()
    c.model.family, c.model.emb_dim, c.model.nb_layers = family, emb_dim, 1
    c.optim.lr, c.seed, c.optim.steps, c.optim.warmup = lr, seed, STEPS[-1], 2
    c.data.seq_len, c.data.batch_size = 32, 8
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "config.json").write_text(c.to_json_best_effort(indent=2, sort_keys=True))
    scale = (0.45 if family == "mamba" else 1.0) * 32 / emb_dim * (1 + abs(lr - 3e-3) * 100)
    scale *= 1 + 0.05 * seed
    evals = [
        {"step": s, "loss": 0.7 + scale / s, "entropy": 0.7, "kl_gap": scale / s} for s in STEPS
    ]
    train = [
        {"step": s, "loss": 0.7 + 1.1 * scale / s, "entropy": 0.7, "kl_gap": 1.1 * scale / s,
         "lr": lr, "step_time_s": 0.01}
        for s in STEPS
    ]  # fmt: skip
    (run_dir / "metrics" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    (run_dir / "metrics" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (run_dir / "final.json").write_text(json.dumps({"step": STEPS[-1], "eval": evals[-1]}))
    if kl_t:
        (run_dir / "evals").mkdir()
        curve = [scale / (t + 1) for t in range(31)]
        (run_dir / "evals" / f"{STEPS[-1]}.json").write_text(json.dumps({"kl_t": curve}))
    return run_dir


def write_sweep(root: Path, name: str, points: list[dict]) -> Path:
    """A launch.submit root ROOT/NAME with one run per grid point (keys: optim.lr,
    model.emb_dim, seed); the first run also has a kl_t curve."""
    sweep = root / name
    (sweep / "tasks").mkdir(parents=True)
    (sweep / "run.sh").write_text("#!/bin/bash\n")
    (sweep / "submit.json").write_text(json.dumps({"name": name}))
    for i, point in enumerate(points):
        run = write_run(
            sweep / "runs" / str(i),
            emb_dim=point.get("model.emb_dim", 32),
            lr=point.get("optim.lr", 1e-3),
            seed=point.get("seed", 0),
            kl_t=i == 0,
        )
        config = json.loads((run / "config.json").read_text())
        task = {"task_id": i, "grid_point": point, "config": config, "overrides": []}
        (sweep / "tasks" / f"{i}.json").write_text(json.dumps(task))
    return sweep


def mixed_runs(root: Path) -> list[Path]:
    """The lr sweep (2 lr x 2 widths x 2 seeds) and four runs outside it at lr 0.01, transformer
    and mamba at two widths each; returns the report's PATHs."""
    points = [
        {"optim.lr": lr, "model.emb_dim": d, "seed": s}
        for lr in (1e-3, 3e-3)
        for d in (32, 64)
        for s in (0, 1)
    ]
    sweep = write_sweep(root, "lr", points)
    loose = root / "single"
    for family in ("transformer", "mamba"):
        for d in (32, 64):
            write_run(loose / f"{family}_{d}", family=family, emb_dim=d, lr=1e-2, kl_t=d == 64)
    return [sweep, loose]
