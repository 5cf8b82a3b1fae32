"""benchmark=methods_all: the five methods in one sweep, each taking a teacher from model.backbone."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from tests.helpers import REPO, compose_config

METHODS = ["stfpm", "stfpm_ensemble", "simple_student", "reverse_distillation", "uninformed_students"]


def test_methods_all_sweeps_the_five_methods():
    bench = OmegaConf.load(REPO / "conf" / "benchmark" / "methods_all.yaml")
    assert [m.strip() for m in str(bench.hydra.sweeper.params.model).split(",")] == METHODS
    assert sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")) == sorted(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_model_backbone_alone_sets_every_methods_teacher(method, tmp_path):
    cfg = compose_config([f"model={method}", "model.backbone=efficientnet_lite2", "model.pretrained=false",
                          f"paths.data_dir={tmp_path}"], tmp_path / "o")  # fmt: skip
    with open_dict(cfg):
        name = cfg.model.pop("name")
        cfg.model.pop("compile", None)
        cfg.model.pop("channels_last", None)
    assert name == method
    module = instantiate(cfg.model)
    assert module.hparams.backbone == "efficientnet_lite2"
    if method == "uninformed_students":  # the distillation target: Lite2's pooled block6
        assert module.pretrain_config().backbone == "efficientnet_lite2"
    else:  # the backbone's own stride 4/8/16 levels
        assert list(module.hparams.layers) == ["block1", "block2", "block4"]


def test_uninformed_students_checkpoints_with_the_former_kd_backbone_name_still_load():
    from anomaly_kd.models.uninformed_students import UninformedStudents

    module = UninformedStudents(kd_backbone="resnet18", pretrained=False, patch_sizes=[17], n_students=2)
    assert module.hparams.backbone == "resnet18" and module.pretrain_config().backbone == "resnet18"
