"""OpenAI's Videos API on `reelforge serve`, driven by the unmodified openai client (strict response validation on)."""

from __future__ import annotations

import io
import json
import socket

import openai
import numpy as np
import pytest
from PIL import Image

from reelforge import media
from reelforge.server.app import ServerSettings
from server_fixtures import TEST_KEYS, ServerThread, bedrock, http, read_reply
from test_images import huge_bilevel_png
from wire_fixtures import close_to, decoded, first_frame, gradient, job_count, openai_client, png

SIZES = {"720x1280", "1280x720", "1024x1792", "1792x1024"}  # openai's VideoSize literals


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("openai")
    with ServerThread(ServerSettings(workers=1, bucket_dir=root / "buckets", data_dir=root / "home")) as s:
        yield s


@pytest.fixture
def idle(tmp_path):
    """No workers: jobs stay queued, so listings hold still."""
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home")) as s:
        yield s


def assert_video(v, server, **expected) -> None:
    """Every field of a Video (already type-checked by the strict client) agrees with the job behind it."""
    job = server.runtime.get(v.id.removeprefix("video_"))
    assert v.id == f"video_{job.id}" and v.object == "video"
    assert v.model == (job.wire_request.get("model") or job.model_id)
    want_status = {"QUEUED": "queued", "RUNNING": "in_progress", "COMPLETED": "completed"}.get(job.status.value, "failed")
    assert v.status == want_status
    assert 0 <= v.progress <= 100 and (v.progress == 100) == (v.status == "completed")
    assert v.created_at == int(job.submit_time)
    assert (v.completed_at is not None) == (v.status == "completed")
    assert v.expires_at is None
    assert v.size == job.model_input["videoGenerationConfig"]["dimension"]
    assert isinstance(v.seconds, str)
    assert (v.error is None) == (v.status != "failed")
    for name, value in expected.items():
        assert getattr(v, name) == value, (name, getattr(v, name), value)


def test_create_and_poll_download_every_variant(server, tmp_path):
    c = openai_client(server.url)
    v = c.videos.create_and_poll(prompt="a red kite over the sea. Camera pan right.", seconds="2", size="1280x720")
    assert_video(v, server, status="completed", seconds="2", size="1280x720", model="sora-2", prompt="a red kite over the sea. Camera pan right.")
    info = decoded(c.videos.download_content(v.id).content, tmp_path)
    assert (info.width, info.height, info.frames, info.fps) == (1280, 720, 2 * 24, 24.0)
    thumb = Image.open(io.BytesIO(c.videos.download_content(v.id, variant="thumbnail").content))
    sheet = Image.open(io.BytesIO(c.videos.download_content(v.id, variant="spritesheet").content))
    assert (thumb.format, sheet.format) == ("JPEG", "PNG") and thumb.width > 0 and sheet.width > 0
    # the job is the job log's like any other: Bedrock's Get reads it, the manifest records the wire
    job = server.runtime.get(v.id.removeprefix("video_"))
    assert bedrock(server.url).get_async_invoke(invocationArn=job.arn)["status"] == "Completed"
    manifest = json.loads((server.settings.bucket_dir / "reelforge-outputs" / "videos" / job.id / "manifest.json").read_text())
    assert manifest["wire"] == "openai" and manifest["wireRequest"]["model"] == "sora-2" and manifest["wireRequest"]["size"] == "1280x720"


def test_poll_replies_carry_an_integer_interval(idle):
    c = openai_client(idle.url)
    v = c.videos.create(prompt="a lighthouse at dusk")
    raw = c.videos.with_raw_response.retrieve(v.id)
    assert int(raw.headers["openai-poll-after-ms"]) > 0  # the client's poll helper reads it as an int
    assert raw.headers["x-request-id"]


def test_input_reference_is_the_first_frame(server, tmp_path):
    c = openai_client(server.url)
    img = gradient(720, 1280)
    v = c.videos.create_and_poll(prompt="a slow zoom in", seconds="1", input_reference=("ref.png", png(img), "image/png"))
    assert_video(v, server, status="completed", size="720x1280", seconds="1")
    assert close_to(first_frame(c.videos.download_content(v.id).content, tmp_path), img)
    job = server.runtime.get(v.id.removeprefix("video_"))
    kept = job.wire_request["input_reference"]
    assert kept["bytes"] == len(png(img)) and len(kept["sha256"]) == 64  # the wire request keeps no bytes
    # the same through extra_body, as a data: URL (the client's only way to send a reference object)
    import base64

    small = gradient(320, 180)  # a size outside the client's literals: a lenient client, and a quicker job
    url = "data:image/png;base64," + base64.b64encode(png(small)).decode()
    lenient = openai_client(server.url, strict=False)
    w = lenient.videos.create_and_poll(prompt="a slow zoom in", seconds="1", size="320x180", extra_body={"input_reference": {"image_url": url}})
    assert_video(w, server, status="completed", size="320x180")
    assert close_to(first_frame(c.videos.download_content(w.id).content, tmp_path, "second.mp4"), small)


