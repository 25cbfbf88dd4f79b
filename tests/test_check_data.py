"""Each bad input gets its own broken copy of the tiny dataset and a report that names the files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.check_data import (
    DatasetError,
    check_dataset,
    fix_rgb,
    highlight_class,
    main,
    mask_values,
    mask_values_in,
    require_clean,
)
from helpers.labels import read_labels

REPO = Path(__file__).resolve().parents[1]

HEADER = "LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "helpers.check_data", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def only_error(rep, needle):
    assert not rep.ok
    assert any(needle in e for e in rep.errors), rep
    return next(e for e in rep.errors if needle in e)


def test_clean_dataset_passes(tiny_dataset):
    rep = check_dataset(tiny_dataset)
    assert rep.ok and rep.n_pairs == 12, rep
    assert rep.class_counts[1:3].all()  # walls and floors are in every room
    r = run_cli(tiny_dataset)
    assert r.returncode == 0 and "OK" in r.stdout


def test_screenshot_without_label_and_label_without_screenshot(dataset_copy):
    (dataset_copy / "labels" / "3.png").unlink()
    (dataset_copy / "screenshots" / "5.png").unlink()
    rep = check_dataset(dataset_copy)
    assert "3.png" in only_error(rep, "screenshot(s) without a label")
    assert "5.png" in only_error(rep, "label(s) without a screenshot")


def test_size_mismatch(dataset_copy):
    Image.open(dataset_copy / "labels" / "2.png").resize((48, 32)).save(dataset_copy / "labels" / "2.png")
    assert "2.png (screenshot 96x64, label 48x32)" in only_error(check_dataset(dataset_copy), "sizes differ")


def test_truncated_and_unreadable_png(dataset_copy):
    p = dataset_copy / "screenshots" / "4.png"
    p.write_bytes(p.read_bytes()[:200])
    (dataset_copy / "labels" / "6.png").write_text("not a png")
    msg = only_error(check_dataset(dataset_copy), "unreadable or truncated")
    assert "screenshots/4.png" in msg and "labels/6.png" in msg
    r = run_cli(dataset_copy)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr


def test_mask_values_above_class_count(dataset_copy):
    m = np.array(Image.open(dataset_copy / "labels" / "7.png"))
    m[:3, :3] = 57
    m[-1, -1] = 24
    Image.fromarray(m).save(dataset_copy / "labels" / "7.png")
    msg = only_error(check_dataset(dataset_copy), "mask values above 23")
    assert "value 24 in 1 file(s): 7.png" in msg and "value 57 in 1 file(s): 7.png" in msg
    assert "device-side assert" in msg


def _colour_code(folder: Path, stem: str, alpha: bool = False) -> np.ndarray:
    labels = read_labels(folder)
    m = np.array(Image.open(folder / "labels" / f"{stem}.png"))
    rgb = labels.palette[m]
    if alpha:
        rgb = np.dstack([rgb, np.full(m.shape, 255, np.uint8)])
    Image.fromarray(rgb).save(folder / "labels" / f"{stem}.png")
    return m


def test_colour_coded_labels_are_named_and_fixed(dataset_copy, tmp_path):
    original = _colour_code(dataset_copy, "1")
    _colour_code(dataset_copy, "8", alpha=True)
    before = (dataset_copy / "labels" / "1.png").read_bytes()
    msg = only_error(check_dataset(dataset_copy), "colour-coded")
    assert "1.png" in msg and "8.png" in msg and "building_wall (1)" in msg and "--fix-rgb" in msg

    out = tmp_path / "fixed"
    r = run_cli(dataset_copy, "--fix-rgb", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "converted 2" in r.stdout
    assert (dataset_copy / "labels" / "1.png").read_bytes() == before  # originals untouched
    fixed = Image.open(out / "labels" / "1.png")
    assert fixed.mode == "L" and (np.array(fixed) == original).all()
    assert check_dataset(out).ok
    with pytest.raises(ValueError, match="not empty"):
        fix_rgb(dataset_copy, out)  # never overwrites a folder a user already has


def test_malformed_labels_csv(dataset_copy):
    (dataset_copy / "labels.csv").write_text(f"{HEADER}\nwall,1,2,3\nwall,1,2,999\n")
    msg = only_error(check_dataset(dataset_copy), "malformed")
    assert "duplicate class name 'wall'" in msg and "0-255" in msg


def test_empty_dataset(tmp_path):
    (tmp_path / "screenshots").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels.csv").write_text((REPO / "Assets" / "Data~" / "labels.csv").read_text())
    only_error(check_dataset(tmp_path), "the dataset is empty")
    assert run_cli(tmp_path).returncode == 1


def test_missing_folders_and_bad_invocation(tmp_path):
    only_error(check_dataset(tmp_path), "screenshots is missing")
    r = run_cli(tmp_path / "nope")
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert run_cli().returncode == 2


def test_class_that_never_occurs_is_a_warning(dataset_copy):
    for p in (dataset_copy / "labels").glob("*.png"):
        m = np.array(Image.open(p))
        m[m == 23] = 0
        Image.fromarray(m).save(p)
    rep = check_dataset(dataset_copy)
    assert rep.ok and any("live_dog (23)" in w for w in rep.warnings)
    assert main([str(dataset_copy)]) == 0


def test_require_clean_raises_the_report(dataset_copy):
    (dataset_copy / "labels" / "0.png").unlink()
    with pytest.raises(DatasetError, match="without a label"):
        require_clean(dataset_copy)


def test_debugging_aids(tiny_dataset):
    values = mask_values(tiny_dataset / "labels" / "0.png")
    assert {1, 2} <= values and max(values) <= 23
    seen = mask_values_in(tiny_dataset, sample=5)
    assert seen[1] == 5 and set(seen) >= values
    img = highlight_class(tiny_dataset / "labels" / "0.png", 2)
    m = np.array(Image.open(tiny_dataset / "labels" / "0.png"))
    assert img.dtype == np.uint8 and ((img == 255) == (m == 2)).all()
