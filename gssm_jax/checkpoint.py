"""Orbax checkpoints of everything a run needs to resume exactly: train state and loader state.

Orbax writes each step into a temporary folder and renames it when complete, so a process killed
mid-save leaves the last complete checkpoint as the latest one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays do not fit the configured model."""


def make_manager(
    directory: str, keep: int, async_save: bool, read_only: bool = False
) -> ocp.CheckpointManager:
    """The run's manager; `read_only` (for tools that read a run) never creates, saves or deletes."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep,
        enable_async_checkpointing=async_save,
        create=not read_only,
        read_only=read_only,
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(
        os.path.abspath(directory), options=options, item_handlers=handlers
    )


def save(manager: ocp.CheckpointManager, step: int, state: Any, loader_state: dict) -> None:
    """Starts saving (asynchronously when the manager is async); `force` ignores save intervals."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(loader_state)
    )
    manager.save(step, args=args, force=True)


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


def check_compatible(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
    """Raises CheckpointMismatchError naming the first array whose shape differs from the config."""
    metadata = manager.item_metadata(step)["state"]
    tree = getattr(metadata, "tree", metadata)
    saved, wanted = _shapes(tree), _shapes(abstract_state)
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


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores (state, loader_state) at `step` onto the shardings of `abstract_state`."""
    check_compatible(manager, step, abstract_state)
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
    )
    restored = manager.restore(step, args=args)
    return restored["state"], restored["data"]
