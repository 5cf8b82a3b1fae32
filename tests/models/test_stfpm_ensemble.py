"""STFPM ensemble (thesis "Feature Vectors Variance"): defaults, shapes, the e + v map, training."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import create_feature_extractor
from anomaly_kd.models.components.feature_matching import feature_matching_loss
from anomaly_kd.models.stfpm_ensemble import STFPMEnsemble, STFPMEnsembleModel
from anomaly_kd.models.components.student_teacher import StudentTeacherModel
from anomaly_kd.models.stfpm_ensemble.anomaly_map import ensemble_anomaly_map, ensemble_level_map
from anomaly_kd.models.stfpm_ensemble.selection import StudentSelection
from tests.models.model_helpers import assert_config_default, assert_learns_planted_defect, train_steps

# The thesis' hyperparameters (and STFPM's where the thesis follows it), as the config must hold them.
DEFAULTS = {
    "model.backbone": "resnet18",
    "model.layers": None,  # the backbone's levels: ResNet-18 layer1-3 (test_backbones)
    "model.pretrained": True,
    "model.n_students": 3,
    "model.terms": "e+v",
    "model.std_correction": 0,
    "model.lr": 0.4,
    "model.momentum": 0.9,
    "model.weight_decay": 1e-4,
    "data.image_size": 224,
    "data.batch_size": 32,
    "trainer.max_epochs": 100,
    "model.checkpoint_rule": "per_student",
}


@pytest.mark.parametrize("key,value", DEFAULTS.items())
def test_config_defaults(compose_cfg, key, value):
    assert_config_default(compose_cfg(["model=stfpm_ensemble"]), STFPMEnsemble, key, value)


def test_student_seeds_follow_the_run_seed(compose_cfg):
    cfg = compose_cfg(["model=stfpm_ensemble", "seed=42"])
    assert cfg.model.seed == 42
    assert cfg.data.image_size % 16 == 0  # the base's divisibility check at 224


@pytest.mark.parametrize(
    "backbone,layers,channels",
    [("resnet18", ["layer1", "layer2", "layer3"], [64, 128, 256]),
     ("efficientnet_lite0", ["block1", "block2", "block4"], [24, 40, 112])],
)  # fmt: skip
def test_level_shapes_per_backbone(backbone, layers, channels):
    model = STFPMEnsembleModel(backbone, layers, pretrained=False, n_students=2)
    images = torch.rand(2, 3, 64, 64)
    teacher, students = model(images)
    assert len(students) == 2
    for level, (c, stride) in enumerate(zip(channels, [4, 8, 16])):
        assert teacher[level].shape == (2, c, 64 // stride, 64 // stride)
        assert all(s[level].shape == teacher[level].shape for s in students)
    maps, scores = model.anomaly_map(images)
    assert maps.shape == (2, 1, 64, 64) and scores.shape == (2,)


def test_students_are_seeded_distinct_and_leave_the_global_rng_alone():
    a = STFPMEnsembleModel(pretrained=False, n_students=2, seed=7)
    b = STFPMEnsembleModel(pretrained=False, n_students=2, seed=7)
    c = STFPMEnsembleModel(pretrained=False, n_students=2, seed=8)

    def first_conv(model, m):
        return model.students[m].body["stem"][0].weight

    assert torch.equal(first_conv(a, 0), first_conv(b, 0))  # reproducible from the run seed
    assert not torch.equal(first_conv(a, 0), first_conv(a, 1))  # the students differ
    assert not torch.equal(first_conv(a, 0), first_conv(c, 0))  # and depend on the run seed
    torch.manual_seed(7001)  # student m of run seed s is initialised from s * 1000 + m
    reference = create_feature_extractor("resnet18", ["layer1", "layer2", "layer3"], pretrained=False)
    assert torch.equal(first_conv(a, 1), reference.body["stem"][0].weight)
    # Building the students does not consume the global RNG stream.
    torch.manual_seed(123)
    STFPMEnsembleModel(pretrained=False, n_students=3)
    after_three = torch.rand(1)
    torch.manual_seed(123)
    STFPMEnsembleModel(pretrained=False, n_students=1)
    assert torch.equal(torch.rand(1), after_three)


def test_level_map_hand_case():
    # One position, 2 channels: teacher (1, 0); students (1, 0), (0, 1), (0, 1) (already unit norm).
    t = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    s = [torch.tensor(v).view(1, 2, 1, 1) for v in ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0])]
    mean = torch.tensor([1 / 3, 2 / 3])
    e = 0.5 * ((torch.tensor([1.0, 0.0]) - mean) ** 2).sum()  # half squared distance to the mean
    var_pop = ((torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]) - mean) ** 2).mean(0).sum()
    assert ensemble_level_map(t, s, "e").item() == pytest.approx(e.item())
    assert ensemble_level_map(t, s, "v").item() == pytest.approx(var_pop.item())  # = 2 * (2/9)
    assert ensemble_level_map(t, s, "v", std_correction=1).item() == pytest.approx(var_pop.item() * 1.5)
    assert ensemble_level_map(t, s, "e+v").item() == pytest.approx((e + var_pop).item())
    # v is the squared L2 norm of the per-element (population) standard deviation
    std = torch.stack([x.flatten() for x in s]).std(0, correction=0)
    assert ensemble_level_map(t, s, "v").item() == pytest.approx(std.pow(2).sum().item())


def test_level_map_normalises_each_vector():
    torch.manual_seed(0)
    t, s = torch.randn(2, 8, 3, 3), [torch.randn(2, 8, 3, 3) for _ in range(3)]
    scaled = ensemble_level_map(5 * t, [2 * x for x in s])
    assert torch.allclose(scaled, ensemble_level_map(t, s), atol=1e-6)
    assert (ensemble_level_map(t, s) >= 0).all()
    # identical students and teacher: both terms vanish
    assert ensemble_level_map(t, [t, t, t]).abs().max() < 1e-6


def test_levels_are_upsampled_to_the_input_size_then_multiplied():
    # Constant levels: one student, error term only. Level 1: t=(1,0), s=(0,1) -> e = 0.5 * 2 = 1;
    # level 2: s = (1,1)/sqrt(2) -> e = 0.5 * |t - s|^2. The map is their product at 8x8.
    t = [torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2), torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)]
    s = [[torch.tensor([0.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2), torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)]]
    e2 = 0.5 * ((torch.tensor([1.0, 0.0]) - F.normalize(torch.tensor([1.0, 1.0]), dim=0)) ** 2).sum()
    amap = ensemble_anomaly_map(t, s, (8, 8), terms="e")
    assert amap.shape == (1, 1, 8, 8)
    assert torch.allclose(amap, torch.full_like(amap, 1.0 * e2.item()))
    # Each level goes straight to the input size (bilinear, half-pixel), then the product.
    torch.manual_seed(0)
    t = [torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)]
    s = [[torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)] for _ in range(2)]
    levels = [ensemble_level_map(t[k], [x[k] for x in s]) for k in range(2)]
    up = [F.interpolate(level, size=(16, 16), mode="bilinear", align_corners=False) for level in levels]
    assert torch.allclose(ensemble_anomaly_map(t, s, (16, 16)), up[0] * up[1], atol=1e-6)


def test_option_checks():
    with pytest.raises(UserError, match="terms"):
        STFPMEnsembleModel(pretrained=False, n_students=2, terms="x")
    with pytest.raises(UserError, match="n_students"):
        STFPMEnsembleModel(pretrained=False, n_students=1, std_correction=1)
    STFPMEnsembleModel(pretrained=False, n_students=1, terms="e")  # a single student, error only


def test_one_sgd_over_all_students_equals_independent_sgd():
    torch.manual_seed(0)
    module = STFPMEnsemble(pretrained=False, n_students=2, lr=0.4, momentum=0.9, weight_decay=1e-4)
    students = copy.deepcopy(module.model.students)
    images = torch.rand(2, 3, 32, 32)
    train_steps(module, [images] * 3)  # one optimizer, sum of losses
    teacher = module.model.teacher
    for student in students:  # one SGD per student on its own STFPM loss
        optimizer = torch.optim.SGD(student.parameters(), lr=0.4, momentum=0.9, weight_decay=1e-4)
        student.train()
        for _ in range(3):
            loss = feature_matching_loss(teacher(images), student(images))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for ours, alone in zip(module.model.students.parameters(), students.parameters()):
        assert torch.allclose(ours, alone, atol=1e-5)


@pytest.mark.slow
def test_loss_decreases_and_planted_defect_scores_higher(texture):
    torch.manual_seed(0)
    model = STFPMEnsemble(pretrained=False)
    assert model.input_multiple == 16 and model.checkpoint_monitor is None  # per_student rule
    assert_learns_planted_defect(model, texture, n_batches=10, min_ratio=1.5)
    summary = model.model_summary()
    assert summary["n_students"] == 3
    assert summary["students_parameters_total"] == 3 * summary["student_parameters"]


@pytest.mark.slow
def test_end_to_end(run_tiny):
    results = run_tiny("stfpm_ensemble", "trainer.max_epochs=2", logger="csv")
    assert results["model"] == "stfpm_ensemble" and results["status"] == "ok"
    assert 0.0 <= results["metrics"]["image_auroc"] <= 1.0
    assert results["model_summary"]["n_students"] == 3
    assert results["tested_checkpoint"].endswith("best.ckpt")  # written after the per-student selection
    # each student's tested epoch is its own lowest validation error in the log (0-based)
    with open(Path(results["output_dir"]) / "logs" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/error_student0")]
    curves = [{int(r["epoch"]): float(r[f"val/error_student{m}"]) for r in rows} for m in range(results["model_summary"]["n_students"])]
    assert all(sorted(c) == [0, 1] for c in curves)
    assert results["tested_epoch"] == [min(c, key=c.get) for c in curves]


def _constant_students(n):
    return [torch.nn.Linear(1, 1, bias=False) for _ in range(n)]


def test_per_student_rule_keeps_each_students_own_best_epoch():
    # Validation errors per epoch (rows) and student (columns); each student's weight is set to
    # the epoch number, so the restored weights say which epoch each student kept. Strictly lower
    # replaces (STFPM's `if err < min_err`): student 2's tie at epoch 3 keeps epoch 1.
    errors = [[5.0, 4.0, 3.0], [4.0, 4.5, 2.0], [4.5, 3.0, 2.5], [3.5, 3.5, 2.0]]
    expected_epochs = [3, 2, 1]
    students = _constant_students(3)
    selection = StudentSelection(3)
    improved = []
    for epoch, row in enumerate(errors):
        for student in students:
            student.weight.data.fill_(float(epoch))
        improved.append(selection.update(row, epoch, students))
    assert improved == [[True] * 3, [True, False, True], [False, True, False], [True, False, False]]
    assert selection.epochs == expected_epochs and selection.errors == [3.5, 3.0, 2.0]
    selection.restore(students)
    assert [s.weight.item() for s in students] == [float(e) for e in expected_epochs]
    # the state survives a checkpoint round trip through the LightningModule hooks
    module = STFPMEnsemble(pretrained=False, n_students=3)
    module.selection, module.selection_pending = selection, True
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    restored = STFPMEnsemble(pretrained=False, n_students=3)
    restored.on_load_checkpoint(checkpoint)
    assert restored.selection.epochs == expected_epochs and restored.selection_pending
    assert restored.selection.errors == selection.errors
    fresh = _constant_students(3)
    restored.selection.restore(fresh)
    assert [s.weight.item() for s in fresh] == [float(e) for e in expected_epochs]


def test_checkpoint_rules():
    assert STFPMEnsemble(pretrained=False, n_students=1).checkpoint_monitor is None  # per_student: written by the module
    assert STFPMEnsemble(pretrained=False, n_students=1, checkpoint_rule="joint").checkpoint_monitor == "val/map_mean"
    with pytest.raises(UserError, match="checkpoint_rule='best' must be one of per_student, joint"):
        STFPMEnsemble(pretrained=False, n_students=1, checkpoint_rule="best")


def test_student_errors_are_each_students_stfpm_map_mean():
    torch.manual_seed(0)
    model = STFPMEnsembleModel(pretrained=False, n_students=2).eval()
    images = torch.rand(2, 3, 32, 32)
    errors = model.student_errors(images)
    for m, student in enumerate(model.students):
        alone = StudentTeacherModel(model.teacher, student).eval()
        maps, _ = alone.anomaly_map(images)
        assert torch.equal(errors[:, m], maps.flatten(1).mean(dim=1))
