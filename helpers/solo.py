"""Converts a Unity Perception SOLO dataset with a semantic-segmentation labeler into this repo's dataset format.

    python -m helpers.solo SOLO_DIR OUT_DIR [--labels labels.csv] [--camera ID] [--background R,G,B]
                                           [--strict] [--force] [--workers K]

Exit status: 0 converted, 1 the dataset cannot be converted (nothing usable, --strict problems, too many
classes), 2 wrong invocation (a missing folder, a non-empty OUT_DIR without --force, an unknown --camera).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from helpers.files import UNDECODABLE, atomic_path, atomic_write_bytes, staged_parts
from helpers.labels import LabelsError, LabelTable, format_labels, parse_labels, read_labels
from helpers.paths import DATASET_PARTS

Rgb = tuple[int, int, int]
SEQUENCE = re.compile(r"sequence\.(\d+)$")
STEP = re.compile(r"step(\d+)\.frame_data\.json$")
BLACK: Rgb = (0, 0, 0)
MAX_COLOURS_LISTED = 5  # unknown colours named per mask before "... and N more"
COMMAND = "python -m helpers.solo"

# Why a frame is skipped, for the count at the end; the per-frame line says the details.
NO_JSON, NO_CAMERA, NO_SEMANTIC, MISSING, SIZES, UNREADABLE, AMBIGUOUS, TWIN_CAMERAS = (
    "frame data that does not parse", "no capture from the camera", "no semantic segmentation",
    "a missing file", "image and mask of different sizes", "an unreadable image", "one colour for two labels",
    "two cameras with one id")


class SoloError(Exception):
    """The conversion cannot go on; the message says what is wrong and what to do."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Shot:
    """One RGB camera's capture in one frame: its files and the labels its mask shows, or why it is unusable."""

    image: Path | None = None
    mask: Path | None = None
    instances: tuple[tuple[str, Rgb], ...] = ()
    problem: tuple[str, str] | None = None  # (kind, detail)


@dataclass(frozen=True)
class FrameData:
    """What one stepN.frame_data.json lists, checked without decoding any pixels."""

    name: str  # e.g. sequence.0/step0.frame_data.json, for messages
    shots: dict[str, Shot] = field(default_factory=dict)
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class Job:
    """One frame to convert: its files, its output number and mask colour -> mask value."""

    index: int
    image: Path
    mask: Path
    out: Path
    lut: tuple[tuple[int, int], ...]
    write: bool


@dataclass(frozen=True)
class Done:
    """What converting one frame found."""

    index: int
    unknown: tuple[tuple[Rgb, int], ...] = ()  # colours not in the frame data and not background, pixel counts
    counts: np.ndarray | None = None  # pixels per mask value
    problem: str | None = None


@dataclass
class Result:
    """What a conversion wrote and skipped."""

    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    labels: LabelTable | None = None
    camera: str = ""
    unknown_frames: int = 0


def looks_like_solo(folder: str | Path) -> bool:
    """Whether a folder is a SOLO dataset (sequence.N/ folders or metadata.json) rather than a converted one."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / "screenshots").is_dir():
        return False
    if (folder / "metadata.json").is_file():
        return True
    return any(SEQUENCE.search(p.name) and p.is_dir() for p in folder.iterdir())


def solo_hint(folder: str | Path) -> str:
    """The line check_data prints for a SOLO dataset given by mistake."""
    return (f"{folder} looks like a Unity Perception SOLO dataset (sequence.N/ folders, metadata.json), not a "
            f"screenshots/labels dataset. Convert it first: `{COMMAND} {folder} NEW_FOLDER`, then check NEW_FOLDER.")


def parse_rgb(text: str) -> Rgb:
    """'12,34,56' -> (12, 34, 56), with a clear error otherwise."""
    try:
        rgb = tuple(int(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise argparse.ArgumentTypeError(f"a colour is R,G,B with values 0-255, like 0,0,0; got {text!r}")
    return rgb  # type: ignore[return-value]


def rgb_key(rgb: Rgb) -> int:
    """One integer per colour, as `mask_keys` computes for every pixel."""
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def key_rgb(key: int) -> Rgb:
    """The colour of an `rgb_key`."""
    return (key >> 16) & 255, (key >> 8) & 255, key & 255


def frame_files(root: Path) -> list[Path]:
    """Every stepN.frame_data.json, sorted by sequence number, then step number."""
    found = []
    for seq in root.iterdir():
        m = SEQUENCE.search(seq.name)
        if m and seq.is_dir():
            for f in seq.iterdir():
                s = STEP.fullmatch(f.name)
                if s:
                    found.append(((int(m.group(1)), int(s.group(1)), seq.name), f))
    return [f for _, f in sorted(found)]


def _resolve(seq_dir: Path, filename: str) -> Path:
    """The file a frame's `filename` field names."""
    # Perception writes file names relative to the sequence folder; some writers use the dataset root.
    path = seq_dir / filename
    if not path.exists() and (seq_dir.parent / filename).exists():
        return seq_dir.parent / filename
    return path


