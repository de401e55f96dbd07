"""Co-alignment of RollingDepth snippets, without the network: synthetic snippets from a known depth video."""

from __future__ import annotations

import numpy as np
import pytest

from egom2p.rollingdepth.coalign import (CoalignConfig, Snippet, align_to, cap_dilation, coalign, merge_snippets,
                                         snippet_indices, solve_scale_shift)

DILATIONS = (1, 10, 25)


def depth_video(n: int = 80, h: int = 40, w: int = 56) -> np.ndarray:
    """Inverse depth [n, h, w] (1/m) of a tilted, rippled wall with a sphere sweeping in front of it."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n, h, w))
    for t in range(n):
        z = 2.0 + 1.5 * yy / h + 0.4 * np.sin(xx / 7 + t / 12)
        cx, cy = 8 + 0.5 * t, h / 2 + 8 * np.sin(t / 9)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < 81
        z[inside] = 0.9 + 0.008 * ((xx[inside] - cx) ** 2 + (yy[inside] - cy) ** 2)
        out[t] = 1.0 / z
    return out


def distorted_snippets(gt: np.ndarray, rng, noise: float = 0.01, k: int = 3) -> tuple[list[Snippet], list[tuple]]:
    """Snippets at several dilations, each with its own random scale/shift and 1% noise."""
    snippets, params = [], []
    for d in DILATIONS:
        for idx in snippet_indices(len(gt), k, d):
            s, t = float(np.exp(rng.normal(0.0, 0.7))), float(rng.normal(0.0, 1.0))
            v = s * gt[idx] + t + rng.normal(0.0, noise * s * gt.std(), size=gt[idx].shape)
            snippets.append(Snippet(idx, v.astype(np.float32)))
            params.append((s, t))
    return snippets, params


def absrel(pred: np.ndarray, gt: np.ndarray) -> float:
    aligned, _, _ = align_to(pred, gt)
    return float(np.mean(np.abs(aligned - gt) / gt))


def test_snippet_indices_cover_every_frame_and_dilation_caps_to_fit():
    assert snippet_indices(10, 3, 1)[:2] == [[0, 1, 2], [1, 2, 3]]
    assert snippet_indices(10, 3, 4) == [[0, 4, 8], [1, 5, 9]]
    assert snippet_indices(10, 3, 5) == []  # span 11 > 10
    for n, d in ((80, 25), (60, 10), (7, 1)):
        covered = {f for idx in snippet_indices(n, 3, d) for f in idx}
        assert covered == set(range(n))
    assert cap_dilation(30, 3, 25) == 14 and cap_dilation(200, 3, 25) == 25 and cap_dilation(3, 3, 25) == 1
    assert len(snippet_indices(30, 3, cap_dilation(30, 3, 25))) > 0


def test_merged_snippets_match_the_truth_up_to_one_global_scale_and_shift():
    rng = np.random.default_rng(0)
    gt = depth_video()
    snippets, params = distorted_snippets(gt, rng)
    naive = merge_snippets(snippets, np.ones(len(snippets)), np.zeros(len(snippets)), len(gt))
    res = coalign(snippets, len(gt))
    assert res.depth.shape == gt.shape and np.isfinite(res.depth).all()
    err = absrel(res.depth, gt)
    assert err < 0.01, err
    assert absrel(naive, gt) > 10 * err  # without alignment the merge is far off
    # the solved affine of each snippet undoes its distortion up to the one global affine
    s_true = np.array([p[0] for p in params])
    ratio = res.scales * s_true
    assert np.std(ratio) / np.mean(ratio) < 0.01
    assert res.snippet_weights.min() > 0.5  # no snippet taken for an outlier
    assert res.residual_history[-1] < res.residual_history[0]


def test_an_outlier_snippet_is_down_weighted_and_does_not_spoil_the_merge(scratch):
    rng = np.random.default_rng(1)
    gt = depth_video()
    snippets, _ = distorted_snippets(gt, rng)
    bad = 5  # a dense (dilation 1) snippet: its frames are covered by few other snippets
    frames = snippets[bad].frames
    garbage = 3.0 * gt[::-1][frames][:, ::-1, :] + rng.normal(0.0, 0.5, size=snippets[bad].values.shape)
    snippets[bad] = Snippet(frames, garbage.astype(np.float32))
    res = coalign(snippets, len(gt))
    assert res.snippet_weights[bad] < 0.05
    others = np.delete(res.snippet_weights, bad)
    assert others.min() > 0.5
    assert absrel(res.depth, gt) < 0.01
    # the same data without robust weighting is visibly worse on the outlier's frames
    plain = coalign(snippets, len(gt), CoalignConfig(loss="l2", snippet_outlier_factor=1e9, min_snippet_weight=0.0))
    assert absrel(plain.depth[frames], gt[frames]) > 3 * absrel(res.depth[frames], gt[frames])
    from egom2p.rollingdepth.viz import save_depth_figure

    png = save_depth_figure(scratch / "rollingdepth_coalign.png",
                            {"truth": gt, "co-aligned": align_to(res.depth, gt)[0], "plain l2": plain.depth},
                            frames=[0, int(frames[0]), 79], result=res, title="co-alignment with one outlier snippet")
    assert png.stat().st_size > 10_000


def test_invalid_pixels_median_merge_and_refine_hook():
    rng = np.random.default_rng(2)
    gt = depth_video(n=40)
    snippets, _ = distorted_snippets(gt, rng)
    for sn in snippets[::3]:
        sn.values[:, :5, :7] = np.nan  # a hole in some snippets only
    res = coalign(snippets, len(gt), CoalignConfig(merge="median"),
                  refine=lambda d: d * 2.0 + 1.0)  # any affine "refinement" keeps the accuracy
    assert np.isfinite(res.depth).all()  # the hole is filled by the other snippets
    assert absrel(res.depth, gt) < 0.01
    with pytest.raises(ValueError, match="refine returned shape"):
        coalign(snippets, len(gt), refine=lambda d: d[:-1])


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="no snippets"):
        solve_scale_shift([])
    with pytest.raises(ValueError, match="distinct"):
        Snippet([0, 0, 1], np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="do not match"):
        Snippet([0, 1], np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="differ in size"):
        solve_scale_shift([Snippet([0, 1], np.zeros((2, 4, 4))), Snippet([1, 2], np.zeros((2, 5, 4)))])
    with pytest.raises(ValueError, match="loss"):
        CoalignConfig(loss="l1")
