"""The generator writes Unity's format, exactly and reproducibly."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.labels import BEDROOM, parse_labels
from helpers.room import MATERIAL_FIELDS, PRESENCE, build_room
from helpers.synth import GeneratorError, generate, look_at, main, photograph, place_camera, render, render_sample

REPO = Path(__file__).resolve().parents[1]


def test_format_matches_the_unity_contract(tiny_dataset):
    assert (tiny_dataset / "labels.csv").read_text() == BEDROOM
    shots = sorted(p.name for p in (tiny_dataset / "screenshots").iterdir())
    assert shots == sorted(f"{i}.png" for i in range(12))
    for i in range(12):
        shot = Image.open(tiny_dataset / "screenshots" / f"{i}.png")
        mask = Image.open(tiny_dataset / "labels" / f"{i}.png")
        assert shot.mode == "RGB" and shot.size == (96, 64)
        assert mask.mode == "L" and mask.size == (96, 64)
        assert np.array(mask).max() <= 23


def test_rooms_are_varied_and_rendered(tiny_dataset):
    first = np.array(Image.open(tiny_dataset / "screenshots" / "0.png"))
    second = np.array(Image.open(tiny_dataset / "screenshots" / "1.png"))
    assert first.std() > 10 and np.abs(first.astype(int) - second).mean() > 10
    values = set()
    for p in (tiny_dataset / "labels").iterdir():
        values |= set(np.unique(np.array(Image.open(p))).tolist())
    assert len(values) >= 12, values  # many classes visible even in 12 tiny images


def test_any_worker_count_gives_the_same_bytes(tmp_path):
    generate(tmp_path / "a", 4, 64, 48, seed=11, workers=1, progress=False)
    generate(tmp_path / "b", 4, 64, 48, seed=11, workers=2, progress=False)
    generate(tmp_path / "c", 2, 64, 48, seed=11, workers=1, start=2, progress=False)
    for sub in ("screenshots", "labels"):
        for i in range(4):
            a = (tmp_path / "a" / sub / f"{i}.png").read_bytes()
            assert a == (tmp_path / "b" / sub / f"{i}.png").read_bytes()
            if i >= 2:  # image i depends on (seed, i) alone, not on what else was generated
                assert a == (tmp_path / "c" / sub / f"{i}.png").read_bytes()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "helpers.synth", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


def test_bad_arguments_are_clear(tmp_path):
    for args, needle in [(["--size", "960by540"], "WIDTHxHEIGHT"), (["--size", "0x10"], "between 8 and 8192"),
                         (["--n", "0"], "--n must be at least 1")]:
        r = run_cli("--out", tmp_path / "x", *args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_cli("--out", blocker / "sub", "--n", "1")
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_existing_images_are_never_overwritten(tmp_path):
    assert main(["--out", str(tmp_path), "--n", "2", "--size", "32x24", "--workers", "1"]) == 0
    before = (tmp_path / "screenshots" / "0.png").read_bytes()
    r = run_cli("--out", tmp_path, "--n", "2", "--size", "32x24")
    assert r.returncode == 2 and "--start 2" in r.stderr
    assert (tmp_path / "screenshots" / "0.png").read_bytes() == before


def test_another_datasets_folder_is_refused_with_an_exception_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text(BEDROOM.replace("building_wall", "building_walls"))
    with pytest.raises(GeneratorError, match="other classes"):
        generate(tmp_path, 1, 32, 24, progress=False)
    assert main(["--out", str(tmp_path), "--n", "1", "--size", "32x24", "--workers", "1"]) == 2
    assert "write to an empty folder" in capsys.readouterr().err
    assert not (tmp_path / "screenshots").exists()


def test_classes_appear_as_often_as_in_real_bedrooms():
    labels = parse_labels(BEDROOM)
    rooms = [build_room(np.random.default_rng([4, i]), labels)[0] for i in range(60)]
    share = {name: np.mean([value in np.concatenate(s.face_class) for s in rooms])
             for value, name in enumerate(labels.codes)}
    assert share["building_wall"] == share["building_floor"] == share["building_ceiling"] == 1
    assert share["furniture_doubleBed"] >= 0.75  # a bed in most rooms, placed first so it finds space
    assert share["live_dog"] <= 0.35 and share["items_tv"] <= 0.7  # not in every room any more
    assert sum(0 < share[name] < 1 for name in PRESENCE) >= len(PRESENCE) - 2


def test_windows_glow_and_lamps_light_the_room():
    scene = build_room(np.random.default_rng([4, 2]), parse_labels(BEDROOM))[0]
    glow = np.stack(scene.materials)[:, MATERIAL_FIELDS - 1]
    windows = [build_room(np.random.default_rng([4, i]), parse_labels(BEDROOM))[0] for i in range(10)]
    assert any((np.stack(s.materials)[:, -1] > 1.4).any() for s in windows)  # daylight panes
    assert glow.min() == 0 and len(scene.lights) >= 1


def test_camera_field_of_view_follows_the_photo_shape():
    room = build_room(np.random.default_rng(1), parse_labels(BEDROOM))[1]
    fovs = {aspect: place_camera(np.random.default_rng(7), room, aspect)[2] for aspect in (16 / 9, 4 / 3)}
    # the same horizontal field of view: a narrower frame sees more vertically
    assert np.tan(fovs[16 / 9] / 2) * 16 / 9 == pytest.approx(np.tan(fovs[4 / 3] / 2) * 4 / 3)
    assert np.radians(55) <= 2 * np.arctan(np.tan(fovs[4 / 3] / 2) * 4 / 3) <= np.radians(80)


def test_the_photo_step_keeps_size_and_is_reproducible():
    colour = np.random.default_rng(0).uniform(0, 2, (40, 60, 3)).astype(np.float32)
    a, b = (photograph(colour, np.random.default_rng(3)) for _ in range(2))
    assert a.shape == (40, 60, 3) and a.dtype == np.uint8 and (a == b).all()
    assert 60 < a.mean() < 230  # auto-exposure: neither black nor blown out


def test_masks_stay_exact_under_the_photo_processing():
    labels = parse_labels(BEDROOM)
    rng = np.random.default_rng([6, 1])
    scene, room = build_room(rng, labels)
    in_scene = set(np.concatenate(scene.face_class).tolist()) | {0}
    x, z = next(p for p in iter(lambda: room.free_floor_point(0.5), None)
                if np.hypot(p[0] - room.W / 2, p[1] - room.D / 2) > 0.5)  # clear of furniture and the ceiling lamp
    eye = np.array([x, 2.3, z])
    fov = np.radians(20)
    up = render(scene, eye, look_at(eye, eye + [0, 1, 1e-3]), fov, 48, 32, np.random.default_rng(0))[1]
    down = render(scene, eye, look_at(eye, eye + [0, -1, 1e-3]), fov, 48, 32, np.random.default_rng(0))[1]
    assert up[16, 24] == labels.codes.index("building_ceiling")
    assert down[16, 24] in {labels.codes.index(n) for n in ("building_floor", "furniture_rug")}
    _, mask = render_sample(6, 1, 96, 64, labels)
    assert set(np.unique(mask).tolist()) <= in_scene  # blur and JPEG touch the image only: no blended mask values
