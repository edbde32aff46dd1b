"""The previz"s vocabulary: the words it knows for settings, light, weather, colours, motions, subjects,
sides, depths, places and sizes (docs/previz.md lists them for users)."""

from __future__ import annotations

__all__ = ["COLOURS", "DEPTHS", "LIGHTS", "MOTION_VERBS", "NOUNS", "PLACES", "SETTINGS", "SIDES", "SIZES", "STOPWORDS", "WATER", "WEATHERS"]

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
