"""Serves the real build-world flow as deployment 'build-world/world-build' for the API world tests."""

from __future__ import annotations

from prefect import serve

from flows.world import build_world

if __name__ == "__main__":
    serve(build_world.to_deployment(name="world-build"))
