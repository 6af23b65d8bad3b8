"""The self-check flow: proves an installation works end to end, one step per platform piece.

generate (trimesh -> .glb) -> model (torch in a Ray actor) -> preview (PNG) -> store (S3)
-> validate (GX on what was read back) -> catalog (GX on the catalog) -> publish (one
catalog transaction) -> report (artifacts). A step that fails skips the ones after it
(nothing is published unvalidated) and the flow fails with one line per step; on success
it returns the same summary, which ``gaiverse selfcheck`` prints.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.common import current_run_ids, flow_hooks
from tasks.selfcheck import (
    attach_report, check_catalog, fit_model_stage, generate_asset, publish_selfcheck, render_preview,
    store_outputs, validate_outputs,
)

STEPS = ("generate", "model", "preview", "store", "validate", "catalog", "publish", "report")


class SelfcheckFailed(RuntimeError):
    """A self-check step failed; ``summary`` holds every step's outcome."""

    def __init__(self, summary: dict[str, Any]):
        lines = [f"{'ok  ' if s['ok'] else 'FAIL'} {s['name']}: {s['detail']}" for s in summary["steps"]]
        super().__init__("self-check failed:\n" + "\n".join(lines))
        self.summary = summary

    def __reduce__(self):
        return (type(self), (self.summary,))


class StepLog:
    """Runs the steps in order, records (name, ok, detail) for each, skips the rest after a failure."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.logger = get_run_logger()

    @property
    def ok(self) -> bool:
        return all(step["ok"] for step in self.steps)

    def run(self, name: str, call: Callable[[], Any], detail: Callable[[Any], str], always: bool = False) -> Any:
        """Run ``call`` as step ``name``; ``always`` runs it even after a failure (the report)."""
        if not self.ok and not always:
            self.steps.append({"name": name, "ok": False, "detail": "skipped after an earlier failure"})
            self.logger.info("step %s skipped", name)
            return None
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - recorded as the step's outcome, re-raised by the flow
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.steps.append({"name": name, "ok": False, "detail": f"{type(exc).__name__}: {message}"[:500]})
            self.logger.error("step %s failed: %s", name, self.steps[-1]["detail"])
            return None
        self.steps.append({"name": name, "ok": True, "detail": detail(result)})
        self.logger.info("step %s ok: %s", name, self.steps[-1]["detail"])
        return result


@flow(name="selfcheck", description="End-to-end check of an installation: mesh, Ray+torch, S3, GX, catalog.",
      **flow_hooks())
def selfcheck(
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
    subdivisions: Annotated[int, Field(ge=1, le=4)] = 2,
    fit_steps: Annotated[int, Field(ge=10, le=5000)] = 300,
    collection: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")] = "selfcheck",
) -> dict[str, Any]:
    """Run every step; return {"ok", "flow_run_id", "collection", "version", "steps": [{name, ok, detail}]}.

    seed : changes the mesh (and so every stored key). subdivisions : icosphere level
    (42 to 2562 vertices). fit_steps : Adam steps of the model stage.
    """
    log = StepLog()
    mesh = log.run("generate", lambda: generate_asset(subdivisions, seed),
                   lambda r: f"{r['check']['vertices']} vertices, {r['check']['faces']} faces, {len(r['glb'])} B glb")
    fit = log.run("model", lambda: fit_model_stage(mesh["vertices"], mesh["normals"], fit_steps),
                  lambda r: f"{r['device']} on node {r['node_id'][:12]} ({r['node_ip']}), "
                            f"loss {r['initial_loss']:.1e} -> {r['final_loss']:.1e}")
    preview = log.run("preview", lambda: render_preview(mesh["glb"], fit["slice"]), lambda r: f"{len(r)} B png")
    refs = log.run("store", lambda: store_outputs(mesh["glb"], fit["values"], preview),
                   lambda r: ", ".join(ref.key[:40] + "..." for ref in r.values()))
    metrics = log.run("validate", lambda: validate_outputs(refs, fit),
                      lambda r: f"assets and metrics passed (loss ratio {r['loss_ratio']:.3f})")
    log.run("catalog", check_catalog, lambda r: f"{len(r)} catalog suites passed on {sum(x['rows'] for x in r)} rows")
    version = log.run("publish", lambda: publish_selfcheck(collection, refs, metrics, f"selfcheck seed={seed}"),
                      lambda r: f"{r['collection']} v{r['version']}")
    log.run("report", lambda: attach_report(list(log.steps), preview),
            lambda r: f"artifacts attached (preview {r[:40]}...)" if r else "artifacts attached", always=True)
    flow_run_id, _ = current_run_ids()
    summary = {
        "ok": log.ok, "flow_run_id": flow_run_id, "collection": collection,
        "version": version["version"] if version else None, "steps": log.steps,
    }
    if not log.ok:
        raise SelfcheckFailed(summary)
    return summary
