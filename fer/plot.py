"""Training curves from a run's TensorBoard events: `python -m fer.plot --logdir lightning_logs/version_N`.

Writes curves.png (loss and accuracy, train and val, per epoch) into --out (default: the run folder),
or the picture --out names where it ends in a format matplotlib writes (.png, .pdf, .svg, .webp...).
Where the run trained with label smoothing, mixup, class weights or distillation, its train loss is
that objective, not the cross-entropy of val/loss, and the legend says so: compare the accuracies.
A run resumed from an earlier epoch's checkpoint is drawn as it went on: the epochs it trained
again replace those of the attempt it left.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fer.common import FerError, Parser, add_debug_flag, check_outputs, run_cli, save_figure

CURVES = {"loss": ("train/loss_epoch", "val/loss"), "accuracy": ("train/acc", "val/acc")}


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file in the run folder, in the order written.
    A run resumed from an earlier checkpoint logs its steps from there again: the points of the
    branch it left (those of that step and after, written before) are dropped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if logdir.is_file():
        raise FerError(f"{logdir} is a file, not a run folder; pass lightning_logs/version_N")
    if not logdir.is_dir():
        raise FerError(f"run folder {logdir} does not exist; pass lightning_logs/version_N")
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    if not tags:
        raise FerError(
            f"no TensorBoard scalars in {logdir}; pass a run folder written by fer.train"
        )
    scalars = {}
    for tag in tags:
        points: list[tuple[int, float]] = []
        for e in acc.Scalars(tag):
            while points and points[-1][0] >= e.step:  # logged again by a resumed run
                points.pop()
            points.append((e.step, e.value))
        scalars[tag] = points
    return scalars


def curve_labels(logdir: Path) -> dict[str, str]:
    """The legend of each curve. The train loss is the run's training objective, which is more
    than the cross-entropy val/loss measures where label smoothing (which alone keeps it well
    above 0), mixup, class weights or distillation are on (the run's hparams.yaml and
    config.yaml say): the two losses then do not compare, and the accuracies do."""
    import yaml

    hp: dict = {}
    for name in ("config.yaml", "hparams.yaml"):
        try:
            hp.update(yaml.safe_load((logdir / name).read_text()) or {})
        except (OSError, yaml.YAMLError, TypeError, ValueError):
            pass
    terms = [
        f"{what} {hp[key]:g}" if isinstance(hp.get(key), float) else what
        for key, what in (
            ("label_smoothing", "label smoothing"),
            ("mixup", "mixup"),
            ("class_weighted_loss", "class weights"),
            ("teacher", "distillation"),
        )
        if hp.get(key)
    ]
    train_loss = f"train objective ({', '.join(terms)})" if terms else "train"
    return {
        "train/loss_epoch": train_loss,
        "val/loss": "val cross-entropy" if terms else "val",
        "train/acc": "train",
        "val/acc": "val",
    }


def is_picture(name: str) -> bool:
    """An --out that names the picture itself, not a folder for curves.png: one ending in a
    format matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase

    return Path(name).suffix.lower().lstrip(".") in FigureCanvasBase.get_supported_filetypes()


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="python -m fer.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", required=True, help="a run folder, lightning_logs/version_N")
    p.add_argument(
        "--out",
        help="output folder for curves.png (default: the run folder), or the picture itself: a "
        "name ending in a format matplotlib writes (.png, .jpg, .pdf, .svg, .webp, .tif...)",
    )
    add_debug_flag(p)
    args = p.parse_args(argv)
    import matplotlib.pyplot as plt

    import fer.figures  # noqa: F401  (selects the Agg backend)

    logdir = Path(args.logdir)
    if args.out and is_picture(args.out):
        target = Path(args.out)
        check_outputs({"--out": args.out})  # a folder of that name, a place no file is made
    else:
        target = Path(args.out or logdir) / "curves.png"
        check_outputs({}, folders={"--out": args.out})  # an empty name, a file
    scalars = read_scalars(logdir)
    if not any(tag in scalars for tags in CURVES.values() for tag in tags):
        raise FerError(
            f"{logdir} logged no epoch yet (a run stopped in its first epoch?): no curve to draw"
        )
    epochs = dict(scalars.get("epoch", []))  # Lightning logs the epoch number at every logged step
    labels = curve_labels(logdir)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (name, tags) in zip(axes, CURVES.items()):
        for tag in tags:
            points = scalars.get(tag, [])
            if points:
                # epochs from 0, as Lightning, the checkpoints' names and the summary count them
                xs = [epochs.get(step, i) for i, (step, _) in enumerate(points)]
                ax.plot(xs, [v for _, v in points], marker="o", ms=3, label=labels[tag])
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    accuracies = scalars.get("val/acc")
    if accuracies:
        i, (step, best) = max(enumerate(accuracies), key=lambda p: p[1][1])  # the first of ties
        fig.suptitle(f"{logdir}: best val/acc {best:.4f} at epoch {int(epochs.get(step, i))}")
    else:  # --limit-val-batches 0: no accuracy to name, rather than 0
        fig.suptitle(f"{logdir}: no validation")
    save_figure(fig, target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    run_cli(main)
