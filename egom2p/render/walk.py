"""A walking person's body path and head trajectory through a :class:`~egom2p.render.scene.Scene`.

1. :func:`free_space` finds the walkable floor by ray-casting straight down from head-clearance
   height on a grid: a cell is walkable when the first hit is the floor, then the map is eroded by
   the body radius and reduced to its largest connected region.
2. :func:`plan_path` chains random waypoints with shortest grid paths (Dijkstra, with a cost that
   keeps away from obstacles), simplifies them by line of sight and smooths the corners.
3. :func:`walk_timeline` moves along the path with a smoothed speed profile (1.0-1.4 m/s with
   pauses) and returns the eye position per frame (eye height 1.5-1.8 m, head bob and sway at the
   step frequency) and the heading that leads the path (direction to a point ~1.2 m ahead).

Head orientation (which also follows the gaze targets) is finished in :mod:`egom2p.render.gaze`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_model import Scene, SceneError


class NoFreeSpaceError(SceneError):
    """The scene has no (or too little) connected walkable floor."""


@dataclass
class WalkConfig:
    cell: float = 0.1  # grid resolution (m)
    body_radius: float = 0.3  # clearance kept to obstacles (m)
    head_clearance: float = 1.9  # height above the floor that must be free (m)
    min_free_area: float = 1.5  # m^2 of connected walkable floor required
    speed: tuple[float, float] = (1.0, 1.4)  # walking speed range (m/s)
    walk_bout: tuple[float, float] = (1.5, 5.0)  # durations of walking bouts (s)
    pause: tuple[float, float] = (0.4, 1.5)  # durations of pauses (s)
    pause_prob: float = 0.35  # chance that a walking bout is followed by a pause
    eye_height: tuple[float, float] = (1.5, 1.8)
    lookahead: float = 1.2  # heading points to the path this far ahead (m)
    step_freq: float = 1.9  # steps per second at 1.2 m/s
    bob_amp: float = 0.022  # vertical head bob at full speed (m)
    sway_amp: float = 0.012  # lateral sway (m)


@dataclass
class FreeSpace:
    free: np.ndarray  # bool [nx, nz] walkable cells (eroded, largest component)
    clearance: np.ndarray  # float [nx, nz] distance to the nearest obstacle (m)
    origin: np.ndarray  # (x0, z0) world position of cell (0, 0)'s centre
    cell: float
    floor_y: float

    def to_world(self, ij: np.ndarray) -> np.ndarray:
        """Cell indices [..., 2] -> world (x, z) [..., 2]."""
        return self.origin + np.asarray(ij, dtype=np.float64) * self.cell

    def to_cell(self, xz: np.ndarray) -> np.ndarray:
        return np.round((np.asarray(xz, dtype=np.float64) - self.origin) / self.cell).astype(np.int64)

    @property
    def area(self) -> float:
        return float(self.free.sum() * self.cell**2)


def free_space(scene: Scene, config: WalkConfig | None = None) -> FreeSpace:
    """Walkable floor of a scene (see module docstring). Raises :class:`NoFreeSpaceError`."""
    from scipy import ndimage

    cfg = config or WalkConfig()
    lo, hi = scene.bounds
    cell = cfg.cell
    nx = int(np.ceil((hi[0] - lo[0]) / cell))
    nz = int(np.ceil((hi[2] - lo[2]) / cell))
    if nx * nz > 250_000:  # very large scans: coarser grid
        cell = float(np.sqrt((hi[0] - lo[0]) * (hi[2] - lo[2]) / 250_000))
        nx = int(np.ceil((hi[0] - lo[0]) / cell))
        nz = int(np.ceil((hi[2] - lo[2]) / cell))
    origin = np.array([lo[0] + cell / 2, lo[2] + cell / 2])
    ii, kk = np.meshgrid(np.arange(nx), np.arange(nz), indexing="ij")
    x = origin[0] + ii * cell
    z = origin[1] + kk * cell
    y0 = scene.floor_y + cfg.head_clearance
    o = np.stack([x, np.full_like(x, y0), z], -1)
    d = np.broadcast_to(np.array([0.0, -1.0, 0.0]), o.shape)
    t, _ = scene.cast(o, d)
    walkable = np.isfinite(t) & (np.abs((y0 - t) - scene.floor_y) < 0.06)
    # also require nothing just above the floor blocks the cell from below a low ceiling
    clearance = ndimage.distance_transform_edt(walkable) * cell
    free = clearance > cfg.body_radius
    labels, n = ndimage.label(free)
    where = f" in scene {scene.description.get('path', scene.description.get('kind', ''))}"
    if n == 0:
        raise NoFreeSpaceError(where.strip(), "no free floor to walk on (nothing walkable with "
                                              f"{cfg.body_radius} m body clearance and {cfg.head_clearance} m head room)")
    sizes = ndimage.sum(free, labels, index=np.arange(1, n + 1))
    best = int(np.argmax(sizes)) + 1
    free = labels == best
    fs = FreeSpace(free=free, clearance=clearance, origin=origin, cell=cell, floor_y=scene.floor_y)
    if fs.area < cfg.min_free_area:
        raise NoFreeSpaceError(where.strip(), f"only {fs.area:.2f} m^2 of connected free floor "
                                              f"(need {cfg.min_free_area} m^2 to walk)")
    return fs


def _grid_graph(fs: FreeSpace):
    """Sparse 8-connected graph over free cells; edge cost = length * (1 + obstacle penalty)."""
    from scipy.sparse import coo_matrix

    nx, nz = fs.free.shape
    idx = -np.ones(fs.free.shape, np.int64)
    cells = np.argwhere(fs.free)
    idx[fs.free] = np.arange(len(cells))
    penalty = 1.0 + 0.6 / np.maximum(fs.clearance, fs.cell)  # prefer the middle of corridors
    rows, cols, w = [], [], []
    for di, dk in ((1, 0), (0, 1), (1, 1), (1, -1)):
        a = cells
        b = cells + [di, dk]
        ok = (b[:, 0] >= 0) & (b[:, 0] < nx) & (b[:, 1] >= 0) & (b[:, 1] < nz)
        a, b = a[ok], b[ok]
        ok = fs.free[b[:, 0], b[:, 1]]
        a, b = a[ok], b[ok]
        length = np.hypot(di, dk) * fs.cell
        cost = length * 0.5 * (penalty[a[:, 0], a[:, 1]] + penalty[b[:, 0], b[:, 1]])
        rows += [idx[a[:, 0], a[:, 1]], idx[b[:, 0], b[:, 1]]]
        cols += [idx[b[:, 0], b[:, 1]], idx[a[:, 0], a[:, 1]]]
        w += [cost, cost]
    n = len(cells)
    g = coo_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    return g, cells, idx


def _line_free(fs: FreeSpace, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the straight segment between world points a, b (x, z) stays in free cells."""
    n = int(np.ceil(np.linalg.norm(b - a) / (fs.cell * 0.5))) + 1
    pts = a + (b - a) * np.linspace(0, 1, n)[:, None]
    c = fs.to_cell(pts)
    nx, nz = fs.free.shape
    if (c < 0).any() or (c[:, 0] >= nx).any() or (c[:, 1] >= nz).any():
        return False
    return bool(fs.free[c[:, 0], c[:, 1]].all())


