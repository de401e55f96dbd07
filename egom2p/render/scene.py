"""Scenes for the synthetic egocentric renderer: procedural indoor rooms, or a user's mesh.

A :class:`Scene` is a triangle soup in a **y-up world** (metres; floor at ``floor_y``) with, per
triangle, an albedo (textures are baked per triangle: surfaces are tessellated into small quads
whose colours follow a checker / stripe / plank / noise pattern), a material index (a smooth
world-position pattern applied when shading) and an object index (what a gaze fixation lands on).

* :func:`procedural_room` builds a room from a seed: floor, four walls with a skirting band,
  ceiling with light panels, pictures on the walls, furniture (tables, shelves with books,
  cabinets, sofas, beds, chairs, plants, lamps) placed without overlap, and clutter on tables
  and on the floor.
* :func:`load_mesh_scene` reads a .ply / .obj / .off / .gltf / .glb / .stl mesh with open3d
  (vertex colours used when present), rotates it to y-up, estimates the floor and splits it into
  connected components that serve as gaze targets.

Ray-casting uses open3d's tensor ``RaycastingScene`` (built once per scene, :meth:`Scene.raycaster`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EgoM2PError, native_messages
from ..integrity import file_sha256


class SceneError(EgoM2PError, RuntimeError):
    """A scene cannot be built or loaded; the message names the file (if any) and the problem."""

    def __init__(self, path, problem: str | None = None):
        self.path, self.problem = str(path), problem
        super().__init__(self.path if problem is None else f"{self.path}: {problem}")


#: Shading patterns applied per material in world space (see :mod:`egom2p.render.shading`).
PATTERN_NONE, PATTERN_STRIPES, PATTERN_WAVES = 0, 1, 2


@dataclass
class SceneObject:
    """Something a person can look at: a piece of furniture, clutter, a picture, a mesh component."""

    name: str
    kind: str
    bbox_min: np.ndarray  # (3,) world
    bbox_max: np.ndarray  # (3,)
    target: bool = True  # eligible as a gaze target (floor/walls/ceiling are not)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.bbox_min + self.bbox_max)

    @property
    def size(self) -> np.ndarray:
        return self.bbox_max - self.bbox_min


@dataclass
class Scene:
    vertices: np.ndarray  # float32 [V, 3] y-up world, metres
    triangles: np.ndarray  # int32 [T, 3]
    tri_color: np.ndarray  # float32 [T, 3] linear albedo in [0, 1] (texture baked per triangle)
    tri_object: np.ndarray  # int32 [T] index into objects
    tri_material: np.ndarray  # int32 [T] index into the material tables
    material_amp: np.ndarray  # float32 [M] amplitude of the world-space pattern
    material_freq: np.ndarray  # float32 [M, 3] spatial frequency vector (rad/m)
    objects: list[SceneObject]
    floor_y: float
    lights: np.ndarray  # float32 [L, 4] point lights: x, y, z, intensity
    description: dict = field(default_factory=dict)
    two_sided: bool = False  # True for user meshes (winding unknown): light both sides of each triangle
    vertex_color: np.ndarray | None = None  # float32 [V, 3] linear albedo per vertex (scans); overrides tri_color
    corner_color: np.ndarray | None = None  # float32 [T, 3, 3] linear albedo per triangle corner (textured meshes)
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the light (white balance)
    _raycaster: object = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(0).astype(np.float64), self.vertices.max(0).astype(np.float64)

    def raycaster(self):
        """The open3d tensor RaycastingScene of this scene (built once)."""
        if self._raycaster is None:
            import open3d as o3d

            rc = o3d.t.geometry.RaycastingScene()
            rc.add_triangles(o3d.core.Tensor(np.ascontiguousarray(self.vertices, np.float32)),
                             o3d.core.Tensor(np.ascontiguousarray(self.triangles, np.uint32)))
            self._raycaster = rc
        return self._raycaster

    def cast(self, origins: np.ndarray, directions: np.ndarray, nthreads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Cast rays (origins/directions [..., 3]) -> (t_hit [...] inf on miss, triangle id [...] -1 on miss)."""
        import open3d as o3d

        o = np.broadcast_to(np.asarray(origins, np.float32), np.shape(directions))
        rays = np.concatenate([o, np.asarray(directions, np.float32)], -1).reshape(-1, 6)
        ans = self.raycaster().cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)), nthreads=nthreads)
        t = ans["t_hit"].numpy().reshape(np.shape(directions)[:-1])
        prim = ans["primitive_ids"].numpy().astype(np.int64).reshape(t.shape)
        prim[~np.isfinite(t)] = -1
        return t, prim

    def object_of(self, prim: np.ndarray) -> np.ndarray:
        """Object index of triangle ids (-1 for misses)."""
        prim = np.asarray(prim)
        return np.where(prim >= 0, self.tri_object[np.maximum(prim, 0)], -1)

    def to_open3d(self):
        """A legacy open3d TriangleMesh with per-vertex colours (for saving / inspection)."""
        import open3d as o3d

        # un-share vertices so that each triangle keeps its own colour
        v = self.vertices[self.triangles].reshape(-1, 3)
        c = np.repeat(self.tri_color, 3, axis=0)
        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v.astype(np.float64)),
                                      o3d.utility.Vector3iVector(np.arange(len(v)).reshape(-1, 3).astype(np.int32)))
        m.vertex_colors = o3d.utility.Vector3dVector(np.clip(c, 0, 1).astype(np.float64))
        return m


# --- building meshes ---------------------------------------------------------------------------------


