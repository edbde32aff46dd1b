"""reelforge's own client against the server: Client(endpoint=...), Job.wait over events, the CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import InvalidEndpointConfigurationError
from click.testing import CliRunner

import reelforge
from reelforge.cli.main import cli
from reelforge.media.video import probe
from reelforge.server.app import ServerSettings
from server_fixtures import TEST_KEYS, TINY_MODEL, ServerThread, http, moto_s3

TINY_REQUEST = dict(duration_s=1, fps=8, width=128, height=72, seed=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    with ServerThread(ServerSettings(workers=1, bucket_dir=root / "buckets", data_dir=root / "home")) as s:
        yield s


def test_client_start_wait_download_over_events(server, tmp_path):
    client = reelforge.Client(endpoint=server.url)
    job = client.start(reelforge.VideoRequest(text="a paper boat on a pond", **TINY_REQUEST), model=TINY_MODEL, output="s3://client-bucket/runs")
    seen = []
    job.wait(timeout=60, on_progress=lambda rec: seen.append(rec.status))
    assert job.status is reelforge.JobStatus.COMPLETED and seen[-1] is reelforge.JobStatus.COMPLETED
    assert client._backend.is_reelforge and job.id in client._backend._followers  # waited on events, not polls
    assert job.output_uri == f"s3://client-bucket/runs/{job.id}"
    assert job.request.text == "a paper boat on a pond"
    path = job.download(tmp_path)
    assert probe(path).frames == 8
    assert [j.id for j in client.jobs(status="COMPLETED", limit=5)][0] == job.id
    assert client.get(job.arn).id == job.id


def test_client_polls_where_there_are_no_events(server):
    client = reelforge.Client(endpoint=server.url, poll_min_s=0.05, poll_max_s=0.2)
    client._backend._reelforge = False  # behave as against Bedrock: Get and List only
    job = client.start(reelforge.VideoRequest(text="a kite over a beach", **TINY_REQUEST), model=TINY_MODEL, output="s3://client-bucket/poll")
    job.wait(timeout=60)
    assert job.status is reelforge.JobStatus.COMPLETED and not client._backend._followers
    assert client._backend._interval[job.id] > 0.05  # the interval grew while it waited


def test_client_errors_and_cancel(server):
    client = reelforge.Client(endpoint=server.url)
    with pytest.raises(reelforge.RequestError, match="unknown model"):
        client.start("a cat", model="acme.nope", output="s3://client-bucket/x")
    with pytest.raises(reelforge.JobNotFoundError):
        client.get("zzzzzzzzzzzz").status
    long = reelforge.VideoRequest(text="a long slow pan", duration_s=30, fps=24, width=640, height=360)
    blocker = client.start(long, model=TINY_MODEL, output="s3://client-bucket/c")
    queued = client.start(long, model=TINY_MODEL, output="s3://client-bucket/c")
    queued.cancel()
    blocker.cancel()
    with pytest.raises(reelforge.JobCanceledError):
        queued.wait(timeout=30)
    with pytest.raises(reelforge.JobCanceledError):
        blocker.wait(timeout=30)


def test_bearer_token_env_does_not_break_the_client(server, monkeypatch):
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "token-from-somewhere-else")
    # plain boto3 refuses http:// endpoints then (reference §1.9) ...
    plain = boto3.client("bedrock-runtime", endpoint_url=server.url, region_name="us-east-1", **TEST_KEYS)
    with pytest.raises(InvalidEndpointConfigurationError):
        plain.list_async_invokes()
    # ... the documented fix for boto3 users works ...
    fixed = boto3.client("bedrock-runtime", endpoint_url=server.url, region_name="us-east-1", config=Config(auth_scheme_preference="sigv4"), **TEST_KEYS)
    assert "asyncInvokeSummaries" in fixed.list_async_invokes(maxResults=1)
    # ... and reelforge's client needs nothing
    job = reelforge.Client(endpoint=server.url).start(reelforge.VideoRequest(text="a lighthouse at dusk", **TINY_REQUEST), model=TINY_MODEL, output="s3://client-bucket/bearer")
    assert job.wait(timeout=60).status is reelforge.JobStatus.COMPLETED


def test_cli_generate_with_endpoint(server, tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "cli-home"))
    runner = CliRunner()
    args = ["generate", "a red bicycle leaning on a wall", "--endpoint", server.url, "-o", "s3://cli-bucket/gen",
            "--model", TINY_MODEL, "--duration", "1", "--fps", "8", "--resolution", "128x72", "--token", "cli-token-1"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    uri = result.stdout.strip().splitlines()[-1]
    assert uri.startswith("s3://cli-bucket/gen/") and uri.endswith("/output.mp4")
    job_id = uri.split("/")[-2]
    again = runner.invoke(cli, args)  # same token, same request: the same job, not a second one
    assert again.exit_code == 0 and again.stdout.strip().splitlines()[-1] == uri
    shown = runner.invoke(cli, ["jobs", "show", job_id, "--endpoint", server.url])
    assert shown.exit_code == 0 and '"COMPLETED"' in shown.stdout
    got = runner.invoke(cli, ["jobs", "download", job_id, "--endpoint", server.url, "-o", str(tmp_path)])
    assert got.exit_code == 0, got.output
    assert probe(tmp_path / f"{job_id}.mp4").frames == 8
    bad = runner.invoke(cli, ["generate", "x", "--endpoint", server.url, "-o", "s3://cli-bucket/gen", "--model", "nope.model"])
    assert bad.exit_code == 1 and "unknown model" in bad.output and "Traceback" not in bad.output


def test_client_downloads_from_s3_when_outputs_are_there(tmp_path):
    with moto_s3() as s3_url:
        boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket="remote-s3-bucket")
        with ServerThread(ServerSettings(workers=1, data_dir=tmp_path / "home")) as s:
            job = reelforge.Client(endpoint=s.url).start(
                reelforge.VideoRequest(text="rain on a window", **TINY_REQUEST), model=TINY_MODEL, output="s3://remote-s3-bucket/p"
            )
            path = job.wait(timeout=60).download(tmp_path / "v.mp4")
            assert probe(path).frames == 8
            lost = reelforge.Client(endpoint=s.url).start(
                reelforge.VideoRequest(text="rain on a window", **TINY_REQUEST), model=TINY_MODEL, output="s3://no-such-bucket/p"
            )
            with pytest.raises(reelforge.JobFailedError, match="NoSuchBucket"):
                lost.wait(timeout=60)


def test_cancel_from_another_site_is_refused(server):
    from server_fixtures import error_of, http

    client = reelforge.Client(endpoint=server.url)
    long = reelforge.VideoRequest(text="a long slow pan", duration_s=30, fps=24, width=640, height=360)
    job = client.start(long, model=TINY_MODEL, output="s3://client-bucket/x-site")
    status, code, message = error_of(http(f"{server.url}/reelforge/jobs/{job.id}/cancel", "POST", b"", {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}))
    assert (status, code) == (403, "AccessDeniedException") and f"POST /reelforge/jobs/{job.id}/cancel refused" in message
    assert job.status is not reelforge.JobStatus.CANCELED
    job.cancel()  # reelforge's own client sends no browser headers and may cancel
    with pytest.raises(reelforge.JobCanceledError):
        job.wait(timeout=30)


# --------------------------------------------------------------- no output given: the server's default


NO_OUTPUT = 'output: this server has no default output location (reelforge serve --default-output sets one); pass -o s3://bucket/prefix (Python: output="s3://bucket/prefix")'


def test_bucket_dir_server_advertises_a_default_output_that_client_and_cli_use(server, tmp_path, monkeypatch):
    status, _, body = http(server.url + "/reelforge/health")
    assert status == 200 and json.loads(body)["defaultOutput"] == "s3://reelforge-outputs/videos"
    client = reelforge.Client(endpoint=server.url)
    job = client.start(reelforge.VideoRequest(text="a heron in the reeds", **TINY_REQUEST), model=TINY_MODEL)
    assert job.output_uri == f"s3://reelforge-outputs/videos/{job.id}"
    assert probe(job.wait(timeout=60).download(tmp_path)).frames == 8
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "cli-home"))
    result = CliRunner().invoke(cli, ["generate", "a red kite", "--endpoint", server.url, "--model", TINY_MODEL,
                                      "--duration", "1", "--fps", "8", "--resolution", "128x72"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"s3://reelforge-outputs/videos/[a-z0-9]{12}/output\.mp4", result.stdout.strip().splitlines()[-1])


def test_default_output_option_is_used_and_listed(tmp_path):
    settings = ServerSettings(workers=0, data_dir=tmp_path / "home", default_output="s3://team-bucket/from-server/")
    with ServerThread(settings) as s:  # workers=0: the job only waits in the queue, nothing goes to S3
        assert json.loads(http(s.url + "/reelforge/health")[2])["defaultOutput"] == "s3://team-bucket/from-server"
        job = reelforge.Client(endpoint=s.url).start(reelforge.VideoRequest(text="a fox", **TINY_REQUEST), model=TINY_MODEL)
        assert job.output_uri == f"s3://team-bucket/from-server/{job.id}" and job.status is reelforge.JobStatus.QUEUED


def test_without_any_output_the_request_is_checked_first_then_the_output_error_says_what_to_do(tmp_path, monkeypatch):
    with ServerThread(ServerSettings(workers=0, data_dir=tmp_path / "home")) as s:
        assert json.loads(http(s.url + "/reelforge/health")[2])["defaultOutput"] is None
        client = reelforge.Client(endpoint=s.url)
        with pytest.raises(reelforge.RequestError) as err:
            client.start(reelforge.VideoRequest(text="a fox", **TINY_REQUEST), model=TINY_MODEL)
        assert str(err.value) == NO_OUTPUT and err.value.field == "output"
        bad = reelforge.VideoRequest(text="a fox", **{**TINY_REQUEST, "duration_s": 500})
        with pytest.raises(reelforge.RequestError) as err:
            client.start(bad, model=TINY_MODEL)
        assert err.value.field == "videoGenerationConfig.durationSeconds" and "500 is not allowed" in str(err.value)
        with pytest.raises(reelforge.RequestError) as err:  # a Nova modelInput dict is checked the same way
            client.start({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a fox"},
                          "videoGenerationConfig": {"durationSeconds": 7, "fps": 24, "dimension": "1280x720"}},
                         model="amazon.nova-reel-v1:0")
        assert err.value.field == "videoGenerationConfig.durationSeconds"
        with pytest.raises(reelforge.RequestError, match=r"^output: a server writes its outputs to S3, not to 'videos'; pass -o s3://"):
            client.start(reelforge.VideoRequest(text="a fox", **TINY_REQUEST), model=TINY_MODEL, output="videos")
        assert client.jobs(limit=5) == []
        monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "cli-home"))
        args = ["generate", "a fox", "--endpoint", s.url, "--model", TINY_MODEL, "--fps", "8", "--resolution", "128x72"]
        result = CliRunner().invoke(cli, [*args, "--duration", "1"])
        assert result.exit_code == 1 and result.output.strip() == f"Error: {NO_OUTPUT}"
        result = CliRunner().invoke(cli, [*args, "--duration", "500"])
        assert result.exit_code == 1 and "durationSeconds: 500 is not allowed" in result.output and "output" not in result.output


# --------------------------------------------------------------- reelforge serve start-up


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "home"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output == f"Error: port {port} on 127.0.0.1 is in use (another reelforge serve?); pick another with --port\n"
    assert not (tmp_path / "home" / "jobs.sqlite3").exists()  # refused before the job log was opened


def test_serve_bad_default_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--default-output", "videos/out"])
    assert result.exit_code == 2 and "--default-output" in result.output and "s3://bucket/prefix" in result.output


def test_serve_port_0_prints_the_port_it_got(tmp_path):
    env = {**os.environ, "REELFORGE_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "reelforge", "serve", "--port", "0", "--log-level", "warning",
           "--default-output", "s3://team-bucket/videos"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stderr.readline()
        m = re.search(r"on http://127\.0\.0\.1:(\d+) ", banner)
        assert m and int(m.group(1)) != 0, banner
        assert "default output s3://team-bucket/videos" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, body = http(f"http://127.0.0.1:{m.group(1)}/reelforge/health")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not answer"
                time.sleep(0.1)
        assert status == 200 and json.loads(body)["defaultOutput"] == "s3://team-bucket/videos"
    finally:
        proc.terminate()
        proc.wait(15)
        proc.stderr.close()


def test_files_of_s3_jobs_are_served_by_redirect_and_shown_in_the_gallery(tmp_path):
    import urllib.request

    from server_fixtures import http

    with moto_s3():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="gallery-bucket")
        with ServerThread(ServerSettings(workers=1, data_dir=tmp_path / "home")) as srv:
            client = reelforge.Client(endpoint=srv.url)
            job = client.start(reelforge.VideoRequest(shots=[{"text": "a"}, {"text": "b"}], fps=8, width=128, height=72), model=TINY_MODEL, output="s3://gallery-bucket/g")
            job.wait(timeout=60)
            status, headers, _ = http_no_redirect(f"{srv.url}/reelforge/jobs/{job.id}/files/output.mp4")
            assert status == 307 and "gallery-bucket" in headers["location"]
            with urllib.request.urlopen(f"{srv.url}/reelforge/jobs/{job.id}/files/output.mp4") as r:  # follows to S3
                data = r.read()
            path = tmp_path / "o.mp4"
            path.write_bytes(data)
            assert probe(path).frames == 2 * 6 * 8
            page = http(f"{srv.url}/gallery/jobs/{job.id}")[2].decode()
            assert f"/reelforge/jobs/{job.id}/files/output.mp4" in page and "shot_0002.mp4" in page
            listing = http(f"{srv.url}/")[2].decode()
            assert f"/reelforge/jobs/{job.id}/files/poster.jpg" in listing


def http_no_redirect(url):
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# --------------------------------------------------------------- what users met


def readme_snippet(heading: str) -> str:
    """The first Python block under a README heading: the test runs the text users copy."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_boto3_snippet_runs_on_a_machine_without_aws_credentials(tmp_path):
    snippet = readme_snippet("### Bedrock code, unchanged")
    assert 'endpoint_url="http://127.0.0.1:8787"' in snippet
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "server")) as s:
        code = snippet.replace("http://127.0.0.1:8787", s.url)
        fresh = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "fresh-home"), "PYTHONPATH": root,
                 "AWS_EC2_METADATA_DISABLED": "true"}  # no ~/.aws, no AWS_* keys: a fresh machine
        run = subprocess.run([sys.executable, "-c", code], env=fresh, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "InProgress"
        (job,) = s.runtime.store.list()
        assert job.model_id == "amazon.nova-reel-v1:1" and job.output_uri.startswith("s3://my-bucket/videos/")


def _cli_lines(args):
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output.strip().splitlines(), result.output


def test_an_unreachable_endpoint_is_one_line_from_every_command_and_the_client(tmp_path, monkeypatch):
    from server_fixtures import free_port

    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "home"))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    expected = f"Error: cannot reach the server at {url}: connection refused; is `reelforge serve` running there?"
    board = tmp_path / "board.yaml"
    board.write_text("shots:\n  - A harbour at dawn.\n  - Boats leave the harbour.\n")
    lines = tmp_path / "b.jsonl"
    lines.write_text('"A red kite."\n"A blue boat."\n')
    for args in (["jobs", "list"], ["jobs", "show", "abcdefghijkl"], ["jobs", "cancel", "abcdefghijkl"],
                 ["jobs", "download", "abcdefghijkl"], ["generate", "a cat"], ["generate", "a cat", "-o", "s3://b/p"],
                 ["shots", str(board)], ["batch", str(lines)]):
        code, out, text = _cli_lines([*args, "--endpoint", url])
        assert code == 1 and len(out) == 1 and out[0].startswith(expected), (args, text)
    client = reelforge.Client(endpoint=url)
    for call in (lambda: client.start("a cat"), lambda: client.start("a cat", output="s3://b/p"), lambda: client.jobs(), lambda: client.get("abcdefghijkl")):
        with pytest.raises(reelforge.UnreachableError) as err:
            call()
        assert err.value.url == url and err.value.reason == "connection refused"


