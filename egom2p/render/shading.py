"""Ray-casting camera and Lambertian shading, vectorised with numpy.

Per frame: one primary ray per pixel through the pixel centre (pixel ``i`` centred at ``i``, the
project's convention; open3d's ``create_rays_pinhole`` would centre at ``i + 0.5``, so rays are
built here). Camera-frame directions have z = 1 (OpenCV axes), so the z-depth is ``t_hit``.

Colour = albedo (per triangle, texture baked by tessellation) x world-space material pattern
(a sinusoid along a per-material direction) x lighting (hemispherical ambient + point lights with
Lambert's cosine and distance falloff; surfaces are two-sided), then the sRGB transfer curve.
Misses (outside the mesh) are black with depth 0.
"""

from __future__ import annotations

import numpy as np

from .scene import Scene

BACKGROUND = np.array([0.0, 0.0, 0.0], np.float32)


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


class Renderer:
    """Renders RGB + z-depth of a scene from OpenGL camera-to-world poses.

    ``nthreads`` is passed to open3d's ray caster (1 = one core; 0 = all cores).
    """

    def __init__(self, scene: Scene, width: int, height: int, intrinsics=None, nthreads: int = 1,
                 ambient: float = 0.35, exposure: float = 1.0):
        import open3d as o3d

        self._o3d = o3d
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.intrinsics = np.asarray(intrinsics if intrinsics is not None else default_intrinsics(width, height),
                                     dtype=np.float64)
        self.dirs_cam = camera_rays(self.intrinsics, self.width, self.height)  # [P, 3] OpenCV, z = 1
        self.rays = np.empty((len(self.dirs_cam), 6), np.float32)
        self.nthreads = nthreads
        self.ambient = float(ambient)
        self.exposure = float(exposure)
        self.raycaster = scene.raycaster()
        # per-triangle tables (gathers are the cheapest texture lookup)
        self.tri_color = np.ascontiguousarray(scene.tri_color, np.float32)
        self.tri_amp = scene.material_amp[scene.tri_material].astype(np.float32)
        self.tri_freq = scene.material_freq[scene.tri_material].astype(np.float32)
        self.has_pattern = bool(np.any(self.tri_amp > 0))
        self.lights = np.asarray(scene.lights, np.float32)

    def cast(self, c2w_opengl: np.ndarray) -> dict:
        """Cast the primary rays of one pose -> open3d result dict (numpy arrays)."""
        T = np.asarray(c2w_opengl, np.float64)
        R_cv = (T[:3, :3] * np.array([1.0, -1.0, -1.0])).astype(np.float32)  # OpenGL -> OpenCV axes
        self.rays[:, :3] = T[:3, 3].astype(np.float32)
        np.matmul(self.dirs_cam, R_cv.T, out=self.rays[:, 3:])
        ans = self.raycaster.cast_rays(self._o3d.core.Tensor.from_numpy(self.rays), nthreads=self.nthreads)
        return {"t_hit": ans["t_hit"].numpy(), "primitive_ids": ans["primitive_ids"].numpy(),
                "primitive_normals": ans["primitive_normals"].numpy()}

    def depth(self, c2w_opengl: np.ndarray) -> np.ndarray:
        """z-depth only [H, W] float32 metres, 0 = no hit (the ray-cast-only baseline)."""
        t = self.cast(c2w_opengl)["t_hit"]
        return np.where(np.isfinite(t), t, 0.0).astype(np.float32).reshape(self.height, self.width)

    def render(self, c2w_opengl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame -> (rgb uint8 [H, W, 3], z-depth float32 [H, W] metres with 0 = no hit)."""
        ans = self.cast(c2w_opengl)
        t = ans["t_hit"]  # [P] (inf on miss); equals z-depth since dir_z = 1 in the camera frame
        hit = np.isfinite(t)
        depth = np.where(hit, t, 0.0).astype(np.float32)
        prim = np.where(hit, ans["primitive_ids"], 0).astype(np.int64)
        n = ans["primitive_normals"]  # [P, 3] world normals of the hit triangles
        d = self.rays[:, 3:]
        o = self.rays[0, :3]
        p = o + d * depth[:, None]  # [P, 3] world hit points
        # two-sided surfaces: flip normals to face the camera
        flip = np.einsum("ij,ij->i", n, d) > 0
        n = np.where(flip[:, None], -n, n)
        albedo = self.tri_color[prim]  # [P, 3]
        if self.has_pattern:
            amp = self.tri_amp[prim]
            phase = np.einsum("ij,ij->i", self.tri_freq[prim], p)
            albedo = albedo * (1.0 + amp * np.sin(phase))[:, None]
        light = self.ambient * (0.75 + 0.25 * n[:, 1])  # hemispherical ambient: up-facing brighter
        for lx, ly, lz, power in self.lights:
            L = np.array([lx, ly, lz], np.float32) - p
            d2 = np.einsum("ij,ij->i", L, L)
            ndl = np.einsum("ij,ij->i", n, L)
            light = light + power * np.maximum(ndl, 0.0) / (np.sqrt(d2) * (1.0 + d2))
        c = albedo * (self.exposure * light)[:, None]
        c = np.where(hit[:, None], c, BACKGROUND)
        # sRGB-like transfer (gamma 1/2.2) via a lookup table on 4096 levels
        q = np.minimum((c * 4095.0).astype(np.int32), 4095)
        rgb = _GAMMA_LUT[q]
        return rgb.reshape(self.height, self.width, 3), depth.reshape(self.height, self.width)


_GAMMA_LUT = np.round(255.0 * (np.arange(4096) / 4095.0) ** (1 / 2.2)).astype(np.uint8)
