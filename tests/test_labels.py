import re
from pathlib import Path

import numpy as np
import pytest

from helpers.labels import BEDROOM, LabelsError, format_labels, parse_labels, read_labels, write_labels

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "Assets" / "Data~" / "labels.csv"

HEADER = "LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue"


def test_committed_table_is_the_bedroom_scene():
    assert COMMITTED.read_text() == BEDROOM
    t = read_labels(COMMITTED)
    assert len(t.names) == 23 and t.names[0] == "building_wall" and t.names[-1] == "live_dog"


def test_round_trip_is_byte_identical(tmp_path):
    t = read_labels(COMMITTED)
    write_labels(t, tmp_path / "labels.csv")
    assert (tmp_path / "labels.csv").read_bytes() == COMMITTED.read_bytes()
    assert format_labels(parse_labels(format_labels(t))) == format_labels(t)


def test_codes_palette_groups():
    t = parse_labels(BEDROOM)
    assert t.codes[0] == "void" and t.codes[1] == "building_wall" and t.n_classes == 24
    assert t.palette.shape == (24, 3) and t.palette.dtype == np.uint8
    assert t.palette[0].tolist() == [0, 0, 0] and t.palette[1].tolist() == [95, 128, 185]
    assert t.groups == {"building": [1, 2, 3, 4], "furniture": list(range(5, 16)),
                        "items": list(range(16, 23)), "live": [23]}


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("LabelName,LabelColor_Red,LabelColor_Green\nwall,1,2\n", "missing column(s) LabelColor_Blue"),
    (f"{HEADER}\nwall,1,2,3\nwall,4,5,6\n", "duplicate class name 'wall'"),
    ("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\nwall,1,2,300\n", "must be 0-255"),
    ("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\nwall,1,2,-1\n", "must be 0-255"),
    ("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\nwall,1,x,3\n", "whole numbers"),
    ("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\nwall,1,2\n", "expected 4 values"),
    ("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\n", "no class rows"),
])
def test_malformed_tables_say_what_is_wrong(text, message):
    with pytest.raises(LabelsError, match=re.escape(message)) as e:
        parse_labels(text, "x/labels.csv")
    assert str(e.value).startswith("x/labels.csv")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(LabelsError, match="not found"):
        read_labels(tmp_path)


def test_labels_csv_of_byte_order_marks_only_or_broken_utf16(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbf")
    with pytest.raises(LabelsError, match="header must be exactly"):
        read_labels(path)
    path.write_bytes(b"\xff\xfeL\x00a\x00b")
    with pytest.raises(LabelsError, match="starts like UTF-16"):
        read_labels(path)
