"""Routes on a world's road graph, by responsibility (this module re-exports them for existing imports):

- `polylines.py`: polyline geometry (cut, offset, distance, smoothing, curvature, Bezier);
- `segments.py`: `Segment`, `Route`, `RouteSet` (what agents move along, by arc length);
- `lanes.py`: the lane graph (driving lanes, junction boxes, turns, speed limits);
- `sidewalks.py`: the sidewalk graph (sidewalks, crossings, corners);
- `streets.py`: `StreetNetwork` / `build_streets`, both graphs of one road network;
route sampling is in `traffic.py` (vehicles) and `pedestrians.py` (people). Implements ENV-d2.
"""

from gaiverse.world.dynamics.lanes import (  # noqa: F401
    CAR_CLEARANCE_M, LANE_OFFSET_M, PERSON_CLEARANCE_M, SPEED_LIMIT_MPS, TURN_LIMIT_MPS, UTURN_LIMIT_MPS, StreetConfig,
)
from gaiverse.world.dynamics.polylines import cut, distance_to_polyline, min_radius, offset, smooth  # noqa: F401
from gaiverse.world.dynamics.segments import Route, RouteSet, Segment, SegmentKind  # noqa: F401
from gaiverse.world.dynamics.streets import StreetNetwork, build_streets  # noqa: F401
