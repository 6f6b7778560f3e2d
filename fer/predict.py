"""Predict emotions on photos or folders: `python -m fer.predict PATH... [--model M] [--no-detect]`.

Finds every face (YuNet by default, or OpenCV's Haar cascade), turns it upright by its eyes, crops
it like the training images and prints the top
emotion and probabilities per face; `--json` / `--csv` write them for machines. Exit code 1 when
any input could not be read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer.common import (
    EMOTIONS,
    IMAGE_EXTENSIONS,
    FerError,
    Parser,
    add_debug_flag,
    run_cli,
    write_text,
)
from fer.faces import add_face_options


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m fer.predict", description="Predict facial emotions in images.")
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)"
    )
    p.add_argument(
        "--model",
        help="exported model folder/file, .ckpt or training run folder (default: the shipped "
        "model in checkpoints/)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: onnxruntime when the model folder has model.onnx (faster on a CPU), else torch",
    )
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="treat every image as one cropped face (like FER-2013)",
    )
    add_face_options(p)
    p.add_argument("--top-k", type=int, default=3, help="how many emotions to print per face")
    p.add_argument(
        "--tta", default="none", choices=["none", "flip", "tencrop"], help="test-time augmentation"
    )
    p.add_argument("--json", metavar="FILE", help="write results as JSON ('-' for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write results as CSV ('-' for stdout)")
    add_debug_flag(p)
    return p


def gather(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Image files named directly or found under folders; and errors for paths that give none."""
    files, errors = [], []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                errors.append(f"{p}: no images in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            errors.append(f"{p}: no such file or folder")
    return files, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise FerError("--top-k must be at least 1")
    from fer.recognizer import EmotionRecognizer

    rec = EmotionRecognizer(
        args.model,
        detector=None if args.no_detect else args.detector,
        align=not args.no_align,
        backend=args.backend,
        tta=args.tta,
    )
    files, errors = gather(args.paths)
    source = {"detector": rec.detector_name} if rec.detector_name else {}
    records, faces, crops, read = [], [], [], 0
    for f in files:
        try:
            found, face_crops = rec.locate(f)
        except (FerError, OSError) as e:
            errors.append(f"{e}, skipped")
            continue
        read += 1
        if not found:
            records.append({"file": str(f), "box": None, "note": "no face found"})
            continue
        records += [{"file": str(f), **source} for _ in found]
        faces += found
        crops.append(face_crops)
    # one batch for the faces of every image: the model is fastest on many faces at once
    results = rec.describe(faces, rec.classify(np.concatenate(crops))) if crops else []
    for record, face in zip((r for r in records if "note" not in r), results):
        record.update(face.to_dict())

    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    machine_stdout = "-" in (args.json, args.csv)
    out = sys.stderr if machine_stdout else sys.stdout
    for r in records:
        where = "" if r["box"] is None else " [x={} y={} w={} h={}]".format(*r["box"])
        if "note" in r:
            print(f"{r['file']}: {r['note']}", file=out)
            continue
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: args.top_k]
        print(
            f"{r['file']}{where}: {r['emotion']} {r['confidence']:.2f}  ("
            + ", ".join(f"{k} {v:.2f}" for k, v in top)
            + ")",
            file=out,
        )
    if args.json:
        text = json.dumps(records, indent=2) + "\n"
        sys.stdout.write(text) if args.json == "-" else write_text(args.json, text)
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "x", "y", "w", "h", "emotion", "confidence", *EMOTIONS])
        for r in records:
            box = r["box"] or ["", "", "", ""]
            probs_row = (
                [r["probabilities"][e] for e in EMOTIONS] if "probabilities" in r else [""] * 7
            )
            w.writerow(
                [
                    r["file"],
                    *box,
                    r.get("emotion", r.get("note", "")),
                    r.get("confidence", ""),
                    *probs_row,
                ]
            )
        sys.stdout.write(buf.getvalue()) if args.csv == "-" else write_text(
            args.csv, buf.getvalue()
        )
    n_faces = sum("emotion" in r for r in records)
    print(
        f"{n_faces} faces in {read} images" + (f", {len(errors)} errors" if errors else ""),
        file=sys.stderr,
    )
    if not files and not errors:
        raise FerError("no images given")
    return 1 if errors else 0


if __name__ == "__main__":
    run_cli(main)
