"""Checks a dataset folder before training and says, file by file, what is wrong and what to do.

    python -m helpers.check_data DIR               # exit 0 clean, 1 problems found, 2 wrong invocation
    python -m helpers.check_data DIR --fix-rgb OUT # labels training would misread -> index masks, new folder
"""
from __future__ import annotations

import argparse
import shutil
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.files import UNDECODABLE, staged_parts
from helpers.labels import LabelsError, LabelTable, read_labels
from helpers.paths import DATASET_PARTS, IMAGE_SUFFIXES, image_files, split_problem
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
    except UNDECODABLE as e:
        return None, f"{e.__class__.__name__}: {e}"


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


@dataclass
class MaskRead:
    """A label image read as class values, and why training would misread the file itself, if it would."""

    index: np.ndarray
    needs_fix: str | None = None  # "colour-coded", "1-bit" or "palette": --fix-rgb writes what training expects
    unknown: np.ndarray | None = None  # pixels of a colour-coded label whose colour is not in labels.csv


def _mostly_label_colours(rgb: np.ndarray, labels: LabelTable) -> tuple[bool, np.ndarray, np.ndarray]:
    """Whether most non-black pixels have a labels.csv colour (a colour-coded label), with the colour mapping."""
    index, unknown = colour_to_index(rgb, labels)
    lit = rgb[..., :3].any(-1)
    return bool(lit.any()) and (~unknown[lit]).mean() > 0.5, index, unknown


def read_mask(img: Image.Image, labels: LabelTable | None) -> MaskRead:
    """Class values of a label image, judged by what training sees: fastai opens every mask with convert("L").

    Palette and grey RGB images can be either index masks or colour-coded labels: they count as colour-coded when
    most of their non-black pixels have a labels.csv colour, so a stray value or colour does not flip the verdict."""
    if img.mode == "1":  # convert("L") makes 0/1 into 0/255
        return MaskRead(np.asarray(img).astype(np.uint8), "1-bit")
    if img.mode in ("L", "LA") or img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img)
        return MaskRead(arr[..., 0] if arr.ndim == 3 else arr)
    if img.mode == "P":
        idx = np.asarray(img)
        used = np.unique(idx)
        pal = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        if len(pal) > used.max():
            if (pal[used] == used[:, None]).all():
                return MaskRead(idx)  # a grey palette: convert("L") gives the index back
            if labels is not None:
                coded, index, unknown = _mostly_label_colours(pal[idx], labels)
                if coded:
                    return MaskRead(index, "colour-coded", unknown)
        return MaskRead(idx, "palette")  # the index is the class (VOC, CVAT); convert("L") gives brightness
    arr = np.asarray(img if img.mode in ("RGB", "RGBA") else img.convert("RGB"))[..., :3]
    grey = (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    if labels is None:
        return MaskRead(arr[..., 0], None if grey else "colour-coded")
    coded, index, unknown = _mostly_label_colours(arr, labels)
    if grey and not coded:
        return MaskRead(arr[..., 0])  # an index mask saved with three equal channels: convert("L") reads it back
    return MaskRead(index, "colour-coded", unknown)


def shared_colours(labels: LabelTable) -> list[str]:
    """Groups of classes that labels.csv gives the same colour, e.g. 'building_floor = building_ceiling'."""
    by_colour: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    for name, colour in zip(labels.names, labels.colors):
        by_colour[colour].append(name)
    return [" = ".join(names) for names in by_colour.values() if len(names) > 1]


def mask_values(path: str | Path) -> set[int]:
    """The set of values in one mask file."""
    return set(np.unique(read_mask(Image.open(path), None).index).tolist())


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
    return (read_mask(Image.open(mask_path), None).index == value).astype(np.uint8) * 255


@dataclass
class Scan:
    """What reading every image/label pair found, before it is worded as errors and warnings."""

    unreadable: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    deep_shots: list[str] = field(default_factory=list)
    lossy: list[str] = field(default_factory=list)
    needs_fix: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rgb_colours: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    unknown_colour_files: list[str] = field(default_factory=list)
    too_big: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))


