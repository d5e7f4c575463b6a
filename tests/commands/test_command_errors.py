"""Every command that takes a config: bad flags, keys, values and files are one line and exit 2.

These run the real command lines in subprocesses; every case stops before JAX starts.
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, run_cmd

from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG

DEBUG = str(ROOT / "configs" / "debug.py")


def run(module: str, *args: str, cwd) -> tuple[int, str, str]:
    return run_cmd([sys.executable, "-m", module, *args], cwd, timeout=120)


def assert_one_line_error(code: int, out: str, err: str, *named: str) -> None:
    assert code == EXIT_BAD_CONFIG, (code, out, err)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out + err
    for name in named:
        assert name in lines[0], (name, lines[0])


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def bad_config_files(tmp_path) -> dict[str, tuple[str, ...]]:
    """--config value -> what the error must name."""
    syntax = write(tmp_path / "syntax.py", "def get_config(:\n    pass\n")
    no_get = write(tmp_path / "no_get.py", "X = 1\n")
    locked = write(
        tmp_path / "locked.py",
        "from gssm_jax.config import default_config\n\ndef get_config():\n"
        "    c = default_config()\n    c.optim.lrr = 1e-3\n    return c\n",
    )
    return {
        str(tmp_path / "nope.py"): ("nope.py", "no such file"),
        syntax: (f"{syntax}:1", "SyntaxError"),
        no_get: ("no_get.py", "get_config()"),
        locked: (f"{locked}:5", '"lrr"', 'Did you mean "lr"'),
    }


MAIN_CASES = [
    (["--config.optim.lrr=1e-3"], ("--config.optim.lrr=1e-3", "optim.lrr", "optim.lr?")),
    ([f"--config={DEBUG}", "--config.optim.lrr=1e-3"], ("optim.lrr",)),
    (["--config.foo=1"], ("config key foo",)),
    (["--config.optim.lr=abc"], ("--config.optim.lr=abc", "optim.lr", "expected a number")),
    (["--config.optim.steps=1.5"], ("optim.steps", "expected an integer")),
    (["--config.model.remat=maybe"], ("model.remat", "true or false")),
    (["--config.optim.lr"], ("--config.optim.lr", "KEY=VALUE")),
    # an override before --config applies (its bad value is caught by validation)
    (["--config.optim.lr=-1", f"--config={DEBUG}"], ("config optim.lr=-1.0",)),
    (["--bogus"], ("unrecognized arguments: --bogus",)),
]


@pytest.mark.parametrize(("args", "named"), MAIN_CASES)
def test_main_rejects_bad_flags_in_one_line(tmp_path, args, named):
    code, out, err = run("gssm_jax.main", f"--workdir={tmp_path / 'run'}", *args, cwd=tmp_path)
    assert_one_line_error(code, out, err, *named)
    assert not (tmp_path / "run").exists()


def test_main_rejects_bad_config_files_in_one_line(tmp_path):
    for config, named in bad_config_files(tmp_path).items():
        code, out, err = run(
            "gssm_jax.main", "--config", config, f"--workdir={tmp_path / 'run'}", cwd=tmp_path
        )
        assert_one_line_error(code, out, err, *named)
        assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file_is_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    for workdir, named in ((afile, "is a file"), (afile / "run", "is under")):
        code, out, err = run("gssm_jax.main", f"--workdir={workdir}", cwd=tmp_path)
        assert_one_line_error(code, out, err, str(workdir), named)
    assert afile.read_text() == "not a directory\n"


def test_help_lists_the_config_keys(tmp_path):
    code, out, err = run("gssm_jax.main", "--help", cwd=tmp_path)
    assert code == 0, err
    for text in (
        "--workdir",
        "--allow-config-change",
        "--config.optim.lr=0.003",
        "--config.data.graph.X.alpha=0.05",
        "--config.model.transformer.attention='auto'",
    ):
        assert text in out, text
    code, out, _ = run(
        "gssm_jax.main",
        "--help",
        "--config",
        f"{ROOT}/configs/experiment1/onfly.py:small_x",
        cwd=tmp_path,
    )
    assert code == 0 and "--config.model.nb_layers=12" in out


@pytest.mark.parametrize(
    ("module", "args", "named"),
    [
        (
            "gssm_jax.write_data",
            ["--config.n_train=x"],
            ("--config.n_train=x", "expected an integer"),
        ),
        ("gssm_jax.write_data", ["--config.nope=1"], ("config key nope",)),
        ("gssm_jax.difficulty", ["--config.data.graph_seed=x"], ("data.graph_seed",)),
        ("gssm_jax.difficulty", ["--config.data.alpha_x=0"], ("'alpha'",)),
        ("gssm_jax.bench", ["data", "--config.optim.lrr=1"], ("optim.lrr",)),
        ("gssm_jax.bench", ["train", "--config.optim.lrr=1"], ("optim.lrr",)),
        ("launch.submit", ["--dry-run", "--config.optim.lrr=1"], ("optim.lrr",)),
    ],
)
def test_every_config_command_takes_overrides_the_same_way(tmp_path, module, args, named):
    if module == "gssm_jax.write_data":
        args = [f"--config={ROOT}/configs/experiment1/data_debug.py", *args]
    code, out, err = run(module, *args, cwd=tmp_path)
    assert_one_line_error(code, out, err, *named)


def test_every_config_command_reports_a_bad_config_file(tmp_path):
    for module, extra in (
        ("gssm_jax.write_data", []),
        ("gssm_jax.difficulty", []),
        ("gssm_jax.bench", ["data"]),
    ):
        code, out, err = run(module, *extra, "--config", str(tmp_path / "nope.py"), cwd=tmp_path)
        assert_one_line_error(code, out, err, "nope.py", "no such file")


# ---- issue 24: the same one line from every command, and no start lines before a refusal ----


@pytest.mark.parametrize(
    ("module", "args", "named"),
    [
        ("gssm_jax.kron", ["--bogus"], ("gssm_jax.kron",)),
        ("gssm_jax.kron", ["--from=x", "--out=y", "--bogus=1"], ("--bogus=1",)),
        ("gssm_jax.difficulty", ["--config.model.family=nonsense"], ("model.family='nonsense'",)),
        ("gssm_jax.difficulty", ["--target=0.5", "--config.model.family=nonsense"], ("nonsense",)),
    ],
)
def test_kron_and_difficulty_reject_bad_input_like_main(tmp_path, module, args, named):
    code, out, err = run(module, *args, cwd=tmp_path)
    assert_one_line_error(code, out, err, *named)


def test_a_refused_resume_prints_nothing_before_its_error(run_copy, tmp_path):
    """The start lines (`gssm_jax: writing to DIR`, the host line) come after every check: a
    resume refused for a checkpoint of another model (the last check) prints only its error."""
    cmd = ["--config", DEBUG, f"--workdir={run_copy}", "--config.optim.steps=30"]
    cmd += ["--config.model.emb_dim=64", "--allow-config-change"]
    code, out, err = run("gssm_jax.main", *cmd, cwd=tmp_path)
    assert_one_line_error(code, out, err, "checkpoint", "the config needs")
    assert out == ""
