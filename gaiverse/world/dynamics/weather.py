"""Weather presets and time of day -> sun direction, light colours, fog density and precipitation.

The same numbers drive the web engine (`gaiverse/web/engine.js` reads them from the dynamics
JSON and the exported .glb's `extras.weather`) and any other engine: the sun's direction in the
world frame, its colour and intensity, the ambient sky light, an exponential-squared fog density
per metre and the precipitation kind and rate. Implements ENV-d2 (weather with time of day and
lighting changes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class WeatherPreset:
    """One kind of weather, independent of the time of day."""

    name: str
    description: str
    cloud_cover: float
    """0 clear sky .. 1 overcast: dims the sun and greys the sky."""
    fog_density: float
    """Exponential-squared fog density per metre (three.js FogExp2): visibility ~ 2 / density."""
    precipitation: Literal["none", "rain", "snow"]
    precipitation_mm_h: float
    """Rate of rain or snow (water equivalent), mm per hour; the engine scales its particles with it."""
    wind_mps: float
    """Wind speed (drifts snow, slants rain), m/s, blowing towards east."""


#: The weather a world can have, by name.
WEATHER_PRESETS: dict[str, WeatherPreset] = {p.name: p for p in (
    WeatherPreset("clear", "sunny, a few high clouds", 0.1, 0.0006, "none", 0.0, 2.0),
    WeatherPreset("rain", "overcast with steady rain", 0.85, 0.0030, "rain", 4.0, 5.0),
    WeatherPreset("snow", "overcast with falling snow", 0.9, 0.0045, "snow", 1.5, 2.0),
    WeatherPreset("fog", "thick low fog, no precipitation", 0.7, 0.0120, "none", 0.0, 0.5),
)}


def sun_position(hour: float, day_of_year: int = 172, latitude_deg: float = 50.0) -> tuple[float, float]:
    """(elevation, azimuth) of the sun, radians; azimuth clockwise from north (solar time, no equation of time)."""
    lat = math.radians(latitude_deg)
    dec = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365)
    h = math.radians(15.0 * (hour - 12.0))
    sin_el = math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * math.cos(h)
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    az = math.atan2(math.sin(h), math.cos(h) * math.sin(lat) - math.tan(dec) * math.cos(lat)) + math.pi
    return el, az % (2 * math.pi)


def _mix(a, b, t: float) -> list[float]:
    t = max(0.0, min(1.0, t))
    return [round((x + (y - x) * t) / 255.0, 4) for x, y in zip(a, b)]


def _smoothstep(lo: float, hi: float, x: float) -> float:
    t = max(0.0, min(1.0, (x - lo) / (hi - lo)))
    return t * t * (3 - 2 * t)


def lighting(weather: str, hour: float, day_of_year: int = 172, latitude_deg: float = 50.0) -> dict:
    """Light, sky, fog and precipitation for a weather preset at a solar hour (0..24). Implements ENV-d2.

    Returns sun_direction (unit vector towards the sun, x east, y north, z up), sun_colour and
    sky_colour / ambient_colour / fog_colour (linear RGB 0..1), sun_intensity and ambient_intensity
    (three.js light intensities), fog_density (per metre, exponential squared), daylight (0 night .. 1 day),
    street_lights (on at dusk and night), precipitation, precipitation_mm_h and wind_mps.
    """
    if weather not in WEATHER_PRESETS:
        raise ValueError(f"`weather` must be one of {sorted(WEATHER_PRESETS)}, got {weather!r}")
    if not 0.0 <= hour <= 24.0:
        raise ValueError(f"`hour` must be within 0..24, got {hour}")
    preset = WEATHER_PRESETS[weather]
    el, az = sun_position(hour, day_of_year, latitude_deg)
    day = _smoothstep(-0.10, 0.20, math.sin(el))
    low = 1.0 - _smoothstep(0.0, 0.5, math.sin(el))
    cloud = preset.cloud_cover
    sky_day = _mix((120, 170, 230), (150, 156, 166), cloud)
    sky = _mix((8, 12, 28), [c * 255 for c in sky_day], day)
    if 0 < day < 1:  # dusk and dawn tint
        sky = [round(c * (1 - 0.35 * low) + w * 0.35 * low * day, 4) for c, w in zip(sky, (0.95, 0.55, 0.35))]
    fog = [round(0.55 * c + 0.45 * g, 4) for c, g in zip(sky, _mix((20, 22, 30), (190, 192, 196), day))]
    sun_dir = [math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)]
    return {
        "weather": weather, "hour": round(hour, 3), "day_of_year": day_of_year, "latitude_deg": latitude_deg,
        "sun_elevation_deg": round(math.degrees(el), 2), "sun_azimuth_deg": round(math.degrees(az), 2),
        "sun_direction": [round(v, 5) for v in sun_dir],
        "sun_colour": _mix((255, 244, 232), (255, 150, 80), low),
        "sun_intensity": round(3.0 * day * (1.0 - 0.8 * cloud), 4),
        "moon_intensity": round(0.25 * (1.0 - day) * (1.0 - 0.6 * cloud), 4),
        "ambient_colour": sky, "ambient_intensity": round(0.25 + 1.35 * day * (1.0 - 0.25 * cloud), 4),
        "sky_colour": sky, "fog_colour": fog, "fog_density": preset.fog_density,
        "daylight": round(day, 4), "street_lights": day < 0.5,
        "precipitation": preset.precipitation, "precipitation_mm_h": preset.precipitation_mm_h,
        "wind_mps": preset.wind_mps,
    }


def presets_json() -> dict[str, dict]:
    """Every preset as plain JSON (what the world's dynamics JSON and .glb extras carry)."""
    return {name: asdict(p) for name, p in WEATHER_PRESETS.items()}
