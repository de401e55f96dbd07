"""egogen adapter: render -> discover/load -> standardize -> valid, geometrically consistent clips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p.adapters import get_adapter
from egom2p.adapters.base import SourceError
from egom2p.curate.stages import load_sequence
from egom2p.render import render_dataset, render_sequence
from egom2p.standardize import DepthAnnotation, clip_starts, standardize

SEED, SIZE, SECONDS = 1, 64, 2.5


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("egogen_adapter") / "raw"
    render_dataset(out, sequences=2, seconds=SECONDS, seed=SEED, size=SIZE, progress=False)
    return out


def test_discover_and_load(tree):
    A = get_adapter("egogen")
    assert A.default_depth == "render" and set(A.modalities) == {"rgb", "depth", "gaze", "cam"}
    refs = A.discover(tree)
    assert [r.sequence for r in refs] == ["s1_0000", "s1_0001"]
    seq = A.load(refs[0])
    truth = render_sequence(seed=SEED, seconds=SECONDS, size=SIZE, index=0)
    n = truth.num_frames
    assert seq.num_frames == n and (seq.width, seq.height) == (SIZE, SIZE)
    # OpenGL -> OpenCV camera axes, absolute metres
    np.testing.assert_allclose(seq.c2w, truth.c2w_opengl @ np.diag([1.0, -1.0, -1.0, 1.0]), atol=1e-12)
    np.testing.assert_allclose(seq.intrinsics, truth.intrinsics)
    d = seq.read_depth(np.array([0, 5, n - 1]))
    assert d.dtype == np.float32 and d.shape == (3, SIZE, SIZE)
    np.testing.assert_array_equal(d, truth.depth[[0, 5, n - 1]])
    f = seq.read_frames(np.arange(4))
    assert f.shape == (4, SIZE, SIZE, 3) and f.dtype == np.uint8
    # gaze: flagged-invalid rows are NaN; valid rows are the projection of the fixation point
    assert np.isnan(seq.gaze_px[~truth.gaze_valid]).all()
    ok = ~np.isnan(seq.gaze_px[:, 0])
    assert ok.mean() > 0.5
    pc = geo.transform_points(geo.invert_se3(seq.c2w[ok]), truth.gaze_point[ok])
    uv, _ = geo.project(pc, seq.intrinsics)
    np.testing.assert_allclose(seq.gaze_px[ok], uv, atol=1e-9)
    with pytest.raises(SourceError, match="out of range"):
        seq.read_depth(np.array([n]))


def test_gaze_occlusion_and_off_image(tree, tmp_path):
    A = get_adapter("egogen")
    src = tree / "s1_0000"
    d = tmp_path / "raw" / "s1_0000"
    shutil.copytree(src, d)
    T = np.load(d / "c2w_opengl.npy")
    pts = np.load(d / "gaze_point_world.npy")
    valid = np.load(d / "gaze_valid.npy")
    i = int(np.nonzero(valid)[0][0])
    eye = T[:, :3, 3]
    moved = pts.copy()
    moved[i] = eye[i] + 3.0 * (pts[i] - eye[i])  # same pixel, behind the visible surface: occluded
    j = int(np.nonzero(valid)[0][1])
    moved[j] = eye[j] + T[j, :3, 2] * 2.0  # behind the camera (OpenGL +z is backward)
    k = int(np.nonzero(valid)[0][2])
    moved[k] = eye[k] - T[k, :3, 2] * 1.0 + T[k, :3, 0] * 5.0  # far to the right: off-image
    np.save(d / "gaze_point_world.npy", moved)
    seq = A.load(A.discover(tmp_path / "raw")[0])
    assert np.isnan(seq.gaze_px[[i, j, k]]).all()
    others = np.setdiff1d(np.nonzero(valid)[0], [i, j, k])
    orig = A.load(A.discover(tree)[0])
    np.testing.assert_array_equal(seq.gaze_px[others], orig.gaze_px[others])


def test_standard_clips_are_valid_and_consistent(tree):
    A = get_adapter("egogen")
    seq = A.load(A.discover(tree)[1])
    starts = clip_starts(seq.num_frames, 60, 15)
    assert starts == [0, 15]
    for s in starts:
        idx = np.arange(s, s + 60)
        ann = DepthAnnotation(seq.read_depth(idx), "metric", "render")
        clip = standardize(seq, s, depth=ann, size=32)
        clip.validate()
        assert clip.depth_source == "render" and clip.rgb.shape == (60, 32, 32, 3)
        np.testing.assert_allclose(clip.cam[0], np.eye(4), atol=1e-6)
        # recover metric depth from the normalised inverse depth and its range
        lo, hi = clip.depth_range
        depth = 1.0 / (lo + clip.depth.astype(np.float64) * (hi - lo))
        K = clip.intrinsics
        fracs = []
        for t in range(0, 59, 6):
            valid = np.isfinite(depth[t])
            pts = geo.transform_points(clip.cam[t].astype(np.float64), geo.depth_to_points(np.nan_to_num(depth[t]), K))[valid]
            pc = geo.transform_points(geo.invert_se3(clip.cam[t + 1].astype(np.float64)), pts)
            uv, z = geo.project(pc, K)
            ui, vi = np.round(uv[:, 0]), np.round(uv[:, 1])
            inside = (z > 0) & (ui >= 0) & (ui < 32) & (vi >= 0) & (vi < 32)
            d1 = depth[t + 1][vi[inside].astype(int), ui[inside].astype(int)]
            rel = np.abs(d1 - z[inside]) / z[inside]
            fracs.append(np.nanmean(rel < 0.05))
        assert np.mean(fracs) > 0.8
        # gaze in the standard image: the same point as the source pixel, normalised
        g = clip.gaze
        okg = np.isfinite(g[:, 0])
        px = geo.crop_resize_pixels(seq.gaze_px[idx][okg], seq.width, seq.height, 32)
        np.testing.assert_allclose(g[okg], geo.pixels_to_normalized(px, 32, 32), atol=1e-6)


def test_bad_trees(tmp_path):
    A = get_adapter("egogen")
    with pytest.raises(SourceError, match="not found"):
        A.discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no complete"):
        A.discover(tmp_path / "empty")


def test_incomplete_and_corrupt_sequences(tree, tmp_path):
    A = get_adapter("egogen")
    raw = tmp_path / "raw"
    shutil.copytree(tree, raw)
    # a sequence still being written (hidden .partial-) is not discovered; a folder without a manifest is
    # discovered as a bad sequence (curation quarantines it and goes on)
    (raw / ".partial-s1_0002").mkdir()
    (raw / "s1_0003").mkdir()
    refs = A.discover(raw)
    assert [(r.sequence, r.problem is None) for r in refs] == [("s1_0000", True), ("s1_0001", True), ("s1_0003", False)]
    assert refs[2].path == str(raw / "s1_0003") and "no manifest.json" in refs[2].problem
    shutil.rmtree(raw / "s1_0003")
    # a truncated depth file / broken pose file / bad manifest -> SourceError naming the file
    d = raw / "s1_0000"
    with open(d / "depth.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(SourceError, match="depth.npy"):
        A.load(A.discover(raw)[0])
    d1 = raw / "s1_0001"
    np.save(d1 / "c2w_opengl.npy", np.zeros((3, 4, 4)))
    with pytest.raises(SourceError, match="c2w_opengl.npy"):
        A.load(A.discover(raw)[1])
    man = json.loads((d1 / "manifest.json").read_text())
    (d1 / "manifest.json").write_text(json.dumps({**man, "format": "other"}))
    bad = A.discover(raw)[1]
    assert bad.path == str(d1 / "manifest.json") and "not an egom2p-egogen sequence" in bad.problem
    with pytest.raises(SourceError, match="manifest.json: not an egom2p-egogen"):
        load_sequence(A, bad)


def test_non_square_render_crops_consistently(tmp_path):
    """A 80x48 render: the standard clip's centre crop keeps intrinsics, depth and gaze consistent."""
    render_dataset(tmp_path / "raw", sequences=1, seconds=2.0, seed=6, size=(80, 48), progress=False)
    A = get_adapter("egogen")
    seq = A.load(A.discover(tmp_path / "raw")[0])
    assert (seq.width, seq.height) == (80, 48)
    idx = np.arange(60)
    clip = standardize(seq, 0, depth=DepthAnnotation(seq.read_depth(idx), "metric", "render"), size=48)
    clip.validate()
    # the crop keeps the central 48x48 block: same depth there (size unchanged, no resampling)
    lo, hi = clip.depth_range
    depth = 1.0 / (lo + clip.depth.astype(np.float64) * (hi - lo))
    src = seq.read_depth(idx)[:, :, 16:64].astype(np.float64)
    ok = np.isfinite(depth) & (src > 0)
    np.testing.assert_allclose(depth[ok], src[ok], rtol=1e-4)
    np.testing.assert_allclose(clip.intrinsics, seq.intrinsics - [0, 0, 16, 0])


def test_every_fourth_sequence_is_held_out():
    from egom2p.adapters.egogen import split_of

    assert [split_of(i) for i in range(8)] == ["train"] * 3 + ["val"] + ["train"] * 3 + ["val"]
    assert split_of(None) == "train"
