"""Plain nn.Modules and a registry: build_model(name, num_classes=7, **options)."""

from __future__ import annotations

from torch import nn

from fer.common import NUM_CLASSES, FerError
from fer.models.cnn import FerCNN
from fer.models.ensemble import Ensemble
from fer.models.vgg import VGG16Transfer

MODELS: dict[str, type[nn.Module]] = {"cnn": FerCNN, "vgg": VGG16Transfer, "ensemble": Ensemble}
#: What fer.train trains; an ensemble is assembled from trained members by fer.export.
TRAINABLE = ("cnn", "vgg")


def build_model(name: str, num_classes: int = NUM_CLASSES, **options) -> nn.Module:
    """A registered model; every model maps (B, 1, 48, 48) standardised faces to logits."""
    if name not in MODELS:
        raise FerError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    try:
        return MODELS[name](num_classes=num_classes, **options)
    except TypeError as e:
        raise FerError(f"bad options for model {name!r}: {e}") from e