def _srgb_to_linear(c) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class MeshBuilder:
    """Accumulates tessellated, textured primitives and the objects they belong to."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.verts: list[np.ndarray] = []
        self.tris: list[np.ndarray] = []
        self.colors: list[np.ndarray] = []
        self.objs: list[np.ndarray] = []
        self.mats: list[np.ndarray] = []
        self.objects: list[SceneObject] = []
        self.material_amp: list[float] = [0.0]
        self.material_freq: list[np.ndarray] = [np.zeros(3)]
        self._nv = 0

    # materials: index 0 = no pattern
    def material(self, amp: float, freq) -> int:
        self.material_amp.append(float(amp))
        self.material_freq.append(np.asarray(freq, dtype=np.float64))
        return len(self.material_amp) - 1

    def random_material(self, strength: float = 0.12) -> int:
        """A smooth world-space stripe/wave pattern with random orientation and wavelength 3-40 cm."""
        d = self.rng.normal(size=3)
        d /= np.linalg.norm(d)
        wavelength = self.rng.uniform(0.03, 0.4)
        return self.material(self.rng.uniform(0.3, 1.0) * strength, d * 2 * np.pi / wavelength)

    def begin_object(self, name: str, kind: str, target: bool = True) -> int:
        self.objects.append(SceneObject(name, kind, np.full(3, np.inf), np.full(3, -np.inf), target))
        return len(self.objects) - 1

    def _add(self, v: np.ndarray, t: np.ndarray, colors: np.ndarray, obj: int, mat: int) -> None:
        self.verts.append(v.astype(np.float32))
        self.tris.append((t + self._nv).astype(np.int32))
        self.colors.append(np.asarray(colors, np.float32).reshape(-1, 3))
        self.objs.append(np.full(len(t), obj, np.int32))
        self.mats.append(np.full(len(t), mat, np.int32))
        self._nv += len(v)
        o = self.objects[obj]
        o.bbox_min = np.minimum(o.bbox_min, v.min(0))
        o.bbox_max = np.maximum(o.bbox_max, v.max(0))

    def quad_grid(self, origin, eu, ev, cell: float, color, obj: int, mat: int = 0, texture: str = "plain",
                  jitter: float = 0.05, color2=None, max_cells: int = 64) -> None:
        """A planar rectangle origin + a*eu + b*ev (a, b in [0, 1]) split into ~cell-sized quads.

        ``texture``: plain (small per-quad jitter), checker (alternating color/color2), stripes
        (alternating along eu), planks (per-row random shade, staggered), noise (strong jitter).
        """
        origin, eu, ev = (np.asarray(x, dtype=np.float64) for x in (origin, eu, ev))
        lu, lv = np.linalg.norm(eu), np.linalg.norm(ev)
        nu = int(np.clip(round(lu / cell), 1, max_cells))
        nv = int(np.clip(round(lv / cell), 1, max_cells))
        if nu == 1 and nv == 1 and texture in ("plain", "stripes", "checker", "planks"):  # fast path: one quad
            v = np.stack([origin, origin + ev, origin + eu, origin + eu + ev])
            cq = np.clip(np.asarray(color, dtype=np.float64) * (1 + jitter * self.rng.normal()), 0.005, 0.95)
            self._add(v, np.array([[0, 2, 3], [0, 3, 1]]), np.stack([cq, cq]), obj, mat)
            return
        a = np.linspace(0, 1, nu + 1)
        b = np.linspace(0, 1, nv + 1)
        A, B = np.meshgrid(a, b, indexing="ij")  # [nu+1, nv+1]
        v = origin + A[..., None] * eu + B[..., None] * ev
        v = v.reshape(-1, 3)
        i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
        i, j = i.ravel(), j.ravel()
        p00 = i * (nv + 1) + j
        p10 = (i + 1) * (nv + 1) + j
        p01 = p00 + 1
        p11 = p10 + 1
        t = np.concatenate([np.stack([p00, p10, p11], -1), np.stack([p00, p11, p01], -1)])
        base = np.asarray(color, dtype=np.float64)
        c2 = base * 0.55 if color2 is None else np.asarray(color2, dtype=np.float64)
        nq = len(i)
        if texture == "checker":
            cq = np.where(((i + j) % 2 == 0)[:, None], base, c2) * (1 + jitter * self.rng.normal(size=(nq, 1)))
        elif texture == "stripes":
            cq = np.where((i % 2 == 0)[:, None], base, c2) * (1 + jitter * self.rng.normal(size=(nq, 1)))
        elif texture == "planks":
            shade = 1 + 0.18 * self.rng.normal(size=nv + 1)
            row = j + ((i // 3) % 2) * 0  # one plank per row of quads
            cq = base * shade[row, None] * (1 + jitter * self.rng.normal(size=(nq, 1)))
        elif texture == "noise":
            cq = base * (1 + 0.35 * self.rng.normal(size=(nq, 3)).clip(-2, 2))
        else:
            cq = base * (1 + jitter * self.rng.normal(size=(nq, 1)))
        cq = np.clip(cq, 0.005, 0.95)
        self._add(v, t, np.concatenate([cq, cq]), obj, mat)

    def box(self, lo, hi, color, obj: int, mat: int = 0, texture: str = "plain", cell: float = 0.15,
            jitter: float = 0.06, color2=None, faces: str = "xXyYzZ") -> None:
        """An axis-aligned box [lo, hi] made of six tessellated faces (outward winding)."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        d = hi - lo
        ex, ey, ez = np.array([d[0], 0, 0]), np.array([0, d[1], 0]), np.array([0, 0, d[2]])
        spec = {
            "x": (lo, ez, ey), "X": (lo + ex, ey, ez),
            "y": (lo, ex, ez), "Y": (lo + ey, ez, ex),
            "z": (lo, ey, ex), "Z": (lo + ez, ex, ey),
        }
        for f in faces:
            o, eu, ev = spec[f]
            self.quad_grid(o, eu, ev, cell, color, obj, mat, texture, jitter, color2)

    def open3d_primitive(self, mesh, color, obj: int, mat: int = 0, jitter: float = 0.08) -> None:
        v = np.asarray(mesh.vertices)
        t = np.asarray(mesh.triangles)
        c = np.clip(np.asarray(color) * (1 + jitter * self.rng.normal(size=(len(t), 1))), 0.005, 0.95)
        self._add(v, t, c, obj, mat)

    def cylinder(self, center_bottom, radius: float, height: float, color, obj: int, mat: int = 0,
                 resolution: int = 16) -> None:
        import open3d as o3d

        m = o3d.geometry.TriangleMesh.create_cylinder(radius, height, resolution=resolution, split=2)
        v = np.asarray(m.vertices)[:, [0, 2, 1]]  # z-axis -> y-axis
        m.vertices = o3d.utility.Vector3dVector(v + np.asarray(center_bottom) + [0, height / 2, 0])
        m.triangles = o3d.utility.Vector3iVector(np.asarray(m.triangles)[:, [0, 2, 1]])
        self.open3d_primitive(m, color, obj, mat)

    def sphere(self, center, radius: float, color, obj: int, mat: int = 0, resolution: int = 10) -> None:
        import open3d as o3d

        m = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=resolution)
        m.translate(np.asarray(center, dtype=np.float64))
        self.open3d_primitive(m, color, obj, mat, jitter=0.12)

    def build(self, floor_y: float, lights: np.ndarray, description: dict, light_tint=(1.0, 1.0, 1.0)) -> Scene:
        return Scene(light_tint=tuple(float(x) for x in light_tint),
            vertices=np.concatenate(self.verts), triangles=np.concatenate(self.tris),
            tri_color=np.concatenate(self.colors), tri_object=np.concatenate(self.objs),
            tri_material=np.concatenate(self.mats), material_amp=np.asarray(self.material_amp, np.float32),
            material_freq=np.asarray(self.material_freq, np.float32), objects=self.objects, floor_y=float(floor_y),
            lights=np.asarray(lights, np.float32), description=description,
        )


