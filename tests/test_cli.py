"""The spine through the CLI: prompt -> job -> MP4, and bad input that changes nothing."""

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from reelforge import media
from reelforge.cli.main import cli
from reelforge.jobs.sqlite import SQLiteJobStore

from tests.helpers import image_bytes

SEASHELL = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."
TINY = ["--model", "reelforge.animatic-v1", "--duration", "1", "--fps", "8", "--resolution", "128x72"]


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def jobs_in_log(home):
    path = home / "jobs.sqlite3"
    return SQLiteJobStore(path).list() if path.exists() else []


def test_generate_makes_the_notebook_video(tmp_path):
    out = tmp_path / "out"
    result = run("generate", SEASHELL, "--seed", "5", "-o", str(out))
    path = result.stdout.strip().splitlines()[-1]
    assert path.endswith("output.mp4") and path.startswith(str(out))
    info = media.probe(path)
    assert (info.codec, info.pix_fmt, info.width, info.height, info.fps, info.frames) == ("h264", "yuv420p", 1280, 720, 24.0, 144)
    assert info.moov_before_mdat
    assert "previsualization renderer" in result.stderr
    folder = out / path.split("/")[-2]
    assert sorted(p.name for p in folder.iterdir()) == [
        "contact_sheet.png", "manifest.json", "output.mp4", "poster.jpg", "video-generation-status.json",
    ]
    status = json.loads((folder / "video-generation-status.json").read_text())
    assert status["fullVideo"]["status"] == "SUCCESS"
    # same prompt and seed: identical decoded frames; another seed: different frames
    again = run("generate", SEASHELL, "--seed", "5", "-o", str(out)).stdout.strip().splitlines()[-1]
    other = run("generate", SEASHELL, "--seed", "6", "-o", str(out)).stdout.strip().splitlines()[-1]
    a, b, c = (list(media.read_frames(p)) for p in (path, again, other))
    assert len(a) == len(b) == 144 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[72], c[72])


BAD = [
    (["--duration", "7"], "durationSeconds", "allowed: 6"),
    (["--fps", "30"], "fps", "allowed: 24"),
    (["--resolution", "1920x1080"], "dimension", "allowed: 1280x720"),
    (["--seed", "-1"], "seed", "0 to 2147483646"),
    (["--seed", "2147483647"], "seed", "0 to 2147483646"),
    (["--model", "amazon.nova-reel-v7"], "modelId", "amazon.nova-reel-v1:1"),
]


@pytest.mark.parametrize("args, field, allowed", BAD)
def test_bad_options_give_one_line_and_change_nothing(args, field, allowed, tmp_path, reelforge_home):
    out = tmp_path / "out"
    result = run("generate", "a cat", "-o", str(out), *args, ok=False)
    assert result.exit_code != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and field in message and allowed in message, message
    assert "Traceback" not in result.output
    assert jobs_in_log(reelforge_home) == [] and not out.exists()


@pytest.mark.parametrize("text, fragment", [("", "is empty"), ("x" * 513, "513 characters")])
def test_bad_prompt_length(text, fragment, tmp_path, reelforge_home):
    result = run("generate", text, "-o", str(tmp_path / "out"), ok=False)
    assert result.exit_code != 0 and "textToVideoParams.text" in result.stderr and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # the pre-flight lint does not repeat the error
    assert jobs_in_log(reelforge_home) == []


def _gif():
    return image_bytes(64, 64, fmt="GIF")


def _truncated_jpeg():
    return image_bytes(fmt="JPEG")[:-2000]


def _huge_png():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "make, fragment",
    [(_gif, "png or jpeg"), (_truncated_jpeg, "truncated"), (_huge_png, "20000x20000"), (lambda: b"%PDF-1.4 not an image", "png or jpeg")],
)
def test_bad_images_are_refused(make, fragment, tmp_path, reelforge_home):
    path = tmp_path / "input.bin"
    path.write_bytes(make())
    out = tmp_path / "out"
    result = run("generate", "a cat", "--image", str(path), "-o", str(out), ok=False)
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "--image" in line and fragment in line, line
    assert jobs_in_log(reelforge_home) == [] and not out.exists()


