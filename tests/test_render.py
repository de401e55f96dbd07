"""Renderer (egom2p.render): analytic depth, determinism, multi-view consistency, gaze, walking, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p.render import NoFreeSpaceError, Renderer, SceneError, load_mesh_scene, procedural_room, render_sequence
from egom2p.render.gaze import BLINK, FIXATION, SACCADE, rotation_ypr
from egom2p.render.scene import MeshBuilder
from egom2p.render.shading import default_intrinsics
from egom2p.render.walk import WalkConfig, free_space


def _plane_scene(point, normal, half=50.0):
    """A big square plane through ``point`` with ``normal`` (y-up world)."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    a = np.cross(n, [0.0, 1.0, 0.0] if abs(n[1]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    mb = MeshBuilder(np.random.default_rng(0))
    obj = mb.begin_object("plane", "wall")
    mb.quad_grid(np.asarray(point) - half * a - half * b, 2 * half * a, 2 * half * b, 5.0, [0.5, 0.5, 0.5], obj)
    return mb.build(0.0, np.array([[0.0, 3.0, 0.0, 2.0]]), {"kind": "test-plane"})


@pytest.mark.parametrize("tilt", [0.0, 25.0])
def test_depth_matches_analytic_plane(tilt):
    w, h = 64, 48
    K = default_intrinsics(w, h, 90.0)
    # OpenGL camera at (0.3, 1.5, 2) rotated by yaw 10 deg / pitch -5 deg, facing a plane 3 m away along -z
    R = rotation_ypr(np.radians(10), np.radians(-5), np.radians(3))[0]
    T_gl = geo.make_se3(R, [0.3, 1.5, 2.0])
    p0 = np.array([0.0, 1.0, -1.0])
    normal = np.array([np.sin(np.radians(tilt)), 0.0, np.cos(np.radians(tilt))])
    scene = _plane_scene(p0, normal)
    r = Renderer(scene, w, h, K, ao_rays=0)
    depth = r.depth(T_gl)
    rgb, depth2 = r.render(T_gl)
    assert depth.shape == (h, w) and rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(depth, depth2)
    # analytic z-depth: ray o + s * d_world with d_cam = ((u-cx)/fx, (v-cy)/fy, 1) in OpenCV axes
    T_cv = geo.opengl_to_opencv_c2w(T_gl)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    d_cam = np.stack([(u - K[2]) / K[0], (v - K[3]) / K[1], np.ones_like(u)], -1)
    d_w = d_cam @ T_cv[:3, :3].T
    o = T_cv[:3, 3]
    s = (normal @ (p0 - o)) / (d_w @ normal)
    np.testing.assert_allclose(depth, s, rtol=1e-4, atol=1e-4)
    # and unprojecting the depth lands on the plane
    pts = geo.transform_points(T_cv, geo.depth_to_points(depth.astype(np.float64), K))
    np.testing.assert_allclose((pts - p0) @ normal, 0.0, atol=1e-3)


def test_background_is_zero_depth():
    scene = _plane_scene([0.0, 0.0, -2.0], [0.0, 0.0, 1.0], half=0.5)
    r = Renderer(scene, 32, 32, ao_rays=0)
    rgb, depth = r.render(np.eye(4))
    assert (depth == 0).any() and (depth > 0).any()
    assert np.all(rgb[depth == 0] == 0)
    np.testing.assert_allclose(depth[depth > 0], 2.0, rtol=1e-5)


@pytest.fixture(scope="module")
def seq():
    return render_sequence(seed=7, seconds=3.0, size=64)


def test_sequence_arrays(seq):
    n = 90
    assert seq.frames.shape == (n, 64, 64, 3) and seq.frames.dtype == np.uint8
    assert seq.depth.shape == (n, 64, 64) and seq.depth.dtype == np.float32
    assert seq.c2w_opengl.shape == (n, 4, 4) and seq.gaze_point.shape == (n, 3)
    assert seq.gaze_valid.dtype == bool and seq.gaze_valid.shape == (n,)
    R = seq.c2w_opengl[:, :3, :3]
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    assert (seq.depth > 0).mean() > 0.95  # indoors: nearly every ray hits
    assert seq.depth[seq.depth > 0].max() < 15.0
    # images carry texture and change over time (motion cues)
    assert seq.frames.std() > 20
    assert np.abs(seq.frames[1:].astype(int) - seq.frames[:-1]).mean() > 1.0


def test_deterministic_for_a_seed():
    a = render_sequence(seed=11, seconds=1.0, size=32)
    b = render_sequence(seed=11, seconds=1.0, size=32)
    c = render_sequence(seed=12, seconds=1.0, size=32)
    for name in ("frames", "depth", "c2w_opengl", "gaze_point", "gaze_valid", "gaze_state"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.c2w_opengl, c.c2w_opengl)
    # sequence index gives a different, independent sequence
    d = render_sequence(seed=11, seconds=1.0, size=32, index=1)
    assert not np.array_equal(a.frames, d.frames)


