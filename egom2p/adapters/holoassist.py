"""HoloAssist adapter (HoloLens 2, exported with Platform for Situated Intelligence "Export_py").

Layout read (per session folder ``<raw>/<session>/Export_py/``)::

    Video_pitchshift.mp4            RGB (PV camera) 896x504, ~30 fps
    Video/Pose_sync.txt             tab-separated: synced time (s), tick (100 ns), 16 values = row-major
                                    4x4 camera-to-world in the psi basis (x forward, y left, z up)
    Video/Intrinsics.txt            tab-separated: 3x3 K (row-major), distortion ..., width, height
    Video/VideoMp4Timing.txt        first line: tick of mp4 frame 0
    Eyes/Eyes_sync.txt              tab-separated: synced time (s), original tick, eye origin xyz, gaze
                                    direction xyz (world), [validity]; rows matched to pose rows on the
                                    synced time (column 1)
    AhatDepth_synced.tar            optional AHAT depth pngs (not registered to the PV camera; see card)

Conventions (cross-checked with the official EgoM2P release, egom2p/data/load_cam.py,
holoassist_eye_proj.py and gen_aligned_training_data.py):

* mp4 frame j is at tick ``VideoMp4Timing[0] + j * 1e7 / fps``; the 30 FPS timeline runs from the
  first to the last Pose_sync tick inside the video; each timeline frame takes the nearest pose row
  and the nearest mp4 frame (within half a frame period; otherwise the pose is NaN and the frame
  flagged invalid).
* OpenCV pose = Pose · PSI_TO_OPENCV (:func:`egom2p.geometry.psi_to_opencv_c2w`).
* 2D gaze: P = origin + 0.5 m · normalize(direction) in world, projected through the OpenCV camera
  pose of the frame and K (no distortion, as the official projection).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from .. import geometry as geo
from .. import video as vid
from ..safeio import iter_tar_members
from ._sources import floats, read_table, require_file
from .base import Adapter, RawSequence, SequenceRef, SourceError

TICKS_PER_SECOND = 10_000_000
GAZE_DISTANCE_M = 0.5  # projection distance of the official release (holoassist_eye_proj.py --eye_dist)
SPLIT_FILES = {"train": "train-v1_2.txt", "val": "val-v1_2.txt", "test": "test-v1_2.txt"}


def read_ticks_table(path: Path, min_cols: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A psi ``*_sync.txt``: (synced time s [N], ticks int64 [N], payload float64 [N, >= min_cols - 2])."""
    rows = read_table(path, min_cols=min_cols, sep="\t", what=what)
    width = min(len(r) for r in rows)
    try:
        ticks = np.array([int(float(r[1])) if "." in r[1] or "e" in r[1].lower() else int(r[1]) for r in rows],
                         dtype=np.int64)
    except ValueError as e:
        raise SourceError(path, f"column 2 must be integer 100-ns ticks ({e})") from e
    synced = np.array([floats(path, r[:1])[0] for r in rows])
    payload = np.stack([floats(path, r[2:width]) for r in rows])
    if np.any(np.diff(ticks) <= 0):
        raise SourceError(path, "ticks are not strictly increasing (unsynchronisable stream)")
    return synced, ticks, payload


def read_intrinsics(path: Path) -> tuple[np.ndarray, int, int]:
    """(fx, fy, cx, cy), width, height from Intrinsics.txt (K row-major first, width and height last)."""
    rows = read_table(path, min_cols=1, sep=None, what="intrinsics")
    vals = floats(path, [c for r in rows for c in r])  # one tab-separated line in the release; any layout read
    if vals.size < 11:
        raise SourceError(path, f"{vals.size} numbers, expected at least 11 (3x3 K ... width height)")
    K = vals[:9].reshape(3, 3)
    w, h = int(round(vals[-2])), int(round(vals[-1]))
    if K[2, 2] != 1 or K[0, 0] <= 0 or K[1, 1] <= 0 or w <= 0 or h <= 0:
        raise SourceError(path, f"unexpected intrinsics layout (K={K.tolist()}, size {w}x{h})")
    return np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]), w, h


def gaze_points_world(origin: np.ndarray, direction: np.ndarray, distance: float = GAZE_DISTANCE_M) -> np.ndarray:
    """World points [N, 3] at ``distance`` along the (normalised) gaze rays; NaN for zero directions."""
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(norm > 1e-9, direction / norm, np.nan)
    return origin + distance * d


def ahat_depth_frames(session_dir: Path):
    """Yield (name, uint16 [H, W]) of the AHAT depth pngs inside ``AhatDepth_synced.tar``, read in memory.

    The tar is read with :func:`egom2p.safeio.iter_tar_members` (members never touch the disk, unsafe
    members refuse the archive). The AHAT camera is not the PV camera and its calibration is not in
    Export_py, so this depth is not returned by ``read_depth`` (see the card).
    """
    import cv2

    tar = require_file(Path(session_dir) / "Export_py" / "AhatDepth_synced.tar", "AHAT depth tar")
    for name, data in iter_tar_members(tar):
        if not name.lower().endswith(".png"):
            continue
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH)
        if img is None or img.dtype != np.uint16:
            raise SourceError(tar, f"member {name!r} is not a 16-bit png")
        yield name, img


