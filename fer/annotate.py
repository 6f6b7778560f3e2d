"""Faces drawn on a picture the way fer shows them: a box in the emotion's colour, the emotion and
its probability on a filled label, every emotion's probability as bars on a dark panel beside the
face, and, for video, the frames per second. `fer.detect` draws its frames and `fer.predict --save`
its photos with it."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fer.common import EMOTIONS
from fer.inference import FLOAT_OVERSHOOT
from fer.recognizer import FaceEmotion

COLORS = {  # BGR
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (40, 160, 255),
    "neutral": (180, 180, 180),
}


def _inks(frame: np.ndarray):
    """The picture's own colour for an 8-bit BGR one: 16-bit values, float ones on 0..1 (or on
    0..255, where the picture's values go beyond 0..1), an opaque alpha after BGRA's colour, a
    gray's luminance."""
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    if frame.ndim not in (2, 3) or channels not in (1, 3, 4):
        raise TypeError(
            f"fer.annotate.draw draws on gray, BGR or BGRA pictures, not of shape {frame.shape}"
        )
    if frame.dtype.kind == "f":
        scale = 1 if frame.size and np.nanmax(frame) > 1 + FLOAT_OVERSHOOT else 1 / 255
    else:
        scale = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 257}.get(frame.dtype)
    if scale is None:
        raise TypeError(
            f"fer.annotate.draw draws on uint8, uint16 or float pictures, not {frame.dtype}"
        )

    def ink(bgr: tuple[int, int, int]) -> tuple:
        if channels == 1:
            bgr = (0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2],)
        values = tuple(v * scale for v in bgr) + ((255 * scale,) if channels == 4 else ())
        return values if frame.dtype.kind == "f" else tuple(round(v) for v in values)

    return ink


def _thick(scale: float) -> int:
    """The stroke of text drawn at `scale`."""
    return max(1, round(scale * 2))


def _text_box(text: str, scale: float) -> tuple[int, int, int]:
    """(width, height) of the filled box `_text` draws for `text` at `scale`, and the text's own
    height above its baseline."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, _thick(scale))
    return tw + 8, th + base + 6, th


def _text(frame: np.ndarray, text: str, x: int, y: int, scale: float, fg, bg) -> int:
    """Text with its top-left corner at (x, y) on a filled box, legible on any background; the y
    of the box's bottom edge."""
    w, h, th = _text_box(text, scale)
    cv2.rectangle(frame, (x, y), (x + w, y + h), bg, -1)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, _thick(scale)
    cv2.putText(frame, text, (x + 4, y + th + 3), font, scale, fg, thick, cv2.LINE_AA)
    return y + h


def _panel_x(width: int, box, size: tuple[int, int], top: int, others: list) -> int:
    """Where a face's panel of `size` (width, height) starts, its top at `top`: beside the face,
    right where it fits the picture, else left, on the side that covers the least of the other
    faces' boxes (right where they tie); a face filling the picture's width, at its left edge. A
    whole picture's (no box): at its left edge."""
    if box is None:
        return 0
    x, _, w, _ = box
    sides = [x + w + 6, x - size[0] - 6]
    inside = [bx for bx in sides if bx >= 0 and bx + size[0] < width]
    if not inside:
        return sides[0] if sides[0] + size[0] < width else max(sides[1], 0)

    def covered(bx: int) -> int:
        return sum(
            max(0, min(bx + size[0], ox + ow) - max(bx, ox))
            * max(0, min(top + size[1], oy + oh) - max(top, oy))
            for ox, oy, ow, oh in others
        )

    return min(inside, key=covered)  # the first of ties: right


