"""Training helpers: the stable split, stage checks, precision and the out-of-memory retry."""
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastai.vision.all import PILImage, PILMask, TensorImage, TensorMask, models
from PIL import Image

from helpers import training
from helpers.check_data import check_dataset
from helpers.demo import slow_cpu_note
from helpers.labels import LabelTable, read_labels, write_labels
from helpers.paths import in_validation, label_of, screenshots, stage_paths, training_files, validation_files


def names(files) -> list[str]:
    return sorted(Path(f).name for f in files)


def test_every_consumer_holds_out_the_learners_validation_files(tiny_dataset):
    labels = read_labels(tiny_dataset)
    # the seed shuffles batches only: a user who changes it keeps the same held-out files
    a = training.segmentation_dls(tiny_dataset, 32, 4, labels, seed=42, num_workers=0)
    b = training.segmentation_dls(tiny_dataset, 64, 2, labels, seed=7, num_workers=0)
    assert names(a.valid_ds.items) == names(b.valid_ds.items)
    held_out, trained_on = validation_files(tiny_dataset), training_files(tiny_dataset)
    assert held_out and set(held_out) <= set(a.valid_ds.items)  # what evaluations score on was never trained on
    assert names(trained_on) == names(a.train_ds.items)  # what int8 calibrates on is the training set
    assert not set(held_out) & set(trained_on) and len(held_out) + len(trained_on) == len(screenshots(tiny_dataset))


def test_split_is_a_property_of_the_file_name(tmp_path):
    many = [Path(f"{i}.png") for i in range(2000)]
    share = sum(map(in_validation, many)) / len(many)
    assert 0.17 < share < 0.23
    folder = tmp_path / "screenshots"
    folder.mkdir()
    for p in many[:50]:
        (folder / p.name).write_bytes(b"")
    before = names(validation_files(tmp_path))
    for p in many[50:120]:  # adding images never moves an existing image across the split
        (folder / p.name).write_bytes(b"")
    assert [n for n in names(validation_files(tmp_path)) if int(n.split(".")[0]) < 50] == before
    assert [p.name for p in screenshots(tmp_path)[:12]] == [f"{i}.png" for i in range(12)]  # numeric order


