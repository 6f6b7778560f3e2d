"""Evaluate a trained model on a FER-2013 split: metrics, tables and figures.

`python -m fer.evaluate [--ckpt PATH] --data PATH [--split test|val] [--tta none|flip|tencrop] [--out DIR] [--json]`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer.common import (
    EMOTIONS,
    NUM_CLASSES,
    FerError,
    OutputSet,
    Parser,
    add_debug_flag,
    count,
    counted,
    run_cli,
    same_data,
    save_figure,
    write_text,
)

log = logging.getLogger("fer")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m fer.evaluate", description="Evaluate a trained FER model on a data split."
    )
    p.add_argument(
        "--ckpt",
        help="exported model folder/file, Lightning .ckpt or training run folder (its best "
        "checkpoint) (default: the model shipped in checkpoints/)",
    )
    p.add_argument(
        "--data",
        help="FER-2013: a Kaggle CSV (fer2013.csv, icml_face_data.csv, train.csv) or a folder with train/ test/ (default: data/fer2013, downloaded from Kaggle with kagglehub when it is not there; a path given here is never downloaded)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val", "train"],
        help="test = PrivateTest (or, without Kaggle's markers, the test folder or test.csv; "
        "without either, val); val = PublicTest (on "
        "data without it, the share of training faces the model's run held out, which is held "
        "out from it only if it was trained on these data: the output says when not)",
    )
    p.add_argument(
        "--tta", default="none", choices=["none", "flip", "tencrop"], help="test-time augmentation"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: what fer.predict and fer.detect run, onnxruntime when the model folder has "
        "the model.onnx its model.json records, else torch (always torch with --gradcam)",
    )
    p.add_argument(
        "--out", help="folder for metrics.json and figures (nothing is written without it)"
    )
    p.add_argument(
        "--json", action="store_true", help="print the metrics as JSON instead of a table"
    )
    p.add_argument(
        "--gradcam",
        type=count,
        default=0,
        metavar="N",
        help="also draw Grad-CAM heatmaps for N faces per emotion",
    )
    p.add_argument(
        "--skip",
        metavar="FILE",
        help="leave out the faces named in this file (leaked.txt from python -m fer.analyze: "
        "val/test faces with an exact copy in training)",
    )
    p.add_argument(
        "--compare",
        metavar="MODEL",
        help="also score this model on the same faces, and test with McNemar's exact test whether "
        "the two differ by more than chance",
    )
    p.add_argument("--cache-dir", help="dataset cache folder")
    add_debug_flag(p)
    return p


def photo_degradations(faces: np.ndarray) -> dict[str, np.ndarray]:
    """Faces (N, 48, 48) as photos degrade them, at 48x48: under- and over-exposed, noisy, soft and
    JPEG-compressed (the kinds of condition experiments/photo_benchmark.py applies to whole photos,
    here applied to the 48x48 faces themselves): the robustness figures of the model card and
    experiments/ensemble_subsets.py."""
    import cv2

    f = faces.astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 6, f.shape)
    jpeg = [cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, 40])[1] for x in faces]
    out = {
        "dark": f * 0.4,
        "bright": f * 1.4 + 40,
        "noise": f + noise,
        "blur": np.stack([cv2.GaussianBlur(x, (0, 0), 1.0) for x in f]),
        "jpeg40": np.stack([cv2.imdecode(j, cv2.IMREAD_GRAYSCALE) for j in jpeg]),
    }
    return {k: np.clip(v, 0, 255).astype(np.uint8) for k, v in out.items()}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """Counts: rows are true classes, columns predictions."""
    return np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)


def p_text(p: float) -> str:
    """'= 0.0312', or '< 1e-300' for a p-value below what a float holds (it comes out as 0)."""
    return f"= {p:.3g}" if p >= 1e-300 else "< 1e-300"


def wilson_interval(right: int, total: int, z: float = 1.959964) -> list[float]:
    """Wilson's score interval (95% by default) for an accuracy of right / total: the range that
    sampling `total` faces alone leaves it in."""
    if total == 0:
        return [0.0, 1.0]
    p, z2 = right / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * np.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return [float(max(centre - half, 0.0)), float(min(centre + half, 1.0))]


def mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value for two models scored on the same faces, from the faces
    only the first gets right and those only the second does: the chance of a split at least this
    uneven if either model were as likely as the other to be the one right."""
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision / recall / F1 / support from a confusion matrix.
    As scikit-learn computes them: macro-F1 is the mean over the classes of the labels or the
    predictions (a class predicted but without faces counts 0); a class without faces has no
    recall, and, unless it was predicted, no precision or F1 either (None, null in JSON)."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(tp),
        where=(precision + recall) > 0,
    )
    present = (support > 0) | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "accuracy_ci95": wilson_interval(int(tp.sum()), int(cm.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "samples": int(cm.sum()),
        "per_class": {
            name: {
                "precision": float(precision[i]) if present[i] else None,
                "recall": float(recall[i]) if support[i] else None,
                "f1": float(f1[i]) if present[i] else None,
                "support": int(support[i]),
            }
            for i, name in enumerate(EMOTIONS)
        },
        "confusion_matrix": cm.tolist(),
    }


def format_table(m: dict[str, Any]) -> str:
    lo, hi = m["accuracy_ci95"]
    lines = [f"{'emotion':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, r in m["per_class"].items():
        # a class without faces here has no recall: n/a rather than 0
        precision, recall, f1 = (
            f"{'n/a':>10}" if r[k] is None else f"{r[k]:>10.3f}"
            for k in ("precision", "recall", "f1")
        )
        lines.append(f"{name:<10}{precision}{recall}{f1}{r['support']:>10d}")
    lines.append(
        f"\naccuracy {m['accuracy']:.4f} (95% CI {lo:.3f}-{hi:.3f})   macro-F1 {m['macro_f1']:.4f}   "
        f"on {m['samples']} faces"
    )
    return "\n".join(lines)


def write_figures(
    out: Path, m: dict[str, Any], faces: np.ndarray, y: np.ndarray, probs: np.ndarray, label: str
) -> list[Path]:
    """confusion_matrix.png, per_class_accuracy.png and confident_errors.png into `out`."""
    import matplotlib.pyplot as plt

    from fer.figures import confusion_figure, face_grid

    cm = np.array(m["confusion_matrix"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    for ax, normalized in zip(axes, (False, True)):
        confusion_figure(
            cm, "row-normalised" if normalized else "counts", normalized=normalized, ax=ax
        )
    fig.suptitle(f"{label}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}", y=1.03)
    paths = [out / "confusion_matrix.png"]
    save_figure(fig, paths[-1])

    recall = [m["per_class"][e]["recall"] for e in EMOTIONS]  # None: a class without faces
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = ax.bar(EMOTIONS, [r or 0 for r in recall], color=plt.cm.tab10(np.arange(NUM_CLASSES)))
    ax.bar_label(bars, labels=["n/a" if r is None else f"{r:.2f}" for r in recall])
    ax.axhline(m["accuracy"], color="k", ls="--", lw=1, label=f"overall {m['accuracy']:.3f}")
    ax.set(ylim=(0, 1.05), ylabel="accuracy (recall)", title=f"Per-class accuracy — {label}")
    ax.legend(loc="lower right")
    paths.append(out / "per_class_accuracy.png")
    save_figure(fig, paths[-1])

    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]])][:32]
    captions = [
        f"true {EMOTIONS[y[i]]}\npred {EMOTIONS[pred[i]]} {probs[i, pred[i]]:.2f}" for i in order
    ]
    fig = face_grid(faces[order], captions, cols=8, title=f"Most confidently wrong — {label}")
    paths.append(out / "confident_errors.png")
    save_figure(fig, paths[-1])
    return paths


