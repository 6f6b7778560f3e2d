"""A VGG-style CNN for 48x48 faces, trained from scratch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class FerCNN(nn.Module):
    """Stages of `depth` 3x3 conv-BN-ReLU blocks, each stage followed by 2x2 max pooling, then
    global average pooling, dropout and a linear classifier. Input (B, 1, 48, 48), output logits."""

    def __init__(
        self,
        num_classes: int = 7,
        widths: Sequence[int] = (32, 64, 128, 256),
        depth: int = 2,
        dropout: float = 0.3,
        in_channels: int = 1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for width in widths:
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
        return self.head(self.features(x))
