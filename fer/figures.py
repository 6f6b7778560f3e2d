"""Figures shared by the training callbacks and the evaluation / analysis commands."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from fer.common import EMOTIONS  # noqa: E402


def confusion_figure(cm, title: str = "Confusion matrix", normalized: bool = True, ax=None):
    """A labelled heatmap: rows are true emotions, columns predictions; row fractions (a row
    left empty for an emotion without faces, which has none) or counts. Draws into `ax` when
    given, else into a new figure; returns the figure."""
    cm = np.asarray(cm, dtype=np.float64)
    sums = cm.sum(1, keepdims=True)
    values = cm
    if normalized:
        values = np.divide(cm, sums, out=np.full_like(cm, np.nan), where=sums > 0)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.4))
    sns.heatmap(
        values,
        annot=True,
        fmt=".2f" if normalized else ".0f",
        cmap="Blues",
        cbar=True,
        square=True,
        xticklabels=EMOTIONS,
        yticklabels=EMOTIONS,
        vmin=0,
        vmax=1 if normalized else None,
        ax=ax,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def face_grid(
    faces: np.ndarray, captions: Sequence[str], cols: int = 8, title: str = "", colors=None
):
    """A grid of faces of one size, (N, H, W) gray or (N, H, W, 3 or 4) colour (RGB, RGBA drawn
    without its alpha), uint8 or float (0..1 or 0..255), with a caption above each (in `colors`
    when given). Drawn as one image with its captions on one set of axes, placed by hand: an axes
    a face, laid out by matplotlib, took a second or more a figure, most of a short training
    epoch."""
    faces = np.asarray(faces)
    if faces.dtype.kind == "f":
        scale = 255 if faces.size and faces.max() <= 1 else 1
        faces = np.rint(faces * scale)
    faces = np.clip(faces, 0, 255).astype(np.uint8).reshape(-1, *faces.shape[1:] or (48, 48))
    if faces.ndim == 3:
        faces = np.repeat(faces[..., None], 3, axis=3)
    faces = faces[..., :3]
    n, (h, w) = len(faces), faces.shape[1:3]
    cols = max(1, min(cols, n))
    rows = max(1, (n + cols - 1) // cols)
    # in inches: each face 1.1 wide, 0.25 between faces, 7-point caption lines above them
    per_inch = w / 1.1
    lines = max((c.count("\n") + 1 for c in captions), default=1)
    gap, band = round(0.25 * per_inch), int(np.ceil((0.12 * lines + 0.06) * per_inch))
    cell_w, cell_h = w + gap, h + band
    canvas = np.full((rows * cell_h, cols * cell_w, 3), 255, np.uint8)
    top = 0.4 if title else 0.0
    fig = plt.figure(figsize=(cols * cell_w / per_inch, rows * cell_h / per_inch + top))
    ax = fig.add_axes((0, 0, 1, 1 - top / fig.get_figheight()))
    for i in range(n):
        y, x = (i // cols) * cell_h + band, (i % cols) * cell_w + gap // 2
        canvas[y : y + h, x : x + w] = faces[i]
        color = "black" if colors is None else colors[i]
        ax.text(x + w / 2, y - 1, captions[i], ha="center", va="bottom", fontsize=7, color=color)
    ax.imshow(canvas, interpolation="nearest", aspect="equal")
    ax.axis("off")
    if title:
        fig.suptitle(title, y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig
