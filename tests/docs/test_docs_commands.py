"""Every command line of README.md and docs/ runs as written.

The commands are read from the pages' code blocks: every `python -m MODULE ...` of a shell block
(fenced `bash`/`sh`/`console`, or an indented block), backslash continuations joined, commands
after `&&` or inside a quoted `--wrap "..."` included, output blocks (`text`, `json`, ...) skipped.
For each command:

- `python -m MODULE --help` runs (once per module; `gssm_jax.bench NAME` per benchmark), and every
  long flag the command uses is one that `--help` lists;
- a command that takes a config has its config loaded with the command's `--config.KEY=VALUE`
  overrides and checked, in-process, as the command itself would (`launch.submit` through its
  own `plan`, which splits off the `--config.slurm.*` keys), so a misspelled key fails here;
- a transcript line `$ python -m ...` followed by an `error: ...` line is run, and must print
  exactly that line.

Synopsis lines (with `[--flag ...]` alternatives) get the flag check only. The slow test at the
end runs the tour's commands end to end at tiny size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, TINY, subprocess_env

# ml_collections loads config files with the deprecated load_module()
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
SEPARATORS = {"&&", "||", ";", "|"}
# A line of an indented block that is a command (the others are output or file listings).
COMMAND_LINE = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:python|pip|sbatch|bash|mkdocs)\s")
SUBCOMMAND_MODULES = {"gssm_jax.bench", "ruff", "mkdocs"}  # `--help` of `MODULE SUBCOMMAND`
CONFIG_COMMANDS = {"gssm_jax.main", "gssm_jax.difficulty", "gssm_jax.bench data"}
# The commands of the README's table: each must be documented with at least one command line.
COMMANDS = [
    "gssm_jax.main",
    "gssm_jax.evaluate",
    "gssm_jax.generate",
    "gssm_jax.probe",
    "gssm_jax.write_data",
    "gssm_jax.difficulty",
    "gssm_jax.kron",
    "launch.submit",
    "gssm_jax.report",
    "gssm_jax.bench",
]


@dataclasses.dataclass(frozen=True)
class DocCommand:
    where: str  # "docs/tour.md:21"
    argv: tuple[str, ...]  # after `python -m`: the module, then its arguments
    synopsis: bool  # a usage line with [optional | alternative] flags
    expected_error: str | None = None  # the `error: ...` line of a transcript

    @property
    def key(self) -> str:
        """The module, and for a module with subcommands (`gssm_jax.bench`, ruff, mkdocs) its
        subcommand: what `--help` is asked of."""
        nested = self.argv[0] in SUBCOMMAND_MODULES and len(self.argv) > 1
        if nested and not self.argv[1].startswith("-"):
            return f"{self.argv[0]} {self.argv[1]}"
        return self.argv[0]

    @property
    def args(self) -> list[str]:
        """The arguments after the module (and the benchmark's name)."""
        return list(self.argv[len(self.key.split()) :])


def code_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the first line, lines) of each fenced or indented code block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\w*)", lines[i])
        if fence:
            end = i + 1
            while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
                end += 1
            yield fence.group(1), i + 2, lines[i + 1 : end]
            i = end + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            yield "indented", i + 1, [line[4:] for line in lines[i:end]]
            i = end
        else:
            i += 1


def logical_lines(lines: list[str], first: int) -> Iterator[tuple[int, str]]:
    """(line number, text) with backslash continuations joined."""
    joined, start = "", None
    for n, line in enumerate(lines, first):
        start = n if start is None else start
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        yield start, (joined + line).strip()
        joined, start = "", None


