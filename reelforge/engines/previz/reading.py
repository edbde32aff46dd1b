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

from reelforge.request.prompts import camera_motion, camera_phrases

__all__ = ["COLOURS", "LIGHTS", "MOTION_VERBS", "NOUNS", "SETTINGS", "WEATHERS", "Reading", "Subject", "read_prompt"]

# Settings: canonical name -> the words that name it.
SETTINGS: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "sand", "sandy", "shore", "seashore", "coast"),
    "sea": ("sea", "ocean", "waves", "wave", "surf", "harbour", "harbor", "bay"),
    "lake": ("lake", "pond"),
    "river": ("river", "stream", "creek"),
    "forest": ("forest", "woods", "jungle", "woodland"),
    "field": ("field", "meadow", "grass", "grassland", "farm", "prairie", "park", "garden", "hills"),
    "mountains": ("mountain", "mountains", "cliff", "cliffs", "peak", "peaks", "valley", "hill"),
    "desert": ("desert", "dune", "dunes"),
    "snow": ("snow", "snowy", "ice", "icy", "glacier", "arctic", "winter"),
    "city": ("city", "street", "road", "town", "downtown", "avenue", "alley", "skyline"),
    "interior": ("room", "interior", "kitchen", "bedroom", "office", "hall", "indoors", "inside", "studio"),
    "space": ("space", "galaxy", "cosmos", "nebula"),
}
WATER = ("sea", "lake", "river")
LIGHTS: dict[str, tuple[str, ...]] = {
    "dawn": ("dawn", "daybreak", "sunrise"),
    "morning": ("morning",),
    "noon": ("noon", "midday", "daylight", "daytime", "afternoon", "sunny"),
    "golden hour": ("golden hour",),
    "sunset": ("sunset", "sundown"),
    "dusk": ("dusk", "twilight", "evening"),
    "night": ("night", "midnight", "nighttime", "nocturnal"),
    "moonlight": ("moonlight", "moonlit"),
}
WEATHERS: dict[str, tuple[str, ...]] = {
    "clear": ("clear", "cloudless"),
    "fog": ("fog", "foggy", "mist", "misty", "haze", "hazy"),
    "rain": ("rain", "rainy", "raining", "drizzle", "downpour"),
    "snowfall": ("snowfall", "snowing", "snowflakes", "blizzard", "falling snow", "snow falls", "snow falling"),
    "storm": ("storm", "stormy", "thunder", "thunderstorm", "lightning"),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 35), "crimson": (180, 20, 50), "scarlet": (230, 40, 20), "maroon": (120, 20, 30),
    "orange": (245, 130, 20), "yellow": (245, 215, 30), "gold": (220, 180, 40), "golden": (225, 185, 50),
    "green": (40, 170, 60), "emerald": (20, 150, 90), "lime": (150, 220, 40), "olive": (110, 120, 40),
    "teal": (20, 140, 140), "turquoise": (50, 210, 200), "cyan": (30, 210, 230),
    "blue": (30, 80, 210), "navy": (20, 30, 110), "indigo": (70, 40, 150),
    "purple": (130, 50, 170), "violet": (150, 90, 220), "magenta": (220, 40, 180), "pink": (245, 130, 180),
    "brown": (125, 80, 40), "tan": (205, 170, 120), "beige": (225, 210, 175),
    "white": (245, 245, 245), "ivory": (250, 245, 225), "silver": (190, 195, 205),
    "grey": (128, 128, 128), "gray": (128, 128, 128), "black": (25, 25, 28),
}
# Motion verbs: canonical verb -> its forms and near synonyms.
MOTION_VERBS: dict[str, tuple[str, ...]] = {
    "walk": ("walk", "walks", "walking", "walked", "strolls", "strolling", "wanders", "wandering", "marches", "marching"),
    "run": ("run", "runs", "running", "ran", "gallops", "galloping", "sprints", "sprinting", "races", "racing", "dashes"),
    "fly": ("fly", "flies", "flying", "flew", "soars", "soaring", "glides", "gliding", "hovers", "hovering"),
    "drift": ("drift", "drifts", "drifting", "floats", "floating", "sails", "sailing", "swims", "swimming", "bobs", "bobbing"),
    "flow": ("flow", "flows", "flowing", "ripple", "ripples", "rippling", "crash", "crashes", "crashing", "lap", "laps", "lapping", "roll", "rolls", "rolling"),
    "spin": ("spin", "spins", "spinning", "rotates", "rotating", "twirls", "twirling", "turns", "turning"),
    "fall": ("fall", "falls", "falling", "fell", "drops", "dropping", "tumbles", "tumbling"),
    "rise": ("rise", "rises", "rising", "rose", "climbs", "climbing", "ascends", "ascending", "lifts", "floats up"),
    "wave": ("waves", "waving", "waved", "sways", "swaying"),
}
# Subjects: canonical noun -> (aliases, default colour, natural place: ground, sky or water).
NOUNS: dict[str, tuple[tuple[str, ...], tuple[int, int, int], str]] = {
    # people
    "person": (("man", "woman", "men", "women", "people", "figure", "someone", "human", "hiker", "traveler", "traveller", "surfer"), (60, 70, 110), "ground"),
    "child": (("kid", "boy", "girl", "children", "kids", "toddler"), (200, 90, 60), "ground"),
    "astronaut": (("spaceman", "cosmonaut"), (235, 235, 240), "ground"),
    # animals
    "dog": (("dogs", "puppy", "hound", "retriever", "terrier", "wolf"), (150, 95, 50), "ground"),
    "cat": (("cats", "kitten", "kitty"), (90, 90, 95), "ground"),
    "horse": (("horses", "pony", "stallion", "mare"), (120, 70, 35), "ground"),
    "cow": (("cows", "cattle", "bull", "ox"), (70, 60, 55), "ground"),
    "sheep": (("lamb", "lambs"), (235, 230, 215), "ground"),
    "bird": (("birds", "seagull", "gull", "gulls", "eagle", "crow", "sparrow", "pigeon", "hawk"), (60, 60, 70), "sky"),
    "fish": (("fishes", "goldfish", "salmon", "trout"), (240, 140, 40), "water"),
    "whale": (("whales", "orca"), (60, 80, 110), "water"),
    "dolphin": (("dolphins", "porpoise"), (120, 140, 165), "water"),
    "rabbit": (("rabbits", "bunny", "hare"), (190, 170, 150), "ground"),
    "deer": (("stag", "doe", "reindeer", "elk", "moose"), (150, 100, 55), "ground"),
    "fox": (("foxes",), (215, 100, 30), "ground"),
    "bear": (("bears", "grizzly"), (90, 60, 40), "ground"),
    "elephant": (("elephants",), (130, 130, 135), "ground"),
    "giraffe": (("giraffes",), (215, 165, 70), "ground"),
    "butterfly": (("butterflies", "moth"), (240, 150, 40), "sky"),
    "duck": (("ducks", "swan", "goose", "geese"), (240, 240, 235), "water"),
    "snake": (("snakes", "serpent", "python"), (70, 130, 50), "ground"),
    "turtle": (("turtles", "tortoise"), (70, 120, 60), "ground"),
    "crab": (("crabs", "lobster"), (220, 70, 40), "ground"),
    "penguin": (("penguins",), (30, 30, 35), "ground"),
    "starfish": (("sea star",), (240, 120, 70), "ground"),
    "owl": (("owls",), (140, 110, 80), "sky"),
    # vehicles
    "car": (("cars", "automobile", "taxi", "sedan", "jeep"), (200, 40, 40), "ground"),
    "bus": (("buses", "coach", "tram"), (240, 190, 30), "ground"),
    "truck": (("trucks", "lorry", "van"), (80, 110, 160), "ground"),
    "bicycle": (("bike", "bicycles", "bikes", "cyclist"), (40, 40, 45), "ground"),
    "boat": (("boats", "rowboat", "canoe", "kayak", "dinghy"), (170, 90, 50), "water"),
    "sailboat": (("sailboats", "yacht", "sailing boat"), (245, 245, 245), "water"),
    "ship": (("ships", "ferry", "steamer", "liner", "tanker"), (90, 90, 100), "water"),
    "train": (("trains", "locomotive"), (60, 60, 70), "ground"),
    "plane": (("airplane", "aeroplane", "aircraft", "jet", "planes"), (225, 225, 230), "sky"),
    "helicopter": (("helicopters", "chopper"), (60, 90, 60), "sky"),
    "rocket": (("rockets", "spaceship", "spacecraft"), (235, 235, 240), "ground"),
    "balloon": (("balloons", "hot air balloon", "hot-air balloon"), (230, 60, 60), "sky"),
    "submarine": (("submarines",), (230, 200, 40), "water"),
    # buildings
    "house": (("houses", "home", "cottage", "cabin", "hut"), (190, 140, 100), "ground"),
    "lighthouse": (("lighthouses",), (240, 240, 240), "ground"),
    "castle": (("castles", "palace", "fortress"), (160, 150, 140), "ground"),
    "tower": (("towers",), (150, 140, 130), "ground"),
    "church": (("churches", "chapel", "cathedral"), (210, 200, 185), "ground"),
    "skyscraper": (("skyscrapers", "building", "buildings"), (110, 130, 150), "ground"),
    "barn": (("barns", "farmhouse", "stable"), (170, 45, 35), "ground"),
    "tent": (("tents",), (230, 140, 40), "ground"),
    "bridge": (("bridges",), (120, 100, 80), "ground"),
    "windmill": (("windmills",), (200, 190, 170), "ground"),
    # plants
    "tree": (("trees", "oak", "maple"), (50, 120, 50), "ground"),
    "palm": (("palm tree", "palm trees", "palms", "coconut tree"), (40, 140, 60), "ground"),
    "pine": (("pine tree", "pines", "fir", "spruce", "christmas tree"), (30, 90, 50), "ground"),
    "flower": (("flowers", "rose", "roses", "tulip", "daisy", "sunflower"), (230, 60, 120), "ground"),
    "cactus": (("cacti", "cactuses"), (70, 140, 70), "ground"),
    "mushroom": (("mushrooms", "toadstool"), (210, 50, 40), "ground"),
    # everyday objects
    "shell": (("seashell", "shells", "seashells", "conch"), (245, 175, 150), "ground"),
    "kite": (("kites",), (220, 50, 60), "sky"),
    "umbrella": (("umbrellas", "parasol"), (220, 60, 60), "ground"),
    "chair": (("chairs", "armchair", "stool"), (140, 90, 50), "ground"),
    "table": (("tables", "desk"), (150, 100, 60), "ground"),
    "lamp": (("lamps", "streetlight", "street lamp", "lamppost", "lantern"), (60, 60, 60), "ground"),
    "clock": (("clocks", "watch"), (230, 225, 210), "ground"),
    "cup": (("cups", "mug", "teacup", "coffee"), (240, 240, 240), "ground"),
    "ball": (("balls", "football", "soccer ball", "basketball", "beach ball"), (240, 120, 30), "ground"),
    "guitar": (("guitars",), (190, 110, 40), "ground"),
    "robot": (("robots", "android", "droid"), (170, 180, 190), "ground"),
    "rock": (("rocks", "stone", "stones", "boulder", "boulders", "pebble"), (120, 115, 110), "ground"),
    "sandcastle": (("sand castle", "sandcastles"), (220, 190, 130), "ground"),
    "snowman": (("snowmen",), (245, 245, 250), "ground"),
    "book": (("books", "notebook"), (150, 40, 40), "ground"),
}
SIDES = {
    "left": "left", "right": "right", "centre": "centre", "center": "centre", "middle": "centre", "central": "centre",
}
DEPTHS = {
    "foreground": "foreground", "front": "foreground", "near": "foreground", "nearby": "foreground", "close": "foreground",
    "background": "background", "distance": "background", "distant": "background", "far": "background", "horizon": "background",
}
PLACES = {  # phrase -> place
    "in the sky": "sky", "in the air": "sky", "overhead": "sky", "above": "sky", "aloft": "sky",
    "on the water": "water", "on the sea": "water", "on the lake": "water", "on the river": "water",
    "on the ocean": "water", "on the waves": "water", "in the water": "water", "in the sea": "water",
    "in the sand": "sand", "on the sand": "sand", "on the beach": "sand",
}
SIZES = {
    "large": 1.5, "big": 1.5, "huge": 2.0, "giant": 2.0, "enormous": 2.0, "tall": 1.3, "massive": 2.0,
    "small": 0.65, "little": 0.65, "tiny": 0.45,
    "closeup": 2.4, "close-up": 2.4, "macro": 2.6, "extreme closeup": 3.0,
}
STOPWORDS = frozenset(
    "a an the of in on at to is are was be by with and or from its his her their into onto over under"
    " through across along around toward towards beside next near behind between above below as it this"
    " that these those there here while who which some one two three several many very slowly quickly"
    " gently softly camera shot view scene video frame up down out back s".split()
)
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
        roles: list[tuple[str, object]] = []
        for i, tok in enumerate(toks):
            prev = toks[i - 1] if i else ""
            if tok in _WEATHER_WORDS:
                roles.append(("weather", _WEATHER_WORDS[tok]))
            elif tok in _LIGHT_WORDS:
                roles.append(("light", _LIGHT_WORDS[tok]))
            elif tok in _VERB_WORDS and not (tok == "waves" and (prev in {"the", "gentle", "big", "small", "ocean", "sea", ""} or prev in COLOURS or prev in SIZES or not any(r[0] == "noun" for r in roles))):
                roles.append(("verb", _VERB_WORDS[tok]))
            elif tok in _NOUN_WORDS:
                noun = _NOUN_WORDS[tok]
                if noun not in subjects:
                    aliases, rgb, place = NOUNS[noun]
                    subjects[noun] = Subject(noun, tok, rgb=rgb, place=place)
                roles.append(("noun", subjects[noun]))
            elif tok in _SETTING_WORDS:
                roles.append(("setting", (_SETTING_WORDS[tok], tok)))
            elif tok in COLOURS:
                roles.append(("colour", tok))
            elif tok in PLACES:
                roles.append(("place", PLACES[tok]))
                word = tok.split()[-1]
                if word in _SETTING_WORDS:  # "on the sea" names the sea too
                    roles.append(("setting", (_SETTING_WORDS[word], word)))
            elif tok in SIDES:
                roles.append(("side", SIDES[tok]))
            elif tok in DEPTHS:
                roles.append(("depth", DEPTHS[tok]))
            elif tok in SIZES:
                roles.append(("size", SIZES[tok]))
            elif tok in {"beside", "next", "by"}:
                roles.append(("beside", tok))
            else:
                roles.append(("other", tok))
        _apply(roles, reading, subjects)
        for kind, value in roles:
            if kind == "other" and value not in STOPWORDS and len(value) > 1:
                ignored[value] = None
    reading.subjects = list(subjects.values())
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
    reading.ignored = list(ignored)
    if not reading.setting:
        reading.assumed.append("setting: field")
    if reading.light is None:
        reading.light = "noon"
        reading.assumed.append("light: noon")
    if reading.weather is None:
        reading.weather = "clear"
        reading.assumed.append("weather: clear")
    return reading


