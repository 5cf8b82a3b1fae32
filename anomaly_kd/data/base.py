"""Common datamodule: option checks, the seeded validation hold-out and the three dataloaders."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from anomaly_kd.data.cache import DecodedDataset, check_cache_mode
from anomaly_kd.errors import UserError


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int >= minimum, else UserError naming the option ``data.<name>``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise UserError(
            f"data.{name} must be an integer >= {minimum}, got {value!r}; "
            f"fix data.{name} in the config or on the command line"
        )
    return int(value)


def seeded_split(n: int, val_split: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (train, val) index lists, both sorted; depends only on n, val_split, seed.

    Like the STFPM authors' ``train_test_split(test_size=0.2, random_state=0)`` the hold-out has
    ``ceil(n * val_split)`` items, drawn with our own seed.
    """
    n_val = math.ceil(round(n * val_split, 9)) if val_split > 0 else 0
    if n - n_val < 1:
        raise UserError(
            f"only {n} training image(s), none left for training after the data.val_split={val_split} "
            "hold-out; add images or lower data.val_split"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream); NumPy's SeedSequence mixes them."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


class EpochShuffleSampler(RandomSampler):
    """A shuffled order of the training images that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch (as for a DistributedSampler), so
    a run resumed from an epoch-end checkpoint draws exactly the orders an uninterrupted run draws
    (a generator seeded once would replay epoch 0's order after a resume). The order comes from a
    generator seeded by ``(seed, epoch)`` alone, whatever else was drawn. ``generator`` is the
    DataLoader's (the base seed of worker processes): reseeded by :meth:`set_epoch` too. Without
    ``set_epoch`` (a plain loop) each pass is the next epoch.
    """

    def __init__(self, data_source, seed: int):
        super().__init__(data_source, generator=torch.Generator())
        self.seed = int(seed)
        self.epoch = 0
        self._epoch_given = False
        self._passes = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch_given = True
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch, stream=2))

    def __iter__(self):
        if self._passes and not self._epoch_given:
            self.epoch += 1  # a plain loop: each pass is the next epoch
        self._epoch_given = False
        self._passes += 1
        order = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(len(self.data_source), generator=order).tolist())


class ShardSampler(DistributedSampler):
    """This process's share of an evaluation set under DDP: a contiguous block of the set.

    ``pad=False`` (test): rank ``r`` of ``W`` gets indices ``[r*n//W, (r+1)*n//W)``, so every item
    is evaluated exactly once over all ranks (Lightning's DistributedSampler pads the set by
    repeating items). Only when the set has fewer items than processes does a rank that would get
    none evaluate the last item again: Lightning skips an evaluation loop without batches, which
    would leave the other ranks waiting in the end-of-epoch gather.

    ``pad=True`` (validation): blocks of ``ceil(n/W)`` items, the last ones completed by repeating
    the last item, so that every rank runs the same number of batches (per-batch collectives of
    DDP and methods that gather equal-sized tensors keep working).

    Loaders from :meth:`AnomalyDataModule.val_dataloader` / ``test_dataloader`` tag items with
    their data-set ``index``: the end-of-epoch gathers drop repeats and restore the set's order.
    Being a ``DistributedSampler``, Lightning keeps this sampler instead of inserting its own.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, pad: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        n = len(dataset)
        if pad:
            size = math.ceil(n / num_replicas)
            block = list(range(min(rank * size, n), min((rank + 1) * size, n)))
            self.indices = block + [n - 1] * (size - len(block)) if n else []
        else:
            start, stop = rank * n // num_replicas, (rank + 1) * n // num_replicas
            self.indices = list(range(start, stop)) or ([n - 1] if n else [])
        self.num_samples = len(self.indices)
        self.total_size = n

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


class IndexedDataset(Dataset):
    """``dataset``'s dict items with their position added as ``index`` (an int)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": int(index)}