def test_image_of_other_size_needs_fit(tmp_path):
    path = tmp_path / "square.png"
    path.write_bytes(image_bytes(1000, 1000))
    result = run("generate", "a red room. Camera pan left.", "--image", str(path), ok=False)
    assert result.exit_code != 0 and "--fit crop|pad" in result.stderr
    result = run("generate", "a red room. Camera pan left.", "--image", str(path), "--fit", "pad", "-o", str(tmp_path / "o"))
    first = media.read_frame(result.stdout.strip().splitlines()[-1], 0)
    assert first[:, :200].mean() < 10 and first[:, -200:].mean() < 10  # pillarbox bars at the sides
    assert abs(int(first[360, 640, 0]) - 200) < 12  # the red image in the middle


def test_jobs_list_show_download(tmp_path):
    path = run("generate", "a boat. Camera pan right.", *TINY, "-o", str(tmp_path / "o")).stdout.strip().splitlines()[-1]
    job_id = path.split("/")[-2]
    listing = run("jobs", "list").stdout
    assert job_id in listing and "COMPLETED" in listing
    shown = json.loads(run("jobs", "show", job_id).stdout)
    assert shown["status"] == "COMPLETED" and shown["request"]["textToVideoParams"]["text"] == "a boat. Camera pan right."
    saved = run("jobs", "download", job_id, "-o", str(tmp_path)).stdout.strip()
    assert saved == str(tmp_path / f"{job_id}.mp4") and media.probe(saved).frames == 8
    missing = run("jobs", "show", "nosuchjob123", ok=False)
    assert missing.exit_code != 0 and "no job 'nosuchjob123'" in missing.stderr


def test_no_wait_returns_at_once_and_a_background_worker_finishes(tmp_path, background_worker):
    result = run("generate", "a kite", *TINY, "-o", str(tmp_path / "o"), "--no-wait")
    job_id = result.stdout.strip()
    assert len(job_id) == 12
    deadline = time.time() + 60
    while time.time() < deadline:
        status = json.loads(run("jobs", "show", job_id).stdout)["status"]
        if status == "COMPLETED":
            break
        time.sleep(0.3)
    assert status == "COMPLETED"


def test_models_lists_every_id():
    out = json.loads(run("models", "--json").stdout)
    ids = {m["model"]: m["engine"] for m in out}
    assert ids["amazon.nova-reel-v1:0"] == ids["reelforge.animatic-v2"] == "animatic-v2" and ids["reelforge.animatic-v1"] == "animatic"


def test_lint_command_reports_positions():
    result = run("lint", "A basket with no bananas", ok=True)
    assert "negation" in result.stdout and '"no"' in result.stdout


def test_lint_says_what_the_previz_will_show_for_a_model_on_it(monkeypatch):
    seashell = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."
    out = run("lint", seashell, "--model", "reelforge.animatic-v2").stdout.splitlines()
    assert out[0] == "no warnings" and out[1].startswith("previz will show: sand (beach), waves (sea)")
    assert "shell (centre" in out[1] and "camera zoom in" in out[1]
    assert "previz" not in run("lint", seashell, "--model", "reelforge.animatic-v1").stdout
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "reelforge.animatic-v2")  # a Nova id served by the previz
    assert "previz will show" in run("lint", seashell).stdout


def test_ctrl_c_stops_watching_and_the_job_finishes_in_the_background(tmp_path, reelforge_home, background_worker):
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "reelforge", "generate", "Ctrl-C test. Camera zoom in.", "--model", "reelforge.animatic-v1",
           "--duration", "20", "--resolution", "640x360", "-o", str(tmp_path / "o")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.time() + 60
    while not [j for j in jobs_in_log(reelforge_home) if j.status.value == "RUNNING" and j.progress > 0]:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "goes on in the background worker" in err and "Traceback" not in err
    (job,) = jobs_in_log(reelforge_home)
    while job.status.value != "COMPLETED":
        assert time.time() < deadline + 60, job
        time.sleep(0.3)
        job = jobs_in_log(reelforge_home)[0]
    assert media.probe(tmp_path / "o" / job.id / "output.mp4").frames == 20 * 24