def test_remix_extend_delete(server, tmp_path):
    c = openai_client(server.url, strict=False)  # at 320x180, a size outside the strict client's literals, to keep five jobs quick
    source = c.videos.create_and_poll(prompt="a paper boat on a pond", seconds="1", size="320x180")
    remix = c.videos.poll(c.videos.remix(source.id, prompt="a paper boat on a pond at night").id)
    assert_video(remix, server, remixed_from_video_id=source.id, prompt="a paper boat on a pond at night", seconds="1", status="completed")
    src_job, remix_job = (server.runtime.get(v.id.removeprefix("video_")) for v in (source, remix))
    assert remix_job.model_input["videoGenerationConfig"] == src_job.model_input["videoGenerationConfig"]  # the recipe, seed included

    # extend: by the downloaded file (what the client sends), then by id through extra_body
    clip = c.videos.download_content(source.id).content
    longer = c.videos.poll(c.videos.extend(prompt="the boat drifts away", seconds="1", video=("boat.mp4", clip, "video/mp4")).id)
    assert_video(longer, server, status="completed", seconds="2", size="320x180")
    data = c.videos.download_content(longer.id).content
    info = decoded(data, tmp_path)
    assert (info.frames, info.width, info.height) == (2 * 24, 320, 180)
    last_of_source = media.read_frame(tmp_path / "video.mp4", 23)
    first_of_added = media.read_frame(tmp_path / "video.mp4", 24)
    assert close_to(first_of_added, Image.fromarray(last_of_source))  # the new shot starts where the source ended
    folder = server.settings.bucket_dir / "reelforge-outputs" / "videos" / longer.id.removeprefix("video_")
    assert (folder / "shot_0001.mp4").read_bytes() == clip  # a reelforge video is joined as it is, by stream copy
    # another encoder's stream (here x264's ultrafast preset: other parameter sets) is re-encoded once to join
    foreign = tmp_path / "foreign.mp4"
    media.encode_mp4([np.asarray(gradient(320, 180))] * 12, foreign, 12, preset="ultrafast")
    mixed = c.videos.poll(c.videos.extend(prompt="from elsewhere", seconds="1", video=("foreign.mp4", foreign.read_bytes(), "video/mp4")).id)
    assert mixed.status == "completed" and mixed.seconds == "2"
    assert decoded(c.videos.download_content(mixed.id).content, tmp_path, "mixed.mp4").frames == 24
    by_id = c.videos.poll(c.videos.extend(prompt="and further", seconds="2", video=openai.omit, extra_body={"video": {"id": longer.id}}).id)
    assert_video(by_id, server, status="completed", seconds="4")
    job = server.runtime.get(by_id.id.removeprefix("video_"))
    assert job.wire_request["extends"] == {"video_id": longer.id}
    assert decoded(c.videos.download_content(by_id.id).content, tmp_path, "v2.mp4").frames == 4 * 24

    # delete: the files go, the record stays (its id never comes back), every OpenAI route then says 404
    folder = server.settings.bucket_dir / "reelforge-outputs" / "videos" / src_job.id
    assert (folder / "output.mp4").is_file()
    deleted = c.videos.delete(source.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (source.id, True, "video.deleted")
    assert not folder.exists()
    for call in (lambda: c.videos.retrieve(source.id), lambda: c.videos.download_content(source.id), lambda: c.videos.delete(source.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    tomb = server.runtime.get(src_job.id)
    assert tomb.deleted_time is not None and tomb.stage == "deleted"
    assert source.id not in [v.id for v in c.videos.list(limit=100)]


def test_delete_cancels_a_queued_job_and_canceled_reads_as_failed(idle):
    c = openai_client(idle.url)
    v = c.videos.create(prompt="never rendered")
    status, _, _ = http(f"{idle.url}/reelforge/jobs/{v.id.removeprefix('video_')}/cancel", "POST", b"")
    assert status == 200
    got = c.videos.retrieve(v.id)
    assert_video(got, idle, status="failed")
    assert got.error.code == "canceled"
    w = c.videos.create(prompt="deleted while queued")
    assert c.videos.delete(w.id).deleted
    assert idle.runtime.get(w.id.removeprefix("video_")).status.value == "CANCELED"


def test_list_pages_across_wires(idle):
    c = openai_client(idle.url)
    made = [c.videos.create(prompt=f"clip {i}", seconds="1").id for i in range(3)]
    arn = bedrock(idle.url).start_async_invoke(
        modelId="reelforge.animatic-v1",
        modelInput={"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "started with boto3"},
                    "videoGenerationConfig": {"durationSeconds": 1, "fps": 24, "dimension": "1280x720"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://test-bucket/out"}},
    )["invocationArn"]
    boto_id = "video_" + arn.rsplit("/", 1)[1]
    newest_first = [boto_id, *reversed(made)]
    seen, page = [], c.videos.list(limit=3)
    while True:
        for v in page.data:
            assert_video(v, idle)
            assert v.size in SIZES
        assert page.has_more == (len(seen) + len(page.data) < 4)
        assert page.last_id == page.data[-1].id
        seen += [v.id for v in page.data]
        if not page.has_next_page():
            break
        page = page.get_next_page()
    assert seen == newest_first
    assert [v.id for v in c.videos.list(limit=2, order="asc")] == list(reversed(newest_first))  # auto-pagination over pages of 2
    after = c.videos.list(after=made[2], limit=10)
    assert [v.id for v in after.data] == list(reversed(made[:2])) and after.has_more is False
    # and the other way: Bedrock's list and the gallery show the OpenAI jobs
    listed = {s["invocationArn"].rsplit("/", 1)[1] for s in bedrock(idle.url).list_async_invokes()["asyncInvokeSummaries"]}
    assert listed == {i.removeprefix("video_") for i in newest_first}
    page_html = http(idle.url + "/", headers={"Accept": "text/html"})[2].decode()
    assert all(i.removeprefix("video_") in page_html for i in newest_first)
    jobs = json.loads(http(idle.url + "/reelforge/jobs")[2])["jobs"]
    assert {j["wire"] for j in jobs} == {"openai", "bedrock"}
    import reelforge

    assert [j.id for j in reelforge.Client(endpoint=idle.url).jobs()] == [i.removeprefix("video_") for i in newest_first]


def test_idempotency_key(idle):
    c = openai_client(idle.url)
    key = {"Idempotency-Key": "order-17"}
    first = c.videos.create(prompt="the same request", extra_headers=key)
    again = c.videos.create(prompt="the same request", extra_headers=key)
    assert again.id == first.id and job_count(idle) == 1
    with pytest.raises(openai.BadRequestError) as info:
        c.videos.create(prompt="another request", extra_headers=key)
    assert "order-17" in info.value.message and job_count(idle) == 1
    assert c.videos.create(prompt="the same request").id != first.id  # no key: a new job


BAD_CREATES = [
    (dict(model="gpt-image-1"), "model", "unknown model 'gpt-image-1'"),
    (dict(size="720x721"), "size", "720x721 is not allowed"),
    (dict(size="big"), "size", "is not a size"),
    (dict(seconds="4.5"), "seconds", "whole number"),
    (dict(seconds="500"), "seconds", "allowed: 1 to 120"),
    (dict(input_reference=("notes.txt", b"not an image at all", "text/plain")), "input_reference", "input_reference"),
    (dict(input_reference=("huge.png", huge_bilevel_png(20000, 20000), "image/png")), "input_reference", "pixels"),
    (dict(extra_body={"input_reference": {"image_url": "https://example.com/a.png"}}), "input_reference[image_url]", "fetches no URLs"),
    (dict(extra_body={"input_reference": {"file_id": "file_1"}}), "input_reference[file_id]", "no Files API"),
    (dict(extra_body={"fps": "30"}), "fps", "unknown field"),
]


@pytest.mark.parametrize("args, param, needle", BAD_CREATES, ids=[p for _, p, _ in BAD_CREATES])
def test_bad_creates_raise_bad_request_and_create_nothing(idle, args, param, needle):
    c = openai_client(idle.url)
    with pytest.raises(openai.BadRequestError) as info:
        c.videos.create(prompt="a bad request", **args)
    err = info.value
    assert err.status_code == 400 and err.param == param and needle in err.message, err.body
    assert err.type == "invalid_request_error" and err.code
    assert job_count(idle) == 0
    assert c.videos.list().data == []  # and the server keeps serving


def test_malformed_bodies_and_oversized_uploads(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", max_body=256 * 1024)
    with ServerThread(settings) as s:
        url = s.url + "/v1/videos"
        cases = [
            (b"--xyz\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nunterminated", {"Content-Type": "multipart/form-data; boundary=xyz"}, 400),
            (b'{"prompt": ', {"Content-Type": "application/json"}, 400),
            (b"[1, 2]", {"Content-Type": "application/json"}, 400),
            (b"prompt=hello", {"Content-Type": "text/plain"}, 415),
            (b"x" * (300 * 1024), {"Content-Type": "application/json"}, 413),  # the middleware's limit, in OpenAI's shape
            (b'{"prompt": "hi"}', {"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
        ]
        for body, headers, want in cases:
            status, got, raw = http(url, "POST", body, headers)
            assert status == want, (status, raw)
            error = json.loads(raw)["error"]
            assert error["message"] and error["type"] and "x-amzn-errortype" not in {k.lower() for k in got}, raw
        c = openai_client(s.url)
        with pytest.raises(openai.APIStatusError) as info:
            c.videos.create(prompt="a big reference", input_reference=("big.png", b"\x89PNG" + b"\0" * (300 * 1024), "image/png"))
        assert info.value.status_code == 413 and "at most 262144 bytes" in info.value.message
        with pytest.raises(openai.PermissionDeniedError):
            c.videos.create(prompt="from another site's page", extra_headers={"Origin": "http://evil.example"})
        assert job_count(s) == 0 and c.videos.list().data == []


def test_slow_body_gets_a_timeout_in_openai_shape(tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", read_timeout=0.5)) as s:
        with socket.create_connection(("127.0.0.1", s.settings.port), timeout=10) as conn:
            conn.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            status, headers, body = read_reply(conn)
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


def test_edit_and_characters_are_refused_clearly(idle):
    c = openai_client(idle.url)
    with pytest.raises(openai.BadRequestError) as info:
        c.videos.edit(prompt="make it blue", video=("clip.mp4", b"\0" * 100, "video/mp4"))
    assert info.value.code == "unsupported_operation" and info.value.param == "video" and "remix" in info.value.message
    with pytest.raises(openai.BadRequestError):
        c.videos.create_character(name="Ana", video=("clip.mp4", b"\0" * 100, "video/mp4"))
    with pytest.raises(openai.NotFoundError):
        c.videos.get_character("char_123")
    with pytest.raises(openai.NotFoundError):
        c.videos.remix("video_doesnotexist", prompt="x")
    with pytest.raises(openai.BadRequestError) as info:
        c.videos.extend(prompt="more", seconds="4", video=("clip.mp4", b"not a video", "video/mp4"))
    assert info.value.param == "video" and job_count(idle) == 0


def test_api_keys(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", auth_keys={TEST_KEYS["aws_access_key_id"]: "s3cret"})
    with ServerThread(settings) as s:
        with pytest.raises(openai.AuthenticationError) as info:
            openai_client(s.url, api_key="wrong").videos.create(prompt="refused")
        assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
        status, _, raw = http(s.url + "/v1/videos")  # no key at all
        assert status == 401 and "no API key" in json.loads(raw)["error"]["message"]
        assert job_count(s) == 0
        good = openai_client(s.url, api_key="s3cret")
        v = good.videos.create(prompt="with the right key")
        assert good.videos.retrieve(v.id).id == v.id
        # the Bedrock routes still want SigV4 signatures, not the bearer key
        status, headers, _ = http(s.url + "/async-invoke", headers={"Authorization": "Bearer s3cret"})
        assert status == 403 and {k.lower(): v for k, v in headers.items()}["x-amzn-errortype"] == "AccessDeniedException"


def test_outputs_without_a_bucket_go_to_the_data_dir(tmp_path):
    with ServerThread(ServerSettings(workers=1, data_dir=tmp_path / "home")) as s:
        c = openai_client(s.url, strict=False)
        v = c.videos.create_and_poll(prompt="stored on the server's disk", seconds="1", size="320x180")
        assert v.status == "completed"
        job = s.runtime.get(v.id.removeprefix("video_"))
        assert job.storage_uri.startswith("file://") and str(tmp_path / "home" / "outputs") in job.storage_uri
        assert decoded(c.videos.download_content(v.id).content, tmp_path).frames == 24
        assert Image.open(io.BytesIO(c.videos.download_content(v.id, variant="thumbnail").content)).format == "JPEG"
