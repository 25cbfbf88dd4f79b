"""Real photos to try the models on: the user's own in `test/`, or a few that ship with scikit-image."""
from __future__ import annotations

import shutil
from pathlib import Path

# Real photographs bundled in the scikit-image wheel (no download): a coffee cup on a saucer, a cat,
# a wall clock, an astronaut indoors and a motorcycle.
BUNDLED = ("coffee.png", "chelsea.png", "clock_motion.png", "astronaut.png", "motorcycle_left.png")
PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def photos_in(folder: str | Path) -> list[Path]:
    """The image files in a folder, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []


def seed_test_photos(folder: str | Path) -> list[Path]:
    """Copy scikit-image's bundled photos into an empty `folder`; a folder with photos is left as it is."""
    folder = Path(folder)
    if photos_in(folder):
        return []
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in BUNDLED:
        src = Path(data.__file__).parent / name
        if src.is_file():
            copied.append(Path(shutil.copy2(src, folder / name)))
    return copied


def centre_crop(image, aspect: float):
    """The largest centred crop of a PIL image with width/height = aspect."""
    w, h = image.size
    if w / h > aspect:
        cw = round(h * aspect)
        return image.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    ch = round(w / aspect)
    return image.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
