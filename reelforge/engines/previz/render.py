"""The previz's set: sky, far, water and ground layers plus subjects at depths, shot by a camera.

Everything is vector-drawn at the frame's own size, once per frame, from point arrays computed
once per shot: a layer at parallax p (0 for the sky, 1 for the nearest ground) is shifted by
p times the camera's travel and scaled by the zoom and by the dolly's push (near layers grow
faster), so pans and dollies show parallax and zooms and orbits move the camera, not the picture.
The sky is one gradient column per frame, broadcast; no large raster is resampled. A
conditioning image is the plate instead of the drawn layers: frame 0 exactly, the subjects
entering after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reelforge.engines.animatic import CANVAS_SCALE, Overlay, image_canvas, seeded_rng, smooth
from reelforge.engines.base import ShotPlan
from reelforge.engines.previz.palette import FAR_RGB, GROUND, SKY, WATER_RGB, WEATHER_SKY, grade, mix
from reelforge.engines.previz.reading import read_prompt
from reelforge.engines.previz.staging import HORIZON, Placed, layout
from reelforge.engines.previz.vocabulary import COLOURS, WATER
from reelforge.engines.previz.shapes import draw_subject

SKY_P, PLATE_P = 0.02, 0.6  # parallax of the sky and of a conditioning image's plate


class PrevizSet:
    """One shot's set, computed once; ``frame(i)`` draws frame i."""

    def __init__(self, shot: ShotPlan, options):
        self.shot = shot
        W, H = shot.width, shot.height
        self.reading = r = read_prompt(shot.text)
        rng = seeded_rng("previz-v2", shot.seed, shot.text, shot.index)
        self.subjects = layout(r, shot, rng)
        self.overlay = Overlay(shot, options)
        top, low = self._sky_ground_water(H)
        self._sky_bodies(rng, W, H, top, low)
        self._far_layer(rng, W, H, top)
        self._ground_strokes(rng, W, H)
        self._waves(rng, H)
        weather = r.weather
        # weather particles in screen space (fall with time; no parallax)
        n_drops = {"rain": 160, "storm": 220, "snowfall": 180}.get(weather, 0)
        self.drops = np.stack([rng.uniform(0, W, n_drops), rng.uniform(0, H, n_drops), rng.uniform(0.6, 1.0, n_drops)], 1)
        self.fog = Image.new("RGB", (W, H), mix(low, (220, 220, 225), 0.5)) if weather == "fog" else None
        self.flash = {int(rng.integers(10, max(11, shot.frame_count - 4)))} if weather == "storm" else set()
        self._sky_key = b""
        self._sky: Image.Image | None = None
        font = ImageFont.load_default(size=max(10, H // 45))
        self.labels = {q.subject.noun: _sprite(q.label, font) for q in self.subjects}
        # the plate: a conditioning image replaces the drawn set
        self.plate = None
        if shot.image is not None:
            image = shot.image.convert("RGB")
            if image.size != (W, H):
                image = image.resize((W, H))
            self.image = image
            self.plate = image_canvas(image, round(W * CANVAS_SCALE), round(H * CANVAS_SCALE))
        main = r.follows or (r.subjects[0].noun if r.subjects else None)
        self.main = next((q for q in self.subjects if q.subject.noun == main), None)  # the camera's subject

    def _setting_colour(self, kind: str, rgb):
        """A setting's colour: the one the prompt gives it, else ``rgb``, graded for the light and weather."""
        r = self.reading
        return grade(COLOURS.get(r.setting_colours.get(kind, ""), rgb), r.light, r.weather)

    def _sky_ground_water(self, H: int):
        """The sky's gradient, the ground and the water; returns the sky's top and low colours."""
        r = self.reading
        kinds = r.kinds
        light, weather = r.light, r.weather
        self.horizon = HORIZON * H if "interior" not in kinds else 0.6 * H
        top, low = SKY[light]
        if weather in WEATHER_SKY:
            tint, k = WEATHER_SKY[weather]
            if light in ("night", "moonlight", "dusk"):
                tint = grade(tint, light, "clear")
            top, low = mix(top, tint, k), mix(low, tint, k)
        if "interior" in kinds:
            top = low = grade(COLOURS.get(r.setting_colours.get("interior", ""), (205, 190, 165)), light, weather)
        if "space" in kinds:
            top, low = (2, 2, 10), (12, 10, 30)
        self.sky = (np.array(top, np.float32), np.array(low, np.float32))
        ground_kind = "snow" if weather == "snowfall" else next((k for k in GROUND if k in kinds), "field")
        self.ground = None if "space" in kinds or (set(kinds) <= set(WATER) and kinds) else self._setting_colour(ground_kind, GROUND[ground_kind])
        if ground_kind == "snow" and self.ground is not None and light in ("night", "moonlight", "dusk"):
            self.ground = mix(self.ground, (165, 175, 215), 0.4)  # snow keeps the little light there is
        self.ground_kind = ground_kind
        water = next((k for k in kinds if k in WATER), None)
        self.water = self._setting_colour(water, WATER_RGB[water]) if water else None
        # water reaches the shore: the whole ground for sea alone, a band otherwise
        self.shore = (H * 2 if self.ground is None else (0.6 if water == "sea" else 0.56) * H) if water else self.horizon
        if water == "river":
            self.shore = 0.62 * H
        self.flow = any(m["verb"] == "flow" for m in r.motions) or water is not None
        self.flow_speed = 2.0 if any(m["verb"] == "flow" for m in r.motions) else 0.6
        return top, low

    def _sky_bodies(self, rng, W: int, H: int, top, low) -> None:
        """Sun or moon, stars and clouds."""
        kinds, light, weather = self.reading.kinds, self.reading.light, self.reading.weather
        # sky bodies: (x, y, radius, colour) in world px at parallax ~0
        self.bodies = []
        night = light in ("night", "moonlight")
        sun = {"dawn": (0.2, HORIZON - 0.04, 0.06, (255, 200, 140)), "morning": (0.72, 0.2, 0.05, (255, 245, 210)),
               "noon": (0.74, 0.1, 0.045, (255, 250, 225)), "golden hour": (0.78, 0.3, 0.06, (255, 215, 130)),
               "sunset": (0.5 + rng.uniform(-0.15, 0.15), HORIZON - 0.03, 0.085, (255, 140, 60)),
               "night": (0.76, 0.14, 0.03, (230, 230, 215)), "moonlight": (0.7, 0.17, 0.06, (240, 240, 225))}.get(light)
        if sun and weather in ("clear", "snowfall") and "interior" not in kinds:
            self.bodies.append(((sun[0] - 0.5) * W, sun[1] * H, sun[2] * H, sun[3]))
        n_stars = 90 if "space" in kinds else 60 if night and weather == "clear" else 0
        self.stars = np.stack([rng.uniform(-0.8, 0.8, n_stars) * W, rng.uniform(0, 0.95 if "space" in kinds else HORIZON * 0.9, n_stars) * H], 1)
        self.clouds = []
        if weather in ("clear", "rain", "storm") and "interior" not in kinds and "space" not in kinds and not night:
            cloud = mix(low, (255, 255, 255), 0.6) if weather == "clear" else mix(top, (40, 40, 50), 0.3)
            for _ in range(int(rng.integers(2, 5)) + (4 if weather != "clear" else 0)):
                cx, cy, cw = rng.uniform(-0.8, 0.8) * W, rng.uniform(0.06, 0.3) * H, rng.uniform(0.08, 0.16) * W
                self.clouds.append((cx, cy, cw, cloud))

    def _far_layer(self, rng, W: int, H: int, top) -> None:
        """The far layer: hills, mountains, dunes, a skyline or a treeline along the horizon."""
        r, kinds = self.reading, self.reading.kinds
        # far layer polygons: (points Nx2 world px, parallax, colour)
        self.far: list[tuple[np.ndarray, float, tuple[int, int, int]]] = []
        xs = np.linspace(-1.6, 1.6, 65) * W
        hz = self.horizon
        for kind in ("mountains", "desert", "snow", "field", "city", "forest"):
            if kind not in kinds and not (kind == "field" and not kinds):
                continue
            if "interior" in kinds or "space" in kinds:
                break
            rgb = self._setting_colour(kind, FAR_RGB[kind])
            if kind == "mountains":
                rgb = mix(rgb, top, 0.25) if kind not in r.setting_colours else rgb
            if kind in ("mountains", "desert", "snow", "field"):
                amp = {"mountains": 0.26, "desert": 0.07, "snow": 0.1, "field": 0.06}[kind] * H
                phase = rng.uniform(0, 6.3, 3)
                freq = (1.3, 3.1, 7.7) if kind == "mountains" else (1.1, 2.3, 0.0)
                prof = sum(np.sin(xs / W * f * math.pi + ph) * wgt for f, ph, wgt in zip(freq, phase, (0.5, 0.3, 0.2)))
                ys = hz - amp * (0.55 + 0.45 * prof)
                if kind == "mountains":
                    ys = hz - amp * np.abs(0.3 + 0.7 * prof)
                pts = np.concatenate([np.stack([xs, ys], 1), [[xs[-1], hz + 2], [xs[0], hz + 2]]])
                self.far.append((pts, 0.12, rgb))
            elif kind == "city":
                x = -1.6 * W
                while x < 1.6 * W:
                    bw, bh = rng.uniform(0.03, 0.08) * W, rng.uniform(0.06, 0.3) * H
                    self.far.append((np.array([[x, hz - bh], [x + bw, hz - bh], [x + bw, hz + 2], [x, hz + 2]]), 0.2, mix(rgb, top, rng.uniform(0, 0.3))))
                    x += bw + rng.uniform(0, 0.01) * W
            else:  # forest: a treeline of pines
                x = -1.6 * W
                while x < 1.6 * W:
                    tw, th = rng.uniform(0.02, 0.045) * W, rng.uniform(0.08, 0.18) * H
                    self.far.append((np.array([[x, hz + 2], [x + tw / 2, hz - th], [x + tw, hz + 2]]), 0.25, mix(rgb, (0, 0, 0), rng.uniform(0, 0.3))))
                    x += tw * rng.uniform(0.5, 0.9)

    def _ground_strokes(self, rng, W: int, H: int) -> None:
        """Strokes on the ground whose parallax grows from the horizon down (and a city's road line)."""
        # ground strokes: (points, parallax, colour); their parallax grows from the horizon down
        self.strokes: list[tuple[np.ndarray, float, tuple[int, int, int], int]] = []
        top_y = self.shore if self.water is not None and self.ground is not None else self.horizon
        if self.ground is not None:
            dark = mix(self.ground, (0, 0, 0), 0.18) if self.ground_kind != "snow" else mix(self.ground, (120, 140, 190), 0.25)
            for _ in range(70):
                y = top_y + (H - top_y) * rng.uniform(0.03, 1.0) ** 0.7
                k = (y - self.horizon) / (H - self.horizon)
                x, ln = rng.uniform(-1.4, 1.4) * W, (0.01 + 0.05 * k) * W
                if self.ground_kind in ("field", "forest", "mountains"):
                    pts = np.array([[x, y], [x + ln * 0.1, y - ln * 0.5]])
                else:
                    pts = np.array([[x, y], [x + ln, y - ln * 0.02]])
                self.strokes.append((pts, 0.12 + 0.88 * k, dark, max(1, round(H / 300 * (0.5 + k)))))
            if self.ground_kind == "city":
                for j in range(-10, 11):  # the road's centre line
                    self.strokes.append((np.array([[j * 0.18 * W, 0.82 * H], [j * 0.18 * W + 0.08 * W, 0.82 * H]]), 0.8, (230, 220, 120), max(2, H // 120)))

    def _waves(self, rng, H: int) -> None:
        self.waves: list[tuple[float, float, float]] = []  # (world y, parallax, phase)
        if self.water is not None:
            bottom = min(self.shore, H * 1.2)
            for j in range(9):
                y = self.horizon + (bottom - self.horizon) * ((j + 0.5) / 9) ** 1.4
                self.waves.append((y, 0.12 + 0.88 * (y - self.horizon) / (H - self.horizon), rng.uniform(0, 6.3)))
            self.foam = mix(self.water, (255, 255, 255), 0.55)

    # --- camera ----------------------------------------------------------------------------
    def camera(self, t: float) -> tuple[float, float, float, float, float]:
        """(travel x, travel y, zoom, push, pivot parallax) at time t in [0, 1]; all rest at t=0."""
        W, H = self.shot.width, self.shot.height
        s = smooth(t)
        move = self.reading.camera
        if move == "zoom in":
            return 0, 0, 1 + 0.6 * s, 0, 0
        if move == "zoom out":
            return 0, 0, 1 / (1 + 0.45 * s), 0, 0
        if move == "dolly in":
            return 0, 0, 1, 0.45 * s, 0
        if move == "dolly out":
            return 0, 0, 1, -0.6 * s, 0
        if move in ("pan left", "pan right"):
            return (0.35 if move == "pan right" else -0.35) * W * s, 0, 1, 0, 0
        if move in ("tilt up", "tilt down"):
            return 0, (0.25 if move == "tilt down" else -0.25) * H * s, 1, 0, 0
        if move == "orbit":  # around the main subject: it stays, nearer and farther layers swing apart
            pivot = self.main.p if self.main else 0.7
            return 0.5 * W * math.sin(2 * math.pi * t), 0, 1, 0.08 * (1 - math.cos(2 * math.pi * t)), pivot
        if move == "follow" and self.main is not None:
            dx, _, _ = self.motion(self.main, t)
            return dx / self.main.p, 0, 1, 0, 0
        return 0, 0, 1, 0, 0

    def motion(self, q: Placed, t: float) -> tuple[float, float, float]:
        """(dx, dy, angle) of a subject at time t from its motion verb."""
        W, H = self.shot.width, self.shot.height
        verb, d = q.subject.motion, q.heading
        if verb == "walk":
            return d * 0.18 * W * t, -0.012 * H * abs(math.sin(6 * math.pi * t)), 0.0
        if verb == "run":
            return d * 0.4 * W * t, -0.03 * H * abs(math.sin(10 * math.pi * t)), 0.0
        if verb == "fly":
            return d * 0.45 * W * t, 0.04 * H * math.sin(4 * math.pi * t), 0.0
        if verb in ("drift", "flow"):
            return d * 0.12 * W * t, 0.008 * H * math.sin(3 * math.pi * t), 0.0
        if verb == "spin":
            return 0.0, 0.0, 3 * math.pi * t
        if verb == "fall":
            return 0.0, -0.35 * H * (1 - t * t), 0.3 * math.sin(5 * t)
        if verb == "rise":
            return 0.0, -0.35 * H * smooth(t), 0.0
        if verb == "wave":
            return 0.0, 0.0, 0.18 * math.sin(4 * math.pi * t)
        return 0.0, 0.0, 0.0

    # --- drawing -----------------------------------------------------------------------------
    def frame(self, i: int) -> np.ndarray:
        shot = self.shot
        W, H, n = shot.width, shot.height, shot.frame_count
        if i == 0 and self.plate is not None:
            return np.asarray(self.image)  # the conditioning image opens the shot, exactly
        t = i / max(1, n - 1)
        view = _View(W, H, *self.camera(t), tilt=self.reading.camera.startswith("tilt"))
        proj = view.project
        img = self._plate(view) if self.plate is not None else self._set(view, t)
        draw = ImageDraw.Draw(img)
        enter = 0.0 if self.plate is None else 1 - smooth(min(1.0, t / 0.25))
        for q in self.subjects:
            dx, dy, angle = self.motion(q, t)
            side = -1 if q.x < 0 else 1
            ex = enter * side * (W * 0.7 + q.w)  # with a plate, subjects slide in from their side
            sky = q.subject.place == "sky" or "space" in self.reading.kinds
            cy = q.y + dy if sky else q.y + dy - q.h / 2
            centre, s = proj(np.array([[q.x + dx + ex, cy]]), q.p)
            x, y = centre[0]
            w, h = q.w * s, q.h * s
            if x + w < 0 or x - w > W or y - h > H or y + h < 0:
                continue
            box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
            draw_subject(draw, q.subject.noun, box, q.rgb, angle=angle, mirror=q.heading < 0)
            label = self.labels[q.subject.noun]
            img.paste(label, (round(x - label.width / 2), round(max(0, box[1] - label.height - 2))), label)
        self._weather(img, draw, t, i)
        self.overlay.draw(img, draw, i, self.reading.camera)
        return np.asarray(img)

    def _plate(self, view: "_View") -> Image.Image:
        W, H = self.shot.width, self.shot.height
        plate = cast(Image.Image, self.plate)  # called only with a plate
        cw, ch = plate.size
        s = view.scale(PLATE_P)
        # the screen's corner back in plate pixels (the image sits in the middle of the plate)
        left = cw / 2 + view.world_x(0, PLATE_P)
        top = (ch - H) / 2 + view.world_y(0, PLATE_P)
        vw, vh = W / s, H / s
        left, top = min(max(left, 0), cw - vw), min(max(top, 0), ch - vh)
        if abs(s - 1) < 1e-9:
            li, ti = round(left), round(top)
            return plate.crop((li, ti, li + W, ti + H))  # integer crop for pans and tilts
        return plate.resize((W, H), Image.Resampling.BILINEAR, box=(left, top, left + vw, top + vh))

    def _set(self, view: "_View", t: float) -> Image.Image:
        proj = view.project
        shot = self.shot
        W, H = shot.width, shot.height
        # sky: one gradient column for this frame's zoom and tilt, broadcast across
        wy = view.world_y(np.arange(H, dtype=float), SKY_P)
        k = np.clip(wy / self.horizon, 0, 1)[:, None] ** 1.2
        col = (self.sky[0] * (1 - k) + self.sky[1] * k).astype(np.uint8)
        key = col.tobytes()
        if key != self._sky_key:  # pans and static shots reuse one sky; zooms and tilts make a new one
            self._sky_key = key
            self._sky = Image.fromarray(col[:, None, :], "RGB").resize((W, H), Image.Resampling.NEAREST)
        img = cast(Image.Image, self._sky).copy()
        draw = ImageDraw.Draw(img)
        if len(self.stars):
            pts, _ = proj(self.stars, SKY_P)
            draw.point(pts.ravel().tolist(), fill=(235, 235, 250))
        for bx, by, br, rgb in self.bodies:
            (x, y), s = proj(np.array([[bx, by]]), SKY_P)[0][0], view.scale(SKY_P)
            draw.ellipse((x - br * s, y - br * s, x + br * s, y + br * s), fill=rgb)
        for cx, cy, cw, rgb in self.clouds:
            (x, y), s = proj(np.array([[cx + 0.03 * W * t, cy]]), 0.06)[0][0], view.scale(0.06)
            for ox, oy, r in ((-0.3, 0.1, 0.35), (0.0, -0.1, 0.45), (0.35, 0.08, 0.3)):
                rr = r * cw * s
                draw.ellipse((x + ox * cw * s - rr, y + oy * cw * s - rr * 0.5, x + ox * cw * s + rr, y + oy * cw * s + rr * 0.5), fill=rgb)
        for pts, p, rgb in self.far:
            out, _ = proj(pts, p)
            draw.polygon(out.ravel().tolist(), fill=rgb)
        hz = self.horizon
        big = np.array([[-3 * W, hz], [3 * W, hz], [3 * W, 3 * H], [-3 * W, 3 * H]])
        if self.water is not None:
            out, _ = proj(big, 0.12)
            draw.polygon(out.ravel().tolist(), fill=self.water)
        if self.ground is not None:
            top = self.shore if self.water is not None else hz
            p_top = 0.12 + 0.88 * (top - hz) / (H - hz)
            edge = np.array([[-3 * W, top], [3 * W, top]])
            e, _ = proj(edge, p_top)
            bottom, _ = proj(np.array([[3 * W, 3 * H], [-3 * W, 3 * H]]), 1.0)
            draw.polygon(np.concatenate([e, bottom]).ravel().tolist(), fill=self.ground)
        if self.water is not None:
            speed = self.flow_speed
            xs = np.linspace(-1.5, 1.5, 48) * W
            for y, p, ph in self.waves:
                if self.ground is not None and y > self.shore:
                    continue
                amp = H * (0.002 + 0.01 * p)
                pts = np.stack([xs + speed * 0.05 * W * t, y + amp * np.sin(xs / W * 9 + ph + speed * 6 * t)], 1)
                out, s = proj(pts, p)
                draw.line(out.ravel().tolist(), fill=self.foam, width=max(1, round(H / 360 * (0.5 + 2 * p) * s)))
            if self.ground is not None:  # the shore's foam line, breathing with the waves
                ys_ = self.shore + H * 0.006 * math.sin(6 * t * speed)
                pts = np.stack([xs, ys_ + H * 0.004 * np.sin(xs / W * 13 + 4 * t * speed)], 1)
                p_top = 0.12 + 0.88 * (self.shore - hz) / (H - hz)
                out, s = proj(pts, p_top)
                draw.line(out.ravel().tolist(), fill=self.foam, width=max(2, round(H / 150 * s)))
        for pts, p, rgb, width in self.strokes:
            out, s = proj(pts, p)
            draw.line(out.ravel().tolist(), fill=rgb, width=max(1, round(width * s)))
        return img

    def _weather(self, img: Image.Image, draw: ImageDraw.ImageDraw, t: float, i: int) -> None:
        W, H = self.shot.width, self.shot.height
        weather = self.reading.weather
        if weather in ("rain", "storm"):
            y = (self.drops[:, 1] + t * H * 6 * self.drops[:, 2]) % H
            x = (self.drops[:, 0] - t * W * 0.3) % W
            ln = H * 0.04 * self.drops[:, 2]
            colour = (190, 200, 220)
            for xi, yi, li in zip(x.tolist(), y.tolist(), ln.tolist()):
                draw.line((xi, yi, xi - li * 0.2, yi + li), fill=colour, width=1)
            if i in self.flash:
                img.paste(Image.blend(img, Image.new("RGB", img.size, (235, 235, 255)), 0.6))
        elif weather == "snowfall":
            y = (self.drops[:, 1] + t * H * 0.8 * self.drops[:, 2]) % H
            x = (self.drops[:, 0] + H * 0.02 * np.sin(6 * t + self.drops[:, 1])) % W
            r = max(1.0, H / 300) * (1 + self.drops[:, 2])
            for xi, yi, ri in zip(x.tolist(), y.tolist(), r.tolist()):
                draw.ellipse((xi - ri, yi - ri, xi + ri, yi + ri), fill=(250, 250, 255))
        elif self.fog is not None:
            img.paste(Image.blend(img, self.fog, 0.45))



def _sprite(text: str, font) -> Image.Image:
    """A label drawn once: white text with a dark outline on a transparent tile."""
    box = font.getbbox(text, stroke_width=2)
    tile = Image.new("RGBA", (box[2] - box[0] + 4, box[3] - box[1] + 4), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((2 - box[0], 2 - box[1]), text, font=font, fill=(255, 255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0, 255))
    return tile


@dataclass
class _View:
    """The camera for one frame: world points at parallax p to screen points, and back."""

    W: int
    H: int
    tx: float  # travel, world px
    ty: float
    zoom: float
    push: float  # dolly: near layers (p=1) grow by 1 / (1 - push)
    pivot: float  # the parallax that stays put (the orbit's subject); 0 for pans
    tilt: bool = False  # a tilt turns the camera: every layer shifts alike

    def scale(self, p: float) -> float:
        return self.zoom / max(0.2, 1 - self.push * p)

    def _k(self, p: float) -> tuple[float, float]:
        return p - self.pivot, (1.0 if self.tilt else p - self.pivot)

    def project(self, pts: np.ndarray, p: float) -> tuple[np.ndarray, float]:
        s, (kx, ky) = self.scale(p), self._k(p)
        out = np.empty_like(pts, dtype=float)
        out[:, 0] = self.W / 2 + s * (pts[:, 0] - self.tx * kx)
        out[:, 1] = self.H / 2 + s * (pts[:, 1] - self.H / 2 - self.ty * ky)
        return out, s

    def world_x(self, sx, p: float):
        return (sx - self.W / 2) / self.scale(p) + self.tx * self._k(p)[0]

    def world_y(self, sy, p: float):
        return (sy - self.H / 2) / self.scale(p) + self.H / 2 + self.ty * self._k(p)[1]
