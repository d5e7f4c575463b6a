"""The error every bad config value, file or key raises: one line naming the key and the value."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work, named by its dotted key."""


class MissingConfigFileError(ConfigError, FileNotFoundError):
    """A --config path that names no file."""
