import base64
import copy

import pytest

from reelforge import RequestError, VideoRequest
from reelforge.errors import ImageError, UnknownModelError
from reelforge.engines.catalog import get_model
from reelforge.request.nova import build_model_input, video_location
from reelforge.request.check import check, split_automated

from tests.helpers import image_bytes

NOVA = get_model("amazon.nova-reel-v1:1")
NOVA0 = get_model("amazon.nova-reel-v1:0")
LOCAL = get_model("reelforge.animatic-v1")
PNG_B64 = base64.b64encode(image_bytes()).decode()


def notebook_build_model_input(prompt, image_base64=None, duration=6, fps=24, resolution="1280x720", seed=0):
    """The seed notebook's function, verbatim in behaviour, to compare against."""
    output = {
        "taskType": "TEXT_VIDEO",
        "textToVideoParams": {"text": prompt},
        "videoGenerationConfig": {"durationSeconds": duration, "fps": fps, "dimension": resolution, "seed": seed},
    }
    if image_base64:
        output["textToVideoParams"]["images"] = [{"format": "png", "source": {"bytes": image_base64}}]
    return output


MODEL_INPUTS = [
    notebook_build_model_input("a cat"),
    notebook_build_model_input("a cat", image_base64=PNG_B64, seed=7),
    {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "x"}, "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}},
    {"taskType": "MULTI_SHOT_AUTOMATED", "multiShotAutomatedParams": {"text": "a long story"}, "videoGenerationConfig": {"durationSeconds": 18, "fps": 24, "dimension": "1280x720", "seed": 3}},
    {
        "taskType": "MULTI_SHOT_MANUAL",
        "multiShotManualParams": {"shots": [{"text": "one"}, {"text": "two", "image": {"format": "png", "source": {"bytes": PNG_B64}}}, {"text": "three", "image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://b/k.jpg", "bucketOwner": "123456789012"}}}}]},
        "videoGenerationConfig": {"fps": 24, "dimension": "1280x720", "seed": 1},
    },
]


@pytest.mark.parametrize("model_input", MODEL_INPUTS)
def test_model_input_round_trips_exactly(model_input):
    original = copy.deepcopy(model_input)
    assert VideoRequest.from_model_input(model_input).to_model_input() == original


@pytest.mark.parametrize("kwargs", [{}, {"seed": 5}, {"image_base64": PNG_B64}, {"duration": 6, "fps": 24, "resolution": "1280x720", "seed": 2147483646}])
def test_build_model_input_matches_the_notebook(kwargs):
    assert build_model_input("Closeup of a seashell. Camera zoom in.", **kwargs) == notebook_build_model_input("Closeup of a seashell. Camera zoom in.", **kwargs)


@pytest.mark.parametrize(
    "kwargs, field, allowed",
    [
        ({"duration": 7}, "durationSeconds", "allowed: 6"),
        ({"fps": 30}, "fps", "allowed: 24"),
        ({"resolution": "1920x1080"}, "dimension", "allowed: 1280x720"),
        ({"resolution": "big"}, "dimension", "WIDTHxHEIGHT"),
        ({"seed": -1}, "seed", "0 to 2147483646"),
        ({"seed": 2147483647}, "seed", "0 to 2147483646"),
    ],
)
def test_build_model_input_rejects_with_field_and_allowed_values(kwargs, field, allowed):
    with pytest.raises(RequestError) as e:
        build_model_input("a cat", **kwargs)
    assert field in e.value.field and allowed in str(e.value)


@pytest.mark.parametrize(
    "request_kwargs, field, fragment",
    [
        (dict(text=""), "textToVideoParams.text", "1 to 512"),
        (dict(text="   "), "textToVideoParams.text", "is empty"),
        (dict(text="a" * 513), "textToVideoParams.text", "513 characters"),
        (dict(task_type="MULTI_SHOT_AUTOMATED", text="a" * 4001, duration_s=12), "multiShotAutomatedParams.text", "4001"),
        (dict(task_type="MULTI_SHOT_AUTOMATED", text="story", duration_s=13), "durationSeconds", "12 to 120 in steps of 6"),
        (dict(shots=[{"text": f"shot {i}"} for i in range(21)]), "multiShotManualParams.shots", "1 to 20"),
        (dict(shots=[]), "multiShotManualParams.shots", "1 to 20"),
        (dict(shots=[{"text": "a", "duration_s": 3}]), "durationSeconds", "lasts 6 s"),
    ],
)
def test_nova_limits(request_kwargs, field, fragment):
    with pytest.raises(RequestError) as e:
        check(VideoRequest(**request_kwargs), NOVA)
    assert field in e.value.field and fragment in str(e.value)


