"""Geometry conventions shared by every stage.

Conventions (see DESIGN.md):

* Poses are 4x4 homogeneous **camera-to-world** matrices in **OpenCV camera axes**
  (x right, y down, z forward), metres. A standard clip's poses are relative to its first frame.
* Quaternion functions always take an explicit ``order`` ("xyzw" or "wxyz"); there is no default,
  because the datasets disagree (Aria MPS: x,y,z,w; HOT3D: w,x,y,z).
* Pixel coordinates: pixel ``i`` has its centre at ``i`` (OpenCV), so the image spans
  [-0.5, W-0.5]. Normalised gaze is ``(u + 0.5) / W, (v + 0.5) / H``: 0 is the left/top image edge,
  1 the right/bottom edge.
* 6D rotation (Zhou et al.) = the first two columns of R; 9D camera vector = [R[:,0], R[:,1], t].

Functions accept numpy arrays (float64 recommended) and, where marked, torch tensors, with any
leading batch dimensions.
"""

from __future__ import annotations

import sys

import numpy as np

# --- axis conventions ---------------------------------------------------------------------------

#: OpenGL camera (x right, y up, z backward) -> OpenCV camera axes: T_cv = T_gl @ OPENGL_TO_OPENCV.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

#: HoloLens / psi basis (x forward, y left, z up) -> OpenCV camera axes: T_cv = T_psi @ PSI_TO_OPENCV.
PSI_TO_OPENCV = np.array(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)

