"""EgoExo4D adapter: frame-aligned upright Aria RGB video + MPS trajectory and eye gaze.

Layout (docs.ego-exo4d-data.org "Metadata"/"Takes"; Ego4d ``notebooks/egoexo/tutorials/gaze_tutorial``)::

    RAW/takes.json                                   list of takes
    RAW/captures/<capture>/timesync.csv              one row per synchronised 30 FPS frame of the capture
    RAW/takes/<take>/frame_aligned_videos/aria01_214-1.mp4   (or downscaled/448/...), upright, 30 FPS
    RAW/takes/<take>/trajectory/closed_loop_trajectory.csv  + online_calibration.jsonl
    RAW/takes/<take>/eye_gaze/general_eye_gaze.csv   (or personalized_eye_gaze.csv; either schema)
    RAW/takes/<take>/aria01*.vrs                     optional: device calibration (CAD CPF subtype)

Clock: video frame ``i`` of a take is row ``timesync_start_idx + 1 + i`` of the capture's
timesync.csv, column ``<aria cam>_214-1_capture_timestamp_ns`` (Aria device time, ns); MPS
trajectory and gaze (device time, us) are interpolated at those times. An empty timesync cell is a
dropped frame: its time is interpolated from the neighbours and the frame is flagged invalid.

Geometry: camera-to-world = T_world_device @ T_device_rgb (raw sensor axes, OpenCV), then
:func:`egom2p.geometry.upright_c2w` because the frame-aligned videos are rotated 90 degrees clockwise;
gaze is reprojected into the raw RGB image with projectaria-tools and mapped with
:func:`egom2p.geometry.upright_pixels`. Intrinsics and Fisheye624 distortion are those of the
upright calibration (projectaria-tools ``rotate_camera_calib_cw90deg``), at the video resolution.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from .. import geometry as geo
from ..video import VideoError, decode, probe
from . import aria
from .base import Adapter, RawSequence, SequenceRef, SourceError, bad_sequence, require_file

#: Tolerated difference between the video's frame count and the take's timesync rows (frames).
MAX_COUNT_MISMATCH = 2
POSE_MAX_GAP_NS = 50e6  # MPS trajectory is 1 kHz: a larger hole is lost tracking
GAZE_MAX_GAP_NS = 250e6  # MPS eye gaze at the ET rate (10-30 Hz): a larger hole is lost tracking


class EgoExo4DAdapter(Adapter):
    name = "egoexo4d"
    version = "1"
    modalities = ("rgb", "gaze", "cam")
    default_depth = "none"
    layout = ("<raw>/{takes.json, captures/*/timesync.csv, takes/<take>/frame_aligned_videos/, "
              "takes/<take>/trajectory/, takes/<take>/eye_gaze/}")

    def __init__(self, gaze: str = "general", video: str = "full"):
        self.gaze_kind = gaze  # general | personalized
        self.video_kind = video  # full | 448 (frame_aligned_videos/downscaled/448)

    # -- discovery ---------------------------------------------------------------------------------

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        takes_path = require_file(root / "takes.json", "EgoExo4D takes.json", nonempty=True)
        try:
            takes = json.loads(takes_path.read_text())
        except json.JSONDecodeError as e:
            raise SourceError(takes_path, f"not valid JSON ({e})") from e
        if not isinstance(takes, list):
            raise SourceError(takes_path, "expected a JSON list of takes")
        splits = self._splits(root)
        refs = []
        for take in takes:
            try:
                name = take["take_name"]
                cam = self._ego_cam(take)
                rel = take["frame_aligned_videos"][cam]
            except (KeyError, TypeError, AttributeError, SourceError):
                continue  # takes without an Aria ego stream carry none of our modalities
            try:
                rgb = next((s for s in rel.values() if isinstance(s, dict) and (s.get("stream_id") == aria.RGB_STREAM
                            or s.get("readable_stream_id") == "rgb")), None)
                if rgb is None or not rgb.get("relative_path"):
                    continue
                capture = (take.get("capture") or {}).get("capture_name") or re.sub(r"_\d+$", "", name)
                take_dir = root / take.get("root_dir", f"takes/{name}")
                meta = {"root": str(root), "take_dir": str(take_dir), "cam": cam, "capture": capture,
                        "video": str(take_dir / rgb["relative_path"]),
                        "start": int(take["timesync_start_idx"]), "end": int(take["timesync_end_idx"])}
                split = splits.get(take.get("take_uid", ""), "train")
            except (KeyError, TypeError, ValueError, AttributeError) as e:  # a malformed entry of takes.json
                refs.append(bad_sequence(self.name, str(name), takes_path, f"take {name!r}: malformed entry ({e!r})"))
                continue
            refs.append(SequenceRef(self.name, name, str(take_dir), split=split, meta=meta))
        return sorted(refs, key=lambda r: r.sequence)

    @staticmethod
    def _splits(root: Path) -> dict:
        p = root / "annotations" / "splits.json"
        if not p.is_file():
            return {}
        try:
            return {k: ("val" if v == "val" else "test" if v == "test" else "train")
                    for k, v in json.loads(p.read_text()).get("take_uid_to_split", {}).items()}
        except (OSError, ValueError, AttributeError) as e:  # unreadable, not JSON (or not UTF-8), not an object
            raise SourceError(p, f"unreadable splits file ({e})") from e

    @staticmethod
    def _ego_cam(take: dict) -> str:
        cams = (take.get("capture") or {}).get("cameras") or []
        for c in cams:
            if c.get("is_ego") and str(c.get("cam_id", "")).startswith("aria"):
                return c["cam_id"]
        for k in take.get("frame_aligned_videos", {}):
            if k.startswith("aria"):
                return k
        raise SourceError(take.get("take_name", "?"), "take has no Aria ego camera")

    # -- loading -----------------------------------------------------------------------------------

    def _video_path(self, ref: SequenceRef) -> Path:
        p = Path(ref.meta["video"])
        if self.video_kind != "full":
            p = p.parent / "downscaled" / self.video_kind / p.name
        return p

    def frame_times(self, ref: SequenceRef) -> tuple[np.ndarray, np.ndarray]:
        """Device time (ns) of each video frame from timesync.csv, and which rows were present."""
        m = ref.meta
        path = require_file(Path(m["root"]) / "captures" / m["capture"] / "timesync.csv", "timesync.csv", nonempty=True)
        col = f"{m['cam']}_{aria.RGB_STREAM}_capture_timestamp_ns"
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            if col not in header:
                raise SourceError(path, f"no column {col!r} (header: {header[:6]}...)")
            j = header.index(col)
            rows = [r[j] if j < len(r) else "" for r in reader]
        lo, hi = m["start"] + 1, m["end"]
        if lo < 0 or hi > len(rows) or hi <= lo:
            raise SourceError(path, f"take rows [{lo}, {hi}) outside the file's {len(rows)} rows")
        vals = np.array([float(v) if v.strip() not in ("", "nan", "NaN") else np.nan for v in rows[lo:hi]])
        present = np.isfinite(vals)
        if present.sum() < 2:
            raise SourceError(path, f"column {col} has fewer than 2 timestamps for take {ref.sequence}")
        idx = np.arange(len(vals))
        t = np.interp(idx, idx[present], vals[present])  # dropped frames: interpolated time
        return t, present

    def calibration(self, ref: SequenceRef, t_ns: float, width: int, height: int):
        """(raw RGB calibration at the video size, device calibration with CAD CPF, source files)."""
        take = Path(ref.meta["take_dir"])
        files = []
        vrs = sorted(take.glob("aria*.vrs"))
        subtype, camera = "DVT-S", None
        if vrs:
            dc = aria.vrs_device_calibration(vrs[0])
            subtype = dc.get_device_subtype() or subtype
            camera = dc.get_camera_calib(aria.RGB_LABEL)
            files.append(str(vrs[0]))
        oc_path = take / "trajectory" / "online_calibration.jsonl"
        if oc_path.is_file():
            camera = aria.read_online_calibration(oc_path).camera_at(aria.RGB_LABEL, t_ns)
            files.append(str(oc_path))
        if camera is None:
            raise SourceError(oc_path, "missing online calibration and no Aria VRS with a device calibration")
        camera = aria.rescale_rgb_calibration(camera, width, height)
        return camera, aria.device_calibration_for_cameras([camera], subtype), files

    def load(self, ref: SequenceRef) -> RawSequence:
        take = Path(ref.meta["take_dir"])
        video = self._video_path(ref)
        try:
            info = probe(video)
        except VideoError as e:
            raise SourceError(video, str(e)) from e
        t_ns, present = self.frame_times(ref)
        if abs(info.num_frames - len(t_ns)) > MAX_COUNT_MISMATCH:
            raise SourceError(video, f"unsynchronisable: video has {info.num_frames} frames but timesync gives "
                                     f"{len(t_ns)} for take {ref.sequence}")
        n = min(info.num_frames, len(t_ns))
        t_ns, present = t_ns[:n], present[:n]
        W, H = info.width, info.height  # upright video; Aria RGB is square so raw size is the same

        traj_path = take / "trajectory" / "closed_loop_trajectory.csv"
        poses = aria.read_closed_loop_trajectory(traj_path)
        camera, device, calib_files = self.calibration(ref, float(t_ns[0]), W, H)
        T_device_camera = camera.get_transform_device_camera().to_matrix()
        T_world_device = poses.interpolate(t_ns, POSE_MAX_GAP_NS)
        c2w = geo.upright_c2w(T_world_device @ T_device_camera)

        gaze_path = self._gaze_path(take)
        gaze_px = None
        if gaze_path is not None:
            gaze = aria.read_eye_gaze(gaze_path)
            yaw, pitch, depth = gaze.interpolate(t_ns, GAZE_MAX_GAP_NS)
            raw_px = aria.gaze_pixels(yaw, pitch, depth, device, camera)
            gaze_px = geo.upright_pixels(raw_px, H)

        upright = aria.upright_calibration(camera)
        K, dist = aria.fisheye624_intrinsics(upright)

        def read_frames(indices, _video=str(video)):
            return decode(_video, np.asarray(indices))

        files = [str(video), str(traj_path)] + calib_files + ([str(gaze_path)] if gaze_path else [])
        return RawSequence(ref=ref, num_frames=n, width=W, height=H, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, gaze_px=gaze_px, camera_model="fisheye624", distortion=dist,
                           frame_valid=present.copy(), source_files=files)

    def _gaze_path(self, take: Path) -> Path | None:
        names = ["general_eye_gaze.csv", "personalized_eye_gaze.csv"]
        if self.gaze_kind == "personalized":
            names.reverse()
        for n in names:
            if (take / "eye_gaze" / n).is_file():
                return take / "eye_gaze" / n
        return None


ADAPTER = EgoExo4DAdapter()