class HoloAssistAdapter(Adapter):
    name = "holoassist"
    version = "1"
    modalities = ("rgb", "gaze", "cam")
    default_depth = "rollingdepth"  # the paper pseudo-labels HoloAssist depth with RollingDepth
    layout = ("<raw>/<session>/Export_py/{Video_pitchshift.mp4, Video/{Pose_sync,Intrinsics,VideoMp4Timing}.txt, "
              "Eyes/Eyes_sync.txt}, optional <raw>/data_split/*.txt")

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        if not root.is_dir():
            raise SourceError(root, "HoloAssist root folder not found")
        splits = {}
        for split, fname in SPLIT_FILES.items():
            f = root / "data_split" / fname
            if f.is_file():
                try:
                    lines = f.read_text().splitlines()
                except (OSError, UnicodeDecodeError) as e:
                    raise SourceError(f, f"unreadable split list ({e})") from e
                splits.update({line.strip(): split for line in lines if line.strip()})
        refs = []
        for d in sorted(p for p in root.iterdir() if (p / "Export_py").is_dir()):
            refs.append(SequenceRef(dataset=self.name, sequence=d.name, path=str(d),
                                    split=splits.get(d.name, "train" if not splits else "unlisted")))
        if not refs:
            raise SourceError(root, "no <session>/Export_py folder found (is this the HoloAssist root?)")
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        ex = Path(ref.path) / "Export_py"
        mp4 = require_file(ex / "Video_pitchshift.mp4", "video")
        pose_f, intr_f = ex / "Video" / "Pose_sync.txt", ex / "Video" / "Intrinsics.txt"
        timing_f, eyes_f = ex / "Video" / "VideoMp4Timing.txt", ex / "Eyes" / "Eyes_sync.txt"

        try:
            info = vid.probe(mp4)
        except vid.VideoError as e:
            raise SourceError(mp4, str(e)) from e
        timing = read_table(timing_f, min_cols=1, what="VideoMp4Timing")
        try:
            t_start = int(timing[0][0])
        except ValueError as e:
            raise SourceError(timing_f, f"first line must be the integer tick of frame 0 ({e})") from e
        fps = Fraction(info.fps).limit_denominator(1001)
        n_video = info.num_frames
        frame_ticks = (np.arange(n_video, dtype=np.int64) * fps.denominator * TICKS_PER_SECOND) // fps.numerator
        video_ticks = t_start + frame_ticks  # exact integer ticks of each mp4 frame

        pose_synced, pose_ticks, pose_payload = read_ticks_table(pose_f, 18, "Pose_sync")
        pose_psi = pose_payload[:, :16].reshape(-1, 4, 4)
        K, kw, kh = read_intrinsics(intr_f)
        if (kw, kh) != (info.width, info.height):  # intrinsics given for another resolution: rescale
            sx, sy = info.width / kw, info.height / kh
            K = np.array([K[0] * sx, K[1] * sy, (K[2] + 0.5) * sx - 0.5, (K[3] + 0.5) * sy - 0.5])

        # 30 FPS timeline over the pose rows that lie inside the video
        period = TICKS_PER_SECOND / 30.0
        half = period / 2
        inside = (pose_ticks >= video_ticks[0] - half) & (pose_ticks <= video_ticks[-1] + half)
        if not inside.any():
            raise SourceError(pose_f, "no pose tick falls inside the video's time span (unsynchronisable streams)")
        t0, t1 = pose_ticks[inside][0], pose_ticks[inside][-1]
        n = int(np.round((t1 - t0) / period)) + 1
        grid = (t0 - t_start) + np.arange(n) * period  # ticks relative to frame 0 (float64 is exact enough)
        pi = vid.nearest_indices((pose_ticks - t_start).astype(np.float64), grid, max_gap=half)
        vi = vid.nearest_indices((video_ticks - t_start).astype(np.float64), grid)
        c2w = np.full((n, 4, 4), np.nan)
        have = pi >= 0
        c2w[have] = geo.psi_to_opencv_c2w(pose_psi[pi[have]])
        frame_valid = have & (np.abs((video_ticks[vi] - t_start) - grid) <= half)

        gaze = np.full((n, 2), np.nan)
        files = [str(mp4), str(pose_f), str(intr_f), str(timing_f)]
        if eyes_f.is_file():
            files.append(str(eyes_f))
            eye_synced, _, eye = read_ticks_table(eyes_f, 8, "Eyes_sync")
            # eye rows are matched to pose rows on the shared synced clock (column 1), not on their
            # original device ticks; then follow the pose row of each timeline frame
            order = np.argsort(eye_synced, kind="stable")
            ei_pose = vid.nearest_indices(eye_synced[order], pose_synced, max_gap=0.5 / 30.0)
            ei_pose = np.where(ei_pose >= 0, order[np.maximum(ei_pose, 0)], -1)
            ei = np.where(have, ei_pose[np.maximum(pi, 0)], -1)
            ok = (ei >= 0) & have
            valid_col = eye[:, 6] != 0 if eye.shape[1] > 6 else np.ones(len(eye), bool)  # UNCONFIRMED column
            ok[ok] &= valid_col[ei[ok]] & np.isfinite(eye[ei[ok], :6]).all(axis=1)
            if ok.any():
                P = gaze_points_world(eye[ei[ok], 0:3], eye[ei[ok], 3:6])
                p_cam = geo.transform_points(geo.invert_se3(c2w[ok]), P)
                uv, z = geo.project(p_cam, K)
                gaze[ok] = uv

        def read_frames(idx):
            return vid.decode(mp4, vi[np.asarray(idx)])

        return RawSequence(ref=ref, num_frames=n, width=info.width, height=info.height, intrinsics=K,
                           read_frames=read_frames, c2w=c2w, gaze_px=gaze, read_depth=None,
                           camera_model="pinhole", frame_valid=frame_valid, source_files=files)


ADAPTER = HoloAssistAdapter()
