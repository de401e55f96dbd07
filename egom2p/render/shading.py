"""Ray-casting camera and Lambertian shading, vectorised with numpy.

Per frame: one primary ray per pixel through the pixel centre (pixel ``i`` centred at ``i``, the
project's convention; open3d's ``create_rays_pinhole`` would centre at ``i + 0.5``, so rays are
built here). Camera-frame directions have z = 1 (OpenCV axes), so the z-depth is ``t_hit``.

Lambertian shading is view-independent and the scene is static, so lighting is **baked once per
scene at the vertices** (:func:`bake_lighting`): hemispherical ambient light attenuated by
ray-cast ambient occlusion, plus point lights with Lambert's cosine, distance falloff and ray-cast
shadows. A frame then costs one ray cast plus a gather: each hit interpolates its triangle's three
baked corner colours with the hit's barycentric coordinates (Gouraud), multiplies a world-space
material pattern (its phase is linear in position, so it is interpolated exactly the same way),
and maps to sRGB through a lookup table. A mild lens vignetting darkens the corners. Misses (outside the mesh) are black with depth 0.
"""

from __future__ import annotations

import numpy as np

from .scene_model import Scene


def default_intrinsics(width: int, height: int, hfov_deg: float = 90.0) -> np.ndarray:
    """(fx, fy, cx, cy) of a square-pixel pinhole with the given horizontal field of view."""
    fx = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([fx, fx, (width - 1) / 2.0, (height - 1) / 2.0])


