"""What the previz reads in a prompt: a documented vocabulary and a small grammar, no model.

The vocabulary is the tables below (docs/previz.md lists them for users). The grammar:

- The prompt is split into clauses at sentence ends, commas, semicolons and " and ".
- Setting, light and weather words count wherever they stand; the first light word wins, and so
  does the first weather word ("snow" alone is the ground, "snowfall", "snowing", "falling snow"
  or "snow falls" is the weather, and it whitens the ground too).
- A subject is a noun of :data:`NOUNS` or one of its aliases ("seashell" is a shell, "puppy" a
  dog); a noun said twice is one subject ("the shell" again means the same shell).
- A colour word qualifies the next subject or setting word in its clause when at most two other
  words stand between ("a red wooden boat"), or the one before it after "is/are/painted"
  ("the boat is red"); each subject keeps its own colour.
- A spatial word (left, right, centre, foreground, background, in the sky, on the water, in the
  sand...) and a size word (large, small, closeup...) belong to the nearest subject of the clause.
- A motion verb belongs to the nearest subject before it in the clause, or to the water when it
  follows a water word ("waves flow"); a direction right after it ("runs left") is its heading.
- The camera move is reelforge.request.prompts.camera_motion's, with "camera follows" and tracking or
  following shots read as "follow" (the v1 renderer reads those as a dolly in).
- Every other word that is not a function word is reported as ignored.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from reelforge.request.prompts import camera_motion, camera_phrases
from reelforge.engines.previz.vocabulary import (
    COLOURS, DEPTHS, LIGHTS, MOTION_VERBS, NOUNS, PLACES, SETTINGS, SIDES, SIZES, STOPWORDS, WATER, WEATHERS,
)


__all__ = ["Reading", "Subject", "read_prompt"]

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


@dataclass
class Subject:
    """One subject as understood: where, what colour, how big, how it moves."""

    noun: str
    word: str  # as written ("seashell")
    colour: str | None = None  # a named colour, or None for the noun's own
    rgb: tuple[int, int, int] = (128, 128, 128)
    side: str | None = None  # left, centre, right; None: placed by the seed
    depth: str = "middle"  # foreground, middle, background
    place: str = "ground"  # ground, sky, water, sand
    size: float = 1.0
    motion: str | None = None
    heading: str | None = None  # left or right, for moving subjects
    x: float = 0.0  # horizontal position in frame widths from the centre (set by the layout)
    near: str | None = None  # "beside the lighthouse": the noun it stands next to


@dataclass
class Reading:
    """Everything the previz understood in a prompt (the manifest's ``previz`` entry)."""

    setting: list[dict[str, str]] = field(default_factory=list)  # [{"kind": "beach", "word": "sand"}]
    light: str = "noon"
    weather: str = "clear"
    subjects: list[Subject] = field(default_factory=list)
    motions: list[dict[str, str]] = field(default_factory=list)  # [{"who": "waves", "verb": "flow"}]
    camera: str = "static"
    follows: str | None = None  # the subject a "camera follows" shot keeps in frame
    ignored: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)  # what the prompt left out and the previz chose
    setting_colours: dict[str, str] = field(default_factory=dict)  # {"sea": "blue"}

    @property
    def kinds(self) -> list[str]:
        return [s["kind"] for s in self.setting]

    def manifest(self) -> dict:
        d = asdict(self)
        for s in d["subjects"]:
            s["rgb"] = list(s["rgb"])
            s["x"] = round(s["x"], 3)
        return d

    def summary(self) -> str:
        """One line for people: what the previz will draw."""
        def named(s: dict[str, str]) -> str:
            colour = self.setting_colours.get(s["kind"])
            word = f"{colour} {s['word']}" if colour else s["word"]
            return word if s["word"] == s["kind"] else f"{word} ({s['kind']})"

        where = ", ".join(named(s) for s in self.setting)
        parts = [f"{where or 'open field'} at {self.light}, {self.weather}"]
        for s in self.subjects:
            bits = [s.near or s.side or "placed by seed", s.depth]
            if s.place != "ground":
                bits.append({"sky": "in the sky", "water": "on the water", "sand": "in the sand"}[s.place])
            if s.size != 1.0:
                bits.append(f"size x{s.size:g}")
            if s.motion:
                bits.append(s.motion + (f" {s.heading}" if s.heading else ""))
            parts.append(f"{s.colour + ' ' if s.colour else ''}{s.noun} ({', '.join(bits)})")
        parts += [f'{m["who"]} {m["verb"]}' for m in self.motions if m["who"] not in {s.noun for s in self.subjects}]
        parts.append(f"camera {self.camera}" + (f" the {self.follows}" if self.follows else ""))
        if self.ignored:
            parts.append("ignored: " + ", ".join(self.ignored))
        return "; ".join(parts)


