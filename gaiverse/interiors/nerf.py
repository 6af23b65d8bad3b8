"""A compact NeRF for few real photos on a CPU: TensoRF-VM field in a contracted space, occupancy grid, volume rendering.

Why this variant: the vector-matrix factorisation (three planes x three lines per component) costs a few
grid_sample calls per batch, trains in minutes on 2 CPU cores and fits in a few MB, and total-variation on
its planes is the regulariser that keeps 3-5 views from being explained by floaters. Scenes are
normalised so their sparse points fill [-1, 1]^3; everything beyond is contracted into [-2, 2]^3
(mip-NeRF 360), so rooms and façades with sky behind them both fit one bounded grid. An occupancy grid,
refreshed during training, skips empty space; colour is only evaluated where a sample's weight matters.
Ray directions are not normalised (z = 1 in the camera), so the ray parameter t is the z-depth and the
expected t is the depth map. Runs on CUDA when one exists (`pick_device`), never hard-coded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def pick_device(preference: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cpu`/`cuda` force one (cuda fails clearly when absent)."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` cuda requested but torch sees no CUDA device")
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be auto, cpu or cuda, got {preference!r}")
    return torch.device(preference)


@dataclass
class FieldConfig:
    resolution: int = 96
    """Final edge of the factorised grid (cells across the contracted cube [-2, 2])."""
    start_resolution: int = 32
    """Edge at the start; doubled (capped at `resolution`) at the upsampling steps (coarse to fine)."""
    density_resolution: int = 0
    """Cap on the density factors' edge (0 = `resolution`): few views pin down coarse geometry only, while
    appearance can still use the finer grid."""
    density_components: int = 8
    """VM components of the density field."""
    appearance_components: int = 12
    """VM components of the appearance features."""
    feature_dim: int = 16
    """Appearance feature width fed to the colour head."""
    hidden: int = 0
    """Hidden width of the colour MLP; 0 = a linear head (diffuse colour, the cheapest on a CPU)."""
    density_shift: float = -5.0
    """Added before softplus so a fresh field starts as a thin fog rather than a wall."""
    density_scale: float = 25.0
    """Multiplies the softplus (TensoRF's distance scale): lets small factors reach opaque surfaces in few steps."""


def contract(x: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360 contraction with the inf-norm: identity inside [-1, 1]^3, the rest of space into [-2, 2]^3."""
    norm = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-9)
    return torch.where(norm <= 1, x, (2 - 1 / norm) * x / norm)


class TensoRFField(nn.Module):
    """Density and colour at contracted positions in [-2, 2]^3 from plane x line factors."""

    PLANE_AXES = ((0, 1), (0, 2), (1, 2))
    LINE_AXES = (2, 1, 0)

    def __init__(self, config: FieldConfig):
        super().__init__()
        self.config = config
        r = config.start_resolution
        self.density_planes = nn.Parameter(0.1 * torch.randn(3, config.density_components, r, r))
        self.density_lines = nn.Parameter(0.1 * torch.randn(3, config.density_components, r, 1))
        self.app_planes = nn.Parameter(0.1 * torch.randn(3, config.appearance_components, r, r))
        self.app_lines = nn.Parameter(0.1 * torch.randn(3, config.appearance_components, r, 1))
        self.basis = nn.Linear(3 * config.appearance_components, config.feature_dim, bias=False)
        self.mlp = (nn.Sequential(nn.Linear(config.feature_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 3))
                    if config.hidden else nn.Linear(config.feature_dim, 3))

    @property
    def resolution(self) -> int:
        return int(self.app_planes.shape[-1])

    def _factors(self, planes: torch.Tensor, lines: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """(3, C, n) plane x line products at `xyz` (n, 3) in [-2, 2]."""
        unit = xyz / 2
        plane_coords = torch.stack([unit[:, list(axes)] for axes in self.PLANE_AXES])  # (3, n, 2)
        line_coords = torch.stack([unit[:, axis] for axis in self.LINE_AXES])  # (3, n)
        line_coords = torch.stack([torch.zeros_like(line_coords), line_coords], dim=-1)
        plane_feat = F.grid_sample(planes, plane_coords[:, :, None], align_corners=True)[..., 0]
        line_feat = F.grid_sample(lines, line_coords[:, :, None], align_corners=True)[..., 0]
        return plane_feat * line_feat

    def density(self, xyz: torch.Tensor) -> torch.Tensor:
        """(n,) volume density at contracted positions (n, 3)."""
        raw = self._factors(self.density_planes, self.density_lines, xyz).sum(dim=(0, 1))
        return F.softplus(raw + self.config.density_shift) * self.config.density_scale

    def colour(self, xyz: torch.Tensor) -> torch.Tensor:
        """(n, 3) RGB in [0, 1]; no view dependence on purpose (a few views cannot constrain it)."""
        feat = self._factors(self.app_planes, self.app_lines, xyz)  # (3, C, n)
        feat = feat.permute(2, 0, 1).reshape(xyz.shape[0], -1)
        return torch.sigmoid(self.mlp(self.basis(feat)))

    @torch.no_grad()
    def upsample(self, resolution: int) -> None:
        """Bilinearly resample every factor to `resolution` (density capped at `density_resolution`; the optimiser
        must be rebuilt afterwards)."""
        cap = self.config.density_resolution or resolution
        for kind, edge in (("density", min(resolution, cap)), ("app", resolution)):
            planes, lines = getattr(self, f"{kind}_planes"), getattr(self, f"{kind}_lines")
            setattr(self, f"{kind}_planes", nn.Parameter(F.interpolate(planes.data, size=(edge, edge),
                                                                        mode="bilinear", align_corners=True)))
            setattr(self, f"{kind}_lines", nn.Parameter(F.interpolate(lines.data, size=(edge, 1),
                                                                       mode="bilinear", align_corners=True)))

    def total_variation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared neighbour differences of the density factors and appearance planes (smoothness prior).

        Density lines are included: an unconstrained line stretches whatever one view saw along its axis
        (axis-aligned streaks); appearance lines are not (measured: it blurred the façade's held-out view)."""
        def tv(p: torch.Tensor) -> torch.Tensor:
            rows = (p[..., 1:, :] - p[..., :-1, :]).pow(2).mean()
            return rows + (p[..., :, 1:] - p[..., :, :-1]).pow(2).mean() if p.shape[-1] > 1 else rows  # lines: (.., r, 1)
        return tv(self.density_planes) + tv(self.density_lines), tv(self.app_planes)

    def density_l1(self) -> torch.Tensor:
        """Mean absolute density factor (TensoRF's sparsity prior: empty space stays empty, fewer floaters)."""
        return self.density_planes.abs().mean() + self.density_lines.abs().mean()


class OccupancyGrid:
    """(g, g, g) bool over the contracted cube: cells whose density can matter; samples elsewhere are skipped."""

    def __init__(self, size: int, device: torch.device):
        self.size = size
        self.occupied = torch.ones((size,) * 3, dtype=torch.bool, device=device)

    def cells(self, xyz: torch.Tensor) -> torch.Tensor:
        idx = ((xyz + 2) / 4 * self.size).long().clamp(0, self.size - 1)
        return idx

    def lookup(self, xyz: torch.Tensor) -> torch.Tensor:
        idx = self.cells(xyz)
        return self.occupied[idx[:, 0], idx[:, 1], idx[:, 2]]

    @torch.no_grad()
    def update(self, field: TensoRFField, threshold: float = 0.01, generator: torch.Generator | None = None) -> float:
        """Re-mark cells whose density at a jittered point gives alpha > `threshold` over one cell; returns the occupied fraction."""
        g = self.size
        device = self.occupied.device
        axis = torch.arange(g, device=device, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        jitter = torch.rand(grid.shape, generator=generator, device="cpu").to(device)
        xyz = (grid + jitter) / g * 4 - 2
        cell = 4 / g
        sigma = torch.cat([field.density(chunk) for chunk in xyz.split(65536)])
        alpha = 1 - torch.exp(-sigma * cell)
        occupied = (alpha > threshold).reshape(g, g, g)
        # dilate by one cell so thin surfaces between cell centres are not lost
        occupied = F.max_pool3d(occupied[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
        self.occupied = occupied
        return float(occupied.float().mean())


@dataclass
class SamplerConfig:
    samples_inside: int = 32
    """Samples spaced linearly between the near bound and where the ray leaves the unit cube."""
    samples_outside: int = 8
    """Samples spaced linearly in disparity from there to the far bound (contracted background)."""
    weight_threshold: float = 1e-3
    """Colour is only evaluated for samples whose weight exceeds this."""


def box_exit(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """(n,) ray parameter where each ray leaves [-1, 1]^3 (0 when it never enters)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t1, t2 = (-1 - origins) / safe, (1 - origins) / safe
    return torch.maximum(t1, t2).amin(-1).clamp_min(0)


def sample_along_rays(origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float, config: SamplerConfig,
                      perturb: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, s + 1) sample interval edges in ray parameter t (z-depth): linear inside the cube, disparity-linear beyond."""
    device = origins.device
    t_exit = box_exit(origins, dirs).clamp(min=near * 1.5, max=far * 0.5)
    u_in = torch.linspace(0, 1, config.samples_inside + 1, device=device)
    u_out = torch.linspace(0, 1, config.samples_outside + 1, device=device)[1:]
    t_in = near + (t_exit[:, None] - near) * u_in
    t_out = 1 / (1 / t_exit[:, None] * (1 - u_out) + 1 / far * u_out)
    edges = torch.cat([t_in, t_out], dim=-1)
    if perturb:
        mids = (edges[:, 1:] + edges[:, :-1]) / 2
        lower = torch.cat([edges[:, :1], mids], -1)
        upper = torch.cat([mids, edges[:, -1:]], -1)
        u = torch.rand(edges.shape, generator=generator, device="cpu").to(device)
        edges = lower + (upper - lower) * u
    return edges


@dataclass
class RenderOutput:
    rgb: torch.Tensor
    """(n, 3) composited colour (before any per-image appearance transform)."""
    depth: torch.Tensor
    """(n,) expected z-depth in normalised scene units (weights renormalised over the ray)."""
    opacity: torch.Tensor
    """(n,) accumulated opacity (1 - transmittance left for the background)."""
    weights: torch.Tensor | None = None
    """(n, s) compositing weight of each sample, nearest first (training regularisers read it)."""


def render_rays(field: TensoRFField, grid: OccupancyGrid | None, origins: torch.Tensor, dirs: torch.Tensor,
                near: float, far: float, background: torch.Tensor, sampler: SamplerConfig, perturb: bool,
                generator: torch.Generator | None = None) -> RenderOutput:
    """Volume-render rays given in normalised scene coordinates (origins (n, 3), unnormalised dirs (n, 3))."""
    edges = sample_along_rays(origins, dirs, near, far, sampler, perturb, generator)
    t_mid = (edges[:, 1:] + edges[:, :-1]) / 2
    delta = (edges[:, 1:] - edges[:, :-1]) * dirs.norm(dim=-1, keepdim=True)
    xyz = contract(origins[:, None] + dirs[:, None] * t_mid[..., None]).reshape(-1, 3)
    keep = grid.lookup(xyz) if grid is not None else torch.ones(xyz.shape[0], dtype=torch.bool, device=xyz.device)
    sigma = torch.zeros(xyz.shape[0], device=xyz.device)
    if keep.any():
        sigma = sigma.index_put((keep.nonzero()[:, 0],), field.density(xyz[keep]))
    sigma = sigma.reshape(t_mid.shape)
    alpha = 1 - torch.exp(-sigma * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * transmittance
    flat_w = weights.reshape(-1)
    visible = flat_w > sampler.weight_threshold
    colours = torch.zeros(xyz.shape[0], 3, device=xyz.device)
    if visible.any():
        colours = colours.index_put((visible.nonzero()[:, 0],), field.colour(xyz[visible]))
    colours = colours.reshape(*t_mid.shape, 3)
    opacity = weights.sum(-1)
    rgb = (weights[..., None] * colours).sum(1) + (1 - opacity[:, None]) * background
    depth = (weights * t_mid).sum(-1) / opacity.clamp_min(1e-6)
    return RenderOutput(rgb=rgb, depth=depth, opacity=opacity, weights=weights)


@dataclass
class Normalisation:
    """World -> normalised scene coordinates: x_n = (x - centre) / scale; z-depths divide by `scale`."""

    centre: tuple[float, float, float]
    scale: float

    @classmethod
    def from_points(cls, points: np.ndarray, cameras: np.ndarray) -> Normalisation:
        """Centre on the median point, scale so 90 % of points fall inside [-1, 1]^3 (cameras when there are no points)."""
        source = points if len(points) >= 8 else cameras
        centre = np.median(source, axis=0)
        radius = float(np.percentile(np.abs(source - centre).max(axis=1), 90))
        return cls(centre=tuple(float(c) for c in centre), scale=max(radius, 1e-6))

    def to_dict(self) -> dict:
        return asdict(self)


def camera_rays(K: np.ndarray, c2w: np.ndarray, hw: tuple[int, int], norm: Normalisation,
                pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) origins and z-unit directions in normalised coordinates for pixel centres (all, or `pixels` (n, 2) as (u, v))."""
    h, w = hw
    if pixels is None:
        v, u = np.mgrid[0:h, 0:w]
        pixels = np.stack([u.ravel(), v.ravel()], -1)
    uv1 = np.c_[pixels + 0.5, np.ones(len(pixels))]
    dirs_cam = uv1 @ np.linalg.inv(K).T
    dirs = dirs_cam @ c2w[:3, :3].T
    origins = np.broadcast_to((c2w[:3, 3] - np.array(norm.centre)) / norm.scale, dirs.shape)
    return origins.astype(np.float32), dirs.astype(np.float32)
