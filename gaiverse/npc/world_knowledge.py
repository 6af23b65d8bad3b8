"""Knowledge of the current world for NPCs: places, roads, buildings, water, green space and NPCs of a world version.

A published world (``world/<id>`` in the catalog, see ``gaiverse.world.versions``) is rasters and
building footprints; an NPC needs facts it can quote ("Market Square is at the corner of High
Street and Mill Lane in the Centre") and places its day can happen at. This module derives both
from one version, deterministically:

- ``WorldPlaces``: named places (districts, roads, the market, landmark buildings, homes, the
  gate, docks, park, wood, fields, hill, water bodies) with a kind and x/y in world metres (x
  east, y north, origin south-west, as in ``world_state``). Worlds carry no names, so names are
  made up from the world's id and seed ("River Road", "North Quarter", "The Golden Goose"):
  the same world and seed always give the same names.
- short factual passages (domain ``world``) about the world, its districts, roads (length,
  class, what they connect and cross), buildings (counts, storeys, shapes per district,
  tallest), water, vegetation, green space, routes from the market, and the NPCs placed in it.

Passages are stored as one knowledge-base document of the world's owner (``user_id`` = owner,
so no other user's search ever sees them) with source ``world/<id>@v<N>``; the document id is
the same for every version, so ingesting a new version replaces the previous version's passages
in one transaction (``KnowledgeBase.add_passages``). Implements the world part of NPC-a1 and
the world placement of NPC-b1 schedules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from gaiverse.npc import kb_ingest
from gaiverse.npc.chunking import Passage

log = logging.getLogger(__name__)

DOMAIN = "world"
ROAD_PASSAGES = 24
"""Roads described one passage each (the longest); shorter ones are listed together."""
MAX_HOMES = 40
"""Residential buildings listed as home places (addresses for NPC schedules)."""
ROUTE_KINDS = ("tavern", "shop", "hall", "temple", "library", "workshop", "barracks", "manor", "gate", "docks",
               "park", "forest", "fields", "hill")
"""Places a route from the market is described to."""

_COMPASS = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")
_TOWN_A = ["Ash", "Bram", "Cold", "Elm", "Fair", "Glen", "Hart", "Kings", "Lang", "Mar", "Oak", "Red", "Stan",
           "Thorn", "Wick", "Wil", "Hazel", "Brook"]
_TOWN_B = ["ford", "bury", "wick", "ton", "ham", "by", "field", "stead", "worth", "more"]
_STREET_A = ["Mill", "Church", "Oak", "Elm", "Chapel", "Baker", "Smith", "Well", "Castle", "Orchard", "Willow",
             "Kings", "Queens", "Station", "Meadow", "Ash", "Rose", "Cooper", "Tanner", "Fisher", "Mason",
             "Cedar", "Lark", "Abbey", "Hill", "Green", "Granary", "Weaver", "Potter", "Forge"]
_STREET_MAJOR = ["Road", "Street", "Avenue"]
_STREET_MINOR = ["Lane", "Street", "Way", "Row", "Close"]
_RIVERS = ["Wend", "Avon", "Teme", "Lyn", "Colne", "Dart", "Ouse", "Arrow", "Kennet", "Wye"]
_TAVERNS = ["The Golden Goose", "The Red Lion", "The Old Anchor", "The Prancing Pony", "The Green Man",
            "The Three Barrels", "The Crooked Spoon", "The Silver Stag"]
_SURNAMES = ["Hobb", "Marlow", "Fenwick", "Ashdown", "Brandt", "Corwin", "Dunmore", "Elwood", "Garrick", "Holt"]
_TEMPLES = ["the Dawn", "the Tides", "the Harvest", "the Hearth", "the Lantern", "the Oak"]
_GREEN = ["Willow", "Rowan", "Linden", "Bluebell", "Foxglove", "Heron", "Badger", "Alder"]


class WorldKnowledgeError(ValueError):
    """A world version cannot be turned into knowledge (one line naming what is wrong)."""


@dataclass(frozen=True)
class WorldPlace:
    """One named place of a world: what NPC schedules point at and passages talk about."""

    name: str
    kind: str
    """district, road, market, tavern, shop, hall, temple, library, workshop, barracks, manor, home, gate,
    docks, park, forest, fields, hill, sea, river, lake."""
    x: float
    """Metres east of the world's south-west corner."""
    y: float
    """Metres north of the world's south-west corner."""
    district: str = ""
    detail: str = ""
    """A short description (address, size, what it is)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorldPlaces(list):
    """The named places of one world version (a list of ``WorldPlace``) with lookups by kind and name."""

    def __init__(self, places: Iterable[WorldPlace] = (), world_id: str = "", version: int = 0):
        super().__init__(places)
        self.world_id, self.version = world_id, version

    def of_kind(self, *kinds: str) -> list[WorldPlace]:
        return [p for p in self if p.kind in kinds]

    def get(self, name: str) -> WorldPlace | None:
        key = name.strip().lower()
        return next((p for p in self if p.name.lower() == key), None)

    def nearest(self, x: float, y: float, kinds: Sequence[str] | None = None) -> WorldPlace | None:
        pool = [p for p in self if kinds is None or p.kind in kinds]
        return min(pool, key=lambda p: (p.x - x) ** 2 + (p.y - y) ** 2) if pool else None

    def to_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self]

    @classmethod
    def from_dicts(cls, rows: Iterable[dict[str, Any]], world_id: str = "", version: int = 0) -> "WorldPlaces":
        return cls((WorldPlace(**r) for r in rows), world_id, version)


@dataclass
class WorldKnowledge:
    """What one world version teaches NPCs: its places and passages."""

    world_id: str
    version: int
    owner: str
    name: str
    """The made-up name of the settlement."""
    places: WorldPlaces
    passages: list[Passage]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return world_source(self.world_id, self.version)


def world_source(world_id: str, version: int) -> str:
    """``world/<id>@v<N>``: the source of every passage of that version."""
    return f"world/{world_id}@v{int(version)}"


def world_doc_id(owner: str, world_id: str) -> str:
    """The knowledge-base document of a world: the same for every version, so a new one replaces the old."""
    return kb_ingest.document_id(owner, None, f"world/{world_id}")


# ---------------------------------------------------------------- geometry helpers

def _bearing(dx: float, dy: float) -> str:
    """One of eight compass words for a displacement (x east, y north)."""
    return _COMPASS[int(round(math.atan2(dy, dx) / (math.pi / 4))) % 8]


def _metres(value: float) -> str:
    return f"{int(round(value / 10.0) * 10) if value >= 30 else int(round(value))} m"


def _length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if len(path) > 1 else 0.0


def _point_at(path: np.ndarray, share: float) -> np.ndarray:
    """The point at ``share`` (0..1) of a polyline's length."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    if len(path) < 2 or seg.sum() == 0:
        return np.asarray(path[0], dtype=float)
    target, cum = share * seg.sum(), np.concatenate([[0.0], np.cumsum(seg)])
    i = int(np.clip(np.searchsorted(cum, target) - 1, 0, len(seg) - 1))
    t = (target - cum[i]) / max(seg[i], 1e-9)
    return path[i] + (path[i + 1] - path[i]) * t


