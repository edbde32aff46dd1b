"""Route dispatch by path segments: Starlette's routing, trying only the routes a path can match.

Starlette's router tries every route's pattern in order until one matches; with the three wires,
the extensions and the gallery that is ~30 patterns, and a Get on a late wire paid for all
the earlier ones. A route can only match a path that starts with the route's literal segments
(those before its first ``{parameter}``), so ``SegmentRouter`` files each route under those
segments in a tree and, for a request, tries in their original order just the routes filed
along the request's own segments that can have its number of segments (a route without a
``:path`` parameter has a fixed number). The first full match is then the one Starlette would pick;
everything else (405 for a known path, redirects of a trailing slash, 404) is left to
Starlette's own router, unchanged.
"""

from __future__ import annotations

from typing import cast

from starlette._utils import get_route_path
from starlette.routing import Match, Mount, Route, Router


def _literal_segments(route) -> tuple[str, ...] | None:
    """The segments every path the route matches starts with; None when not known (match against all)."""
    if not isinstance(route, (Route, Mount)):
        return None
    path = route.path
    if not path.startswith("/"):  # a Mount at "" takes every path
        return None
    parts = path[1:].split("/")
    literal = []
    for part in parts:
        if "{" in part:
            break
        literal.append(part)
    return tuple(literal)


def _segment_count(route) -> int | None:
    """How many segments every path the route matches has; None when that varies (a ``:path`` parameter, a Mount)."""
    if not isinstance(route, Route) or ":path}" in route.path:
        return None
    return route.path.count("/")


class _Node:
    __slots__ = ("positions", "by_count", "varying", "children")

    def __init__(self, positions: list[int]):
        self.positions = positions  # of the routes filed here and at every node above
        self.by_count: dict[int, list] = {}  # those routes that can match a path of so many segments, in the router's order
        self.varying: list = []  # those whose paths have no fixed number of segments
        self.children: dict[str, _Node] = {}

    def nodes(self):
        yield self
        for child in self.children.values():
            yield from child.nodes()


class SegmentRouter(Router):
    """A Starlette router that looks its routes up by their literal leading path segments."""

    _tree: _Node | None = None
    _indexed: int = -1  # how many routes the tree holds: routes added later rebuild it

    def _index(self) -> _Node:
        filed: dict[tuple[str, ...], list[int]] = {}
        for position, route in enumerate(self.routes):
            filed.setdefault(_literal_segments(route) or (), []).append(position)
        root = _Node([])
        for segments in sorted(filed, key=len):  # a node's own routes are complete before its children copy them
            node = root
            for part in segments:
                node = node.children.setdefault(part, _Node(node.positions))
            node.positions = sorted(node.positions + filed[segments])
        counts = [_segment_count(route) for route in self.routes]
        for node in root.nodes():
            fixed = {counts[i] for i in node.positions} - {None}
            node.by_count = {n: [self.routes[i] for i in node.positions if counts[i] in (n, None)] for n in fixed}
            node.varying = [self.routes[i] for i in node.positions if counts[i] is None]
        self._tree, self._indexed = root, len(self.routes)
        return root

    def candidates(self, path: str) -> list:
        """The routes that may match ``path``, in the router's order."""
        node = cast(_Node, self._tree) if self._indexed == len(self.routes) else self._index()
        parts = path[1:].split("/")
        for part in parts:
            child = node.children.get(part)
            if child is None:
                break
            node = child
        return node.by_count.get(len(parts), node.varying)

    async def app(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            for route in self.candidates(get_route_path(scope)):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    if "router" not in scope:
                        scope["router"] = self
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)  # no full match: Starlette's own answer (405, redirect, 404)
