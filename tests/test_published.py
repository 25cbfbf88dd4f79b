"""What people read on GitHub: executed notebooks, and a README whose results are those of the committed run."""
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers.demo import CPU, CUDA, epochs
from helpers.results import real_photos_table, results_table, stage_row

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["SegmentationLearner", "GoBig", "ONNX", "RealImagePred"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_executed_without_errors(name):
    nb = nbformat.read(REPO / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{name}: unexecuted code cells"
    assert counts == sorted(counts), f"{name}: cells were not run in order"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], f"{name}: error outputs"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), f"{name}: no figures"
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code), f"{name}: not run by papermill"


def test_readme_commands_are_make_targets():
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    for command in re.findall(r"^make (\w+)", readme, flags=re.M):
        assert re.search(rf"^{command}:", makefile, flags=re.M), command
    assert {"test", "demo"} <= set(re.findall(r"^make (\w+)", readme, flags=re.M))


def test_readme_results_match_the_committed_histories():
    readme = (REPO / "README.md").read_text()
    table = results_table(REPO / "results")
    assert table in readme
    hardware = (REPO / "results" / "hardware.txt").read_text().strip()
    for csv in (REPO / "results").glob("*_history.csv"):
        res = int(re.search(r"_(\d+)x_", csv.name).group(1))
        row = stage_row(pd.read_csv(csv), res, hardware)
        assert "| " + " | ".join(row) + " |" in readme
        assert (REPO / "readme_images" / f"metrics_{res}.png").exists()
    assert len(list((REPO / "results").glob("*_history.csv"))) >= 3


def test_readme_quotes_the_presets_as_the_code_defines_them():
    readme = " ".join((REPO / "README.md").read_text().split())
    for preset in (CPU, CUDA):
        said = f"{preset['images']:,} images at {preset['size']}, {epochs(preset)} epochs"
        assert said in readme, said


def test_readme_quotes_the_published_split_and_real_photo_scores():
    readme = " ".join((REPO / "README.md").read_text().split())
    facts = json.loads((REPO / "results" / "run.json").read_text())
    assert f"{facts['images']:,} generated images at {facts['size']}" in readme
    assert f"{facts['train']} train, {facts['held_out']} held out" in readme
    assert real_photos_table(REPO / "results") in (REPO / "README.md").read_text()
    assert (REPO / "readme_images" / "real_photos.png").exists()
