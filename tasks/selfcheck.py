"""Tasks of the self-check flow: thin, retryable wrappers over ``gaiverse.selfcheck`` and the platform pieces."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import ray
from prefect import get_run_logger

from gaiverse.selfcheck import (
    array_to_npy, build_mesh, check_glb, load_glb, mesh_to_glb, npy_to_array, preview_png,
)
from storage.catalog import Version
from storage.objectstore import AssetRef
from tasks.artifacts import png_artifact, table_artifact, validate_in_run
from tasks.common import current_run_ids, gaiverse_task, get_catalog, get_store
from validation.catalog_suite import validate_catalog
from validation.selfcheck import (
    ASSET_EXPECTATIONS, ASSETS_SUITE, METRIC_EXPECTATIONS, METRICS_SUITE, assets_frame, metrics_frame,
)

MODEL_TIMEOUT_S = 300


@gaiverse_task(depends_on=("gaiverse.selfcheck",), retries=1)
def generate_asset(subdivisions: int, seed: int) -> dict[str, Any]:
    """A small real mesh exported to `.glb` and loaded back (the check proves the export is readable)."""
    mesh = build_mesh(subdivisions, seed)
    glb = mesh_to_glb(mesh)
    check = check_glb(glb)
    get_run_logger().info("generated mesh: %d vertices, %d faces, %d bytes of glb", check.vertices, check.faces, len(glb))
    return {
        "glb": glb,
        "check": check.__dict__,
        "vertices": np.asarray(mesh.vertices, dtype=np.float32),
        "normals": np.asarray(mesh.vertex_normals, dtype=np.float32),
    }


@gaiverse_task(cache="none", retries=2, backoff_s=2.0, timeout_seconds=MODEL_TIMEOUT_S)
def fit_model_stage(vertices: np.ndarray, normals: np.ndarray, steps: int) -> dict[str, Any]:
    """Run the model stage in its Ray actor (created on first use); uncached: its point is to run."""
    from ray_actors.selfcheck import selfcheck_model

    actor = selfcheck_model()
    result = ray.get(actor.fit.remote(vertices, normals, steps), timeout=MODEL_TIMEOUT_S)
    get_run_logger().info(
        "model stage on node %s (%s, pid %d, %s): loss %.2e -> %.2e",
        result["node_id"][:12], result["node_ip"], result["pid"], result["device"],
        result["initial_loss"], result["final_loss"],
    )
    return result


@gaiverse_task(depends_on=("gaiverse.selfcheck",), retries=1)
def render_preview(glb: bytes, field_slice: np.ndarray) -> bytes:
    """PNG preview of the mesh as loaded from its `.glb`, beside the fitted field's z=0 slice."""
    return preview_png(load_glb(glb), field_slice)


@gaiverse_task(cache="stored", retries=5, backoff_s=1.0)
def store_outputs(glb: bytes, field_values: np.ndarray, preview: bytes) -> dict[str, AssetRef]:
    """Put the outputs in the object store, then register them in the catalog.

    Every put happens before any catalog row is written, so a failure (the S3 server going
    away) leaves no row without its object; the retry re-puts the same content-addressed
    keys (no-ops for those already there) and then writes the rows.
    """
    store = get_store()
    refs = {
        "mesh": store.put_bytes(glb, kind="selfcheck/mesh", ext="glb"),
        "field": store.put_bytes(array_to_npy(field_values), kind="selfcheck/field", ext="npy"),
        "preview": store.put_bytes(preview, kind="selfcheck/preview", ext="png"),
    }
    _, task_run_id = current_run_ids()
    catalog = get_catalog()
    catalog.record_asset(refs["mesh"], task_run_id=task_run_id)
    catalog.record_asset(refs["field"], task_run_id=task_run_id, inputs=[refs["mesh"].key])
    catalog.record_asset(refs["preview"], task_run_id=task_run_id, inputs=[refs["mesh"].key, refs["field"].key])
    get_run_logger().info("stored %s", ", ".join(ref.key for ref in refs.values()))
    return refs


