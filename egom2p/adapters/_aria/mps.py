"""Project Aria MPS outputs (closed-loop trajectory, eye gaze, online calibration) as time-indexed streams,
header checks, and the 30 FPS timeline (see :mod:`egom2p.adapters.aria`)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import numpy as np

from ... import geometry as geo
from ...video import nearest_indices, resample_indices
from ..base import SourceError, require_file

RGB_LABEL = "camera-rgb"
RGB_STREAM = "214-1"
#: Full-resolution Aria Gen1 RGB sensor size used by MPS online calibration.
ONLINE_RGB_SIZE = (2880, 2880)
#: Columns the closed-loop trajectory must have (MPS docs, schema of closed_loop_trajectory.csv).
TRAJECTORY_COLUMNS = ("tracking_timestamp_us", "tx_world_device", "ty_world_device", "tz_world_device",
                      "qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device")
#: HOT3D headset_trajectory.csv (hot3d/data_loaders/constants.py POSE_DATA_CSV_COLUMNS), quaternion w first.
HEADSET_COLUMNS = ("object_uid", "timestamp[ns]", "t_wo_x[m]", "t_wo_y[m]", "t_wo_z[m]",
                   "q_wo_w", "q_wo_x", "q_wo_y", "q_wo_z")
GAZE_COLUMNS_GENERAL = ("tracking_timestamp_us", "yaw_rads_cpf", "pitch_rads_cpf")
GAZE_COLUMNS_VERGENCE = ("tracking_timestamp_us", "left_yaw_rads_cpf", "right_yaw_rads_cpf", "pitch_rads_cpf")


def _quiet():
    """projectaria-tools logs every file it opens to stderr; keep it to warnings."""
    os.environ.setdefault("GLOG_minloglevel", "1")


def csv_header(path, what: str) -> list[str]:
    """The header row of a CSV file (SourceError when missing or empty)."""
    p = require_file(path, what, nonempty=True)
    with open(p, newline="") as f:
        row = next(csv.reader(f), None)
    if not row:
        raise SourceError(p, f"{what} has no header row")
    return [c.strip() for c in row]


def check_columns(path, header: list[str], required, what: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise SourceError(path, f"unknown {what} schema: missing columns {missing} (header: {header[:12]})")


# --- time-indexed streams -------------------------------------------------------------------------


def _bracket(src_t: np.ndarray, q: np.ndarray, max_gap: float):
    """For sorted ``src_t`` and queries ``q``: (i0, i1, w, ok) with value = (1-w)*x[i0] + w*x[i1].

    A query is served when it lies between two samples at most ``max_gap`` apart, or within
    ``max_gap / 2`` of the nearest sample at either end of the stream.
    """
    n = len(src_t)
    q = np.asarray(q, dtype=np.float64)
    if n == 0:
        z = np.zeros(q.shape, np.int64)
        return z, z, np.zeros(q.shape), np.zeros(q.shape, bool)
    i1 = np.clip(np.searchsorted(src_t, q, side="left"), 0, n - 1)
    i0 = np.clip(i1 - 1, 0, n - 1)
    exact = src_t[i1] == q
    i0 = np.where(exact, i1, i0)
    t0, t1 = src_t[i0], src_t[i1]
    inside = (t0 <= q) & (q <= t1)
    span = t1 - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(span > 0, (q - t0) / np.where(span > 0, span, 1.0), 0.0)
    ok = inside & (span <= max_gap)
    # outside the stream's span: nearest end sample within half a gap
    near = np.where(np.abs(src_t[i0] - q) <= np.abs(src_t[i1] - q), i0, i1)
    end_ok = ~inside & (np.abs(src_t[near] - q) <= max_gap / 2)
    i0 = np.where(end_ok, near, i0)
    i1 = np.where(end_ok, near, i1)
    w = np.where(end_ok, 0.0, w)
    return i0, i1, w, ok | end_ok


@dataclass
class PoseStream:
    """Rigid poses over time: ``T[i]`` (4x4, e.g. T_world_device) at ``t_ns[i]`` (sorted, int64 ns)."""

    t_ns: np.ndarray  # [N] int64
    T: np.ndarray  # [N, 4, 4] float64
    source: str = ""

    def __post_init__(self):
        order = np.argsort(self.t_ns, kind="stable")
        self.t_ns = np.asarray(self.t_ns, dtype=np.int64)[order]
        self.T = np.asarray(self.T, dtype=np.float64)[order]

    def __len__(self) -> int:
        return len(self.t_ns)

    def interpolate(self, query_ns, max_gap_ns: float) -> np.ndarray:
        """Poses at ``query_ns`` [Q] -> [Q, 4, 4]: linear translation, slerp rotation; NaN where no
        bracketing samples within ``max_gap_ns`` (pose stream lost)."""
        q = np.asarray(query_ns, dtype=np.float64)
        i0, i1, w, ok = _bracket(self.t_ns.astype(np.float64), q, float(max_gap_ns))
        out = np.full((len(q), 4, 4), np.nan)
        if not ok.any():
            return out
        i0, i1, w = i0[ok], i1[ok], w[ok]
        qa = geo.matrix_to_quat(self.T[i0, :3, :3], order="xyzw")
        qb = geo.matrix_to_quat(self.T[i1, :3, :3], order="xyzw")
        dot = np.sum(qa * qb, -1)
        qb = np.where(dot[:, None] < 0, -qb, qb)
        dot = np.abs(dot).clip(-1.0, 1.0)
        theta = np.arccos(dot)
        s = np.sin(theta)
        small = s < 1e-9
        wa = np.where(small, 1 - w, np.sin((1 - w) * theta) / np.where(small, 1.0, s))
        wb = np.where(small, w, np.sin(w * theta) / np.where(small, 1.0, s))
        quat = wa[:, None] * qa + wb[:, None] * qb
        t = (1 - w)[:, None] * self.T[i0, :3, 3] + w[:, None] * self.T[i1, :3, 3]
        out[ok] = geo.make_se3(geo.quat_to_matrix(quat, order="xyzw"), t)
        return out


@dataclass
class GazeStream:
    """MPS eye gaze in the central pupil frame: yaw/pitch (rad) and depth (m, NaN when absent)."""

    t_ns: np.ndarray  # [N] int64 device time
    yaw: np.ndarray
    pitch: np.ndarray
    depth: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.t_ns)

    def interpolate(self, query_ns, max_gap_ns: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(yaw, pitch, depth) at the query times; NaN where gaze is missing (tracking lost)."""
        q = np.asarray(query_ns, dtype=np.float64)
        i0, i1, w, ok = _bracket(self.t_ns.astype(np.float64), q, float(max_gap_ns))
        res = []
        for x in (self.yaw, self.pitch, self.depth):
            v = (1 - w) * x[i0] + w * x[i1]
            res.append(np.where(ok, v, np.nan))
        return res[0], res[1], res[2]


