"""Eye gaze and head orientation of the walking person.

Gaze is simulated as a sequence of events on the 30 FPS timeline:

* **fixation** on a visible scene point: an object (furniture, clutter, pictures; weighted by size,
  nearness and how close it is to the walking direction) or, less often, any surface point near
  the heading. The point is found by casting a ray from the eye, so it is visible when the fixation
  starts; it stays fixed in the world while the head moves (the eyes counter-rotate).
  Durations are log-normal (median ~0.35 s).
* **smooth pursuit** while walking: the gaze rides a floor point a fixed distance ahead on the path
  (the "travel fixation" people use when walking), so the fixated point moves smoothly.
* **saccades** of 1-2 frames between them: the gaze direction sweeps from the old to the new target.
* **blinks** every 2-6 s lasting 3-5 frames: the sample is invalid.

Fixation points are stored in world coordinates with a state per frame (:data:`STATE_NAMES`);
points that fall outside the image are marked ``offscreen`` once the camera is known
(:func:`mark_offscreen`). The head follows the gaze partially (about 55 % of the angular offset
from the walking heading, low-pass filtered, so it lags the eyes), plus small pitch/roll from
the gait and slow random head motion (:func:`head_orientation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_model import Scene
from .walk import Walk, yaw_of

FIXATION, SACCADE, PURSUIT, BLINK, OFFSCREEN = 0, 1, 2, 3, 4
STATE_NAMES = {FIXATION: "fixation", SACCADE: "saccade", PURSUIT: "pursuit", BLINK: "blink", OFFSCREEN: "offscreen"}
VALID_STATES = (FIXATION, SACCADE, PURSUIT)
OCCLUSION_TOLERANCE_M = 0.05  # a fixation point further than this behind the depth at its pixel is occluded


@dataclass
class GazeConfig:
    fixation_median: float = 0.35  # s
    fixation_sigma: float = 0.5  # log-normal sigma
    fixation_range: tuple[float, float] = (0.12, 1.6)
    pursuit_prob: float = 0.3  # chance a new event while walking is a path pursuit
    pursuit_duration: tuple[float, float] = (0.8, 2.5)
    pursuit_ahead: tuple[float, float] = (2.0, 4.0)  # m ahead on the path
    object_prob: float = 0.8  # otherwise a random surface point near the heading
    max_yaw_deg: float = 70.0  # targets within this yaw of the heading
    saccade_frames: tuple[int, int] = (1, 2)
    blink_interval: tuple[float, float] = (2.0, 6.0)  # s
    blink_frames: tuple[int, int] = (3, 5)
    head_follow: float = 0.55  # fraction of the gaze yaw offset the head turns by
    head_follow_pitch: float = 0.7  # fraction of the gaze pitch offset the head tilts by
    head_tau: float = 0.15  # s, head lag behind the eyes
    base_pitch_deg: tuple[float, float] = (-14.0, -4.0)  # habitual downward head pitch while walking
    head_noise_deg: float = 1.5


@dataclass
class Gaze:
    point: np.ndarray  # [N, 3] fixation point (world)
    state: np.ndarray  # [N] int8 (FIXATION ...)
    target_object: np.ndarray  # [N] int32 object index hit by the fixation ray (-1 none)

    @property
    def valid(self) -> np.ndarray:
        return np.isin(self.state, VALID_STATES)


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _pick_object_point(scene: Scene, eye: np.ndarray, heading: float, cfg: GazeConfig, rng) -> np.ndarray | None:
    objs = [(k, o) for k, o in enumerate(scene.objects) if o.target and np.all(np.isfinite(o.bbox_min))]
    if not objs:
        return None
    centres = np.array([o.center for _, o in objs])
    sizes = np.array([np.linalg.norm(o.size) for _, o in objs])
    d = centres - eye
    dist = np.linalg.norm(d, axis=1)
    yaw = yaw_of(d[:, 0], d[:, 2])
    dyaw = np.abs(_wrap(yaw - heading))
    pitch = np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))
    ok = (dyaw < np.radians(cfg.max_yaw_deg)) & (dist > 0.3) & (dist < 8.0) & (pitch > np.radians(-65)) & (
        pitch < np.radians(40))
    if not ok.any():
        return None
    w = np.sqrt(sizes) / (dist + 0.5) * np.exp(-(dyaw / np.radians(40)) ** 2)
    w = np.where(ok, w, 0.0)
    j = rng.choice(len(objs), p=w / w.sum())
    o = objs[j][1]
    q = o.bbox_min + rng.uniform(0.2, 0.8, size=3) * o.size
    return q


def _random_direction(heading: float, rng) -> np.ndarray:
    yaw = heading + np.radians(rng.uniform(-40, 40))
    pitch = np.radians(rng.uniform(-35, 10))
    return np.array([-np.sin(yaw) * np.cos(pitch), np.sin(pitch), -np.cos(yaw) * np.cos(pitch)])


def simulate_gaze(scene: Scene, walk: Walk, fps: float, rng: np.random.Generator,
                  config: GazeConfig | None = None) -> Gaze:
    """Fixations, pursuits, saccades and blinks along a walk (see module docstring)."""
    from .walk import _resample_polyline

    cfg = config or GazeConfig()
    n = len(walk.eye)
    point = np.zeros((n, 3))
    state = np.zeros(n, np.int8)
    obj = -np.ones(n, np.int32)
    prev = None  # previous fixation point
    t = 0
    while t < n:
        walking = walk.speed[t] > 0.4
        if walking and rng.random() < cfg.pursuit_prob:
            dur = max(1, int(rng.uniform(*cfg.pursuit_duration) * fps))
            ahead = rng.uniform(*cfg.pursuit_ahead)
            idx = np.arange(t, min(n, t + dur))
            xz = _resample_polyline(walk.path, walk.arc[idx] + ahead)
            tgt = np.stack([xz[:, 0], np.full(len(idx), scene.floor_y), xz[:, 1]], -1)
            dirs = _unit(tgt - walk.eye[idx])
            th, prim = scene.cast(walk.eye[idx], dirs)
            hit = np.isfinite(th)
            pts = walk.eye[idx] + dirs * np.where(hit, th, np.linalg.norm(tgt - walk.eye[idx], axis=1))[:, None]
            seg_pts, seg_state, seg_obj = pts, np.full(len(idx), PURSUIT, np.int8), scene.object_of(prim)
        else:
            dur = int(np.clip(cfg.fixation_median * np.exp(cfg.fixation_sigma * rng.normal()), *cfg.fixation_range)
                      * fps)
            dur = max(dur, 2)
            idx = np.arange(t, min(n, t + dur))
            eye = walk.eye[t]
            q = _pick_object_point(scene, eye, walk.heading_yaw[t], cfg, rng) if rng.random() < cfg.object_prob else None
            found = None
            for _ in range(8):
                d = _unit(q - eye) if q is not None else _random_direction(walk.heading_yaw[t], rng)
                th, prim = scene.cast(eye[None], d[None])
                if np.isfinite(th[0]) and th[0] > 0.25:
                    found = (eye + d * th[0], int(scene.object_of(prim)[0]))
                    break
                q = None
            if found is None:  # nothing visible to look at: look ahead into the room
                found = (prev if prev is not None else eye + 2.0 * _random_direction(walk.heading_yaw[t], rng), -1)
            seg_pts = np.repeat(found[0][None], len(idx), 0)
            seg_state = np.full(len(idx), FIXATION, np.int8)
            seg_obj = np.full(len(idx), found[1], np.int32)
        # a saccade from the previous target into this one
        if prev is not None:
            ns = min(int(rng.integers(cfg.saccade_frames[0], cfg.saccade_frames[1] + 1)), len(idx) - 1)
            if ns > 0:
                sidx = idx[:ns]
                a = _unit(prev - walk.eye[sidx])
                b = _unit(seg_pts[:ns] - walk.eye[sidx])
                w = ((np.arange(ns) + 1) / (ns + 1))[:, None]
                dirs = _unit((1 - w) * a + w * b)
                th, prim = scene.cast(walk.eye[sidx], dirs)
                dist = np.where(np.isfinite(th), th, np.linalg.norm(seg_pts[:ns] - walk.eye[sidx], axis=1))
                seg_pts = seg_pts.copy()
                seg_pts[:ns] = walk.eye[sidx] + dirs * dist[:, None]
                seg_state = seg_state.copy()
                seg_state[:ns] = SACCADE
                seg_obj = seg_obj.copy()
                seg_obj[:ns] = scene.object_of(prim)
        point[idx], state[idx], obj[idx] = seg_pts, seg_state, seg_obj
        prev = seg_pts[-1]
        t = idx[-1] + 1
    # blinks
    t = int(rng.uniform(0.3, cfg.blink_interval[1]) * fps)
    while t < n:
        k = int(rng.integers(cfg.blink_frames[0], cfg.blink_frames[1] + 1))
        state[t:t + k] = BLINK
        t += k + int(rng.uniform(*cfg.blink_interval) * fps)
    return Gaze(point=point, state=state, target_object=obj)


def _smooth_noise(n: int, sigma_frames: float, scale: float, rng) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.normal(size=n + 60), sigma_frames)[30:30 + n]
    return scale * x / max(np.std(x), 1e-9)


def head_orientation(walk: Walk, gaze: Gaze, fps: float, rng: np.random.Generator,
                     config: GazeConfig | None = None) -> np.ndarray:
    """Camera-to-world rotations [N, 3, 3] in OpenGL camera axes (x right, y up, z backward)."""
    cfg = config or GazeConfig()
    n = len(walk.eye)
    d = gaze.point - walk.eye
    gyaw = yaw_of(d[:, 0], d[:, 2])
    gpitch = np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))
    base_pitch = np.radians(rng.uniform(*cfg.base_pitch_deg))
    off_yaw = cfg.head_follow * _wrap(gyaw - walk.heading_yaw)
    off_pitch = cfg.head_follow_pitch * (gpitch - base_pitch)
    # first-order lag: the head follows the eyes with time constant head_tau
    a = 1.0 - np.exp(-1.0 / (cfg.head_tau * fps))
    sy, sp = np.empty(n), np.empty(n)
    sy[0], sp[0] = off_yaw[0], off_pitch[0]
    for i in range(1, n):
        sy[i] = sy[i - 1] + a * (off_yaw[i] - sy[i - 1])
        sp[i] = sp[i - 1] + a * (off_pitch[i] - sp[i - 1])
    amp = np.clip(walk.speed / 1.2, 0, 1.2)
    noise = np.radians(cfg.head_noise_deg)
    yaw = walk.heading_yaw + sy + _smooth_noise(n, 0.4 * fps, noise, rng)
    pitch = base_pitch + sp + np.radians(0.6) * amp * np.sin(2 * walk.gait_phase) + _smooth_noise(n, 0.4 * fps, noise * 0.6, rng)
    roll = np.radians(1.2) * amp * np.sin(walk.gait_phase) + _smooth_noise(n, 0.5 * fps, noise * 0.4, rng)
    pitch = np.clip(pitch, np.radians(-70), np.radians(60))
    return rotation_ypr(yaw, pitch, roll)


def rotation_ypr(yaw, pitch, roll) -> np.ndarray:
    """R = Ry(yaw) @ Rx(pitch) @ Rz(roll), each [N] -> [N, 3, 3] (OpenGL camera-to-world rotation)."""
    yaw, pitch, roll = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (yaw, pitch, roll))
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    z, o = np.zeros_like(yaw), np.ones_like(yaw)
    Ry = np.stack([np.stack([cy, z, sy], -1), np.stack([z, o, z], -1), np.stack([-sy, z, cy], -1)], -2)
    Rx = np.stack([np.stack([o, z, z], -1), np.stack([z, cp, -sp], -1), np.stack([z, sp, cp], -1)], -2)
    Rz = np.stack([np.stack([cr, -sr, z], -1), np.stack([sr, cr, z], -1), np.stack([z, z, o], -1)], -2)
    return Ry @ Rx @ Rz


def mark_offscreen(gaze: Gaze, c2w_opengl: np.ndarray, intrinsics: np.ndarray, width: int, height: int) -> Gaze:
    """Set state OFFSCREEN where a (non-blink) fixation point projects outside the image or behind the camera."""
    from .. import geometry as geo

    T = geo.opengl_to_opencv_c2w(c2w_opengl)
    pc = geo.transform_points(geo.invert_se3(T), gaze.point)
    uv, z = geo.project(pc, intrinsics)
    inside = (z > 0) & np.all(np.isfinite(uv), -1) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= width - 0.5) & (
        uv[:, 1] >= -0.5) & (uv[:, 1] <= height - 0.5)
    state = gaze.state.copy()
    state[(~inside) & (state != BLINK)] = OFFSCREEN
    return Gaze(point=gaze.point, state=state, target_object=gaze.target_object)


def project_fixations(c2w_cv: np.ndarray, intrinsics, width: int, height: int, points: np.ndarray, valid: np.ndarray,
                      depth_at=None, tolerance: float = OCCLUSION_TOLERANCE_M) -> np.ndarray:
    """World fixation points [N, 3] -> source pixels [N, 2] (OpenCV camera-to-world poses [N, 4, 4]).

    NaN where ``valid`` is False, behind the camera, outside the image ([-0.5, W-0.5] x [-0.5, H-0.5])
    or occluded: ``depth_at(frames, v, u)`` gives the z-depth (m, 0 = none) at integer pixels, and a
    point more than ``tolerance`` behind it is hidden. Without ``depth_at`` no occlusion test is made.
    """
    from .. import geometry as geo

    pc = geo.transform_points(geo.invert_se3(c2w_cv), points)  # [N, 3] camera frame
    uv, z = geo.project(pc, intrinsics)
    ok = np.asarray(valid, dtype=bool) & (z > 0) & np.all(np.isfinite(uv), -1)
    ok &= (uv[:, 0] >= -0.5) & (uv[:, 0] <= width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= height - 0.5)
    if depth_at is not None and ok.any():
        f = np.nonzero(ok)[0]
        u = np.clip(np.round(uv[f, 0]).astype(np.int64), 0, width - 1)
        v = np.clip(np.round(uv[f, 1]).astype(np.int64), 0, height - 1)
        d = np.asarray(depth_at(f, v, u), dtype=np.float64)
        occluded = (d > 0) & np.isfinite(d) & (z[f] > d + tolerance)
        ok[f[occluded]] = False
    return np.where(ok[:, None], uv, np.nan)