def _lookup(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {w: name for name, words in table.items() for w in (name, *words)}


_SETTING_WORDS = _lookup(SETTINGS)
_LIGHT_WORDS = _lookup(LIGHTS)
_WEATHER_WORDS = _lookup(WEATHERS)
_VERB_WORDS = _lookup(MOTION_VERBS)
_NOUN_WORDS = {w: n for n, (aliases, _, _) in NOUNS.items() for w in (n, *aliases)}
# Multi-word phrases are matched before single words, longest first.
_PHRASES = sorted(
    {p for table in (_SETTING_WORDS, _LIGHT_WORDS, _WEATHER_WORDS, _NOUN_WORDS, _VERB_WORDS, PLACES, SIZES) for p in table if " " in p},
    key=lambda p: (-len(p), p),  # longest first; ties by spelling, so every process reads alike
)
_LINKS = {"is", "are", "painted", "coloured", "colored"}  # "the boat is red"
_CLAUSE = re.compile(r"[.!?;,]+(?=\s|$)|\n+|\s+and\s+|\s+while\s+")


def _tokens(clause: str) -> list[str]:
    """Words of a clause with the vocabulary's multi-word phrases kept as one token."""
    text = " " + " ".join(_WORD.findall(clause.lower())) + " "
    for p in _PHRASES:
        text = text.replace(f" {p} ", f" {p.replace(' ', '_')} ")
    return [t.replace("_", " ") for t in text.split()]


def _camera(text: str) -> tuple[str, list[tuple[int, int]]]:
    phrases = camera_phrases(text)
    move = camera_motion(text) or "static"
    if move == "dolly in" and any(re.search(r"follow|track", text[s:e], re.I) for s, e, m, _ in phrases if m == "dolly in") and not re.search(r"\bdolly|\bpush", text, re.I):
        move = "follow"
    return move, [(s, e) for s, e, _, _ in phrases]


def read_prompt(text: str) -> Reading:
    """What the previz draws for ``text`` (module docstring: the grammar)."""
    reading = Reading(light=None, weather=None)  # type: ignore[arg-type]
    original = text
    reading.camera, camera_spans = _camera(text)
    # camera phrases are read above; blank them so their words ("left", "in") place nothing
    for s, e in camera_spans:
        text = text[:s] + " " * (e - s) + text[e:]
    text = re.sub(r"\bcamera\b", " ", text, flags=re.I)
    subjects: dict[str, Subject] = {}
    ignored: dict[str, None] = {}
    for clause in _CLAUSE.split(text):
        toks = _tokens(clause)
        # what each token is: ("noun", Subject) / ("setting", kind) / ...
        roles: list[tuple[str, Any]] = []
        for i, tok in enumerate(toks):
            roles.extend(_roles(tok, toks[i - 1] if i else "", roles, subjects))
        _apply(roles, reading, subjects)
        for kind, value in roles:
            if kind == "other" and value not in STOPWORDS and len(value) > 1:
                ignored[value] = None
    reading.subjects = list(subjects.values())
    _settle(reading, subjects, original)
    reading.ignored = list(ignored)
    _assume_defaults(reading)
    return reading


def _roles(tok: str, prev: str, roles: list[tuple[str, Any]], subjects: dict[str, Subject]) -> list[tuple[str, Any]]:
    """What one token is, as roles (a place may name a setting too); a new subject joins ``subjects``."""
    if tok in _WEATHER_WORDS:
        return [("weather", _WEATHER_WORDS[tok])]
    if tok in _LIGHT_WORDS:
        return [("light", _LIGHT_WORDS[tok])]
    if tok in _VERB_WORDS and not (tok == "waves" and (prev in {"the", "gentle", "big", "small", "ocean", "sea", ""} or prev in COLOURS or prev in SIZES or not any(r[0] == "noun" for r in roles))):
        return [("verb", _VERB_WORDS[tok])]
    if tok in _NOUN_WORDS:
        noun = _NOUN_WORDS[tok]
        if noun not in subjects:
            aliases, rgb, place = NOUNS[noun]
            subjects[noun] = Subject(noun, tok, rgb=rgb, place=place)
        return [("noun", subjects[noun])]
    if tok in _SETTING_WORDS:
        return [("setting", (_SETTING_WORDS[tok], tok))]
    if tok in COLOURS:
        return [("colour", tok)]
    if tok in PLACES:
        word = tok.split()[-1]
        if word in _SETTING_WORDS:  # "on the sea" names the sea too
            return [("place", PLACES[tok]), ("setting", (_SETTING_WORDS[word], word))]
        return [("place", PLACES[tok])]
    for kind, table in (("side", SIDES), ("depth", DEPTHS), ("size", SIZES)):
        if tok in table:
            return [(kind, table[tok])]
    if tok in {"beside", "next", "by"}:
        return [("beside", tok)]
    return [("other", tok)]


def _settle(reading: Reading, subjects: dict[str, Subject], original: str) -> None:
    """What follows from the whole prompt: where subjects stand, what the camera follows, the main subject."""
    water = any(k in WATER for k in reading.kinds)
    for s in reading.subjects:
        if s.place == "water" and not water:
            s.place = "ground"  # a boat with no water in the prompt stands on the ground
    if any(s.place == "sand" for s in reading.subjects) and not any(k in ("beach", "desert") for k in reading.kinds):
        reading.setting.append({"kind": "beach", "word": "sand"})
    if reading.camera == "follow":
        named = re.search(r"(?:follow|track)\w*\s+(?:the\s+|a\s+|an\s+)?(\w+(?:\s\w+)?)", original, re.I)
        nouns = [_NOUN_WORDS.get(w) for w in (named.group(1).lower(), named.group(1).lower().split()[0]) if named] if named else []
        target = next((n for n in nouns if n in subjects), None)
        target = target or next((s.noun for s in reading.subjects if s.motion), None)
        reading.follows = target or (reading.subjects[0].noun if reading.subjects else None)
    if reading.subjects and reading.subjects[0].side is None and reading.subjects[0].near is None:
        reading.subjects[0].side = "centre"  # the first subject named is the main one


def _assume_defaults(reading: Reading) -> None:
    """A field at noon in clear weather where the prompt says none, each noted as assumed."""
    if not reading.setting:
        reading.assumed.append("setting: field")
    if reading.light is None:
        reading.light = "noon"
        reading.assumed.append("light: noon")
    if reading.weather is None:
        reading.weather = "clear"
        reading.assumed.append("weather: clear")


def _nearest(roles: list[tuple[str, Any]], i: int, *, before_only: bool = False) -> Subject | None:
    best, dist = None, None
    for j, (kind, value) in enumerate(roles):
        if kind != "noun" or (before_only and j > i):
            continue
        d = abs(j - i) + (0.5 if j > i else 0)  # ties go to the subject before
        if dist is None or d < dist:
            best, dist = value, d
    return best


def _apply(roles: list[tuple[str, Any]], reading: Reading, subjects: dict[str, Subject]) -> None:
    for i, (kind, value) in enumerate(roles):
        if kind == "light":
            reading.light = reading.light or value  # the first light word wins
        elif kind == "weather":
            reading.weather = reading.weather or value
        elif kind == "setting":
            k, word = value
            if k not in reading.kinds:
                reading.setting.append({"kind": k, "word": word})
        elif kind == "colour":
            _apply_colour(roles, i, value, reading)
        elif kind in ("side", "depth", "place", "size"):
            _apply_placement(roles, i, kind, value)
        elif kind == "beside":
            s, other = _nearest(roles, i, before_only=True), next((v for k, v in roles[i + 1:i + 5] if k == "noun"), None)
            if s is not None and other is not None and other is not s:
                s.near = f"beside {other.noun}"
        elif kind == "verb":
            _apply_verb(roles, i, value, reading)


def _apply_colour(roles: list[tuple[str, Any]], i: int, value: str, reading: Reading) -> None:
    """A colour word on the subject or setting it qualifies ("a red wooden boat", "the sea is grey")."""
    target = None
    for j in range(i + 1, min(len(roles), i + 4)):  # "a red wooden boat"
        if roles[j][0] in ("noun", "setting"):
            target = roles[j]
            break
        if roles[j][0] not in ("other", "size", "colour"):
            break
    if target is None and i >= 2 and roles[i - 1][0] == "other" and roles[i - 1][1] in _LINKS:
        if roles[i - 2][0] in ("noun", "setting"):
            target = roles[i - 2]
    if target is None:
        return
    if target[0] == "noun":
        s = target[1]
        if s.colour is None:
            s.colour, s.rgb = value, COLOURS[value]
    else:
        reading.setting_colours.setdefault(target[1][0], value)


def _apply_placement(roles: list[tuple[str, Any]], i: int, kind: str, value) -> None:
    """A side, depth, place or size word on the nearest subject."""
    prev = roles[i - 1] if i else ("", "")
    if kind == "side" and prev[0] == "verb":
        return  # a heading, read with the verb
    s = _nearest(roles, i)
    if kind == "place" and value == "water":  # what floats takes "on the water" first
        floating = [(j, v) for j, (k, v) in enumerate(roles) if k == "noun" and NOUNS[v.noun][2] == "water"]
        if floating:
            s = min(floating, key=lambda jv: abs(jv[0] - i))[1]
    if s is None:
        return
    if kind == "side":
        if i + 1 < len(roles) and roles[i + 1][1] == "of" and i + 2 < len(roles):
            other = next((v for k, v in roles[i + 2:i + 5] if k == "noun"), None)
            if other is not None and other is not s:
                s = next((v for k, v in roles[:i] if k == "noun" and v is not other), s)  # "a dog left of the house"
                s.near = f"{value} of {other.noun}"
                return
        s.side = value
    elif kind == "depth":
        s.depth = value
    elif kind == "place":
        s.place = value
    else:
        s.size = max(s.size, value) if value > 1 else min(s.size, value)
        if value >= 2.4:
            s.depth = "foreground"


def _apply_verb(roles: list[tuple[str, Any]], i: int, value, reading: Reading) -> None:
    """A verb on the subject before it (or the nearest), or on the water setting it follows ("the sea churns")."""
    who: Subject | None = _nearest(roles, i, before_only=True)
    before = [r for r in roles[:i] if r[0] in ("noun", "setting")]
    if before and before[-1][0] == "setting" and before[-1][1][0] in WATER:
        reading.motions.append({"who": before[-1][1][1], "verb": value})
        return
    if who is None:
        who = _nearest(roles, i)
    if who is None:
        return
    if who.motion is None:
        who.motion = value
        heading = next((v for k, v in roles[i + 1:i + 4] if k == "side" and v != "centre"), None)
        who.heading = heading
        reading.motions.append({"who": who.noun, "verb": value})
