"""The four notebooks, executed with papermill on tiny generated data: the whole `make demo` chain, then errors."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
from fastai.learner import load_learner
from PIL import Image

from helpers.demo import main as demo
from helpers.inference import Predictor
from helpers.paths import fingerprint, stage_paths, validation_files
from helpers.photos import load_scores
from helpers.results import publish, real_photos_table
from helpers.synth import generate
from helpers.training import read_weights

REPO = Path(__file__).resolve().parents[1]
TINY = {"batchsize": 4, "small_epochs": 1, "image_size": 32, "save_name": "tiny"}
STEP = {"small_batchsize": 8, "big_epochs": 1, "input_res": 32, "output_res": 64, "save_name": "tiny"}


def execute(name: str, out_dir: Path, **params) -> nbformat.NotebookNode:
    out = out_dir / f"{name}.ipynb"
    pm.execute_notebook(str(REPO / f"{name}.ipynb"), str(out), parameters=params, cwd=str(REPO),
                        progress_bar=False, kernel_name="python3")
    return nbformat.read(out, as_version=4)


def text_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.output_type == "stream")


def labelled_photos(folder: Path) -> Path:
    """Three rendered rooms as a labelled 'real photo' set: JPEG photos, labels with an unscored (255) band."""
    generate(folder / "rendered", 3, 80, 60, seed=9, workers=1, progress=False)
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    for i in range(3):
        Image.open(folder / "rendered" / "screenshots" / f"{i}.png").save(folder / "images" / f"photo{i}.jpg")
        label = np.array(Image.open(folder / "rendered" / "labels" / f"{i}.png"))
        label[:, :10] = 255
        Image.fromarray(label).save(folder / "labels" / f"photo{i}.png")
    return folder


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """`make demo` with its tiny preset: generate, train at 64, step to 128 and 256, ONNX, real photos."""
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    photos = labelled_photos(root / "photos")
    assert demo(["--data", str(data), "--preset", "tiny", "--into", str(root), "--photos", str(photos)]) == 0
    def read(p: Path) -> nbformat.NotebookNode:
        return nbformat.read(p, as_version=4)
    return {"data": data, "root": root, "seg": read(root / "SegmentationLearner.ipynb"),
            "gobig128": read(root / "runs" / "GoBig_64_to_128.ipynb"), "gobig": read(root / "GoBig.ipynb"),
            "onnx": read(root / "ONNX.ipynb"), "real": read(root / "RealImagePred.ipynb")}


@pytest.mark.parametrize("res", [64, 128, 256])
def test_every_stage_file_exists_and_loads(chain, res):
    paths = stage_paths(chain["data"] / "models", "unity_resnet34", res)
    classes, state = read_weights(paths["pth"])
    assert classes == Predictor(paths["onnx"]).codes and len(classes) == 24
    assert [v.shape[0] for v in state.values() if v.ndim == 4][-1] == 24
    shot = next((chain["data"] / "screenshots").glob("*.png"))
    assert load_learner(paths["pkl"], cpu=True).predict(shot)[0].shape == (res, res)
    predictor = Predictor(paths["onnx"])
    assert predictor.resolution == res and predictor.codes[0] == "void"
    history = pd.read_csv(paths["history"])
    assert list(history.columns[:3]) == ["epoch", "train_loss", "valid_loss"]
    assert {"foreground_acc", "dice_multi", "jaccard_coeff_multi"} <= set(history.columns) and len(history) == 1
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    assert not list((chain["data"] / "models").glob("*.part"))


def test_every_stage_and_the_onnx_notebook_hold_out_the_same_files(chain):
    expected = fingerprint(validation_files(chain["data"]))
    for book in ("seg", "gobig128", "gobig"):
        assert re.search(r"validation files: (\w+)", text_of(chain[book])).group(1) == expected, book
    assert f"held-out screenshots (fingerprint {expected}," in text_of(chain["onnx"])


def test_demo_keeps_every_step_and_the_repo_notebooks_untouched(chain):
    assert "output_res = 256" in "".join(c.source for c in chain["gobig"].cells)
    assert "output_res = 128" in "".join(c.source for c in chain["gobig128"].cells)
    assert chain["seg"].metadata.papermill.parameters["random_conv"] == 0.5  # the tiny preset trains through it
    assert sorted(p.name for p in (chain["root"] / "runs").iterdir()) == [
        "GoBig_128_to_256.ipynb", "GoBig_64_to_128.ipynb", "ONNX.ipynb", "RealImagePred.ipynb",
        "SegmentationLearner.ipynb"]
    assert not list(chain["root"].glob(".*.part"))
    for name in ("SegmentationLearner", "GoBig", "ONNX", "RealImagePred"):  # no machine's folders in what is committed
        recorded = nbformat.read(chain["root"] / f"{name}.ipynb", as_version=4).metadata.papermill
        assert recorded["input_path"] == f"{name}.ipynb" and not Path(recorded["output_path"]).is_absolute()


def test_demo_failure_says_how_to_resume(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(REPO / "Assets" / "Data~", data,
                    ignore=shutil.ignore_patterns("models", "test", "screenshots", "labels"))
    assert demo(["--data", str(data), "--preset", "tiny", "--into", str(tmp_path), "--from", "gobig-128"]) == 1
    err = capsys.readouterr().err
    assert "stage gobig-128 failed" in err and "make demo FROM=gobig-128" in err
    assert not (tmp_path / "GoBig.ipynb").exists()  # a failed run never replaces the notebook


@pytest.mark.parametrize("book", ["seg", "gobig128", "gobig"])
def test_onnx_parity_is_printed_and_met(chain, book):
    said = re.search(r"ONNX mask equals the PyTorch argmax on ([\d.]+)% of pixels", text_of(chain[book]))
    share = float(said.group(1))
    assert share >= 99.9


def test_notebooks_show_their_figures(chain):
    for key in ("seg", "gobig128", "gobig", "onnx", "real"):
        images = [o for c in chain[key].cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        assert images, key
    assert "training with" in text_of(chain["seg"])
    assert "int8 agrees with fp32" in text_of(chain["onnx"])
    assert (chain["data"] / "test" / "coffee.png").exists()  # seeded real photos


def test_bad_data_stops_before_training(dataset_copy, tmp_path):
    m = np.zeros((64, 96), np.uint8) + 40
    Image.fromarray(m).save(dataset_copy / "labels" / "0.png")
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute("SegmentationLearner", tmp_path, data_path=str(dataset_copy), **TINY)
    assert e.value.ename == "DatasetError" and "value 40 in 1 file(s): 0.png" in e.value.evalue
    assert not (dataset_copy / "models").exists()


def test_missing_stage_is_a_clear_error(dataset_copy, tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute("GoBig", tmp_path, data_path=str(dataset_copy), **STEP)
    assert e.value.ename == "StageError"
    assert "tiny_32x.pth not found" in e.value.evalue and "SegmentationLearner.ipynb" not in e.value.evalue
    assert "GoBig.ipynb with output_res=32" in e.value.evalue


def test_inference_benchmark_prints_its_json_line(chain):
    r = subprocess.run([sys.executable, "-m", "benchmarks.inference", "--sizes", "64", "--data", str(chain["data"]),
                        "--runs", "2", "--images", "2"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert [row["res"] for row in rows] == [64]
    assert set(rows[0]) == {"res", "fastai_predict_ms", "torch_eager_ms", "ort_fp32_ms", "ort_int8_ms", "end_to_end_ms",
                            "dice_images", "dice_fp32", "dice_int8"}
    assert rows[0]["dice_images"] == len(validation_files(chain["data"]))
    assert all(rows[0][k] > 0 for k in rows[0]) and 0 <= rows[0]["dice_int8"] <= 1


def test_real_photos_are_scored_for_every_stage_and_published(chain, tmp_path):
    scores = load_scores(chain["data"] / "models" / "unity_resnet34_real_photos.json")
    assert list(scores) == ["64x64", "128x128", "256x256"]
    for score in scores.values():
        assert score["photos"] == 3 and 0 <= score["model"]["structure_miou"] <= 1
        assert 0 <= score["layout"]["iou"]["building_wall"] <= 1
    shown = [o.get("data", {}).get("text/plain", "") for c in chain["real"].cells if c.cell_type == "code"
             for o in c.get("outputs", [])]
    assert any("structure mIoU" in t and "layout guess" in t for t in shown)
    assert any("with a bed" in t or "without a bed" in t for t in shown)  # the largest model's photo subsets
    written = publish(chain["data"], "unity_resnet34", [64, 128, 256], tmp_path / "results", tmp_path / "img", "fp32")
    assert {p.name for p in written} >= {"run.json", "real_photos.json", "real_photos.png", "hardware.txt"}
    facts = json.loads((tmp_path / "results" / "run.json").read_text())
    assert facts["train"] + facts["held_out"] == facts["images"] == 14
    assert facts["held_out_fingerprint"] == fingerprint(validation_files(chain["data"]))
    table = real_photos_table(tmp_path / "results")
    assert table.splitlines()[0].startswith("| model | structure mIoU | building_wall")
    assert [line.split(" |")[0] for line in table.splitlines()[2:]] == ["| 64x64", "| 128x128", "| 256x256",
                                                                         "| layout guess"]
