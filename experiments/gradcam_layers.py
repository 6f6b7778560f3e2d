"""Which layer should Grad-CAM read? For each feature-map size of the shipped model's networks,
the mean drop of the true class's probability when the hottest 15% of each PublicTest face's map
is masked (set to the mean face), against the same mask moved to a random place; and the share of
maps that are flat (nothing to show). The larger the gap, the better the map points at what
drives the prediction.

Usage: python experiments/gradcam_layers.py [--data data/fer2013] [--model checkpoints] [--faces 500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import FerError, run_cli  # noqa: E402
from fer.data import PUBLIC_TEST, load_fer  # noqa: E402
from fer.gradcam import cam_maps, masking_drop, target_layers  # noqa: E402
from fer.inference import load_classifier  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/fer2013")
    p.add_argument("--model", help="default: the shipped model")
    p.add_argument("--faces", type=int, default=500)
    args = p.parse_args(argv)
    if args.faces < 1:
        p.error("--faces must be 1 or more")
    data = load_fer(args.data)
    index = (data.usage == PUBLIC_TEST).nonzero().flatten()
    if not len(index):
        raise FerError(f"{args.data} has no PublicTest faces (files or rows marked so) to map")
    pick = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(0))]
    faces, labels = data.images[pick[: args.faces]].numpy(), data.labels[pick[: args.faces]].numpy()
    classifier = load_classifier(args.model)
    model = classifier.model
    print(f"{'map size':>8} {'hot drop':>9} {'random drop':>12} {'gap':>7} {'flat maps':>10}")
    for size in (48, 24, 12, 6, 3):
        layers = target_layers(model, size)
        hot, moved = masking_drop(model, faces, labels, layers, mirror=classifier.mirror)
        maps = cam_maps(model, faces, labels, layers, classifier.mirror)
        flat = float((maps.reshape(len(maps), -1).std(1) < 1e-3).mean())
        print(f"{size:>8} {hot:>9.4f} {moved:>12.4f} {hot - moved:>7.4f} {flat:>10.1%}")


if __name__ == "__main__":
    run_cli(main)
