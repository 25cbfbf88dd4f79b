"""Training helpers: the stable split, stage checks, precision and the out-of-memory retry."""
from pathlib import Path

import pytest
import torch

from helpers import training
from helpers.labels import read_labels
from helpers.paths import in_validation, split_of, stage_paths


def test_split_depends_on_file_names_only(tiny_dataset):
    labels = read_labels(tiny_dataset)
    a = training.segmentation_dls(tiny_dataset, 32, 4, labels, num_workers=0)
    b = training.segmentation_dls(tiny_dataset, 64, 2, labels, num_workers=0)
    names = lambda dls: sorted(p.name for p in dls.valid_ds.items)
    assert names(a) == names(b) == split_of(list((tiny_dataset / "screenshots").glob("*.png")))
    many = [Path(f"{i}.png") for i in range(2000)]
    share = sum(map(in_validation, many)) / len(many)
    assert 0.17 < share < 0.23
    # adding images never moves an existing image across the split
    assert [in_validation(p) for p in many[:100]] == [in_validation(p) for p in many[:100]]


def fake_weights(path: Path, n_out: int) -> None:
    torch.save({"enc.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(n_out, 8, 1, 1)}, path)


def test_stage_checks(dataset_copy):
    labels = read_labels(dataset_copy)
    with pytest.raises(training.StageError, match="Run SegmentationLearner.ipynb first"):
        training.check_stage_inputs(dataset_copy, labels, "m", 64, 128)
    weights = stage_paths(dataset_copy / "models", "m", 32)["pth"]
    weights.parent.mkdir()
    fake_weights(weights, 24)
    assert training.check_stage_inputs(dataset_copy, labels, "m", 32, 64) == weights
    with pytest.raises(training.StageError, match=r"larger than the screenshots \(96x64\)"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 128)
    with pytest.raises(training.StageError, match="must be larger than input_res"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 32)
    fake_weights(weights, 10)
    with pytest.raises(training.StageError, match="predicts 10 classes but labels.csv gives 24"):
        training.check_stage_inputs(dataset_copy, labels, "m", 32, 64)


def test_out_of_memory_halves_the_batch_size(capsys):
    tried = []

    def fit(learn):
        tried.append(learn)
        if learn > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    learn, bs = training.fit_halving_on_oom(lambda b: b, 32, fit)
    assert tried == [32, 16, 8, 4] and bs == 4
    assert "retrying the step with batch size 16" in capsys.readouterr().out
    with pytest.raises(torch.cuda.OutOfMemoryError):
        training.fit_halving_on_oom(lambda b: b, 2, lambda learn: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x")))


def test_precision_on_this_machine(tiny_dataset):
    labels = read_labels(tiny_dataset)
    learn = training.make_learner(training.segmentation_dls(tiny_dataset, 32, 4, labels, num_workers=0), labels)
    said = training.set_precision(learn)
    expected = "bf16 autocast" if training.cpu_has_bf16() else "fp32"
    assert said.startswith(expected)
    if training.cpu_has_bf16():
        assert any(isinstance(cb, training.CPUBf16) for cb in learn.cbs)
        learn.fit(1, 1e-3)  # a bf16 step runs and leaves fp32 weights
        assert next(learn.model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="fp16 mixed precision needs a CUDA GPU"):
        training.set_precision(learn, "fp16")


def test_cross_entropy_dice_loss():
    targ = torch.zeros(2, 8, 8, dtype=torch.long)
    targ[:, 4:] = 1  # a large class
    targ[:, :2, :2] = 3  # a small, rare class
    logits = lambda t: torch.nn.functional.one_hot(t, 5).permute(0, 3, 1, 2).float() * 4
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
