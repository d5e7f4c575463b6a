"""Flag parsing for the plain-flag CLIs (evaluate, generate): one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from gssm_jax.checkpoint import CheckpointMismatchError
from gssm_jax.config import ConfigError
from gssm_jax.exitcodes import EXIT_BAD_CONFIG

# What these CLIs report as `error: ...` and exit 2 (run-directory, data-set and prompt errors are
# ConfigErrors).
USER_ERRORS = (ConfigError, CheckpointMismatchError)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def non_negative(cast: Callable) -> Callable:
    """A flag type: `cast(text)`, which must be >= 0."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
        return value

    return parse