def _simplify(fs: FreeSpace, pts: np.ndarray) -> np.ndarray:
    """String-pulling: keep a point only where the line of sight from the last kept one breaks."""
    out = [pts[0]]
    i = 0
    while i < len(pts) - 1:
        j = len(pts) - 1
        while j > i + 1 and not _line_free(fs, pts[i], pts[j]):
            j = (i + j) // 2 if j - i > 8 else j - 1
        out.append(pts[j])
        i = j
    return np.asarray(out)


def _smooth_corners(pts: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Chaikin corner cutting (keeps the end points)."""
    for _ in range(iterations):
        if len(pts) < 3:
            return pts
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        mid = np.empty((2 * (len(pts) - 1), 2))
        mid[0::2], mid[1::2] = q, r
        pts = np.concatenate([pts[:1], mid[1:-1], pts[-1:]])
    return pts


def plan_path(fs: FreeSpace, length: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth collision-free polyline (x, z) [P, 2] of at least ``length`` metres (when possible)."""
    from scipy.sparse.csgraph import dijkstra

    g, cells, _ = _grid_graph(fs)
    # start somewhere roomy
    roomy = fs.clearance[cells[:, 0], cells[:, 1]]
    start = rng.choice(len(cells), p=roomy / roomy.sum())
    route = [fs.to_world(cells[start])]
    total = 0.0
    cur = start
    for _ in range(64):
        if total >= length + 2.0:
            break
        dist, pred = dijkstra(g, directed=False, indices=cur, return_predecessors=True)
        reach = np.isfinite(dist) & (dist > 1.0)
        if not reach.any():
            break
        # prefer targets 2-6 m away, roomy, not straight back
        cand = np.nonzero(reach)[0]
        d = dist[cand]
        # roomy goals (away from walls and furniture) 2-6 m away along the route
        w = np.exp(-((d - 4.0) / 2.5) ** 2) * fs.clearance[cells[cand, 0], cells[cand, 1]] ** 2
        if len(route) > 1:  # prefer carrying on over turning back
            heading = route[-1] - route[-2]
            vec = fs.to_world(cells[cand]) - route[-1]
            cos = (vec @ heading) / (np.linalg.norm(vec, axis=1) * np.linalg.norm(heading) + 1e-9)
            w = w * (0.05 + (cos + 1.0) ** 2)
        goal = cand[rng.choice(len(cand), p=w / w.sum())]
        chain = [goal]
        while chain[-1] != cur:
            chain.append(pred[chain[-1]])
        seg = fs.to_world(cells[np.asarray(chain[::-1])])
        seg = _simplify(fs, seg)
        route.extend(seg[1:])
        total += float(np.linalg.norm(np.diff(seg, axis=0), axis=1).sum())
        cur = goal
    pts = np.asarray(route)
    if len(pts) < 2:
        raise NoFreeSpaceError("<scene>", "could not plan a walking path (free floor too fragmented)")
    return _smooth_corners(pts)


def _resample_polyline(pts: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points at arc lengths ``s`` along a polyline (clamped to its ends)."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.clip(s, 0, cum[-1])
    return np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], -1)


