"""The standard clip: 2 seconds at 30 FPS of up to four aligned modalities, in one convention.

A :class:`Clip` is what curation produces and tokenization consumes. Conventions (DESIGN.md):

* rgb   uint8   [60, H, W, 3]  the standard image (square centre crop, resized; default 256x256)
* depth float32 [60, H, W]     inverse depth, min-max normalised per clip to [0, 1] over valid
                               pixels, NaN where invalid; ``depth_range`` holds the (min, max)
                               inverse depth in 1/m used for that normalisation when the source is
                               metric (None for affine-invariant sources such as RollingDepth)
* gaze  float32 [60, 2]        (x/W, y/H) in the standard image, NaN rows invalid; values outside
                               [-0.2, 1.2] must be marked invalid
* cam   float32 [60, 4, 4]     camera-to-world, OpenCV axes, metres, frame 0 = identity

``depth_raw_valid`` (bool [60, H, W], optional) marks, for depth that an annotator cleaned (the
``sensor`` annotator fills holes and inpaints), the pixels that are real sensor returns; evaluation
scores only those. None means every valid depth pixel is a measurement (rendered depth).

Missing modalities are ``None``, never zeros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import EgoM2PError
from .modalities import CLIP_FPS, CLIP_FRAMES, GAZE_VALID_RANGE

DEPTH_SOURCES = ("sensor", "rollingdepth", "render")
CAMERA_MODELS = ("pinhole", "fisheye624", "opencv", "opencv_rational", "kannala_brandt")
CLIP_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+/.+/\d{6}$")


class ClipValidationError(EgoM2PError, ValueError):
    """A clip breaks the standard; the message names the clip and the problem."""


def make_clip_id(dataset: str, sequence: str, start_frame: int) -> str:
    """Deterministic clip id: ``{dataset}/{sequence}/{start_frame:06d}``."""
    return f"{dataset}/{sequence}/{int(start_frame):06d}"


@dataclass
class Clip:
    dataset: str
    sequence: str
    start_frame: int  # 30 FPS index in the source sequence
    width: int
    height: int
    intrinsics: np.ndarray  # (fx, fy, cx, cy) in standard-image pixels
    split: str = "train"
    camera_model: str = "pinhole"
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))  # model parameters after f, cx, cy
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    gaze: np.ndarray | None = None
    cam: np.ndarray | None = None
    depth_source: str | None = None
    depth_range: np.ndarray | None = None  # (min, max) inverse depth in 1/m; None if affine-invariant
    depth_raw_valid: np.ndarray | None = None  # [60, H, W] bool: real sensor returns (None: all valid pixels are)
    frame_valid: np.ndarray | None = None  # [60] bool: False where the source frame was missing
    gaze_valid: np.ndarray | None = None  # [60] bool; derived from NaN rows when not given
    is_gray: bool = False  # rgb replicated from a gray stream
    fps: int = CLIP_FPS
    num_frames: int = CLIP_FRAMES
    provenance: dict = field(default_factory=dict)  # source files, adapter name and version, ...

    def __post_init__(self):
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64)
        self.distortion = np.asarray(self.distortion, dtype=np.float64)
        if self.frame_valid is None:
            self.frame_valid = np.ones(self.num_frames, dtype=bool)
        if self.gaze is not None and self.gaze_valid is None:
            self.gaze_valid = np.all(np.isfinite(self.gaze), axis=-1)

    @property
    def clip_id(self) -> str:
        return make_clip_id(self.dataset, self.sequence, self.start_frame)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this clip has."""
        return tuple(m for m in ("rgb", "depth", "gaze", "cam") if getattr(self, m) is not None)

    def validate(self) -> "Clip":
        """Check every convention of the standard clip; raise :class:`ClipValidationError` naming the problem."""
        cid = self.clip_id

        def fail(msg: str):
            raise ClipValidationError(f"clip {cid}: {msg}")

        if not CLIP_ID_RE.match(cid):
            fail("clip id must look like dataset/sequence/000000 (no empty parts)")
        if self.num_frames != CLIP_FRAMES or self.fps != CLIP_FPS:
            fail(f"a standard clip has {CLIP_FRAMES} frames at {CLIP_FPS} FPS, got {self.num_frames} at {self.fps}")
        if self.start_frame < 0:
            fail(f"negative start_frame {self.start_frame}")
        if not self.modalities:
            fail("no modality present")
        if self.width <= 0 or self.height <= 0:
            fail(f"bad image size {self.width}x{self.height}")
        if self.intrinsics.shape != (4,) or not np.all(np.isfinite(self.intrinsics)):
            fail(f"intrinsics must be 4 finite numbers (fx, fy, cx, cy), got {self.intrinsics}")
        if self.intrinsics[0] <= 0 or self.intrinsics[1] <= 0:
            fail(f"focal lengths must be positive, got {self.intrinsics[:2]}")
        if self.camera_model not in CAMERA_MODELS:
            fail(f"unknown camera_model {self.camera_model!r}; known: {CAMERA_MODELS}")
        n = self.num_frames
        fv = np.asarray(self.frame_valid)
        if fv.shape != (n,) or fv.dtype != bool:
            fail(f"frame_valid must be bool [{n}], got {fv.dtype} {fv.shape}")

        if self.rgb is not None:
            r = self.rgb
            if r.dtype != np.uint8 or r.shape != (n, self.height, self.width, 3):
                fail(f"rgb must be uint8 [{n},{self.height},{self.width},3], got {r.dtype} {r.shape}")

        if self.depth is not None:
            d = self.depth
            if d.dtype != np.float32 or d.shape != (n, self.height, self.width):
                fail(f"depth must be float32 [{n},{self.height},{self.width}], got {d.dtype} {d.shape}")
            if self.depth_source not in DEPTH_SOURCES:
                fail(f"depth_source must be one of {DEPTH_SOURCES}, got {self.depth_source!r}")
            finite = d[np.isfinite(d)]
            if finite.size == 0:
                fail("depth has no valid pixel")
            if np.isinf(d).any():
                fail("depth holds inf; invalid pixels must be NaN")
            if finite.min() < -1e-6 or finite.max() > 1 + 1e-6:
                fail(f"normalised inverse depth must lie in [0, 1], got [{finite.min():.4g}, {finite.max():.4g}]")
            if self.depth_range is not None:
                dr = np.asarray(self.depth_range, dtype=np.float64)
                if dr.shape != (2,) or not np.all(np.isfinite(dr)) or dr[0] < 0 or dr[1] < dr[0]:
                    fail(f"depth_range must be (min, max) inverse depth with 0 <= min <= max, got {dr}")
            elif self.depth_source in ("sensor", "render"):
                fail(f"metric depth ({self.depth_source}) needs depth_range to recover metric depth")
            if self.depth_raw_valid is not None:
                rv = np.asarray(self.depth_raw_valid)
                if rv.dtype != bool or rv.shape != d.shape:
                    fail(f"depth_raw_valid must be bool {list(d.shape)}, got {rv.dtype} {rv.shape}")
                if np.any(rv & ~np.isfinite(d)):
                    fail("depth_raw_valid marks pixels whose depth is invalid (NaN)")
        elif self.depth_source is not None or self.depth_range is not None or self.depth_raw_valid is not None:
            fail("depth_source/depth_range/depth_raw_valid set but depth is missing")

        if self.gaze is not None:
            g = self.gaze
            if g.dtype != np.float32 or g.shape != (n, 2):
                fail(f"gaze must be float32 [{n},2], got {g.dtype} {g.shape}")
            gv = np.asarray(self.gaze_valid)
            if gv.shape != (n,) or gv.dtype != bool:
                fail(f"gaze_valid must be bool [{n}], got {gv.dtype} {gv.shape}")
            finite = np.all(np.isfinite(g), axis=-1)
            if np.any(np.isfinite(g).any(-1) & ~finite):
                fail("gaze rows must be both finite or both NaN")
            if not np.array_equal(gv, finite):
                bad = np.nonzero(gv != finite)[0][:5]
                fail(f"gaze_valid disagrees with NaN rows at frames {bad.tolist()}")
            lo, hi = GAZE_VALID_RANGE
            out = finite & np.any((g < lo) | (g > hi), axis=-1)
            if out.any():
                bad = np.nonzero(out)[0][:5]
                fail(f"gaze outside [{lo}, {hi}] not marked invalid (NaN) at frames {bad.tolist()}")

        if self.cam is not None:
            c = self.cam
            if c.dtype != np.float32 or c.shape != (n, 4, 4):
                fail(f"cam must be float32 [{n},4,4], got {c.dtype} {c.shape}")
            if not np.all(np.isfinite(c)):
                bad = np.nonzero(~np.isfinite(c).all(axis=(1, 2)))[0][:5]
                fail(f"cam has non-finite poses at frames {bad.tolist()}")
            if not np.allclose(c[0], np.eye(4), atol=1e-5):
                fail("cam[0] must be the identity (poses relative to the first frame)")
            if not np.allclose(c[:, 3], [0, 0, 0, 1], atol=1e-6):
                fail("cam bottom rows must be [0, 0, 0, 1]")
            R = c[:, :3, :3].astype(np.float64)
            ortho = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
            det = np.linalg.det(R)
            if np.any(ortho > 1e-4) or np.any(np.abs(det - 1) > 1e-4):
                bad = np.nonzero((ortho > 1e-4) | (np.abs(det - 1) > 1e-4))[0][:5]
                fail(f"cam rotations are not proper rotations at frames {bad.tolist()}")
        return self