# --- palettes (sRGB) -----------------------------------------------------------------------------------

WALL_PAINTS = [(0.93, 0.91, 0.86), (0.85, 0.88, 0.90), (0.90, 0.84, 0.76), (0.78, 0.84, 0.78), (0.95, 0.95, 0.95),
               (0.86, 0.80, 0.86), (0.70, 0.78, 0.86), (0.92, 0.86, 0.70)]
WOODS = [(0.55, 0.38, 0.22), (0.70, 0.52, 0.32), (0.42, 0.27, 0.16), (0.80, 0.66, 0.46), (0.30, 0.20, 0.13)]
FABRICS = [(0.25, 0.32, 0.55), (0.60, 0.20, 0.18), (0.35, 0.50, 0.35), (0.55, 0.55, 0.58), (0.80, 0.70, 0.50),
           (0.20, 0.20, 0.22), (0.70, 0.45, 0.60)]
BRIGHTS = [(0.90, 0.20, 0.15), (0.15, 0.45, 0.85), (0.95, 0.80, 0.10), (0.20, 0.70, 0.30), (0.95, 0.50, 0.10),
           (0.60, 0.25, 0.75), (0.95, 0.95, 0.92), (0.10, 0.10, 0.12), (0.10, 0.65, 0.70)]
FLOORS = [("planks", WOODS), ("checker", [(0.85, 0.85, 0.82), (0.6, 0.6, 0.62), (0.75, 0.70, 0.62)]),
          ("noise", FABRICS)]


def _pick(rng, palette):
    return _srgb_to_linear(palette[rng.integers(len(palette))]) * rng.uniform(0.85, 1.1)


# --- procedural rooms ---------------------------------------------------------------------------------


@dataclass
class RoomConfig:
    """Ranges of the procedural room generator (metres)."""

    width: tuple[float, float] = (4.5, 8.0)  # x extent
    depth: tuple[float, float] = (4.5, 8.0)  # z extent
    height: tuple[float, float] = (2.5, 3.0)
    furniture: tuple[int, int] = (5, 10)
    floor_clutter: tuple[int, int] = (2, 6)
    pictures: tuple[int, int] = (2, 6)
    min_free_fraction: float = 0.35  # furniture placement stops before the floor gets more crowded


def _furniture_kinds():
    # kind: (footprint w range, footprint d range, against-wall preference)
    return {
        "table": ((0.8, 1.6), (0.6, 1.0), 0.3),
        "shelf": ((0.6, 1.4), (0.3, 0.45), 1.0),
        "cabinet": ((0.5, 1.2), (0.4, 0.6), 1.0),
        "sofa": ((1.5, 2.2), (0.8, 1.0), 0.8),
        "bed": ((1.4, 1.8), (1.9, 2.1), 0.9),
        "chair": ((0.45, 0.55), (0.45, 0.55), 0.2),
        "plant": ((0.35, 0.5), (0.35, 0.5), 0.6),
        "lamp": ((0.3, 0.4), (0.3, 0.4), 0.7),
    }


