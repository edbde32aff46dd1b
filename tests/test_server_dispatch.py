"""SegmentRouter picks, for every path and method, the route Starlette's own in-order scan picks."""

from __future__ import annotations

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Route

from reelforge.server.app import ServerSettings, create_app
from reelforge.server.dispatch import SegmentRouter

PATHS = [
    "/", "/async-invoke", "/async-invoke/arn:aws:bedrock:us-east-1:0:async-invoke/abc", "/reelforge/health",
    "/reelforge/jobs", "/reelforge/jobs/abc", "/reelforge/jobs/abc/files/output.mp4", "/reelforge/jobs/abc/events",
    "/v1/videos", "/v1/videos/", "/v1/videos/video_abc", "/v1/videos/characters", "/v1/videos/characters/c1",
    "/v1/videos/edits", "/v1/videos/video_abc/content", "/v1/videos/video_abc/remix", "/v1/models/veo-3:predictLongRunning",
    "/v1beta/models/veo:predictLongRunning", "/v1beta1/publishers/google/models/veo:fetchPredictOperation",
    "/openapi.json", "/gallery/new", "/gallery/jobs/abc", "/gallery/jobs/abc/again", "/gallery/static/gallery.css",
    "/gallery/static", "/nothing", "/v1", "/v2/videos", "//double", "/reelforge",
    "/v1/videos/video_abc/", "/v1/videos/video_abc/content/more", "/v1/videos//content", "/async-invoke/a/b/c",
]


def first_full(routes, scope):
    return next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)


@pytest.fixture(scope="module")
def router():
    app = create_app(ServerSettings(workers=0))
    assert isinstance(app.router, SegmentRouter)
    return app.router


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD"])
def test_the_same_route_as_starlettes_scan(router, path, method):
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    assert first_full(router.candidates(path), scope) is first_full(router.routes, scope)


def test_candidates_keep_the_router_order_and_skip_other_prefixes(router):
    got = router.candidates("/v1/videos/video_abc")
    positions = [router.routes.index(r) for r in got]
    assert positions == sorted(positions)
    assert {r.path for r in got} >= {"/v1/videos/{video_id}", "/v1/{rest:path}"}
    assert not any(r.path.startswith(("/async-invoke", "/gallery", "/v1/videos/characters")) for r in got)
    assert not any(r.path in ("/v1/videos", "/v1/videos/{video_id}/content") for r in got)  # other numbers of segments


def test_a_route_added_later_is_found():
    async def hello(request):
        return PlainTextResponse("hi")

    router = SegmentRouter([Route("/a/{x}", hello)])
    assert [r.path for r in router.candidates("/b/1")] == []
    router.routes.append(Route("/b/{x}", hello))
    assert [r.path for r in router.candidates("/b/1")] == ["/b/{x}"]


def test_request_ids_are_random_version_4_uuids():
    import uuid

    from reelforge.server.errors import new_request_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
