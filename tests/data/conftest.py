"""Fixtures for the data tests: a tiny MVTec folder, tiny MNIST idx files, the real MNIST copy."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from anomaly_kd.data.synthetic import make_synthetic_mvtec

REAL_MNIST_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """<tmp>/mvtec/widget: 10 train, 2 test/good, 2 test/scratch + 2 test/hole with masks, 32 px."""
    return make_synthetic_mvtec(tmp_path / "mvtec", n_train=10, n_test_good=2, n_test_defect=4, size=32, defects=("scratch", "hole"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format (gzip'ed when the name ends in .gz)."""
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def tiny_digits(n_per_digit: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixels all equal 10*digit + offset (so tests can recognise them) and their digits."""
    digits = np.repeat(np.arange(10, dtype=np.uint8), n_per_digit)
    images = np.broadcast_to((digits * 10 + offset)[:, None, None], (len(digits), 28, 28)).copy()
    return images, digits


@pytest.fixture
def tiny_mnist(tmp_path: Path):
    """Factory: ``tiny_mnist(gz=True)`` writes <root>/MNIST/raw with 6 train and 3 test images per digit."""

    def make(gz: bool = True, name: str = "mnist") -> Path:
        root = tmp_path / name
        raw = root / "MNIST" / "raw"
        ext = ".gz" if gz else ""
        for prefix, (images, digits) in (("train", tiny_digits(6, 1)), ("t10k", tiny_digits(3, 2))):
            write_idx(raw / f"{prefix}-images-idx3-ubyte{ext}", images)
            write_idx(raw / f"{prefix}-labels-idx1-ubyte{ext}", digits)
        return root

    return make


@pytest.fixture
def real_mnist_root() -> Path:
    """The read-only real MNIST copy next to the repository (../shared/data); skip when absent."""
    if not (REAL_MNIST_ROOT / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {REAL_MNIST_ROOT / 'MNIST' / 'raw'}")
    return REAL_MNIST_ROOT
