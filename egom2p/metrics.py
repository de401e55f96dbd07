"""Evaluation metrics of the four EgoM2P tasks (paper Sec. 4, Tables 2-4).

Camera tracking (trajectories: camera-to-world [N, 4, 4], OpenCV axes, metres):

* The estimate is first aligned to the reference with Umeyama's method: ``"none"`` (no alignment),
  ``"se3"`` (rotation + translation) or ``"sim3"`` (rotation + translation + scale; the default,
  because a monocular tracker only knows the trajectory up to scale, as in MegaSaM / MonST3R
  evaluations). The alignment is part of every result (:class:`CameraErrors.alignment`).
* **ATE**: RMSE over frames of the translation error of the aligned estimate (metres).
* **RTE**: RMSE over consecutive pairs (delta = 1 frame) of the translation part of the relative
  pose error E_i = (Q_i^-1 Q_{i+1})^-1 (P_i^-1 P_{i+1}) (Q reference, P aligned estimate).
* **RRE**: RMSE over the same pairs of the rotation angle of E_i, in degrees.

These are evo's APE(translation_part) and RPE(translation_part / rotation_angle_deg, delta=1 frame)
RMSE statistics; ``tests/test_metrics.py`` checks them against evo to 1e-6.

Gaze: MSE of the normalised (x/W, y/H) coordinates, averaged over both coordinates and over the
frames where both the reference and the estimate are valid (finite).

Video depth: AbsRel and delta < 1.25 after a **sequence-level** scale-and-shift alignment (one
(s, t) for all frames of a sequence). The model predicts normalised *inverse* depth, i.e. inverse
depth up to an unknown affine map, so the least-squares fit is done in inverse depth (disparity)
space, where that ambiguity lives; fitting in depth space would assume an affine ambiguity that the
prediction does not have. ``space="depth"`` fits in depth space for affine-invariant *depth*
predictions. The aligned depth is limited to the evaluation's fixed depth range
(:data:`DEPTH_EVAL_RANGE_M`, the same for every clip): no clamp is derived from the ground truth of
the clip being scored, so a prediction that lands beyond the farthest true depth pays for it.

Video synthesis: PSNR and SSIM (torchmetrics, data range 1 on [0, 1] frames), LPIPS and FVD
(:mod:`egom2p.perceptual`, real networks read from a local weights directory).

Tokens: :func:`codebook_stats` (fraction of codes used, perplexity).

This is the one metrics library of the project: tokenizer evaluation (``egom2p tokenizer train``),
model evaluation (``egom2p eval``, through the task table :mod:`egom2p.tasks`), the notebooks and
the benchmarks all call these functions with the same settings (:data:`DEFAULT_ALIGNMENT`), so a
tokenizer's round-trip numbers are the ceiling of the model's numbers on the same table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .geometry import invert_se3 as _inv
from .geometry import rotation_angle_deg

ALIGNMENTS = ("none", "se3", "sim3")
DEFAULT_ALIGNMENT = "sim3"  # camera metrics everywhere (eval tables, tokenizer evaluation, notebooks)
DEPTH_ALIGN_SPACES = ("inverse", "depth")
# Depth range (metres) aligned predictions are limited to: a fixed evaluation setting, never taken
# from the ground truth of the clip being scored (the far end is that of common indoor/outdoor
# benchmarks' evaluation caps; the sensor annotator keeps returns up to 10 m).
DEPTH_EVAL_RANGE_M = (1e-3, 80.0)

# --- camera -------------------------------------------------------------------------------------


def umeyama(x: np.ndarray, y: np.ndarray, with_scale: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares (R, t, s) with y ~ s R x + t, for points x, y [N, 3] (Umeyama 1991).

    Raises ValueError when the points are degenerate (fewer than 2 distinct points).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"umeyama needs two [N,3] point sets, got {x.shape} and {y.shape}")
    n = x.shape[0]
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    var_x = (xc ** 2).sum() / n
    cov = yc.T @ xc / n  # [3, 3]
    U, D, Vt = np.linalg.svd(cov)
    if np.count_nonzero(D > np.finfo(D.dtype).eps) < 1 or var_x < 1e-24:
        raise ValueError("degenerate trajectory for alignment (all positions equal)")
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / var_x) if with_scale else 1.0
    t = my - s * R @ mx
    return R, t, s


def align_trajectory(est: np.ndarray, ref: np.ndarray, alignment: str = "sim3") -> tuple[np.ndarray, dict]:
    """Align estimated poses [N, 4, 4] to the reference; returns (aligned poses, {R, t, s}).

    The transform is fitted on positions (Umeyama) and applied to whole poses:
    P' = [[s R Rp, s R tp + t]] (rotation part stays a rotation).
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if alignment == "none":
        return est.copy(), {"R": np.eye(3), "t": np.zeros(3), "s": 1.0}
    R, t, s = umeyama(est[:, :3, 3], ref[:, :3, 3], with_scale=alignment == "sim3")
    out = est.copy()
    out[:, :3, :3] = np.einsum("ij,njk->nik", R, est[:, :3, :3])
    out[:, :3, 3] = s * est[:, :3, 3] @ R.T + t
    return out, {"R": R, "t": t, "s": s}


