"""Fixtures for the ml tests: dataset paths and the committed starter checkpoint."""

from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS = REPO_ROOT.parent / "shared" / "datasets"
STARTER_CHECKPOINT = REPO_ROOT / "checkpoints" / "starter.safetensors"


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.fail(f"the shared datasets are missing: expected {DATASETS}")
    return DATASETS


@pytest.fixture(scope="session")
def starter_captioner():
    from ml.captioner import Captioner

    return Captioner.from_checkpoint(STARTER_CHECKPOINT, device="cpu")


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