def _numeric(name: str) -> tuple[int, str]:
    stem = Path(name).stem
    return len(stem), stem


def _images_in(folder: Path) -> dict[str, Path]:
    """Name -> path of the files training reads from one folder."""
    return {p.name: p for p in image_files(folder)}


def _near_misses(names: list[str], others: list[str]) -> dict[str, str]:
    """Unpaired screenshot name -> unpaired label name that differs only in suffix or Unicode form."""
    by_key = {unicodedata.normalize("NFC", Path(n).stem).lower(): n for n in others}
    return {n: by_key[k] for n in names if (k := unicodedata.normalize("NFC", Path(n).stem).lower()) in by_key}


def find_pairs(folder: Path, rep: Report) -> tuple[LabelTable | None, list[tuple[Path, Path]]]:
    """labels.csv and the screenshot/label pairs of a dataset, found as training finds them (the label has the
    screenshot's file name); what is missing or unmatched goes into `rep`."""
    labels: LabelTable | None = None
    try:
        labels = read_labels(folder / "labels.csv")
    except LabelsError as e:
        rep.errors.append(str(e))
    for sub in ("screenshots", "labels"):
        d = folder / sub
        if not d.is_dir():
            rep.errors.append(f"{d} is missing: a dataset needs screenshots/N.png and labels/N.png.")
            if sub == "screenshots" and looks_like_solo(folder):
                rep.errors.append(solo_hint(folder))
            continue
        nested = sorted(p.name for p in d.iterdir() if p.is_dir() and p.suffix.lower() not in IMAGE_SUFFIXES)
        if nested:
            rep.warnings.append(f"{sub}/ holds sub-folder(s) {_names(nested)}: training reads only the files directly "
                                f"in screenshots/ and labels/, so their images are not used.")
    shots, masks = _images_in(folder / "screenshots"), _images_in(folder / "labels")
    only_shots = sorted(set(shots) - set(masks), key=_numeric)
    only_masks = sorted(set(masks) - set(shots), key=_numeric)
    near = _near_misses(only_shots, only_masks)
    only_shots = [n for n in only_shots if n not in near]
    only_masks = [n for n in only_masks if n not in near.values()]
    if near:
        pairs_named = [f"screenshots/{s} and labels/{m}" for s, m in near.items()]
        rep.errors.append(f"{len(near)} screenshot(s) whose label has another file name: {_names(pairs_named)}. "
                          "Training looks for labels/ plus the screenshot's exact file name (extension, case and "
                          "Unicode form included); rename one file of each pair (Unity writes both as N.png).")
    if only_shots:
        rep.errors.append(f"{len(only_shots)} screenshot(s) without a label in labels/: "
                          f"{_names(only_shots)}. Re-export them or delete the screenshots.")
    if only_masks:
        rep.errors.append(f"{len(only_masks)} label(s) without a screenshot in screenshots/: {_names(only_masks)}.")
    pairs = [(shots[s], masks[s]) for s in sorted(set(shots) & set(masks), key=_numeric)]
    if not pairs and not near and (shots or masks or all(d.is_dir() for d in (folder / "screenshots",
                                                                                   folder / "labels"))):
        rep.errors.append(f"the dataset is empty: no screenshot has a matching label. Generate one with "
                          f"`python -m helpers.synth --out {folder}` or export from Unity.")
    return labels, pairs


def scan_pairs(pairs: list[tuple[Path, Path]], labels: LabelTable | None) -> Scan:
    """Decode every pair and collect unreadable files, size mismatches, labels training would misread and
    mask values."""
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
        if mask.format == "JPEG":
            scan.lossy.append(name)
        if shot.mode.startswith("I") or shot.mode == "F":
            scan.deep_shots.append(f"{shot_path.name} ({shot.mode})")
        if shot.size != mask.size:
            scan.size_mismatch.append(f"{name} (screenshot {shot.size[0]}x{shot.size[1]}, "
                                      f"label {mask.size[0]}x{mask.size[1]})")
        read = read_mask(mask, labels)
        if read.needs_fix:
            scan.needs_fix[read.needs_fix].append(name)
        known = read.index if read.unknown is None else read.index[~read.unknown]
        if read.needs_fix == "colour-coded":
            for v in np.unique(known).tolist():
                scan.rgb_colours[v] += 1
            if read.unknown is not None and read.unknown.any():
                scan.unknown_colour_files.append(name)
        values, c = np.unique(known.astype(np.int64), return_counts=True)
        for v, k in zip(values.tolist(), c.tolist()):
            if v >= n_classes:
                scan.too_big[v].append(name)
            elif v < 256:
                scan.counts[v] += k
    return scan