def _project(point: np.ndarray, path: np.ndarray) -> tuple[float, float]:
    """(distance to the polyline, arclength of the closest point along it)."""
    if len(path) < 2:
        return float(np.linalg.norm(point - path[0])), 0.0
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((point - a) * ab).sum(1) / np.maximum((ab ** 2).sum(1), 1e-12), 0, 1)
    closest = a + ab * t[:, None]
    d = np.linalg.norm(closest - point, axis=1)
    i = int(np.argmin(d))
    seg = np.linalg.norm(ab, axis=1)
    return float(d[i]), float(seg[:i].sum() + seg[i] * t[i])


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


# ---------------------------------------------------------------- roads as named streets

@dataclass
class _Street:
    edges: list[int]
    nodes: list[Any]
    path: np.ndarray
    cls: str
    bridge: bool
    name: str = ""

    @property
    def length_m(self) -> float:
        return _length(self.path)


def _leaving(d: dict, node: Any) -> np.ndarray:
    """The edge's path oriented away from ``node``."""
    path = np.asarray(d["path"], dtype=float)
    return path if d.get("start") == node else path[::-1]


def _direction(path: np.ndarray, reach_m: float = 15.0) -> np.ndarray:
    d = np.linalg.norm(path - path[0], axis=1)
    far = np.nonzero(d >= reach_m)[0]
    v = path[far[0] if len(far) else -1] - path[0]
    n = np.linalg.norm(v)
    return v / n if n > 0 else np.array([1.0, 0.0])


def streets_of(network) -> list[_Street]:
    """Road edges joined into streets: at each junction the two edges that continue most straight
    (deflection under 45 degrees) belong to the same street, as people name roads."""
    edges = {d["id"]: (u, v, d) for u, v, d in network.edges()}
    links: dict[tuple[int, Any], int] = {}
    for node in network.graph.nodes:
        inc = [(eid, _direction(_leaving(d, node))) for eid, (u, v, d) in edges.items()
               if (u == node or v == node) and u != v]
        pairs = []
        for i in range(len(inc)):
            for j in range(i + 1, len(inc)):
                deflection = math.degrees(math.acos(float(np.clip(-np.dot(inc[i][1], inc[j][1]), -1, 1))))
                if deflection < 45:
                    pairs.append((deflection, inc[i][0], inc[j][0]))
        used: set[int] = set()
        for _, a, b in sorted(pairs):
            if a not in used and b not in used:
                used |= {a, b}
                links[(a, node)], links[(b, node)] = b, a
    streets, seen = [], set()
    order = sorted(edges, key=lambda eid: (any((eid, n) in links for n in edges[eid][:2]), eid))
    for first in order:  # start at an open end where there is one, so a street is walked end to end
        if first in seen:
            continue
        u, v, _ = edges[first]
        entry = u if (first, u) not in links else v
        eid, node, chain, nodes, parts = first, entry, [], [entry], []
        while eid is not None and eid not in seen:
            seen.add(eid)
            a, b, d = edges[eid]
            exit_node = b if node == a else a
            parts.append(_leaving(d, node))
            chain.append(eid)
            nodes.append(exit_node)
            nxt = links.get((eid, exit_node))
            eid, node = nxt, exit_node
        path = np.concatenate([parts[0]] + [p[1:] for p in parts[1:]])
        lengths = {c: sum(_length(edges[e][2]["path"]) for e in chain if edges[e][2]["cls"] == c)
                   for c in {edges[e][2]["cls"] for e in chain}}
        streets.append(_Street(chain, nodes, path, max(lengths, key=lambda c: lengths[c]),
                               any(edges[e][2].get("bridge") for e in chain)))
    return sorted(streets, key=lambda s: (-s.length_m, s.edges[0]))


# ---------------------------------------------------------------- the derivation

class _Namer:
    """Deterministic names for one world (same id and seed, same names)."""

    def __init__(self, world_id: str, seed: int):
        digest = int(hashlib.sha256(f"{world_id}:{seed}".encode()).hexdigest()[:12], 16)
        self.rng = np.random.default_rng([digest, int(seed)])
        self.used: set[str] = set()

    def pick(self, pool: Sequence[str]) -> str:
        fresh = [p for p in pool if p not in self.used] or list(pool)
        choice = fresh[int(self.rng.integers(len(fresh)))]
        self.used.add(choice)
        return choice

    def unique(self, name: str) -> str:
        base, n = name, 2
        while name in self.used:
            name, n = f"{base} {n}", n + 1
        self.used.add(name)
        return name


@dataclass
class _Context:
    world_id: str
    version: int
    owner: str
    town: str
    size: tuple[float, float]
    cell_m: float
    namer: _Namer
    district_names: list[list[str]]
    places: list[WorldPlace] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    market_node: Any = None
    landmark_buildings: dict[str, "_Building"] = field(default_factory=dict)

    def district(self, x: float, y: float) -> str:
        col = int(np.clip(x / self.size[0] * 3, 0, 2))
        row = int(np.clip((1 - y / self.size[1]) * 3, 0, 2))
        return self.district_names[row][col]

    def add(self, entity: str, *sentences_: str) -> None:
        text = " ".join(s.strip() for s in sentences_ if s and s.strip())
        if text:
            self.passages.append(Passage(text, DOMAIN, entity, world_source(self.world_id, self.version)))

    def place(self, name: str, kind: str, xy: Sequence[float], detail: str = "") -> WorldPlace:
        p = WorldPlace(name, kind, round(float(xy[0]), 1), round(float(xy[1]), 1), self.district(*xy), detail)
        self.places.append(p)
        return p