def test_multiview_consistency(seq):
    """Unproject frame t with its pose, reproject into t+1: matches t+1's depth where visible."""
    K = seq.intrinsics
    T = geo.opengl_to_opencv_c2w(seq.c2w_opengl)
    h, w = seq.height, seq.width
    fractions = []
    for t in range(0, seq.num_frames - 1, 7):
        d0 = seq.depth[t].astype(np.float64)
        pts = geo.transform_points(T[t], geo.depth_to_points(d0, K))[d0 > 0]
        pc = geo.transform_points(geo.invert_se3(T[t + 1]), pts)
        uv, z = geo.project(pc, K)
        ui, vi = np.round(uv[:, 0]), np.round(uv[:, 1])
        inside = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        d1 = seq.depth[t + 1][vi[inside].astype(int), ui[inside].astype(int)]
        rel = np.abs(d1 - z[inside]) / z[inside]
        # rounding to the pixel grid gives small errors on slanted surfaces; occlusions give outliers
        fractions.append(np.mean(rel < 0.03))
        assert np.median(rel) < 0.01
    assert np.mean(fractions) > 0.85


def test_gaze_lands_on_the_fixated_object(seq):
    scene = seq.scene
    eye = seq.c2w_opengl[:, :3, 3]
    starts = [i for i in range(1, seq.num_frames)
              if seq.gaze_state[i] == FIXATION and seq.gaze_state[i - 1] != FIXATION]
    assert starts, "no fixation in 3 s"
    checked = 0
    for i in starts:
        d = seq.gaze_point[i] - eye[i]
        dist = np.linalg.norm(d)
        th, prim = scene.cast(eye[i][None], (d / dist)[None])
        # the fixation point is the first surface along the eye ray ...
        assert abs(th[0] - dist) < 0.02
        # ... and on the object recorded as fixated
        assert scene.object_of(prim)[0] == seq.gaze_object[i]
        checked += 1
    assert checked >= 1
    # the valid gaze points project into the image, onto the rendered surface (not occluded), mostly
    T = geo.opengl_to_opencv_c2w(seq.c2w_opengl)
    pc = np.einsum("nij,nj->ni", geo.invert_se3(T)[:, :3, :3], seq.gaze_point) + geo.invert_se3(T)[:, :3, 3]
    uv, z = geo.project(pc, seq.intrinsics)
    v = seq.gaze_valid
    assert np.all((uv[v] >= -0.5) & (uv[v] <= 63.5))
    ui = np.clip(np.round(uv[v]).astype(int), 0, 63)
    dpx = seq.depth[np.nonzero(v)[0], ui[:, 1], ui[:, 0]]
    assert np.mean(np.abs(dpx - z[v]) < 0.05 * z[v] + 0.02) > 0.8


def test_gaze_events_and_walk():
    s = render_sequence(seed=3, seconds=12.0, size=16)
    st = s.gaze_state
    assert (st == BLINK).any() and (st == SACCADE).any() and (st == FIXATION).any()
    assert not s.gaze_valid[st == BLINK].any()
    assert 0.6 < s.gaze_valid.mean() < 1.0
    eye = s.c2w_opengl[:, :3, 3]
    speed = np.linalg.norm(np.diff(eye[:, [0, 2]], axis=0), axis=1) * 30
    assert speed.max() < 1.8 and np.median(speed) > 0.3  # walking speed with pauses
    assert 1.4 < eye[:, 1].mean() < 1.9  # eye height
    # the head stays in free space (body radius 0.3 m minus the sway)
    fs = free_space(s.scene, WalkConfig())
    c = fs.to_cell(eye[:, [0, 2]])
    assert fs.clearance[c[:, 0], c[:, 1]].min() > 0.25
    # the head turns: yaw spans more than a few degrees
    fwd = -s.c2w_opengl[:, :3, 2]
    yaw = np.unwrap(np.arctan2(-fwd[:, 0], -fwd[:, 2]))
    assert np.ptp(yaw) > np.radians(20)


