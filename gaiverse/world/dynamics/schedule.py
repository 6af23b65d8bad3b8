"""A world's daily schedule of weather, traffic and pedestrian density: an hourly table the world stores.

Each entry takes effect at its hour (0..23) and holds until the next entry (wrapping round
midnight). The engine follows the schedule at the viewer's local time unless the user overrides
it; other engines read the same table from the exported .glb's `extras.schedule`. A default
schedule is drawn from the world's seed: commuter peaks of traffic, people out by day, and a
seeded weather chain (fog likelier at dawn, rain or snow by season). Implements ENV-d2 (dynamic
variation that can be scheduled per world).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from gaiverse.world.dynamics.weather import WEATHER_PRESETS, lighting


@dataclass
class ScheduleEntry:
    """From `hour` on: this weather, this share of the vehicles and of the pedestrians shown."""

    hour: int
    weather: str
    traffic: float
    """0..1 share of the simulated vehicles that drive."""
    pedestrians: float
    """0..1 share of the simulated pedestrians that walk."""

    def __post_init__(self) -> None:
        if not (isinstance(self.hour, int) and 0 <= self.hour <= 23):
            raise ValueError(f"schedule `hour` must be an integer 0..23, got {self.hour!r}")
        if self.weather not in WEATHER_PRESETS:
            raise ValueError(f"schedule `weather` must be one of {sorted(WEATHER_PRESETS)}, got {self.weather!r}")
        for name in ("traffic", "pedestrians"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"schedule `{name}` must be within 0..1, got {value!r} at hour {self.hour}")


@dataclass
class DynamicsSchedule:
    """The hourly table of one world, with where on Earth (for the sun) and which day it is."""

    entries: list[ScheduleEntry] = field(default_factory=list)
    latitude_deg: float = 50.0
    day_of_year: int = 172

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a schedule needs at least one entry")
        hours = [e.hour for e in self.entries]
        if len(set(hours)) != len(hours):
            raise ValueError(f"schedule hours must be unique, got {sorted(hours)}")
        if not -66.0 <= self.latitude_deg <= 66.0:
            raise ValueError(f"`latitude_deg` must be within -66..66, got {self.latitude_deg}")
        if not 1 <= self.day_of_year <= 365:
            raise ValueError(f"`day_of_year` must be within 1..365, got {self.day_of_year}")
        self.entries = sorted(self.entries, key=lambda e: e.hour)

    def entry_at(self, hour: float) -> ScheduleEntry:
        """The entry in force at `hour` (the last one at or before it, else the day's last entry)."""
        before = [e for e in self.entries if e.hour <= hour % 24]
        return before[-1] if before else self.entries[-1]

    def at(self, hour: float) -> dict:
        """Weather, lighting and densities at `hour` (0..24). Implements ENV-d2."""
        entry = self.entry_at(hour)
        return {**lighting(entry.weather, hour % 24, self.day_of_year, self.latitude_deg),
                "traffic": entry.traffic, "pedestrians": entry.pedestrians}

    def to_json(self) -> dict:
        return {"latitude_deg": self.latitude_deg, "day_of_year": self.day_of_year,
                "entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict | str) -> DynamicsSchedule:
        """Parse and check a schedule (a dict or JSON text); errors name the field and value."""
        data = json.loads(data) if isinstance(data, str) else data
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise ValueError("a schedule must be an object with a list `entries`")
        unknown = set(data) - {"latitude_deg", "day_of_year", "entries"}
        if unknown:
            raise ValueError(f"unknown schedule fields: {sorted(unknown)}")
        entries = []
        for item in data["entries"]:
            if not isinstance(item, dict) or set(item) != {"hour", "weather", "traffic", "pedestrians"}:
                raise ValueError(f"schedule entries need exactly hour, weather, traffic, pedestrians; got {item!r}")
            entries.append(ScheduleEntry(**item))
        return cls(entries, float(data.get("latitude_deg", 50.0)), int(data.get("day_of_year", 172)))


#: Share of vehicles and pedestrians out at each hour of a working day.
TRAFFIC_BY_HOUR = (0.1, 0.05, 0.05, 0.05, 0.1, 0.25, 0.6, 0.95, 1.0, 0.7, 0.6, 0.6,
                   0.65, 0.6, 0.6, 0.7, 0.9, 1.0, 0.85, 0.6, 0.45, 0.3, 0.2, 0.15)
PEOPLE_BY_HOUR = (0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.25, 0.6, 0.8, 0.7, 0.75, 0.9,
                  1.0, 0.95, 0.85, 0.85, 0.9, 1.0, 0.95, 0.8, 0.6, 0.4, 0.2, 0.1)


def default_schedule(seed: int, day_of_year: int = 172, latitude_deg: float = 50.0, every_h: int = 3) -> DynamicsSchedule:
    """A seeded daily table: weather changes every `every_h` hours along a Markov chain, densities by hour."""
    rng = np.random.default_rng(seed)
    winter = day_of_year < 80 or day_of_year > 330
    wet = "snow" if winter else "rain"
    stay = {"clear": 0.7, "rain": 0.5, "snow": 0.5, "fog": 0.3}
    weather = "clear"
    entries = []
    for hour in range(0, 24, every_h):
        if rng.random() > stay[weather]:
            fog_chance = 0.5 if 3 <= hour <= 8 else 0.1
            weather = str(rng.choice(["clear", wet, "fog"], p=[0.9 - fog_chance, 0.1, fog_chance]))
        for h in range(hour, min(hour + every_h, 24)):
            entries.append(ScheduleEntry(h, weather, TRAFFIC_BY_HOUR[h], PEOPLE_BY_HOUR[h]))
    return DynamicsSchedule(entries, latitude_deg, day_of_year)