#: Raw Aria camera -> camera of the image rotated 90 degrees clockwise ("upright", EgoExo4D videos):
#: T_upright = T_raw @ UPRIGHT_FROM_RAW.
UPRIGHT_FROM_RAW = np.array(
    [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def _is_torch(x) -> bool:
    """A torch tensor? (torch is not imported here: whoever holds a tensor has imported it, and the
    adapters and the CLI stay free of torch's ~2 s import.)"""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _torch():
    return sys.modules["torch"]


def _cross(a, b):
    if _is_torch(a):
        return _torch().linalg.cross(a, b, dim=-1)
    return np.cross(a, b)


def _norm(a):
    if _is_torch(a):
        return _torch().linalg.norm(a, dim=-1, keepdim=True)
    return np.linalg.norm(a, axis=-1, keepdims=True)


def _dot(a, b):
    if _is_torch(a):
        return (a * b).sum(-1, keepdim=True)
    return (a * b).sum(-1, keepdims=True)


def _stack(xs, axis):
    if _is_torch(xs[0]):
        return _torch().stack(xs, dim=axis)
    return np.stack(xs, axis=axis)


def _cat(xs, axis):
    if _is_torch(xs[0]):
        return _torch().cat(xs, dim=axis)
    return np.concatenate(xs, axis=axis)


# --- quaternions --------------------------------------------------------------------------------

_ORDERS = ("xyzw", "wxyz")


def _check_order(order: str) -> None:
    if order not in _ORDERS:
        raise ValueError(f"quaternion order must be one of {_ORDERS}, got {order!r}")


def quat_to_matrix(q, *, order: str) -> np.ndarray:
    """Unit quaternion(s) (..., 4) in the given component ``order`` -> rotation matrices (..., 3, 3).

    The quaternion is normalised first; a zero quaternion raises.
    """
    _check_order(order)
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions must have 4 components, got shape {q.shape}")
    if order == "wxyz":
        w, x, y, z = np.moveaxis(q, -1, 0)
    else:
        x, y, z, w = np.moveaxis(q, -1, 0)
    n = np.sqrt(w * w + x * x + y * y + z * z)
    if np.any(n < 1e-12) or not np.all(np.isfinite(n)):
        raise ValueError("quaternion with zero or non-finite norm")
    w, x, y, z = w / n, x / n, y / n, z / n
    R = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    return R


def matrix_to_quat(R, *, order: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) in ``order``, with w >= 0."""
    _check_order(order)
    R = np.asarray(R, dtype=np.float64)
    batch = R.shape[:-2]
    m = R.reshape(-1, 3, 3)
    out = np.empty((m.shape[0], 4))  # w, x, y, z
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    for i in range(m.shape[0]):  # Shepperd's method: pick the largest pivot for stability
        a = m[i]
        if tr[i] > 0:
            s = 2.0 * np.sqrt(tr[i] + 1.0)
            out[i] = [0.25 * s, (a[2, 1] - a[1, 2]) / s, (a[0, 2] - a[2, 0]) / s, (a[1, 0] - a[0, 1]) / s]
        elif a[0, 0] > a[1, 1] and a[0, 0] > a[2, 2]:
            s = 2.0 * np.sqrt(1.0 + a[0, 0] - a[1, 1] - a[2, 2])
            out[i] = [(a[2, 1] - a[1, 2]) / s, 0.25 * s, (a[0, 1] + a[1, 0]) / s, (a[0, 2] + a[2, 0]) / s]
        elif a[1, 1] > a[2, 2]:
            s = 2.0 * np.sqrt(1.0 + a[1, 1] - a[0, 0] - a[2, 2])
            out[i] = [(a[0, 2] - a[2, 0]) / s, (a[0, 1] + a[1, 0]) / s, 0.25 * s, (a[1, 2] + a[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 + a[2, 2] - a[0, 0] - a[1, 1])
            out[i] = [(a[1, 0] - a[0, 1]) / s, (a[0, 2] + a[2, 0]) / s, (a[1, 2] + a[2, 1]) / s, 0.25 * s]
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out[out[:, 0] < 0] *= -1
    if order == "xyzw":
        out = out[:, [1, 2, 3, 0]]
    return out.reshape(*batch, 4)


# --- 6D / 9D representations (numpy or torch) ----------------------------------------------------


def matrix_to_rot6d(R):
    """Rotation matrices (..., 3, 3) -> (..., 6): the first two columns [R[:,0], R[:,1]]."""
    return _cat([R[..., :, 0], R[..., :, 1]], -1)


def rot6d_to_matrix(x):
    """(..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt on the two columns."""
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = a1 / _norm(a1)
    b2 = a2 - _dot(b1, a2) * b1
    b2 = b2 / _norm(b2)
    b3 = _cross(b1, b2)
    return _stack([b1, b2, b3], -1)


def c2w_to_pose9d(T):
    """Camera-to-world (..., 4, 4) -> 9D vectors (..., 9) = [R[:,0], R[:,1], t]."""
    return _cat([matrix_to_rot6d(T[..., :3, :3]), T[..., :3, 3]], -1)


def pose9d_to_c2w(x):
    """9D vectors (..., 9) -> camera-to-world (..., 4, 4) (rotation re-orthonormalised)."""
    R = rot6d_to_matrix(x[..., :6])
    t = x[..., 6:9]
    if _is_torch(x):
        T = _torch().zeros(*x.shape[:-1], 4, 4, dtype=x.dtype, device=x.device)
    else:
        T = np.zeros((*x.shape[:-1], 4, 4), dtype=np.result_type(x.dtype, np.float32))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1
    return T


# --- rigid transforms ------------------------------------------------------------------------------


def make_se3(R, t) -> np.ndarray:
    """Rotation (..., 3, 3) and translation (..., 3) -> (..., 4, 4)."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T = np.zeros((*R.shape[:-2], 4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_se3(T) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4) using R^T (exact for rotations)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    return make_se3(Rt, -np.einsum("...ij,...j->...i", Rt, t))


def mean_se3(T, axis: int = 0) -> np.ndarray:
    """Mean of rigid transforms along ``axis``: mean translation and the chordal L2 mean rotation (the
    rotation nearest, in Frobenius norm, to the mean rotation matrix: its SVD projection onto SO(3))."""
    T = np.moveaxis(np.asarray(T, dtype=np.float64), axis, 0)
    U, _, Vt = np.linalg.svd(T[..., :3, :3].mean(0))
    flip = np.ones(U.shape[:-1])
    flip[..., -1] = np.sign(np.linalg.det(U @ Vt))  # a reflection becomes the nearest rotation
    return make_se3((U * flip[..., None, :]) @ Vt, T[..., :3, 3].mean(0))


def w2c_to_c2w(T_w2c) -> np.ndarray:
    """World-to-camera extrinsics -> camera-to-world poses."""
    return invert_se3(T_w2c)


def c2w_to_w2c(T_c2w) -> np.ndarray:
    """Camera-to-world poses -> world-to-camera extrinsics."""
    return invert_se3(T_c2w)


def relative_to_first(T) -> np.ndarray:
    """Poses (N, 4, 4) -> poses relative to the first: inv(T[0]) @ T[i] (so frame 0 is identity)."""
    T = np.asarray(T, dtype=np.float64)
    return np.einsum("ij,njk->nik", invert_se3(T[0]), T)


def opengl_to_opencv_c2w(T) -> np.ndarray:
    """Camera-to-world with OpenGL camera axes -> OpenCV camera axes (world frame unchanged)."""
    return np.asarray(T, dtype=np.float64) @ OPENGL_TO_OPENCV


def psi_to_opencv_c2w(T) -> np.ndarray:
    """HoloLens camera-to-world in the psi basis (x fwd, y left, z up) -> OpenCV camera axes."""
    return np.asarray(T, dtype=np.float64) @ PSI_TO_OPENCV


def upright_c2w(T) -> np.ndarray:
    """Raw Aria camera-to-world -> camera-to-world of the 90-degree-clockwise rotated (upright) image."""
    return np.asarray(T, dtype=np.float64) @ UPRIGHT_FROM_RAW


def upright_pixels(uv, raw_height: int) -> np.ndarray:
    """Pixels of the raw image -> pixels of the image rotated 90 degrees clockwise: (u, v) -> (H-1-v, u)."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([raw_height - 1 - uv[..., 1], uv[..., 0]], -1)


def rotation_angle_deg(R) -> np.ndarray:
    """Angle of rotation matrices (..., 3, 3) in degrees.

    Uses atan2(|axis * sin|, cos) rather than arccos of the trace, so small angles keep their
    precision (arccos loses ~0.01 deg on float32 identities).
    """
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    v = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1) / 2.0
    return np.degrees(np.arctan2(np.linalg.norm(v, axis=-1), cos))


# --- pinhole projection ----------------------------------------------------------------------------


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def project(points_cam, intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points (..., 3) -> (pixels (..., 2), z (...)). ``intrinsics`` = (fx, fy, cx, cy).

    Points at or behind the camera (z <= 0) give NaN pixels.
    """
    fx, fy, cx, cy = intrinsics
    p = np.asarray(points_cam, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(z > 0, fx * p[..., 0] / z + cx, np.nan)
        v = np.where(z > 0, fy * p[..., 1] / z + cy, np.nan)
    return np.stack([u, v], -1), z


def unproject(uv, depth, intrinsics) -> np.ndarray:
    """Pixels (..., 2) and z-depth (...) -> camera-frame points (..., 3)."""
    fx, fy, cx, cy = intrinsics
    uv = np.asarray(uv, dtype=np.float64)
    d = np.asarray(depth, dtype=np.float64)
    x = (uv[..., 0] - cx) / fx * d
    y = (uv[..., 1] - cy) / fy * d
    return np.stack([x, y, d], -1)


def transform_points(T, points) -> np.ndarray:
    """Apply 4x4 transforms (..., 4, 4) to points (..., 3)."""
    T = np.asarray(T, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...j->...i", T[..., :3, :3], p) + T[..., :3, 3]


def depth_to_points(depth, intrinsics) -> np.ndarray:
    """z-depth image (H, W) -> camera-frame points (H, W, 3) (pixel centres at integers)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return unproject(np.stack([u, v], -1), depth, intrinsics)


# --- centre crop + resize (the standard image) ------------------------------------------------------


def center_crop_box(width: int, height: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the centred square crop of a width x height image (integer offsets)."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def crop_resize_intrinsics(intrinsics, width: int, height: int, size: int) -> np.ndarray:
    """Intrinsics (fx, fy, cx, cy) of the source image -> those of its centre crop resized to size x size.

    With pixel centres at integers, a resize by s maps u -> (u + 0.5) * s - 0.5.
    Works for pinhole and for Fisheye624-style models whose (f, cx, cy) transform the same way.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    x0, y0, side = center_crop_box(width, height)
    s = size / side
    return np.array([fx * s, fy * s, (cx - x0 + 0.5) * s - 0.5, (cy - y0 + 0.5) * s - 0.5])


def crop_resize_pixels(uv, width: int, height: int, size: int) -> np.ndarray:
    """Pixels (..., 2) of the source image -> pixels of its centre crop resized to size x size."""
    uv = np.asarray(uv, dtype=np.float64)
    x0, y0, side = center_crop_box(width, height)
    s = size / side
    return np.stack([(uv[..., 0] - x0 + 0.5) * s - 0.5, (uv[..., 1] - y0 + 0.5) * s - 0.5], -1)


def pixels_to_normalized(uv, width: int, height: int) -> np.ndarray:
    """Pixels (..., 2) -> normalised image coordinates (x/W, y/H): 0 = left/top edge, 1 = right/bottom."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([(uv[..., 0] + 0.5) / width, (uv[..., 1] + 0.5) / height], -1)


def normalized_to_pixels(xy, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`pixels_to_normalized`."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([xy[..., 0] * width - 0.5, xy[..., 1] * height - 0.5], -1)
