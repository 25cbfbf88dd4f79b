"""Real-photo score of a generator or training change over several seeds, without a full `make demo`.

    python -m benchmarks.sim_to_real --data DIR --images DIR --labels DIR [--epochs 18 5] [--seeds 42 7]
                                     [--loss ce+dice] [--batchsize 8] [--lr 0.003 0.001] [--precision auto]
                                     [--random-conv P] [--keep DIR] [--every-epoch]

Trains the chain as `make demo` does, from scratch at 64x64 and then one doubling per further `--epochs` value
(defaults: the CPU preset's 64x64 and 128x128 stages, their batch sizes and learning rates), once per seed. Each
stage is exported to ONNX and scored on the labelled photos exactly as `benchmarks.real_photos` scores a published
model, beside the layout guess. Prints a row per seed and stage, then the mean and range over seeds per stage,
and, as its last line, one JSON object. One run's score moves with the training seed about as much as most
changes move it, so judge a change by the mean over seeds, measured in one session against the unchanged code.
`--keep DIR` keeps each seed's ONNX models (seed42_64x.onnx, ...) for a closer look, e.g. with
`python -m benchmarks.real_photos --model DIR/seed42_128x.onnx`. `--every-epoch` also scores the photos after
every epoch (in PyTorch, prepared as the ONNX model prepares them), to see whether a stage's last score is a trend
or one point of a score that swings from epoch to epoch.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.callback.core import Callback
from fastai.torch_core import set_seed

from helpers import training
from helpers.demo import CPU
from helpers.export import export_onnx, torch_masks
from helpers.inference import Predictor, PredictorError, resize_mask, squish
from helpers.labels import LabelTable, read_labels
from helpers.photos import STRUCTURE, LabelledSetError, json_safe, read_labelled_set, score_masks, score_predictor

COLUMNS = ["structure", *STRUCTURE, "bedrooms"]


def stage_res(stage: int) -> int:
    """The side of stage 0 (64x64), 1 (128x128), ... of the chain."""
    return 64 * 2 ** stage


def model_file(seed: int, res: int) -> str:
    """File name of a seed's exported model at one resolution."""
    return f"seed{seed}_{res}x.onnx"


class EpochScores(Callback):
    """The structure mIoU and its classes' IoU on the photos after every epoch, printed and kept in `rows`."""

    order = 100  # after the recorder has closed the epoch

    def __init__(self, photos: list, codes: list[str], res: int):
        self.truths = [label for _, _, label in photos]
        self.images = np.stack([squish(image, res) for _, image, _ in photos])
        self.codes, self.rows, self.trained = codes, [], False

    def before_train(self):
        self.trained = True

    def after_epoch(self):
        if not self.trained:  # learn.validate() also ends with an after_epoch, with no training in it
            return
        self.trained = False
        masks = torch_masks(self.learn.model, self.images)
        full = [resize_mask(m, (t.shape[1], t.shape[0])) for m, t in zip(masks, self.truths)]
        result = score_masks(self.truths, full, self.codes)
        row = {"epoch": self.epoch + 1, "structure": result["structure_miou"],
               **{k: result["iou"][v] for k, v in STRUCTURE.items()}}
        self.rows.append(row)
        print("    epoch {epoch:>2}: structure {structure:.3f}  wall {wall:.3f}  floor {floor:.3f}  "
              "ceiling {ceiling:.3f}  bed {bed:.3f}".format(**row), flush=True)


def train_stage(data: Path, labels: LabelTable, res: int, batchsize: int, epochs: int, lr: float, loss: str,
                seed: int, precision: str, start: dict | None = None, photos: list | None = None,
                random_conv: float = 0.0):
    """One stage of the chain as the notebooks train it: fastai's one-cycle fit, from scratch or from `start`;
    with `photos`, scored on them after every epoch."""
    set_seed(seed, reproducible=True)
    dls = training.segmentation_dls(data, res, batchsize, labels, seed=seed, random_conv=random_conv)
    learn = training.make_learner(dls, labels, loss=loss)
    if photos is not None:
        learn.add_cb(EpochScores(photos, list(labels.codes), res))
    if start is not None:
        learn.model.load_state_dict(start)
    training.set_precision(learn, precision)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr)
    return learn


def scores_row(result: dict) -> dict[str, float]:
    """Structure mIoU, its four classes' IoU and the structure mIoU on the photos with a bed, of a scored model."""
    bedrooms = result["subsets"].get("with a bed", {}).get("model", {}).get("structure_miou", float("nan"))
    return {"structure": result["model"]["structure_miou"],
            **{k: result["model"]["iou"][v] for k, v in STRUCTURE.items()}, "bedrooms": bedrooms}


