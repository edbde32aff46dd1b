"""Prompt lint for a model id: what the previsualization will draw, for a model that renders on it.

The prompting guide's rules are reelforge.request.prompts (given a model's limits); this module adds
what only the engine layer knows: which engine serves the id, and how the previz reads a prompt.
"""

from __future__ import annotations

from reelforge.engines.catalog import engine_for, get_model
from reelforge.engines.previz import PrevizEngine, read_prompt
from reelforge.errors import ReelforgeError


def previz_notes(model_id: str, texts: list[str]) -> list[str]:
    """"previz will show: ..." for each prompt, when ``model_id`` renders on the previz (animatic-v2).

    One line per non-blank prompt, "shot N" added when there are several; [] for other models,
    unknown ids included (the request check reports those).
    """
    try:
        if engine_for(get_model(model_id))[0] != PrevizEngine.engine_id:
            return []
    except ReelforgeError:
        return []
    shown = [(i, t) for i, t in enumerate(texts) if t.strip()]
    return [f"previz will show{f', shot {i + 1}' if len(texts) > 1 else ''}: {read_prompt(t).summary()}" for i, t in shown]
