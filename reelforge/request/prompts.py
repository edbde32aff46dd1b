"""A linter for Nova Reel prompts, after AWS's prompting guide (reference §6, rules P1-P8).

Rules: P1 length (error), P2 negation, P3 camera-motion placement, P4 command or chat phrasing,
P6 short automated multi-shot prompt (info), P7 non-English, P8 the per-shot rules for
MULTI_SHOT_MANUAL (:func:`lint_shots`). P5 (useful content) and P9 (seed iteration) are not linted.

P3 splits a prompt into sentences at ``. ! ? ;`` followed by whitespace or the end, and at line
breaks (so "4.5" and "4k;" behave; blank pieces are dropped). With two or more sentences the first
camera phrase must sit in the first or the last one. A single sentence is split at commas instead;
a single clause of 80+ characters falls back to position: the phrase must start in the first 25 %
or end in the last 25 % of the characters. Shorter single clauses are never flagged.

P7 is a heuristic, not language identification: it flags a prompt when at least 30 % of its letters
are non-ASCII (CJK, Cyrillic, Arabic, Greek...), or when it holds at least two common German,
Spanish, French, Italian or Portuguese function words and more of them than English ones, or one
such word, no English ones and some accented letters. Limits: a short Latin-script prompt without
those function words ("Perro corriendo, atardecer") passes; Dutch, Polish or Turkish prompts
are found only through their accents; an English prompt dense with foreign names and accents
("Café de Flore, crème brûlée") can be flagged; romanized text (pinyin, romaji) passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reelforge.request.limits import MULTI_SHOT_AUTOMATED, NOVA_REEL_V1_1, TASK_TYPES, Limits

__all__ = ["LintWarning", "camera_motion", "camera_phrases", "lint_prompt", "lint_shots"]

_SHORT_AUTOMATED = 200  # P6 threshold (our extension, not AWS's number)


@dataclass(frozen=True)
class LintWarning:
    """One finding; ``start``/``end`` is a 0-based, end-exclusive span (0, 0: the whole prompt)."""

    rule: str
    code: str
    severity: str
    message: str
    start: int
    end: int
    suggestion: str

    def __str__(self) -> str:
        where = f"col {self.start}-{self.end}" if self.end else "prompt"
        return f"{where} {self.severity} {self.code}: {self.message}; suggestion: {self.suggestion}"


# P2 -------------------------------------------------------------------------------------------
_NEGATION = re.compile(
    r"(?<!\w)(?:no|not|cannot|without|never|none|nothing|avoid(?:s|ed|ing)?|free\s+of|lacking"
    r"|[a-z]+n['’]t)(?!\w)",
    re.IGNORECASE,
)

# P3 and camera_motion: (pattern, normalized motion or None when the phrase has no direction)
_ADV = r"(?:\w+ly\s+)?"  # "pans slowly left"
_DIR: dict[str | None, str] = {"left": "pan left", "right": "pan right", "across": "pan right"}
_CAMERA: list[tuple[str, str | dict[str | None, str] | None]] = [
    (r"dolly(?:ing|ies)?[\s-]+" + _ADV + r"(in|out|shot|forward|back)",
     {"in": "dolly in", "out": "dolly out", "shot": "dolly in", "forward": "dolly in",
      "back": "dolly out"}),
    (r"push(?:es|ing)?[\s-]+in", "dolly in"),
    (r"pull(?:s|ing)?[\s-]+(?:out|back)", "dolly out"),
    (r"whip[\s-]+pan(?:s|ning)?(?:\s+(left|right))?", {"left": "pan left", None: "pan right"}),
    (r"pan(?:s|ning|ned)?\s+" + _ADV + r"(left|right|across)", _DIR),
    (r"(?:track|truck)(?:s|ing)?\s+" + _ADV + r"(left|right)", _DIR),
    (r"tilt(?:s|ing|ed)?\s+" + _ADV + r"(up|down)", {"up": "tilt up", "down": "tilt down"}),
    (r"(?:crane|pedestal)(?:s|ing)?\s+" + _ADV + r"(up|down)",
     {"up": "tilt up", "down": "tilt down"}),
    (r"zoom(?:s|ing|ed)?[\s-]+" + _ADV + r"(in|out)", {"in": "zoom in", "out": "zoom out"}),
    (r"orbit(?:s|ing|al)?|arc\s+shot|360(?:°|\s*-?\s*degrees?)?", "orbit"),
    (r"(?:tracking|following)\s+shot", "dolly in"),
    (r"aerial|drone|fpv", "dolly in"),
    (r"first[\s-]+person|pov", "dolly in"),
    (r"static\s+(?:shot|camera)|fixed\s+camera|locked[\s-]+(?:off|down|camera|shot)"
     r"|camera\s+(?:is\s+)?locked", "static"),
    (r"hand[\s-]?held", None),
    # a bare verb after "camera"; a direction after it is left to the patterns above
    (r"camera\s+" + _ADV + r"(moves|pans|zooms|tilts|rotates|orbits|circles|tracks|follows|pushes"
     r"|pulls|rises|descends|glides|flies|travels|moving|panning|zooming|tilting)"
     r"(?!\s+" + _ADV + r"(?:left|right|across|up|down|in|out|back)\b)",
     {"zooms": "zoom in", "zooming": "zoom in", "pans": "pan right", "panning": "pan right",
      "tilts": "tilt up", "tilting": "tilt up", "rises": "tilt up", "descends": "tilt down",
      "rotates": "orbit", "orbits": "orbit", "circles": "orbit", "pulls": "dolly out",
      None: "dolly in"}),
]
_CAMERA_RES = [(re.compile(r"\b(?:" + p + r")(?![\w])", re.IGNORECASE), n) for p, n in _CAMERA]
# Shot types that only imply a move; an explicit move anywhere in the prompt wins over them.
_IMPLIED = {"(?:tracking|following)", "aerial|drone|fpv", "first[\\s-]+person|pov", "camera\\s+"}
_IMPLIED_RES = {i for i, (p, _) in enumerate(_CAMERA) if any(p.startswith(x) for x in _IMPLIED)}


def camera_phrases(text: str) -> list[tuple[int, int, str | None, bool]]:
    """Every camera phrase as (start, end, normalized motion or None, whether the move is only implied), in text order."""
    found: list[tuple[int, int, str | None, bool]] = []
    for index, (regex, norm) in enumerate(_CAMERA_RES):
        for m in regex.finditer(text):
            if isinstance(norm, dict):
                key = (m.group(1) or "").lower() if m.re.groups else None
                motion = norm.get(key or None, norm.get(None))
            else:
                motion = norm
            found.append((m.start(), m.end(), motion, index in _IMPLIED_RES))
    return sorted(found)


def camera_motion(text: str) -> str | None:
    """The first camera move named in ``text``, normalized for the previsualization renderer.

    Returns one of "zoom in", "zoom out", "pan left", "pan right", "tilt up", "tilt down",
    "dolly in", "dolly out", "orbit", "static", or None. Mapping of the wider vocabulary:
    dolly shot, push in, tracking/following shot, aerial, drone, fpv, first person, pov and a bare
    "camera moves/follows/glides" -> "dolly in"; pull out/back -> "dolly out"; pan across and a
    bare whip pan or "camera pans" -> "pan right"; track/truck left|right -> "pan left|right";
    crane/pedestal up|down -> "tilt up|down"; arc shot, 360, "camera circles/rotates" -> "orbit";
    static shot/camera, fixed camera, locked off/down/camera/shot -> "static". "handheld" names
    no direction, so it is skipped in favour of the next phrase. A move named outright (pan, tilt,
    zoom, dolly, orbit, static) wins over a shot type that only implies one (aerial, tracking,
    first person, a bare "camera moves"), wherever each stands.
    """
    phrases = [(implied, start, motion) for start, _, motion, implied in camera_phrases(text) if motion]
    return min(phrases)[2] if phrases else None  # explicit moves first, then the earliest


# P3 clause splitting (see the module docstring)
_SENTENCE_END = re.compile(r"[.!?;]+(?=\s|$)|\n+")


def _pieces(text: str, splitter: re.Pattern[str]) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in splitter.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _camera_well_placed(text: str, start: int, end: int) -> bool:
    pieces = _pieces(text, _SENTENCE_END)
    if len(pieces) < 2:
        pieces = _pieces(text, re.compile(","))
    if len(pieces) >= 2:
        first, last = pieces[0], pieces[-1]
        return start < first[1] or end > last[0]
    return len(text) < 80 or start < 0.25 * len(text) or end > 0.75 * len(text)


# P4
_OPENER = re.compile(
    r"\s*(generate|create|make|show\s+(?:me|us)|please|can\s+you|could\s+you|would\s+you"
    r"|i\s+want|i\s+would\s+like|i['’]d\s+like)(?![\w'’-])",
    re.IGNORECASE,
)

# P7
_FOREIGN = frozenset(
    "und der das ein eine einen einem mit auf ist nicht von zu im sich über für bei dem durch nach"
    " wird sind el los las una por para con del al y que es se su como muy le les une des est dans"
    " avec sur et du au pour qui sous il della nel che di gli sono uno um uma com não em da na la"
    " de un".split()
)
_ENGLISH = frozenset(
    "the a an of and in on with at to is by from its his her their into under over".split()
)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def _non_english(text: str) -> str | None:
    """Why ``text`` looks non-English, or None (heuristic in the module docstring)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    share = sum(not c.isascii() for c in letters) / len(letters)
    if share >= 0.3:
        return f"{share:.0%} of its letters are non-ASCII"
    words = [w.lower() for w in _WORD.findall(text)]
    foreign = [w for w in words if w in _FOREIGN]
    english = sum(w in _ENGLISH for w in words)
    if (len(foreign) >= 2 and len(foreign) > english) or (foreign and not english and share > 0):
        shown = ", ".join(f'"{w}"' for w in dict.fromkeys(foreign))
        return f"it uses non-English function words ({shown})"
    return None


