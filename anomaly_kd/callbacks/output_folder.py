"""An output folder that cannot be written is refused with one line, before anything starts.

Hydra creates the run folder (and writes ``.hydra/``) before the job function runs, so a folder
under a regular file, on a read-only mount or without permission would end in Hydra's own
traceback. :class:`OutputFolderCheck` is a Hydra callback (registered from
``conf/callbacks/default.yaml``) that checks ``hydra.run.dir`` (``hydra.sweep.dir`` for ``-m``)
first: it prints ``error: ...`` and exits with status 2. :func:`folder_write_problem` is the check
itself, also used by :func:`anomaly_kd.pipeline.run` for ``paths.output_dir`` (runs started from
Python have no Hydra callback).

The check writes (and removes) a probe file rather than trusting permission bits, which do not
apply to root: it works for root too.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

_HINT = "choose a writable folder with hydra.run.dir=<folder> (hydra.sweep.dir=<folder> for -m)"


def _nearest_existing(folder: Path) -> Path:
    current = folder
    while True:
        try:
            if current.exists() or current.is_symlink():
                return current
        except OSError:
            return current
        if current.parent == current:
            return current
        current = current.parent


def _probe(folder: Path) -> OSError | None:
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".anomaly_kd_write_test.")
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        return error
    return None


def folder_write_problem(folder: str | os.PathLike, create: bool = False) -> str | None:
    """Why files cannot be written in ``folder`` (one sentence), or None when they can.

    ``create=False`` changes nothing on disk but a probe file: a folder that does not exist yet is
    judged by its nearest existing parent. ``create=True`` creates the folder first.
    """
    folder = Path(folder).expanduser().absolute()
    existing = _nearest_existing(folder)
    if existing.exists() and not existing.is_dir():
        return f"cannot create the output folder {folder}: {existing} is a file, not a folder; {_HINT}."
    target = existing
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"cannot create the output folder {folder} ({error.strerror or error}); {_HINT}."
        target = folder
    error = _probe(target)
    if error is not None:
        return (f"cannot write to the output folder {folder}: creating a file in {target} failed "
                f"({error.strerror or error}); {_HINT}.")
    return None


class OutputFolderCheck(Callback):
    """Hydra callback: refuse a run or sweep folder that cannot be written (exit status 2)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        try:
            folder = OmegaConf.select(config, key)
        except Exception:  # a broken interpolation: Hydra reports it itself, with the key
            return
        if folder in (None, ""):
            return
        problem = folder_write_problem(str(folder))
        if problem:
            sys.stdout.flush()
            print(f"error: {problem}", file=sys.stderr, flush=True)
            sys.exit(2)


__all__ = ["OutputFolderCheck", "folder_write_problem"]
