"""Analyse and clean a FER-2013 copy: `python -m fer.analyze --data PATH --out DIR`.

Structure (counts per split x emotion, pixel statistics, shape / channel check), visualisation
(samples per emotion, random images) and a cleaning report: blank or near-constant faces, exact
duplicates within and across splits (and, counted apart, near copies: faces at most 2 grey levels
apart at every pixel, which --near lists as copies too), and duplicates whose labels disagree.
Writes an exclusion list that `fer.train --exclude` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from collections import defaultdict
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
    save_figure,
    write_text,
)

log = logging.getLogger("fer")
BLANK_STD = 2.0  # pixel standard deviation (0..255) under which a face is treated as blank
#: Faces this many grey levels apart at most, at every pixel, are counted as near copies (a
#: copy rounded or re-encoded). In FER-2013, --near 1 and --near 2 find the same near copies,
#: --near 4 a few more (docs/data.md).
NEAR_LEVELS = 2


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m fer.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        help="FER-2013: a Kaggle CSV (fer2013.csv, icml_face_data.csv, train.csv) or a folder with train/ test/ (default: data/fer2013, downloaded from Kaggle with kagglehub when it is not there; a path given here is never downloaded)",
    )
    p.add_argument("--out", required=True, help="folder for the report, figures and exclusion list")
    p.add_argument(
        "--per-class", type=count, default=8, help="faces per emotion in the sample grid"
    )
    p.add_argument("--random", type=count, default=48, help="faces in the random grid")
    p.add_argument(
        "--blank-std",
        type=non_negative,
        default=BLANK_STD,
        help="pixel std (0..255) under which a face is blank",
    )
    p.add_argument(
        "--near",
        type=count,
        default=0,
        metavar="LEVELS",
        help="count as copies (in the groups, exclude.txt and leaked.txt) faces at most LEVELS "
        f"grey levels apart at every pixel; 0: byte-identical faces only, with the near copies "
        f"within {NEAR_LEVELS} counted apart",
    )
    p.add_argument(
        "--seed", type=count, default=0, help="seed of the sample grids' random faces (0 or more)"
    )
    p.add_argument("--json", action="store_true", help="print the cleaning report as JSON")
    p.add_argument("--cache-dir", help="dataset cache folder")
    add_debug_flag(p)
    return p


def non_negative(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):  # nan too
        raise argparse.ArgumentTypeError("must be a number, 0 or more")
    return value


def split_names(usage: np.ndarray) -> np.ndarray:
    from fer.data import USAGES

    return np.array(USAGES)[usage]


def present_splits(usage: np.ndarray) -> list[str]:
    """The splits `usage` holds, in one order whatever the source (Training, PublicTest,
    PrivateTest, train, test), for tables and figures."""
    return [str(s) for s in split_names(np.unique(usage))]


def identical(images: np.ndarray) -> list[list[int]]:
    """The faces grouped by their bytes (a group of one for a face with no copy)."""
    exact: dict[bytes, list[int]] = defaultdict(list)
    for i, img in enumerate(images):
        exact[hashlib.blake2b(img.tobytes(), digest_size=16).digest()].append(i)
    return list(exact.values())


def find_duplicates(
    images: np.ndarray,
    levels: int = 0,
    skip: np.ndarray | None = None,
    exact: list[list[int]] | None = None,
) -> list[np.ndarray]:
    """Groups (sorted index arrays, size >= 2) of byte-identical faces (`exact`: identical's, when
    already made), and with `levels`, of faces at most that many grey levels apart at every pixel,
    chained (a near b, b near c: one group); faces `skip` marks (blank ones, which are all near
    each other) are near no other."""
    groups = identical(images) if exact is None else exact
    if levels > 0:
        first = np.array([g[0] for g in groups])  # one face of each exact group
        if skip is not None:
            first = first[~skip[first]]
        root = {int(i): int(i) for i in first}

        def find(i: int) -> int:
            while root[i] != i:
                root[i] = root[root[i]]
                i = root[i]
            return i

        for a, b in near_pairs(images[first], levels):
            root[find(int(first[a]))] = find(int(first[b]))
        merged: dict[int, list[int]] = defaultdict(list)
        for g in groups:
            merged[find(g[0]) if g[0] in root else g[0]] += g
        groups = list(merged.values())
    return [np.array(sorted(g)) for g in groups if len(g) > 1]


def near_pairs(images: np.ndarray, levels: int) -> list[tuple[int, int]]:
    """The pairs (i, j) of `images` at most `levels` grey levels apart at every pixel. Faces so
    close have 8x8 block means (and means) that close too: sorted by their mean, each face is
    compared with those whose mean is within `levels` above it whose block means all are too,
    then on a few pixels, and only those left pixel by pixel."""
    n = len(images)
    if n < 2:
        return []
    faces = images.reshape(n, -1).astype(np.int16)
    h, w = images.shape[1:3]
    blocks = (
        images[:, : h - h % 8, : w - w % 8]
        .reshape(n, 8, (h - h % 8) // 8, 8, (w - w % 8) // 8)
        .mean((2, 4), dtype=np.float32)
        .reshape(n, -1)
        if h >= 8 and w >= 8
        else faces.astype(np.float32)
    )
    mean = faces.mean(1, dtype=np.float32)
    order = np.argsort(mean, kind="stable")
    ends = np.searchsorted(mean[order], mean[order] + levels + 1e-3, side="right")
    # then on 64 pixels spread over the face, which tell apart even faces of one flat tone
    probe = faces[:, np.linspace(0, faces.shape[1] - 1, 64).astype(int)]
    pairs = []
    for k, i in enumerate(order):
        others = order[k + 1 : ends[k]]
        if len(others) == 0:
            continue
        others = others[np.abs(blocks[others] - blocks[i]).max(1) <= levels + 1e-3]
        others = others[np.abs(probe[others] - probe[i]).max(1) <= levels]
        others = others[np.abs(faces[others] - faces[i]).max(1) <= levels]
        pairs += [(int(i), int(j)) for j in others]
    return pairs


def cleaning_report(
    images: np.ndarray,
    labels: np.ndarray,
    usage: np.ndarray,
    names: list[str],
    blank_std: float = BLANK_STD,
    near: int = 0,
) -> dict[str, Any]:
    """Blank faces, duplicate groups (within / across splits, conflicting labels; copies at most
    `near` grey levels apart at every pixel), the exclusion list (blank training faces and the
    training-side copies of a val/test face), the val/test faces that have such a copy
    (`leaked`), with `near` 0 what NEAR_LEVELS would add to those lists (`near_copies`), and, on data
    without PublicTest markers, where fer.train draws its validation faces from the training
    ones by its seed, the duplicate groups that draw splits at fer.train's defaults (a copy
    validating while another trains): `straddling`, None on data with markers."""
    import torch

    from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION
    from fer.data import (
        PUBLIC_TEST,
        TRAINING,
        UNMARKED_TRAIN,
        FerData,
        split_indices,
        usage_of_test,
    )

    splits = split_names(usage)
    std = images.reshape(len(images), -1).std(1)
    blank = np.flatnonzero(std < blank_std)
    exact = identical(images)
    groups = find_duplicates(images, near, skip=std < blank_std, exact=exact)
    # as fer.train splits them: test/ faces without a prefix beside PrivateTest ones are in none,
    # so neither leaked nor leaking
    training = np.isin(usage, [TRAINING, UNMARKED_TRAIN])
    held_out = np.isin(usage, [PUBLIC_TEST, usage_of_test(usage)])
    straddling = None
    if not (usage == PUBLIC_TEST).any():  # fer.train's own split, at its defaults
        data = FerData(*(torch.from_numpy(np.asarray(a)) for a in (images, labels, usage)), names)
        val = np.zeros(len(images), bool)
        val[split_indices(data, DEFAULT_VAL_FRACTION, DEFAULT_SEED)[0]["val"].numpy()] = True
        pool = training
        straddling = [[names[i] for i in g] for g in groups if (val[g] & pool[g]).any()
                      and (~val[g] & pool[g]).any()]  # fmt: skip
    # train 0, val 1 (PublicTest), test 2: a copy in PublicTest and PrivateTest crosses splits too
    split_of = held_out.astype(int) + (usage == usage_of_test(usage))  # (-1: in no split)
    split_of[~(training | held_out)] = -1
    records = []
    for g in groups:
        rec = {
            "names": [names[i] for i in g],
            "labels": [EMOTIONS[labels[i]] for i in g],
            "splits": [str(splits[i]) for i in g],
        }
        rec["cross_split"] = len(set(split_of[g].tolist()) - {-1}) > 1
        rec["conflicting_labels"] = len(set(labels[g].tolist())) > 1
        records.append(rec)
    # fer.train --exclude drops training faces only: a blank val/test face is reported, not listed
    exclude, leaked = copy_lists(groups, training, held_out, names)
    exclude |= {names[i] for i in blank if training[i]}
    near_copies = None
    if near == 0:  # what the near copies would add
        more = find_duplicates(images, NEAR_LEVELS, skip=std < blank_std, exact=exact)
        more_exclude, more_leaked = copy_lists(more, training, held_out, names)
        known = {tuple(g) for g in groups}
        near_copies = {
            "levels": NEAR_LEVELS,
            "groups": sum(tuple(g) not in known for g in more),  # with a near copy in them
            "more_exclude": sorted(more_exclude - exclude),
            "more_leaked": sorted(more_leaked - leaked),
        }
    return {
        "samples": int(len(images)),
        "blank_std_threshold": blank_std,
        "near_levels": near,
        "blank": [
            {
                "name": names[i],
                "label": EMOTIONS[labels[i]],
                "split": str(splits[i]),
                "std": round(float(std[i]), 3),
            }
            for i in blank
        ],
        "duplicate_groups": len(groups),
        "duplicate_images": int(sum(len(g) for g in groups)),
        "cross_split_groups": sum(r["cross_split"] for r in records),
        "conflicting_label_groups": sum(r["conflicting_labels"] for r in records),
        "groups": records,
        "exclude": sorted(exclude),
        "leaked": sorted(leaked),
        "near_copies": near_copies,
        "straddling": straddling,
    }


def copy_lists(
    groups: list[np.ndarray], training: np.ndarray, held_out: np.ndarray, names: list[str]
) -> tuple[set[str], set[str]]:
    """(training faces to exclude, val/test faces leaked) for these groups of copies: the
    training copies of a val/test face leak it into training (faces in neither, none)."""
    exclude: set[str] = set()
    leaked: set[str] = set()
    for g in groups:
        if held_out[g].any() and training[g].any():
            exclude |= {names[i] for i in g if training[i]}
            leaked |= {names[i] for i in g if held_out[i]}
    return exclude, leaked


def copies(rep: dict[str, Any]) -> str:
    """What the report counts as a copy: 'exact', or 'at most N grey levels apart'."""
    levels = rep.get("near_levels") or 0
    return f"at most {levels} grey levels apart" if levels else "exact"


def straddling_note(rep: dict[str, Any]) -> str:
    """What data without PublicTest markers risk: duplicates split by fer.train's own draw."""
    from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION

    return (
        "no PublicTest markers: fer.train draws its validation faces from the training ones, "
        f"and at its defaults (--seed {DEFAULT_SEED}, --val-fraction {DEFAULT_VAL_FRACTION:g}) "
        f"{len(rep['straddling'])} duplicate groups have a copy on each side (cleaning.json, "
        '"straddling"); other seeds split others'
    )


