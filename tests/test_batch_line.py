"""workflows/batch_line: one batch line (JSONL object or CSV row) as a checked request, errors in the file's words."""

import pytest
from PIL import Image

from reelforge.workflows.batch_line import BatchLine, LineError, field_name, parse_line


def test_a_csv_row_of_text_cells_becomes_a_checked_request(tmp_path):
    Image.new("RGB", (640, 480), "red").save(tmp_path / "a.png")
    row = {"prompt": "a red fox", "model": "reelforge.animatic-v1", "duration": "4", "fps": "12", "seed": "7",
           "resolution": "640x480", "image": "a.png", "fit": "pad"}
    model_id, request = parse_line(row, {}, tmp_path)
    assert model_id == "reelforge.animatic-v1"
    assert (request.text, request.duration_s, request.fps, request.seed, request.width, request.height, request.fit) == (
        "a red fox", 4, 12, 7, 640, 480, "pad")
    assert request.image is not None and request.image.format == "png"


def test_defaults_fill_what_a_line_leaves_out_and_a_bare_string_is_the_prompt(tmp_path):
    model_id, request = parse_line("a boat", {"model": "reelforge.animatic-v1", "duration": 3}, tmp_path)
    assert (model_id, request.text, request.duration_s) == ("reelforge.animatic-v1", "a boat", 3)
    _, request = parse_line({"text": "a boat"}, {}, tmp_path)
    assert request.text == "a boat" and request.duration_s == 6


@pytest.mark.parametrize("raw,field,message", [
    ({"prompt": "a", "sound": "loud"}, "sound", "unknown field; allowed: prompt, text, model, duration, fps, resolution, seed, image, fit"),
    ({"prompt": "a", "text": "b"}, "text", "give 'prompt' or 'text', not both"),
    ({"duration": 6}, "prompt", "is required: the text of the video"),
    ({"prompt": "   "}, "prompt", "is required: the text of the video"),
    ({"prompt": "a", "fps": "fast"}, "fps", "must be a whole number, got 'fast'"),
    ({"prompt": "a", "seed": True}, "seed", "must be a whole number, got True"),
    ({"prompt": "a", "resolution": "big"}, "resolution", "'big' is not a size; write WIDTHxHEIGHT, e.g. 1280x720"),
    ({"prompt": "a", "fit": "stretch"}, "fit", "'stretch' is not allowed; allowed: crop, pad"),
    ({"prompt": "a", "image": "missing.png"}, "image", "(image paths are relative to the batch file)"),
    ({"prompt": "a", "duration": 7}, "duration", "7 is not allowed for amazon.nova-reel-v1:1 TEXT_VIDEO; allowed: 6"),
    ({"prompt": "a", "model": "nova"}, "model", "unknown model 'nova'"),
    (["a"], "", "must be a JSON object with 'prompt' (or a JSON string), got list"),
])
def test_each_bad_field_is_named_with_what_is_allowed(tmp_path, raw, field, message):
    with pytest.raises(LineError) as err:
        parse_line(raw, {}, tmp_path)
    assert err.value.field == field and message in err.value.message


def test_the_first_problem_is_the_one_met_reading_the_line(tmp_path):
    # an unknown key before a bad value; among values, the file's field order
    with pytest.raises(LineError, match=r"^zz: unknown field"):
        parse_line({"prompt": "a", "fps": "x", "zz": 1}, {}, tmp_path)
    with pytest.raises(LineError, match=r"^duration: "):
        parse_line({"prompt": "a", "fps": "x", "duration": "y"}, {}, tmp_path)


def test_request_fields_are_named_in_the_files_words():
    assert field_name("videoGenerationConfig.dimension") == "resolution"
    assert field_name("textToVideoParams.images[0]") == "image"
    assert field_name("somethingElse") == "somethingElse"
    assert set(BatchLine.model_fields) == {"prompt", "text", "model", "duration", "fps", "resolution", "seed", "image", "fit"}
