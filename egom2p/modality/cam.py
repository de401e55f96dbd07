"""cam: float32 [60, 4, 4] camera-to-world, OpenCV axes, metres, frame 0 = identity; float lists in the clips
table; the sequence VQ-VAE on the 9D [R[:,0], R[:,1], t] vectors, normalised by training statistics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .. import geometry as geo
from ..modalities import CLIP_FRAMES
from .base import ModalityError, ModalityInfo, float_sequence_codec, standard_norm_stats


def check(c: np.ndarray, clip) -> str | None:
    if not np.all(np.isfinite(c)):
        return f"cam has non-finite poses at frames {np.nonzero(~np.isfinite(c).all(axis=(1, 2)))[0][:5].tolist()}"
    if not np.allclose(c[0], np.eye(4), atol=1e-5):
        return "cam[0] must be the identity (poses relative to the first frame)"
    if not np.allclose(c[:, 3], [0, 0, 0, 1], atol=1e-6):
        return "cam bottom rows must be [0, 0, 0, 1]"
    R = c[:, :3, :3].astype(np.float64)
    ortho = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = (ortho > 1e-4) | (np.abs(det - 1) > 1e-4)
    if bad.any():
        return f"cam rotations are not proper rotations at frames {np.nonzero(bad)[0][:5].tolist()}"
    return None


def standardize(seq, frames: np.ndarray, size: int, depth=None) -> dict:
    """Poses of the window relative to its first frame; a missing (non-finite) pose is refused."""
    if seq.c2w is None:
        return {}
    T = np.asarray(seq.c2w[frames], dtype=np.float64)
    finite = np.isfinite(T).all(axis=(1, 2))
    if not finite.all():
        raise ModalityError(f"non-finite camera pose at frames {frames[~finite][:5].tolist()} (pose missing or NaN)")
    return {"cam": geo.relative_to_first(T).astype(np.float32)}


def norm_stats(cam: np.ndarray) -> dict:
    """Per-channel mean / std of the 9D vectors of training poses [N, 60, 4, 4] (std floored at 1e-3)."""
    return standard_norm_stats(geo.c2w_to_pose9d(np.asarray(cam, np.float64)))


def prepare(x, norm) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (CLIP_FRAMES, 4, 4):
        raise ModalityError(f"cam tokenizer needs float32 [B,{CLIP_FRAMES},4,4], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ModalityError("cam poses must be finite")
    if norm is None:
        raise ModalityError("the cam tokenizer needs the 9D normalisation statistics (mean, std)")
    v = geo.c2w_to_pose9d(x.astype(np.float64)).astype(np.float32)
    return (v - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32), np.ones(x.shape[:2], bool)


def postprocess(y, norm) -> np.ndarray:
    v = np.asarray(y, np.float32) * np.asarray(norm["std"], np.float32) + np.asarray(norm["mean"], np.float32)
    return geo.pose9d_to_c2w(v.astype(np.float64)).astype(np.float32)


def mirror(x: np.ndarray) -> np.ndarray:
    """A trajectory mirrored through its first frame's y-z plane: S T S with S = diag(-1, 1, 1, 1)."""
    S = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(x.dtype)
    return S @ x @ S


def reverse(x: np.ndarray) -> np.ndarray:
    """Clips reversed in time, re-expressed relative to their new first frame."""
    rev = x[:, ::-1]
    return np.linalg.inv(rev[:, :1]) @ rev


def plot(ax, truth: np.ndarray, rec: np.ndarray) -> None:
    """The trajectory seen from above (x-z plane)."""
    ax.plot(truth[:, 0, 3], truth[:, 2, 3], "-", label="truth")
    ax.plot(rec[:, 0, 3], rec[:, 2, 3], "--", label="reconstruction")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    ax.axis("equal")


_encode, _decode = float_sequence_codec("cam", (4, 4))

INFO = ModalityInfo(
    name="cam", tokenizer="sequence", frame_shape=lambda h, w: (4, 4), dtype=np.float32,
    columns=(pa.field("cam", pa.list_(pa.float32(), CLIP_FRAMES * 16)),),
    encode=_encode, decode=_decode, standardize=standardize, check=check,
    prepare=prepare, postprocess=postprocess, norm_stats=norm_stats, mirror=mirror, reverse=reverse, plot=plot,
    average=lambda x: geo.mean_se3(x).astype(np.float32), preset="camera",
)
