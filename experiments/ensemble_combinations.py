"""PublicTest accuracy of every combination of candidate ensemble members, before exporting any.

Each member (a checkpoint or an export) scores the PublicTest faces once, with flip TTA as the
exported ensemble does inside (`fer.export --flip`); every combination of two or more members is the
plain mean of their probabilities, scored on all faces and without the faces `fer.analyze` lists in
leaked.txt. Weights stay in float32 here, so the exported (float16) ensemble may differ by a face.

    python experiments/ensemble_combinations.py --data data/fer2013 \\
        --skip runs/ensemble/analysis/leaked.txt \\
        m1=runs/cnn5_strong_ema/export m2=runs/member_w160 ...   (an export, .ckpt or run folder)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("members", nargs="+", metavar="NAME=MODEL")
    p.add_argument("--data", default="data/fer2013")
    p.add_argument("--skip", help="leaked.txt from python -m fer.analyze")
    p.add_argument(
        "--tta",
        choices=["none", "flip"],
        default="flip",
        help="how each member sees a face (flip: as fer.export --flip does inside)",
    )
    args = p.parse_args(argv)
    from fer.data import evaluation_split, load_fer, not_listed, read_exclusions
    from fer.inference import load_classifier

    data = load_fer(args.data)
    index, _, _ = evaluation_split(data, "val")
    faces, labels = data.images[index].numpy(), data.labels[index].numpy()
    kept = not_listed(data, index, read_exclusions(args.skip, data))
    probs = {}
    for spec in args.members:
        name, model = spec.split("=", 1)
        probs[name] = load_classifier(model).predict_proba(faces, tta=args.tta)

    def report(names: tuple[str, ...]) -> None:
        right = np.mean([probs[n] for n in names], 0).argmax(1) == labels
        rest = (
            f"  without skipped {100 * right[kept].mean():6.2f}% "
            f"({kept.sum()} of {len(kept)} faces kept)"
            if args.skip
            else ""
        )
        print(f"{'+'.join(names):40s} {100 * right.mean():6.2f}%{rest}")

    for r in range(1, len(probs) + 1):
        for names in itertools.combinations(probs, r):
            report(names)


if __name__ == "__main__":
    run_cli(main)