# --- readers --------------------------------------------------------------------------------------


def read_closed_loop_trajectory(path) -> PoseStream:
    """MPS ``closed_loop_trajectory.csv`` (also ADT ``aria_trajectory.csv``, ASE ``trajectory.csv``)
    -> T_world_device over device time. Read with ``mps.read_closed_loop_trajectory``."""
    _quiet()
    from projectaria_tools.core import mps

    header = csv_header(path, "closed-loop trajectory")
    check_columns(path, header, TRAJECTORY_COLUMNS, "closed-loop trajectory")
    poses = mps.read_closed_loop_trajectory(str(path))
    if not poses:
        raise SourceError(path, "closed-loop trajectory has no readable pose")
    t = np.fromiter((p.tracking_timestamp.total_seconds() * 1e6 for p in poses), np.float64, len(poses))
    T = np.stack([p.transform_world_device.to_matrix() for p in poses])
    return PoseStream(np.round(t * 1e3).astype(np.int64), T, str(path))


def read_headset_trajectory(path) -> PoseStream:
    """HOT3D ``headset_trajectory.csv``: T_world_device, metres, quaternion **w first**, ns (TIME_CODE)."""
    header = csv_header(path, "HOT3D headset trajectory")
    check_columns(path, header, HEADSET_COLUMNS, "HOT3D headset trajectory")
    col = {c: header.index(c) for c in HEADSET_COLUMNS}
    ts, rows, uids = [], [], set()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for k, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                ts.append(int(row[col["timestamp[ns]"]]))
                rows.append([float(row[col[c]]) for c in HEADSET_COLUMNS[2:]])
            except (ValueError, IndexError) as e:
                raise SourceError(path, f"line {k}: unreadable pose row ({e})") from e
            uids.add(row[col["object_uid"]])
    if not rows:
        raise SourceError(path, "headset trajectory has no pose")
    if len(uids) != 1:
        raise SourceError(path, f"headset trajectory tracks {len(uids)} devices, expected 1")
    a = np.asarray(rows)
    T = geo.make_se3(geo.quat_to_matrix(a[:, 3:7], order="wxyz"), a[:, 0:3])
    return PoseStream(np.asarray(ts, np.int64), T, str(path))