class AnomalyDataModule(pl.LightningDataModule):
    """Base class. Subclasses implement :meth:`_build_datasets` returning (train, val, test).

    ``val`` holds normal images only (the seeded hold-out of the normal training images);
    nothing here ever selects on the test set.

    ``cache`` (``ram``, ``disk``, ``none``) and ``cache_dir``: how often images are decoded and
    resized (:mod:`anomaly_kd.data.cache`); the RAM cache of a data set is built when its loader
    is first made, in this process.
    """

    has_masks: bool = True
    #: True when a training item can differ from one epoch to the next (random augmentation): the
    #: models' teacher-feature cache is then switched off. No data set here has one today.
    has_random_transforms: bool = False

    def __init__(
        self,
        root: str,
        category: str,
        image_size: int = 256,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_split: float = 0.2,
        seed: int = 0,
        cache: str = "ram",
        cache_dir: str | None = None,
    ):
        super().__init__()
        if root is None or str(root).strip() == "":
            raise UserError("no data folder given; set paths.data_dir=<folder> (or env ANOMALY_KD_DATA_DIR)")
        if category is None or str(category).strip() in ("", ".", ".."):
            raise UserError(f"no data category given (category={category!r}); set category=<name>")
        self.root = str(root)
        self.category = str(category)
        self.image_size = check_int("image_size", image_size, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eval_batch_size = self.batch_size if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        if isinstance(val_split, bool) or not isinstance(val_split, Real) or not 0 <= val_split < 1:
            raise UserError(f"data.val_split must be a number with 0 <= val_split < 1, got {val_split!r}; fix data.val_split")
        self.val_split = float(val_split)
        if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
            raise UserError(f"seed must be a non-negative integer, got {seed!r}; fix seed in the config or on the command line")
        self.seed = int(seed)
        self.cache = check_cache_mode(cache)
        self.cache_dir = None if cache_dir in (None, "") else str(cache_dir)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            datasets = self._build_datasets()
            for dataset in datasets:
                if isinstance(dataset, DecodedDataset):
                    dataset.configure_cache(self.cache, self.cache_dir)
            self.train_set, self.val_set, self.test_set = datasets

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        if isinstance(dataset, DecodedDataset):
            dataset.build_cache()  # here, before any worker starts (a no-op unless data.cache=ram)
        sampler = EpochShuffleSampler(dataset, self.seed) if shuffle else None
        generator = sampler.generator if sampler is not None else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def _processes(self) -> tuple[int, int]:
        """(world size, global rank) of the trainer this datamodule is attached to; (1, 0) alone."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _eval_loader(self, dataset: Dataset, pad: bool = False) -> DataLoader:
        """Validation/test loader: in a fixed order; under DDP each rank gets its own
        :class:`ShardSampler` block and items carry their data-set ``index``."""
        world, rank = self._processes()
        if world <= 1:
            return self._loader(dataset, self.eval_batch_size, shuffle=False)
        if isinstance(dataset, DecodedDataset):
            dataset.build_cache()
        return DataLoader(
            IndexedDataset(dataset),
            batch_size=self.eval_batch_size,
            sampler=ShardSampler(dataset, world, rank, pad=pad),
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _dataset(self, name: str) -> Dataset:
        if getattr(self, name) is None:
            self.setup()
        return getattr(self, name)

    def train_dataloader(self) -> DataLoader:
        """Shuffled in an order that depends only on (seed, epoch); drop_last=False, like the STFPM authors."""
        return self._loader(self._dataset("train_set"), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation normals only (empty when val_split=0); under DDP equal blocks per rank (the
        repeats that complete the last blocks are dropped when the statistics are gathered)."""
        return self._eval_loader(self._dataset("val_set"), pad=True)

    def test_dataloader(self) -> DataLoader:
        """Whole test set in a fixed order; under DDP each rank gets a block (no padding, no repeat)."""
        return self._eval_loader(self._dataset("test_set"))
