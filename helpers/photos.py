"""Real photos to try the models on (the user's own in `test/`, or a few that ship with scikit-image), and scoring
models on labelled real photos."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from skimage import data

from helpers.files import atomic_write_bytes

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
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in BUNDLED:
        src = Path(data.__file__).parent / name
        if src.is_file():
            copied.append(Path(shutil.copy2(src, folder / name)))
    return copied


def open_photo(path: str | Path) -> Image.Image:
    """A photo decoded and turned upright by its EXIF orientation, as viewers show it (phones store it sideways)."""
    image = Image.open(path)
    image.load()
    return ImageOps.exif_transpose(image)


def centre_crop(image, aspect: float):
    """The largest centred crop of a PIL image with width/height = aspect."""
    w, h = image.size
    if w / h > aspect:
        cw = round(h * aspect)
        return image.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    ch = round(w / aspect)
    return image.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))


# --- scoring models on labelled real photos ---------------------------------------------------------------------
IGNORE = 255  # label value of pixels a labelled set leaves unscored
# The room's structure, by the names our class list gives them: what a model must get right on any real room photo.
STRUCTURE = {"wall": "building_wall", "floor": "building_floor", "ceiling": "building_ceiling",
             "bed": "furniture_doubleBed"}
LAYOUT_BANDS = (0.15, 0.35)  # share of the image height guessed as ceiling (top) and as floor (bottom)


class LabelledSetError(ValueError):
    """A labelled photo set cannot be read; the message says which file and why."""


def read_labelled_set(images_dir: str | Path, labels_dir: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB uint8 image, uint8 label) of every photo with a label PNG of the same stem and size."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for kind, folder in (("images", images_dir), ("labels", labels_dir)):
        if not folder.is_dir():
            raise LabelledSetError(f"{kind} folder {folder} not found")
    images = {p.stem: p for p in photos_in(images_dir)}
    labels = {p.stem: p for p in labels_dir.iterdir() if p.suffix.lower() == ".png"}
    if not images:
        raise LabelledSetError(f"no images ({', '.join(sorted(PHOTO_SUFFIXES))}) in {images_dir}")
    if len(images) != len(photos_in(images_dir)):
        raise LabelledSetError(f"{images_dir} holds two images with the same name and different suffixes")
    if images.keys() - labels.keys():
        missing = sorted(images.keys() - labels.keys())
        raise LabelledSetError(f"{len(missing)} image(s) have no label PNG in {labels_dir}, e.g. {missing[0]}.png")
    if labels.keys() - images.keys():
        extra = sorted(labels.keys() - images.keys())
        raise LabelledSetError(f"{len(extra)} label(s) have no image in {images_dir}, e.g. {labels[extra[0]].name}")
    out = []
    for name in sorted(images):
        try:
            image = open_photo(images[name])
            label = Image.open(labels[name])
            label.load()
        except (OSError, SyntaxError) as e:  # PIL's errors for truncated or non-image files
            raise LabelledSetError(f"{name}: cannot read the image or its label ({e})") from None
        if label.mode not in ("L", "P"):
            raise LabelledSetError(f"{labels[name]} is {label.mode}; a label must be one 8-bit class value per pixel")
        if image.size != label.size:
            with Image.open(images[name]) as stored:
                tagged = stored.size != image.size  # its EXIF orientation turned it
            turned = " (turned upright by its EXIF orientation: label the photo as viewers show it)" if tagged else ""
            raise LabelledSetError(f"{name}: image is {image.size[0]}x{image.size[1]}{turned} but its label is "
                                   f"{label.size[0]}x{label.size[1]}; they must be the same size")
        out.append((name, np.asarray(image.convert("RGB")), np.asarray(label, dtype=np.uint8)))
    return out


def class_value(codes: list[str], name: str) -> int:
    """The mask value of a class name in a model's class list (void first)."""
    if name not in codes:
        raise LabelledSetError(f"the model has no class {name!r}; its classes are {', '.join(codes)}")
    return codes.index(name)


