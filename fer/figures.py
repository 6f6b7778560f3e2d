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
    """A labelled heatmap: rows are true emotions, columns predictions; row fractions or counts.
    Draws into `ax` when given, else into a new figure; returns the figure."""
    cm = np.asarray(cm, dtype=np.float64)
    values = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalized else cm
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
    """A grid of 48x48 faces (N, 48, 48) uint8 with a caption under each."""
    n = len(faces)
    cols = max(1, min(cols, n))
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.55 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(faces[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[i], fontsize=7, color="black" if colors is None else colors[i])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