def _size(path: Path) -> tuple[int, int]:
    """(width, height) of an image."""
    with Image.open(path) as img:  # reads the header only
        return img.size


def _instances(annotation: dict) -> tuple[tuple[str, Rgb], ...]:
    """(labelName, colour) of every instance a semantic annotation lists."""
    out = []
    for inst in annotation.get("instances") or []:
        value = inst.get("pixelValue", inst.get("color"))
        if not isinstance(inst.get("labelName"), str) or not isinstance(value, list) or len(value) < 3:
            raise ValueError(f"an instance without labelName and pixelValue [r, g, b, a]: {json.dumps(inst)[:120]}")
        rgb = tuple(int(v) for v in value[:3])
        if not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"pixelValue {value} of {inst['labelName']!r} is not 0-255")
        out.append((inst["labelName"], rgb))
    return tuple(out)  # type: ignore[return-value]


def _shot(seq_dir: Path, capture: dict) -> Shot:
    """Check one RGB capture's files and read its semantic annotation."""
    semantic = [a for a in capture.get("annotations") or []
                if str(a.get("@type", "")).endswith("SemanticSegmentationAnnotation")]
    if not capture.get("filename"):
        return Shot(problem=(MISSING, "the camera capture has no filename"))
    if not semantic or not semantic[0].get("filename"):
        return Shot(problem=(NO_SEMANTIC, "no semantic segmentation annotation with a filename"))
    try:
        instances = _instances(semantic[0])
    except (ValueError, TypeError, AttributeError) as e:
        return Shot(problem=(NO_SEMANTIC, f"unexpected semantic segmentation annotation: {e}"))
    image, mask = _resolve(seq_dir, capture["filename"]), _resolve(seq_dir, semantic[0]["filename"])
    for what, path in (("image", image), ("mask", mask)):
        if not path.is_file():
            return Shot(problem=(MISSING, f"the {what} {path.name} is missing"))
    try:
        image_size, mask_size = _size(image), _size(mask)
    except UNDECODABLE as e:
        return Shot(problem=(UNREADABLE, f"{e.__class__.__name__}: {e}"))
    if image_size != mask_size:
        return Shot(problem=(SIZES, f"the image {image.name} is {image_size[0]}x{image_size[1]} but the mask "
                                    f"{mask.name} is {mask_size[0]}x{mask_size[1]}"))
    return Shot(image, mask, instances)


def read_frame(path: Path) -> FrameData:
    """Read one stepN.frame_data.json and check its RGB captures' files."""
    name = f"{path.parent.name}/{path.name}"
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return FrameData(name, problem=(NO_JSON, f"it does not parse ({e.__class__.__name__}: {e})"))
    try:
        captures = [c for c in data["captures"] if str(c.get("@type", "")).endswith("RGBCamera")]
        ids = Counter(str(c.get("id", "")) for c in captures)
        shots = {}
        for c in captures:
            cam = str(c.get("id", ""))
            shots[cam] = _shot(path.parent, c) if ids[cam] == 1 else Shot(problem=(
                TWIN_CAMERAS, f"{ids[cam]} RGB captures share the camera id {cam!r}; give each PerceptionCamera its "
                              "own id"))
        return FrameData(name, shots)
    except (KeyError, TypeError, AttributeError) as e:
        detail = f"{e.__class__.__name__}: {e}"
        return FrameData(name, problem=(NO_JSON, f"it parses but is not SOLO frame data ({detail}); expected "
                                                 "captures: [{\"@type\", \"id\", \"filename\", ...}]"))


