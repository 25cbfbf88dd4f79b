"""Photo textures for the generator's materials: the real photos and textures scikit-image ships, in grey."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from skimage import data

# stone, grass and gravel for surfaces; pictures of every kind for paintings, rugs, prints and clutter
TEXTURES = ("brick", "grass", "gravel", "camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "page",
            "text", "hubble_deep_field", "immunohistochemistry", "retina", "clock")
SIDE = 256  # texels along the longer side: enough for a painting filling a screenshot's third


@lru_cache(maxsize=None)
def texture(index: int) -> np.ndarray:
    """One texture as float32 grey values stretched to [0, 1], at most SIDE texels a side (loaded once per process)."""
    image = np.asarray(getattr(data, TEXTURES[index])())
    grey = Image.fromarray(image).convert("L")
    grey.thumbnail((SIDE, SIDE), Image.LANCZOS)
    values = np.asarray(grey, dtype=np.float32)
    lo, hi = np.percentile(values, [2, 98])
    return np.clip((values - lo) / max(hi - lo, 1.0), 0, 1)


def sample(index: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Texture values at coordinates in texture widths, tiled (u to the right, v down)."""
    tex = texture(index)
    h, w = tex.shape
    side = max(h, w)
    return tex[np.floor(v * side).astype(np.int64) % h, np.floor(u * side).astype(np.int64) % w]
