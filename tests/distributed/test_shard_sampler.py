"""Evaluation shards under DDP, without a process group: every item once (test), equal blocks
(validation), and the loaders Lightning keeps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch.utils.data import DistributedSampler

from anomaly_kd.data.base import IndexedDataset, ShardSampler
from tests.helpers import compose_config


@pytest.mark.parametrize("n", [1, 2, 5, 7, 8, 13])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_test_shards_cover_each_item_exactly_once(n, world):
    shards = [list(ShardSampler(range(n), world, rank)) for rank in range(world)]
    assert all(shards), "every rank runs at least one batch"
    flat = [i for shard in shards for i in shard]
    if n >= world:
        assert flat == list(range(n))  # contiguous blocks in rank order, no padding, no repeat
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    else:  # fewer items than processes: the last item is repeated (the gather drops it)
        assert sorted(set(flat)) == list(range(n)) and set(flat[n:]) == {n - 1}
    assert [len(ShardSampler(range(n), world, r)) for r in range(world)] == list(map(len, shards))


@pytest.mark.parametrize("n, world", [(3, 2), (7, 2), (8, 3), (2, 4)])
def test_validation_shards_are_equal_blocks(n, world):
    shards = [list(ShardSampler(range(n), world, rank, pad=True)) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1
    flat = [i for s in shards for i in s]
    assert sorted(set(flat)) == list(range(n))
    first = sorted(dict.fromkeys(flat))
    assert first == list(range(n))


def test_empty_set_gives_empty_shards():
    assert [list(ShardSampler(range(0), 2, r)) for r in range(2)] == [[], []]
    assert [list(ShardSampler(range(0), 2, r, pad=True)) for r in range(2)] == [[], []]


def test_datamodule_shards_val_and_test_under_ddp_only(tiny_mvtec, tmp_path):
    from anomaly_kd.trainer_setup import build_datamodule

    cfg = compose_config(["data=mvtec", "category=widget", f"paths.data_dir={tiny_mvtec}", "data.image_size=32",
                          "data.batch_size=3"], tmp_path)
    dm = build_datamodule(cfg)
    alone = dm.test_dataloader()
    assert not isinstance(alone.sampler, DistributedSampler)
    assert next(iter(alone))["index"].tolist() == [0, 1, 2]  # every item carries its position
    whole = [p for b in alone for p in b["path"]]
    seen = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = dm.test_dataloader()
        assert isinstance(loader.sampler, ShardSampler)  # a DistributedSampler: Lightning keeps it
        assert isinstance(loader.dataset, IndexedDataset) and len(loader.dataset) == len(whole)
        for batch in loader:
            seen += list(zip(batch["index"].tolist(), batch["path"]))
        assert isinstance(dm.val_dataloader().sampler, ShardSampler)
    dm.trainer = None
    assert seen == list(enumerate(whole))


def test_ddp_spawn_trainer_config(tmp_path):
    cfg = compose_config(["trainer=ddp_spawn"], tmp_path)
    assert (cfg.trainer.strategy, cfg.trainer.accelerator, cfg.trainer.devices) == ("ddp_spawn", "cpu", 2)
    assert cfg.trainer.precision == "32-true"
