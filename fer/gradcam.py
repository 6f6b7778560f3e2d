"""Grad-CAM maps (pytorch-grad-cam) of the emotion classifiers, and a check that they point at
what drives the prediction: masking a face's hottest region must cost the class more probability
than masking a region of the same shape elsewhere.

The target layer is the last convolution working at CAM_SIZE x CAM_SIZE pixels (for 48 px faces),
in every network of an ensemble; `python experiments/gradcam_layers.py` measured the choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from fer.common import IMAGE_SIZE, preprocess
from fer.models.cnn import centre_offset

#: Side of the feature map Grad-CAM reads, chosen by experiments/gradcam_layers.py (docs/evaluation.md).
CAM_SIZE = 6
#: Faces mapped at once: Grad-CAM keeps every layer's activations and gradients of its batch
#: (about 12 MB a face with the shipped ensemble), so memory stays that of one batch.
CAM_BATCH = 64


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (BatchNorm reading its statistics, not moving them; no dropout),
    each of its modules given back in the mode it was in."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for one without any)."""
    return next(model.parameters(), torch.empty(0)).device


def conv_sizes(model: nn.Module) -> dict[nn.Conv2d, int]:
    """Every convolution of the model and the side of its output map on one 48x48 face."""
    sizes: dict[nn.Conv2d, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, _, out: sizes.__setitem__(mod, out.shape[-1]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad(), evaluating(model):
            model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, device=device_of(model)))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def networks(model: nn.Module) -> list[nn.Module]:
    """The networks of a model: its members' if it is an ensemble (also of ensembles, as
    fer.export --ckpt A B nests them), else itself."""
    if not hasattr(model, "members"):
        return [model]
    return [net for member in model.members for net in networks(member)]


def target_layers(model: nn.Module, size: int = CAM_SIZE) -> list[nn.Conv2d]:
    """The last convolution at `size` pixels (or the nearest larger size) of each network; for a
    network that looks at a centre crop, the map whose cells are as wide (5 for 40 of 48 pixels)."""
    layers = []
    for net in networks(model):
        sizes = conv_sizes(net)
        crop = getattr(net, "crop", 0)
        side = round(size * crop / IMAGE_SIZE) if 0 < crop < IMAGE_SIZE else size
        fitting = [m for m, s in sizes.items() if s >= side] or list(sizes)
        smallest = min(sizes[m] for m in fitting)
        layers.append([m for m in fitting if sizes[m] == smallest][-1])
    return layers


def cam_maps(
    model: nn.Module,
    faces: np.ndarray,
    labels: Sequence[int],
    layers: list[nn.Module],
    mirror: bool = False,
) -> np.ndarray:
    """(N, 48, 48) Grad-CAM maps in [0, 1] for the given class of each face. A model that
    answers with the mean over a face and its mirror image (`mirror`, a Classifier's, or an
    ensemble's own `flip`) gets the mean of the face's map and the mirrored map of its mirror
    image, scaled to [0, 1] again. The faces go through the model (float32, in eval mode, with
    gradients on, given back in its mode) CAM_BATCH at a time."""
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if len(faces) == 0:  # pytorch-grad-cam fails on an empty batch
        return np.zeros((0, *np.asarray(faces).shape[-2:]), np.float32)
    model = model.float()
    # an ensemble's mirrored copy (at any level) would double the batch the hooks see: off here,
    # and the mirrored maps taken below instead
    flips = {m: m.flip for m in model.modules() if isinstance(getattr(m, "flip", None), bool)}
    flip = any(flips.values())
    for m in flips:
        m.flip = False
    # each target layer -> the side of the centre crop its network looks at (0: the whole face)
    crops = {
        m: getattr(net, "crop", 0) for net in networks(model) for m in net.modules() if m in layers
    }
    targets = [ClassifierOutputTarget(int(c)) for c in labels]
    parts = []
    try:
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            evaluating(model),
            PlacedGradCAM(model=model, target_layers=layers, crops=crops) as cam,
        ):
            x = preprocess(faces).contiguous()  # (made here: a tensor of inference mode
            # cannot be saved for the backward pass)
            for at in range(0, len(x), CAM_BATCH):
                batch, aims = x[at : at + CAM_BATCH], targets[at : at + CAM_BATCH]
                maps = cam(input_tensor=batch, targets=aims)
                if mirror or flip:
                    seen = cam(input_tensor=batch.flip(-1).contiguous(), targets=aims)[:, :, ::-1]
                    maps = scale_cam_image((maps + seen) / 2)
                parts.append(maps.astype(np.float32))
    finally:
        model.zero_grad(set_to_none=True)  # the model may be a loaded classifier's, kept
        for m, was in flips.items():
            m.flip = was
    return np.concatenate(parts)


