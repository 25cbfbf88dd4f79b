"""Training throughput through the fastai Learner, fp32 against the CPU bf16 path, in one run.

    python -m benchmarks.training [--sizes 64 128] [--data DIR] [--batches 6] [--processes 1 2]

Prints images/s per resolution and precision and the bf16/fp32 ratio, then what the whole fit loop (loading,
augmenting, callbacks) achieves against the bare training step on one prepared batch: the share of time the
data pipeline costs. Ratios measured in one run hold on a shared, noisy machine; absolute figures do not.
Last, one line for data-parallel training of the first size in 1 and 2 processes (helpers/distributed.py; GPUs
when there are, else CPU processes over gloo, where it shows that the path works rather than a speed-up: the
processes share the same cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib

from helpers import distributed, training
from helpers.labels import read_labels
from helpers.paths import training_files
from helpers.synth import generate


class StopAfter(Callback):
    """Times training batches after a warm-up and stops the fit."""

    def __init__(self, warmup: int, batches: int):
        self.warmup, self.batches, self.seen, self.start = warmup, batches, 0, None

    def before_batch(self):
        if self.seen == self.warmup:
            self.start = time.perf_counter()

    def after_batch(self):
        self.seen += 1
        if self.seen == self.warmup + self.batches:
            self.seconds = time.perf_counter() - self.start
            raise CancelFitException()


def fresh_learner(data: Path, size: int, batchsize: int) -> Learner:
    """A new U-Net learner on the dataset at one size, loading in the main process."""
    labels = read_labels(data)
    return training.make_learner(training.segmentation_dls(data, size, batchsize, labels, num_workers=0), labels)


def images_per_second(data: Path, size: int, batchsize: int, precision: str, batches: int) -> float:
    """Training images per second of a fresh U-Net learner at one size and precision."""
    learn = fresh_learner(data, size, batchsize)
    training.set_precision(learn, precision)
    timer = StopAfter(warmup=2, batches=batches)
    if len(learn.dls.train) < timer.warmup + batches:
        raise ValueError(f"{data} has too few training images for {timer.warmup + batches} batches of {batchsize}")
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=[timer])
    return batches * batchsize / timer.seconds


def raw_step_images_per_second(data: Path, size: int, batchsize: int, precision: str, batches: int) -> float:
    """Images per second of the bare step (forward, loss, backward, optimiser) on one batch, with no data loading."""
    learn = fresh_learner(data, size, batchsize)
    x, y = learn.dls.train.one_batch()
    model = learn.model.train()
    bf16 = precision == "bf16"
    if bf16:  # as the CPUBf16 callback does in a fit
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(x)
        learn.loss_func(pred.float(), y).backward()
        opt.step()
        opt.zero_grad()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batchsize / (time.perf_counter() - start)


def _data_parallel_rate(data: Path, size: int, batchsize: int, batches: int, out: Path) -> None:
    with distributed.process_group():
        learn = fresh_learner(data, size, batchsize)
        training.set_precision(learn, "fp32")
        timer = StopAfter(warmup=1, batches=batches)
        with learn.no_bar(), learn.no_logging(), distributed.data_parallel(learn):
            learn.fit(1, 1e-3, cbs=[timer])
        if rank_distrib() == 0:
            out.write_text(str(max(num_distrib(), 1) * batches * batchsize / timer.seconds))


def data_parallel_images_per_second(data: Path, size: int, batchsize: int, batches: int, processes: int) -> float:
    """Training images per second, all processes together, of `processes` data-parallel ranks (batchsize each)."""
    if len(training_files(data)) // processes // batchsize < 1 + batches:
        raise ValueError(f"{data} has too few training images for {1 + batches} batches of {batchsize} in each of "
                         f"{processes} processes")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rate"
        distributed.launch(_data_parallel_rate, (data, size, batchsize, batches, out), processes)
        return float(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; 2 when the dataset cannot be used."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--data", type=Path, help="dataset folder (default: 200 generated images in a temp folder)")
    ap.add_argument("--batches", type=int, default=6, help="timed batches per configuration")
    ap.add_argument("--batchsize", type=int, default=16)
    ap.add_argument("--processes", type=int, nargs="*", default=[1, 2],
                    help="data-parallel process counts to compare (none: skip that line)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "data"
            generate(data, 200, 320, 180, seed=5, workers=2, progress=False)
        precisions = ["fp32"] + (["bf16"] if training.cpu_has_bf16() else [])
        print(f"CPU threads: {torch.get_num_threads()}, batch size {args.batchsize}, {args.batches} timed batches each")
        header = "".join(f"{p + ' img/s':>12}" for p in precisions)
        print(f"{'size':>6} {header}" + ("   bf16/fp32" if len(precisions) > 1 else ""))
        fit_rates = {}
        for size in args.sizes:
            try:
                rates = [images_per_second(data, size, args.batchsize, p, args.batches) for p in precisions]
            except ValueError as e:
                print(f"error: {e}; pass a larger --data folder or fewer --batches", file=sys.stderr)
                return 2
            fit_rates[size] = rates[-1]
            ratio = f"{rates[1] / rates[0]:>11.2f}x" if len(rates) > 1 else ""
            print(f"{size:>6} " + "".join(f"{r:>12.1f}" for r in rates) + ratio, flush=True)
        precision = precisions[-1]
        print(f"\nthe fit loop (above) against the bare training step ({precision}): images/s")
        print(f"{'size':>6} {'fit':>10} {'bare step':>10} {'fit/step':>9}")
        for size in args.sizes:
            fit = fit_rates[size]
            bare = raw_step_images_per_second(data, size, args.batchsize, precision, args.batches)
            print(f"{size:>6} {fit:>10.1f} {bare:>10.1f} {fit / bare:>8.2f}x", flush=True)
        if args.processes:
            where = f"{torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else \
                f"the CPU over gloo ({os.cpu_count()} cores shared by all processes: correctness, not speed-up)"
            batches = 3
            try:
                rates = [data_parallel_images_per_second(data, args.sizes[0], args.batchsize, batches, n)
                         for n in args.processes]
            except ValueError as e:
                print(f"error: {e}; pass a larger --data folder or a smaller --batchsize", file=sys.stderr)
                return 2
            print(f"data-parallel {args.sizes[0]}x{args.sizes[0]} fp32, batch size {args.batchsize} per process, "
                  f"{batches} timed batches, on {where}:")
            print("  " + ", ".join(f"{n} process{'es' if n > 1 else ''} {r:.1f} img/s"
                                   for n, r in zip(args.processes, rates))
                  + (f" ({rates[-1] / rates[0]:.2f}x)" if len(rates) > 1 else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
