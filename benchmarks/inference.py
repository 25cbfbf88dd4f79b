"""Inference speed and quality per resolution, every way of running the model measured in one run.

    python -m benchmarks.inference [--sizes 64 128 256] [--data DIR] [--save-name NAME] [--runs 20] [--images 16]

Compares fastai `learn.predict`, torch eager fp32, onnxruntime fp32, onnxruntime int8 and the end-to-end
predictor (PNG bytes in, coloured PNG out, with the int8 model; 'model share' is the int8 run's part of it) on the
same held-out screenshots. Prints a table of medians with ratios to onnxruntime fp32, the Dice of fp32 and int8
against the true masks on every held-out screenshot (the files training validated on; int8 is calibrated on
training screenshots), and as its last line a JSON list with one object per resolution.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from fastai.learner import load_learner
from PIL import Image

from helpers import paths as layout
from helpers.export import MEAN, STD, ensure_int8
from helpers.inference import Predictor, dice_multi, squish

THREADS = os.cpu_count() or 1


def median_ms(fn, inputs: list, runs: int) -> float:
    """Median wall time of fn over `runs` calls cycling through inputs, after one warm-up call."""
    fn(inputs[0])
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def bench_resolution(data: Path, save_name: str, res: int, runs: int, n_images: int) -> dict | None:
    """All figures for one resolution, or None when that stage has not been trained."""
    paths = layout.stage_paths(data / "models", save_name, res)
    if not (paths["onnx"].is_file() and paths["pkl"].is_file()):
        print(f"{res}x{res}: no trained model ({paths['onnx'].name}, {paths['pkl'].name}); skipped")
        return None
    held_out = layout.validation_files(data)
    timed = held_out[:n_images]
    pngs = [f.read_bytes() for f in timed]
    small = np.stack([squish(Image.open(f), res) for f in timed])
    calibration = np.stack([squish(Image.open(f), res) for f in layout.training_files(data)[:16]])
    ensure_int8(paths["onnx"], paths["int8"], calibration)
    fp32, int8 = Predictor(paths["onnx"], threads=THREADS), Predictor(paths["int8"], threads=THREADS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = load_learner(paths["pkl"], cpu=True)  # our own file from training: trusted
    learn.model.eval()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

    def eager(img: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = (torch.from_numpy(img[None]).permute(0, 3, 1, 2).float() / 255 - mean) / std
            return learn.model(x).argmax(1).numpy()

    def fastai_predict(f: Path):
        with learn.no_bar(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # metrics of a target-less batch
            return learn.predict(f)

    one = [small[i] for i in range(len(small))]
    row = {"res": res,
           "fastai_predict_ms": median_ms(fastai_predict, timed, runs),
           "torch_eager_ms": median_ms(eager, one, runs),
           "ort_fp32_ms": median_ms(lambda b: fp32.run(b[None]), one, runs),
           "ort_int8_ms": median_ms(lambda b: int8.run(b[None]), one, runs),
           "end_to_end_ms": median_ms(int8.predict_png, pngs, runs)}
    truths = [np.asarray(Image.open(layout.label_of(f))) for f in held_out]
    row["dice_images"] = len(held_out)
    row["dice_fp32"] = dice_multi([fp32.predict(f.read_bytes())[0] for f in held_out], truths, len(fp32.codes))
    row["dice_int8"] = dice_multi([int8.predict(f.read_bytes())[0] for f in held_out], truths, len(int8.codes))
    return row


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table and the JSON line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--data", type=Path, default=Path("Assets/Data~"))
    ap.add_argument("--save-name", default="unity_resnet34")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per figure (median)")
    ap.add_argument("--images", type=int, default=16, help="held-out screenshots cycled through for the timings")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    rows = [r for res in args.sizes if (r := bench_resolution(args.data, args.save_name, res, args.runs, args.images))]
    print(f"batch 1, {THREADS} threads, median of {args.runs} runs; ratio = time / onnxruntime fp32 time; "
          f"Dice on {rows[0]['dice_images'] if rows else 0} held-out screenshots")
    print(f"{'res':>5} {'fastai predict':>18} {'torch eager':>16} {'ort fp32':>10} {'ort int8':>16} {'end to end':>12}"
          f" {'model share':>12} {'dice fp32':>10} {'dice int8':>10}")
    for r in rows:
        def ratio(k: str, r: dict = r) -> str:
            return f"{r[k]:7.1f} ({r[k] / r['ort_fp32_ms']:4.2f}x)"
        print(f"{r['res']:>5} {ratio('fastai_predict_ms'):>18} {ratio('torch_eager_ms'):>16} {r['ort_fp32_ms']:>10.1f} "
              f"{ratio('ort_int8_ms'):>16} {r['end_to_end_ms']:>12.1f} {r['ort_int8_ms'] / r['end_to_end_ms']:>12.0%} "
              f"{r['dice_fp32']:>10.4f} {r['dice_int8']:>10.4f}")
    print(json.dumps([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]))


if __name__ == "__main__":
    main()
