"""Scoring models on labelled real photos: IoU by hand, the ignore value, the layout guess and the benchmark CLI."""
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import sim_to_real
from helpers import training
from helpers.export import export_onnx
from helpers.labels import BEDROOM, parse_labels
from helpers.photos import (
    LabelledSetError,
    layout_guess,
    mistakes_frame,
    open_photo,
    pooled_confusion,
    pooled_iou,
    present_miou,
    read_labelled_set,
    score_predictor,
    structure_miou,
)
from helpers.synth import generate

REPO = Path(__file__).resolve().parents[1]
CODES = list(parse_labels(BEDROOM).codes)
WALL, FLOOR, CEILING, BED = 1, 2, 3, 5


def test_iou_by_hand_and_the_ignore_value():
    truth = np.array([[1, 1, 2, 2],
                      [1, 1, 2, 255]], np.uint8)
    pred = np.array([[1, 2, 2, 2],
                     [1, 1, 1, 1]], np.uint8)
    iou = pooled_iou([truth], [pred], 4)
    # wall: 3 hits, union = 4 true + 2 wrongly predicted = 5; floor: 2 hits, union 3 true + 1 wrong = 4.
    # The 255 pixel is predicted wall but never counted.
    assert iou[1] == pytest.approx(3 / 5) and iou[2] == pytest.approx(2 / 4)
    assert math.isnan(iou[0]) and math.isnan(iou[3])  # in neither truth nor prediction: no IoU, not 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        assert present_miou(iou, [truth]) == pytest.approx((3 / 5 + 2 / 4) / 2)
        assert math.isnan(structure_miou(np.full(len(CODES), np.nan), CODES))


def test_a_class_only_predicted_scores_zero():
    truth = np.full((2, 2), 1, np.uint8)
    pred = np.array([[1, 1], [1, 3]], np.uint8)
    iou = pooled_iou([truth], [pred], 4)
    assert iou[3] == 0 and iou[1] == pytest.approx(3 / 4)


def test_iou_is_pooled_over_images_not_averaged():
    t1, p1 = np.array([[1, 1, 1, 1]], np.uint8), np.array([[1, 1, 1, 1]], np.uint8)  # wall 4/4
    t2, p2 = np.array([[1, 2]], np.uint8), np.array([[2, 2]], np.uint8)  # wall 0/1
    iou = pooled_iou([t1, t2], [p1, p2], 3)
    assert iou[1] == pytest.approx(4 / 5)  # the mean of per-image IoUs would be 0.5
    assert iou[2] == pytest.approx(1 / 2)


def test_mistakes_say_what_each_structure_class_is_taken_for_and_what_is_taken_for_it():
    truth = np.array([[1, 1, 1, 1, 2, 2, 255, 0]], np.uint8)
    pred = np.array([[1, 1, 0, 5, 5, 2, 5, 5]], np.uint8)
    frame = mistakes_frame(pooled_confusion([truth], [pred], len(CODES)), CODES, top=2)
    # 4 wall pixels: 2 predicted wall, then one each as void and bed (ties keep class order)
    assert frame.loc["wall", "labelled pixels"] == 4
    assert frame.loc["wall", "predicted as"] == "building_wall 0.50, void 0.25"
    # 3 scored pixels predicted bed (the 255 one is not scored): one each from wall, floor and void, none a bed
    assert frame.loc["bed", "predicted pixels"] == 3 and frame.loc["bed", "labelled pixels"] == 0
    assert frame.loc["bed", "labelled as"] == "void 0.33, building_wall 0.33"
    assert frame.loc["bed", "predicted as"] == "-" and frame.loc["ceiling", "labelled as"] == "-"


def test_structure_miou_uses_class_names():
    iou = np.full(len(CODES), np.nan)
    iou[[WALL, FLOOR, CEILING, BED]] = 0.2, 0.4, 0.6, 0.8
    iou[4] = 0.0  # the door is no part of the structure
    assert structure_miou(iou, CODES) == pytest.approx(0.5)
    assert structure_miou(iou, ["void", "x", "y", "building_wall", "building_floor", "building_ceiling",
                                "furniture_doubleBed"]) == pytest.approx(np.nanmean(iou[3:7]))


