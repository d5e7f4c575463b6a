"""Run the study of issue 25 (docs/study.md) on this host, then its reports and results pages.

    python -m launch.study {experiment1,scaling,experiment2,all} --root DIR [--quick | --reproduce]
        [--jobs N] [--no-report] [--pages DIR]

Each cell of configs/study/cells.py is one `python -m gssm_jax.main --config FILE:ARG
--workdir DIR/cells/NAME --config.KEY=VALUE ...` (the experiment1 cells then get
`python -m gssm_jax.evaluate`, the per-position KL curve). A rerun skips the cells whose final.json
exists and resumes the others from their checkpoints, so an interrupted study continues where it
stopped. Then `python -m gssm_jax.report` over each study's complete cells writes DIR/reports/PAGE/
for each of its pages (PAGES), and with `--pages DIR` the results pages, their figures and CSVs
there (docs/results: study-experiment1.md and study-families.md, study-scaling.md,
study-experiment2.md).

`--quick` runs one cell per study (graph seed 0) under DIR/quick and checks that its final eval
kl_gap lies within the committed seed spread of its condition (docs/results/PAGE/runs.csv), with
a tolerance of TOLERANCE. `--reproduce` reruns one cell per family under DIR/reproduce from the
committed configs and seeds and checks its final eval kl_gap against the committed row within
TOLERANCE. Both exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from configs.study import cells as cells_lib

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
TOLERANCE = 1e-3
REPORT_KEYS = ["data.graph_seed", "model.emb_dim"]
NOTES = REPO / "configs" / "study" / "notes"  # each page's question and what this scale can tell
# study -> (page, the report's statistics flags)
PAGES = {
    "experiment1": [
        ("study-experiment1", ["--compare", "alpha_x"]),
        ("study-families", ["--compare", "family=transformer"]),
    ],
    "scaling": [("study-scaling", ["--fit"])],
    "experiment2": [("study-experiment2", ["--compare", "hidden_nodes"])],
}


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, dict | list | bool) or v is None else str(v)


def main_command(cell: dict, workdir: Path) -> list[str]:
    args = [sys.executable, "-m", "gssm_jax.main", "--config", cell["config"]]
    args += ["--workdir", str(workdir)]
    return args + [f"--config.{k}={_value(v)}" for k, v in cell["overrides"].items()]


def run_cell(cell: dict, root: Path, say, evaluate: bool = True) -> dict:
    """Train (and for experiment1 on streams, `evaluate`: the kl_t curve) one cell unless done;
    its outcome."""
    workdir = root / "cells" / cell["name"]
    log = root / "logs" / f"{cell['name']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    wall_file = root / "wall" / f"{cell['name']}.json"
    wall_file.parent.mkdir(parents=True, exist_ok=True)
    todo = []
    if not (workdir / "final.json").exists():
        todo.append(main_command(cell, workdir))
    stream_e1 = cell["config"].startswith(cells_lib.E1) and ":files" not in cell["config"]
    if evaluate and stream_e1 and not list((workdir / "evals").glob("*.json")):
        todo.append([sys.executable, "-m", "gssm_jax.evaluate", "--workdir", str(workdir)])
    if not todo:
        return {"name": cell["name"], "status": "done before"}
    start = time.time()
    with log.open("a") as out:
        for command in todo:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            rc = subprocess.call(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=_env()
            )
            if rc:
                say(f"{cell['name']}: exit {rc} (log {log})")
                return {"name": cell["name"], "status": f"exit {rc}"}
    seconds = time.time() - start
    previous = json.loads(wall_file.read_text()) if wall_file.exists() else {"seconds": 0.0}
    wall_file.write_text(json.dumps({"seconds": previous["seconds"] + seconds}))
    say(f"{cell['name']}: done in {seconds:.0f} s")
    return {"name": cell["name"], "status": "done", "seconds": seconds}


def _env() -> dict:
    """This checkout first on the path (an installed copy elsewhere must not be the one run)."""
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), path) if p))


def write_sets(root: Path, say) -> None:
    """The finite training sets of configs/study/data.py under ROOT/data (skips finished sets)."""
    env = dict(_env(), GSSM_DATA_ROOT=str(root / "data"))
    command = [sys.executable, "-m", "gssm_jax.write_data", "--config", "configs/study/data.py"]
    say("writing the finite training sets (configs/study/data.py)")
    subprocess.run(command, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)


def run_cells(todo: list[dict], root: Path, jobs: int, say, evaluate: bool = True) -> list[dict]:
    if any(":files" in c["config"] for c in todo):
        write_sets(root, say)
    os.environ["GSSM_DATA_ROOT"] = str(root / "data")  # read by configs/study/data.py
    say(f"{len(todo)} cells, {jobs} at a time, under {root}/cells")
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda c: run_cell(c, root, say, evaluate), todo))


def report(page: str, study: str, flags: list[str], root: Path, pages: Path | None, say) -> int:
    """`gssm_jax.report` over the study's complete cells into ROOT/reports/PAGE, and with `pages`
    the results page PAGES/PAGE.md (its figures and CSVs in PAGES/PAGE/)."""
    dirs = [root / "cells" / c["name"] for c in cells_lib.cells(study)]
    dirs = [str(d) for d in dirs if (d / "final.json").exists()]
    if not dirs:
        say(f"{page}: no complete runs to report")
        return 1
    out = root / "reports" / page
    command = [sys.executable, "-m", "gssm_jax.report", *dirs, "--out", str(out), "-q"]
    command += ["--metric", "final", "--keys", *REPORT_KEYS, *flags]
    if pages is not None:
        command += ["--page", str(pages / f"{page}.md"), "--notes", str(NOTES / f"{page}.md")]
    say(f"{page}: report of {len(dirs)} runs in {out}")
    return subprocess.call(command, cwd=REPO, env=_env())


def committed_rows(study: str) -> dict[str, dict]:
    path = RESULTS / PAGES[study][0][0] / "runs.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def final_gap(root: Path, name: str) -> float | None:
    path = root / "cells" / name / "final.json"
    return json.loads(path.read_text())["eval"]["kl_gap"] if path.exists() else None


def check(study: str, checked: list[dict], root: Path, spread: bool, say) -> bool:
    """Each cell's final eval kl_gap against the committed table: within its condition's seed
    range (`spread`) or its own row, widened by TOLERANCE."""
    ok = True
    for cell in checked:
        rows = {}
        for s in cells_lib.STUDIES if study == "all" else [study]:
            rows.update(committed_rows(s))
        got = final_gap(root, cell["name"])
        if cell["name"] not in rows or got is None:
            say(f"{cell['name']}: no committed row or no result to check")
            ok = False
            continue
        ref = float(rows[cell["name"]]["eval_kl_gap"])
        if spread:
            stem = cell["name"].rsplit("-g", 1)[0]
            seeds = [
                float(r["eval_kl_gap"]) for n, r in rows.items() if n.rsplit("-g", 1)[0] == stem
            ]
            low, high = min(seeds) - TOLERANCE, max(seeds) + TOLERANCE
            what = f"committed seed range [{min(seeds):.4f}, {max(seeds):.4f}] of {len(seeds)}"
        else:
            low, high = ref - TOLERANCE, ref + TOLERANCE
            what = f"committed {ref:.6f}"
        good = low <= got <= high
        ok &= good
        say(
            f"{cell['name']}: kl_gap {got:.6f}, {what}, diff {got - ref:+.2e}: {'ok' if good else 'FAILED'}"
        )
    return ok


def reproduce_cells() -> list[dict]:
    """One cell per family: experiment1 at graph seed 1 on small_z."""
    return [cells_lib.cell(f"{cells_lib.E1}:small_z", f, 1) for f in cells_lib.FAMILIES]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m launch.study", description=__doc__.split("\n")[0])
    p.add_argument("study", choices=(*cells_lib.STUDIES, "all"))
    p.add_argument("--root", required=True, help="folder of the run directories, logs, reports")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one cell per study; check it")
    mode.add_argument("--reproduce", action="store_true", help="rerun one cell per family; check")
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once (default 1)")
    p.add_argument("--no-report", action="store_true", help="train only")
    p.add_argument("--pages", help="write the results pages and CSVs into this folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)

    def say(message: str) -> None:
        print(f"[study {time.strftime('%H:%M:%S')}] {message}", flush=True)

    root = Path(a.root).expanduser().resolve()
    if a.quick or a.reproduce:
        sub = root / ("quick" if a.quick else "reproduce")
        todo = cells_lib.cells(a.study, quick=True) if a.quick else reproduce_cells()
        results = run_cells(todo, sub, a.jobs, say, evaluate=False)
        if any(r["status"].startswith("exit") for r in results):
            return 1
        study = a.study if a.quick else "experiment1"
        return 0 if check(study, todo, sub, spread=a.quick, say=say) else 1
    todo = cells_lib.cells(a.study)
    start = time.time()
    results = run_cells(todo, root, a.jobs, say)
    failed = [r["name"] for r in results if r["status"].startswith("exit")]
    say(f"cells done in {time.time() - start:.0f} s; {len(failed)} failed {failed or ''}")
    if a.no_report:
        return 1 if failed else 0
    pages = Path(a.pages).resolve() if a.pages else None
    studies = cells_lib.STUDIES if a.study == "all" else [a.study]
    rcs = [report(page, s, flags, root, pages, say) for s in studies for page, flags in PAGES[s]]
    return 1 if failed or any(rcs) else 0


if __name__ == "__main__":
    sys.exit(main())