def procedural_room(seed: int | np.random.SeedSequence, config: RoomConfig | None = None) -> Scene:
    """A furnished room from a seed (deterministic). The world is y-up with the floor at y = 0."""
    cfg = config or RoomConfig()
    rng = np.random.default_rng(seed)
    mb = MeshBuilder(rng)
    W = rng.uniform(*cfg.width)
    D = rng.uniform(*cfg.depth)
    H = rng.uniform(*cfg.height)

    # floor
    ftex, fpal = FLOORS[rng.integers(len(FLOORS))]
    fcol = _pick(rng, fpal)
    floor = mb.begin_object("floor", "floor", target=False)
    fcell = {"planks": 0.18, "checker": rng.uniform(0.3, 0.6), "noise": 0.2}[ftex]
    fmat = mb.random_material(0.08) if ftex != "checker" else 0
    mb.quad_grid([0, 0, 0], [0, 0, D], [W, 0, 0], fcell, fcol, floor, fmat, ftex, jitter=0.04, max_cells=128)

    # walls (inward-facing), with a skirting band and a paint
    paint = _pick(rng, WALL_PAINTS)
    skirt = _pick(rng, WOODS) * 0.8
    wall = mb.begin_object("walls", "wall", target=False)
    wmat = mb.random_material(0.05)
    band = rng.uniform(0.08, 0.12) if rng.random() < 0.5 else rng.uniform(0.8, 1.0)  # skirting or wainscot
    wall_tex = "stripes" if rng.random() < 0.3 else "plain"
    corners = [(np.array([0, 0, 0.0]), np.array([W, 0, 0.0])), (np.array([W, 0, 0.0]), np.array([W, 0, D])),
               (np.array([W, 0, D]), np.array([0, 0, D])), (np.array([0, 0, D]), np.array([0, 0, 0.0]))]
    for a, b in corners:
        e = b - a
        mb.quad_grid(a, e, [0, band, 0], 0.25, skirt, wall, 0, "plain", jitter=0.03)
        mb.quad_grid(a + [0, band, 0], e, [0, H - band, 0], 0.3, paint, wall, wmat, wall_tex, jitter=0.025,
                     color2=paint * 0.85)
    # ceiling (facing down) with light panels
    ceil = mb.begin_object("ceiling", "ceiling", target=False)
    mb.quad_grid([0, H, 0], [W, 0, 0], [0, 0, D], 0.5, _srgb_to_linear((0.95, 0.95, 0.93)), ceil, 0, "plain", 0.02)
    nl = 1 + int(W * D > 30)
    lights = []
    for k in range(nl):
        cx = W * (k + 1) / (nl + 1) if W >= D else W / 2
        cz = D * (k + 1) / (nl + 1) if W < D else D / 2
        lp = mb.begin_object(f"light_{k}", "light", target=True)
        mb.box([cx - 0.3, H - 0.03, cz - 0.3], [cx + 0.3, H - 0.001, cz + 0.3], [0.95, 0.95, 0.9], lp, faces="y")
        lights.append([cx, H - 0.25, cz, rng.uniform(2.5, 3.5) * (W * D / 25) ** 0.5 / nl ** 0.5])

    # pictures / posters / windows on walls (noise or stripes: strong texture)
    for k in range(rng.integers(cfg.pictures[0], cfg.pictures[1] + 1)):
        side = rng.integers(4)
        a, b = corners[side]
        e = (b - a) / np.linalg.norm(b - a)
        length = np.linalg.norm(b - a)
        pw, ph = rng.uniform(0.4, 1.2), rng.uniform(0.4, 0.9)
        s = rng.uniform(0.2, max(0.25, length - pw - 0.2))
        y = rng.uniform(1.1, max(1.15, H - ph - 0.2))
        inward = np.array([-e[2], 0, e[0]])  # walls run counter-clockwise -> inward normal
        o = a + e * s + [0, y, 0] + inward * 0.015
        pic = mb.begin_object(f"picture_{k}", "picture")
        tex = ["noise", "stripes", "checker"][rng.integers(3)]
        mb.quad_grid(o, e * pw, [0, ph, 0], rng.uniform(0.05, 0.12), _pick(rng, BRIGHTS), pic,
                     mb.random_material(0.15), tex, 0.1, color2=_pick(rng, BRIGHTS))

    # a door and a window on the walls (the window lets in extra light), a rug on the floor
    for what in ("door", "window"):
        side = rng.integers(4)
        a, b = corners[side]
        e = (b - a) / np.linalg.norm(b - a)
        length = np.linalg.norm(b - a)
        inward = np.array([-e[2], 0, e[0]])
        if what == "door":
            dw, dh, y = 0.9, min(2.05, H - 0.2), 0.0
        else:
            dw, dh = rng.uniform(1.0, min(1.8, length - 0.6)), rng.uniform(0.9, min(1.4, H - 1.2))
            y = rng.uniform(0.8, max(0.85, H - dh - 0.25))
        s0 = rng.uniform(0.3, max(0.35, length - dw - 0.3))
        o = a + e * s0 + [0, y, 0] + inward * 0.02
        obj = mb.begin_object(what, what)
        fw = 0.06
        frame = _pick(rng, WOODS + [(0.95, 0.95, 0.95)])
        if what == "door":
            mb.quad_grid(o, e * dw, [0, dh, 0], 0.2, _pick(rng, WOODS), obj, mb.random_material(0.1), "planks")
            k = o + e * (dw - 0.12) + [0, 1.0, 0] + inward * 0.03
            mb.sphere(k, 0.03, [0.7, 0.65, 0.4], obj, resolution=5)
        else:
            mb.quad_grid(o, e * dw, [0, dh, 0], 0.08, _srgb_to_linear((0.75, 0.85, 0.95)), obj, 0, "noise",
                         color2=_srgb_to_linear((0.9, 0.92, 0.95)))
            mid = o + e * dw / 2 + inward * 0.01
            mb.box(mid - e * 0.02 + inward * 0.0, mid + e * 0.02 + inward * 0.03 + [0, dh, 0], frame, obj, cell=0.5)
            lights.append([*(o + e * dw / 2 + [0, dh / 2, 0] + inward * 0.7), rng.uniform(0.8, 1.5)])
        for lo, hi in ((o - e * fw, o + [0, dh, 0] + inward * 0.03),
                       (o + e * dw, o + e * (dw + fw) + [0, dh, 0] + inward * 0.03),
                       (o - e * fw + [0, dh, 0], o + e * (dw + fw) + [0, dh + fw, 0] + inward * 0.03)):
            mb.box(np.minimum(lo, hi), np.maximum(lo, hi), frame, obj, cell=0.5)
        if what == "window":
            lo, hi = o - e * fw - [0, fw, 0], o + e * (dw + fw) + inward * 0.08
            mb.box(np.minimum(lo, hi), np.maximum(lo, hi), frame, obj, cell=0.5)
    if rng.random() < 0.7:
        rw, rd = rng.uniform(1.2, min(3.0, W - 1.0)), rng.uniform(0.8, min(2.0, D - 1.0))
        rx, rz = rng.uniform(0.5, W - rw - 0.5), rng.uniform(0.5, D - rd - 0.5)
        rug = mb.begin_object("rug", "rug")
        col = _pick(rng, FABRICS + BRIGHTS)
        mb.box([rx, 0.0005, rz], [rx + rw, 0.012, rz + rd], col, rug, mb.random_material(0.12),
               ["noise", "stripes", "checker"][rng.integers(3)], cell=rng.uniform(0.1, 0.3), color2=_pick(rng, FABRICS))

    # furniture: rejection-sampled footprints, no overlap, keep free floor
    kinds = _furniture_kinds()
    names = list(kinds)
    placed: list[tuple[float, float, float, float]] = []  # x0, z0, x1, z1
    tables: list[tuple[float, float, float, float, float]] = []  # surfaces for clutter: x0,z0,x1,z1,y
    target_n = rng.integers(cfg.furniture[0], cfg.furniture[1] + 1)
    used_area = 0.0
    furniture = []
    for attempt in range(200):
        if len(furniture) >= target_n:
            break
        kind = names[rng.integers(len(names))]
        (w0, w1), (d0, d1), wall_pref = kinds[kind]
        fw, fd = rng.uniform(w0, w1), rng.uniform(d0, d1)
        if rng.random() < wall_pref:
            side = rng.integers(4)
            if side in (0, 2):  # along z = 0 or z = D walls: footprint w along x
                x0 = rng.uniform(0.05, W - fw - 0.05)
                z0 = 0.02 if side == 0 else D - fd - 0.02
                box = (x0, z0, x0 + fw, z0 + fd)
                facing = np.array([0, 0, 1.0]) if side == 0 else np.array([0, 0, -1.0])
            else:
                z0 = rng.uniform(0.05, D - fw - 0.05)
                x0 = 0.02 if side == 3 else W - fd - 0.02
                box = (x0, z0, x0 + fd, z0 + fw)
                facing = np.array([1.0, 0, 0]) if side == 3 else np.array([-1.0, 0, 0])
        else:
            if rng.random() < 0.5:
                fw, fd = fd, fw
            x0 = rng.uniform(0.6, max(0.61, W - fw - 0.6))
            z0 = rng.uniform(0.6, max(0.61, D - fd - 0.6))
            box = (x0, z0, x0 + fw, z0 + fd)
            facing = np.array([0, 0, 1.0])
        if box[2] > W or box[3] > D or box[0] < 0 or box[1] < 0:
            continue
        if any(not (box[2] + 0.15 < p[0] or p[2] + 0.15 < box[0] or box[3] + 0.15 < p[1] or p[3] + 0.15 < box[1])
               for p in placed):
            continue
        area = (box[2] - box[0]) * (box[3] - box[1])
        if used_area + area > (1 - cfg.min_free_fraction) * W * D * 0.6:
            continue
        placed.append(box)
        used_area += area
        furniture.append((kind, box, facing))
        _build_furniture(mb, rng, kind, box, facing, H, tables, len(furniture) - 1)

    # clutter on tables/shelves and on the floor
    nclutter = 0
    for (x0, z0, x1, z1, y) in tables:
        for _ in range(rng.integers(1, 5)):
            _clutter(mb, rng, x0, z0, x1, z1, y, nclutter)
            nclutter += 1
    for _ in range(rng.integers(cfg.floor_clutter[0], cfg.floor_clutter[1] + 1)):
        for _try in range(20):
            x, z = rng.uniform(0.2, W - 0.2), rng.uniform(0.2, D - 0.2)
            near_wall = min(x, z, W - x, D - z) < 0.8
            if near_wall and not any(p[0] - 0.2 < x < p[2] + 0.2 and p[1] - 0.2 < z < p[3] + 0.2 for p in placed):
                _clutter(mb, rng, x - 0.15, z - 0.15, x + 0.15, z + 0.15, 0.0, nclutter, big=True)
                placed.append((x - 0.2, z - 0.2, x + 0.2, z + 0.2))
                nclutter += 1
                break

    desc = {"kind": "procedural_room", "size_m": [round(W, 3), round(H, 3), round(D, 3)],
            "furniture": [k for k, _, _ in furniture], "clutter": nclutter, "floor": ftex,
            "lights": len(lights)}
    warm = rng.uniform(-1.0, 1.0)  # -1 cool daylight ... +1 warm tungsten
    tint = np.array([1.0, 1.0, 1.0]) + warm * np.array([0.06, -0.01, -0.12])
    return mb.build(0.0, np.asarray(lights), desc, light_tint=tint / tint.max())


