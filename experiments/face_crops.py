"""How the face crop and the eye alignment change accuracy on detected faces.

PublicTest faces (the validation split) are pasted, 150-230 px wide, at random places on a textured
640x480 frame, optionally turned by up to +-ANGLE degrees; each detector looks for them, and the
shipped model classifies the crops. Reported per detector: share of faces found (IoU >= 0.3 with
the pasted square), and accuracy on the found faces for each crop scale (side of the square crop
as a multiple of the detector's box width) and vertical shift (of the crop centre, in box widths),
with and without alignment, beside the model's accuracy on the same faces as 48x48 originals and
cut back from the frame at the square they were pasted into (what the frame left of them, with no
detector). `--context PIXELS` continues each face's border (reflected) by that many of its 48
pixels on each side before it is pasted, so that the square's edge is no hard line against the
background: whether that edge is what a detector's crop loses.

Usage: python experiments/face_crops.py [--data data/fer2013] [--faces 600] [--angle 25]
       [--context 0] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import check_outputs, run_cli, to_face48, write_text  # noqa: E402
from fer.data import PUBLIC_TEST, load_fer  # noqa: E402
from fer.demo import background  # noqa: E402
from fer.faces import Face, crop_faces, iou, make_detector  # noqa: E402
from fer.inference import load_classifier  # noqa: E402

SCALES = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
#: The most --context a face of the largest size pasted (230 px) leaves room for in 480 px.
MAX_CONTEXT = 25
SHIFTS = (0.0, 0.05, 0.1, 0.15)


def paste(face48: np.ndarray, rng: np.random.Generator, max_angle: float, context: int = 0):
    """A 640x480 gray frame with the face at a random place, size and angle, its border continued
    (reflected) by `context` of its pixels on each side; and the face's own square box."""
    frame = cv2.cvtColor(background(seed=int(rng.integers(1 << 30))), cv2.COLOR_BGR2GRAY)
    size = int(rng.integers(150, 231))
    extra = int(round(size * context / face48.shape[0]))  # the context's width in the frame
    x = int(rng.integers(extra, 640 - size - extra))  # (with no context, drawn as before it)
    y = int(rng.integers(extra, 480 - size - extra))
    if context:
        face48 = cv2.copyMakeBorder(face48, *[context] * 4, cv2.BORDER_REFLECT_101)
    big = cv2.resize(face48, (size + 2 * extra,) * 2, interpolation=cv2.INTER_CUBIC)
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle else 0.0
    m = cv2.getRotationMatrix2D((size / 2 + extra, size / 2 + extra), angle, 1.0)
    m[:, 2] += (x - extra, y - extra)
    mask = cv2.warpAffine(np.full_like(big, 255), m, (640, 480))
    warped = cv2.warpAffine(big, m, (640, 480))
    frame[mask > 0] = warped[mask > 0]
    return frame, (x, y, size, size)


def shifted(face: Face, dy: float) -> Face:
    x, y, w, h = face.box
    moved = None if face.landmarks is None else face.landmarks + (0, dy * w)
    return Face((x, int(round(y + dy * w)), w, h), moved, face.score)


def set_work_size(detector, size: int) -> None:
    """The size the detector looks at a frame: YuNet's longest side, Haar's width."""
    setattr(detector, "work_size" if detector.name == "yunet" else "work_width", size)