def test_v1_0_accepts_only_text_video():
    with pytest.raises(RequestError, match="multi-shot needs amazon.nova-reel-v1:1"):
        check(VideoRequest(shots=[{"text": "a"}, {"text": "b"}]), NOVA0)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError) as e:
        get_model("amazon.nova-reel-v9")
    assert "amazon.nova-reel-v1:0" in str(e.value) and "reelforge.animatic-v1" in str(e.value)


@pytest.mark.parametrize(
    "bad, field",
    [
        ("{\"taskType\": \"TEXT_VIDEO\"}", "modelInput"),
        ({"taskType": "IMAGE"}, "taskType"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a"}}, "modelInput.videoGenerationConfig"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a", "colour": 1}, "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}, "textToVideoParams.colour"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a"}, "videoGenerationConfig": {"durationSeconds": 6.5, "fps": 24, "dimension": "1280x720"}}, "videoGenerationConfig.durationSeconds"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a"}, "videoGenerationConfig": {"durationSeconds": True, "fps": 24, "dimension": "1280x720"}}, "videoGenerationConfig.durationSeconds"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a", "images": []}, "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}, "textToVideoParams.images"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a", "images": [{"format": "gif", "source": {"bytes": "AA=="}}]}, "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}, "images[0].format"),
    ],
)
def test_structural_errors_name_the_json_path(bad, field):
    with pytest.raises(RequestError) as e:
        VideoRequest.from_model_input(bad)
    assert field in e.value.field


def test_image_of_wrong_size_needs_fit_for_nova():
    req = VideoRequest(text="a cat", image=image_bytes(1920, 1080))
    with pytest.raises(ImageError, match="1920x1080.*--fit crop\\|pad"):
        check(req, NOVA)
    prepared, shots = check(req.model_copy(update={"fit": "crop"}), NOVA)
    assert shots[0].image.size == (1280, 720)
    # the stored request carries the fitted image, so what was sent is what is rendered
    assert check(VideoRequest.from_model_input(prepared.to_model_input()), NOVA)[1][0].image.size == (1280, 720)


def test_transparent_png_is_refused_for_nova_but_fitted_for_local_models():
    req = VideoRequest(text="a cat", image=image_bytes(mode="RGBA", color=(10, 20, 30, 0)))
    with pytest.raises(ImageError, match="transparent"):
        check(req, NOVA)
    assert check(req, LOCAL)[1][0].image.mode == "RGB"


def test_local_model_fits_any_image_and_allows_other_sizes():
    req = VideoRequest(text="a cat", image=image_bytes(300, 500), width=320, height=240, fps=8, duration_s=2)
    _, shots = check(req, LOCAL)
    assert shots[0].image.size == (320, 240) and shots[0].duration_s == 2


def test_manual_shots_get_derived_seeds_and_local_durations():
    req = VideoRequest(shots=[{"text": "a"}, {"text": "b", "duration_s": 2}, {"text": "c", "seed": 9}], seed=100, width=128, height=72)
    _, shots = check(req, LOCAL)
    assert [s.duration_s for s in shots] == [6, 2, 6]
    assert shots[0].seed == 100 and shots[1].seed not in (100, 9) and shots[2].seed == 9


def test_split_automated_deals_sentences_in_order():
    parts = split_automated("One. Two. Three. Four.", 12, 6)
    assert parts == [("One. Two.", 6), ("Three. Four.", 6)]
    assert [p[1] for p in split_automated("Just one.", 20, 6)] == [6, 6, 8]


