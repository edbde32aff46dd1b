"""The animatic previsualization renderer: deterministic, follows the camera move, honours the image."""

import numpy as np
import pytest
from PIL import Image

from reelforge.engines import NullProgress, ShotPlan
from reelforge.engines.animatic import MOTIONS, AnimaticEngine, camera

from tests.helpers import noisy_image

W, H = 160, 90


def render(text, seed=1, image=None, index=0, count=1, seconds=2, fps=8, **options):
    plan = ShotPlan(index, count, text, seed, seconds, fps, W, H, image)
    progress = NullProgress()
    frames = list(AnimaticEngine(options).render_shot(plan, progress))
    return frames, progress


def test_same_prompt_and_seed_same_frames_other_seed_differs():
    a, _ = render("a red kite over a green field")
    b, _ = render("a red kite over a green field")
    c, _ = render("a red kite over a green field", seed=2)
    d, _ = render("a blue kite over snow")
    assert len(a) == 16 and a[0].shape == (H, W, 3) and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[8], c[8]) and not np.array_equal(a[8], d[8])


def test_progress_per_frame():
    frames, progress = render("a cat")
    assert [c[0] for c in progress.calls] == list(range(17)) and progress.calls[-1][:2] == (16, 16)


@pytest.mark.parametrize("motion", MOTIONS)
def test_every_camera_move_starts_at_rest(motion):
    assert camera(motion, 0.0) == pytest.approx((0.5, 0.5, 1.5))


@pytest.mark.parametrize(
    "prompt, check",
    [
        ("A harbour. Camera zoom in.", lambda c0, c1: c1[2] > c0[2]),
        ("A harbour. Camera zoom out.", lambda c0, c1: c1[2] < c0[2]),
        ("A harbour. Camera pan left.", lambda c0, c1: c1[0] < c0[0]),
        ("A harbour. Camera pan right.", lambda c0, c1: c1[0] > c0[0]),
        ("A harbour. Camera tilt up.", lambda c0, c1: c1[1] < c0[1]),
        ("A harbour. Camera tilt down.", lambda c0, c1: c1[1] > c0[1]),
        ("A harbour. Dolly in.", lambda c0, c1: c1[2] > c0[2]),
        ("A harbour. Static shot.", lambda c0, c1: c0 == c1),
    ],
)
def test_the_move_named_in_the_prompt_is_applied(prompt, check):
    _, progress = render(prompt)
    motion = progress.metadata["camera_motion"][0]
    assert check(camera(motion, 0.0), camera(motion, 1.0)), motion


def test_image_is_the_exact_first_frame_and_the_zoom_moves_into_it():
    img = noisy_image(W, H, seed=3)
    frames, _ = render("Camera zoom in.", image=img)
    assert np.array_equal(frames[0], np.asarray(img))
    # the last frame shows the middle of the image enlarged: compare with a centre crop scaled up
    centre = np.asarray(img.crop((W // 6, H // 6, W - W // 6, H - H // 6)).resize((W, H), Image.BILINEAR), dtype=np.int16)
    assert np.abs(frames[-1][30:60, 40:120].astype(np.int16) - centre[30:60, 40:120]).mean() < np.abs(frames[0][30:60, 40:120].astype(np.int16) - centre[30:60, 40:120]).mean()


def test_each_shot_opens_with_a_slate_in_its_own_colour():
    one, _ = render("a road", index=0, count=3)
    two, _ = render("a road", index=1, count=3)
    # the slate border is drawn on the first frames only
    border = lambda f: f[:2, :, :].reshape(-1, 3).mean(axis=0)
    assert not np.allclose(border(one[1]), border(two[1]), atol=20)
    plain, _ = render("a road", index=1, count=3, slate_frames=0)
    assert not np.array_equal(plain[1], two[1]) and np.array_equal(plain[15], two[15])


def test_unknown_options_are_refused():
    from reelforge import EngineError

    with pytest.raises(EngineError, match="bad options"):
        AnimaticEngine({"colour": "red"})
