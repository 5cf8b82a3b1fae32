"""model.cache_teacher: the frozen teacher runs once per training image, and training is unchanged."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from anomaly_kd.data.mvtec import MVTecDataModule
from anomaly_kd.models.components.teacher_cache import TeacherFeatureCache


def _datamodule(root, size: int, batch: int, random_transforms: bool = False, val_split: float = 0.2) -> MVTecDataModule:
    dm = MVTecDataModule(root=str(root), category="widget", image_size=size, batch_size=batch, seed=0, val_split=val_split)
    dm.has_random_transforms = random_transforms
    return dm


def _train(model_cls, root, size: int, batch: int, n_train: int, epochs: int = 2, channels_last: bool = False, **kw):
    torch.manual_seed(0)
    model = model_cls(pretrained=False, **kw)
    if channels_last:
        model.use_channels_last()
    calls = []
    model.model.teacher.register_forward_hook(lambda *_: calls.append(model.current_epoch))
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        deterministic=True,
    )  # fmt: skip
    trainer.fit(model, datamodule=_datamodule(root, size, batch, val_split=1 - n_train / 10))
    return model, calls


def _same(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Bit-equal, NaN equal to NaN (the thresholds stay NaN without validation)."""
    if not x.is_floating_point():
        return torch.equal(x, y)
    return torch.equal(x.isnan(), y.isnan()) and torch.equal(x[~x.isnan()], y[~y.isnan()])


def _models():
    from anomaly_kd.models.reverse_distillation import ReverseDistillation
    from anomaly_kd.models.stfpm import STFPM

    # STFPM: 8 training images in batches of 3 (the last one of 2, so the cached features come from
    # other batch compositions than the recomputed ones); RD4AD (slower): 2 images, one batch
    return [
        pytest.param(STFPM, {"layers": ["layer1", "layer2"], "size": 16, "batch": 3, "n_train": 8}, id="stfpm"),
        # channels_last: cached features come back in the layout the teacher gives, so the loss
        # reduces in the same order whether a batch was cached or not (bit-equal weights again)
        pytest.param(STFPM, {"layers": ["layer1", "layer2"], "size": 16, "batch": 3, "n_train": 8,
                             "channels_last": True}, id="stfpm_channels_last"),
        pytest.param(ReverseDistillation, {"backbone": "resnet18", "size": 32, "batch": 2, "n_train": 2},
                     id="reverse_distillation"),
    ]


@pytest.mark.parametrize("model_cls,kw", _models())
def test_cache_gives_identical_weights_and_runs_the_teacher_once(model_cls, kw, tiny_mvtec):
    cached, cached_calls = _train(model_cls, tiny_mvtec, cache_teacher=True, **kw)
    plain, plain_calls = _train(model_cls, tiny_mvtec, cache_teacher=False, **kw)
    batches = -(-kw["n_train"] // kw["batch"])
    assert plain_calls == [0] * batches + [1] * batches
    assert cached_calls == [0] * batches  # epoch 1 reads every feature from the cache
    a, b = cached.state_dict(), plain.state_dict()
    assert a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    assert cached._teacher_cache is None  # freed when training ends


@pytest.mark.parametrize("random_transforms", [False, True])
def test_cache_is_off_by_itself_with_random_transforms(tiny_mvtec, random_transforms):
    from types import SimpleNamespace

    from anomaly_kd.models.stfpm import STFPM

    model = STFPM(pretrained=False, layers=["layer1"])
    assert model.cache_teacher is True  # the default
    dm = _datamodule(tiny_mvtec, 16, 3, random_transforms)
    dm.setup("fit")
    model._trainer = SimpleNamespace(datamodule=dm)
    model.on_train_start()
    assert (model._teacher_cache is None) == random_transforms
    batch = {"image": torch.rand(2, 3, 16, 16), "index": torch.tensor([0, 1])}
    assert (model.teacher_features(batch, batch["image"]) is None) == random_transforms


def test_float16_store_rounds_the_features_every_epoch():
    teacher = lambda x: [x * 1.001, x[:, :1] + 0.1]  # noqa: E731  (a stand-in "teacher")
    images = torch.rand(4, 3, 5, 5)
    index = torch.tensor([2, 0, 3, 1])
    cache = TeacherFeatureCache(4, torch.float16)
    first = cache.features(index, images, teacher)
    again = cache.features(index[[1, 3]], images[[1, 3]], lambda x: pytest.fail("teacher called again"))
    expected = [f.half().float() for f in teacher(images)]
    assert all(torch.equal(f, e) for f, e in zip(first, expected))
    assert all(torch.equal(f, e[[1, 3]]) for f, e in zip(again, expected))
    assert cache.store[0].dtype == torch.float16 and cache.nbytes_for(first) == 4 * (75 + 25) * 2
    nhwc = TeacherFeatureCache(4, torch.float16)
    nhwc.features(index, images.contiguous(memory_format=torch.channels_last), teacher)
    hit = nhwc.features(index, images, lambda x: pytest.fail("teacher called again"))
    assert hit[0].is_contiguous(memory_format=torch.channels_last) and not hit[0].is_contiguous()
    exact = TeacherFeatureCache(4)
    assert all(torch.equal(f, e) for f, e in zip(exact.features(index, images, teacher), teacher(images)))


def test_bad_cache_dtype_is_a_user_error():
    from anomaly_kd.errors import UserError
    from anomaly_kd.models.stfpm import STFPM

    with pytest.raises(UserError, match="model.cache_teacher_dtype='bfloat16' must be one of float32, float16"):
        STFPM(pretrained=False, layers=["layer1"], cache_teacher_dtype="bfloat16")