def _map(fn: Callable, items: list, workers: int, desc: str) -> Iterator:
    """fn over items in order, in `workers` processes, with a progress bar on a terminal."""
    bar = tqdm(total=len(items), desc=desc, unit="frame", disable=None, leave=False)
    if workers <= 1 or len(items) < 2:
        results: Iterable = map(fn, items)
        pool = None
    else:
        pool = ProcessPoolExecutor(min(workers, len(items)))
        results = pool.map(fn, items, chunksize=max(1, min(32, len(items) // (workers * 4))))
    try:
        for r in results:
            bar.update()
            yield r
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def choose_camera(frames: list[FrameData], camera: str | None) -> str:
    """The RGB camera to convert: the one asked for, or the only one there is."""
    seen: Counter = Counter()
    semantic: Counter = Counter()
    for f in frames:
        for cam, shot in f.shots.items():
            seen[cam] += 1
            semantic[cam] += shot.problem is None or shot.problem[0] != NO_SEMANTIC
    choices = ", ".join(f"{c!r} ({seen[c]} frames, {semantic[c]} with semantic segmentation)" for c in sorted(seen))
    if camera is not None:
        if camera not in seen:
            raise SoloError(f"no RGB camera {camera!r} in the frame data; the cameras are: {choices or 'none'}.", 2)
        return camera
    if not seen:
        raise SoloError("no frame has an RGB camera capture (a capture whose @type ends in RGBCamera). "
                        "Add a PerceptionCamera with a SemanticSegmentationLabeler to the scene and export again.")
    if len(seen) > 1:
        raise SoloError(f"the dataset has {len(seen)} RGB cameras: {choices}. Pick one with --camera ID.", 2)
    return next(iter(seen))


def class_table(shots: list[Shot], labels_csv: Path | None, strict: bool,
                say: Callable[[str], None]) -> tuple[LabelTable, dict[str, int]]:
    """The class table (imposed, or the union of label names sorted by name) and label name -> mask value."""
    frames_of: Counter = Counter()
    colours: dict[str, Counter] = defaultdict(Counter)
    for shot in shots:
        for name in dict(shot.instances):
            frames_of[name] += 1
        for name, rgb in shot.instances:
            colours[name][rgb] += 1
    if labels_csv is not None:
        try:
            table = read_labels(labels_csv)
        except LabelsError as e:
            raise SoloError(f"--labels: {e}", 2)
        value = {n: v for v, n in enumerate(table.names, start=1)}
        missing = sorted(n for n in frames_of if n not in value)
        if missing:
            listed = ", ".join(f"{n!r} ({frames_of[n]} frames)" for n in missing)
            if strict:
                raise SoloError(f"{len(missing)} SOLO label(s) not in {labels_csv}: {listed}. Add them to the "
                                "table, or leave out --strict to turn their pixels into 0 (void).")
            say(f"warning: {len(missing)} SOLO label(s) not in {labels_csv}: {listed}; their pixels become 0 (void).")
        return table, {n: value.get(n, 0) for n in frames_of}
    names = sorted(frames_of)
    if len(names) > 255:
        raise SoloError(f"the dataset has {len(names)} labels, but an 8-bit mask holds at most 255 classes. Merge "
                        "labels in the Unity label configuration, or pass --labels with a table of at most 255 rows.")
    picked = []
    for n in names:
        # first seen in frame order, not most frequent, so that adding frames later keeps the colour
        first = next(iter(colours[n]))
        picked.append(first)
        if len(colours[n]) > 1:
            others = ", ".join(f"{rgb} in {k} frame(s)" for rgb, k in colours[n].items())
            say(f"note: label {n!r} has {len(colours[n])} pixel colours: {others}; labels.csv shows the first seen, "
                f"{first}. Each mask is still converted with its own frame's colours.")
    table = LabelTable(tuple(names), tuple(picked))
    try:  # a name with a comma, quotes, outer spaces or `void` cannot round-trip through labels.csv
        changed = [f"{a!r} reads back as {b!r}" for a, b in
                   zip(names, parse_labels(format_labels(table), "labels.csv made from the SOLO label names").names)
                   if a != b]
    except LabelsError as e:
        raise SoloError(f"{e}\nRename them in the Unity label configuration, or pass --labels with a table to map to.")
    if changed:
        raise SoloError(f"{len(changed)} SOLO label name(s) would change in labels.csv: {'; '.join(changed)}. Rename "
                        "them in the Unity label configuration (no quotes, no spaces at either end), or pass --labels "
                        "with a table to map to.")
    return table, {n: v for v, n in enumerate(names, start=1)}


def frame_lut(shot: Shot, value_of: dict[str, int], background: Iterable[Rgb]) -> tuple[tuple[int, int], ...] | str:
    """Mask colour key -> mask value for one frame, or why its colours are ambiguous."""
    lut = {rgb_key(rgb): 0 for rgb in background}
    owner: dict[int, str] = {}
    for name, rgb in shot.instances:
        k = rgb_key(rgb)
        if k in owner and value_of[owner[k]] != value_of[name]:
            return f"the colour {rgb} is listed for both {owner[k]!r} and {name!r}"
        owner[k] = name
        if lut.get(k) != 0:  # a label in a background colour stays 0: its pixels cannot be told from unlabelled ones
            lut[k] = value_of[name]
    return tuple(sorted(lut.items()))


def background_labels(shots: list[Shot], background: Iterable[Rgb]) -> dict[str, Rgb]:
    """Labels whose colour is a background colour (black or --background), with that colour."""
    keys = {rgb_key(rgb) for rgb in background}
    return {name: rgb for shot in shots for name, rgb in shot.instances if rgb_key(rgb) in keys}


def mask_keys(path: Path) -> np.ndarray:
    """(H, W) colour keys of a mask; alpha is ignored, since Perception writes 255 for every label."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def convert_frame(job: Job) -> Done:
    """Turn one frame into an RGB screenshot and an index mask; write them when job.write."""
    try:
        image = Image.open(job.image).convert("RGB") if job.write else None
        keys = mask_keys(job.mask)
    except UNDECODABLE as e:
        return Done(job.index, problem=f"{e.__class__.__name__}: {e}")
    colours, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    lut = dict(job.lut)
    values = np.array([lut.get(int(k), -1) for k in colours], dtype=np.int16)
    unknown = tuple(sorted(((key_rgb(int(k)), int(c)) for k, c, v in zip(colours, counts, values) if v < 0),
                           key=lambda kc: (-kc[1], kc[0])))
    mask = np.maximum(values, 0).astype(np.uint8)[inverse.reshape(keys.shape)]
    if image is not None:
        with atomic_path(job.out / "screenshots" / f"{job.index}.png") as tmp:
            image.save(tmp, format="PNG")
        with atomic_path(job.out / "labels" / f"{job.index}.png") as tmp:
            Image.fromarray(mask).save(tmp, format="PNG")
    return Done(job.index, unknown, np.bincount(mask.ravel(), minlength=256))


def _unknown_line(mask: Path, unknown: tuple[tuple[Rgb, int], ...]) -> str:
    """Which unlisted colours a mask holds, and how many pixels of each."""
    total = sum(c for _, c in unknown)
    shown = ", ".join(f"{rgb} x {c}" for rgb, c in unknown[:MAX_COLOURS_LISTED])
    more = f" ... and {len(unknown) - MAX_COLOURS_LISTED} more" if len(unknown) > MAX_COLOURS_LISTED else ""
    return (f"{mask.parent.name}/{mask.name}: {total} pixel(s) in {len(unknown)} colour(s) not listed in its frame "
            f"data: {shown}{more}")


def _check_out(solo: Path, out: Path, force: bool) -> None:
    """Refuse an output folder that would overwrite something without --force."""
    if out.exists() and not out.is_dir():
        raise SoloError(f"{out} is a file; OUT_DIR must be a new or empty folder.", 2)
    if out.resolve() == solo.resolve() or out.resolve().is_relative_to(solo.resolve()):
        raise SoloError("OUT_DIR must be a new folder outside the SOLO dataset, so nothing there is overwritten.", 2)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SoloError(f"{out} is not empty; choose a new folder, or pass --force to replace the converted dataset "
                        "there (its labels.csv, screenshots/ and labels/).", 2)


def _solo_root(solo: Path) -> None:
    """Refuse a folder that is not a SOLO dataset, saying what it looks like instead."""
    if not solo.is_dir():
        raise SoloError(f"{solo} is not a folder; point at the SOLO dataset (the folder with sequence.N/ folders).", 2)
    if (solo / "screenshots").is_dir() and (solo / "labels").is_dir():
        raise SoloError(f"{solo} is already a screenshots/labels dataset; check it with "
                        f"`python -m helpers.check_data {solo}` instead.", 2)
    if not any(SEQUENCE.search(p.name) and p.is_dir() for p in solo.iterdir()):
        if (solo / "metadata.json").is_file():
            raise SoloError(f"{solo} holds metadata.json but no sequence.N/ folders: the export has no frames. Run the "
                            "Perception scenario until it writes some, then convert again.")
        if SEQUENCE.search(solo.name) and looks_like_solo(solo.parent):
            raise SoloError(f"{solo} is one sequence of a SOLO dataset; point at the folder above it, "
                            f"{solo.parent}.", 2)
        inner = sorted(p for p in solo.iterdir() if p.is_dir() and looks_like_solo(p))
        hint = f" Did you mean {inner[0]}?" if inner else " Point at the folder Perception wrote (with metadata.json)."
        raise SoloError(f"{solo} has no sequence.N/ folders, so it is not a SOLO dataset.{hint}", 2)


def _skip(res: Result, say: Callable[[str], None], name: str, kind: str, detail: str) -> None:
    """Count a skipped frame and say why."""
    res.skipped[kind] += 1
    say(f"skipped {name}: {detail}")


def convert(solo: str | Path, out: str | Path, labels_csv: str | Path | None = None, camera: str | None = None,
            background: Iterable[Rgb] = (), strict: bool = False, force: bool = False, workers: int = 1,
            say: Callable[[str], None] = tqdm.write) -> Result:
    """Convert a SOLO dataset into OUT/screenshots, OUT/labels and OUT/labels.csv; raise SoloError when it cannot."""
    solo, out = Path(solo), Path(out)
    _solo_root(solo)
    _check_out(solo, out, force)
    background = [BLACK, *background]
    frames = list(_map(read_frame, frame_files(solo), workers, "reading frame data"))
    if not frames:
        raise SoloError(f"{solo} has sequence folders but no stepN.frame_data.json in them; the export is incomplete.")
    res = Result()
    parsed = [f for f in frames if f.problem is None]
    res.camera = choose_camera(parsed, camera) if parsed else ""
    usable: list[tuple[FrameData, Shot]] = []
    for f in frames:
        shot = f.shots.get(res.camera)
        if f.problem:
            _skip(res, say, f.name, *f.problem)
        elif shot is None:
            _skip(res, say, f.name, NO_CAMERA, f"no capture from camera {res.camera!r}")
        elif shot.problem:
            _skip(res, say, f.name, *shot.problem)
        else:
            usable.append((f, shot))
    if usable:  # frames whose colours are ambiguous are dropped first, so that their labels make no class
        _, value_of = class_table([s for _, s in usable], labels_csv and Path(labels_csv), strict, lambda _: None)
        kept = []
        for f, shot in usable:
            lut = frame_lut(shot, value_of, background)
            if isinstance(lut, str):
                _skip(res, say, f.name, AMBIGUOUS, lut)
            else:
                kept.append((f, shot))
        usable = kept
    if usable:
        res.labels, value_of = class_table([s for _, s in usable], labels_csv and Path(labels_csv), strict, say)
        for name, rgb in background_labels([s for _, s in usable], background).items():
            say(f"warning: label {name!r} has the colour {rgb}, which means nothing labelled; its pixels cannot be "
                "told from unlabelled ones and stay 0 (void). Give it another colour in the label configuration.")
    jobs, names = [], {}
    for f, shot in usable:
        lut = frame_lut(shot, value_of, background)
        jobs.append(Job(len(jobs), shot.image, shot.mask, out, lut, write=not strict))  # type: ignore[arg-type]
        names[len(names)] = (f.name, shot.mask)
    if not jobs:
        why = "; ".join(f"{n} with {kind}" for kind, n in sorted(res.skipped.items()))
        raise SoloError(f"nothing to convert in {solo}: {len(frames)} frame(s), none usable ({why or 'none'}). "
                        "The Perception camera needs a SemanticSegmentationLabeler, and its images must be exported.")

    if strict:  # check every mask before writing anything, so a failed --strict run leaves OUT_DIR as it was
        bad = [(d.index, d.unknown) for d in _map(convert_frame, jobs, workers, "checking masks") if d.unknown]
        for i, unknown in bad:
            say(f"error: {_unknown_line(names[i][1], unknown)}")
        if bad:
            raise SoloError(f"{len(bad)} mask(s) hold colours that their frame data does not list (--strict); nothing "
                            "was written. Give those objects a label, pass the sky colour with --background R,G,B, "
                            "or leave out --strict to turn them into 0 (void).")

    replaced = sum(1 for sub in ("screenshots", "labels") if (out / sub).is_dir() for _ in (out / sub).iterdir())
    with staged_parts(out, DATASET_PARTS) as tmp:  # moved into OUT_DIR only once complete
        jobs = [Job(j.index, j.image, j.mask, tmp, j.lut, write=True) for j in jobs]
        (tmp / "screenshots").mkdir()
        (tmp / "labels").mkdir()
        counts = np.zeros(256, dtype=np.int64)
        for d in _map(convert_frame, jobs, workers, "converting"):
            name, mask = names[d.index]
            if d.problem:
                _skip(res, say, name, UNREADABLE, f"{d.problem} (its number {d.index} stays unused)")
                continue
            if d.unknown:
                res.unknown_frames += 1
                say(f"warning: {_unknown_line(mask, d.unknown)}; they become 0 (void)")
            counts += d.counts
            res.written += 1
        if not res.written:
            raise SoloError(f"nothing to convert in {solo}: every image or mask failed to decode.")
        write_table(res.labels, tmp)
    if replaced:
        say(f"--force: replaced the earlier conversion in {out} ({replaced} file(s) in screenshots/ and labels/)")
    absent = [f"{res.labels.codes[v]} ({v})" for v in range(1, res.labels.n_classes) if counts[v] == 0]
    if absent:
        say(f"note: {len(absent)} class(es) of labels.csv never occur in the masks: {', '.join(absent)}")
    return res


def write_table(table: LabelTable, out: Path) -> None:
    """Write labels.csv atomically."""
    atomic_write_bytes(out / "labels.csv", format_labels(table).encode())


def summary(res: Result, out: Path) -> str:
    """The closing lines: what was written, what was skipped and why."""
    lines = [f"converted {res.written} frame(s) of camera {res.camera!r} into {out}: screenshots/, labels/ and "
             f"labels.csv with {len(res.labels.names)} class(es) plus 0 (void)"]
    if res.unknown_frames:
        lines.append(f"{res.unknown_frames} mask(s) had unlisted colours, turned into 0 (void); see the warnings")
    if res.skipped:
        why = ", ".join(f"{n} with {kind}" for kind, n in sorted(res.skipped.items()))
        lines.append(f"skipped {sum(res.skipped.values())} frame(s): {why}")
    lines.append(f"next: python -m helpers.check_data {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: convert, print what was skipped and why, exit 0, 1 or 2 (see the module doc)."""
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    ap.add_argument("solo", type=Path, metavar="SOLO_DIR", help="the SOLO dataset (holds metadata.json, sequence.N/)")
    ap.add_argument("out", type=Path, metavar="OUT_DIR", help="new folder for labels.csv, screenshots/, labels/")
    ap.add_argument("--labels", type=Path, metavar="CSV",
                    help="impose this class table, mapping SOLO labels by name (default: every label, sorted by name)")
    ap.add_argument("--camera", metavar="ID", help="the RGB camera to convert (default: the only one)")
    ap.add_argument("--background", type=parse_rgb, action="append", default=[], metavar="R,G,B",
                    help="another colour that means nothing labelled, e.g. the labeler's sky colour (black always is)")
    ap.add_argument("--strict", action="store_true",
                    help="stop on labels not in --labels and on mask colours the frame data does not list")
    ap.add_argument("--force", action="store_true", help="replace a converted dataset in a non-empty OUT_DIR")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    try:
        res = convert(args.solo, args.out, args.labels, args.camera, args.background, args.strict, args.force,
                      max(1, args.workers))
    except SoloError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except OSError as e:
        print(f"error: cannot write {e.filename or args.out}: {e.strerror}. Choose a folder you can write to.",
              file=sys.stderr)
        return 1
    print(summary(res, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