def test_layout_guess_bands():
    guess = layout_guess((40, 100), CODES)
    assert guess.shape == (100, 40)
    assert (guess[:15] == CEILING).all() and (guess[15:65] == WALL).all() and (guess[65:] == FLOOR).all()


def test_read_labelled_set_errors(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    Image.new("RGB", (8, 6)).save(images / "a.jpg")
    with pytest.raises(LabelledSetError, match="no label PNG.*a.png"):
        read_labelled_set(images, labels)
    Image.new("L", (8, 5)).save(labels / "a.png")
    with pytest.raises(LabelledSetError, match="8x6 but its label is 8x5"):
        read_labelled_set(images, labels)
    Image.new("L", (8, 6)).save(labels / "a.png")
    Image.new("L", (8, 6)).save(labels / "b.png")
    with pytest.raises(LabelledSetError, match="no image.*b.png"):
        read_labelled_set(images, labels)
    (labels / "b.png").unlink()
    [(name, image, label)] = read_labelled_set(images, labels)
    assert name == "a" and image.shape == (6, 8, 3) and label.shape == (6, 8)
    with pytest.raises(LabelledSetError, match="not found"):
        read_labelled_set(tmp_path / "nope", labels)


def test_phone_photos_are_turned_upright_by_their_exif_orientation(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    stored = np.zeros((6, 8, 3), np.uint8)
    stored[:, :4] = 255  # left half white as stored; orientation 6 shows the stored left side at the top
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(images / "phone.jpg", exif=exif, quality=100)
    upright = np.array(open_photo(images / "phone.jpg").convert("L"))
    assert upright.shape == (8, 6) and upright[:3].min() > 200 and upright[-3:].max() < 50
    Image.new("L", (6, 8)).save(labels / "phone.png")  # labelled as viewers show it: 6 wide, 8 high
    [(_, image, label)] = read_labelled_set(images, labels)
    assert image.shape == (8, 6, 3) and label.shape == (8, 6)
    Image.new("L", (8, 6)).save(labels / "phone.png")  # labelled on the stored pixels
    with pytest.raises(LabelledSetError, match="EXIF orientation"):
        read_labelled_set(images, labels)
    (images / "phone.jpg").unlink()
    Image.fromarray(stored).save(images / "phone.png")  # no tag: a plain size mismatch, no word of EXIF
    with pytest.raises(LabelledSetError, match="image is 8x6 but its label is 6x8") as e:
        Image.new("L", (6, 8)).save(labels / "phone.png")
        read_labelled_set(images, labels)
    assert "EXIF" not in str(e.value)


class SaysBed:
    """A stand-in predictor that calls the top half of every photo bed and the rest wall."""
    codes, path, resolution = CODES, Path("says-bed.onnx"), 4

    def predict(self, image):
        mask = np.full(image.shape[:2], WALL, np.uint8)
        mask[: image.shape[0] // 2] = BED
        return mask, None


def test_photos_with_and_without_a_bed_are_scored_apart():
    bedroom = np.full((4, 4), WALL, np.uint8)
    bedroom[:2, :2] = BED  # 4 bed pixels, all inside the predicted top half of 8
    bathroom = np.full((4, 4), WALL, np.uint8)
    black = np.zeros((4, 4, 3), np.uint8)
    photos = [("bedroom", black, bedroom), ("bathroom", black, bathroom)]
    result = score_predictor(SaysBed(), photos)
    with_bed, without = result["subsets"]["with a bed"], result["subsets"]["without a bed"]
    assert with_bed["photos"] == 1 and without["photos"] == 1
    assert with_bed["model"]["iou"]["furniture_doubleBed"] == pytest.approx(4 / 8)
    assert with_bed["model"]["iou"]["building_wall"] == pytest.approx(8 / 12)
    assert without["model"]["iou"]["furniture_doubleBed"] == 0.0  # every bed it sees there is false
    assert without["model"]["iou"]["building_wall"] == pytest.approx(8 / 16)
    # pooled, the 8 false bed pixels of the bathroom drag the bedroom's 4 / 8 down to 4 / 16
    assert result["model"]["iou"]["furniture_doubleBed"] == pytest.approx(4 / 16)
    assert math.isnan(without["layout"]["iou"]["furniture_doubleBed"])
    # without a bed in the labels, structure mIoU is over wall, floor and ceiling, for the model as for the guess
    assert without["model"]["structure_miou"] == pytest.approx(8 / 16)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks.real_photos", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_benchmark_cli_on_a_tiny_generated_set(tmp_path):
    data = tmp_path / "data"
    generate(data, 3, 48, 32, seed=5, workers=1, progress=False)
    model = torch.nn.Conv2d(3, len(CODES), 1)
    with torch.no_grad():  # a model that always says wall: its IoU is known from the masks
        model.weight.zero_()
        model.bias.zero_()
        model.bias[WALL] = 1.0
    onnx = export_onnx(model, tmp_path / "m.onnx", 16, parse_labels(BEDROOM))
    r = run_cli("--images", data / "screenshots", "--labels", data / "labels", "--model", onnx)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    masks = [np.asarray(Image.open(p)) for p in sorted((data / "labels").glob("*.png"))]
    walls = sum((m == WALL).sum() for m in masks)
    assert result["model"]["iou"]["building_wall"] == pytest.approx(walls / sum(m.size for m in masks))
    assert result["model"]["iou"]["building_floor"] == 0.0
    assert "building_wall" in r.stdout and "structure mIoU" in r.stdout
    assert result["subsets"] and set(result["subsets"]) <= {"with a bed", "without a bed"}
    assert all(name in r.stdout for name in result["subsets"])
    assert result["layout"]["structure_miou"] is not None
    # every pixel is predicted wall, so whatever a floor pixel is, it is taken for wall
    floors = sum((m == FLOOR).sum() for m in masks)
    assert sum(result["model"]["confusion"][FLOOR]) == floors and "building_wall 1.00" in r.stdout

    r = run_cli("--images", tmp_path / "missing", "--labels", data / "labels", "--model", onnx)
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--images", data / "screenshots", "--labels", data / "labels", "--model", tmp_path / "none.onnx")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_sim_to_real_trains_each_seed_and_scores_it_beside_the_guess(tiny_dataset, tmp_path, capsys, monkeypatch):
    photos = ("--images", tiny_dataset / "screenshots", "--labels", tiny_dataset / "labels")
    keep = tmp_path / "models"
    shares, dataloaders = [], training.segmentation_dls
    monkeypatch.setattr(training, "segmentation_dls",
                        lambda *args, **kwargs: shares.append(kwargs["random_conv"]) or dataloaders(*args, **kwargs))
    code = sim_to_real.main(["--data", str(tiny_dataset), *map(str, photos), "--epochs", "1", "--seeds", "3", "4",
                             "--batchsize", "4", "--keep", str(keep), "--every-epoch", "--random-conv", "0.5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert shares == [0.5, 0.5]  # each seed's training batches go through the random convolution
    result = json.loads(out.strip().splitlines()[-1])
    assert [(run["seed"], run["stage"]) for run in result["runs"]] == [(3, "64x64"), (4, "64x64")]
    assert all(0.0 <= run["structure"] <= 1.0 and run["minutes"] > 0 for run in result["runs"])
    # the last epoch's score, taken in PyTorch, is the exported model's score
    assert all(len(run["per_epoch"]) == 1 for run in result["runs"])
    assert all(run["per_epoch"][-1]["structure"] == pytest.approx(run["structure"], abs=0.02) for run in result["runs"])
    assert "epoch  1: structure" in out
    # the guess row is the layout guess scored on the same photos, as benchmarks.real_photos scores it
    truths = [label for _, _, label in read_labelled_set(*photos[1::2])]
    guesses = [layout_guess((t.shape[1], t.shape[0]), CODES) for t in truths]
    iou = pooled_iou(truths, guesses, len(CODES))
    assert result["layout"]["wall"] == pytest.approx(iou[WALL])
    assert result["layout"]["structure"] == pytest.approx(structure_miou(iou, CODES, truths))
    assert "layout guess" in out and "mean over seeds 3, 4" in out
    assert sorted(p.name for p in keep.iterdir()) == ["seed3_64x.onnx", "seed4_64x.onnx"]

    # kept models are never overwritten by a second run
    assert sim_to_real.main(["--data", str(tiny_dataset), *map(str, photos), "--seeds", "4", "--keep", str(keep)]) == 2
    assert "already holds seed4_64x.onnx" in capsys.readouterr().err

    assert sim_to_real.main(["--data", str(tmp_path), *map(str, photos)]) == 2
    assert "no labels.csv" in capsys.readouterr().err
