"""numpy-aware conversion to plain JSON values, shared by the glTF extras writer and the avatar analysis."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """dicts (keys as str), lists/tuples, numpy arrays and numpy scalars -> plain Python; other values as is."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
