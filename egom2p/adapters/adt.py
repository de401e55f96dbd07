"""Aria Digital Twin (ADT) adapter, evaluation only (camera tracking and gaze; depth available).

Layout per (sub)sequence (projectaria-tools ADT docs; file names as in projectaria-tools' ADT data
paths provider)::

    RAW/<sequence>[/<subsequence>]/video.vrs            Aria recording: RGB 214-1 (30 FPS) + device calibration
    RAW/<sequence>[/<subsequence>]/aria_trajectory.csv  ground-truth T_world_device, closed-loop schema, us
    RAW/<sequence>[/<subsequence>]/eyegaze.csv          ground-truth gaze, MPS eye gaze schema (CPF)
    RAW/<sequence>[/<subsequence>]/depth_images.vrs     ground-truth depth: uint16 mm along camera Z
    RAW/<sequence>[/<subsequence>]/gt-metadata.json | metadata.json

All ground truth is in the device capture time of the Aria recording (ADT docs "How does time
synchronization work in ADT"), so frames, poses and gaze meet on device time. Camera-to-world =
T_world_device @ T_device_rgb of the VRS device calibration (raw image axes, OpenCV). The depth VRS
is read with pyvrs (the ``vrs`` package): the image stream whose size matches the RGB image, nearest
record in time (within half a frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import aria
from .base import Adapter, RawSequence, SequenceRef, SourceError, bad_sequence

POSE_MAX_GAP_NS = 100e6
GAZE_MAX_GAP_NS = 250e6


class ADTAdapter(Adapter):
    name = "adt"
    version = "1"
    modalities = ("rgb", "depth", "gaze", "cam")
    default_depth = "sensor"  # ground-truth depth via read_depth
    layout = "<raw>/.../<sequence>/{video.vrs, aria_trajectory.csv, depth_images.vrs, eyegaze.csv}"

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        if not root.is_dir():
            raise SourceError(root, "ADT raw root is not a folder")
        refs = []
        for vrs in sorted(root.rglob("video.vrs")):
            seq = vrs.parent
            rel = seq.relative_to(root).as_posix()
            if not (seq / "aria_trajectory.csv").exists():
                refs.append(bad_sequence(self.name, rel, seq / "aria_trajectory.csv", "file missing (no camera poses)"))
                continue
            refs.append(SequenceRef(self.name, rel, str(seq), split="test"))
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        seq = Path(ref.path)
        stream = aria.VrsImageStream(seq / "video.vrs", aria.RGB_STREAM)
        device = stream.device_calibration()
        camera = device.get_camera_calib(aria.RGB_LABEL) if device is not None else None
        if camera is None:
            raise SourceError(stream.path, "no camera-rgb calibration in the VRS")
        q_ns, src, valid = aria.timeline(stream.t_ns)
        t_dev = stream.t_ns[src]
        poses = aria.read_closed_loop_trajectory(seq / "aria_trajectory.csv")
        T_wd = poses.interpolate(t_dev, POSE_MAX_GAP_NS)
        if np.isnan(T_wd).all():
            raise SourceError(poses.source, "unsynchronisable: no pose within the recording's device time")
        c2w = T_wd @ camera.get_transform_device_camera().to_matrix()
        files = [stream.path, poses.source]
        gaze_px = None
        gaze_path = seq / "eyegaze.csv"
        if gaze_path.is_file():
            g = aria.read_eye_gaze(gaze_path)
            yaw, pitch, depth = g.interpolate(t_dev, GAZE_MAX_GAP_NS)
            gaze_px = aria.gaze_pixels(yaw, pitch, depth, device, camera)
            files.append(str(gaze_path))
        K, dist = aria.fisheye624_intrinsics(camera)
        W, H = (int(v) for v in camera.get_image_size())
        read_depth = None
        depth_path = seq / "depth_images.vrs"
        if depth_path.is_file():
            depth = DepthVrs(depth_path, W, H)
            files.append(str(depth_path))

            def read_depth(indices, _d=depth):
                return _d.read(t_dev[np.asarray(indices, dtype=np.int64)])

        def read_frames(indices):
            return stream.read(src[np.asarray(indices, dtype=np.int64)])

        return RawSequence(ref=ref, num_frames=len(q_ns), width=W, height=H, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, gaze_px=gaze_px, read_depth=read_depth, camera_model="fisheye624",
                           distortion=dist, frame_valid=valid, source_files=files)


class DepthVrs:
    """ADT ``depth_images.vrs``: uint16 millimetre z-depth images, read with pyvrs."""

    def __init__(self, path, width: int, height: int):
        try:
            from pyvrs import ImageConversion, SyncVRSReader
        except ImportError as e:  # pragma: no cover - the vrs package is a dependency
            raise SourceError(path, "reading ADT depth needs the 'vrs' package (pyvrs)") from e
        self.path = str(path)
        reader = SyncVRSReader(self.path)
        reader.set_image_conversion(ImageConversion.OFF)
        stream = None
        for sid in sorted(reader.stream_ids):
            if not reader.might_contain_images(sid):
                continue
            recs = reader.filtered_by_fields(stream_ids={sid}, record_types={"data"})
            if len(recs) and np.asarray(recs[0].image_blocks[0]).shape[:2] == (height, width):
                stream = sid
                break
        if stream is None:
            raise SourceError(self.path, f"no {width}x{height} depth image stream")
        self.reader = reader.filtered_by_fields(stream_ids={stream}, record_types={"data"})
        self.t_ns = np.round(np.asarray(self.reader.get_timestamp_list(), np.float64) * 1e9).astype(np.int64)
        self.half_frame_ns = 0.5e9 / 30

    def read(self, t_dev_ns) -> np.ndarray:
        out = []
        for t in np.asarray(t_dev_ns, dtype=np.int64):
            i = int(np.argmin(np.abs(self.t_ns - t)))
            if abs(self.t_ns[i] - t) > self.half_frame_ns:
                out.append(None)
                continue
            img = np.asarray(self.reader[i].image_blocks[0])
            out.append((img.astype(np.float32) / 1000.0).reshape(img.shape[:2]))
        shape = next((o.shape for o in out if o is not None), None)
        if shape is None:
            raise SourceError(self.path, "no depth image near the requested frames")
        return np.stack([o if o is not None else np.zeros(shape, np.float32) for o in out])


ADAPTER = ADTAdapter()
