"""The Python API: one object from a picture to the emotion of every face in it.

    from fer import EmotionRecognizer

    rec = EmotionRecognizer()                  # the shipped model, YuNet, eyes levelled
    for face in rec.predict("photo.jpg"):      # a path, a PIL image or a numpy array
        print(face.emotion, face.confidence, face.box)

`fer.predict` and `fer.detect` are command-line shells over this module: a photo goes through
`EmotionRecognizer.locate` (find and crop the faces), `classify` (the model) and `describe` (the
records), and a video through an `EmotionTracker`, which also smooths each face over frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer.common import (
    EMOTIONS,
    HEADER_BYTES,
    FerError,
    decode_image,
    read_image,
    to_face48,
    to_uint8,
    why_undecodable,
    why_unreadable,
)
from fer.faces import (
    CROP_JITTER,
    CROP_SCALE,
    DETECTORS,
    Box,
    Face,
    FaceDetector,
    crop_faces,
    iou,
    make_detector,
    to_gray,
    video_min_face,
)
from fer.inference import FLOAT_OVERSHOOT, TTA_MODES, Classifier, load_classifier


class ImageError(FerError, ValueError):
    """A picture that cannot be used: undecodable, empty, or too small to hold a face."""


class UndecodableImage(ImageError):
    """A file or bytes that no decoder fer has reads: damaged, or not an image it knows."""


@dataclass(frozen=True)
class FaceEmotion:
    """One face and its emotion: `box` (x, y, w, h) in the picture's pixels, None for a face given
    already cropped. The picture is the upright one: for a file or a PIL image whose EXIF
    Orientation turns it, the turned picture a viewer shows (draw on `fer.recognizer.as_image` of
    it). For a face the picture's edge cuts, such as a close selfie's chin, the box is the
    detector's estimate of the whole face and reaches past that edge: clip it before slicing the
    picture with it. Five `landmarks` (the person's right eye, left eye, nose tip, right and left
    mouth corners; None where the detector gives none), the most likely `emotion` with its
    `confidence`, and every emotion's probability in Kaggle's order."""

    box: Box | None
    landmarks: tuple[tuple[float, float], ...] | None
    emotion: str
    confidence: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The record `fer.predict --json` writes for a face (without its file name)."""
        return {
            "box": None if self.box is None else list(self.box),
            "landmarks": None
            if self.landmarks is None
            else [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "probabilities": {e: round(p, 4) for e, p in self.probabilities.items()},
        }

    def __repr__(self) -> str:
        where = "" if self.box is None else f", box={self.box}"
        return f"FaceEmotion({self.emotion!r}, confidence={self.confidence:.3f}{where})"


def as_image(image: Any, name: str = "the bytes") -> np.ndarray:
    """A path, the bytes of an encoded image (a file's content), a PIL image or a numpy array
    (H x W gray, H x W x 3 BGR as OpenCV gives it, or H x W x 4 BGRA; 8 or 16 bit, or float in
    0..1) as a decoded image array. A file, its bytes or a PIL image is turned upright by its EXIF
    orientation, as a photo viewer shows it; an array is taken as it is. Bytes are called `name`
    in messages; those that do not decode raise UndecodableImage."""
    if isinstance(image, os.PathLike):  # os.scandir's entries, say
        image = os.fsdecode(image)
    if isinstance(image, (str, Path)):
        shown = (
            str(image)
            if len(str(image)) <= 200
            else f"{str(image)[:80]}... ({len(str(image))} characters)"
        )
        try:
            folder, file = Path(image).is_dir(), Path(image).is_file()
        except OSError:  # a name too long for a path: a data: URL, a file's text
            folder = file = False
        if folder:
            raise IsADirectoryError(
                f"{shown} is a folder, not a picture: give one picture at a time "
                "(python -m fer.predict reads folders)"
            )
        if not file:
            web = re.match(r"(https?|ftp|data):", str(image), re.IGNORECASE)
            raise FileNotFoundError(
                f"{shown}: no such file"
                + ("; fer reads files on this machine: download the picture first" if web else "")
            )
        pixels = read_image(image, upright=True)
        if pixels is None:
            raise UndecodableImage(f"{image}: not a readable image: it {why_unreadable(image)}")
        return check_image(_decoded(pixels), str(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        pixels = decode_image(image, upright=True)
        if pixels is None:
            why = why_undecodable(bytes(image[:HEADER_BYTES]))
            raise UndecodableImage(f"not a readable image: {name} {why}")
        return check_image(_decoded(pixels), name)
    if any(kind.__module__.startswith("PIL.") for kind in type(image).__mro__):  # plugins' too
        return check_image(_from_pil(image), "PIL image")
    if isinstance(image, np.ndarray):
        if not image.dtype.isnative:  # big-endian, as some readers of TIFF and FITS give
            image = image.astype(image.dtype.newbyteorder("="))
        if image.dtype.kind == "f":
            low, high = (np.nanmin(image), np.nanmax(image)) if image.size else (0, 0)
            if low < -FLOAT_OVERSHOOT or high > 1 + FLOAT_OVERSHOOT:
                raise ImageError(
                    f"a float image must be scaled to 0..1 (this one spans {low:g}..{high:g}); "
                    "pass uint8 or divide by 255"
                )
            return check_image(_decoded(image), "image array")
        elif image.dtype not in (np.uint8, np.uint16):
            raise TypeError(
                f"image arrays must be uint8, uint16 or float in 0..1, not {image.dtype}"
            )
        return check_image(image, "image array")
    raise TypeError(
        f"expected a path, image bytes, a PIL image or a numpy array, not {type(image).__name__}"
    )


#: The largest share of a float picture's pixels strictly between 0 and 1 for which, beyond 0..1, it
#: is taken for an 8-bit picture saved as float (`_8bit_as_float`)
FRACTION_8BIT = 0.05


def _decoded(pixels: np.ndarray) -> np.ndarray:
    """A decoded file's pixels as an array the API takes: float images (TIFF, HDR, PFM) hold
    0..1 by convention, kept as 8-bit with brighter values clipped to white, except an 8-bit
    picture saved as float (`_8bit_as_float`), read on its 0..255 scale; signed and 32-bit
    integers (TIFF) come to 8 bits by the range their values use (fer.common.to_uint8)."""
    if pixels.dtype.kind == "f":
        pixels = np.nan_to_num(pixels)
        if _8bit_as_float(pixels):
            return np.clip(pixels, 0, 255).round().astype(np.uint8)
        return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    if pixels.dtype not in (np.uint8, np.uint16):
        return to_uint8(pixels)
    return pixels


def _8bit_as_float(pixels: np.ndarray) -> bool:
    """Whether a float file's pixels are an 8-bit picture saved as float (as cv2.imwrite saves a
    float array to TIFF), not a 0..1 one: on 0..255 (with a resampling's overshoot), beyond 0..1
    and its overshoot, and with few values between 0 and 1 (FRACTION_8BIT), where a 0..1 picture
    has most of its own, whatever share of it its highlights over 1 fill; resampling an 8-bit
    picture leaves such values only where its black meets the rest."""
    if not pixels.size:
        return False
    low, high = pixels.min(), pixels.max()
    if not (
        1 + FLOAT_OVERSHOOT < high <= 255 * (1 + FLOAT_OVERSHOOT) and low >= -255 * FLOAT_OVERSHOOT
    ):
        return False
    between = np.count_nonzero((pixels > 0) & (pixels < 1))
    return bool(between < FRACTION_8BIT * pixels.size)


def check_image(image: np.ndarray, name: str) -> np.ndarray:
    """`image` itself, once its shape is one a face can be found in."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ImageError(
            f"{name}: shape {image.shape} is not H x W (gray), H x W x 3 (BGR) or H x W x 4 (BGRA)"
        )
    if min(image.shape[:2]) < 8:
        raise ImageError(
            f"{name}: {image.shape[1]}x{image.shape[0]} pixels is too small to hold a face"
        )
    return image


def _from_pil(image) -> np.ndarray:
    """A PIL image's pixels in OpenCV's order (BGR / BGRA), gray and 16-bit kept as they are,
    turned upright as its EXIF Orientation tag says (as a path is)."""
    from PIL import ImageOps

    try:
        image.load()  # the pixels of a lazily opened file: decoded now
    except (OSError, ValueError, AssertionError) as e:  # (Pillow asserts an open file)
        why = "its file was closed" if isinstance(e, AssertionError) else f"{e}".rstrip(".")
        raise UndecodableImage(f"PIL image: not a readable image: {why}") from e
    image = ImageOps.exif_transpose(image)
    if image.mode == "L":
        return np.asarray(image)
    if image.mode == "F":  # float gray: as a file of it is read where it holds an 8-bit
        pixels = np.asarray(image)  # picture (cv2.imwrite's float TIFF), else the array checks
        return _decoded(pixels) if _8bit_as_float(pixels) else as_image(pixels)
    if image.mode.startswith("I"):  # 16- or 32-bit integer gray (PIL opens 16-bit PNGs as I)
        pixels = np.asarray(image)  # 16-bit values as 16 bits, as the file would be read
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            return _decoded(pixels)  # others by the range they use, as a 32-bit file is
        return pixels.astype(np.uint16)
    keep_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
    try:
        rgb = np.asarray(image.convert("RGBA" if keep_alpha else "RGB"))
    except ValueError as e:
        raise ImageError(f"PIL image mode {image.mode} is not supported: {e}") from e
    return np.ascontiguousarray(rgb[..., [2, 1, 0, 3] if keep_alpha else [2, 1, 0]])


class EmotionRecognizer:
    """A model, a face detector and the way faces are cropped, ready to read emotions.

    model: an exported model folder or file, a Lightning checkpoint or a training run's folder
        (default: the model shipped with fer), or a loaded `fer.inference.Classifier`, which
        recognizers may share (each in its own thread, say: a detector must not be shared).
    detector: "yunet" (default; also gives five landmarks), "haar", or None to take every picture
        as one face already cropped, like FER-2013's.
    min_face: the smallest face to look for, in pixels of the picture (default: 40 for YuNet;
        for Haar, its 24 px window on pictures up to 800 px wide, 3% of the width on wider ones);
        smaller finds smaller faces and takes longer.
    align: level each face by its eyes before cropping (where the detector gives landmarks).
    jitter: read each face found in a picture from nine crops around its box, a little shifted and
        scaled (fer.faces.CROP_JITTER), and average them: closer to the face's own crop, nine
        times the classifier's work (video reads one crop a frame and averages over frames).
    backend: "auto" (onnxruntime where the model has an ONNX graph), "onnx" or "torch".
    tta: test-time augmentation, "none", "flip" or "tencrop".
    """

    def __init__(
        self,
        model: str | Path | Classifier | None = None,
        *,
        detector: str | None = "yunet",
        min_face: int | None = None,
        align: bool = True,
        jitter: bool = True,
        backend: str = "auto",
        tta: str = "none",
    ):
        if tta not in TTA_MODES:
            raise FerError(f"unknown tta {tta!r}; choose from {', '.join(TTA_MODES)}")
        self.classifier = (
            model if isinstance(model, Classifier) else load_classifier(model, backend=backend)
        )
        if detector is not None and detector not in DETECTORS:
            raise FerError(f"unknown detector {detector!r}; choose from {', '.join(DETECTORS)}")
        self.detector_name, self.min_face = detector, min_face
        self.align, self.jitter, self.tta = align, jitter, tta
        self._detector: FaceDetector | None = None

    @property
    def detector(self) -> FaceDetector | None:
        """The face detector set up for photos (made when first needed: video has its own)."""
        if self._detector is None and self.detector_name is not None:
            self._detector = make_detector(self.detector_name, photos=True, min_face=self.min_face)
        return self._detector

    def __repr__(self) -> str:
        return (
            f"EmotionRecognizer(model={self.classifier.source!r}, backend="
            f"{self.classifier.backend!r}, detector={self.detector_name!r}, align={self.align}, "
            f"jitter={self.jitter})"
        )

    def predict(self, image: Any) -> list[FaceEmotion]:
        """Every face of a picture (a path, an encoded image's bytes, a PIL image or a numpy
        array) with its emotion; an empty list when no face is found."""
        faces, crops = self.locate(image)
        return self.describe(faces, self.classify(crops))

    def predict_faces(self, faces: Any) -> list[FaceEmotion]:
        """Emotions of faces already cropped, like FER-2013's 48x48 faces: one picture, a list of
        pictures of any size, or an array of N faces ((N, H, W) gray or (N, H, W, C))."""
        batch = isinstance(faces, np.ndarray) and (
            faces.ndim == 4 or (faces.ndim == 3 and faces.shape[2] not in (1, 3, 4))
        )
        items = list(faces) if batch or isinstance(faces, (list, tuple)) else [faces]
        crops = np.stack([to_face48(as_image(f)) for f in items]) if len(items) else _no_crops()
        return self.describe([None] * len(crops), self.classify(crops))

    def locate(self, image: Any) -> tuple[list[Face | None], np.ndarray]:
        """(faces found, their crops): the detector's faces of a picture, cropped (N, 48, 48), or
        with `jitter` (N, 9, 48, 48), each face's nine views; or, without a detector, the whole
        picture as one face (None), (1, 48, 48). `classify` reads either."""
        pixels = as_image(image)
        if self.detector is None:
            return [None], to_face48(pixels)[None]
        gray = to_gray(pixels)
        found = self.detector.detect(gray)
        return found, self.crop(gray, found, self.jitter)

    def crop(self, gray: np.ndarray, faces: list[Face], jitter: bool = False) -> np.ndarray:
        """The faces of an 8-bit gray picture cropped as the model was trained, (N, 48, 48), or
        with `jitter` (N, 9, 48, 48), each at the views of fer.faces.CROP_JITTER."""
        scale = CROP_SCALE[self.detector_name or "yunet"]
        return crop_faces(gray, faces, self.align, scale, CROP_JITTER if jitter else None)

    def classify(
        self, crops: np.ndarray, side: str = "both", part: int | None = None
    ) -> np.ndarray:
        """Probabilities (N, 7) of 48x48 uint8 crops (N, 48, 48), or of N faces' views
        (N, V, 48, 48), each face's the mean of its views' (`side`, `part`: see
        Classifier.predict_proba)."""
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        if crops.ndim == 4 and crops.shape[2:] == (48, 48):
            n, v = crops.shape[:2]
            flat = crops.reshape((n * v,) + crops.shape[2:])
            return self.classify(flat, side, part).reshape(n, v, -1).mean(1)
        return self.classifier.predict_proba(crops, tta=self.tta, side=side, part=part)

    def describe(self, faces: Sequence[Face | None], probs: np.ndarray) -> list[FaceEmotion]:
        """FaceEmotion records of faces (None: a face given as a crop) and their probabilities."""
        out = []
        for face, p in zip(faces, probs):
            k = int(p.argmax())
            marks = None if face is None or face.landmarks is None else face.landmarks
            out.append(
                FaceEmotion(
                    box=None if face is None else tuple(int(v) for v in face.box),
                    landmarks=None
                    if marks is None
                    else tuple((float(x), float(y)) for x, y in marks),
                    emotion=EMOTIONS[k],
                    confidence=float(p[k]),
                    probabilities={e: float(v) for e, v in zip(EMOTIONS, p)},
                )
            )
        return out

    def tracker(
        self, smooth: int = 5, every: int = 1, min_face: int | None = None
    ) -> EmotionTracker:
        """An EmotionTracker for the frames of one video (see there)."""
        return EmotionTracker(self, smooth=smooth, every=every, min_face=min_face)


def _no_crops() -> np.ndarray:
    return np.zeros((0, 48, 48), np.uint8)


@dataclass
class Track:
    """A face followed through a video: its box in the last frame and, for each of its last frames,
    the probabilities of the pieces of the model (Classifier.views) that frame ran."""

    box: Box
    frames: list[dict[tuple, np.ndarray]]


class EmotionTracker:
    """The faces of a video, frame after frame: the detector, set up for video, runs on every
    `every`-th frame (its faces are reused in between; a frame of another size than the last
    is looked at afresh), faces narrower than `min_face` pixels are left out (default: 80, or a
    sixth of the shorter side of frames under 480 px, as faces.video_min_face gives for the
    frame's size), and each face's probabilities are averaged over
    its last frames, a face continuing the previous frame's face it is paired with, the pairing
    being the one whose overlaps (IoU > 0.3) sum highest (match_tracks).
    When frames are averaged (smooth > 1), a frame runs one piece of the model's work on each face
    (Classifier.views): for the shipped model, one member network on the face or on its mirror
    image, in turn, so a frame costs a sixth of the model; a face's first frame runs them all.
    A face's average is the mean, with equal weights, of each piece's mean over the face's last
    `window` frames, `smooth` or, if more, one round of the pieces (6 for the shipped model), so
    that every piece is in it: on a still face it is the model's own answer on every frame. With
    smooth=1 (each frame on its own), or TTA, every frame runs the whole model."""

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        smooth: int = 5,
        every: int = 1,
        min_face: int | None = None,
    ):
        counts = all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
            for n in (smooth, every)
        )
        if not counts or (min_face is not None and min_face < 0):
            raise FerError("smooth and every must be whole numbers from 1, min_face at least 0")
        if recognizer.detector_name is None:
            raise FerError("tracking faces in video needs a face detector (yunet or haar)")
        self.recognizer = recognizer
        self.detector = make_detector(recognizer.detector_name, min_face=min_face)
        self.smooth, self.every, self.min_face = smooth, every, min_face
        self._min_face_by_frame = min_face is None  # set by each frame size
        self.frames = 0
        self._found: list[Face] = []
        self._size: tuple[int, ...] = ()  # of the frame the faces were last found in
        whole = smooth == 1 or recognizer.tta != "none"
        self._views = [("both", None)] if whole else recognizer.classifier.views
        self.window = max(smooth, len(self._views))
        if any(part is not None for _, part in self._views):
            recognizer.classifier.load_parts()  # before the first frame, not during it
        self._tracks: list[Track] = []

    @property
    def detector_name(self) -> str:
        return self.detector.name

    def update(self, frame: np.ndarray) -> list[FaceEmotion]:
        """The faces of the next frame (what `EmotionRecognizer.predict` takes: a BGR or gray array
        as a video gives it, a PIL image...), probabilities smoothed over frames."""
        gray = to_gray(as_image(frame))
        # a frame of another size (a phone turned, a camera that changed its mode) is looked at
        # afresh: the last boxes are of another picture. The tracker's state changes only once
        # the frame is through: one that fails part-way leaves it as it was, for the next frames
        resized = gray.shape[:2] != self._size
        if resized and self._min_face_by_frame:
            self.min_face = self.detector.min_face = video_min_face(*gray.shape[:2])
        found, last = self._found, [] if resized else list(self._tracks)
        if resized or self.frames % self.every == 0:
            found = [f for f in self.detector.detect(gray) if f.box[2] >= self.min_face]
        view = self._views[self.frames % len(self._views)]
        crops = self.recognizer.crop(gray, found)
        seen = [{view: p} for p in self.recognizer.classify(crops, *view)]
        tracks = match_tracks(last, [face.box for face in found])
        first = [i for i, track in enumerate(tracks) if track is None]
        for other in self._views if first else ():  # a face seen for the first time: all of it
            if other != view:
                for i, p in zip(first, self.recognizer.classify(crops[first], *other)):
                    seen[i][other] = p
        tracks = [
            Track(face.box, (([] if track is None else track.frames) + [views])[-self.window :])
            for face, track, views in zip(found, tracks, seen)
        ]
        smoothed = []
        for track in tracks:
            window: dict[tuple, list[np.ndarray]] = {}
            for v, p in (item for frame_views in track.frames for item in frame_views.items()):
                window.setdefault(v, []).append(p)
            # any `window` frames in a row ran every piece, and a younger face's first frame did
            smoothed.append(np.mean([np.mean(window[v], 0) for v in self._views], 0))
        probs = np.array(smoothed).reshape(len(found), len(EMOTIONS))
        faces = self.recognizer.describe(found, probs)
        self._found, self._tracks, self._size = found, tracks, gray.shape[:2]
        self.frames += 1
        return faces


def match_tracks(tracks: list[Track], boxes: list[Box]) -> list[Track | None]:
    """For each box, the track of the last frame's face it continues: the pairing of boxes and
    tracks (each in one pair at most, none overlapping by 0.3 IoU or less) whose overlaps sum
    highest, so that a face found first that moved toward its neighbour's place does not take the
    neighbour's track when each overlaps its own; None for a new face."""
    if not (tracks and boxes):
        return [None] * len(boxes)
    overlap = np.array([[iou(t.box, box) for t in tracks] for box in boxes])
    overlap[overlap <= 0.3] = 0.0
    near = overlap > 0
    if (near.sum(0) > 1).any() or (near.sum(1) > 1).any():  # faces close together: solved
        from scipy.optimize import linear_sum_assignment  # (imported only then: 0.25 s)

        pairs = zip(*linear_sum_assignment(overlap, maximize=True))
    else:  # each box near one track at most, and each track near one box: theirs
        pairs = zip(*near.nonzero())
    taken: list[Track | None] = [None] * len(boxes)
    for b, k in pairs:
        if overlap[b, k] > 0:
            taken[b] = tracks[k]
    return taken
