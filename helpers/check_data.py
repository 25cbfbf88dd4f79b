"""Checks a dataset folder before training and says, file by file, what is wrong and what to do.

    python -m helpers.check_data DIR               # exit 0 clean, 1 problems found, 2 wrong invocation
    python -m helpers.check_data DIR --fix-rgb OUT # colour-coded labels -> index masks in a new folder
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from helpers.files import atomic_path
from helpers.labels import LabelsError, LabelTable, read_labels
from helpers.solo import looks_like_solo, solo_hint

MAX_LISTED = 8  # files named per problem before "... and N more"


@dataclass
class Report:
    """What a dataset check found: errors stop training, warnings do not."""

    folder: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_pairs: int = 0
    class_counts: np.ndarray | None = None
    rgb_labels: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        head = f"Dataset check of {self.folder}: {self.n_pairs} image/label pairs, "
        head += "OK" if self.ok else f"{len(self.errors)} problem(s)"
        lines = [head + (f", {len(self.warnings)} warning(s)" if self.warnings else "")]
        lines += [f"ERROR   {e}" for e in self.errors]
        lines += [f"WARNING {w}" for w in self.warnings]
        return "\n".join(lines)


class DatasetError(Exception):
    """The dataset is not fit for training; the message is the full report."""


def _names(files: list[str]) -> str:
    shown = ", ".join(files[:MAX_LISTED])
    return shown + (f" ... and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else "")


def _open(path: Path) -> tuple[Image.Image | None, str | None]:
    """Fully decode an image, or say why it cannot be."""
    try:
        img = Image.open(path)
        img.load()
        return img, None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return None, f"{e.__class__.__name__}: {e}"


def label_array(img: Image.Image) -> np.ndarray:
    """Pixels of a label image as an array: (H, W) for single-channel, (H, W, C) otherwise."""
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    return np.asarray(img)


def colour_to_index(rgb: np.ndarray, labels: LabelTable) -> tuple[np.ndarray, np.ndarray]:
    """Map an (H, W, 3+) colour-coded label to mask values; also return a mask of unknown colours."""
    rgb = rgb[..., :3].astype(np.int32)
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pal = labels.palette.astype(np.int32)
    pal_key = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_key)
    pos = np.clip(np.searchsorted(pal_key[order], key), 0, len(pal_key) - 1)
    found = pal_key[order][pos] == key
    return np.where(found, order[pos], 0).astype(np.uint8), ~found


def mask_values(path: str | Path) -> set[int]:
    """The set of values in one mask file."""
    return set(np.unique(label_array(Image.open(path))).tolist())


def mask_values_in(folder: str | Path, sample: int | None = 20) -> dict[int, int]:
    """Value -> number of masks containing it, over a sample of a dataset's masks (all when None)."""
    paths = sorted(Path(folder, "labels").glob("*.png"), key=lambda p: (len(p.stem), p.stem))[:sample]
    seen: dict[int, int] = defaultdict(int)
    for p in paths:
        for v in mask_values(p):
            seen[v] += 1
    return dict(sorted(seen.items()))


def highlight_class(mask_path: str | Path, value: int) -> np.ndarray:
    """A black-and-white image with the pixels of one class (mask value) white."""
    return (label_array(Image.open(mask_path)) == value).astype(np.uint8) * 255


@dataclass
class Scan:
    """What reading every image/label pair found, before it is worded as errors and warnings."""

    unreadable: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    rgb_files: list[str] = field(default_factory=list)
    rgb_colours: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    unknown_colour_files: list[str] = field(default_factory=list)
    too_big: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))


def _numeric(stem: str) -> tuple[int, str]:
    return len(stem), stem