def _district_names(namer: _Namer) -> list[list[str]]:
    centre = namer.pick(["Old Town", "Town Centre", "Market Ward"])
    rows = ("North", "", "South")
    cols = ("West", "", "East")
    out = []
    for r in rows:
        line = []
        for c in cols:
            if not r and not c:
                line.append(centre)
            else:
                line.append(f"{r}-{c} Quarter" if r and c else f"{r or c} Quarter")
        out.append(line)
    return out


def derive_world_knowledge(state, manifest: dict[str, Any], world_id: str, version: int, owner: str,
                           npcs: Sequence[dict[str, Any]] = (), scene: dict[str, Any] | None = None) -> WorldKnowledge:
    """Places and passages of one world version.

    state : the version's ``WorldState``; manifest : its manifest (prompt, stats); npcs : profiles
    (``NpcProfile.to_dict()``) of NPCs placed in this world; scene : the assembled scene's manifest
    (vegetation counts, bridges) when the version has one.
    """
    from gaiverse.world.world_build import road_network

    seed = int(state.seed)
    namer = _Namer(world_id, seed)
    water = np.asarray(state.water, dtype=bool)
    coastal, river = bool(state.controls.coast), bool(state.controls.river)
    town = namer.pick(_TOWN_A) + namer.pick([b for b in _TOWN_B] + (["mouth"] if coastal else [])
                                            + (["bridge"] if river else []))
    ctx = _Context(world_id, version, owner, town, tuple(float(s) for s in state.size_m), float(state.cell_m),
                   namer, _district_names(namer))
    network = road_network(state.to_layout())
    streets = streets_of(network)
    _name_streets(ctx, streets, water, "Harbour Road" if coastal else "River Road" if river else "Lakeside Road")
    market = _market(ctx, network, streets, state)
    buildings = _buildings(state, streets)
    gate = _gate(ctx, streets)
    landmarks = _landmarks(ctx, buildings, market, gate, streets)
    waters = _water(ctx, state, streets, market)
    green = _green(ctx, state, market)
    hill = _hill(ctx, state)
    homes = _homes(ctx, buildings, landmarks)

    _overview(ctx, state, manifest, streets, buildings, scene, npcs)
    _district_passages(ctx, state, buildings, streets)
    _street_passages(ctx, streets, network)
    _building_passages(ctx, buildings, landmarks, market, homes)
    _vegetation_passage(ctx, scene, green)
    _routes(ctx, network, streets, market, [*landmarks.values(), *green, *waters, *([gate] if gate else []),
                                            *([hill] if hill else [])])
    _npc_passages(ctx, npcs)

    places = WorldPlaces(ctx.places, world_id, version)
    stats = {"roads": len(streets), "road_edges": len(network.polylines), "road_length_m": round(network.length_m(), 1),
             "buildings": len(buildings), "places": len(places), "passages": len(ctx.passages), "npcs": len(npcs),
             "water_share": round(float(water.mean()), 4)}
    return WorldKnowledge(world_id, version, owner, town, places, ctx.passages, stats)


