"""The render and sensor depth annotators (paper Sec. 3.1 sensor depth cleaning)."""

from __future__ import annotations

import numpy as np
import pytest

import factories
from egom2p.annotators import get_annotator
from egom2p.annotators.sensor import SensorCleanConfig, clean_depth_frame
from egom2p.standardize import standardize


def scene(h=120, w=160):
    """A tilted plane (1-2 m) with a 1 m step in the right half: smooth surfaces and one depth edge."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = (1.0 + xx / w).astype(np.float32)
    d[:, w // 2:] += 1.0
    return d, yy, xx


def test_sensor_cleaning_fills_holes_and_keeps_valid_depth():
    truth, yy, xx = scene()
    rng = np.random.default_rng(0)
    pin = rng.random(truth.shape) < 0.05  # dropped pixels
    noisy = truth.copy()
    noisy[pin] = 0.0
    noisy[40:50, 40:50] = np.nan  # a 10x10 hole: filled by inpainting
    noisy[:, :20] = 0.0  # a large missing region (out of range): must stay invalid
    noisy[100, 100] = 7.0  # a flying pixel: removed by the median filter
    out = clean_depth_frame(noisy)

    kept = ~pin & np.isfinite(noisy) & (xx >= 20)
    kept[100, 100] = False
    err = np.abs(out - truth)
    assert err[kept].max() < 0.01 and np.median(err[kept]) < 1e-5  # valid depth kept
    filled = (pin | ~np.isfinite(noisy)) & (xx >= 20)
    assert (out[filled] > 0).all()  # every small hole filled
    assert err[filled & (np.abs(xx - 80) > 3)].max() < 0.03  # with the surrounding surface's depth
    assert (out[:, :20] == 0).all()  # large holes stay invalid, not hallucinated
    assert abs(out[100, 100] - truth[100, 100]) < 0.01  # speckle gone
    assert out.dtype == np.float32


def test_sensor_cleaning_respects_range_and_empty_frames():
    truth, _, _ = scene(60, 80)
    far = truth.copy()
    far[:, :] = 20.0  # all beyond max_depth
    assert not clean_depth_frame(far).any()
    assert not clean_depth_frame(np.zeros((60, 80), np.float32)).any()
    out = clean_depth_frame(truth, SensorCleanConfig(max_depth=1.5))
    assert (out[:, :40] > 0).all() and (out[:, 40:] == 0).all()  # 1.5 m cut applies before filling


def test_sensor_annotator_gives_metric_depth_that_standardizes():
    seq, truth = factories.make_raw_sequence(n=70, width=96, height=72)
    truth["depth"][:, 30:33, 40:43] = 0.0  # a dropout inside the crop
    ann = get_annotator("sensor").annotate(seq, 5, 60)
    assert ann.kind == "metric" and ann.source == "sensor" and ann.values.shape == (60, 72, 96)
    assert np.allclose(ann.values[:, 30:33, 40:43], 2.0, atol=1e-3)  # hole filled
    clip = standardize(seq, 5, depth=ann, size=64)
    assert clip.depth_source == "sensor" and np.isfinite(clip.depth).all()
    np.testing.assert_allclose(clip.depth_range, [0.5, 0.5], atol=1e-3)


def test_render_annotator_passes_rendered_depth_and_marks_background():
    seq, truth = factories.make_raw_sequence(n=70, width=96, height=72)
    truth["depth"][:, :10, :] = np.inf  # no surface hit
    ann = get_annotator("render").annotate(seq, 0, 60)
    assert ann.kind == "metric" and ann.source == "render"
    assert (ann.values[:, :10] == 0).all()
    np.testing.assert_array_equal(ann.values[:, 10:, 4:], 2.0)
    far = get_annotator("render", max_depth=1.0).annotate(seq, 0, 60)
    assert not far.values.any()
    seq.read_depth = None
    assert get_annotator("render").annotate(seq, 0, 60) is None
    assert get_annotator("sensor").annotate(seq, 0, 60) is None
    with pytest.raises(TypeError, match="unknown options"):
        get_annotator("sensor", median=7)


def test_depth_not_aligned_to_the_frames_is_refused_naming_the_sequence():
    """Both annotators read the window's depth through annotators.base.read_window_depth: wrong shape -> SourceError."""
    from egom2p.adapters.base import SourceError

    seq, truth = factories.make_raw_sequence(n=70, width=96, height=72)
    seq.read_depth = lambda idx: truth["depth"][idx][:, :, :80]  # narrower than the RGB frames
    with pytest.raises(SourceError, match=r"rendered depth has shape \(60, 72, 80\), expected \(60, 72, 96\)$"):
        get_annotator("render").annotate(seq, 0, 60)
    with pytest.raises(SourceError, match=r"sensor depth has shape \(60, 72, 80\), expected \(60, 72, 96\) \(aligned"):
        get_annotator("sensor").annotate(seq, 0, 60)


def test_sensor_depth_keeps_the_raw_valid_mask_through_the_clip(tmp_path):
    """Issue 15 (6a): the pixels the sensor really returned are kept beside the filled depth, in the clip
    and in the clips table; filled pixels are not raw-valid."""
    from egom2p.clips import read_clips, write_clips
    from egom2p.curate.ops import depth_from_row, depth_to_row

    seq, truth = factories.make_raw_sequence(n=70, width=96, height=72)
    truth["depth"][:, 26:36, 40:50] = 0.0  # a 10x10 dropout inside the crop: inpainted
    truth["depth"][:, 10, 50] = 30.0  # out of range
    ann = get_annotator("sensor").annotate(seq, 5, 60)
    assert ann.raw_valid.shape == (60, 72, 96) and ann.raw_valid.dtype == bool
    assert (ann.values[:, 26:36, 40:50] > 0).all() and not ann.raw_valid[:, 26:36, 40:50].any()  # filled, not raw
    assert not ann.raw_valid[:, 10, 50].any() and ann.raw_valid[:, 60, 30].all()
    back = depth_from_row(depth_to_row(ann))  # how annotations travel from annotate to standardize
    assert np.array_equal(back.raw_valid, ann.raw_valid) and np.array_equal(back.values, ann.values)

    clip = standardize(seq, 5, depth=ann, size=64)  # crop 72x72 at x 12..84, then 72 -> 64
    rv = clip.depth_raw_valid
    assert rv.shape == (60, 64, 64) and np.isfinite(clip.depth).all()  # depth everywhere (filled) ...
    # ... raw-valid only where the whole source area was a sensor return: the dropout (x 40..50 -> 25..34,
    # y 26..36 -> 23..32 in the standard image) and the out-of-range pixel (y 10 -> 9, x 50 -> 34) are not
    assert not rv[:, 24:31, 26:33].any() and not rv[:, 9, 34].any()
    assert rv[:, 40:, :].all() and rv[:, :8, :].all() and rv[:, :, :20].all() and rv.mean() > 0.9
    path = tmp_path / "h2o.lance"
    write_clips(path, [clip])
    got = next(read_clips(path))
    assert np.array_equal(got.depth_raw_valid, rv)
    assert next(read_clips(path, decode_depth=False)).depth_raw_valid is None
    # rendered depth has no mask: every valid pixel is a measurement
    assert standardize(seq, 5, depth=get_annotator("render").annotate(seq, 5, 60), size=64).depth_raw_valid is None