def find_pairs(folder: Path, rep: Report) -> tuple[LabelTable | None, list[tuple[Path, Path]]]:
    """labels.csv and the screenshot/label pairs of a dataset; what is missing or unmatched goes into `rep`."""
    labels: LabelTable | None = None
    try:
        labels = read_labels(folder / "labels.csv")
    except LabelsError as e:
        rep.errors.append(str(e))
    dirs = {}
    for sub in ("screenshots", "labels"):
        d = folder / sub
        if not d.is_dir():
            rep.errors.append(f"{d} is missing: a dataset needs screenshots/N.png and labels/N.png.")
            if sub == "screenshots" and looks_like_solo(folder):
                rep.errors.append(solo_hint(folder))
        dirs[sub] = {p.stem: p for p in d.glob("*.png")} if d.is_dir() else {}
    shots, masks = dirs["screenshots"], dirs["labels"]
    only_shots = sorted(set(shots) - set(masks), key=_numeric)
    only_masks = sorted(set(masks) - set(shots), key=_numeric)
    if only_shots:
        rep.errors.append(f"{len(only_shots)} screenshot(s) without a label in labels/: "
                          f"{_names([s + '.png' for s in only_shots])}. Re-export them or delete the screenshots.")
    if only_masks:
        rep.errors.append(f"{len(only_masks)} label(s) without a screenshot in screenshots/: "
                          f"{_names([s + '.png' for s in only_masks])}.")
    pairs = [(shots[s], masks[s]) for s in sorted(set(shots) & set(masks), key=_numeric)]
    if not pairs and (shots or masks or all(d.is_dir() for d in (folder / "screenshots", folder / "labels"))):
        rep.errors.append(f"the dataset is empty: no screenshot has a matching label. Generate one with "
                          f"`python -m helpers.synth --out {folder}` or export from Unity.")
    return labels, pairs


def scan_pairs(pairs: list[tuple[Path, Path]], labels: LabelTable | None) -> Scan:
    """Decode every pair and collect unreadable files, size mismatches, colour-coded labels and mask values."""
    scan = Scan()
    n_classes = labels.n_classes if labels else 256
    for shot_path, mask_path in pairs:
        name = mask_path.name
        shot, shot_err = _open(shot_path)
        mask, mask_err = _open(mask_path)
        for path, err in ((shot_path, shot_err), (mask_path, mask_err)):
            if err:
                scan.unreadable.append(f"{path.parent.name}/{path.name} ({err})")
        if shot is None or mask is None:
            continue
        if shot.size != mask.size:
            scan.size_mismatch.append(f"{name} (screenshot {shot.size[0]}x{shot.size[1]}, "
                                      f"label {mask.size[0]}x{mask.size[1]})")
        arr = label_array(mask)
        if arr.ndim == 3:
            scan.rgb_files.append(name)
            if labels is not None:
                index, unknown = colour_to_index(arr, labels)
                for v in np.unique(index[~unknown]).tolist():
                    scan.rgb_colours[v] += 1
                if unknown.any():
                    scan.unknown_colour_files.append(name)
            continue
        values, c = np.unique(arr.astype(np.int64) if arr.dtype != np.uint8 else arr, return_counts=True)
        for v, k in zip(values.tolist(), c.tolist()):
            if v >= n_classes:
                scan.too_big[v].append(name)
            elif v < 256:
                scan.counts[v] += k
    return scan


def word_report(scan: Scan, labels: LabelTable | None, rep: Report) -> None:
    """Turn a scan into the report's errors and warnings, each saying what to do."""
    n_classes = labels.n_classes if labels else 256
    if scan.unreadable:
        rep.errors.append(f"{len(scan.unreadable)} unreadable or truncated PNG(s): {_names(scan.unreadable)}. "
                          "Re-export or delete them.")
    if scan.size_mismatch:
        rep.errors.append(f"{len(scan.size_mismatch)} pair(s) whose screenshot and label sizes differ: "
                          f"{_names(scan.size_mismatch)}.")
    if scan.too_big:
        detail = "; ".join(f"value {v} in {len(fs)} file(s): {_names(fs)}" for v, fs in sorted(scan.too_big.items()))
        rep.errors.append(f"mask values above {n_classes - 1} (labels.csv has {n_classes - 1} classes, 0 is void): "
                          f"{detail}. Training would crash with 'CUDA error: device-side assert triggered'. Give every "
                          "object in the scene a label from labels.csv, or leave it unlabelled (0); check that the "
                          "label camera writes linear, not sRGB, values.")
    if scan.rgb_files:
        rep.rgb_labels = scan.rgb_files
        msg = (f"{len(scan.rgb_files)} label image(s) are colour-coded RGB/RGBA instead of single-channel index masks: "
               f"{_names(scan.rgb_files)}.")
        if labels is not None and scan.rgb_colours:
            matched = ", ".join(f"{labels.codes[v]} ({v})" for v in sorted(scan.rgb_colours))
            msg += f" Their colours match these labels.csv classes: {matched}."
        if scan.unknown_colour_files:
            msg += (f" {len(scan.unknown_colour_files)} of them also hold colours not in labels.csv: "
                    f"{_names(scan.unknown_colour_files)}.")
        msg += f" Convert them with `python -m helpers.check_data {rep.folder} --fix-rgb NEW_FOLDER`."
        rep.errors.append(msg)
    if labels is not None:
        rep.class_counts = scan.counts[: labels.n_classes]
        missing = [f"{labels.codes[v]} ({v})" for v in range(1, labels.n_classes) if scan.counts[v] == 0]
        if missing and not scan.rgb_files:
            rep.warnings.append(f"{len(missing)} class(es) never occur in the masks: {', '.join(missing)}. The model "
                                "cannot learn them; add scenes that show them or remove them from labels.csv.")