FIX_HINTS = {
    "colour-coded": "are colour-coded RGB/RGBA instead of single-channel index masks",
    "1-bit": "are 1-bit black-and-white images: training reads them as 0 and 255, not 0 and 1",
    "palette": "are palette images whose palette index is the class (as VOC or CVAT save them): training reads "
               "their colours' brightness, not the index",
}


def word_report(scan: Scan, labels: LabelTable | None, rep: Report) -> None:
    """Turn a scan into the report's errors and warnings, each saying what to do."""
    n_classes = labels.n_classes if labels else 256
    if scan.unreadable:
        rep.errors.append(f"{len(scan.unreadable)} unreadable or truncated image(s): {_names(scan.unreadable)}. "
                          "Re-export or delete them.")
    if scan.lossy:
        rep.errors.append(f"{len(scan.lossy)} label(s) are JPEG images: {_names(scan.lossy)}. JPEG compression "
                          "changes the class values along every edge; export the labels as PNG.")
    if scan.deep_shots:
        rep.errors.append(f"{len(scan.deep_shots)} screenshot(s) are 16-bit or floating-point images: "
                          f"{_names(scan.deep_shots)}. Training reads screenshots as 8-bit RGB, which clips these to "
                          "white; save them as 8-bit RGB PNGs.")
    if scan.size_mismatch:
        rep.errors.append(f"{len(scan.size_mismatch)} pair(s) whose screenshot and label sizes differ: "
                          f"{_names(scan.size_mismatch)}.")
    if scan.too_big:
        detail = "; ".join(f"value {v} in {len(fs)} file(s): {_names(fs)}" for v, fs in sorted(scan.too_big.items()))
        rep.errors.append(f"mask values above {n_classes - 1} (labels.csv has {n_classes - 1} classes, 0 is void): "
                          f"{detail}. Training would crash with 'CUDA error: device-side assert triggered'. Give every "
                          "object in the scene a label from labels.csv, or leave it unlabelled (0); check that the "
                          "label camera writes linear, not sRGB, values.")
    shared = shared_colours(labels) if labels is not None else []
    for kind, files in scan.needs_fix.items():
        rep.rgb_labels += files
        msg = f"{len(files)} label image(s) {FIX_HINTS[kind]}: {_names(files)}."
        if kind == "colour-coded" and labels is not None and scan.rgb_colours:
            matched = ", ".join(f"{labels.codes[v]} ({v})" for v in sorted(scan.rgb_colours))
            msg += f" Their colours match these labels.csv classes: {matched}."
        if kind == "colour-coded" and scan.unknown_colour_files:
            msg += (f" {len(scan.unknown_colour_files)} of them also hold colours not in labels.csv (these pixels "
                    f"would become void, 0): {_names(scan.unknown_colour_files)}.")
        if kind == "colour-coded" and shared:
            msg += (f" labels.csv gives several classes one colour ({'; '.join(shared)}), so the colours cannot be "
                    "mapped back to classes: give each class its own colour first.")
        msg += f" Convert them with `python -m helpers.check_data {rep.folder} --fix-rgb NEW_FOLDER`."
        rep.errors.append(msg)
    if shared and "colour-coded" not in scan.needs_fix:
        rep.warnings.append(f"labels.csv gives several classes the same colour ({'; '.join(shared)}): overlays "
                            "cannot tell them apart.")
    if labels is not None:
        rep.class_counts = scan.counts[: labels.n_classes]
        if not rep.class_counts[1:].any() and not (scan.too_big or scan.needs_fix or scan.unreadable):
            rep.errors.append("every label pixel is 0 (void): no mask shows any class, so there is nothing to learn. "
                              "Check that the objects in the scene carry labels and that the label camera wrote them.")
            return
        missing = [f"{labels.codes[v]} ({v})" for v in range(1, labels.n_classes) if scan.counts[v] == 0]
        if missing and not scan.needs_fix:
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
    problem = split_problem([shot for shot, _ in pairs])
    if problem:
        rep.errors.append(f"training cannot start: {problem}")
    if pairs:
        word_report(scan_pairs(pairs, labels), labels, rep)
    return rep


