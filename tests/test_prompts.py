import pytest

from reelforge.request.prompts import LintWarning, camera_motion, lint_prompt, lint_shots

CHEESEBURGER = (
    "Cinematic dolly shot of a juicy cheeseburger with melting cheese, fries, and a "
    "condensation-covered cola on a worn diner table. Natural lighting, visible steam and "
    "droplets. 4k, photorealistic, shallow depth of field"
)
SEASHELL = (
    "Closeup of a large seashell in the sand. Gentle waves flow around the shell. Camera zoom in."
)
SLOW_CAM = (
    "Slow cam of a man middle age; 4k; Cinematic; in a sunny day; peaceful; highest quality; dolly in;"
)
LONG_STORY = (
    "A lighthouse keeper climbs the spiral stairs at dusk, lamp in hand. Storm clouds gather over "
    "a grey sea while waves break on the rocks below. Inside the lantern room he lights the great "
    "lens and its beam sweeps across the water. A small fishing boat turns toward the light and "
    "reaches the harbor safely. Cinematic, moody lighting, 35mm film grain. Camera pulls back."
)


def rules(warnings):
    return [w.rule for w in warnings]


@pytest.mark.parametrize("prompt", [CHEESEBURGER, SEASHELL, SLOW_CAM])
def test_aws_examples_are_clean(prompt):
    assert lint_prompt(prompt) == []


# P1 length ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, task_type, code",
    [
        ("", "TEXT_VIDEO", "empty"),
        ("   \n", "TEXT_VIDEO", "empty"),
        ("a" * 513, "TEXT_VIDEO", "too-long"),
        ("a" * 513, "MULTI_SHOT_MANUAL", "too-long"),
        ("a" * 4001, "MULTI_SHOT_AUTOMATED", "too-long"),
    ],
)
def test_p1_length_errors(text, task_type, code):
    errors = [w for w in lint_prompt(text, task_type=task_type) if w.rule == "P1"]
    assert [(w.code, w.severity) for w in errors] == [(code, "error")]


@pytest.mark.parametrize(
    "text, task_type",
    [("a", "TEXT_VIDEO"), ("a" * 512, "TEXT_VIDEO"), ("a" * 4000, "MULTI_SHOT_AUTOMATED")],
)
def test_p1_length_ok(text, task_type):
    assert "P1" not in rules(lint_prompt(text, task_type=task_type))


def test_p1_span_is_the_overflow():
    (w,) = [w for w in lint_prompt("a" * 520) if w.rule == "P1"]
    assert (w.start, w.end) == (512, 520)
    assert "8" in w.suggestion


def test_unknown_task_type_is_rejected_by_name():
    with pytest.raises(ValueError, match="IMAGE_VIDEO"):
        lint_prompt("a cat", task_type="IMAGE_VIDEO")


# P2 negation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt, word",
    [
        ("Pan across a fruit basket with no bananas", "no"),
        ("A street that is not crowded", "not"),
        ("A beach without people", "without"),
        ("A clock that never stops", "never"),
        ("A sky with none of the usual clouds", "none"),
        ("A table with NOTHING on it", "NOTHING"),
        ("A dog that doesn't bark", "doesn't"),
        ("A door that won’t open", "won’t"),
        ("A city street, avoid cars", "avoid"),
        ("A kitchen free of clutter", "free of"),
        ("A room lacking furniture", "lacking"),
        ("A sign that reads 'no entry'", "no"),
    ],
)
def test_p2_negation_span(prompt, word):
    hits = [w for w in lint_prompt(prompt) if w.rule == "P2"]
    assert [prompt[w.start:w.end] for w in hits] == [word]
    assert hits[0].code == "negation" and hits[0].severity == "warning"


@pytest.mark.parametrize(
    "prompt",
    [
        "A sailor ties a knot on a notable ship, taking a note",
        "Snow falls on the nothingness of an annotated map",
        "A nobleman at a canon firing, innocent faces, Nordic light",
    ],
)
def test_p2_no_false_positive_inside_words(prompt):
    assert "P2" not in rules(lint_prompt(prompt))


