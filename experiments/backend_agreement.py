"""How far an export's ONNX graph (e.g. the int8 one of `fer.export --int8`) strays from its own
float weights run by PyTorch, on the PublicTest faces (the validation split).

    python experiments/backend_agreement.py runs/ensemble_int8 --data data/fer2013
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an export folder with model.onnx")
    p.add_argument("--data", default="data/fer2013")
    args = p.parse_args(argv)
    from fer.data import evaluation_split, load_fer
    from fer.inference import load_classifier

    data = load_fer(args.data)
    index, _, _ = evaluation_split(data, "val")
    faces = data.images[index].numpy()
    torch_p, onnx_p = (
        load_classifier(args.model, b).predict_proba(faces) for b in ("torch", "onnx")
    )
    differ = int((torch_p.argmax(1) != onnx_p.argmax(1)).sum())
    print(
        f"{args.model}: {differ} of {len(faces)} faces labelled differently by onnx and torch; "
        f"largest probability difference {np.abs(torch_p - onnx_p).max():.3f}"
    )


if __name__ == "__main__":
    run_cli(main)
