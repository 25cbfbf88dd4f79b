"""Each bad input gets its own broken copy of the tiny dataset and a report that names the files."""
import os
import shutil
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
from helpers.files import staged_parts
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


def test_files_training_reads_are_checked_whatever_their_suffix(dataset_copy):
    for sub in ("screenshots", "labels"):
        (dataset_copy / sub / "5.png").rename(dataset_copy / sub / "5.PNG")
    m = np.array(Image.open(dataset_copy / "labels" / "5.PNG"))
    m[0, 0] = 99
    Image.fromarray(m).save(dataset_copy / "labels" / "5.PNG", format="PNG")
    Image.open(dataset_copy / "screenshots" / "2.png").convert("RGB").save(dataset_copy / "screenshots" / "9.jpg")
    (dataset_copy / "screenshots" / "4.png").rename(dataset_copy / "screenshots" / "4.jpg")
    rep = check_dataset(dataset_copy)
    assert "value 99 in 1 file(s): 5.PNG" in only_error(rep, "mask values above 23")
    assert "9.jpg" in only_error(rep, "screenshot(s) without a label")
    assert "screenshots/4.jpg and labels/4.png" in only_error(rep, "another file name")


def test_jpeg_labels_are_refused(dataset_copy):
    (dataset_copy / "screenshots" / "3.png").rename(dataset_copy / "screenshots" / "3.jpg")
    Image.open(dataset_copy / "labels" / "3.png").save(dataset_copy / "labels" / "3.jpg", quality=95)
    (dataset_copy / "labels" / "3.png").unlink()
    assert "3.jpg" in only_error(check_dataset(dataset_copy), "are JPEG images")


def test_masks_training_would_misread_are_named_and_fixed(dataset_copy, tmp_path):
    labels = dataset_copy / "labels"
    truth = {s: np.array(Image.open(labels / f"{s}.png")) for s in ("0", "1", "2", "3")}
    Image.fromarray(truth["0"] == 1).save(labels / "0.png")  # 1-bit: fastai's convert("L") reads 0/255
    voc = Image.fromarray(truth["1"], mode="P")  # palette index = class, VOC colours
    voc.putpalette(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tobytes())
    voc.save(labels / "1.png")
    grey = Image.fromarray(truth["2"], mode="P")  # a grey palette reads back as the index: fine
    grey.putpalette(np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes())
    grey.save(labels / "2.png")
    Image.fromarray(np.dstack([truth["3"], np.full_like(truth["3"], 255)]), mode="LA").save(labels / "3.png")
    rep = check_dataset(dataset_copy)
    assert "0.png" in only_error(rep, "1-bit")
    assert "1.png" in only_error(rep, "palette index is the class")
    assert not any("2.png" in e or "3.png" in e for e in rep.errors), rep

    out = tmp_path / "fixed"
    assert main([str(dataset_copy), "--fix-rgb", str(out)]) == 0
    assert (np.array(Image.open(out / "labels" / "0.png")) == (truth["0"] == 1)).all()
    assert (np.array(Image.open(out / "labels" / "1.png")) == truth["1"]).all()
    assert Image.open(out / "labels" / "1.png").mode == "L"


def test_grey_colours_and_shared_colours_in_labels_csv(dataset_copy, tmp_path):
    csv = dataset_copy / "labels.csv"
    rows = csv.read_text().splitlines()
    rows[1] = "building_wall,128,128,128"
    csv.write_text("\n".join(rows) + "\n")
    original = _colour_code(dataset_copy, "6")  # wall is grey: not to be taken for an index mask of value 128
    assert "6.png" in only_error(check_dataset(dataset_copy), "colour-coded")
    out = tmp_path / "fixed"
    assert main([str(dataset_copy), "--fix-rgb", str(out)]) == 0
    assert (np.array(Image.open(out / "labels" / "6.png")) == original).all()

    rows[3] = "building_ceiling," + rows[2].split(",", 1)[1]  # ceiling takes the floor's colour
    csv.write_text("\n".join(rows) + "\n")
    assert "building_floor = building_ceiling" in only_error(check_dataset(dataset_copy), "colour-coded")
    r = run_cli(dataset_copy, "--fix-rgb", tmp_path / "again")
    assert r.returncode == 1 and "own colour" in r.stderr and not (tmp_path / "again").exists()