def read_eye_gaze(path) -> GazeStream:
    """MPS eye gaze CSV, older (yaw_rads_cpf) or vergence (left/right_yaw_rads_cpf) schema, read with
    ``mps.read_eyegaze`` (which combines left/right yaw). Depth 0/empty -> NaN."""
    _quiet()
    from projectaria_tools.core import mps

    header = csv_header(path, "eye gaze CSV")
    if not (all(c in header for c in GAZE_COLUMNS_GENERAL) or all(c in header for c in GAZE_COLUMNS_VERGENCE)):
        raise SourceError(path, f"unknown eye gaze schema (header: {header[:10]}); expected "
                                f"{list(GAZE_COLUMNS_GENERAL)} or {list(GAZE_COLUMNS_VERGENCE)}")
    gazes = mps.read_eyegaze(str(path))
    with open(path) as f:
        n_rows = sum(1 for _ in f) - 1
    if n_rows > 0 and not gazes:
        raise SourceError(path, "eye gaze CSV could not be parsed by projectaria-tools")
    t = np.fromiter((g.tracking_timestamp.total_seconds() * 1e6 for g in gazes), np.float64, len(gazes))
    yaw = np.array([g.yaw for g in gazes], np.float64)
    pitch = np.array([g.pitch for g in gazes], np.float64)
    depth = np.array([g.depth for g in gazes], np.float64)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    order = np.argsort(t, kind="stable")
    return GazeStream(np.round(t * 1e3).astype(np.int64)[order], yaw[order], pitch[order], depth[order], str(path))


@dataclass
class OnlineCalibrations:
    """MPS ``online_calibration.jsonl``: per-timestamp camera calibrations (device time)."""

    t_ns: np.ndarray
    records: list
    source: str = ""

    def camera_at(self, label: str, t_ns: float):
        """The calibration of camera ``label`` in the record nearest to ``t_ns``."""
        i = int(np.argmin(np.abs(self.t_ns - t_ns)))
        calib = self.records[i].get_camera_calib(label)
        if calib is None:
            raise SourceError(self.source, f"online calibration has no camera {label!r}")
        return calib


def read_online_calibration(path) -> OnlineCalibrations:
    _quiet()
    from projectaria_tools.core import mps

    p = require_file(path, "online calibration", nonempty=True)
    with open(p) as f:
        first = f.readline()
    try:
        rec = json.loads(first)
    except json.JSONDecodeError as e:
        raise SourceError(p, f"online calibration is not JSON lines ({e})") from e
    if "CameraCalibrations" not in rec or "tracking_timestamp_us" not in rec:
        raise SourceError(p, f"unknown online calibration schema (keys {sorted(rec)[:8]})")
    records = mps.read_online_calibration(str(p))
    if not records:
        raise SourceError(p, "online calibration has no readable record")
    t = np.array([r.tracking_timestamp.total_seconds() * 1e9 for r in records])
    return OnlineCalibrations(np.round(t).astype(np.int64), records, str(p))


# --- timelines -------------------------------------------------------------------------------------


def timeline(frame_ns: np.ndarray, fps: float = 30.0, max_gap_s: float = 0.6 / 30):
    """A 30 FPS timeline over frames with timestamps ``frame_ns`` (sorted).

    Returns (query times ns [N], source frame per slot [N], frame_valid [N]): slots with no source
    frame within ``max_gap_s`` (default 0.6 period: a frame drop) take the nearest frame and are
    flagged invalid.
    """
    t = np.asarray(frame_ns, dtype=np.float64) * 1e-9
    if len(t) == 0:
        raise SourceError("<timeline>", "no frame timestamps")
    n = int(round((t[-1] - t[0]) * fps)) + 1  # round, not floor: timestamps jitter around the period
    times, idx = resample_indices(t - t[0], fps=fps, start=0.0, end=(n - 1) / fps, max_gap=max_gap_s)
    valid = idx >= 0
    src = np.where(valid, idx, nearest_indices(t - t[0], times))
    return np.round((times + t[0]) * 1e9).astype(np.int64), src.astype(np.int64), valid
