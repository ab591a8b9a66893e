from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import flickermine

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

ALL_BACKENDS = [name for name in flickermine.BACKENDS]
AVAILABLE = flickermine.available_backends()
#: every available backend but the oracle
OTHER_BACKENDS = [name for name in AVAILABLE if name != "numpy"]


def backend_param(name: str):
    return pytest.param(
        name, marks=pytest.mark.skipif(name not in AVAILABLE, reason=f"backend {name!r} not available here"), id=name
    )


BACKEND_PARAMS = [backend_param(name) for name in ALL_BACKENDS]
NON_ORACLE_PARAMS = [backend_param(name) for name in ALL_BACKENDS if name != "numpy"]


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test when the data is absent (a user's clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data is absent outside the project workspace)")
    return path


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random texture, blurred a little so NCC peaks are a few pixels wide like real images."""
    import cv2

    noise = rng.random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.2)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
