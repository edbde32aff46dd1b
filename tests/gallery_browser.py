"""Debian's Chromium, driven by Playwright's Python package with ``executable_path``: no browser download.

``.ci/run`` installs the ``chromium`` package; without /usr/bin/chromium (or without the
``playwright`` package) the browser tests are skipped with the reason from :func:`missing`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("REELFORGE_TEST_CHROMIUM", "/usr/bin/chromium")
# The flags measured in shared/reference/media-stack.md §5; without the background-networking ones
# Chromium keeps trying hosts this closed network refuses. Playwright adds --headless itself.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is missing: pip install -e '.[test]'"
    return None


@contextlib.contextmanager
def chromium(viewport=(1280, 860)):
    """A headless Chromium context with a fresh, throw-away user data dir."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="reelforge-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": viewport[0], "height": viewport[1]},
            )
            context.set_default_timeout(30_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# Run in the page: every form control must have a label (or an aria-label) a screen reader reads.
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden' && !el.closest('[hidden]'))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML)"""

# Run in the page: true when nothing sticks out sideways (readable at phone width without panning).
FITS_WIDTH = "() => document.documentElement.scrollWidth <= window.innerWidth + 1"