def near_lists(near: dict, quote: str = "") -> str:
    """What --near would add to the lists: val/test faces leaked and training faces excluded."""
    leaked, exclude = len(near["more_leaked"]), len(near["more_exclude"])
    return (
        f"{quote}--near {near['levels']}{quote} lists {counted(leaked, 'val/test face')} more as "
        f"leaked and {counted(exclude, 'training face')} more to exclude"
    )


def cleaning_markdown(rep: dict[str, Any], source: str) -> str:
    lines = [
        f"# Cleaning report — {source}",
        "",
        f"- samples: {rep['samples']}",
        f"- blank or near-constant faces (pixel std < {rep['blank_std_threshold']}): {len(rep['blank'])}",
        f"- duplicate groups ({'exact copies' if copies(rep) == 'exact' else 'copies ' + copies(rep)}): {rep['duplicate_groups']} "
        f"({rep['duplicate_images']} images)",
        f"- groups crossing splits (train, val = PublicTest, test): {rep['cross_split_groups']}",
        f"- groups whose labels disagree: {rep['conflicting_label_groups']}",
        f"- exclusion list for `fer.train --exclude`: {len(rep['exclude'])} training samples",
        f"- val/test faces with a training copy ({copies(rep)}; `fer.evaluate --skip "
        f"leaked.txt`): {len(rep['leaked'])}",
    ]
    if near := rep.get("near_copies"):
        n = near["groups"]
        lines.append(
            f"- near copies (at most {near['levels']} grey levels apart at every pixel): "
            f"{counted(n, 'group')} not counted above; {near_lists(near, '`')}"
        )
    if rep.get("straddling") is not None:
        lines.append(f"- {straddling_note(rep)}")
    lines.append("")
    if rep["blank"]:
        lines += [
            "## Blank faces",
            "",
            "| name | label | split | std |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {b['name']} | {b['label']} | {b['split']} | {b['std']} |" for b in rep["blank"]
        ]
        lines.append("")
    conflicts = [g for g in rep["groups"] if g["conflicting_labels"]]
    if conflicts:
        lines += [
            "## Duplicates with conflicting labels",
            "",
            "| images | labels | splits |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {', '.join(g['names'])} | {', '.join(g['labels'])} | {', '.join(g['splits'])} |"
            for g in conflicts[:200]
        ]
        lines.append("")
    return "\n".join(lines)


