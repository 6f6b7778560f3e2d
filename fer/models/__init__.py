"""Plain nn.Modules and a registry: build_model(name, num_classes=7, **options).

The registry names where each model lives and imports it on first use, so that running a custom
CNN (fer.predict, fer.detect) never pays for importing torchvision, which only VGG16 needs.
"""

from __future__ import annotations

import importlib

from torch import nn

from fer.common import NUM_CLASSES, FerError

MODELS: dict[str, str] = {
    "cnn": "fer.models.cnn:FerCNN",
    "vgg": "fer.models.vgg:VGG16Transfer",
    "ensemble": "fer.models.ensemble:Ensemble",
}


def model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise FerError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, num_classes: int = NUM_CLASSES, **options) -> nn.Module:
    """A registered model; every model maps (B, 1, 48, 48) standardised faces to logits."""
    model = model_class(name)
    try:
        return model(num_classes=num_classes, **options)
    except TypeError as e:
        raise FerError(f"bad options for model {name!r}: {e}") from e
