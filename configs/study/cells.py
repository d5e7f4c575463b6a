"""The study's cells (docs/study.md): one training run each, `python -m gssm_jax.main --config
CONFIG --config.KEY=VALUE ...`, named by what it varies. `python -m launch.study` runs them.

- experiment1 (questions 1 and 2): SETUPS x FAMILIES x SEEDS at the study's width (stream data);
- scaling (question 3): the transformer on both setups over WIDTHS (stream) and over
  TRAIN_SEQUENCES (finite sets of configs/study/data.py, width 64), then a small cross of
  CROSS_WIDTHS x TRAIN_SEQUENCES on small_z for the two-variable fit;
- experiment2 (question 4): NODES x EXP2_FAMILIES x SEEDS.

A cell several questions share (the transformer at width 64 on a stream is a point of experiment1
and of the size axis) is one run. Graph seeds are `data.graph_seed`; the model seed stays 0, so
the pairs of a paired comparison share the graph and the init.
"""

from __future__ import annotations

from configs.study import common

SEEDS = [0, 1, 2]
SETUPS = ["small_x", "small_z"]
FAMILIES = ["transformer", "mamba", "hawk", "mingru", "minlstm"]
WIDTHS = [16, 32, 64, 128]
TRAIN_SEQUENCES = [64, 256, 1024]
CROSS_WIDTHS = [16, 32]
NODES = [1, 2, 4, 8]
EXP2_FAMILIES = ["transformer", "mingru"]
STUDIES = ("experiment1", "scaling", "experiment2")
E1 = "configs/study/experiment1.py"
E2 = "configs/study/experiment2.py"


def cell(config: str, family: str, seed: int, width: int = common.WIDTH, **keys) -> dict:
    """One run: its name, config file (FILE:ARG) and overrides (dotted key -> value)."""
    arg = config.split(":", 1)[1].replace(":", "-")
    head = "e1" if config.startswith(E1) else "e2-nodes"
    parts = [f"{head}-{arg}", family, f"w{width}"]
    parts += [f"n{keys['data.train_sequences']}"] if "data.train_sequences" in keys else []
    overrides = {"model.family": family, "data.graph_seed": seed, **keys}
    if width != common.WIDTH:
        overrides.update(common.widths(width))
    return {"name": "-".join([*parts, f"g{seed}"]), "config": config, "overrides": overrides}


def experiment1(seeds=SEEDS, families=FAMILIES) -> list[dict]:
    return [cell(f"{E1}:{s}", f, g) for g in seeds for s in SETUPS for f in families]


def scaling(seeds=SEEDS, widths=WIDTHS, sequences=TRAIN_SEQUENCES, cross=True) -> list[dict]:
    out = [cell(f"{E1}:{s}", "transformer", g, w) for g in seeds for s in SETUPS for w in widths]
    out += [
        cell(f"{E1}:{s}:files", "transformer", g, **{"data.train_sequences": n})
        for g in seeds
        for s in SETUPS
        for n in sequences
    ]
    if cross:
        out += [
            cell(f"{E1}:small_z:files", "transformer", g, w, **{"data.train_sequences": n})
            for g in seeds
            for w in CROSS_WIDTHS
            for n in sequences
        ]
    return out


def experiment2(seeds=SEEDS, families=EXP2_FAMILIES) -> list[dict]:
    return [cell(f"{E2}:{n}", f, g) for g in seeds for n in NODES for f in families]


def cells(study: str, quick: bool = False) -> list[dict]:
    """The cells of `study` (or "all": every study's, each once, the scaling cross last)."""
    if quick:  # one cell each, at graph seed 0: a check of the committed numbers
        pick = {
            "experiment1": [cell(f"{E1}:small_x", "transformer", 0)],
            "scaling": [cell(f"{E1}:small_x", "transformer", 0, 16)],
            "experiment2": [cell(f"{E2}:4", "transformer", 0)],
        }
        return [c for s in (STUDIES if study == "all" else [study]) for c in pick[s]]
    if study == "all":
        ordered = experiment1() + scaling(cross=False) + experiment2() + scaling()
        return list({c["name"]: c for c in ordered}.values())
    return {"experiment1": experiment1, "scaling": scaling, "experiment2": experiment2}[study]()
