"""The web gallery on the real server: pages over HTTP, then Debian's Chromium driving them.

The server is ``create_app`` on uvicorn in a thread on a free 127.0.0.1 port (tests/server_fixtures.py);
jobs run on its worker threads in this process. Browser tests skip with a reason when
/usr/bin/chromium or the playwright package is missing (tests/gallery_browser.py).
"""

from __future__ import annotations

import re
import time

import httpx
import numpy as np
import pytest

import gallery_browser
from helpers import engines_registered, image_bytes
from reelforge import Engine, JobStatus, VideoRequest
from reelforge.request.limits import LOCAL, ModelSpec
from reelforge.server.app import ServerSettings
from server_fixtures import ServerThread

ANIMATIC = "reelforge.animatic-v1"
TINY = dict(duration_s=1, fps=8, width=128, height=72)
FRAME_S = 0.08  # the slow engine's time per frame


class _GalleryEngine(Engine):
    generative = False

    def render_shot(self, shot, progress):
        for i in range(shot.frame_count):
            progress(i, shot.frame_count, "render")
            self.step(i)
            yield np.full((shot.height, shot.width, 3), 90, np.uint8)


class SlowGalleryEngine(_GalleryEngine):
    engine_id = "test-gallery-slow"

    @classmethod
    def models(cls):
        return [ModelSpec("test.gallery-slow", cls.engine_id, "sleeps on every frame", LOCAL)]

    def step(self, i):
        time.sleep(FRAME_S)


class BoomGalleryEngine(_GalleryEngine):
    engine_id = "test-gallery-boom"

    @classmethod
    def models(cls):
        return [ModelSpec("test.gallery-boom", cls.engine_id, "fails at frame 2", LOCAL)]

    def step(self, i):
        if i == 2:
            raise ZeroDivisionError("division by zero")


registered_engines = engines_registered(SlowGalleryEngine, BoomGalleryEngine)


# --- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture
def server():
    with ServerThread(ServerSettings(workers=2)) as srv:
        yield srv


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def submit(server, text, model=ANIMATIC, **kw):
    record, _ = server.runtime.submit(model, VideoRequest(text=text, **{**TINY, **kw}))
    return record


def wait(server, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        record = server.runtime.get(job_id)
        if record.status.done:
            return record
        assert time.monotonic() < deadline, f"job {job_id} still {record.status.value} after {timeout} s"
        time.sleep(0.05)


def wait_running(server, job_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while server.runtime.get(job_id).status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, f"job {job_id} did not start"
        time.sleep(0.02)


def form(**overrides):
    values = {"task": "TEXT_VIDEO", "prompt": "A red kite over a green hill. Camera pans left.", "model": ANIMATIC,
              "duration": "1", "seed": "", "size": "128x72", "fps": "8", "fit": "", "shots": ""}
    return {**values, **overrides}


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'class="field-error" id="([a-z]+)-error">([^<]*)<', html))


def job_ids(html: str) -> list[str]:
    return re.findall(r'<li class="job" data-job-id="([a-z0-9]{12})"', html)


# --- plain HTTP ------------------------------------------------------------------------------
def test_list_shows_each_job_with_poster_status_model_duration_seed_prompt(server, http):
    done = submit(server, "A lighthouse on a cliff at dusk.", seed=11)
    wait(server, done.id)
    queued_text = "A paper boat on a rain puddle."
    other = submit(server, queued_text, model="test.gallery-slow", duration_s=2)
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert job_ids(html) == [other.id, done.id]  # newest first
    row = html[html.index(f'data-job-id="{done.id}"'):]
    assert f'src="/reelforge/jobs/{done.id}/files/poster.jpg"' in row
    for fact in ("COMPLETED", ANIMATIC, "1 s", "11", "A lighthouse on a cliff at dusk."):
        assert fact in row
    live = html[html.index(f'data-job-id="{other.id}"'):html.index(f'data-job-id="{done.id}"')]
    assert 'data-done="false"' in live and "<progress" in live and "test.gallery-slow" in live
    assert "42 (default)" in live  # a request without a seed shows the seed Nova would use
    server.runtime.cancel(other.id)
    wait(server, other.id)
    poster = http.get(f"/reelforge/jobs/{done.id}/files/poster.jpg")
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"


