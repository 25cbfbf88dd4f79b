"""The generator writes Unity's format, exactly and reproducibly."""
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.labels import BEDROOM
from helpers.synth import generate, main

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
    return subprocess.run([sys.executable, "-m", "helpers.synth", *map(str, args)], capture_output=True, text=True, cwd=REPO)


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