def test_cancel_says_what_happened(tmp_path):
    job_id = run("generate", "a kite", *TINY, "-o", str(tmp_path / "o"), "--json").stdout
    job_id = json.loads(job_id)["id"]
    assert run("jobs", "cancel", job_id).stdout.strip() == f"job {job_id} already ended COMPLETED; nothing to cancel"


def test_an_unusable_data_dir_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("REELFORGE_HOME", str(blocker / "home"))
    result = run("jobs", "list", ok=False)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot be opened" in result.stderr and "REELFORGE_HOME" in result.stderr


def test_default_duration_follows_the_model():
    from reelforge.cli.generate import default_duration as _default_duration

    assert _default_duration("amazon.nova-reel-v1:1") == 6
    assert _default_duration("no.such-model") == 6
    pytest.importorskip("reelforge.engines.diffusers")
    assert _default_duration("reelforge.wan2.1-t2v-1.3b") == 5


def test_output_that_looks_like_a_file_name_is_explained(tmp_path, reelforge_home):
    result = run("generate", "a cat", "-o", str(tmp_path / "clip.mp4"), ok=False)
    assert result.exit_code == 1 and "looks like a file name" in result.stderr and "jobs download" in result.stderr
    assert jobs_in_log(reelforge_home) == [] and not (tmp_path / "clip.mp4").exists()


# --- what users met ---------------------------------------------------------------------------
def _commands(command, path=("reelforge",)):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def test_help_explains_every_option_with_its_default_and_words_endpoint_the_same_everywhere():
    import click

    endpoint_helps = {}
    for path, command in _commands(cli):
        name = " ".join(path)
        assert command.help, f"{name} has no help"
        for param in command.params:
            if isinstance(param, click.Argument):
                assert param.human_readable_name in command.help, f"{name}: the help does not say what {param.human_readable_name} is"
                continue
            assert param.help, f"{name} {param.opts[-1]} has no help"
            if not param.is_flag:
                assert param.show_default or "default" in param.help.lower(), f"{name} {param.opts[-1]}: no default given"
            if param.name == "endpoint":
                endpoint_helps[name] = param.help
        run(*path[1:], "--help")  # every help page renders
    assert {"reelforge generate", "reelforge shots", "reelforge batch", "reelforge jobs list", "reelforge jobs show",
            "reelforge jobs cancel", "reelforge jobs download"} <= set(endpoint_helps)
    assert len(set(endpoint_helps.values())) == 1, endpoint_helps


def test_empty_listings_say_what_matched_nothing(reelforge_home):
    from reelforge import Client, VideoRequest

    assert run("jobs", "list").stderr.strip() == 'no jobs yet: reelforge generate "a prompt"'
    Client(workers=0).start(VideoRequest(text="a green kite", duration_s=1, fps=8, width=128, height=72), model="reelforge.animatic-v1")
    assert run("jobs", "list", "--status", "failed").stderr.strip() == "no FAILED jobs"
    assert run("jobs", "list", "--q", "zebra", "--model", "amazon.nova-reel-v1:1").stderr.strip() == "no jobs of amazon.nova-reel-v1:1 matching 'zebra'"
    listed = run("jobs", "list", "--search", "KITE", "--status", "queued")
    assert "a green kite" in listed.stdout and listed.stderr.strip() == "showing 1 of 1 job"
    assert run("jobs", "list", "--json").stdout.count('"id"') == 1


@pytest.fixture
def sketch_backend(monkeypatch, register_engines):
    """A third-party previsualization engine serving the Nova ids, as REELFORGE_NOVA_BACKEND allows."""
    from reelforge import Engine
    from reelforge.request.limits import LOCAL, ModelSpec

    class SketchEngine(Engine):
        engine_id = "test-sketch"
        summary = "pencil-sketch renderer"
        generative = False

        @classmethod
        def models(cls):
            return [ModelSpec("test.sketch", "test-sketch", "sketches", LOCAL)]

        def render_shot(self, shot, progress):
            frame = np.full((shot.height, shot.width, 3), 128, np.uint8)
            for i in range(shot.frame_count):
                progress(i, shot.frame_count)
                yield frame

    register_engines(SketchEngine)
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "test.sketch")


