"""VGG16 transfer learning: ImageNet features on upscaled gray faces, with a new head."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG16_Weights, vgg16

from fer.common import PIXEL_MEAN, PIXEL_STD, FerError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Transfer(nn.Module):
    """torchvision's VGG16 convolutional backbone (`backbone`) and a small new classifier (`head`).

    Takes the project's standardised gray faces (B, 1, 48, 48), upsamples them to `image_size`,
    replicates gray into three channels and re-standardises them the way ImageNet models expect.
    """

    def __init__(
        self, num_classes: int = 7, image_size: int = 96, dropout: float = 0.5, hidden: int = 256
    ):
        super().__init__()
        self.image_size = image_size
        self.backbone = vgg16(weights=None).features
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(512, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        mean, std = (
            torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
        )
        # x_imagenet = (x * PIXEL_STD + PIXEL_MEAN - mean) / std, folded into one scale and shift.
        self.register_buffer("scale", PIXEL_STD / std, persistent=False)
        self.register_buffer("shift", (PIXEL_MEAN - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        x = x * self.scale + self.shift  # (B, 1, H, W) broadcasts to (B, 3, H, W)
        return self.head(self.backbone(x))


def weights_file(weights: str | Path) -> Path:
    """The path of --weights, refused where it names no file: checked before any data is fetched
    or decoded."""
    path = Path(weights)
    if not path.is_file():
        raise FerError(
            f"weights file {path} does not exist; pass a VGG16 state dict or use --no-pretrained"
        )
    return path


def backbone_state(weights: str | Path | None = None) -> tuple[dict, str]:
    """ImageNet VGG16 features (a state dict for VGG16Transfer.backbone) from a file or
    torchvision's cache/download, and where they came from. Read before the data is fetched and
    decoded, so a missing file or network says so at once.

    `weights` is a torchvision VGG16 state dict (.pth via torch.load(weights_only=True), or
    .safetensors), either the whole network or its `features` only.
    """
    if weights is not None:
        path = weights_file(weights)
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise FerError(
                f"{path} is not a readable state dict ({type(e).__name__}); pass a VGG16 state dict"
            ) from e
        source = str(path)
    else:
        try:
            state = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
        except Exception as e:  # URLError, socket and SSL errors, a truncated hub cache file ...
            raise FerError(
                f"could not load the ImageNet VGG16 weights ({type(e).__name__}: {str(e).splitlines()[0][:80]}); "
                "run once with internet access so torchvision caches them in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}, "
                "or pass --weights FILE (a VGG16 state dict), or train from scratch with --no-pretrained"
            ) from e
        source = "torchvision VGG16_Weights.IMAGENET1K_V1"
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = {
        k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
    } or state
    return features, source


def load_backbone_weights(
    model: VGG16Transfer, weights: str | Path | None = None, read: tuple[dict, str] | None = None
) -> str:
    """Load ImageNet features into model.backbone: those `read` by backbone_state, or read now
    from `weights` (see backbone_state). Returns where they came from."""
    features, source = read or backbone_state(weights)
    try:
        model.backbone.load_state_dict(features, strict=True)
    except RuntimeError as e:
        raise FerError(
            f"{source} does not hold VGG16 features ({str(e).splitlines()[0][:100]})"
        ) from e
    return source
