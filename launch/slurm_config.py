"""The `slurm` section of a run config: the resources one job (or one array task) asks for.

A config file may carry the section as `config.slurm` (see `slurm_section`); fields it leaves out
take the defaults below, and `--config.slurm.<field>=value` on the submit command line wins over
both. The values end up in `#SBATCH` lines, so every string is checked to be one shell-free token.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections


class SlurmConfigError(ValueError):
    """A `slurm.*` value that cannot become an #SBATCH line, named by its key."""


@dataclasses.dataclass(frozen=True)
class SlurmConfig:
    """Resources of one job; empty strings and zeros leave the choice to the cluster's defaults."""

    nodes: int = 1
    tasks_per_node: int = 1  # one `gssm_jax.main` process per task
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem: str = ""  # per node, e.g. "64G"
    time: str = ""  # e.g. "04:00:00" or "2-00:00:00"
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    exclude: str = ""
    extra_lines: tuple[str, ...] = ()  # raw "#SBATCH ..." lines, added as they are
    signal_seconds: int = 120  # SIGUSR1 this long before the time limit: checkpoint and requeue
    max_parallel_tasks: int = 0  # job arrays: at most this many tasks at once (0: no limit)

    @property
    def num_processes(self) -> int:
        return self.nodes * self.tasks_per_node


FIELDS = {f.name: f for f in dataclasses.fields(SlurmConfig)}
_INT_FIELDS = (
    "nodes",
    "tasks_per_node",
    "gpus_per_node",
    "cpus_per_task",
    "signal_seconds",
    "max_parallel_tasks",
)
_POSITIVE = ("nodes", "tasks_per_node", "cpus_per_task")
# One #SBATCH token: no whitespace, quotes, comment marks, backslashes or control characters.
_TOKEN = re.compile(r"^[A-Za-z0-9_.,:=+\-@\[\]|&!*()]*$")
_MEM = re.compile(r"^[0-9]+[KMGT]?$")
_TIME = re.compile(
    r"^([0-9]+|[0-9]+:[0-9]{1,2}|[0-9]+:[0-9]{1,2}:[0-9]{1,2}"
    r"|[0-9]+-[0-9]+|[0-9]+-[0-9]+:[0-9]{1,2}|[0-9]+-[0-9]+:[0-9]{1,2}:[0-9]{1,2})$"
)


def slurm_section(**values: Any) -> ml_collections.ConfigDict:
    """A ConfigDict with every SlurmConfig field, for `config.slurm = slurm_section(time=...)`."""
    section = ml_collections.ConfigDict(dataclasses.asdict(SlurmConfig()))
    for key, value in values.items():
        if key not in FIELDS:
            raise SlurmConfigError(f"slurm.{key}: unknown field; known: {', '.join(FIELDS)}")
        section[key] = tuple(value) if key == "extra_lines" else value
    return section


def _error(key: str, value: Any, msg: str) -> SlurmConfigError:
    return SlurmConfigError(f"config slurm.{key}={value!r}: {msg}")


def _check_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(key, value, "must be an integer")
    lowest = 1 if key in _POSITIVE else 0
    if value < lowest:
        raise _error(key, value, f"must be >= {lowest}")
    if key == "signal_seconds" and value > 65535:
        raise _error(key, value, "must be <= 65535 (Slurm's limit)")
    return value


def _check_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _error(key, value, "must be a string")
    if not _TOKEN.match(value):
        raise _error(key, value, "may hold only letters, digits and _.,:=+-@[]|&!*()")
    if key == "mem" and value and not _MEM.match(value):
        raise _error(key, value, "must be a size like 4096, 64G or 512M")
    if key == "time" and value and not _TIME.match(value):
        raise _error(key, value, "must be a Slurm time: MM, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]")
    return value


def _check_lines(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _error(key, value, "must be a list of '#SBATCH ...' lines")
    lines = []
    for line in value:
        if not isinstance(line, str) or not line.startswith("#SBATCH "):
            raise _error(key, line, "each line must be a string starting with '#SBATCH '")
        if any(ch in line for ch in "\n\r\0"):
            raise _error(key, line, "each line must be a single line")
        lines.append(line)
    return tuple(lines)


def check_value(key: str, value: Any) -> Any:
    """`value` for field `key`, checked; raises SlurmConfigError naming both when it cannot work."""
    if key not in FIELDS:
        raise SlurmConfigError(f"config slurm.{key}: unknown field; known: {', '.join(FIELDS)}")
    if key in _INT_FIELDS:
        return _check_int(key, value)
    if key == "extra_lines":
        return _check_lines(key, value)
    return _check_str(key, value)


def parse_override(key: str, text: str) -> Any:
    """The value of a `--config.slurm.<key>=<text>` flag, typed like the field."""
    if key not in FIELDS:
        raise SlurmConfigError(f"config slurm.{key}: unknown field; known: {', '.join(FIELDS)}")
    if key in _INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise _error(key, text, "must be an integer") from None
    if key == "extra_lines":
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise _error(key, text, "must be a Python list of strings") from None
    return text


def slurm_config(section: Mapping[str, Any] | None, overrides: Mapping[str, str]) -> SlurmConfig:
    """The checked SlurmConfig of a config's `slurm` section (or None) and command-line overrides."""
    values: dict[str, Any] = dict(section.items()) if section is not None else {}
    for key, text in overrides.items():
        values[key] = parse_override(key, text)
    checked = {key: check_value(key, value) for key, value in values.items()}
    return SlurmConfig(**checked)


def sbatch_options(slurm: SlurmConfig) -> list[str]:
    """`--option=value` strings for the resource fields that are set (no job name, output, array)."""
    options = [
        f"--nodes={slurm.nodes}",
        f"--ntasks-per-node={slurm.tasks_per_node}",
        f"--cpus-per-task={slurm.cpus_per_task}",
    ]
    if slurm.gpus_per_node:
        options.append(f"--gpus-per-node={slurm.gpus_per_node}")
    for key in ("mem", "time", "partition", "account", "qos", "constraint", "exclude"):
        value = getattr(slurm, key)
        if value:
            options.append(f"--{key}={value}")
    if slurm.signal_seconds:
        options.append(f"--signal=USR1@{slurm.signal_seconds}")
    return options
