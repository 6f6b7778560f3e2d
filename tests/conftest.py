"""Tiny FER-2013 look-alikes made in tmp_path, and the real data in ../shared when present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.common import EMOTIONS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDER_ORDER = sorted(EMOTIONS)  # how a file browser lists the Kaggle folders


def face(label: int, seed: int) -> np.ndarray:
    """A 48x48 'face' whose class is learnable (stripes and a bar that depend on it), plus noise."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 60, size=(48, 48)).astype(np.uint8)
    img[:, (np.arange(48) // (label + 1)) % 2 == 0] += 40  # texture of a class-specific period
    img[4 + 6 * label : 8 + 6 * label, 6:42] = 230  # and a bar at a class-specific height
    return img


def seed_of(usage: str, label: int, i: int) -> int:
    """The seed of sample i of a class in a split, the same in CSV and folder data."""
    return ("Training", "PublicTest", "PrivateTest").index(usage) * 100_000 + label * 1000 + i


def pixels(img: np.ndarray) -> str:
    return " ".join(map(str, img.flatten().tolist()))


def make_folder(
    root: Path,
    per_class=(4, 2, 0),
    prefixes=("Training", "PublicTest", "PrivateTest"),
    upper: bool = False,
) -> Path:
    """root/train/<emotion>/Training_i.png and root/test/<emotion>/{PublicTest,PrivateTest}_i.png."""
    n_train, n_pub, n_priv = per_class
    for label, name in enumerate(EMOTIONS):
        folder = name.upper() if upper else name
        for k, (split, n) in enumerate((("train", n_train), ("test", n_pub), ("test", n_priv))):
            d = root / split / folder
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed = k * 100_000 + label * 1000 + i
                cv2.imwrite(str(d / f"{prefixes[k]}_{k}{label}{i:03d}.png"), face(label, seed))
    return root


def make_csv(path: Path, per_class=(4, 2, 2), variant: str = "fer2013") -> Path:
    """fer2013.csv (emotion,pixels,Usage), icml_face_data.csv (emotion, Usage, pixels), a
    fer2013.csv with usage in lower case (its header and values) or train.csv + test.csv."""
    rows = []
    for label in range(len(EMOTIONS)):
        for usage, n in zip(("Training", "PublicTest", "PrivateTest"), per_class):
            for i in range(n):
                rows.append((label, usage, pixels(face(label, seed_of(usage, label, i)))))
    path.parent.mkdir(parents=True, exist_ok=True)
    if variant == "fer2013":
        path.write_text("emotion,pixels,Usage\n" + "".join(f"{e},{p},{u}\n" for e, u, p in rows))
    elif variant == "icml":
        path.write_text("emotion, Usage, pixels\n" + "".join(f"{e},{u},{p}\n" for e, u, p in rows))
    elif variant == "lower_usage":  # a user's own file
        text = "emotion,pixels,usage\n" + "".join(f"{e},{p},{u.lower()}\n" for e, u, p in rows)
        path.write_text(text)
    elif variant == "train_test":
        path.write_text(
            "emotion,pixels\n" + "".join(f"{e},{p}\n" for e, u, p in rows if u == "Training")
        )
        (path.parent / "test.csv").write_text(
            "emotion,pixels\n" + "".join(f"{e},{p}\n" for e, u, p in rows if u != "Training")
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def folder_data(tmp_path) -> Path:
    # 56 training faces: 3 batches of 16 an epoch, enough for fer.train's LR schedules to run
    return make_folder(tmp_path / "fer2013", per_class=(8, 3, 2))


@pytest.fixture
def csv_data(tmp_path) -> Path:
    return make_csv(tmp_path / "csv" / "fer2013.csv", per_class=(8, 2, 2))  # as folder_data


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "fer2013" / "train").is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture
def exported(tmp_path) -> Path:
    """An untrained small CNN exported by hand (model.json + model.safetensors, no ONNX)."""
    from safetensors.torch import save_file

    from fer.models import build_model

    out = tmp_path / "model"
    out.mkdir()
    save_file(build_model("cnn", widths=[8, 16], depth=1).state_dict(), out / "model.safetensors")
    (out / "model.json").write_text(
        json.dumps({"arch": "cnn", "options": {"widths": [8, 16], "depth": 1}})
    )
    return out


def make_video(path: Path, frames: int = 12) -> Path:
    """A short 320x240 mp4 of one synthetic face drifting over a textured background."""
    from fer.demo import face_video

    face_video(path, [face(3, 0)], frames=frames, size=100, width=320, height=240)
    return path


@pytest.fixture(scope="session")
def real_faces():
    """Two real PublicTest faces (happy, surprise), 48x48 gray: what a face detector can find."""
    root = SHARED / "fer2013" / "test"
    if not root.is_dir():
        pytest.skip("needs real faces from ../shared/data for the face detector")
    return [
        cv2.imread(str(sorted((root / n).glob("*.png"))[5]), cv2.IMREAD_GRAYSCALE)
        for n in ("happy", "surprise")
    ]


def copy_without_parts(model: Path, dest: Path) -> Path:
    """An exported model copied as a user might copy it: model.json, model.safetensors and
    model.onnx only, without its members' graphs (model.partI.onnx)."""
    dest.mkdir()
    for name in ("model.json", "model.safetensors", "model.onnx"):
        shutil.copy(model / name, dest / name)
    return dest


def photo_with(faces, width=900, height=600, size=180, x=60, y=150, gap=120) -> np.ndarray:
    """A BGR photo with 48x48 faces upscaled to `size` px side by side on a textured background."""
    from fer.demo import background

    img = cv2.resize(background(width, height), (width, height))
    for i, f in enumerate(faces):
        left = x + i * (size + gap)
        big = cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC)
        img[y : y + size, left : left + size] = big[..., None]
    return img


# fer.train's options for a tiny CNN trained in fp32 on whole faces (--crop 0), as most tests
# were written for; the crop has tests of its own
TINY = [
    "--widths",
    "8",
    "16",
    "--depth",
    "1",
    "--crop",
    "0",
    "--batch-size",
    "16",
    "--precision",
    "32-true",
]


class RowCounter:
    """An onnxruntime session standing in for a Classifier's: it counts the rows (faces) of
    each batch it is given, in `rows`, and runs them."""

    def __init__(self, session):
        self.session, self.get_inputs, self.rows = session, session.get_inputs, []

    def run(self, names, feed):
        self.rows.append(len(next(iter(feed.values()))))
        return self.session.run(names, feed)
