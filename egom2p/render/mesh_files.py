"""A user's scene mesh (.ply / .obj / .off / .gltf / .glb / .stl, read with open3d) as a
:class:`~egom2p.render.scene_model.Scene`: rotated to y-up, floor estimated, components as gaze targets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import native_messages
from ..integrity import file_sha256
from .mesh_builder import _srgb_to_linear
from .scene_model import Scene, SceneError, SceneObject


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
