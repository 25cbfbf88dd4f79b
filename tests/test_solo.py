"""SOLO datasets built here from the keys Perception writes, converted and checked pixel by pixel."""
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import check_data
from helpers import solo as solo_module
from helpers.labels import read_labels
from helpers.solo import convert, frame_files, looks_like_solo, main

REPO = Path(__file__).resolve().parents[1]
H, W = 6, 8
RED, BLUE, DARK_RED, ODD = (255, 0, 0), (0, 0, 255), (200, 0, 0), (10, 20, 30)
SEMANTIC = "type.unity.com/unity.solo.SemanticSegmentationAnnotation"


def rgba(colours: np.ndarray) -> np.ndarray:
    """An (H, W, 4) RGBA8 image of (H, W, 3) colours, alpha 255 as Perception writes."""
    return np.dstack([colours, np.full(colours.shape[:2], 255, np.uint8)]).astype(np.uint8)


def photo(seed: int) -> np.ndarray:
    """A random RGBA camera image."""
    return rgba(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8))


def paint(*regions: tuple[slice, slice, tuple[int, int, int]]) -> np.ndarray:
    """A black RGBA mask with rectangles of colour."""
    m = np.zeros((H, W, 3), np.uint8)
    for rows, cols, colour in regions:
        m[rows, cols] = colour
    return rgba(m)


def capture(cam: str, image: str, mask: str | None, instances: dict[str, tuple[int, int, int]]) -> dict:
    """One RGB capture as in a stepN.frame_data.json, with a semantic annotation when `mask` is given."""
    annotations = [{"@type": "type.unity.com/unity.solo.BoundingBox2DAnnotation", "id": "bounding box",
                    "sensorId": cam, "values": []}]
    if mask is not None:
        annotations.append({"@type": SEMANTIC, "id": "semantic segmentation", "sensorId": cam,
                            "imageFormat": "Png", "dimension": [W, H], "filename": mask,
                            "instances": [{"labelName": n, "pixelValue": [*c, 255]} for n, c in instances.items()]})
    return {"@type": "type.unity.com/unity.solo.RGBCamera", "id": cam, "description": "camera",
            "position": [0, 0, 0], "rotation": [0, 0, 0, 1], "filename": image, "imageFormat": "Png",
            "dimension": [W, H], "projection": "Perspective", "annotations": annotations}


def frame(root: Path, seq: int, step: int, captures: list[dict], files: dict[str, np.ndarray]) -> None:
    """Write sequence.N/stepS.frame_data.json and its images."""
    d = root / f"sequence.{seq}"
    d.mkdir(parents=True, exist_ok=True)
    data = {"frame": step, "sequence": seq, "step": step, "timestamp": 0, "captures": captures, "metrics": []}
    (d / f"step{step}.frame_data.json").write_text(json.dumps(data, indent=2))
    for name, arr in files.items():
        Image.fromarray(arr).save(d / name)