def _build_furniture(mb: MeshBuilder, rng, kind: str, box, facing, H: float, tables: list, idx: int) -> None:
    x0, z0, x1, z1 = box
    obj = mb.begin_object(f"{kind}_{idx}", kind)
    wood = _pick(rng, WOODS)
    mat = mb.random_material(0.12)
    if kind == "table":
        h = rng.uniform(0.7, 0.78)
        t = 0.04
        mb.box([x0, h - t, z0], [x1, h, z1], wood, obj, mat, "planks" if rng.random() < 0.5 else "plain", cell=0.12)
        lw = 0.05
        for (lx, lz) in [(x0, z0), (x1 - lw, z0), (x0, z1 - lw), (x1 - lw, z1 - lw)]:
            mb.box([lx, 0, lz], [lx + lw, h - t, lz + lw], wood * 0.8, obj, 0, cell=0.4)
        tables.append((x0 + 0.05, z0 + 0.05, x1 - 0.05, z1 - 0.05, h))
    elif kind == "shelf":
        h = rng.uniform(1.4, 2.1)
        n = int(rng.integers(3, 6))
        th = 0.025
        # sides and back
        along_x = (x1 - x0) >= (z1 - z0)
        if along_x:
            mb.box([x0, 0, z0], [x0 + th, h, z1], wood, obj, mat, cell=0.3)
            mb.box([x1 - th, 0, z0], [x1, h, z1], wood, obj, mat, cell=0.3)
            back = [x0, 0, z0 if facing[2] > 0 else z1 - th], [x1, h, (z0 + th) if facing[2] > 0 else z1]
        else:
            mb.box([x0, 0, z0], [x1, h, z0 + th], wood, obj, mat, cell=0.3)
            mb.box([x0, 0, z1 - th], [x1, h, z1], wood, obj, mat, cell=0.3)
            back = [x0 if facing[0] > 0 else x1 - th, 0, z0], [(x0 + th) if facing[0] > 0 else x1, h, z1]
        mb.box(back[0], back[1], wood * 0.7, obj, 0, cell=0.3)
        for k in range(n + 1):
            y = k * (h - th) / n
            mb.box([x0, y, z0], [x1, y + th, z1], wood, obj, mat, cell=0.3)
            if k < n:  # books
                gap = (h - th) / n - th
                pos = 0.0
                length = (x1 - x0) if along_x else (z1 - z0)
                while pos < length - 0.1 and rng.random() < 0.93:
                    bw = rng.uniform(0.02, 0.06)
                    bh = gap * rng.uniform(0.55, 0.9)
                    bd = ((z1 - z0) if along_x else (x1 - x0)) * rng.uniform(0.6, 0.9)
                    col = _pick(rng, BRIGHTS + FABRICS)
                    if along_x:
                        zc = z0 + th if facing[2] > 0 else z1 - th - bd
                        lo, hi = [x0 + th + pos, y + th, zc], [x0 + th + pos + bw, y + th + bh, zc + bd]
                    else:
                        xc = x0 + th if facing[0] > 0 else x1 - th - bd
                        lo, hi = [xc, y + th, z0 + th + pos], [xc + bd, y + th + bh, z0 + th + pos + bw]
                    mb.box(lo, hi, col, obj, 0, cell=0.5, jitter=0.1)
                    pos += bw + (rng.uniform(0.1, 0.3) if rng.random() < 0.08 else 0.002)
    elif kind == "cabinet":
        h = rng.uniform(0.7, 1.2)
        col = _pick(rng, WOODS + WALL_PAINTS)
        mb.box([x0, 0, z0], [x1, h, z1], col, obj, mat, "stripes" if rng.random() < 0.5 else "plain", cell=0.2,
               color2=col * 0.75)
        tables.append((x0 + 0.05, z0 + 0.05, x1 - 0.05, z1 - 0.05, h))
    elif kind == "sofa":
        fab = _pick(rng, FABRICS)
        fmat = mb.random_material(0.1)
        mb.box([x0, 0, z0], [x1, 0.42, z1], fab, obj, fmat, "noise", cell=0.15)
        if abs(facing[2]) > 0:
            zb = (z0, z0 + 0.2) if facing[2] > 0 else (z1 - 0.2, z1)
            mb.box([x0, 0.42, zb[0]], [x1, 0.85, zb[1]], fab * 0.9, obj, fmat, "noise", cell=0.15)
            mb.box([x0, 0.42, z0], [x0 + 0.18, 0.62, z1], fab * 0.95, obj, fmat, cell=0.2)
            mb.box([x1 - 0.18, 0.42, z0], [x1, 0.62, z1], fab * 0.95, obj, fmat, cell=0.2)
        else:
            xb = (x0, x0 + 0.2) if facing[0] > 0 else (x1 - 0.2, x1)
            mb.box([xb[0], 0.42, z0], [xb[1], 0.85, z1], fab * 0.9, obj, fmat, "noise", cell=0.15)
            mb.box([x0, 0.42, z0], [x1, 0.62, z0 + 0.18], fab * 0.95, obj, fmat, cell=0.2)
            mb.box([x0, 0.42, z1 - 0.18], [x1, 0.62, z1], fab * 0.95, obj, fmat, cell=0.2)
    elif kind == "bed":
        mb.box([x0, 0, z0], [x1, 0.3, z1], wood, obj, mat, cell=0.3)
        sheet = _pick(rng, FABRICS + WALL_PAINTS)
        mb.box([x0 + 0.02, 0.3, z0 + 0.02], [x1 - 0.02, 0.5, z1 - 0.02], sheet, obj, 0,
               "checker" if rng.random() < 0.4 else "noise", cell=0.2, color2=sheet * 0.6)
        tables.append((x0 + 0.2, z0 + 0.2, x1 - 0.2, z1 - 0.2, 0.5))
    elif kind == "chair":
        h = 0.45
        col = _pick(rng, WOODS + FABRICS)
        mb.box([x0, h - 0.04, z0], [x1, h, z1], col, obj, mat, cell=0.2)
        lw = 0.04
        for (lx, lz) in [(x0, z0), (x1 - lw, z0), (x0, z1 - lw), (x1 - lw, z1 - lw)]:
            mb.box([lx, 0, lz], [lx + lw, h - 0.04, lz + lw], col * 0.7, obj, 0, cell=0.5)
        mb.box([x0, h, z1 - 0.04], [x1, h + 0.45, z1], col, obj, mat, cell=0.2)
    elif kind == "plant":
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        r = (x1 - x0) / 2
        mb.cylinder([cx, 0, cz], r * 0.7, 0.35, _pick(rng, [(0.7, 0.35, 0.2), (0.9, 0.9, 0.88), (0.2, 0.2, 0.22)]), obj)
        green = _srgb_to_linear((0.2, 0.5, 0.2)) * rng.uniform(0.6, 1.2)
        for _ in range(rng.integers(3, 7)):
            mb.sphere([cx + rng.uniform(-r, r) * 0.6, 0.35 + rng.uniform(0.15, 0.7), cz + rng.uniform(-r, r) * 0.6],
                      rng.uniform(0.1, 0.22), green, obj, resolution=6)
    elif kind == "lamp":
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        h = rng.uniform(1.3, 1.7)
        mb.cylinder([cx, 0, cz], 0.15, 0.03, [0.1, 0.1, 0.1], obj)
        mb.cylinder([cx, 0.03, cz], 0.015, h - 0.03, [0.15, 0.15, 0.15], obj, resolution=8)
        mb.cylinder([cx, h - 0.1, cz], 0.17, 0.25, _pick(rng, WALL_PAINTS + BRIGHTS), obj)


