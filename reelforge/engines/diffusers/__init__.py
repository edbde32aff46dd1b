"""The diffusers engine: open-weight video models through Hugging Face diffusers (torch imported only when used)."""

from reelforge.engines.diffusers.engine import DiffusersEngine, DiffusersOptions

__all__ = ["DiffusersEngine", "DiffusersOptions"]
