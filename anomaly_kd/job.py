"""Where a job stands and what it prints when it stops early: the command lines that rerun,
resume or complete it (from Hydra's overrides), the SIGTERM handling (:class:`JobInterrupted`),
and the one-line message for a write that failed in the output folder."""

from __future__ import annotations

import errno
import shlex
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any


_RESUME_REPLACES = {"ckpt_path", "train", "hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir",
                    "hydra.sweeper.params"}


def job_overrides() -> list[str] | None:
    """The command-line overrides of this job (a multirun job's own values), None without Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return list(HydraConfig.get().overrides.task)
    except Exception:
        pass
    return None


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def _override_key(item: str) -> str:
    return item.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def _hydra_value(value: str) -> str:
    """A value as Hydra's override grammar reads it back (quoted unless plainly safe)."""
    plain = all(c.isalnum() or c in "_-./:" for c in value)
    return value if plain and value else "'" + value.replace("'", "\\'") + "'"


def job_command(settings: dict[str, Any] | None = None, drop: set[str] | frozenset = frozenset()) -> str:
    """``python -m anomaly_kd.run <this job's overrides>`` with the keys in ``drop`` removed and
    ``settings`` replacing or adding keys; given settings, a multirun job is rerun alone."""
    settings = settings or {}
    overrides = job_overrides()
    words = ["python", "-m", "anomaly_kd.run"]
    if overrides is None:
        words.append("<your overrides>")
        overrides = []
    drop = set(settings) | set(drop)
    words += [o for o in overrides if _override_key(o) not in drop]
    if settings and _in_multirun():
        words.append("hydra.sweeper.params=null")  # the job alone, not its sweep again
    words += [f"{key}={_hydra_value(str(value))}" for key, value in settings.items()]
    return " ".join(w if w == "<your overrides>" else shlex.quote(w) for w in words)


class JobInterrupted(Exception):
    """SIGTERM stopped the job; the message says how to resume or complete it (exit 128 + 15)."""

    exit_code = 128 + signal.SIGTERM

    def __init__(self, message: str, command: str):
        super().__init__(" ".join(message.split()))
        self.command = command


class Terminated(BaseException):
    """Raised by our SIGTERM handler outside Lightning's loops (which stop at the next batch)."""


class JobState:
    """Where a job stands, for the message and command printed when SIGTERM stops it."""

    def __init__(self) -> None:
        self.stage = "setting up"
        self.output_dir: Path | None = None
        self.trained = False
        self.tested_checkpoint: str | None = None
        self.test_only = False
        self._stale_last: tuple[int, int] | None = None  # a last.ckpt this run did not write

    def note_existing_checkpoint(self, resuming: bool) -> None:
        """Remember a last.ckpt left in the folder by an earlier run (unless this run resumes it)."""
        if self.output_dir is not None and not resuming:
            self._stale_last = _file_version(self.output_dir / "checkpoints" / "last.ckpt")

    def _resumable(self, last: Path) -> bool:
        version = _file_version(last)
        return version is not None and version != self._stale_last

    def _on_sigterm(self, signum, frame) -> None:
        # Inside fit/test, Lightning's handler is installed and calls this one after setting its
        # flag: its loops stop at the next batch. Anywhere else (including Lightning's own setup
        # and teardown, before/after its handler is in place) this is the handler: stop now.
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            raise Terminated()

    @contextmanager
    def sigterm_handler(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def interrupted(self) -> JobInterrupted:
        folder = self.output_dir
        here = {"hydra.run.dir": folder}
        if folder is None:
            command = job_command()
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; nothing was written. "
                                  f"Run it again with: {command}", command)
        if self.test_only:
            command = job_command(here)
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; results.json was not "
                                  f"written. Run the test again with: {command}", command)
        last = folder / "checkpoints" / "last.ckpt"
        if self.stage in ("setting up", "training"):
            if self._resumable(last):
                command = job_command({"ckpt_path": last, **here}, drop=_RESUME_REPLACES)
                return JobInterrupted(
                    f"interrupted by SIGTERM while {self.stage}; the checkpoint of the last finished "
                    f"epoch is kept ({last}). Resume with: {command}", command)
            command = job_command(here, drop=_RESUME_REPLACES)
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}, before any epoch had "
                                  f"finished. Start again with: {command}", command)
        ckpt = self.tested_checkpoint or (str(last) if self._resumable(last) else None)
        if ckpt is None:
            command = job_command(here, drop=_RESUME_REPLACES)
            return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; results.json was not "
                                  f"written. Run the job again with: {command}", command)
        command = job_command({"train": "false", "ckpt_path": ckpt, **here}, drop=_RESUME_REPLACES)
        return JobInterrupted(f"interrupted by SIGTERM while {self.stage}; training had finished but "
                              f"results.json was not written. Complete the job (test stage only) "
                              f"with: {command}", command)


def _file_version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def disk_problem(error: BaseException, output_dir: Path | None) -> str | None:
    """The one-line message for a write that failed in the output folder (full, read-only, denied)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno is not None:
            name = str(error.filename or "")
            inside = output_dir is not None and name.startswith(str(output_dir))
            if error.errno in _DISK_FULL or (inside and error.errno in (errno.EACCES, errno.EPERM)):
                return (f"could not write {name or output_dir}: {error.strerror}; free disk space or "
                        "choose another output folder with hydra.run.dir=<folder>.")
        error = error.__cause__ or error.__context__
    return None