def test_s3_errors_are_mapped_by_the_same_function(tmp_path, monkeypatch):
    from botocore.config import Config as BotoConfig

    from reelforge.storage import S3Storage
    from server_fixtures import free_port

    url = f"http://127.0.0.1:{free_port()}"
    down = boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=BotoConfig(retries={"total_max_attempts": 1}), **TEST_KEYS)
    with pytest.raises(reelforge.UnreachableError, match=rf"^cannot read s3://b/k: cannot reach the server at {url}: connection refused$"):
        S3Storage(down).get_bytes("s3://b/k")
    with moto_s3() as s3_url:
        with pytest.raises(reelforge.StorageError, match=r"^cannot list s3://no-such-bucket/p: NoSuchBucket: "):
            S3Storage(boto3.client("s3", endpoint_url=s3_url)).list("s3://no-such-bucket/p")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    keyless = boto3.session.Session().client("s3", endpoint_url=url, region_name="us-east-1")
    with pytest.raises(reelforge.StorageError, match=rf"^cannot read s3://b/k: no AWS credentials for {url}: set AWS_ACCESS_KEY_ID"):
        S3Storage(keyless).get_bytes("s3://b/k")


def test_download_shots_asks_the_server(server, tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "cli-home"))
    client = reelforge.Client(endpoint=server.url)
    shots = [{"text": "a harbour at dawn", "duration_s": 1}, {"text": "boats leave", "duration_s": 1}]
    job = client.start(reelforge.VideoRequest(shots=shots, fps=8, width=128, height=72), model=TINY_MODEL, output="s3://client-bucket/shots").wait(timeout=60)
    result = CliRunner().invoke(cli, ["jobs", "download", job.id, "--shots", "--endpoint", server.url, "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == [f"{job.id}.mp4", f"{job.id}_shot_0001.mp4", f"{job.id}_shot_0002.mp4"]
    assert probe(tmp_path / f"{job.id}.mp4").frames == 16 and probe(tmp_path / f"{job.id}_shot_0002.mp4").frames == 8


def test_download_shots_of_an_s3_job_lists_them_in_s3(tmp_path):
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket="shots-bucket")
        with ServerThread(ServerSettings(workers=1, data_dir=tmp_path / "home")) as s:
            shots = [{"text": "rain", "duration_s": 1}, {"text": "sun", "duration_s": 1}]
            job = reelforge.Client(endpoint=s.url).start(reelforge.VideoRequest(shots=shots, fps=8, width=128, height=72), model=TINY_MODEL, output="s3://shots-bucket/p")
            path = job.wait(timeout=60).download(tmp_path / "v.mp4", shots=True)
            assert probe(path).frames == 16
            assert probe(tmp_path / "v_shot_0001.mp4").frames == probe(tmp_path / "v_shot_0002.mp4").frames == 8


def test_listing_over_the_server_searches_filters_counts_and_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "cli-home"))
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "server")) as s:
        client = reelforge.Client(endpoint=s.url)
        prompts = ["a red kite over a field", "a blue boat", "a kite on a beach", "a green train", "a paper boat"]
        for p in prompts:  # workers=0: they wait in the queue; newest first is the reverse
            client.start(reelforge.VideoRequest(text=p, **TINY_REQUEST), model=TINY_MODEL)
        client.start(reelforge.VideoRequest(shots=[{"text": "a kite shot"}, {"text": "a boat shot"}], fps=8, width=128, height=72), model=TINY_MODEL)
        status, _, body = http(f"{s.url}/reelforge/jobs?q=KITE")
        d = json.loads(body)
        assert status == 200 and d["total"] == 3 and not d["totalIsLowerBound"] and d["nextToken"] is None
        assert [j["prompts"] for j in d["jobs"]] == [["a kite shot", "a boat shot"], ["a kite on a beach"], ["a red kite over a field"]]
        assert "modelInput" not in d["jobs"][0]
        assert json.loads(http(f"{s.url}/reelforge/jobs?model=amazon.nova-reel-v1:1")[2])["total"] == 0
        assert json.loads(http(f"{s.url}/reelforge/jobs?model={TINY_MODEL}&status=queued")[2])["total"] == 6
        from server_fixtures import error_of

        assert error_of(http(f"{s.url}/reelforge/jobs?colour=red")) == (400, "ValidationException", "colour: unknown query parameter; allowed: status, model, q, limit, after")

        page = client.jobs(limit=4)
        assert isinstance(page, list) and len(page) == 4 and page.total == 6 and page.offset == 0 and page.next_token
        assert page[0].prompts == ["a kite shot", "a boat shot"] and page[1].prompts == ["a paper boat"]
        assert page[1].request.text == "a paper boat"  # the listing left the request out; reading it asks the server
        rest = page.next()
        assert [j.prompts for j in rest] == [["a blue boat"], ["a red kite over a field"]] and rest.offset == 4 and rest.next_token is None
        assert rest.next() == [] and [j.id for j in client.jobs(q="boat", limit=1).next()] == [page[1].id]
        with pytest.raises(reelforge.RequestError, match="^after: "):
            client.jobs(after="not-a-token")
        with pytest.raises(reelforge.RequestError, match="^after: the token belongs to a listing with other filters"):
            client.jobs(q="kite", after=page.next_token)

        code, out, text = _cli_lines(["jobs", "list", "--endpoint", s.url, "--limit", "2"])
        assert code == 0, text
        assert "a kite shot | a boat shot" in out[1] and out[2].endswith("a paper boat")  # the prompts, not empty
        m = re.fullmatch(r"showing 2 of 6 jobs; next page: (reelforge jobs list --after \S+ --limit 2 --endpoint \S+)", out[-1])
        assert m, out[-1]
        code, out, text = _cli_lines(m.group(1).split()[1:])
        assert code == 0 and out[-1].startswith("showing 3-4 of 6 jobs; next page: ") and out[2].endswith("a kite on a beach"), text
        assert _cli_lines(["jobs", "list", "--endpoint", s.url, "--status", "failed"])[1] == ["no FAILED jobs"]
        assert _cli_lines(["jobs", "list", "--endpoint", s.url, "--q", "zebra"])[1] == ["no jobs matching 'zebra'"]
        code, out, _ = _cli_lines(["jobs", "list", "--endpoint", s.url, "--search", "train"])
        assert code == 0 and out[1].endswith("a green train") and out[-1] == "showing 1 of 1 job"