def run_seed(data: Path, photos: list, args: argparse.Namespace, seed: int, out: Path) -> tuple[list[dict], dict]:
    """Train every stage for one seed; return a row per stage and the layout guess's row."""
    labels = read_labels(data)
    rows, state, guess = [], None, {}
    for i, epochs in enumerate(args.epochs):
        res = stage_res(i)
        batchsize = args.batchsize if i == 0 else training.scaled_batchsize(2 * args.batchsize, res)
        t0 = time.time()
        learn = train_stage(data, labels, res, batchsize, epochs, args.lr[min(i, 1)], args.loss, seed,
                            args.precision, state, photos if args.every_epoch else None, args.random_conv)
        minutes = (time.time() - t0) / 60
        state = learn.model.state_dict()
        model = export_onnx(learn.model, out / model_file(seed, res), res, labels)
        result = score_predictor(Predictor(model), photos)
        with learn.no_bar():
            dice = float(learn.validate()[2])
        rows.append({"seed": seed, "stage": f"{res}x{res}", "epochs": epochs, **scores_row(result), "dice": dice,
                     "minutes": minutes})
        if args.every_epoch:
            rows[-1]["per_epoch"] = learn.epoch_scores.rows
        print(f"seed {seed:<5} {res:>4}x{res:<4} " + "  ".join(f"{c} {rows[-1][c]:.3f}" for c in [*COLUMNS, "dice"])
              + f"  ({minutes:.1f} min)", flush=True)
        guess = scores_row({"model": result["layout"],
                            "subsets": {k: {"model": v["layout"]} for k, v in result["subsets"].items()}})
    return rows, guess


def summary(rows: list[dict], guess: dict) -> pd.DataFrame:
    """Mean and range over seeds of each stage's scores, with the layout guess as the last row."""
    frame = pd.DataFrame(rows)
    stats = frame.groupby("stage", sort=False)[[*COLUMNS, "dice"]]
    mean, low, high = stats.mean(), stats.min(), stats.max()
    table = mean.map(lambda v: f"{v:.3f}")
    if frame["seed"].nunique() > 1:
        table = table + " (" + low.map(lambda v: f"{v:.3f}") + "-" + high.map(lambda v: f"{v:.3f}") + ")"
    table.loc["layout guess"] = [f"{guess[c]:.3f}" for c in COLUMNS] + ["-"]
    return table


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sim_to_real", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a generated dataset (python -m helpers.synth)")
    ap.add_argument("--images", type=Path, required=True, help="folder of real photos")
    ap.add_argument("--labels", type=Path, required=True, help="folder of their label PNGs (255 = not scored)")
    ap.add_argument("--epochs", type=int, nargs="+",
                    default=[CPU["learner"]["small_epochs"], CPU["gobig_128"]["big_epochs"]],
                    help="epochs of each stage: 64x64, then 128x128, ... (default: the CPU preset's first two)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    ap.add_argument("--loss", default="ce+dice", choices=list(training.LOSSES))
    ap.add_argument("--batchsize", type=int, default=CPU["learner"]["batchsize"],
                    help="at 64x64; larger stages scale it down as GoBig does from twice this")
    ap.add_argument("--lr", type=float, nargs=2, default=[CPU["learner"]["lr"], CPU["gobig_128"]["lr"]],
                    help="learning rate of the first stage and of the others")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    ap.add_argument("--random-conv", type=float, default=0.0, metavar="P",
                    help="share of training batches filtered by a random convolution (the notebooks' random_conv)")
    ap.add_argument("--keep", type=Path, help="folder to keep the exported models in (default: thrown away)")
    ap.add_argument("--every-epoch", action="store_true", help="also score the photos after every epoch")
    args = ap.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"error: {args.data} holds no labels.csv: make a dataset first, e.g. "
              f"python -m helpers.synth --out {args.data} --n 400 --size 480x270", file=sys.stderr)
        return 2
    if not 1 <= len(args.epochs) <= 4 or min(args.epochs) < 1:
        print("error: --epochs takes one to four positive counts (64x64, 128x128, 256x256, 512x512)", file=sys.stderr)
        return 2
    try:
        photos = read_labelled_set(args.images, args.labels)
    except LabelledSetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.keep is not None:
        clash = [name for s in args.seeds for i in range(len(args.epochs))
                 if (args.keep / (name := model_file(s, stage_res(i)))).exists()]
        if clash:
            print(f"error: {args.keep} already holds {clash[0]}; choose an empty folder for --keep", file=sys.stderr)
            return 2
    rows, guess = [], {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastai's and the ONNX tracer's notes, the same in every run
        out = Path(tmp) if args.keep is None else args.keep
        out.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            try:
                seed_rows, guess = run_seed(args.data, photos, args, seed, out)
            except (PredictorError, training.StageError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            rows += seed_rows
    print(f"\n{len(photos)} photos; mean over seeds {', '.join(map(str, args.seeds))} (range), "
          f"structure = mean IoU of {', '.join(STRUCTURE)}; bedrooms = structure on the photos with a bed")
    print(summary(rows, guess).to_string())
    print(json.dumps(json_safe({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                              "runs": rows, "layout": guess})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
