"""Face detection behind a small interface, and cropping faces the way the model was trained.

Two detectors: YuNet (the default), the CNN face detector of OpenCV's model zoo, whose small ONNX
model ships in fer/assets/, run by onnxruntime and decoded as `cv2.FaceDetectorYN` decodes it; it
also returns five landmarks (eyes, nose tip, mouth corners); and OpenCV's Haar cascade, shipped inside opencv-python-headless 4.x. Anything with
`detect(image) -> list[Face]` can replace them. Crops are square, centred on the detector's box,
rotated so that the eyes are level when landmarks are known, then shrunk like the training faces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer.common import FerError, file_sha256, to_face48, to_uint8

Box = tuple[int, int, int, int]

ASSETS = Path(__file__).resolve().parent / "assets"
YUNET = ASSETS / "face_detection_yunet_2026may.onnx"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
DETECTORS = ("yunet", "haar")  # the first, the default
#: Side of the square face crop as a multiple of the detector's box width, chosen by
#: experiments/face_crops.py on PublicTest faces pasted into frames (docs/detection.md). The boxes
#: differ: YuNet's spans forehead to chin, taller than wide; Haar's is a square around the features.
CROP_SCALE = {"yunet": 1.3, "haar": 1.1}
#: Photos: each face is read from several crops around its box and their probabilities averaged
#: (the box's corners and scale are uncertain by a few pixels): (shift right, shift down) in box
#: widths, in the face's own upright frame, and the side as a share of CROP_SCALE's. The centre
#: crop, and crops 12/13 and 14/13 as wide (1.2 and 1.4 box widths for YuNet) shifted by a 20th
#: of the box width right, left, down and up. Chosen on the photos of
#: experiments/photo_benchmark.py --seed 0 and 1 (labels of the found faces 68.3% and 69.1%
#: against 66.7% and 67.1% from the centre crop alone, with the detector of then); measured on
#: --photos 600 --seed 2 (docs/detection.md has today's figures).
CROP_JITTER = ((0.0, 0.0, 1.0),) + tuple(
    (dx, dy, side)
    for side in (12 / 13, 14 / 13)
    for dx, dy in ((0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05))
)
#: YuNet, on FER-2013 faces pasted into frames, finds nearly every face of SMALLEST to LARGEST px
#: at the size it sees (from 55% at 40 px and 88% at 60 px, to 98% at 120 px): each picture goes
#: through it at the size that makes the smallest face asked for SMALLEST px (at most, for video,
#: `work_size` px on its longer side), then on copies PYRAMID_STEP times smaller each, until a face
#: filling the picture's shorter side fits in LARGEST px. (Measured by experiments/photo_benchmark.py.)
SMALLEST, LARGEST, PYRAMID_STEP = 80, 280, 2.5
#: Photos, where time matters less than a missed face: the smallest face seen at PHOTO_SMALLEST px
#: and copies PHOTO_PYRAMID_STEP times smaller each. On the photos of experiments/photo_benchmark.py
#: --seed 0 (where they were chosen, with --pyramid SMALLEST STEP; 208 faces of 40-2000 px) 120 px
#: and 2.0 found 198 faces, 0.07 false ones a photo, detection 0.98 s a photo, against 194, 0.05 and
#: 0.73 s with video's 80 px and 2.5; 100 / 2.2 found 197, 120 / 1.7 and 150 / 1.8 197, 150 / 2.0
#: 198 (0.08 false, 1.18 s), and 120 / 2.0 with a score of 0.7 found 200 with 0.23 false faces a
#: photo. On --seed 1 then: 91.9% of the faces of 40-2000 px against 90.5%, 0.06 false faces a
#: photo against 0.04.
PHOTO_SMALLEST, PHOTO_PYRAMID_STEP = 120, 2.0
#: The largest copy YuNet sees at once (px a side); larger ones go through it in tiles, and a face
#: found within EDGE px (of that copy) of a tile's edge inside the picture is left to a neighbour.
TILE, EDGE = 2048, 16
#: The lowest score of a face YuNet keeps in video (on every copy of a frame).
VIDEO_SCORE = 0.6
#: Photos: the smallest face looked for by default, the most pixels the largest copy may have, and
#: the lowest score kept on copies of at least half the photo's size. At VIDEO_SCORE most false
#: faces in photos came from the copy twice the photo's size (the largest then); 0.75 was chosen
#: on photos of experiments/photo_benchmark.py --seed 0 and measured on --seed 1 (--score S there
#: shows another threshold on these copies).
PHOTO_MIN_FACE, PHOTO_MAX_PIXELS, PHOTO_SCORE = 40, 50_000_000, 0.75
#: Photos: the lowest score kept on copies smaller than PHOTO_SMALL_COPY times the photo's size
#: (with the default --min-face, from the third or fourth copy on). The false faces of photos
#: come from the larger copies; on the small ones a large face that is overexposed, dark or
#: blurred often scores 0.6-0.75 and nowhere more. On the photos of
#: experiments/photo_benchmark.py --seed 0 and 1 (430 faces of 40-2000 px) VIDEO_SCORE below half
#: size found 406 of them against 402, 0.070 false faces a photo against 0.067 (--small-copies
#: SCALE SCORE there tries others); on --photos 600 --seed 2 (docs/photo_benchmark.md) 92.1% of
#: the 826 against 90.4% (before the second look, below; 92.7% with it; these counted a box as
#: the face from half its square's side, 93.2% with it from a third, as the benchmark does now).
PHOTO_SMALL_COPY, PHOTO_SMALL_COPY_SCORE = 0.5, VIDEO_SCORE
#: Photos: a face scoring at least PHOTO_SECOND_LOOK but below its copy's threshold is looked at
#: again, on its own surroundings (a square SECOND_LOOK_CONTEXT times its box's longer side)
#: resized so that its box is each of SECOND_LOOK_WIDTHS px wide: it is kept when YuNet finds
#: the same face there (a box overlapping it by SECOND_LOOK_IOU) with a best score averaging
#: SECOND_LOOK_SCORE. A false face of the large copies is mostly a texture YuNet scores only at
#: one size; a true one it still finds at its best sizes. On the photos of
#: experiments/photo_benchmark.py --photos 150 --seed 0 and 1 (where it was chosen;
#: --second-look SCORE there tries other lowest scores, 1 none) 96.2% and 94.1% of the faces of
#: 40-2000 px found against 95.7% and 93.2%, 0.073 and 0.060 false faces a photo against 0.080
#: and 0.060.
PHOTO_SECOND_LOOK, SECOND_LOOK_SCORE, SECOND_LOOK_IOU = 0.6, 0.6, 0.5
SECOND_LOOK_WIDTHS, SECOND_LOOK_CONTEXT = (72, 100, 140), 3.0


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
    """YuNet (`YuNetNet`), run on copies of the picture sized for the faces sought.

    `min_face` is the smallest face to find, in pixels of the picture: it sets the size of the
    first copy (`smallest` / min_face times the picture), which is capped at `work_size` px on its
    longer side and at `max_pixels`. Faces too large for YuNet at that size are found on copies
    `step` times smaller each, and a face found on two copies is kept once (non-maximum
    suppression).
    With `every_copy` (photos) every copy is looked at; without (video), the smaller copies only
    when the larger found no face or one too large for it, so a frame whose faces all fit costs
    one pass.
    Video: frames at up to 640 px on their longer side (a 640x480 webcam frame as it is, and a
    copy 2.5 times smaller for a face close to the camera). On 300 PublicTest faces pasted
    150-230 px wide into 640x480 frames, 640 px found 96% of them against 88% at 320 px
    (experiments/face_crops.py --faces 300 --detectors yunet --work-width 640 / 320).
    Photos: faces from 40 px, seen from PHOTO_SMALLEST px, the first copy up to three times the
    photo's size, copies PHOTO_PYRAMID_STEP times smaller each, faces scoring PHOTO_SCORE kept,
    or PHOTO_SMALL_COPY_SCORE on copies smaller than PHOTO_SMALL_COPY times the photo's size;
    one scoring less, from PHOTO_SECOND_LOOK, is kept when a second look confirms it
    (`looks_like_a_face`).
    The model file is checked against its SHA-256 before it is loaded.
    """

    name = "yunet"

    def __init__(
        self,
        work_size: int = 640,
        min_face: int = 80,
        max_pixels: int = PHOTO_MAX_PIXELS,
        every_copy: bool = False,
        score: float = VIDEO_SCORE,
        nms: float = 0.3,
        model: Path = YUNET,
        smallest: int = SMALLEST,
        step: float = PYRAMID_STEP,
        small_copy: float = 0.0,
        small_copy_score: float | None = None,
        second_look: float = 1.0,
    ):
        if not model.is_file():
            raise FerError(f"the YuNet face detector {model} is missing; reinstall fer")
        digest = file_sha256(model)
        if digest != YUNET_SHA256:
            raise FerError(
                f"the YuNet face detector {model} is damaged (SHA-256 {digest[:12]}..., expected "
                f"{YUNET_SHA256[:12]}...); reinstall fer, or use --detector haar"
            )
        if min_face < 0:
            raise FerError("the smallest face to find must be at least 0 px")
        if not (smallest > 0 and step > 1):  # NaN too
            raise FerError("YuNet's pyramid needs a size above 0 px and copies over 1x smaller")
        scores = (score, score if small_copy_score is None else small_copy_score, second_look)
        if not all(0 < s <= 1 for s in scores):
            raise FerError("YuNet's lowest scores kept must be above 0 and at most 1")
        self.work_size, self.min_face, self.max_pixels = work_size, min_face, max_pixels
        self.model, self.score, self.nms, self.every_copy = model, score, nms, every_copy
        self.smallest, self.step = smallest, step
        # the lowest score kept on copies smaller than `small_copy` times the picture's size
        self.small_copy, self.small_copy_score = small_copy, small_copy_score
        # faces scoring from `second_look` up to their copy's threshold are looked at again
        self.second_look = second_look
        self.net = YuNetNet(model, nms)

    @classmethod
    def for_photos(cls, min_face: int = PHOTO_MIN_FACE) -> YuNetFaceDetector:
        return cls(
            work_size=1_000_000,
            min_face=min_face,
            every_copy=True,
            score=PHOTO_SCORE,
            smallest=PHOTO_SMALLEST,
            step=PHOTO_PYRAMID_STEP,
            small_copy=PHOTO_SMALL_COPY,
            small_copy_score=PHOTO_SMALL_COPY_SCORE,
            second_look=PHOTO_SECOND_LOOK,
        )

    def score_at(self, scale: float) -> float:
        """The lowest score kept on the copy `scale` times the picture's size."""
        small = self.small_copy_score is not None and scale < self.small_copy
        return self.small_copy_score if small else self.score

    def first_scale(self, h: int, w: int) -> float:
        """The size of the first copy the picture is seen at, as a share of its own."""
        return min(
            self.smallest / self.min_face if self.min_face else math.inf,
            self.work_size / max(h, w),
            math.sqrt(self.max_pixels / (h * w)),
        )

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        scale = self.first_scale(h, w)
        faces: list[Face] = []
        large: list[Face] = []
        # the faces under their copy's threshold, looked at again only in the end, where no face
        # ranked before them covers them (video: at once, as its copies stop at the first found)
        doubtful: set[int] = set()
        while True:
            last = min(h, w) * scale <= LARGEST  # a face filling the shorter side fits here
            found = []
            for f in self._detect_at(image, scale):
                if f.score >= self.score_at(scale):
                    found.append(f)
                elif f.score >= self.second_look:
                    if self.every_copy:
                        found.append(f)
                        doubtful.add(id(f))
                    elif self.looks_like_a_face(image, f):
                        found.append(f)
            # a face too large for YuNet at this size is found, better, on the next copy; one
            # found on two copies is kept from the larger, where YuNet sees it in more detail,
            # also when it is a weak face a second look confirmed (on the tuning photos, ranking
            # those after every face over its copy's threshold found fewer faces, more false ones).
            # Photos keep the too large ones too, after all others: a face that YuNet finds only
            # too large (a degraded one, say) is still found
            fits = [f for f in found if last or f.box[2] * scale <= LARGEST]
            faces += sorted(fits, key=lambda f: -f.score)
            if self.every_copy:
                large += [f for f in found if not (last or f.box[2] * scale <= LARGEST)]
            if last or (faces and len(fits) == len(found) and not self.every_copy):
                return non_max_suppression(
                    faces + sorted(large, key=lambda f: -f.score),
                    accept=lambda f: id(f) not in doubtful or self.looks_like_a_face(image, f),
                )
            scale /= self.step

    def looks_like_a_face(self, image: np.ndarray, face: Face) -> bool:
        """The second look: YuNet on the face's surroundings in the picture, resized so that its
        box is each of SECOND_LOOK_WIDTHS px wide, finds the same face there (a box overlapping
        it by SECOND_LOOK_IOU or more) with a best score that, averaged over the sizes (0 where
        none), reaches SECOND_LOOK_SCORE. A box far from a face's shape (over twice as tall as
        wide, or over twice as wide as tall) is no face."""
        x, y, w, h = face.box
        if not (w > 0 and h > 0 and 0.5 <= h / w <= 2):
            return False
        cx, cy, half = x + w / 2, y + h / 2, SECOND_LOOK_CONTEXT * max(w, h) / 2
        x0, y0 = max(math.floor(cx - half), 0), max(math.floor(cy - half), 0)
        region = image[y0 : max(math.ceil(cy + half), 0), x0 : max(math.ceil(cx + half), 0)]
        if region.size == 0:
            return False
        total = 0.0
        for width in SECOND_LOOK_WIDTHS:
            rows, size = self._rows(region, width / w, 0.2)  # weaker rows would add next to nothing
            sx, sy = size[0] / region.shape[1], size[1] / region.shape[0]
            seen = ((x - x0) * sx, (y - y0) * sy, w * sx, h * sy)  # the face's box in the view
            same = [r[14] for r in rows if iou(tuple(r[:4]), seen) >= SECOND_LOOK_IOU]
            total += max(same, default=0.0)
        return bool(total / len(SECOND_LOOK_WIDTHS) >= SECOND_LOOK_SCORE)

    def _detect_at(self, image: np.ndarray, scale: float) -> list[Face]:
        """Faces of the picture seen `scale` times its size: whole, or, where that copy would have
        more than TILE x TILE pixels, in tiles that overlap by more than the largest face YuNet
        finds at that size, so that memory stays bounded on a 48-megapixel photo."""
        h, w = image.shape[:2]
        if w * h * scale * scale <= TILE * TILE:
            return self._detect(image, scale)
        # every face YuNet keeps at this size (at most LARGEST px wide, and its boxes are less
        # than 1.5 times as tall as wide) lies inside some tile at least EDGE px from its edges:
        # one within EDGE px of an edge inside the picture is left to that tile (or, too large
        # here, to the next copy), as it may be a part of a face the edge cuts
        overlap = round(1.5 * LARGEST) + 2 * EDGE
        side, step = round(TILE / scale), round((TILE - overlap) / scale)
        edge = EDGE / scale
        faces = []
        for y in range(0, max(h - side, 0) + step, step):
            for x in range(0, max(w - side, 0) + step, step):
                x1, y1 = min(x + side, w), min(y + side, h)
                for face in self._detect(image[y:y1, x:x1], scale, x, y):
                    bx, by, bw, bh = face.box
                    if not (
                        (x > 0 and bx < x + edge)
                        or (y > 0 and by < y + edge)
                        or (x1 < w and bx + bw > x1 - edge)
                        or (y1 < h and by + bh > y1 - edge)
                    ):
                        faces.append(face)
        return faces

    def _rows(self, image: np.ndarray, scale: float, score: float) -> tuple[list, tuple[int, int]]:
        """YuNet's rows scoring `score` or more on the picture resized by `scale`, in that copy's
        pixels, and the copy's size (width, height). Rows of garbage (infinities, boxes off the
        picture), which YuNet gives on tiny inputs, are left out."""
        h, w = image.shape[:2]
        size = (max(round(w * scale), 1), max(round(h * scale), 1))
        if size != (w, h):
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, size, interpolation=interpolation)
        return [r for r in self.net.detect(image, score) if _plausible(r, size)], size

    def _detect(self, image: np.ndarray, scale: float, x0: int = 0, y0: int = 0) -> list[Face]:
        """YuNet on the picture (or a tile of it at x0, y0) resized by `scale`."""
        h, w = image.shape[:2]
        rows, size = self._rows(image, scale, min(self.score_at(scale), self.second_look))
        sx, sy = w / size[0], h / size[1]
        faces = []
        for row in rows:
            x, y, bw, bh = (row[:4] * (sx, sy, sx, sy)).tolist()
            box = (round(x + x0), round(y + y0), round(bw), round(bh))
            marks = row[4:14].reshape(5, 2) * (sx, sy) + (x0, y0)
            faces.append(Face(box, marks, float(row[14])))
        return faces


