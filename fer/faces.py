"""Face detection behind a small interface, and cropping faces the way the model was trained.

Two detectors: YuNet (the default), OpenCV's CNN face detector run by `cv2.FaceDetectorYN`, whose
small ONNX model ships in fer/assets/ and also returns five landmarks (eyes, nose tip, mouth
corners); and OpenCV's Haar cascade, shipped inside opencv-python-headless 4.x. Anything with
`detect(image) -> list[Face]` can replace them. Crops are square, centred on the detector's box,
rotated so that the eyes are level when landmarks are known, then shrunk like the training faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer.common import FerError, file_sha256, to_face48

Box = tuple[int, int, int, int]

ASSETS = Path(__file__).resolve().parent / "assets"
YUNET = ASSETS / "face_detection_yunet_2026may.onnx"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
DETECTORS = ("yunet", "haar")
#: Side of the square face crop as a multiple of the detector's box width, chosen by
#: experiments/face_crops.py on PublicTest faces pasted into frames (see the README). The boxes
#: differ: YuNet's spans forehead to chin, taller than wide; Haar's is a square around the features.
CROP_SCALE = {"yunet": 1.3, "haar": 1.1}


@dataclass
class Face:
    """A detected face: box (x, y, w, h) in image pixels, and for YuNet five landmarks (5, 2):
    the person's right eye, left eye, nose tip, right and left mouth corners."""

    box: Box
    landmarks: np.ndarray | None = None
    score: float = 1.0


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a uint8 image (gray or BGR)."""
        ...


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image[:, :, :3] if image.shape[2] == 4 else image


class YuNetFaceDetector:
    """YuNet via cv2.FaceDetectorYN, run on a copy shrunk to at most `work_width` pixels wide.

    YuNet finds faces of about 10-300 px at the size it sees, and its cost grows with that size.
    Video runs at up to 640 px wide: on 300 PublicTest faces pasted 150-230 px wide into 640x480
    frames it found 96% of them at 640 px against 88% at 320 px (experiments/face_crops.py
    --faces 300 --detectors yunet --work-width 640 / 320);
    larger frames are shrunk to 640 px, where webcam faces are still large. Photos run at up to
    1280 px.
    The model file is checked against its SHA-256 before it is loaded.
    """

    name = "yunet"

    def __init__(
        self, work_width: int = 640, score: float = 0.6, nms: float = 0.3, model: Path = YUNET
    ):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise FerError(
                "this OpenCV build has no FaceDetectorYN; install opencv-python-headless>=4.8,<5"
            )
        if not model.is_file():
            raise FerError(f"the YuNet face detector {model} is missing; reinstall fer")
        digest = file_sha256(model)
        if digest != YUNET_SHA256:
            raise FerError(
                f"the YuNet face detector {model} is damaged (SHA-256 {digest[:12]}..., expected "
                f"{YUNET_SHA256[:12]}...); reinstall fer, or use --detector haar"
            )
        self.work_width = work_width
        self.net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score, nms, 5000)
        self.size: tuple[int, int] | None = None

    @classmethod
    def for_photos(cls) -> YuNetFaceDetector:
        return cls(work_width=1280)

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        scale = min(1.0, self.work_width / w)
        small = image
        if scale < 1:  # shrink first: a gray frame is a third of the pixels to resize
            small = cv2.resize(
                small, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        small = _bgr(small)
        size = (small.shape[1], small.shape[0])
        if size != self.size:
            self.net.setInputSize(size)
            self.size = size
        _, found = self.net.detect(small)
        faces = []
        for row in found if found is not None else []:
            x, y, bw, bh = (row[:4] / scale).tolist()
            box = (round(x), round(y), round(bw), round(bh))
            faces.append(Face(box, (row[4:14] / scale).reshape(5, 2), float(row[14])))
        return faces


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

    name = "haar"

    @classmethod
    def for_photos(cls) -> HaarFaceDetector:
        return cls(work_width=800, min_face=24, scale_factor=1.1, min_neighbors=5)

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = to_gray(image)
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
        return [
            Face(tuple(int(round(v / scale)) for v in box)) for box in (found if len(found) else [])
        ]


def make_detector(name: str, photos: bool = False, min_face: int = 80) -> FaceDetector:
    """The detector called `name` (yunet or haar), set up for photos or for video."""
    if name == "yunet":
        return YuNetFaceDetector.for_photos() if photos else YuNetFaceDetector()
    if name == "haar":
        return HaarFaceDetector.for_photos() if photos else HaarFaceDetector(min_face=min_face)
    raise FerError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """A decoded image (gray, BGR, BGRA; 8 or 16 bit) as 8-bit grayscale at its own size."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 3:
        image = cv2.cvtColor(
            image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        )
    return image


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees the eye line climbs from the person's right eye to their left (image y points down)."""
    (rx, ry), (lx, ly) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ly - ry, lx - rx))


def crop_transform(face: Face, align: bool = True, scale: float = 1.0) -> tuple[np.ndarray, int]:
    """(2x3 affine from image to crop pixels, crop side): a square of `scale` times the box width
    around the box centre, turned so that the eyes are level when `align` and landmarks allow."""
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    side = max(int(round(scale * w)), 1)
    angle = eye_angle(face.landmarks) if align and face.landmarks is not None else 0.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)  # counter-clockwise on screen
    m[:, 2] += (side / 2 - cx, side / 2 - cy)
    return m, side


def crop_face(gray: np.ndarray, face: Face, align: bool = True, scale: float = 1.0) -> np.ndarray:
    """One face as 48x48 uint8, preprocessed exactly like the training images (fer.common.to_face48)."""
    m, side = crop_transform(face, align, scale)
    patch = cv2.warpAffine(
        gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return to_face48(patch)


def crop_faces(
    gray: np.ndarray, faces: list[Face], align: bool = True, scale: float = 1.0
) -> np.ndarray:
    """The detected faces of a grayscale image as (N, 48, 48) uint8."""
    crops = [crop_face(gray, f, align, scale) for f in faces]
    return np.stack(crops) if crops else np.zeros((0, 48, 48), np.uint8)


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def add_face_options(parser) -> None:
    """--detector and --no-align, shared by fer.predict and fer.detect."""
    parser.add_argument(
        "--detector",
        default="yunet",
        choices=DETECTORS,
        help="face detector: YuNet (CNN, five landmarks) or OpenCV's Haar cascade",
    )
    parser.add_argument(
        "--no-align", action="store_true", help="crop faces as found, without levelling the eyes"
    )