def root_files(root: Path) -> None:
    """The four definition files at the root of a SOLO dataset."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.json").write_text(json.dumps({"unityVersion": "2022.3", "perceptionVersion": "1.0.0",
                                                    "totalFrames": 6, "totalSequences": 2}))
    (root / "annotation_definitions.json").write_text(json.dumps({"annotationDefinitions": [
        {"@type": SEMANTIC, "id": "semantic segmentation", "description": "semantic"}]}))
    (root / "sensor_definitions.json").write_text(json.dumps({"sensorDefinitions": []}))
    (root / "metric_definitions.json").write_text(json.dumps({"metricDefinitions": []}))


# The masks of the main dataset, and the index masks they must become with the table dog=1, wall=2.
MASK_00 = paint((slice(0, 2), slice(None), RED), (slice(3, 5), slice(2, 5), BLUE))
MASK_01 = paint((slice(None), slice(0, 3), RED), (slice(4, 6), slice(6, 8), ODD))
MASK_11 = paint((slice(1, 4), slice(1, 4), BLUE), (slice(5, 6), slice(None), DARK_RED))


def expected(mask: np.ndarray, colours: dict[tuple[int, int, int], int]) -> np.ndarray:
    """The index mask a colour mask must become."""
    out = np.zeros(mask.shape[:2], np.uint8)
    for colour, value in colours.items():
        out[(mask[..., :3] == colour).all(-1)] = value
    return out


@pytest.fixture
def solo(tmp_path: Path) -> Path:
    """Two sequences: usable frames (one with a space in its file names, one with other names, one with an
    unknown colour, one with a second colour for `wall`), a frame without semantic segmentation, a frame whose
    JSON is cut off, one with a missing mask and one whose mask has another size."""
    root = tmp_path / "solo"
    root_files(root)
    seg = "step{}.camera.semantic segmentation.png"
    frame(root, 0, 0, [capture("camera", "step0.camera.png", seg.format(0), {"wall": RED, "dog": BLUE})],
          {"step0.camera.png": photo(0), seg.format(0): MASK_00})
    frame(root, 0, 1, [capture("camera", "step1.camera.png", seg.format(1), {"wall": RED})],
          {"step1.camera.png": photo(1), seg.format(1): MASK_01})
    frame(root, 0, 2, [capture("camera", "step2.camera.png", seg.format(2), {"wall": RED})],
          {"step2.camera.png": photo(2)})
    frame(root, 1, 0, [capture("camera", "step0.camera.png", None, {})], {"step0.camera.png": photo(3)})
    frame(root, 1, 1, [capture("camera", "rgb_1.png", "segmentation_1.png", {"wall": DARK_RED, "dog": BLUE})],
          {"rgb_1.png": photo(4), "segmentation_1.png": MASK_11})
    frame(root, 1, 2, [capture("camera", "step2.camera.png", seg.format(2), {"wall": RED})],
          {"step2.camera.png": photo(5), seg.format(2): MASK_00[:4]})
    (root / "sequence.1" / "step3.frame_data.json").write_text('{"frame": 3, "captures": [')
    return root


def well_formed(rep: check_data.Report) -> bool:
    """The check finds nothing wrong but the split: a handful of frames cannot be split for training."""
    return all("none of them is held out for validation" in e for e in rep.errors)


def lines(capsys: pytest.CaptureFixture) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_converts_masks_labels_and_screenshots(solo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(solo), str(out), "--workers", "1"]) == 0
    stdout, _ = lines(capsys)
    assert (out / "labels.csv").read_text() == ("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\n"
                                                "dog,0,0,255\nwall,255,0,0\n")
    # frames in sequence-then-step order, skipped ones leaving no gap
    sources = [("sequence.0", "step0.camera.png", MASK_00, {RED: 2, BLUE: 1}),
               ("sequence.0", "step1.camera.png", MASK_01, {RED: 2}),
               ("sequence.1", "rgb_1.png", MASK_11, {DARK_RED: 2, BLUE: 1})]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["0.png", "1.png", "2.png"]
    for i, (seq, image, mask, colours) in enumerate(sources):
        m = Image.open(out / "labels" / f"{i}.png")
        assert m.mode == "L"
        assert (np.array(m) == expected(mask, colours)).all(), i
        shot = Image.open(out / "screenshots" / f"{i}.png")
        assert shot.mode == "RGB"
        assert (np.array(shot) == np.array(Image.open(solo / seq / image))[..., :3]).all()
    assert "skipped sequence.0/step2.frame_data.json: the mask step2.camera.semantic segmentation.png is missing" \
        in stdout
    assert "skipped sequence.1/step0.frame_data.json: no semantic segmentation annotation" in stdout
    assert "skipped sequence.1/step2.frame_data.json: the image step2.camera.png is 8x6 but the mask" in stdout
    assert "skipped sequence.1/step3.frame_data.json: it does not parse (JSONDecodeError" in stdout
    assert "warning: sequence.0/step1.camera.semantic segmentation.png: 4 pixel(s) in 1 colour(s) not listed " \
           "in its frame data: (10, 20, 30) x 4; they become 0 (void)" in stdout
    assert "label 'wall' has 2 pixel colours" in stdout and "labels.csv shows the first seen, (255, 0, 0)" in stdout
    assert "converted 3 frame(s) of camera 'camera'" in stdout
    assert "skipped 4 frame(s): 1 with a missing file, 1 with frame data that does not parse, " \
           "1 with image and mask of different sizes, 1 with no semantic segmentation" in stdout
    rep = check_data.check_dataset(out)
    assert well_formed(rep) and rep.n_pairs == 3, rep


def test_worker_count_does_not_change_the_output(solo, tmp_path, capsys):
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert main([str(solo), str(out), "--workers", str(workers)]) == 0
        text = lines(capsys)[0].replace(str(out), "OUT")
        outs[workers] = text, {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert outs[1] == outs[2]
    assert len(outs[1][1]) == 7


def test_strict_stops_on_unknown_colours_and_writes_nothing(solo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(solo), str(out), "--strict", "--workers", "1"]) == 1
    stdout, stderr = lines(capsys)
    assert "error: sequence.0/step1.camera.semantic segmentation.png: 4 pixel(s)" in stdout
    assert "1 mask(s) hold colours that their frame data does not list (--strict); nothing was written" in stderr
    assert not out.exists()
    # the sky colour passed as background is no longer unknown
    assert main([str(solo), str(out), "--strict", "--background", "10,20,30", "--workers", "1"]) == 0
    assert (np.array(Image.open(out / "labels" / "1.png")) == expected(MASK_01, {RED: 2})).all()


def test_imposed_labels_map_by_name(solo, tmp_path, capsys):
    table = tmp_path / "labels.csv"
    table.write_text("LabelName,LabelColor_Red,LabelColor_Green,LabelColor_Blue\nbed,1,2,3\nwall,4,5,6\n")
    out = tmp_path / "out"
    assert main([str(solo), str(out), "--labels", str(table), "--workers", "1"]) == 0
    stdout, _ = lines(capsys)
    assert "warning: 1 SOLO label(s) not in" in stdout and "'dog' (2 frames); their pixels become 0 (void)" in stdout
    assert (out / "labels.csv").read_text() == table.read_text()  # colours of the imposed table kept
    assert (np.array(Image.open(out / "labels" / "0.png")) == expected(MASK_00, {RED: 2})).all()
    assert (np.array(Image.open(out / "labels" / "2.png")) == expected(MASK_11, {DARK_RED: 2})).all()
    assert well_formed(check_data.check_dataset(out))

    assert main([str(solo), str(tmp_path / "strict"), "--labels", str(table), "--strict"]) == 1
    assert "1 SOLO label(s) not in" in lines(capsys)[1] and not (tmp_path / "strict").exists()
    (tmp_path / "bad.csv").write_text("name,r,g,b\n")
    assert main([str(solo), str(tmp_path / "bad"), "--labels", str(tmp_path / "bad.csv")]) == 2
    assert "header must be exactly" in lines(capsys)[1]


def test_never_overwrites_without_force(solo, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "screenshots").mkdir(parents=True)
    (out / "screenshots" / "7.png").write_bytes(b"old")
    assert main([str(solo), str(out)]) == 2
    assert "is not empty" in lines(capsys)[1] and (out / "screenshots" / "7.png").read_bytes() == b"old"
    assert main([str(solo), str(out), "--force", "--workers", "1"]) == 0
    assert "--force: replaced the earlier conversion" in lines(capsys)[0]
    assert not (out / "screenshots" / "7.png").exists() and well_formed(check_data.check_dataset(out))


def test_multi_camera_needs_a_choice(tmp_path, capsys):
    root = tmp_path / "solo"
    root_files(root)
    for step in range(2):
        frame(root, 0, step, [capture("camera", f"step{step}.camera.png", None, {}),
                              capture("top", f"step{step}.top.png", f"step{step}.top.semantic segmentation.png",
                                      {"dog": BLUE})],
              {f"step{step}.camera.png": photo(step), f"step{step}.top.png": photo(10 + step),
               f"step{step}.top.semantic segmentation.png": MASK_11})
    assert main([str(root), str(tmp_path / "a")]) == 2
    err = lines(capsys)[1]
    assert "2 RGB cameras: 'camera' (2 frames, 0 with semantic segmentation), 'top' (2 frames, 2 with" in err
    assert "--camera ID" in err
    assert main([str(root), str(tmp_path / "a"), "--camera", "side"]) == 2
    assert "no RGB camera 'side'" in lines(capsys)[1]
    out = tmp_path / "top"
    assert main([str(root), str(out), "--camera", "top", "--workers", "1"]) == 0
    shot = np.array(Image.open(out / "screenshots" / "1.png"))
    assert (shot == photo(11)[..., :3]).all()
    assert (np.array(Image.open(out / "labels" / "1.png")) == expected(MASK_11, {BLUE: 1})).all()
    assert main([str(root), str(tmp_path / "cam"), "--camera", "camera"]) == 1
    assert "nothing to convert" in lines(capsys)[1]


def test_bad_inputs_get_a_message_and_an_exit_code(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "is not a folder" in lines(capsys)[1]
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no sequence.N/ folders" in lines(capsys)[1]
    root = tmp_path / "solo"
    root_files(root)
    frame(root, 0, 0, [capture("camera", "step0.camera.png", None, {})], {"step0.camera.png": photo(0)})
    assert main([str(root), str(tmp_path / "out")]) == 1
    assert "nothing to convert" in lines(capsys)[1] and not (tmp_path / "out").exists()
    many = {f"label{i:03d}": (i // 256, i % 256, 7) for i in range(256)}
    frame(root, 0, 1, [capture("camera", "step1.camera.png", "step1.seg.png", many)],
          {"step1.camera.png": photo(1), "step1.seg.png": MASK_00})
    assert main([str(root), str(tmp_path / "out")]) == 1
    assert "256 labels, but an 8-bit mask holds at most 255 classes" in lines(capsys)[1]
    r = subprocess.run([sys.executable, "-m", "helpers.solo", str(root), str(root)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "outside the SOLO dataset" in r.stderr and "Traceback" not in r.stderr
    assert main([str(root), str(root / "converted")]) == 2 and not (root / "converted").exists()
    assert main([str(root / "sequence.0"), str(tmp_path / "out")]) == 2
    assert "point at the folder above it" in lines(capsys)[1]
    (tmp_path / "empty_export").mkdir()
    root_files(tmp_path / "empty_export")
    assert main([str(tmp_path / "empty_export"), str(tmp_path / "out")]) == 1
    assert "the export has no frames" in lines(capsys)[1]


def test_check_data_points_a_solo_folder_to_the_converter(solo, capsys):
    assert looks_like_solo(solo) and not looks_like_solo(solo / "sequence.0")
    rep = check_data.check_dataset(solo)
    assert any("Unity Perception SOLO dataset" in e and f"python -m helpers.solo {solo} NEW_FOLDER" in e
               for e in rep.errors), rep
    assert check_data.main([str(solo)]) == 1


def test_frames_that_fail_late_leave_their_number_unused(tmp_path, capsys):
    root = tmp_path / "solo"
    root_files(root)
    for step in range(3):
        frame(root, 0, step, [capture("camera", f"step{step}.camera.png", f"step{step}.seg.png", {"dog": BLUE})],
              {f"step{step}.camera.png": photo(step), f"step{step}.seg.png": MASK_11})
    mask = root / "sequence.0" / "step1.seg.png"
    mask.write_bytes(mask.read_bytes()[:45])  # the header survives, the pixels do not
    (root / "sequence.0" / "step3.frame_data.json").write_text('{"captures": 3}')
    out = tmp_path / "out"
    assert main([str(root), str(out), "--workers", "2"]) == 0
    stdout = lines(capsys)[0]
    assert "skipped sequence.0/step1.frame_data.json: OSError" in stdout and "its number 1 stays unused" in stdout
    assert "skipped sequence.0/step3.frame_data.json: it parses but is not SOLO frame data (TypeError" in stdout
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["0.png", "2.png"]
    assert (np.array(Image.open(out / "labels" / "2.png")) == expected(MASK_11, {BLUE: 1})).all()
    assert well_formed(check_data.check_dataset(out))


def test_frames_sort_by_sequence_then_step_number(tmp_path):
    for seq, step in ((10, 0), (2, 10), (2, 9), (1, 1)):
        (tmp_path / f"sequence.{seq}").mkdir(exist_ok=True)
        (tmp_path / f"sequence.{seq}" / f"step{step}.frame_data.json").write_text("{}")
    names = [f"{p.parent.name}/{p.name}" for p in frame_files(tmp_path)]
    assert names == ["sequence.1/step1.frame_data.json", "sequence.2/step9.frame_data.json",
                     "sequence.2/step10.frame_data.json", "sequence.10/step0.frame_data.json"]


def test_convert_returns_what_it_did(solo, tmp_path):
    said = []
    res = convert(solo, tmp_path / "out", workers=1, say=said.append)
    assert res.written == 3 and res.camera == "camera" and res.unknown_frames == 1
    assert read_labels(tmp_path / "out").names == ("dog", "wall") and sum(res.skipped.values()) == 4
    assert sum(s.startswith("skipped ") for s in said) == 4


def test_an_interrupted_force_conversion_leaves_the_earlier_one_whole(solo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "Data~"
    assert main([str(solo), str(out), "--workers", "1"]) == 0
    (out / "models").mkdir()
    (out / "models" / "m_64x.pth").write_bytes(b"weights")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    Image.fromarray(photo(9)).save(solo / "sequence.0" / "step0.camera.png")  # a new export to convert
    real, calls = solo_module.convert_frame, []

    def dies_on_the_second(job):
        calls.append(job.index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(solo_module, "convert_frame", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        convert(solo, out, force=True, workers=1, say=lambda _: None)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Data~", "solo"]  # no half-written copy beside it
    monkeypatch.setattr(solo_module, "convert_frame", real)
    assert main([str(solo), str(out), "--force", "--workers", "1"]) == 0
    assert (out / "models" / "m_64x.pth").read_bytes() == b"weights"  # --force replaces the dataset, not the models
    assert well_formed(check_data.check_dataset(out))


def test_frames_that_cannot_be_trusted_are_skipped_or_kept_void(tmp_path, capsys):
    root = tmp_path / "solo"
    root_files(root)
    frame(root, 0, 0, [capture("camera", "a.png", "a.seg.png", {"dog": BLUE, "ghost": (0, 0, 0)})],
          {"a.png": photo(0), "a.seg.png": MASK_00})
    frame(root, 0, 1, [capture("camera", "b.png", "b.seg.png", {"wall": RED, "door": RED})],
          {"b.png": photo(1), "b.seg.png": MASK_00})
    frame(root, 0, 2, [capture("camera", "c.png", "c.seg.png", {"dog": BLUE}),
                       capture("camera", "d.png", "d.seg.png", {"wall": RED})],
          {"c.png": photo(2), "c.seg.png": MASK_00, "d.png": photo(3), "d.seg.png": MASK_00})
    frame(root, 0, 3, [capture("camera", "e.png", "e.seg.png", {"dog": BLUE})],
          {"e.png": photo(4), "e.seg.png": MASK_00})
    bomb = Image.new("L", (1, 1))
    bomb.save(root / "sequence.0" / "e.seg.png")
    raw = bytearray((root / "sequence.0" / "e.seg.png").read_bytes())
    raw[16:24] = (30000).to_bytes(4, "big") * 2  # the IHDR says 30000 x 30000, with a valid checksum
    raw[29:33] = zlib.crc32(raw[12:29]).to_bytes(4, "big")
    (root / "sequence.0" / "e.seg.png").write_bytes(bytes(raw))
    bom = root / "sequence.0" / "step0.frame_data.json"
    bom.write_text("\ufeff" + bom.read_text(), encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(root), str(out), "--workers", "1"]) == 0
    stdout, _ = lines(capsys)
    assert "'ghost' has the colour (0, 0, 0), which means nothing labelled" in stdout
    assert "listed for both 'wall' and 'door'" in stdout
    assert "share the camera id 'camera'" in stdout
    assert "DecompressionBombError" in stdout and "Traceback" not in stdout
    assert read_labels(out).names == ("dog", "ghost")  # no class from the skipped frames
    assert (np.array(Image.open(out / "labels" / "0.png")) == expected(MASK_00, {BLUE: 1})).all()


def test_label_names_that_would_change_in_labels_csv_are_refused(tmp_path, capsys):
    root = tmp_path / "solo"
    root_files(root)
    frame(root, 0, 0, [capture("camera", "a.png", "a.seg.png", {" chair": BLUE, '"big" lamp': RED})],
          {"a.png": photo(0), "a.seg.png": MASK_00})
    assert main([str(root), str(tmp_path / "out"), "--workers", "1"]) == 1
    err = lines(capsys)[1]
    assert "would change in labels.csv" in err and "' chair' reads back as 'chair'" in err
    assert not (tmp_path / "out").exists()


def test_twin_ids_of_another_camera_do_not_drop_the_frame(tmp_path, capsys):
    root = tmp_path / "solo"
    root_files(root)
    frame(root, 0, 0, [capture("main", "a.png", "a.seg.png", {"dog": BLUE}),
                       capture("aux", "b.png", "b.seg.png", {"dog": BLUE}),
                       capture("aux", "c.png", "c.seg.png", {"dog": BLUE})],
          {n: photo(i) if "seg" not in n else MASK_00 for i, n in
           enumerate(["a.png", "a.seg.png", "b.png", "b.seg.png", "c.png", "c.seg.png"])})
    assert main([str(root), str(tmp_path / "main"), "--camera", "main", "--workers", "1"]) == 0
    assert main([str(root), str(tmp_path / "aux"), "--camera", "aux", "--workers", "1"]) == 1
    assert "share the camera id 'aux'" in "".join(lines(capsys))