def require_clean(folder: str | Path) -> Report:
    """Check a dataset and raise DatasetError with the full report when it is not fit for training."""
    rep = check_dataset(folder)
    if not rep.ok:
        raise DatasetError(str(rep))
    return rep


@dataclass
class Fixed:
    """What --fix-rgb did: labels rewritten, and colour-coded pixels that matched no class and became void."""

    converted: int = 0
    unknown_pixels: int = 0
    unknown_files: list[str] = field(default_factory=list)


def _fix_into(folder: Path, tmp: Path, labels: LabelTable) -> Fixed:
    """Copy a dataset into `tmp`, writing every label training would misread as a single-channel index PNG."""
    fixed = Fixed()
    shutil.copy2(folder / "labels.csv", tmp / "labels.csv")
    shutil.copytree(folder / "screenshots", tmp / "screenshots")
    (tmp / "labels").mkdir()
    shared = shared_colours(labels)
    for src in sorted(_images_in(folder / "labels").values()):
        img, _ = _open(src)
        read = read_mask(img, labels) if img is not None else None
        if read is None or read.needs_fix is None:
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / "labels" / src.name)
            continue
        if read.needs_fix == "colour-coded" and shared:
            raise LabelsError(f"labels.csv gives several classes one colour ({'; '.join(shared)}), so the colours of "
                             f"labels/{src.name} cannot be mapped back to classes; give each class its own colour.")
        if read.unknown is not None and read.unknown.any():
            fixed.unknown_pixels += int(read.unknown.sum())
            fixed.unknown_files.append(src.name)
        Image.fromarray(read.index.astype(np.uint8), mode="L").save(tmp / "labels" / src.name, format="PNG")
        fixed.converted += 1
    return fixed


def fix_rgb(folder: str | Path, out: str | Path) -> Fixed:
    """Write a copy of the dataset to the new folder `out`, with colour-coded, 1-bit and palette labels turned into
    single-channel index masks; the copy appears in `out` only when complete."""
    folder, out = Path(folder), Path(out)
    if out.resolve() == folder.resolve() or out.resolve().is_relative_to(folder.resolve()):
        raise ValueError("--fix-rgb needs a new folder outside the dataset: the original labels are never overwritten.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} is not empty; choose a new folder so nothing there is overwritten.")
    for sub in ("screenshots", "labels"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder / sub} is missing: --fix-rgb copies a dataset with screenshots/ and "
                                    "labels/.")
    labels = read_labels(folder / "labels.csv")
    with staged_parts(out, DATASET_PARTS) as tmp:
        return _fix_into(folder, tmp, labels)


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
            fixed = fix_rgb(args.folder, args.fix_rgb)
        except (ValueError, LabelsError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1 if isinstance(e, (LabelsError, OSError)) else 2
        print(f"converted {fixed.converted} label(s) to single-channel index masks; the fixed dataset is in "
              f"{args.fix_rgb}")
        if fixed.unknown_files:
            print(f"{fixed.unknown_pixels} pixel(s) in {len(fixed.unknown_files)} label(s) had colours not in "
                  f"labels.csv and are now void (0): {_names(fixed.unknown_files)}")
        args.folder = args.fix_rgb
    rep = check_dataset(args.folder)
    print(rep)
    if rep.class_counts is not None and rep.ok:
        print(f"classes present: {int((rep.class_counts[1:] > 0).sum())} of {len(rep.class_counts) - 1}")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
