import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p.adapters import AdapterNotAvailable, SourceError, get_adapter
from egom2p.standardize import DepthAnnotation, clip_starts, standardize
from factories import make_raw_sequence


def test_clip_starts():
    assert clip_starts(150) == [0, 60]
    assert clip_starts(150, stride=30) == [0, 30, 60, 90]
    assert clip_starts(59) == []


def test_standardize_window_conventions():
    seq, truth = make_raw_sequence(n=150, width=96, height=72)
    ann = DepthAnnotation(truth["depth"][0:60], kind="metric", source="render")
    clip = standardize(seq, 0, depth=ann, size=48)
    assert clip.clip_id == "egogen/seqA/000000"
    assert clip.rgb.shape == (60, 48, 48, 3)
    # poses relative to the window's first frame
    expected = geo.relative_to_first(truth["c2w"][0:60])
    assert np.allclose(clip.cam, expected, atol=1e-6)
    # intrinsics follow the crop (72x72 from x0=12) and the resize by 48/72
    s = 48 / 72
    assert np.allclose(clip.intrinsics, [60 * s, 60 * s, (47.5 - 12 + 0.5) * s - 0.5, (35.5 + 0.5) * s - 0.5])
    # gaze: source pixels -> normalised standard image; frames 20-25 of the source were invalid
    g_px = truth["gaze_px"][0:60]
    exp = geo.pixels_to_normalized(geo.crop_resize_pixels(g_px, 96, 72, 48), 48, 48)
    ok = np.all((exp >= -0.2) & (exp <= 1.2), -1)
    assert np.allclose(clip.gaze[ok], exp[ok], atol=1e-6)
    assert np.all(np.isnan(clip.gaze[~ok])) and (~ok).sum() > 5  # off-image gaze marked invalid
    assert np.all(np.isnan(clip.gaze[20:25]))  # tracking lost in the source
    # constant plane at 2 m -> constant inverse depth 0.5: normalised range collapses, range kept
    assert np.allclose(clip.depth_range, [0.5, 0.5])
    assert clip.depth_source == "render"


def test_inverse_depth_normalisation_keeps_metric_range():
    seq, truth = make_raw_sequence(n=60)
    d = np.linspace(1.0, 4.0, 96, dtype=np.float32)[None, None, :].repeat(72, 1).repeat(60, 0)
    clip = standardize(seq, 0, depth=DepthAnnotation(d, "metric", "sensor"), size=72)
    lo, hi = clip.depth_range
    metric = 1.0 / (lo + clip.depth * (hi - lo))
    assert np.nanmax(np.abs(metric - d[:, :, 12:84])) < 0.02


def test_nan_pose_is_a_source_error():
    seq, _ = make_raw_sequence(n=60)
    seq.c2w[10] = np.nan
    with pytest.raises(SourceError, match=r"/fake/seqA: non-finite camera pose at frames \[10\]"):
        standardize(seq, 0)


def test_unknown_and_missing_adapters():
    with pytest.raises(AdapterNotAvailable, match="unknown dataset"):
        get_adapter("nope")
