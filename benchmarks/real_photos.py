"""How a trained model does on labelled real photos, beside a fixed layout guess.

    python -m benchmarks.real_photos --images DIR --labels DIR [--model PATH]

Labels are one 8-bit class value per pixel (our class values, 0 = none of our classes, 255 = not scored), named
as their photos. Prints per-class IoU of the model and of the guess (top 15% ceiling, bottom 35% floor, wall
between), the structure mIoU (wall, floor, ceiling, bed), the same apart for the photos whose label holds a bed
and those without, what each structure class's pixels are predicted as and what the pixels predicted as it
really are (the model's mistakes, pooled over the photos), and, as its last line, one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from helpers.inference import Predictor, PredictorError
from helpers.paths import trained_stages
from helpers.photos import (
    STRUCTURE,
    LabelledSetError,
    json_safe,
    mistakes_frame,
    read_labelled_set,
    score_predictor,
    subsets_frame,
)

MODELS_DIR, SAVE_NAME = Path("Assets/Data~/models"), "unity_resnet34"


def default_model() -> Path:
    """The largest trained stage's fp32 ONNX file."""
    stages = trained_stages(MODELS_DIR, SAVE_NAME)
    if not stages:
        raise PredictorError(f"no trained {SAVE_NAME} stage in {MODELS_DIR}; train one or pass --model PATH")
    return stages[max(stages)]


def _fmt(value: float) -> str:
    return "     -" if math.isnan(value) else f"{value:6.3f}"


def table(result: dict) -> str:
    """Per-class IoU of the model and the layout guess, classes without an IoU in either left out."""
    model, guess = result["model"]["iou"], result["layout"]["iou"]
    lines = [f"{'class':<24}{'model':>8}{'layout':>8}"]
    for name in model:
        if not (math.isnan(model[name]) and math.isnan(guess[name])):
            mark = "  *" if name in STRUCTURE.values() else ""
            lines.append(f"{name:<24}{_fmt(model[name]):>8}{_fmt(guess[name]):>8}{mark}")
    for key, label in (("structure_miou", "structure mIoU (*)"), ("present_miou", "mIoU, present classes")):
        lines.append(f"{label:<24}{_fmt(result['model'][key]):>8}{_fmt(result['layout'][key]):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.real_photos", description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of photos (NAME.jpg, NAME.png, ...)")
    ap.add_argument("--labels", type=Path, required=True, help="folder of label PNGs (NAME.png)")
    ap.add_argument("--model", type=Path, help=f"ONNX model (default: largest trained stage in {MODELS_DIR})")
    args = ap.parse_args(argv)
    try:
        photos = read_labelled_set(args.images, args.labels)
        predictor = Predictor(args.model or default_model())
        result = score_predictor(predictor, photos)
    except (LabelledSetError, PredictorError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['photos']} photos, model {result['model_path']} ({result['resolution']}x{result['resolution']})")
    print(table(result))
    print()
    print(subsets_frame(result).to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print("\nwhere the structure pixels go (shares of the labelled pixels, and of the predicted ones):")
    with pd.option_context("display.max_colwidth", None, "display.width", 250):
        print(mistakes_frame(result["model"]["confusion"], list(predictor.codes)).to_string())
    print(json.dumps(json_safe(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
