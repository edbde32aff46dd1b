"""Google's Veo wire on `reelforge serve`, driven by the unmodified google-genai client.

google-genai 3.x (the test venv's) generates only in Vertex mode, and still polls and downloads
in Gemini Developer API mode; the Developer API's create is driven with google-genai 2.34, the
last release that sends it, installed beside the venv by .ci/run and run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from reelforge.server.app import ServerSettings
from server_fixtures import ServerThread, bedrock, http, wait_done
from test_images import huge_bilevel_png
from wire_fixtures import close_to, decoded, first_frame, gradient, job_count, openai_client, png

GENAI_2_34 = Path(os.environ.get("REELFORGE_GENAI_2_34") or Path(sys.prefix) / "genai-2.34")
needs_2_34 = pytest.mark.skipif(
    not (GENAI_2_34 / "google" / "genai").is_dir(),
    reason=f"google-genai 2.34 is not installed at {GENAI_2_34} (.ci/run installs it: pip install --target .venv/genai-2.34 'google-genai==2.34.*')",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("gemini")
    with ServerThread(ServerSettings(workers=1, bucket_dir=root / "buckets", data_dir=root / "home")) as s:
        yield s


@pytest.fixture
def idle(tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home")) as s:
        yield s


def vertex(url: str, api_key: str = "vx-key") -> genai.Client:
    """google-genai 3.x as its docs say for Veo: Vertex ("express") mode, only the base URL pointed here."""
    return genai.Client(vertexai=True, api_key=api_key, http_options=types.HttpOptions(base_url=url))


def until_done(client: genai.Client, op, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not op.done:
        assert time.monotonic() < deadline, f"{op.name} not done after {timeout} s"
        time.sleep(0.1)
        op = client.operations.get(op)
    return op


def test_vertex_generate_videos_inline_with_an_image_and_samples(server, tmp_path):
    c = vertex(server.url)
    img = gradient(1280, 720)
    op = c.models.generate_videos(
        model="veo-3.1-generate-001",
        source=types.GenerateVideosSource(prompt="a neon cat. Camera zoom in.", image=types.Image(image_bytes=png(img), mime_type="image/png")),
        config=types.GenerateVideosConfig(number_of_videos=2, duration_seconds=1, fps=8, aspect_ratio="16:9", resolution="720p", seed=7),
    )
    assert op.name.startswith("publishers/google/models/veo-3.1-generate-001/operations/")
    op = until_done(c, op)
    assert op.error is None and len(op.response.generated_videos) == 2
    for i, generated in enumerate(op.response.generated_videos):
        data = generated.video.video_bytes
        info = decoded(data, tmp_path, f"{i}.mp4")
        assert (info.width, info.height, info.frames, info.fps) == (1280, 720, 8, 8.0)
        assert close_to(first_frame(data, tmp_path, f"first{i}.mp4"), img)
    jobs = [server.runtime.get(j) for j in (op.name[-24:-12], op.name[-12:])]
    assert [j.model_input["videoGenerationConfig"]["seed"] for j in jobs] == [7, 8]  # seed..seed+N-1
    assert {j.wire for j in jobs} == {"gemini"} and jobs[0].wire_request["model"] == "veo-3.1-generate-001"
    # the same operation read the Developer API's way (GET), as files to download
    dev = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.url))
    again = dev.operations.get(types.GenerateVideosOperation(name=op.name))
    assert again.done and [v.video.uri for v in again.response.generated_videos] == [f"files/{j.id}" for j in jobs]
    assert dev.files.download(file=again.response.generated_videos[1].video) == op.response.generated_videos[1].video.video_bytes


def test_vertex_project_mode(server, tmp_path):
    from google.oauth2.credentials import Credentials

    c = genai.Client(vertexai=True, project="my-project", location="us-central1", credentials=Credentials(token="t"),
                     http_options=types.HttpOptions(base_url=server.url))
    op = until_done(c, c.models.generate_videos(model="veo-3.0-fast-generate-001", source=types.GenerateVideosSource(prompt="a kite"),
                                                config=types.GenerateVideosConfig(duration_seconds=1, fps=8, aspect_ratio="9:16")))
    assert op.name.startswith("projects/my-project/locations/us-central1/publishers/google/models/veo-3.0-fast-generate-001/operations/")
    info = decoded(op.response.generated_videos[0].video.video_bytes, tmp_path)
    assert (info.width, info.height, info.frames) == (720, 1280, 8)


@needs_2_34
def test_developer_api_with_google_genai_2_34(server, tmp_path):
    img = gradient(1280, 720)
    (tmp_path / "ref.png").write_bytes(png(img))
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from google import genai
        from google.genai import types
        assert genai.__version__.startswith("2.34"), genai.__version__
        c = genai.Client(api_key="AIza-test", http_options=types.HttpOptions(base_url={server.url!r}))
        image = types.Image(image_bytes=Path({str(tmp_path / 'ref.png')!r}).read_bytes(), mime_type="image/png")
        op = c.models.generate_videos(model="veo-3.1-generate-preview", prompt="a neon cat", image=image,
                                      config=types.GenerateVideosConfig(duration_seconds=1))
        print(op.name, flush=True)
        while not op.done:
            time.sleep(0.1)
            op = c.operations.get(op)
        video = op.response.generated_videos[0].video
        Path({str(tmp_path / 'out.mp4')!r}).write_bytes(c.files.download(file=video))
        print(video.uri)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GEMINI_"))}
    env["PYTHONPATH"] = str(GENAI_2_34)  # the old client and its own dependencies, nothing of the test venv's site-packages first
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name, uri = done.stdout.split()
    assert name.startswith("models/veo-3.1-generate-preview/operations/") and uri == f"files/{name[-12:]}"
    data = (tmp_path / "out.mp4").read_bytes()
    info = decoded(data, tmp_path)
    assert (info.width, info.height, info.frames) == (1280, 720, 24)  # the Developer API sends no fps: the model's 24
    assert close_to(first_frame(data, tmp_path), img)
    assert server.runtime.get(name[-12:]).wire_request["resource"] == "models/veo-3.1-generate-preview"


def test_jobs_of_other_wires_read_and_download_here(server):
    client = bedrock(server.url)
    arn = client.start_async_invoke(
        modelId="reelforge.animatic-v1",
        modelInput={"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "started with boto3"},
                    "videoGenerationConfig": {"durationSeconds": 1, "fps": 8, "dimension": "256x144"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://test-bucket/out"}},
    )["invocationArn"]
    wait_done(client, arn)
    job_id = arn.rsplit("/", 1)[1]
    dev = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.url))
    op = dev.operations.get(types.GenerateVideosOperation(name=f"models/any/operations/{job_id}"))
    assert op.done and dev.files.download(file=op.response.generated_videos[0].video)[4:8] == b"ftyp"
    # and a Gemini job is a video on OpenAI's wire
    vx = vertex(server.url)  # held: a client closes its connections when it is collected
    vop = vx.models.generate_videos(model="veo-2.0-generate-001", source=types.GenerateVideosSource(prompt="a gull"),
                                                    config=types.GenerateVideosConfig(duration_seconds=1, fps=8))
    listed = openai_client(server.url, strict=False).videos.list(limit=100)
    assert f"video_{vop.name[-12:]}" in [v.id for v in listed]


def _expect(call, code: int, status: str, needle: str) -> str:
    with pytest.raises(errors.ClientError) as info:
        call()
    err = info.value
    assert (err.code, err.status) == (code, status) and needle in err.message, (err.code, err.status, err.message)
    return err.message


BAD = [
    ("imagen-4.0-generate-001", {}, None, 404, "NOT_FOUND", "unknown model 'imagen-4.0-generate-001'"),
    ("gemini-2.5-pro", {}, None, 404, "NOT_FOUND", "unknown model"),
    ("veo-3.1-generate-001", {"aspect_ratio": "4:3"}, None, 400, "INVALID_ARGUMENT", "parameters.aspectRatio"),
    ("veo-3.1-generate-001", {"resolution": "4k"}, None, 400, "INVALID_ARGUMENT", "parameters.resolution"),
    ("veo-3.1-generate-001", {"duration_seconds": 500}, None, 400, "INVALID_ARGUMENT", "parameters.durationSeconds"),
    ("veo-3.1-generate-001", {"fps": 7}, None, 400, "INVALID_ARGUMENT", "parameters.fps"),
    ("veo-3.1-generate-001", {"number_of_videos": 9}, None, 400, "INVALID_ARGUMENT", "parameters.sampleCount"),
    ("veo-3.1-generate-001", {"generate_audio": True}, None, 400, "INVALID_ARGUMENT", "parameters.generateAudio"),
    ("veo-3.1-generate-001", {"negative_prompt": "blurry"}, None, 400, "INVALID_ARGUMENT", "parameters.negativePrompt"),
    ("veo-3.1-generate-001", {"output_gcs_uri": "gs://b/out/"}, None, 400, "INVALID_ARGUMENT", "parameters.storageUri"),
    ("veo-3.1-generate-001", {}, b"not an image", 400, "INVALID_ARGUMENT", "instances[0].image"),
    ("veo-3.1-generate-001", {}, huge_bilevel_png(20000, 20000), 400, "INVALID_ARGUMENT", "pixels"),
]


@pytest.mark.parametrize("model, config, image, code, status, needle", BAD, ids=[b[-1] for b in BAD])
def test_bad_input_raises_client_error_and_creates_nothing(idle, model, config, image, code, status, needle):
    c = vertex(idle.url)
    source = types.GenerateVideosSource(prompt="a bad request", image=types.Image(image_bytes=image, mime_type="image/png") if image else None)
    _expect(lambda: c.models.generate_videos(model=model, source=source, config=types.GenerateVideosConfig(**config)), code, status, needle)
    assert job_count(idle) == 0
    assert http(idle.url + "/reelforge/health")[0] == 200


def test_generate_audio_false_records_a_silent_job_and_absent_keeps_the_default(idle):
    c = vertex(idle.url)
    ops = {}
    for label, config in (("off", {"generate_audio": False}), ("default", {})):
        ops[label] = c.models.generate_videos(model="veo-3.1-generate-001", source=types.GenerateVideosSource(prompt=f"a kite, audio {label}"),
                                              config=types.GenerateVideosConfig(duration_seconds=1, fps=8, **config))
    audio = {label: idle.runtime.get(op.name[-12:]).audio for label, op in ops.items()}
    assert audio == {"off": False, "default": True}


def test_generate_audio_maps_onto_the_models_sound():
    from reelforge.errors import RequestError
    from reelforge.server.gemini_api import generate_audio
    from reelforge.server.video_wires import makes_sound

    assert makes_sound("reelforge.ltx-2") and makes_sound("reelforge.ltx-2-distilled")  # LTX-2 renders a sound track
    assert not makes_sound("reelforge.ltx-video") and not makes_sound("reelforge.animatic-v2")
    assert generate_audio({"generateAudio": True}, "reelforge.ltx-2") is True
    assert generate_audio({"generateAudio": False}, "reelforge.ltx-2") is False
    assert generate_audio({}, "reelforge.ltx-2") is True and generate_audio({}, "reelforge.animatic-v2") is True
    assert generate_audio({"generateAudio": False}, "reelforge.animatic-v2") is False
    for params, model in (({"generateAudio": True}, "reelforge.animatic-v2"), ({"generateAudio": "yes"}, "reelforge.ltx-2")):
        with pytest.raises(RequestError) as err:  # the wire answers it as 400 INVALID_ARGUMENT (BAD above)
            generate_audio(params, model)
        assert err.value.field == "parameters.generateAudio"


def test_generate_audio_follows_the_model_serving_veo_names(monkeypatch):
    from reelforge.server.video_wires import makes_sound

    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "reelforge.ltx-2")
    assert makes_sound("amazon.nova-reel-v1:1")  # a Bedrock id rendered by LTX-2 makes its sound
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "reelforge.animatic-v2")
    assert not makes_sound("amazon.nova-reel-v1:1")


def test_malformed_requests_get_google_errors(tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", max_body=64 * 1024)) as s:
        create = s.url + "/v1beta1/publishers/google/models/veo-3.1-generate-001:predictLongRunning"
        json_type = {"Content-Type": "application/json"}
        cases = [
            (create, "POST", b'{"instances": [', json_type, 400),
            (create, "POST", b'{"instances": []}', json_type, 400),
            (create, "POST", b'{"instances": [{"prompt": "p"}], "webhookConfig": {"uris": []}}', json_type, 400),
            (create, "POST", b'{"instances": [{"prompt": "p", "lastFrame": {"bytesBase64Encoded": "AA=="}}]}', json_type, 400),
            (create, "POST", b"x" * (100 * 1024), json_type, 413),
            (create, "POST", b'{"instances": [{"prompt": "p"}]}', {**json_type, "Origin": "http://evil.example"}, 403),
            (s.url + "/v1beta/models/m/operations/zzzzzzzzzzzz", "GET", None, {}, 404),
            (s.url + "/v1beta/files/zzzzzzzzzzzz:download?alt=media", "GET", None, {}, 404),
            (s.url + "/v1/nothing/here", "GET", None, {}, 404),
            (s.url + "/v1beta1/publishers/google/models/m:fetchPredictOperation", "POST", b'{"operationName": "nope"}', json_type, 400),
        ]
        for url, method, body, headers, want in cases:
            status, got, raw = http(url, method, body, headers)
            error = json.loads(raw)["error"]
            assert status == want == error["code"] and error["status"] and error["message"], (url, status, raw)
        assert job_count(s) == 0
        # a JSON null reads as the field left out (the default), never a server error
        body = b'{"instances": [{"prompt": "p"}], "parameters": {"sampleCount": null, "durationSeconds": null, "fps": null}}'
        status, _, raw = http(create, "POST", body, json_type)
        assert status == 200 and json.loads(raw)["name"], raw
        assert job_count(s) == 1


def test_api_keys(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", auth_keys={"AKIDTEST": "s3cret"})
    with ServerThread(settings) as s:
        source = types.GenerateVideosSource(prompt="keys")
        wrong, right = vertex(s.url, api_key="wrong"), vertex(s.url, api_key="s3cret")
        _expect(lambda: wrong.models.generate_videos(model="veo-3.1-generate-001", source=source), 401, "UNAUTHENTICATED", "not one of this server's keys")
        assert job_count(s) == 0
        op = right.models.generate_videos(model="veo-3.1-generate-001", source=source)
        assert op.name and not right.operations.get(op).done
        # project mode sends the key as a bearer token
        status, _, _ = http(s.url + "/v1beta1/publishers/google/models/m:fetchPredictOperation", "POST",
                            json.dumps({"operationName": op.name}).encode(), {"Authorization": "Bearer s3cret", "Content-Type": "application/json"})
        assert status == 200
