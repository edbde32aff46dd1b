"""The public API is what __all__ says, and importing it stays light."""

import subprocess
import sys

import reelforge


def test_all_names_exist_and_are_sorted():
    assert reelforge.__all__ == sorted(reelforge.__all__)
    for name in reelforge.__all__:
        assert hasattr(reelforge, name), name


def test_import_does_not_pull_in_torch_or_the_server():
    code = "import sys, reelforge; print(sorted(m for m in ('torch', 'diffusers', 'starlette', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
