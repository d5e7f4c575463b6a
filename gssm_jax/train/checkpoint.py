"""Orbax checkpoints of everything a run needs to resume exactly: train state and the data
iterator's state (in Grain's own format, through Grain's Orbax handler).

Orbax writes each step into a temporary folder and renames it when complete, so a process killed
mid-save leaves the last complete checkpoint as the latest one, and a `<step>.orbax-checkpoint-tmp*`
folder that the next start removes (`remove_temporaries`). A checkpoint that does not restore (a
truncated file, say) is skipped for the newest one that does (`restore_latest`); the loop then sets
it aside as `<step>.unrestorable` (`set_aside`), never deletes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import re
import shutil
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from gssm_jax.runtime.writes import WriteError, cause_of

TMP_MARKER = ".orbax-checkpoint-tmp"
UNRESTORABLE = ".unrestorable"


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays do not fit the configured model."""


class NoRestorableCheckpointError(ValueError):
    """A checkpoint folder whose every checkpoint fails to restore."""


def _from_orbax(record: logging.LogRecord) -> bool:
    """True for the records to keep: all but Orbax's errors (ERROR and above) that carry its
    worker threads' tracebacks; each such failure also reaches the main thread as an exception,
    which the run reports in one line."""
    return record.levelno < logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_orbax_errors() -> None:
    """Keeps Orbax's worker-thread error logs (and the asyncio tasks they leave behind) off
    stderr: a failed checkpoint write or read is reported once, by the run (`write_errors`,
    `restore_latest`). Idempotent."""
    log = logging.getLogger("absl")  # absl.logging's Python logger, which Orbax logs through
    if _from_orbax not in log.filters:
        log.addFilter(_from_orbax)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if not getattr(sys.unraisablehook, "quiet_orbax", False):
        sys.unraisablehook = _closed_loop_filter(sys.unraisablehook)


def _closed_loop_filter(previous: Any) -> Any:
    """sys.unraisablehook without what a failed Orbax save or read leaves behind: the
    `RuntimeError: Event loop is closed` that TensorStore reports (as unraisable, with no object)
    when its reads or writes complete after Orbax closed its event loop, and Orbax's own
    coroutines that fail as the interpreter shuts down. Everything else reaches `previous`."""

    def hook(unraisable: Any) -> None:
        tb = unraisable.exc_traceback
        last = traceback.extract_tb(tb)[-1] if tb is not None else None
        closed = (
            unraisable.exc_type is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed"
            and last is not None
            and last.name == "_check_closed"
            and os.path.basename(os.path.dirname(last.filename)) == "asyncio"
        )
        code = getattr(unraisable.object, "cr_code", None)
        orbax_coroutine = code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename
        if not (closed or orbax_coroutine):
            previous(unraisable)

    hook.quiet_orbax = True  # type: ignore[attr-defined]
    return hook


def saved_steps(directory: str) -> list[int]:
    """The steps of the complete checkpoints in `directory`, as its folders list them."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


@contextlib.contextmanager
def write_errors(directory: str, step: int | None) -> Iterator[None]:
    """Turns a failed checkpoint write (a full disk, quota, read-only or forbidden folder) into a
    WriteError naming the checkpoint: the one the error's text names, else `step` (the save in
    flight). An asynchronous save's failure surfaces in the next save or wait, inside this."""
    try:
        yield
    except WriteError:
        raise
    except Exception as e:
        cause = cause_of(e)
        if cause is None:
            raise
        found = re.search(re.escape(os.path.abspath(directory)) + r"/(\d+)", str(e))
        failed = int(found[1]) if found else step
        where = directory if failed is None else os.path.join(directory, str(failed))
        raise WriteError(f"checkpoint {where}", cause) from e


