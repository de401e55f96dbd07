"""HOI4D adapter (evaluation only: egocentric RGB-D video depth, with camera poses).

Layout read (``<raw>`` holds the unzipped release pieces side by side)::

    HOI4D_release/ZY2021080000*/H*/C*/N*/S*/s*/T*/align_rgb/image.mp4          1920x1080, 15 fps
    HOI4D_release/.../align_depth/depth_video.avi                              16-bit depth (mm), 15 fps
    HOI4D_annotations/ZY.../H*/.../T*/3Dseg/output.log                         camera trajectory
        (or <sequence>/3Dseg/output.log inside the release tree)
    camera_params/ZY2021080000*/intrin.npy                                     3x3 K of that camera rig

Conventions: ``output.log`` is an Open3D/Redwood trajectory log: per frame one line ``i i n`` and a
4x4 matrix that is the camera pose (camera-to-world); Open3D's ``read_pinhole_camera_trajectory``
returns its inverse as the world-to-camera ``extrinsic``. The adapter parses the file itself (Open3D
silently yields NaN on some number formats) and the tests check it agrees with Open3D. The 15 fps
streams are put on the 30 FPS timeline by nearest timestamp: every other frame repeats its
neighbour and is flagged in ``frame_valid``. Depth: uint16 millimetres (UNCONFIRMED, see card) ->
metres, 0 = invalid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import video as vid
from ..safeio import load_npy
from ._sources import check_poses, stream_info, require_file, timeline_from_rate
from .base import Adapter, RawSequence, SequenceRef, SourceError
from .taco import DEPTH_SCALE, decode_gray16

RELEASE = "HOI4D_release"
ANNOTATIONS = "HOI4D_annotations"


def read_trajectory_log(path: Path) -> np.ndarray:
    """Camera-to-world matrices [N, 4, 4] of an Open3D/Redwood ``.log`` trajectory."""
    path = require_file(path, "trajectory log")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) % 5:
        raise SourceError(path, f"{len(lines)} non-empty lines: a .log trajectory has 5 lines per frame")
    mats = []
    for b in range(0, len(lines), 5):
        if len(lines[b]) != 3:
            raise SourceError(path, f"line {b + 1}: expected a 3-number frame header, got {' '.join(lines[b])!r}")
        try:
            m = np.array([[float(v) for v in row] for row in lines[b + 1: b + 5]], dtype=np.float64)
        except ValueError as e:
            raise SourceError(path, f"frame {b // 5}: non-numeric matrix ({e})") from e
        if m.shape != (4, 4):
            raise SourceError(path, f"frame {b // 5}: matrix is not 4x4")
        mats.append(m)
    return np.stack(mats)


class HOI4DAdapter(Adapter):
    name = "hoi4d"
    version = "1"
    modalities = ("rgb", "depth", "cam")
    default_depth = "sensor"  # its sensor depth is the ground truth of the video-depth evaluation

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        base = root / RELEASE if (root / RELEASE).is_dir() else root
        if not base.is_dir():
            raise SourceError(root, "HOI4D root folder not found")
        refs = []
        for mp4 in sorted(base.glob("**/align_rgb/image.mp4")):
            seq_dir = mp4.parent.parent
            rel = seq_dir.relative_to(base).as_posix()
            refs.append(SequenceRef(dataset=self.name, sequence=rel, path=str(seq_dir), split="test",
                                    meta={"root": str(root), "base": str(base)}))
        if not refs:
            raise SourceError(base, "no <sequence>/align_rgb/image.mp4 found (is this the HOI4D root?)")
        return refs

    def _find(self, ref: SequenceRef) -> tuple[Path, Path]:
        root, seq_dir = Path(ref.meta["root"]), Path(ref.path)
        log_cands = [seq_dir / "3Dseg" / "output.log", root / ANNOTATIONS / ref.sequence / "3Dseg" / "output.log"]
        log = next((p for p in log_cands if p.is_file()), None)
        if log is None:
            raise SourceError(log_cands[-1], "missing 3Dseg/output.log (looked beside the video and in "
                                             f"{ANNOTATIONS}/)")
        rig = ref.sequence.split("/")[0]
        k_cands = [root / "camera_params" / rig / "intrin.npy", root / "camera_params" / "camera_params" / rig /
                   "intrin.npy", root.parent / "camera_params" / rig / "intrin.npy"]
        intr = next((p for p in k_cands if p.is_file()), None)
        if intr is None:
            raise SourceError(k_cands[0], f"missing intrinsics of camera rig {rig}")
        return log, intr

    def load(self, ref: SequenceRef) -> RawSequence:
        seq_dir = Path(ref.path)
        mp4 = require_file(seq_dir / "align_rgb" / "image.mp4", "colour video")
        avi = seq_dir / "align_depth" / "depth_video.avi"
        log, intr_f = self._find(ref)
        K = load_npy(intr_f).astype(np.float64)
        if K.shape != (3, 3):
            raise SourceError(intr_f, f"expected a 3x3 intrinsic matrix, got shape {K.shape}")
        try:
            info = vid.probe(mp4)
        except vid.VideoError as e:
            raise SourceError(mp4, str(e)) from e
        c2w_src = check_poses(log, read_trajectory_log(log))
        if len(c2w_src) != info.num_frames:
            raise SourceError(log, f"{len(c2w_src)} poses for {info.num_frames} frames of {mp4.name} "
                                   "(unsynchronisable)")
        src_idx, frame_valid = timeline_from_rate(info.num_frames, info.fps)
        read_depth = None
        if avi.is_file():
            dinfo = stream_info(avi)
            if dinfo["num_frames"] != info.num_frames or (dinfo["width"], dinfo["height"]) != (info.width, info.height):
                raise SourceError(avi, f"depth video has {dinfo['num_frames']} frames of {dinfo['width']}x"
                                       f"{dinfo['height']}, colour {info.num_frames} of {info.width}x{info.height}")

            def read_depth(idx):
                raw = decode_gray16(avi, src_idx[np.asarray(idx)], info.width, info.height)
                return raw.astype(np.float32) / DEPTH_SCALE

        def read_frames(idx):
            return vid.decode(mp4, src_idx[np.asarray(idx)])

        files = [str(mp4), str(log), str(intr_f)] + ([str(avi)] if avi.is_file() else [])
        return RawSequence(ref=ref, num_frames=len(src_idx), width=info.width, height=info.height,
                           intrinsics=np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]), read_frames=read_frames,
                           c2w=c2w_src[src_idx], gaze_px=None, read_depth=read_depth, camera_model="pinhole",
                           frame_valid=frame_valid, source_files=files)


ADAPTER = HOI4DAdapter()
