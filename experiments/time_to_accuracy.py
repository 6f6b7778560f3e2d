"""PublicTest accuracy against wall-clock training time, one line per recipe, as one PNG.

Each recipe is a list of training runs done one after another (the members of an ensemble, say).
A run's curve comes from its TensorBoard events: every val/acc point at the time it was logged,
counted from the start of its event file, so the data loading before training is left out and a
run resumed later adds only its own time. A recipe's runs are laid end to end; where its product
is scored apart (an ensemble), `--final` puts that score at the end of its line, and the line
of a recipe of several runs shows the best model it has made so far.

    python experiments/time_to_accuracy.py --out docs/time_to_accuracy.png \\
        --recipe "small CNN A=runs/member_w160" --recipe "small CNN B=runs/member_w192" \\
        --recipe "shipped ensemble=@108.6:0.6918,runs/member_w160,runs/member_w192" \\
        --final "shipped ensemble=0.7151" --title "2-core CPU with AVX-512 BF16"

A run is a folder searched for `lightning_logs/version_*` (or a version folder itself);
`@MINUTES:ACC` stands for an earlier run whose events were not kept: one point, its recorded
training time and accuracy, so that the runs after it start where it ended.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_curve(folder: Path) -> list[tuple[float, float]]:
    """[(minutes since the run's start, val/acc)] from the event files of one training run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    versions = sorted(folder.glob("lightning_logs/version_*")) or [folder]
    points: list[tuple[float, float]] = []
    offset = 0.0
    for version in versions:
        for events in sorted(version.glob("events.out.tfevents.*")):  # one per start or resume
            acc = EventAccumulator(str(events), {"scalars": 0})
            acc.Reload()
            if "val/acc" not in acc.Tags()["scalars"]:
                continue
            start = acc.FirstEventTimestamp()
            vals = acc.Scalars("val/acc")
            points += [(offset + (e.wall_time - start) / 60, e.value) for e in vals]
            offset = points[-1][0]
    if not points:
        raise SystemExit(f"error: no val/acc events under {folder}")
    return points


def recipe_curve(parts: list[str]) -> list[tuple[float, float]]:
    """One run's curve; for several runs in a row, the best model the recipe has made so far."""
    line: list[tuple[float, float]] = []
    for part in parts:
        start = line[-1][0] if line else 0.0
        if part.startswith("@"):
            minutes, acc = map(float, part[1:].split(":"))
            line.append((start + minutes, acc))
        else:
            line += [(start + t, a) for t, a in run_curve(Path(part))]
    if len(parts) > 1:
        best = 0.0
        line = [(t, best := max(best, a)) for t, a in line]
    return line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append", required=True, metavar="NAME=RUN[,RUN...]")
    p.add_argument("--final", action="append", default=[], metavar="NAME=ACC")
    p.add_argument("--title", default="", help="the machine, for the plot's title")
    p.add_argument("--target", type=float, default=0.68, help="a dashed line at this accuracy")
    p.add_argument("--out", default="docs/time_to_accuracy.png")
    p.add_argument("--json", help="also write the curves here")
    args = p.parse_args()
    import matplotlib.pyplot as plt

    import fer.figures  # noqa: F401  (selects the Agg backend)
    from fer.common import save_figure

    finals = {k: float(v) for k, v in (f.split("=", 1) for f in args.final)}
    curves = {}
    for spec in args.recipe:
        name, runs = spec.split("=", 1)
        line = recipe_curve(runs.split(","))
        if name in finals:  # the product of the whole recipe, scored apart
            line.append((line[-1][0], finals[name]))
        curves[name] = line
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, line in curves.items():
        xs, ys = zip(*line)
        ax.plot(xs, [100 * y for y in ys], marker="o", ms=2.5, lw=1.4, label=name)
        top = max(range(len(ys)), key=ys.__getitem__)  # the best epoch, as a run keeps it
        ax.annotate(
            f"{100 * ys[top]:.2f}%",
            (xs[top], 100 * ys[top]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
        reached = next((x for x, y in line if y >= args.target), None)
        print(
            f"{name}: {100 * ys[-1]:.2f}% after {xs[-1]:.1f} min; "
            + (
                f"{100 * args.target:.0f}% at {reached:.1f} min"
                if reached is not None
                else f"never {100 * args.target:.0f}%"
            )
        )
    ax.axhline(100 * args.target, color="grey", ls="--", lw=0.8)
    ax.set(
        xlabel="training time, minutes",
        ylabel="PublicTest accuracy, %",
        title=f"Time to accuracy{': ' + args.title if args.title else ''}",
    )
    ax.set_ylim(bottom=40)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, args.out)
    if args.json:
        Path(args.json).write_text(json.dumps(curves, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
