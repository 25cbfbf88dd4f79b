"""Data-parallel training (helpers/distributed.py), run as 2 CPU processes with the gloo backend."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from fastai import metrics as fastai_metrics
from fastai.torch_core import to_detach
from fastai.vision.all import resnet18

from helpers import distributed, training
from helpers.export import check_parity, export_onnx
from helpers.labels import read_labels
from helpers.paths import stage_paths, training_files, validation_files
from helpers.synth import generate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ddp_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """29 rooms at 96x64: 26 training images, and 3 validation images, an odd count that DDP pads to share out."""
    out = tmp_path_factory.mktemp("ddp") / "Data~"
    generate(out, 29, 96, 64, seed=3, workers=1, progress=False)
    assert (len(training_files(out)), len(validation_files(out))) == (26, 3)
    return out


def torchrun(data: Path, records: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """Two CPU processes of tests/distributed_worker.py; the completed process and its seconds."""
    records.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO / "tests" / "distributed_worker.py"), str(data), str(records), *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    return done, time.perf_counter() - start


def test_two_processes_train_the_64_stage_like_one(ddp_dataset, tmp_path):
    done, _ = torchrun(ddp_dataset, tmp_path / "records")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "records" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # every rank validates on the hash split's files, as a single process does
    held_out = sorted(p.name for p in validation_files(ddp_dataset))
    assert all(sorted(r["valid"]) == held_out for r in ranks)
    # each epoch the two shards are disjoint and together are the training set (26 images, 13 each)
    trained_on = sorted(p.name for p in training_files(ddp_dataset))
    assert len(ranks[0]["shards"]) == len(ranks[1]["shards"]) == 2
    for a, b in zip(ranks[0]["shards"], ranks[1]["shards"]):
        assert len(a) == len(b) == 13 and not set(a) & set(b) and sorted(a + b) == trained_on
    assert ranks[0]["shards"][0] != ranks[0]["shards"][1]  # reshuffled each epoch
    # Dice counted every validation pixel once: both ranks' shares, without the image DDP repeats as padding
    assert ranks[0]["dice_pixels"] == len(held_out) * 64 * 64

    # one set of outputs, written and reported by rank 0 only
    paths = stage_paths(ddp_dataset / "models", "unity_resnet34", 64)
    written = sorted(p.name for p in (ddp_dataset / "models").iterdir())
    assert written == sorted(paths[k].name for k in ("pth", "pkl", "onnx", "history", "plot"))
    assert done.stdout.count("ONNX mask equals the PyTorch argmax") == 1
    assert done.stdout.count("validation files:") == 1
    history = pd.read_csv(paths["history"])
    assert len(history) == 2 and history["train_loss"].iloc[1] < history["train_loss"].iloc[0]

    # the saved weights, loaded in one process, give the exported ONNX model's masks
    labels = read_labels(ddp_dataset)
    learn = training.make_learner(training.segmentation_dls(ddp_dataset, 64, 4, labels, num_workers=0), labels)
    training.load_weights(learn, paths["pth"])
    images = training.validation_images(learn.dls, 64)
    assert check_parity(learn.model, paths["onnx"], images) > 0.999


def test_a_failing_rank_stops_both_with_its_message(ddp_dataset, tmp_path):
    done, seconds = torchrun(ddp_dataset, tmp_path / "records", "--fail-rank", "1")
    assert done.returncode != 0
    assert "error (rank 1): RuntimeError" in done.stderr and "injected failure in rank 1" in done.stderr
    assert seconds < 120  # rank 0, waiting for rank 1's gradients, was stopped rather than left hanging
    assert not (tmp_path / "records" / "rank0.json").exists()  # rank 0 never finished its fit


def test_metrics_count_as_fastais_in_one_process():
    rng = torch.Generator().manual_seed(0)
    ours, theirs = (training.DiceMulti(), training.JaccardCoeffMulti()), (fastai_metrics.DiceMulti(),
                                                                         fastai_metrics.JaccardCoeffMulti())
    for m in (*ours, *theirs):
        m.reset()
    for _ in range(3):
        learn = SimpleNamespace(pred=torch.randn(2, 5, 8, 8, generator=rng),
                                y=torch.randint(0, 5, (2, 8, 8), generator=rng), to_detach=to_detach)
        learn.pred[:, 4] -= 10  # a class never predicted: its Dice is 0, not left out
        for m in (*ours, *theirs):
            m.accumulate(learn)
    assert [m.value for m in ours] == pytest.approx([m.value for m in theirs])
    assert [m.name for m in ours] == ["dice_multi", "jaccard_coeff_multi"]  # the history's column names


def test_a_syncbatchnorm_model_exports_to_onnx_after_reverting(tiny_dataset, tmp_path):
    labels = read_labels(tiny_dataset)
    dls = training.segmentation_dls(tiny_dataset, 64, 4, labels, augment=False, num_workers=0)
    learn = training.make_learner(dls, labels, resnet18)
    learn.model.eval()
    x = dls.one_batch()[0]
    with torch.no_grad():
        before = learn.model(x)
    learn.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
    learn.model = distributed.revert_sync_batchnorm(learn.model)
    kinds = {type(m) for m in learn.model.modules()}
    assert torch.nn.SyncBatchNorm not in kinds and torch.nn.BatchNorm2d in kinds
    with torch.no_grad():
        assert torch.equal(learn.model(x), before)
    onnx = export_onnx(learn.model, tmp_path / "m.onnx", 64, labels)
    assert check_parity(learn.model, onnx, training.validation_images(dls, 64)) > 0.999


def test_the_command_line_trains_with_the_notebooks_parameters(tmp_path, capsys):
    first = distributed.notebook_parameters(REPO / "SegmentationLearner.ipynb")
    stage = distributed.default_stage(64)
    assert (stage.epochs, stage.batchsize, stage.lr, stage.input_res) == \
        (first["small_epochs"], first["batchsize"], slice(6e-5, 5e-3), None)
    gobig = distributed.notebook_parameters(REPO / "GoBig.ipynb")
    big = distributed.default_stage(256)
    assert (big.input_res, big.epochs) == (128, gobig["big_epochs"])
    assert big.batchsize == training.scaled_batchsize(gobig["small_batchsize"], 256)
    # the notebook's namespace after its setup cell (lr a slice, batch size worked out) names the same stage
    ran = {**gobig, "output_res": 256, "input_res": 128, "batchsize": 8}
    assert distributed.stage_from(ran) == big
    # papermill passes lr as a list [low, high]
    ran["lr"] = [gobig["lr"].start, gobig["lr"].stop]
    assert distributed.stage_from(ran) == big

    with pytest.raises(SystemExit):
        distributed.main(["--stage", "96"])
    assert "--stage must be 64 or a larger power of two" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distributed.main(["--stage", "64", "--lr", "fast"])
    assert "'fast' is not a learning rate" in capsys.readouterr().err
    assert distributed.main(["--stage", "64", "--data", str(tmp_path)]) == 2
    assert "holds no labels.csv" in capsys.readouterr().err


def test_the_notebook_path_hands_the_trained_weights_to_the_kernel(ddp_dataset, tmp_path):
    data = tmp_path / "Data~"
    shutil.copytree(ddp_dataset, data, ignore=shutil.ignore_patterns("models"))
    stage = replace(distributed.default_stage(64), data_path=data, epochs=1, batchsize=4, lr=1e-3, precision="fp32")
    labels = read_labels(data)
    learn = training.make_learner(training.segmentation_dls(data, 64, 4, labels, num_workers=0), labels)
    untrained = {k: v.clone() for k, v in learn.model.state_dict().items()}
    distributed.fit_in_processes(learn, stage, 2)  # what the notebooks' training cell runs with n_gpus = 2
    assert any(not torch.equal(v, untrained[k]) for k, v in learn.model.state_dict().items())
    # the processes wrote only the history, which the notebook's next line keeps; the notebook saves the rest once
    paths = stage_paths(data / "models", "unity_resnet34", 64)
    assert sorted(p.name for p in (data / "models").iterdir()) == [paths["history"].name + ".part"]
    assert len(training.keep_history(data / "models", "unity_resnet34", 64)) == 1
    with pytest.raises(ValueError, match="n_gpus = 2 but this machine has 0 CUDA GPU"):
        distributed.fit_on_gpus(learn, stage, 2)