def test_search_and_filters_narrow_the_list(server, http):
    zebra = submit(server, "A zebra crosses a dusty road.")
    walrus = submit(server, "A walrus naps on an ice floe.")
    cafe = submit(server, "Steam rises from a café window.")
    failed = submit(server, "A zebra made of paper folds itself.", model="test.gallery-boom")
    for job in (zebra, walrus, cafe, failed):
        wait(server, job.id)

    def ids(**params):
        reply = http.get("/", params=params)
        assert reply.status_code == 200
        return set(job_ids(reply.text))

    assert ids() == {zebra.id, walrus.id, cafe.id, failed.id}
    assert ids(q="zebra") == {zebra.id, failed.id}
    assert ids(q="ZEBRA cross") == {zebra.id}  # whole phrase, any case
    assert ids(q="café") == {cafe.id}  # the job log stores JSON with \u escapes; search still finds it
    assert ids(status="FAILED") == {failed.id}
    assert ids(status="COMPLETED", q="zebra") == {zebra.id}
    assert ids(model="test.gallery-boom") == {failed.id}
    assert ids(model=ANIMATIC, q="walrus") == {walrus.id}
    assert ids(q="no such words") == set()
    bad = http.get("/", params={"status": "LOST"})
    assert bad.status_code == 400 and "&#39;LOST&#39; is not a status" in bad.text
    short = http.get("/", params={"q": "ze"})  # too short for the search index: said on the form, not a crash
    assert short.status_code == 400 and "a search needs at least 3 characters" in short.text and 'role="alert"' in short.text
    assert 'value="ze"' in short.text


def test_list_pages_through_older_jobs(server, http, monkeypatch):
    monkeypatch.setattr("reelforge.server.gallery.routes.PAGE_SIZE", 2)
    jobs = [submit(server, f"Zebra number {i} trots by.") for i in range(3)]
    first = http.get("/", params={"q": "zebra"}).text
    assert job_ids(first) == [jobs[2].id, jobs[1].id]
    older = re.search(r'<a href="([^"]+)">Older jobs</a>', first).group(1).replace("&amp;", "&")
    assert "q=zebra" in older
    assert job_ids(http.get(older).text) == [jobs[0].id]
    for job in jobs:
        wait(server, job.id)


def test_new_job_form_submits_and_redirects_to_the_job(server, http):
    reply = http.post("/gallery/new", data=form(seed="5"), files={"image": ("still.png", image_bytes(128, 72), "image/png")})
    assert reply.status_code == 303
    job_id = reply.headers["location"].rsplit("/", 1)[1]
    record = wait(server, job_id)
    assert record.status is JobStatus.COMPLETED
    cfg = record.model_input["videoGenerationConfig"]
    assert (record.model_id, cfg["seed"], cfg["dimension"], cfg["durationSeconds"]) == (ANIMATIC, 5, "128x72", 1)
    assert record.model_input["textToVideoParams"]["images"][0]["format"] == "png"

    shots = http.post("/gallery/new", data=form(task="MULTI_SHOT_MANUAL", prompt="", shots="A fox wakes.\n\nThe fox runs.\n"))
    assert shots.status_code == 303
    record = server.runtime.get(shots.headers["location"].rsplit("/", 1)[1])
    params = record.model_input["multiShotManualParams"]["shots"]
    assert [s["text"] for s in params] == ["A fox wakes.", "The fox runs."] and params[0]["durationSeconds"] == 1
    wait(server, record.id)
    page = http.get(f"/gallery/jobs/{record.id}").text
    assert "Shot 2 (MP4)" in page and "<video" in page and "<li>The fox runs.</li>" in page


@pytest.mark.parametrize(
    "overrides, image, field, words",
    [
        ({}, b"this is not a picture", "image", "not a recognised image"),
        ({"model": "amazon.nova-reel-v1:1", "size": "1280x720", "duration": "6", "fps": "24"}, image_bytes(640, 360), "image", "640x360"),
        ({"seed": "abc"}, None, "seed", "not a whole number"),
        ({"seed": "-3"}, None, "seed", "out of range"),
        ({"prompt": "   "}, None, "prompt", "empty"),
        ({"size": "12x7"}, None, "size", "12x7 is not allowed"),
        ({"duration": "500"}, None, "duration", "500"),
        ({"model": "acme.nothing"}, None, "model", "unknown model"),
        ({"task": "MULTI_SHOT_MANUAL", "shots": ""}, None, "shots", "one shot prompt per line"),
        ({"task": "MULTI_SHOT_AUTOMATED", "duration": "12"}, image_bytes(128, 72), "image", "takes no image"),
    ],
)
def test_new_job_form_shows_each_error_by_its_field_and_records_nothing(server, http, overrides, image, field, words):
    files = {"image": ("upload.png", image, "image/png")} if image is not None else None
    data = form(**overrides)
    reply = http.post("/gallery/new", data=data, files=files)
    assert reply.status_code == 400
    errors = field_errors(reply.text)
    assert list(errors) == [field] and words in errors[field], errors
    assert re.search(f'aria-invalid="true" aria-describedby="[^"]*{field}-error"|aria-describedby="[^"]*{field}-error"[^>]*aria-invalid="true"', reply.text)
    if data["prompt"].strip():
        assert re.search(r'<textarea id="prompt"[^>]*>A red kite over a green hill', reply.text)  # what was typed stays
    assert server.runtime.store.list() == []


def test_form_posts_from_another_site_are_refused(server, http):
    own = http.post("/gallery/new", data=form(), headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 303
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "http://evil.example/page.html"},
    ):
        reply = http.post("/gallery/new", data=form(), headers=headers)
        assert reply.status_code == 403 and "Form refused" in reply.text, headers
        job = own.headers["location"].rsplit("/", 1)[1]
        again = http.post(f"/gallery/jobs/{job}/again", data={"model": ANIMATIC, "seed": "1"}, headers=headers)
        assert again.status_code == 403
    assert len(server.runtime.store.list()) == 1
    wait(server, job)