def python_commands(line: str) -> list[list[str]]:
    """The `python -m ...` commands of a shell line, each as its argv after `python`."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        raise AssertionError(f"{line!r}: not a shell line ({e})") from None
    found, i = [], 0
    while i < len(tokens):
        if tokens[i] == "python" and tokens[i + 1 : i + 2] == ["-m"]:
            end = i + 2
            while end < len(tokens) and tokens[end] not in SEPARATORS:
                end += 1
            found.append(tokens[i + 2 : end])
            i = end
        else:
            if "python -m " in tokens[i]:
                found.extend(python_commands(tokens[i]))
            i += 1
    return found


def synopsis_line(line: str) -> str:
    """A usage line with its brackets and alternatives removed, flags and placeholders kept."""
    return re.sub(r"[\[\]|]|\.\.\.", " ", line)


def page_commands(path: Path) -> list[DocCommand]:
    where = path.relative_to(ROOT)
    commands: list[DocCommand] = []
    for lang, first, lines in code_blocks(path.read_text()):
        if lang not in SHELL_LANGS | {"indented", "text"}:
            continue
        items = list(logical_lines(lines, first))
        for k, (n, line) in enumerate(items):
            if line.startswith("$ "):  # a transcript: the command and the lines it printed
                output = [text for _, text in items[k + 1 :][:1] if not text.startswith("$ ")]
                error = output[0] if output and output[0].startswith("error:") else None
                for argv in python_commands(line[2:]):
                    commands.append(DocCommand(f"{where}:{n}", tuple(argv), False, error))
                continue
            if lang == "text" or (lang == "indented" and not COMMAND_LINE.match(line)):
                continue
            synopsis = bool(re.search(r"\[-", line))
            text = synopsis_line(line) if synopsis else line
            for argv in python_commands(text):
                commands.append(DocCommand(f"{where}:{n}", tuple(argv), synopsis))
    return commands


ALL = [c for page in PAGES for c in page_commands(page)]
KEYS = sorted({c.key for c in ALL})


def test_every_command_of_the_readme_is_documented_with_a_command_line():
    documented = {c.argv[0] for c in ALL}
    assert not set(COMMANDS) - documented
    assert len(ALL) >= 60, len(ALL)  # the pages hold about 90; far fewer means the parser broke


@functools.cache
def helps() -> dict[str, subprocess.CompletedProcess]:
    """`python -m KEY --help` of every documented module, run four at a time."""

    def run(key: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", *key.split(), "--help"]
        env = subprocess_env()
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(KEYS, pool.map(run, KEYS)))


@pytest.mark.parametrize("key", KEYS)
def test_help_runs(key):
    proc = helps()[key]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip()


def long_flags(command: DocCommand) -> list[str]:
    flags = [a.split("=")[0] for a in command.args if a.startswith("--")]
    return [f for f in flags if not f.startswith("--config.") and f not in ("--", "--help")]


@pytest.mark.parametrize("command", ALL, ids=lambda c: f"{c.where} {' '.join(c.argv)[:60]}")
def test_documented_flags_exist(command):
    help_text = helps()[command.key].stdout
    for flag in long_flags(command):
        found = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text)
        assert found, f"{command.where}: {command.key} has no flag {flag} (--help: {help_text})"


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag V` or `--flag=V` (the last one given), None when absent."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def overrides(args: list[str]) -> list[tuple[str, str]]:
    from gssm_jax.runtime import cli

    return cli.split_overrides(args)[1]


def check_config(command: DocCommand, tmp_path: Path) -> None:
    """Loads and checks the command's config as the command would; raises on a bad key or value."""
    from gssm_jax.config import validate
    from gssm_jax.runtime import cli

    args, key = command.args, command.key
    config_arg = flag_value(args, "--config") or cli.DEFAULT_CONFIG_FILE
    if key in CONFIG_COMMANDS:
        validate(cli.load_config(config_arg, overrides(args)))
    elif key == "gssm_jax.write_data":
        from gssm_jax.data import set_grid

        grid = cli.load_config(config_arg, overrides(args))
        set_grid.check(grid)
        assert set_grid.entries(grid)
    elif key == "gssm_jax.kron" and flag_value(args, "--table") is None:
        # the surgery's new config: a dense run's (the default here) made Kronecker, then the flags
        config = cli.load_config(cli.DEFAULT_CONFIG_FILE)
        config.model.mlp = "kronecker"
        config.model.kron_terms = int(flag_value(args, "--terms") or 1)
        config.model.kron_factor = flag_value(args, "--factor") or ""
        for k, text in overrides(args):
            cli.apply_override(config, k, text)
        validate(config)
    elif key == "launch.submit":
        from launch import submit

        parsed, extra = submit.parse_args([*args, "--root", str(tmp_path)])
        plan = submit.plan(parsed, extra)  # every task's config checked; nothing written
        assert plan.tasks and not tmp_path.exists()


CONFIGURED = [
    c
    for c in ALL
    if not c.synopsis
    and c.expected_error is None
    and (c.key in CONFIG_COMMANDS | {"gssm_jax.write_data", "gssm_jax.kron", "launch.submit"})
]


