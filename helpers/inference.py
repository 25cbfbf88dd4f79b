"""Post-processing of predictions: colouring, overlays, label groups and class centroids, all vectorised."""
from __future__ import annotations

import numpy as np
from PIL import Image


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB image of a class mask: one palette lookup, no per-class loop."""
    return palette[mask]


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, opacity: float = 0.5,
            keep: np.ndarray | None = None) -> np.ndarray:
    """The coloured mask blended over an RGB image; pixels outside `keep` (and void) show the image only."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1; got {opacity}")
    show = mask > 0 if keep is None else keep & (mask > 0)
    alpha = (show * opacity).astype(np.float32)[..., None]
    out = image[..., :3] * (1 - alpha) + colorize(mask, palette) * alpha
    return (out + 0.5).astype(np.uint8)


def isolate(mask: np.ndarray, values: list[int]) -> np.ndarray:
    """Boolean image of the pixels whose class is among `values` (e.g. one label group)."""
    lookup = np.zeros(256, dtype=bool)
    lookup[values] = True
    return lookup[mask]


def centroids(mask: np.ndarray, min_pixels: int = 1) -> list[dict[str, int]]:
    """Each present class's pixel centroid, as the original server's {label, labelPositionX, labelPositionY}."""
    flat = mask.ravel().astype(np.int64)
    counts = np.bincount(flat, minlength=256)
    ys, xs = np.indices(mask.shape)
    sum_x = np.bincount(flat, weights=xs.ravel(), minlength=256)
    sum_y = np.bincount(flat, weights=ys.ravel(), minlength=256)
    present = np.flatnonzero(counts >= min_pixels)
    return [{"label": int(v), "labelPositionX": int(sum_x[v] / counts[v]), "labelPositionY": int(sum_y[v] / counts[v])}
            for v in present if v != 0]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class mask resized to (width, height) with nearest neighbour, so no class is invented."""
    return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
