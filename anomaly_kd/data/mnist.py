"""MNIST one-class: one digit is normal, the nine others are anomalies.

Reads torchvision's layout ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
with numpy and never writes into ``root`` (it may be a read-only shared copy) unless
``download=true``. Training uses the normal digit's training images (minus the seeded validation
hold-out); the test set is all 10,000 test images (``test_limit`` takes a seeded, class-stratified
subset for quick runs; results with it are not the standard protocol).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from anomaly_kd.data.base import AnomalyDataModule, check_int, seeded_split
from anomaly_kd.data.cache import DecodedDataset, file_key
from anomaly_kd.data.images import resize_image
from anomaly_kd.errors import UserError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip'ed) of unsigned bytes as a numpy array."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read MNIST file {path} ({err}); replace it with an intact copy") from err
    ndim = data[3] if len(data) >= 4 else 0
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= ndim <= 3:
        raise UserError(f"{path} is not an MNIST IDX file of unsigned bytes; replace it with an intact copy")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        expected = int(np.prod(shape))
        raise UserError(f"MNIST file {path} is truncated ({body.size} of {expected} bytes); replace it with an intact copy")
    return body.reshape(shape)


def mnist_raw_dir(root: str | Path) -> Path:
    return Path(root).expanduser() / "MNIST" / "raw"


def find_mnist_file(root: str | Path, name: str) -> Path | None:
    for candidate in (mnist_raw_dir(root) / name, mnist_raw_dir(root) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def mnist_images_file(root: str | Path, split: str) -> Path | None:
    return find_mnist_file(root, MNIST_FILES[split][0])


def load_mnist(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], digits uint8 [N]) of the ``train`` or ``test`` split."""
    paths = [find_mnist_file(root, name) for name in MNIST_FILES[split]]
    if None in paths:
        missing = MNIST_FILES[split][paths.index(None)]
        raise UserError(
            f"MNIST file {mnist_raw_dir(root) / missing}[.gz] not found; set data.download=true to fetch MNIST "
            "there, or point paths.data_dir at a folder that holds MNIST/raw"
        )
    images, digits = (read_idx(p) for p in paths)
    if images.ndim != 3 or digits.ndim != 1 or len(images) != len(digits):
        raise UserError(
            f"MNIST files {paths[0]} and {paths[1]} do not match ({images.shape} images, {digits.shape} labels); "
            "replace them with intact copies"
        )
    return images, digits


def stratified_subset(digits: np.ndarray, limit: int, normal: int, seed: int) -> np.ndarray:
    """Sorted indices of ``limit`` items, each digit in proportion to its count (at least one normal)."""
    classes, counts = np.unique(digits, return_counts=True)
    exact = counts * limit / counts.sum()
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take), kind="stable")[: limit - take.sum()]] += 1
    where_normal = np.flatnonzero(classes == normal)
    if limit >= 2 and where_normal.size and take[where_normal[0]] == 0:
        take[where_normal[0]] = 1
        take[np.argmax(take)] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(digits == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def parse_digit(category) -> int:
    text = str(category).strip()
    if isinstance(category, bool) or text not in [str(d) for d in range(10)]:
        raise UserError(f"category={category!r} is not an MNIST digit; for data=mnist set category to one of 0..9")
    return int(text)


class DigitDataset(DecodedDataset):
    """The MNIST images ``ids`` of one split as items of the shared batch format; no masks.
    Grey: the cache (``data.cache``) stores one channel, items repeat it to RGB."""

    channels = 1
    has_masks = False

    def __init__(
        self, images: np.ndarray, digits: np.ndarray, ids: np.ndarray, split: str, normal: int, image_size: int,
        source: str = "",
    ):  # fmt: skip
        self.ids = np.asarray(ids)
        self.images, self.digits = images[self.ids], digits[self.ids]  # own copy: small to pickle
        self.split, self.normal, self.image_size = split, normal, image_size
        self.source = source  # file_key of the IDX images file (the disk cache's key)

    def __len__(self) -> int:
        return len(self.ids)

    def decode(self, index: int):
        return resize_image(self.images[index], self.image_size, channels=1), None

    def source_key(self, index: int) -> str:
        return f"{self.source}|row {int(self.ids[index])}"

    def info(self, index: int) -> dict:
        digit = int(self.digits[index])
        label = int(digit != self.normal)
        path = f"mnist/{self.split}/{int(self.ids[index]):05d}"
        return {"label": label, "path": path, "mask_path": "", "defect": "good" if label == 0 else f"digit_{digit}"}


class MNISTDataModule(AnomalyDataModule):
    """One-class MNIST; ``category`` is the normal digit (0..9, str or int)."""

    has_masks = False

    def __init__(
        self,
        root: str,
        category: str | int,
        image_size: int = 256,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_split: float = 0.2,
        seed: int = 0,
        cache: str = "ram",
        cache_dir: str | None = None,
        download: bool = False,
        test_limit: int | None = None,
    ):
        self.digit = parse_digit(category)
        super().__init__(
            root, str(self.digit), image_size, batch_size, eval_batch_size, num_workers, val_split, seed,
            cache=cache, cache_dir=cache_dir,
        )
        self.download = bool(download)
        self.test_limit = None if test_limit is None else check_int("test_limit", test_limit, 1)

    def prepare_data(self) -> None:
        if not self.download or all(find_mnist_file(self.root, n) for names in MNIST_FILES.values() for n in names):
            return
        from torchvision.datasets import MNIST

        try:
            for train in (True, False):
                MNIST(self.root, train=train, download=True)
        except Exception as err:
            raise UserError(
                f"could not download MNIST into {mnist_raw_dir(self.root)} ({err}); "
                "copy the files there or point paths.data_dir at a copy"
            ) from err

    def _build_datasets(self):
        self.prepare_data()
        train_images, train_digits = load_mnist(self.root, "train")
        test_images, test_digits = load_mnist(self.root, "test")
        normal_ids = np.flatnonzero(train_digits == self.digit)
        if normal_ids.size == 0:
            raise UserError(
                f"no training images of digit {self.digit} in {mnist_raw_dir(self.root)}; "
                "replace the MNIST files with intact copies"
            )
        train_idx, val_idx = seeded_split(len(normal_ids), self.val_split, self.seed)
        test_ids = np.arange(len(test_digits))
        if self.test_limit is not None and self.test_limit < len(test_ids):
            test_ids = stratified_subset(test_digits, self.test_limit, self.digit, self.seed)
        args = (self.digit, self.image_size)
        train_source = file_key(mnist_images_file(self.root, "train"))
        test_source = file_key(mnist_images_file(self.root, "test"))
        return (
            DigitDataset(train_images, train_digits, normal_ids[train_idx], "train", *args, train_source),
            DigitDataset(train_images, train_digits, normal_ids[val_idx], "train", *args, train_source),
            DigitDataset(test_images, test_digits, test_ids, "test", *args, test_source),
        )

