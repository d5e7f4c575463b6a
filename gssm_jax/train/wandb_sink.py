"""Weights & Biases logging of one run: its config, every train/eval record, its final summary,
its report figures and its profile traces, in one wandb run across all its starts and resumes.

`WandbSink` is a record sink (write, close) that `MetricsWriter` forwards the trainer's records
to (`sinks_for_run` builds it from `log.wandb`); `python -m gssm_jax.report PATH --wandb` drives
the same sink over what a run left on disk (gssm_jax/reporting/upload.py), so a run logged live
and uploaded later is the same wandb run and nothing is sent twice (gssm_jax/train/wandb_run.py).
Only process 0 logs. A wandb failure during training prints one warning and the run goes on
without it (upload it later); a missing package is a ConfigError (exit 2) naming the extra.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gssm_jax.config import ConfigError
from gssm_jax.train import wandb_run as wr

MODES = ("disabled", "offline", "online")
EXTRA = "pip install -e '.[wandb]'"


def require_wandb(mode: str, key: str = "log.wandb.mode") -> None:
    """ConfigError (one line naming the extra) when `mode` needs wandb and it is not installed."""
    if mode == "disabled":
        return
    if mode not in MODES:
        raise ConfigError(f"{key}={mode!r}: must be one of {', '.join(MODES)}")
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{key}={mode!r} needs the wandb package, which is not installed: {EXTRA}"
        ) from None


def shutdown() -> None:
    """Stops wandb's service process (started by the first wandb.init of this process)."""
    if "wandb" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["wandb"].teardown()