def test_video_location_handles_prefixes_the_notebook_breaks_on():
    resp = {"outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bucket/videos/2026/abc123def456"}}}
    assert video_location(resp) == ("bucket", "videos/2026/abc123def456/output.mp4")


def test_text_to_video_only_models_refuse_an_image_before_anything_is_recorded():
    from dataclasses import replace

    spec = replace(LOCAL, model_id="test.t2v", limits=replace(LOCAL.limits, image_input=False))
    with pytest.raises(ImageError) as e:
        check(VideoRequest(text="a cat", image=image_bytes()), spec)
    assert e.value.field == "textToVideoParams.images[0]" and "text-to-video only" in str(e.value)


CONSTRUCTION_ERRORS = [
    (dict(text="a cat", image="missing.png"), ImageError, "image", "does not exist"),
    (dict(shots=[{"text": "a", "image": "missing.png"}]), ImageError, "shots[0].image", "does not exist"),
    (dict(shots=[{"image": None}]), RequestError, "shots[0].text", "is required"),
    (dict(text="a cat", fps="fast"), RequestError, "fps", "valid integer"),
    (dict(text="a cat", fit="zoom"), RequestError, "fit", "'crop' or 'pad'"),
    (dict(prompt="a cat"), RequestError, "prompt", "unknown field; allowed: task_type, text, image, shots"),
    (dict(shots=[{"text": "a", "colour": "red"}]), RequestError, "shots[0].colour", "unknown field; allowed: text, image, duration_s, seed"),
    (dict(text="a cat", image={"format": "gif", "bytes_b64": "x"}), RequestError, "image.format", "'png' or 'jpeg'"),
    (dict(text="a cat", shots=[{"text": "a"}]), RequestError, "text", "a request with shots takes no text"),
    (dict(image=PNG_B64, shots=[{"text": "a"}]), RequestError, "image", "a request with shots takes no image"),
    (dict(task_type="TEXT_VIDEO", text="a cat", shots=[{"text": "a"}]), RequestError, "shots", "only MULTI_SHOT_MANUAL requests have shots"),
]


@pytest.mark.parametrize("fields, kind, field, fragment", CONSTRUCTION_ERRORS)
def test_every_construction_error_is_a_request_error_naming_the_field(fields, kind, field, fragment):
    with pytest.raises(RequestError) as err:  # never pydantic's ValidationError
        VideoRequest(**fields)
    assert type(err.value) is kind and err.value.field == field and fragment in err.value.message, str(err.value)
    assert str(err.value).startswith(f"{field}: ") and "\n" not in str(err.value)


def test_shot_and_model_validate_raise_request_errors_too():
    from reelforge import ImageInput, Shot

    with pytest.raises(RequestError, match=r"^text: input should be a valid string, got 3$"):
        Shot(text=3)
    with pytest.raises(ImageError, match=r"^image: "):
        Shot(text="a", image="missing.png")
    with pytest.raises(RequestError, match=r"^format: input should be 'png' or 'jpeg', got 'gif'$"):
        ImageInput(format="gif")
    with pytest.raises(RequestError, match=r"^fps: "):
        VideoRequest.model_validate({"text": "a", "fps": "x"})


def test_build_model_input_defaults_to_the_model_everything_else_defaults_to():
    import inspect

    from reelforge import Client, config

    default = inspect.signature(build_model_input).parameters["model_id"].default
    assert default == config.DEFAULT_MODEL == inspect.signature(Client.start).parameters["model"].default == "amazon.nova-reel-v1:1"
    # the notebook's id takes the same single-shot requests, so the choice changes no result for its calls
    for kwargs in (dict(prompt="a cat"), dict(prompt="a cat", duration=12), dict(prompt="a cat", fps=30), dict(prompt="a cat", seed=-1)):
        outcomes = []
        for model_id in ("amazon.nova-reel-v1:0", default):
            try:
                outcomes.append(build_model_input(**kwargs, model_id=model_id))
            except RequestError as exc:
                outcomes.append(str(exc).replace(model_id, "MODEL"))
        assert outcomes[0] == outcomes[1], outcomes