class YuNetNet:
    """The YuNet network run by onnxruntime, with OpenCV's decoding (cv2.FaceDetectorYN's):
    the picture padded with black to multiples of 32 px, fed as BGR 0-255; at strides 8, 16 and
    32, one candidate per grid cell with score sqrt(cls * obj), a box centred at (cell + offset) *
    stride of size exp(log-size) * stride and landmarks at (cell + offset) * stride; then
    non-maximum suppression. Rows as FaceDetectorYN's: box (x, y, w, h), 10 landmark coordinates,
    score. onnxruntime runs this network about twice as fast as OpenCV's own DNN module on an
    AVX2 CPU (experiments/benchmark.py: 69 against 36, 91 against 44 frames of 640x480 a second
    on two days), and takes pictures of any size without a new network."""

    STRIDES = (8, 16, 32)

    def __init__(self, model: Path, nms: float = 0.3, top_k: int = 5000):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).splitlines()[0][:100]
            raise FerError(f"{model} is not a valid ONNX model: {first}") from e
        self.outputs = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in self.STRIDES]
        self.nms, self.top_k = nms, top_k

    def detect(self, image: np.ndarray, score: float = VIDEO_SCORE) -> np.ndarray:
        """Rows (N, 15) of the faces scoring at least `score` in a uint8 picture, gray (as three
        equal channels) or BGR."""
        h, w = image.shape[:2]
        blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
        blob[0, :, :h, :w] = image if image.ndim == 2 else _bgr(image).transpose(2, 0, 1)
        found = dict(zip(self.outputs, self.session.run(self.outputs, {"input": blob})))
        cols = [blob.shape[3] // stride for stride in self.STRIDES]
        rows = [self._decode(found, s, c, score) for s, c in zip(self.STRIDES, cols)]
        faces = np.concatenate(rows)
        if len(faces) > 1:
            keep = cv2.dnn.NMSBoxes(
                faces[:, :4].astype(int).tolist(),
                faces[:, 14].tolist(),
                score,
                self.nms,
                top_k=self.top_k,
            )
            faces = faces[np.asarray(keep, int).reshape(-1)]
        return faces

    def _decode(self, found: dict, stride: int, cols: int, threshold: float) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # garbage rows are dropped later
            cls, obj = (np.clip(found[f"{k}_{stride}"][0, :, 0], 0, 1) for k in ("cls", "obj"))
            score = np.sqrt(cls * obj)
            cells = np.flatnonzero(score >= threshold)
            col = (cells % cols).astype(np.float32)[:, None]
            row = (cells // cols).astype(np.float32)[:, None]
            box = found[f"bbox_{stride}"][0, cells]
            size = np.exp(box[:, 2:4]) * stride
            corner = (np.hstack([col, row]) + box[:, :2]) * stride - size / 2
            marks = found[f"kps_{stride}"][0, cells].reshape(-1, 5, 2)
            marks = ((marks + np.stack([col, row], -1)) * stride).reshape(-1, 10)
        return np.hstack([corner, size, marks, score[cells, None]]).astype(np.float32)


def _plausible(row: np.ndarray, size: tuple[int, int]) -> bool:
    """A YuNet row (box, landmarks, score) that can be a face of a picture of `size` (w, h): finite,
    a box of positive size at most twice the picture's, overlapping it."""
    x, y, bw, bh = row[:4]
    w, h = size
    return bool(
        np.isfinite(row[:15]).all()
        and 0 < bw <= 2 * w
        and 0 < bh <= 2 * h
        and -bw < x < w
        and -bh < y < h
    )


def non_max_suppression(
    faces: list[Face], overlap: float = 0.3, accept: Callable[[Face], bool] | None = None
) -> list[Face]:
    """The faces left when, of any two whose boxes overlap by more than `overlap` (IoU), only the
    earlier in the list is kept: list them in the order of preference. `accept`, where given, is
    asked of each face that no kept face overlaps, and a face it refuses is dropped (and covers
    none after it): a costly check made only where it can change what is kept."""
    kept: list[Face] = []
    for face in faces:
        if all(iou(face.box, k.box) <= overlap for k in kept) and (accept is None or accept(face)):
            kept.append(face)
    return kept


#: The Haar cascade's window (haarcascade_frontalface_default.xml): the smallest face it sees, in
#: pixels of the copy it scans.
HAAR_WINDOW = 24


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, run on a copy shrunk to `work_width` pixels for speed.

    `min_face` is the smallest face searched for, in pixels of the original image (None or 0:
    from the cascade's window, HAAR_WINDOW px, at `work_width`). With `grow`, a copy wider than
    `work_width` is scanned where `min_face` would be narrower than the window there, up to the
    image's own size. The defaults suit video (640x480 at 30+ FPS on a 2-core CPU); photos use a
    wider work size and finer steps.
    """

    def __init__(
        self,
        work_width: int = 240,
        min_face: int | None = 80,
        scale_factor: float = 1.2,
        min_neighbors: int = 4,
        grow: bool = False,
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
        self.grow = grow

    name = "haar"

    @classmethod
    def for_photos(cls, min_face: int | None = None) -> HaarFaceDetector:
        """Photos seen 800 px wide: faces from HAAR_WINDOW px there (24 px in photos up to 800 px
        wide, 3% of the width in wider ones), or from `min_face` px, seen as wide as that needs."""
        return cls(work_width=800, min_face=min_face, scale_factor=1.1, min_neighbors=5, grow=True)

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = to_gray(image)
        h, w = gray.shape[:2]
        scale = min(1.0, self.work_width / w) if self.work_width else 1.0
        if self.grow and self.min_face:  # narrower than the cascade's window there: wider
            scale = min(1.0, max(scale, HAAR_WINDOW / self.min_face))
        small = (
            cv2.resize(
                gray,
                (max(round(w * scale), 1), max(round(h * scale), 1)),  # a strip keeps a row
                interpolation=cv2.INTER_AREA,
            )
            if scale < 1
            else gray
        )
        small = cv2.equalizeHist(small)
        min_px = max(round((self.min_face or 0) * scale), HAAR_WINDOW)
        found = self.cascade.detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_px, min_px),
        )
        return [
            Face(tuple(int(round(v / scale)) for v in box)) for box in (found if len(found) else [])
        ]


#: The smallest face looked for in video by default: VIDEO_MIN_FACE px, or a sixth of the frame's
#: shorter side in frames smaller than 480 px (a 320x240 clip: 40 px), whose faces are smaller too.
#: YuNet looks at frames up to VIDEO_WORK_SIZE px on their longer side, where it finds faces from
#: VIDEO_MIN_FACE px: in larger frames the faces it finds surely are larger in proportion (240 px
#: in 1920x1080), whatever the smallest face asked for (a larger first copy would leave the faces
#: close to the camera unfound: video looks at the smaller copies only when the first finds no
#: face, or one too large for it); Haar looks for a smallest face given at the size it needs.
VIDEO_MIN_FACE, VIDEO_MIN_FACE_SHARE, VIDEO_WORK_SIZE = 80, 6, 640


def video_min_face(height: int, width: int) -> int:
    """The smallest face to look for in frames of this size (VIDEO_MIN_FACE)."""
    return min(VIDEO_MIN_FACE, min(height, width) // VIDEO_MIN_FACE_SHARE)


def make_detector(name: str, photos: bool = False, min_face: int | None = None) -> FaceDetector:
    """The detector called `name` (yunet or haar), set up for photos or for video, looking for
    faces of at least `min_face` px (default: 40 in photos, VIDEO_MIN_FACE in video, which
    EmotionTracker sets by each frame's size (video_min_face); Haar in photos: HAAR_WINDOW px of
    the photo seen 800 px wide)."""
    if name == "yunet":
        if photos:
            return YuNetFaceDetector.for_photos(PHOTO_MIN_FACE if min_face is None else min_face)
        return YuNetFaceDetector(
            min_face=VIDEO_MIN_FACE if min_face is None else min_face, work_size=VIDEO_WORK_SIZE
        )
    if name == "haar":
        if photos:
            return HaarFaceDetector.for_photos(min_face)
        if min_face:
            return HaarFaceDetector(min_face=min_face, grow=True)
        return HaarFaceDetector(min_face=VIDEO_MIN_FACE if min_face is None else min_face)
    raise FerError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """A decoded image (gray, BGR, BGRA; 8 or 16 bit) as 8-bit grayscale at its own size."""
    image = to_uint8(image)
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


def crop_views(
    gray: np.ndarray,
    face: Face,
    align: bool = True,
    scale: float = 1.0,
    jitter: tuple[tuple[float, float, float], ...] = CROP_JITTER,
) -> np.ndarray:
    """(V, 48, 48) uint8: one face cropped as crop_face crops it, at each (shift right, shift down,
    side) of `jitter` (shifts in box widths, in the face's upright frame; side as a share of
    `scale` box widths). The face is turned upright once, on a square that holds every view and
    has crop_face's square at its centre, a whole number of pixels from each edge: a view of no
    shift and side 1 is crop_face's crop; the others are placed to the nearest pixel."""
    w = max(face.box[2], 1)  # a box rounded to no width is still cropped, as crop_face crops it
    m, side0 = crop_transform(face, align, scale)
    reach = max((side * scale / 2 + max(abs(dx), abs(dy))) * w for dx, dy, side in jitter)
    margin = max(math.ceil(reach - side0 / 2), 0)
    m[:, 2] += margin
    patch_side = side0 + 2 * margin
    patch = cv2.warpAffine(
        gray, m, (patch_side, patch_side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    views = []
    for dx, dy, side in jitter:
        n = max(int(round(side * scale * w)), 1)
        at = [margin + (side0 - n) / 2 + d * w for d in (dx, dy)]
        x0, y0 = (min(max(round(a), 0), max(patch_side - n, 0)) for a in at)
        views.append(to_face48(patch[y0 : y0 + n, x0 : x0 + n]))
    return np.stack(views)


def crop_faces(
    gray: np.ndarray,
    faces: list[Face],
    align: bool = True,
    scale: float = 1.0,
    jitter: tuple[tuple[float, float, float], ...] | None = None,
) -> np.ndarray:
    """The detected faces of a grayscale image as (N, 48, 48) uint8, or with `jitter` as
    (N, V, 48, 48): every face at each of its views (crop_views)."""
    if jitter:
        views = [crop_views(gray, f, align, scale, jitter) for f in faces]
        return np.stack(views) if views else np.zeros((0, len(jitter), 48, 48), np.uint8)
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
        default=DETECTORS[0],
        choices=DETECTORS,
        help="face detector: YuNet (CNN, five landmarks) or OpenCV's Haar cascade",
    )
    parser.add_argument(
        "--no-align", action="store_true", help="crop faces as found, without levelling the eyes"
    )


def add_photo_options(parser) -> None:
    """--min-face and --no-jitter, shared by fer.predict and fer.serve (how photos are read)."""
    import argparse

    def positive(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
        return value

    parser.add_argument(
        "--min-face",
        type=positive,
        help="photos: the smallest face to look for, in pixels of the photo; smaller finds smaller "
        "faces and takes longer (default: 40 for YuNet; for Haar 24, or 3%% of the width of "
        "photos over 800 px wide). YuNet looks at a photo at 50 megapixels at most: in larger "
        "photos (over 5.6 MP at 40) it sees the smallest faces smaller and finds fewer of them",
    )
    parser.add_argument(
        "--no-jitter",
        action="store_true",
        help="photos: read each face from one crop of its box, not the mean of nine crops a little "
        "shifted and scaled (nine times less classifier work; on the photo benchmark 1-2 points "
        "fewer faces read right)",
    )


def face_options_given(args) -> list[str]:
    """The options of add_face_options and add_photo_options given other than as their defaults:
    how faces are found and cropped, which a run without a detector has no use for."""
    given = {
        "--detector": args.detector != DETECTORS[0],
        "--no-align": args.no_align,
        "--min-face": args.min_face is not None,
        "--no-jitter": args.no_jitter,
    }
    return [option for option, is_given in given.items() if is_given]