def _clutter(mb: MeshBuilder, rng, x0, z0, x1, z1, y, idx: int, big: bool = False) -> None:
    if x1 - x0 < 0.1 or z1 - z0 < 0.1:
        return
    obj = mb.begin_object(f"item_{idx}", "clutter")
    col = _pick(rng, BRIGHTS + FABRICS + WOODS)
    s = 2.0 if big else 1.0
    kind = rng.integers(4)
    cx, cz = rng.uniform(x0 + 0.05, x1 - 0.05), rng.uniform(z0 + 0.05, z1 - 0.05)
    if kind == 0:  # box (a book, a parcel)
        w, d, h = rng.uniform(0.06, 0.25, size=3) * s
        tex = ["plain", "stripes", "checker", "noise"][rng.integers(4)]
        mb.box([cx - w / 2, y, cz - d / 2], [cx + w / 2, y + h, cz + d / 2], col, obj, mb.random_material(0.15), tex,
               cell=0.04, color2=_pick(rng, BRIGHTS))
    elif kind == 1:  # ball / fruit
        r = rng.uniform(0.04, 0.12) * s
        mb.sphere([cx, y + r, cz], r, col, obj, resolution=8)
    elif kind == 2:  # mug / bottle / bin
        r, h = rng.uniform(0.03, 0.08) * s, rng.uniform(0.08, 0.3) * s
        mb.cylinder([cx, y, cz], r, h, col, obj, mb.random_material(0.15), resolution=12)
    else:  # a stack of boxes
        h = y
        for _ in range(rng.integers(2, 4)):
            w, d, hh = rng.uniform(0.08, 0.2, size=3) * s
            mb.box([cx - w / 2, h, cz - d / 2], [cx + w / 2, h + hh, cz + d / 2], _pick(rng, BRIGHTS + WOODS), obj,
                   0, "plain", cell=0.05)
            h += hh


