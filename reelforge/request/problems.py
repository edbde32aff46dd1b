"""pydantic's validation problems in reelforge's order and words: the first one a reader meets, and its path.

(And ``omittable()``, the schemas' optional key that is never null.)

Shared by the request model, Nova Reel's ``modelInput`` (nova_json), storyboard files and batch lines,
so each says a problem the same way: a JSON-style path (``shots[1].text``) and the first problem
met reading the input from the top (an object's missing keys, then its unknown keys, then its
fields in the order given, depth first).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pydantic import Field

OWN = {"missing": 0, "extra_forbidden": 1}  # problems of an object itself: said before its fields'


def omittable(**constraints: Any) -> Any:
    """A key that may be left out but, when given, must hold a value of its type (JSON null included)."""
    return Field(default=None, **constraints)


def path(loc: Sequence[Any]) -> str:
    """``("shots", 1, "text")`` as ``shots[1].text``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def first(
    errors: Sequence[Mapping[str, Any]], order: Mapping[str, int], own_first: Mapping[str, int] = OWN, *, by_name: bool = True
) -> Mapping[str, Any]:
    """The problem a reader meets first; ``order`` ranks field names inside an object (others last),
    ``own_first`` the kinds of problem of the object itself (default: missing keys, then unknown ones),
    each kind by key name (``by_name``) or in the input's order."""

    def reading(err: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        loc, own = tuple(err["loc"]), own_first.get(err["type"])
        steps = [(p, "") if isinstance(p, int) else (order.get(p, 99), p) for p in (loc[:-1] if own is not None else loc)]
        return steps + [(-1, own, str(loc[-1]) if loc and by_name else "")] if own is not None else steps

    return min(errors, key=reading)