def test_the_previz_note_names_the_engine_and_only_comes_when_a_nova_id_is_silently_served(sketch_backend, tmp_path):
    out = ["-o", str(tmp_path / "o")]
    nova = run("generate", "a pencil. Static shot.", "--model", "amazon.nova-reel-v1:0", *out)
    assert "Note: amazon.nova-reel-v1:0 is rendered here by the test-sketch engine, a pencil-sketch renderer." in nova.stderr
    assert "animatic" not in nova.stderr
    chosen = run("generate", "a pencil. Static shot.", *TINY, *out)  # the animatic, picked by its own id
    assert "Note:" not in chosen.stderr
    lines = tmp_path / "b.jsonl"
    lines.write_text('"A pencil on a desk."\n"A ruler on a desk."\n')
    first = run("batch", str(lines), "--model", "amazon.nova-reel-v1:1", *out)
    assert first.stderr.count("Note: amazon.nova-reel-v1:1 is rendered here by the test-sketch engine") == 1
    again = run("batch", str(lines), "--model", "amazon.nova-reel-v1:1", *out)  # every line already done
    assert "already done" in again.stdout and "Note:" not in again.stderr
    picked = tmp_path / "c.jsonl"
    picked.write_text(json.dumps({"prompt": "A pen.", **{"model": "reelforge.animatic-v1", "duration": 1, "fps": 8, "resolution": "128x72"}}) + "\n")
    assert "Note:" not in run("batch", str(picked), *out).stderr



def test_the_log_file_records_completions_failures_and_every_cli_error(tmp_path, reelforge_home, monkeypatch, register_engines):
    from reelforge import Engine
    from reelforge.request.limits import LOCAL, ModelSpec

    class BrokenEngine(Engine):
        engine_id = "test-broken-cli"

        @classmethod
        def models(cls):
            return [ModelSpec("test.broken-cli", "test-broken-cli", "fails", LOCAL)]

        def render_shot(self, shot, progress):
            raise RuntimeError("the GPU caught fire")
            yield

    register_engines(BrokenEngine)

    done = run("generate", "a boat. Camera pan right.", *TINY, "-o", str(tmp_path / "o"), "--json")
    job_id = json.loads(done.stdout)["id"]
    failed = run("generate", "a boat", "--model", "test.broken-cli", "--duration", "1", "--fps", "8", "--resolution", "128x72", ok=False)
    bad = run("generate", "a boat", "--duration", "7", ok=False)
    log = (reelforge_home / "logs" / "reelforge.log").read_text()
    assert f"INFO reelforge.worker: job {job_id} completed in " in log and "(animatic engine, rendering and encoding " in log
    assert "ERROR reelforge.worker: job " in log and "failed: the engine failed with RuntimeError: the GPU caught fire" in log
    for result in (failed, bad):
        printed = result.stderr.strip().removeprefix("Error: ")
        assert f"ERROR reelforge.cli: reelforge generate: {printed}" in log
    monkeypatch.setenv("REELFORGE_HOME", str(tmp_path / "other-home"))  # the next command logs to its own data dir
    run("jobs", "show", "nosuchjob123", ok=False)
    assert "nosuchjob123" in (tmp_path / "other-home" / "logs" / "reelforge.log").read_text()
    assert "nosuchjob123" not in (reelforge_home / "logs" / "reelforge.log").read_text()


def test_models_say_which_need_an_extra_that_is_not_installed(monkeypatch):
    diffusers = pytest.importorskip("reelforge.engines.diffusers.engine")
    monkeypatch.setattr(diffusers, "missing_packages", lambda: ["torch", "diffusers"])
    rows = {r["model"]: r for r in json.loads(run("models", "--json").stdout)}
    assert rows["reelforge.animatic-v1"]["ready"] and rows["reelforge.animatic-v1"]["needs"] is None
    ltx = rows["reelforge.ltx-video"]
    assert not ltx["ready"] and ltx["needs"].startswith("the diffusers engine needs torch, diffusers: pip install 'reelforge[diffusers]'")
    text = run("models").stdout
    assert "    not ready here: the diffusers engine needs torch, diffusers: pip install 'reelforge[diffusers]'" in text
