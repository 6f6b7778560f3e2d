"""Synthetic test videos: faces pasted at known boxes on a textured background.

Used by the tests and by experiments/benchmark.py to measure `fer.detect` without a webcam.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def background(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A smooth random texture (BGR), so the detector has something other than a flat wall to reject."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    tex = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.addWeighted(tex, 0.6, np.full_like(tex, 110), 0.4, 0)


def face_video(
    path: str | Path,
    faces: list[np.ndarray],
    frames: int = 60,
    size: int | tuple[int, int] = 200,
    width: int = 640,
    height: int = 480,
    fps: float = 30.0,
    hold: int = 1,
    seed: int = 0,
) -> list[tuple[int, int, int, int]]:
    """Write a video whose frame i shows faces[(i // hold) % len(faces)] (48x48 gray) upscaled to
    `size` pixels (or, for a (low, high) pair, a random size per face), drifting slowly across the
    frame: an mp4 (an MJPG .avi for an .avi path), or for a .y4m path the raw YUV 4:2:0 stream
    that Chromium's fake camera plays (--use-file-for-fake-video-capture). Returns the true box
    (x, y, w, h) of each frame."""
    bg = background(width, height)
    rng = np.random.default_rng(seed)
    sizes = [
        size if isinstance(size, int) else int(rng.integers(size[0], size[1] + 1)) for _ in faces
    ]
    y4m = Path(path).suffix.lower() == ".y4m"
    if y4m:
        if width % 2 or height % 2:
            raise ValueError("a 4:2:0 video needs an even width and height")
        out = open(path, "wb")
        out.write(f"YUV4MPEG2 W{width} H{height} F{round(fps)}:1 Ip A1:1 C420\n".encode())
    else:
        from fer.detect import video_writer

        out = video_writer(Path(path), fps, width, height)
        if out is None:  # else every frame would be dropped without a word
            raise OSError(f"OpenCV cannot write the video {path} (its folder, or its extension)")
    boxes = []
    try:
        for i in range(frames):
            k = (i // hold) % len(faces)
            side = sizes[k]
            frame = bg.copy()
            x = int((width - side) / 2 + (width - side) / 4 * np.sin(i / 15))
            y = int((height - side) / 2 + (height - side) / 6 * np.cos(i / 20))
            face = cv2.resize(faces[k], (side, side), interpolation=cv2.INTER_CUBIC)
            frame[y : y + side, x : x + side] = face[..., None]
            if y4m:  # I420: the Y plane, then U and V at half size, as OpenCV lays them out
                out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            else:
                out.write(frame)
            boxes.append((x, y, side, side))
    finally:
        out.close() if y4m else out.release()
    return boxes