def _handlers() -> dict:
    return {"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()}


def make_manager(directory: str, keep: int, async_save: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=async_save,
        create=True,
    )
    return ocp.CheckpointManager(
        os.path.abspath(directory), options=options, item_handlers=_handlers()
    )


def open_read_only(directory: str) -> ocp.CheckpointManager | None:
    """A manager that reads `directory` and writes nothing there; None when it does not exist."""
    if not os.path.isdir(directory):
        return None
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns that a read-only one is read-only
    try:
        return ocp.CheckpointManager(
            os.path.abspath(directory), options=options, item_handlers=_handlers()
        )
    finally:
        absl_logging.set_verbosity(verbosity)


def temporaries(directory: str) -> list[str]:
    """Unfinished saves (`<step>.orbax-checkpoint-tmp*`) left by a process that was killed."""
    return sorted(glob.glob(os.path.join(glob.escape(directory), f"*{TMP_MARKER}*")))


def remove_temporaries(directory: str) -> list[str]:
    """Deletes the unfinished saves in `directory`; returns their paths."""
    found = temporaries(directory)
    for path in found:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return found


def set_aside(directory: str, step: int) -> str:
    """Renames checkpoint `step` to `<step>.unrestorable` (Orbax then ignores it); returns that."""
    target = os.path.join(directory, f"{step}{UNRESTORABLE}")
    suffix = 1
    while os.path.exists(target):
        target, suffix = os.path.join(directory, f"{step}{UNRESTORABLE}.{suffix}"), suffix + 1
    os.rename(os.path.join(directory, str(step)), target)
    return target


def save(manager: ocp.CheckpointManager, step: int, state: Any, iterator: Any | None) -> None:
    """Starts saving (asynchronously when the manager is async; the iterator's state is taken
    before this returns); `force` ignores save intervals. `iterator=None` saves the train state
    alone (a tool that writes a checkpoint and copies the data state from another run's)."""
    items = {"state": ocp.args.StandardSave(state)}
    if iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(iterator)
    manager.save(step, args=ocp.args.Composite(**items), force=True)


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _shapes(tree: Any) -> dict[str, tuple]:
    """Array shapes by path ('params/block_0/attn/qkv'); dataclass fields, dict keys and tuple
    indices all spell the same way, as Orbax's metadata tree turns the first and last into dicts."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(e) for e in path): tuple(leaf.shape) for path, leaf in leaves}


# Train-state arrays that checkpoints from before their introduction lack, restored at zero:
# the count of non-finite steps in a row (train.state.TrainState.nonfinite).
ADDED_LATER = ("nonfinite",)


def _saved_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
    metadata = manager.item_metadata(step)["state"]
    return _shapes(getattr(metadata, "tree", metadata))


def check_compatible(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
    """Raises CheckpointMismatchError naming the first array whose shape differs from the config."""
    saved, wanted = _saved_shapes(manager, step), _shapes(abstract_state)
    for key in ADDED_LATER:
        if key not in saved:
            wanted.pop(key, None)
    where = os.path.join(str(manager.directory), str(step))
    for key in sorted(set(saved) | set(wanted)):
        if key not in saved:
            raise CheckpointMismatchError(
                f"checkpoint {where} has no array {key} that the configured model needs "
                f"(shape {wanted[key]}): it was written by a different model config"
            )
        if key not in wanted:
            raise CheckpointMismatchError(
                f"checkpoint {where} holds array {key} (shape {saved[key]}) that the configured "
                "model lacks: it was written by a different model config"
            )
        if saved[key] != wanted[key]:
            raise CheckpointMismatchError(
                f"checkpoint {where}: array {key} has shape {saved[key]} but the config needs "
                f"{wanted[key]}; use the model config the run was started with or a new workdir"
            )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    """Restores the train state at `step` onto the shardings of `abstract_state`."""
    check_compatible(manager, step, abstract_state)
    missing = [k for k in ADDED_LATER if hasattr(abstract_state, k)]
    missing = [k for k in missing if k not in _saved_shapes(manager, step)]
    if not missing:
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        return manager.restore(step, args=args)["state"]
    # an older checkpoint: restore the fields it has, the later ones at zero
    fields = [f.name for f in dataclasses.fields(abstract_state) if f.name not in missing]
    target = {name: getattr(abstract_state, name) for name in fields}
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
    restored = manager.restore(step, args=args)["state"]
    zeros = {
        k: jax.device_put(np.zeros(a.shape, a.dtype), a.sharding)
        for k in missing
        for a in [getattr(abstract_state, k)]
    }
    return abstract_state.replace(**{name: restored[name] for name in fields}, **zeros)


def restore_iterator(manager: ocp.CheckpointManager, step: int, iterator: Any) -> None:
    """Sets the Grain iterator to its state saved at `step`. CheckpointMismatchError when that
    state is not one this iterator's pipeline saves."""
    try:
        manager.restore(
            step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iterator))
        )
    except (KeyError, TypeError) as e:  # Grain's set_state on a state of another pipeline
        raise CheckpointMismatchError(
            f"checkpoint {step} in {manager.directory}: its data iterator state does not fit this "
            f"run's data pipeline ({_reason(e)}); it was saved by another one (files runs "
            "checkpointed before TrainWalk.stream, which read one batch at a time): resume it "
            "with the gssm_jax that wrote it, or train into a new workdir"
        ) from e


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


@dataclasses.dataclass
class Restored:
    """The newest checkpoint that restored, and the newer ones skipped with their reasons."""

    step: int
    state: Any
    skipped: list[tuple[int, str]]


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> Restored | None:
    """Restores the newest checkpoint that restores; None when there is none at all.

    A checkpoint of another model is an error (CheckpointMismatchError) at once; one that fails
    to read is skipped, with its reason, for the next older one. NoRestorableCheckpointError when
    none restores.
    """
    skipped: list[tuple[int, str]] = []
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.FATAL)  # Orbax logs each failed read's traceback
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                state = restore(manager, step, abstract_state)
            except CheckpointMismatchError:
                raise
            except Exception as e:  # noqa: BLE001 - any read failure: try the next older one
                skipped.append((step, _reason(e)))
                # The failed read leaves asyncio tasks whose exception nobody retrieves; asyncio
                # logs each with its traceback when it is garbage-collected, at any later time.
                # The reason is reported above, so those logs are silenced for this process.
                logging.getLogger("asyncio").setLevel(logging.CRITICAL)
                continue
            return Restored(step, state, skipped)
    finally:
        absl_logging.set_verbosity(verbosity)
    if not skipped:
        return None
    listed = "; ".join(f"step {s}: {why}" for s, why in skipped)
    raise NoRestorableCheckpointError(
        f"no checkpoint in {manager.directory} restores ({listed}); move the folder away to "
        "start over"
    )
