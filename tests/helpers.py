"""Small builders shared by tests: images made in code, tiny requests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def image_bytes(width=1280, height=720, fmt="PNG", color=(200, 30, 30), mode="RGB") -> bytes:
    img = Image.new(mode, (width, height), color)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def noisy_image(width=1280, height=720, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def engines_registered(*classes):
    """A module-scoped autouse fixture: ``classes`` registered for the module's tests, and removed after them.

    In a test module: ``registered_engines = engines_registered(AEngine, BEngine)``. For one test only, use
    the ``register_engines`` fixture (conftest.py).
    """
    import pytest

    @pytest.fixture(autouse=True, scope="module")
    def registered_engines():
        from reelforge import engines

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(engines, "_extra", {**engines._extra, **{cls.engine_id: cls for cls in classes}})
            yield classes

    return registered_engines