def polyline_length(pts: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def speed_profile(num_frames: int, fps: float, cfg: WalkConfig, rng: np.random.Generator) -> np.ndarray:
    """Speed per frame (m/s): walking bouts at a per-bout speed, pauses, smoothed accelerations."""
    from scipy.ndimage import gaussian_filter1d

    v = np.zeros(num_frames)
    t = 0
    walking = rng.random() < 0.85
    while t < num_frames:
        if walking:
            n = int(rng.uniform(*cfg.walk_bout) * fps)
            v[t:t + n] = rng.uniform(*cfg.speed)
            walking = rng.random() >= cfg.pause_prob
        else:
            n = int(rng.uniform(*cfg.pause) * fps)
            walking = True
        t += max(n, 1)
    pad = int(fps)
    vp = np.concatenate([np.full(pad, v[0]), v, np.full(pad, v[-1])])
    return gaussian_filter1d(vp, sigma=0.25 * fps)[pad:-pad]


@dataclass
class Walk:
    """Per-frame body/eye state of a walk (world y-up)."""

    eye: np.ndarray  # [N, 3] eye (camera centre) positions
    heading_yaw: np.ndarray  # [N] yaw leading the path (rad; 0 = -z, counter-clockwise seen from above)
    speed: np.ndarray  # [N] m/s
    arc: np.ndarray  # [N] arc length travelled (m)
    path: np.ndarray  # [P, 2] the planned path (x, z)
    eye_height: float
    gait_phase: np.ndarray  # [N] step phase (rad)


def yaw_of(dx, dz) -> np.ndarray:
    """Yaw of a horizontal direction (dx, dz): 0 looks along -z (OpenGL forward), positive turns left."""
    return np.arctan2(-np.asarray(dx), -np.asarray(dz))


def walk_timeline(fs: FreeSpace, num_frames: int, fps: float, rng: np.random.Generator,
                  config: WalkConfig | None = None) -> Walk:
    cfg = config or WalkConfig()
    speed = speed_profile(num_frames, fps, cfg, rng)
    arc = np.concatenate([[0.0], np.cumsum(speed[:-1] / fps)])
    need = arc[-1] + cfg.lookahead + 0.5
    path = plan_path(fs, need, rng)
    L = polyline_length(path)
    if L < need:  # small room: walk back and forth along the path
        reps = int(np.ceil(need / max(L, 1e-3)))
        parts = [path if k % 2 == 0 else path[::-1] for k in range(reps + 1)]
        path = np.concatenate([parts[0]] + [p[1:] for p in parts[1:]])
        path = _smooth_corners(path, 2)
    xz = _resample_polyline(path, arc)
    ahead = _resample_polyline(path, arc + cfg.lookahead)
    d = ahead - xz
    # where the look-ahead collapses (path end) keep the previous heading
    yaw = yaw_of(d[:, 0], d[:, 1])
    tiny = np.linalg.norm(d, axis=1) < 0.2
    for i in range(1, num_frames):
        if tiny[i]:
            yaw[i] = yaw[i - 1]
    yaw = np.unwrap(yaw)
    from scipy.ndimage import gaussian_filter1d

    yaw = gaussian_filter1d(yaw, sigma=0.15 * fps, mode="nearest")
    h = rng.uniform(*cfg.eye_height)
    freq = cfg.step_freq * np.clip(speed / 1.2, 0, 1.3)
    phase = rng.uniform(0, 2 * np.pi) + np.cumsum(2 * np.pi * freq / fps)
    amp = np.clip(speed / 1.2, 0, 1.2)
    bob = cfg.bob_amp * amp * np.cos(2 * phase)  # two bobs per stride (one per step) ...
    sway = cfg.sway_amp * amp * np.sin(phase)  # ... one sway per stride
    right = np.stack([np.cos(yaw), -np.sin(yaw)], -1)  # horizontal right vector of the heading
    xz = xz + sway[:, None] * right
    eye = np.stack([xz[:, 0], fs.floor_y + h + bob, xz[:, 1]], -1)
    return Walk(eye=eye, heading_yaw=yaw, speed=speed, arc=arc, path=path, eye_height=h, gait_phase=phase)
