"""Ensemble subsets: what each subset of an exported ensemble's members would score, and cost a face.

    python experiments/ensemble_subsets.py --model runs/photo/four --data data/fer2013 \\
        [--photos 150] [--seed 0] [--faces N] [--out docs/ensemble_subsets]

The model is an ensemble exported with `fer.export --flip` and its member graphs (`onnx_parts`, as
the shipped model is): each member runs alone through onnxruntime on the face and on its mirror,
exactly as the ensemble's own graph runs it, so a subset's answer is the plain mean of its members'
pieces. For every subset of one or more members: PublicTest accuracy (the validation split, where
models are chosen), the points it loses on the same faces degraded as photos degrade them
(`fer.evaluate.photo_degradations`), the labels of the faces YuNet finds in the photos of
`experiments/photo_benchmark.py` (the same photos for a seed; the faces are found and cropped once)
against the same faces as 48x48 crops, and the milliseconds a face costs: the sum of its members'
times, each member timed alone on one face and its mirror (the median of 200 runs; the subset's
one graph would save a call per member, about 0.1 ms). `--faces N` scores N PublicTest faces drawn
with the seed instead of all of them: a quick look (choose models on all of them). Writes OUT.json
and OUT.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_benchmark import check_out, match, photo_files  # noqa: E402

from fer.common import FerError, machine, run_cli, write_text  # noqa: E402
from fer.data import PUBLIC_TEST, load_fer  # noqa: E402
from fer.evaluate import photo_degradations  # noqa: E402

SIDES = ("face", "mirror")


def member_ms(classifier, face: np.ndarray, part: int, runs: int = 200) -> float:
    """Median milliseconds of one member on one face and its mirror (two rows of one run)."""
    for _ in range(20):
        classifier.predict_proba(face, part=part)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        classifier.predict_proba(face, part=part)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def public_test_sample(count: int, faces: int | None, seed: int) -> np.ndarray:
    """Positions of the PublicTest faces scored: all `count` of them, or `faces` drawn with `seed`
    (in PublicTest's order)."""
    if faces is None or faces >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, faces, replace=False))


def pieces(classify, faces: np.ndarray, parts: int) -> np.ndarray:
    """(parts, 2, N, 7): every member's probabilities of the faces and of their mirrors."""
    return np.stack([np.stack([classify(faces, side, p) for side in SIDES]) for p in range(parts)])


def photo_faces(rec, faces, labels, photos: int, seed: int):
    """(crops of the found faces, the same faces as FER-2013 gives them, their labels): the photos
    of photo_benchmark.py for `seed`, read as fer.predict reads them, each face found once."""
    from rich.progress import track

    found, crops, truth = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        made = photo_files(faces, labels, photos, seed, Path(tmp))
        for path, _, placed, *_ in track(made, description="photos", transient=True):
            located, cropped = rec.locate(path)
            for (_, label, i), hit in zip(placed, match([f.box for f in located], placed)):
                if hit is not None:
                    found.append(cropped[hit])
                    crops.append(faces[i])
                    truth.append(label)
    if not found:
        raise FerError(f"YuNet found no face in the {photos} photos; try more (--photos)")
    return np.stack(found), np.stack(crops), np.asarray(truth)


