"""Config files and saved configs: loading a `get_config()` file, and a run's config.json read back.

Config files compose by ordinary imports: a file inside a package (every folder from it up to a
root holding `__init__.py`, as `configs/` does) is imported under its package name, with the
folder above the root put on `sys.path`, so `configs/grids/exp2.py` can say
`from configs.experiment2.onfly import graph`. A file outside any package is run on its own.

A saved config.json from an earlier schema is migrated when read (`migrate`): every run directory
on disk still loads, resumes and evaluates.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
import traceback
from types import ModuleType

import ml_collections

from gssm_jax.config.errors import ConfigError, MissingConfigFileError
from gssm_jax.config.schema import FREE_FORM, default_config, family_fields

# Keys that sat in the shared `model.*` namespace before each family had its section: the
# transformer's own fields (schema of gssm_jax up to 2026-12-02).
LEGACY_TRANSFORMER_KEYS = tuple(family_fields("transformer"))
# Fields added with a default that differs from what a run saved before them did: a saved config
# without the field gets the value that reproduces its run (section, field, value).
LEGACY_VALUES = (("hawk", "decay_init", "griffin_ac"),)


def _where(error: BaseException, file: str) -> str:
    """`FILE:LINE` of the deepest frame of `error` inside `file` (or just FILE)."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(file):
            line = frame.lineno
    if isinstance(error, SyntaxError) and error.lineno is not None:
        line = error.lineno
    return f"{file}:{line}" if line is not None else file


def _one_line(error: BaseException) -> str:
    """The error's message on one line, without ConfigDict's dump of every other field."""
    text = " ".join(str(error).replace("\\n", " ").strip("'\"").split())
    return re.sub(r" Other fields present: \"\{.*\}\"", "", text)


def package_name(file: str) -> tuple[str, str] | None:
    """(folder to put on sys.path, dotted module name) of a file inside a package, else None."""
    folder, name = os.path.split(os.path.abspath(file))
    parts = [os.path.splitext(name)[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    return (folder, ".".join(parts)) if len(parts) > 1 else None


def _import_file(file: str, function: str) -> ModuleType:
    found = package_name(file)
    if found is not None:
        root, name = found
        if root not in sys.path:
            sys.path.insert(0, root)
        module = importlib.import_module(name)
        if os.path.abspath(getattr(module, "__file__", "")) == os.path.abspath(file):
            return module
        # the package name is taken by another tree (a copy of configs/, say): run this file
    spec = importlib.util.spec_from_file_location(f"gssm_{function}_file", file)
    assert spec is not None and spec.loader is not None  # a .py path always has a file loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_python_function(path: str, function: str, what: str = "--config"):
    """Calls `function()` (`function(ARG)` for `FILE:ARG`) of the Python file at `path`.

    The one loader of config and grid files. Every failure is a one-line ConfigError naming the
    file (and its line, for an error raised in it): no such file, a syntax error, no `function`,
    or an exception in the file (e.g. a misspelled key of a locked config).
    """
    file, _, arg = str(path).partition(":")
    if not os.path.isfile(file):
        raise MissingConfigFileError(f"{what} {path!r}: no such file")
    try:
        module = _import_file(file, function)
        if not callable(getattr(module, function, None)):
            raise ConfigError(f"{what} {path!r}: the file defines no {function}()")
        return getattr(module, function)(arg) if arg else getattr(module, function)()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any error in a user's file is reported as one line
        raise ConfigError(f"{what} {_where(e, file)}: {type(e).__name__}: {_one_line(e)}") from e


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of an ml_collections config file; `FILE:ARG` calls `get_config(ARG)`."""
    return load_python_function(path, "get_config")


def migrate(saved: dict) -> dict:
    """A saved config dict in today's schema: the transformer's keys of the shared `model.*`
    namespace of earlier versions move into `model.transformer`, and fields added since with a new
    default get the value the run had (LEGACY_VALUES)."""
    model = dict(saved.get("model", {}))
    legacy = {k: model.pop(k) for k in LEGACY_TRANSFORMER_KEYS if k in model}
    if legacy:
        model["transformer"] = {**legacy, **model.get("transformer", {})}
    for section, field, value in LEGACY_VALUES:
        if section in model and field not in model[section]:
            model[section] = {**model[section], field: value}
    return {**saved, "model": model} if "model" in saved else saved


def _update_from(c: ml_collections.ConfigDict, saved: dict, prefix: str = "") -> None:
    for key, value in saved.items():
        if key not in c:
            raise ConfigError(f"saved config key {prefix}{key} is not in this version's schema")
        free = f"{prefix}{key}" in FREE_FORM or key == "graph"
        if isinstance(c[key], ml_collections.ConfigDict) and not free:
            _update_from(c[key], value, f"{prefix}{key}.")
        elif key == "rules":
            c[key] = tuple(tuple(rule) for rule in value)
        else:
            c[key] = value


def config_from_dict(saved: dict) -> ml_collections.ConfigDict:
    """The locked config of a saved (JSON) dict, migrated; keys it lacks keep their defaults."""
    saved = migrate(saved)
    c = default_config()
    with c.unlocked():
        c.data.graph = ml_collections.ConfigDict(saved.get("data", {}).get("graph", c.data.graph))
    _update_from(c, saved)
    return c


def config_from_json(path: str) -> ml_collections.ConfigDict:
    """The locked config a run saved as `config.json` (migrated; missing keys at their defaults)."""
    with open(path) as f:
        return config_from_dict(json.load(f))


def as_dict(config: ml_collections.ConfigDict) -> dict:
    """A config as plain JSON types (what config.json holds)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))
