"""EgoGen adapter: reads the synthetic renderer's layout (``egom2p render egogen``) as raw sequences.

The layout (``egom2p/render/layout.py``, card ``datasets/egogen.yaml``) follows EgoGen's conventions:
OpenGL camera-to-world poses in a y-up world, metric z-depth as float ``.npy`` (0 = no hit), and
gaze as a 3D fixation point in the world with a validity flag. This adapter converts to the
project's raw-sequence conventions:

* poses: OpenGL -> OpenCV camera axes (``egom2p.geometry.opengl_to_opencv_c2w``), absolute metres;
* gaze: the world fixation point is projected into each frame (source pixels). It is invalid
  (NaN) when the renderer flags it (blink, off-screen), when it is behind the camera or outside the
  image, or when it is occluded: hidden behind the rendered depth at its pixel by more than
  ``OCCLUSION_TOLERANCE_M``;
* depth: ``read_depth`` returns the rendered metric z-depth (float32, 0 = no hit) at source
  resolution, for the ``render`` depth annotator.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import geometry as geo
from ..render.gaze import OCCLUSION_TOLERANCE_M, project_fixations
from ..render.reader import RenderLayoutError, load_array, read_manifest, read_rgb
from .base import Adapter, RawSequence, SequenceRef, SourceError, bad_sequence


def project_gaze(c2w_cv: np.ndarray, intrinsics, width: int, height: int, points: np.ndarray, valid: np.ndarray,
                 depth_at=None, tolerance: float = OCCLUSION_TOLERANCE_M) -> np.ndarray:
    """World fixation points [N, 3] -> source pixels [N, 2], NaN where invalid, off-image or occluded.

    See :func:`egom2p.render.gaze.project_fixations` (shared with the renderer's Python API).
    """
    return project_fixations(c2w_cv, intrinsics, width, height, points, valid, depth_at, tolerance)


VAL_EVERY = 4


def _hidden(path: Path, root: Path) -> bool:
    """A path inside a hidden folder (``.partial-*``: a sequence the renderer is still writing)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def split_of(index) -> str:
    """Deterministic held-out split of the synthetic data: sequence index 3, 7, 11, ... is "val", the rest "train".

    EgoGen has no official split; a held-out part lets the demo evaluate on unseen walks and rooms.
    """
    return "val" if index is not None and int(index) % VAL_EVERY == VAL_EVERY - 1 else "train"


class EgoGenAdapter(Adapter):
    name = "egogen"
    version = "1"
    modalities = ("rgb", "depth", "gaze", "cam")
    default_depth = "render"
    layout = ("<raw>/<sequence>/{manifest.json, rgb.mp4, depth.npy, c2w_opengl.npy, intrinsics.json, gaze_*.npy} "
              "(`egom2p render egogen --out DIR`)")

    def discover(self, raw_root) -> list[SequenceRef]:
        """Complete sequences under ``raw_root``; every 4th sequence of a render is held out (see split_of).

        Sequence folders are those at the level where manifests are found (``*/`` or ``*/*/``; hidden
        ``.partial-*`` folders of a render in progress are skipped); one there without a readable
        manifest is returned as a bad sequence (quarantined by curation).
        """
        root = Path(raw_root)
        if not root.is_dir():
            raise SourceError(root, "EgoGen render folder not found (make one with: egom2p render egogen --out DIR)")
        seq_dirs = [root] if (root / "manifest.json").is_file() else []
        for depth in ("*", "*/*"):
            if seq_dirs:
                break
            if any(not _hidden(m, root) for m in root.glob(f"{depth}/manifest.json")):
                seq_dirs = sorted(d for d in root.glob(depth) if d.is_dir() and not _hidden(d, root))
        if not seq_dirs:
            partial = sorted(p.name for p in root.glob(".partial-*"))
            hint = f" (incomplete: {', '.join(partial[:5])})" if partial else ""
            raise SourceError(root, "no complete EgoGen sequence (no */manifest.json)" + hint)
        refs = []
        for d in seq_dirs:
            name = d.relative_to(root).as_posix() if d != root else d.name
            try:
                man = read_manifest(d)
                meta = {"num_frames": int(man["num_frames"]), "seed": man.get("seed"), "index": man.get("index")}
            except RenderLayoutError as e:
                refs.append(bad_sequence(self.name, name, e.path, e.problem))
                continue
            except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
                refs.append(bad_sequence(self.name, name, d / "manifest.json", f"unreadable manifest ({e!r})"))
                continue
            rel = name if d != root else man.get("name", d.name)
            refs.append(SequenceRef(dataset=self.name, sequence=rel, path=str(d), split=split_of(man.get("index")),
                                    meta=meta))
        return refs

    def load(self, ref: SequenceRef) -> RawSequence:
        d = Path(ref.path)
        try:
            return self._load(ref, d)
        except RenderLayoutError as e:
            raise SourceError(e.path, e.problem) from e

    def _load(self, ref: SequenceRef, d: Path) -> RawSequence:
        man = read_manifest(d)
        n, w, h = int(man["num_frames"]), int(man["width"]), int(man["height"])
        if man.get("fps", 30) != 30:
            raise SourceError(d / "manifest.json", f"expected 30 FPS, got {man.get('fps')}")
        kpath = d / "intrinsics.json"
        try:
            kj = json.loads(kpath.read_text())
            K = np.array([kj["fx"], kj["fy"], kj["cx"], kj["cy"]], dtype=np.float64)
        except (OSError, ValueError, KeyError) as e:
            raise SourceError(kpath, f"missing or malformed intrinsics ({type(e).__name__}: {e})") from e
        if not (np.isfinite(K).all() and K[0] > 0 and K[1] > 0):
            raise SourceError(kpath, f"invalid intrinsics {K.tolist()}")
        T_gl = load_array(d / "c2w_opengl.npy", (n, 4, 4)).astype(np.float64)
        c2w = geo.opengl_to_opencv_c2w(T_gl)
        depth = load_array(d / "depth.npy", (n, h, w), mmap=True)
        if depth.ndim != 3:
            raise SourceError(d / "depth.npy", f"expected [N, H, W] depth, got shape {depth.shape}")
        points = load_array(d / "gaze_point_world.npy", (n, 3)).astype(np.float64)
        valid = load_array(d / "gaze_valid.npy", (n,)).astype(bool)
        gaze_px = project_gaze(c2w, K, w, h, points, valid, depth_at=lambda f, v, u: depth[f, v, u])

        rgb_format = man.get("rgb_format", "mp4")
        if rgb_format == "mp4":
            from ..video import VideoError, probe

            try:  # decord, or PyAV for the sizes decord cannot open
                info = probe(d / "rgb.mp4")
            except VideoError as e:
                raise SourceError(d / "rgb.mp4", str(e)) from e
            count, size = info.num_frames, (info.width, info.height)
            if count != n or size != (w, h):
                raise SourceError(d / "rgb.mp4", f"video has {count} frames of {size[0]}x{size[1]}, "
                                                 f"manifest says {n} of {w}x{h}")
            rgb_files = [str(d / "rgb.mp4")]
        else:
            rgb_files = [str(d / "rgb")]

        def _check(indices) -> np.ndarray:
            idx = np.asarray(indices, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise SourceError(d, f"frame index out of range [0, {n}) (asked {idx.min()}..{idx.max()})")
            return idx

        def read_frames(indices) -> np.ndarray:
            return read_rgb(d, man, _check(indices))

        def read_depth(indices) -> np.ndarray:
            return np.ascontiguousarray(depth[_check(indices)], dtype=np.float32)

        return RawSequence(ref=ref, num_frames=n, width=w, height=h, intrinsics=K, read_frames=read_frames, c2w=c2w,
                           gaze_px=gaze_px, read_depth=read_depth, camera_model="pinhole",
                           distortion=np.zeros(0), frame_valid=np.ones(n, dtype=bool), is_gray=False,
                           source_files=rgb_files + [str(d / f) for f in ("depth.npy", "c2w_opengl.npy",
                                                                         "intrinsics.json", "gaze_point_world.npy",
                                                                         "gaze_valid.npy", "manifest.json")])


ADAPTER = EgoGenAdapter()
