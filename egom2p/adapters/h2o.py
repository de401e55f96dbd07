"""H2O adapter (egocentric camera ``cam4`` of the H2O two-hands-and-objects dataset).

Layout read (``<raw>`` = the H2O root)::

    subject<N>/<scene>/<idx>/cam4/rgb/%06d.png          1280x720 colour
    subject<N>/<scene>/<idx>/cam4/rgb256/%06d.png       455x256 copy (used only when rgb/ is absent)
    subject<N>/<scene>/<idx>/cam4/depth/%06d.png        uint16 millimetres, registered to rgb (1280x720)
    subject<N>/<scene>/<idx>/cam4/cam_pose/%06d.txt     16 numbers: 4x4 camera-to-world, metres, OpenCV
    subject<N>/<scene>/<idx>/cam4/cam_intrinsics.txt    fx fy cx cy width height (for 1280x720)

Conventions: frame numbers are the 30 FPS timeline (a missing rgb png is filled by the nearest frame
and flagged; a missing cam_pose gives a NaN pose, so windows over it are quarantined); depth in mm
-> metres, 0 = invalid. Official splits as used by the EgoM2P release: subject4 = test, subject3
scenes k2/o1/o2 = val, the rest of subjects 1-3 = train.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ..video import nearest_indices
from ._sources import check_poses, read_depth_png_mm, read_matrix_txt, read_rgb_image, require_file
from .base import Adapter, RawSequence, SequenceRef, SourceError

EGO_CAM = "cam4"
VAL_SCENES = {("subject3", "k2"), ("subject3", "o1"), ("subject3", "o2")}
TEST_SUBJECTS = {"subject4"}


def h2o_split(subject: str, scene: str) -> str:
    if subject in TEST_SUBJECTS:
        return "test"
    if (subject, scene) in VAL_SCENES:
        return "val"
    return "train"


def _numbered(folder: Path, ext: str) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(p.stem): p for p in folder.iterdir() if re.fullmatch(r"\d+" + re.escape(ext), p.name)}


def read_intrinsics(path: Path) -> tuple[np.ndarray, int, int]:
    vals = read_matrix_txt(path, (6,), "cam_intrinsics (fx fy cx cy width height)")
    return vals[:4], int(vals[4]), int(vals[5])


class H2OAdapter(Adapter):
    name = "h2o"
    version = "1"
    modalities = ("rgb", "depth", "cam")
    default_depth = "sensor"  # H2O has registered sensor depth; the paper uses it directly
    layout = "<raw>/subject*/<scene>/<idx>/cam4/{rgb/, depth/, cam_pose/, cam_intrinsics.txt}"

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        if not root.is_dir():
            raise SourceError(root, "H2O root folder not found")
        refs = []
        for cam in sorted(root.glob(f"subject*/*/*/{EGO_CAM}")):
            idx_dir = cam.parent
            scene_dir = idx_dir.parent
            subject = scene_dir.parent.name
            refs.append(SequenceRef(dataset=self.name, sequence=f"{subject}/{scene_dir.name}/{idx_dir.name}",
                                    path=str(cam), split=h2o_split(subject, scene_dir.name)))
        if not refs:
            raise SourceError(root, f"no subject*/<scene>/<idx>/{EGO_CAM} folder found (is this the H2O root?)")
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        cam = Path(ref.path)
        intr_f = require_file(cam / "cam_intrinsics.txt", "intrinsics")
        K, kw, kh = read_intrinsics(intr_f)
        rgb = _numbered(cam / "rgb", ".png")
        rgb_dir = cam / "rgb"
        if not rgb:
            rgb, rgb_dir = _numbered(cam / "rgb256", ".png"), cam / "rgb256"
        if not rgb:
            raise SourceError(cam / "rgb", "no rgb/%06d.png (nor rgb256/) frames")
        poses = _numbered(cam / "cam_pose", ".txt")
        depth = _numbered(cam / "depth", ".png")
        have = np.array(sorted(rgb), dtype=np.int64)
        frames_idx = np.arange(have[0], have[-1] + 1)
        nearest = have[nearest_indices(have, frames_idx)]  # a missing frame takes the nearest one that exists
        n = len(frames_idx)

        c2w = np.full((n, 4, 4), np.nan)
        for i, k in enumerate(frames_idx):
            if int(k) in poses:
                c2w[i] = read_matrix_txt(poses[int(k)], (4, 4), "cam_pose")
        c2w = check_poses(cam / "cam_pose", c2w)
        frame_valid = np.isin(frames_idx, have) & np.isfinite(c2w).all(axis=(1, 2))

        first = read_rgb_image(rgb[int(nearest[0])])
        h, w = first.shape[:2]
        if (w, h) != (kw, kh):  # rgb256 (or another size): rescale the intrinsics
            sx, sy = w / kw, h / kh
            K = np.array([K[0] * sx, K[1] * sy, (K[2] + 0.5) * sx - 0.5, (K[3] + 0.5) * sy - 0.5])

        def read_frames(idx):
            out = np.stack([read_rgb_image(rgb[int(nearest[i])]) for i in np.asarray(idx)])
            if out.shape[1:3] != (h, w):
                raise SourceError(rgb_dir, f"frames change size ({out.shape[1:3]} vs {(h, w)})")
            return out

        def read_depth(idx):
            out = []
            for i in np.asarray(idx):
                k = int(frames_idx[i])
                if k not in depth:  # no depth for this frame: all invalid
                    out.append(np.zeros((h, w), np.float32))
                    continue
                d = read_depth_png_mm(depth[k])
                if d.shape != (h, w):
                    d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
                out.append(d)
            return np.stack(out)

        files = [str(intr_f), str(rgb_dir), str(cam / "cam_pose")] + ([str(cam / "depth")] if depth else [])
        return RawSequence(ref=ref, num_frames=n, width=w, height=h, intrinsics=K, read_frames=read_frames,
                           c2w=c2w, gaze_px=None, read_depth=read_depth if depth else None, camera_model="pinhole",
                           frame_valid=frame_valid, source_files=files)


ADAPTER = H2OAdapter()
