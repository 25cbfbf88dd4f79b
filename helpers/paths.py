"""Where a dataset's files and a stage's models live, and which screenshots are held out for validation."""
from __future__ import annotations

import re
import zlib
from pathlib import Path

VALID_PCT = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DATASET_PARTS = ("labels.csv", "screenshots", "labels")  # what makes a dataset; models/ and test/ live beside them


def label_of(image: Path) -> Path:
    """The label file of a screenshot: Data~/screenshots/N.png -> Data~/labels/N.png."""
    return image.parent.parent / "labels" / image.name


def in_validation(image: str | Path) -> bool:
    """Whether a screenshot is held out for validation, from its file name alone.

    A hash of the name, with no seed a user could change, keeps the same files in validation at every
    resolution, in every run and in every consumer (training, evaluation, int8 calibration)."""
    return zlib.crc32(Path(image).name.encode()) % 10_000 < VALID_PCT * 10_000


def _number_first(path: Path) -> tuple[int, int | str]:
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


def image_files(folder: str | Path) -> list[Path]:
    """The files of a folder that training reads as images (by suffix, in any case), in numeric order."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_number_first) \
        if folder.is_dir() else []


def screenshots(data_path: str | Path) -> list[Path]:
    """Every screenshot of a dataset, in numeric order (0.png, 1.png, ..., 10.png)."""
    return image_files(Path(data_path) / "screenshots")


def validation_files(data_path: str | Path) -> list[Path]:
    """The held-out screenshots of a dataset, in numeric order: what every evaluation scores on."""
    return [p for p in screenshots(data_path) if in_validation(p)]


def split_problem(files: list[Path]) -> str | None:
    """Why screenshots with these names cannot be split into training and validation, or None when they can."""
    held_out = sum(map(in_validation, files))
    if files and held_out in (0, len(files)):
        side = "none of them is held out for validation" if held_out == 0 else "all of them are held out for validation"
        return (f"{len(files)} screenshot(s), and {side}: the split holds a file out by a hash of its name "
                f"({VALID_PCT:.0%} of names), so a handful of files can all fall on one side. Add screenshots (a few "
                "dozen split reliably) or rename some.")
    return None


def training_files(data_path: str | Path) -> list[Path]:
    """The screenshots a model trains on, in numeric order: what int8 calibration may use."""
    return [p for p in screenshots(data_path) if not in_validation(p)]


def stage_paths(models_dir: str | Path, save_name: str, res: int) -> dict[str, Path]:
    """Where a stage's files live: weights, export, ONNX, int8 ONNX, history and plot."""
    base = Path(models_dir) / f"{save_name}_{res}x"
    return {"pth": base.with_suffix(".pth"), "pkl": base.with_suffix(".pkl"), "onnx": base.with_suffix(".onnx"),
            "int8": Path(f"{base}_int8.onnx"), "history": Path(f"{base}_history.csv"),
            "plot": Path(f"{base}_metrics.png")}


def int8_is_stale(onnx_path: str | Path, int8_path: str | Path) -> bool:
    """Whether the int8 copy is missing or older than the fp32 model it was made from (retrained since)."""
    int8_path = Path(int8_path)
    return not int8_path.is_file() or int8_path.stat().st_mtime < Path(onnx_path).stat().st_mtime


def resolution_of(path: str | Path, save_name: str) -> int | None:
    """The resolution in a stage file's name (`{save_name}_{res}x...`), or None when it is not one of that model's."""
    m = re.match(rf"{re.escape(save_name)}_(\d+)x(?:_|\.)", Path(path).name)
    return int(m.group(1)) if m else None


def trained_stages(models_dir: str | Path, save_name: str) -> dict[int, Path]:
    """The fp32 ONNX export of every trained stage of a model, by resolution, smallest first."""
    found = {}
    for p in Path(models_dir).glob(f"{save_name}_*x.onnx"):
        res = resolution_of(p, save_name)
        if res is not None and p == stage_paths(models_dir, save_name, res)["onnx"]:
            found[res] = p
    return dict(sorted(found.items()))


def fingerprint(files) -> str:
    """A short hash of a set of file names, to see at a glance that two runs hold out the same files."""
    return f"{zlib.crc32(' '.join(sorted(Path(f).name for f in files)).encode()):08x}"
