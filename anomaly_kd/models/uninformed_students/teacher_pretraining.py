"""Pretraining of the teacher patch networks T^ (Bergmann et al., CVPR 2020, Sec. 3.1), once per
receptive field, saved to a file that later runs (any category) load.

Each iteration draws ``batch_size`` random p x p patches from the patch source and minimises
lambda_k L_k + lambda_m L_m + lambda_c L_c (see :mod:`.loss`):

- L_k: a fully connected decoder maps the d-dim descriptor to the pretrained network's global
  descriptor of the same patch: ResNet-18 layer4 average-pooled (512-d, the paper), or offline
  EfficientNet-Lite0 block6 average-pooled (320-d). The patch is fed at its own size
  (``kd_input_size`` resizes it first).
- L_m: triplets (anchor p; positive p+ = p translated by up to ``shift`` x p pixels, luminance
  scaled by up to +-``luminance``, Gaussian noise of std ``noise``; negative p- from another image).
  The paper names these three augmentations without magnitudes: the magnitudes are ours.
- L_c: decorrelation of the descriptor dimensions over the minibatch.

Patch source (``data``): ``"skimage"`` (default, offline: the natural photographs and textures
bundled with scikit-image, see :data:`SKIMAGE_IMAGES`; the paper uses ImageNet) or any folder of
images (searched recursively, e.g. an ImageNet train folder). Category-independent, so one file
serves every category.

Files are named by (p, d, KD network, patch source, seed, iterations) plus a hash of every other
setting, so changing any setting pretrains a new teacher instead of reusing a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from anomaly_kd.errors import UserError
from anomaly_kd.models.components.backbones import create_feature_extractor
from anomaly_kd.models.uninformed_students.loss import (
    compactness_loss,
    distillation_loss,
    triplet_loss,
)
from anomaly_kd.models.uninformed_students.patch_net import PatchNet

log = logging.getLogger(__name__)

FILE_FORMAT = "uninformed_students_teacher/1"
#: pretrained network -> layer whose average-pooled output is the distillation target
KD_LAYERS = {
    "resnet18": "layer4",  # paper: ResNet-18 pooled layer4 (512-d)
    "wide_resnet50_2": "layer4",
    "efficientnet_lite0": "block6",  # ours (offline weights): last block stage, 320-d
    "efficientnet_lite1": "block6",  # 320-d
    "efficientnet_lite2": "block6",  # 352-d
}
#: scikit-image's bundled photographs and textures used by ``data="skimage"`` (all offline)
SKIMAGE_IMAGES = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)  # fmt: skip


@dataclass(frozen=True)
class PretrainConfig:
    descriptor_dim: int = 128
    backbone: str = "efficientnet_lite0"  # distillation target network
    pretrained: bool = True  # its ImageNet weights (False: random, for tests only)
    weights_path: str | None = None
    data: str = "skimage"
    iterations: int = 50_000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lambda_k: float = 1.0
    lambda_m: float = 0.0
    lambda_c: float = 1.0
    margin: float = 1.0
    compactness: str = "squared"
    compactness_over: str = "dimensions"
    shift: float = 0.1
    luminance: float = 0.2
    noise: float = 0.02
    kd_input_size: int | None = None
    seed: int = 0


# ------------------------------------------------------------------------------------ sources


def source_files(data: str) -> list[Path]:
    """Image files of the patch source (sorted)."""
    from anomaly_kd.data.images import is_image_file

    if data == "skimage":
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        files = [folder / name for name in SKIMAGE_IMAGES if (folder / name).is_file()]
    else:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise UserError(f"model.teacher_data={data} is neither 'skimage' nor a folder of images.")
        files = sorted(p for p in folder.rglob("*") if is_image_file(p))
    if not files:
        raise UserError(f"No images found for model.teacher_data={data}.")
    return files


class PatchSource:
    """Random patches (and triplets) from a list of image files; small sources stay in memory."""

    def __init__(self, files: list[Path], cache_limit: int = 512):
        self.files = files
        self._cache: dict[int, torch.Tensor] | None = {} if len(files) <= cache_limit else None

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int, min_size: int) -> torch.Tensor:
        """``[3, H, W]`` in [0, 1], upscaled if its shorter side is below ``min_size``."""
        from anomaly_kd.data.images import load_rgb

        image = self._cache.get(index) if self._cache is not None else None
        if image is None:
            pixels = load_rgb(self.files[index])
            image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
            if self._cache is not None:
                self._cache[index] = image
        short = min(image.shape[-2:])
        if short < min_size:
            size = [int(np.ceil(s * min_size / short)) for s in image.shape[-2:]]
            image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        return image

    def batch(
        self, rng: np.random.Generator, n: int, p: int, cfg: PretrainConfig, triplets: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Anchors ``[n, 3, p, p]`` in [0, 1]; positives and negatives when ``triplets``."""
        if triplets and len(self) < 2:
            raise UserError("The triplet loss needs at least 2 images in model.teacher_data.")
        shift = max(1, round(cfg.shift * p)) if triplets else 0
        anchors, positives, negatives = [], [], []
        for _ in range(n):
            i = int(rng.integers(len(self)))
            image = self.image(i, p + 2 * shift)
            h, w = image.shape[-2:]
            y = int(rng.integers(shift, h - p - shift + 1))
            x = int(rng.integers(shift, w - p - shift + 1))
            anchors.append(image[:, y : y + p, x : x + p])
            if not triplets:
                continue
            dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
            positive = image[:, y + dy : y + dy + p, x + dx : x + dx + p]
            gain = 1.0 + float(rng.uniform(-cfg.luminance, cfg.luminance))
            noise = torch.from_numpy(rng.normal(0.0, cfg.noise, size=positive.shape)).float()
            positives.append((positive * gain + noise).clamp(0.0, 1.0))
            j = int(rng.integers(len(self) - 1))
            other = self.image(j + (j >= i), p)
            oy = int(rng.integers(other.shape[-2] - p + 1))
            ox = int(rng.integers(other.shape[-1] - p + 1))
            negatives.append(other[:, oy : oy + p, ox : ox + p])
        if not triplets:
            return torch.stack(anchors), None, None
        return torch.stack(anchors), torch.stack(positives), torch.stack(negatives)