def _nearest(roles: list[tuple[str, object]], i: int, *, before_only: bool = False) -> Subject | None:
    best, dist = None, None
    for j, (kind, value) in enumerate(roles):
        if kind != "noun" or (before_only and j > i):
            continue
        d = abs(j - i) + (0.5 if j > i else 0)  # ties go to the subject before
        if dist is None or d < dist:
            best, dist = value, d
    return best  # type: ignore[return-value]


def _apply(roles: list[tuple[str, object]], reading: Reading, subjects: dict[str, Subject]) -> None:
    for i, (kind, value) in enumerate(roles):
        if kind == "light":
            reading.light = reading.light or value  # type: ignore[assignment]  (the first light word wins)
        elif kind == "weather":
            reading.weather = reading.weather or value  # type: ignore[assignment]
        elif kind == "setting":
            k, word = value  # type: ignore[misc]
            if k not in reading.kinds:
                reading.setting.append({"kind": k, "word": word})
        elif kind == "colour":
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
                continue
            if target[0] == "noun":
                s = target[1]
                if s.colour is None:  # type: ignore[union-attr]
                    s.colour, s.rgb = value, COLOURS[value]  # type: ignore[union-attr, index]
            else:
                reading.setting_colours.setdefault(target[1][0], value)  # type: ignore[index]
        elif kind in ("side", "depth", "place", "size"):
            prev = roles[i - 1] if i else ("", "")
            if kind == "side" and prev[0] == "verb":
                continue  # a heading, read with the verb
            s = _nearest(roles, i)
            if kind == "place" and value == "water":  # what floats takes "on the water" first
                floating = [(j, v) for j, (k, v) in enumerate(roles) if k == "noun" and NOUNS[v.noun][2] == "water"]  # type: ignore[union-attr]
                if floating:
                    s = min(floating, key=lambda jv: abs(jv[0] - i))[1]  # type: ignore[assignment]
            if s is None:
                continue
            if kind == "side":
                if i + 1 < len(roles) and roles[i + 1][1] == "of" and i + 2 < len(roles):
                    other = next((v for k, v in roles[i + 2:i + 5] if k == "noun"), None)
                    if other is not None and other is not s:
                        s = next((v for k, v in roles[:i] if k == "noun" and v is not other), s)  # "a dog left of the house"
                        s.near = f"{value} of {other.noun}"  # type: ignore[union-attr]
                        continue
                s.side = value  # type: ignore[assignment]
            elif kind == "depth":
                s.depth = value  # type: ignore[assignment]
            elif kind == "place":
                s.place = value  # type: ignore[assignment]
            else:
                s.size = max(s.size, value) if value > 1 else min(s.size, value)  # type: ignore[operator]
                if value >= 2.4:
                    s.depth = "foreground"
        elif kind == "beside":
            s, other = _nearest(roles, i, before_only=True), next((v for k, v in roles[i + 1:i + 5] if k == "noun"), None)
            if s is not None and other is not None and other is not s:
                s.near = f"beside {other.noun}"
        elif kind == "verb":
            who: Subject | None = _nearest(roles, i, before_only=True)
            before = [r for r in roles[:i] if r[0] in ("noun", "setting")]
            if before and before[-1][0] == "setting" and before[-1][1][0] in WATER:  # type: ignore[index]
                reading.motions.append({"who": before[-1][1][1], "verb": value})  # type: ignore[index, dict-item]
                continue
            if who is None:
                who = _nearest(roles, i)
            if who is None:
                continue
            if who.motion is None:
                who.motion = value  # type: ignore[assignment]
                heading = next((v for k, v in roles[i + 1:i + 4] if k == "side" and v != "centre"), None)
                who.heading = heading  # type: ignore[assignment]
                reading.motions.append({"who": who.noun, "verb": value})  # type: ignore[dict-item]
