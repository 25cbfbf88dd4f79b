"""Where a dataset's files and a stage's models live, and which screenshots are held out for validation."""
from __future__ import annotations

import zlib
from pathlib import Path

VALID_PCT = 0.2


def label_of(image: Path) -> Path:
    """The label file of a screenshot: Data~/screenshots/N.png -> Data~/labels/N.png."""
    return image.parent.parent / "labels" / image.name


def in_validation(image: Path, seed: int = 0, valid_pct: float = VALID_PCT) -> bool:
    """Whether a screenshot is in the validation set, from its file name alone.

    A hash of the name (not a random shuffle) keeps the same files in validation at every
    resolution and in every run, so an upscaling stage never validates on images it trained on."""
    return zlib.crc32(f"{seed}:{Path(image).name}".encode()) % 10_000 < valid_pct * 10_000


def split_of(files: list[Path], seed: int = 0, valid_pct: float = VALID_PCT) -> list[str]:
    """Names of the validation files of a dataset, sorted: what every stage must agree on."""
    return sorted(f.name for f in files if in_validation(f, seed, valid_pct))


def stage_paths(models_dir: str | Path, save_name: str, res: int) -> dict[str, Path]:
    """Where a stage's files live: weights, export, ONNX, history and plot."""
    base = Path(models_dir) / f"{save_name}_{res}x"
    return {"pth": base.with_suffix(".pth"), "pkl": base.with_suffix(".pkl"), "onnx": base.with_suffix(".onnx"),
            "int8": Path(f"{base}_int8.onnx"), "history": Path(f"{base}_history.csv"),
            "plot": Path(f"{base}_metrics.png")}
