"""A run's published results: history CSVs in results/, plots in readme_images/, and the README's table made
from them."""
from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from helpers.files import atomic_write_bytes
from helpers.inference import colorize
from helpers.labels import read_labels
from helpers.paths import fingerprint, resolution_of, screenshots, stage_paths, validation_files
from helpers.photos import STRUCTURE, iou_frame, load_scores

STRUCTURE_CLASSES = tuple(STRUCTURE.values())
COLUMNS = ["Resolution", "Train Loss", "Validation Loss", "Foreground Accuracy", "Dice Multi", "Mean IoU", "Epochs",
           "Total Train Time", "Hardware"]


def seconds(text: str) -> int:
    """fastai's epoch time ('01:05' or '1:02:03') in seconds."""
    total = 0
    for part in str(text).split(":"):
        total = total * 60 + int(part)
    return total


def clock(secs: int) -> str:
    """Seconds as m:ss, as the original results table writes train times."""
    return f"{secs // 60}:{secs % 60:02d}"


def stage_row(history: pd.DataFrame, res: int, hardware: str) -> list[str]:
    """One table row: the last epoch's losses and metrics, the epoch count and the summed train time."""
    last = history.iloc[-1]
    return [f"{res} x {res}", f"{last.train_loss:.4f}", f"{last.valid_loss:.4f}", f"{last.foreground_acc:.4f}",
            f"{last.dice_multi:.4f}", f"{last.jaccard_coeff_multi:.4f}", str(len(history)),
            clock(sum(seconds(t) for t in history["time"])), hardware]


def published_histories(results_dir: str | Path, save_name: str = "unity_resnet34") -> dict[int, Path]:
    """The history CSVs under results/, by resolution, smallest first."""
    found = {resolution_of(p, save_name): p for p in Path(results_dir).glob(f"{save_name}_*x_history.csv")}
    return {res: found[res] for res in sorted(r for r in found if r is not None)}


def results_table(results_dir: str | Path, save_name: str = "unity_resnet34") -> str:
    """The README's results table, in markdown, from the history CSVs under results/."""
    results_dir = Path(results_dir)
    hardware = (results_dir / "hardware.txt").read_text().strip()
    histories = published_histories(results_dir, save_name)
    rows = [stage_row(pd.read_csv(csv), res, hardware) for res, csv in histories.items()]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def hardware_name(precision: str) -> str:
    """A short description of this machine for the results table."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, {precision}"
    cpu = platform.processor() or "CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-core {cpu}, {precision}"


def dataset_facts(data_path: str | Path) -> dict:
    """What the README says of a run's data: image count and size, and the train/held-out split."""
    shots, held_out = screenshots(data_path), validation_files(data_path)
    w, h = Image.open(shots[0]).size
    return {"images": len(shots), "size": f"{w}x{h}", "train": len(shots) - len(held_out), "held_out": len(held_out),
            "held_out_fingerprint": fingerprint(held_out)}


def publish(data_path: str | Path, save_name: str, resolutions: list[int], results_dir: str | Path,
            images_dir: str | Path, precision: str) -> list[Path]:
    """Copy a run's histories to results/, its plots (plus a sample with its mask) to readme_images/, and the facts
    of its dataset (images, size, train/held-out split) to results/run.json."""
    data_path, results_dir, images_dir = Path(data_path), Path(results_dir), Path(images_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    images_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for res in resolutions:
        files = stage_paths(data_path / "models", save_name, res)
        written.append(Path(shutil.copyfile(files["history"], results_dir / files["history"].name)))
        written.append(Path(shutil.copyfile(files["plot"], images_dir / f"metrics_{res}.png")))
    atomic_write_bytes(results_dir / "hardware.txt", (hardware_name(precision) + "\n").encode())
    atomic_write_bytes(results_dir / "run.json", (json.dumps(dataset_facts(data_path), indent=1) + "\n").encode())
    shot = data_path / "screenshots" / "0.png"
    image = np.asarray(Image.open(shot).convert("RGB"))
    mask = np.asarray(Image.open(data_path / "labels" / "0.png"))
    pair = np.concatenate([image, colorize(mask, read_labels(data_path).palette)], axis=1)
    Image.fromarray(pair).save(images_dir / "sample_screenshot_and_mask.png")
    written += [results_dir / "hardware.txt", results_dir / "run.json", images_dir / "sample_screenshot_and_mask.png"]
    # written by RealImagePred when it scored the stages on labelled real photos
    for src, dst in ((f"{save_name}_real_photos.json", results_dir / "real_photos.json"),
                     (f"{save_name}_real_photos.png", images_dir / "real_photos.png")):
        if (data_path / "models" / src).is_file():
            written.append(Path(shutil.copyfile(data_path / "models" / src, dst)))
    return written


def real_photos_table(results_dir: str | Path, classes: tuple[str, ...] = STRUCTURE_CLASSES) -> str:
    """The README's real-photo table, in markdown: structure mIoU and the structure classes' IoU of each stage
    and of the layout guess, from results/real_photos.json."""
    rows = ["structure mIoU", *classes]
    frame = iou_frame(load_scores(Path(results_dir) / "real_photos.json")).reindex(rows)
    lines = ["| model | " + " | ".join(rows) + " |", "|" + " --- |" * (len(rows) + 1)]
    for column in frame.columns:
        cells = ["-" if np.isnan(frame.at[r, column]) else f"{frame.at[r, column]:.3f}" for r in rows]
        lines.append(f"| {column} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