def hottest(maps: np.ndarray, share: float) -> np.ndarray:
    """Masks (N, H, W) of the `share` of each map's pixels that are hottest: that many pixels
    however many cells tie (a map 0 over most of the face masks its warm cells and the first
    of its flat ones, not every pixel, as a quantile threshold of 0 would)."""
    flat = maps.reshape(len(maps), -1)
    count = round(share * flat.shape[1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :count]
    masks = np.zeros(flat.shape, bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(maps.shape)


class PlacedGradCAM(GradCAM):
    """Grad-CAM whose maps from a network that looks at a centre crop of the face (FerCNN's
    `crop`) cover that crop's pixels, and nothing outside it, instead of the whole face."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], crops: dict):
        super().__init__(model=model, target_layers=target_layers)
        self.crops = crops

    def get_cam_image(self, input_tensor, target_layer, *args, **kwargs):
        cam = super().get_cam_image(input_tensor, target_layer, *args, **kwargs)
        crop, side = self.crops.get(target_layer, 0), input_tensor.shape[-1]
        if not crop or crop >= side:
            return cam
        placed = np.zeros((len(cam), side, side), np.float32)
        at = centre_offset(side, crop)
        for i, m in enumerate(np.maximum(cam, 0).astype(np.float32)):
            placed[i, at : at + crop, at : at + crop] = cv2.resize(m, (crop, crop))
        return placed


def masking_drop(
    model: nn.Module,
    faces: np.ndarray,
    labels: np.ndarray,
    layers: list[nn.Module],
    share: float = 0.15,
    seed: int = 0,
    mirror: bool = False,
) -> tuple[float, float]:
    """Mean drop of the labelled class's probability when the hottest `share` of each face's map
    is set to the mean face value, and when the same mask is moved to a random place instead.
    With `mirror` (a Classifier's `mirror`), the maps are of both views and the probability is
    the mean over the masked face and its mirror image, as that model answers."""
    maps = cam_maps(model, faces, labels, layers, mirror)
    hot = hottest(maps, share)
    rng = np.random.default_rng(seed)
    moved = np.stack(
        [np.roll(m, tuple(rng.integers(8, IMAGE_SIZE - 8, size=2)), axis=(0, 1)) for m in hot]
    )
    x = preprocess(faces).contiguous().to(device_of(model))
    idx = torch.arange(len(faces))
    y = torch.as_tensor(labels)

    def prob(inputs: torch.Tensor) -> torch.Tensor:
        views = (inputs, inputs.flip(-1)) if mirror else (inputs,)
        with torch.no_grad(), evaluating(model):
            chances = [
                torch.cat(
                    [model(v[at : at + CAM_BATCH]).float() for at in range(0, len(v), CAM_BATCH)]
                )
                .softmax(1)[idx, y]
                .cpu()
                for v in views
            ]
        return torch.stack(chances).mean(0)

    base = prob(x)
    drops = []
    for mask in (hot, moved):
        masked = x.clone()
        # 0 is the mean face after standardising
        masked[torch.from_numpy(mask)[:, None].to(x.device)] = 0.0
        drops.append(float((base - prob(masked)).mean()))
    return drops[0], drops[1]