def accuracy(probs: np.ndarray, members: tuple[int, ...], labels: np.ndarray) -> float:
    return 100 * float((probs[list(members)].mean((0, 1)).argmax(1) == labels).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="an ensemble exported with --flip (a folder)")
    p.add_argument("--data", required=True, help="FER-2013 folder or CSV with PublicTest faces")
    p.add_argument(
        "--photos", type=int, default=150, help="photos of photo_benchmark.py (1 or more)"
    )
    p.add_argument("--seed", type=int, default=0, help="photo_benchmark.py's seed (0: tuning)")
    p.add_argument(
        "--faces",
        type=int,
        help="score this many PublicTest faces, drawn with --seed (default: all)",
    )
    p.add_argument(
        "--out",
        default="runs/ensemble_subsets",
        help="writes OUT.json and OUT.md (the docs' record: docs/ensemble_subsets)",
    )
    args = p.parse_args(argv)
    if args.photos < 1:
        p.error("--photos must be at least 1")
    if args.faces is not None and args.faces < 1:
        p.error("--faces must be at least 1")
    check_out(p, args.out)  # before minutes of work, not after

    from fer.inference import load_classifier
    from fer.recognizer import EmotionRecognizer

    classifier = load_classifier(args.model, backend="onnx")
    if classifier.parts < 2 or not classifier.mirror:
        p.error(f"{args.model} is not an ensemble exported with --flip and member graphs")
    parts = classifier.parts
    data = load_fer(args.data)
    index = (data.usage == PUBLIC_TEST).nonzero().flatten().numpy()
    if not len(index):
        p.error(f"{args.data} has no PublicTest faces")
    faces, labels = data.images[index].numpy(), data.labels[index].numpy()
    sample = public_test_sample(len(index), args.faces, args.seed)

    ms = [member_ms(classifier, faces[:1], part) for part in range(parts)]

    def classify(x, side, part):
        return classifier.predict_proba(x, side=side, part=part)

    scored, scored_labels = faces[sample], labels[sample]
    clean = pieces(classify, scored, parts)
    degraded = {k: pieces(classify, x, parts) for k, x in photo_degradations(scored).items()}
    rec = EmotionRecognizer(classifier, detector="yunet")
    found, crops, truth = photo_faces(rec, faces, labels, args.photos, args.seed)

    def read(x, side, part):  # a found face's views, averaged as EmotionRecognizer reads them
        return rec.classify(x, side=side, part=part)

    found, crops = pieces(read, found, parts), pieces(classify, crops, parts)

    rows = []
    for r in range(1, parts + 1):
        for members in itertools.combinations(range(parts), r):
            acc = accuracy(clean, members, scored_labels)
            drops = {k: acc - accuracy(v, members, scored_labels) for k, v in degraded.items()}
            on_photos, as_crops = accuracy(found, members, truth), accuracy(crops, members, truth)
            rows.append(
                {
                    "members": list(members),
                    "public_test": acc,
                    "degraded_drop": drops,
                    "degraded_drop_mean": float(np.mean(list(drops.values()))),
                    "photo_labels": on_photos,
                    "photo_crops": as_crops,
                    "photo_gap": as_crops - on_photos,
                    "ms_face": sum(ms[m] for m in members),
                }
            )
    record = {
        "command": "python experiments/ensemble_subsets.py " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "model": args.model,
        "public_test_faces": len(sample),
        "public_test_drawn_from": len(index),  # all of them unless --faces
        "seed": args.seed,  # of the photos and of the faces drawn
        "photo_faces_found": len(truth),
        "member_ms": ms,
        "subsets": rows,
    }
    write_text(f"{args.out}.json", json.dumps(record, indent=2) + "\n")
    write_text(f"{args.out}.md", table(record))
    print(table(record))
    return 0


def table(record: dict) -> str:
    scored = f"{record['public_test_faces']} faces"
    if record["public_test_drawn_from"] > record["public_test_faces"]:
        scored += f" of {record['public_test_drawn_from']}, drawn with seed {record['seed']}"
    lines = [
        "# Ensemble subsets",
        "",
        "What each subset of an ensemble's members scores on PublicTest, loses on the same faces "
        "degraded as photos degrade them (mean of dark, bright, noise, blur, JPEG-40), and reads of "
        "the faces YuNet finds in experiments/photo_benchmark.py's photos against the same faces "
        "as 48x48 crops; the time a face is the sum of its members' (onnxruntime).",
        "",
        f"`{record['command']}` ({record['machine']}; members numbered as in "
        f"{record['model']}/model.json, from 0)",
        "",
        f"| members | PublicTest ({scored}) | points lost degraded, "
        f"mean | photo faces found ({record['photo_faces_found']}): labels | as crops | gap "
        "| ms a face (sum of members) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(record["subsets"], key=lambda r: -r["public_test"]):
        lines.append(
            f"| {' '.join(map(str, row['members']))} | {row['public_test']:.2f}% "
            f"| {row['degraded_drop_mean']:.2f} | {row['photo_labels']:.1f}% "
            f"| {row['photo_crops']:.1f}% | {row['photo_gap']:.1f} | {row['ms_face']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_cli(main)