def gradcam_figure(classifier, faces: np.ndarray, y: np.ndarray, per_class: int):
    """Grad-CAM maps for the true class of a few faces per emotion (fer.gradcam chooses the layer)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from fer.figures import face_grid
    from fer.gradcam import cam_maps, target_layers

    if classifier.model is None:
        raise FerError("--gradcam needs the PyTorch backend")
    rng = np.random.default_rng(0)
    pick = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(NUM_CLASSES)]
    )
    model = classifier.model
    heat = cam_maps(model, faces[pick], y[pick], target_layers(model), classifier.mirror)
    overlays = np.stack(
        [
            show_cam_on_image(
                np.repeat(faces[i][..., None] / 255.0, 3, axis=2).astype(np.float32),
                h,
                use_rgb=True,
            )
            for i, h in zip(pick, heat)
        ]
    )
    return face_grid(
        overlays,
        [EMOTIONS[c] for c in y[pick]],
        cols=per_class * 2 if per_class <= 4 else per_class,
        title="Grad-CAM: regions that drive the true emotion",
    )


def evaluate(
    classifier,
    data_path: str,
    split: str = "test",
    tta: str = "none",
    cache_dir: str | None = None,
    skip: str | None = None,
):
    """(metrics, faces, labels, probabilities, note) for one split of a dataset, without the
    faces named in the file `skip`. metrics["split"] names the split actually scored; on data
    without PublicTest markers, val is the share of training faces the model itself held out."""
    from fer.data import (
        PUBLIC_TEST,
        load_fer,
        not_listed,
        read_exclusions,
    )

    data = load_fer(data_path, cache_dir)
    known = classifier.training_split()
    index, scored, note = split_for(classifier, data, split)
    if scored == "val" and not (data.usage == PUBLIC_TEST).any():  # a share drawn from train
        configs = classifier.training_configs()
        shares = {(c.get("seed"), c.get("val_fraction")) for c in configs if c}
        if known is None and all(configs) and len(shares) > 1 and None not in sum(shares, ()):
            held = ", ".join(f"seed {s} at {f:.0%}" for s, f in sorted(shares))
            note += (
                f"; CAUTION: the model's networks held out other shares of these data ({held}), "
                "so this share (fer.train's defaults) holds faces some of them trained on"
            )
        elif known is None:
            note += "; the model does not record its split, so fer.train's defaults were assumed"
        trained_on = {(c or {}).get("data") for c in configs}
        if None in trained_on:
            note += (
                "; CAUTION: the model does not record the data it was trained on, so this share "
                "may not be held out from it"
            )
        elif not all(same_data(d, data_path) for d in trained_on):
            note += (
                f"; CAUTION: the model was trained on {', '.join(sorted(trained_on))}, not on "
                f"{data_path}, so this share was not held out from it and may hold faces it "
                "trained on"
            )
    if skip:
        listed = read_exclusions(skip, data)
        keep = not_listed(data, index, listed)
        note += f", without {counted(int((~keep).sum()), 'face')} listed in {skip}"
        if listed and not listed & set(data.names):  # an empty list: nothing to skip
            note += " (none of its names is a face of these data: a list made for other data?)"
        if len(index) and not keep.any():
            raise FerError(f"all {len(index)} faces of the {scored} split are listed in {skip}")
        index = index[np.flatnonzero(keep)]
    if tta == "flip" and classifier.spec.options.get("flip"):
        from fer.inference import FLIP_ADDS_NOTHING

        note += f"; {FLIP_ADDS_NOTHING}"
    if len(index) == 0:
        raise FerError(f"{data_path} has no samples in the {split} split")
    faces = data.images[index].numpy()
    y = data.labels[index].numpy()
    probs = classifier.predict_proba(faces, tta=tta)
    m = metrics_from_confusion(confusion_matrix(y, probs.argmax(1)))
    m["split"] = scored
    return m, faces, y, probs, note


def compare(other, args: argparse.Namespace, faces: np.ndarray, probs: np.ndarray, y: np.ndarray):
    """Another model scored on the faces the first was: its accuracy, the faces only one of the two
    gets right, and McNemar's exact p-value for that split."""
    m, other_faces, _, other_probs, note = evaluate(
        other, args.data, args.split, args.tta, args.cache_dir, args.skip
    )
    if other_faces.shape != faces.shape or not np.array_equal(other_faces, faces):
        raise FerError(other_faces_error(other))
    right, other_right = probs.argmax(1) == y, other_probs.argmax(1) == y
    only_this, only_other = int((right & ~other_right).sum()), int((other_right & ~right).sum())
    return {
        "model": other.source,
        "accuracy": m["accuracy"],
        "only_this_right": only_this,
        "only_other_right": only_other,
        "mcnemar_p": mcnemar_p(only_this, only_other),
        "evaluated": note,  # its CAUTIONs too: the faces may not be held out from it
    }