def _name_streets(ctx: _Context, streets: list[_Street], water: np.ndarray, waterside: str) -> None:
    """High Street for the longest major road, Bridge Street for a bridge, River/Harbour Road along water."""
    water_xy = _water_points(water, ctx.cell_m, ctx.size[1])
    special_done: set[str] = set()
    for s in streets:
        special = None
        if "high" not in special_done and s.cls == "major":
            special, key = "High Street", "high"
        elif "bridge" not in special_done and s.bridge:
            special, key = "Bridge Street", "bridge"
        elif "water" not in special_done and len(water_xy):
            probe = np.array([_point_at(s.path, t) for t in np.linspace(0, 1, 7)])
            d = np.min(np.linalg.norm(probe[:, None, :] - water_xy[None, ::max(1, len(water_xy) // 400), :], axis=2),
                       axis=1)
            if np.median(d) < 40:
                special, key = waterside, "water"
        if special:
            special_done.add(key)
            s.name = ctx.namer.unique(special)
            continue
        suffixes = _STREET_MAJOR if s.cls == "major" else _STREET_MINOR
        for _ in range(12):  # a fresh prefix + suffix pair; numbered only when the pools run out
            name = f"{ctx.namer.pick(_STREET_A)} {suffixes[int(ctx.namer.rng.integers(len(suffixes)))]}"
            if name not in ctx.namer.used:
                break
        s.name = ctx.namer.unique(name)
    for s in streets:
        mid = _point_at(s.path, 0.5)
        ctx.place(s.name, "road", mid, f"{s.cls} road, {_metres(s.length_m)} long")


def _water_points(water: np.ndarray, cell_m: float, height_m: float) -> np.ndarray:
    rows, cols = np.nonzero(water)
    return np.column_stack([(cols + 0.5) * cell_m, height_m - (rows + 0.5) * cell_m]) if len(rows) else np.zeros((0, 2))


def _market(ctx: _Context, network, streets: list[_Street], state) -> WorldPlace | None:
    """The junction nearest the settlement's centre with the most buildings around it."""
    graph = network.graph
    if graph.number_of_nodes() == 0:
        return None
    centre = np.array(ctx.size) / 2
    cents = np.array([b.centroid() for b in state.buildings]) if state.buildings else np.zeros((0, 2))

    def score(n):
        xy = np.asarray(graph.nodes[n]["xy"], dtype=float)
        near = int((np.linalg.norm(cents - xy, axis=1) < 60).sum()) if len(cents) else 0
        return (-min(graph.degree(n), 4) - near / 5 + np.linalg.norm(xy - centre) / max(ctx.size) * 4, str(n))

    node = min(graph.nodes, key=score)
    xy = np.asarray(graph.nodes[node]["xy"], dtype=float)
    names = [s.name for s in streets if node in s.nodes]
    where = (f"at the corner of {_join(names[:3])}" if len(names) > 1 else f"on {names[0]}" if names else "")
    place = ctx.place("Market Square", "market", xy, f"the market, {where}")
    ctx.add("Market Square", f"Market Square, the market of {ctx.town} where traders sell their goods, is {where} "
                             f"in the {place.district}.")
    ctx.market_node = node
    return place


@dataclass
class _Building:
    id: str
    xy: np.ndarray
    area: float
    height_m: float
    levels: int
    shape: str
    roof: str
    street: str
    along_m: float


def _buildings(state, streets: list[_Street]) -> list[_Building]:
    out = []
    for b in state.buildings:
        poly = np.asarray(b.footprint, dtype=float)
        xy = poly.mean(axis=0)
        best = min(((*_project(xy, s.path), s.name) for s in streets), default=(0.0, 0.0, ""))
        out.append(_Building(b.id, xy, _area(poly), float(b.height_m), int(b.attrs.get("levels") or
                             max(1, round(b.height_m / 3))), str(b.attrs.get("shape_class", "rect")),
                             str(b.attrs.get("roof_shape", "flat")), best[2], best[1]))
    return out


def _gate(ctx: _Context, streets: list[_Street]) -> WorldPlace | None:
    """Where the longest road leaves the world (the town gate)."""
    w, h = ctx.size
    best = None
    for s in streets:
        for end in (s.path[0], s.path[-1]):
            border = min(end[0], w - end[0], end[1], h - end[1])
            key = (border > 3 * ctx.cell_m, -s.length_m * (s.cls == "major" or 0.5), border)
            if best is None or key < best[0]:
                best = (key, end, s)
    if best is None:
        return None
    _, end, street = best
    side = _bearing(end[0] - w / 2, end[1] - h / 2)
    name = f"{side.split('-')[0].capitalize() if '-' not in side else side.title()} Gate"
    place = ctx.place(name, "gate", end, f"where {street.name} leaves {ctx.town}")
    ctx.add(name, f"The {name} of {ctx.town} is where {street.name} leaves the town, at its {side} edge.")
    return place


def _landmarks(ctx: _Context, buildings: list[_Building], market: WorldPlace | None, gate: WorldPlace | None,
               streets: list[_Street]) -> dict[str, WorldPlace]:
    """Civic buildings picked by rule: hall = tallest, tavern and shop nearest the market, temple = largest
    near the centre, library = next tallest, barracks nearest the gate, workshop on a major road, manor = largest
    far from the market."""
    left = list(buildings)
    if not left:
        return {}
    centre = np.array([market.x, market.y]) if market else np.array(ctx.size) / 2
    dist = {b.id: float(np.linalg.norm(b.xy - centre)) for b in left}
    major = [s for s in streets if s.cls == "major"] or streets
    median = float(np.median(list(dist.values())))
    surname = ctx.namer.pick(_SURNAMES)
    rules = [
        ("hall", f"{ctx.town} Hall", lambda b: (-b.height_m, b.id)),
        ("tavern", ctx.namer.pick(_TAVERNS), lambda b: (dist[b.id], b.id)),
        ("shop", f"{surname}'s General Store", lambda b: (dist[b.id], b.id)),
        ("temple", f"Temple of {ctx.namer.pick(_TEMPLES)}",
         lambda b: (bool(dist[b.id] > 0.35 * max(ctx.size)), -b.area, b.id)),
        ("library", f"{ctx.town} Library", lambda b: (-b.height_m, b.id)),
        ("barracks", "the Watch House", lambda b: (float(np.hypot(b.xy[0] - gate.x, b.xy[1] - gate.y)) if gate
                                                   else -dist[b.id], b.id)),
        ("workshop", f"{ctx.namer.pick(_SURNAMES)}'s Forge",
         lambda b: (bool(min((_project(b.xy, s.path)[0] for s in major), default=0.0) > 30), -b.area, b.id)),
        ("manor", f"{ctx.namer.pick([s for s in _SURNAMES if s != surname])} Manor",
         lambda b: (bool(dist[b.id] <= median), -b.area, b.id)),
    ]
    out: dict[str, WorldPlace] = {}
    what = {"hall": "the town hall", "tavern": "the tavern", "shop": "the general store", "temple": "the temple",
            "library": "the library", "barracks": "the barracks of the town watch", "workshop": "the smithy",
            "manor": "a manor house"}
    for kind, name, key in rules:
        if not left:
            break
        b = min(left, key=key)
        left.remove(b)
        address = f"on {b.street}" if b.street else ""
        out[kind] = ctx.place(name, kind, b.xy, f"{what[kind]}, {address}".strip(", "))
        ctx.landmark_buildings[kind] = b
    return out


def _homes(ctx: _Context, buildings: list[_Building], landmarks: dict[str, WorldPlace]) -> list[WorldPlace]:
    """Addresses ("7 Mill Lane") of residential buildings: numbered along their street."""
    taken = {b.id for b in ctx.landmark_buildings.values()}
    by_street: dict[str, list[_Building]] = {}
    for b in buildings:
        if b.id not in taken and b.street:
            by_street.setdefault(b.street, []).append(b)
    numbered = []
    for street, items in sorted(by_street.items()):
        for k, b in enumerate(sorted(items, key=lambda b: (b.along_m, b.id)), start=1):
            numbered.append((f"{k} {street}", b))
    rng = np.random.default_rng(len(numbered))
    pick = sorted(rng.permutation(len(numbered))[:MAX_HOMES].tolist())
    return [ctx.place(numbered[i][0], "home", numbered[i][1].xy,
                      f"a house of {_plural(numbered[i][1].levels, 'storey')}") for i in pick]


def _water(ctx: _Context, state, streets: list[_Street], market: WorldPlace | None) -> list[WorldPlace]:
    """Sea, river and lakes: connected water areas, named, with where they lie and which roads bridge them."""
    from scipy import ndimage

    water = np.asarray(state.water, dtype=bool)
    if not water.any():
        ctx.add(f"Water in {ctx.town}", f"There is no sea, river or lake in {ctx.town}; it lies on dry land.")
        return []
    labels, n = ndimage.label(water)
    h, w = water.shape
    out = []
    ref = np.array([market.x, market.y]) if market else np.array(ctx.size) / 2
    bridges = [s.name for s in streets if s.bridge]
    for k in range(1, n + 1):
        mask = labels == k
        cells = int(mask.sum())
        if cells < max(4, 0.01 * water.size):
            continue
        sides = {"north": mask[0].mean(), "south": mask[-1].mean(), "west": mask[:, 0].mean(),
                 "east": mask[:, -1].mean()}
        rows, cols = np.nonzero(mask)
        xy = np.column_stack([(cols + 0.5) * ctx.cell_m, ctx.size[1] - (rows + 0.5) * ctx.cell_m])
        share = cells / water.size
        touching = [s for s, v in sides.items() if v > 0]
        if ctx.town and state.controls.coast and max(sides.values()) > 0.5:
            side = max(sides, key=lambda s: sides[s])
            name, kind = f"{ctx.town} Bay", "sea"
            text = [f"{ctx.town} lies on the coast: the sea ({name}) borders the town on its {side} side and "
                    f"covers {share:.0%} of its area."]
        elif len(touching) >= 2 or (state.controls.river and len(touching) >= 1):
            name, kind = f"River {ctx.namer.pick(_RIVERS)}", "river"
            ends = sorted(touching, key=lambda s: -sides[s])[:2]
            text = [f"The {name} flows through {ctx.town}" + (f" between its {ends[0]} and {ends[1]} edges"
                                                               if len(ends) == 2 else f" from its {ends[0]} edge")
                    + f", covering {share:.0%} of the town."]
        else:
            name, kind = f"{ctx.namer.pick(_GREEN)} Mere", "lake"
            centre = xy.mean(axis=0)
            text = [f"{name} is a lake of about {cells * ctx.cell_m ** 2 / 10_000:.1f} hectares in the "
                    f"{ctx.district(*centre)} of {ctx.town}."]
        if bridges and kind in ("river", "sea"):
            text.append(f"{_join(bridges)} {'crosses' if len(bridges) == 1 else 'cross'} the water by a bridge.")
        nearest = xy[int(np.argmin(np.linalg.norm(xy - ref, axis=1)))]
        out.append(ctx.place(name, kind, nearest, f"{kind}, {share:.0%} of the area"))
        ctx.add(name, *text)
    ponds = not out
    if ponds:  # only scattered pools: one place and one passage for all of them
        rows, cols = np.nonzero(water)
        xy = np.column_stack([(cols + 0.5) * ctx.cell_m, ctx.size[1] - (rows + 0.5) * ctx.cell_m])
        districts = _counts(ctx.district(*p) for p in xy)
        name = f"{ctx.namer.pick(_GREEN)} Ponds"
        out.append(ctx.place(name, "lake", xy[int(np.argmin(np.linalg.norm(xy - ref, axis=1)))],
                             f"{_plural(n, 'pond')}, {water.mean():.0%} of the area"))
        ctx.add(name, f"{name} are {_plural(n, 'small pond')} scattered over {ctx.town}, covering "
                      f"{water.mean():.0%} of its area, most of them in the {districts[0][0]}.")
    shore = _shore(water, ctx, ref)
    if shore is not None and out and not ponds:
        kind = "sea" if any(p.kind == "sea" for p in out) else out[0].kind
        name = "the Harbour" if kind == "sea" else "the Quay"
        p = ctx.place(name, "docks", shore, f"landing on {_the(out[0].name)}")
        ctx.add(name, f"{_cap(name)}, where boats land, is on the shore of {_the(out[0].name)} in the "
                      f"{p.district}.")
        out.append(p)
    return out


def _shore(water: np.ndarray, ctx: _Context, ref: np.ndarray) -> np.ndarray | None:
    from scipy import ndimage

    land_edge = ndimage.binary_dilation(water) & ~water
    rows, cols = np.nonzero(land_edge)
    if not len(rows):
        return None
    xy = np.column_stack([(cols + 0.5) * ctx.cell_m, ctx.size[1] - (rows + 0.5) * ctx.cell_m])
    return xy[int(np.argmin(np.linalg.norm(xy - ref, axis=1)))]


def _green(ctx: _Context, state, market: WorldPlace | None) -> list[WorldPlace]:
    """Park (open land nearest the market), wood (land farthest from roads), fields (open land at the edge)."""
    from scipy import ndimage

    water = np.asarray(state.water, dtype=bool)
    roads = np.asarray(state.roads).any(axis=0)
    built = np.zeros(water.shape, dtype=bool)
    from gaiverse.world.world_state import building_cells

    for b in state.buildings:
        built |= building_cells(b, state.shape, state.cell_m)
    free = ~(water | roads | built)
    if not free.any():
        return []
    far_road = ndimage.distance_transform_edt(~roads) * ctx.cell_m if roads.any() else np.full(water.shape, 1e6)
    far_built = ndimage.distance_transform_edt(~built) * ctx.cell_m if built.any() else np.full(water.shape, 1e6)
    h, w = water.shape
    rows, cols = np.nonzero(free)
    xy = np.column_stack([(cols + 0.5) * ctx.cell_m, ctx.size[1] - (rows + 0.5) * ctx.cell_m])
    ref = np.array([market.x, market.y]) if market else np.array(ctx.size) / 2
    d_ref = np.linalg.norm(xy - ref, axis=1)
    out: list[WorldPlace] = []
    roomy = np.minimum(far_road[rows, cols], far_built[rows, cols])
    park_i = int(np.argmin(d_ref - 3 * np.minimum(roomy, 20)))
    park = ctx.place(f"{ctx.namer.pick(_GREEN)} Gardens", "park", xy[park_i], "public gardens")
    out.append(park)
    wood_i = int(np.argmax(far_road[rows, cols] + 0.5 * far_built[rows, cols]))
    wood = ctx.place(f"{ctx.namer.pick(_GREEN)} Wood", "forest", xy[wood_i], "woodland away from the roads")
    out.append(wood)
    apart = np.linalg.norm(xy - xy[wood_i], axis=1) > 0.15 * max(ctx.size)  # fields are not the wood
    fields_i = int(np.argmax(np.where(apart, d_ref + far_built[rows, cols], -1e9)))
    if np.linalg.norm(xy[fields_i] - xy[wood_i]) > 0.15 * max(ctx.size):
        out.append(ctx.place(f"{ctx.namer.pick(_GREEN)} Fields", "fields", xy[fields_i], "open farmland"))
    for p in out:
        dx, dy = p.x - ref[0], p.y - ref[1]
        ctx.add(p.name, f"{p.name} ({p.detail}) lies in the {p.district} of {ctx.town}, "
                        f"{_metres(math.hypot(dx, dy))} {_bearing(dx, dy)} of Market Square.")
    return out


def _hill(ctx: _Context, state) -> WorldPlace | None:
    heights = np.asarray(state.heights, dtype=float)
    land = ~np.asarray(state.water, dtype=bool)
    if not land.any():
        return None
    masked = np.where(land, heights, -np.inf)
    r, c = np.unravel_index(int(np.argmax(masked)), heights.shape)
    xy = ((c + 0.5) * ctx.cell_m, ctx.size[1] - (r + 0.5) * ctx.cell_m)
    name = f"{ctx.namer.pick(_GREEN)} Hill"
    p = ctx.place(name, "hill", xy, f"the highest ground, {heights[r, c]:.0f} m")
    ctx.add(name, f"{name} in the {p.district} is the highest point of {ctx.town}, {heights[r, c]:.0f} m above "
                  f"its lowest ground; the land rises {float(np.ptp(heights)):.0f} m in all.")
    return p


# ---------------------------------------------------------------- passages

def _overview(ctx: _Context, state, manifest: dict[str, Any], streets, buildings, scene, npcs) -> None:
    w, h = ctx.size
    prompt = (state.prompt or manifest.get("state", {}).get("prompt") or "").strip()
    plants = (scene or {}).get("counts", {}).get("plants")
    total = sum(s.length_m for s in streets)
    parts = [f"{ctx.town} is the world {ctx.world_id} (version {ctx.version})"
             + (f", made from the description \u201c{prompt}\u201d with seed {state.seed}." if prompt
                else f", made with seed {state.seed}."),
             f"It measures {w:.0f} m from west to east and {h:.0f} m from south to north.",
             f"{ctx.town} has " + _join([f"{_plural(len(streets), 'road')} ({_metres(total)} in total)",
                                         _plural(len(buildings), 'building')]
                                        + ([f"{plants} trees and bushes"] if plants is not None else [])
                                        + ([_plural(len(npcs), 'resident NPC')] if npcs else [])) + ".",
             f"Its districts are {_join([n for row in ctx.district_names for n in row])}."]
    ctx.add(ctx.town, *parts)


def _district_passages(ctx: _Context, state, buildings: list[_Building], streets: list[_Street]) -> None:
    water = np.asarray(state.water, dtype=bool)
    heights = np.asarray(state.heights, dtype=float)
    h, w = water.shape
    for r in range(3):
        for c in range(3):
            name = ctx.district_names[r][c]
            x0, x1 = c * ctx.size[0] / 3, (c + 1) * ctx.size[0] / 3
            y1, y0 = ctx.size[1] - r * ctx.size[1] / 3, ctx.size[1] - (r + 1) * ctx.size[1] / 3
            rs, cs = slice(r * h // 3, (r + 1) * h // 3), slice(c * w // 3, (c + 1) * w // 3)
            inside = [b for b in buildings if x0 <= b.xy[0] < x1 + (c == 2) and y0 <= b.xy[1] < y1 + (r == 0)]
            centre = ((x0 + x1) / 2, (y0 + y1) / 2)
            ctx.place(name, "district", centre, f"{_plural(len(inside), 'building')}")
            through = [s.name for s in streets if _crosses_box(s.path, x0, x1, y0, y1)]
            side = ("central" if (r, c) == (1, 1)
                    else _bearing(centre[0] - ctx.size[0] / 2, centre[1] - ctx.size[1] / 2))
            sents = [f"The {name} is the {side} district of {ctx.town}, with "
                     f"{_plural(len(inside), 'building') if inside else 'no buildings'}"
                     + (f", {float(water[rs, cs].mean()):.0%} of it under water" if water[rs, cs].any() else "")
                     + f" and ground {float(heights[rs, cs].mean()):.0f} m above the lowest point of the town."]
            if inside:
                levels = [b.levels for b in inside]
                shapes = _counts(b.shape for b in inside)
                roofs = _counts(b.roof for b in inside)
                tall = max(inside, key=lambda b: (b.height_m, b.id))
                span = (_plural(max(levels), 'storey') if min(levels) == max(levels)
                        else f"{min(levels)} to {_plural(max(levels), 'storey')}")
                sents.append(f"Its buildings have {span} "
                             f"({np.mean([b.height_m for b in inside]):.1f} m high on average); "
                             f"footprints: {_join([f'{n} {k}' for k, n in shapes])}; roofs: "
                             f"{_join([f'{n} {k}' for k, n in roofs])}.")
                sents.append(f"The tallest building of the {name} has {_plural(tall.levels, 'storey')} "
                             f"({tall.height_m:.1f} m)" + (f", on {tall.street}." if tall.street else "."))
            else:
                sents.append(f"There are no buildings in the {name}.")
            if through:
                sents.append(f"Roads in the {name}: {_join(through[:8])}.")
            ctx.add(name, *sents)


def _counts(values: Iterable[str]) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def _crosses_box(path: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> bool:
    pts = np.array([_point_at(path, t) for t in np.linspace(0, 1, 25)])
    return bool(((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)).any())


def _street_passages(ctx: _Context, streets: list[_Street], network) -> None:
    node_streets: dict[Any, list[str]] = {}
    for s in streets:
        for n in s.nodes:
            node_streets.setdefault(n, []).append(s.name)
    for s in streets[:ROAD_PASSAGES]:
        a, b = s.path[0], s.path[-1]
        crossing = list(dict.fromkeys(o for n in s.nodes for o in node_streets.get(n, []) if o != s.name))
        d_a, d_b = ctx.district(*a), ctx.district(*b)
        course = (f"runs {_bearing(*(b - a))}" if np.linalg.norm(b - a) > 0.3 * s.length_m else "loops")
        sents = [f"{s.name} is a {s.cls} road of {_metres(s.length_m)} that {course}"
                 + (f" from the {d_a} to the {d_b}." if d_a != d_b else f" within the {d_a}.")]
        if crossing:
            sents.append(f"{s.name} meets {_join(crossing[:6])}.")
        if s.bridge:
            sents.append(f"{s.name} crosses water by a bridge.")
        ctx.add(s.name, *sents)
    rest = streets[ROAD_PASSAGES:]
    if rest:
        ctx.add(f"Other roads of {ctx.town}",
                f"{ctx.town} also has {_plural(len(rest), 'shorter road')}: "
                + _join([f"{s.name} ({_metres(s.length_m)})" for s in rest[:40]]) + ".")
    major = sum(s.length_m for s in streets if s.cls == "major")
    minor = sum(s.length_m for s in streets if s.cls != "major")
    longest = streets[0] if streets else None
    if longest is not None:
        ctx.add(f"Roads of {ctx.town}",
                f"The road network of {ctx.town} has {_plural(len(streets), 'named road')}: {_metres(major)} of major "
                f"roads and {_metres(minor)} of minor roads, with "
                f"{_plural(sum(1 for n in network.graph.nodes if network.graph.degree(n) >= 3), 'junction')}.",
                f"The longest road is {longest.name}, {_metres(longest.length_m)} long.")


def _building_passages(ctx: _Context, buildings: list[_Building], landmarks: dict[str, WorldPlace],
                       market: WorldPlace | None, homes: list[WorldPlace]) -> None:
    if not buildings:
        ctx.add(f"Buildings of {ctx.town}", f"There are no buildings in {ctx.town} yet.")
        return
    levels = _counts(str(b.levels) for b in buildings)
    tallest = max(buildings, key=lambda b: (b.height_m, b.id))
    biggest = max(buildings, key=lambda b: (b.area, b.id))
    hall = landmarks.get("hall")
    ctx.add(f"Buildings of {ctx.town}",
            f"{ctx.town} has {_plural(len(buildings), 'building')}: "
            + _join([f"{n} of {_plural(int(k), 'storey')}" for k, n in sorted(levels, key=lambda kv: int(kv[0]))])
            + ".",
            f"The tallest building is {hall.name if hall else 'a house'} with {_plural(tallest.levels, 'storey')} "
            f"({tallest.height_m:.1f} m) in the {ctx.district(*tallest.xy)}"
            + (f" on {tallest.street}." if tallest.street else "."),
            f"The largest footprint covers {biggest.area:.0f} square metres; the average is "
            f"{np.mean([b.area for b in buildings]):.0f} square metres.")
    ref = np.array([market.x, market.y]) if market else None
    for kind, p in landmarks.items():
        b = ctx.landmark_buildings[kind]
        where = f"on {b.street} " if b.street else ""
        rel = ""
        if ref is not None:
            dx, dy = p.x - ref[0], p.y - ref[1]
            rel = (f", {_metres(math.hypot(dx, dy))} {_bearing(dx, dy)} of Market Square"
                   if math.hypot(dx, dy) >= 5 else ", on Market Square")
        ctx.add(p.name, f"{_cap(p.name)}, {p.detail.split(',')[0]} of {ctx.town}, stands {where}in the "
                        f"{p.district}{rel}, with {_plural(b.levels, 'storey')} ({b.height_m:.1f} m) "
                        f"and a {b.roof} roof.")
    if homes:
        streets = _counts(h.name.split(" ", 1)[1] for h in homes)
        ctx.add(f"Houses of {ctx.town}",
                f"Most buildings of {ctx.town} are houses; many stand on {_join([s for s, _ in streets[:4]])}.")


def _vegetation_passage(ctx: _Context, scene: dict[str, Any] | None, green: list[WorldPlace]) -> None:
    counts = (scene or {}).get("counts", {})
    species = counts.get("plants_by_species") or {}
    if counts.get("plants") is not None:
        ctx.add(f"Trees of {ctx.town}",
                f"{ctx.town} has {counts['plants']} trees and bushes"
                + (": " + _join([f"{n} {k}" for k, n in sorted(species.items(), key=lambda kv: -kv[1]) if n]) + "."
                   if species else "."),
                "Green places: " + _join([p.name for p in green]) + "." if green else "")


def _routes(ctx: _Context, network, streets: list[_Street], market: WorldPlace | None,
            targets: list[WorldPlace]) -> None:
    """One sentence per place: the way from Market Square along named roads (shortest path in the road graph)."""
    import networkx as nx

    if market is None or network.graph.number_of_nodes() == 0:
        return
    graph = network.graph
    start = ctx.market_node
    edge_street = {eid: s for s in streets for eid in s.edges}
    nodes = list(graph.nodes)
    node_xy = np.array([graph.nodes[n]["xy"] for n in nodes], dtype=float)
    lengths, paths = nx.single_source_dijkstra(graph, start, weight=lambda u, v, d: _length(d["path"]))
    for p in targets:
        if p.kind not in ROUTE_KINDS and p.kind not in ("sea", "river", "lake"):
            continue
        target_xy = np.array([p.x, p.y])
        reachable = [i for i, n in enumerate(nodes) if n in paths]
        i = min(reachable, key=lambda i: float(np.linalg.norm(node_xy[i] - target_xy)))
        end = nodes[i]
        legs: list[list] = []
        path = paths[end]
        for u, v in zip(path[:-1], path[1:]):
            d = graph.edges[u, v]
            street = edge_street.get(d["id"])
            pts = _leaving(d, u)
            if legs and legs[-1][0] is street:
                legs[-1][2] = pts[-1]
                legs[-1][3] += _length(pts)
            else:
                legs.append([street, pts[0], pts[-1], _length(pts)])
        last = np.asarray(graph.nodes[end]["xy"], dtype=float)
        off = target_xy - last
        tail = (f"{p.name} is {_metres(float(np.linalg.norm(off)))} to the {_bearing(*off)} from there"
                if np.linalg.norm(off) >= 10 else f"{p.name} is right there")
        if not legs:
            dx, dy = target_xy - np.array([market.x, market.y])
            text = (f"To get to {p.name} from Market Square, walk {_metres(math.hypot(dx, dy))} "
                    f"{_bearing(dx, dy)}; it is in the {p.district}.")
        else:
            steps = [f"{'go' if k == 0 else 'then'} {_bearing(*(b - a))} along {street.name if street else 'a lane'} "
                     f"for {_metres(n)}" for k, (street, a, b, n) in enumerate(legs)]
            text = (f"To get to {p.name} from Market Square, {', '.join(steps)}; {tail}, about "
                    f"{_metres(lengths[end] + float(np.linalg.norm(off)))} of walking in all.")
        ctx.add(f"Way to {p.name}", text)


def _npc_passages(ctx: _Context, npcs: Sequence[dict[str, Any]]) -> None:
    for npc in npcs:
        world = npc.get("world") or {}
        sched = (npc.get("behaviour") or {}).get("schedule") or []
        home, work = world.get("home"), world.get("work")
        sents = [f"{npc['name']} is {_article(npc['role'])} {npc['role']} who lives in {ctx.town}"
                 + (f", at {home}" if home else "") + "."]
        if work and work != home:
            sents.append(f"{npc['name']} works at {work}.")
        day = [f"{b['activity']} at {b['place']} from {b['start']}" for b in sched if b.get("activity") != "sleep"][:4]
        if day:
            sents.append(f"{npc['name']}'s usual day: " + _join(day) + ".")
        ctx.add(npc["name"], *sents)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _the(name: str) -> str:
    """'the River Wend', 'Hartmore Bay': rivers take the article, named bays and meres do not."""
    return f"the {name}" if name.startswith("River ") else name


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# ---------------------------------------------------------------- reading a published world

def world_npcs(store, catalog, owner: str, world_id: str) -> list[dict[str, Any]]:
    """Profiles of the owner's NPCs (latest version of ``npc/<owner>/<id>``) placed in ``world_id``."""
    rows = catalog.query(
        "SELECT collection, arg_max(manifest_key, version) AS manifest_key FROM versions "
        "WHERE starts_with(collection, ?) GROUP BY collection ORDER BY collection", [f"npc/{owner}/"])
    out = []
    for row in rows:
        try:
            manifest = json.loads(store.get_bytes(row["manifest_key"]))
            if manifest.get("world_id") not in (None, world_id):
                continue
            profile = json.loads(store.get_bytes(manifest["assets"]["profile"]["key"]))
        except Exception as err:  # noqa: BLE001 - one unreadable NPC must not hide the world
            log.warning("skipping NPC %s: %s", row["collection"], err)
            continue
        if (profile.get("world") or {}).get("world_id") == world_id:
            out.append(profile)
    return out


def load_world_knowledge(store, catalog, world_id: str, version: int | None = None, user_id: str | None = None,
                         admin: bool = False, with_npcs: bool = True) -> WorldKnowledge:
    """Knowledge of one published version (default the latest), read as the worlds API reads it.

    ``user_id`` must own the world (``WorldNotFound`` otherwise, as for a world that does not exist).
    """
    from gaiverse.world.versions import WorldVersions, check_world_id

    check_world_id(world_id)
    repo = WorldVersions(store, catalog)
    owner = repo.check_access(world_id, user_id, admin=admin)
    row = repo.version(world_id, version)
    manifest = repo.manifest(world_id, row.version)
    state = repo.load_state(world_id, row.version)
    scene = manifest.get("scene")
    if scene is None and "scene_json" in manifest.get("objects", {}):
        scene = json.loads(store.get_bytes(manifest["objects"]["scene_json"]["key"]))
    npcs = world_npcs(store, catalog, owner, world_id) if with_npcs else []
    return derive_world_knowledge(state, manifest, world_id, row.version, owner, npcs, scene)


def world_places(store, catalog, world_id: str, user_id: str | None = None, version: int | None = None) -> WorldPlaces:
    """The named places of a world the user owns (what NPC schedules are placed at)."""
    return load_world_knowledge(store, catalog, world_id, version, user_id, with_npcs=False).places


# ---------------------------------------------------------------- storing

def prepare(knowledge: WorldKnowledge, embedder) -> kb_ingest.PreparedDocument:
    """Embed and check the passages (outside any lock); nothing is stored yet."""
    if not knowledge.passages:
        raise WorldKnowledgeError(f"world {knowledge.world_id!r} v{knowledge.version} gave no passages")
    vectors = kb_ingest.embed(knowledge.passages, embedder)
    kb_ingest.check(knowledge.passages, vectors, knowledge.owner)
    return kb_ingest.PreparedDocument(world_doc_id(knowledge.owner, knowledge.world_id), knowledge.source,
                                      knowledge.owner, None, knowledge.passages, vectors)


_VERSION_RE = re.compile(r"^world/(?P<id>[a-z0-9-]+)@v(?P<v>\d+)$")


def stored_version(kb, owner: str, world_id: str) -> int | None:
    """The version of the world whose passages are stored now (None: none)."""
    row = kb.con.execute("SELECT name FROM kb_docs WHERE doc_id = ?", [world_doc_id(owner, world_id)]).fetchone()
    match = _VERSION_RE.match(row[0]) if row else None
    return int(match["v"]) if match else None


def store(kb, doc: kb_ingest.PreparedDocument, version: int) -> dict[str, Any]:
    """Replace the world's passages with ``doc`` in one transaction (``kb`` opened for writing).

    An older version never replaces a newer one (two ingestions racing end with the newest).
    """
    world_id = doc.name.split("/", 1)[1].split("@", 1)[0]
    before = stored_version(kb, doc.user_id, world_id)
    if before is not None and before > version:
        log.info("world %s: v%d already stored, not replacing it with v%d", world_id, before, version)
        return {"stored": False, "stored_version": before, "passages": 0}
    old = kb.con.execute("SELECT count(*) FROM kb_chunks WHERE doc_id = ?", [doc.doc_id]).fetchone()[0]
    ids = kb_ingest.store(kb, doc)
    return {"stored": True, "stored_version": version, "passages": len(ids), "replaced": int(old),
            "replaced_version": before}


def ingest_world(shared_kb, store_, catalog, world_id: str, version: int | None = None, user_id: str | None = None,
                 admin: bool = False) -> dict[str, Any]:
    """Derive, embed and store the knowledge of a world version; returns a summary.

    ``shared_kb`` is a ``SharedKnowledgeBase`` (embedding happens before its write lock is taken).
    """
    knowledge = load_world_knowledge(store_, catalog, world_id, version, user_id, admin)
    with shared_kb.reading() as kb:  # a newer version is stored already: nothing to embed
        newer = stored_version(kb, knowledge.owner, world_id)
    if newer is not None and newer > knowledge.version:
        return {**_summary(knowledge, world_doc_id(knowledge.owner, world_id)), "stored": False,
                "stored_version": newer, "passages": 0}
    doc = prepare(knowledge, shared_kb.embedder)
    with shared_kb.writing() as kb:
        result = store(kb, doc, knowledge.version)
    log.info("world %s v%d: %d passages, %d places", world_id, knowledge.version, len(knowledge.passages),
             len(knowledge.places))
    return {**_summary(knowledge, doc.doc_id), **result}


def _summary(knowledge: WorldKnowledge, doc_id: str) -> dict[str, Any]:
    return {**knowledge.stats, "world_id": knowledge.world_id, "version": knowledge.version, "owner": knowledge.owner,
            "name": knowledge.name, "source": knowledge.source, "doc_id": doc_id, "places": len(knowledge.places),
            "derived_passages": len(knowledge.passages)}