def fake_weights(path: Path, n_out: int, classes: list[str] | None = None) -> None:
    state = {"enc.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(n_out, 8, 1, 1)}
    torch.save(state if classes is None else {"classes": classes, "model": state}, path)


def test_stage_checks(dataset_copy):
    labels = read_labels(dataset_copy)
    with pytest.raises(training.StageError, match="Run SegmentationLearner.ipynb first"):
        training.check_stage_inputs(dataset_copy, labels, "m", 64, 128)
    weights = stage_paths(dataset_copy / "models", "m", 32)["pth"]
    weights.parent.mkdir()
    fake_weights(weights, 24)
    assert training.check_stage_inputs(dataset_copy, labels, "m", 32, 64) == weights
    with pytest.raises(training.StageError, match=r"larger than the smallest screenshot \(0.png, 96x64\)"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 128)
    shot = dataset_copy / "screenshots" / "7.png"  # one small screenshot among larger ones, not the first by name
    Image.open(shot).resize((40, 30)).save(shot)
    with pytest.raises(training.StageError, match=r"\(7.png, 40x30\).*at least 64 pixels a side"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 64)
    Image.open(shot).resize((96, 64)).save(shot)
    with pytest.raises(training.StageError, match="must be larger than input_res"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 32)
    fake_weights(weights, 10)
    with pytest.raises(training.StageError, match="predicts 10 classes but labels.csv gives 24"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 64)


def test_weights_remember_their_classes(dataset_copy):
    labels = read_labels(dataset_copy)
    weights = stage_paths(dataset_copy / "models", "m", 32)["pth"]
    weights.parent.mkdir()
    fake_weights(weights, 24, labels.codes)
    assert training.check_stage_inputs(dataset_copy, labels, "m", 32, 64) == weights
    # same count, two rows swapped: a model that would load silently and mislabel every wall as floor
    swapped = LabelTable((labels.names[1], labels.names[0], *labels.names[2:]),
                         (labels.colors[1], labels.colors[0], *labels.colors[2:]))
    write_labels(swapped, dataset_copy / "labels.csv")
    with pytest.raises(training.StageError, match="value 1: 'building_wall' in the model, 'building_floor' in labels"):
        training.check_stage_inputs(dataset_copy, swapped, "m", 32, 64)
    renamed = LabelTable(("wall", *labels.names[1:]), labels.colors)
    with pytest.raises(training.StageError, match="'building_wall' in the model, 'wall' in labels.csv"):
        training.check_stage_inputs(dataset_copy, renamed, "m", 32, 64)


def test_datasets_that_cannot_be_split_or_batched_stop_before_training(dataset_copy):
    labels = read_labels(dataset_copy)
    n_train = len(training_files(dataset_copy))
    with pytest.raises(training.StageError, match=f"batch size 32 is larger than the {n_train} training screenshots"):
        training.segmentation_dls(dataset_copy, 32, 32, labels, num_workers=0)
    for f in validation_files(dataset_copy):
        f.unlink()
        label_of(f).unlink()
    with pytest.raises(training.StageError, match="none of them is held out for validation"):
        training.segmentation_dls(dataset_copy, 32, 2, labels, num_workers=0)
    assert any("training cannot start" in e for e in check_dataset(dataset_copy).errors)


def test_weights_of_another_architecture_stop_with_a_message(tiny_dataset, tmp_path):
    labels = read_labels(tiny_dataset)
    dls = training.segmentation_dls(tiny_dataset, 32, 4, labels, num_workers=0)
    path = tmp_path / "m_32x.pth"
    training.save_weights(training.make_learner(dls, labels, arch=models.resnet18), labels, path)
    with pytest.raises(training.StageError, match="another model_arch"):
        training.load_weights(training.make_learner(dls, labels), path)


def test_saved_weights_carry_class_names_and_reload(tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    labels = read_labels(data)
    learn = training.make_learner(training.segmentation_dls(data, 32, 4, labels, num_workers=0), labels)
    saved = training.save_stage(learn, labels, data, "m", 32)
    assert set(saved) == {"pth", "pkl", "onnx"} and all(p.is_file() for p in saved.values())
    classes, state = training.read_weights(saved["pth"])
    assert classes == labels.codes
    other = training.make_learner(training.segmentation_dls(data, 64, 4, labels, num_workers=0), labels)
    training.load_weights(other, saved["pth"])
    assert all(torch.equal(a, b) for a, b in zip(state.values(), other.model.state_dict().values()))
    said = training.check_stage_onnx(learn, saved["onnx"], 32)
    assert "ONNX mask equals the PyTorch argmax on 100.0000% of pixels" in said


def test_out_of_memory_halves_the_batch_size(capsys):
    tried = []

    def fit(learn):
        tried.append(learn)
        if learn > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    learn, bs = training.fit_halving_on_oom(lambda b: b, 32, fit)
    assert tried == [32, 16, 8, 4] and bs == 4
    assert "retrying the step with batch size 16" in capsys.readouterr().out
    tried.clear()

    def never_fits(learn):
        tried.append(learn)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        training.fit_halving_on_oom(lambda b: b, 2, never_fits)
    assert tried == [2, 1]  # down to batch size 1, then the error reaches the user


@pytest.mark.parametrize("has_bf16", [True, False])
def test_precision_follows_the_cpu(tiny_dataset, monkeypatch, has_bf16):
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: has_bf16)
    labels = read_labels(tiny_dataset)
    learn = training.make_learner(training.segmentation_dls(tiny_dataset, 32, 4, labels, num_workers=0), labels)
    said = training.set_precision(learn)
    assert said.startswith("bf16 autocast" if has_bf16 else "fp32 on the CPU")
    assert any(isinstance(cb, training.CPUBf16) for cb in learn.cbs) == has_bf16
    with pytest.raises(ValueError, match="fp16 mixed precision needs a CUDA GPU"):
        training.set_precision(learn, "fp16")


def test_precision_follows_the_device_fit_will_use(tiny_dataset):
    labels = read_labels(tiny_dataset)
    learn = training.make_learner(training.segmentation_dls(tiny_dataset, 32, 4, labels, num_workers=0), labels)
    assert learn.dls.device.type == "cpu" and not training.trains_on_cuda(learn)
    # on a GPU machine the DataLoaders hold the GPU while the model waits on the CPU until fit starts: the
    # DataLoaders decide (a stand-in here, since moving real ones needs a GPU)
    assert next(learn.model.parameters()).device.type == "cpu"
    assert training.trains_on_cuda(SimpleNamespace(dls=SimpleNamespace(device=torch.device("cuda", 0))))
    assert not training.trains_on_cuda(SimpleNamespace(dls=SimpleNamespace()))


def test_a_bf16_step_leaves_fp32_weights(tiny_dataset):
    labels = read_labels(tiny_dataset)
    learn = training.make_learner(training.segmentation_dls(tiny_dataset, 32, 4, labels, num_workers=0), labels)
    assert training.set_precision(learn, "bf16").startswith("bf16 autocast")
    learn.fit(1, 1e-3)  # autocast works on any x86 CPU; only its speed needs native bf16
    assert next(learn.model.parameters()).dtype == torch.float32
    assert next(learn.model.parameters()).is_contiguous()  # channels-last is undone after fitting


def test_cross_entropy_dice_loss():
    targ = torch.zeros(2, 8, 8, dtype=torch.long)
    targ[:, 4:] = 1  # a large class
    targ[:, :2, :2] = 3  # a small, rare class
    def logits(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(t, 5).permute(0, 3, 1, 2).float() * 4
    miss_rare, miss_common = targ.clone(), targ.clone()
    miss_rare[:, :2, :2] = 0  # the rare class's 4 pixels called background
    miss_common[:, 4, :4] = 0  # as many pixels of the large class called background
    ce, loss = training.make_loss("ce"), training.make_loss("ce+dice")
    # cross-entropy counts pixels, so both mistakes cost the same; the Dice term makes losing a whole class cost more
    assert torch.isclose(ce(logits(miss_rare), targ), ce(logits(miss_common), targ))
    assert loss(logits(miss_rare), targ) > loss(logits(miss_common), targ) + 0.05
    assert loss(logits(targ), targ) < loss(logits(miss_common), targ)
    assert torch.equal(loss.decodes(logits(targ)), targ)
    loss.reduction = "none"  # what fastai sets for top losses: one value per image
    per_image = loss(logits(miss_rare), targ)
    assert per_image.shape == (2,) and (per_image > 0).all()
    with pytest.raises(ValueError, match="use one of 'ce', 'ce\\+dice'"):
        training.make_loss("focal")


def test_training_crops_photo_shapes_and_validation_squishes_the_whole_screenshot(tiny_dataset):
    image = PILImage.create(screenshots(tiny_dataset)[0])
    mask = PILMask.create(tiny_dataset / "labels" / "0.png")
    crop = training.item_transform(32)
    squish = training.item_transform(32, augment=False)
    for split_idx in (0, 1):
        x, y = crop((image, mask), split_idx=split_idx)
        assert x.size == y.size == (32, 32)
    ratios = set()
    for _ in range(20):
        crop.before_call((image, mask), split_idx=0)
        ratios.add(round(crop.cp_size[0] / crop.cp_size[1], 1))
        assert 0.9 <= crop.cp_size[0] / crop.cp_size[1] <= 16 / 9 + 0.05
    assert len(ratios) > 3  # photo shapes from square to 16:9, not one fixed crop
    valid = crop((image, mask), split_idx=1)
    plain = squish((image, mask), split_idx=1)
    assert np.array_equal(np.array(valid[1]), np.array(plain[1]))  # the held-out masks are the whole screenshot
    assert np.abs(np.array(valid[0]).astype(int) - np.array(plain[0])).mean() < 2


def test_demo_warns_before_a_cpu_run_without_bf16():
    assert "fp32" in slow_cpu_note("cpu", bf16=False) and "FROM=" in slow_cpu_note("cpu", bf16=False)
    assert slow_cpu_note("cpu", bf16=True) is None
    assert slow_cpu_note("cuda", bf16=False) is None and slow_cpu_note("tiny", bf16=False) is None


def test_random_convolution_changes_textures_keeps_masks_and_skips_validation():
    torch.manual_seed(0)
    np.random.seed(0)
    image = torch.full((4, 3, 32, 32), 0.3)
    image[..., 16:] = 0.7  # a vertical edge: the shape that must survive
    x, y = TensorImage(image), TensorMask(torch.randint(0, 5, (4, 32, 32)))
    conv = training.RandomConv(p=1.0)
    tx, ty = conv((x, y), split_idx=0)
    assert isinstance(tx, TensorImage) and tx.shape == x.shape and 0 <= tx.min() and tx.max() <= 1
    assert torch.equal(ty, y)
    assert not torch.allclose(tx, x)
    assert not torch.allclose(tx[0], tx[1])  # each image its own filter and blend
    inner = (slice(None), slice(None), slice(8, 24))
    left, right = tx[..., 4:12][inner].mean((2, 3)), tx[..., 20:28][inner].mean((2, 3))
    assert ((left - right).abs() > 0.05).all()  # the edge is still there, whatever the filter did to its contrast
    assert (tx.mean((2, 3)) - x.mean((2, 3))).abs().max() < 0.05  # brightness kept
    vx, vy = conv((x, y), split_idx=1)
    assert torch.equal(vx, x) and torch.equal(vy, y)
    assert not any(isinstance(t, training.RandomConv) for t in training.batch_augmentations())
    assert any(isinstance(t, training.RandomConv) for t in training.batch_augmentations(0.5))
