"""Co-alignment of overlapping depth snippets (RollingDepth, Ke et al. CVPR 2025, Sec. 3.3).

A video-depth network predicts short *snippets* (k frames, sampled with a dilation) whose inverse
depth is only defined up to an unknown scale and shift per snippet. Snippets overlap: a frame is
covered by several snippets of several dilations. This module solves all per-snippet scales
``s_i`` and shifts ``t_i`` *jointly* so that aligned snippets agree wherever they overlap, then
merges them into one depth video.

Formulation (pure numpy, no network):

* every snippet is first normalised by its own median and mean absolute deviation, so that the
  unknowns start near ``s = 1, t = 0``;
* for every frame and every pair of snippets covering it, each sampled pixel gives one residual
  ``r = (s_i a + t_i) - (s_j b + t_j)`` (``a``, ``b`` the two snippets' values at that pixel);
* the residuals are minimised by iteratively re-weighted least squares (IRLS): a robust per-residual
  weight (Cauchy / Huber on a MAD scale estimate) times a per-snippet weight that falls towards zero
  for snippets whose residuals are far above the typical one (an outlier snippet);
* the problem is homogeneous (all scales -> 0 fits perfectly), so the gauge is fixed by hard
  constraints ``mean(s) = 1`` and ``mean(t) = 0`` (a KKT system), plus a tiny prior towards
  ``(1, 0)`` that keeps snippets without any overlap well-posed;
* the normal equations are accumulated per pair from six weighted sums, so the solve is a dense
  ``2S x 2S`` system (``S`` snippets) whatever the image size.

:func:`merge_snippets` then averages the aligned snippets per frame (weighted by the per-snippet
weights; NaN-aware), optionally a per-pixel median. An optional ``refine`` hook (the diffusion
refinement of :mod:`egom2p.rollingdepth.pipeline`) can post-process the merged video.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Snippet:
    """One network prediction: ``values[j]`` is the (affine-invariant) inverse depth of frame ``frames[j]``."""

    frames: np.ndarray  # (k,) int, distinct frame indices into the video
    values: np.ndarray  # [k, H, W] float, NaN where invalid

    def __post_init__(self):
        self.frames = np.asarray(self.frames, dtype=np.int64)
        if self.values.ndim != 3 or self.values.shape[0] != len(self.frames):
            raise ValueError(f"snippet values {self.values.shape} do not match {len(self.frames)} frames")
        if len(np.unique(self.frames)) != len(self.frames):
            raise ValueError(f"snippet frames must be distinct, got {self.frames.tolist()}")


@dataclass
class CoalignConfig:
    """Settings of the joint scale/shift solve and the merge."""

    samples_per_frame: int = 1024  # pixels sampled (on a regular grid) per frame for the solve
    border: int = 2  # pixels ignored at the image border (decoder artefacts)
    iterations: int = 8  # IRLS iterations
    loss: str = "cauchy"  # cauchy | huber | l2 (per-residual robust weight)
    loss_scale: float = 2.0  # robust-kernel width in units of the MAD residual scale
    snippet_outlier_factor: float = 3.0  # a snippet whose median residual is this many times the typical one gets weight 1/2
    min_snippet_weight: float = 0.05  # snippets below this weight are left out of the merge
    prior_weight: float = 1e-6  # pull towards (s, t) = (1, 0), relative to the mean data weight
    merge: str = "mean"  # mean | median

    def __post_init__(self):
        if self.loss not in ("cauchy", "huber", "l2"):
            raise ValueError(f"coalign loss must be cauchy, huber or l2, got {self.loss!r}")
        if self.merge not in ("mean", "median"):
            raise ValueError(f"coalign merge must be mean or median, got {self.merge!r}")


@dataclass
class CoalignResult:
    depth: np.ndarray  # [N, H, W] float32 merged inverse depth (NaN where no valid snippet)
    scales: np.ndarray  # (S,) per-snippet scale, applied to the raw snippet values
    shifts: np.ndarray  # (S,) per-snippet shift: aligned = scales[i] * values + shifts[i]
    snippet_weights: np.ndarray  # (S,) final robust weight of each snippet (near 0: outlier)
    residual_history: list[float] = field(default_factory=list)  # robust residual scale per iteration


# --------------------------------------------------------------------------------------------
# snippet geometry


def snippet_indices(num_frames: int, snippet_length: int, dilation: int, stride: int = 1) -> list[list[int]]:
    """Frame indices of all snippets ``[i, i + d, ..., i + (k-1) d]`` that fit in ``num_frames`` frames."""
    if snippet_length < 1 or dilation < 1 or stride < 1:
        raise ValueError(f"snippet length, dilation and stride must be >= 1, got {snippet_length}, {dilation}, {stride}")
    span = (snippet_length - 1) * dilation + 1
    if span > num_frames:
        return []
    starts = list(range(0, num_frames - span + 1, stride))
    if starts[-1] != num_frames - span:
        starts.append(num_frames - span)
    return [[s + j * dilation for j in range(snippet_length)] for s in starts]


def cap_dilation(num_frames: int, snippet_length: int, dilation: int) -> int:
    """The largest dilation <= ``dilation`` whose snippet span still fits in ``num_frames`` frames."""
    if snippet_length <= 1:
        return dilation
    return max(1, min(dilation, (num_frames - 1) // (snippet_length - 1)))


# --------------------------------------------------------------------------------------------
# the solve


def _robust_weights(r: np.ndarray, sigma: float, loss: str, c: float) -> np.ndarray:
    if loss == "l2":
        return np.ones_like(r)
    u = np.abs(r) * np.float32(1.0 / max(c * sigma, 1e-12))
    if loss == "cauchy":
        return 1.0 / (1.0 + u * u)
    return np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))  # huber


def _sample_grid(h: int, w: int, border: int, samples: int) -> tuple[slice, slice]:
    b = border if min(h, w) > 4 * border + 2 else 0
    hh, ww = h - 2 * b, w - 2 * b
    step = max(1, int(np.floor(np.sqrt(hh * ww / max(samples, 1)))))
    return slice(b, h - b, step), slice(b, w - b, step)


def _pairs(snippets: Sequence[Snippet]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All (snippet i, position a, snippet j, position b) with frames[i][a] == frames[j][b], i < j."""
    by_frame: dict[int, list[tuple[int, int]]] = {}
    for i, sn in enumerate(snippets):
        for a, f in enumerate(sn.frames):
            by_frame.setdefault(int(f), []).append((i, a))
    rows = [(i, a, j, b) for cover in by_frame.values() for (i, a), (j, b) in itertools.combinations(cover, 2)]
    if not rows:
        return (np.zeros(0, np.int64),) * 4
    arr = np.asarray(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def solve_scale_shift(snippets: Sequence[Snippet], config: CoalignConfig | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Jointly solve per-snippet (scale, shift) so that overlapping snippets agree.

    Returns ``(scales, shifts, snippet_weights, residual_history)`` with ``aligned_i = scales[i] *
    values_i + shifts[i]`` in a common affine frame (mean scale of the normalised snippets 1).
    """
    cfg = config or CoalignConfig()
    n = len(snippets)
    if n == 0:
        raise ValueError("no snippets to co-align")
    h, w = snippets[0].values.shape[1:]
    for sn in snippets:
        if sn.values.shape[1:] != (h, w):
            raise ValueError(f"snippets differ in size: {sn.values.shape[1:]} vs {(h, w)}")

    # 1. per-snippet normalisation (median / mean absolute deviation over valid pixels)
    center = np.zeros(n)
    spread = np.ones(n)
    ys, xs = _sample_grid(h, w, cfg.border, cfg.samples_per_frame)
    sampled = []  # [k, P] normalised samples per snippet
    for i, sn in enumerate(snippets):
        v = np.asarray(sn.values[:, ys, xs], dtype=np.float64).reshape(len(sn.frames), -1)
        finite = v[np.isfinite(v)]
        if finite.size:
            center[i] = np.median(finite)
            dev = np.mean(np.abs(finite - center[i]))
            spread[i] = dev if dev > 1e-12 else 1.0
        sampled.append((v - center[i]) / spread[i])

    # 2. overlap pairs and their sample vectors
    pi, pa, pj, pb = _pairs(snippets)
    if len(pi) == 0:
        scales = 1.0 / spread
        return scales, -center * scales, np.ones(n), []
    A = np.stack([sampled[i][a] for i, a in zip(pi, pa)]).astype(np.float32)  # [M, P]
    B = np.stack([sampled[j][b] for j, b in zip(pj, pb)]).astype(np.float32)
    valid = np.isfinite(A) & np.isfinite(B)
    all_valid = bool(valid.all())
    A[~valid] = 0.0
    B[~valid] = 0.0
    med_cols = slice(None, None, max(1, A.shape[1] // 128))  # the per-pair medians use <= ~128 samples

    # 3. IRLS on the KKT system  [[H + lam I, C^T], [C, 0]] [p; mu] = [lam p0; c]
    dim = 2 * n
    p = np.zeros(dim)
    p[0::2] = 1.0
    p0 = p.copy()
    C = np.zeros((2, dim))
    C[0, 0::2] = 1.0 / n
    C[1, 1::2] = 1.0 / n
    c = np.array([1.0, 0.0])
    snippet_w = np.ones(n)
    history: list[float] = []
    pairs_of = [np.flatnonzero((pi == k) | (pj == k)) for k in range(n)]
    for _ in range(max(1, cfg.iterations)):
        s, t = p[0::2].astype(np.float32), p[1::2].astype(np.float32)
        r = (s[pi, None] * A + t[pi, None]) - (s[pj, None] * B + t[pj, None])  # [M, P]
        absr = np.abs(r)
        # per-pair median absolute residual (on a column subsample), then the robust global scale
        if all_valid:
            pair_med = np.median(absr[:, med_cols], axis=1)
        else:
            with np.errstate(all="ignore"):
                pair_med = np.nanmedian(np.where(valid, absr, np.nan)[:, med_cols], axis=1)  # NaN: no valid pixel
        pair_med = np.where(np.isfinite(pair_med), pair_med, np.inf)
        finite_med = pair_med[np.isfinite(pair_med)]
        sigma = max(1.4826 * float(np.median(finite_med)) if finite_med.size else 1.0, 1e-9)
        history.append(sigma)
        if len(history) > 2 and abs(history[-1] - history[-2]) < 1e-3 * history[-2]:
            break  # converged: the weights (and so the solution) no longer change
        # per-snippet weights from each snippet's median pair residual
        typical = float(np.median(pair_med[np.isfinite(pair_med)])) if np.isfinite(pair_med).any() else 1.0
        typical = max(typical, 1e-12)
        snip_med = np.full(n, np.nan)
        for k in range(n):
            mine = pair_med[pairs_of[k]]
            mine = mine[np.isfinite(mine)]
            if mine.size:
                snip_med[k] = np.median(mine)
        ratio = np.where(np.isfinite(snip_med), snip_med / (cfg.snippet_outlier_factor * typical), 0.0)
        snippet_w = 1.0 / (1.0 + ratio**4)
        wpix = _robust_weights(r, sigma, cfg.loss, cfg.loss_scale)
        if not all_valid:
            wpix *= valid
        wpix *= (snippet_w[pi] * snippet_w[pj]).astype(np.float32)[:, None]

        # weighted sums per pair -> 4x4 blocks of J^T W J, J row = [a, 1, -b, -1]
        f64 = np.float64
        wA, wB = wpix * A, wpix * B
        saa, sa, s1 = (wA * A).sum(1, dtype=f64), wA.sum(1, dtype=f64), wpix.sum(1, dtype=f64)
        sab, sb, sbb = (wA * B).sum(1, dtype=f64), wB.sum(1, dtype=f64), (wB * B).sum(1, dtype=f64)
        del wA, wB
        H = np.zeros((dim, dim))
        si, ti, sj, tj = 2 * pi, 2 * pi + 1, 2 * pj, 2 * pj + 1
        for (ra, rb), val in (
            ((si, si), saa), ((si, ti), sa), ((ti, si), sa), ((ti, ti), s1),
            ((sj, sj), sbb), ((sj, tj), sb), ((tj, sj), sb), ((tj, tj), s1),
            ((si, sj), -sab), ((sj, si), -sab), ((si, tj), -sa), ((tj, si), -sa),
            ((ti, sj), -sb), ((sj, ti), -sb), ((ti, tj), -s1), ((tj, ti), -s1),
        ):
            np.add.at(H, (ra, rb), val)
        lam = cfg.prior_weight * max(float(np.trace(H)) / dim, 1e-12)
        K = np.zeros((dim + 2, dim + 2))
        K[:dim, :dim] = H + lam * np.eye(dim)
        K[:dim, dim:] = C.T
        K[dim:, :dim] = C
        rhs = np.concatenate([lam * p0, c])
        try:
            sol = np.linalg.solve(K, rhs)
        except np.linalg.LinAlgError:
            sol = np.linalg.lstsq(K, rhs, rcond=None)[0]
        p = sol[:dim]

    s, t = p[0::2], p[1::2]
    # express in terms of the raw values: s * (x - c) / d + t
    scales = s / spread
    shifts = t - s * center / spread
    return scales, shifts, snippet_w, history


def merge_snippets(snippets: Sequence[Snippet], scales: np.ndarray, shifts: np.ndarray, num_frames: int,
                   weights: np.ndarray | None = None, mode: str = "mean", min_weight: float = 0.0) -> np.ndarray:
    """Average the aligned snippets per frame -> [num_frames, H, W] float32 (NaN where nothing valid).

    Snippets with weight below ``min_weight`` are left out unless a frame has no other snippet.
    """
    h, w = snippets[0].values.shape[1:]
    weights = np.ones(len(snippets)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = weights >= min_weight
    if mode == "mean":
        # float32 accumulators; frames inside one snippet are distinct, so fancy-index += is exact
        num = np.zeros((num_frames, h, w), np.float32)
        den = np.zeros((num_frames, h, w), np.float32)
        fallback: tuple[np.ndarray, np.ndarray] | None = None
        for i, sn in enumerate(snippets):
            al = scales[i] * np.asarray(sn.values, dtype=np.float32) + np.float32(shifts[i])
            ok = np.isfinite(al)
            al[~ok] = 0.0
            if keep[i]:
                num[sn.frames] += np.float32(weights[i]) * al
                den[sn.frames] += np.float32(weights[i]) * ok
            else:
                if fallback is None:
                    fallback = (np.zeros_like(num), np.zeros_like(den))
                fallback[0][sn.frames] += al
                fallback[1][sn.frames] += ok
        if fallback is not None:
            empty = den <= 0
            num[empty], den[empty] = fallback[0][empty], fallback[1][empty]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, np.float32(1e-30)), np.nan).astype(np.float32)
    # median: gather per frame
    per_frame: dict[int, list[np.ndarray]] = {}
    fallback: dict[int, list[np.ndarray]] = {}
    for i, sn in enumerate(snippets):
        target = per_frame if keep[i] else fallback
        for a, f in enumerate(sn.frames):
            target.setdefault(int(f), []).append(scales[i] * np.asarray(sn.values[a], np.float64) + shifts[i])
    out = np.full((num_frames, h, w), np.nan, np.float32)
    for f in range(num_frames):
        stack = per_frame.get(f) or fallback.get(f)
        if stack:
            with np.errstate(all="ignore"):
                out[f] = np.nanmedian(np.stack(stack), axis=0)
    return out


def coalign(snippets: Sequence[Snippet], num_frames: int | None = None, config: CoalignConfig | None = None,
            refine: Callable[[np.ndarray], np.ndarray] | None = None) -> CoalignResult:
    """Solve the per-snippet scales/shifts jointly, merge, and optionally refine the merged video.

    ``num_frames`` defaults to one past the largest frame index; ``refine`` receives the merged
    [N, H, W] inverse depth and returns a refined one of the same shape.
    """
    cfg = config or CoalignConfig()
    if not snippets:
        raise ValueError("no snippets to co-align")
    n_frames = int(num_frames if num_frames is not None else max(int(sn.frames.max()) for sn in snippets) + 1)
    scales, shifts, weights, history = solve_scale_shift(snippets, cfg)
    depth = merge_snippets(snippets, scales, shifts, n_frames, weights, cfg.merge, cfg.min_snippet_weight)
    if refine is not None:
        refined = np.asarray(refine(depth), dtype=np.float32)
        if refined.shape != depth.shape:
            raise ValueError(f"refine returned shape {refined.shape}, expected {depth.shape}")
        depth = refined
    return CoalignResult(depth=depth, scales=scales, shifts=shifts, snippet_weights=weights, residual_history=history)


def align_to(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Least-squares global scale and shift mapping ``pred`` onto ``target`` -> (aligned, scale, shift)."""
    ok = np.isfinite(pred) & np.isfinite(target)
    if mask is not None:
        ok &= mask
    x, y = pred[ok].astype(np.float64), target[ok].astype(np.float64)
    X = np.stack([x, np.ones_like(x)], 1)
    (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
    return (a * pred + b).astype(np.float32), float(a), float(b)
