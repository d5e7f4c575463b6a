"""Dispatch `python -m gssm_jax.bench NAME [flags]` to the `main(argv)` of `gssm_jax.bench.NAME`."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("gssm", "train", "data", "generate", "learn")


USAGE = (
    f"usage: python -m gssm_jax.bench {{{'|'.join(BENCHES)}}} [flags] (NAME --help: its flags; "
    "data and train take --config.KEY=VALUE overrides)"
)


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in BENCHES:
        got = argv[0] if argv else "nothing"
        print(f"error: {USAGE}; got {got!r}", file=sys.stderr)
        return 2
    name = f"gssm_jax.bench.{argv[0]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        print(f"benchmark {argv[0]!r} is not implemented yet (no module {name})", file=sys.stderr)
        return 2
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