# P3 camera placement --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt, phrase",
    [
        ("A quiet harbor at dawn. The camera pans left over the boats. Gulls circle. Warm light.",
         "pans left"),
        ("A forest at night, fireflies glowing, slow zoom in, moss on the trees, mist", "zoom in"),
        ("A long quiet street in an old European town as a drone glides above the red roofs "
         "of the houses and the morning sun rises over the hills", "drone"),
    ],
)
def test_p3_camera_in_the_middle(prompt, phrase):
    (w,) = [w for w in lint_prompt(prompt) if w.rule == "P3"]
    assert prompt[w.start:w.end] == phrase
    assert w.code == "camera-placement"


@pytest.mark.parametrize(
    "prompt",
    [
        "Tracking shot of a runner on a trail. Morning fog. Golden light.",
        "A runner on a trail. Morning fog. Golden light. Tracking shot.",
        "A runner on a trail; morning fog; golden light; dolly out;",
        "A runner on a trail, morning fog, golden light, camera pans right",
        "A quiet zoom in on a cat",  # a short single clause is never flagged
        "A runner on a trail. Morning fog.",  # no camera phrase at all
        "Version 4.5 of a city at night. Neon. Rain. Orbit around the tower.",
    ],
)
def test_p3_camera_at_start_or_end(prompt):
    assert "P3" not in rules(lint_prompt(prompt))


# P4 commands and chat -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt, opener",
    [
        ("Generate a video of a cat on a sofa", "Generate"),
        ("create a sunset over the sea", "create"),
        ("Make a timelapse of clouds", "Make"),
        ("Show me a horse in a field", "Show me"),
        ("Please, a horse in a field", "Please"),
        ("  Can you film a horse in a field", "Can you"),
        ("Could you render a horse", "Could you"),
        ("I want a horse in a field", "I want"),
        ("I'd like a horse in a field", "I'd like"),
    ],
)
def test_p4_opener_span(prompt, opener):
    (w,) = [w for w in lint_prompt(prompt) if w.rule == "P4"]
    assert prompt[w.start:w.end] == opener
    assert w.code == "command"


def test_p4_trailing_question_mark():
    prompt = "A horse in a field at sunset?  "
    (w,) = [w for w in lint_prompt(prompt) if w.rule == "P4"]
    assert (w.code, prompt[w.start:w.end]) == ("question", "?")


@pytest.mark.parametrize(
    "prompt",
    [
        "Makeup artist at work in a bright studio",
        "Make-up artist at work in a bright studio",
        "Creative studio with plants, soft light",
        "Pleasant meadow with a horse",
        "Showroom of vintage cars, what a view? No, a calm morning.",
        "A child asks a question: can you see it",
    ],
)
def test_p4_captions_pass(prompt):
    assert "P4" not in rules(lint_prompt(prompt))


# P6 short automated multi-shot ----------------------------------------------------------------
@pytest.mark.parametrize("duration_s", [12, 120, None])
def test_p6_short_automated_prompt(duration_s):
    warnings = lint_prompt(
        "A lighthouse keeper at dusk.", task_type="MULTI_SHOT_AUTOMATED", duration_s=duration_s
    )
    (w,) = [w for w in warnings if w.rule == "P6"]
    assert (w.severity, w.start, w.end) == ("info", 0, 0)


@pytest.mark.parametrize(
    "text, task_type, duration_s",
    [
        (LONG_STORY, "MULTI_SHOT_AUTOMATED", 24),
        ("A lighthouse keeper at dusk.", "MULTI_SHOT_AUTOMATED", 6),
        ("A lighthouse keeper at dusk.", "TEXT_VIDEO", 6),
    ],
)
def test_p6_not_flagged(text, task_type, duration_s):
    warnings = lint_prompt(text, task_type=task_type, duration_s=duration_s)
    assert "P6" not in rules(warnings)


def test_long_story_is_clean():
    assert lint_prompt(LONG_STORY, task_type="MULTI_SHOT_AUTOMATED", duration_s=24) == []


# P7 non-English -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt",
    [
        "Ein Hund läuft durch den Park im Herbst",
        "Un perro corre en la playa al atardecer",
        "Un chat dort sur le canapé près de la fenêtre",
        "Un gatto dorme sul divano della cucina",
        "一只猫在窗台上睡觉，阳光洒在它身上",
        "Кошка спит на подоконнике, камера приближается",
    ],
)
def test_p7_non_english(prompt):
    (w,) = [w for w in lint_prompt(prompt) if w.rule == "P7"]
    assert (w.code, w.severity, w.start, w.end) == ("non-english", "warning", 0, 0)