def structure(data) -> dict[str, Any]:
    images = data.images.numpy()
    splits = split_names(data.usage.numpy())
    counts = {
        str(s): {
            e: int(((splits == s) & (data.labels.numpy() == k)).sum())
            for k, e in enumerate(EMOTIONS)
        }
        for s in present_splits(data.usage.numpy())
    }
    flat = images.reshape(len(images), -1).astype(np.float32)
    stats = {
        str(s): {
            "mean": round(float(flat[splits == s].mean()), 2),
            "std": round(float(flat[splits == s].std()), 2),
        }
        for s in present_splits(data.usage.numpy())
    }
    return {
        "counts": counts,
        "pixel_stats": stats,
        "total": int(len(images)),
        "nonstandard_shapes": data.nonstandard,
        "unreadable_files": data.skipped,
    }


def figures(
    out: Path, data, rep: dict[str, Any], per_class: int, n_random: int, seed: int
) -> list[Path]:
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from fer.figures import face_grid

    images, labels = data.images.numpy(), data.labels.numpy()
    splits = split_names(data.usage.numpy())
    rng = np.random.default_rng(seed)
    paths = []

    df = pd.DataFrame({"emotion": np.array(EMOTIONS)[labels], "split": splits})
    fig, ax = plt.subplots(figsize=(9, 4.2))
    order = present_splits(data.usage.numpy())
    sns.countplot(df, x="emotion", hue="split", order=EMOTIONS, hue_order=order, ax=ax)
    for c in ax.containers:
        ax.bar_label(c, fontsize=7)
    ax.set_title(f"Samples per emotion and split ({len(df)} faces)")
    paths.append(out / "class_counts.png")
    save_figure(fig, paths[-1])

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    means = images.reshape(len(images), -1).mean(1)
    for s in order:
        axes[0].hist(means[splits == s], bins=50, alpha=0.6, density=True, label=s)
    axes[0].set(title="Mean brightness per face", xlabel="mean pixel (0-255)")
    axes[0].legend()
    axes[1].bar(  # a class without faces has no bar (nan), not a mean of 0
        EMOTIONS,
        [images[labels == k].mean() if (labels == k).any() else np.nan for k in range(NUM_CLASSES)],
        color="gray",
    )
    axes[1].set(title="Mean pixel per emotion")
    axes[1].tick_params(axis="x", labelrotation=30)
    paths.append(out / "pixel_stats.png")
    save_figure(fig, paths[-1])

    # a row an emotion: one with fewer faces than per_class is filled with blank cells (at most
    # as many as the largest emotion has: a row of blank cells is nothing to see)
    per_class = min(per_class, int(np.bincount(labels, minlength=NUM_CLASSES).max(initial=0)))
    faces, captions = [], []
    blank_face = np.full(images.shape[1:], 255, images.dtype)
    for k, emotion in enumerate(EMOTIONS):
        chosen = rng.permutation(np.flatnonzero(labels == k))[:per_class]
        faces += [images[i] for i in chosen] + [blank_face] * (per_class - len(chosen))
        captions += [emotion] * len(chosen) + [""] * (per_class - len(chosen))
        if per_class and not len(chosen):
            captions[-per_class] = f"no {emotion} face"
    fig = face_grid(
        np.array(faces).reshape(-1, *images.shape[1:]),
        captions,
        cols=per_class,
        title=f"{per_class} random faces per emotion",
    )
    paths.append(out / "samples_per_emotion.png")
    save_figure(fig, paths[-1])

    pick = rng.permutation(len(images))[:n_random]
    fig = face_grid(
        images[pick],
        [f"{EMOTIONS[labels[i]]}\n{splits[i]}" for i in pick],
        cols=12,
        title="Random faces",
    )
    paths.append(out / "random_samples.png")
    save_figure(fig, paths[-1])

    index = {n: i for i, n in enumerate(data.names)}
    blank = [index[b["name"]] for b in rep["blank"]][:24]
    if blank:
        fig = face_grid(
            images[blank],
            [f"{EMOTIONS[labels[i]]}\n{splits[i]}" for i in blank],
            cols=12,
            title="Blank / near-constant faces",
        )
        paths.append(out / "blank_faces.png")
        save_figure(fig, paths[-1])
    shown = [g for g in rep["groups"] if g["conflicting_labels"] or g["cross_split"]][:12]
    if shown:
        idx = [index[n] for g in shown for n in shown_pair(g)]
        caps = [f"{EMOTIONS[labels[i]]}\n{splits[i]}" for i in idx]
        fig = face_grid(
            images[idx],
            caps,
            cols=8,
            title="Duplicates across splits or with conflicting labels (pairs)",
        )
        paths.append(out / "duplicates.png")
        save_figure(fig, paths[-1])
    return paths