class WandbSink:
    """Sends one run's records to its wandb run.

    Everything comes in explicitly (it reads no config): `config` is the resolved run config as a
    dict (config.json), `group`/`grid_point`/`name` the run's Identity. `lazy`: start wandb only
    once something new is to be sent (an upload with nothing new never starts it); else at once
    (the trainer: a run appears when it starts). `errors`: "warn" prints one line and stops
    logging (training goes on), "raise" lets the error through (the upload). `own_service`:
    close() also shuts wandb's service down (an upload of many runs does it once at the end).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: dict,
        mode: str,
        project: str,
        entity: str = "",
        group: str = "",
        tags: Sequence[str] = (),
        name: str | None = None,
        grid_point: dict | None = None,
        system_stats: bool = True,
        lazy: bool = False,
        errors: str = "warn",
        own_service: bool = True,
    ) -> None:
        require_wandb(mode)
        self.enabled = mode != "disabled"
        self.sent = {"records": 0, "summary": 0, "figures": 0, "artifacts": 0}
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.state = wr.SyncState.of(self.run_dir, config)
        self.progress = self.state.progress(wr.target(mode, entity, project))
        self._init: dict[str, Any] = {
            "mode": mode,
            "project": project,
            "entity": entity or None,
            "group": group or None,
            "tags": list(tags) or None,
            "name": name or self.run_dir.name,
        }
        self._config = wr.wandb_config(config, grid_point or {})
        self._system_stats = system_stats
        self._per_step = wr.tokens_per_step(config)
        self._errors = errors
        self._own_service = own_service
        self._run: Any = None
        if self.enabled and not lazy:
            with self._guard():
                self._start()

    @property
    def run_id(self) -> str:
        return self.state.id

    # -- the wandb run ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as e:  # noqa: BLE001 - wandb's failures must not end a training run
            if self._errors == "raise":
                raise
            print(
                f"warning: wandb: {type(e).__name__}: {' '.join(str(e).split())}; the run goes on "
                f"without wandb logging (send it later: python -m gssm_jax.report {self.run_dir} "
                "--wandb)",
                file=sys.stderr,
                flush=True,
            )
            self.enabled = False
            run, self._run = self._run, None
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish(exit_code=1)

    def _start(self) -> Any:
        """The wandb run, started (or resumed: same id) on first use."""
        if self._run is not None:
            return self._run
        import wandb

        if self.mode == "offline":
            # wandb's process-wide settings, not init's, decide its error reporting: without
            # this an offline run still looks up W&B's servers at exit.
            wandb.setup(settings=wandb.Settings(mode="offline", silent=True))
        settings = wandb.Settings(
            silent=True, console="off", save_code=False, x_disable_stats=not self._system_stats
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            dir=str(self.run_dir), id=self.state.id, resume="allow", settings=settings, **self._init
        )
        self._run.config.update(self._config, allow_val_change=True)  # a resume may change keys
        self.state.save(self.run_dir)
        return self._run

    # -- the record sink --------------------------------------------------------------------------
    def write(self, stream: str, record: dict[str, Any]) -> None:
        """Sends a train or eval record at its step, unless that step was sent already."""
        step = record.get("step")
        if not self.enabled or not isinstance(step, int) or not self.progress.wants(stream, step):
            return
        with self._guard():
            self._start().log(wr.history_row(stream, record, self._per_step), step=step)
            self.progress.sent(stream, step)
            self.state.save(self.run_dir)
            self.sent["records"] += 1

    def close(self, summary: dict | None = None) -> None:
        """Sets the summary (default: `wr.summary_from_dir`, failed when an exception is passing
        through the caller, as when the trainer's `finally` closes its files), attaches new
        figures and profile traces, finishes the wandb run."""
        if not self.enabled:
            return
        failed = summary is None and sys.exc_info()[1] is not None
        with self._guard():
            self._send_summary(summary or wr.summary_from_dir(self.run_dir, failed))
            self._send_figures()
            self._send_profile()
            if self._run is not None:
                self._run.finish(exit_code=1 if failed else 0)
                self._run = None
        self.enabled = False
        if self._own_service:
            shutdown()

    # -- summary, figures, traces -------------------------------------------------------------
    def _new(self, key: str, digest: str) -> bool:
        return self.progress.digests.get(key) != digest

    def _done(self, key: str, digest: str, kind: str) -> None:
        self.progress.digests[key] = digest
        self.state.save(self.run_dir)
        self.sent[kind] += 1

    def _send_summary(self, summary: dict) -> None:
        values = {k: v for k, v in summary.items() if v is not None}
        digest = wr.json_digest(values)
        if values and self._new("summary", digest):
            self._start().summary.update(values)
            self._done("summary", digest, "summary")

    def _send_figures(self) -> None:
        for key, path in wr.figure_files(self.run_dir).items():
            digest = wr.file_digest(path)
            if self._new(key, digest):
                import wandb

                self._start().summary[key] = wandb.Image(str(path), caption=path.name)
                self._done(key, digest, "figures")

    def _send_profile(self) -> None:
        files = wr.profile_files(self.run_dir)
        digest = wr.listing_digest(files) if files else ""
        if not files or not self._new("profile", digest):
            return
        import wandb

        artifact = wandb.Artifact(f"profile-{self.state.id}", type="profile")
        for name, path in files.items():
            artifact.add_file(str(path), name=name, policy="immutable")
        self._start().log_artifact(artifact)
        self._done("profile", digest, "artifacts")


def sinks_for_run(run_dir: str, config: dict, is_chief: bool) -> list[WandbSink]:
    """The sinks `config['log']['wandb']` asks for: none when disabled or not process 0. Group
    and grid point: log.wandb.group, else the launch.submit sweep the directory is a task of."""
    w = (config.get("log") or {}).get("wandb") or {}
    mode = w.get("mode", "disabled")
    if mode == "disabled" or not is_chief:
        return []
    who = wr.identity(run_dir)
    return [
        WandbSink(
            run_dir,
            config,
            mode,
            w.get("project") or "gssm_jax",
            entity=w.get("entity") or "",
            group=w.get("group") or who.group,
            tags=tuple(w.get("tags") or ()),
            name=who.name,
            grid_point=who.grid_point,
            system_stats=bool(w.get("system_stats", True)),
        )
    ]
