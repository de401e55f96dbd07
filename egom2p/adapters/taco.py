"""TACO adapter (egocentric camera of the TACO tool-action-object dataset).

Layout read (``<raw>`` = the TACO root; triplet folders are named like ``(stir, spoon, bowl)``,
with spaces and parentheses, sequences like ``20231105_019``)::

    Egocentric_RGB_Videos/<triplet>/<seq>/color.mp4                       1920x1080, 30 fps
    Egocentric_Depth_Videos/<triplet>/<seq>/egocentric_depth.avi           16-bit depth, millimetres
    Egocentric_Camera_Parameters/<triplet>/<seq>/egocentric_intrinsic.txt  3x3 K
    Egocentric_Camera_Parameters/<triplet>/<seq>/egocentric_frame_extrinsic.npy
                                                                           [N,4,4] world-to-camera, metres

Conventions: one extrinsic per video frame (a sequence whose pose and frame counts differ is
refused with a SourceError naming both counts, as the official processing skips such sequences);
poses converted with :func:`egom2p.geometry.w2c_to_c2w`; the depth video is decoded (FFmpeg via PyAV) to
uint16 (as the official instructions do: ``ffmpeg ... -pix_fmt gray16le``), depth scale 1000
(millimetres -> metres), registered to the colour image; 0 = invalid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import geometry as geo
from .. import video as vid
from ..safeio import load_npy
from ._sources import check_poses, decode_gray16, stream_info, read_matrix_txt, require_file
from .base import Adapter, RawSequence, SequenceRef, SourceError

RGB_DIR = "Egocentric_RGB_Videos"
DEPTH_DIR = "Egocentric_Depth_Videos"
CAM_DIR = "Egocentric_Camera_Parameters"
DEPTH_SCALE = 1000.0  # uint16 units per metre
#: official split list of TACO-Instructions (data_lists/): "<seq>,train" or "<seq>,test_<k>"
SPLIT_FILE = "v1_overall_data_train_test_split.txt"


def read_split_file(root: Path) -> dict[str, str]:
    """{sequence: train | test} from the official split list, if it is under the root (else {})."""
    for cand in (root / "data_lists" / SPLIT_FILE, root / SPLIT_FILE):
        if cand.is_file():
            out = {}
            for n, line in enumerate(cand.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = [p.strip() for p in line.split(",")]
                if len(parts) != 2 or not (parts[1] == "train" or parts[1].startswith("test")):
                    raise SourceError(cand, f"line {n}: expected '<sequence>,train|test_<k>', got {line!r}")
                out[parts[0]] = "train" if parts[1] == "train" else "test"
            return out
    return {}


def depth_video_reader(avi: Path, num_frames: int, width: int, height: int, scale: float = DEPTH_SCALE):
    """A ``read_depth`` for a 16-bit depth video: indices -> float32 metres [k, H, W] (0 invalid).

    The video is probed on first use; its frame count and size must match the colour stream.
    """
    state = {}

    def read_depth(idx):
        if "info" not in state:
            info = stream_info(require_file(avi, "depth video"))
            if info["num_frames"] != num_frames:
                raise SourceError(avi, f"depth video has {info['num_frames']} frames, colour video {num_frames}")
            if (info["width"], info["height"]) != (width, height):
                raise SourceError(avi, f"depth is {info['width']}x{info['height']}, colour {width}x{height} "
                                       "(not registered)")
            if "16" not in info["pix_fmt"]:
                raise SourceError(avi, f"depth video pixel format {info['pix_fmt']!r} is not 16-bit")
            state["info"] = info
        raw = decode_gray16(avi, np.asarray(idx), width, height)
        return raw.astype(np.float32) / scale

    return read_depth


class TacoAdapter(Adapter):
    name = "taco"
    version = "1"
    modalities = ("rgb", "depth", "cam")  # depth: the sensor video (read_depth), usable with --depth sensor
    default_depth = "rollingdepth"  # the paper pseudo-labels TACO with RollingDepth

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        root = Path(raw_root)
        if not (root / RGB_DIR).is_dir():
            raise SourceError(root / RGB_DIR, "missing folder (is this the TACO root?)")
        splits = read_split_file(root)
        refs = []
        for mp4 in sorted((root / RGB_DIR).glob("*/*/color.mp4")):
            triplet, seq = mp4.parent.parent.name, mp4.parent.name
            split = splits.get(seq, "unlisted") if splits else "train"
            refs.append(SequenceRef(dataset=self.name, sequence=f"{triplet}/{seq}", path=str(mp4.parent),
                                    split=split, meta={"root": str(root), "triplet": triplet, "seq": seq}))
        if not refs:
            raise SourceError(root / RGB_DIR, "no <triplet>/<sequence>/color.mp4 found")
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        root, triplet, seq = Path(ref.meta["root"]), ref.meta["triplet"], ref.meta["seq"]
        mp4 = require_file(root / RGB_DIR / triplet / seq / "color.mp4", "colour video")
        cam_dir = root / CAM_DIR / triplet / seq
        intr_f, extr_f = cam_dir / "egocentric_intrinsic.txt", cam_dir / "egocentric_frame_extrinsic.npy"
        K = read_matrix_txt(intr_f, (3, 3), "intrinsic matrix")
        w2c = load_npy(require_file(extr_f, "extrinsics"))
        if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
            raise SourceError(extr_f, f"expected [N,4,4] world-to-camera matrices, got shape {w2c.shape}")
        try:
            info = vid.probe(mp4)
        except vid.VideoError as e:
            raise SourceError(mp4, str(e)) from e
        if len(w2c) != info.num_frames:
            raise SourceError(extr_f, f"{len(w2c)} camera poses for {info.num_frames} video frames in {mp4.name} "
                                      "(pose and frame counts differ: sequence skipped)")
        if abs(info.fps - 30.0) > 0.5:
            raise SourceError(mp4, f"frame rate {info.fps:.3f}, expected 30 fps")
        c2w = check_poses(extr_f, geo.w2c_to_c2w(w2c.astype(np.float64)))
        avi = root / DEPTH_DIR / triplet / seq / "egocentric_depth.avi"
        read_depth = depth_video_reader(avi, info.num_frames, info.width, info.height) if avi.is_file() else None

        def read_frames(idx):
            return vid.decode(mp4, np.asarray(idx))

        files = [str(mp4), str(intr_f), str(extr_f)] + ([str(avi)] if avi.is_file() else [])
        return RawSequence(ref=ref, num_frames=info.num_frames, width=info.width, height=info.height,
                           intrinsics=np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]), read_frames=read_frames,
                           c2w=c2w, gaze_px=None, read_depth=read_depth, camera_model="pinhole",
                           source_files=files)


ADAPTER = TacoAdapter()
