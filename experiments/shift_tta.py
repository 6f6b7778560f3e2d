"""How far one model's PublicTest accuracy moves when every face is shifted by a pixel or three.

The model (default: the shipped one, through the backend `fer.predict` uses) scores the PublicTest
faces as they are, then shifted by 1, 2 and 3 pixels left, right, up and down (the edge pixels
repeated into the gap; training augmentation shifts faces by up to 4.8 pixels, or 5.8 with
`strong`, so these are faces of the kind it learned on). It prints the accuracy of each shifted copy alone, and of the mean
probabilities over the faces as they are and their four shifts of one size (shift TTA):

    python experiments/shift_tta.py --data data/fer2013 [--model checkpoints] [--skip leaked.txt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import run_cli  # noqa: E402


def shift(faces: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(N, 48, 48) uint8 faces moved right by dx and down by dy pixels, edges repeated."""
    p = max(abs(dx), abs(dy))
    padded = F.pad(faces[:, None].float(), (p, p, p, p), mode="replicate")[:, 0]
    h, w = faces.shape[-2:]
    return padded[:, p - dy : p - dy + h, p - dx : p - dx + w].to(torch.uint8)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/fer2013")
    p.add_argument("--model", help="exported model, checkpoint or run folder (default: shipped)")
    p.add_argument("--skip", help="leaked.txt from python -m fer.analyze: also score without them")
    p.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 3], help="pixels")
    args = p.parse_args(argv)
    from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION
    from fer.data import evaluation_split, load_fer, not_listed, read_exclusions
    from fer.inference import load_classifier

    classifier = load_classifier(args.model, backend="auto")
    data = load_fer(args.data)
    # on data without PublicTest, the share of training faces the model held out, as fer.evaluate
    fraction, seed = classifier.training_split() or (DEFAULT_VAL_FRACTION, DEFAULT_SEED)
    index, _, note = evaluation_split(data, "val", fraction, seed)
    print(note, file=sys.stderr)
    faces, labels = data.images[index], data.labels[index].numpy()
    kept = not_listed(data, index, read_exclusions(args.skip, data))

    def score(name: str, probs: np.ndarray) -> None:
        right = probs.argmax(1) == labels
        rest = (
            f"  without skipped {100 * right[kept].mean():6.2f}% "
            f"({kept.sum()} of {len(kept)} faces kept)"
            if args.skip
            else ""
        )
        print(f"{name:28s} {100 * right.mean():6.2f}%{rest}", flush=True)

    plain = classifier.predict_proba(faces)
    score("as they are", plain)
    for s in args.shifts:
        moves = {"right": (s, 0), "left": (-s, 0), "down": (0, s), "up": (0, -s)}
        views = {k: classifier.predict_proba(shift(faces, *d)) for k, d in moves.items()}
        for k, v in views.items():
            score(f"shifted {s} px {k}", v)
        score(f"mean of the 5 views ({s} px)", np.mean([plain, *views.values()], 0))


if __name__ == "__main__":
    run_cli(main)
