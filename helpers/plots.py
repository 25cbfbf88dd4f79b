"""Figures the notebooks show: training curves, masks over images, predictions next to the truth."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from helpers.files import atomic_save
from helpers.labels import LabelTable

LOSSES = ("train_loss", "valid_loss")


def plot_history(history: pd.DataFrame, title: str, save_to: str | Path | None = None) -> plt.Figure:
    """Losses and metrics per epoch, side by side; saved as PNG when `save_to` is given."""
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 3.6))
    epochs = history["epoch"] + 1
    for col in LOSSES:
        ax_loss.plot(epochs, history[col], marker=".", label=col.replace("_", " "))
    for col in history.columns:
        if col not in ("epoch", "time", *LOSSES):
            ax_metric.plot(epochs, history[col], marker=".", label=col.replace("_", " "))
    ax_loss.set(title=f"{title}: loss", xlabel="epoch")
    ax_metric.set(title=f"{title}: validation metrics", xlabel="epoch", ylim=(0, 1))
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    if save_to is not None:
        atomic_save(save_to, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    return fig


def legend_patches(labels: LabelTable, values) -> list[Patch]:
    """Legend entries (colour and name) for the given mask values."""
    return [Patch(color=labels.palette[v] / 255, label=f"{v} {labels.codes[v]}") for v in values]


def show_side_by_side(panels: dict[str, np.ndarray], labels: LabelTable | None = None, legend_values=None,
                      width: float = 5.0) -> plt.Figure:
    """Images in one row with titles, and a class legend when given."""
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), width * 0.62))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels.items()):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    if labels is not None and legend_values is not None and len(legend_values):
        fig.legend(handles=legend_patches(labels, legend_values), loc="center left", bbox_to_anchor=(1.0, 0.5),
                   fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def show_prediction(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray, labels: LabelTable,
                    titles: tuple[str, str, str] = ("screenshot", "prediction", "truth")) -> plt.Figure:
    """An image, its predicted mask and its true mask side by side, with a legend of the classes in either."""
    present = sorted((set(np.unique(prediction).tolist()) | set(np.unique(truth).tolist())) - {0})
    return show_side_by_side(dict(zip(titles, (image, labels.palette[prediction], labels.palette[truth]))),
                             labels, present)


def colour_label(label: np.ndarray, palette: np.ndarray, ignore: int = 255) -> np.ndarray:
    """RGB image of a true label whose `ignore` pixels (not scored) are grey."""
    full = np.full((256, 3), 128, np.uint8)
    full[:len(palette)] = palette
    full[ignore] = (128, 128, 128)
    return full[label]


def show_real_photos(predictor, photos: list[tuple[str, np.ndarray, np.ndarray]], width: float = 3.6) -> plt.Figure:
    """One row per labelled photo: the photo, the model's prediction and the truth (grey: not scored)."""
    fig, axes = plt.subplots(len(photos), 3, figsize=(3 * width, width * 0.75 * len(photos)), squeeze=False)
    values: set[int] = set()
    for row, (name, image, label) in zip(axes, photos):
        mask = predictor.predict(image)[0]
        values |= set(np.unique(mask).tolist()) | set(np.unique(label[label != 255]).tolist())
        for ax, img, title in zip(row, (image, predictor.palette[mask], colour_label(label, predictor.palette)),
                                  (name, "prediction", "truth (grey: not scored)")):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.legend(handles=legend_patches(predictor.labels, sorted(values - {0})), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