def measure(
    data,
    classifier,
    detector_name: str,
    n: int,
    max_angle: float,
    seed: int = 0,
    width: int = 0,
    context: int = 0,
):
    rng = np.random.default_rng(seed)
    index = (data.usage == PUBLIC_TEST).nonzero().flatten()
    if not len(index):
        raise SystemExit("error: the data have no PublicTest faces (files or rows marked so)")
    pick = index[torch_perm(len(index), seed)[:n]].numpy()
    n = len(pick)  # all there are, when fewer
    detector = make_detector(detector_name)
    if width:
        set_work_size(detector, width)
    crops = {(s, dy, a): [] for s in SCALES for dy in SHIFTS for a in (True, False)}
    labels, originals, squares, found, seconds = [], [], [], 0, 0.0
    for i in pick:
        frame, truth = paste(data.images[i].numpy(), rng, max_angle, context)
        t = time.perf_counter()
        faces = detector.detect(frame)
        seconds += time.perf_counter() - t
        best = max(faces, key=lambda f: iou(f.box, truth), default=None)
        if best is None or iou(best.box, truth) < 0.3:
            continue
        found += 1
        labels.append(int(data.labels[i]))
        originals.append(data.images[i].numpy())
        x, y, side, _ = truth  # (a turned face's square is cut upright: with its corners' loss)
        squares.append(to_face48(frame[y : y + side, x : x + side]))
        for s, dy, a in crops:
            crops[s, dy, a].append(crop_faces(frame, [shifted(best, dy)], a, s)[0])
    if not found:  # nothing to score: said so, rather than stacking no crops
        return {"detector": detector_name, "faces": n, "found": 0, "detect_ms": 1000 * seconds / n,
                "max_angle": max_angle, "context": context, "original_accuracy": None,
                "square_accuracy": None, "accuracy": {}}  # fmt: skip
    y = np.array(labels)

    def accuracy(faces: list[np.ndarray]) -> float:
        return float((classifier.predict_proba(np.stack(faces)).argmax(1) == y).mean())

    return {
        "detector": detector_name,
        "faces": n,
        "found": found,
        "detect_ms": 1000 * seconds / n,
        "max_angle": max_angle,
        "context": context,
        "original_accuracy": accuracy(originals),
        "square_accuracy": accuracy(squares),
        "accuracy": {
            f"scale={s} shift={dy} align={a}": accuracy(c) for (s, dy, a), c in crops.items()
        },
    }


def torch_perm(n: int, seed: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/fer2013")
    p.add_argument("--faces", type=int, default=600)
    p.add_argument("--angle", type=float, default=25.0, help="largest turn of the rotated set")
    p.add_argument("--detectors", nargs="+", default=["yunet", "haar"])
    p.add_argument("--work-width", type=int, default=0, help="detectors' work width (0: default)")
    p.add_argument(
        "--context",
        type=int,
        default=0,
        help="continue each face's border (reflected) by this many of its 48 pixels on each side "
        "(0: the square pasted with its hard edge)",
    )
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.faces < 1:
        p.error("--faces must be 1 or more")
    if not 0 <= args.context <= MAX_CONTEXT:
        p.error(f"--context must be 0-{MAX_CONTEXT} (a 230 px face and its context fill the frame)")
    check_outputs({"--json": args.json})  # before minutes of work
    data = load_fer(args.data)
    classifier = load_classifier(backend="auto")
    results = []
    for name in args.detectors:
        for angle in (0.0, args.angle):
            r = measure(
                data, classifier, name, args.faces, angle, width=args.work_width,
                context=args.context,
            )  # fmt: skip
            results.append(r)
            if not r["found"]:
                print(f"{name:6s} turned up to {angle:4.0f} deg: found no face of {r['faces']}")
                continue
            best = max(r["accuracy"], key=r["accuracy"].get)
            print(
                f"{name:6s} turned up to {angle:4.0f} deg: found {r['found']}/{r['faces']} "
                f"({r['detect_ms']:.1f} ms/frame); 48x48 originals {r['original_accuracy']:.4f}; "
                f"their squares in the frame {r['square_accuracy']:.4f}; "
                f"best crop {best} {r['accuracy'][best]:.4f}"
            )
            for key, v in r["accuracy"].items():
                print(f"    {key:32s} {v:.4f}")
    if args.json:
        write_text(args.json, json.dumps(results, indent=2) + "\n")  # atomic


if __name__ == "__main__":
    run_cli(main)
