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

Missing modalities are ``None``, never zeros. A modality registered beyond these four
(:mod:`egom2p.modality`) lives in ``extra`` under its name; :meth:`Clip.get` / :meth:`Clip.set` reach every
modality by name, and validation runs each registry entry's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from . import modality
from .errors import EgoM2PError
from .modalities import CLIP_FPS, CLIP_FRAMES
from .modality.depth import DEPTH_SOURCES

__all__ = ["CAMERA_MODELS", "CLIP_ID_RE", "Clip", "ClipValidationError", "DEPTH_SOURCES", "make_clip_id"]
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
    extra: dict = field(default_factory=dict)  # {modality: array} of registered modalities beyond the four fields

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

    def get(self, name: str):
        """The array of modality ``name`` (None when the clip lacks it)."""
        return getattr(self, name) if name in self.__dataclass_fields__ else self.extra.get(name)

    def set(self, name: str, value) -> None:
        """Set a modality's array or another clip field by name (a registered modality beyond the fields: ``extra``)."""
        if name in self.__dataclass_fields__:
            setattr(self, name, value)
        elif value is not None:
            self.extra[name] = value
        else:
            self.extra.pop(name, None)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this clip has, in registry order."""
        return tuple(m for m in modality.names() if self.get(m) is not None)

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
        unknown = sorted(set(self.extra) - set(modality.names()))
        if unknown:
            fail(f"unknown modalities {unknown} (registered: {list(modality.names())})")
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
        for info in modality.MODALITY_INFO.values():
            array = self.get(info.name)
            if array is not None:
                problem = info.validate(np.asarray(array), self)
                if problem:
                    fail(problem)
            elif any(self.get(f) is not None for f in info.fields):
                fail(f"{'/'.join(info.fields)} set but {info.name} is missing")
        return self
