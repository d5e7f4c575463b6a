"""The statistics flags of `python -m gssm_jax.report` and their values (no numpy, pandas or
matplotlib here: the command parses its flags before it checks that the report extra is there)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

FIT_AXES = ("params", "train_sequences")
SPREADS = ("std", "sem", "range")


def add_arguments(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("statistics over seeds (docs/statistics.md)")
    s.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only the runs whose column KEY equals VALUE (repeatable; all must hold)")  # fmt: skip
    s.add_argument("--compare", metavar="KEY[=REF]",
                   help="paired comparison of KEY's values with REF (default: its first) over the seeds, within each cell of the other keys")  # fmt: skip
    s.add_argument("--fit", nargs="*", metavar="AXIS", choices=FIT_AXES,
                   help="power-law fits of the metric over AXIS (default: params train_sequences)")  # fmt: skip
    s.add_argument("--spread", choices=SPREADS, default="std",
                   help="error bars and bands over seeds (default std)")  # fmt: skip
    s.add_argument("--page", metavar="FILE",
                   help="also write a markdown results page, its figures and CSVs in FILE's folder/STEM/")  # fmt: skip
    s.add_argument("--notes", metavar="FILE", help="markdown put at the top of the --page page")


@dataclasses.dataclass(frozen=True)
class Options:
    """What the statistics flags ask for (the defaults: none of it but the seed-band figures)."""

    where: Sequence[str] = ()
    compare: str | None = None
    fit: Sequence[str] | None = None  # None: no fit; empty: FIT_AXES
    spread: str = "std"
    page: str | None = None
    notes: str | None = None