def test_failed_job_page_shows_the_message_not_a_traceback(server, http):
    job = submit(server, "A glass vase <b>shatters</b> in slow motion.", model="test.gallery-boom")
    assert wait(server, job.id).status is JobStatus.FAILED
    html = http.get(f"/gallery/jobs/{job.id}").text
    assert "The job failed" in html
    assert "the engine failed with ZeroDivisionError: division by zero (traceback in the log)" in html
    assert "Traceback (most recent call last)" not in html and 'File "' not in html and "step(i)" not in html
    assert "<b>shatters</b>" not in html and "&lt;b&gt;shatters&lt;/b&gt;" in html  # autoescaped
    listed = http.get("/", params={"status": "FAILED"}).text
    assert "division by zero" in listed and "Traceback" not in listed


def test_job_page_has_player_recipe_downloads_and_contact_sheet(server, http):
    record = submit(server, "A kite over a hill.", seed=9, image=image_bytes(128, 72))
    wait(server, record.id)
    html = http.get(f"/gallery/jobs/{record.id}").text
    files = f"/reelforge/jobs/{record.id}/files/"
    assert f'src="{files}output.mp4"' in html and "<video" in html
    assert f'src="{files}contact_sheet.png"' in html
    for name in ("output.mp4", "poster.jpg", "contact_sheet.png", "manifest.json"):
        assert f'href="{files}{name}" download=' in html
    assert "base64 characters&gt;" in html  # the request, image bytes left out
    assert record.model_input["textToVideoParams"]["images"][0]["source"]["bytes"][:40] not in html
    assert "Engine metadata" in html and "render_encode_s" in html
    assert "Ran for" in html and "Waited in the queue" in html
    video = http.get(f"{files}output.mp4", headers={"Range": "bytes=0-99"})
    assert video.status_code == 206 and video.headers["content-range"].startswith("bytes 0-99/")
    missing = http.get("/gallery/jobs/zzzzzzzzzzzz")
    assert missing.status_code == 404 and "There is no job" in missing.text


def test_run_again_with_another_seed_or_model(server, http):
    first = submit(server, "A kite over a hill.", seed=9)
    wait(server, first.id)
    reply = http.post(f"/gallery/jobs/{first.id}/again", data={"model": "test.gallery-slow", "seed": "123"})
    assert reply.status_code == 303
    again = server.runtime.get(reply.headers["location"].rsplit("/", 1)[1])
    assert again.model_id == "test.gallery-slow" and again.model_input["videoGenerationConfig"]["seed"] == 123
    assert again.model_input["textToVideoParams"] == first.model_input["textToVideoParams"]
    assert {"key": "reelforge:rerun-of", "value": first.id} in again.tags
    wait(server, again.id)
    assert f'href="/gallery/jobs/{first.id}"' in http.get(f"/gallery/jobs/{again.id}").text

    # The 8 fps, 128x72, 1 s request does not fit Nova Reel: the page says why.
    refused = http.post(f"/gallery/jobs/{first.id}/again", data={"model": "amazon.nova-reel-v1:1", "seed": "1"})
    assert refused.status_code == 400 and "videoGenerationConfig.fps: 8 is not allowed for amazon.nova-reel-v1:1" in refused.text
    bad_seed = http.post(f"/gallery/jobs/{first.id}/again", data={"model": ANIMATIC, "seed": "x"})
    assert bad_seed.status_code == 400 and field_errors(bad_seed.text) == {"seed": "&#39;x&#39; is not a whole number"}
    assert len(server.runtime.store.list()) == 2


def test_lint_endpoint_gives_prompt_warnings(http):
    warnings = http.get("/gallery/lint", params={"prompt": "Please show a dog without a leash", "task": "TEXT_VIDEO"}).json()["warnings"]
    assert {(w["rule"], w["code"]) for w in warnings} == {("P4", "command"), ("P2", "negation")}
    shots = http.get("/gallery/lint", params={"shots": "A dog runs.\nNo cats.", "task": "MULTI_SHOT_MANUAL"}).json()["warnings"]
    assert [(w["shot"], w["rule"]) for w in shots] == [(2, "P2")]
    assert http.get("/gallery/lint", params={"prompt": ""}).json() == {"warnings": []}


def test_the_form_says_what_the_previz_will_show_when_the_model_renders_on_it(http):
    prompt = "A red boat beside a green lighthouse at sunset. Camera zoom in."
    (note,) = http.get("/gallery/lint", params={"prompt": prompt, "model": "reelforge.animatic-v2"}).json()["previz"]
    assert note.startswith("previz will show: ") and "red boat" in note and "sunset" in note and "zoom in" in note
    assert "previz" not in http.get("/gallery/lint", params={"prompt": prompt, "model": ANIMATIC}).json()
    # a refused form keeps the note beside the prompt notes
    page = http.post("/gallery/new", data=form(prompt=prompt, model="reelforge.animatic-v2", seed="x"))
    assert page.status_code == 400 and '<p class="previz-note">previz will show: ' in page.text