def shown_pair(group: dict[str, Any]) -> list[str]:
    """Two faces of a duplicate group that show why it is drawn: the first and the first in
    another split (a group crossing splits), else the first with another label."""
    first = group["names"][0]
    for key in ("splits", "labels"):
        other = next((n for n, v in zip(group["names"], group[key]) if v != group[key][0]), None)
        if other is not None:
            return [first, other]
    return group["names"][:2]


#: What --out holds after a run: its figures, reports and lists (cleaning.json written last).
OUTPUTS = (
    "class_counts.png",
    "pixel_stats.png",
    "samples_per_emotion.png",
    "random_samples.png",
    "blank_faces.png",
    "duplicates.png",
    "structure.json",
    "cleaning.md",
    "exclude.txt",
    "leaked.txt",
    "cleaning.json",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from fer.data import encloses, exclusion_lines, load_fer, split_folders
    from fer.download import resolve_data

    outputs = OutputSet(args.out, OUTPUTS, "cleaning.json")  # checked before the data are read
    args.data = resolve_data(args.data)
    root = Path(args.data).expanduser()  # (as the data are read: ~/fer from a config file)
    if root.is_dir():  # was: its figures read as faces of an emotion the next time
        for inside in split_folders(root).values():
            if encloses(inside, args.out):
                raise FerError(
                    f"--out {args.out} is inside {inside}, whose pictures are read as faces: "
                    "put the report beside the data (--out analysis)"
                )
    data = load_fer(args.data, args.cache_dir)
    out = Path(args.out)
    info = structure(data)
    rep = cleaning_report(
        data.images.numpy(),
        data.labels.numpy(),
        data.usage.numpy(),
        data.names,
        args.blank_std,
        args.near,
    )
    # the set of files replaces an earlier run's whole: no figure of another run is left beside
    # this one's lists (an interrupted run leaves the earlier set as it was)
    with outputs as folder:
        files = [
            out / f.name for f in figures(folder, data, rep, args.per_class, args.random, args.seed)
        ]
        write_text(folder / "structure.json", json.dumps(info, indent=2) + "\n")
        write_text(folder / "cleaning.json", json.dumps(rep, indent=2) + "\n")
        write_text(folder / "cleaning.md", cleaning_markdown(rep, args.data) + "\n")
        write_text(
            folder / "exclude.txt",
            "# training samples to drop: blank faces and train copies of val/test faces\n"
            + exclusion_lines(data, rep["exclude"]),
        )
        write_text(
            folder / "leaked.txt",
            f"# val/test faces with a copy in training ({copies(rep)}): python -m fer.evaluate "
            "--skip this file\n" + exclusion_lines(data, rep["leaked"]),
        )
    if args.json:
        print(json.dumps({k: v for k, v in rep.items() if k != "groups"}, indent=2))
        return 0
    table = "\n".join(
        f"  {s:<12}" + " ".join(f"{c[e]:>8}" for e in EMOTIONS) + f"{sum(c.values()):>9}"
        for s, c in info["counts"].items()
    )
    print(
        f"{args.data}: {info['total']} faces\n  {'split':<12}"
        + " ".join(f"{e:>8}" for e in EMOTIONS)
        + f"{'total':>9}\n"
        + table
    )
    print(
        f"shape check: {len(info['nonstandard_shapes'])} images were not 48x48 8-bit "
        "single-channel; "
        f"{len(info['unreadable_files'])} unreadable files"
    )
    print(
        f"cleaning: {len(rep['blank'])} blank, {rep['duplicate_groups']} duplicate groups "
        f"({rep['cross_split_groups']} across splits, {rep['conflicting_label_groups']} with conflicting labels); "
        f"{len(rep['exclude'])} training samples in {out / 'exclude.txt'}, "
        f"{len(rep['leaked'])} val/test faces with a training copy in {out / 'leaked.txt'}"
    )
    if rep["near_copies"] and (
        rep["near_copies"]["more_leaked"] or rep["near_copies"]["more_exclude"]
    ):
        near = rep["near_copies"]
        print(
            f"note: near copies (at most {near['levels']} grey levels apart at every pixel): "
            + near_lists(near)
        )
    if rep["straddling"] is not None:
        print(f"note: {straddling_note(rep)}")
    print(
        "wrote "
        + ", ".join(str(p) for p in files)
        + f", {out}/structure.json, {out}/cleaning.json, {out}/cleaning.md",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