def draw(
    frame: np.ndarray, faces: Sequence[FaceEmotion], fps: float | None = None, bars: bool = True
) -> None:
    """Draw the faces (and the frames per second, when given) on a picture in place (BGR, BGRA or
    gray; 8-bit, 16-bit or float, as fer.recognizer.as_image gives it), in its own values; sizes
    follow the picture's size (tuned for 640x480, and as large as they fit a 640x480 picture
    scaled to fit this one: a panorama's panel is no taller than the panorama). A face without a
    box (the whole picture, as fer.predict --no-detect reads it) gets no box, its label and bars
    at the picture's top left (bars where they leave half the picture free, nothing on a picture
    under four labels tall or narrower than its label, such as a 64x64 crop)."""
    if not frame.flags.writeable:
        raise ValueError(
            "fer.annotate.draw draws in place, and this picture is read-only: pass a "
            "copy (picture.copy())"
        )
    if not frame.flags.c_contiguous:  # a view (rgb[..., ::-1], bgra[..., :3]): OpenCV draws
        canvas = np.ascontiguousarray(frame)  # on whole arrays only
        draw(canvas, faces, fps, bars)
        frame[...] = canvas
        return
    ink = _inks(frame)
    unit = max(min(frame.shape[1] / 640, frame.shape[0] / 480), 0.5)
    row, bar_w, name_w = round(18 * unit), round(90 * unit), round(66 * unit)
    panel_w = name_w + bar_w + round(8 * unit)

    def others(face: FaceEmotion) -> list:
        return [f.box for f in faces if f is not face and f.box is not None]

    for face in faces:
        color = ink(COLORS[face.emotion])
        whole = face.box is None  # the picture is the face (--no-detect)
        label = f"{face.emotion} {face.confidence:.0%}"
        if whole:  # a crop too small for a label that does not hide it (64x64): left as it is
            label_w, label_h, _ = _text_box(label, 0.65 * unit)
            if frame.shape[0] < 4 * label_h or frame.shape[1] < label_w:
                continue
        x, y, w, h = (0, 0, frame.shape[1], frame.shape[0]) if whole else face.box
        if not whole:
            cv2.rectangle(frame, (x, y), (x + w, y + h), color, max(2, round(2 * unit)))
        # the label inside the picture, also for a face its edge cuts (a close selfie's)
        label_x = min(max(x, 0), max(frame.shape[1] - _text_box(label, 0.65 * unit)[0] - 1, 0))
        top = max(y - round(26 * unit), 0)
        below = _text(frame, label, label_x, top, 0.65 * unit, ink((0, 0, 0)), color)
        panel_h = row * len(EMOTIONS) + 4
        # a whole picture's panel goes under its label, where it leaves half the picture free
        fits = below + 1 + panel_h <= frame.shape[0] and 2 * panel_w <= frame.shape[1]
        if bars and (fits or not whole):
            by = below + 1 if whole else min(max(y, 0), max(frame.shape[0] - panel_h, 0))
            bx = _panel_x(frame.shape[1], face.box, (panel_w, panel_h), by, others(face))
            roi = frame[by : by + panel_h, bx : bx + panel_w]
            shade = roi if roi.ndim == 2 else roi[..., :3]  # (not the alpha)
            shade[:] = (shade * 0.35).astype(frame.dtype)  # darken the background under the panel
            for i, name in enumerate(EMOTIONS):  # by name: `probabilities` may be in any order
                v = face.probabilities.get(name, 0.0)
                top = by + 2 + i * row
                cv2.putText(
                    frame,
                    name,
                    (bx + 4, top + row - 5),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45 * unit,
                    ink((255, 255, 255)),
                    1,
                    cv2.LINE_AA,
                )
                x0 = bx + name_w
                cv2.rectangle(
                    frame, (x0, top + 3), (x0 + bar_w, top + row - 3), ink((90, 90, 90)), 1
                )
                cv2.rectangle(
                    frame,
                    (x0, top + 3),
                    (x0 + int(bar_w * v), top + row - 3),
                    ink(COLORS[name]),
                    -1,
                )
    if fps is not None:
        _text(frame, f"{fps:5.1f} FPS", 8, 8, 0.65 * unit, ink((255, 255, 255)), ink((0, 0, 0)))
