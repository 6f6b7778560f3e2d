"""A VGG-style CNN for 48x48 faces, trained from scratch, and its residual variant."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def centre_offset(side: int, size: int) -> int:
    """Where a centred size x size crop of a side x side face starts, in rows and columns."""
    return (side - size) // 2


def crop_faces(x: torch.Tensor, size: int, random: bool) -> torch.Tensor:
    """size x size crops of the faces x (B, C, H, W): each at its own random place, or centred."""
    b, _, h, w = x.shape
    if random:
        top = torch.randint(0, h - size + 1, (b, 1), device=x.device)
        left = torch.randint(0, w - size + 1, (b, 1), device=x.device)
        steps = torch.arange(size, device=x.device)
        rows, cols = (top + steps)[:, :, None], (left + steps)[:, None, :]  # (B, S, 1), (B, 1, S)
        return x[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    top, left = centre_offset(h, size), centre_offset(w, size)
    return x[..., top : top + size, left : left + size]


class Projection(nn.Sequential):
    """A strided 1x1 convolution and batch norm, written as taking every `stride`-th pixel and
    then a 1x1 convolution of stride 1: the same function and weights, but oneDNN's kernel for the
    strided one, in channels_last with fewer input channels than its block (8 on AVX2, 16 on
    AVX-512), writes past its workspace when it computes the weight gradient (oneDNN issue 6035):
    a segmentation fault, a hang or wrong gradients, depending on the CPU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[..., :: self.stride, :: self.stride])


class Residual(nn.Module):
    """`depth` 3x3 convolutions (the first with `stride`) added to a shortcut of the input, then
    ReLU. The shortcut is the input itself, or a strided 1x1 projection where the shape changes."""

    def __init__(self, cin: int, cout: int, depth: int, stride: int):
        super().__init__()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = Projection(cin, cout, stride)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(
                nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, 1, bias=False)
            )
            layers.append(nn.BatchNorm2d(cout))
            if i < depth - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the shortcut runs first, so that the last convolution to run is the body's (Grad-CAM's)
        shortcut = self.shortcut(x)
        return torch.relu(self.body(x) + shortcut)


class FerCNN(nn.Module):
    """Stages of `depth` 3x3 conv-BN-ReLU blocks, each stage followed by 2x2 max pooling, then
    global average pooling, dropout and a linear classifier. Input (B, 1, 48, 48), output logits.

    With `residual`, a 3x3 conv-BN-ReLU stem is followed by one `Residual` block per stage instead,
    and every stage but the first halves the map with its first (strided) convolution instead of
    pooling: a ResNet-style network, for ensembles that want members of another kind.

    With `crop`, the network looks at crop x crop pixels of each face: a random place while it
    trains, the centre otherwise (cheaper steps and more translation than the augmentation alone).
    """

    def __init__(
        self,
        num_classes: int = 7,
        widths: Sequence[int] = (32, 64, 128, 256),
        depth: int = 2,
        dropout: float = 0.3,
        in_channels: int = 1,
        crop: int = 0,
        residual: bool = False,
    ):
        super().__init__()
        self.crop = crop
        layers: list[nn.Module] = []
        cin = in_channels
        if residual:
            layers.append(conv_bn(cin, widths[0]))
            cin = widths[0]
        for stage, width in enumerate(widths):
            if residual:
                layers.append(Residual(cin, width, depth, stride=1 if stage == 0 else 2))
                cin = width
                continue
            for _ in range(depth):
                layers.append(conv_bn(cin, width))
                cin = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop and x.shape[-1] > self.crop:
            x = crop_faces(x, self.crop, random=self.training)
        return self.head(self.features(x))
