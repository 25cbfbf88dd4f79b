"""Shared fixtures: a tiny generated dataset, made once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.synth import generate


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 generated rooms at 96x64: enough for format checks and one-epoch notebook runs."""
    out = tmp_path_factory.mktemp("tiny") / "Data~"
    generate(out, 12, 96, 64, seed=3, workers=1, progress=False)
    return out


@pytest.fixture
def dataset_copy(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset that a test may break."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_dataset, dst)
    return dst