def test_bedrock_paths_are_untouched_by_the_gallery(server, http):
    reply = http.get("/async-invoke")
    assert reply.status_code == 200 and "asyncInvokeSummaries" in reply.json()
    assert http.get("/gallery/static/gallery.js").status_code == 200
    assert http.get("/gallery/static/gallery.css").headers["content-type"].startswith("text/css")


def test_list_event_stream_reports_progress_until_the_jobs_end(server):
    job = submit(server, "A slow pan over a quiet harbour.", model="test.gallery-slow", duration_s=2)
    seen = []
    with httpx.stream("GET", f"{server.url}/gallery/events", params={"ids": job.id}, timeout=30) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: {\""):
                seen.append(httpx.Response(200, content=line[6:]).json())
    assert seen[-1]["status"] == "COMPLETED" and seen[-1]["posterUrl"].endswith("/poster.jpg")
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress)



def test_bucket_dir_server_runs_the_form_and_run_again_into_its_default_output(tmp_path):
    bucket_dir = tmp_path / "buckets"
    bucket_dir.mkdir()
    with ServerThread(ServerSettings(workers=2, bucket_dir=bucket_dir)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        reply = client.post("/gallery/new", data=form(seed="5"), files={"image": ("still.png", image_bytes(128, 72), "image/png")})
        assert reply.status_code == 303, field_errors(reply.text) or reply.text[:500]
        first = wait(srv, reply.headers["location"].rsplit("/", 1)[1])
        assert first.status is JobStatus.COMPLETED, first.failure_message
        assert first.output_uri == f"s3://reelforge-outputs/videos/{first.id}"
        assert (bucket_dir / "reelforge-outputs" / "videos" / first.id / "output.mp4").is_file()

        again = client.post(f"/gallery/jobs/{first.id}/again", data={"model": ANIMATIC, "seed": "6"})
        assert again.status_code == 303, again.text[:500]
        second = wait(srv, again.headers["location"].rsplit("/", 1)[1])
        assert second.status is JobStatus.COMPLETED and second.output_uri.startswith("s3://reelforge-outputs/videos/")
        page = client.get(f"/gallery/jobs/{second.id}").text
        assert f'src="/reelforge/jobs/{second.id}/files/output.mp4"' in page and "KB" in page


def test_server_default_output_is_where_form_jobs_go(tmp_path):
    bucket_dir = tmp_path / "buckets"
    bucket_dir.mkdir()
    settings = ServerSettings(workers=1, bucket_dir=bucket_dir, default_output="s3://my-bucket/gallery")
    with ServerThread(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        reply = client.post("/gallery/new", data=form())
        assert reply.status_code == 303
        record = wait(srv, reply.headers["location"].rsplit("/", 1)[1])
        assert record.status is JobStatus.COMPLETED and record.output_uri == f"s3://my-bucket/gallery/{record.id}"
        assert (bucket_dir / "my-bucket" / "gallery" / record.id / "output.mp4").is_file()


def test_form_upload_over_the_body_limit_gets_a_gallery_page():
    limit = 256 * 1024
    with ServerThread(ServerSettings(workers=1, max_body=limit)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        assert "PNG or JPEG, up to 0.2 MB" in client.get("/gallery/new").text
        assert f'data-max-bytes="{limit - 64 * 1024}"' in client.get("/gallery/new").text
        big = ("big.png", b"\x89PNG" + bytes(400 * 1024), "image/png")
        reply = client.post("/gallery/new", data=form(), files={"image": big})
        assert reply.status_code == 413 and reply.headers["content-type"].startswith("text/html")
        assert reply.headers.get("x-amzn-requestid")
        html = reply.text
        assert "The upload was too large" in html and "at most 0.2 MB" in html and "{" not in html.split("<main", 1)[1]
        assert '<a href="/gallery/new">Back to the new-video form</a>' in html
        job = submit(srv, "A kite.")
        wait(srv, job.id)
        again = client.post(f"/gallery/jobs/{job.id}/again", data={"model": ANIMATIC, "seed": "1", "pad": "x" * limit})
        assert again.status_code == 413 and f'<a href="/gallery/jobs/{job.id}">Back to the job</a>' in again.text
        api = client.post("/async-invoke", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
        assert api.status_code == 413 and api.headers["content-type"] == "application/json" and "message" in api.json()
        assert len(srv.runtime.store.list()) == 1


def test_image_size_error_points_at_the_fit_control_and_failed_submits_ask_for_the_image_again(server, http):
    data = form(model="amazon.nova-reel-v1:1", size="1280x720", duration="6", fps="24", seed="x")
    reply = http.post("/gallery/new", data=data, files={"image": ("holiday.png", image_bytes(640, 360), "image/png")})
    assert reply.status_code == 400
    html = reply.text
    assert field_errors(html) == {"seed": "&#39;x&#39; is not a whole number"}  # typed values fail before the model's checks
    assert "Choose holiday.png again: browsers don't keep a chosen file after an error." in html
    assert 'aria-describedby="image-hint image-again"' in html
    summary = html[html.index('id="form-error"'):html.index("</div>", html.index('id="form-error"'))]
    assert 'tabindex="-1"' in summary and '<a href="#seed">Seed: &#39;x&#39; is not a whole number</a>' in summary

    reply = http.post("/gallery/new", data={**data, "seed": "1"}, files={"image": ("holiday.png", image_bytes(640, 360), "image/png")})
    message = field_errors(reply.text)["image"]
    assert "640x360" in message and "Crop to fit or Pad to fit under “If the image is another size”" in message
    assert "--fit" not in reply.text and "VideoRequest(" not in reply.text and "storyboard" not in reply.text
    assert '<a href="#image">Starting image: image is 640x360' in reply.text

    no_image = http.post("/gallery/new", data=form(prompt=""))
    assert "again: browsers" not in no_image.text and '<a href="#prompt">Prompt: is empty' in no_image.text
    assert "No fitting (Nova Reel models refuse an image of another size; other models crop it)" in no_image.text
    assert server.runtime.store.list() == []


def test_run_again_image_error_has_no_cli_advice(server, http):
    # The animatic model crops an image of another size; Nova Reel refuses it, and "run again" has no fit control.
    first = submit(server, "A kite over a hill.", image=image_bytes(640, 360), fps=24, duration_s=6, width=1280, height=720)
    server.runtime.cancel(first.id)
    reply = http.post(f"/gallery/jobs/{first.id}/again", data={"model": "amazon.nova-reel-v1:1", "seed": "1"})
    assert reply.status_code == 400
    assert "image is 640x360" in reply.text and "--fit" not in reply.text and "VideoRequest(" not in reply.text
    assert "make a new video with Crop to fit or Pad to fit under “If the image is another size”" in reply.text
    assert 'data-error-summary' in reply.text
    wait(server, first.id)


def test_unknown_pages_get_the_gallery_page_and_api_paths_keep_json(server, http):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    page = http.get("/nonexistent-page", headers=browser)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text and "/nonexistent-page" in page.text and '"message"' not in page.text
    assert page.headers.get("x-amzn-requestid")
    for path in ("/nonexistent-page", "/reelforge/nothing", "/async-invoke/a/b/c"):
        for headers in ({}, {"Accept": "application/json"}, browser):
            if path == "/nonexistent-page" and headers is browser:
                continue
            reply = http.get(path, headers=headers)
            assert reply.status_code in (400, 404) and reply.headers["content-type"] == "application/json", (path, headers)
            assert list(reply.json()) == ["message"]
    post = http.post("/nonexistent-page", headers=browser)
    assert post.status_code in (404, 405) and post.headers["content-type"] == "application/json"


def test_job_page_before_the_video_and_after_a_cancel(server, http):
    job = submit(server, "A very slow sunrise.", model="test.gallery-slow", duration_s=30)
    wait_running(server, job.id)
    html = http.get(f"/gallery/jobs/{job.id}").text
    assert "The video appears here when the job is done." in html and "<video" not in html
    server.runtime.cancel(job.id)
    assert wait(server, job.id).status is JobStatus.CANCELED
    html = http.get(f"/gallery/jobs/{job.id}").text
    assert "The video appears here" not in html and "No video: the job was canceled" in html
    failed = submit(server, "A vase shatters.", model="test.gallery-boom")
    wait(server, failed.id)
    html = http.get(f"/gallery/jobs/{failed.id}").text
    assert "The video appears here" not in html and "No video:" not in html and "The job failed" in html


def _record(tmp_path, status, storage_uri=None, task="MULTI_SHOT_MANUAL"):
    from reelforge.jobs.record import JobRecord

    params = {"shots": [{"text": "A fox wakes."}, {"text": "The fox runs."}]} if task == "MULTI_SHOT_MANUAL" else {"text": "A kite."}
    key = "multiShotManualParams" if task == "MULTI_SHOT_MANUAL" else "textToVideoParams"
    model_input = {"taskType": task, key: params, "videoGenerationConfig": {"fps": 24, "dimension": "1280x720", "durationSeconds": 6}}
    return JobRecord(
        id="abcdefabcdef", arn="arn:aws:bedrock:us-east-1:000000000000:async-invoke/abcdefabcdef", model_id=ANIMATIC,
        model_input=model_input, output_uri="s3://b/out/abcdefabcdef", storage_uri=storage_uri or (tmp_path / "job").as_uri(), status=status,
    )


def test_downloads_come_video_first_and_leftover_shots_are_labelled(tmp_path):
    from reelforge.server.gallery import views

    folder = tmp_path / "job"
    folder.mkdir()
    names = ["video-generation-status.json", "manifest.json", "contact_sheet.png", "poster.jpg", "shot_0002.mp4", "shot_0001.mp4", "output.mp4", "shot_0010.mp4"]
    for name in names:
        (folder / name).write_bytes(b"x" * 10)
    done = views.detail(_record(tmp_path, JobStatus.COMPLETED))
    assert [f.name for f in done.files] == [
        "output.mp4", "shot_0001.mp4", "shot_0002.mp4", "shot_0010.mp4", "poster.jpg", "contact_sheet.png", "manifest.json", "video-generation-status.json",
    ]
    assert not any(f.leftover for f in done.files)
    (folder / "output.mp4").unlink()
    canceled = views.detail(_record(tmp_path, JobStatus.CANCELED))
    shots = [f for f in canceled.files if f.name.startswith("shot_")]
    assert shots and all(f.leftover and f.label.endswith("left over from the canceled job") for f in shots)

    s3 = views.detail(_record(tmp_path, JobStatus.COMPLETED, storage_uri="s3://b/out/abcdefabcdef", task="TEXT_VIDEO"))
    assert [f.size for f in s3.files] == [""] * len(s3.files)
    from reelforge.server.gallery.routes import templates

    html = templates.get_template("job.html").render(job=s3, models=[], again={"model": ANIMATIC, "seed": "1"}, errors={})
    assert "output.mp4</span>" in html and "output.mp4, <" not in html and ", </span>" not in html


def test_list_count_wording_and_newer_link(server, http, monkeypatch):
    monkeypatch.setattr("reelforge.server.gallery.routes.PAGE_SIZE", 2)
    jobs = [submit(server, f"Zebra number {i} trots by.") for i in range(5)]
    for job in jobs:
        wait(server, job.id)

    def count(html):
        return re.search(r'<p class="count" role="status">([^<]*)</p>', html).group(1)

    first = http.get("/", params={"q": "zebra"}).text
    assert count(first) == "The newest 2 matching jobs" and "Newer jobs" not in first
    second_url = re.search(r'<a href="([^"]+)">Older jobs</a>', first).group(1).replace("&amp;", "&")
    second = http.get(second_url).text
    assert job_ids(second) == [jobs[2].id, jobs[1].id] and count(second) == "2 older matching jobs"
    newer_url = re.search(r'<a href="([^"]+)">Newer jobs</a>', second).group(1).replace("&amp;", "&")
    assert "q=zebra" in newer_url and job_ids(http.get(newer_url).text) == [jobs[4].id, jobs[3].id]
    third = http.get(re.search(r'<a href="([^"]+)">Older jobs</a>', second).group(1).replace("&amp;", "&")).text
    assert job_ids(third) == [jobs[0].id] and count(third) == "1 older matching job" and "Older jobs" not in third
    back = http.get(re.search(r'<a href="([^"]+)">Newer jobs</a>', third).group(1).replace("&amp;", "&")).text
    assert job_ids(back) == [jobs[2].id, jobs[1].id] and "Newer jobs" in back and "Older jobs" in back

    one = http.get("/", params={"q": "number 3"}).text
    assert count(one) == "1 job matches"
    assert count(http.get("/", params={"q": "zebra number"}).text) == "The newest 2 matching jobs"
    monkeypatch.setattr("reelforge.server.gallery.routes.PAGE_SIZE", 48)
    assert count(http.get("/").text) == "5 jobs"
    assert count(http.get("/", params={"q": "Zebra"}).text) == "5 jobs match"


def test_form_duration_hint_follows_the_kind_of_video(http):
    html = http.get("/gallery/new").text
    assert '<p class="hint" id="duration-hint"' in html and ">The video&#39;s length.</p>" in html
    assert "data-hints=" in html and "Each shot" in html
    assert "PNG or JPEG, up to 32 MB;" in html  # the server's default body limit
    manual = http.post("/gallery/new", data=form(task="MULTI_SHOT_MANUAL", shots="", prompt="")).text
    assert re.search(r'id="duration-hint"[^>]*>Each shot&#39;s length.</p>', manual)
    auto = http.post("/gallery/new", data=form(task="MULTI_SHOT_AUTOMATED", prompt="")).text
    assert re.search(r'id="duration-hint"[^>]*>The whole video&#39;s length, all shots together.</p>', auto)


def test_recipe_shows_the_starting_image_and_pages_have_a_favicon(server, http):
    still = image_bytes(128, 72, color=(10, 200, 30))
    record = submit(server, "A kite over a hill.", image=still)
    plain = submit(server, "A kite without a picture.")
    for job in (record, plain):
        wait(server, job.id)
    html = http.get(f"/gallery/jobs/{record.id}").text
    assert f'<img src="/gallery/jobs/{record.id}/image"' in html
    image = http.get(f"/gallery/jobs/{record.id}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content[:4] == b"\x89PNG"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "/image\"" not in http.get(f"/gallery/jobs/{plain.id}").text
    assert http.get(f"/gallery/jobs/{plain.id}/image").status_code == 404
    assert http.get("/gallery/jobs/zzzzzzzzzzzz/image").status_code == 404
    for path in ("/", "/gallery/new", f"/gallery/jobs/{record.id}"):
        assert '<link rel="icon" href="data:image/svg+xml,' in http.get(path).text


# --- in Debian's Chromium --------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    reason = gallery_browser.missing()
    if reason:
        pytest.skip(reason)
    with gallery_browser.chromium() as context:
        yield context


@pytest.fixture
def tab(browser, server):
    page = browser.new_page()
    yield page
    page.close()  # before the server stops, so no event stream holds it up


def assert_accessible(tab):
    assert tab.evaluate(gallery_browser.UNLABELLED_CONTROLS) == []
    tab.set_viewport_size({"width": 390, "height": 844})  # a phone
    try:
        assert tab.evaluate(gallery_browser.FITS_WIDTH), "the page is wider than a phone screen"
    finally:
        tab.set_viewport_size({"width": 1280, "height": 860})


def test_browser_submit_from_the_form(server, tab):
    tab.goto(server.url + "/gallery/new")
    assert_accessible(tab)
    tab.fill("#prompt", "Please show a red kite that doesn't fall.")
    tab.wait_for_selector("#lint li:has-text('P2')")  # notes appear as you type
    assert "P4" in tab.inner_text("#lint")
    tab.fill("#prompt", "A red kite climbs over a green hill. Camera pans left.")
    tab.wait_for_function("() => !document.querySelector('#lint li')")
    tab.select_option("#model", ANIMATIC)
    tab.fill("#duration", "1")
    tab.fill("#seed", "7")
    tab.fill("#size", "128x72")
    tab.fill("#fps", "8")
    tab.press("#fps", "Enter")  # the keyboard submits the form
    tab.wait_for_url(re.compile(r"/gallery/jobs/[a-z0-9]{12}$"))
    job_id = tab.url.rsplit("/", 1)[1]
    tab.wait_for_selector("#player")  # the page reloads itself when the job ends
    assert tab.get_attribute("[data-live-job]", "data-status") == "COMPLETED"
    record = server.runtime.get(job_id)
    assert record.status is JobStatus.COMPLETED and record.model_input["videoGenerationConfig"]["seed"] == 7


def test_browser_shows_progress_live(server, tab):
    job = submit(server, "A slow dolly in on a sleeping cat.", model="test.gallery-slow", duration_s=4)
    tab.goto(server.url + "/")
    row = f'li[data-job-id="{job.id}"]'
    tab.evaluate(
        """(row) => { window.stayed = true; window.seen = [];
           const bar = document.querySelector(row + ' progress');
           window.timer = setInterval(() => window.seen.push(bar.value), 40); }""",
        row,
    )
    tab.wait_for_selector(f'{row}[data-status="COMPLETED"] img[data-field="poster"]', timeout=30_000)
    seen = tab.evaluate("() => { clearInterval(window.timer); return window.seen; }")
    assert tab.evaluate("() => window.stayed === true"), "the list reloaded instead of updating in place"
    assert any(0 < v < 1 for v in seen), seen
    assert seen == sorted(seen)
    assert tab.inner_text(f"{row} [data-field=status]") == "COMPLETED"

    # The job page follows the server's own per-job stream.
    other = submit(server, "A slow crane up over rooftops.", model="test.gallery-slow", duration_s=6)
    tab.goto(f"{server.url}/gallery/jobs/{other.id}")
    tab.wait_for_function("() => { const p = document.querySelector('[data-live-job] progress'); return p && p.value > 0 && p.value < 1; }")
    assert "render" in tab.inner_text("[data-live-job] [data-field=stage]")
    tab.wait_for_selector("#player", timeout=30_000)


def test_browser_video_plays_and_seeks(server, tab, tmp_path):
    job = submit(server, "A lighthouse on a cliff at dusk, waves below. Camera orbit.", seed=3, duration_s=6, fps=24, width=640, height=360)
    assert wait(server, job.id).status is JobStatus.COMPLETED
    tab.goto(f"{server.url}/gallery/jobs/{job.id}")
    played = tab.evaluate(
        """async () => {
            const v = document.querySelector('#player');
            v.muted = true;
            await v.play();
            const until = performance.now() + 20000;
            while (v.readyState < 4 && performance.now() < until) await new Promise(r => setTimeout(r, 50));
            return {readyState: v.readyState, duration: v.duration, error: v.error && v.error.code, width: v.videoWidth};
        }"""
    )
    assert played == {"readyState": 4, "duration": 6, "error": None, "width": 640}
    seek = tab.evaluate(
        """async () => {
            const v = document.querySelector('#player');
            v.pause();
            const seeked = new Promise(r => v.addEventListener('seeked', r, {once: true}));
            v.currentTime = 4.5;
            await seeked;
            return {currentTime: v.currentTime, seekableEnd: v.seekable.length ? v.seekable.end(0) : 0};
        }"""
    )
    assert abs(seek["currentTime"] - 4.5) < 0.05 and seek["seekableEnd"] == pytest.approx(6, abs=0.05), seek
    assert_accessible(tab)
    tab.evaluate("() => window.scrollTo(0, 0)")
    tab.screenshot(path=tmp_path / "gallery-job.png")
    assert (tmp_path / "gallery-job.png").stat().st_size > 10_000


def test_browser_search_filters_the_list(server, tab, tmp_path):
    prompts = [
        "A zebra crosses a sunlit savanna road. Camera pans right.",
        "A walrus naps on an ice floe under green northern lights.",
        "A zebra foal drinks at a waterhole at dawn, mist on the water.",
        "Lanterns drift over a river at night, reflections shimmering.",
    ]
    jobs = [submit(server, text, seed=i + 1, width=320, height=180) for i, text in enumerate(prompts)]
    failed = submit(server, "A paper crane unfolds into a map of the city.", model="test.gallery-boom", width=320, height=180)
    for job in [*jobs, failed]:
        wait(server, job.id)
    tab.goto(server.url + "/")
    assert tab.locator("li.job").count() == 5
    assert_accessible(tab)
    tab.screenshot(path=tmp_path / "gallery-list.png")

    tab.fill("#q", "zebra")
    tab.press("#q", "Enter")
    tab.wait_for_url(re.compile(r"\?q=zebra"))
    shown = tab.locator("li.job h2").all_inner_texts()
    assert sorted(shown) == sorted(p for p in prompts if "zebra" in p)
    tab.select_option("#status", "FAILED")
    tab.fill("#q", "")
    tab.press("#q", "Enter")
    tab.wait_for_url(re.compile(r"status=FAILED"))
    assert tab.locator("li.job").count() == 1
    tab.click("li.job h2 a")
    tab.wait_for_url(re.compile(failed.id))
    alert = tab.inner_text("[role=alert]")
    assert "ZeroDivisionError: division by zero" in alert and "Traceback" not in tab.content()


def test_browser_cancel(server, tab):
    job = submit(server, "A very slow sunrise over a valley.", model="test.gallery-slow", duration_s=60)
    wait_running(server, job.id)
    tab.goto(f"{server.url}/gallery/jobs/{job.id}")
    tab.wait_for_selector('[data-live-job][data-status="RUNNING"]')
    tab.focus("button[data-cancel]")
    tab.keyboard.press("Enter")
    tab.wait_for_selector('[data-live-job][data-status="CANCELED"]', timeout=20_000)
    assert "This job was canceled" in tab.inner_text("[data-live-job]")
    assert server.runtime.get(job.id).status is JobStatus.CANCELED
    assert tab.locator("button[data-cancel]").count() == 0



def test_browser_failed_submit_focuses_the_error_summary_with_links_to_fields(server, tab):
    tab.goto(server.url + "/gallery/new")
    assert tab.inner_text("#duration-hint") == "The video's length."
    tab.select_option("#task", "MULTI_SHOT_MANUAL")
    assert tab.inner_text("#duration-hint") == "Each shot's length."
    tab.select_option("#task", "MULTI_SHOT_AUTOMATED")
    assert tab.inner_text("#duration-hint") == "The whole video's length, all shots together."
    tab.select_option("#task", "TEXT_VIDEO")
    tab.fill("#prompt", "A red kite climbs over a green hill.")
    tab.select_option("#model", ANIMATIC)
    tab.set_input_files("#image", files=[{"name": "kite.png", "mimeType": "image/png", "buffer": image_bytes(128, 72)}])
    tab.fill("#seed", "seven")
    tab.click("button[type=submit]")
    tab.wait_for_selector("#form-error")
    assert tab.evaluate("() => document.activeElement.id") == "form-error"
    assert "Choose kite.png again" in tab.inner_text("#image-again")
    assert_accessible(tab)
    tab.click("#form-error a[href='#seed']")
    assert tab.evaluate("() => document.activeElement.id") == "seed"
    assert server.runtime.store.list() == []


def test_browser_refuses_an_image_over_the_upload_limit_before_sending(browser):
    with ServerThread(ServerSettings(workers=1, max_body=256 * 1024)) as srv:
        tab = browser.new_page()
        try:
            tab.goto(srv.url + "/gallery/new")
            tab.fill("#prompt", "A red kite climbs over a green hill.")
            tab.set_input_files("#image", files=[{"name": "huge.png", "mimeType": "image/png", "buffer": b"\x89PNG" + bytes(300 * 1024)}])
            error = tab.inner_text("[data-field=image-size]")
            assert "huge.png is 0.3 MB; this server takes images up to 0.2 MB" in error
            tab.click("button[type=submit]")
            tab.wait_for_timeout(300)
            assert tab.url.endswith("/gallery/new") and tab.input_value("#prompt") == "A red kite climbs over a green hill."
            assert tab.evaluate("() => document.querySelector('#image').validity.customError") is True
            tab.set_input_files("#image", files=[{"name": "small.png", "mimeType": "image/png", "buffer": image_bytes(128, 72)}])
            assert tab.is_hidden("[data-field=image-size]")
        finally:
            tab.close()
        assert srv.runtime.store.list() == []
