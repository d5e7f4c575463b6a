"""Shared test helpers: running `python -m gssm_jax.main` in a subprocess on a tiny config, a
finished tiny run to read, and the checks of a run-reading CLI (one-line errors, a run left as it was)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG

ROOT = Path(__file__).resolve().parents[1]

# A model and stream small enough that one run costs a few seconds on 2 cores.
TINY = [
    "--config.model.emb_dim=32",
    "--config.model.nb_layers=1",
    "--config.model.transformer.nb_heads=2",
    "--config.model.transformer.hidden_dim=64",
    "--config.data.seq_len=32",
    "--config.data.batch_size=8",
    "--config.eval.batches=1",
]


def main_cmd(workdir: Path, *overrides: str, config: str = "configs/debug.py") -> list[str]:
    return [
        sys.executable,
        "-m",
        "gssm_jax.main",
        f"--config={ROOT / config}",
        f"--workdir={workdir}",
        *TINY,
        *overrides,
    ]


# Exact-resume comparisons need bit-reproducible steps; XLA:CPU's multi-threaded Eigen kernels can
# change their summation order between processes (seen as a rare 2e-6 drift), so tests pin them.
DETERMINISTIC_XLA = "--xla_cpu_multi_thread_eigen=false"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + DETERMINISTIC_XLA).strip()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in extra.items():
        env[key] = f"{value} {DETERMINISTIC_XLA}" if key == "XLA_FLAGS" else value
    return env


def run_cmd(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """Runs a command line to its end in the test environment: (returncode, stdout, stderr)."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def start_cmd(
    cmd: list[str], cwd: Path | None = None, merge_stderr: bool = True
) -> subprocess.Popen:
    """Starts a command line in the test environment, its output piped (stderr into stdout)."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
    )


def start_processes(cmd: list[str], cwd: Path, merge_stderr: bool = True, n: int = 2) -> list:
    """`n` processes of `cmd` as one distributed run on 127.0.0.1 (a free port; 2 CPU devices
    each), process i with --config.distributed.process_id=i; stderr into stdout unless not
    `merge_stderr`."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    flags = [f"--config.distributed.coordinator=127.0.0.1:{port}"]
    flags.append(f"--config.distributed.num_processes={n}")
    stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
    return [
        subprocess.Popen(
            [*cmd, *flags, f"--config.distributed.process_id={i}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        for i in range(n)
    ]


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def signal_at_step(
    proc: subprocess.Popen, workdir: Path, sig: int, min_step: int, timeout: float = 240
) -> tuple[int, str]:
    """Sends `sig` to a started run once its train.jsonl has reached `min_step` (unless it ends
    first), then waits for it: (returncode, output)."""
    metrics = workdir / "metrics" / "train.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and any(r["step"] >= min_step for r in read_jsonl(metrics)):
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


# A 40-step run that logs, evaluates and checkpoints often enough to stop and resume mid-way.
RESUME_STEPS = [
    "--config.optim.steps=40",
    "--config.optim.warmup=4",
    "--config.log.period=2",
    "--config.eval.period=20",
    "--config.checkpoint.period=10",
]


def train_losses(workdir: Path) -> dict[int, float]:
    """step -> train loss, from a run's metrics/train.jsonl."""
    return {r["step"]: r["loss"] for r in read_jsonl(workdir / "metrics" / "train.jsonl")}


@pytest.fixture
def run_main(tmp_path):
    """Runs gssm_jax.main to completion; returns (returncode, output)."""

    def run(workdir: Path, *overrides: str, timeout: float = 300, config: str = "configs/debug.py"):
        code, out, err = run_cmd(main_cmd(workdir, *overrides, config=config), tmp_path, timeout)
        return code, out + err

    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 20-step TINY run with checkpoints (and held-out evals) at steps 10 and 20, shared
    by the evaluation and generation tests; tests that write into a run copy it first."""
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    steps = ["--config.optim.steps=20", "--config.optim.warmup=2", "--config.log.period=10"]
    steps += ["--config.eval.period=10", "--config.checkpoint.period=10"]
    code, out, err = run_cmd(main_cmd(workdir, *steps), workdir.parent)
    assert code == 0, out + err
    return workdir


def write_play(folder: Path, speeches: int = 400, seed: int = 0) -> Path:
    """A small corpus the tests write themselves: `folder/act1.txt`, `folder/act2.txt` and
    `folder/songs.jsonl` of play-like lines (names, words, a non-ASCII character), about 20 kB."""
    import json
    import random

    rng = random.Random(seed)
    names = ["ROMEO", "JULIET", "NURSE", "FRIAR"]
    words = [
        "the",
        "king",
        "queen",
        "lord",
        "lady",
        "sword",
        "love",
        "night",
        "sun",
        "moon",
        "and",
        "of",
        "to",
        "my",
        "thy",
        "thou",
        "art",
        "fair",
    ]

    def speech() -> str:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))
        return f"{rng.choice(names)}.\n{line.capitalize()}, é.\n\n"

    folder.mkdir(parents=True, exist_ok=True)
    for act in ("act1", "act2"):
        (folder / f"{act}.txt").write_text("".join(speech() for _ in range(speeches // 2)))
    songs = [json.dumps({"text": "".join(speech() for _ in range(5))}) for _ in range(8)]
    (folder / "songs.jsonl").write_text("\n".join(songs) + "\n")
    return folder


# A text run as small as TINY: configs/text.py on a written corpus, bytes, 32-byte windows.
TEXT_TINY = list(TINY)


def text_cmd(workdir: Path, corpus: Path, *overrides: str) -> list[str]:
    """`python -m gssm_jax.main` of configs/text.py on `corpus` at TEXT_TINY sizes."""
    return [
        sys.executable,
        "-m",
        "gssm_jax.main",
        f"--config={ROOT / 'configs' / 'text.py'}",
        f"--workdir={workdir}",
        f"--config.data.path={corpus}",
        *TEXT_TINY,
        *overrides,
    ]


@pytest.fixture(scope="session")
def tiny_text_run(tmp_path_factory) -> Path:
    """A finished 20-step text run (checkpoints and evals at 10 and 20) on `write_play`'s corpus,
    shared by the text evaluation, generation and surgery tests; copy it before writing into it."""
    root = tmp_path_factory.mktemp("tiny_text_run")
    corpus = write_play(root / "corpus")
    steps = ["--config.optim.steps=20", "--config.optim.warmup=2", "--config.log.period=10"]
    steps += ["--config.eval.period=10", "--config.checkpoint.period=10"]
    code, out, err = run_cmd(text_cmd(root / "run", corpus, *steps), root)
    assert code == 0, out + err
    return root / "run"


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of `tiny_run` for a test to write into."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file below `root` outside `evals/`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "evals" not in p.relative_to(root).parts
    }


def tiny_transformer(c, emb_dim: int, nb_heads: int, hidden_dim: int, nb_layers: int = 1) -> None:
    """Sets config `c` to a transformer of this size (in-process tests that build a model)."""
    c.model.emb_dim, c.model.nb_layers = emb_dim, nb_layers
    c.model.transformer.nb_heads, c.model.transformer.hidden_dim = nb_heads, hidden_dim


def set_key(config, dotted: str, value) -> None:
    """config.a.b.c = value for dotted = "a.b.c" (a value of any type, unlike an override)."""
    *sections, name = dotted.split(".")
    node = config
    for part in sections:
        node = node[part]
    node[name] = value


def one_line_error(main, argv: list[str], capsys) -> str:
    """The stderr of a CLI `main(argv)` that must fail with EXIT_BAD_CONFIG and one line."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    assert code == EXIT_BAD_CONFIG
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb confined to the test: its settings, cache and staging under tmp_path, offline, no
    error reporting, a server address nothing listens on (no network, even by mistake), and its
    service process shut down at the end."""
    for var in ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "wandb-home"
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):  # fmt: skip
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    yield home
    from gssm_jax.train.wandb_sink import shutdown

    shutdown()