def lint_prompt(
    text: str, *, task_type: str = "TEXT_VIDEO", duration_s: int | None = None, limits: Limits = NOVA_REEL_V1_1
) -> list[LintWarning]:
    """Lint one prompt against ``limits`` (a model's; Nova Reel's by default); warnings come sorted by start position."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type {task_type!r} is not one of {sorted(TASK_TYPES)}")
    limit = limits.automated_text_max if task_type == MULTI_SHOT_AUTOMATED else limits.text_max
    n = len(text)
    if not text.strip():
        return [LintWarning("P1", "empty", "error",
                            f"the prompt is empty; {task_type} needs 1..{limit} characters", 0, 0,
                            "describe the subject, action, setting, lighting and camera motion")]
    out: list[LintWarning] = []
    if n > limit:
        out.append(LintWarning(
            "P1", "too-long", "error",
            f"the prompt is {n} characters; {task_type} allows at most {limit}", limit, n,
            f"cut {n - limit} character{'s' if n - limit != 1 else ''}: drop filler words or repeated style tags"))

    for m in _NEGATION.finditer(text):
        after = re.match(r"\s+([\w'-]+(?:\s+[\w'-]+)?)", text[m.end():])
        negated = f'{m.group()} {after.group(1)}' if after else m.group()
        out.append(LintWarning(
            "P2", "negation", "warning",
            f'"{m.group()}" — the model does not understand negation '
            "and tends to show what you negate",
            m.start(), m.end(),
            f'describe what should be there instead of "{negated}" '
            '(e.g. "an empty fruit basket", not "a basket with no fruit")'))

    phrases = camera_phrases(text)
    if phrases:
        start, end = phrases[0][:2]
        phrase = text[start:end]
        if not _camera_well_placed(text, start, end):
            out.append(LintWarning(
                "P3", "camera-placement", "warning",
                f'"{phrase}" — camera motion works best at the start or the end of the prompt',
                start, end,
                f'move "{phrase}" into the first or the last sentence '
                f'(e.g. end the prompt with "{phrase.capitalize()}.")'))

    opener = _OPENER.match(text)
    if opener:
        s, e = opener.span(1)
        out.append(LintWarning(
            "P4", "command", "warning",
            f'"{text[s:e]}" — write a caption of the video, not a command or a request',
            s, e,
            'start with the subject or the shot, e.g. "Cinematic shot of a red fox in the snow"'))
    stripped = text.rstrip()
    if stripped.endswith("?"):
        q = len(stripped) - 1
        out.append(LintWarning(
            "P4", "question", "warning",
            '"?" — a question reads as conversation, not as a description of the video',
            q, q + 1, "state what the video shows as a plain description ending with a period"))

    if task_type == "MULTI_SHOT_AUTOMATED" and (duration_s is None or duration_s > 6):
        if len(text.strip()) < _SHORT_AUTOMATED:
            secs = f"{duration_s} s" if duration_s else "multi-shot"
            out.append(LintWarning(
                "P6", "short-multi-shot", "info",
                f"the prompt is {len(text.strip())} characters for a {secs} video; the model "
                f"plans every shot from it",
                0, 0, f"write a longer prompt (up to {limits.automated_text_max} characters) that describes each scene, "
                "the story's progression, the style and the camera work"))

    reason = _non_english(text)
    if reason:
        out.append(LintWarning(
            "P7", "non-english", "warning",
            f"the prompt does not look like English: {reason}; Nova Reel supports English only",
            0, 0, "translate the prompt into English; keep proper names as they are"))

    return sorted(out, key=lambda w: (w.start, w.end, w.rule))


def lint_shots(shots: list[str], limits: Limits = NOVA_REEL_V1_1) -> list[tuple[int, LintWarning]]:
    """Lint each MULTI_SHOT_MANUAL shot prompt (rule P8); returns (shot index, warning) pairs."""
    return [
        (i, warning)
        for i, shot in enumerate(shots)
        for warning in lint_prompt(shot, task_type="MULTI_SHOT_MANUAL", limits=limits)
    ]