def check_dataset(folder: str | Path) -> Report:
    """Check labels.csv and every screenshot/label pair of a dataset folder."""
    folder = Path(folder)
    rep = Report(folder)
    if not folder.is_dir():
        rep.errors.append(f"{folder} is not a folder. Point the check at the folder holding labels.csv, "
                          "screenshots/ and labels/.")
        return rep
    labels, pairs = find_pairs(folder, rep)
    rep.n_pairs = len(pairs)
    if pairs:
        word_report(scan_pairs(pairs, labels), labels, rep)
    return rep


def require_clean(folder: str | Path) -> Report:
    """Check a dataset and raise DatasetError with the full report when it is not fit for training."""
    rep = check_dataset(folder)
    if not rep.ok:
        raise DatasetError(str(rep))
    return rep


def fix_rgb(folder: str | Path, out: str | Path) -> int:
    """Write a copy of the dataset to `out` with colour-coded labels turned into index masks; return how many."""
    folder, out = Path(folder), Path(out)
    if out.resolve() == folder.resolve():
        raise ValueError("--fix-rgb needs a new folder: the original labels are never overwritten.")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder so nothing there is overwritten.")
    labels = read_labels(folder / "labels.csv")
    (out / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copy2(folder / "labels.csv", out / "labels.csv")
    shutil.copytree(folder / "screenshots", out / "screenshots")
    converted = 0
    for src in sorted((folder / "labels").glob("*.png")):
        arr = label_array(Image.open(src))
        if arr.ndim == 3:
            if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
                arr = arr[..., 0]  # an index mask saved with three equal channels
            else:
                arr, _ = colour_to_index(arr, labels)
            converted += 1
            with atomic_path(out / "labels" / src.name) as tmp:
                Image.fromarray(arr.astype(np.uint8), mode="L").save(tmp, format="PNG")
        else:
            shutil.copy2(src, out / "labels" / src.name)
    return converted


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: print the report, exit 0 when clean and 1 when not."""
    ap = argparse.ArgumentParser(prog="python -m helpers.check_data", description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="dataset folder with labels.csv, screenshots/ and labels/")
    ap.add_argument("--fix-rgb", type=Path, metavar="OUT",
                    help="write a copy with colour-coded labels converted to index masks")
    args = ap.parse_args(argv)
    if not args.folder.exists():
        print(f"error: {args.folder} does not exist.", file=sys.stderr)
        return 2
    if args.fix_rgb:
        try:
            n = fix_rgb(args.folder, args.fix_rgb)
        except (ValueError, LabelsError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2 if isinstance(e, ValueError) else 1
        print(f"converted {n} colour-coded label(s); the fixed dataset is in {args.fix_rgb}")
        args.folder = args.fix_rgb
    rep = check_dataset(args.folder)
    print(rep)
    if rep.class_counts is not None and rep.ok:
        print(f"classes present: {int((rep.class_counts[1:] > 0).sum())} of {len(rep.class_counts) - 1}")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
