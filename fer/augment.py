"""Batched image augmentation: whole batches at once, as tensor operations on the batch's device.

One random affine warp per face (mirror, rotation, scale, shift) goes through a single
`grid_sample` call for the whole batch; photometric jitter and random erasing are masks; the
`photo` preset adds what cameras do to faces (under- and over-exposure that clips, blur, sensor
noise), so that faces cropped from photos read as well as FER-2013's own, and `camera` adds what a
photo does to a small face (few pixels, JPEG). There is no PIL anywhere in the training loop, and
per-image Python only in `camera`, which stores faces as JPEG one by one (OpenCV's encoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fer.choices import PRESETS

#: The `exposure`, `blur` and `noise` options give the share of faces so degraded; how much: a gain
#: (log-uniform) and an offset that may push pixels past black or white (clipped, as a sensor
#: clips), a Gaussian blur of sigma in px at 48x48, and Gaussian noise of sigma in 0..1 units.
EXPOSURE_GAIN, EXPOSURE_OFFSET = (0.35, 1.6), (-0.1, 0.2)
BLUR_SIGMA, NOISE_SIGMA = (0.3, 1.5), (0.01, 0.05)
#: `camera`: the share of faces seen as a photo holds a small face: at a side of CAMERA_SIDE px
#: (uniform, whole px), stored as JPEG of a quality in JPEG_QUALITY (uniform, whole), brought back.
CAMERA_SIDE, JPEG_QUALITY = (20, 48), (30, 90)


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def affine_warp(
    x: torch.Tensor,
    flip: float = 0.0,
    rotate: float = 0.0,
    scale: float = 0.0,
    translate: float = 0.0,
) -> torch.Tensor:
    """Random mirror + rotation + zoom + shift of every face in x (B, C, H, W), in one grid_sample."""
    b, dev = x.shape[0], x.device
    mirror = torch.where(torch.rand(b, device=dev) < flip, -1.0, 1.0)
    if not (rotate or scale or translate):
        return torch.where(mirror.view(b, 1, 1, 1) < 0, x.flip(-1), x)
    angle = _uniform(b, -rotate, rotate, dev) * (math.pi / 180)
    zoom = _uniform(b, 1 - scale, 1 + scale, dev)
    # affine_grid maps output to input coordinates, so this is the inverse of the face's motion.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, _uniform(b, -2 * translate, 2 * translate, dev)], 1),
            torch.stack([sin * mirror, cos, _uniform(b, -2 * translate, 2 * translate, dev)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter(x: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0) -> torch.Tensor:
    """Random brightness shift and contrast stretch per face."""
    b, dev = x.shape[0], x.device
    shape = (b,) + (1,) * (x.ndim - 1)
    if contrast:
        mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        x = (x - mean) * _uniform(b, 1 - contrast, 1 + contrast, dev).view(shape) + mean
    if brightness:
        x = x + _uniform(b, -brightness, brightness, dev).view(shape)
    return x


def exposure(x: torch.Tensor, p: float) -> torch.Tensor:
    """A share p of the faces exposed wrongly: x * gain + offset, clipped to 0..1."""
    b, dev = x.shape[0], x.device
    shape = (b,) + (1,) * (x.ndim - 1)
    lo, hi = (math.log(g) for g in EXPOSURE_GAIN)
    gain = torch.exp(_uniform(b, lo, hi, dev))
    offset = _uniform(b, *EXPOSURE_OFFSET, dev)
    hit = torch.rand(b, device=dev) < p
    gain, offset = torch.where(hit, gain, 1.0), torch.where(hit, offset, 0.0)
    gain, offset = gain.to(x.dtype).view(shape), offset.to(x.dtype).view(shape)
    return (x * gain + offset).clamp(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, p: float) -> torch.Tensor:
    """A share p of the faces blurred, each with its own sigma (BLUR_SIGMA px), in one grouped
    convolution a direction for the whole batch."""
    b, c, h, w = x.shape
    dev = x.device
    # 7 taps: cut at 2 sigma, a kernel of sigma 1.5 spreads a dot by 1.41 px (as the shipped
    # members were fine-tuned with it)
    radius = math.ceil(2 * BLUR_SIGMA[1])
    sigma = _uniform(b, *BLUR_SIGMA, dev).to(x.dtype)
    taps = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    identity = (taps == 0).to(x.dtype).expand(b, -1)
    kernel = torch.where((torch.rand(b, device=dev) < p).view(b, 1), kernel, identity)
    kernel = kernel.repeat_interleave(c, 0)  # (B*C, K): one filter a channel of each face
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(
        F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, -1), groups=b * c
    )
    y = F.conv2d(
        F.pad(y, (0, 0, radius, radius), mode="reflect"), kernel.view(b * c, 1, -1, 1), groups=b * c
    )
    return y.reshape(b, c, h, w)


def gaussian_noise(x: torch.Tensor, p: float) -> torch.Tensor:
    """A share p of the faces with Gaussian pixel noise (NOISE_SIGMA, in 0..1 units)."""
    b, dev = x.shape[0], x.device
    sigma = _uniform(b, *NOISE_SIGMA, dev) * (torch.rand(b, device=dev) < p)
    return x + torch.randn_like(x) * sigma.view((b,) + (1,) * (x.ndim - 1)).to(x.dtype)


def camera(x: torch.Tensor, p: float) -> torch.Tensor:
    """A share p of the faces as a photo holds a small face: each brought down to a random side of
    CAMERA_SIDE px (area average; at the batch's own size, left), stored as a JPEG of a random
    quality (JPEG_QUALITY; OpenCV's encoder) and decoded, then brought back to the batch's size
    (bilinear). The picked faces go to the CPU and back once a batch."""
    import cv2

    b, c, h, w = x.shape
    picked = (torch.rand(b, device=x.device) < p).nonzero().flatten()
    if not len(picked):
        return x
    n = len(picked)
    sides = torch.randint(CAMERA_SIDE[0], CAMERA_SIDE[1] + 1, (n,)).tolist()
    qualities = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (n,)).tolist()
    faces = x[picked].float().cpu()
    seen = torch.empty_like(faces)
    for j, (face, side, quality) in enumerate(zip(faces, sides, qualities)):
        if side < min(h, w):
            face = F.interpolate(face[None], size=(side, side), mode="area")[0]
        pixels = face.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        order = slice(None, None, -1 if c == 3 else 1)  # OpenCV's colour order is BGR
        _, jpeg = cv2.imencode(".jpg", pixels[..., order], [cv2.IMWRITE_JPEG_QUALITY, quality])
        back = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED).reshape(pixels.shape)[..., order]
        face = torch.from_numpy(back.copy()).permute(2, 0, 1).float().div(255)[None]
        if face.shape[-2:] != (h, w):
            face = F.interpolate(face, size=(h, w), mode="bilinear", align_corners=False)
        seen[j] = face[0]
    out = x.clone()
    out[picked] = seen.to(x.device, x.dtype)
    return out


def random_erase(x: torch.Tensor, p: float, area=(0.02, 0.2), ratio=(0.3, 3.3)) -> torch.Tensor:
    """Blank one random rectangle (filled with noise) in a fraction p of the faces."""
    b, _, h, w = x.shape
    dev = x.device
    a = _uniform(b, *area, dev) * h * w
    r = torch.exp(_uniform(b, math.log(ratio[0]), math.log(ratio[1]), dev))
    eh = (a * r).sqrt().clamp(1, h)
    ew = (a / r).sqrt().clamp(1, w)
    y0 = torch.rand(b, device=dev) * (h - eh)
    x0 = torch.rand(b, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = (
        (ys >= y0.view(b, 1, 1))
        & (ys < (y0 + eh).view(b, 1, 1))
        & (xs >= x0.view(b, 1, 1))
        & (xs < (x0 + ew).view(b, 1, 1))
    )
    box &= (torch.rand(b, device=dev) < p).view(b, 1, 1)
    return torch.where(box.unsqueeze(1), torch.rand_like(x), x)


def augment_batch(x: torch.Tensor, preset: str | dict[str, float]) -> torch.Tensor:
    """Augment float faces in 0..1, shape (B, C, H, W); the result stays in 0..1."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    if not cfg:
        return x
    x = affine_warp(
        x, cfg.get("flip", 0), cfg.get("rotate", 0), cfg.get("scale", 0), cfg.get("translate", 0)
    )
    if cfg.get("brightness") or cfg.get("contrast"):
        x = jitter(x, cfg.get("brightness", 0), cfg.get("contrast", 0))
    if cfg.get("blur"):
        x = gaussian_blur(x, cfg["blur"])
    if cfg.get("exposure"):
        x = exposure(x, cfg["exposure"])
    if cfg.get("noise"):
        x = gaussian_noise(x, cfg["noise"])
    if cfg.get("camera"):
        x = camera(x, cfg["camera"])
    if cfg.get("erase"):
        x = random_erase(x, cfg["erase"])
    return x.clamp_(0.0, 1.0)
