"""reelforge.animatic-v2, the previz that reads the prompt: checked on decoded frames of real jobs."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from reelforge import Client, VideoRequest
from reelforge import media
from reelforge.engines import NullProgress, ShotPlan
from reelforge.engines.previz import PrevizEngine, read_prompt
from reelforge.engines.previz.vocabulary import NOUNS
from reelforge.engines.previz.shapes import mask

from tests.helpers import noisy_image

W, H = 320, 180
SEASHELL = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."


@pytest.fixture(autouse=True)
def _plain(monkeypatch):
    # no caption bar and no slate, so measurements see the set itself
    monkeypatch.setenv("REELFORGE_ANIMATIC_V2_OPTIONS", '{"caption": false, "slate_frames": 0}')


def job(tmp_path, text, seed=1, name="o", image=None, **kw):
    kw = {"duration_s": 2, "fps": 8, "width": W, "height": H, **kw}
    done = Client().start(VideoRequest(text=text, seed=seed, image=image, **kw), model="reelforge.animatic-v2", output=tmp_path / name).wait(timeout=60)
    frames = [f.astype(np.int16) for f in media.read_frames(done.local_dir / "output.mp4")]
    manifest = json.loads((done.local_dir / "manifest.json").read_text())
    return frames, manifest


def luma(f):
    return (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).mean()


def near(f, rgb, tol=45):
    return np.abs(f - np.array(rgb)).max(axis=-1) < tol


def box(m):
    ys, xs = np.nonzero(m)
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_night_is_much_darker_than_noon(tmp_path):
    noon, _ = job(tmp_path, "A house in a field at noon.", name="a")
    night, _ = job(tmp_path, "A house in a field at night.", name="b")
    assert luma(night[5]) < 0.4 * luma(noon[5])


def test_sunset_gives_a_warm_upper_sky(tmp_path):
    (frames, _), (noon, _) = job(tmp_path, "A beach at sunset.", name="a"), job(tmp_path, "A beach at noon.", name="b")
    top = frames[3][: H // 5].reshape(-1, 3).mean(axis=0)
    assert top[0] > top[2] + 60 and top[0] > 180  # red well above blue
    top_noon = noon[3][: H // 5].reshape(-1, 3).mean(axis=0)
    assert top_noon[2] > top_noon[0]


def test_snow_gives_a_bright_ground(tmp_path):
    (snow, _), (field, _) = job(tmp_path, "A dog in the snow.", name="a"), job(tmp_path, "A dog in a field.", name="b")
    ground = lambda f: luma(f[int(H * 0.8):])
    assert ground(snow[3]) > 200 and ground(snow[3]) > ground(field[3]) + 60


def test_each_named_colour_lands_on_its_own_subject(tmp_path):
    one, m1 = job(tmp_path, "A red boat beside a green lighthouse in the desert.", name="a")
    two, m2 = job(tmp_path, "A green boat beside a red lighthouse in the desert.", name="b")
    red, green = (210, 35, 35), (40, 170, 60)

    def shape(frame, rgb):
        x0, y0, x1, y1 = box(near(frame, rgb))
        return (x1 - x0) / (y1 - y0), (x0 + x1) / 2 / W - 0.5

    for frames, manifest, wide, tall in ((one, m1, red, green), (two, m2, green, red)):
        subjects = {s["noun"]: s for s in manifest["metadata"]["previz"][0]["subjects"]}
        (boat_aspect, boat_x), (house_aspect, house_x) = shape(frames[3], wide), shape(frames[3], tall)
        assert boat_aspect > 1.2 and house_aspect < 0.7  # the boat's colour on the wide shape, the lighthouse's on the tall one
        assert abs(boat_x - subjects["boat"]["x"]) < 0.06 and abs(house_x - subjects["lighthouse"]["x"]) < 0.06
    assert [s["colour"] for s in m1["metadata"]["previz"][0]["subjects"]] == ["red", "green"]


def test_zoom_in_grows_the_main_subject(tmp_path):
    frames, _ = job(tmp_path, "A red ball in a field. Camera zoom in.")
    area = lambda f: np.prod(np.subtract(box(near(f, (210, 35, 35)))[2:], box(near(f, (210, 35, 35)))[:2]) + 1)
    assert area(frames[-1]) > 1.8 * area(frames[0])


def _ridge(frame, rgb):
    """Height of the first pixel of the far layer's colour in each column (its skyline)."""
    m = near(frame, rgb, 40)
    return np.where(m.any(axis=0), m.argmax(axis=0), H).astype(float)


def _shift(a, b, limit):
    """The shift s (pixels) with b[x] ~ a[x - s]."""
    cost = {s: np.abs(a[max(0, -s):W - max(0, s)] - b[max(0, s):W - max(0, -s)]).mean() for s in range(-limit, limit + 1)}
    return min(cost, key=cost.get)