def other_faces_error(other) -> str:
    return (
        f"--compare: {other.source} is scored on other faces of this split (on data without "
        "PublicTest each model's validation faces are the share its own run held out); "
        "compare them on data with a PublicTest split"
    )


def split_for(classifier, data, split: str):
    """evaluation_split of `data` for this model: (the positions of the faces `evaluate` scores,
    before --skip; the split they are; a note), by the share of training faces its run held out
    (fer.train's defaults where it records none)."""
    from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION
    from fer.data import evaluation_split

    fraction, seed = classifier.training_split() or (DEFAULT_VAL_FRACTION, DEFAULT_SEED)
    return evaluation_split(data, split, fraction, seed)


#: What --out holds after a run: its figures, and metrics.json, written last.
OUTPUTS = (
    "confusion_matrix.png",
    "per_class_accuracy.png",
    "confident_errors.png",
    "gradcam.png",
    "metrics.json",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from fer.data import exclusion_list
    from fer.download import resolve_data
    from fer.inference import load_classifier, records_graph

    if args.out is not None:  # refused before the faces are scored, as are the models below
        outputs = OutputSet(args.out, OUTPUTS, "metrics.json")
    backend = "torch" if args.gradcam and args.backend == "auto" else args.backend
    classifier = load_classifier(args.ckpt, backend=backend)
    graph = Path(classifier.source).parent / "model.onnx"  # beside the weights, as auto needs
    if backend != args.backend and records_graph(classifier.spec) and graph.is_file():
        print(
            "note: --gradcam scores the model with PyTorch (its float weights), not the ONNX "
            "graph fer.predict runs: the figures may differ from those by a few faces",
            file=sys.stderr,
        )
    if args.gradcam > 0 and classifier.model is None:
        raise FerError("--gradcam needs the PyTorch backend: leave out --backend onnx")
    try:
        other = load_classifier(args.compare, backend=args.backend) if args.compare else None
    except FerError as e:  # said of the compared model, not of --ckpt's
        raise FerError(f"--compare {args.compare}: {e}") from e
    if args.skip:  # before the data is fetched or decoded
        exclusion_list(args.skip)
    args.data = resolve_data(args.data)
    if other is not None:  # models that score other faces are refused before either is scored
        from fer.data import load_fer

        data = load_fer(args.data, args.cache_dir)
        mine, theirs = (np.asarray(split_for(c, data, args.split)[0]) for c in (classifier, other))
        if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
            raise FerError(other_faces_error(other))
    m, faces, y, probs, note = evaluate(
        classifier, args.data, args.split, args.tta, args.cache_dir, args.skip
    )
    from fer.data import model_key

    m.update(
        {
            "model": classifier.source,
            "model_key": model_key(Path(classifier.source)),
            "data": args.data,
            "requested_split": args.split,
            "evaluated": note,
            "tta": args.tta,
            "skipped_list": args.skip,
            "backend": classifier.backend,
        }
    )
    if other is not None:
        m["comparison"] = compare(other, args, faces, probs, y)
    print(note, file=sys.stderr)
    if (
        args.out is not None
    ):  # the set of files replaces an earlier run's whole (its gradcam.png too)
        out = Path(args.out)
        label = f"{Path(args.data).name} {m['split']}, TTA {args.tta}"
        with outputs as folder:
            files = write_figures(folder, m, faces, y, probs, label)
            if args.gradcam > 0:
                files.append(folder / "gradcam.png")
                save_figure(gradcam_figure(classifier, faces, y, args.gradcam), files[-1])
            write_text(folder / "metrics.json", json.dumps(m, indent=2) + "\n")
            files = [out / f.name for f in files] + [out / "metrics.json"]
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(format_table(m) + f"   (TTA {args.tta}, {classifier.backend})")
        if args.compare:
            c = m["comparison"]
            print(
                f"against {c['model']}: accuracy {c['accuracy']:.4f}; only this model right on "
                f"{c['only_this_right']} faces, only the other on {c['only_other_right']}: exact "
                f"McNemar p {p_text(c['mcnemar_p'])}"
            )
            if "CAUTION" in c["evaluated"]:
                print(f"{c['model']}: {c['evaluated']}", file=sys.stderr)
        if args.out is not None:
            print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    run_cli(main)
