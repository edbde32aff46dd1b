"""request/nova_json: Nova Reel's modelInput as pydantic models, problems named by JSON path in reading order."""

import pytest

from reelforge.errors import RequestError
from reelforge.request.model import VideoRequest
from reelforge.request.nova_json import parse

TEXT = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a cat"},
        "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}


def with_(base, path, value):
    import copy

    d = copy.deepcopy(base)
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


def test_each_task_type_has_its_own_schema():
    manual = {"taskType": "MULTI_SHOT_MANUAL", "multiShotManualParams": {"shots": [{"text": "a", "seed": 3}]},
              "videoGenerationConfig": {"fps": 24, "dimension": "1280x720"}}
    assert parse(manual)["shots"][0] == {"text": "a", "image": None, "duration_s": None, "seed": 3}
    # a duration belongs to the shots of a manual request, never to its config
    with pytest.raises(RequestError, match=r"^videoGenerationConfig\.durationSeconds: unknown field; allowed: dimension, fps, seed$"):
        parse(with_(manual, ("videoGenerationConfig", "durationSeconds"), 6))
    with pytest.raises(RequestError, match=r"^videoGenerationConfig\.durationSeconds: is required$"):
        parse({**TEXT, "videoGenerationConfig": {"fps": 24, "dimension": "1280x720"}})
    with pytest.raises(RequestError, match=r"^taskType: 'IMAGE' is not allowed; allowed: TEXT_VIDEO, MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL$"):
        parse({**TEXT, "taskType": "IMAGE"})


def test_an_optional_key_that_is_given_must_hold_a_value():
    with pytest.raises(RequestError, match=r"^videoGenerationConfig\.seed: must be a whole number, got None$"):
        parse(with_(TEXT, ("videoGenerationConfig", "seed"), None))
    with pytest.raises(RequestError, match=r"^textToVideoParams\.images: must be a list with exactly one image$"):
        parse(with_(TEXT, ("textToVideoParams", "images"), None))


def test_the_first_problem_is_the_one_met_reading_from_the_top():
    # missing keys (alphabetically), then unknown keys, then values; the config before the params
    bad = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": 5}, "videoGenerationConfig": {"fps": "x"}, "extra": 1}
    with pytest.raises(RequestError, match=r"^modelInput\.extra: unknown field"):
        parse(bad)
    del bad["extra"]
    with pytest.raises(RequestError, match=r"^videoGenerationConfig\.dimension: is required$"):
        parse(bad)
    bad["videoGenerationConfig"] = {"fps": "x", "dimension": 3, "durationSeconds": 6}
    with pytest.raises(RequestError, match=r"^videoGenerationConfig\.dimension: 3 is not a size"):
        parse(bad)
    bad["videoGenerationConfig"]["dimension"] = "1280x720"
    with pytest.raises(RequestError, match=r"^videoGenerationConfig\.fps: must be a whole number, got 'x'$"):
        parse(bad)
    bad["videoGenerationConfig"]["fps"] = 24
    with pytest.raises(RequestError, match=r"^textToVideoParams\.text: must be a string, got int$"):
        parse(bad)


def test_images_name_their_path_and_round_trip():
    image = {"format": "jpeg", "source": {"s3Location": {"uri": "s3://b/k.jpg", "bucketOwner": "123"}}}
    good = with_(TEXT, ("textToVideoParams", "images"), [image])
    assert VideoRequest.from_model_input(good).to_model_input() == good
    with pytest.raises(RequestError, match=r"^textToVideoParams\.images\[0\]\.source: must have exactly one of: bytes, s3Location$"):
        parse(with_(good, ("textToVideoParams", "images", 0, "source", "bytes"), "eA=="))
    with pytest.raises(RequestError, match=r"^textToVideoParams\.images\[0\]\.source\.s3Location\.uri: must be an s3:// URI$"):
        parse(with_(good, ("textToVideoParams", "images", 0, "source", "s3Location", "uri"), "https://x"))
    with pytest.raises(RequestError, match=r"^textToVideoParams\.images\[0\]\.format: 'gif' is not allowed; allowed: png, jpeg$"):
        parse(with_(good, ("textToVideoParams", "images", 0, "format"), "gif"))