def test_pan_left_moves_the_far_layer_less_than_the_near_one(tmp_path):
    frames, _ = job(tmp_path, "A red ball in the foreground in front of blue mountains. Camera pan left.")
    first, last = frames[0], frames[-1]
    mountains = (30, 80, 210)
    far = _shift(_ridge(first, mountains), _ridge(last, mountains), W // 3)
    red = (210, 35, 35)
    near_shift = (box(near(last, red))[0] + box(near(last, red))[2]) / 2 - (box(near(first, red))[0] + box(near(first, red))[2]) / 2
    assert near_shift > 0.2 * W  # the camera goes left, so the scene slides right
    assert 0 < far < 0.5 * near_shift  # the far layer slides the same way, much less


def test_same_prompt_and_seed_same_frames_another_seed_another_layout(tmp_path):
    text = "A dog and a tree and a red car in a field. Camera pan right."
    # the rendered frames themselves: H.264 output can vary with the encoder's threading, the previz may not
    render = lambda seed: list(PrevizEngine({"caption": False}).render_shot(ShotPlan(0, 1, text, seed, 2, 8, W, H), NullProgress()))
    a, b, c = render(5), render(5), render(6)
    assert len(a) == len(b) == 16 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[4], c[4])
    (_, ma), (_, mc) = job(tmp_path, text, seed=5, name="a"), job(tmp_path, text, seed=6, name="c")
    read = lambda m: m["metadata"]["previz"][0]
    assert [s["noun"] for s in read(ma)["subjects"]] == [s["noun"] for s in read(mc)["subjects"]] == ["dog", "tree", "car"]
    assert read(ma)["setting"] == read(mc)["setting"]
    assert [s["x"] for s in read(ma)["subjects"]] != [s["x"] for s in read(mc)["subjects"]]


def test_the_seashell_prompts_manifest_says_what_was_understood(tmp_path):
    _, manifest = job(tmp_path, SEASHELL)
    (reading,) = manifest["metadata"]["previz"]
    assert {s["word"] for s in reading["setting"]} == {"sand", "waves"}
    (shell,) = reading["subjects"]
    assert shell["noun"] == "shell" and shell["side"] == "centre" and shell["place"] == "sand"
    assert reading["camera"] == "zoom in" and manifest["metadata"]["camera_motion"] == ["zoom in"]
    assert {"who": "waves", "verb": "flow"} in reading["motions"] and reading["ignored"] == ["gentle"]


def test_an_image_is_frame_0_exactly_and_the_subjects_enter_after_it():
    img = noisy_image(W, H, seed=3)
    plan = ShotPlan(0, 1, "A red car drives in. Camera pan left.", 1, 2, 8, W, H, img)
    frames = list(PrevizEngine({"caption": False, "slate_frames": 0}).render_shot(plan, NullProgress()))
    assert np.array_equal(frames[0], np.asarray(img))
    reds = [near(f.astype(np.int16), (210, 35, 35), 20).sum() for f in frames]
    assert reds[1] < reds[-1] and reds[-1] > 50  # the car comes in over the plate


def test_every_noun_has_its_own_silhouette():
    assert len(NOUNS) >= 60
    grid = {n: np.asarray(Image.fromarray(mask(n).astype(np.uint8) * 255).resize((48, 48))) > 127 for n in NOUNS}
    for a, b in itertools.combinations(grid, 2):
        iou = (grid[a] & grid[b]).sum() / (grid[a] | grid[b]).sum()
        assert iou < 0.95, (a, b, iou)


@pytest.mark.parametrize("noun", sorted(NOUNS))
def test_every_noun_is_read_and_drawn_with_its_label(noun):
    (subject,) = read_prompt(f"A {noun} in a field.").subjects
    assert subject.noun == noun
    plan = ShotPlan(0, 1, f"A magenta {noun}.", 2, 1, 2, W, H)
    frame = next(iter(PrevizEngine({"caption": False, "slate_frames": 0}).render_shot(plan, NullProgress())))
    assert near(frame.astype(np.int16), (220, 40, 180), 10).sum() > 20  # drawn in its named colour


def test_storyboard_shots_are_each_their_own_set(tmp_path):
    from reelforge.request.model import Shot

    shots = [Shot(text="A beach at noon.", duration_s=1), Shot(text="A city street at night.", duration_s=1)]
    done = Client().start(VideoRequest(task_type="MULTI_SHOT_MANUAL", shots=shots, fps=8, width=W, height=H), model="reelforge.animatic-v2", output=tmp_path).wait(timeout=60)
    frames = list(media.read_frames(done.local_dir / "output.mp4"))
    assert luma(frames[2].astype(np.int16)) > 2 * luma(frames[-2].astype(np.int16))
    meta = json.loads((done.local_dir / "manifest.json").read_text())["metadata"]
    readings = [r for shot in meta.get("shots", [meta]) for r in shot["previz"]]
    assert [r["light"] for r in readings] == ["noon", "night"] and [r["setting"][0]["kind"] for r in readings] == ["beach", "city"]


def test_docs_list_the_whole_vocabulary():
    from pathlib import Path

    from reelforge.engines.previz.vocabulary import LIGHTS, MOTION_VERBS, SETTINGS, WEATHERS

    doc = (Path(__file__).parent.parent / "docs" / "previz.md").read_text()
    for noun, (aliases, _, _) in NOUNS.items():
        assert f"**{noun}**" in doc and all(a in doc for a in aliases), noun
    for table in (SETTINGS, LIGHTS, WEATHERS, MOTION_VERBS):
        assert all(f"| {name} |" in doc for name in table)


@pytest.mark.parametrize("move", ["zoom in", "zoom out", "pan left", "pan right", "tilt up", "tilt down", "dolly in", "dolly out", "orbit", "static shot", "the camera follows the dog"])
@pytest.mark.parametrize("with_image", [False, True])
def test_every_move_renders_in_every_set(move, with_image):
    img = noisy_image(96, 64, seed=1) if with_image else None
    text = f"A dog runs left of the house, a kite is red, fog in a city at dusk, a boat on the lake. Camera {move}."
    plan = ShotPlan(0, 1, text, 3, 1, 4, 96, 64, img)
    progress = NullProgress()
    frames = list(PrevizEngine().render_shot(plan, progress))
    assert len(frames) == 4 and all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[1], frames[3])  # it moves
    assert progress.metadata["previz"][0]["camera"] == {"static shot": "static", "the camera follows the dog": "follow"}.get(move, move)
