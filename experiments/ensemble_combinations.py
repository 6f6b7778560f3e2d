"""PublicTest accuracy of every combination of candidate ensemble members, before exporting any.

Each member (a checkpoint or an export) scores the PublicTest faces once, with flip TTA as the
exported ensemble does inside (`fer.export --flip`); each member alone, then every combination of
two or more, the plain mean of their probabilities, is scored on all faces and without the faces
`fer.analyze` lists in leaked.txt. Weights stay in float32 here, so the exported (float16)
ensemble may differ by a face.
On data without PublicTest, the faces are the share of Training the members held out (the share
and seed their runs recorded), as fer.evaluate takes them.

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

from fer.common import FerError, run_cli  # noqa: E402


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
    from time_to_accuracy import pairs

    from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION
    from fer.data import PUBLIC_TEST, evaluation_split, load_fer, not_listed, read_exclusions
    from fer.inference import load_classifier

    members = dict(pairs(args.members, "member"))  # a member without NAME= refused before any work
    classifiers = {name: load_classifier(model) for name, model in members.items()}
    data = load_fer(args.data)
    # on data without PublicTest, the share of training faces the members held out, as
    # fer.evaluate takes it (fer.train's default where none is recorded); members that do not
    # record one share and seed may each have trained on faces the others held out
    splits = {
        c.training_split() or (DEFAULT_VAL_FRACTION, DEFAULT_SEED) for c in classifiers.values()
    }
    if not (data.usage == PUBLIC_TEST).any() and len(splits) > 1:
        raise FerError(
            f"{args.data} has no PublicTest faces, and the members do not record one validation "
            "share and seed: no training faces are known to be held out from all of them"
        )
    fraction, seed = splits.pop()
    index, _, note = evaluation_split(data, "val", fraction, seed)
    print(note, file=sys.stderr)
    faces, labels = data.images[index].numpy(), data.labels[index].numpy()
    kept = not_listed(data, index, read_exclusions(args.skip, data))
    probs = {name: c.predict_proba(faces, tta=args.tta) for name, c in classifiers.items()}

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
