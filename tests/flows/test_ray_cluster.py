"""A local two-node Ray cluster, joined through GAIVERSE_RAY_ADDRESS: the model stage runs on the `gpu_stage` node.

This is the path of a user with a real cluster (`ray start --head` + `ray start --address`),
on one machine. The session's in-process Ray cannot join another cluster, so the driver (the
self-check flow) runs in a subprocess. Both nodes are stopped by PID (never `ray stop`, which
would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gaiverse.proc import free_port, port_open, spawn, stop_pid, wait_until

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
DRIVER = r'''
import json, time
import ray
from flows.selfcheck import selfcheck
from ray_actors import cluster
from ray_actors.selfcheck import ACTOR_NAME

cluster.connect()
deadline = time.monotonic() + 120
while sum(node["Alive"] for node in ray.nodes()) < 2 and time.monotonic() < deadline:
    time.sleep(0.5)
summary = selfcheck(seed=707)
actor = ray.get_actor(ACTOR_NAME, namespace=cluster.NAMESPACE)
print("RESULT " + json.dumps({
    "summary": summary,
    "actor": ray.get(actor.info.remote()),
    "options": cluster.stage_remote_options(),
    "nodes": [{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]],
}, default=str))
'''


def _node_ports() -> list[str]:
    """Every fixed port a Ray node opens, taken free (never Ray's defaults: a dev stack may be running)."""
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        members.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return members


@pytest.fixture()
def two_node_cluster(settings):
    """Head (1 CPU) + worker (1 CPU, resource gpu_stage=1), each `ray start --block` in its own process group."""
    base = Path(tempfile.mkdtemp(prefix="gvray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    port = free_port()
    common = ["--block", "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    services = [spawn("ray-head", [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false",
                                   "--ray-client-server-port", str(free_port()), "--temp-dir", str(base / "head"),
                                   *common, *_node_ports()], base, env=env)]
    try:
        wait_until(lambda: port_open("127.0.0.1", port), 120, "Ray head node")
        # --temp-dir can be given per node (Ray 2.60 `ray start --help`); each node keeps its own sessions
        services.append(spawn("ray-worker", [RAY, "start", "--address", f"127.0.0.1:{port}", "--resources",
                                             json.dumps({"gpu_stage": 1}), "--temp-dir", str(base / "worker"),
                                             *common, *_node_ports()], base, env=env))
        yield {"address": f"127.0.0.1:{port}", "base": base, "env": env}
    finally:
        for service in reversed(services):
            stop_pid(service.pid, service.name)
        for service in services:
            for pid in _group_members(service.pid):  # anything that outlived its node's shutdown
                os.kill(pid, 9)
        assert not any(_group_members(service.pid) for service in services)
        shutil.rmtree(base, ignore_errors=True)


def test_model_stage_actor_is_scheduled_on_the_gpu_stage_node(two_node_cluster, settings, prefect_api, store, catalog):
    from gaiverse.config import prefect_env

    env = {**os.environ, **prefect_env(settings), **two_node_cluster["env"],
           "GAIVERSE_RAY_ADDRESS": two_node_cluster["address"],
           "GAIVERSE_RAY_STAGE_RESOURCES": json.dumps({"gpu_stage": 1})}
    result = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-5000:]
    report = json.loads(lines[-1].removeprefix("RESULT "))

    assert report["summary"]["ok"], report["summary"]["steps"]
    nodes = {node["id"]: node["resources"] for node in report["nodes"]}
    assert len(nodes) == 2
    stage_nodes = [node_id for node_id, resources in nodes.items() if resources.get("gpu_stage") == 1]
    assert len(stage_nodes) == 1
    assert report["actor"]["node_id"] == stage_nodes[0]  # the model stage ran on the second node
    assert "__internal_head__" not in "".join(nodes[stage_nodes[0]])
    assert report["options"] == {"resources": {"gpu_stage": 1.0}}  # no GPU in this cluster: no num_gpus
    model_step = next(step for step in report["summary"]["steps"] if step["name"] == "model")
    assert stage_nodes[0][:12] in model_step["detail"]
    assert catalog.query("SELECT 1 FROM versions WHERE flow_run_id = ?", [report["summary"]["flow_run_id"]])
