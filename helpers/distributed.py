"""Data-parallel training of one stage on several GPUs or machines, through fastai's `distrib_ctx` (accelerate + DDP).

    torchrun --nproc_per_node N -m helpers.distributed --stage 64 [--data DIR] [--epochs E] [--batchsize B] ...

The defaults are the notebooks' own: the parameters cell of SegmentationLearner.ipynb (stage 64) or GoBig.ipynb
(larger stages) is read, so a stage trained here and one trained from the notebook use the same settings.
Without torchrun it trains in one process, like the notebook. Only rank 0 writes files and prints progress.
"""
from __future__ import annotations

import argparse
import ast
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib
from fastai.vision.all import models, set_seed

from helpers import plots, training
from helpers.labels import read_labels
from helpers.paths import fingerprint, stage_paths

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"first": REPO / "SegmentationLearner.ipynb", "gobig": REPO / "GoBig.ipynb"}


@dataclass(frozen=True)
class TrainingStage:
    """What one stage trains with: the notebooks' first-cell constants, under one set of names."""

    data_path: Path
    res: int
    batchsize: int
    epochs: int
    lr: float | slice
    loss: str
    model_arch: str
    use_transfer: bool
    save_name: str
    seed: int
    precision: str
    input_res: int | None = None  # a GoBig stage starts from the weights of this resolution
    random_conv: float = 0.0


def _value(node: ast.expr):
    """A literal of the parameters cell, or slice(a, b) of literals."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "slice" and not node.keywords:
        return slice(*(ast.literal_eval(a) for a in node.args))
    return ast.literal_eval(node)


def notebook_parameters(notebook: str | Path) -> dict:
    """The constants of a notebook's cell tagged `parameters` (papermill's), as a dict."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{notebook} has no cell tagged 'parameters'")
    tree = ast.parse("".join(cell["source"]))
    return {s.targets[0].id: _value(s.value) for s in tree.body
            if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)}


def stage_from(params: dict) -> TrainingStage:
    """A TrainingStage from either notebook's variable names (its parameters cell, or its namespace after a run)."""
    lr = params["lr"]
    lr = slice(*lr) if isinstance(lr, (list, tuple)) else lr
    common = dict(data_path=Path(params["data_path"]), lr=lr, loss=params["loss"], model_arch=params["model_arch"],
                  save_name=params["save_name"], seed=params["seed"], precision=params["precision"],
                  random_conv=params.get("random_conv", 0.0))
    if "output_res" in params:  # GoBig.ipynb
        batchsize = params["batchsize"] or training.scaled_batchsize(params["small_batchsize"], params["output_res"])
        return TrainingStage(res=params["output_res"], input_res=params["input_res"], batchsize=batchsize,
                             epochs=params["big_epochs"], use_transfer=False, **common)
    return TrainingStage(res=params["image_size"], batchsize=params["batchsize"], epochs=params["small_epochs"],
                         use_transfer=params["use_transfer"], **common)