def test_user_mesh_scene(tmp_path):
    import open3d as o3d

    room = procedural_room(5)
    path = tmp_path / "room.ply"
    assert o3d.io.write_triangle_mesh(str(path), room.to_open3d())
    scene = load_mesh_scene(path, up="auto")
    assert scene.description["up"] == "y"
    assert abs(scene.floor_y - 0.0) < 0.03
    assert sum(o.target for o in scene.objects) >= 3
    s = render_sequence(seed=1, seconds=1.0, size=32, scene=str(path))
    assert (s.depth > 0).mean() > 0.9 and s.frames.std() > 10
    # the same scene stored z-up is recognised and rotated back to y-up
    m = room.to_open3d()
    m.rotate(np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]), center=(0, 0, 0))  # y-up -> z-up
    pz = tmp_path / "room_zup.ply"
    o3d.io.write_triangle_mesh(str(pz), m)
    sz = load_mesh_scene(pz, up="auto")
    assert sz.description["up"] == "z"
    np.testing.assert_allclose(np.sort(sz.vertices[:, 1])[[0, -1]], np.sort(scene.vertices[:, 1])[[0, -1]], atol=1e-4)


def test_bad_meshes(tmp_path):
    import open3d as o3d

    with pytest.raises(SceneError, match="not found"):
        load_mesh_scene(tmp_path / "missing.ply")
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    with pytest.raises(SceneError, match="empty"):
        load_mesh_scene(empty)
    junk = tmp_path / "junk.obj"
    junk.write_text("this is not a mesh\n")
    with pytest.raises(SceneError, match="junk.obj"):
        load_mesh_scene(junk)
    txt = tmp_path / "x.txt"
    txt.write_text("x")
    with pytest.raises(SceneError, match="unsupported"):
        load_mesh_scene(txt)
    # a closed box room completely filled by a block: no free floor
    mb = MeshBuilder(np.random.default_rng(0))
    o = mb.begin_object("room", "wall", target=False)
    mb.box([0, 0, 0], [3, 2.5, 3], [0.6, 0.6, 0.6], o, cell=0.5)
    b = mb.begin_object("block", "cabinet")
    mb.box([0.05, 0, 0.05], [2.95, 1.2, 2.95], [0.5, 0.3, 0.2], b, cell=0.5)
    full = mb.build(0.0, np.zeros((0, 4)), {"kind": "test"})
    with pytest.raises(NoFreeSpaceError, match="free floor"):
        free_space(full)
    p = tmp_path / "full.ply"
    o3d.io.write_triangle_mesh(str(p), full.to_open3d())
    with pytest.raises(NoFreeSpaceError):
        render_sequence(seed=0, seconds=0.5, size=16, scene=str(p))


def test_in_memory_api_matches_the_adapter_conventions(seq):
    """render_sequence's OpenCV poses and gaze pixels are what the egogen adapter derives from disk."""
    np.testing.assert_allclose(seq.c2w_opencv, seq.c2w_opengl @ np.diag([1.0, -1.0, -1.0, 1.0]))
    g = seq.gaze_px
    assert g.shape == (seq.num_frames, 2)
    assert np.isnan(g[~seq.gaze_valid]).all()
    ok = np.isfinite(g[:, 0])
    assert ok.sum() >= 0.5 * seq.num_frames
    assert np.all((g[ok] >= -0.5) & (g[ok] <= 63.5))


def test_textured_obj_scene(tmp_path):
    """An .obj with a texture atlas: colours are sampled at the corners' UVs (OBJ: v = 0 at the bottom)."""
    import open3d as o3d

    room = procedural_room(3)
    m = room.to_open3d()
    t = len(m.triangles)
    side = int(np.ceil(np.sqrt(t)))
    img = np.zeros((side, side, 3), np.uint8)
    srgb = (np.clip(room.tri_color, 0, 1) ** (1 / 2.4) * 255).round().astype(np.uint8)  # any monotone encoding
    ij = np.arange(t)
    img[ij // side, ij % side] = srgb
    uv = np.stack([((ij % side) + 0.5) / side, 1 - ((ij // side) + 0.5) / side], -1)
    m.triangle_uvs = o3d.utility.Vector2dVector(np.repeat(uv, 3, 0))
    m.textures = [o3d.geometry.Image(img)]
    m.triangle_material_ids = o3d.utility.IntVector(np.zeros(t, np.int32))
    m.vertex_colors = o3d.utility.Vector3dVector()
    path = tmp_path / "room.obj"
    assert o3d.io.write_triangle_mesh(str(path), m)
    scene = load_mesh_scene(path, up="y")
    assert scene.description["textured"] and scene.corner_color.shape == (t, 3, 3)
    # each triangle got its own atlas texel (same brightness order as the source albedo)
    got = scene.corner_color.mean((1, 2))
    assert np.corrcoef(got, room.tri_color.mean(1))[0, 1] > 0.95
    r = Renderer(scene, 32, 32, ao_rays=0)
    rgb, _ = r.render(np.eye(4) @ geo.make_se3(np.eye(3), [2.0, 1.6, 2.0]))
    assert rgb.std() > 5
