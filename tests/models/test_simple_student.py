"""Simple Student: defaults, the slim student's architecture and size, training, end to end."""

from __future__ import annotations


import pytest
import torch

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import create_feature_extractor
from anomaly_kd.models.simple_student import SimpleStudent, SimpleStudentModel, slim_resnet18
from anomaly_kd.models.simple_student.torch_model import slim_efficientnet_lite
from tests.models.model_helpers import assert_config_default, assert_learns_planted_defect

# Everything is STFPM's (gdwang08/STFPM main.py) except the width factor (thesis: 0.5).
DEFAULTS = {
    "model.backbone": "resnet18",
    "model.layers": None,  # the backbone's levels: layer1-3 for resnet18 (test below)
    "model.pretrained": True,
    "model.width_factor": 0.5,
    "model.lr": 0.4,
    "model.momentum": 0.9,
    "model.weight_decay": 1e-4,
    "data.image_size": 224,
    "data.batch_size": 32,
    "data.val_split": 0.2,
    "trainer.max_epochs": 100,
}


@pytest.mark.parametrize("key,value", DEFAULTS.items())
def test_config_defaults(compose_cfg, key, value):
    assert_config_default(compose_cfg(["model=simple_student"]), SimpleStudent, key, value)


def _expected_parameters(width_factor: float) -> int:
    """ResNet-18 up to layer3 with slim BasicBlocks, counted by hand (convs have no bias; BN has
    weight and bias): stem conv 7x7 3->64 + BN, then per block conv3x3 in->inner, BN(inner),
    conv3x3 inner->planes, BN(planes) and, where the shape changes, conv1x1 in->planes + BN."""
    total = 7 * 7 * 3 * 64 + 2 * 64
    in_ch = 64
    for planes in (64, 128, 256):
        for b in range(2):
            inner = round(planes * width_factor)
            total += 9 * in_ch * inner + 2 * inner + 9 * inner * planes + 2 * planes
            if b == 0 and in_ch != planes:
                total += in_ch * planes + 2 * planes
            in_ch = planes
    return total


def test_slim_blocks_keep_the_teachers_output_widths():
    model = SimpleStudentModel(pretrained=False)
    body = model.student.body
    for name, planes in (("layer1", 64), ("layer2", 128), ("layer3", 256)):
        for block in body[name]:
            assert block.conv1.out_channels == planes // 2  # the slimmed first conv
            assert block.conv2.out_channels == planes  # the block output keeps the width
    images = torch.rand(2, 3, 64, 64)
    teacher, student = model(images)
    for t, s, (c, stride) in zip(teacher, student, [(64, 4), (128, 8), (256, 16)]):
        assert t.shape == s.shape == (2, c, 64 // stride, 64 // stride)
    maps, scores = model.anomaly_map(images)
    assert maps.shape == (2, 1, 64, 64) and scores.shape == (2,)


def test_parameter_counts_in_the_summary():
    module = SimpleStudent(pretrained=False)
    summary = module.model_summary()
    assert summary["student_parameters"] == _expected_parameters(0.5) == 1_417_920
    assert summary["stfpm_student_parameters"] == _expected_parameters(1.0) == 2_782_784
    assert summary["stfpm_student_parameters"] == summary["teacher_parameters"]
    assert summary["student_to_stfpm_ratio"] == pytest.approx(1_417_920 / 2_782_784)
    full = SimpleStudent(pretrained=False, width_factor=1.0).model_summary()  # = STFPM's student
    assert full["student_parameters"] == full["stfpm_student_parameters"]


def test_the_backbone_alone_brings_its_levels():
    assert SimpleStudent(pretrained=False).hparams.layers == ["layer1", "layer2", "layer3"]
    module = SimpleStudent(pretrained=False, backbone="efficientnet_lite1")
    assert module.hparams.layers == module.model.student.layers == ["block1", "block2", "block4"]


@pytest.mark.parametrize("variant,channels", [(0, (24, 40, 112)), (2, (24, 48, 120))])
def test_slim_efficientnet_lite_student(variant, channels):
    """Lite teachers (ours): every inverted residual block expands to half its channels, block
    outputs keep the teacher's widths, so STFPM's matching applies; at width 1 the student has
    exactly the teacher's tensor shapes."""
    backbone = f"efficientnet_lite{variant}"
    model = SimpleStudentModel(backbone=backbone, pretrained=False)
    full = create_feature_extractor(backbone, model.teacher.layers, pretrained=False)
    for slim_block, full_block in zip(model.student.body.values(), full.body.values()):
        for slim, ref in zip(slim_block.modules(), full_block.modules()):
            if hasattr(ref, "conv_pwl"):
                assert slim.conv_pw.out_channels == round(ref.conv_pw.out_channels / 2)
                assert slim.conv_dw.groups == slim.conv_dw.in_channels == slim.conv_pw.out_channels
                assert slim.conv_pwl.out_channels == ref.conv_pwl.out_channels
                assert slim.bn1.num_features == slim.bn2.num_features == slim.conv_pw.out_channels
    images = torch.rand(2, 3, 64, 64)
    teacher, student = model(images)
    for t, s, c, stride in zip(teacher, student, channels, (4, 8, 16)):
        assert t.shape == s.shape == (2, c, 64 // stride, 64 // stride)
    summary = SimpleStudent(backbone=backbone, pretrained=False).model_summary()
    assert summary["student_parameters"] < summary["stfpm_student_parameters"] == summary["teacher_parameters"]
    same = {k: v.shape for k, v in slim_efficientnet_lite(variant, 1.0).state_dict().items()}
    ref = {k: v.shape for k, v in create_feature_extractor(backbone, ["block6"], pretrained=False).body.state_dict().items()}
    assert list(same.values())[: len(ref)] == list(ref.values())  # width 1 = the teacher's own shapes


def test_option_checks():
    with pytest.raises(UserError, match="no slim student"):
        SimpleStudentModel(backbone="wide_resnet50_2", pretrained=False)
    with pytest.raises(UserError, match="width_factor"):
        slim_resnet18(0.0)


@pytest.mark.slow
def test_loss_decreases_and_planted_defect_scores_higher(texture):
    torch.manual_seed(0)
    model = SimpleStudent(pretrained=False)
    assert model.input_multiple == 16 and model.checkpoint_monitor == "val/map_mean"
    assert [g["lr"] for g in model.configure_optimizers().param_groups] == [0.4]
    assert_learns_planted_defect(model, texture, n_batches=10, min_ratio=1.5)
    assert not any(p.requires_grad for p in model.model.teacher.parameters())


@pytest.mark.slow
def test_end_to_end(run_tiny):
    results = run_tiny("simple_student")
    assert results["model"] == "simple_student" and results["status"] == "ok"
    assert 0.0 <= results["metrics"]["image_auroc"] <= 1.0
    assert results["model_summary"]["student_parameters"] == 1_417_920
    assert results["tested_checkpoint"].endswith("best.ckpt")
