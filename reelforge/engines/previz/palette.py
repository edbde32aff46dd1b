"""The previz's colours: skies per light, how light and weather grade the set, grounds, water and far layers."""

from __future__ import annotations


# Sky colours (top, horizon) for each light.
SKY = {
    "dawn": ((90, 105, 170), (250, 180, 150)), "morning": ((105, 160, 225), (205, 225, 240)),
    "noon": ((60, 130, 225), (175, 210, 245)), "golden hour": ((120, 145, 200), (255, 200, 120)),
    "sunset": ((230, 105, 70), (255, 185, 90)), "dusk": ((45, 45, 95), (195, 110, 120)),
    "night": ((6, 8, 26), (22, 28, 58)), "moonlight": ((14, 24, 58), (48, 66, 108)),
}
# How the light tints the set and its subjects (per channel).
GRADE = {
    "dawn": (0.85, 0.76, 0.8), "morning": (1.0, 0.98, 0.95), "noon": (1.0, 1.0, 1.0),
    "golden hour": (1.05, 0.9, 0.7), "sunset": (1.0, 0.74, 0.6), "dusk": (0.55, 0.5, 0.65),
    "night": (0.22, 0.24, 0.38), "moonlight": (0.33, 0.37, 0.52),
}
WEATHER_SKY = {"fog": ((200, 200, 205), 0.65), "rain": ((105, 110, 122), 0.6), "storm": ((55, 58, 72), 0.7), "snowfall": ((200, 205, 215), 0.55)}
WEATHER_DIM = {"clear": 1.0, "fog": 0.92, "rain": 0.8, "storm": 0.6, "snowfall": 0.95}
GROUND = {  # first kind found wins, in this order
    "snow": (238, 242, 250), "desert": (215, 170, 100), "beach": (222, 200, 150), "city": (95, 95, 105),
    "forest": (55, 95, 45), "field": (95, 155, 70), "mountains": (105, 130, 80), "interior": (150, 110, 75),
}
WATER_RGB = {"sea": (35, 100, 165), "lake": (60, 125, 165), "river": (60, 120, 150)}
FAR_RGB = {"mountains": (110, 115, 135), "forest": (35, 75, 45), "city": (85, 90, 108), "desert": (200, 150, 90), "field": (80, 135, 70), "snow": (215, 222, 235)}


def grade(rgb, light: str, weather: str) -> tuple[int, int, int]:
    """``rgb`` as the light tints it and the weather dims it."""
    g, dim = GRADE[light], WEATHER_DIM[weather]
    return tuple(int(min(255, c * k * dim)) for c, k in zip(rgb, g))  # type: ignore[return-value]


def mix(a, b, k: float) -> tuple[int, int, int]:
    """The colour ``k`` of the way from ``a`` to ``b``."""
    return tuple(int(x + (y - x) * k) for x, y in zip(a, b))  # type: ignore[return-value]
