"""Fixtures of the reliability tests: the entry point called in this process, small data folders."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.err.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


@pytest.fixture
def cli(monkeypatch, capsys):
    """``python -m anomaly_kd.run <args>`` run in this process (no interpreter start-up, same code
    path: Hydra's main, its callbacks, the entry point's error handling). Returns a CliResult."""
    from hydra.core.global_hydra import GlobalHydra

    from anomaly_kd.run import main

    def _cli(*args: str) -> CliResult:
        GlobalHydra.instance().clear()
        monkeypatch.setattr(sys, "argv", ["anomaly_kd.run", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        finally:
            GlobalHydra.instance().clear()
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return _cli


@pytest.fixture
def make_root(tmp_path):
    """A fresh tiny MVTec-format folder (category ``widget``, 32 px) that a test may damage."""
    from anomaly_kd.data.synthetic import make_synthetic_mvtec

    def _make(name: str = "data", mode: str = "RGB", size: int = 32) -> Path:
        return make_synthetic_mvtec(tmp_path / name, category="widget", n_train=6, n_test_good=2,
                                    n_test_defect=2, size=size, mode=mode)

    return _make


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if anything starts training (the checks must come before)."""
    import pytorch_lightning as pl

    def refuse(*args, **kwargs):
        raise AssertionError("training started although the input was invalid")

    monkeypatch.setattr(pl.Trainer, "fit", refuse)
