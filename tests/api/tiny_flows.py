"""Tiny flows the API tests trigger, served by one runner subprocess.

'api-tiny/t' is the flow the tests run; 'api-twin' has two deployments ('a', 'b') so that
naming the flow alone is ambiguous.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, serve


@flow(name="api-tiny")
def api_tiny(n: int, label: str = "hello") -> int:
    """Doubles ``n`` and logs a line the tests look for."""
    get_run_logger().info("api-tiny got n=%d label=%s", n, label)
    return 2 * n


@flow(name="api-twin")
def api_twin() -> None:
    """Never run: only its two deployments matter."""


if __name__ == "__main__":
    serve(api_tiny.to_deployment(name="t"), api_twin.to_deployment(name="a"), api_twin.to_deployment(name="b"))