# ------------------------------------------------------------------------------------ KD target


class DistillationTarget(nn.Module):
    """Frozen pretrained network: patches in [0, 1] -> global average-pooled descriptor."""

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        if cfg.backbone not in KD_LAYERS:
            raise UserError(
                f"model.backbone={cfg.backbone} is not a distillation target of Uninformed Students: choose one of {sorted(KD_LAYERS)}."
            )
        self.net = create_feature_extractor(
            cfg.backbone, [KD_LAYERS[cfg.backbone]], cfg.pretrained, cfg.weights_path, frozen=True
        )
        self.dim = self.net.channels[0]
        self.input_size = cfg.kd_input_size

    @torch.no_grad()
    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if self.input_size:
            size = (self.input_size, self.input_size)
            patches = F.interpolate(patches, size=size, mode="bilinear", align_corners=False)
        return self.net(patches)[0].mean(dim=(2, 3))


# ------------------------------------------------------------------------------------ training


def pretrain_teacher(
    patch_size: int, cfg: PretrainConfig, device: torch.device | str = "cpu", progress: bool = True
) -> tuple[PatchNet, dict[str, float]]:
    """Train T^ for ``cfg.iterations`` steps; returns it (eval mode, frozen) and the mean losses
    of the last 10 % of the steps."""
    if cfg.iterations < 1:
        raise UserError("model.teacher_iterations must be >= 1 to pretrain a teacher.")
    source = PatchSource(source_files(cfg.data))
    rng = np.random.default_rng([cfg.seed, patch_size])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = PatchNet(patch_size, cfg.descriptor_dim).to(device)
        target = DistillationTarget(cfg).to(device) if cfg.lambda_k > 0 else None
        decoder = nn.Linear(cfg.descriptor_dim, target.dim).to(device) if target else None
    params = list(net.parameters()) + (list(decoder.parameters()) if decoder else [])
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    triplets = cfg.lambda_m > 0
    history: dict[str, list[float]] = {"loss": [], "kd": [], "triplet": [], "compactness": []}
    net.train()
    steps = tqdm(range(cfg.iterations), desc=f"pretraining teacher p={patch_size}", disable=not progress)
    for _ in steps:
        anchor, positive, negative = source.batch(rng, cfg.batch_size, patch_size, cfg, triplets)
        anchor = anchor.to(device)
        desc = net(net.normalize(anchor))
        terms: dict[str, torch.Tensor] = {}
        if target is not None:
            terms["kd"] = cfg.lambda_k * distillation_loss(decoder(desc), target(anchor))
        if triplets:
            d_pos = net(net.normalize(positive.to(device)))
            d_neg = net(net.normalize(negative.to(device)))
            terms["triplet"] = cfg.lambda_m * triplet_loss(desc, d_pos, d_neg, cfg.margin)
        if cfg.lambda_c > 0:
            terms["compactness"] = cfg.lambda_c * compactness_loss(desc, cfg.compactness, cfg.compactness_over)
        if not terms:
            raise UserError("All teacher loss weights are 0: set model.lambda_k/lambda_m/lambda_c.")
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["loss"].append(float(loss.detach()))
        for key, value in terms.items():
            history[key].append(float(value.detach()))
        steps.set_postfix(loss=f"{history['loss'][-1]:.4g}", refresh=False)
    net.eval().requires_grad_(False)
    tail = max(1, cfg.iterations // 10)
    return net, {k: float(np.mean(v[-tail:])) for k, v in history.items() if v}


# ------------------------------------------------------------------------------------ files


def teacher_file(teacher_dir: str | Path, patch_size: int, cfg: PretrainConfig) -> Path:
    """Cache file of a teacher: readable key + hash of the full configuration."""
    settings = asdict(cfg)
    if settings["compactness_over"] == "dimensions":  # the default: names of earlier teacher files unchanged
        del settings["compactness_over"]
    if cfg.data != "skimage":
        settings["data"] = str(Path(cfg.data).expanduser().resolve())
    blob = json.dumps({"format": FILE_FORMAT, "p": patch_size, **settings}, sort_keys=True)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
    source = "skimage" if cfg.data == "skimage" else _slug(Path(cfg.data).name or "folder")
    kd = "none" if cfg.lambda_k <= 0 else cfg.backbone + ("" if cfg.pretrained else "-random")
    name = (
        f"us_teacher_p{patch_size}_d{cfg.descriptor_dim}_{kd}_{source}"
        f"_seed{cfg.seed}_it{cfg.iterations}_{digest}.pt"
    )
    return Path(teacher_dir).expanduser() / name


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40]


