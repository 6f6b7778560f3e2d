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

A run is a folder searched for `lightning_logs/version_*` (or a version folder itself), or a
results record (docs/results/*.json) with a `curve` of [minutes, val/acc] an epoch; `@MINUTES:ACC`
stands for an earlier run whose events were not kept: one point, its recorded training time and
accuracy, so that the runs after it start where it ended.

`--clock NAME=RUN` draws a recipe trained on another machine on this plot's clock: its k-th
validation at the time RUN (the same network and batch size, trained on the plot's machine) ended
its k-th epoch. The line is dashed, and its label says so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import run_cli  # noqa: E402


def run_curve(folder: Path) -> list[tuple[float, float]]:
    """[(minutes since the run's start, val/acc)] from the event files of one training run, or
    from the `curve` of a results record."""
    if folder.suffix == ".json":
        curve = json.loads(folder.read_text()).get("curve")
        if not curve:
            raise SystemExit(f"error: {folder} has no curve")
        return [(float(t), float(a)) for t, a in curve]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    versions = (
        sorted(  # by number: version_10 after version_2
            folder.glob("lightning_logs/version_*"),
            key=lambda v: (0, int(v.name[8:]), "") if v.name[8:].isdigit() else (1, 0, v.name),
        )
        or [folder]
    )
    points: list[tuple[float, float]] = []
    offset = 0.0
    for version in versions:
        for events in sorted(version.glob("events.out.tfevents.*")):  # one per start or resume
            acc = EventAccumulator(str(events), {"scalars": 0})
            acc.Reload()
            tags = acc.Tags()["scalars"]
            if "val/acc" not in tags:
                continue
            # the first value logged, not the file's first event: a copy made by ship_logs.py
            # starts its file with an event of the copying time
            start = min(e.wall_time for tag in tags for e in acc.Scalars(tag))
            vals = acc.Scalars("val/acc")
            points += [(offset + (e.wall_time - start) / 60, e.value) for e in vals]
            offset = points[-1][0]
    if not points:
        raise SystemExit(f"error: no val/acc events under {folder}")
    return points


def point(part: str) -> tuple[float, float]:
    """(minutes, accuracy) of a point written @MINUTES:ACC: minutes of 0 or more, an accuracy
    as a fraction of 0 to 1."""
    try:
        minutes, acc = map(float, part[1:].split(":"))
    except ValueError:
        minutes = acc = math.nan
    if not (0 <= minutes < math.inf and 0 <= acc <= 1):
        raise SystemExit(
            f"error: {part}: write a point as @MINUTES:ACC, minutes of 0 or more and the "
            "accuracy a fraction (@108.6:0.6918)"
        )
    return minutes, acc


def recipe_curve(parts: list[str]) -> list[tuple[float, float]]:
    """One run's curve; for several runs in a row, the best model the recipe has made so far."""
    line: list[tuple[float, float]] = []
    for part in parts:
        start = line[-1][0] if line else 0.0
        if part.startswith("@"):
            minutes, acc = point(part)
            line.append((start + minutes, acc))
        else:
            line += [(start + t, a) for t, a in run_curve(Path(part))]
    if len(parts) > 1:
        best = 0.0
        line = [(t, best := max(best, a)) for t, a in line]
    return line


def on_clock(line: list[tuple[float, float]], clock: list[tuple[float, float]]):
    """`line`'s accuracies at the times of `clock`'s points, one for one (an epoch for an epoch)."""
    if len(clock) < len(line):
        raise SystemExit(f"error: --clock run has {len(clock)} epochs, fewer than {len(line)}")
    return [(t, a) for (t, _), (_, a) in zip(clock, line)]


def spread(ys: list[float], gap: float) -> list[float]:
    """Heights for labels wanted at `ys`, each two at least `gap` apart and, within that, as close
    to their own as can be (least squares; in the order given). Sorted by height, position i minus
    i * gap must not decrease, which pooling adjacent violators solves: a run of labels too close
    together moves as one block, centred on the mean of what its labels want."""
    order = sorted(range(len(ys)), key=lambda i: (ys[i], i))
    blocks: list[list[float]] = []  # [sum of wanted heights less i * gap, labels]
    for rank, i in enumerate(order):
        blocks.append([ys[i] - rank * gap, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, n = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += n
    out = [0.0] * len(ys)
    rank = 0
    for total, n in blocks:
        for _ in range(n):
            out[order[rank]] = total / n + rank * gap
            rank += 1
    return out


def label_places(
    anchors: list[tuple[float, float]], width: float, gap: float
) -> list[tuple[float, float]]:
    """Where labels `width` wide go, wanted at the anchors (all in the same units, display points,
    say): labels whose spans would overlap sideways form a column at the rightmost of their
    anchors, spread apart by `gap`; the others stay where they are wanted."""
    order = sorted(range(len(anchors)), key=lambda i: (anchors[i][0], i))
    places = list(anchors)
    group: list[int] = []
    for i in order + [None]:
        right = max((anchors[j][0] for j in group), default=0.0)
        if group and (i is None or anchors[i][0] >= right + width):
            for j, h in zip(group, spread([anchors[j][1] for j in group], gap)):
                places[j] = (right, h)
            group = []
        if i is not None:
            group.append(i)
    return places


def label_best_epochs(ax, labels: list[tuple[float, float, float, str]], size: float = 8) -> None:
    """Each line's best accuracy written just right of the line's end, at its own height unless
    labels would overlap, then in a column spread apart, with a thin leader to the best epoch."""
    to_points = ax.transData + ax.figure.dpi_scale_trans.inverted()  # data -> inches
    anchors = [tuple(72 * to_points.transform((x, y))) for x, y, *_ in labels]
    places = label_places(anchors, width=4.2 * size, gap=1.3 * size)
    for (_, acc, best_x, colour), (px, py) in zip(labels, places):
        ax.annotate(
            f"{acc:.2f}%",
            xy=(best_x, acc),
            xytext=to_points.inverted().transform(((px + 8) / 72, py / 72)),
            textcoords="data",
            va="center",
            fontsize=size,
            color=colour,
            bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.8),
            arrowprops=dict(arrowstyle="-", lw=0.5, color=colour, shrinkA=0, shrinkB=2),
        )


def pairs(specs: list[str], flag: str):
    """NAME=VALUE options as (NAME, VALUE), with a one-line error for one without '='."""
    for spec in specs:
        if "=" not in spec:
            raise SystemExit(f"error: {flag} {spec!r}: expected NAME=VALUE")
        yield tuple(spec.split("=", 1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append", required=True, metavar="NAME=RUN[,RUN...]")
    p.add_argument("--final", action="append", default=[], metavar="NAME=ACC")
    p.add_argument(
        "--clock",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="draw recipe NAME (trained elsewhere) at the epoch times of RUN, trained here",
    )
    p.add_argument("--title", default="", help="the machine, for the plot's title")
    p.add_argument("--target", type=float, default=0.68, help="a dashed line at this accuracy")
    p.add_argument(
        "--out",
        default="runs/time_to_accuracy.png",
        help="the docs' plot: docs/time_to_accuracy.png",
    )
    p.add_argument("--json", help="also write the curves here")
    args = p.parse_args(argv)
    from fer.common import check_outputs, save_figure, write_text

    check_outputs({"--out": args.out, "--json": args.json})  # before any curve is read
    import matplotlib.pyplot as plt

    import fer.figures  # noqa: F401  (selects the Agg backend)

    finals = {k: float(v) for k, v in pairs(args.final, "--final")}
    clocks = dict(pairs(args.clock, "--clock"))
    curves = {}
    for spec in args.recipe:
        name, runs = next(pairs([spec], "--recipe"))
        parts = runs.split(",")
        line = recipe_curve(parts)
        if name in clocks:  # a single run's epochs, one for one
            if len(parts) > 1 or parts[0].startswith("@"):
                raise SystemExit(f"error: --clock {name}: a recipe of one run with its epochs only")
            line = on_clock(line, run_curve(Path(clocks[name])))
        if name in finals:  # the product of the whole recipe, scored apart
            line.append((line[-1][0], finals[name]))
        curves[name] = line
    for flag, names in (("--clock", clocks), ("--final", finals)):
        if set(names) - set(curves):
            raise SystemExit(
                f"error: {flag} names no --recipe: {', '.join(sorted(set(names) - set(curves)))}"
            )
    fig, ax = plt.subplots(figsize=(8, 4.8))
    labels = []  # (x of the line's end, best accuracy, x of the best epoch, colour)
    for name, line in curves.items():
        xs, ys = zip(*line)
        lone = len(line) == 1  # a run whose events were not kept: its recorded point only
        drawn = ax.plot(
            xs,
            [100 * y for y in ys],
            marker="o",
            ms=6 if lone else 2.5,
            lw=1.4,
            ls="--" if name in clocks else "-",
            label=name,
        )
        top = max(range(len(ys)), key=ys.__getitem__)  # the best epoch, as a run keeps it
        labels.append((xs[-1], 100 * ys[top], xs[top], drawn[0].get_color()))
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
    ax.set_ylim(40, ax.get_ylim()[1])  # fixed before the labels are placed in points
    ax.set_xlim(ax.get_xlim()[0], 1.1 * max(x for x, *_ in labels))  # room for the last label
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    label_best_epochs(ax, labels)
    save_figure(fig, args.out)  # both atomic: an interrupt leaves the old files
    if args.json:
        write_text(args.json, json.dumps(curves, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
