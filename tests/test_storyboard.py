"""Storyboards: YAML/JSON files to multi-shot requests, and a 3-shot video joined by stream copy."""

import json

import av
import numpy as np
import pytest
from click.testing import CliRunner

from reelforge.media import video as media
from reelforge.cli.main import cli
from reelforge.engines.catalog import get_model
from reelforge.request.check import check
from reelforge.workflows.storyboard import StoryboardError, load_storyboard

from tests.helpers import image_bytes

THREE_SHOTS = """\
model: reelforge.animatic-v1
resolution: 160x90
fps: 8
seed: 5
shots:
  - text: A red barn in a yellow field at noon, static shot.
  - A blue ocean under a white sky, static shot.
  - text: A green forest at night, static shot.
    duration: 6
    seed: 99
"""


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def packets(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_three_shot_storyboard_gives_18_s_with_boundaries_at_6_and_12_s_joined_by_stream_copy(tmp_path):
    board = write(tmp_path, "board.yaml", THREE_SHOTS)
    out = tmp_path / "out"
    result = run("shots", str(board), "-o", str(out))
    video = result.stdout.strip().splitlines()[-1]
    folder = out / video.split("/")[-2]
    info = media.probe(video)
    assert (info.width, info.height, info.fps, info.frames, info.duration) == (160, 90, 8.0, 144, 18.0)

    # Shot boundaries from decoded frames: each shot has its own background and opens with a slate,
    # so the two largest frame-to-frame changes are exactly at frames 48 (6 s) and 96 (12 s).
    frames = [f.astype(np.int16) for f in media.read_frames(video)]
    diff = {k: float(np.abs(frames[k] - frames[k - 1]).mean()) for k in range(1, len(frames))}
    ranked = sorted(diff, key=diff.get, reverse=True)
    assert sorted(ranked[:2]) == [48, 96]
    assert min(diff[48], diff[96]) > 1.5 * diff[ranked[2]]
    assert max(v for k, v in diff.items() if k not in (12, 48, 60, 96, 108)) < 5  # within a shot: tiny changes

    # Stream copy: output.mp4 holds exactly the shots' compressed packets, in order.
    shots = [folder / f"shot_{i:04d}.mp4" for i in (1, 2, 3)]
    assert [media.probe(s).frames for s in shots] == [48, 48, 48]
    assert packets(video) == packets(shots[0]) + packets(shots[1]) + packets(shots[2])
    assert (folder / "contact_sheet.png").exists()


def test_nova_storyboard_becomes_multi_shot_manual_with_images_relative_to_the_file(tmp_path):
    (tmp_path / "boards" / "frames").mkdir(parents=True)
    (tmp_path / "boards" / "frames" / "open.png").write_bytes(image_bytes())
    board = write(tmp_path, "boards/nova.yaml", "seed: 3\nshots:\n  - text: A harbour at dawn.\n    image: frames/open.png\n  - A boat leaves.\n")
    sb = load_storyboard(board)
    assert sb.model_id == "amazon.nova-reel-v1:1"
    mi = sb.request.to_model_input()
    assert mi["taskType"] == "MULTI_SHOT_MANUAL"
    assert [s["text"] for s in mi["multiShotManualParams"]["shots"]] == ["A harbour at dawn.", "A boat leaves."]
    assert mi["multiShotManualParams"]["shots"][0]["image"]["format"] == "png"
    assert mi["videoGenerationConfig"] == {"fps": 24, "dimension": "1280x720", "seed": 3}
    # the same storyboard as JSON
    as_json = write(tmp_path, "boards/nova.json", json.dumps({"seed": 3, "shots": [{"text": "A harbour at dawn.", "image": "frames/open.png"}, "A boat leaves."]}))
    assert load_storyboard(as_json).request == sb.request


def test_automated_storyboard_is_one_long_prompt_split_by_local_engines(tmp_path):
    text = "A fox wakes in its den. It runs through the snowy forest. It reaches the frozen sea. The sun sets."
    board = write(tmp_path, "auto.yaml", f"automated: true\nduration: 18\ntext: {text}\n")
    sb = load_storyboard(board)
    assert sb.request.to_model_input()["taskType"] == "MULTI_SHOT_AUTOMATED"
    assert sb.request.to_model_input()["videoGenerationConfig"]["durationSeconds"] == 18
    local = load_storyboard(board, model="reelforge.animatic-v1")
    _, shots = check(local.request, get_model(local.model_id))
    assert [(s.text, s.duration_s) for s in shots] == [
        ("A fox wakes in its den.", 6), ("It runs through the snowy forest.", 6), ("It reaches the frozen sea. The sun sets.", 6),
    ]


BAD = [
    ("shots:\n  - text: a\n    duration: 6\n", None, "shot 1: duration", "local model ids only"),
    ("shots:\n  - a\n  - text: b\n    seed: 4\n", None, "shot 2: seed", "local model ids only"),
    ("shots:\n  - a\n  - text: b\n    duration: 0\n", "reelforge.animatic-v1", "shot 2: duration", "allowed: 1 to 60"),
    ("shots:\n  - a\n  - text: b\n    sound: loud\n", None, "shot 2: sound", "unknown field; allowed: text, image, duration, seed"),
    ("shots:\n  - a\n  - duration: 3\n", "reelforge.animatic-v1", "shot 2: text", "is required"),
    ("shots:\n  - a\n  - text: b\n    image: missing.png\n", None, "shot 2: image", "relative to the storyboard file"),
    ("shots:\n  - a\n  - text: '" + "x" * 513 + "'\n", None, "shot 2: text", "allowed: 1 to 512"),
    ("shots:\n  - a\n  - text: b\n    seed: x\n", "reelforge.animatic-v1", "shot 2: seed", "whole number"),
    ("fps: 30\nshots: [a]\n", None, "fps", "allowed: 24"),
    ("resolution: big\nshots: [a]\n", None, "resolution", "WIDTHxHEIGHT"),
    ("shot: [a]\n", None, "shot", "unknown field"),
    ("shots: []\n", None, "shots", "non-empty list"),
    ("automated: true\ntext: a long story\n", None, "duration", "is required"),
    ("automated: true\ntext: a\nduration: 7\n", None, "duration", "allowed: 12 to 120 in steps of 6"),
    ("shots: [a\n", None, "line 2", "not valid YAML"),
    ("model: nova\nshots: [a]\n", None, "model", "unknown model 'nova'"),
]


@pytest.mark.parametrize("text,model,where,message", BAD)
def test_errors_name_the_file_the_shot_and_the_field(tmp_path, text, model, where, message):
    board = write(tmp_path, "bad.yaml", text)
    with pytest.raises(StoryboardError) as err:
        load_storyboard(board, model=model)
    assert str(err.value).startswith(f"{board}: {where}: ")
    assert message in str(err.value)


def test_cli_error_is_one_line_and_submits_nothing(tmp_path, reelforge_home):
    board = write(tmp_path, "bad.yaml", "shots:\n  - a\n  - text: b\n    duration: 4\n")
    result = run("shots", str(board), ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {board}: shot 2: duration: per-shot durations are for local model ids only; " \
        "on amazon.nova-reel-v1:1 every shot lasts 6 s, or use a local model such as --model reelforge.animatic-v1"
    assert not (reelforge_home / "jobs.sqlite3").exists()


def test_shots_lints_each_shot_before_submitting(tmp_path):
    board = write(tmp_path, "lint.yaml", "shots:\n  - A bowl of fruit with no bananas.\n  - A quiet street.\n")
    result = run("shots", str(board), "--dry-run")
    assert 'lint: shot 1 col 21-23 warning negation: "no"' in result.stderr
    assert "shot 2" not in result.stderr
