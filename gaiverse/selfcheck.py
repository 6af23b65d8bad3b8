"""The self-check's plain functions: a small real mesh as `.glb`, a torch model fitted to it, a PNG preview.

The self-check exercises each piece an installation needs (trimesh + glTF export, torch
autograd and an optimiser, PIL) on real data, so `gaiverse selfcheck` fails when one of
them is broken. These are plain functions over arrays: the Ray actor and the Prefect tasks
only call them (``ray_actors/selfcheck.py``, ``tasks/selfcheck.py``).
"""

from __future__ import annotations

import copy
import io
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import trimesh
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

SLICE_PX = 64
"""Edge of the z=0 slice of the fitted field that the model stage returns, in samples."""


@dataclass(frozen=True)
class MeshCheck:
    """What a `.glb` holds once loaded back: proof that the export is readable."""

    vertices: int
    faces: int
    watertight: bool
    extent: float
    """Largest edge of the axis-aligned bounding box, in metres."""


@dataclass(frozen=True)
class FieldFit:
    """Result of fitting the signed-distance MLP to a mesh.

    values : (n,) float32, predicted signed distance at each mesh vertex (metres, ~0 on the surface)
    slice  : (SLICE_PX, SLICE_PX) float32, the field on the z=0 plane over [-1.5, 1.5]^2 metres
    """

    values: np.ndarray
    slice: np.ndarray
    initial_loss: float
    final_loss: float
    steps: int
    device: str


