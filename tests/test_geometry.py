import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from egom2p import geometry as geo

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
quats = arrays(np.float64, (4,), elements=finite).filter(lambda q: np.linalg.norm(q) > 1e-2)
vec3 = arrays(np.float64, (3,), elements=finite)
TOL = 1e-6


def rot(q):
    return geo.quat_to_matrix(q, order="xyzw")


@given(quats)
def test_quat_matrix_round_trip_both_orders(q):
    R = rot(q)
    for order in ("xyzw", "wxyz"):
        assert np.allclose(geo.quat_to_matrix(geo.matrix_to_quat(R, order=order), order=order), R, atol=TOL)
    q_xyzw = geo.matrix_to_quat(R, order="xyzw")
    q_wxyz = geo.matrix_to_quat(R, order="wxyz")
    assert np.allclose(q_wxyz, np.roll(q_xyzw, 1), atol=TOL)
    unit = q / np.linalg.norm(q)
    assert np.allclose(q_xyzw, unit, atol=1e-5) or np.allclose(q_xyzw, -unit, atol=1e-5)  # q and -q: same rotation


def test_quaternion_order_is_explicit():
    with pytest.raises(TypeError):
        geo.quat_to_matrix([0, 0, 0, 1])  # no implicit order
    with pytest.raises(ValueError):
        geo.quat_to_matrix([0, 0, 0, 1], order="zyxw")
    # 90 degrees about z, written both ways
    s = np.sqrt(0.5)
    Rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    assert np.allclose(geo.quat_to_matrix([0, 0, s, s], order="xyzw"), Rz)
    assert np.allclose(geo.quat_to_matrix([s, 0, 0, s], order="wxyz"), Rz)


@given(quats)
def test_rot6d_round_trip(q):
    R = rot(q)
    assert geo.matrix_to_rot6d(R).shape == (6,)
    assert np.allclose(geo.rot6d_to_matrix(geo.matrix_to_rot6d(R)), R, atol=TOL)


@given(arrays(np.float64, (6,), elements=finite).filter(
    lambda x: np.linalg.norm(x[:3]) > 1e-2 and np.linalg.norm(np.cross(x[:3], x[3:])) > 1e-2))
def test_rot6d_gram_schmidt_gives_rotation(x):
    R = geo.rot6d_to_matrix(x)
    assert np.allclose(R.T @ R, np.eye(3), atol=TOL)
    assert np.isclose(np.linalg.det(R), 1.0, atol=TOL)
    assert np.allclose(R[:, 0], x[:3] / np.linalg.norm(x[:3]), atol=TOL)


@given(quats, vec3)
def test_pose9d_round_trip_numpy_and_torch(q, t):
    T = geo.make_se3(rot(q), t)
    x = geo.c2w_to_pose9d(T)
    assert x.shape == (9,)
    assert np.allclose(x[6:], t)
    assert np.allclose(geo.pose9d_to_c2w(x), T, atol=TOL)
    Tt = torch.tensor(T)
    assert torch.allclose(geo.pose9d_to_c2w(geo.c2w_to_pose9d(Tt)), Tt, atol=TOL)


@given(st.lists(st.tuples(quats, vec3), min_size=2, max_size=6))
def test_relative_to_first_and_w2c_round_trip(poses):
    T = np.stack([geo.make_se3(rot(q), t) for q, t in poses])
    rel = geo.relative_to_first(T)
    assert np.allclose(rel[0], np.eye(4), atol=TOL)
    assert np.allclose(T[0] @ rel, T, atol=1e-5)
    assert np.allclose(geo.w2c_to_c2w(geo.c2w_to_w2c(T)), T, atol=TOL)
    assert np.allclose(geo.c2w_to_w2c(T) @ T, np.eye(4), atol=TOL)


