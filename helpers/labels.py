"""The class table (`labels.csv`) in the Unity generator's exact format, and the codes, palette and groups
derived from it."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.files import atomic_write_bytes

HEADER = ["LabelName", "LabelColor_Red", "LabelColor_Green", "LabelColor_Blue"]
VOID = "void"  # mask value 0: anything without a label

# The 23 classes of the original Unity bedroom scene, in its order; the generator writes this table.
BEDROOM = """\
LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue
building_wall,95,128,185
building_floor,60,114,221
building_ceiling,20,57,120
building_door,38,20,159
furniture_doubleBed,148,195,54
furniture_armchair,189,200,35
furniture_nightTable,53,140,0
furniture_tvStand,118,164,19
furniture_shelf,90,231,147
furniture_commode,95,190,87
furniture_rug,13,128,58
furniture_drawer,221,189,99
furniture_painting,137,253,213
furniture_clock,99,200,108
furniture_floor_lamp,64,125,82
items_nightLamp,132,0,60
items_vase,180,0,93
items_bowl,128,3,58
items_mug,106,11,93
items_plate,156,93,82
items_tv,185,80,80
items_phone,177,76,178
live_dog,255,221,0
"""


class LabelsError(ValueError):
    """labels.csv cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class LabelTable:
    """The rows of labels.csv: row k (1-based) is mask value k."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @property
    def codes(self) -> list[str]:
        """Class names indexed by mask value, `void` at 0."""
        return [VOID, *self.names]

    @property
    def n_classes(self) -> int:
        """Number of model outputs: every row plus void."""
        return len(self.names) + 1

    @property
    def palette(self) -> np.ndarray:
        """(n_classes, 3) uint8 display colours indexed by mask value; void is black."""
        return np.array([(0, 0, 0), *self.colors], dtype=np.uint8)

    @property
    def groups(self) -> dict[str, list[int]]:
        """Label group (the prefix before the first `_`) -> mask values in it."""
        out: dict[str, list[int]] = {}
        for value, name in enumerate(self.names, start=1):
            out.setdefault(group_of(name), []).append(value)
        return out


def group_of(name: str) -> str:
    """The label group of a class name, e.g. `furniture` for `furniture_rug`."""
    return name.split("_", 1)[0]


def parse_labels(text: str, source: str = "labels.csv") -> LabelTable:
    """Parse labels.csv text, raising LabelsError with every problem found."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise LabelsError(f"{source}: the file is empty; it needs the header {','.join(HEADER)} and one row per class.")
    header = [h.strip().lstrip("\ufeff") for h in rows[0]]
    if header != HEADER:
        missing = [h for h in HEADER if h not in header]
        detail = f"missing column(s) {', '.join(missing)}" if missing else f"columns are {','.join(header)}"
        first = (text.lstrip("\ufeff").splitlines() or [""])[0][:120]
        hint = " Separate the values with commas, not semicolons or tabs." if len(header) == 1 and \
            any(c in first for c in ";\t") else ""
        raise LabelsError(f"{source}: header must be exactly {','.join(HEADER)} ({detail}); line 1 is {first!r}.{hint}")
    problems: list[str] = []
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 4:
            problems.append(f"line {line_no}: expected 4 values (name,R,G,B), found {len(row)}: {','.join(row)}")
            continue
        name = row[0].strip()
        if not name:
            problems.append(f"line {line_no}: the class name is empty")
        try:
            rgb = tuple(int(v) for v in row[1:])
        except ValueError:
            problems.append(f"line {line_no} ({name}): colour values must be whole numbers, found {','.join(row[1:])}")
            continue
        bad = [v for v in rgb if not 0 <= v <= 255]
        if bad:
            problems.append(f"line {line_no} ({name}): colour values must be 0-255, found {','.join(map(str, rgb))}")
        if name in names:
            problems.append(f"line {line_no}: duplicate class name {name!r} (first on line {names.index(name) + 2})")
        if name == VOID:
            problems.append(f"line {line_no}: {VOID!r} is reserved for mask value 0 and cannot be a row")
        names.append(name)
        colors.append(rgb)  # type: ignore[arg-type]
    if not names and not problems:
        problems.append("no class rows after the header")
    if len(names) > 255:
        problems.append(f"{len(names)} classes do not fit an 8-bit mask (at most 255)")
    if problems:
        raise LabelsError(f"{source} is malformed:\n  - " + "\n  - ".join(problems))
    return LabelTable(tuple(names), tuple(colors))


def read_labels(path: str | Path) -> LabelTable:
    """Read a labels.csv file (or the labels.csv inside a dataset folder)."""
    path = Path(path)
    if path.is_dir() and path.name != "labels.csv":
        path = path / "labels.csv"
    if path.is_dir():
        raise LabelsError(f"{path} is a folder; it must be a text file with one row per class.")
    if not path.is_file():
        raise LabelsError(f"{path} not found: a dataset needs a labels.csv with one row per class.")
    data = path.read_bytes()
    utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
    try:
        text = data.decode("utf-16") if utf16 else data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        why = "starts like UTF-16 but does not decode as it" if utf16 else \
            f"is not UTF-8 text (byte {e.start} is 0x{data[e.start]:02x}, as in Latin-1 or Windows-1252)"
        raise LabelsError(f"{path} {why}: save it as UTF-8 (in Excel: 'CSV UTF-8').") from None
    return parse_labels(text, str(path))


def format_labels(table: LabelTable) -> str:
    """labels.csv text for a table, byte-for-byte the Unity format."""
    lines = [",".join(HEADER)] + [f"{n},{r},{g},{b}" for n, (r, g, b) in zip(table.names, table.colors)]
    return "\n".join(lines) + "\n"


def write_labels(table: LabelTable, path: str | Path) -> None:
    """Write labels.csv atomically."""
    atomic_write_bytes(Path(path), format_labels(table).encode())