# mesh ------------------------------------------------------------------------------------
def build_mesh(subdivisions: int = 2, seed: int = 0) -> trimesh.Trimesh:
    """An icosphere of radius ~1 m with smooth seeded bumps and height-coloured vertices.

    The seed changes the geometry (so every seed yields different bytes and a new
    content-addressed key) while staying a closed, watertight surface.
    """
    if not 0 <= subdivisions <= 5:
        raise ValueError(f"`subdivisions` must be in [0, 5], got {subdivisions}")
    if seed < 0:
        raise ValueError(f"`seed` must be >= 0, got {seed}")
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(4, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    unit = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    bumps = np.tanh(unit @ directions.T * rng.uniform(1.0, 3.0, size=4)).sum(axis=1)
    radius = 1.0 + 0.08 * bumps
    vertices = unit * radius[:, None]
    height = (vertices[:, 2] - vertices[:, 2].min()) / max(np.ptp(vertices[:, 2]), 1e-9)
    colours = np.stack([60 + 180 * height, 140 + 60 * (1 - height), 200 - 120 * height, np.full_like(height, 255)], 1)
    return trimesh.Trimesh(vertices=vertices, faces=sphere.faces, vertex_colors=colours.astype(np.uint8), process=False)


def mesh_to_glb(mesh: trimesh.Trimesh) -> bytes:
    """glTF 2.0 binary of ``mesh`` (positions, normals, vertex colours)."""
    data = mesh.export(file_type="glb")
    if not data[:4] == b"glTF":
        raise ValueError("trimesh produced no glTF binary header")
    return bytes(data)


def load_glb(data: bytes) -> trimesh.Trimesh:
    """The single mesh in a `.glb` (vertex order and colours kept); ValueError when it is not one."""
    if data[:4] != b"glTF":
        raise ValueError(f"`data` is not a glTF binary (starts with {data[:4]!r})")
    loaded = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    if len(loaded.faces) == 0:
        raise ValueError("the .glb holds no triangles")
    return loaded


def check_glb(data: bytes) -> MeshCheck:
    """Load a `.glb` back and describe it; raises ValueError when it is not a readable mesh."""
    loaded = load_glb(data)
    return MeshCheck(
        vertices=int(len(loaded.vertices)),
        faces=int(len(loaded.faces)),
        watertight=bool(loaded.is_watertight),
        extent=float(np.max(loaded.extents)),
    )


# model -----------------------------------------------------------------------------------
class SurfaceField(torch.nn.Module):
    """A small MLP from a 3D point (metres) to its signed distance to a surface (metres)."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.Softplus(beta=10),
            torch.nn.Linear(hidden, hidden), torch.nn.Softplus(beta=10),
            torch.nn.Linear(hidden, 1),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.net(points).squeeze(-1)


def pick_device() -> str:
    """The one place a device is chosen: CUDA when torch sees a GPU, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_field_model(seed: int = 0, hidden: int = 64) -> SurfaceField:
    """The initial network, identical for a given seed (stands in for loading a checkpoint)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return SurfaceField(hidden)
    finally:
        torch.random.set_rng_state(generator_state)


def fit_surface_field(
    model: SurfaceField, vertices: np.ndarray, normals: np.ndarray, *, steps: int = 300,
    offset_m: float = 0.05, lr: float = 3e-3, device: str | None = None,
) -> FieldFit:
    """Fit a copy of ``model`` to the signed distance of a surface sampled at its vertices.

    vertices, normals : (n, 3) float, metres and unit vectors. Training points are the
    vertices (distance 0) and the vertices moved by ``offset_m`` along +/- the normal
    (distance +/- offset_m). ``model`` itself is not changed, so the same call gives the
    same answer (idempotent, as a retried actor method must be).
    """
    vertices = np.asarray(vertices, dtype=np.float32)
    normals = np.asarray(normals, dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 4:
        raise ValueError(f"`vertices` must be (n >= 4, 3), got {vertices.shape}")
    if normals.shape != vertices.shape:
        raise ValueError(f"`normals` must match `vertices` {vertices.shape}, got {normals.shape}")
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    device = device or pick_device()
    with _single_threaded_on_cpu(device):
        return _fit(model, vertices, normals, steps, offset_m, lr, device)


@contextmanager
def _single_threaded_on_cpu(device: str) -> Iterator[None]:
    """One intra-op thread for this tiny network: measured on 2 shared cores, 2 threads made
    150 steps take 13 s instead of 1.7 s (threads wait on each other for microsecond ops)."""
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(model: SurfaceField, vertices: np.ndarray, normals: np.ndarray, steps: int, offset_m: float, lr: float,
         device: str) -> FieldFit:
    net = copy.deepcopy(model).to(device).train()
    points = np.concatenate([vertices, vertices + offset_m * normals, vertices - offset_m * normals])
    targets = np.concatenate([np.zeros(len(vertices)), np.full(len(vertices), offset_m), np.full(len(vertices), -offset_m)])
    x = torch.from_numpy(points).to(device)
    y = torch.from_numpy(targets.astype(np.float32)).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        # 1. predict the signed distance at every training point
        loss = torch.nn.functional.mse_loss(net(x), y)
        # 2. one gradient step
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    net.eval()
    with torch.no_grad():
        values = net(torch.from_numpy(vertices).to(device)).cpu().numpy().astype(np.float32)
        axis = torch.linspace(-1.5, 1.5, SLICE_PX, device=device)
        gy, gx = torch.meshgrid(axis, axis, indexing="ij")
        grid = torch.stack([gx, gy, torch.zeros_like(gx)], dim=-1).reshape(-1, 3)
        field_slice = net(grid).reshape(SLICE_PX, SLICE_PX).cpu().numpy().astype(np.float32)
    log.info("fitted surface field on %s: loss %.2e -> %.2e in %d steps", device, losses[0], losses[-1], steps)
    return FieldFit(values, field_slice, losses[0], losses[-1], steps, device)


# preview ---------------------------------------------------------------------------------
def preview_png(mesh: trimesh.Trimesh, field_slice: np.ndarray | None = None, size_px: int = 256) -> bytes:
    """PNG preview: the shaded mesh seen from above-front, and beside it the fitted field's z=0 slice.

    field_slice : (h, w) float32 signed distances; drawn blue inside, red outside, black at 0.
    """
    if size_px < 32:
        raise ValueError(f"`size_px` must be >= 32, got {size_px}")
    panels = [_render_mesh(mesh, size_px)]
    if field_slice is not None:
        panels.append(_render_slice(np.asarray(field_slice, dtype=np.float32), size_px))
    image = Image.new("RGB", (size_px * len(panels), size_px), "white")
    for i, panel in enumerate(panels):
        image.paste(panel, (i * size_px, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _render_mesh(mesh: trimesh.Trimesh, size_px: int) -> Image.Image:
    """Painter's-algorithm rendering of the triangles with Lambert shading."""
    tilt = trimesh.transformations.rotation_matrix(np.radians(-60), [1, 0, 0])[:3, :3]
    vertices = mesh.vertices @ tilt.T
    scale = 0.45 * size_px / max(np.abs(vertices[:, :2]).max(), 1e-9)
    screen = np.stack([size_px / 2 + vertices[:, 0] * scale, size_px / 2 - vertices[:, 1] * scale], 1)
    normals = mesh.face_normals @ tilt.T
    light = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    shade = np.clip(normals @ light, 0.15, 1.0)
    colours = mesh.visual.vertex_colors[:, :3].astype(np.float64)[mesh.faces].mean(axis=1)
    depth = vertices[mesh.faces, 2].mean(axis=1)
    image = Image.new("RGB", (size_px, size_px), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    for face in np.argsort(depth):
        if normals[face, 2] <= 0:  # back face
            continue
        colour = tuple(int(c) for c in colours[face] * shade[face])
        draw.polygon([tuple(p) for p in screen[mesh.faces[face]]], fill=colour)
    return image


def _render_slice(field_slice: np.ndarray, size_px: int) -> Image.Image:
    span = max(float(np.abs(field_slice).max()), 1e-6)
    t = np.clip(field_slice / span, -1.0, 1.0)
    rgb = np.stack([np.where(t > 0, 255 * t, 0), np.zeros_like(t), np.where(t < 0, -255 * t, 0)], -1)
    rgb[np.abs(field_slice) < 0.02 * span] = 255  # the zero level set, in white
    image = Image.fromarray(rgb.astype(np.uint8)[::-1], "RGB")
    return image.resize((size_px, size_px), Image.NEAREST)


def array_to_npy(values: np.ndarray) -> bytes:
    """``values`` in .npy format (bytes), as stored in the object store."""
    out = io.BytesIO()
    np.save(out, np.asarray(values), allow_pickle=False)
    return out.getvalue()


def npy_to_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
