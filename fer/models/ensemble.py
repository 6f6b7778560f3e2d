"""Several trained networks as one model: the average of their class probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


class Ensemble(nn.Module):
    """Members built from `{"arch": ..., "options": {...}}` specs; the output is the log of the
    members' mean softmax, so a softmax of it gives back the averaged probabilities and anything
    that takes logits (evaluation, prediction, ONNX export) needs no special case.

    With `flip`, every face is also seen mirrored and the average runs over both views.
    Input (B, 1, 48, 48) standardised faces, output (B, num_classes) log-probabilities.
    """

    def __init__(
        self, num_classes: int = 7, members: Sequence[Mapping[str, Any]] = (), flip: bool = False
    ):
        super().__init__()
        from fer.models import build_model

        if not members:
            raise TypeError("an ensemble needs at least one member")
        self.members = nn.ModuleList(
            build_model(m["arch"], num_classes, **dict(m.get("options", {}))) for m in members
        )
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = torch.cat([x, x.flip(-1)])
        probs = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        if self.flip:
            probs = probs.reshape(2, -1, probs.shape[-1]).mean(0)
        return probs.clamp_min(1e-12).log()