def camera_rays(intrinsics, width: int, height: int) -> np.ndarray:
    """Camera-frame (OpenCV) ray directions [H*W, 3] with z = 1."""
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    d = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    return d.reshape(-1, 3).astype(np.float32)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals [V, 3] (unit; zero-area neighbourhoods get +y)."""
    v = vertices.astype(np.float64)
    fn = np.cross(v[triangles[:, 1]] - v[triangles[:, 0]], v[triangles[:, 2]] - v[triangles[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, triangles[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    vn = np.where(norm > 1e-12, vn / np.maximum(norm, 1e-12), [0.0, 1.0, 0.0])
    return vn


def _hemisphere_dirs(k: int, rng: np.random.Generator) -> np.ndarray:
    """k cosine-weighted directions around +z (stratified)."""
    i = (np.arange(k) + rng.random(k)) / k
    phi = 2 * np.pi * ((np.arange(k) * 0.618034 + rng.random()) % 1.0)
    r = np.sqrt(i)
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(np.maximum(0, 1 - i))], -1)


def _frames_of(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two tangents per unit normal [V, 3]."""
    a = np.where(np.abs(n[:, 1:2]) < 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    t1 = np.cross(n, a)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    return t1, np.cross(n, t1)


def bake_lighting(scene: Scene, ambient: float = 0.35, ao_rays: int = 12, ao_distance: float = 0.8,
                  shadows: bool = True, seed: int = 0, max_vertices_for_ao: int = 400_000) -> np.ndarray:
    """Irradiance per vertex [V] (ambient x occlusion + shadowed point lights), cached on the scene."""
    key = ("light", ambient, ao_rays, ao_distance, shadows, seed)
    if key in scene._cache:
        return scene._cache[key]
    rng = np.random.default_rng(seed)
    V = scene.vertices.astype(np.float64)
    n = vertex_normals(V, scene.triangles)
    sides = (1.0, -1.0) if scene.two_sided else (1.0,)
    eps = 2e-3
    best = np.zeros(len(V))
    for side in sides:
        ns = n * side
        # ambient occlusion: fraction of a short cosine-weighted hemisphere that is open
        if ao_rays > 0 and len(V) <= max_vertices_for_ao:
            t1, t2 = _frames_of(ns)
            local = _hemisphere_dirs(ao_rays, rng)  # [K, 3]
            dirs = local[None, :, 0:1] * t1[:, None] + local[None, :, 1:2] * t2[:, None] + local[None, :, 2:3] * ns[:, None]
            th, _ = scene.cast(np.repeat((V + eps * ns)[:, None], ao_rays, 1), dirs, nthreads=0)
            ao = np.minimum(np.where(np.isfinite(th), th, ao_distance) / ao_distance, 1.0).mean(1)
        else:
            ao = np.ones(len(V))
        irr = ambient * (0.75 + 0.25 * ns[:, 1]) * (0.3 + 0.7 * ao)
        for lx, ly, lz, power in scene.lights.astype(np.float64):
            L = np.array([lx, ly, lz]) - V
            d2 = (L * L).sum(1)
            d = np.sqrt(d2)
            cos = (ns * L).sum(1) / np.maximum(d, 1e-9)
            lit = cos > 0
            vis = np.ones(len(V))
            if shadows and lit.any():
                o = V[lit] + eps * ns[lit]
                th, _ = scene.cast(o, L[lit] - eps * ns[lit], nthreads=0)  # t in [0, 1) = blocked before the light
                vis[lit] = np.where(np.isfinite(th) & (th < 0.995), 0.0, 1.0)
            irr = irr + power * np.maximum(cos, 0.0) * vis / (1.0 + d2)
        best = np.maximum(best, irr)
    scene._cache[key] = best
    return best


def shading_table(scene: Scene, irradiance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle interpolation table [T+1, 3, 4] and pattern amplitude [T+1] (last row = background).

    Row t holds (A, B, C) such that the value at barycentrics (u, v) is A + u B + v C, for the
    4 channels (r, g, b radiance; phase of the material pattern).
    """
    tri = scene.triangles
    T = len(tri)
    corner = np.empty((T, 3, 4), np.float64)
    if scene.corner_color is not None:
        albedo = scene.corner_color
    elif scene.vertex_color is not None:
        albedo = scene.vertex_color[tri]
    else:
        albedo = scene.tri_color[:, None, :]
    tint = np.asarray(scene.light_tint, dtype=np.float64)
    corner[..., :3] = albedo * irradiance[tri][..., None] * tint  # [T, 3 corners, rgb]
    freq = scene.material_freq[scene.tri_material].astype(np.float64)  # [T, 3]
    corner[..., 3] = np.einsum("tcj,tj->tc", scene.vertices[tri].astype(np.float64), freq)
    tab = np.zeros((T + 1, 3, 4), np.float32)
    tab[:T, 0] = corner[:, 0]
    tab[:T, 1] = corner[:, 1] - corner[:, 0]
    tab[:T, 2] = corner[:, 2] - corner[:, 0]
    amp = np.zeros(T + 1, np.float32)
    amp[:T] = scene.material_amp[scene.tri_material]
    return tab, amp


_GAMMA_LUT = np.round(255.0 * (np.arange(4096) / 4095.0) ** (1 / 2.2)).astype(np.uint8)


class Renderer:
    """Renders RGB + z-depth of a scene from OpenGL camera-to-world poses.

    ``nthreads`` is passed to open3d's ray caster for the frames (1 = one core; 0 = all cores).
    """

    def __init__(self, scene: Scene, width: int, height: int, intrinsics=None, nthreads: int = 1,
                 ambient: float = 0.35, exposure: float = 1.0, ao_rays: int = 12, shadows: bool = True,
                 vignette: float = 0.25):
        import open3d as o3d

        self._o3d = o3d
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.intrinsics = np.asarray(intrinsics if intrinsics is not None else default_intrinsics(width, height),
                                     dtype=np.float64)
        self.dirs_cam = camera_rays(self.intrinsics, self.width, self.height)  # [P, 3] OpenCV, z = 1
        self.rays = np.empty((len(self.dirs_cam), 6), np.float32)
        self.rays_t = o3d.core.Tensor.from_numpy(self.rays)  # shares memory with self.rays
        self.nthreads = nthreads
        self.raycaster = scene.raycaster()
        irr = bake_lighting(scene, ambient=ambient, ao_rays=ao_rays, shadows=shadows)
        tab, amp = shading_table(scene, irr * exposure)
        # structure of arrays [12, T+1] (A: rgb+phase, B: ..., C: ...): per-channel gathers and contiguous
        # arithmetic are ~2x faster than gathering rows of [T+1, 12] and working on strided columns
        self.table = np.ascontiguousarray(tab.reshape(len(tab), 12).T)
        self.amp = amp
        self.has_pattern = bool(np.any(amp > 0))
        self.background = np.uint32(scene.num_triangles)
        # lens vignetting (cos^4 falloff, scaled so the corners lose ``vignette`` of their light), folded
        # into the 12-bit quantisation scale: one multiply per pixel
        d = self.dirs_cam
        cos4 = 1.0 / (d[:, 0] ** 2 + d[:, 1] ** 2 + 1.0) ** 2
        fall = 1.0 - vignette * (1.0 - cos4) / max(1.0 - cos4.min(), 1e-9)
        self.scale = (4095.0 * fall).astype(np.float32)  # [P]

    def cast(self, c2w_opengl: np.ndarray) -> dict:
        """Cast the primary rays of one pose -> open3d's result as numpy arrays (flat, [H*W, ...])."""
        T = np.asarray(c2w_opengl, np.float64)
        R_cv = T[:3, :3] * np.array([1.0, -1.0, -1.0])  # OpenGL -> OpenCV camera axes
        self.rays[:, :3] = T[:3, 3].astype(np.float32)
        # world directions = dirs_cam @ R^T; a contiguous R^T keeps numpy on its fast path (a transposed
        # view is ~20x slower here)
        np.matmul(self.dirs_cam, np.ascontiguousarray(R_cv.T, dtype=np.float32), out=self.rays[:, 3:])
        ans = self.raycaster.cast_rays(self.rays_t, nthreads=self.nthreads)
        return {k: ans[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs")}

    def depth(self, c2w_opengl: np.ndarray) -> np.ndarray:
        """z-depth only [H, W] float32 metres, 0 = no hit (the ray-cast-only baseline)."""
        t = self.cast(c2w_opengl)["t_hit"]
        t = np.where(np.isfinite(t), t, np.float32(0))
        return t.reshape(self.height, self.width)

    def render(self, c2w_opengl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame -> (rgb uint8 [H, W, 3], z-depth float32 [H, W] metres with 0 = no hit)."""
        ans = self.cast(c2w_opengl)
        t = ans["t_hit"]  # [P] (inf on miss); equals z-depth since dir_z = 1 in the camera frame
        depth = np.where(np.isfinite(t), t, np.float32(0))
        prim = np.minimum(ans["primitive_ids"], self.background)  # misses -> background row (zeros)
        g = np.take(self.table, prim, axis=1)  # [12, P]
        uv = ans["primitive_uvs"]  # [P, 2] barycentrics (u, v): value = A + u B + v C
        c = g[4:8] * uv[:, 0].copy()  # [4, P]: r, g, b radiance and pattern phase
        c += g[0:4]
        c += g[8:12] * uv[:, 1].copy()
        if self.has_pattern:
            f = np.sin(c[3])
            f *= np.take(self.amp, prim)
            f += 1.0
            f *= self.scale
            q = (c[:3] * f).astype(np.int32)
        else:
            q = (c[:3] * self.scale).astype(np.int32)
        np.clip(q, 0, 4095, out=q)
        out = np.take(_GAMMA_LUT, q.T)  # [P, 3] sRGB transfer curve
        return out.reshape(self.height, self.width, 3), depth.reshape(self.height, self.width)