@contextlib.contextmanager
def teacher_lock(path: Path):
    """Exclusive lock on ``<teacher file>.lock`` while one process pretrains that teacher: the jobs
    of a parallel sweep (joblib, SLURM on a shared disk) that need the same teacher wait for it
    and then load it instead of pretraining it again. No-op where ``fcntl`` is missing (Windows)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")
    except OSError as error:
        raise UserError(
            f"cannot write the teacher cache folder {path.parent} ({error.strerror or error}); set "
            "model.teacher_dir to a writable folder, or model.teacher_path to existing teacher files."
        ) from error
    with handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_teacher(path: Path, net: PatchNet, cfg: PretrainConfig, losses: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FILE_FORMAT,
        "patch_size": net.patch_size,
        "descriptor_dim": net.descriptor_dim,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "config": asdict(cfg),
        "final_losses": losses,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_teacher_state(path: str | Path, patch_size: int, descriptor_dim: int) -> dict[str, torch.Tensor]:
    """State dict of a saved teacher, after checking it is a teacher of this p and d."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"Teacher file {file} not found: fix model.teacher_path or set it to null.")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"Could not read teacher file {file}: {exc}.") from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise UserError(f"{file} is not an Uninformed Students teacher file ({FILE_FORMAT}).")
    found = (payload["patch_size"], payload["descriptor_dim"])
    if found != (patch_size, descriptor_dim):
        raise UserError(
            f"Teacher file {file} is for p={found[0]}, d={found[1]}, not p={patch_size}, "
            f"d={descriptor_dim}: check model.teacher_path and model.patch_sizes."
        )
    return payload["state_dict"]