def layout_guess(size: tuple[int, int], codes: list[str]) -> np.ndarray:
    """The fixed three-band guess for a (width, height) image: ceiling on top, floor at the bottom, wall between."""
    width, height = size
    guess = np.full((height, width), class_value(codes, STRUCTURE["wall"]), dtype=np.uint8)
    guess[:round(height * LAYOUT_BANDS[0])] = class_value(codes, STRUCTURE["ceiling"])
    guess[height - round(height * LAYOUT_BANDS[1]):] = class_value(codes, STRUCTURE["floor"])
    return guess


def confusion(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """n_classes x n_classes pixel counts (row: truth, column: prediction), pixels labelled IGNORE left out."""
    if truth.shape != pred.shape:
        raise ValueError(f"label is {truth.shape} but prediction is {pred.shape}")
    keep = truth != IGNORE
    t, p = truth[keep].astype(np.int64), pred[keep].astype(np.int64)
    if t.size and max(t.max(), p.max()) >= n_classes:
        raise ValueError(f"a class value is >= {n_classes}, the number of classes")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def pooled_confusion(truths: list[np.ndarray], preds: list[np.ndarray], n_classes: int) -> np.ndarray:
    """The confusion matrices of all images summed (row: truth, column: prediction)."""
    return sum((confusion(t, p, n_classes) for t, p in zip(truths, preds)), np.zeros((n_classes, n_classes), np.int64))


def pooled_iou(truths: list[np.ndarray], preds: list[np.ndarray], n_classes: int) -> np.ndarray:
    """Per-class IoU with intersections and unions summed over all images; NaN for a class in neither."""
    return confusion_iou(pooled_confusion(truths, preds, n_classes))


def confusion_iou(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU of a confusion matrix; NaN for a class in neither truth nor prediction."""
    n_classes = len(cm)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    iou = np.full(n_classes, np.nan)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def _mean(values: np.ndarray) -> float:
    """Mean of the non-NaN values, NaN (without a warning) when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def label_counts(truths: list[np.ndarray]) -> np.ndarray:
    """Pixels per label value (0 to 255) over all labels."""
    return sum((np.bincount(t.ravel(), minlength=256) for t in truths), np.zeros(256, np.int64))


def structure_miou(iou: np.ndarray, codes: list[str], truths: list[np.ndarray] | None = None) -> float:
    """Mean IoU over wall, floor, ceiling and bed, skipping any with no IoU, and with `truths` any not in them (so
    that false beds in rooms without one show in the bed IoU but do not count as a missed class)."""
    values = [class_value(codes, name) for name in STRUCTURE.values()]
    if truths is not None:
        counts = label_counts(truths)
        values = [v for v in values if counts[v]]
    return _mean(np.array([iou[v] for v in values]))


def present_miou(iou: np.ndarray, truths: list[np.ndarray]) -> float:
    """Mean IoU over the classes (void excluded) that occur in the truth."""
    present = [v for v in np.flatnonzero(label_counts(truths)[:len(iou)]) if v != 0]
    return _mean(iou[present]) if present else float("nan")


def score_masks(truths: list[np.ndarray], masks: list[np.ndarray], codes: list[str]) -> dict:
    """IoU per class (pooled), structure mIoU over the structure classes in the labels, and present mIoU."""
    cm = pooled_confusion(truths, masks, len(codes))
    iou = confusion_iou(cm)
    return {"iou": {codes[v]: float(iou[v]) for v in range(len(codes))},
            "structure_miou": structure_miou(iou, codes, truths), "present_miou": present_miou(iou, truths),
            "confusion": cm.tolist()}


def mistakes_frame(cm: np.ndarray | list, codes: list[str], top: int = 4) -> pd.DataFrame:
    """For each structure class, the shares of its labelled pixels by predicted class and of the pixels predicted as
    it by true class, largest first: what it is taken for, and what is taken for it."""
    cm = np.asarray(cm, dtype=np.float64)

    def largest(counts: np.ndarray) -> str:
        if counts.sum() == 0:
            return "-"
        order = np.argsort(-counts, kind="stable")[:top]
        return ", ".join(f"{codes[j]} {counts[j] / counts.sum():.2f}" for j in order if counts[j] > 0)

    rows = {}
    for name, cls in STRUCTURE.items():
        v = class_value(codes, cls)
        rows[name] = {"labelled pixels": int(cm[v].sum()), "predicted as": largest(cm[v]),
                      "predicted pixels": int(cm[:, v].sum()), "labelled as": largest(cm[:, v])}
    return pd.DataFrame.from_dict(rows, orient="index")


def score_predictor(predictor, photos: list[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    """Scores (`score_masks`) of a helpers.inference.Predictor and of the layout guess, on all photos and apart on
    those whose label holds a bed and those without: false beds in bathrooms and true beds in bedrooms are
    different faults, and a pooled bed IoU mixes them."""
    codes = list(predictor.codes)
    truths = [label for _, _, label in photos]
    preds = [predictor.predict(image)[0] for _, image, _ in photos]
    guesses = [layout_guess((label.shape[1], label.shape[0]), codes) for label in truths]
    out: dict = {"model_path": str(predictor.path), "resolution": predictor.resolution, "photos": len(photos)}
    for key, masks in (("model", preds), ("layout", guesses)):
        out[key] = score_masks(truths, masks, codes)
    bed = class_value(codes, STRUCTURE["bed"])
    has_bed = [bool((t == bed).any()) for t in truths]
    out["subsets"] = {}
    for subset, wanted in (("with a bed", True), ("without a bed", False)):
        keep = [i for i, b in enumerate(has_bed) if b == wanted]
        if keep:
            out["subsets"][subset] = {"photos": len(keep), **{
                key: score_masks([truths[i] for i in keep], [masks[i] for i in keep], codes)
                for key, masks in (("model", preds), ("layout", guesses))}}
    return out


def iou_frame(results: dict[str, dict]) -> pd.DataFrame:
    """Structure mIoU, present mIoU and per-class IoU (rows) of several scored models and the layout guess (columns)."""
    first = next(iter(results.values()))
    columns = {name: r["model"] for name, r in results.items()} | {"layout guess": first["layout"]}
    rows = {"structure mIoU": {k: v["structure_miou"] for k, v in columns.items()},
            "mIoU, present classes": {k: v["present_miou"] for k, v in columns.items()}}
    for cls in first["model"]["iou"]:
        if any(not np.isnan(v["iou"][cls]) for v in columns.values()):
            rows[cls] = {k: v["iou"][cls] for k, v in columns.items()}
    return pd.DataFrame(rows).T


def subsets_frame(result: dict) -> pd.DataFrame:
    """Photos, structure mIoU and structure IoU of one scored model and of the layout guess, on the photos with a
    bed and on those without (rows)."""
    rows = {}
    for subset, r in result.get("subsets", {}).items():
        for key, who in (("model", "model"), ("layout", "layout guess")):
            rows[(subset, who)] = {"photos": r["photos"], "structure mIoU": r[key]["structure_miou"],
                                   **{name: r[key]["iou"][cls] for name, cls in STRUCTURE.items()}}
    return pd.DataFrame.from_dict(rows, orient="index")


def json_safe(value):
    """NaN as None, recursively, so scores can be written as strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and np.isnan(value) else value


def save_scores(scores: dict[str, dict], path: str | Path) -> Path:
    """Write scored models (as from `score_predictor`, by stage name) to a JSON file, atomically."""
    atomic_write_bytes(Path(path), (json.dumps(json_safe(scores), indent=1) + "\n").encode())
    return Path(path)


def load_scores(path: str | Path) -> dict[str, dict]:
    """Scores written by `save_scores`, with None read back as NaN."""
    def nan(value):
        if isinstance(value, dict):
            return {k: nan(v) for k, v in value.items()}
        return float("nan") if value is None else value
    return nan(json.loads(Path(path).read_text()))