def default_stage(res: int) -> TrainingStage:
    """The stage that trains at `res` with the notebooks' defaults: 64 from scratch, larger from the stage below."""
    if res == 64:
        return stage_from(notebook_parameters(NOTEBOOKS["first"]))
    params = notebook_parameters(NOTEBOOKS["gobig"])
    return stage_from({**params, "output_res": res, "input_res": res // 2})


def _broadcast_on_cpu(self: DistributedDL, t: list, rank: int) -> list:
    """fastai's DistributedDL._broadcast without its `.cuda()` (written for NCCL): gloo broadcasts CPU tensors."""
    t = torch.tensor(t, dtype=torch.long)
    dist.broadcast(t, rank)
    return t.tolist()


def init_process_group() -> bool:
    """Join the process group that torchrun (or `launch`) described in the environment; False when run alone."""
    # WORLD_SIZE=1 (torchrun --nproc_per_node 1) still makes fastai's distrib_ctx wrap the learner: join a group of one
    if num_distrib() == 0 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        # the CPU path (tests, CI): gloo, and fastai's seed broadcast patched to stay on the CPU
        DistributedDL._broadcast = _broadcast_on_cpu
        dist.init_process_group("gloo")
    return True


@contextmanager
def process_group() -> Iterator[None]:
    """Inside: this process is a rank of the group the environment describes (or alone); left again on the way out."""
    joined = init_process_group()
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def revert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """The inverse of `nn.SyncBatchNorm.convert_sync_batchnorm`: plain BatchNorm2d with the same weights and
    statistics, which ONNX export and single-process inference expect."""
    if isinstance(module, torch.nn.SyncBatchNorm):
        bn = torch.nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                  module.track_running_stats)
        bn.load_state_dict(module.state_dict())
        bn.train(module.training)
        return bn.to(next(module.buffers(), torch.empty(0)).device)
    for name, child in module.named_children():
        setattr(module, name, revert_sync_batchnorm(child))
    return module


def data_parallel(learn: Learner) -> AbstractContextManager:
    """fastai's distrib_ctx for this machine: DDP with SyncBatchNorm on GPUs, DDP over gloo on the CPU."""
    if torch.cuda.is_available():
        return learn.distrib_ctx(sync_bn=True)
    # SyncBatchNorm refuses CPU tensors in training, so on the CPU each rank keeps its own batch statistics (DDP
    # still broadcasts rank 0's); and accelerate only treats CPU processes as distributed when told cpu=True
    return learn.distrib_ctx(sync_bn=False, cpu=True)


def train(stage: TrainingStage, cbs: list[Callback] | None = None) -> Learner:
    """Train one stage in this process: alone, or as one rank of a process group; return the trained learner.

    Each rank builds the same learner; fastai's distrib_ctx wraps the model in DDP and gives each rank its shard of
    the training and validation batches. Only rank 0 logs the history (and prints progress)."""
    rank = rank_distrib()
    labels = read_labels(stage.data_path)
    weights = None
    if stage.input_res is not None:
        weights = training.check_stage_inputs(stage.data_path, labels, stage.save_name, stage.input_res, stage.res)
    # rank 0's shuffled order is broadcast to all, so the seed only varies augmentations between ranks
    set_seed(stage.seed + rank, reproducible=True)
    dls = training.segmentation_dls(stage.data_path, stage.res, stage.batchsize, labels, seed=stage.seed,
                                    random_conv=stage.random_conv)
    learn = training.make_learner(dls, labels, getattr(models, stage.model_arch), stage.use_transfer, stage.loss)
    if weights is not None:
        training.load_weights(learn, weights)
    described = training.set_precision(learn, stage.precision)
    if rank == 0:
        print(f"{len(dls.train_ds)} training and {len(dls.valid_ds)} validation images at {stage.res}x{stage.res}, "
              f"{max(num_distrib(), 1)} process(es) of batch size {stage.batchsize}, training with {described}")
        print("validation files:", fingerprint(dls.valid_ds.items), flush=True)
    logger = [training.history_logger(stage.data_path / "models", stage.save_name, stage.res)] if rank == 0 else []
    with data_parallel(learn):
        learn.fit_one_cycle(stage.epochs, stage.lr, cbs=[*logger, *(cbs or [])])
    learn.model = revert_sync_batchnorm(learn.model)
    return learn


def save_outputs(learn: Learner, stage: TrainingStage) -> dict[str, Path]:
    """What a notebook run ends with: weights, export, ONNX (checked against PyTorch), history and its plot."""
    labels = read_labels(stage.data_path)
    models_dir = stage.data_path / "models"
    paths = stage_paths(models_dir, stage.save_name, stage.res)
    history = training.keep_history(models_dir, stage.save_name, stage.res)
    saved = training.save_stage(learn, labels, stage.data_path, stage.save_name, stage.res)
    print(training.describe_files(saved))
    print(training.check_stage_onnx(learn, saved["onnx"], stage.res))
    plots.plot_history(history, f"{stage.res}x{stage.res}", save_to=paths["plot"])
    print(history.tail(3).to_string(index=False))
    return {**saved, "history": paths["history"], "plot": paths["plot"]}


def run(stage: TrainingStage, cbs: list[Callback] | None = None) -> dict[str, Path] | None:
    """Train a stage as one rank; rank 0 writes the outputs and returns their paths, the others wait for it."""
    with process_group():
        learn = train(stage, cbs)
        saved = save_outputs(learn, stage) if rank_distrib() == 0 else None
        barrier()  # no rank reads or reports a stage before rank 0 has written it
        return saved


def free_port() -> int:
    """A TCP port free on this machine now, for the processes' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    # a spawned process inherits "spawn" as its start method: its DataLoader workers would re-import everything each
    # epoch; fork them, as in a process started the usual way on Linux
    if "fork" in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method("fork", force=True)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    fn(*args)


def launch(fn: Callable, args: tuple, n_processes: int) -> None:
    """Run fn(*args) in n_processes fresh processes on this machine, as ranks of one process group.

    Spawned, not forked, so a notebook kernel that has already used CUDA can launch; `fn` must be importable.
    When one process fails the others are stopped and its traceback is raised here."""
    mp.start_processes(_spawned, args=(n_processes, free_port(), fn, args), nprocs=n_processes, join=True,
                       start_method="spawn")


def _train_and_hand_over(stage: TrainingStage, handover: Path) -> None:
    with process_group():
        learn = train(stage)
        if rank_distrib() == 0:
            training.save_weights(learn, read_labels(stage.data_path), handover)
        barrier()


@contextmanager
def _temporary(folder: Path, suffix: str) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(dir=folder, suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def fit_in_processes(learn: Learner, stage: TrainingStage, n_processes: int) -> Learner:
    """Train `stage` data-parallel in n_processes fresh processes (one GPU each, or CPU processes without CUDA) and
    load the result into `learn`, whose history then waits for `training.keep_history` as after `learn.fit`.

    The caller saves, checks and plots as after a one-process fit, so every file is written once."""
    models_dir = stage.data_path / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    with _temporary(models_dir, f".{stage.save_name}_{stage.res}x.handover.pth") as handover:
        launch(_train_and_hand_over, (stage, handover), n_processes)
        training.load_weights(learn, handover)
    return learn


def fit_on_gpus(learn: Learner, stage: TrainingStage, n_gpus: int) -> Learner:
    """The notebooks' training cell when n_gpus > 1: `fit_in_processes` with one process per GPU of this machine."""
    if n_gpus > torch.cuda.device_count():
        raise ValueError(f"n_gpus = {n_gpus} but this machine has {torch.cuda.device_count()} CUDA GPU(s): set "
                         "n_gpus to at most that (1 trains in the notebook's own process).")
    return fit_in_processes(learn, stage, n_gpus)


def parse_lr(text: str) -> float | slice:
    """A learning rate: one number, or LOW:HIGH for fastai's discriminative slice."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a learning rate: give 1e-3 or 6e-5:5e-3") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r} is not a learning rate: give 1e-3 or 6e-5:5e-3")
    return parts[0] if len(parts) == 1 else slice(*parts)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: 0 when the stage was trained and saved, 1 when it failed, 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m helpers.distributed", description=__doc__.split("\n")[0])
    ap.add_argument("--stage", type=int, required=True, help="resolution to train: 64, or 128/256/... (GoBig)")
    ap.add_argument("--input-res", type=int, help="GoBig: the trained stage to start from (default: stage / 2)")
    ap.add_argument("--data", type=Path, help="dataset folder (default: the notebooks' data_path)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batchsize", type=int, help="per process: the global batch is this times the processes")
    ap.add_argument("--lr", type=parse_lr, help="1e-3, or LOW:HIGH")
    ap.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"])
    ap.add_argument("--random-conv", type=float, metavar="P", help="share of batches through a random convolution")
    ap.add_argument("--save-name")
    args = ap.parse_args(argv)
    if args.stage < 64 or args.stage & (args.stage - 1):
        ap.error(f"--stage must be 64 or a larger power of two; got {args.stage}")
    stage = default_stage(args.stage)
    overrides = {"data_path": args.data, "input_res": args.input_res, "epochs": args.epochs,
                 "batchsize": args.batchsize, "lr": args.lr, "precision": args.precision, "save_name": args.save_name,
                 "random_conv": args.random_conv}
    stage = replace(stage, **{k: v for k, v in overrides.items() if v is not None})
    if not (stage.data_path / "labels.csv").is_file():
        print(f"error: {stage.data_path} holds no labels.csv: give the dataset folder with --data", file=sys.stderr)
        return 2
    return run_and_report(stage)


def run_and_report(stage: TrainingStage, cbs: list[Callback] | None = None) -> int:
    """`run`, with each rank's failure said in one line: 0 when trained and saved, 2 on bad input, 1 otherwise."""
    try:
        run(stage, cbs)
    except training.StageError as e:
        print(f"error (rank {rank_distrib()}): {e}", file=sys.stderr)
        return 2
    except Exception as e:  # each rank says what stopped it; torchrun (or `launch`) then stops the others
        traceback.print_exc()
        print(f"error (rank {rank_distrib()}): {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
