"""The whole chain in one command (`make demo`): data, 64x64, 64->128, 128->256, ONNX, real photos.

    python -m helpers.demo [--data "Assets/Data~"] [--from STAGE] [--preset auto|cpu|cuda|tiny] [--into DIR]
                           [--photos DIR] [--publish]

Each notebook is executed with papermill into runs/ and, once it has finished without error, copied over the
notebook in the repo, so a failed stage never leaves a half-run notebook behind and earlier stages' models stay.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill as pm
import torch

from helpers.results import publish
from helpers.synth import main as synth
from helpers.training import cpu_has_bf16

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    """One step of the chain: a notebook run with its parameters, or the data generation."""

    name: str
    notebook: str | None
    params: dict = field(default_factory=dict)
    keep_copy: str | None = None  # file name under runs/ of an executed copy kept for this step


# CPU preset: sized so the whole chain fits in about 45 minutes on a 2-core machine with bf16. Training is from
# scratch, so it uses one flat learning rate for the whole network: the notebooks' slice() defaults give the
# encoder a rate tuned for fine-tuning, which leaves a randomly initialised encoder barely trained in few epochs.
# Each upscaling step first costs Dice (objects appear twice as large), so 256x256 gets three epochs: after one or
# two it was still well below the 128x128 model in our trials.
CPU = {"images": 1000, "size": "480x270",
       "learner": {"batchsize": 8, "small_epochs": 18, "lr": 0.003},
       "gobig_128": {"big_epochs": 5, "lr": 0.001, "small_batchsize": 16},
       "gobig_256": {"big_epochs": 3, "lr": 0.001, "small_batchsize": 16},
       "onnx": {"n_timing_runs": 30}}
# CUDA preset: the notebooks' own workstation constants (the epochs spelled out, as the README quotes them), and a
# dataset in the Unity scene's capture size.
CUDA = {"images": 2000, "size": "960x540", "learner": {"small_epochs": 35}, "gobig_128": {"big_epochs": 20},
        "gobig_256": {"big_epochs": 25}, "onnx": {}}
# Tiny preset: the whole chain in a couple of minutes, for the tests (random_conv on, so they run its path too).
TINY = {"images": 14, "size": "320x256", "learner": {"batchsize": 4, "small_epochs": 1, "random_conv": 0.5},
        "gobig_128": {"big_epochs": 1, "small_batchsize": 8, "random_conv": 0.5},
        "gobig_256": {"big_epochs": 1, "small_batchsize": 8},
        "onnx": {"n_timing_runs": 2}}
PRESETS = {"cpu": CPU, "cuda": CUDA, "tiny": TINY}


# The labelled real photos RealImagePred scores the largest model on, when this folder exists beside the repo.
SHARED_PHOTOS = REPO.parent / "shared" / "real-photos"


def epochs(preset: dict) -> str:
    """The preset's epochs per stage, as the README quotes them: '18 + 5 + 3'."""
    return " + ".join(str(preset[k]["small_epochs" if k == "learner" else "big_epochs"])
                      for k in ("learner", "gobig_128", "gobig_256"))


def slow_cpu_note(preset_name: str, bf16: bool) -> str | None:
    """A warning when the CPU preset will train in fp32, far slower than the bf16 machine it is sized for."""
    if preset_name != "cpu" or bf16:
        return None
    return ("note: this CPU has no native bf16 (AVX-512 bf16 or AMX), so training runs in fp32. The CPU preset is "
            "sized for about 45 minutes with bf16; in fp32 on 2 cores its epochs took several times as long in our "
            "trials, so expect a few hours. Stop with Ctrl-C at any time and resume with make demo FROM=<stage>.")


def relative(path: Path) -> str:
    """A path as the notebooks see it: relative to the repo, where they run (no machine's folders in their outputs)."""
    return os.path.relpath(Path(path).resolve(), REPO)


def stages(preset: dict, data: str, photos: Path | None = None) -> list[Stage]:
    """The chain in order, with each notebook's parameters."""
    d = {"data_path": data}
    return [Stage("data", None),
            Stage("learner-64", "SegmentationLearner.ipynb", {**d, **preset["learner"]}),
            Stage("gobig-128", "GoBig.ipynb", {**d, "input_res": 64, "output_res": 128, **preset["gobig_128"]},
                  keep_copy="GoBig_64_to_128.ipynb"),
            Stage("gobig-256", "GoBig.ipynb", {**d, "input_res": 128, "output_res": 256, **preset["gobig_256"]},
                  keep_copy="GoBig_128_to_256.ipynb"),
            Stage("onnx", "ONNX.ipynb", {**d, "size": 256, **preset["onnx"]}),
            Stage("realimage", "RealImagePred.ipynb", {**d, "labelled_photos": relative(photos) if photos else ""})]