@given(quats, vec3)
def test_axis_conversions_round_trip(q, t):
    T = geo.make_se3(rot(q), t)
    for M in (geo.OPENGL_TO_OPENCV, geo.PSI_TO_OPENCV, geo.UPRIGHT_FROM_RAW):
        assert np.allclose(np.linalg.inv(M) @ M, np.eye(4))
    assert np.allclose(geo.opengl_to_opencv_c2w(geo.opengl_to_opencv_c2w(T)), T, atol=TOL)
    # psi basis: camera looks along +x (forward), y left, z up
    Tpsi = np.eye(4)
    Tcv = geo.psi_to_opencv_c2w(Tpsi)
    assert np.allclose(Tcv[:3, 2], [1, 0, 0])  # OpenCV forward = psi x
    assert np.allclose(Tcv[:3, 0], [0, -1, 0])  # OpenCV right = -psi y (y is left)
    assert np.allclose(Tcv[:3, 1], [0, 0, -1])  # OpenCV down = -psi z
    # OpenGL: camera looks along -z, y up
    Tcv = geo.opengl_to_opencv_c2w(np.eye(4))
    assert np.allclose(Tcv[:3, 2], [0, 0, -1]) and np.allclose(Tcv[:3, 1], [0, -1, 0])


def test_upright_rotation_matches_pixel_rotation():
    """A point projected by the upright camera lands where the rotated raw pixel lands."""
    H = W = 100
    K = (80.0, 80.0, (W - 1) / 2, (H - 1) / 2)
    rng = np.random.default_rng(0)
    p_world = rng.normal(size=(20, 3)) + [0, 0, 5]
    T_raw = np.eye(4)
    uv_raw, _ = geo.project(geo.transform_points(geo.invert_se3(T_raw), p_world), K)
    T_up = geo.upright_c2w(T_raw)
    uv_up, _ = geo.project(geo.transform_points(geo.invert_se3(T_up), p_world), K)
    assert np.allclose(geo.upright_pixels(uv_raw, H), uv_up, atol=1e-9)


@given(arrays(np.float64, (5, 2), elements=st.floats(0, 100)), arrays(np.float64, (5,), elements=st.floats(0.1, 50)))
def test_project_unproject_round_trip(uv, z):
    K = (120.0, 110.0, 50.0, 40.0)
    P = geo.unproject(uv, z, K)
    uv2, z2 = geo.project(P, K)
    assert np.allclose(uv2, uv, atol=TOL) and np.allclose(z2, z, atol=TOL)


@settings(max_examples=50)
@given(st.integers(20, 400), st.integers(20, 400), st.sampled_from([16, 64, 256]))
def test_crop_resize_keeps_projection(w, h, size):
    """Projecting with the transformed intrinsics equals transforming the projected pixel."""
    K = np.array([0.9 * w, 0.9 * w, w / 2 - 3.2, h / 2 + 1.7])
    rng = np.random.default_rng(w * h)
    P = rng.normal(size=(10, 3)) + [0, 0, 4]
    uv, _ = geo.project(P, K)
    uv_std, _ = geo.project(P, geo.crop_resize_intrinsics(K, w, h, size))
    assert np.allclose(geo.crop_resize_pixels(uv, w, h, size), uv_std, atol=1e-6)
    xy = geo.pixels_to_normalized(uv_std, size, size)
    assert np.allclose(geo.normalized_to_pixels(xy, size, size), uv_std, atol=1e-9)


def test_normalized_gaze_edges():
    # the image spans [-0.5, W-0.5] in pixel coordinates -> [0, 1] normalised
    assert np.allclose(geo.pixels_to_normalized([[-0.5, -0.5], [99.5, 49.5]], 100, 50), [[0, 0], [1, 1]])


def test_rotation_angle():
    Rz = geo.quat_to_matrix([0, 0, np.sin(0.25), np.cos(0.25)], order="xyzw")
    assert np.isclose(geo.rotation_angle_deg(Rz), np.degrees(0.5))


@given(quats)
def test_rotation_angle_matches_quaternion_angle(q):
    unit = q / np.linalg.norm(q)
    expected = np.degrees(2 * np.arccos(min(1.0, abs(unit[3]))))
    assert np.isclose(geo.rotation_angle_deg(rot(q)), expected, atol=1e-5)


def test_rotation_angle_precise_near_zero_in_float32():
    assert geo.rotation_angle_deg(np.eye(3, dtype=np.float32)) == 0.0
    small = geo.quat_to_matrix([np.sin(1e-5), 0, 0, np.cos(1e-5)], order="xyzw").astype(np.float32)
    assert abs(geo.rotation_angle_deg(small) - np.degrees(2e-5)) < 1e-4