@pytest.mark.parametrize(
    "prompt",
    [
        "A man drinks coffee in a small café in Paris at sunset",
        "A naïve painter sketches a bridge over the river",
        "A chef torches a crème brûlée in a busy kitchen",
        "A neon sign that reads 東京 glows on a rainy street at night",
        "Portrait of a woman at the Café de Flore, soft light",
    ],
)
def test_p7_english_with_loanwords(prompt):
    assert "P7" not in rules(lint_prompt(prompt))


# P8 shots -------------------------------------------------------------------------------------
def test_lint_shots_indices():
    shots = [SEASHELL, "A basket with no fruit", "b" * 600, "Can you show a cat?"]
    found = lint_shots(shots)
    assert [(i, w.rule) for i, w in found] == [(1, "P2"), (2, "P1"), (3, "P4"), (3, "P4")]
    assert all(isinstance(w, LintWarning) for _, w in found)


def test_lint_shots_clean():
    assert lint_shots([CHEESEBURGER, SEASHELL]) == []


# camera_motion --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt, motion",
    [
        ("Camera zoom in on a shell", "zoom in"),
        ("A city skyline, zooming out", "zoom out"),
        ("Pan left across the harbor", "pan left"),
        ("A harbor, camera pans right", "pan right"),
        ("Pan across a fruit basket", "pan right"),
        ("Tilt up to the cathedral spire", "tilt up"),
        ("The camera tilts down to the street", "tilt down"),
        ("Dolly in on a red door", "dolly in"),
        ("Cinematic dolly shot of a burger", "dolly in"),
        ("Tracking shot of a runner", "dolly in"),
        ("Aerial view of a canyon", "dolly in"),
        ("Drone footage of a coast", "dolly in"),
        ("First person view of a roller coaster", "dolly in"),
        ("Dolly out from a portrait", "dolly out"),
        ("Arc shot on a statue", "orbit"),
        ("A 360 view of a sculpture", "orbit"),
        ("Orbit around a sports car", "orbit"),
        ("Static shot of a waterfall", "static"),
        ("Fixed camera on a busy crossing", "static"),
        ("Locked-off shot of a street", "static"),
        ("Track left along a wall", "pan left"),
        ("Crane up over a crowd", "tilt up"),
        ("Pedestal down to a table", "tilt down"),
        ("Handheld, the camera pans slowly left", "pan left"),
        ("Whip pan to a door", "pan right"),
        ("A cat sleeps on a sofa", None),
        ("A locked door in an old house", None),
        ("Handheld footage of a market", None),
    ],
)
def test_camera_motion(prompt, motion):
    assert camera_motion(prompt) == motion


def test_camera_motion_takes_the_first():
    assert camera_motion("Zoom out from the city, then pan left") == "zoom out"


# formatting and ordering ----------------------------------------------------------------------
def test_str_reads_like_a_linter_line():
    (w,) = lint_prompt("Pan across a fruit basket with no bananas")
    assert str(w) == (
        'col 31-33 warning negation: "no" — the model does not understand negation and tends to '
        'show what you negate; suggestion: describe what should be there instead of "no bananas" '
        '(e.g. "an empty fruit basket", not "a basket with no fruit")'
    )


def test_an_explicit_move_wins_over_an_implied_one():
    assert camera_motion("Aerial shot of a coastline at sunrise. Camera pans right.") == "pan right"
    assert camera_motion("Aerial shot of a coastline at sunrise.") == "dolly in"
    assert camera_motion("Tracking shot of a runner, slow zoom out at the end") == "zoom out"


def test_warnings_sorted_with_suggestions():
    prompt = "Please show a city. Never rainy. The camera pans left. Not dark. A bridge?"
    warnings = lint_prompt(prompt)
    assert [w.start for w in warnings] == sorted(w.start for w in warnings)
    assert {"P2", "P3", "P4"} <= set(rules(warnings))
    assert all(w.suggestion and w.severity in {"error", "warning", "info"} for w in warnings)


def test_warning_is_frozen():
    (w,) = lint_prompt("A basket with no fruit")
    with pytest.raises(AttributeError):
        w.start = 3  # type: ignore[misc]
