"""The README's detection picture: a 640x480 video of FER-2013 test faces (the first PublicTest
face, in file order, of four emotions) on a textured background, run through `fer.detect` with its
defaults but --smooth 1 (YuNet, alignment, the shipped model, each frame on its own); one
annotated frame per face, tiled 2x2 (an image
of OUT's kind by its extension: the README's is JPEG).

    python experiments/detect_demo.py [--data data/fer2013] [--out docs/detect_frame.jpg]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import FerError, atomic_path, check_outputs, run_cli  # noqa: E402
from fer.demo import face_video  # noqa: E402
from fer.detect import main as detect  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/fer2013")
    p.add_argument(
        "--out", default="runs/detect_frame.jpg", help="the README's picture: docs/detect_frame.jpg"
    )
    args = p.parse_args(argv)
    # refused before the work: a folder, a place no file can be made, a kind OpenCV cannot write
    check_outputs({"--out": args.out})
    if not cv2.haveImageWriter(args.out):
        raise FerError(
            f"--out {args.out}: OpenCV writes no image of this kind; end the name in .jpg or .png"
        )
    faces = []
    for emotion in ("happy", "surprise", "angry", "sad"):
        found = sorted((Path(args.data) / "test" / emotion).glob("PublicTest_*"))
        if not found:
            raise FerError(
                f"no PublicTest face in {Path(args.data) / 'test' / emotion}: --data names "
                "FER-2013 in Kaggle's folder layout (train/, test/)"
            )
        faces.append(cv2.imread(str(found[0]), cv2.IMREAD_GRAYSCALE))
    with tempfile.TemporaryDirectory() as tmp:
        video, annotated = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        lines = Path(tmp) / "frames.jsonl"
        per_face = 15
        face_video(video, faces, frames=per_face * len(faces), size=220, hold=per_face)
        detect(
            ["--source", str(video), "--output", str(annotated), "--json", str(lines)]
            + ["--smooth", "1"]
        )
        boxed = {r["frame"] for r in map(json.loads, lines.read_text().splitlines()) if r["boxes"]}
        # one annotated frame per face, the one nearest the middle of its stretch with a box
        picks = []
        for k in range(len(faces)):
            middle = k * per_face + per_face // 2
            found = sorted((i for i in boxed if i // per_face == k), key=lambda i: abs(i - middle))
            if found:
                picks.append(found[0])
        if not picks:
            raise SystemExit("no frame had a detected face")
        cap = cv2.VideoCapture(str(annotated))
        tiles = []
        for i in picks:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, frame = cap.read()
            if ok:
                tiles.append(frame)
        while len(tiles) < 4:
            tiles.append(np.zeros_like(tiles[0]))
        grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
        ok, encoded = cv2.imencode(Path(args.out).suffix, grid)
        if not ok:
            raise FerError(f"OpenCV could not encode {args.out}")
        with atomic_path(args.out) as part:  # an interrupted write leaves the old picture
            part.write_bytes(encoded.tobytes())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
