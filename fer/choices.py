"""The names and defaults fer.train's command line offers, apart from the modules that use them:
these import PyTorch and Lightning (5 s), which `python -m fer.train --help` does not need."""

from __future__ import annotations

#: fer.train's defaults for drawing a validation split from data without PublicTest markers.
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SEED = 42
#: Faces per batch of validation and test, whatever --batch-size (which is training's).
EVAL_BATCH_SIZE = 512
#: What fer.train trains; an ensemble is assembled from trained members by fer.export.
TRAINABLE = ("cnn", "vgg")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("onecycle", "cosine", "plateau", "none")
#: fer.augment's named presets. Angles in degrees; scale and translate as fractions of the face
#: size; `exposure`, `blur`, `noise` and `camera` the share of faces so degraded (fer.augment).
PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    "flip": {"flip": 0.5},
    "light": {"flip": 0.5, "rotate": 10, "scale": 0.10, "translate": 0.10},
    "strong": {
        "flip": 0.5,
        "rotate": 15,
        "scale": 0.15,
        "translate": 0.12,
        "brightness": 0.25,
        "contrast": 0.25,
        "erase": 0.5,
    },
    "photo": {
        "flip": 0.5,
        "rotate": 10,
        "scale": 0.10,
        "translate": 0.10,
        "exposure": 0.3,
        "blur": 0.3,
        "noise": 0.3,
    },
}
#: `photo`, and the few pixels and JPEG of a small face in a photo on 30% of the faces.
PRESETS["camera"] = {**PRESETS["photo"], "camera": 0.3}
