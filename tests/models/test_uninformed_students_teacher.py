"""Uninformed Students teacher pretraining, teacher files and validation statistics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_kd.errors import UserError
from anomaly_kd.models.uninformed_students import UninformedStudents
from anomaly_kd.models.uninformed_students import teacher_pretraining as tp

TINY = tp.PretrainConfig(pretrained=False, iterations=2, batch_size=6, lambda_m=1.0)


def _two_flat_images(folder):
    folder.mkdir()
    for name, value in (("dark.png", 50), ("bright.png", 200)):
        Image.fromarray(np.full((40, 50, 3), value, np.uint8)).save(folder / name)
    return folder


def test_patch_source_triplets(tmp_path):
    source = tp.PatchSource(tp.source_files(str(_two_flat_images(tmp_path / "imgs"))))
    cfg = replace(TINY, noise=0.0, luminance=0.0)
    rng = np.random.default_rng(0)
    anchors, positives, negatives = source.batch(rng, 8, 17, cfg, triplets=True)
    assert anchors.shape == positives.shape == negatives.shape == (8, 3, 17, 17)
    # flat images: the positive is the anchor's image, the negative always the other one
    assert torch.allclose(anchors, positives)
    total = anchors.mean(dim=(1, 2, 3)) + negatives.mean(dim=(1, 2, 3))
    assert torch.allclose(total, torch.tensor(250 / 255))
    anchors, none, _ = source.batch(rng, 3, 33, cfg, triplets=False)
    assert anchors.shape == (3, 3, 33, 33) and none is None  # 40 px images are upscaled if needed
    assert len(tp.source_files("skimage")) == len(tp.SKIMAGE_IMAGES)  # bundled, offline
    with pytest.raises(UserError):
        tp.source_files(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "backbone,dim",
    [("efficientnet_lite0", 320), ("efficientnet_lite1", 320), ("efficientnet_lite2", 352), ("resnet18", 512)],
)
def test_distillation_targets(backbone, dim):
    target = tp.DistillationTarget(replace(TINY, backbone=backbone))
    assert target(torch.rand(2, 3, 17, 17)).shape == (2, dim)
    resized = tp.DistillationTarget(replace(TINY, backbone=backbone, kd_input_size=40))
    assert resized(torch.rand(1, 3, 17, 17)).shape == (1, dim)


def test_offline_imagenet_target_loads():
    target = tp.DistillationTarget(replace(TINY, pretrained=True))
    assert target(torch.rand(2, 3, 33, 33)).shape == (2, 320)


@pytest.mark.slow
def test_pretraining_save_load_and_file_keys(tmp_path):
    net, losses = tp.pretrain_teacher(17, TINY, progress=False)
    assert set(losses) == {"loss", "kd", "triplet", "compactness"}
    assert all(np.isfinite(v) for v in losses.values())
    assert not any(p.requires_grad for p in net.parameters())
    path = tp.teacher_file(tmp_path, 17, TINY)
    assert path.name.startswith("us_teacher_p17_d128_efficientnet_lite0-random_skimage_seed0_it2_")
    assert tp.teacher_file(tmp_path, 17, replace(TINY, lambda_c=0.5)) != path  # any setting counts
    assert tp.teacher_file(tmp_path, 17, replace(TINY, compactness_over="patches")) != path
    assert tp.teacher_file(tmp_path, 33, TINY) != path
    tp.save_teacher(path, net, TINY, losses)
    state = tp.load_teacher_state(path, 17, 128)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    with pytest.raises(UserError, match="p=17"):
        tp.load_teacher_state(path, 33, 128)
    with pytest.raises(UserError):
        tp.load_teacher_state(tmp_path / "nope.pt", 17, 128)
    # metric learning alone needs no pretrained network; all weights 0 is an error
    _, only_m = tp.pretrain_teacher(17, replace(TINY, lambda_k=0.0, lambda_c=0.0), progress=False)
    assert set(only_m) == {"loss", "triplet"}
    with pytest.raises(UserError):
        tp.pretrain_teacher(17, replace(TINY, lambda_k=0.0, lambda_m=0.0, lambda_c=0.0), progress=False)


def _module(tmp_path, **kwargs):
    defaults = dict(
        patch_sizes=[17], n_students=2, pretrained=False, teacher_dir=str(tmp_path),
        teacher_iterations=2, teacher_batch_size=4,
    )  # fmt: skip
    return UninformedStudents(**{**defaults, **kwargs})


@pytest.mark.slow
def test_teachers_are_cached_and_reused(tmp_path, monkeypatch):
    first = _module(tmp_path)
    first.prepare_teachers(progress=False)
    files = list(tmp_path.glob("us_teacher_p17_*.pt"))
    assert len(files) == 1 and bool(first.teacher_ready.all())

    def fail(*args, **kwargs):
        raise AssertionError("the cached teacher should have been loaded")

    monkeypatch.setattr(
        "anomaly_kd.models.uninformed_students.lightning_model.pretrain_teacher", fail
    )
    second = _module(tmp_path)
    second.prepare_teachers(progress=False)
    assert torch.equal(second.model.teachers[0].convs[0].weight, first.model.teachers[0].convs[0].weight)
    given = _module(tmp_path / "elsewhere", teacher_path=str(files[0]))
    given.prepare_teachers(progress=False)
    assert not (tmp_path / "elsewhere").exists()
    assert _module(tmp_path, patch_sizes=[17, 33], teacher_path="/t_{p}.pt").given_teacher_paths() == [
        "/t_17.pt", "/t_33.pt",
    ]  # fmt: skip
    with pytest.raises(UserError):
        _module(tmp_path, patch_sizes=[17, 33], teacher_path="/one.pt").given_teacher_paths()


def test_parallel_jobs_pretrain_a_shared_teacher_once(tmp_path, monkeypatch):
    """Two jobs (threads here; the lock is per open file, so processes behave the same) needing
    the same teacher: one pretrains it, the other waits for the file and loads it."""
    import threading
    import time

    calls = []
    real = tp.pretrain_teacher

    def slow_pretrain(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other job to reach the lock
        return real(*args, **kwargs)

    monkeypatch.setattr("anomaly_kd.models.uninformed_students.lightning_model.pretrain_teacher", slow_pretrain)
    jobs = [_module(tmp_path) for _ in range(2)]
    errors = []

    def prepare(job):
        try:
            job.prepare_teachers(progress=False)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=prepare, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(calls) == 1
    assert all(bool(job.teacher_ready.all()) for job in jobs)
    assert torch.equal(jobs[0].model.teachers[0].convs[0].weight, jobs[1].model.teachers[0].convs[0].weight)
    assert len(list(tmp_path.glob("us_teacher_p17_*.pt"))) == 1


def test_unwritable_teacher_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="model.teacher_dir"):
        _module(blocker / "teachers").prepare_teachers(progress=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You are trying to")
def test_validation_statistics_come_from_validation_normals(tmp_path):
    torch.manual_seed(0)
    module = _module(tmp_path)
    module.teacher_ready.fill_(True)  # a random teacher will do here
    module.compute_descriptor_stats([{"image": torch.rand(2, 3, 24, 24)}], progress=False)
    assert module.model.has_descriptor_stats() and not module.model.has_score_stats()
    with pytest.raises(UserError, match="validation"):
        module.anomaly_map(torch.rand(1, 3, 24, 24))
    val = torch.rand(3, 3, 24, 24)
    module.on_validation_epoch_start()
    module.validation_step({"image": val[:2]}, 0)
    module.validation_step({"image": val[2:]}, 1)
    module.on_validation_epoch_end()
    errors, variances = module.model.raw_scores(val)
    e, v = errors[0], variances[0]
    expected = torch.tensor([e.mean(), e.std(unbiased=False), v.mean(), v.std(unbiased=False)])
    assert torch.allclose(module.model.score_stats[0], expected, rtol=1e-4)
    maps, scores = module.anomaly_map(val)
    assert maps.shape == (3, 1, 24, 24) and scores.shape == (3,)
    assert abs(maps.mean().item()) < 1e-4  # normalised on exactly these images
    assert torch.isfinite(module.pixel_threshold) and torch.isfinite(module.image_threshold)
    saved = module.state_dict()
    buffers = {"model.score_stats", "model.descriptor_mean", "model.descriptor_std", "teacher_ready"}
    assert buffers <= set(saved)
    for score in ("error", "variance"):
        alone = _module(tmp_path, score=score)
        alone.load_state_dict(saved)
        assert alone.anomaly_map(val)[0].shape == (3, 1, 24, 24)
