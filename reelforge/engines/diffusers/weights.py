"""Where the diffusers engine finds a model's weights: never downloads, says how to when missing.

Lookup order, first hit wins:
1. the engine option ``weights`` (a folder);
2. the per-model variable, e.g. ``REELFORGE_LTX_VIDEO_WEIGHTS=/models/LTX-Video``;
3. ``$REELFORGE_WEIGHTS_DIR/<folder>``, e.g. ``$REELFORGE_WEIGHTS_DIR/LTX-Video``;
4. the Hugging Face cache (what ``hf download <repo>`` fills), read with ``local_files_only``.

A folder must be in diffusers format: model_index.json plus one subfolder per component.
``resolve_weights`` only looks at paths and the cache's refs (no weights are read), so the engine's
``check_available`` can run it before a job is recorded.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from reelforge.errors import EngineError

WEIGHTS_DIR_ENV = "REELFORGE_WEIGHTS_DIR"

# What a diffusers pipeline of the known models loads: model_index.json and its component folders.
# Lightricks/LTX-Video also holds many single-file checkpoints at its root (ltx-video-2b-v0.9*.safetensors,
# ltxv-13b-*.safetensors, ...), which a plain `hf download` of the repo would fetch too.
DIFFUSERS_FILES = ("model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "transformer/*", "vae/*")


@dataclass(frozen=True)
class WeightsSource:
    path: Path
    source: str  # how it was found: "option", "env:NAME", "weights-dir", "hf-cache"
    revision: str | None = None  # the commit, for folders from the HF cache


def model_env_var(model: str) -> str:
    """``ltx-video`` -> ``REELFORGE_LTX_VIDEO_WEIGHTS``; ``wan2.1-t2v-1.3b`` -> ``REELFORGE_WAN2_1_T2V_1_3B_WEIGHTS``."""
    return "REELFORGE_" + re.sub(r"[^A-Z0-9]+", "_", model.upper()).strip("_") + "_WEIGHTS"


def _check_folder(path: Path, how: str) -> Path:
    if not path.is_dir():
        raise EngineError(f"weights folder {path} (from {how}) does not exist")
    if not (path / "model_index.json").is_file():
        raise EngineError(
            f"weights folder {path} (from {how}) has no model_index.json: it must be in diffusers format "
            "(as `hf download` writes it)"
        )
    return path


def _from_hf_cache(repos: tuple[str, ...]) -> WeightsSource | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    for repo in repos:
        try:
            path = Path(snapshot_download(repo, local_files_only=True))
        except Exception:  # not cached (LocalEntryNotFoundError and friends)
            continue
        if (path / "model_index.json").is_file():
            return WeightsSource(path, "hf-cache", path.name)
    return None


def download_command(repo: str, local_dir: Path | None = None, include: tuple[str, ...] = ()) -> str:
    """The ``hf download`` command that fetches ``repo`` (only ``include`` when given) for the lookup to find.

    ``--include`` is repeated once per pattern, as the typer-based ``hf`` of huggingface_hub 1.x parses it.
    """
    parts = ["hf", "download", repo]
    if local_dir is not None:
        parts += ["--local-dir", str(local_dir)]
    for pattern in include:
        parts += ["--include", pattern]
    return shlex.join(parts)


def resolve_weights(
    model: str, repo: str, explicit: str | None, cache_aliases: tuple[str, ...] = (), include: tuple[str, ...] = ()
) -> WeightsSource:
    """Find the weights folder of ``model`` or raise EngineError with the one command that fetches them.

    Reads no weights: folder checks and the Hugging Face cache's refs only (cheap enough to run
    before a job is recorded). ``include`` narrows the suggested download to those patterns.
    """
    if explicit:
        return WeightsSource(_check_folder(Path(explicit).expanduser(), "the engine option 'weights'"), "option")
    env = model_env_var(model)
    if os.environ.get(env):
        return WeightsSource(_check_folder(Path(os.environ[env]).expanduser(), f"${env}"), f"env:{env}")
    folder = repo.rsplit("/", 1)[-1]
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if root:
        candidate = Path(root).expanduser() / folder
        if candidate.exists():
            return WeightsSource(_check_folder(candidate, f"${WEIGHTS_DIR_ENV}"), "weights-dir")
    cached = _from_hf_cache((repo, *cache_aliases))
    if cached:
        return cached
    looked = f"${env} (unset), " + (
        f"{Path(root).expanduser() / folder} (missing)" if root else f"${WEIGHTS_DIR_ENV} (unset)"
    ) + " and the Hugging Face cache"
    command = download_command(repo, Path(root).expanduser() / folder if root else None, include)
    raise EngineError(f"no weights for {model} ({repo}): looked in {looked}; download them with: {command}")
