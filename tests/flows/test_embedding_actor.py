"""The cluster's shared sentence embedder: same vectors as the in-process model, one actor for all runs."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from gaiverse.embedding import DIM, default_embedder

TEXTS = ["The lighthouse lamp was lit in 1887.", "Where is the market?", "a hilly coastal town with a river"]


@pytest.mark.clause("NPC-a1")
def test_shared_embedder_matches_the_in_process_model_and_is_one_actor(ray_local):
    from ray_actors.embedding import shared_embedder

    remote = shared_embedder()
    assert remote.name == default_embedder().name and remote.dim == DIM
    np.testing.assert_allclose(remote.embed(TEXTS), default_embedder().embed(TEXTS), atol=1e-5)
    assert remote.embed([]).shape == (0, DIM)
    with pytest.raises(TypeError, match="single str"):
        remote.embed("one string")
    first = ray.get(remote.handle.info.remote())
    again = ray.get(shared_embedder().handle.info.remote())
    assert again["actor_id"] == first["actor_id"] and again["calls"] >= 1