@gaiverse_task(cache="none", retries=2)
def validate_outputs(refs: dict[str, AssetRef], fit: dict[str, Any]) -> dict[str, Any]:
    """Read every object back (sha256-verified), decode it, and validate assets and metrics with GX."""
    store = get_store()
    rows, decoded = [], {}
    for name, ref in refs.items():
        data = store.get_bytes(ref.key)  # raises IntegrityError when the bytes do not match the key
        decoded[name] = _decode(ref, data)
        rows.append({**ref.to_dict(), "sha256_verified": True, "decodes": decoded[name] is not None})
    validate_in_run(ASSETS_SUITE, assets_frame(rows), ASSET_EXPECTATIONS, asset_key=refs["mesh"].key)
    check = decoded["mesh"]
    metrics = metrics_frame(
        field_key=refs["field"].key, vertices=check.vertices, faces=check.faces, watertight=check.watertight,
        field_values=decoded["field"], initial_loss=fit["initial_loss"], final_loss=fit["final_loss"],
        device=fit["device"],
    )
    validate_in_run(METRICS_SUITE, metrics, METRIC_EXPECTATIONS, asset_key=refs["field"].key)
    return metrics.iloc[0].to_dict()


def _decode(ref: AssetRef, data: bytes) -> Any:
    """The object decoded by its type, None when it does not decode."""
    try:
        if ref.key.endswith(".glb"):
            return check_glb(data)
        if ref.key.endswith(".npy"):
            return npy_to_array(data).tolist()
        if ref.key.endswith(".png"):
            return data[:8] == b"\x89PNG\r\n\x1a\n" or None
    except ValueError:
        return None
    return None


@gaiverse_task(cache="none", retries=2)
def check_catalog() -> list[dict[str, Any]]:
    """Validate the catalog's own tables (formats, states, durations, manifest keys)."""
    flow_run_id, _ = current_run_ids()
    reports = validate_catalog(get_catalog(), flow_run_id=flow_run_id)
    return [{"suite": r.suite, "rows": r.rows, "success": r.success} for r in reports]


@gaiverse_task(cache="none", retries=3)
def publish_selfcheck(collection: str, refs: dict[str, AssetRef], metrics: dict[str, Any], message: str) -> dict:
    """Write the manifest and publish a version in one catalog transaction (once per flow run)."""
    flow_run_id, _ = current_run_ids()
    catalog = get_catalog()
    if flow_run_id:  # a retry after a publish that did commit must not publish twice
        done = catalog.query("SELECT version, manifest_key FROM versions WHERE collection = ? AND flow_run_id = ?",
                             [collection, flow_run_id])
        if done:
            return {"collection": collection, **done[0]}
    manifest = {
        "collection": collection,
        "flow_run_id": flow_run_id,
        "assets": {name: ref.to_dict() for name, ref in refs.items()},
        "metrics": {key: (value.item() if hasattr(value, "item") else value) for key, value in metrics.items()},
    }
    manifest_ref = get_store().put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                                         kind="selfcheck/manifest", ext="json")
    version: Version = catalog.publish_version(
        collection, manifest=manifest_ref, assets=list(refs.values()), message=message,
        author="selfcheck", flow_run_id=flow_run_id,
    )
    get_run_logger().info("published %s v%d (manifest %s)", collection, version.version, manifest_ref.key)
    return {"collection": collection, "version": version.version, "manifest_key": manifest_ref.key}


@gaiverse_task(cache="none", retries=2)
def attach_report(steps: list[dict[str, Any]], preview: bytes | None) -> str | None:
    """The run's artifacts: the table of steps, and the preview PNG linked by a presigned URL."""
    table_artifact("selfcheck-steps", steps, title="Self-check", columns=["name", "ok", "detail"],
                   description="one row per self-check step")
    if preview is None:
        return None
    return png_artifact("selfcheck-preview", preview, kind="selfcheck/preview",
                        description="self-check mesh and fitted field (z=0 slice)").key