STAGE_NAMES = [s.name for s in stages(CPU, "")]


def make_data(data: Path, preset: dict) -> None:
    """Generate the default dataset when the screenshots folder is empty."""
    shots = data / "screenshots"
    if shots.is_dir() and any(shots.glob("*.png")):
        print(f"using the {sum(1 for _ in shots.glob('*.png'))} screenshots already in {shots}")
        return
    code = synth(["--out", str(data), "--n", str(preset["images"]), "--size", preset["size"]])
    if code:
        raise RuntimeError(f"the generator stopped with exit code {code}")


def run_notebook(stage: Stage, into: Path) -> Path:
    """Execute a notebook into runs/, then copy it over the notebook in `into`; return the executed copy."""
    runs = into / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    executed = runs / (stage.keep_copy or stage.notebook)
    pm.execute_notebook(str(REPO / stage.notebook), str(executed), parameters=stage.params, cwd=str(REPO),
                        kernel_name="python3", progress_bar=sys.stdout.isatty())
    nb = nbformat.read(executed, as_version=4)
    if "papermill" in nb.metadata:  # papermill records absolute paths: no one's folders on GitHub
        nb.metadata.papermill["input_path"] = stage.notebook
        nb.metadata.papermill["output_path"] = str(executed.relative_to(into))
    nbformat.write(nb, into / f".{stage.notebook}.part")
    (into / f".{stage.notebook}.part").replace(into / stage.notebook)
    return executed


def main(argv: list[str] | None = None) -> int:
    """Run the chain from a stage on, reporting where everything is and how to resume."""
    ap = argparse.ArgumentParser(prog="python -m helpers.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="Assets/Data~")
    ap.add_argument("--from", dest="start", default="data", choices=STAGE_NAMES, help="stage to start from")
    ap.add_argument("--preset", default="auto", choices=["auto", *PRESETS])
    ap.add_argument("--into", type=Path, default=REPO,
                    help="folder for the executed notebooks and runs/ (default: the repo)")
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else None,
                    help="labelled real photos (images/, labels/) to score the largest model on (default: "
                         "../shared/real-photos when it exists)")
    ap.add_argument("--publish", action="store_true",
                    help="copy this run's histories to results/ and its plots to readme_images/ (tracked files)")
    args = ap.parse_args(argv)
    name = args.preset if args.preset != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    preset = PRESETS[name]
    chain = stages(preset, args.data, args.photos)
    todo = chain[STAGE_NAMES.index(args.start):]
    data = REPO / args.data  # a relative --data is relative to the repo, where the notebooks run
    print(f"make demo: {name} preset, stages {', '.join(s.name for s in todo)}")
    if note := slow_cpu_note(name, cpu_has_bf16()):
        print(note)
    started = time.time()
    for stage in todo:
        t0 = time.time()
        print(f"\n=== {stage.name} ===", flush=True)
        try:
            if stage.notebook is None:
                make_data(data, preset)
            else:
                executed = run_notebook(stage, args.into)
                print(f"{stage.notebook}: executed; this run's copy is {executed.relative_to(args.into)}")
        except KeyboardInterrupt:
            print(f"\nstopped during {stage.name}. Models of earlier stages are intact in {args.data}/models.\n"
                  f"Resume with: make demo FROM={stage.name}", file=sys.stderr)
            return 130
        except Exception as e:
            print(f"\nstage {stage.name} failed: {e.__class__.__name__}: {str(e).strip()[-1500:]}\n"
                  f"Models of earlier stages are intact in {args.data}/models; the failed run's notebook is in runs/.\n"
                  f"Fix the cause, then resume with: make demo FROM={stage.name}", file=sys.stderr)
            return 1
        print(f"{stage.name} took {(time.time() - t0) / 60:.1f} min", flush=True)
    if args.publish:
        precision = "fp16 mixed precision" if name == "cuda" else ("bf16 autocast" if cpu_has_bf16() else "fp32")
        written = publish(data, "unity_resnet34", [64, 128, 256], REPO / "results", REPO / "readme_images", precision)
        for path in written:
            print(f"published {path.relative_to(REPO)}")
    print(f"\nmake demo finished in {(time.time() - started) / 60:.1f} min.")
    print(f"models, histories and metric plots: {args.data}/models/")
    print("executed notebooks: SegmentationLearner.ipynb, GoBig.ipynb (128->256), ONNX.ipynb, RealImagePred.ipynb;")
    print("every step's executed copy: runs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
