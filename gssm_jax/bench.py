"""Benchmarks: `python -m gssm_jax.bench gssm|train|data|generate|learn [flags]`, one JSON line per
measurement, each next to its reference measured in the same run.

Each benchmark is a program of its own in gssm_jax/benchmarks/ (NAME --help lists its flags; data
and train take --config.KEY=VALUE overrides); this command picks it and passes the flags on.
"""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "gssm": "gssm_speed",  # sampler and exact entropy against the original's algorithms
    "train": "train_step",  # train step: optimized vs plain Flax vs PyTorch eager
    "data": "data_read",  # the files (or text) loader's read rate against the train step's
    "generate": "decode",  # prefill + cached decode against recomputation, per family
    "learn": "learning",  # KL per update against the PyTorch reference on identical batches
}
USAGE = (
    f"usage: python -m gssm_jax.bench {{{'|'.join(BENCHES)}}} [flags] (NAME --help: its flags; "
    "data and train take --config.KEY=VALUE overrides)"
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in BENCHES:
        got = argv[0] if argv else "nothing"
        print(f"error: {USAGE}; got {got!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"gssm_jax.benchmarks.{BENCHES[argv[0]]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