@pytest.mark.parametrize("command", CONFIGURED, ids=lambda c: f"{c.where} {' '.join(c.argv)[:60]}")
def test_documented_config_loads_and_validates(command, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the pages' paths are relative to the repository root
    monkeypatch.setenv("GSSM_DATA_ROOT", str(tmp_path / "datasets"))  # nothing needs to exist
    try:
        check_config(command, tmp_path / "root")
    except ValueError as e:  # a path an earlier step of the page makes is fine; nothing else
        if not MADE_BY_AN_EARLIER_STEP.match(str(e)):
            raise


# A config error that only says a path the page's earlier commands create is not there yet.
MADE_BY_AN_EARLIER_STEP = re.compile(
    r"config (data\.path|optim\.distill\.teacher)='[^']*': "
    r"(no such file or folder|is not a run directory \(no config\.json in it\))$"
)


TRANSCRIPTS = sorted({c.argv: c for c in ALL if c.expected_error}.values(), key=lambda c: c.where)


@pytest.mark.parametrize("command", TRANSCRIPTS, ids=lambda c: " ".join(c.argv))
def test_documented_errors_are_printed_as_shown(command, tmp_path):
    cmd = [sys.executable, "-m", *command.argv, "--workdir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == command.expected_error
    assert not (tmp_path / "run").exists()


def test_a_misspelled_key_or_flag_in_a_page_would_fail(tmp_path, monkeypatch):
    """The checks above catch the mistakes they are for (a page's line with one typo)."""
    monkeypatch.chdir(ROOT)
    [bad_key] = python_commands(
        "python -m gssm_jax.main --workdir runs/x --config.model.nb_heads=8"
    )
    with pytest.raises(ValueError, match="no field 'nb_heads'"):
        check_config(DocCommand("x", tuple(bad_key), False), tmp_path)
    [bad_slurm] = python_commands(
        "python -m launch.submit --config configs/debug.py --name x --config.slurm.gpu=1"
    )
    with pytest.raises(ValueError, match="gpu"):
        check_config(DocCommand("x", tuple(bad_slurm), False), tmp_path)
    [bad_flag] = python_commands("python -m gssm_jax.evaluate --workdir runs/x --all-steps")
    assert long_flags(DocCommand("x", tuple(bad_flag), False)) == ["--workdir", "--all-steps"]
    assert not re.search(r"(?<![\w-])--all-steps(?![\w-])", helps()["gssm_jax.evaluate"].stdout)


def test_lines_are_read_as_a_shell_reads_them():
    block = [
        "GSSM_DATA_ROOT=/scratch sbatch --array=0-1 --wrap \\",
        '    "python -m gssm_jax.write_data --config configs/experiment1/data.py"',
        "pip install -e . && python -m gssm_jax.main  # a comment",
    ]
    lines = [text for _, text in logical_lines(block, 1)]
    assert [python_commands(line) for line in lines] == [
        [["gssm_jax.write_data", "--config", "configs/experiment1/data.py"]],
        [["gssm_jax.main"]],
    ]
    usage = synopsis_line("python -m gssm_jax.evaluate --workdir D [--step N | --all]")
    assert python_commands(usage) == [
        ["gssm_jax.evaluate", "--workdir", "D", "--step", "N", "--all"]
    ]


# The tour at tiny size: its commands as the page gives them, with flags appended that make each
# step small (a later flag wins), run in order in a temporary folder.
TOUR_MODULES = [
    "gssm_jax.main",
    "gssm_jax.evaluate",
    "gssm_jax.generate",
    "gssm_jax.probe",
    "launch.submit",
    "gssm_jax.report",
]
TINY_STEPS = [
    "--config.optim.steps=6",
    "--config.optim.warmup=1",
    "--config.log.period=3",
    "--config.eval.period=3",
    "--config.checkpoint.period=3",
]
TOUR_EXTRA = {
    "gssm_jax.main": [*TINY, *TINY_STEPS],
    "gssm_jax.generate": ["--max-new-tokens", "8", "--num", "4"],
    "gssm_jax.probe": ["--sequences", "32", "--steps", "10", "--batch", "16"],
    "launch.submit": [*TINY, *TINY_STEPS],
}
TOUR_PRINTS = {  # what each step's output must contain (the tour page shows these lines)
    "gssm_jax.main": "done: final eval kl_gap",
    "gssm_jax.evaluate": "eval step 6 |",
    "gssm_jax.generate": "sample_excess_nats",
    "gssm_jax.probe": "probe accuracy / Bayes ceiling at step 6",
    "launch.submit": "task 3: exit 0",
    "gssm_jax.report": "(4 runs: {'complete': 4}",
}


def tour_commands() -> list[DocCommand]:
    return [c for c in page_commands(ROOT / "docs" / "tour.md") if not c.synopsis]


def test_the_tour_is_the_six_steps():
    assert [c.argv[0] for c in tour_commands()] == TOUR_MODULES


@pytest.mark.slow
def test_the_tour_runs_end_to_end_at_tiny_size(tmp_path):
    for command in tour_commands():
        argv = [str(tmp_path / a) if a.startswith("runs/") else a for a in command.argv]
        cmd = [sys.executable, "-m", *argv, *TOUR_EXTRA.get(command.key, [])]
        env = subprocess_env(GSSM_RUNS=str(tmp_path / "gssm_runs"))
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{command.where}: {' '.join(cmd)}\n{out[-3000:]}"
        assert TOUR_PRINTS[command.key] in out, out[-3000:]
    report = tmp_path / "runs" / "sweeps" / "tour-exp2" / "report"
    assert (report / "index.html").is_file() and (report / "runs.csv").is_file()
    assert os.path.isfile(tmp_path / "runs" / "tour" / "probe" / "6.json")