def _check_traj(T: np.ndarray, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise ValueError(f"{what}: poses must be [N,4,4], got {T.shape}")
    if T.shape[0] < 2:
        raise ValueError(f"{what}: need at least 2 poses, got {T.shape[0]}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{what}: poses contain non-finite values")
    return T


@dataclass
class CameraErrors:
    ate: float  # metres, RMSE
    rte: float  # metres, RMSE, delta = 1 frame
    rre: float  # degrees, RMSE, delta = 1 frame
    alignment: str
    scale: float  # the Sim(3) scale applied to the estimate (1 otherwise)

    def as_dict(self) -> dict:
        return asdict(self)


def camera_errors(est: np.ndarray, ref: np.ndarray, alignment: str = "sim3", delta: int = 1) -> CameraErrors:
    """ATE, RTE, RRE of an estimated trajectory against the reference (both [N, 4, 4] camera-to-world)."""
    est = _check_traj(est, "estimate")
    ref = _check_traj(ref, "reference")
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and reference {ref.shape} differ in length")
    aligned, tf = align_trajectory(est, ref, alignment)
    ate = float(np.sqrt(np.mean(np.sum((aligned[:, :3, 3] - ref[:, :3, 3]) ** 2, -1))))
    rel_ref = np.einsum("nij,njk->nik", _inv(ref[:-delta]), ref[delta:])
    rel_est = np.einsum("nij,njk->nik", _inv(aligned[:-delta]), aligned[delta:])
    E = np.einsum("nij,njk->nik", _inv(rel_ref), rel_est)
    rte = float(np.sqrt(np.mean(np.sum(E[:, :3, 3] ** 2, -1))))
    rre = float(np.sqrt(np.mean(rotation_angle_deg(E[:, :3, :3]) ** 2)))
    return CameraErrors(ate=ate, rte=rte, rre=rre, alignment=alignment, scale=float(tf["s"]))


def trajectory_errors(est: np.ndarray, ref: np.ndarray, alignment: str = DEFAULT_ALIGNMENT) -> CameraErrors:
    """:func:`camera_errors` for any estimate, including one without motion.

    An estimate whose positions are all equal (a static camera, or a model that predicts no motion)
    cannot be aligned by Umeyama; the best similarity (or rigid) transform of one repeated point is
    the translation to the reference centroid, so under SE(3)/Sim(3) it is placed there (ATE = RMS
    distance of the reference positions from their centroid); with no alignment it stays where it is.
    """
    est = _check_traj(est, "estimate")
    ref = _check_traj(ref, "reference")
    pos = est[:, :3, 3]
    if alignment == "none" or np.ptp(pos, axis=0).max() > 1e-12:
        try:
            return camera_errors(est, ref, alignment)
        except ValueError as e:
            if "degenerate" not in str(e):
                raise
    fixed = est.copy()
    if alignment != "none":
        fixed[:, :3, 3] = ref[:, :3, 3].mean(0)
    e = camera_errors(fixed, ref, "none")
    return CameraErrors(ate=e.ate, rte=e.rte, rre=e.rre, alignment=alignment, scale=1.0)


# --- gaze ---------------------------------------------------------------------------------------


def gaze_mse(est: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """MSE of normalised gaze (x/W, y/H) over frames valid in both; returns (mse, valid frame count).

    ``est`` and ``ref`` are [N, 2] (or [B, N, 2]); NaN rows are invalid. The mean is over both
    coordinates of every valid frame (torch's ``mse_loss`` convention). No valid frame -> (nan, 0).
    """
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if est.shape != ref.shape or est.shape[-1] != 2:
        raise ValueError(f"gaze arrays must have equal shapes [..., 2], got {est.shape} and {ref.shape}")
    valid = np.all(np.isfinite(est), -1) & np.all(np.isfinite(ref), -1)
    n = int(valid.sum())
    if n == 0:
        return float("nan"), 0
    return float(np.mean((est[valid] - ref[valid]) ** 2)), n


def sequence_rmse(est: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """RMSE of a sequence modality's values over frames finite in both; returns (rmse, valid frame count).

    ``est`` and ``ref`` are [N, ...] per-frame values (or [B, N, ...]); the score of a modality that no task
    generates (its tokenizer's round trip). No valid frame -> (nan, 0).
    """
    est, ref = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"sequence arrays must have equal shapes, got {est.shape} and {ref.shape}")
    lead = est.shape[:2] if est.ndim > 2 else est.shape[:1]
    e, r = est.reshape(*lead, -1), ref.reshape(*lead, -1)
    valid = np.isfinite(e).all(-1) & np.isfinite(r).all(-1)
    n = int(valid.sum())
    if n == 0:
        return float("nan"), 0
    return float(np.sqrt(np.mean((e[valid] - r[valid]) ** 2))), n


# --- depth --------------------------------------------------------------------------------------


@dataclass
class DepthErrors:
    abs_rel: float
    delta1: float  # fraction of pixels with max(pred/gt, gt/pred) < 1.25
    scale: float
    shift: float
    space: str  # "inverse" or "depth": where the scale and shift were fitted
    num_pixels: int

    def as_dict(self) -> dict:
        return asdict(self)


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least squares (s, t) minimising sum (s * pred + t - target)^2 over the given 1-D values."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    q = np.asarray(target, dtype=np.float64).ravel()
    A = np.stack([p, np.ones_like(p)], 1)
    (s, t), *_ = np.linalg.lstsq(A, q, rcond=None)
    return float(s), float(t)


def _depth_mask(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    m = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if valid is not None:
        m &= np.asarray(valid, dtype=bool)
    return m


def align_depth(pred: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray | None = None,
                space: str = "inverse", depth_range=DEPTH_EVAL_RANGE_M) -> tuple[np.ndarray, float, float]:
    """Sequence-level scale-and-shift alignment of a prediction to metric reference depth.

    ``pred`` [T, H, W] is (normalised) inverse depth for ``space="inverse"`` and depth for
    ``space="depth"``; ``gt_depth`` [T, H, W] is depth in metres (0/NaN invalid); ``valid`` limits
    the pixels used (e.g. the sensor's raw returns). Returns (aligned depth in metres [T, H, W],
    scale, shift). The aligned depth is limited to ``depth_range`` (metres), a fixed evaluation
    setting: in inverse space, aligned inverse depth below 1 / far (including zero or negative: at
    or behind infinity) becomes the far limit.
    """
    if space not in DEPTH_ALIGN_SPACES:
        raise ValueError(f"space must be one of {DEPTH_ALIGN_SPACES}, got {space!r}")
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and reference {gt.shape} differ in shape")
    m = _depth_mask(pred, gt, valid)
    if m.sum() < 2:
        raise ValueError("depth alignment needs at least 2 valid pixels")
    near, far = (float(v) for v in depth_range)
    if space == "inverse":
        s, t = fit_scale_shift(pred[m], 1.0 / gt[m])
        aligned = 1.0 / np.clip(s * pred + t, 1.0 / far, 1.0 / near)
    else:
        s, t = fit_scale_shift(pred[m], gt[m])
        aligned = np.clip(s * pred + t, near, far)
    return aligned, s, t


def depth_errors(pred: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray | None = None,
                 space: str = "inverse", depth_range=DEPTH_EVAL_RANGE_M) -> DepthErrors:
    """AbsRel and delta<1.25 of a depth video after sequence-level scale-and-shift alignment."""
    aligned, s, t = align_depth(pred, gt_depth, valid, space, depth_range)
    gt = np.asarray(gt_depth, dtype=np.float64)
    m = _depth_mask(np.asarray(pred, dtype=np.float64), gt, valid)
    a, g = aligned[m], gt[m]
    abs_rel = float(np.mean(np.abs(a - g) / g))
    delta1 = float(np.mean(np.maximum(a / g, g / a) < 1.25))
    return DepthErrors(abs_rel=abs_rel, delta1=delta1, scale=s, shift=t, space=space, num_pixels=int(m.sum()))


def normalized_inverse_to_depth(norm_inv: np.ndarray, depth_range) -> np.ndarray:
    """Standard-clip depth (normalised inverse depth in [0, 1], NaN invalid) -> metric depth (NaN invalid).

    ``depth_range`` = (min, max) inverse depth in 1/m used for the normalisation (Clip.depth_range).
    """
    lo, hi = (float(v) for v in depth_range)
    inv = np.asarray(norm_inv, dtype=np.float64) * (hi - lo) + lo
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(inv > 0, 1.0 / inv, np.nan)
    return d


# --- video synthesis ----------------------------------------------------------------------------


def _frames_to_torch(v: np.ndarray, data_range: float | None):
    """Frames -> (float [N, C, H, W] scaled to [0, 1], 1.0).

    uint8 colour videos [..., H, W, 3] are divided by 255; float frames [..., H, W] (one channel,
    e.g. normalised inverse depth) or [..., H, W, 3] are divided by ``data_range`` (default 1).
    """
    import torch

    v = np.asarray(v)
    if v.dtype == np.uint8:
        if v.shape[-1] != 3:
            raise ValueError(f"uint8 videos must be [..., H, W, 3], got {v.shape}")
        scale = 255.0 if data_range is None else float(data_range)
    elif np.issubdtype(v.dtype, np.floating):
        scale = 1.0 if data_range is None else float(data_range)
        if v.shape[-1] != 3:
            v = v[..., None]
    else:
        raise ValueError(f"videos must be uint8 [..., H, W, 3] or float [..., H, W], got {v.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(v.reshape(-1, *v.shape[-3:]), dtype=np.float32)) / scale
    return x.permute(0, 3, 1, 2)


def _pair(est, ref, data_range):
    a, b = _frames_to_torch(est, data_range), _frames_to_torch(ref, data_range)
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def psnr(est: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """PSNR (dB) per frame, averaged over frames (torchmetrics, data range 1 after scaling to [0, 1]).

    uint8 colour videos [..., H, W, 3] (the rgb task) or float frames [..., H, W] in
    [0, ``data_range``] (e.g. normalised inverse depth).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = _pair(est, ref, data_range)
    vals = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return float(vals.mean())


def ssim(est: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """SSIM of videos (torchmetrics, Gaussian 11x11, data range 1 after scaling), mean over frames.

    Inputs as :func:`psnr`."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _pair(est, ref, data_range)
    return float(structural_similarity_index_measure(a, b, data_range=1.0))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians: |mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    # Tr((S1 S2)^1/2) = sum of sqrt(eigenvalues of S1^1/2 S2 S1^1/2) (symmetric PSD: stable via eigh)
    w, V = np.linalg.eigh((s1 + s1.T) / 2)
    r1 = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    mid = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0, None)).sum()
    d = mu1 - mu2
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of features [N, F]."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature statistics need at least 2 feature vectors [N,F], got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


# --- tokens -------------------------------------------------------------------------------------


def codebook_stats(tokens: np.ndarray, vocab: int) -> dict:
    """Codebook use of token ids: ``codes_used``, ``codebook_usage`` (fraction of the ``vocab`` codes
    that occur) and ``perplexity`` (exp of the entropy of the code histogram; ``vocab`` at most)."""
    t = np.asarray(tokens).reshape(-1).astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= vocab):
        raise ValueError(f"token ids outside [0, {vocab})")
    counts = np.bincount(t, minlength=vocab).astype(np.float64)
    p = counts / max(1.0, counts.sum())
    nz = p[p > 0]
    return {"codes_used": int((counts > 0).sum()), "codebook_usage": float((counts > 0).mean()),
            "perplexity": float(np.exp(-(nz * np.log(nz)).sum())) if nz.size else 0.0}
