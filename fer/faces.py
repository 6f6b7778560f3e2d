"""Face detection behind a small interface, and cropping faces the way the model was trained.

The default detector is OpenCV's Haar cascade, whose model ships inside opencv-python-headless 4.x.
Anything with `detect(gray) -> list of (x, y, w, h)` can replace it (a DNN detector, say).
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from fer.common import FerError, to_face48

Box = tuple[int, int, int, int]


class FaceDetector(Protocol):
    def detect(self, gray: np.ndarray) -> list[Box]:
        """Face boxes (x, y, w, h) in a uint8 grayscale image."""
        ...


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, run on a copy shrunk to `work_width` pixels for speed.

    `min_face` is the smallest face searched for, in pixels of the original image. The defaults
    suit video (640x480 at 30+ FPS on a 2-core CPU); photos use a wider work size and finer steps.
    """

    def __init__(
        self,
        work_width: int = 240,
        min_face: int = 80,
        scale_factor: float = 1.2,
        min_neighbors: int = 4,
    ):
        if not hasattr(cv2, "CascadeClassifier"):
            raise FerError(
                "this OpenCV build has no CascadeClassifier; install opencv-python-headless>=4.8,<5"
            )
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FerError(
                f"could not load the Haar cascade {path}; reinstall opencv-python-headless>=4.8,<5"
            )
        self.work_width, self.scale_factor, self.min_neighbors, self.min_face = (
            work_width,
            scale_factor,
            min_neighbors,
            min_face,
        )

    @classmethod
    def for_photos(cls) -> HaarFaceDetector:
        return cls(work_width=800, min_face=24, scale_factor=1.1, min_neighbors=5)

    def detect(self, gray: np.ndarray) -> list[Box]:
        h, w = gray.shape[:2]
        scale = min(1.0, self.work_width / w) if self.work_width else 1.0
        small = (
            cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1
            else gray
        )
        small = cv2.equalizeHist(small)
        min_px = max(int(self.min_face * scale), 20)
        found = self.cascade.detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_px, min_px),
        )
        return [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]


def to_gray(image: np.ndarray) -> np.ndarray:
    """A decoded image (gray, BGR, BGRA; 8 or 16 bit) as 8-bit grayscale at its own size."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 3:
        image = cv2.cvtColor(
            image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        )
    return image


def crop_faces(gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """The boxed faces as (N, 48, 48) uint8, preprocessed exactly like the training images."""
    faces = [to_face48(gray[max(y, 0) : y + h, max(x, 0) : x + w]) for x, y, w, h in boxes]
    return np.stack(faces) if faces else np.zeros((0, 48, 48), np.uint8)


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0
