"""The setup files agree with each other and with the README's commands."""
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.lower()] = version
    return out


def test_environment_yml_matches_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = _pins(next(d for d in deps if isinstance(d, dict))["pip"])
    # the workstation gets the CUDA build of onnxruntime; everything else is the same pin
    assert pip.pop("onnxruntime-gpu") == req.pop("onnxruntime")
    assert pip == req


def test_every_requirement_is_pinned():
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    unpinned = [line for line in lines if line and not re.fullmatch(r"[\w.\-\[\]]+==[\w.]+", line)]
    assert not unpinned, f"requirements without an exact version: {unpinned}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M)
    assert {"test", "demo"} <= set(targets)
