"""Aria Synthetic Environments (ASE) adapter, evaluation only (depth -> RGB).

Layout (projectaria-tools ASE docs and ``projectaria_tools.projects.ase.readers``)::

    RAW/[train|test/]<scene_id>/rgb/vignette0000000.jpg     10 FPS, 704x704, raw Aria RGB orientation
    RAW/[train|test/]<scene_id>/depth/depth0000000.png      uint16 millimetres along each pixel's ray
    RAW/[train|test/]<scene_id>/trajectory.csv              closed-loop schema: T_world_device, x,y,z,w, us

The RGB calibration is the fixed simulated one of ``projectaria_tools.projects.ase.get_ase_rgb_calibration``
(Fisheye624, T_device_camera); images of another size get it rescaled. Image ``i`` is trajectory row
``i`` (readers.read_trajectory_file + the official tutorial index both ways); a sequence whose row and
image counts differ is refused. On the 30 FPS timeline each 10 FPS frame fills the slots nearest
to it; only slots that coincide with a source frame are flagged valid (the others repeat it).
Depth is converted from ray distance to z-depth with the fisheye ray directions.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from . import aria
from .base import Adapter, RawSequence, SequenceRef, SourceError, bad_sequence

RGB_RE = re.compile(r"^vignette(\d{7})\.jpg$")
DEPTH_RE = re.compile(r"^depth(\d{7})\.png$")
SOURCE_FPS = 10.0


class ASEAdapter(Adapter):
    name = "ase"
    version = "1"
    modalities = ("rgb", "depth", "cam")
    default_depth = "sensor"  # ground-truth (rendered) depth via read_depth
    layout = "<raw>/.../<scene>/{trajectory.csv, rgb/vignette*.jpg, depth/depth*.png}"

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        if not root.is_dir():
            raise SourceError(root, "ASE raw root is not a folder")
        refs = []
        for traj in sorted(root.rglob("trajectory.csv")):
            scene = traj.parent
            rel = scene.relative_to(root).as_posix()
            if not (scene / "rgb").is_dir():
                refs.append(bad_sequence(self.name, rel, scene / "rgb", "folder missing (no images)"))
                continue
            split = "test" if rel.startswith("test/") else "train"
            refs.append(SequenceRef(self.name, rel, str(scene), split=split))
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        scene = Path(ref.path)
        rgb = sorted((int(m.group(1)), p) for p in (scene / "rgb").iterdir() if (m := RGB_RE.match(p.name)))
        if not rgb:
            raise SourceError(scene / "rgb", "no vignette%07d.jpg image")
        idx = [i for i, _ in rgb]
        if idx != list(range(len(idx))):
            raise SourceError(scene / "rgb", f"image numbers are not 0..{len(idx) - 1} without holes")
        poses = aria.read_closed_loop_trajectory(scene / "trajectory.csv")
        if len(poses) != len(rgb):
            raise SourceError(scene / "trajectory.csv", f"unsynchronisable: {len(poses)} poses for {len(rgb)} images")
        first = cv2.imread(str(rgb[0][1]), cv2.IMREAD_COLOR)
        if first is None:
            raise SourceError(rgb[0][1], "not a readable JPEG")
        H, W = first.shape[:2]
        calib = self._calibration(W, H)
        K, dist = aria.fisheye624_intrinsics(calib)
        q_ns, src, valid = aria.timeline(poses.t_ns, max_gap_s=0.6 / 30)
        c2w = poses.T[src] @ calib.get_transform_device_camera().to_matrix()
        rgb_paths = [p for _, p in rgb]
        depth_dir = scene / "depth"
        has_depth = depth_dir.is_dir() and any(depth_dir.iterdir())

        def read_frames(indices):
            out = []
            for i in np.asarray(indices, dtype=np.int64):
                p = rgb_paths[src[int(i)]]
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise SourceError(p, "not a readable JPEG")
                out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            return np.stack(out)

        def read_depth(indices):
            out = []
            for i in np.asarray(indices, dtype=np.int64):
                p = depth_dir / f"depth{src[int(i)]:07d}.png"
                d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                if d is None:
                    raise SourceError(p, "missing or unreadable depth PNG")
                if d.dtype != np.uint16 or d.shape != (H, W):
                    raise SourceError(p, f"expected uint16 {W}x{H} depth, got {d.dtype} {d.shape[::-1]}")
                out.append(aria.ray_distance_to_z(d.astype(np.float64) / 1000.0, calib))  # 0 stays 0 (invalid)
            return np.stack(out)

        return RawSequence(ref=ref, num_frames=len(q_ns), width=W, height=H, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, read_depth=read_depth if has_depth else None, camera_model="fisheye624",
                           distortion=dist, frame_valid=valid,
                           source_files=[str(scene / "rgb"), poses.source] + ([str(depth_dir)] if has_depth else []))

    @staticmethod
    def _calibration(width: int, height: int):
        from projectaria_tools.projects import ase

        calib = ase.get_ase_rgb_calibration()
        w0, h0 = (int(v) for v in calib.get_image_size())
        if (w0, h0) != (width, height):
            if abs(width / w0 - height / h0) > 1e-6:
                raise SourceError("ASE calibration",
                                  f"images of {width}x{height} do not match the {w0}x{h0} calibration")
            calib = calib.rescale(np.array([width, height]), width / w0)
        return calib


ADAPTER = ASEAdapter()