# --- user meshes --------------------------------------------------------------------------------------

MESH_SUFFIXES = (".ply", ".obj", ".off", ".gltf", ".glb", ".stl")


def _up_rotation(up: str) -> np.ndarray:
    """Rotation taking a mesh whose up axis is ``up`` (x, y, z, -x, -y, -z) to the y-up world."""
    sign = -1.0 if up.startswith("-") else 1.0
    axis = up.lstrip("+-")
    if axis == "y":
        R = np.eye(3)
    elif axis == "z":  # z-up -> y-up: (x, y, z) -> (x, z, -y)
        R = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    elif axis == "x":
        R = np.array([[0, 1.0, 0], [1, 0, 0], [0, 0, -1]])
    else:
        raise SceneError("<scene>", f"scene_up must be one of x, y, z, -x, -y, -z or auto, got {up!r}")
    if sign < 0:
        R = np.diag([1.0, -1.0, -1.0]) @ R
    return R


def guess_up_axis(vertices: np.ndarray, triangles: np.ndarray) -> str:
    """The axis along which most triangle area faces (floor, ceiling, table tops), signed by where
    the up-facing area lies (floors and table tops are below the mesh's mid height)."""
    v = vertices[triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area = 0.5 * np.linalg.norm(n, axis=1)
    nn = n / np.maximum(2 * area[:, None], 1e-12)
    c = v.mean(1)
    best, best_area = "z", -1.0
    for k, name in enumerate("xyz"):
        aligned = np.abs(nn[:, k]) > 0.9
        a = area[aligned].sum()
        if a > best_area:
            best_area, best = a, name
    k = "xyz".index(best)
    aligned = np.abs(nn[:, k]) > 0.9
    lo, hi = vertices[:, k].min(), vertices[:, k].max()
    mid = 0.5 * (lo + hi)
    low_area = area[aligned & (c[:, k] < mid)].sum()
    high_area = area[aligned & (c[:, k] >= mid)].sum()
    return best if low_area >= high_area else "-" + best


def _estimate_floor(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Height of the lowest large up-facing surface (area histogram in 5 cm bins)."""
    v = vertices[triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area = 0.5 * np.linalg.norm(n, axis=1)
    horiz = np.abs(n[:, 1]) > 0.9 * np.maximum(2 * area, 1e-12)
    if not horiz.any():
        return float(vertices[:, 1].min())
    y = v[horiz, :, 1].mean(1)
    a = area[horiz]
    lo, hi = y.min(), y.max()
    bins = np.arange(lo - 0.025, hi + 0.05, 0.05)
    hist, edges = np.histogram(y, bins=bins, weights=a)
    big = np.nonzero(hist >= 0.2 * hist.max())[0][0]
    sel = (y >= edges[big]) & (y < edges[big + 1])
    return float(np.average(y[sel], weights=a[sel]))


def _texture_corner_colors(mesh, num_triangles: int) -> np.ndarray | None:
    """Linear albedo [T, 3, 3] sampled from the mesh's textures at each triangle corner's UV, or None.

    UVs follow the OBJ convention (v = 0 at the bottom row of the image). Detail finer than the
    triangles is lost (the renderer interpolates between corners), which suits dense scans.
    """
    if not (mesh.has_triangle_uvs() and mesh.has_textures()):
        return None
    uvs = np.asarray(mesh.triangle_uvs, dtype=np.float64)
    if len(uvs) != 3 * num_triangles:
        return None
    mids = np.asarray(mesh.triangle_material_ids) if mesh.has_triangle_material_ids() else np.zeros(num_triangles, int)
    out = np.full((num_triangles, 3, 3), _srgb_to_linear((0.7, 0.68, 0.65)), dtype=np.float64)
    uv = uvs.reshape(num_triangles, 3, 2)
    for m, tex in enumerate(mesh.textures):
        img = np.asarray(tex)
        if img.ndim != 3 or img.shape[0] == 0 or img.shape[2] < 3:
            continue
        sel = mids == m
        if not sel.any():
            continue
        h, w = img.shape[:2]
        u = np.clip(np.mod(uv[sel, :, 0], 1.0) * (w - 1), 0, w - 1).round().astype(int)
        v = np.clip((1.0 - np.mod(uv[sel, :, 1], 1.0)) * (h - 1), 0, h - 1).round().astype(int)
        rgb = img[v, u, :3].astype(np.float64)
        out[sel] = _srgb_to_linear(rgb / (255.0 if img.dtype == np.uint8 else 1.0))
    return out.astype(np.float32)


def load_mesh_scene(path: str | os.PathLike, up: str = "auto", seed: int = 0, max_objects: int = 200) -> Scene:
    """Load a user's scene mesh with open3d as a :class:`Scene` (y-up, floor estimated).

    Vertex colours (if any) become the per-triangle albedo; otherwise surfaces get a neutral albedo
    with per-triangle variation. Connected components of moderate size become gaze targets.
    Raises :class:`SceneError` naming the file for a missing, unreadable or empty mesh.
    """
    import open3d as o3d

    p = Path(path)
    if not p.exists():
        raise SceneError(p, "scene mesh not found")
    if p.is_dir():
        raise SceneError(p, "scene mesh is a directory, expected a mesh file (" + ", ".join(MESH_SUFFIXES) + ")")
    if p.suffix.lower() not in MESH_SUFFIXES:
        raise SceneError(p, f"unsupported mesh format {p.suffix!r}; expected one of {', '.join(MESH_SUFFIXES)}")
    if p.stat().st_size == 0:
        raise SceneError(p, "scene mesh file is empty")
    try:
        # post-processing (assimp formats such as .obj/.gltf): triangulate polygons, load textures
        with native_messages() as said:  # the readers' complaints go into the error, not onto stderr
            mesh = o3d.io.read_triangle_mesh(str(p), enable_post_processing=True, print_progress=False)
    except Exception as e:  # open3d raises RuntimeError for some malformed files
        raise SceneError(p, f"cannot read mesh ({type(e).__name__}: {e})") from e
    v = np.asarray(mesh.vertices, dtype=np.float64)
    t = np.asarray(mesh.triangles, dtype=np.int64)
    if len(v) == 0 or len(t) == 0:
        detail = f": {said[0][:200]}" if said else ""
        raise SceneError(p, f"mesh has no triangles (empty or unreadable file{detail})")
    if not np.isfinite(v).all():
        raise SceneError(p, "mesh has non-finite vertex coordinates")
    if t.min() < 0 or t.max() >= len(v):
        raise SceneError(p, "mesh has triangle indices out of range")
    # drop degenerate triangles
    e1 = v[t[:, 1]] - v[t[:, 0]]
    e2 = v[t[:, 2]] - v[t[:, 0]]
    keep = np.linalg.norm(np.cross(e1, e2), axis=1) > 1e-12
    if not keep.any():
        raise SceneError(p, "mesh has only degenerate (zero-area) triangles")
    corner = _texture_corner_colors(mesh, len(t))
    t = t[keep]
    corner = corner[keep] if corner is not None else None
    up_used = guess_up_axis(v, t) if up == "auto" else up
    R = _up_rotation(up_used)
    v = v @ R.T
    extent = v.max(0) - v.min(0)
    if extent[1] < 1.0 or max(extent[0], extent[2]) < 1.0:
        raise SceneError(p, f"mesh is too small for a person to walk in (extent {np.round(extent, 2).tolist()} m "
                            "after making it y-up; units must be metres)")
    rng = np.random.default_rng(seed)
    vcol = None
    if corner is not None:
        col = corner.mean(1)
    elif mesh.has_vertex_colors():
        vcol = _srgb_to_linear(np.clip(np.asarray(mesh.vertex_colors, dtype=np.float64), 0, 1)).astype(np.float32)
        col = vcol[t].mean(1)
    else:
        base = _srgb_to_linear((0.7, 0.68, 0.65))
        col = np.clip(base * (1 + 0.12 * rng.normal(size=(len(t), 1))), 0.01, 0.95)
    # components -> objects
    sub = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(t.astype(np.int32)))
    cluster, counts, _ = sub.cluster_connected_triangles()
    cluster = np.asarray(cluster, dtype=np.int64)
    counts = np.asarray(counts)
    objects: list[SceneObject] = [SceneObject("structure", "structure", v.min(0), v.max(0), target=False)]
    tri_object = np.zeros(len(t), np.int32)
    tv = v[t]  # [T, 3, 3]
    order = np.argsort(-counts)
    for c in order:
        if len(objects) > max_objects:
            break
        sel = cluster == c
        lo, hi = tv[sel].reshape(-1, 3).min(0), tv[sel].reshape(-1, 3).max(0)
        diag = np.linalg.norm(hi - lo)
        if 0.08 <= diag <= 3.0 and counts[c] < 0.3 * len(t):
            tri_object[sel] = len(objects)
            objects.append(SceneObject(f"component_{c}", "component", lo, hi))
    floor_y = _estimate_floor(v, t)
    lo, hi = v.min(0), v.max(0)
    ceiling = min(hi[1], floor_y + 2.8)
    centre = 0.5 * (lo + hi)
    lights = [[centre[0], ceiling - 0.2, centre[2], 3.0 * max(1.0, np.sqrt(extent[0] * extent[2] / 25))]]
    desc = {"kind": "mesh", "path": str(p.resolve()), "sha256": file_sha256(p), "up": up_used,
            "triangles": len(t), "size_m": np.round(extent, 3).tolist(), "floor_y": round(floor_y, 4),
            "has_vertex_colors": bool(mesh.has_vertex_colors()), "textured": corner is not None}
    return Scene(vertices=v.astype(np.float32), triangles=t.astype(np.int32), tri_color=col.astype(np.float32),
                 tri_object=tri_object, tri_material=np.zeros(len(t), np.int32),
                 material_amp=np.zeros(1, np.float32), material_freq=np.zeros((1, 3), np.float32), objects=objects,
                 floor_y=floor_y, lights=np.asarray(lights, np.float32), description=desc, two_sided=True,
                 vertex_color=vcol, corner_color=corner)
