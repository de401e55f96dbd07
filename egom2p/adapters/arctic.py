"""ARCTIC adapter (egocentric view 0 of the ARCTIC bimanual dataset).

Layout read (``<raw>`` is ARCTIC's ``arctic_data/data`` folder, or a folder containing it)::

    images/<sid>/<seq>/0/<%05d>.jpg        egocentric view (view 0), 2800x2000, distorted
    raw_seqs/<sid>/<seq>.egocam.dist.npy   np.save'd dict (a pickle): R_k_cam_np [T,3,3],
                                           T_k_cam_np [T,3,1] (world-to-camera, metres),
                                           intrinsics [3,3], dist8 [8]
    meta/misc.json                         {sid: {"ioi_offset": int, ...}}

Conventions: image ``i`` shows ground-truth frame ``i - ioi_offset`` (ARCTIC's official dataloader
``vidx = int(image_idx) - ioi_offset[sid]``); the timeline is the ground-truth frame index at
30 FPS (UNCONFIRMED rate; the card says how this is tolerated). Poses are converted with
:func:`egom2p.geometry.w2c_to_c2w`. Images are distorted with OpenCV's rational model (k1, k2, p1,
p2, k3, k4, k5, k6): camera_model ``opencv_rational`` carries dist8. ``egocam.dist.npy`` is a pickle
and is read with the restricted loader of :mod:`egom2p.safeio` (never ``allow_pickle=True``).
Splits follow the ARCTIC protocol used by the EgoM2P release: s05 = val, s03 = test (hidden GT).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import geometry as geo
from ..safeio import load_npy_object
from ..video import nearest_indices
from ._sources import check_poses, read_json, read_rgb_image
from .base import Adapter, RawSequence, SequenceRef, SourceError

EGO_VIEW = "0"
SPLITS = {"s05": "val", "s03": "test"}
REQUIRED_KEYS = ("R_k_cam_np", "T_k_cam_np", "intrinsics", "dist8")


def find_data_root(raw_root: Path) -> Path:
    """ARCTIC's ``data`` folder (with raw_seqs/ and images/) at or below ``raw_root``."""
    raw_root = Path(raw_root)
    for cand in (raw_root, raw_root / "data", raw_root / "arctic_data" / "data"):
        if (cand / "raw_seqs").is_dir():
            return cand
    raise SourceError(raw_root, "no raw_seqs/ folder here or in data/ or arctic_data/data/ (is this the ARCTIC root?)")


def read_egocam(path: Path) -> dict:
    """The egocam dict, checked: keys, shapes and finite values."""
    d = load_npy_object(path)
    if not isinstance(d, dict):
        raise SourceError(path, f"expected a pickled dict, got {type(d).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise SourceError(path, f"missing keys {missing} (unknown egocam schema; has {sorted(d)})")
    R = np.asarray(d["R_k_cam_np"], dtype=np.float64)
    t = np.asarray(d["T_k_cam_np"], dtype=np.float64)
    K = np.asarray(d["intrinsics"], dtype=np.float64)
    dist = np.asarray(d["dist8"], dtype=np.float64).ravel()
    if R.ndim != 3 or R.shape[1:] != (3, 3) or t.shape not in ((len(R), 3, 1), (len(R), 3)):
        raise SourceError(path, f"unexpected pose shapes R {R.shape}, T {t.shape}")
    if K.shape != (3, 3) or dist.shape != (8,):
        raise SourceError(path, f"unexpected intrinsics {K.shape} / dist8 {dist.shape}")
    return {"R": R, "t": t.reshape(len(R), 3), "K": K, "dist8": dist}


class ArcticAdapter(Adapter):
    name = "arctic"
    version = "1"
    modalities = ("rgb", "cam")
    default_depth = "rollingdepth"  # ARCTIC has no scene depth; the paper pseudo-labels it
    layout = ("<raw>[/data or /arctic_data/data]/{images/<sid>/<seq>/0/*.jpg, raw_seqs/<sid>/<seq>.egocam.dist.npy, "
              "meta/misc.json}")

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        data = find_data_root(raw_root)
        refs = []
        for f in sorted((data / "raw_seqs").glob("*/*.egocam.dist.npy")):
            sid, seq = f.parent.name, f.name[: -len(".egocam.dist.npy")]
            refs.append(SequenceRef(dataset=self.name, sequence=f"{sid}/{seq}", path=str(f),
                                    split=SPLITS.get(sid, "train"), meta={"sid": sid, "seq": seq, "data": str(data)}))
        if not refs:
            raise SourceError(data / "raw_seqs", "no <sid>/<seq>.egocam.dist.npy file found")
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        data, sid, seq = Path(ref.meta["data"]), ref.meta["sid"], ref.meta["seq"]
        egocam_f = Path(ref.path)
        cam = read_egocam(egocam_f)
        misc_f = data / "meta" / "misc.json"
        misc = read_json(misc_f, "misc.json")
        try:
            offset = int(misc[sid]["ioi_offset"])
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(misc_f, f"no ioi_offset for subject {sid} ({e})") from e

        img_dir = data / "images" / sid / seq / EGO_VIEW
        if not img_dir.is_dir():
            raise SourceError(img_dir, "missing egocentric image folder (view 0)")
        images = {}
        for p in img_dir.iterdir():
            if re.fullmatch(r"\d+\.jpg", p.name):
                images[int(p.stem) - offset] = p  # ground-truth index of the image
        n = len(cam["R"])
        have = np.array(sorted(k for k in images if 0 <= k < n), dtype=np.int64)
        if have.size == 0:
            raise SourceError(img_dir, f"no image maps to a ground-truth frame (ioi_offset {offset}, {n} poses)")
        # timeline = ground-truth frames from the first to the last one that has an image
        first, last = int(have[0]), int(have[-1])
        frames_idx = np.arange(first, last + 1)
        nearest = have[nearest_indices(have, frames_idx)]  # a missing frame takes the nearest one that exists
        frame_valid = np.isin(frames_idx, have)
        paths = [images[int(k)] for k in nearest]

        w2c = geo.make_se3(cam["R"][frames_idx], cam["t"][frames_idx])
        c2w = check_poses(egocam_f, geo.w2c_to_c2w(w2c))
        first_img = read_rgb_image(paths[0])
        h, w = first_img.shape[:2]
        K = cam["K"]

        def read_frames(idx):
            out = np.stack([read_rgb_image(paths[int(i)]) for i in np.asarray(idx)])
            if out.shape[1:3] != (h, w):
                raise SourceError(img_dir, f"images change size ({out.shape[1:3]} vs {(h, w)})")
            return out

        ref.meta["first_gt_frame"] = first
        return RawSequence(ref=ref, num_frames=len(frames_idx), width=w, height=h,
                           intrinsics=np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]), read_frames=read_frames,
                           c2w=c2w, gaze_px=None, read_depth=None, camera_model="opencv_rational",
                           distortion=cam["dist8"], frame_valid=frame_valid,
                           source_files=[str(egocam_f), str(misc_f), str(img_dir)])


ADAPTER = ArcticAdapter()