def test_fix_rgb_counts_unknown_colours_and_leaves_no_half_copy(dataset_copy, tmp_path):
    _colour_code(dataset_copy, "1")
    rgb = np.array(Image.open(dataset_copy / "labels" / "1.png"))
    rgb[:2, :5] = (1, 2, 3)
    Image.fromarray(rgb).save(dataset_copy / "labels" / "1.png")
    r = run_cli(dataset_copy, "--fix-rgb", tmp_path / "fixed")
    assert r.returncode == 0 and "10 pixel(s) in 1 label(s) had colours not in labels.csv" in r.stdout
    shutil.rmtree(dataset_copy / "screenshots")
    r = run_cli(dataset_copy, "--fix-rgb", tmp_path / "half")
    assert r.returncode == 1 and "screenshots is missing" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "fixed"]  # no half-written "half"


def test_labels_csv_encodings_and_layout(dataset_copy):
    csv = dataset_copy / "labels.csv"
    text = csv.read_text()
    csv.write_bytes(text.replace("building_wall", "building_wäll").encode("latin-1"))
    assert "not UTF-8" in only_error(check_dataset(dataset_copy), "labels.csv")
    csv.write_bytes(text.encode("utf-16"))
    assert check_dataset(dataset_copy).ok
    csv.write_text(text.replace(",", ";"))
    msg = only_error(check_dataset(dataset_copy), "header must be")
    assert "line 1 is 'LabelName;LabelColor_Red" in msg and "commas" in msg
    csv.unlink()
    csv.mkdir()
    assert "labels.csv is a folder" in only_error(check_dataset(dataset_copy), "folder")


def test_all_void_masks_and_huge_images(dataset_copy):
    for p in (dataset_copy / "labels").glob("*.png"):
        Image.fromarray(np.zeros_like(np.array(Image.open(p)))).save(p)
    only_error(check_dataset(dataset_copy), "nothing to learn")
    big = dataset_copy / "labels" / "0.png"
    Image.new("L", (20000, 10000)).save(big, optimize=False)
    assert "0.png (DecompressionBombError" in only_error(check_dataset(dataset_copy), "unreadable")


def test_sixteen_bit_screenshots_are_refused(dataset_copy):
    shot = dataset_copy / "screenshots" / "2.png"
    grey = np.array(Image.open(shot).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(shot)
    assert "2.png (I;16)" in only_error(check_dataset(dataset_copy), "16-bit or floating-point")


def test_a_stray_value_or_colour_does_not_flip_the_kind_of_a_label(dataset_copy, tmp_path):
    labels = read_labels(dataset_copy)
    grey = np.array(Image.open(dataset_copy / "labels" / "0.png"))
    grey_stray = grey.copy()
    grey_stray[0, 0] = 99  # an index mask saved as RGB, with one unlabelled object
    Image.fromarray(np.dstack([grey_stray] * 3)).save(dataset_copy / "labels" / "0.png")
    coded = np.array(Image.open(dataset_copy / "labels" / "1.png"))
    rgb = labels.palette[coded]
    rgb[0, 0] = (1, 2, 3)  # a colour-coded label with one anti-aliased pixel, saved with a small palette
    Image.fromarray(rgb).quantize(colors=32, method=Image.Quantize.MAXCOVERAGE).save(dataset_copy / "labels" / "1.png")
    rep = check_dataset(dataset_copy)
    assert "value 99 in 1 file(s): 0.png" in only_error(rep, "mask values above 23")
    assert "1.png" in only_error(rep, "colour-coded") and "0.png" not in only_error(rep, "colour-coded")
    out = tmp_path / "fixed"
    assert main([str(dataset_copy), "--fix-rgb", str(out)]) == 1  # the fixed copy still holds the stray 99
    fixed = np.array(Image.open(out / "labels" / "1.png"))
    assert (fixed == coded).mean() > 0.99


def test_fix_rgb_refuses_a_folder_inside_the_dataset(dataset_copy):
    r = run_cli(dataset_copy, "--fix-rgb", dataset_copy / "screenshots" / "fixed")
    assert r.returncode == 2 and "outside the dataset" in r.stderr
    assert not (dataset_copy / "screenshots" / "fixed").exists()


def test_a_failed_swap_puts_the_earlier_dataset_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "0.png").write_bytes(b"old")
    (out / "labels.csv").write_text("old")
    real, calls = os.replace, []

    def fails_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(18, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fails_third)
    with pytest.raises(OSError), staged_parts(out, ("labels", "labels.csv")) as new:
        (new / "labels").mkdir()
        (new / "labels.csv").write_text("new")
    assert (out / "labels" / "0.png").read_bytes() == b"old" and (out / "labels.csv").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["labels", "labels.csv"]
