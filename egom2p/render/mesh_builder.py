"""Building a :class:`~egom2p.render.scene_model.Scene` from tessellated, textured primitives."""

from __future__ import annotations

import numpy as np

from .scene_model import Scene, SceneObject


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
