"""Fixtures of the tools family: real models loaded once per session, real images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mmat.schema import ImageRef

SHARED_TABMWP = Path(__file__).resolve().parents[3] / "shared" / "data" / "tabmwp"


@pytest.fixture(scope="session")
def rapid_ocr():
    """One RapidOCR engine for the whole session (loading it takes about a second)."""
    if importlib.util.find_spec("rapidocr") is None:
        pytest.skip("rapidocr is not installed: pip install 'mmat[ocr]'")
    from mmat.tools.ocr import RapidOcrTool

    tool = RapidOcrTool()
    tool.setup()
    return tool


@pytest.fixture(scope="session")
def tabmwp_dir() -> Path:
    if not SHARED_TABMWP.is_dir():
        pytest.fail(f"{SHARED_TABMWP} is missing: the shared sample data must sit beside the checkout")
    return SHARED_TABMWP


@pytest.fixture(scope="session")
def tabmwp_problems(tabmwp_dir: Path) -> dict[str, dict]:
    import json

    return json.loads((tabmwp_dir / "problems_dev_sample.json").read_text())


@pytest.fixture(scope="session")
def table_ref(tabmwp_dir: Path):
    """``table_ref(pid)`` -> the ImageRef of a shared TabMWP table image."""

    def make(pid: str) -> ImageRef:
        return ImageRef(path=f"tables/{pid}.png", root=str(tabmwp_dir))

    return make


@pytest.fixture(scope="session")
def grace_hopper() -> ImageRef:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return ImageRef(path=str(path))


@pytest.fixture(scope="session")
def skimage_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageRef]:
    """scikit-image's bundled photos written as PNG files (astronaut, coffee, text...)."""
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image is not installed")
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("skimage")
    out: dict[str, ImageRef] = {}
    for name in ("astronaut", "coffee", "text", "chelsea", "camera"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        out[name] = ImageRef(path=str(path))
    return out
