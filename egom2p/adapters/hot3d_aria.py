"""HOT3D adapters (Aria here, Quest 3 in :mod:`egom2p.adapters.hot3d_quest`): two official layouts.

1. **HOT3D-Clips** (hot3d/clips/README.md): ``clip-<ID>.tar`` files in ``train_aria/``, ``test_aria/``,
   ``train_quest3/``, ``test_quest3/``; 150 frames; per frame ``<FRAME6>.image_<stream>.jpg``,
   ``<FRAME6>.cameras.json`` (per stream: ``calibration`` {projection_model_type, projection_params,
   image_width/height, T_device_from_camera} and ``T_world_from_camera`` = camera-to-world,
   quaternion **w,x,y,z**, metres) and ``<FRAME6>.info.json`` (``device``, ``image_timestamps_ns``).
   Aria clips have RGB ``214-1`` (Fisheye624 with 15 params f,cx,cy,...), Quest 3 clips the gray
   ``1201-1``/``1201-2`` (16 params fx,fy,cx,cy,...). No gaze. Tar members are read in memory with
   :func:`egom2p.safeio.iter_tar_members`, which refuses members escaping the archive.
2. **VRS sequences** (hot3d/data_loaders): ``P####_xxxxxxxx/`` with ``metadata.json`` (``headset``),
   ``recording.vrs``, ``headset_trajectory.csv`` (T_world_device, quaternion **w first**, TIME_CODE
   ns), Aria: ``mps/slam/closed_loop_trajectory.csv`` and ``mps/eye_gaze/*.csv`` (device time);
   Quest 3: ``camera_models.json`` (T_Device_Camera quaternion_wxyz, FISHEYE624 16 params).
   Aria images and the device calibration are read with projectaria-tools; the headset poses are
   moved to device time with the VRS time-code mapping (AriaDataProvider._timestamp_convert). Quest
   images are read with pyvrs (``vrs`` package), whose record timestamps are the time code.

Camera-to-world = T_world_device @ T_device_camera (OpenCV axes of the raw, not upright, image).
Splits of the sequence layout follow the paper's release (gen_aligned_training_data.py): test
participants P0004/5/6/8/16/20, val P0001/P0014, the rest train; clips follow their folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from .. import geometry as geo
from ..safeio import iter_tar_members
from . import aria
from .base import Adapter, RawSequence, SequenceRef, SourceError, bad_sequence, require_file

TEST_PARTICIPANTS = {"P0004", "P0005", "P0006", "P0008", "P0016", "P0020"}
VAL_PARTICIPANTS = {"P0001", "P0014"}
CLIP_RE = re.compile(r"^clip-(\d+)\.tar$")
FRAME_GAP_S = 0.6 / 30  # a 30 FPS slot with no frame this close is a frame drop
POSE_MAX_GAP_NS = 100e6  # headset trajectory at 30 Hz (mocap) / MPS at 1 kHz
GAZE_MAX_GAP_NS = 250e6
DEVICES = {"Aria": ("214-1", "camera-rgb", False), "Quest3": ("1201-1", "camera-slam-left", True)}


def _se3(d: dict, what) -> np.ndarray:
    try:
        q = d["quaternion_wxyz"]
        t = d["translation_xyz"]
        return geo.make_se3(geo.quat_to_matrix(np.asarray(q, dtype=np.float64), order="wxyz"), np.asarray(t, float))
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(what, f"bad transform {d!r:.120} ({e})") from e


def _participant_split(name: str) -> str:
    p = name.split("_")[0]
    return "test" if p in TEST_PARTICIPANTS else "val" if p in VAL_PARTICIPANTS else "train"


class Hot3DAdapter(Adapter):
    version = "1"
    default_depth = "rollingdepth"  # paper: RollingDepth pseudo-labels (needs a checkpoint folder)
    layout = ("HOT3D-Clips <raw>/{train,test}_<device>/clip-<ID>.tar, or VRS sequences "
              "<raw>/P####_*/{metadata.json, recording.vrs, headset_trajectory.csv}")

    def __init__(self, device: str = "Aria", stream: str | None = None):
        if device not in DEVICES:
            raise ValueError(f"device must be one of {sorted(DEVICES)}")
        self.device = device
        self.name = "hot3d_aria" if device == "Aria" else "hot3d_quest"
        self.stream, self.label, self.gray = DEVICES[device]
        if stream is not None:
            self.stream = stream
        self.modalities = ("rgb", "gaze", "cam") if device == "Aria" else ("rgb", "cam")

    # -- discovery ---------------------------------------------------------------------------------

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        if not root.is_dir():
            raise SourceError(root, "HOT3D raw root is not a folder")
        suffix = "aria" if self.device == "Aria" else "quest3"
        refs = []
        for tar in sorted(root.rglob("clip-*.tar")):
            m = CLIP_RE.match(tar.name)
            folder = tar.parent.name.lower()
            if not m or not folder.endswith(suffix):
                continue
            split = "test" if folder.startswith("test") else "train"
            refs.append(SequenceRef(self.name, f"{folder}/clip-{m.group(1)}", str(tar), split=split,
                                    meta={"layout": "clips"}))
        for meta_path in sorted(root.rglob("metadata.json")):
            seq = meta_path.parent
            if not (seq / "headset_trajectory.csv").exists():
                continue
            try:
                meta = json.loads(meta_path.read_text())
                headset = meta.get("headset")
            except (OSError, ValueError, AttributeError) as e:  # unreadable, not JSON, not an object
                refs.append(bad_sequence(self.name, seq.name, meta_path, f"unreadable metadata ({e}): headset unknown"))
                continue
            if headset != self.device:
                continue
            refs.append(SequenceRef(self.name, seq.name, str(seq), split=_participant_split(seq.name),
                                    meta={"layout": "vrs"}))
        return sorted(refs, key=lambda r: r.sequence)

    def load(self, ref: SequenceRef) -> RawSequence:
        if ref.meta.get("layout") == "clips":
            return self._load_clip(ref)
        return self._load_vrs_sequence(ref)

    # -- HOT3D-Clips -------------------------------------------------------------------------------

    def _load_clip(self, ref: SequenceRef) -> RawSequence:
        path = Path(ref.path)
        images: dict[int, bytes] = {}
        cameras: dict[int, dict] = {}
        infos: dict[int, dict] = {}
        suffix_img = f".image_{self.stream}.jpg"
        for name, data in iter_tar_members(path):  # refuses path traversal before yielding anything
            base = name.rsplit("/", 1)[-1]
            key, _, rest = base.partition(".")
            if not key.isdigit():
                continue
            k = int(key)
            if base.endswith(suffix_img):
                images[k] = data
            elif rest == "cameras.json":
                cameras[k] = json.loads(data)
            elif rest == "info.json":
                infos[k] = json.loads(data)
        frames = sorted(set(images) & set(cameras) & set(infos))
        if len(frames) < 2:
            raise SourceError(path, f"clip has {len(frames)} complete frames of stream {self.stream}")
        dev = infos[frames[0]].get("device")
        if dev is not None and dev != self.device:
            raise SourceError(path, f"clip device is {dev!r}, this adapter reads {self.device}")
        try:
            t_ns = np.array([int(infos[k]["image_timestamps_ns"][self.stream]) for k in frames], np.int64)
            cams = [cameras[k][self.stream] for k in frames]
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(path, f"info/cameras json without stream {self.stream} ({e})") from e
        if np.any(np.diff(t_ns) <= 0):
            raise SourceError(path, "image timestamps are not increasing")
        q_ns, src, valid = aria.timeline(t_ns, max_gap_s=FRAME_GAP_S)
        c2w = np.stack([_se3(c["T_world_from_camera"], path) for c in cams])[src]
        calib = cams[0]["calibration"]
        W, H = int(calib["image_width"]), int(calib["image_height"])
        K, dist = self._intrinsics(calib["projection_params"], path)
        blobs = [images[frames[i]] for i in src]
        gray = self.gray

        def read_frames(indices):
            out = []
            for i in np.asarray(indices, dtype=np.int64):
                img = cv2.imdecode(np.frombuffer(blobs[int(i)], np.uint8),
                                   cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
                if img is None:
                    raise SourceError(path, f"frame {frames[src[int(i)]]:06d}{suffix_img} is not a readable JPEG")
                out.append(img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            return np.stack(out)

        return RawSequence(ref=ref, num_frames=len(q_ns), width=W, height=H, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, gaze_px=None, camera_model="fisheye624", distortion=dist, frame_valid=valid,
                           is_gray=gray, source_files=[str(path)])

    @staticmethod
    def _intrinsics(params, what) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(params, dtype=np.float64)
        if p.size == 15:  # Aria: f, cx, cy, 12 coefficients
            return np.array([p[0], p[0], p[1], p[2]]), p[3:].copy()
        if p.size == 16:  # Quest 3: fx, fy, cx, cy, 12 coefficients
            return p[:4].copy(), p[4:].copy()
        raise SourceError(what, f"Fisheye624 projection_params must have 15 or 16 values, got {p.size}")

    # -- VRS sequences -----------------------------------------------------------------------------

    def _load_vrs_sequence(self, ref: SequenceRef) -> RawSequence:
        seq = Path(ref.path)
        if self.device == "Aria":
            return self._load_aria_vrs(ref, seq)
        return self._load_quest_vrs(ref, seq)

    def _load_aria_vrs(self, ref: SequenceRef, seq: Path) -> RawSequence:
        stream = aria.VrsImageStream(seq / "recording.vrs", self.stream)
        device = stream.device_calibration()
        camera = device.get_camera_calib(self.label) if device is not None else None
        if camera is None:
            raise SourceError(seq / "recording.vrs", f"no calibration of {self.label}")
        q_ns, src, valid = aria.timeline(stream.t_ns, max_gap_s=FRAME_GAP_S)
        frame_dev_ns = stream.t_ns[src]
        files = [stream.path]
        try:  # mocap headset poses are in TIME_CODE: move them to device time
            headset = aria.read_headset_trajectory(seq / "headset_trajectory.csv")
            dev_t = stream.timecode_to_device_ns(headset.t_ns)
            poses = aria.PoseStream(dev_t, headset.T, headset.source)
            files.append(headset.source)
        except SourceError as err:  # without a time-code mapping fall back to the MPS trajectory (device time)
            mps_traj = seq / "mps" / "slam" / "closed_loop_trajectory.csv"
            if not mps_traj.is_file():
                raise SourceError(seq, f"unsynchronisable: {err.problem} and no {mps_traj.name}") from err
            poses = aria.read_closed_loop_trajectory(mps_traj)
            files.append(str(mps_traj))
        T_dc = camera.get_transform_device_camera().to_matrix()
        c2w = poses.interpolate(frame_dev_ns, POSE_MAX_GAP_NS) @ T_dc
        gaze_px = None
        for name in ("general_eye_gaze.csv", "personalized_eye_gaze.csv"):
            gp = seq / "mps" / "eye_gaze" / name
            if gp.is_file():
                g = aria.read_eye_gaze(gp)
                yaw, pitch, depth = g.interpolate(frame_dev_ns, GAZE_MAX_GAP_NS)
                gaze_px = aria.gaze_pixels(yaw, pitch, depth, device, camera, self.label)
                files.append(str(gp))
                break
        K, dist = aria.fisheye624_intrinsics(camera)
        W, H = (int(v) for v in camera.get_image_size())

        def read_frames(indices):
            return stream.read(src[np.asarray(indices, dtype=np.int64)])

        return RawSequence(ref=ref, num_frames=len(q_ns), width=W, height=H, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, gaze_px=gaze_px, camera_model="fisheye624", distortion=dist, frame_valid=valid,
                           source_files=files)

    def _load_quest_vrs(self, ref: SequenceRef, seq: Path) -> RawSequence:
        models_path = require_file(seq / "camera_models.json", "Quest camera_models.json", nonempty=True)
        try:
            models = json.loads(models_path.read_text())
        except json.JSONDecodeError as e:
            raise SourceError(models_path, f"not valid JSON ({e})") from e
        model = next((m for m in models if m.get("stream_id") == self.stream), None)
        if model is None:
            raise SourceError(models_path, f"no camera model for stream {self.stream}")
        T_dc = _se3(model["T_Device_Camera"], models_path)
        K, dist = self._intrinsics(model["projectionParams"], models_path)
        W, H = int(model["imageWidth"]), int(model["imageHeight"])
        reader = QuestVrsStream(seq / "recording.vrs", self.stream)
        headset = aria.read_headset_trajectory(seq / "headset_trajectory.csv")
        q_ns, src, valid = aria.timeline(reader.t_ns, max_gap_s=FRAME_GAP_S)
        c2w = headset.interpolate(reader.t_ns[src], POSE_MAX_GAP_NS) @ T_dc

        def read_frames(indices):
            return reader.read(src[np.asarray(indices, dtype=np.int64)])

        return RawSequence(ref=ref, num_frames=len(q_ns), width=W, height=H, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, camera_model="fisheye624", distortion=dist, frame_valid=valid, is_gray=True,
                           source_files=[reader.path, headset.source, str(models_path)])


class QuestVrsStream:
    """A gray image stream of a VRS file read with pyvrs (the ``vrs`` package), as hot3d's QuestDataProvider.

    Record timestamps (seconds) are HOT3D's time code; images are converted to 8-bit gray.
    """

    def __init__(self, vrs_path, stream: str):
        try:
            from pyvrs import ImageConversion, SyncVRSReader
        except ImportError as e:  # pragma: no cover - the vrs package is a dependency
            raise SourceError(vrs_path, "reading Quest VRS needs the 'vrs' package (pyvrs)") from e
        self.path = str(require_file(vrs_path, "VRS recording", nonempty=True))
        reader = SyncVRSReader(self.path)
        if stream not in reader.stream_ids:
            raise SourceError(self.path, f"VRS has no stream {stream} (streams: {sorted(reader.stream_ids)})")
        reader.set_image_conversion(ImageConversion.NORMALIZE_GREY8)
        self.reader = reader.filtered_by_fields(stream_ids={stream}, record_types={"data"})
        self.t_ns = np.round(np.asarray(self.reader.get_timestamp_list(), np.float64) * 1e9).astype(np.int64)
        if len(self.t_ns) == 0:
            raise SourceError(self.path, f"VRS stream {stream} has no image record")

    def read(self, indices) -> np.ndarray:
        out = []
        for i in np.asarray(indices, dtype=np.int64):
            rec = self.reader[int(i)]
            if not rec.image_blocks:
                raise SourceError(self.path, f"record {i} has no image")
            img = np.asarray(rec.image_blocks[0])
            out.append(img if img.ndim == 2 else img[..., 0])
        return np.stack(out).astype(np.uint8)


ADAPTER = Hot3DAdapter("Aria")
