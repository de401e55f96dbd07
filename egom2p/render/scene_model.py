"""The scene of the synthetic renderer: a triangle soup in a y-up world with per-triangle albedo, material and
object, the objects a gaze can land on, and its ray caster (see :mod:`egom2p.render.scene`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import EgoM2PError


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
